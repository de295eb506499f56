//! Helpers shared by the op families of the interpreter: checked element counts and
//! allocation, dtype classes, tensor construction with rounding, axis normalisation,
//! broadcasting, and strided walks over multi-indices.
//!
//! Op implementations return [`OpResult`]: a plain message, which the driver wraps with
//! the function and op it came from.

use crate::dtype::DType;
use crate::tensor::{checked_numel, round_float, wrap_int, Tensor, TensorData};

/// Result of an op implementation: the error is a message without the op's name.
pub(crate) type OpResult<T> = Result<T, String>;

/// The largest tensor (in elements) the interpreter will create: 2³² elements, i.e.
/// 32 GiB of widened `f64`s. Anything bigger is refused with an error instead of
/// attempting the allocation.
pub const MAX_ELEMENTS: usize = 1 << 32;

/// Element count of `shape`, refusing overflow and tensors over [`MAX_ELEMENTS`].
///
/// The product of the *non-zero* dims must also stay within the limit, so an empty
/// tensor cannot smuggle in dims like `[0, 2⁴⁰]` whose partial products would overflow
/// (or whose per-dim index tables would be huge) in the ops that walk it.
pub(crate) fn numel(shape: &[usize]) -> OpResult<usize> {
    let extent = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&e| e <= MAX_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} exceeds the interpreter's limit of {MAX_ELEMENTS} elements"))?;
    Ok(if shape.contains(&0) { 0 } else { extent })
}

/// An empty vector with room for `n` elements; allocation failure is an error, not an abort.
pub(crate) fn vec_with_capacity<T>(n: usize) -> OpResult<Vec<T>> {
    if n > MAX_ELEMENTS {
        return Err(format!("{n} elements exceed the interpreter's limit of {MAX_ELEMENTS}"));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| format!("cannot allocate {n} elements"))?;
    Ok(v)
}

/// A vector of `n` copies of `fill`, allocated fallibly.
pub(crate) fn filled<T: Clone>(n: usize, fill: T) -> OpResult<Vec<T>> {
    let mut v = vec_with_capacity(n)?;
    v.resize(n, fill);
    Ok(v)
}

/// The three kinds of element an op can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Float dtypes and (dequantized) block-quantized dtypes: data is `Float`.
    Float,
    /// Integer dtypes: data is `Int`.
    Int,
    /// `bool`: data is `Int` holding 0 or 1.
    Bool,
}

pub(crate) fn class(d: DType) -> Class {
    if d.is_float() || d.is_quantized() {
        Class::Float
    } else if d.is_bool() {
        Class::Bool
    } else {
        Class::Int
    }
}

/// Round a vector of widened floats to `dtype` and wrap it in a tensor.
pub(crate) fn float_tensor(dtype: DType, shape: Vec<usize>, mut v: Vec<f64>) -> Tensor {
    if dtype != DType::F64 {
        v.iter_mut().for_each(|x| *x = round_float(*x, dtype));
    }
    Tensor { dtype, shape, data: TensorData::Float(v) }
}

/// Wrap a vector of widened integers to `dtype` and wrap it in a tensor.
pub(crate) fn int_tensor(dtype: DType, shape: Vec<usize>, mut v: Vec<i64>) -> Tensor {
    if dtype != DType::I64 {
        v.iter_mut().for_each(|x| *x = wrap_int(*x, dtype));
    }
    Tensor { dtype, shape, data: TensorData::Int(v) }
}

/// Build a tensor of `dtype` from data of the matching kind (rounding / wrapping).
pub(crate) fn tensor_from_data(dtype: DType, shape: Vec<usize>, data: TensorData) -> Tensor {
    match data {
        TensorData::Float(v) => float_tensor(dtype, shape, v),
        TensorData::Int(v) => int_tensor(dtype, shape, v),
    }
}

/// Check that a tensor coming from outside (input, weight, literal) is consistent —
/// element count matches the shape, data kind matches the dtype — and round its values
/// to the dtype.
pub(crate) fn normalize(t: Tensor) -> OpResult<Tensor> {
    let n = numel(&t.shape)?;
    if n != t.numel() {
        return Err(format!("shape {:?} has {n} elements but the tensor holds {}", t.shape, t.numel()));
    }
    let ok = matches!(
        (&t.data, class(t.dtype)),
        (TensorData::Float(_), Class::Float) | (TensorData::Int(_), Class::Int | Class::Bool)
    );
    if !ok {
        let kind = if matches!(t.data, TensorData::Float(_)) { "float" } else { "integer" };
        return Err(format!("a {} tensor holds {kind} data", t.dtype));
    }
    Ok(tensor_from_data(t.dtype, t.shape, t.data))
}

