//! Integration tests for shape/dtype inference (every op, symbolic dims, main error
//! classes) and for the verifier (every invariant has a failing case; errors are
//! collected, not stopped at the first). Modules are built with the graph API directly.

use ferrumc_ir::infer::{add_inferred, infer_types, types_agree};
use ferrumc_ir::op::{GeluApproximation, PadMode, ScatterReduction};
use ferrumc_ir::verify::{describe, verify_function, verify_module, Anchor, VerifyError};
use ferrumc_ir::{DType, Dim, Function, Module, Op, Tensor, TensorData, TensorType, ValueId, WeightDecl, WeightSource};

// ---------------------------------------------------------------------- helpers

/// A type from a compact spelling: `"?b, 8, ?"` (`?name` symbol, `?` unknown, integer static).
fn ty(dtype: DType, dims: &str) -> TensorType {
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('?') {
            Some("") => Dim::Unknown,
            Some(name) => Dim::sym(name),
            None => Dim::fixed(s.parse().unwrap()),
        })
        .collect();
    TensorType::new(dtype, shape)
}

fn f32t(dims: &str) -> TensorType {
    ty(DType::F32, dims)
}

fn i64t(dims: &str) -> TensorType {
    ty(DType::I64, dims)
}

fn sym(s: &str) -> Dim {
    Dim::sym(s)
}

fn infer(op: Op, operands: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    infer_types(&op, operands, &[], None)
}

/// Inference with a single result expected.
fn inf1(op: Op, operands: &[&TensorType]) -> TensorType {
    let name = op.name();
    let mut out = infer(op, operands).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out.len(), 1, "{name}");
    out.remove(0)
}

fn err(op: Op, operands: &[&TensorType]) -> String {
    let name = op.name();
    match infer(op, operands) {
        Ok(t) => panic!("{name}: expected an error, inferred {t:?}"),
        Err(e) => e,
    }
}

fn assert_err_contains(e: &str, needle: &str) {
    assert!(e.contains(needle), "error `{e}` does not contain `{needle}`");
}

fn ints(values: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, vec![values.len()], values.to_vec()).unwrap()
}

fn reduce_ops(axes: Vec<i64>, keepdims: bool) -> Vec<Op> {
    vec![
        Op::ReduceSum { axes: axes.clone(), keepdims },
        Op::ReduceMean { axes: axes.clone(), keepdims },
        Op::ReduceMax { axes: axes.clone(), keepdims },
        Op::ReduceMin { axes: axes.clone(), keepdims },
        Op::ReduceProd { axes: axes.clone(), keepdims },
        Op::ReduceSumSquare { axes: axes.clone(), keepdims },
        Op::ReduceL1 { axes: axes.clone(), keepdims },
        Op::ReduceL2 { axes: axes.clone(), keepdims },
        Op::ReduceLogSumExp { axes, keepdims },
    ]
}

// ---------------------------------------------------------------------- inference: elementwise

#[test]
fn constant_literal_gives_its_type() {
    let t = inf1(Op::Constant { value: ints(&[1, 2, 3]) }, &[]);
    assert_eq!(t, i64t("3"));
    let q = Tensor::from_f64(DType::Q8_0, vec![32], vec![0.0; 32]).unwrap();
    assert_err_contains(&err(Op::Constant { value: q }, &[]), "quantized");
    let broken = Tensor { dtype: DType::I64, shape: vec![2], data: TensorData::Int(vec![1]) };
    assert_err_contains(&err(Op::Constant { value: broken }, &[]), "has 1 elements but its shape");
}

#[test]
fn unary_numeric_and_float_ops() {
    let xi = i64t("?b, 4");
    let xf = f32t("?b, ?s");
    for op in [Op::Neg, Op::Abs, Op::Relu, Op::Sign, Op::Identity, Op::Clip { min: Some(0.0), max: None }] {
        assert_eq!(inf1(op, &[&xi]), xi);
    }
    let float_ops = vec![
        Op::Sqrt,
        Op::Rsqrt,
        Op::Reciprocal,
        Op::Exp,
        Op::Log,
        Op::Tanh,
        Op::Erf,
        Op::Sigmoid,
        Op::Silu,
        Op::Softplus,
        Op::Sin,
        Op::Cos,
        Op::Floor,
        Op::Ceil,
        Op::Round,
        Op::Gelu { approximate: GeluApproximation::Tanh },
        Op::LeakyRelu { alpha: 0.1 },
    ];
    for op in float_ops {
        assert_eq!(inf1(op.clone(), &[&xf]), xf);
        assert_err_contains(&err(op, &[&xi]), "operand 0 (x): expected a float dtype");
    }
    assert_err_contains(&err(Op::Neg, &[&ty(DType::Bool, "2")]), "expected a numeric dtype, found bool");
    assert_err_contains(&err(Op::Clip { min: Some(2.0), max: Some(1.0) }, &[&xf]), "min 2 is greater than max 1");
}

#[test]
fn logical_isnan_cast() {
    let b = ty(DType::Bool, "?n");
    assert_eq!(inf1(Op::Not, &[&b]), b);
    assert_err_contains(&err(Op::Not, &[&f32t("?n")]), "expected bool, found f32");
    assert_eq!(inf1(Op::IsNan, &[&f32t("?n, 2")]), ty(DType::Bool, "?n, 2"));
    assert!(infer(Op::IsNan, &[&i64t("2")]).is_err());
    assert_eq!(inf1(Op::Cast { to: DType::F16 }, &[&i64t("?n, 3")]), ty(DType::F16, "?n, 3"));
    assert_eq!(inf1(Op::Cast { to: DType::Q4_0 }, &[&f32t("4, 64")]), ty(DType::Q4_0, "4, 64"));
    let int4 = DType::Int4 { group_size: 16 };
    assert_eq!(inf1(Op::Cast { to: int4 }, &[&ty(DType::F16, "?n, 48")]), ty(int4, "?n, 48"));
    assert_err_contains(&err(Op::Cast { to: DType::Q4_0 }, &[&f32t("4, 48")]), "not a multiple of the block length 32");
    assert_err_contains(&err(Op::Cast { to: DType::Q8_0 }, &[&f32t("4, ?k")]), "needs a static last dim");
    assert_err_contains(&err(Op::Cast { to: DType::Q8_0 }, &[&f32t("")]), "rank at least 1");
    assert!(infer(Op::Cast { to: DType::Q8_0 }, &[&i64t("32")]).is_err());
    // A quantized result feeds only quantized_linear's weight.
    assert_err_contains(&err(Op::Relu, &[&ty(DType::Q8_0, "32")]), "only allowed as the weight operand");
}

#[test]
fn binary_broadcast_with_symbols() {
    let a = f32t("?b, 1, 8");
    let b = f32t("?s, 8");
    for op in [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Max, Op::Min, Op::Mod, Op::Fmod] {
        assert_eq!(inf1(op, &[&a, &b]), f32t("?b, ?s, 8"));
    }
    // static non-1 beats a symbol; a known dim beats `?`; two different symbols give `?`.
    assert_eq!(inf1(Op::Add, &[&f32t("?a"), &f32t("4")]), f32t("4"));
    assert_eq!(inf1(Op::Add, &[&f32t("?"), &f32t("?a")]), f32t("?a"));
    assert_eq!(inf1(Op::Add, &[&f32t("?a"), &f32t("?b")]), f32t("?"));
    assert_eq!(inf1(Op::Add, &[&f32t(""), &f32t("?a, 3")]), f32t("?a, 3"));
    let e = err(Op::Add, &[&f32t("3, 4"), &f32t("5")]);
    assert_err_contains(&e, "cannot broadcast operand 1 (b) f32[5]");
    assert_err_contains(&e, "size 5 vs 4");
    let e = err(Op::Mul, &[&f32t("3"), &ty(DType::F16, "3")]);
    assert_eq!(e, "operand 1 (b): dtype f16 does not match operand 0 (a)'s dtype f32");
    assert_err_contains(&err(Op::Add, &[&ty(DType::Bool, "3"), &ty(DType::Bool, "3")]), "numeric");
}

