//! Tests of the interpreter driver: input binding, symbol conflicts, declared-type
//! checks, weight loading, error naming, and a check that every op in the table has an
//! implementation.

use super::test_util::*;
use super::*;
use crate::graph::{WeightDecl, WeightSource};
use crate::op::{GeluApproximation, PadMode, ScatterReduction};
use crate::weights::{FileWeights, InlineWeights};

fn f32ty(dims: &[i64]) -> TensorType {
    TensorType::fixed(DType::F32, dims)
}

fn sym_ty(dtype: DType, dims: &[&str]) -> TensorType {
    TensorType::new(
        dtype,
        dims.iter().map(|d| d.parse::<i64>().map(Dim::fixed).unwrap_or_else(|_| Dim::sym(*d))).collect(),
    )
}

/// `y = relu(linear(x, @w, @b)) * 2`, with x: f32[?batch, 2].
fn mlp_module() -> Module {
    let mut m = Module::new("mlp");
    m.weights.push(WeightDecl {
        name: "w".into(),
        ty: f32ty(&[3, 2]),
        source: WeightSource::Inline(f32t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, -1.0, -1.0])),
    });
    m.weights.push(WeightDecl {
        name: "b".into(),
        ty: f32ty(&[3]),
        source: WeightSource::Inline(f32t(&[3], &[0.0, 1.0, 0.0])),
    });
    let mut f = Function::new("forward");
    let x = f.add_param("x", sym_ty(DType::F32, &["batch", "2"]));
    let w = f.weight("w", f32ty(&[3, 2]));
    let b = f.weight("b", f32ty(&[3]));
    let h = f.add_op1(Op::Linear, vec![x, w, b], sym_ty(DType::F32, &["batch", "3"]));
    let r = f.add_op1(Op::Relu, vec![h], sym_ty(DType::F32, &["batch", "3"]));
    let two = f.add_op1(Op::Constant { value: Tensor::scalar_f64(DType::F32, 2.0) }, vec![], f32ty(&[]));
    let y = f.add_op1(Op::Mul, vec![r, two], sym_ty(DType::F32, &["batch", "3"]));
    f.add_output("y", y);
    f.add_output("x_again", x);
    f.add_output("w", w);
    m.functions.push(f);
    m
}

#[test]
fn runs_a_small_mlp() {
    let m = mlp_module();
    let x = f32t(&[2, 2], &[1.0, 2.0, -3.0, 0.5]);
    let out = run_function(&m, "forward", &[("x".into(), x.clone())], &InlineWeights).unwrap();
    assert_eq!(out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["y", "x_again", "w"]);
    assert_eq!(out[0].1.shape, vec![2, 3]);
    assert_eq!(out[0].1.to_f64_vec(), vec![2.0, 6.0, 0.0, 0.0, 3.0, 5.0]);
    assert!(out[1].1.bit_eq(&x));
    assert_eq!(out[2].1.shape, vec![3, 2]);
}

#[test]
fn input_errors_are_named() {
    let m = mlp_module();
    let run =
        |inputs: Vec<(String, Tensor)>| run_function(&m, "forward", &inputs, &InlineWeights).unwrap_err().to_string();
    let e = run(vec![]);
    assert!(e.contains("missing input `x`") && e.contains("`forward`"), "{e}");
    let e = run(vec![("x".into(), f32t(&[1, 2], &[0.0; 2])), ("z".into(), f32t(&[1], &[0.0]))]);
    assert!(e.contains("unexpected input `z`"), "{e}");
    let e = run(vec![("x".into(), f64t(&[1, 2], &[0.0; 2]))]);
    assert!(e.contains("input `x`") && e.contains("expected dtype f32"), "{e}");
    let e = run(vec![("x".into(), f32t(&[2], &[0.0; 2]))]);
    assert!(e.contains("expected rank 2"), "{e}");
    let e = run(vec![("x".into(), f32t(&[1, 3], &[0.0; 3]))]);
    assert!(e.contains("dim 1 must be 2"), "{e}");
    let e = run(vec![("x".into(), f32t(&[1, 2], &[0.0; 2])), ("x".into(), f32t(&[1, 2], &[0.0; 2]))]);
    assert!(e.contains("given twice"), "{e}");
    // A tensor whose data disagrees with its shape.
    let bad = Tensor { dtype: DType::F32, shape: vec![1, 2], data: crate::TensorData::Float(vec![0.0; 3]) };
    let e = run(vec![("x".into(), bad)]);
    assert!(e.contains("holds 3"), "{e}");
    let e = run_function(&m, "nope", &[], &InlineWeights).unwrap_err().to_string();
    assert!(e.contains("no function `nope`") && e.contains("`forward`"), "{e}");
}

