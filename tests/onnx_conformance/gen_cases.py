#!/usr/bin/env python3
"""Copy the ONNX backend node test cases for the op types ferrumc imports into OUT_DIR.

Usage: gen_cases.py OUT_DIR

Uses the backend node test cases of the `onnx` PyPI package (see requirements.txt): the data
shipped as onnx/backend/test/data/node/<case>/model.onnx + test_data_set_*/{input,output}_*.pb
when the wheel has it, otherwise (onnx 1.23 wheels do not) the same cases built with
onnx.backend.test.case.node.collect_testcases() and written in that layout.
A case is kept when every node of its graph has an op type from OP_TYPES (the op types
ferrumc-onnx maps; keep in sync with `SUPPORTED_OPS` in frontends/onnx/src/import.rs)
and at least one node's op type is in the target list TARGET_OPS. The generated
directory is not committed: CI regenerates it.
"""
import os
import shutil
import sys

import onnx

# The op types whose conformance we track (the LLM core set plus extras).
TARGET_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Exp", "Log", "Tanh",
    "Erf", "Sigmoid", "Relu", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceMax", "Reshape",
    "Transpose", "Concat", "Split", "Slice", "Gather", "Unsqueeze", "Squeeze", "Expand", "Where", "Cast",
    "Shape", "ConstantOfShape", "Range", "Equal", "Less", "Greater", "Not", "LayerNormalization", "Identity",
    "Constant", "Cos", "Sin", "Max", "Min", "Abs", "Clip", "Trilu", "CumSum", "Flatten",
    "CastLike", "Size", "And", "Or", "Mod", "LessOrEqual", "GreaterOrEqual", "Sum", "ArgMax", "TopK", "Pad",
    "Tile", "ScatterND", "GatherElements", "GatherND",
}
# Every op type a case may use (its expanded function bodies included).
OP_TYPES = TARGET_OPS | {
    "ArgMin", "Ceil", "Floor", "Gelu", "IsNaN", "LeakyRelu", "ReduceL1", "ReduceL2", "ReduceLogSumExp",
    "ReduceMin", "ReduceProd", "ReduceSumSquare", "Round", "Sign", "Softplus", "Xor",
}


def wanted(model) -> bool:
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    foreign = [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    return not foreign and bool(ops) and ops <= OP_TYPES and bool(ops & TARGET_OPS)


def generate(out: str) -> int:
    """Wheels without the data dir: build the cases with collect_testcases()."""
    import warnings

    import numpy as np
    from onnx import numpy_helper
    from onnx.backend.test.case.node import collect_testcases

    warnings.simplefilter("ignore")
    written = 0
    for case in collect_testcases():
        model = case.model
        if model is None or not wanted(model) or not case.data_sets:
            continue
        dst = os.path.join(out, case.name)
        if os.path.exists(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        onnx.save(model, os.path.join(dst, "model.onnx"))
        init = {t.name for t in model.graph.initializer}
        in_names = [i.name for i in model.graph.input if i.name not in init]
        out_names = [o.name for o in model.graph.output]
        for k, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(dst, f"test_data_set_{k}")
            os.makedirs(ds)
            for kind, names, arrays in (("input", in_names, inputs), ("output", out_names, outputs)):
                for j, arr in enumerate(arrays):
                    name = names[j] if j < len(names) else ""
                    try:
                        t = numpy_helper.from_array(np.asarray(arr), name)
                    except Exception:  # noqa: BLE001  (sequences, optionals)
                        shutil.rmtree(dst)
                        break
                    with open(os.path.join(ds, f"{kind}_{j}.pb"), "wb") as fh:
                        fh.write(t.SerializeToString())
                if not os.path.exists(dst):
                    break
            if not os.path.exists(dst):
                break
        if os.path.exists(dst):
            written += 1
    print(f"onnx {onnx.__version__}: generated {written} cases in {out}")
    return 0


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    os.makedirs(out, exist_ok=True)
    if not os.path.isdir(src):
        return generate(out)
    copied = 0
    for case in sorted(os.listdir(src)):
        model_path = os.path.join(src, case, "model.onnx")
        if not os.path.isfile(model_path):
            continue
        try:
            model = onnx.load(model_path, load_external_data=False)
        except Exception as e:  # noqa: BLE001
            print(f"skip {case}: {e}", file=sys.stderr)
            continue
        if not wanted(model):
            continue
        dst = os.path.join(out, case)
        if os.path.exists(dst):
            shutil.rmtree(dst)
        shutil.copytree(os.path.join(src, case), dst)
        copied += 1
    print(f"onnx {onnx.__version__}: copied {copied} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