#[test]
fn pow_logic_comparisons_where() {
    assert_eq!(inf1(Op::Pow, &[&f32t("?n"), &i64t("")]), f32t("?n"));
    assert!(infer(Op::Pow, &[&f32t("?n"), &ty(DType::Bool, "")]).is_err());
    let b = ty(DType::Bool, "?n, 1");
    for op in [Op::And, Op::Or, Op::Xor] {
        assert_eq!(inf1(op.clone(), &[&b, &ty(DType::Bool, "4")]), ty(DType::Bool, "?n, 4"));
        assert_err_contains(&err(op, &[&b, &i64t("4")]), "operand 1 (b): expected bool");
    }
    for op in [Op::Equal, Op::Less, Op::LessEqual, Op::Greater, Op::GreaterEqual] {
        assert_eq!(inf1(op, &[&i64t("?n"), &i64t("1")]), ty(DType::Bool, "?n"));
    }
    assert_eq!(inf1(Op::Equal, &[&b, &b]), b);
    assert!(infer(Op::Less, &[&b, &b]).is_err());
    let w = inf1(Op::Where, &[&ty(DType::Bool, "?s, 1"), &f32t("1, ?t"), &f32t("")]);
    assert_eq!(w, f32t("?s, ?t"));
    assert_err_contains(&err(Op::Where, &[&f32t("2"), &f32t("2"), &f32t("2")]), "operand 0 (cond): expected bool");
    assert_err_contains(&err(Op::Where, &[&ty(DType::Bool, "2"), &f32t("2"), &i64t("2")]), "operand 2 (b): dtype i64");
}

#[test]
fn quantized_values_only_feed_quantized_linear() {
    let q = ty(DType::Q4_0, "64, 32");
    let e = err(Op::Add, &[&q, &f32t("64, 32")]);
    assert_eq!(e, "operand 0 (a): quantized dtype q4_0 is only allowed as the weight operand of quantized_linear");
    assert!(infer(Op::Identity, &[&q]).is_err());
    assert!(infer(Op::Linear, &[&f32t("?b, 32"), &q]).is_err());
    // The x operand of quantized_linear may not be quantized either.
    assert!(infer(Op::QuantizedLinear, &[&ty(DType::Q8_0, "1, 32"), &q]).is_err());
}

// ---------------------------------------------------------------------- inference: reductions

#[test]
fn reductions_all_kinds() {
    let x = f32t("?b, ?s, 8");
    for op in reduce_ops(vec![-1], false) {
        assert_eq!(inf1(op, &[&x]), f32t("?b, ?s"));
    }
    for op in reduce_ops(vec![0, 2], true) {
        assert_eq!(inf1(op, &[&x]), f32t("1, ?s, 1"));
    }
    for op in reduce_ops(vec![], false) {
        assert_eq!(inf1(op, &[&x]), x, "empty axes is the identity");
    }
    assert_err_contains(&err(Op::ReduceSum { axes: vec![1, -2], keepdims: false }, &[&x]), "twice");
    assert_err_contains(&err(Op::ReduceMax { axes: vec![3], keepdims: false }, &[&x]), "out of range for rank 3");
    assert!(infer(Op::ReduceSum { axes: vec![0], keepdims: false }, &[&ty(DType::Bool, "2")]).is_err());
}

#[test]
fn argmax_softmax_cumsum_topk() {
    let x = f32t("?b, ?v");
    for op in [
        Op::ArgMax { axis: -1, keepdims: false, select_last_index: false },
        Op::ArgMin { axis: 1, keepdims: false, select_last_index: true },
    ] {
        assert_eq!(inf1(op, &[&x]), i64t("?b"));
    }
    assert_eq!(inf1(Op::ArgMax { axis: 0, keepdims: true, select_last_index: false }, &[&x]), i64t("1, ?v"));
    assert!(infer(Op::ArgMax { axis: 2, keepdims: true, select_last_index: false }, &[&x]).is_err());
    for op in [Op::Softmax { axis: -1 }, Op::LogSoftmax { axis: 0 }] {
        assert_eq!(inf1(op.clone(), &[&x]), x);
        assert!(infer(op, &[&i64t("3")]).is_err());
    }
    assert_err_contains(&err(Op::Softmax { axis: 2 }, &[&x]), "axis 2 is out of range for operand 0 (x) f32[?b, ?v]");
    assert_eq!(inf1(Op::CumSum { axis: 0, exclusive: false, reverse: true }, &[&i64t("?n")]), i64t("?n"));
    let out = infer(Op::TopK { axis: -1, k: 5, largest: true, sorted: true }, &[&x]).unwrap();
    assert_eq!(out, vec![f32t("?b, 5"), i64t("?b, 5")]);
    assert_err_contains(
        &err(Op::TopK { axis: -1, k: 9, largest: true, sorted: true }, &[&f32t("2, 8")]),
        "k = 9 exceeds",
    );
    assert!(infer(Op::TopK { axis: 0, k: -1, largest: true, sorted: true }, &[&x]).is_err());
}

// ---------------------------------------------------------------------- inference: linear algebra

#[test]
fn matmul_promotion_and_batch_broadcast() {
    assert_eq!(inf1(Op::MatMul, &[&f32t("?b, ?s, 8"), &f32t("8, 16")]), f32t("?b, ?s, 16"));
    assert_eq!(inf1(Op::MatMul, &[&f32t("8"), &f32t("8, 16")]), f32t("16"));
    assert_eq!(inf1(Op::MatMul, &[&f32t("?b, 4, 8"), &f32t("8")]), f32t("?b, 4"));
    assert_eq!(inf1(Op::MatMul, &[&f32t("8"), &f32t("8")]), f32t(""));
    assert_eq!(inf1(Op::MatMul, &[&f32t("2, 1, 3, 4"), &f32t("5, 4, 6")]), f32t("2, 5, 3, 6"));
    assert_eq!(inf1(Op::MatMul, &[&f32t("?b, ?h, ?s, 64"), &f32t("?b, ?h, 64, ?t")]), f32t("?b, ?h, ?s, ?t"));
    assert_eq!(
        err(Op::MatMul, &[&f32t("?b, 8"), &f32t("16, 4")]),
        "operand 1 (b): inner dim 16 does not match operand 0's last dim 8"
    );
    assert_err_contains(&err(Op::MatMul, &[&f32t("2, 3, 4"), &f32t("5, 4, 6")]), "do not broadcast");
    assert_err_contains(&err(Op::MatMul, &[&f32t(""), &f32t("4")]), "rank at least 1");
    assert!(infer(Op::MatMul, &[&f32t("4"), &i64t("4")]).is_err());
}

#[test]
fn gemm_and_linear() {
    let gemm = |ta, tb| Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb };
    assert_eq!(inf1(gemm(false, true), &[&f32t("?m, 8"), &f32t("16, 8"), &f32t("16")]), f32t("?m, 16"));
    assert_eq!(inf1(gemm(true, false), &[&f32t("8, ?m"), &f32t("8, 16")]), f32t("?m, 16"));
    assert_err_contains(&err(gemm(false, false), &[&f32t("4, 8"), &f32t("16, 8")]), "operand 1 (b): inner dim 16");
    assert_err_contains(&err(gemm(false, false), &[&f32t("4, 8"), &f32t("8, 2"), &f32t("3")]), "operand 2 (c)");
    assert!(infer(gemm(false, false), &[&f32t("2, 4, 8"), &f32t("8, 2")]).is_err());

    let x = f32t("?b, ?s, 8");
    assert_eq!(inf1(Op::Linear, &[&x, &f32t("16, 8"), &f32t("16")]), f32t("?b, ?s, 16"));
    assert_eq!(inf1(Op::Linear, &[&x, &f32t("16, 8")]), f32t("?b, ?s, 16"));
    assert_err_contains(&err(Op::Linear, &[&x, &f32t("16, 8"), &f32t("15")]), "operand 2 (bias): dim 0 is 15");
    assert_err_contains(&err(Op::Linear, &[&x, &f32t("16, 4")]), "operand 1 (w): input dim 4");
    assert_err_contains(&err(Op::Linear, &[&x, &f32t("16")]), "operand 1 (w): expected rank 2");
}

