//! Indexing ops: `gather`, `gather_elements`, `gather_nd` and `scatter_nd` (ONNX
//! semantics). Indices may have any integer dtype; a negative index counts from the end
//! once (`-1` is the last element); anything still outside the dim is a run-time error
//! naming the index and where it sits. `scatter_nd` with duplicate index tuples applies
//! the updates in order (with reduction `none`, the last one wins); float `max`/`min`
//! reductions propagate NaN.

use super::common::{ints, norm_axis, numel, strides, take, vec_with_capacity, OffsetIter, OpResult};
use crate::op::ScatterReduction;
use crate::tensor::{Tensor, TensorData};

/// The multi-index of flat position `flat` in `shape` (for error messages).
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Wrap a possibly negative index into `[0, n)`.
fn wrap_index(v: i64, n: usize, pos: usize, idx_shape: &[usize], what: &str) -> OpResult<usize> {
    let n_i = n as i64;
    let w = if v < 0 { v.checked_add(n_i) } else { Some(v) };
    match w {
        Some(w) if (0..n_i).contains(&w) => Ok(w as usize),
        _ => Err(format!(
            "index {v} at position {:?} of the indices is out of range for {what} of size {n}",
            unravel(pos, idx_shape)
        )),
    }
}

/// `gather data, indices {axis}`.
pub(crate) fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> OpResult<Tensor> {
    if data.rank() == 0 {
        return Err("`gather` needs data of rank ≥ 1".into());
    }
    let axis = norm_axis(axis, data.rank())?;
    let iv = ints(indices, "the indices of `gather`")?;
    let n = data.shape[axis];
    let idx: Vec<usize> = iv
        .iter()
        .enumerate()
        .map(|(p, &v)| wrap_index(v, n, p, &indices.shape, &format!("axis {axis}")))
        .collect::<OpResult<_>>()?;
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut out_shape = data.shape[..axis].to_vec();
    out_shape.extend_from_slice(&indices.shape);
    out_shape.extend_from_slice(&data.shape[axis + 1..]);
    let total = numel(&out_shape)?;
    let offsets =
        (0..outer).flat_map(|o| idx.iter().flat_map(move |&j| (0..inner).map(move |i| (o * n + j) * inner + i)));
    let d = take(&data.data, offsets, total)?;
    Ok(Tensor { dtype: data.dtype, shape: out_shape, data: d })
}

/// `gather_elements data, indices {axis}`.
pub(crate) fn gather_elements(data: &Tensor, indices: &Tensor, axis: i64) -> OpResult<Tensor> {
    let r = data.rank();
    if r == 0 || indices.rank() != r {
        return Err(format!(
            "`gather_elements` needs indices of the data's rank {r} (≥ 1), found shape {:?}",
            indices.shape
        ));
    }
    let axis = norm_axis(axis, r)?;
    for d in 0..r {
        if d != axis && indices.shape[d] > data.shape[d] {
            return Err(format!("indices shape {:?} exceeds data shape {:?} on dim {d}", indices.shape, data.shape));
        }
    }
    let iv = ints(indices, "the indices of `gather_elements`")?;
    let st = strides(&data.shape);
    let walk: Vec<isize> = st.iter().enumerate().map(|(d, &s)| if d == axis { 0 } else { s as isize }).collect();
    let n = data.shape[axis];
    let mut offsets = vec_with_capacity(iv.len())?;
    for (p, (base, &v)) in OffsetIter::new(&indices.shape, &walk, 0).zip(iv).enumerate() {
        let j = wrap_index(v, n, p, &indices.shape, &format!("axis {axis}"))?;
        offsets.push(base + j * st[axis]);
    }
    let d = take(&data.data, offsets.into_iter(), iv.len())?;
    Ok(Tensor { dtype: data.dtype, shape: indices.shape.clone(), data: d })
}