#[test]
fn symbol_conflicts_name_both_inputs() {
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let a = f.add_param("a", sym_ty(DType::F32, &["n"]));
    let b = f.add_param("b", sym_ty(DType::F32, &["n"]));
    let c = f.add_op1(Op::Add, vec![a, b], sym_ty(DType::F32, &["n"]));
    f.add_output("c", c);
    m.functions.push(f);
    let e = run_function(
        &m,
        "main",
        &[("a".into(), f32t(&[2], &[1.0, 2.0])), ("b".into(), f32t(&[3], &[0.0; 3]))],
        &InlineWeights,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("?n") && e.contains("input `a`") && e.contains("input `b`") && e.contains('2') && e.contains('3'),
        "{e}"
    );
    let ok = run_function(
        &m,
        "main",
        &[("a".into(), f32t(&[2], &[1.0, 2.0])), ("b".into(), f32t(&[2], &[3.0, 4.0]))],
        &InlineWeights,
    )
    .unwrap();
    assert_eq!(ok[0].1.to_f64_vec(), vec![4.0, 6.0]);
}

#[test]
fn declared_types_are_checked_and_ops_named() {
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[2]));
    let e = f.add_op1(Op::Exp, vec![x], f32ty(&[2]));
    let bad = f.add_op1(Op::Add, vec![e, x], f32ty(&[3]));
    f.add_output("y", bad);
    m.functions.push(f);
    let err =
        run_function(&m, "main", &[("x".into(), f32t(&[2], &[0.0, 1.0]))], &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("`%1 = add`") && err.contains("declared f32[3]") && err.contains("[2]"), "{err}");

    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[2]));
    let y = f.add_op1(Op::Cast { to: DType::I64 }, vec![x], f32ty(&[2]));
    f.add_output("y", y);
    m.functions.push(f);
    let err =
        run_function(&m, "main", &[("x".into(), f32t(&[2], &[0.0, 1.0]))], &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("`%0 = cast`") && err.contains("dtype i64"), "{err}");

    // Run-time errors name the op and the problem.
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", TensorType::fixed(DType::I64, &[2]));
    let z = f.add_op1(Op::Constant { value: i64t(&[], &[0]) }, vec![], TensorType::fixed(DType::I64, &[]));
    let q = f.add_op1(Op::Div, vec![x, z], TensorType::fixed(DType::I64, &[2]));
    f.add_output("q", q);
    m.functions.push(f);
    let err = run_function(&m, "main", &[("x".into(), i64t(&[2], &[1, 2]))], &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("`%1 = div`") && err.contains("by zero"), "{err}");
}

