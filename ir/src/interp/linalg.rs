//! Linear algebra: `matmul`, `gemm`, `linear`, `quantized_linear` and `packed_linear`.
//!
//! Products accumulate in f64 and the result is rounded once to the output dtype.
//! Kernels are parallelised with rayon and walk memory contiguously: `matmul` uses the
//! i-k-j order (each output row accumulates scaled rows of `b`), `linear` computes dot
//! products of contiguous rows of `x` and `w`, blocking over `w`'s rows so each block
//! of weights is read once for all rows of `x`. Per output element the summation order
//! is fixed, so results do not depend on the thread count.
//!
//! `matmul` also accepts integer operands (wrapping arithmetic); `gemm`, `linear` and
//! `quantized_linear`, `packed_linear` are float-only. A float operand may be paired with a
//! block-quantized one (its dequantized values are used); the result has the dtype of
//! the non-quantized operand (`x` for `linear`).

use super::common::{
    broadcast_shapes, broadcast_strides, class, filled, float_tensor, int_tensor, numel, Class, OffsetIter, OpResult,
};
use crate::dtype::DType;
use crate::op::PACK_NR;
use crate::tensor::{round_float, Tensor, TensorData};
use rayon::prelude::*;

/// Dot product with four independent f64 partial sums (fixed order, deterministic).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The result dtype of a float product of `a` and `b`.
fn product_dtype(op: &str, a: DType, b: DType) -> OpResult<DType> {
    if a == b || (b.is_quantized() && class(a) == Class::Float) {
        Ok(a)
    } else if a.is_quantized() && class(b) == Class::Float {
        Ok(b)
    } else {
        Err(format!("`{op}` needs operands of one dtype, found {a} and {b}"))
    }
}

/// `C[M, N] = A[M, K] · B[K, N]` for a batch of matrices; `pairs[i]` gives the element
/// offsets of the i-th (A, B) pair. Output rows are computed in parallel.
fn matmul_f64(a: &[f64], b: &[f64], pairs: &[(usize, usize)], m: usize, k: usize, n: usize) -> OpResult<Vec<f64>> {
    let total = numel(&[pairs.len(), m, n])?;
    let mut out = filled(total, 0.0f64)?;
    if n == 0 || m == 0 || pairs.is_empty() {
        return Ok(out);
    }
    let bad = std::sync::atomic::AtomicBool::new(false);
    out.par_chunks_mut(n).enumerate().for_each(|(row, out_row)| {
        let (batch, i) = (row / m, row % m);
        let Some(&(a_off, b_off)) = pairs.get(batch) else {
            return;
        };
        let a_row = a.get(a_off + i * k..a_off + (i + 1) * k);
        let b_mat = b.get(b_off..b_off + k * n);
        let (Some(a_row), Some(b_mat)) = (a_row, b_mat) else {
            bad.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        for (aik, b_row) in a_row.iter().zip(b_mat.chunks_exact(n)) {
            for (o, bkj) in out_row.iter_mut().zip(b_row) {
                *o += aik * bkj;
            }
        }
    });
    if bad.into_inner() {
        return Err("internal error: matmul offsets out of range".into());
    }
    Ok(out)
}

/// numpy `matmul`.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(format!("`matmul` operands must have rank ≥ 1, found shapes {:?} and {:?}", a.shape, b.shape));
    }
    let a_shape: Vec<usize> = if a.rank() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
    let b_shape: Vec<usize> = if b.rank() == 1 { vec![b.shape[0], 1] } else { b.shape.clone() };
    let (ar, br) = (a_shape.len(), b_shape.len());
    let (m, k) = (a_shape[ar - 2], a_shape[ar - 1]);
    let (k2, n) = (b_shape[br - 2], b_shape[br - 1]);
    if k != k2 {
        return Err(format!("`matmul` contraction dims differ: {:?} · {:?} ({k} vs {k2})", a.shape, b.shape));
    }
    let batch = broadcast_shapes(&a_shape[..ar - 2], &b_shape[..br - 2])?;
    let mut out_shape = batch.clone();
    if a.rank() > 1 {
        out_shape.push(m);
    }
    if b.rank() > 1 {
        out_shape.push(n);
    }
    if numel(&out_shape)? == 0 {
        let dtype = if class(a.dtype) == Class::Float { product_dtype("matmul", a.dtype, b.dtype)? } else { a.dtype };
        return Ok(super::common::tensor_from_data(
            dtype,
            out_shape,
            match a.data {
                TensorData::Float(_) => TensorData::Float(Vec::new()),
                TensorData::Int(_) => TensorData::Int(Vec::new()),
            },
        ));
    }
    let a_batch: Vec<usize> = OffsetIter::new(&batch, &broadcast_strides(&a_shape[..ar - 2], &batch)?, 0).collect();
    let b_batch: Vec<usize> = OffsetIter::new(&batch, &broadcast_strides(&b_shape[..br - 2], &batch)?, 0).collect();
    let pairs: Vec<(usize, usize)> = a_batch.iter().zip(&b_batch).map(|(&x, &y)| (x * m * k, y * k * n)).collect();
    match (&a.data, &b.data) {
        (TensorData::Float(x), TensorData::Float(y)) => {
            let dtype = product_dtype("matmul", a.dtype, b.dtype)?;
            Ok(float_tensor(dtype, out_shape, matmul_f64(x, y, &pairs, m, k, n)?))
        }
        (TensorData::Int(x), TensorData::Int(y)) if class(a.dtype) == Class::Int && a.dtype == b.dtype => {
            let mut out = filled(numel(&out_shape)?, 0i64)?;
            for (p, &(ao, bo)) in pairs.iter().enumerate() {
                for i in 0..m {
                    for kk in 0..k {
                        let aik = x[ao + i * k + kk];
                        for j in 0..n {
                            let o = &mut out[(p * m + i) * n + j];
                            *o = o.wrapping_add(aik.wrapping_mul(y[bo + kk * n + j]));
                        }
                    }
                }
            }
            Ok(int_tensor(a.dtype, out_shape, out))
        }
        _ => Err(format!(
            "`matmul` needs two float or two same-dtype integer operands, found {} and {}",
            a.dtype, b.dtype
        )),
    }
}