#[test]
fn quantized_linear_rules() {
    let x = f32t("?b, 32");
    for w in [DType::Q4_0, DType::Q8_0, DType::Int4 { group_size: 16 }] {
        let wt = ty(w, "64, 32");
        assert_eq!(inf1(Op::QuantizedLinear, &[&x, &wt]), f32t("?b, 64"));
        assert_eq!(inf1(Op::QuantizedLinear, &[&x, &wt, &f32t("64")]), f32t("?b, 64"));
        assert_err_contains(&err(Op::QuantizedLinear, &[&x, &wt, &f32t("64"), &f32t("64")]), "takes 2 or 3 operands");
    }
    assert_err_contains(
        &err(Op::QuantizedLinear, &[&f32t("?b, 48"), &ty(DType::Q4_0, "64, 48")]),
        "not a multiple of the q4_0 block length 32",
    );
    let w8 = ty(DType::I8, "64, 32");
    assert_eq!(inf1(Op::QuantizedLinear, &[&x, &w8, &f32t("64")]), f32t("?b, 64"));
    let pl = Op::PackedLinear { out_features: 40 };
    assert_eq!(inf1(pl.clone(), &[&f32t("?b, ?s, 24"), &f32t("3, 24, 16")]), f32t("?b, ?s, 40"));
    assert_eq!(inf1(pl.clone(), &[&f32t("2, 24"), &f32t("3, 24, 16"), &f32t("40")]), f32t("2, 40"));
    assert_err_contains(&err(pl.clone(), &[&f32t("2, 24"), &f32t("2, 24, 16")]), "do not hold out_features = 40");
    assert_err_contains(&err(pl.clone(), &[&f32t("2, 24"), &f32t("3, 24, 8")]), "panel width 8 must be 16");
    assert_err_contains(&err(pl.clone(), &[&f32t("2, 20"), &f32t("3, 24, 16")]), "does not match");
    assert_err_contains(&err(pl.clone(), &[&f32t("2, 24"), &f32t("3, 24, 16"), &f32t("16")]), "out_features");
    assert!(infer(pl, &[&i64t("2, 24"), &i64t("3, 24, 16")]).is_err());
    assert_eq!(inf1(Op::QuantizedLinear, &[&x, &w8, &f32t("64"), &f32t("64")]), f32t("?b, 64"));
    assert_err_contains(&err(Op::QuantizedLinear, &[&x, &w8]), "needs a scale operand");
    assert_err_contains(
        &err(Op::QuantizedLinear, &[&x, &w8, &ty(DType::F16, "64")]),
        "operand 2 (scale): expected dtype f32",
    );
    assert_err_contains(&err(Op::QuantizedLinear, &[&x, &w8, &f32t("63")]), "operand 2 (scale): dim 0 is 63");
    assert_err_contains(&err(Op::QuantizedLinear, &[&x, &f32t("64, 32")]), "needs a q8_0, q4_0, int4<G> or i8 weight");
    assert!(infer(Op::QuantizedLinear, &[&i64t("?b, 32"), &ty(DType::Q8_0, "64, 32")]).is_err());
}

// ---------------------------------------------------------------------- inference: shapes

#[test]
fn reshape_static_and_dynamic() {
    let x = f32t("?b, ?s, 8");
    let op = Op::Reshape { allowzero: false };
    let declared = [f32t("?b, ?s, 2, 4")];
    let out = infer_types(&op, &[&x], &[], Some(&declared)).unwrap();
    assert_eq!(out, vec![f32t("?b, ?s, 2, 4")]);
    assert_err_contains(&infer_types(&op, &[&x], &[], None).unwrap_err(), "declared result type, which is missing");
    let bad = [f32t("3, 5")];
    assert_err_contains(&infer_types(&op, &[&f32t("4, 4")], &[], Some(&bad)).unwrap_err(), "changes the element count");

    // Constant shape: 0 copies, -1 is resolved by exact polynomial division.
    let shape_t = i64t("3");
    let c = ints(&[0, -1, 4]);
    let out = infer_types(&op, &[&x, &shape_t], &[None, Some(&c)], None).unwrap();
    assert_eq!(out, vec![TensorType::new(DType::F32, vec![sym("b"), sym("s").mul(&Dim::fixed(2)), Dim::fixed(4)])]);
    let c = ints(&[-1]);
    let out = infer_types(&op, &[&x, &i64t("1")], &[None, Some(&c)], None).unwrap();
    assert_eq!(out[0].shape, vec![sym("b").mul(&sym("s")).mul(&Dim::fixed(8))]);
    // Non-constant shape: rank from its length, dims unknown.
    assert_eq!(inf1(op.clone(), &[&x, &i64t("3")]), f32t("?, ?, ?"));
    assert_err_contains(&err(op.clone(), &[&x, &i64t("?n")]), "length is not static");
    let c = ints(&[-1, -1]);
    assert_err_contains(&infer_types(&op, &[&x, &i64t("2")], &[None, Some(&c)], None).unwrap_err(), "more than one -1");
    let c = ints(&[5, -1]);
    assert_err_contains(
        &infer_types(&op, &[&f32t("4, 3"), &i64t("2")], &[None, Some(&c)], None).unwrap_err(),
        "not divisible by 5",
    );
    let c = ints(&[2, 0]);
    let zero = Op::Reshape { allowzero: true };
    assert_eq!(infer_types(&zero, &[&f32t("0, 3"), &i64t("2")], &[None, Some(&c)], None).unwrap(), vec![f32t("2, 0")]);
    assert!(infer(op, &[&x, &f32t("3")]).is_err(), "shape must be i64");
}

#[test]
fn transpose_concat_split() {
    let x = f32t("?b, ?s, 8");
    assert_eq!(inf1(Op::Transpose { perm: vec![0, 2, 1] }, &[&x]), f32t("?b, 8, ?s"));
    assert_eq!(inf1(Op::Transpose { perm: vec![-1, 0, 1] }, &[&x]), f32t("8, ?b, ?s"));
    assert!(infer(Op::Transpose { perm: vec![0, 0, 1] }, &[&x]).is_err());
    assert!(infer(Op::Transpose { perm: vec![0, 1] }, &[&x]).is_err());

    let past = f32t("?b, ?p, 8");
    let c = inf1(Op::Concat { axis: 1 }, &[&past, &x]);
    assert_eq!(c.shape, vec![sym("b"), sym("p").add(&sym("s")), Dim::fixed(8)]);
    assert_eq!(inf1(Op::Concat { axis: -1 }, &[&f32t("2, 3"), &f32t("2, 4"), &f32t("2, 1")]), f32t("2, 8"));
    assert_err_contains(&err(Op::Concat { axis: 0 }, &[&f32t("2, 3"), &f32t("2, 4")]), "operand 1 (x1): dim 1 is 4");
    assert!(infer(Op::Concat { axis: 0 }, &[&f32t("2"), &i64t("2")]).is_err());

    let split = Op::Split { axis: 1 };
    let xs = f32t("?b, 8");
    let declared = [f32t("?b, 3"), f32t("?b, 5")];
    assert_eq!(infer_types(&split, &[&xs], &[], Some(&declared)).unwrap(), declared.to_vec());
    let bad = [f32t("?b, 3"), f32t("?b, 4")];
    assert_err_contains(&infer_types(&split, &[&xs], &[], Some(&bad)).unwrap_err(), "add up to 7");
    assert!(infer_types(&split, &[&xs], &[], None).is_err());
    let bad_rank = [f32t("3")];
    assert!(infer_types(&split, &[&xs], &[], Some(&bad_rank)).is_err());
}

