//! Shape and data-movement ops: `reshape`, `transpose`, `concat`, `split`, `slice`,
//! `expand`, `squeeze`, `unsqueeze`, `shape`, `constant_of_shape`, `range`, `trilu`,
//! `pad` and `tile`.
//!
//! Choices where the op docs leave room (all ONNX behaviour):
//! * `transpose` with an empty `perm` reverses the dims.
//! * `squeeze` with empty `axes` removes every size-1 dim.
//! * `pad` in `reflect` mode reflects repeatedly when the padding exceeds the dim
//!   (numpy), a size-1 dim reflects to itself, and `reflect`/`edge` padding of an empty
//!   dim is an error. The constant `value` is converted to the dtype like `cast`.
//! * `range` counts `max(ceil((limit-start)/delta), 0)` elements (exactly, for integers);
//!   float elements are `start + i·delta` computed in f64, then rounded.

use super::common::{
    broadcast_shapes, class, filled, float_tensor, gather_tables, int_list, int_tensor, norm_axes, norm_axis, numel,
    strides, take, tensor_from_data, vec_with_capacity, Class, OffsetIter, OpResult,
};
use super::elementwise::{cast, float_to_int};
use super::OpCtx;
use crate::dtype::DType;
use crate::op::PadMode;
use crate::tensor::{Tensor, TensorData};

fn to_usize_dims(dims: &[i64], what: &str) -> OpResult<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("{what} {dims:?} has a negative dim {d}"))).collect()
}

fn with_shape(x: &Tensor, shape: Vec<usize>) -> OpResult<Tensor> {
    if numel(&shape)? != x.numel() {
        return Err(format!("cannot view {} elements of shape {:?} as shape {shape:?}", x.numel(), x.shape));
    }
    Ok(Tensor { dtype: x.dtype, shape, data: x.data.clone() })
}

/// `reshape x` (target from the declared result type) or `reshape x, shape {allowzero}`.
pub(crate) fn reshape(x: &Tensor, shape: Option<&Tensor>, allowzero: bool, ctx: &OpCtx<'_>) -> OpResult<Tensor> {
    let Some(shape) = shape else {
        let target = ctx.result_shape(0)?;
        return with_shape(x, target);
    };
    let spec = int_list(shape, "the shape operand of `reshape`")?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(format!("shape {spec:?} has more than one -1"));
                }
                out.push(1);
            }
            0 if !allowzero => {
                let d = x.shape.get(i).ok_or_else(|| {
                    format!("shape {spec:?} copies input dim {i} (a 0), but the input has rank {}", x.rank())
                })?;
                out.push(*d);
            }
            s if s < 0 => return Err(format!("shape {spec:?} has an invalid dim {s}")),
            s => out.push(usize::try_from(s).map_err(|_| format!("shape dim {s} is too large"))?),
        }
    }
    if allowzero && infer.is_some() && spec.contains(&0) {
        return Err(format!("shape {spec:?} combines -1 with 0 under allowzero"));
    }
    if let Some(i) = infer {
        let known = numel(&out)?;
        if known == 0 {
            return Err(format!("cannot infer the -1 dim of {spec:?}: the other dims have no elements"));
        }
        if x.numel() % known != 0 {
            return Err(format!("cannot reshape {} elements of shape {:?} to {spec:?}", x.numel(), x.shape));
        }
        out[i] = x.numel() / known;
    }
    with_shape(x, out)
}