#[test]
fn shapes_from_declared_types_and_data_dependent_symbols() {
    // x: f32[?b, 6] → reshape (static, declared [?b, 2, 3]) → range over a data-dependent
    // length binds ?n, which a later static reshape uses.
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", sym_ty(DType::F32, &["b", "6"]));
    let r = f.add_op1(Op::Reshape { allowzero: false }, vec![x], sym_ty(DType::F32, &["b", "2", "3"]));
    let s = f.add_op1(Op::Constant { value: i64t(&[], &[0]) }, vec![], TensorType::scalar(DType::I64));
    let l = f.add_op1(Op::Constant { value: i64t(&[], &[4]) }, vec![], TensorType::scalar(DType::I64));
    let d = f.add_op1(Op::Constant { value: i64t(&[], &[1]) }, vec![], TensorType::scalar(DType::I64));
    let rng = f.add_op1(Op::Range, vec![s, l, d], sym_ty(DType::I64, &["n"]));
    let rr = f.add_op1(Op::Reshape { allowzero: false }, vec![rng], sym_ty(DType::I64, &["n", "1"]));
    f.add_output("r", r);
    f.add_output("rr", rr);
    m.functions.push(f);
    let out = run_function(&m, "main", &[("x".into(), f32t(&[2, 6], &[0.0; 12]))], &InlineWeights).unwrap();
    assert_eq!(out[0].1.shape, vec![2, 2, 3]);
    assert_eq!(out[1].1.shape, vec![4, 1]);

    // A declared type with an unbound symbol cannot give a shape.
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[6]));
    let r = f.add_op1(Op::Reshape { allowzero: false }, vec![x], sym_ty(DType::F32, &["q", "3"]));
    f.add_output("r", r);
    m.functions.push(f);
    let err = run_function(&m, "main", &[("x".into(), f32t(&[6], &[0.0; 6]))], &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("`%0 = reshape`") && err.contains("?q"), "{err}");
}

#[test]
fn cycles_and_weights_are_reported() {
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[1]));
    let a = f.add_op1(Op::Add, vec![x, x], f32ty(&[1]));
    let b = f.add_op1(Op::Neg, vec![a], f32ty(&[1]));
    let add = f.producer(a).unwrap();
    f.set_operand(add, 1, b);
    f.add_output("b", b);
    m.functions.push(f);
    let err = run_function(&m, "main", &[("x".into(), f32t(&[1], &[0.0]))], &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("cycle") && err.contains("add"), "{err}");

    // A weight without a declaration, and a file weight that cannot be read.
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[2]));
    let w = f.weight("missing", f32ty(&[2]));
    let y = f.add_op1(Op::Add, vec![x, w], f32ty(&[2]));
    f.add_output("y", y);
    m.functions.push(f.clone());
    let input = [("x".to_string(), f32t(&[2], &[0.0; 2]))];
    let err = run_function(&m, "main", &input, &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("weight `@missing`") && err.contains("no such weight"), "{err}");
    m.weights.push(WeightDecl {
        name: "missing".into(),
        ty: f32ty(&[2]),
        source: WeightSource::Raw { file: "nope.bin".into(), offset: 0 },
    });
    let err = run_function(&m, "main", &input, &FileWeights::new(std::env::temp_dir())).unwrap_err().to_string();
    assert!(err.contains("weight `missing`") && err.contains("nope.bin"), "{err}");
    m.weights[0].ty = f32ty(&[3]);
    let err = run_function(&m, "main", &input, &InlineWeights).unwrap_err().to_string();
    assert!(err.contains("used as f32[2] but declared as f32[3]"), "{err}");
}

#[test]
fn multi_result_ops_and_freed_values() {
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let x = f.add_param("x", f32ty(&[4]));
    let tk = f.add_op(
        Op::TopK { axis: 0, k: 2, largest: true, sorted: true },
        vec![x],
        vec![f32ty(&[2]), TensorType::fixed(DType::I64, &[2])],
    );
    let res = f.op(tk).unwrap().results.clone();
    let n = f.add_op1(Op::Neg, vec![res[0]], f32ty(&[2]));
    f.add_output("neg", n);
    f.add_output("idx", res[1]);
    m.functions.push(f);
    let out = run_function(&m, "main", &[("x".into(), f32t(&[4], &[1.0, 4.0, 2.0, 3.0]))], &InlineWeights).unwrap();
    assert_eq!(out[0].1.to_f64_vec(), vec![-4.0, -3.0]);
    assert_eq!(out[1].1.to_i64_vec(), vec![1, 3]);
}

