//! Reductions and ops along one axis: `reduce_*`, `argmax`/`argmin`, `softmax`,
//! `log_softmax`, `cumsum` and `topk`.
//!
//! Reductions over an empty `axes` list reduce nothing: each output element aggregates
//! exactly its own input element (so `reduce_sum` is the identity, `reduce_l1` is `|x|`,
//! `reduce_sum_square` is `x²`). Over an empty extent, sums give 0, products 1, the
//! float mean NaN (integer mean is an error), `reduce_log_sum_exp` −∞, and
//! `reduce_max`/`reduce_min` the identity of the reduction (ONNX): −∞/+∞ for floats, the
//! smallest/largest value of an integer dtype, `false`/`true` for bool. Float max/min propagate NaN. Integer sums and
//! products wrap; the integer mean truncates toward zero; integer `reduce_l2` and
//! `reduce_log_sum_exp` are computed in f64 and truncated.
//!
//! `argmax`/`argmin` treat NaN as the extreme (numpy: the first NaN wins). `topk` orders
//! NaN above every number, breaks ties by the lower index, and always returns its
//! results sorted (also when `sorted` is false, which leaves the order unspecified).

use super::common::{
    class, cmp_nan_max, filled, float_tensor, int_tensor, norm_axes, norm_axis, numel, require_numeric, split_at_axis,
    strides, vec_with_capacity, Class, Num, OffsetIter, OpResult,
};
use crate::dtype::DType;
use crate::op::Op;
use crate::tensor::{Tensor, TensorData};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    SumSquare,
    L1,
    L2,
    LogSumExp,
}