#[test]
fn slice_static_symbolic_and_dynamic() {
    let x = f32t("?b, ?s, 10");
    let sl =
        |axes: Vec<i64>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>| Op::Slice { axes, starts, ends, steps };
    assert_eq!(inf1(sl(vec![2], vec![2], vec![-1], vec![]), &[&x]), f32t("?b, ?s, 7"));
    assert_eq!(inf1(sl(vec![1], vec![0], vec![i64::MAX], vec![1]), &[&x]), x);
    let t = inf1(sl(vec![1], vec![1], vec![i64::MAX], vec![]), &[&x]);
    assert_eq!(t.shape[1], sym("s").sub(&Dim::fixed(1)));
    assert_eq!(inf1(sl(vec![1], vec![-1], vec![i64::MAX], vec![]), &[&x]), f32t("?b, 1, 10"));
    assert_eq!(inf1(sl(vec![-1], vec![-1], vec![i64::MIN], vec![-2]), &[&x]), f32t("?b, ?s, 5"));
    assert_eq!(inf1(sl(vec![], vec![0, 0], vec![1, 1], vec![]), &[&x]), f32t("1, 1, 10"));
    assert_eq!(inf1(sl(vec![1], vec![0], vec![4], vec![]), &[&x]), f32t("?b, ?, 10"));
    assert_err_contains(&err(sl(vec![0], vec![0], vec![1], vec![0]), &[&x]), "contains 0");
    assert_err_contains(&err(sl(vec![0, 0], vec![0, 0], vec![1, 1], vec![]), &[&x]), "twice");
    assert!(infer(sl(vec![0], vec![0, 1], vec![1], vec![]), &[&x]).is_err());

    // Dynamic starts/ends: constants are exact, others give `?` on the sliced axes.
    let op = sl(vec![2], vec![], vec![], vec![]);
    let (s, e) = (ints(&[1]), ints(&[4]));
    let out = infer_types(&op, &[&x, &i64t("1"), &i64t("1")], &[None, Some(&s), Some(&e)], None).unwrap();
    assert_eq!(out, vec![f32t("?b, ?s, 3")]);
    assert_eq!(inf1(op.clone(), &[&x, &i64t("1"), &i64t("1")]), f32t("?b, ?s, ?"));
    assert_err_contains(&err(op, &[&x, &i64t("1")]), "slice takes 1 operand (x) or 3");
    let op = sl(vec![], vec![], vec![], vec![]);
    assert_eq!(inf1(op, &[&x, &i64t("2"), &i64t("2")]), f32t("?, ?, 10"));
    assert!(infer(sl(vec![], vec![0], vec![1], vec![]), &[&x, &i64t("1"), &i64t("1")]).is_err());
}

#[test]
fn gather_family_and_scatter() {
    let emb = f32t("?v, 64");
    let ids = i64t("?b, ?s");
    assert_eq!(inf1(Op::Gather { axis: 0 }, &[&emb, &ids]), f32t("?b, ?s, 64"));
    assert_eq!(inf1(Op::Gather { axis: 1 }, &[&f32t("?b, 10, 3"), &ty(DType::I32, "")]), f32t("?b, 3"));
    assert_err_contains(
        &err(Op::Gather { axis: 0 }, &[&emb, &f32t("2")]),
        "operand 1 (indices): expected an index dtype",
    );
    assert!(infer(Op::Gather { axis: 2 }, &[&emb, &ids]).is_err());

    assert_eq!(inf1(Op::GatherElements { axis: 1 }, &[&f32t("?b, 10"), &i64t("?b, 3")]), f32t("?b, 3"));
    assert_err_contains(&err(Op::GatherElements { axis: 0 }, &[&f32t("?b, 10"), &i64t("3")]), "expected rank 2");

    assert_eq!(inf1(Op::GatherNd { batch_dims: 0 }, &[&f32t("2, 3, 4"), &i64t("?n, 2")]), f32t("?n, 4"));
    assert_eq!(inf1(Op::GatherNd { batch_dims: 1 }, &[&f32t("2, 3, 4"), &i64t("2, 1")]), f32t("2, 4"));
    assert_err_contains(&err(Op::GatherNd { batch_dims: 0 }, &[&f32t("2, 3"), &i64t("5, 3")]), "between 1 and 2");
    assert_err_contains(&err(Op::GatherNd { batch_dims: 0 }, &[&f32t("2, 3"), &i64t("5, ?k")]), "must be static");
    assert!(infer(Op::GatherNd { batch_dims: 1 }, &[&f32t("2, 3, 4"), &i64t("3, 1")]).is_err());

    let sc = Op::ScatterNd { reduction: ScatterReduction::Add };
    assert_eq!(inf1(sc.clone(), &[&f32t("4, 8"), &i64t("?n, 1"), &f32t("?n, 8")]), f32t("4, 8"));
    assert_err_contains(&err(sc.clone(), &[&f32t("4, 8"), &i64t("?n, 1"), &f32t("?n, 7")]), "operand 2 (updates)");
    assert!(infer(sc, &[&f32t("4, 8"), &i64t("?n, 1"), &f32t("?n")]).is_err());
}

#[test]
fn expand_squeeze_unsqueeze_shape() {
    let x = f32t("?b, 1, 8");
    let declared = [f32t("?b, 4, 8")];
    assert_eq!(infer_types(&Op::Expand, &[&x], &[], Some(&declared)).unwrap(), declared.to_vec());
    assert!(infer_types(&Op::Expand, &[&x], &[], None).is_err());
    let shrink = [f32t("?b, 4, 2")];
    assert_err_contains(&infer_types(&Op::Expand, &[&x], &[], Some(&shrink)).unwrap_err(), "does not broadcast");
    let c = ints(&[2, 1, 6]);
    let out = infer_types(&Op::Expand, &[&f32t("3, 1"), &i64t("3")], &[None, Some(&c)], None).unwrap();
    assert_eq!(out, vec![f32t("2, 3, 6")]);
    assert_eq!(inf1(Op::Expand, &[&f32t("3, 1"), &i64t("3")]), f32t("?, 3, ?"));

    assert_eq!(inf1(Op::Squeeze { axes: vec![1] }, &[&x]), f32t("?b, 8"));
    assert_eq!(inf1(Op::Squeeze { axes: vec![] }, &[&x]), f32t("?b, 8"));
    assert_err_contains(&err(Op::Squeeze { axes: vec![2] }, &[&x]), "its size is 8, not 1");
    assert_eq!(inf1(Op::Unsqueeze { axes: vec![0, -1] }, &[&f32t("?b, 8")]), f32t("1, ?b, 8, 1"));
    assert!(infer(Op::Unsqueeze { axes: vec![0, 0] }, &[&x]).is_err());

    let x3 = f32t("?b, ?s, 8");
    assert_eq!(inf1(Op::Shape { start: 0, end: None }, &[&x3]), i64t("3"));
    assert_eq!(inf1(Op::Shape { start: 1, end: None }, &[&x3]), i64t("2"));
    assert_eq!(inf1(Op::Shape { start: 0, end: Some(-1) }, &[&x3]), i64t("2"));
    assert_eq!(inf1(Op::Shape { start: 5, end: None }, &[&x3]), i64t("0"));
    assert_eq!(inf1(Op::Shape { start: -10, end: Some(10) }, &[&x3]), i64t("3"));
}