/// `gather_nd data, indices {batch_dims}`.
pub(crate) fn gather_nd(data: &Tensor, indices: &Tensor, batch_dims: i64) -> OpResult<Tensor> {
    let (r, q) = (data.rank(), indices.rank());
    let b = usize::try_from(batch_dims).map_err(|_| format!("batch_dims {batch_dims} is negative"))?;
    if q == 0 || r == 0 || b >= q.min(r) {
        return Err(format!(
            "`gather_nd` needs ranks > batch_dims = {b}, found data {:?} and indices {:?}",
            data.shape, indices.shape
        ));
    }
    let m = indices.shape[q - 1];
    if b + m > r {
        return Err(format!("index tuples of length {m} with batch_dims {b} exceed the data rank {r}"));
    }
    if data.shape[..b] != indices.shape[..b] {
        return Err(format!("batch dims differ: data {:?} vs indices {:?}", &data.shape[..b], &indices.shape[..b]));
    }
    let iv = ints(indices, "the indices of `gather_nd`")?;
    let mut out_shape = indices.shape[..q - 1].to_vec();
    out_shape.extend_from_slice(&data.shape[b + m..]);
    let total = numel(&out_shape)?;
    if total == 0 {
        return Ok(Tensor { dtype: data.dtype, shape: out_shape, data: take(&data.data, std::iter::empty(), 0)? });
    }
    let st = strides(&data.shape);
    let batches: usize = indices.shape[..b].iter().product();
    let tuples: usize = indices.shape[b..q - 1].iter().product();
    let slice: usize = data.shape[b + m..].iter().product();
    let batch_stride: usize = data.shape[b..].iter().product();
    let mut offsets = vec_with_capacity(total)?;
    for bi in 0..batches {
        for t in 0..tuples {
            let mut off = bi * batch_stride;
            for j in 0..m {
                let pos = (bi * tuples + t) * m + j;
                let v = iv.get(pos).copied().ok_or("internal error: gather_nd index")?;
                off +=
                    wrap_index(v, data.shape[b + j], pos, &indices.shape, &format!("data dim {}", b + j))? * st[b + j];
            }
            offsets.extend(off..off + slice);
        }
    }
    let d = take(&data.data, offsets.into_iter(), total)?;
    Ok(Tensor { dtype: data.dtype, shape: out_shape, data: d })
}