/// A row-major copy of the transpose of a 2-D matrix.
fn transpose2(v: &[f64], rows: usize, cols: usize) -> OpResult<Vec<f64>> {
    let mut out = filled(rows * cols, 0.0f64)?;
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    Ok(out)
}

/// `gemm a, b[, c] {alpha, beta, trans_a, trans_b}`.
pub(crate) fn gemm(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
) -> OpResult<Tensor> {
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!("`gemm` needs 2-D operands, found shapes {:?} and {:?}", a.shape, b.shape));
    }
    let dtype = product_dtype("gemm", a.dtype, b.dtype)?;
    let av = super::common::floats(a, "operand a of `gemm`")?;
    let bv = super::common::floats(b, "operand b of `gemm`")?;
    let (a_mat, m, k) = if trans_a {
        (transpose2(av, a.shape[0], a.shape[1])?, a.shape[1], a.shape[0])
    } else {
        (av.to_vec(), a.shape[0], a.shape[1])
    };
    let (b_mat, k2, n) = if trans_b {
        (transpose2(bv, b.shape[0], b.shape[1])?, b.shape[1], b.shape[0])
    } else {
        (bv.to_vec(), b.shape[0], b.shape[1])
    };
    if k != k2 {
        return Err(format!("`gemm` contraction dims differ: op(a) is [{m}, {k}], op(b) is [{k2}, {n}]"));
    }
    let mut out = matmul_f64(&a_mat, &b_mat, &[(0, 0)], m, k, n)?;
    out.iter_mut().for_each(|o| *o *= alpha);
    if let Some(c) = c {
        let cv = super::common::floats(c, "operand c of `gemm`")?;
        let st = broadcast_strides(&c.shape, &[m, n])?;
        for (o, off) in out.iter_mut().zip(OffsetIter::new(&[m, n], &st, 0)) {
            *o += beta * cv.get(off).copied().ok_or("internal error: gemm c offset")?;
        }
    }
    Ok(float_tensor(dtype, vec![m, n], out))
}