/// An op of every name in the table, with operands it accepts.
fn op_case(name: &str) -> (Op, Vec<Tensor>, Vec<TensorType>) {
    let x = f32t(&[2, 3], &[0.5, -1.0, 2.0, 3.0, -0.25, 1.0]);
    let b = boolt(&[2, 3], &[true, false, true, false, true, true]);
    let i = i64t(&[2], &[1, 0]);
    let same = vec![f32ty(&[2, 3])];
    let ax = |axes: Vec<i64>| (axes, false);
    let red = |op: fn(Vec<i64>, bool) -> Op| (op(ax(vec![1]).0, false), vec![x.clone()], vec![f32ty(&[2])]);
    match name {
        "constant" => (Op::Constant { value: x.clone() }, vec![], same),
        "neg" => (Op::Neg, vec![x], same),
        "abs" => (Op::Abs, vec![x], same),
        "sqrt" => (Op::Sqrt, vec![x], same),
        "rsqrt" => (Op::Rsqrt, vec![x], same),
        "reciprocal" => (Op::Reciprocal, vec![x], same),
        "exp" => (Op::Exp, vec![x], same),
        "log" => (Op::Log, vec![x], same),
        "tanh" => (Op::Tanh, vec![x], same),
        "erf" => (Op::Erf, vec![x], same),
        "sigmoid" => (Op::Sigmoid, vec![x], same),
        "relu" => (Op::Relu, vec![x], same),
        "silu" => (Op::Silu, vec![x], same),
        "softplus" => (Op::Softplus, vec![x], same),
        "sin" => (Op::Sin, vec![x], same),
        "cos" => (Op::Cos, vec![x], same),
        "floor" => (Op::Floor, vec![x], same),
        "ceil" => (Op::Ceil, vec![x], same),
        "round" => (Op::Round, vec![x], same),
        "sign" => (Op::Sign, vec![x], same),
        "not" => (Op::Not, vec![b], vec![TensorType::fixed(DType::Bool, &[2, 3])]),
        "isnan" => (Op::IsNan, vec![x], vec![TensorType::fixed(DType::Bool, &[2, 3])]),
        "identity" => (Op::Identity, vec![x], same),
        "gelu" => (Op::Gelu { approximate: GeluApproximation::None }, vec![x], same),
        "leaky_relu" => (Op::LeakyRelu { alpha: 0.1 }, vec![x], same),
        "clip" => (Op::Clip { min: Some(0.0), max: Some(1.0) }, vec![x], same),
        "cast" => (Op::Cast { to: DType::F16 }, vec![x], vec![TensorType::fixed(DType::F16, &[2, 3])]),
        "add" => (Op::Add, vec![x.clone(), x], same),
        "sub" => (Op::Sub, vec![x.clone(), x], same),
        "mul" => (Op::Mul, vec![x.clone(), x], same),
        "div" => (Op::Div, vec![x.clone(), x], same),
        "pow" => (Op::Pow, vec![x.clone(), x], same),
        "max" => (Op::Max, vec![x.clone(), x], same),
        "min" => (Op::Min, vec![x.clone(), x], same),
        "mod" => (Op::Mod, vec![x.clone(), x], same),
        "fmod" => (Op::Fmod, vec![x.clone(), x], same),
        "and" | "or" | "xor" => {
            let op = match name {
                "and" => Op::And,
                "or" => Op::Or,
                _ => Op::Xor,
            };
            (op, vec![b.clone(), b], vec![TensorType::fixed(DType::Bool, &[2, 3])])
        }
        "equal" | "less" | "less_equal" | "greater" | "greater_equal" => {
            let op = match name {
                "equal" => Op::Equal,
                "less" => Op::Less,
                "less_equal" => Op::LessEqual,
                "greater" => Op::Greater,
                _ => Op::GreaterEqual,
            };
            (op, vec![x.clone(), x], vec![TensorType::fixed(DType::Bool, &[2, 3])])
        }
        "where" => (Op::Where, vec![b, x.clone(), x], same),
        "reduce_sum" => red(|axes, keepdims| Op::ReduceSum { axes, keepdims }),
        "reduce_mean" => red(|axes, keepdims| Op::ReduceMean { axes, keepdims }),
        "reduce_max" => red(|axes, keepdims| Op::ReduceMax { axes, keepdims }),
        "reduce_min" => red(|axes, keepdims| Op::ReduceMin { axes, keepdims }),
        "reduce_prod" => red(|axes, keepdims| Op::ReduceProd { axes, keepdims }),
        "reduce_sum_square" => red(|axes, keepdims| Op::ReduceSumSquare { axes, keepdims }),
        "reduce_l1" => red(|axes, keepdims| Op::ReduceL1 { axes, keepdims }),
        "reduce_l2" => red(|axes, keepdims| Op::ReduceL2 { axes, keepdims }),
        "reduce_log_sum_exp" => red(|axes, keepdims| Op::ReduceLogSumExp { axes, keepdims }),
        "argmax" => (
            Op::ArgMax { axis: 1, keepdims: false, select_last_index: false },
            vec![x],
            vec![TensorType::fixed(DType::I64, &[2])],
        ),
        "argmin" => (
            Op::ArgMin { axis: 1, keepdims: false, select_last_index: true },
            vec![x],
            vec![TensorType::fixed(DType::I64, &[2])],
        ),
        "softmax" => (Op::Softmax { axis: -1 }, vec![x], same),
        "log_softmax" => (Op::LogSoftmax { axis: -1 }, vec![x], same),
        "cumsum" => (Op::CumSum { axis: 1, exclusive: true, reverse: false }, vec![x], same),
        "topk" => (
            Op::TopK { axis: 1, k: 2, largest: true, sorted: true },
            vec![x],
            vec![f32ty(&[2, 2]), TensorType::fixed(DType::I64, &[2, 2])],
        ),
        "matmul" => (Op::MatMul, vec![x.clone(), f32t(&[3, 1], &[1.0, 2.0, 3.0])], vec![f32ty(&[2, 1])]),
        "gemm" => (
            Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true },
            vec![x.clone(), x, f32t(&[1], &[1.0])],
            vec![f32ty(&[2, 2])],
        ),
        "linear" => (Op::Linear, vec![x.clone(), x], vec![f32ty(&[2, 2])]),
        "quantized_linear" => (
            Op::QuantizedLinear,
            vec![x, Tensor::from_i64(DType::I8, vec![1, 3], vec![1, 2, 3]).unwrap(), f32t(&[1], &[0.5])],
            vec![f32ty(&[2, 1])],
        ),
        "packed_linear" => (
            Op::PackedLinear { out_features: 2 },
            vec![x, Tensor::from_f64(DType::F32, vec![1, 3, 16], vec![0.5; 48]).unwrap()],
            vec![f32ty(&[2, 2])],
        ),
        "reshape" => (Op::Reshape { allowzero: false }, vec![x, i64t(&[1], &[-1])], vec![f32ty(&[6])]),
        "transpose" => (Op::Transpose { perm: vec![1, 0] }, vec![x], vec![f32ty(&[3, 2])]),
        "concat" => (Op::Concat { axis: 0 }, vec![x.clone(), x], vec![f32ty(&[4, 3])]),
        "split" => (Op::Split { axis: 1 }, vec![x], vec![f32ty(&[2, 1]), f32ty(&[2, 2])]),
        "slice" => (
            Op::Slice { axes: vec![1], starts: vec![-1], ends: vec![-4], steps: vec![-1] },
            vec![x],
            vec![f32ty(&[2, 3])],
        ),
        "gather" => (Op::Gather { axis: 0 }, vec![x, i], same),
        "gather_elements" => (Op::GatherElements { axis: 0 }, vec![x, i64t(&[1, 3], &[1, 0, 1])], vec![f32ty(&[1, 3])]),
        "gather_nd" => (Op::GatherNd { batch_dims: 0 }, vec![x, i64t(&[1, 2], &[1, 2])], vec![f32ty(&[1])]),
        "scatter_nd" => (
            Op::ScatterNd { reduction: ScatterReduction::Add },
            vec![x, i64t(&[1, 1], &[0]), f32t(&[1, 3], &[1.0; 3])],
            same,
        ),
        "expand" => (Op::Expand, vec![f32t(&[3], &[1.0, 2.0, 3.0])], same),
        "squeeze" => (Op::Squeeze { axes: vec![0] }, vec![f32t(&[1, 3], &[1.0; 3])], vec![f32ty(&[3])]),
        "unsqueeze" => (Op::Unsqueeze { axes: vec![1] }, vec![x], vec![f32ty(&[2, 1, 3])]),
        "shape" => (Op::Shape { start: 0, end: None }, vec![x], vec![TensorType::fixed(DType::I64, &[2])]),
        "constant_of_shape" => (Op::ConstantOfShape { value: f32t(&[1], &[7.0]) }, vec![], same),
        "range" => (
            Op::Range,
            vec![i64t(&[], &[0]), i64t(&[], &[3]), i64t(&[], &[1])],
            vec![TensorType::fixed(DType::I64, &[3])],
        ),
        "trilu" => (Op::Trilu { upper: true, k: 0 }, vec![x], same),
        "pad" => {
            (Op::Pad { pads: vec![0, 1, 0, 1], mode: PadMode::Reflect, value: 0.0 }, vec![x], vec![f32ty(&[2, 5])])
        }
        "tile" => (Op::Tile { repeats: vec![1, 2] }, vec![x], vec![f32ty(&[2, 6])]),
        "layer_norm" => {
            (Op::LayerNorm { axis: -1, epsilon: 1e-5 }, vec![x, f32t(&[3], &[1.0; 3]), f32t(&[3], &[0.0; 3])], same)
        }
        "rms_norm" => (Op::RmsNorm { epsilon: 1e-6 }, vec![x, f32t(&[3], &[1.0; 3])], same),
        "rms_norm_residual" => (
            Op::RmsNormResidual { epsilon: 1e-6 },
            vec![x.clone(), x, f32t(&[3], &[1.0; 3])],
            vec![f32ty(&[2, 3]), f32ty(&[2, 3])],
        ),
        "rotary_embedding" => (
            Op::RotaryEmbedding { interleaved: false, rotary_dim: 0 },
            vec![
                f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]),
                f32t(&[4, 1], &[1.0; 4]),
                f32t(&[4, 1], &[0.0; 4]),
                i64t(&[1, 2], &[0, 3]),
            ],
            vec![f32ty(&[1, 1, 2, 2])],
        ),
        "attention" => {
            let t = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
            (Op::Attention { scale: None, causal: true }, vec![t.clone(), t.clone(), t], vec![f32ty(&[1, 1, 2, 2])])
        }
        "silu_mul" => (Op::SiluMul, vec![x.clone(), x], same),
        "sample" => (
            Op::Sample { temperature: 0.8, top_k: 2, top_p: 0.9, repetition_penalty: 1.1, seed: 42 },
            vec![x, i64t(&[2, 1], &[0, 2])],
            vec![TensorType::fixed(DType::I64, &[2])],
        ),
        other => panic!("no coverage case for op `{other}`: add one here and an implementation in interp"),
    }
}

