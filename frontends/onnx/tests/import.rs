//! Unit tests on small hand-built ModelProtos (prost-encoded here).

use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::{FileWeights, InlineWeights};
use ferrumc_ir::{DType, Dim, Tensor, WeightSource};
use ferrumc_onnx::proto::*;
use ferrumc_onnx::{import_onnx, import_onnx_bytes, read_tensor_proto, tensor_to_proto, OnnxError};
use prost::Message;
use std::path::PathBuf;

fn vi(name: &str, elem: i32, dims: &[DimValue]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|d| Dimension { value: Some(d.clone()), denotation: String::new() }).collect(),
                }),
            }),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn dv(n: i64) -> DimValue {
    DimValue::DimValue(n)
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attr_type::INT, i, ..Default::default() }
}

fn model(opset: i64, graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "test".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[usize], vals: Vec<f64>) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_f64(DType::F32, dims.to_vec(), vals).unwrap()).unwrap()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrumc-onnx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// x[batch, 4] → relu(x · W + b) with W [4, 32] (a weight) and b [32] (a constant).
fn mlp() -> ModelProto {
    let w: Vec<f64> = (0..128).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
    let b: Vec<f64> = (0..32).map(|i| i as f64 / 8.0 - 2.0).collect();
    model(
        17,
        GraphProto {
            name: "mlp".into(),
            node: vec![
                node("MatMul", &["x", "W"], &["h"], vec![]),
                node("Add", &["h", "b"], &["z"], vec![]),
                node("Relu", &["z"], &["y"], vec![]),
            ],
            initializer: vec![f32_tensor("W", &[4, 32], w), f32_tensor("b", &[32], b)],
            input: vec![vi("x", data_type::FLOAT, &[DimValue::DimParam("batch".into()), dv(4)])],
            output: vec![vi("y", data_type::FLOAT, &[DimValue::DimParam("batch".into()), dv(32)])],
            ..Default::default()
        },
    )
}

fn mlp_reference(x: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for row in x.chunks(4) {
        for j in 0..32 {
            let mut acc = j as f64 / 8.0 - 2.0;
            for (k, xv) in row.iter().enumerate() {
                acc += xv * (((k * 32 + j) % 7) as f64 - 3.0) / 4.0;
            }
            out.push(acc.max(0.0));
        }
    }
    out
}