/// The `reduce_*` family.
pub(crate) fn reduce(op: &Op, x: &Tensor) -> OpResult<Tensor> {
    let (axes, keepdims) = op.reduction().ok_or("internal error: not a reduction")?;
    let kind = match op {
        Op::ReduceSum { .. } => Kind::Sum,
        Op::ReduceMean { .. } => Kind::Mean,
        Op::ReduceMax { .. } => Kind::Max,
        Op::ReduceMin { .. } => Kind::Min,
        Op::ReduceProd { .. } => Kind::Prod,
        Op::ReduceSumSquare { .. } => Kind::SumSquare,
        Op::ReduceL1 { .. } => Kind::L1,
        Op::ReduceL2 { .. } => Kind::L2,
        _ => Kind::LogSumExp,
    };
    let c = require_numeric(x, &format!("the operand of `{}`", op.name()))?;
    let rank = x.rank();
    let axes = norm_axes(axes, rank)?;
    let reduced: Vec<bool> = (0..rank).map(|d| axes.contains(&d)).collect();
    let kept_shape: Vec<usize> = x.shape.iter().zip(&reduced).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let out_shape: Vec<usize> = if keepdims {
        kept_shape.clone()
    } else {
        x.shape.iter().zip(&reduced).filter(|(_, &r)| !r).map(|(&d, _)| d).collect()
    };
    let out_n = numel(&out_shape)?;
    let count: usize = x.shape.iter().zip(&reduced).filter(|(_, &r)| r).map(|(&d, _)| d).product();
    // For each input element (row-major), the offset of its output element.
    let kept_strides = strides(&kept_shape);
    let map_strides: Vec<isize> =
        kept_strides.iter().zip(&reduced).map(|(&s, &r)| if r { 0 } else { s as isize }).collect();
    let out_offsets = || OffsetIter::new(&x.shape, &map_strides, 0);

    match (&x.data, c) {
        (TensorData::Float(v), Class::Float) => {
            let init = match kind {
                Kind::Prod => 1.0,
                Kind::Max | Kind::LogSumExp => f64::NEG_INFINITY,
                Kind::Min => f64::INFINITY,
                _ => 0.0,
            };
            let mut acc = filled(out_n, init)?;
            for (&a, o) in v.iter().zip(out_offsets()) {
                let Some(slot) = acc.get_mut(o) else {
                    return Err("internal error: reduction offset".into());
                };
                *slot = match kind {
                    Kind::Sum | Kind::Mean => *slot + a,
                    Kind::Prod => *slot * a,
                    Kind::SumSquare | Kind::L2 => *slot + a * a,
                    Kind::L1 => *slot + a.abs(),
                    Kind::Max | Kind::LogSumExp => {
                        if a.is_nan() || a > *slot {
                            a
                        } else {
                            *slot
                        }
                    }
                    Kind::Min => {
                        if a.is_nan() || a < *slot {
                            a
                        } else {
                            *slot
                        }
                    }
                };
            }
            match kind {
                Kind::Mean => acc.iter_mut().for_each(|s| *s /= count as f64),
                Kind::L2 => acc.iter_mut().for_each(|s| *s = s.sqrt()),
                Kind::LogSumExp => {
                    let maxes = acc;
                    let mut sums = filled(out_n, 0.0f64)?;
                    for (&a, o) in v.iter().zip(out_offsets()) {
                        if let (Some(s), Some(&m)) = (sums.get_mut(o), maxes.get(o)) {
                            *s += (a - m).exp();
                        }
                    }
                    acc = maxes.iter().zip(&sums).map(|(&m, &s)| if m.is_finite() { m + s.ln() } else { m }).collect();
                }
                _ => {}
            }
            Ok(float_tensor(x.dtype, out_shape, acc))
        }
        (TensorData::Int(v), _) => {
            if matches!(kind, Kind::L2 | Kind::LogSumExp) {
                let as_float = float_tensor(DType::F64, x.shape.clone(), v.iter().map(|&a| a as f64).collect());
                let r = reduce(op, &as_float)?;
                let out: Vec<i64> = r.to_f64_vec().into_iter().map(|a| a as i64).collect();
                return Ok(int_tensor(x.dtype, r.shape, out));
            }
            if kind == Kind::Mean && count == 0 && out_n > 0 {
                return Err(format!("integer `{}` over an empty extent", op.name()));
            }
            let (lowest, highest) = int_range(x.dtype);
            let init = match kind {
                Kind::Prod => 1,
                Kind::Max => lowest,
                Kind::Min => highest,
                _ => 0,
            };
            let mut acc = filled(out_n, init)?;
            for (&a, o) in v.iter().zip(out_offsets()) {
                let Some(slot) = acc.get_mut(o) else {
                    return Err("internal error: reduction offset".into());
                };
                *slot = match kind {
                    Kind::Sum | Kind::Mean => slot.wrapping_add(a),
                    Kind::Prod => slot.wrapping_mul(a),
                    Kind::SumSquare => slot.wrapping_add(a.wrapping_mul(a)),
                    Kind::L1 => slot.wrapping_add(a.wrapping_abs()),
                    Kind::Max => (*slot).max(a),
                    _ => (*slot).min(a),
                };
            }
            if kind == Kind::Mean {
                acc.iter_mut().for_each(|s| *s = s.wrapping_div(count as i64));
            }
            Ok(int_tensor(x.dtype, out_shape, acc))
        }
        _ => Err(format!("internal error: {} tensor holds mismatched data", x.dtype)),
    }
}