#[test]
fn constant_of_shape_and_range() {
    let value = Tensor::scalar_f64(DType::F32, 0.0);
    let op = Op::ConstantOfShape { value: value.clone() };
    let declared = [f32t("?b, ?s")];
    assert_eq!(infer_types(&op, &[], &[], Some(&declared)).unwrap(), declared.to_vec());
    assert!(infer_types(&op, &[], &[], None).is_err());
    let c = ints(&[2, 3]);
    assert_eq!(infer_types(&op, &[&i64t("2")], &[Some(&c)], None).unwrap(), vec![f32t("2, 3")]);
    assert_eq!(inf1(op, &[&i64t("2")]), f32t("?, ?"));
    let two = Tensor::from_f64(DType::F32, vec![2], vec![0.0, 1.0]).unwrap();
    assert_err_contains(&err(Op::ConstantOfShape { value: two }, &[&i64t("1")]), "exactly one element");

    let s = i64t("");
    let (a, b, d) =
        (Tensor::scalar_i64(DType::I64, 0), Tensor::scalar_i64(DType::I64, 10), Tensor::scalar_i64(DType::I64, 3));
    let out = infer_types(&Op::Range, &[&s, &s, &s], &[Some(&a), Some(&b), Some(&d)], None).unwrap();
    assert_eq!(out, vec![i64t("4")]);
    let (a, b, d) =
        (Tensor::scalar_i64(DType::I64, 10), Tensor::scalar_i64(DType::I64, 0), Tensor::scalar_i64(DType::I64, -4));
    assert_eq!(infer_types(&Op::Range, &[&s, &s, &s], &[Some(&a), Some(&b), Some(&d)], None).unwrap(), vec![i64t("3")]);
    let f = f32t("");
    let (a, b, d) = (
        Tensor::scalar_f64(DType::F32, 0.0),
        Tensor::scalar_f64(DType::F32, 1.0),
        Tensor::scalar_f64(DType::F32, 0.25),
    );
    assert_eq!(infer_types(&Op::Range, &[&f, &f, &f], &[Some(&a), Some(&b), Some(&d)], None).unwrap(), vec![f32t("4")]);
    assert_eq!(inf1(Op::Range, &[&s, &s, &s]), i64t("?"));
    let zero = Tensor::scalar_i64(DType::I64, 0);
    assert_err_contains(
        &infer_types(&Op::Range, &[&s, &s, &s], &[Some(&zero), Some(&zero), Some(&zero)], None).unwrap_err(),
        "delta is 0",
    );
    assert!(infer(Op::Range, &[&i64t("1"), &s, &s]).is_err());
    assert!(infer(Op::Range, &[&s, &f, &s]).is_err());
}

#[test]
fn trilu_pad_tile() {
    let x = f32t("?b, ?s, ?s");
    assert_eq!(inf1(Op::Trilu { upper: false, k: 0 }, &[&x]), x);
    assert_err_contains(&err(Op::Trilu { upper: true, k: 1 }, &[&f32t("4")]), "rank at least 2");
    let pad = |pads: Vec<i64>| Op::Pad { pads, mode: PadMode::Constant, value: 0.0 };
    let t = inf1(pad(vec![0, 1, 0, 2]), &[&f32t("?b, 8")]);
    assert_eq!(t, f32t("?b, 11"));
    let t = inf1(pad(vec![1, 0, 1, 0]), &[&f32t("?b, 8")]);
    assert_eq!(t.shape[0], sym("b").add(&Dim::fixed(2)));
    assert_err_contains(&err(pad(vec![0, 1]), &[&f32t("?b, 8")]), "pads has 2 entries");
    assert_err_contains(&err(pad(vec![0, -5, 0, -5]), &[&f32t("?b, 8")]), "below zero");
    let t = inf1(Op::Tile { repeats: vec![2, 3] }, &[&f32t("?b, 2")]);
    assert_eq!(t.shape, vec![sym("b").mul(&Dim::fixed(2)), Dim::fixed(6)]);
    assert!(infer(Op::Tile { repeats: vec![2] }, &[&f32t("?b, 2")]).is_err());
    assert!(infer(Op::Tile { repeats: vec![2, -1] }, &[&f32t("?b, 2")]).is_err());
}

// ---------------------------------------------------------------------- inference: normalisation and fused ops

#[test]
fn norms() {
    let x = f32t("?b, ?s, 64");
    let ln = Op::LayerNorm { axis: -1, epsilon: 1e-5 };
    assert_eq!(inf1(ln.clone(), &[&x, &f32t("64"), &f32t("64")]), x);
    assert_eq!(inf1(Op::LayerNorm { axis: 1, epsilon: 1e-5 }, &[&x, &f32t("1, 64")]), x);
    assert_err_contains(&err(ln.clone(), &[&x, &f32t("32")]), "operand 1 (scale)");
    assert!(infer(ln, &[&i64t("?b, 4"), &i64t("4")]).is_err());
    assert!(infer(Op::LayerNorm { axis: 0, epsilon: -1.0 }, &[&x, &f32t("64")]).is_err());

    let rms = Op::RmsNorm { epsilon: 1e-6 };
    assert_eq!(inf1(rms.clone(), &[&x, &f32t("64")]), x);
    assert_eq!(
        err(rms.clone(), &[&x, &f32t("32")]),
        "operand 1 (weight): dim 0 is 32 but operand 0 (x)'s last dim is 64"
    );
    assert!(infer(rms, &[&x, &ty(DType::F16, "64")]).is_err());

    let rr = Op::RmsNormResidual { epsilon: 1e-6 };
    let out = infer(rr.clone(), &[&f32t("?b, ?s, 64"), &f32t("?, ?s, 64"), &f32t("64")]).unwrap();
    assert_eq!(out, vec![x.clone(), x.clone()]);
    assert_err_contains(&err(rr, &[&x, &f32t("?b, ?s, 32"), &f32t("64")]), "operand 1 (residual): dim 2 is 32");
}

#[test]
fn rotary_embedding() {
    let x = f32t("?b, 32, ?s, 128");
    let pos = i64t("?b, ?s");
    let rope = |rotary_dim| Op::RotaryEmbedding { interleaved: false, rotary_dim };
    assert_eq!(inf1(rope(0), &[&x, &f32t("4096, 64"), &f32t("4096, 64"), &pos]), x);
    assert_eq!(inf1(rope(64), &[&x, &f32t("4096, 32"), &f32t("4096, 32"), &pos]), x);
    assert_eq!(
        inf1(rope(0), &[&f32t("?b, ?h, ?s, ?d"), &f32t("?m, ?r"), &f32t("?m, ?r"), &pos]),
        f32t("?b, ?h, ?s, ?d")
    );
    assert_err_contains(&err(rope(3), &[&x, &f32t("4096, 64"), &f32t("4096, 64"), &pos]), "must be even");
    assert_err_contains(&err(rope(256), &[&x, &f32t("4096, 128"), &f32t("4096, 128"), &pos]), "exceeds head_dim");
    assert_err_contains(
        &err(rope(0), &[&x, &f32t("4096, 32"), &f32t("4096, 32"), &pos]),
        "operand 1 (cos): dim 1 is 32",
    );
    assert_err_contains(
        &err(rope(0), &[&x, &f32t("4096, 64"), &f32t("4096, 64"), &ty(DType::I32, "?b, ?s")]),
        "position_ids",
    );
    assert!(infer(rope(0), &[&f32t("?b, ?s, 128"), &f32t("4096, 64"), &f32t("4096, 64"), &pos]).is_err());
}