/// Output features computed per parallel task of `linear` (a block of weight rows).
const LINEAR_BLOCK: usize = 64;

/// `y[r, o] = dot(x[r, :], w[o, :]) + bias[o]` for float data, result `[rows, out]`.
fn linear_f64(x: &[f64], w: &[f64], bias: Option<&[f64]>, rows: usize, inf: usize, outf: usize) -> OpResult<Vec<f64>> {
    let total = numel(&[rows, outf])?;
    // Computed transposed ([out, rows]) so each task owns a contiguous block and reads
    // its block of weight rows once for all rows of x; transposed back at the end.
    let mut t = filled(total, 0.0f64)?;
    if rows == 0 || outf == 0 {
        return Ok(t);
    }
    if inf > 0 && (x.len() < rows * inf || w.len() < outf * inf) {
        return Err("internal error: linear operands are too short".into());
    }
    t.par_chunks_mut(rows * LINEAR_BLOCK).enumerate().for_each(|(blk, chunk)| {
        for (j, col) in chunk.chunks_mut(rows).enumerate() {
            let o = blk * LINEAR_BLOCK + j;
            let w_row = w.get(o * inf..(o + 1) * inf).unwrap_or_default();
            let b = bias.and_then(|b| b.get(o)).copied().unwrap_or(0.0);
            for (r, y) in col.iter_mut().enumerate() {
                let x_row = x.get(r * inf..(r + 1) * inf).unwrap_or_default();
                *y = dot(x_row, w_row) + b;
            }
        }
    });
    let mut out = filled(total, 0.0f64)?;
    for o in 0..outf {
        for r in 0..rows {
            out[r * outf + o] = t[o * rows + r];
        }
    }
    Ok(out)
}

fn linear_common(x: &Tensor, w: &[f64], w_shape: &[usize], bias: Option<&Tensor>, name: &str) -> OpResult<Tensor> {
    let xv = super::common::floats(x, &format!("the input of `{name}`"))?;
    if x.rank() == 0 || w_shape.len() != 2 {
        return Err(format!(
            "`{name}` needs x: [..., in] and w: [out, in], found shapes {:?} and {w_shape:?}",
            x.shape
        ));
    }
    let (outf, inf) = (w_shape[0], w_shape[1]);
    let x_in = x.shape[x.rank() - 1];
    if x_in != inf {
        return Err(format!("`{name}`: x has {x_in} input features but w is [{outf}, {inf}]"));
    }
    let bias_v = match bias {
        Some(b) => {
            if b.shape != [outf] {
                return Err(format!("`{name}`: bias must have shape [{outf}], found {:?}", b.shape));
            }
            Some(super::common::floats(b, &format!("the bias of `{name}`"))?)
        }
        None => None,
    };
    let rows = x.shape[..x.rank() - 1].iter().product();
    let mut out_shape = x.shape.clone();
    out_shape[x.rank() - 1] = outf;
    numel(&out_shape)?;
    let out = linear_f64(xv, w, bias_v, rows, inf, outf)?;
    Ok(float_tensor(x.dtype, out_shape, out))
}

/// `linear x, w[, bias]` → `x · wᵀ + bias`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> OpResult<Tensor> {
    product_dtype("linear", x.dtype, w.dtype)?;
    let wv = super::common::floats(w, "the weight of `linear`")?;
    linear_common(x, wv, &w.shape, bias, "linear")
}