fn shape_without(shape: &[usize], axis: usize, keepdims: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdims {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

fn arg_lanes<T: Num>(v: &[T], outer: usize, n: usize, inner: usize, last: bool, max: bool) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[(o * n + k) * inner + i];
            let mut best = 0usize;
            for k in 1..n {
                let (cand, cur) = (at(k), at(best));
                if cur.is_nan() {
                    if last && cand.is_nan() {
                        best = k;
                    }
                    continue;
                }
                let better = cand.is_nan()
                    || if max { cand > cur || (last && cand == cur) } else { cand < cur || (last && cand == cur) };
                if better {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

/// `argmax` (`max = true`) and `argmin`.
pub(crate) fn arg_extreme(x: &Tensor, axis: i64, keepdims: bool, last: bool, max: bool) -> OpResult<Tensor> {
    let name = if max { "argmax" } else { "argmin" };
    require_numeric(x, &format!("the operand of `{name}`"))?;
    let axis = norm_axis(axis, x.rank())?;
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    let out_shape = shape_without(&x.shape, axis, keepdims);
    if n == 0 && outer * inner > 0 {
        return Err(format!("`{name}` over an empty axis {axis} of shape {:?}", x.shape));
    }
    let out = match &x.data {
        TensorData::Float(v) => arg_lanes(v, outer, n, inner, last, max),
        TensorData::Int(v) => arg_lanes(v, outer, n, inner, last, max),
    };
    Ok(int_tensor(DType::I64, out_shape, out))
}

/// `softmax` / `log_softmax` along `axis`, computed stably in f64.
pub(crate) fn softmax(x: &Tensor, axis: i64, log: bool) -> OpResult<Tensor> {
    let v = super::common::floats(x, if log { "the operand of `log_softmax`" } else { "the operand of `softmax`" })?;
    let axis = norm_axis(axis, x.rank())?;
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    let mut out = filled(v.len(), 0.0f64)?;
    for o in 0..outer {
        for i in 0..inner {
            let idx = |k: usize| (o * n + k) * inner + i;
            let m = (0..n).map(|k| v[idx(k)]).fold(f64::NEG_INFINITY, |m, a| if a.is_nan() || a > m { a } else { m });
            let sum: f64 = (0..n).map(|k| (v[idx(k)] - m).exp()).sum();
            for k in 0..n {
                let a = v[idx(k)];
                out[idx(k)] = if log { a - m - sum.ln() } else { (a - m).exp() / sum };
            }
        }
    }
    Ok(float_tensor(x.dtype, x.shape.clone(), out))
}

/// `cumsum` along `axis` (ONNX CumSum: `exclusive` shifts by one, `reverse` runs from the end).
pub(crate) fn cumsum(x: &Tensor, axis: i64, exclusive: bool, reverse: bool) -> OpResult<Tensor> {
    require_numeric(x, "the operand of `cumsum`")?;
    let axis = norm_axis(axis, x.rank())?;
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    let order: Vec<usize> = if reverse { (0..n).rev().collect() } else { (0..n).collect() };
    fn run<T: Copy>(
        v: &[T],
        (outer, n, inner): (usize, usize, usize),
        order: &[usize],
        exclusive: bool,
        zero: T,
        add: impl Fn(T, T) -> T,
    ) -> Vec<T> {
        let mut out = vec![zero; v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = zero;
                for &k in order {
                    let at = (o * n + k) * inner + i;
                    if exclusive {
                        out[at] = acc;
                        acc = add(acc, v[at]);
                    } else {
                        acc = add(acc, v[at]);
                        out[at] = acc;
                    }
                }
            }
        }
        out
    }
    Ok(match &x.data {
        TensorData::Float(v) => {
            float_tensor(x.dtype, x.shape.clone(), run(v, (outer, n, inner), &order, exclusive, 0.0, |a, b| a + b))
        }
        TensorData::Int(v) => {
            int_tensor(x.dtype, x.shape.clone(), run(v, (outer, n, inner), &order, exclusive, 0, i64::wrapping_add))
        }
    })
}

/// `topk` → (values, i64 indices).
pub(crate) fn topk(x: &Tensor, axis: i64, k: i64, largest: bool) -> OpResult<Vec<Tensor>> {
    require_numeric(x, "the operand of `topk`")?;
    let axis = norm_axis(axis, x.rank())?;
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| format!("k = {k} is outside [0, {n}] for axis {axis} of shape {:?}", x.shape))?;
    let mut out_shape = x.shape.clone();
    out_shape[axis] = k;
    let total = numel(&out_shape)?;
    fn lanes<T: Num>(
        v: &[T],
        outer: usize,
        n: usize,
        inner: usize,
        k: usize,
        largest: bool,
        total: usize,
    ) -> OpResult<(Vec<T>, Vec<i64>)> {
        let mut vals: Vec<T> = vec_with_capacity(total)?;
        let mut idxs: Vec<i64> = vec_with_capacity(total)?;
        // Fill lane by lane in output order: lane (o, i) writes positions (o*k + j)*inner + i.
        let mut lane_vals = Vec::with_capacity(total);
        let mut lane_idx = Vec::with_capacity(total);
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for o in 0..outer {
            for i in 0..inner {
                order.clear();
                order.extend(0..n);
                let at = |j: usize| v[(o * n + j) * inner + i];
                order.sort_by(|&p, &q| {
                    let c = cmp_nan_max(at(p), at(q));
                    let c = if largest { c.reverse() } else { c };
                    c.then(p.cmp(&q))
                });
                for &j in &order[..k] {
                    lane_vals.push(at(j));
                    lane_idx.push(j as i64);
                }
            }
        }
        // lane_* are laid out [outer, inner, k]; transpose to [outer, k, inner].
        for o in 0..outer {
            for j in 0..k {
                for i in 0..inner {
                    let src = (o * inner + i) * k + j;
                    vals.push(lane_vals[src]);
                    idxs.push(lane_idx[src]);
                }
            }
        }
        Ok((vals, idxs))
    }
    let (values, indices) = match &x.data {
        TensorData::Float(v) => {
            let (a, b) = lanes(v, outer, n, inner, k, largest, total)?;
            (float_tensor(x.dtype, out_shape.clone(), a), b)
        }
        TensorData::Int(v) => {
            let (a, b) = lanes(v, outer, n, inner, k, largest, total)?;
            (int_tensor(x.dtype, out_shape.clone(), a), b)
        }
    };
    let _ = class(x.dtype);
    Ok(vec![values, int_tensor(DType::I64, out_shape, indices)])
}

/// The smallest and largest value an integer (or bool) dtype holds: the identities of
/// `reduce_max` and `reduce_min`.
fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::Bool => (0, 1),
        _ => (i64::MIN, i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;

    fn red(op: Op, x: &Tensor) -> Tensor {
        reduce(&op, x).unwrap()
    }

    #[test]
    fn reductions() {
        let x = f64t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = red(Op::ReduceSum { axes: vec![1], keepdims: false }, &x);
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2], vec![6.0, 15.0]));
        let r = red(Op::ReduceSum { axes: vec![0], keepdims: true }, &x);
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![1, 3], vec![5.0, 7.0, 9.0]));
        let r = red(Op::ReduceMean { axes: vec![0, 1], keepdims: false }, &x);
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![], vec![3.5]));
        assert_eq!(red(Op::ReduceMax { axes: vec![-1], keepdims: false }, &x).to_f64_vec(), vec![3.0, 6.0]);
        assert_eq!(red(Op::ReduceMin { axes: vec![0], keepdims: false }, &x).to_f64_vec(), vec![1.0, 2.0, 3.0]);
        assert_eq!(red(Op::ReduceProd { axes: vec![1], keepdims: false }, &x).to_f64_vec(), vec![6.0, 120.0]);
        assert_eq!(red(Op::ReduceSumSquare { axes: vec![1], keepdims: false }, &x).to_f64_vec(), vec![14.0, 77.0]);
        assert_eq!(
            red(Op::ReduceL1 { axes: vec![0], keepdims: false }, &f64t(&[2], &[-1.0, 2.0])).to_f64_vec(),
            vec![3.0]
        );
        assert_eq!(
            red(Op::ReduceL2 { axes: vec![0], keepdims: false }, &f64t(&[2], &[3.0, 4.0])).to_f64_vec(),
            vec![5.0]
        );
        let lse =
            red(Op::ReduceLogSumExp { axes: vec![0], keepdims: false }, &f64t(&[2], &[1000.0, 1000.0])).to_f64_vec();
        assert_close(&lse, &[1000.0 + std::f64::consts::LN_2], 1e-15);
        // Empty axes: no reduction, element-wise aggregate.
        let r = red(Op::ReduceSumSquare { axes: vec![], keepdims: false }, &f64t(&[2], &[-2.0, 3.0]));
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2], vec![4.0, 9.0]));
        // NaN propagates through max.
        assert!(red(Op::ReduceMax { axes: vec![0], keepdims: false }, &f64t(&[3], &[1.0, f64::NAN, 2.0])).to_f64_vec()
            [0]
        .is_nan());
        // Empty extents.
        let e = f64t(&[0, 2], &[]);
        assert_eq!(red(Op::ReduceSum { axes: vec![0], keepdims: false }, &e).to_f64_vec(), vec![0.0, 0.0]);
        assert_eq!(red(Op::ReduceMax { axes: vec![0], keepdims: false }, &e).to_f64_vec(), vec![f64::NEG_INFINITY; 2]);
        assert_eq!(red(Op::ReduceMin { axes: vec![0], keepdims: false }, &e).to_f64_vec(), vec![f64::INFINITY; 2]);
        let ei = int_tensor(DType::I32, vec![0, 2], vec![]);
        assert_eq!(red(Op::ReduceMax { axes: vec![0], keepdims: false }, &ei).to_i64_vec(), vec![i32::MIN as i64; 2]);
        // Integers wrap / truncate.
        let i = i64t(&[3], &[7, -2, 2]);
        assert_eq!(red(Op::ReduceMean { axes: vec![0], keepdims: false }, &i).to_i64_vec(), vec![2]);
        assert_eq!(red(Op::ReduceProd { axes: vec![0], keepdims: false }, &i).to_i64_vec(), vec![-28]);
        assert!(reduce(&Op::ReduceSum { axes: vec![0, 0], keepdims: false }, &i).is_err());
        assert!(reduce(&Op::ReduceSum { axes: vec![1], keepdims: false }, &i).is_err());
    }

    #[test]
    fn argmax_argmin() {
        let x = f64t(&[2, 3], &[1.0, 3.0, 3.0, 2.0, 0.0, 2.0]);
        assert_eq!(arg_extreme(&x, 1, false, false, true).unwrap().to_i64_vec(), vec![1, 0]);
        assert_eq!(arg_extreme(&x, 1, false, true, true).unwrap().to_i64_vec(), vec![2, 2]);
        assert_eq!(arg_extreme(&x, 0, true, false, false).unwrap().shape, vec![1, 3]);
        assert_eq!(arg_extreme(&x, 0, true, false, false).unwrap().to_i64_vec(), vec![0, 1, 1]);
        assert_eq!(
            arg_extreme(&f64t(&[3], &[1.0, f64::NAN, 5.0]), 0, false, false, true).unwrap().to_i64_vec(),
            vec![1]
        );
        assert!(arg_extreme(&f64t(&[0], &[]), 0, false, false, true).is_err());
    }

    #[test]
    fn softmax_and_log_softmax() {
        let x = f64t(&[2, 2], &[1000.0, 1000.0, 0.0, f64::NEG_INFINITY]);
        assert_close(&softmax(&x, -1, false).unwrap().to_f64_vec(), &[0.5, 0.5, 1.0, 0.0], 0.0);
        assert_close(
            &softmax(&x, 1, true).unwrap().to_f64_vec(),
            &[-std::f64::consts::LN_2, -std::f64::consts::LN_2, 0.0, f64::NEG_INFINITY],
            1e-15,
        );
        let col = softmax(&f64t(&[2, 1], &[0.0, 0.0]), 0, false).unwrap().to_f64_vec();
        assert_eq!(col, vec![0.5, 0.5]);
        assert!(softmax(&i64t(&[1], &[1]), 0, false).is_err());
    }

    #[test]
    fn cumsum_modes() {
        let x = i64t(&[4], &[1, 2, 3, 4]);
        let c = |e, r| cumsum(&x, 0, e, r).unwrap().to_i64_vec();
        assert_eq!(c(false, false), vec![1, 3, 6, 10]);
        assert_eq!(c(true, false), vec![0, 1, 3, 6]);
        assert_eq!(c(false, true), vec![10, 9, 7, 4]);
        assert_eq!(c(true, true), vec![9, 7, 4, 0]);
        let m = cumsum(&f64t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), 0, false, false).unwrap().to_f64_vec();
        assert_eq!(m, vec![1.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn topk_ties_and_axes() {
        let x = f64t(&[5], &[1.0, 3.0, 3.0, f64::NAN, 0.0]);
        let r = topk(&x, 0, 3, true).unwrap();
        assert_eq!(r[1].to_i64_vec(), vec![3, 1, 2]);
        let r = topk(&x, 0, 2, false).unwrap();
        assert_eq!((r[0].to_f64_vec(), r[1].to_i64_vec()), (vec![0.0, 1.0], vec![4, 0]));
        let m = f64t(&[2, 3], &[1.0, 5.0, 2.0, 4.0, 4.0, 0.0]);
        let r = topk(&m, 0, 1, true).unwrap();
        assert_eq!((r[0].shape.clone(), r[1].to_i64_vec()), (vec![1, 3], vec![1, 0, 0]));
        let r = topk(&m, 1, 2, true).unwrap();
        assert_eq!((r[0].to_f64_vec(), r[1].to_i64_vec()), (vec![5.0, 2.0, 4.0, 4.0], vec![1, 2, 0, 1]));
        assert!(topk(&m, 1, 4, true).is_err());
        assert!(topk(&m, 1, -1, true).is_err());
    }
}