#[test]
fn tiny_mlp_imports_and_runs() {
    let bytes = mlp().encode_to_vec();
    let x: Vec<f64> = (0..8).map(|i| i as f64 * 0.5 - 1.0).collect();
    let input = Tensor::from_f64(DType::F32, vec![2, 4], x.clone()).unwrap();
    let want = mlp_reference(&x);
    // From memory: the big weight is Inline.
    let m = import_onnx_bytes(&bytes).unwrap();
    let f = m.function("forward").unwrap();
    assert_eq!(f.params()[0].0, "x");
    assert_eq!(f.outputs()[0].0, "y");
    assert_eq!(f.ty(f.params()[0].1).shape[0], Dim::sym("batch"));
    assert!(matches!(m.weight_decl("W").unwrap().source, WeightSource::Inline(_)));
    let out = run_function(&m, "forward", &[("x".into(), input.clone())], &InlineWeights).unwrap();
    let got = out[0].1.to_f64_vec();
    assert_eq!(out[0].1.shape, vec![2, 32]);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    // From a file: raw_data is referenced in place.
    let dir = tmpdir("mlp");
    let path = dir.join("mlp.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let m = import_onnx(&path).unwrap();
    match &m.weight_decl("W").unwrap().source {
        WeightSource::Raw { file, offset } => {
            assert_eq!(file, "mlp.onnx");
            assert!(*offset > 0 && (*offset as usize) + 512 <= bytes.len());
        }
        other => panic!("expected a Raw weight, found {other:?}"),
    }
    let out = run_function(&m, "forward", &[("x".into(), input)], &FileWeights::new(&dir)).unwrap();
    for (g, w) in out[0].1.to_f64_vec().iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn symbolic_dims_are_sanitized() {
    let g = GraphProto {
        node: vec![node("Identity", &["x"], &["y"], vec![])],
        input: vec![vi(
            "x",
            data_type::FLOAT,
            &[DimValue::DimParam("batch size".into()), DimValue::DimParam("1st-dim".into()), dv(3)],
        )],
        output: vec![vi("y", data_type::FLOAT, &[])],
        ..Default::default()
    };
    let mut g2 = g.clone();
    g2.input[0]
        .r#type
        .as_mut()
        .unwrap()
        .tensor_type
        .as_mut()
        .unwrap()
        .shape
        .as_mut()
        .unwrap()
        .dim
        .push(Dimension::default());
    let m = import_onnx_bytes(&model(17, g2).encode_to_vec()).unwrap();
    let f = m.function("forward").unwrap();
    let shape = &f.ty(f.params()[0].1).shape;
    assert_eq!(shape[0], Dim::sym("batch_size"));
    assert_eq!(shape[1], Dim::sym("_1st_dim"));
    assert_eq!(shape[2], Dim::fixed(3));
    assert!(shape[3].is_unknown());
    let _ = g;
}

/// optimum types attention masks and present caches with `dim_param` expressions; they
/// become polynomials over the other inputs' symbols. Strings that merely contain an operator
/// character (`seq-len`, `a +`) stay single sanitized symbols.
#[test]
fn dim_param_expressions_become_polynomials() {
    let params = ["past_sequence_length + sequence_length", "2*batch", "n * 4 - 1", "seq-len", "a +", "a + +"];
    let g = GraphProto {
        node: vec![node("Identity", &["x"], &["y"], vec![])],
        input: vec![vi("x", data_type::FLOAT, &params.map(|p| DimValue::DimParam(p.into())))],
        output: vec![vi("y", data_type::FLOAT, &[])],
        ..Default::default()
    };
    let m = import_onnx_bytes(&model(17, g).encode_to_vec()).unwrap();
    let f = m.function("forward").unwrap();
    let shape = &f.ty(f.params()[0].1).shape;
    let (past, seq) = (Dim::sym("past_sequence_length"), Dim::sym("sequence_length"));
    assert_eq!(shape[0], past.add(&seq));
    assert_eq!(shape[1], Dim::fixed(2).mul(&Dim::sym("batch")));
    assert_eq!(shape[2], Dim::sym("n").mul(&Dim::fixed(4)).sub(&Dim::fixed(1)));
    assert_eq!(shape[3], Dim::sym("seq_len"));
    assert_eq!(shape[4], Dim::sym("a__"));
    assert_eq!(shape[5], Dim::sym("a____"));
}

#[test]
fn initializer_typed_fields() {
    let typed = |name: &str, dt: i32, dims: Vec<i64>, fill: &dyn Fn(&mut TensorProto)| {
        let mut t = TensorProto { name: name.into(), data_type: dt, dims, ..Default::default() };
        fill(&mut t);
        t
    };
    let inits = vec![
        typed("f", data_type::FLOAT, vec![2], &|t| t.float_data = vec![1.5, -2.0]),
        typed("i64", data_type::INT64, vec![3], &|t| t.int64_data = vec![1, -2, 3]),
        typed("i32", data_type::INT32, vec![2], &|t| t.int32_data = vec![7, -8]),
        typed("d", data_type::DOUBLE, vec![1], &|t| t.double_data = vec![0.25]),
        typed("h", data_type::FLOAT16, vec![1], &|t| t.int32_data = vec![0x3C00]),
        typed("b", data_type::BOOL, vec![2], &|t| t.int32_data = vec![1, 0]),
    ];
    let names = ["f", "i64", "i32", "d", "h", "b"];
    let g = GraphProto {
        node: names.iter().map(|n| node("Identity", &[n], &[&format!("o_{n}")], vec![])).collect(),
        initializer: inits.clone(),
        output: names.iter().map(|n| vi(&format!("o_{n}"), 0, &[])).collect(),
        ..Default::default()
    };
    let m = import_onnx_bytes(&model(17, g.clone()).encode_to_vec()).unwrap();
    let out = run_function(&m, "forward", &[], &InlineWeights).unwrap();
    assert_eq!(out[0].1.to_f64_vec(), vec![1.5, -2.0]);
    assert_eq!(out[1].1.to_i64_vec(), vec![1, -2, 3]);
    assert_eq!(out[2].1.dtype, DType::I32);
    assert_eq!(out[2].1.to_i64_vec(), vec![7, -8]);
    assert_eq!(out[3].1.dtype, DType::F64);
    assert_eq!(out[4].1.dtype, DType::F16);
    assert_eq!(out[4].1.to_f64_vec(), vec![1.0]);
    assert_eq!(out[5].1.to_i64_vec(), vec![1, 0]);
    // A count that does not match dims is refused, naming the initializer.
    let mut bad = g;
    bad.initializer[1].int64_data.pop();
    let err = import_onnx_bytes(&model(17, bad).encode_to_vec()).unwrap_err().to_string();
    assert!(err.contains("initializer `i64`") && err.contains("int64_data"), "{err}");
}

fn expect_err(m: &ModelProto, needles: &[&str]) -> String {
    let err = import_onnx_bytes(&m.encode_to_vec()).unwrap_err().to_string();
    for n in needles {
        assert!(err.contains(n), "`{err}` should mention `{n}`");
    }
    err
}

#[test]
fn hostile_bytes_are_refused_without_panicking() {
    let mut state = 0x2545F4914F6CDD1Du64;
    for len in [0usize, 1, 7, 64, 1000, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = import_onnx_bytes(&bytes);
        let _ = read_tensor_proto(&bytes);
    }
    // Deeply nested unknown groups and messages must not overflow the stack.
    let deep_groups: Vec<u8> = std::iter::repeat_n(0xFBu8, 200_000).collect(); // field 31, start group
    assert!(import_onnx_bytes(&deep_groups).is_err());
    let mut nested = Vec::new();
    for _ in 0..100_000 {
        // field 7 (graph), length-delimited, claiming the rest of the buffer
        let mut next = vec![0x3A];
        let mut len = nested.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                next.push(b);
                break;
            }
            next.push(b | 0x80);
        }
        next.extend(&nested);
        nested = next;
        if nested.len() > 300_000 {
            break;
        }
    }
    let _ = import_onnx_bytes(&nested);
    let good = mlp().encode_to_vec();
    for cut in [1, 10, good.len() / 2, good.len() - 1] {
        let r = import_onnx_bytes(&good[..cut]);
        assert!(r.is_err(), "truncated at {cut} should fail");
    }
    let err = import_onnx_bytes(&good[..good.len() / 2]).unwrap_err();
    assert!(matches!(err, OnnxError::Decode { .. } | OnnxError::Model(_)), "{err}");
    // A decode error from a file names the file.
    let dir = tmpdir("garbage");
    let path = dir.join("garbage.onnx");
    std::fs::write(&path, [0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap();
    let err = import_onnx(&path).unwrap_err().to_string();
    assert!(err.contains("garbage.onnx") && err.contains("ModelProto"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn single(op: NodeProto, inputs: Vec<ValueInfoProto>, outputs: &[&str]) -> GraphProto {
    GraphProto {
        node: vec![op],
        input: inputs,
        output: outputs.iter().map(|n| vi(n, 0, &[])).collect(),
        ..Default::default()
    }
}

#[test]
fn graph_errors_name_the_node() {
    let x = || vi("x", data_type::FLOAT, &[dv(2)]);
    // Undefined input.
    let mut n = node("Add", &["x", "nope"], &["y"], vec![]);
    n.name = "adder".into();
    expect_err(&model(17, single(n, vec![x()], &["y"])), &["`adder`", "Add", "`nope`", "not defined"]);
    // Duplicate value names.
    let g = GraphProto {
        node: vec![node("Neg", &["x"], &["y"], vec![]), node("Abs", &["x"], &["y"], vec![])],
        input: vec![x()],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["#1 (Abs)", "`y`", "defined twice"]);
    let g = GraphProto {
        node: vec![node("Neg", &["x"], &["y"], vec![])],
        initializer: vec![f32_tensor("w", &[1], vec![1.0]), f32_tensor("w", &[1], vec![2.0])],
        input: vec![x()],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["`w`", "defined twice"]);
    // Unused initializers are dropped; a used one keeps its value.
    let g = GraphProto {
        node: vec![node("Add", &["x", "w"], &["y"], vec![])],
        initializer: vec![f32_tensor("w", &[1], vec![1.0]), f32_tensor("stale", &[100], vec![0.0; 100])],
        input: vec![x()],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    let m = import_onnx_bytes(&model(17, g).encode_to_vec()).unwrap();
    assert!(m.weights.is_empty());
    // A cycle (or unsorted graph).
    let g = GraphProto {
        node: vec![node("Add", &["x", "b"], &["a"], vec![]), node("Neg", &["a"], &["b"], vec![])],
        input: vec![x()],
        output: vec![vi("b", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["#0 (Add)", "`b`", "#1 (Neg)", "cycle"]);
    // Unknown ops are listed.
    let g = single(node("FancyOp", &["x"], &["y"], vec![]), vec![x()], &["y"]);
    expect_err(&model(17, g), &["unsupported", "#0 (FancyOp)"]);
    // Opset newer than implemented.
    let g = single(node("Neg", &["x"], &["y"], vec![]), vec![x()], &["y"]);
    expect_err(&model(99, g), &["opset 99", "newer"]);
    // Undefined graph output.
    let g = single(node("Neg", &["x"], &["y"], vec![]), vec![x()], &["zz"]);
    expect_err(&model(17, g), &["`zz`"]);
    // Axes that are not constants.
    let g = single(
        node("ReduceSum", &["x", "axes"], &["y"], vec![]),
        vec![x(), vi("axes", data_type::INT64, &[dv(1)])],
        &["y"],
    );
    expect_err(&model(17, g), &["#0 (ReduceSum)", "axes", "must be a constant"]);
    // Inference failures name the node too.
    let g = single(
        node("MatMul", &["x", "w"], &["y"], vec![]),
        vec![x(), vi("w", data_type::FLOAT, &[dv(3), dv(5)])],
        &["y"],
    );
    expect_err(&model(17, g), &["#0 (MatMul)"]);
}

#[test]
fn huge_size_claims_are_refused_before_allocating() {
    let x = || vi("x", data_type::FLOAT, &[dv(2)]);
    let mut t = f32_tensor("w", &[1], vec![1.0]);
    t.dims = vec![1 << 40, 1 << 40];
    let g = GraphProto {
        node: vec![node("Identity", &["w"], &["y"], vec![])],
        initializer: vec![t.clone()],
        input: vec![x()],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["initializer `w`"]);
    t.dims = vec![i64::MAX, i64::MAX];
    let g = GraphProto {
        node: vec![node("Identity", &["w"], &["y"], vec![])],
        initializer: vec![t.clone()],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["overflow"]);
    t.dims = vec![-1];
    let g = GraphProto {
        node: vec![node("Identity", &["w"], &["y"], vec![])],
        initializer: vec![t],
        output: vec![vi("y", 0, &[])],
        ..Default::default()
    };
    expect_err(&model(17, g), &["negative"]);
    // A tensor proto claiming a huge shape with little data.
    let mut p = f32_tensor("t", &[1], vec![1.0]);
    p.dims = vec![1 << 30, 1 << 30];
    assert!(read_tensor_proto(&p.encode_to_vec()).is_err());
    // Ranks above the IR's maximum.
    let g = single(node("Neg", &["x"], &["y"], vec![]), vec![vi("x", data_type::FLOAT, &vec![dv(1); 40])], &["y"]);
    expect_err(&model(17, g), &["rank"]);
}

fn external_model(location: &str, offset: u64, length: Option<u64>) -> ModelProto {
    let mut t = TensorProto { name: "w".into(), data_type: data_type::FLOAT, dims: vec![256], ..Default::default() };
    t.data_location = DATA_LOCATION_EXTERNAL;
    t.external_data.push(StringStringEntryProto { key: "location".into(), value: location.into() });
    t.external_data.push(StringStringEntryProto { key: "offset".into(), value: offset.to_string() });
    if let Some(l) = length {
        t.external_data.push(StringStringEntryProto { key: "length".into(), value: l.to_string() });
    }
    model(
        17,
        GraphProto {
            node: vec![node("Neg", &["w"], &["y"], vec![])],
            initializer: vec![t],
            output: vec![vi("y", 0, &[])],
            ..Default::default()
        },
    )
}

#[test]
fn external_data_is_confined_and_bounds_checked() {
    let dir = tmpdir("ext");
    let data: Vec<u8> = (0..256u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut padded = vec![0u8; 16];
    padded.extend(&data);
    std::fs::write(dir.join("weights.bin"), &padded).unwrap();
    let write = |m: ModelProto| {
        let p = dir.join("model.onnx");
        std::fs::write(&p, m.encode_to_vec()).unwrap();
        p
    };
    // The good case loads and runs.
    let m = import_onnx(&write(external_model("weights.bin", 16, Some(1024)))).unwrap();
    let out = run_function(&m, "forward", &[], &FileWeights::new(&dir)).unwrap();
    assert_eq!(out[0].1.to_f64_vec()[3], -3.0);
    let err = |m: ModelProto| import_onnx(&write(m)).unwrap_err().to_string();
    let e = err(external_model("../weights.bin", 0, None));
    assert!(e.contains("..") && e.contains("initializer `w`"), "{e}");
    let abs = dir.join("weights.bin").display().to_string();
    let e = err(external_model(&abs, 0, None));
    assert!(e.contains("absolute"), "{e}");
    let e = err(external_model("weights.bin", 1000, None));
    assert!(e.contains("past the end"), "{e}");
    let e = err(external_model("weights.bin", u64::MAX - 2, None));
    assert!(e.contains("past the end"), "{e}");
    let e = err(external_model("weights.bin", 0, Some(12)));
    assert!(e.contains("length"), "{e}");
    let e = err(external_model("missing.bin", 0, None));
    assert!(e.contains("missing.bin"), "{e}");
    #[cfg(unix)]
    {
        let outside = tmpdir("ext-outside");
        std::fs::write(outside.join("secret.bin"), &padded).unwrap();
        let _ = std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("link.bin"));
        let e = err(external_model("link.bin", 0, None));
        assert!(e.contains("outside the model's folder"), "{e}");
        let _ = std::fs::remove_dir_all(&outside);
    }
    // From memory there is no folder to read from.
    assert!(import_onnx_bytes(&external_model("weights.bin", 16, None).encode_to_vec()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_proto_round_trip() {
    let t = Tensor::from_i64(DType::I64, vec![2, 2], vec![1, -2, 3, i64::MAX]).unwrap();
    let bytes = tensor_to_proto("t", &t).unwrap().encode_to_vec();
    assert_eq!(read_tensor_proto(&bytes).unwrap(), t);
    let mut p = TensorProto { data_type: data_type::STRING, dims: vec![1], ..Default::default() };
    p.string_data.push("a".into());
    let err = read_tensor_proto(&p.encode_to_vec()).unwrap_err().to_string();
    assert!(err.contains("STRING"), "{err}");
}

#[test]
fn opset_specific_forms() {
    // Opset 11 ReduceSum takes axes as an attribute, opset 13 as a constant input.
    let x = || vi("x", data_type::FLOAT, &[dv(2), dv(3)]);
    let ints = |name: &str, v: Vec<i64>| AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v,
        ..Default::default()
    };
    let g = single(
        node("ReduceSum", &["x"], &["y"], vec![ints("axes", vec![1]), attr_i("keepdims", 0)]),
        vec![x()],
        &["y"],
    );
    let m = import_onnx_bytes(&model(11, g).encode_to_vec()).unwrap();
    let input = Tensor::from_f64(DType::F32, vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    let out = run_function(&m, "forward", &[("x".into(), input.clone())], &InlineWeights).unwrap();
    assert_eq!(out[0].1.to_f64_vec(), vec![6.0, 15.0]);
    let axes = tensor_to_proto("axes", &Tensor::from_i64(DType::I64, vec![1], vec![0]).unwrap()).unwrap();
    let mut g = single(node("ReduceSum", &["x", "axes"], &["y"], vec![]), vec![x()], &["y"]);
    g.initializer.push(axes);
    let m = import_onnx_bytes(&model(13, g).encode_to_vec()).unwrap();
    let out = run_function(&m, "forward", &[("x".into(), input)], &InlineWeights).unwrap();
    assert_eq!(out[0].1.to_f64_vec(), vec![5.0, 7.0, 9.0]);
    assert_eq!(out[0].1.shape, vec![1, 3]);
}

#[test]
fn dynamic_shape_chain_with_symbolic_batch() {
    // y = reshape(x, concat(unsqueeze(gather(shape(x), 0)), [-1])) : [batch, 2, 3] -> [batch, 6]
    let axes0 = tensor_to_proto("axes0", &Tensor::from_i64(DType::I64, vec![1], vec![0]).unwrap()).unwrap();
    let idx = tensor_to_proto("idx", &Tensor::scalar_i64(DType::I64, 0)).unwrap();
    let minus1 = tensor_to_proto("minus1", &Tensor::from_i64(DType::I64, vec![1], vec![-1]).unwrap()).unwrap();
    let g = GraphProto {
        node: vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "idx"], &["b"], vec![attr_i("axis", 0)]),
            node("Unsqueeze", &["b", "axes0"], &["b1"], vec![]),
            node("Concat", &["b1", "minus1"], &["target"], vec![attr_i("axis", 0)]),
            node("Reshape", &["x", "target"], &["y"], vec![]),
            node("Split", &["y"], &["p", "q"], vec![attr_i("axis", 1)]),
        ],
        initializer: vec![axes0, idx, minus1],
        input: vec![vi("x", data_type::FLOAT, &[DimValue::DimParam("batch".into()), dv(2), dv(3)])],
        output: vec![vi("y", 0, &[]), vi("q", 0, &[])],
        ..Default::default()
    };
    let m = import_onnx_bytes(&model(17, g).encode_to_vec()).unwrap();
    let x = Tensor::from_f64(DType::F32, vec![3, 2, 3], (0..18).map(f64::from).collect()).unwrap();
    let out = run_function(&m, "forward", &[("x".into(), x)], &InlineWeights).unwrap();
    assert_eq!(out[0].1.shape, vec![3, 6]);
    assert_eq!(out[1].1.shape, vec![3, 3]);
    assert_eq!(out[1].1.to_f64_vec()[..3], [3.0, 4.0, 5.0]);
}

#[test]
fn frozen_inputs_become_constants() {
    let dir = tmpdir("frozen");
    let g = single(
        node("ReduceSum", &["x", "axes"], &["y"], vec![attr_i("keepdims", 0)]),
        vec![vi("x", data_type::FLOAT, &[dv(2), dv(2)]), vi("axes", data_type::INT64, &[dv(1)])],
        &["y"],
    );
    let path = dir.join("m.onnx");
    std::fs::write(&path, model(13, g).encode_to_vec()).unwrap();
    assert!(import_onnx(&path).is_err());
    let axes = Tensor::from_i64(DType::I64, vec![1], vec![1]).unwrap();
    let opts = ferrumc_onnx::ImportOptions { frozen_inputs: vec![("axes".into(), axes)] };
    let m = ferrumc_onnx::import_onnx_with(&path, &opts).unwrap();
    assert_eq!(m.function("forward").unwrap().params().len(), 1);
    let x = Tensor::from_f64(DType::F32, vec![2, 2], vec![1., 2., 3., 4.]).unwrap();
    let out = run_function(&m, "forward", &[("x".into(), x)], &InlineWeights).unwrap();
    assert_eq!(out[0].1.to_f64_vec(), vec![3.0, 7.0]);
    // A frozen value of the wrong dtype is refused.
    let bad = ferrumc_onnx::ImportOptions { frozen_inputs: vec![("axes".into(), Tensor::scalar_f64(DType::F32, 1.0))] };
    assert!(ferrumc_onnx::import_onnx_with(&path, &bad).unwrap_err().to_string().contains("frozen input `axes`"));
    let _ = std::fs::remove_dir_all(&dir);
}