#[test]
fn attention_with_and_without_cache() {
    let att = Op::Attention { scale: None, causal: true };
    let q = f32t("?b, 32, ?s, 128");
    let kv = f32t("?b, 8, ?s, 128");
    assert_eq!(infer(att.clone(), &[&q, &kv, &kv]).unwrap(), vec![q.clone()]);
    let mask = f32t("?b, 1, ?s, ?s");
    assert_eq!(infer(att.clone(), &[&q, &kv, &kv, &mask]).unwrap(), vec![q.clone()]);
    let bool_mask = ty(DType::Bool, "?s, ?s");
    assert_eq!(infer(att.clone(), &[&q, &kv, &kv, &bool_mask]).unwrap(), vec![q.clone()]);

    let past = f32t("?b, 8, ?p, 128");
    let t = sym("p").add(&sym("s"));
    let present = TensorType::new(DType::F32, vec![sym("b"), Dim::fixed(8), t.clone(), Dim::fixed(128)]);
    let out = infer(att.clone(), &[&q, &kv, &kv, &past, &past]).unwrap();
    assert_eq!(out, vec![q.clone(), present.clone(), present.clone()]);
    let mask6 = TensorType::new(DType::F32, vec![Dim::fixed(1), Dim::fixed(1), sym("s"), t]);
    let out = infer(att.clone(), &[&q, &kv, &kv, &mask6, &past, &past]).unwrap();
    assert_eq!(out.len(), 3);

    // Dv may differ from D.
    let v = f32t("?b, 8, ?s, 64");
    assert_eq!(infer(att.clone(), &[&q, &kv, &v]).unwrap(), vec![f32t("?b, 32, ?s, 64")]);
    let kv6 = f32t("?b, 6, ?s, 128");
    assert_err_contains(&err(att.clone(), &[&q, &kv6, &kv6]), "not a multiple of k/v's 6 kv heads");
    assert_err_contains(&err(att.clone(), &[&q, &f32t("?b, 8, ?s, 64"), &kv]), "operand 1 (k): dim 3 is 64");
    assert_err_contains(&err(att.clone(), &[&q, &kv, &kv, &f32t("?b, 1, ?s, 7, 2")]), "operand 3 (mask)");
    assert_err_contains(&err(att.clone(), &[&q, &kv, &kv, &i64t("?s, ?s")]), "mask must be bool");
    assert_err_contains(&err(att.clone(), &[&q, &kv, &kv, &past, &f32t("?b, 4, ?p, 128")]), "operand 4 (past_v)");
    assert!(infer(att, &[&i64t("1, 1, 1, 1"), &i64t("1, 1, 1, 1"), &i64t("1, 1, 1, 1")]).is_err());
}

#[test]
fn silu_mul_and_sample() {
    let g = f32t("?b, ?s, 128");
    assert_eq!(inf1(Op::SiluMul, &[&g, &g]), g);
    assert_err_contains(&err(Op::SiluMul, &[&g, &f32t("?b, ?s, 64")]), "operand 1 (up): dim 2 is 64");

    let sample = |temperature: f64| Op::Sample { temperature, top_k: 50, top_p: 0.9, repetition_penalty: 1.1, seed: 7 };
    assert_eq!(inf1(sample(0.8), &[&f32t("?b, 32000")]), i64t("?b"));
    assert_eq!(inf1(sample(0.0), &[&f32t("?b, 32000"), &i64t("?b, ?h")]), i64t("?b"));
    assert_err_contains(&err(sample(-1.0), &[&f32t("?b, 32000")]), "temperature");
    assert_err_contains(&err(sample(1.0), &[&f32t("?b, 32000"), &i64t("?h")]), "operand 1 (history): expected rank 2");
    assert!(infer(sample(1.0), &[&i64t("?b, 10")]).is_err());
}

#[test]
fn types_agree_is_used_against_declared() {
    assert!(types_agree(&f32t("?b, ?"), &f32t("?b, 4")));
    assert!(!types_agree(&f32t("?b, 5"), &f32t("?b, 4")));
    assert!(!types_agree(&f32t("?a"), &f32t("?b")));
}

#[test]
fn add_inferred_uses_constants() {
    let mut f = Function::new("main");
    let x = f.add_param("x", f32t("?b, ?s, 8"));
    let shape = add_inferred(&mut f, Op::Constant { value: ints(&[0, -1]) }, vec![]).unwrap();
    let y = add_inferred(&mut f, Op::Reshape { allowzero: false }, vec![x, shape[0]]).unwrap();
    assert_eq!(f.ty(y[0]).shape, vec![sym("b"), sym("s").mul(&Dim::fixed(8))]);
    assert!(add_inferred(&mut f, Op::Add, vec![x, ValueId(999)]).is_err());
    let before = f.op_count();
    assert!(add_inferred(&mut f, Op::MatMul, vec![x, shape[0]]).is_err());
    assert_eq!(f.op_count(), before, "a failed build leaves the function untouched");
}

// ---------------------------------------------------------------------- verifier

/// The MLP of docs/text-format.md, well formed.
fn mlp() -> Module {
    let mut m = Module::new("tiny_mlp");
    let w = |name: &str, dims: &[i64], source: WeightSource| WeightDecl {
        name: name.to_string(),
        ty: TensorType::fixed(DType::F32, dims),
        source,
    };
    let st = |t: &str| WeightSource::Safetensors { file: "mlp.safetensors".into(), tensor: t.into() };
    m.weights.push(w("fc1.weight", &[16, 8], st("fc1.weight")));
    m.weights.push(w("fc1.bias", &[16], WeightSource::Raw { file: "mlp.bin".into(), offset: 0 }));
    m.weights.push(w("fc2.weight", &[4, 16], st("fc2.weight")));
    let scale = Tensor::from_f64(DType::F32, vec![4], vec![1.0, 0.5, 0.25, 2.0]).unwrap();
    m.weights.push(w("scale", &[4], WeightSource::Inline(scale)));
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t("?batch, 8"));
    let w1 = f.weight("fc1.weight", f32t("16, 8"));
    let b1 = f.weight("fc1.bias", f32t("16"));
    let w2 = f.weight("fc2.weight", f32t("4, 16"));
    let sc = f.weight("scale", f32t("4"));
    let h = f.add_op1(Op::Linear, vec![x, w1, b1], f32t("?batch, 16"));
    let r = f.add_op1(Op::Relu, vec![h], f32t("?batch, 16"));
    let o = f.add_op1(Op::Linear, vec![r, w2], f32t("?batch, 4"));
    let y = f.add_op1(Op::Mul, vec![o, sc], f32t("?batch, 4"));
    f.add_output("y", y);
    m.functions.push(f);
    m
}

fn errors(m: &Module) -> Vec<VerifyError> {
    verify_module(m).expect_err("expected verifier errors")
}

/// Exactly one error, whose message contains `needle`; returns it.
fn one_error(m: &Module, needle: &str) -> VerifyError {
    let errs = errors(m);
    let msgs: Vec<String> = errs.iter().map(|e| describe(m, e)).collect();
    assert_eq!(errs.len(), 1, "{msgs:#?}");
    assert!(errs[0].message.contains(needle), "{msgs:#?} lacks `{needle}`");
    errs.into_iter().next().unwrap()
}

fn forward(m: &mut Module) -> &mut Function {
    m.function_mut("forward").unwrap()
}

fn op_of(f: &Function, v: ValueId) -> ferrumc_ir::OpId {
    f.producer(v).unwrap()
}

#[test]
fn well_formed_module_verifies() {
    let m = mlp();
    assert_eq!(verify_module(&m), Ok(()));
    assert!(verify_function(&m, &m.functions[0]).is_empty());
}