/// `transpose x {perm}`.
pub(crate) fn transpose(x: &Tensor, perm: &[i64]) -> OpResult<Tensor> {
    let rank = x.rank();
    let perm: Vec<usize> = if perm.is_empty() {
        (0..rank).rev().collect()
    } else {
        if perm.len() != rank {
            return Err(format!("perm {perm:?} has {} entries for an input of rank {rank}", perm.len()));
        }
        let p = norm_axes(perm, rank).map_err(|e| format!("perm {perm:?} is not a permutation: {e}"))?;
        p
    };
    let st = strides(&x.shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    let n = x.numel();
    let data = take(&x.data, OffsetIter::new(&out_shape, &out_strides, 0), n)?;
    Ok(Tensor { dtype: x.dtype, shape: out_shape, data })
}

/// `concat x0, x1, … {axis}`.
pub(crate) fn concat(args: &[&Tensor], axis: i64) -> OpResult<Tensor> {
    let first = args.first().ok_or("`concat` needs at least one operand")?;
    let rank = first.rank();
    if rank == 0 {
        return Err("`concat` operands must have rank ≥ 1".into());
    }
    let axis = norm_axis(axis, rank)?;
    let mut out_shape = first.shape.clone();
    out_shape[axis] = 0;
    for (i, t) in args.iter().enumerate() {
        if t.dtype != first.dtype {
            return Err(format!("operand {i} has dtype {}, operand 0 has {}", t.dtype, first.dtype));
        }
        let same =
            t.rank() == rank && t.shape.iter().zip(&first.shape).enumerate().all(|(d, (a, b))| d == axis || a == b);
        if !same {
            return Err(format!(
                "operand {i} has shape {:?}, incompatible with {:?} for concat on axis {axis}",
                t.shape, first.shape
            ));
        }
        out_shape[axis] = out_shape[axis].checked_add(t.shape[axis]).ok_or("concat size overflows")?;
    }
    let n = numel(&out_shape)?;
    let outer: usize = first.shape[..axis].iter().product();
    fn join<T: Copy>(parts: &[(&[T], usize)], outer: usize, n: usize) -> OpResult<Vec<T>> {
        let mut out = vec_with_capacity(n)?;
        for o in 0..outer {
            for (v, block) in parts {
                out.extend_from_slice(v.get(o * block..(o + 1) * block).ok_or("internal error: concat block")?);
            }
        }
        Ok(out)
    }
    let block = |t: &Tensor| t.shape[axis..].iter().product::<usize>();
    let data = match &first.data {
        TensorData::Float(_) => {
            let parts: Vec<(&[f64], usize)> = args
                .iter()
                .map(|t| match &t.data {
                    TensorData::Float(v) => Ok((v.as_slice(), block(t))),
                    _ => Err("concat operand data kinds differ".to_string()),
                })
                .collect::<OpResult<_>>()?;
            TensorData::Float(join(&parts, outer, n)?)
        }
        TensorData::Int(_) => {
            let parts: Vec<(&[i64], usize)> = args
                .iter()
                .map(|t| match &t.data {
                    TensorData::Int(v) => Ok((v.as_slice(), block(t))),
                    _ => Err("concat operand data kinds differ".to_string()),
                })
                .collect::<OpResult<_>>()?;
            TensorData::Int(join(&parts, outer, n)?)
        }
    };
    Ok(Tensor { dtype: first.dtype, shape: out_shape, data })
}

/// Take `count` indices along `axis` starting at `start` with `step` (a per-dim table map).
fn slice_axis(x: &Tensor, ranges: &[(i64, i64, usize)]) -> OpResult<Tensor> {
    let tables: Vec<Vec<Option<usize>>> = ranges
        .iter()
        .map(|&(start, step, count)| (0..count as i64).map(|i| usize::try_from(start + i * step).ok()).collect())
        .collect();
    let out_shape: Vec<usize> = tables.iter().map(Vec::len).collect();
    if tables.iter().flatten().any(Option::is_none) {
        return Err("internal error: slice index below zero".into());
    }
    let data = gather_tables(x, &tables, 0.0)?;
    Ok(Tensor { dtype: x.dtype, shape: out_shape, data })
}

/// `split x {axis}`: piece sizes are the results' declared dims on `axis`.
pub(crate) fn split(x: &Tensor, axis: i64, ctx: &OpCtx<'_>) -> OpResult<Vec<Tensor>> {
    let axis = norm_axis(axis, x.rank())?;
    let mut sizes = Vec::with_capacity(ctx.n_results());
    for i in 0..ctx.n_results() {
        sizes.push(ctx.result_dim(i, axis)?);
    }
    let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)).ok_or("split sizes overflow")?;
    if total != x.shape[axis] {
        return Err(format!(
            "the results' sizes {sizes:?} on axis {axis} add up to {total}, but the input dim is {}",
            x.shape[axis]
        ));
    }
    let mut start = 0usize;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        let ranges: Vec<(i64, i64, usize)> = x
            .shape
            .iter()
            .enumerate()
            .map(|(d, &n)| if d == axis { (start as i64, 1, s) } else { (0, 1, n) })
            .collect();
        out.push(slice_axis(x, &ranges)?);
        start += s;
    }
    Ok(out)
}