#[test]
fn every_op_in_the_table_is_implemented() {
    let bindings = HashMap::new();
    for name in Op::NAMES {
        let (op, args, types) = op_case(name);
        assert_eq!(op.name(), *name);
        let refs: Vec<&Tensor> = args.iter().collect();
        let ctx = OpCtx { result_types: types.iter().collect(), bindings: &bindings };
        let out = eval_op(&op, &refs, &ctx).unwrap_or_else(|e| panic!("op `{name}` failed: {e}"));
        assert_eq!(out.len(), types.len(), "op `{name}`");
        for (t, ty) in out.iter().zip(&types) {
            assert_eq!(t.dtype, ty.dtype, "op `{name}`");
            let want: Vec<usize> = ty.fixed_shape().unwrap().iter().map(|&d| d as usize).collect();
            assert_eq!(t.shape, want, "op `{name}`");
        }
    }
}

#[test]
fn attribute_round_trip_of_ops_used_by_cases() {
    // The coverage cases must stay valid ops of the table (attributes rebuild).
    for name in Op::NAMES {
        let (op, _, _) = op_case(name);
        let rebuilt = Op::from_parts(op.name(), &op.attr_map()).unwrap();
        assert_eq!(rebuilt, op);
    }
}

#[test]
fn hostile_sizes_are_refused_not_allocated() {
    let b = HashMap::new();
    let big = 1i64 << 40;
    let ty = [f32ty(&[1])];
    let ctx = OpCtx { result_types: ty.iter().collect(), bindings: &b };
    let x = f32t(&[1], &[1.0]);
    let cases: Vec<(Op, Vec<Tensor>)> = vec![
        (Op::Expand, vec![x.clone(), i64t(&[2], &[big, big])]),
        (Op::ConstantOfShape { value: f32t(&[1], &[0.0]) }, vec![i64t(&[1], &[big])]),
        (Op::Pad { pads: vec![0, big], mode: PadMode::Edge, value: 0.0 }, vec![x.clone()]),
        (Op::Tile { repeats: vec![big] }, vec![x.clone()]),
        (Op::Range, vec![i64t(&[], &[0]), i64t(&[], &[big]), i64t(&[], &[1])]),
        (Op::Reshape { allowzero: true }, vec![f32t(&[0], &[]), i64t(&[3], &[0, big, big])]),
    ];
    for (op, args) in cases {
        let refs: Vec<&Tensor> = args.iter().collect();
        let e = eval_op(&op, &refs, &ctx).unwrap_err();
        assert!(e.contains("limit") || e.contains("too many") || e.contains("too large"), "{}: {e}", op.name());
    }
    // An input claiming an empty shape with absurd other dims.
    let mut m = Module::new("m");
    let mut f = Function::new("main");
    let p = f.add_param("x", sym_ty(DType::F32, &["a", "b"]));
    f.add_output("y", p);
    m.functions.push(f);
    let bad = Tensor { dtype: DType::F32, shape: vec![0, 1 << 40], data: crate::TensorData::Float(vec![]) };
    let e = run_function(&m, "main", &[("x".into(), bad)], &InlineWeights).unwrap_err().to_string();
    assert!(e.contains("input `x`") && e.contains("limit"), "{e}");
}

#[test]
fn eval_single_op_matches_a_run_and_checks_declared_types() {
    let x = Tensor::from_f64(DType::F32, vec![3], vec![0.1, 1.0, -2.0]).unwrap();
    let ty = TensorType::fixed(DType::F32, &[3]);
    let got = eval_single_op(&Op::Exp, &[&x], &[&ty]).unwrap();
    let want: Vec<f64> = [0.1f64, 1.0, -2.0].iter().map(|v| f64::from((f64::from(*v as f32)).exp() as f32)).collect();
    assert_eq!(got[0].to_f64_vec(), want);
    // A declared type the op does not produce is an error, not a silently wrong constant.
    assert!(eval_single_op(&Op::Exp, &[&x], &[&TensorType::fixed(DType::F32, &[4])]).is_err());
    assert!(eval_single_op(&Op::Add, &[&x], &[&ty]).is_err());
}