#[test]
fn collects_every_error_from_one_function() {
    let mut m = Module::new("m");
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t("?b, 8"));
    let y = f.add_param("y", f32t("3, 8"));
    let i = f.add_param("i", i64t("4"));
    let bad1 = f.add_op1(Op::MatMul, vec![y, y], f32t("3, 8")); // inner dim 3 vs last dim 8
    let bad2 = f.add_op1(Op::Exp, vec![x], f32t("?b, 9")); // declared type disagrees
    let bad3 = f.add_op1(Op::Sqrt, vec![i], i64t("4")); // float-only op on i64
    f.add_output("o1", bad1);
    f.add_output("o2", bad2);
    f.add_output("o3", bad3);
    m.functions.push(f);
    let errs = errors(&m);
    let msgs: Vec<String> = errs.iter().map(|e| describe(&m, e)).collect();
    assert_eq!(errs.len(), 3, "{msgs:#?}");
    assert!(
        msgs[0].contains("matmul %y, %y: operand 1 (b): inner dim 3 does not match operand 0's last dim 8"),
        "{msgs:#?}"
    );
    assert!(msgs[1].contains("= exp %x: result 0 (%"), "{msgs:#?}");
    assert!(msgs[1].contains("is declared f32[?b, 9] but inferred f32[?b, 8]"), "{msgs:#?}");
    assert!(msgs[2].contains("operand 0 (x): expected a float dtype"), "{msgs:#?}");
    assert!(errs.iter().all(|e| matches!(e.anchor, Anchor::Op { .. })));
}

#[test]
fn describe_uses_value_names() {
    let mut m = mlp();
    let f = forward(&mut m);
    let y = f.outputs()[0].1;
    f.set_type(y, f32t("?batch, 5"));
    let e = one_error(&m, "declared f32[?batch, 5] but inferred f32[?batch, 4]");
    assert_eq!(
        describe(&m, &e),
        "forward: %3 = mul %2, @scale: result 0 (%3) is declared f32[?batch, 5] but inferred f32[?batch, 4]"
    );
    assert!(e.to_string().starts_with("function `forward`, op3: result 0"));
}

// Module invariants 1–6.

#[test]
fn duplicate_function_and_weight_names() {
    let mut m = mlp();
    let dup = m.functions[0].clone();
    m.functions.push(dup);
    let e = one_error(&m, "duplicate function name `forward`");
    assert_eq!(e.anchor, Anchor::Function("forward".into()));

    let mut m = mlp();
    let dup = m.weights[0].clone();
    m.weights.push(dup);
    let e = one_error(&m, "duplicate weight name");
    assert_eq!(e.anchor, Anchor::Weight("fc1.weight".into()));
}

#[test]
fn weight_types_must_be_static_and_non_negative() {
    let mut m = mlp();
    m.weights.push(WeightDecl {
        name: "sym".into(),
        ty: f32t("?n, 4"),
        source: WeightSource::Raw { file: "w.bin".into(), offset: 0 },
    });
    m.weights.push(WeightDecl {
        name: "neg".into(),
        ty: TensorType::fixed(DType::F32, &[-1]),
        source: WeightSource::Raw { file: "w.bin".into(), offset: 0 },
    });
    let errs = errors(&m);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("must be fully static"));
    assert_eq!(errs[0].anchor, Anchor::Weight("sym".into()));
    assert!(errs[1].message.contains("negative dim 0"));
}

#[test]
fn block_quantized_weight_last_dim() {
    let mut m = mlp();
    m.weights.push(WeightDecl {
        name: "q".into(),
        ty: ty(DType::Q4_0, "16, 48"),
        source: WeightSource::Safetensors { file: "q.safetensors".into(), tensor: "q".into() },
    });
    one_error(&m, "last dim 48 of q4_0[16, 48] is not a multiple of the q4_0 block length 32");
    let mut m = mlp();
    m.weights.push(WeightDecl {
        name: "q".into(),
        ty: TensorType::fixed(DType::Int4 { group_size: 64 }, &[16, 64]),
        source: WeightSource::Safetensors { file: "q.safetensors".into(), tensor: "q".into() },
    });
    assert_eq!(verify_module(&m), Ok(()));
}

#[test]
fn inline_weight_must_match_declaration() {
    let mut m = mlp();
    m.weights[3].ty = TensorType::fixed(DType::F32, &[5]);
    // The weight value in `forward` still says f32[4], so that mismatch is reported too.
    let errs = errors(&m);
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errs.len(), 2, "{msgs:#?}");
    assert!(msgs[0].contains("inline literal is f32[4] but the weight is declared f32[5]"));
    assert!(msgs[1].contains("weight @scale is used as f32[4] but declared as f32[5]"));
    let mut m = mlp();
    m.weights[3].source = WeightSource::Inline(Tensor::from_i64(DType::I64, vec![4], vec![1, 2, 3, 4]).unwrap());
    one_error(&m, "inline literal is i64[4]");
}

#[test]
fn weight_paths_must_stay_relative() {
    for (file, needle) in [("/abs/w.bin", "absolute"), ("../w.bin", "`..` component"), ("", "empty")] {
        let mut m = mlp();
        m.weights[1].source = WeightSource::Raw { file: file.into(), offset: 0 };
        let e = one_error(&m, needle);
        assert_eq!(e.anchor, Anchor::Weight("fc1.bias".into()));
    }
    let mut m = mlp();
    m.weights[0].source = WeightSource::Safetensors { file: "ok/../../x.safetensors".into(), tensor: String::new() };
    assert_eq!(errors(&m).len(), 2);
}

// Function invariants 7–11.

#[test]
fn outputs_and_names() {
    let mut m = mlp();
    forward(&mut m).set_outputs(vec![]);
    let e = one_error(&m, "no outputs");
    assert_eq!(e.anchor, Anchor::Function("forward".into()));

    let mut m = mlp();
    let f = forward(&mut m);
    let y = f.outputs()[0].1;
    f.add_output("y", y);
    one_error(&m, "duplicate output name `y`");

    let mut m = mlp();
    forward(&mut m).add_param("x", f32t("2"));
    one_error(&m, "duplicate input name `x`");

    let mut m = mlp();
    forward(&mut m).add_output("ghost", ValueId(1000));
    let e = one_error(&m, "output `ghost`: value %v1000 does not exist");
    assert_eq!(e.anchor, Anchor::Function("forward".into()));
}

#[test]
fn erased_producer_still_used() {
    // As an output.
    let mut m = mlp();
    let f = forward(&mut m);
    let y = f.outputs()[0].1;
    let op = op_of(f, y);
    f.erase_op(op);
    let e = one_error(&m, "output `y`: value");
    assert!(e.message.contains("is defined by erased op op3"));
    assert!(matches!(e.anchor, Anchor::Value { value, .. } if value == y));

    // As an operand.
    let mut m = mlp();
    let f = forward(&mut m);
    let relu = f.op_ids().nth(1).unwrap();
    f.erase_op(relu);
    let e = one_error(&m, "operand 0: value %v6 is defined by erased op op1");
    assert!(matches!(e.anchor, Anchor::Op { op, .. } if op.0 == 2));
}

#[test]
fn invalid_symbols_and_quantized_inputs() {
    let mut m = mlp();
    let f = forward(&mut m);
    f.add_param("bad", TensorType::new(DType::F32, vec![Dim::sym("9lives")]));
    one_error(&m, "invalid symbol name `9lives`");

    let mut m = mlp();
    forward(&mut m).add_param("q", ty(DType::Q8_0, "32"));
    one_error(&m, "input has quantized dtype q8_0");

    let mut m = mlp();
    forward(&mut m).add_param("g", ty(DType::Int4 { group_size: 5 }, "10"));
    let errs = errors(&m);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("int4 group size 5 must be even"));
    assert!(errs[1].message.contains("input has quantized dtype int4<5>"));
}

#[test]
fn weight_values_must_match_module() {
    let mut m = mlp();
    m.weights.retain(|w| w.name != "fc1.bias");
    let e = one_error(&m, "weight @fc1.bias is not declared in the module");
    assert!(matches!(e.anchor, Anchor::Value { .. }));

    let mut m = mlp();
    m.weights[0].ty = TensorType::fixed(DType::F32, &[16, 9]);
    let errs = errors(&m);
    assert!(errs
        .iter()
        .any(|e| e.message.contains("weight @fc1.weight is used as f32[16, 8] but declared as f32[16, 9]")));
}