/// `quantized_linear x, w[, bias]` (block-quantized `w`) or `quantized_linear x, w, scale[, bias]`
/// (`i8` `w` with per-output-channel f32 scales). Dequantizes `w` to f32, then `linear`.
pub(crate) fn quantized_linear(args: &[&Tensor]) -> OpResult<Tensor> {
    let (Some(&x), Some(&w)) = (args.first(), args.get(1)) else {
        return Err("`quantized_linear` needs at least x and w".into());
    };
    if w.dtype.is_quantized() {
        if args.len() > 3 {
            return Err(format!(
                "`quantized_linear` with a {} weight takes x, w[, bias], found {} operands",
                w.dtype,
                args.len()
            ));
        }
        let wv = super::common::floats(w, "the weight of `quantized_linear`")?;
        return linear_common(x, wv, &w.shape, args.get(2).copied(), "quantized_linear");
    }
    if w.dtype != DType::I8 {
        return Err(format!("`quantized_linear` needs a q8_0, q4_0, int4<G> or i8 weight, found {}", w.dtype));
    }
    let scale = args
        .get(2)
        .copied()
        .ok_or("`quantized_linear` with an i8 weight needs a scale operand: x, w, scale[, bias]")?;
    let wi = super::common::ints(w, "the weight of `quantized_linear`")?;
    if w.rank() != 2 {
        return Err(format!("`quantized_linear`: w must be [out, in], found shape {:?}", w.shape));
    }
    let (outf, inf) = (w.shape[0], w.shape[1]);
    if scale.shape != [outf] {
        return Err(format!("`quantized_linear`: scale must have shape [{outf}], found {:?}", scale.shape));
    }
    let sv = super::common::floats(scale, "the scale of `quantized_linear`")?;
    let mut wf = filled(wi.len(), 0.0f64)?;
    for o in 0..outf {
        for i in 0..inf {
            wf[o * inf + i] = round_float(sv[o] * wi[o * inf + i] as f64, DType::F32);
        }
    }
    linear_common(x, &wf, &w.shape, args.get(3).copied(), "quantized_linear")
}