/// `slice x {axes, starts, ends, steps}` or `slice x, starts, ends {axes, steps}`.
pub(crate) fn slice(args: &[&Tensor], axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> OpResult<Tensor> {
    let x = args.first().ok_or("`slice` needs an input")?;
    let (starts, ends) = match args.len() {
        1 => (starts.to_vec(), ends.to_vec()),
        3 => (int_list(args[1], "the starts operand of `slice`")?, int_list(args[2], "the ends operand of `slice`")?),
        n => return Err(format!("`slice` takes 1 operand (attributes) or 3 (x, starts, ends), found {n}")),
    };
    if starts.len() != ends.len() {
        return Err(format!("starts {starts:?} and ends {ends:?} differ in length"));
    }
    let rank = x.rank();
    let axes: Vec<usize> = if axes.is_empty() {
        if starts.len() > rank {
            return Err(format!("{} starts for an input of rank {rank}", starts.len()));
        }
        (0..starts.len()).collect()
    } else {
        if axes.len() != starts.len() {
            return Err(format!("axes {axes:?} and starts {starts:?} differ in length"));
        }
        norm_axes(axes, rank)?
    };
    if !steps.is_empty() && steps.len() != starts.len() {
        return Err(format!("steps {steps:?} and starts {starts:?} differ in length"));
    }
    let mut ranges: Vec<(i64, i64, usize)> = x.shape.iter().map(|&n| (0, 1, n)).collect();
    for (i, &axis) in axes.iter().enumerate() {
        let dim = x.shape[axis] as i128;
        let step = steps.get(i).copied().unwrap_or(1) as i128;
        if step == 0 {
            return Err(format!("step 0 on axis {axis}"));
        }
        let (mut s, mut e) = (starts[i] as i128, ends[i] as i128);
        if s < 0 {
            s += dim;
        }
        if e < 0 {
            e += dim;
        }
        let count = if step > 0 {
            s = s.clamp(0, dim);
            e = e.clamp(0, dim);
            if e > s {
                (e - s + step - 1) / step
            } else {
                0
            }
        } else {
            s = s.clamp(-1, dim - 1);
            e = e.clamp(-1, dim - 1);
            if s > e {
                (s - e + (-step) - 1) / (-step)
            } else {
                0
            }
        };
        let step = i64::try_from(step).map_err(|_| "step out of range".to_string())?;
        ranges[axis] = (s as i64, step, usize::try_from(count).map_err(|_| "slice too large".to_string())?);
    }
    slice_axis(x, &ranges)
}

/// `expand x` (target from the declared result type) or `expand x, shape`.
pub(crate) fn expand(x: &Tensor, shape: Option<&Tensor>, ctx: &OpCtx<'_>) -> OpResult<Tensor> {
    let target = match shape {
        Some(s) => to_usize_dims(&int_list(s, "the shape operand of `expand`")?, "shape")?,
        None => ctx.result_shape(0)?,
    };
    let out_shape = broadcast_shapes(&x.shape, &target)?;
    numel(&out_shape)?;
    let lead = out_shape.len() - x.rank();
    let tables: Vec<Vec<Option<usize>>> = x
        .shape
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            let o = out_shape[d + lead];
            (0..o).map(|i| Some(if n == 1 { 0 } else { i })).collect()
        })
        .collect();
    // Leading new dims repeat the whole input: walk them as an outer loop.
    let inner = gather_tables(x, &tables, 0.0)?;
    let reps: usize = numel(&out_shape[..lead])?;
    let data = match inner {
        TensorData::Float(v) => TensorData::Float(repeat(&v, reps)?),
        TensorData::Int(v) => TensorData::Int(repeat(&v, reps)?),
    };
    Ok(Tensor { dtype: x.dtype, shape: out_shape, data })
}