#[test]
fn quantized_weight_feeding_quantized_linear_only() {
    let mut m = Module::new("q");
    m.weights.push(WeightDecl {
        name: "w".into(),
        ty: TensorType::fixed(DType::Q4_0, &[64, 32]),
        source: WeightSource::Safetensors { file: "w.safetensors".into(), tensor: "w".into() },
    });
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t("?b, 32"));
    let w = f.weight("w", ty(DType::Q4_0, "64, 32"));
    let y = f.add_op1(Op::QuantizedLinear, vec![x, w], f32t("?b, 64"));
    f.add_output("y", y);
    m.functions.push(f.clone());
    assert_eq!(verify_module(&m), Ok(()));
    let z = f.add_op1(Op::Transpose { perm: vec![1, 0] }, vec![w], ty(DType::Q4_0, "32, 64"));
    f.add_output("z", z);
    m.functions[0] = f;
    one_error(&m, "operand 0 (x): quantized dtype q4_0 is only allowed as the weight operand of quantized_linear");
}

// Op invariants 12–15.

#[test]
fn operand_and_result_counts() {
    let mut m = mlp();
    let f = forward(&mut m);
    let x = f.params()[0].1;
    let v = f.add_op1(Op::Relu, vec![x, x], f32t("?batch, 8"));
    f.add_output("extra", v);
    one_error(&m, "relu expects 1 operand, found 2");

    let mut m = mlp();
    let f = forward(&mut m);
    let x = f.params()[0].1;
    let id = f.add_op(Op::Relu, vec![x], vec![f32t("?batch, 8"), f32t("?batch, 8")]);
    let r = f.op(id).unwrap().results[0];
    f.add_output("extra", r);
    one_error(&m, "relu produces 1 result, found 2");

    // Op-specific: attention with a cache declares 3 results.
    let mut m = mlp();
    let f = forward(&mut m);
    let q = f.add_param("q", f32t("1, 4, ?s, 8"));
    let p = f.add_param("p", f32t("1, 4, ?p, 8"));
    let o = f.add_op1(Op::Attention { scale: None, causal: true }, vec![q, q, q, p, p], f32t("1, 4, ?s, 8"));
    f.add_output("o", o);
    one_error(&m, "attention declares 1 result(s) but 3 are inferred");
}

#[test]
fn out_of_range_operands_do_not_panic() {
    let mut m = mlp();
    let f = forward(&mut m);
    let x = f.params()[0].1;
    let v = f.add_op1(Op::Add, vec![x, ValueId(777)], f32t("?batch, 8"));
    f.add_output("extra", v);
    let e = one_error(&m, "operand 1: value %v777 does not exist");
    assert!(describe(&m, &e).contains("= add %x, %v777: operand 1"), "{}", describe(&m, &e));
}

#[test]
fn corrupted_results_do_not_panic() {
    let mut m = mlp();
    let f = forward(&mut m);
    let relu = f.op_ids().nth(1).unwrap();
    f.op_mut(relu).unwrap().results = vec![ValueId(4242)];
    let errs = errors(&m);
    assert!(
        errs.iter().any(|e| e.message.contains("internal: result 0 is value %v4242, which does not exist")),
        "{errs:#?}"
    );
    for e in &errs {
        let _ = describe(&m, e);
    }

    let mut m = mlp();
    let f = forward(&mut m);
    let x = f.params()[0].1;
    let relu = f.op_ids().nth(1).unwrap();
    f.op_mut(relu).unwrap().results = vec![x];
    let errs = errors(&m);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].message.starts_with("internal: result 0 (")
            && errs[0].message.ends_with("is not defined by this op as result 0")
    );
    assert!(errs[1].message.contains("claims to be result #0 of op1, which does not list it"), "{errs:#?}");
}

#[test]
fn declared_types_must_agree() {
    let mut m = mlp();
    let f = forward(&mut m);
    let relu_out = f.op(f.op_ids().nth(1).unwrap()).unwrap().results[0];
    f.set_type(relu_out, ty(DType::F16, "?batch, 16"));
    // relu now disagrees, and the linear consuming it sees an f16 x with an f32 w.
    let errs = errors(&m);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("result 0 (%1) is declared f16[?batch, 16] but inferred f32[?batch, 16]"));
    assert!(errs[1].message.contains("operand 1 (w): dtype f32 does not match operand 0 (x)'s dtype f16"));

    // `?` in a declared type agrees with anything; a different symbol does not.
    let mut m = mlp();
    let f = forward(&mut m);
    let y = f.outputs()[0].1;
    f.set_type(y, f32t("?, 4"));
    assert_eq!(verify_module(&m), Ok(()));
    forward(&mut m).set_type(y, f32t("?other, 4"));
    one_error(&m, "declared f32[?other, 4] but inferred f32[?batch, 4]");
}

// Graph invariants 16–17.

#[test]
fn cycles_are_reported_once() {
    let mut m = Module::new("m");
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t("4"));
    let a = f.add_op1(Op::Add, vec![x, x], f32t("4"));
    let b = f.add_op1(Op::Neg, vec![a], f32t("4"));
    let c = f.add_op1(Op::Exp, vec![b], f32t("4"));
    f.add_output("y", c);
    let add = op_of(&f, a);
    f.set_operand(add, 1, b);
    m.functions.push(f);
    let e = one_error(&m, "the graph has a cycle through 2 op(s)");
    assert!(matches!(e.anchor, Anchor::Op { op, .. } if op == add));
    assert!(e.message.contains("add %x, %") && e.message.contains("neg %"), "{}", e.message);
    assert!(e.message.contains("3 op(s) on or after it"), "{}", e.message);

    // Two independent self-loops are two errors.
    let mut m = Module::new("m");
    let mut f = Function::new("forward");
    let x = f.add_param("x", f32t("4"));
    let a = f.add_op1(Op::Add, vec![x, x], f32t("4"));
    let b = f.add_op1(Op::Mul, vec![x, x], f32t("4"));
    let (oa, ob) = (op_of(&f, a), op_of(&f, b));
    f.set_operand(oa, 0, a);
    f.set_operand(ob, 1, b);
    f.add_output("a", a);
    f.add_output("b", b);
    m.functions.push(f);
    let errs = errors(&m);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().all(|e| e.message.contains("cycle through 1 op(s)")));
}

#[test]
fn stale_use_lists_are_internal_errors() {
    let mut m = mlp();
    let f = forward(&mut m);
    let x = f.params()[0].1;
    let relu = f.op_ids().nth(1).unwrap();
    // Rewire relu's operand by hand without updating use lists.
    f.op_mut(relu).unwrap().operands[0] = x;
    let errs = errors(&m);
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    // x misses the new use; the old operand keeps a stale one; relu's type no longer fits.
    assert_eq!(msgs.iter().filter(|m| m.starts_with("internal: use list out of date")).count(), 2, "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("missing op1#0")), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("stale op1#0")), "{msgs:#?}");
    assert!(errs
        .iter()
        .filter(|e| e.message.starts_with("internal"))
        .all(|e| matches!(e.anchor, Anchor::Value { .. })));
}

#[test]
fn verifier_survives_many_hostile_edits_at_once() {
    let mut m = mlp();
    m.weights[1].source = WeightSource::Raw { file: "/x".into(), offset: 0 };
    let f = forward(&mut m);
    let x = f.params()[0].1;
    f.add_output("ghost", ValueId(u32::MAX));
    let ops: Vec<_> = f.op_ids().collect();
    f.op_mut(ops[0]).unwrap().operands.push(ValueId(99));
    f.op_mut(ops[2]).unwrap().results.push(x);
    f.erase_op(ops[1]);
    let errs = errors(&m);
    assert!(errs.len() >= 5, "{errs:#?}");
    for e in &errs {
        assert!(!describe(&m, e).is_empty());
        assert!(!e.to_string().is_empty());
    }
}