/// The float elements of `t`, or an error naming `what` when `t` is not float-class.
pub(crate) fn floats<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [f64]> {
    match (&t.data, class(t.dtype)) {
        (TensorData::Float(v), Class::Float) => Ok(v),
        _ => Err(format!("{what} must have a float dtype, found {}", t.dtype)),
    }
}

/// The integer elements of `t` (integer dtypes only, not bool).
pub(crate) fn ints<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [i64]> {
    match (&t.data, class(t.dtype)) {
        (TensorData::Int(v), Class::Int) => Ok(v),
        _ => Err(format!("{what} must have an integer dtype, found {}", t.dtype)),
    }
}

/// The elements of a bool tensor.
pub(crate) fn bools<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [i64]> {
    match (&t.data, class(t.dtype)) {
        (TensorData::Int(v), Class::Bool) => Ok(v),
        _ => Err(format!("{what} must be bool, found {}", t.dtype)),
    }
}

/// A 1-D integer tensor's values (shape operands, starts/ends, ...).
pub(crate) fn int_list(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    if t.rank() != 1 {
        return Err(format!("{what} must be a 1-D integer tensor, found rank {} ({}{:?})", t.rank(), t.dtype, t.shape));
    }
    Ok(ints(t, what)?.to_vec())
}

/// Require a float or integer (not bool) operand.
pub(crate) fn require_numeric(t: &Tensor, what: &str) -> OpResult<Class> {
    match class(t.dtype) {
        Class::Bool => Err(format!("{what} must have a numeric dtype, found bool")),
        c => Ok(c),
    }
}

/// Normalise an axis against `rank` (negative counts from the end).
pub(crate) fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis.checked_add(r) } else { Some(axis) };
    match a {
        Some(a) if (0..r).contains(&a) => Ok(a as usize),
        _ => Err(format!("axis {axis} is out of range for rank {rank}")),
    }
}

/// Normalise a list of distinct axes against `rank`.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} is listed twice in {axes:?}"));
        }
        out.push(n);
    }
    Ok(out)
}

/// Row-major strides of `shape` (saturating, so shapes with a zero dim never overflow).
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    let mut acc = 1usize;
    for (d, st) in shape.iter().zip(s.iter_mut()).rev() {
        *st = acc;
        acc = acc.saturating_mul(*d);
    }
    s
}

/// numpy multidirectional broadcast of two shapes.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast (dim {i}: {da} vs {db})"));
        };
    }
    Ok(out)
}

/// Strides for reading a tensor of shape `input` as if it had the (broadcast) shape
/// `out`: right-aligned, stride 0 on stretched dims. Errors if `input` does not
/// broadcast unidirectionally to `out`.
pub(crate) fn broadcast_strides(input: &[usize], out: &[usize]) -> OpResult<Vec<isize>> {
    if input.len() > out.len() {
        return Err(format!("shape {input:?} does not broadcast to {out:?}"));
    }
    let st = strides(input);
    let lead = out.len() - input.len();
    let mut res = vec![0isize; out.len()];
    for (i, r) in res.iter_mut().enumerate().skip(lead) {
        let d = input[i - lead];
        if d == out[i] {
            *r = st[i - lead] as isize;
        } else if d != 1 {
            return Err(format!("shape {input:?} does not broadcast to {out:?}"));
        }
    }
    Ok(res)
}

/// Walks the multi-indices of `shape` in row-major order and yields, for each, the
/// offset `base + Σ idx[d] · strides[d]` (strides may be 0 or negative).
#[derive(Debug)]
pub(crate) struct OffsetIter {
    shape: Vec<usize>,
    strides: Vec<isize>,
    idx: Vec<usize>,
    off: isize,
    remaining: usize,
}

impl OffsetIter {
    pub(crate) fn new(shape: &[usize], strides: &[isize], base: isize) -> OffsetIter {
        let remaining = checked_numel(shape).unwrap_or(0);
        OffsetIter { shape: shape.to_vec(), strides: strides.to_vec(), idx: vec![0; shape.len()], off: base, remaining }
    }
}

impl Iterator for OffsetIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let cur = self.off;
        for d in (0..self.shape.len()).rev() {
            self.idx[d] += 1;
            self.off = self.off.wrapping_add(self.strides[d]);
            if self.idx[d] < self.shape[d] {
                break;
            }
            self.off = self.off.wrapping_sub(self.strides[d].wrapping_mul(self.shape[d] as isize));
            self.idx[d] = 0;
        }
        Some(cur as usize)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Collect `src[o]` for every offset; an offset out of range is an internal error.