/// `scatter_nd data, indices, updates {reduction}`.
pub(crate) fn scatter_nd(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    reduction: ScatterReduction,
) -> OpResult<Tensor> {
    let (r, q) = (data.rank(), indices.rank());
    if q == 0 {
        return Err("`scatter_nd` needs indices of rank ≥ 1".into());
    }
    let m = indices.shape[q - 1];
    if m > r {
        return Err(format!("index tuples of length {m} exceed the data rank {r}"));
    }
    let mut want = indices.shape[..q - 1].to_vec();
    want.extend_from_slice(&data.shape[m..]);
    if updates.shape != want {
        return Err(format!("updates must have shape {want:?} (indices[:-1] + data[{m}:]), found {:?}", updates.shape));
    }
    if updates.dtype != data.dtype {
        return Err(format!("updates have dtype {}, data has {}", updates.dtype, data.dtype));
    }
    let iv = ints(indices, "the indices of `scatter_nd`")?;
    if updates.numel() == 0 {
        return Ok(data.clone());
    }
    let st = strides(&data.shape);
    let tuples: usize = indices.shape[..q - 1].iter().product();
    let slice: usize = data.shape[m..].iter().product();
    let mut targets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = 0usize;
        for (j, (&dim, &stride)) in data.shape.iter().zip(&st).enumerate().take(m) {
            let pos = t * m + j;
            let v = iv.get(pos).copied().ok_or("internal error: scatter_nd index")?;
            off += wrap_index(v, dim, pos, &indices.shape, &format!("data dim {j}"))? * stride;
        }
        targets.push(off);
    }
    fn apply<T: Copy>(
        out: &mut [T],
        upd: &[T],
        targets: &[usize],
        slice: usize,
        f: impl Fn(T, T) -> T,
    ) -> OpResult<()> {
        for (t, &off) in targets.iter().enumerate() {
            let dst = out.get_mut(off..off + slice).ok_or("internal error: scatter target")?;
            let src = upd.get(t * slice..(t + 1) * slice).ok_or("internal error: scatter update")?;
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f(*d, s);
            }
        }
        Ok(())
    }
    let mut out = data.data.clone();
    match (&mut out, &updates.data) {
        (TensorData::Float(o), TensorData::Float(u)) => {
            let f: fn(f64, f64) -> f64 = match reduction {
                ScatterReduction::None => |_, s| s,
                ScatterReduction::Add => |d, s| d + s,
                ScatterReduction::Mul => |d, s| d * s,
                ScatterReduction::Max => |d, s| {
                    if d.is_nan() || s.is_nan() {
                        f64::NAN
                    } else {
                        d.max(s)
                    }
                },
                ScatterReduction::Min => |d, s| {
                    if d.is_nan() || s.is_nan() {
                        f64::NAN
                    } else {
                        d.min(s)
                    }
                },
            };
            apply(o, u, &targets, slice, f)?;
        }
        (TensorData::Int(o), TensorData::Int(u)) => {
            let f: fn(i64, i64) -> i64 = match reduction {
                ScatterReduction::None => |_, s| s,
                ScatterReduction::Add => i64::wrapping_add,
                ScatterReduction::Mul => i64::wrapping_mul,
                ScatterReduction::Max => |d: i64, s| d.max(s),
                ScatterReduction::Min => |d: i64, s| d.min(s),
            };
            apply(o, u, &targets, slice, f)?;
        }
        _ => return Err("data and updates hold different kinds of data".into()),
    }
    Ok(super::common::tensor_from_data(data.dtype, data.shape.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;

    #[test]
    fn gather_axes_and_negative_indices() {
        let d = f64t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = gather(&d, &i64t(&[2], &[2, -3]), 0).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2, 2], vec![5.0, 6.0, 1.0, 2.0]));
        let r = gather(&d, &i64t(&[2, 1], &[1, 0]), 1).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![3, 2, 1], vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0]));
        let r = gather(&d, &i64t(&[], &[-1]), 0).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2], vec![5.0, 6.0]));
        let e = gather(&d, &i64t(&[2, 2], &[0, 1, 3, 0]), 0).unwrap_err();
        assert!(e.contains("index 3 at position [1, 0]") && e.contains("size 3"), "{e}");
        assert!(gather(&d, &i64t(&[1], &[-4]), 0).is_err());
        assert!(gather(&d, &f64t(&[1], &[0.0]), 0).is_err());
    }

    #[test]
    fn gather_elements_and_nd() {
        let d = i64t(&[2, 2], &[1, 2, 3, 4]);
        let r = gather_elements(&d, &i64t(&[2, 2], &[0, 0, 1, 0]), 1).unwrap();
        assert_eq!(r.to_i64_vec(), vec![1, 1, 4, 3]);
        let r = gather_elements(&d, &i64t(&[1, 2], &[1, -2]), 0).unwrap();
        assert_eq!(r.to_i64_vec(), vec![3, 2]);
        assert!(gather_elements(&d, &i64t(&[1, 2], &[2, 0]), 0).is_err());
        // ONNX GatherND examples.
        let r = gather_nd(&d, &i64t(&[2, 2], &[0, 0, 1, 1]), 0).unwrap();
        assert_eq!(r.to_i64_vec(), vec![1, 4]);
        let r = gather_nd(&d, &i64t(&[2, 1], &[1, 0]), 0).unwrap();
        assert_eq!((r.shape.clone(), r.to_i64_vec()), (vec![2, 2], vec![3, 4, 1, 2]));
        let d3 = i64t(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let r = gather_nd(&d3, &i64t(&[2, 1], &[1, 0]), 1).unwrap();
        assert_eq!((r.shape.clone(), r.to_i64_vec()), (vec![2, 2], vec![2, 3, 4, 5]));
        assert!(gather_nd(&d3, &i64t(&[2, 4], &[0; 8]), 0).is_err());
    }

    #[test]
    fn scatter_nd_reductions() {
        let data = i64t(&[4], &[1, 2, 3, 4]);
        let idx = i64t(&[3, 1], &[0, 2, 0]);
        let upd = i64t(&[3], &[10, 20, 30]);
        let s = |red| scatter_nd(&data, &idx, &upd, red).unwrap().to_i64_vec();
        assert_eq!(s(ScatterReduction::None), vec![30, 2, 20, 4]);
        assert_eq!(s(ScatterReduction::Add), vec![41, 2, 23, 4]);
        assert_eq!(s(ScatterReduction::Mul), vec![300, 2, 60, 4]);
        assert_eq!(s(ScatterReduction::Max), vec![30, 2, 20, 4]);
        assert_eq!(s(ScatterReduction::Min), vec![1, 2, 3, 4]);
        let m = f64t(&[2, 2], &[0.0; 4]);
        let r = scatter_nd(&m, &i64t(&[1, 1], &[-1]), &f64t(&[1, 2], &[5.0, 6.0]), ScatterReduction::None).unwrap();
        assert_eq!(r.to_f64_vec(), vec![0.0, 0.0, 5.0, 6.0]);
        assert!(scatter_nd(&m, &i64t(&[1, 1], &[2]), &f64t(&[1, 2], &[5.0, 6.0]), ScatterReduction::None).is_err());
        assert!(scatter_nd(&m, &i64t(&[1, 1], &[0]), &f64t(&[2], &[5.0, 6.0]), ScatterReduction::None).is_err());
    }
}