fn repeat<T: Copy>(v: &[T], reps: usize) -> OpResult<Vec<T>> {
    let n = v.len().checked_mul(reps).ok_or("expand size overflows")?;
    let mut out = vec_with_capacity(n)?;
    for _ in 0..reps {
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// `squeeze x {axes}` (empty axes: every size-1 dim).
pub(crate) fn squeeze(x: &Tensor, axes: &[i64]) -> OpResult<Tensor> {
    let axes = norm_axes(axes, x.rank())?;
    for &a in &axes {
        if x.shape[a] != 1 {
            return Err(format!("cannot squeeze axis {a} of shape {:?}: its size is not 1", x.shape));
        }
    }
    let shape: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .filter(|&(d, &n)| if axes.is_empty() { n != 1 } else { !axes.contains(&d) })
        .map(|(_, &n)| n)
        .collect();
    with_shape(x, shape)
}

/// `unsqueeze x {axes}` (positions in the result).
pub(crate) fn unsqueeze(x: &Tensor, axes: &[i64]) -> OpResult<Tensor> {
    let out_rank = x.rank() + axes.len();
    let axes = norm_axes(axes, out_rank)?;
    let mut src = x.shape.iter();
    let shape: Vec<usize> =
        (0..out_rank).map(|d| if axes.contains(&d) { 1 } else { src.next().copied().unwrap_or(1) }).collect();
    with_shape(x, shape)
}

/// `shape x {start, end?}`.
pub(crate) fn shape(x: &Tensor, start: i64, end: Option<i64>) -> Tensor {
    let r = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = if s < e { x.shape[s..e].iter().map(|&d| d as i64).collect() } else { Vec::new() };
    int_tensor(DType::I64, vec![dims.len()], dims)
}

/// `constant_of_shape {value}` or `constant_of_shape shape {value}`.
pub(crate) fn constant_of_shape(shape: Option<&Tensor>, value: &Tensor, ctx: &OpCtx<'_>) -> OpResult<Tensor> {
    let dtype = ctx.result_dtype(0)?;
    let dims = match shape {
        Some(s) => to_usize_dims(&int_list(s, "the shape operand of `constant_of_shape`")?, "shape")?,
        None => ctx.result_shape(0)?,
    };
    let value = super::common::normalize(value.clone()).map_err(|e| format!("value literal: {e}"))?;
    if value.numel() != 1 {
        return Err(format!("value must be a single-element literal, found shape {:?}", value.shape));
    }
    let v = cast(&value, dtype)?;
    let n = numel(&dims)?;
    Ok(match v.data {
        TensorData::Float(x) => float_tensor(dtype, dims, filled(n, x.first().copied().unwrap_or(0.0))?),
        TensorData::Int(x) => int_tensor(dtype, dims, filled(n, x.first().copied().unwrap_or(0))?),
    })
}

fn scalar_of(t: &Tensor, what: &str) -> OpResult<()> {
    if t.numel() != 1 || t.rank() > 1 {
        return Err(format!("{what} must be a scalar, found shape {:?}", t.shape));
    }
    Ok(())
}

/// `range start, limit, delta`.
pub(crate) fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> OpResult<Tensor> {
    scalar_of(start, "start")?;
    scalar_of(limit, "limit")?;
    scalar_of(delta, "delta")?;
    if start.dtype != limit.dtype || start.dtype != delta.dtype {
        return Err(format!(
            "start, limit and delta must share a dtype, found {}, {}, {}",
            start.dtype, limit.dtype, delta.dtype
        ));
    }
    match (&start.data, &limit.data, &delta.data, class(start.dtype)) {
        (TensorData::Float(s), TensorData::Float(l), TensorData::Float(d), Class::Float) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            if d == 0.0 || d.is_nan() {
                return Err("delta must be non-zero".into());
            }
            let count = ((l - s) / d).ceil().max(0.0);
            if !count.is_finite() || count > super::MAX_ELEMENTS as f64 {
                return Err(format!("range({s}, {l}, {d}) has too many elements"));
            }
            let n = count as usize;
            let mut out = vec_with_capacity(n)?;
            out.extend((0..n).map(|i| s + i as f64 * d));
            Ok(float_tensor(start.dtype, vec![n], out))
        }
        (TensorData::Int(s), TensorData::Int(l), TensorData::Int(d), Class::Int) => {
            let (s, l, d) = (s[0] as i128, l[0] as i128, d[0] as i128);
            if d == 0 {
                return Err("delta must be non-zero".into());
            }
            let span = l - s;
            let count = if (span > 0 && d > 0) || (span < 0 && d < 0) { (span + d - d.signum()) / d } else { 0 };
            let n = usize::try_from(count)
                .ok()
                .filter(|&n| n <= super::MAX_ELEMENTS)
                .ok_or_else(|| format!("range has {count} elements, too many"))?;
            let mut out = vec_with_capacity(n)?;
            out.extend((0..n).map(|i| (s + i as i128 * d) as i64));
            Ok(int_tensor(start.dtype, vec![n], out))
        }
        _ => Err(format!("`range` needs numeric scalars, found {}", start.dtype)),
    }
}

/// `trilu x {upper, k}`.
pub(crate) fn trilu(x: &Tensor, upper: bool, k: i64) -> OpResult<Tensor> {
    let r = x.rank();
    if r < 2 {
        return Err(format!("`trilu` needs rank ≥ 2, found shape {:?}", x.shape));
    }
    let (rows, cols) = (x.shape[r - 2], x.shape[r - 1]);
    let keep = |i: usize, j: usize| {
        let (i, j, k) = (i as i128, j as i128, k as i128);
        if upper {
            j >= i + k
        } else {
            j <= i + k
        }
    };
    let mut data = x.data.clone();
    let mat = rows * cols;
    match &mut data {
        TensorData::Float(v) => v.iter_mut().enumerate().for_each(|(e, a)| {
            let p = e % mat.max(1);
            if !keep(p / cols.max(1), p % cols.max(1)) {
                *a = 0.0;
            }
        }),
        TensorData::Int(v) => v.iter_mut().enumerate().for_each(|(e, a)| {
            let p = e % mat.max(1);
            if !keep(p / cols.max(1), p % cols.max(1)) {
                *a = 0;
            }
        }),
    }
    Ok(Tensor { dtype: x.dtype, shape: x.shape.clone(), data })
}

/// `pad x {pads, mode, value}`.
pub(crate) fn pad(x: &Tensor, pads: &[i64], mode: PadMode, value: f64) -> OpResult<Tensor> {
    let r = x.rank();
    if pads.len() != 2 * r {
        return Err(format!("pads {pads:?} must have 2 × rank = {} entries", 2 * r));
    }
    let mut out_dims = Vec::with_capacity(r);
    for (d, &n) in x.shape.iter().enumerate() {
        let out = n as i128 + pads[d] as i128 + pads[d + r] as i128;
        if out < 0 {
            return Err(format!("pads {pads:?} crop dim {d} (size {n}) below zero"));
        }
        out_dims.push(usize::try_from(out).ok().filter(|&o| o <= super::MAX_ELEMENTS).ok_or("padded dim too large")?);
    }
    numel(&out_dims)?;
    let mut tables = Vec::with_capacity(r);
    for (d, (&n, &out)) in x.shape.iter().zip(&out_dims).enumerate() {
        let b = pads[d] as i128;
        if out > 0 && n == 0 && mode != PadMode::Constant {
            return Err(format!("cannot {} -pad the empty dim {d}", mode.as_str()));
        }
        let nn = n as i128;
        let table: Vec<Option<usize>> = (0..out as i128)
            .map(|o| {
                let i = o - b;
                if (0..nn).contains(&i) {
                    return Some(i as usize);
                }
                match mode {
                    PadMode::Constant => None,
                    PadMode::Edge => Some(i.clamp(0, nn - 1) as usize),
                    PadMode::Reflect => {
                        if nn == 1 {
                            return Some(0);
                        }
                        let period = 2 * (nn - 1);
                        let m = i.rem_euclid(period);
                        Some((if m >= nn { period - m } else { m }) as usize)
                    }
                }
            })
            .collect();
        tables.push(table);
    }
    let out_shape = out_dims;
    let fill = if class(x.dtype) == Class::Float { value } else { float_to_int(value, x.dtype) as f64 };
    let data = gather_tables(x, &tables, fill)?;
    Ok(tensor_from_data(x.dtype, out_shape, data))
}

/// `tile x {repeats}`.
pub(crate) fn tile(x: &Tensor, repeats: &[i64]) -> OpResult<Tensor> {
    if repeats.len() != x.rank() {
        return Err(format!("repeats {repeats:?} must have one entry per dim (rank {})", x.rank()));
    }
    let reps = to_usize_dims(repeats, "repeats")?;
    let mut out_shape = Vec::with_capacity(reps.len());
    for (&n, &k) in x.shape.iter().zip(&reps) {
        out_shape.push(n.checked_mul(k).ok_or("tiled shape overflows")?);
    }
    numel(&out_shape)?;
    let tables: Vec<Vec<Option<usize>>> =
        x.shape.iter().zip(&out_shape).map(|(&n, &o)| (0..o).map(|i| Some(i % n.max(1))).collect()).collect();
    let data = gather_tables(x, &tables, 0.0)?;
    Ok(Tensor { dtype: x.dtype, shape: out_shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;
    use crate::types::TensorType;
    use crate::Dim;
    use std::collections::HashMap;

    fn ctx_with<'a>(types: Vec<&'a TensorType>, b: &'a HashMap<String, i64>) -> OpCtx<'a> {
        OpCtx { result_types: types, bindings: b }
    }

    #[test]
    fn reshape_rules() {
        let b = HashMap::new();
        let ty = TensorType::fixed(DType::F32, &[3, 2]);
        let ctx = ctx_with(vec![&ty], &b);
        let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(reshape(&x, None, false, &ctx).unwrap().shape, vec![3, 2]);
        let r = |s: &[i64], z: bool| reshape(&x, Some(&i64t(&[s.len()], s)), z, &ctx).map(|t| t.shape);
        assert_eq!(r(&[-1], false).unwrap(), vec![6]);
        assert_eq!(r(&[0, -1], false).unwrap(), vec![2, 3]);
        assert_eq!(r(&[3, -1], false).unwrap(), vec![3, 2]);
        assert!(r(&[-1, -1], false).is_err());
        assert!(r(&[4, -1], false).is_err());
        assert!(r(&[0, 6], true).is_err());
        assert!(r(&[-2, 3], false).is_err());
        let e = f32t(&[0, 3], &[]);
        assert_eq!(reshape(&e, Some(&i64t(&[2], &[0, 5])), true, &ctx).unwrap().shape, vec![0, 5]);
        // Symbolic declared shapes need bindings.
        let sym = TensorType::new(DType::F32, vec![Dim::sym("n"), Dim::fixed(2)]);
        let ctx2 = ctx_with(vec![&sym], &b);
        assert!(reshape(&x, None, false, &ctx2).unwrap_err().contains("?n"));
        let bound = HashMap::from([("n".to_string(), 3)]);
        assert_eq!(reshape(&x, None, false, &ctx_with(vec![&sym], &bound)).unwrap().shape, vec![3, 2]);
        let unk = TensorType::new(DType::F32, vec![Dim::Unknown, Dim::fixed(2)]);
        assert!(reshape(&x, None, false, &ctx_with(vec![&unk], &b)).unwrap_err().contains("unknown dim"));
    }

    #[test]
    fn transpose_concat_split() {
        let x = i64t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let t = transpose(&x, &[1, 0]).unwrap();
        assert_eq!((t.shape.clone(), t.to_i64_vec()), (vec![3, 2], vec![1, 4, 2, 5, 3, 6]));
        assert_eq!(transpose(&x, &[]).unwrap().to_i64_vec(), vec![1, 4, 2, 5, 3, 6]);
        assert!(transpose(&x, &[0, 0]).is_err());
        let c = concat(&[&x, &i64t(&[2, 1], &[7, 8])], -1).unwrap();
        assert_eq!((c.shape.clone(), c.to_i64_vec()), (vec![2, 4], vec![1, 2, 3, 7, 4, 5, 6, 8]));
        assert!(concat(&[&x, &i64t(&[1, 2], &[7, 8])], 1).is_err());
        let b = HashMap::new();
        let (t1, t2) = (TensorType::fixed(DType::I64, &[2, 1]), TensorType::fixed(DType::I64, &[2, 2]));
        let parts = split(&x, 1, &ctx_with(vec![&t1, &t2], &b)).unwrap();
        assert_eq!(parts[0].to_i64_vec(), vec![1, 4]);
        assert_eq!(parts[1].to_i64_vec(), vec![2, 3, 5, 6]);
        let bad = TensorType::fixed(DType::I64, &[2, 1]);
        assert!(split(&x, 1, &ctx_with(vec![&bad, &bad], &b)).unwrap_err().contains("add up"));
    }

    #[test]
    fn slice_clamping_and_negative_steps() {
        let x = i64t(&[6], &[0, 1, 2, 3, 4, 5]);
        let s = |st: i64, en: i64, step: i64| slice(&[&x], &[0], &[st], &[en], &[step]).unwrap().to_i64_vec();
        assert_eq!(s(1, 4, 1), vec![1, 2, 3]);
        assert_eq!(s(-2, 100, 1), vec![4, 5]);
        assert_eq!(s(0, 6, 4), vec![0, 4]);
        assert_eq!(s(-1, i64::MIN, -1), vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(s(4, 1, -2), vec![4, 2]);
        assert_eq!(s(100, -100, -3), vec![5, 2]);
        assert_eq!(s(3, 3, 1), Vec::<i64>::new());
        assert_eq!(s(i64::MIN, i64::MAX, 1), vec![0, 1, 2, 3, 4, 5]);
        assert!(slice(&[&x], &[0], &[0], &[1], &[0]).is_err());
        let m = i64t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let r = slice(&[&m, &i64t(&[1], &[1]), &i64t(&[1], &[3])], &[1], &[], &[], &[]).unwrap();
        assert_eq!((r.shape.clone(), r.to_i64_vec()), (vec![2, 2], vec![2, 3, 5, 6]));
    }

    #[test]
    fn expand_squeeze_unsqueeze_shape() {
        let b = HashMap::new();
        let ty = TensorType::fixed(DType::I64, &[2, 2, 3]);
        let ctx = ctx_with(vec![&ty], &b);
        let x = i64t(&[2, 1], &[1, 2]);
        let e = expand(&x, Some(&i64t(&[3], &[2, 1, 3])), &ctx).unwrap();
        assert_eq!((e.shape.clone(), e.to_i64_vec()), (vec![2, 2, 3], vec![1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]));
        assert_eq!(expand(&x, None, &ctx).unwrap().shape, vec![2, 2, 3]);
        // A target dim of 1 keeps the input dim.
        assert_eq!(expand(&x, Some(&i64t(&[2], &[1, 1])), &ctx).unwrap().shape, vec![2, 1]);
        assert!(expand(&x, Some(&i64t(&[2], &[3, 1])), &ctx).is_err());
        let s = f32t(&[1, 2, 1], &[1.0, 2.0]);
        assert_eq!(squeeze(&s, &[]).unwrap().shape, vec![2]);
        assert_eq!(squeeze(&s, &[-1]).unwrap().shape, vec![1, 2]);
        assert!(squeeze(&s, &[1]).is_err());
        assert_eq!(unsqueeze(&f32t(&[2], &[1.0, 2.0]), &[0, -1]).unwrap().shape, vec![1, 2, 1]);
        let sh = shape(&s, 1, None);
        assert_eq!((sh.shape.clone(), sh.to_i64_vec()), (vec![2], vec![2, 1]));
        assert_eq!(shape(&s, -2, Some(100)).to_i64_vec(), vec![2, 1]);
        assert_eq!(shape(&s, 2, Some(1)).to_i64_vec(), Vec::<i64>::new());
    }

    #[test]
    fn constant_of_shape_and_range() {
        let b = HashMap::new();
        let ty = TensorType::fixed(DType::F16, &[2, 2]);
        let ctx = ctx_with(vec![&ty], &b);
        let v = f32t(&[1], &[0.1]);
        let c = constant_of_shape(None, &v, &ctx).unwrap();
        assert_eq!((c.dtype, c.shape.clone()), (DType::F16, vec![2, 2]));
        assert_eq!(c.to_f64_vec()[0], half::f16::from_f64(0.1f32 as f64).to_f64());
        let c = constant_of_shape(Some(&i64t(&[1], &[3])), &v, &ctx).unwrap();
        assert_eq!(c.shape, vec![3]);
        assert!(constant_of_shape(Some(&i64t(&[1], &[-3])), &v, &ctx).is_err());
        let r = range(&i64t(&[], &[10]), &i64t(&[], &[1]), &i64t(&[], &[-3])).unwrap();
        assert_eq!(r.to_i64_vec(), vec![10, 7, 4]);
        assert_eq!(range(&i64t(&[], &[0]), &i64t(&[], &[5]), &i64t(&[], &[2])).unwrap().to_i64_vec(), vec![0, 2, 4]);
        assert_eq!(range(&i64t(&[], &[0]), &i64t(&[], &[5]), &i64t(&[], &[-1])).unwrap().numel(), 0);
        let r = range(&f64t(&[], &[1.0]), &f64t(&[], &[2.0]), &f64t(&[], &[0.25])).unwrap();
        assert_eq!(r.to_f64_vec(), vec![1.0, 1.25, 1.5, 1.75]);
        assert!(range(&i64t(&[], &[0]), &i64t(&[], &[1]), &i64t(&[], &[0])).is_err());
        assert!(range(&f64t(&[], &[0.0]), &f64t(&[], &[1e300]), &f64t(&[], &[1e-300])).is_err());
    }

    #[test]
    fn trilu_pad_tile() {
        let x = i64t(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(trilu(&x, false, 0).unwrap().to_i64_vec(), vec![1, 0, 0, 4, 5, 0, 7, 8, 9]);
        assert_eq!(trilu(&x, true, 1).unwrap().to_i64_vec(), vec![0, 2, 3, 0, 0, 6, 0, 0, 0]);
        assert_eq!(trilu(&x, false, -1).unwrap().to_i64_vec(), vec![0, 0, 0, 4, 0, 0, 7, 8, 0]);
        let v = i64t(&[3], &[1, 2, 3]);
        let p = |pads: &[i64], mode| pad(&v, pads, mode, 9.0).unwrap().to_i64_vec();
        assert_eq!(p(&[2, 1], PadMode::Constant), vec![9, 9, 1, 2, 3, 9]);
        assert_eq!(p(&[2, 2], PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(p(&[2, 2], PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(p(&[5, 0], PadMode::Reflect), vec![2, 1, 2, 3, 2, 1, 2, 3]);
        assert_eq!(p(&[-1, 1], PadMode::Constant), vec![2, 3, 9]);
        assert!(pad(&v, &[-4, 0], PadMode::Constant, 0.0).is_err());
        assert!(pad(&v, &[1], PadMode::Constant, 0.0).is_err());
        let m = f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let r = pad(&m, &[0, 1, 1, 0], PadMode::Constant, 0.5).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![3, 3], vec![0.5, 1.0, 2.0, 0.5, 3.0, 4.0, 0.5, 0.5, 0.5]));
        let t = tile(&i64t(&[1, 2], &[1, 2]), &[2, 2]).unwrap();
        assert_eq!((t.shape.clone(), t.to_i64_vec()), (vec![2, 4], vec![1, 2, 1, 2, 1, 2, 1, 2]));
        assert!(tile(&v, &[-1]).is_err());
    }
}