fn take_vec<T: Copy>(src: &[T], offsets: impl Iterator<Item = usize>, n: usize) -> OpResult<Vec<T>> {
    let mut out = vec_with_capacity(n)?;
    for o in offsets {
        out.push(*src.get(o).ok_or_else(|| format!("internal error: offset {o} out of range {}", src.len()))?);
    }
    Ok(out)
}

/// Gather elements of `data` at the given offsets (same kind of data out).
pub(crate) fn take(data: &TensorData, offsets: impl Iterator<Item = usize>, n: usize) -> OpResult<TensorData> {
    Ok(match data {
        TensorData::Float(v) => TensorData::Float(take_vec(v, offsets, n)?),
        TensorData::Int(v) => TensorData::Int(take_vec(v, offsets, n)?),
    })
}

/// Build a tensor whose element at each output multi-index reads the input at
/// per-dimension coordinates `tables[d][out_idx[d]]`, or is `fill` where a table says
/// `None`. Expand, tile, pad and slice are all such per-dimension maps.
pub(crate) fn gather_tables(t: &Tensor, tables: &[Vec<Option<usize>>], fill: f64) -> OpResult<TensorData> {
    let out_shape: Vec<usize> = tables.iter().map(Vec::len).collect();
    let n = numel(&out_shape)?;
    if tables.len() != t.rank() {
        return Err("internal error: table rank differs from the tensor's".into());
    }
    let st = strides(&t.shape);
    let offsets = TableIter { tables, strides: &st, idx: vec![0; tables.len()], remaining: n };
    Ok(match &t.data {
        TensorData::Float(v) => TensorData::Float(take_opt(v, offsets, n, fill)?),
        TensorData::Int(v) => {
            let fill =
                if class(t.dtype) == Class::Bool { (fill != 0.0) as i64 } else { wrap_int(fill as i64, t.dtype) };
            TensorData::Int(take_opt(v, offsets, n, fill)?)
        }
    })
}

fn take_opt<T: Copy>(src: &[T], offsets: impl Iterator<Item = Option<usize>>, n: usize, fill: T) -> OpResult<Vec<T>> {
    let mut out = vec_with_capacity(n)?;
    for o in offsets {
        out.push(match o {
            Some(o) => *src.get(o).ok_or_else(|| format!("internal error: offset {o} out of range {}", src.len()))?,
            None => fill,
        });
    }
    Ok(out)
}

struct TableIter<'a> {
    tables: &'a [Vec<Option<usize>>],
    strides: &'a [usize],
    idx: Vec<usize>,
    remaining: usize,
}

impl Iterator for TableIter<'_> {
    type Item = Option<usize>;

    fn next(&mut self) -> Option<Option<usize>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut off = Some(0usize);
        for ((table, &i), &st) in self.tables.iter().zip(&self.idx).zip(self.strides) {
            off = match (off, table.get(i).copied().flatten()) {
                (Some(o), Some(c)) => Some(o + c * st),
                _ => None,
            };
        }
        for d in (0..self.idx.len()).rev() {
            self.idx[d] += 1;
            if self.idx[d] < self.tables[d].len() {
                break;
            }
            self.idx[d] = 0;
        }
        Some(off)
    }
}

/// Sizes of the dims before `axis`, at `axis`, and after it.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let n = shape[axis];
    let inner = shape[axis + 1..].iter().product();
    (outer, n, inner)
}

/// A number type ops can be generic over (f64 for float data, i64 for integer data).
pub(crate) trait Num: Copy + PartialOrd + Send + Sync {
    fn is_nan(self) -> bool;
}

impl Num for f64 {
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

impl Num for i64 {
    fn is_nan(self) -> bool {
        false
    }
}

/// Total order where NaN is larger than everything and equal to itself.
pub(crate) fn cmp_nan_max<T: Num>(a: T, b: T) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_walks() {
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shapes(&[2], &[3]).is_err());
        let st = broadcast_strides(&[3], &[2, 3]).unwrap();
        assert_eq!(OffsetIter::new(&[2, 3], &st, 0).collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
        // A reversed walk with a negative stride.
        assert_eq!(OffsetIter::new(&[3], &[-1], 2).collect::<Vec<_>>(), vec![2, 1, 0]);
        assert_eq!(OffsetIter::new(&[], &[], 0).count(), 1);
        assert_eq!(OffsetIter::new(&[0, 5], &[5, 1], 0).count(), 0);
        assert!(numel(&[1 << 20, 1 << 20, 1 << 20]).is_err());
        assert!(norm_axes(&[0, -2], 2).is_err());
        assert_eq!(norm_axis(-1, 3).unwrap(), 2);
        assert!(norm_axis(i64::MIN, 3).is_err());
    }
}