/// `packed_linear x, wp[, bias] {out_features}`: unpack the `[panels, in, NR]` weight back
/// to `[out_features, in]`, then `linear`.
pub(crate) fn packed_linear(x: &Tensor, wp: &Tensor, bias: Option<&Tensor>, out_features: i64) -> OpResult<Tensor> {
    product_dtype("packed_linear", x.dtype, wp.dtype)?;
    let wv = super::common::floats(wp, "the weight of `packed_linear`")?;
    let outf = usize::try_from(out_features)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`packed_linear`: out_features must be positive, found {out_features}"))?;
    let [panels, inf, nr] = wp.shape[..] else {
        return Err(format!("`packed_linear`: wp must be [panels, in, {PACK_NR}], found shape {:?}", wp.shape));
    };
    if nr != PACK_NR || panels != outf.div_ceil(PACK_NR) {
        return Err(format!(
            "`packed_linear`: wp of shape {:?} does not hold {outf} output features in panels of {PACK_NR}",
            wp.shape
        ));
    }
    let mut w = filled(numel(&[outf, inf])?, 0.0f64)?;
    for (o, row) in w.chunks_mut(inf.max(1)).enumerate().take(outf) {
        let (p, j) = (o / PACK_NR, o % PACK_NR);
        for (k, v) in row.iter_mut().enumerate() {
            *v = wv.get((p * inf + k) * PACK_NR + j).copied().unwrap_or(0.0);
        }
    }
    linear_common(x, &w, &[outf, inf], bias, "packed_linear")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;

    #[test]
    fn matmul_shapes_and_values() {
        let a = f64t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f64t(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let r = matmul(&a, &b).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2, 2], vec![58.0, 64.0, 139.0, 154.0]));
        // 1-D promotion on both sides.
        let v = f64t(&[3], &[1.0, 0.0, -1.0]);
        let r = matmul(&a, &v).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2], vec![-2.0, -2.0]));
        let r = matmul(&v, &b).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2], vec![-4.0, -4.0]));
        let r = matmul(&v, &v).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![], vec![2.0]));
        // Batch broadcasting: [2, 1, 2, 2] x [3, 2, 1].
        let a = f64t(&[2, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0]);
        let b = f64t(&[3, 2, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = matmul(&a, &b).unwrap();
        assert_eq!(r.shape, vec![2, 3, 2, 1]);
        assert_eq!(r.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert!(matmul(&f64t(&[2, 3], &[0.0; 6]), &f64t(&[2, 3], &[0.0; 6])).unwrap_err().contains("contraction"));
        let r = matmul(&i64t(&[1, 2], &[2, 3]), &i64t(&[2, 1], &[4, 5])).unwrap();
        assert_eq!(r.to_i64_vec(), vec![23]);
        // Zero-size contraction gives zeros.
        assert_eq!(matmul(&f64t(&[2, 0], &[]), &f64t(&[0, 2], &[])).unwrap().to_f64_vec(), vec![0.0; 4]);
        // f32 result is rounded once from the f64 accumulation.
        let r = matmul(&f32t(&[1, 2], &[1.0, 1e-8]), &f32t(&[2, 1], &[1.0, 1.0])).unwrap();
        assert_eq!(r.to_f64_vec(), vec![(1.0 + (1e-8f32 as f64)) as f32 as f64]);
    }

    #[test]
    fn gemm_flags() {
        let a = f64t(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]); // transpose of [[1,2,3],[4,5,6]]
        let b = f64t(&[2, 3], &[7.0, 9.0, 11.0, 8.0, 10.0, 12.0]); // transpose of [[7,8],[9,10],[11,12]]
        let c = f64t(&[2], &[1.0, -1.0]);
        let r = gemm(&a, &b, Some(&c), 2.0, 10.0, true, true).unwrap();
        assert_eq!(r.to_f64_vec(), vec![126.0, 118.0, 288.0, 298.0]);
    }

    #[test]
    fn linear_and_quantized_linear() {
        let x = f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let w = f32t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let b = f32t(&[3], &[0.5, 0.5, 0.5]);
        let r = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!((r.shape.clone(), r.to_f64_vec()), (vec![2, 3], vec![1.5, 2.5, 3.5, 3.5, 4.5, 7.5]));
        assert!(linear(&x, &f32t(&[3, 3], &[0.0; 9]), None).unwrap_err().contains("input features"));
        // i8 weight with per-channel scale.
        let wq = Tensor::from_i64(DType::I8, vec![2, 2], vec![1, -2, 3, 4]).unwrap();
        let s = f32t(&[2], &[0.5, 2.0]);
        let r = quantized_linear(&[&x, &wq, &s]).unwrap();
        assert_eq!(r.to_f64_vec(), vec![-1.5, 22.0, -2.5, 50.0]);
        // q8_0 weight: one block of 32 with scale 0.5.
        let mut block = vec![0x00, 0x38]; // f16 0.5
        block.extend((0..32).map(|i| i as u8));
        let wq8 = Tensor::from_le_bytes(DType::Q8_0, vec![1, 32], &block).unwrap();
        let x32 = f32t(&[1, 32], &[1.0; 32]);
        let r = quantized_linear(&[&x32, &wq8]).unwrap();
        assert_eq!(r.to_f64_vec(), vec![0.5 * (0..32).sum::<i32>() as f64]);
        assert_eq!(r.dtype, DType::F32);
        assert!(quantized_linear(&[&x, &w]).unwrap_err().contains("i8 weight"));
        assert!(quantized_linear(&[&x, &wq]).unwrap_err().contains("scale"));
    }

    #[test]
    fn packed_linear_matches_linear() {
        // 18 outputs → 2 panels, the second zero-padded from 2 to 16 columns.
        let (n, k) = (18usize, 3usize);
        let w: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut wp = vec![0.0; 2 * k * PACK_NR];
        for o in 0..n {
            for i in 0..k {
                wp[((o / PACK_NR) * k + i) * PACK_NR + o % PACK_NR] = w[o * k + i];
            }
        }
        let x = f32t(&[2, k], &[1.0, -2.0, 0.5, 3.0, 0.25, -1.0]);
        let b = f32t(&[n], &(0..n).map(|i| i as f64).collect::<Vec<_>>());
        let wt = f32t(&[n, k], &w);
        let wpt = f32t(&[2, k, PACK_NR], &wp);
        let want = linear(&x, &wt, Some(&b)).unwrap();
        let got = packed_linear(&x, &wpt, Some(&b), n as i64).unwrap();
        assert_eq!(got.shape, vec![2, n]);
        assert_eq!(got.to_f64_vec(), want.to_f64_vec());
        assert!(packed_linear(&x, &wpt, None, 40).unwrap_err().contains("does not hold"));
        assert!(packed_linear(&x, &wpt, None, 0).is_err());
        assert!(packed_linear(&x, &wt, None, 18).unwrap_err().contains("panels"));
    }
}
