//! Compile-time evaluation of weight-derived data movement directly on little-endian bytes.
//!
//! The weight-preparation passes put pure data movement between a weight and the kernel that
//! reads it: `prepack-weights` builds `pad → reshape → transpose` chains, other passes add
//! transposes and views. The reference interpreter evaluates these on `f64` tensors, which for
//! an LLM means converting hundreds of millions of values twice and holding twice the bytes.
//! The ops here move whole elements without looking at their values, so evaluating them on
//! the stored bytes gives exactly the bytes the interpreter's result would encode to
//! (`tests/compile.rs` compares both paths on whole models). Anything else — arithmetic,
//! quantization, casts, modes other than constant padding — is left to the interpreter:
//! [`byte_op`] answers `None` and the compile driver falls back.

use ferrumc_ir::op::PadMode;
use ferrumc_ir::tensor::TensorData;
use ferrumc_ir::{DType, Op, Tensor};

/// A plain-typed tensor as its little-endian element bytes (the artifact's weight layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByteTensor {
    /// Element type (never quantized).
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// `numel × element size` bytes, row-major.
    pub bytes: Vec<u8>,
}

/// Whether values of `dtype` survive the interpreter's load → `to_le_bytes` round trip
/// unchanged, so a weight's stored bytes can be used as they are. Booleans are excluded
/// (any non-zero byte becomes 1), as are quantized blocks and `f64` (no artifact form).
pub(crate) fn bytes_are_exact(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::I64 | DType::I32 | DType::I8 | DType::U8)
}

/// What a data-movement op does, decided before any bytes are touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ByteOp {
    /// Same bytes, new shape (reshape, squeeze, unsqueeze, identity).
    View,
    /// Permute the axes.
    Transpose(Vec<usize>),
    /// Constant padding: `(before, after)` per axis and the fill element's bytes.
    Pad(Vec<(usize, usize)>, Vec<u8>),
}

/// How to evaluate `op` on an operand of `dtype` and rank `rank` on bytes, or `None` when the
/// interpreter must do it.
pub(crate) fn byte_op(op: &Op, dtype: DType, rank: usize) -> Option<ByteOp> {
    if !bytes_are_exact(dtype) {
        return None;
    }
    match op {
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Identity => Some(ByteOp::View),
        Op::Transpose { perm } => {
            let perm: Vec<usize> = perm.iter().map(|&p| usize::try_from(p).ok()).collect::<Option<_>>()?;
            let mut seen = vec![false; rank];
            if perm.len() != rank || !perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true)) {
                return None;
            }
            Some(ByteOp::Transpose(perm))
        }
        Op::Pad { pads, mode: PadMode::Constant, value } if dtype.is_float() && pads.len() == 2 * rank => {
            let sides: Vec<(usize, usize)> = (0..rank)
                .map(|d| Some((usize::try_from(pads[d]).ok()?, usize::try_from(pads[d + rank]).ok()?)))
                .collect::<Option<_>>()?;
            // The interpreter fills with `value` and encodes the result with `to_le_bytes`:
            // encode the fill the same way.
            let fill = Tensor { dtype, shape: vec![1], data: TensorData::Float(vec![*value]) }.to_le_bytes().ok()?;
            Some(ByteOp::Pad(sides, fill))
        }
        _ => None,
    }
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Applies `op` to `x`, whose result the module declares with shape `declared`. Errors (an
/// inconsistent shape) are returned as text for the caller to name the value.
pub(crate) fn apply(op: &ByteOp, x: ByteTensor, declared: &[usize]) -> Result<ByteTensor, String> {
    let es = x.dtype.block_bytes() as usize;
    let out = match op {
        ByteOp::View => {
            if numel(declared) != numel(&x.shape) {
                return Err(format!("cannot view {:?} as {declared:?}", x.shape));
            }
            ByteTensor { shape: declared.to_vec(), ..x }
        }
        ByteOp::Transpose(perm) => {
            let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
            let bytes = match es {
                1 => permute::<1>(&x.bytes, &x.shape, perm),
                2 => permute::<2>(&x.bytes, &x.shape, perm),
                4 => permute::<4>(&x.bytes, &x.shape, perm),
                8 => permute::<8>(&x.bytes, &x.shape, perm),
                _ => return Err(format!("no byte transpose for {}-byte elements", es)),
            };
            ByteTensor { dtype: x.dtype, shape, bytes }
        }
        ByteOp::Pad(sides, fill) => {
            let shape: Vec<usize> = x
                .shape
                .iter()
                .zip(sides)
                .map(|(&n, &(b, a))| n.checked_add(b)?.checked_add(a))
                .collect::<Option<_>>()
                .ok_or("padded shape overflows")?;
            let bytes = pad(&x.bytes, &x.shape, &shape, sides, fill).ok_or("padded size overflows")?;
            ByteTensor { dtype: x.dtype, shape, bytes }
        }
    };
    if out.shape != declared {
        return Err(format!("produces shape {:?}, the module declares {declared:?}", out.shape));
    }
    Ok(out)
}

/// Row-major strides (in elements) of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `out[i_0, …, i_{r-1}] = x[j]` where `j` has `j[perm[d]] = i_d`: the result's axis `d` is
/// the input's axis `perm[d]`. `N`-byte elements.
fn permute<const N: usize>(bytes: &[u8], shape: &[usize], perm: &[usize]) -> Vec<u8> {
    let total = bytes.len() / N;
    let rank = shape.len();
    if rank == 0 || total == 0 {
        return bytes.to_vec();
    }
    let in_strides = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let step: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let (inner, inner_step) = (out_shape[rank - 1], step[rank - 1]);
    let mut out: Vec<u8> = Vec::with_capacity(total * N);
    let mut index = vec![0usize; rank - 1];
    let mut base = 0usize;
    loop {
        for j in 0..inner {
            let at = (base + j * inner_step) * N;
            out.extend_from_slice(&bytes[at..at + N]);
        }
        // Odometer over the outer result axes, last fastest.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            base += step[d];
            if index[d] < out_shape[d] {
                break;
            }
            base -= step[d] * out_shape[d];
            index[d] = 0;
        }
    }
}

/// Constant padding of a row-major tensor: every input row (last axis) is copied whole into
/// a result pre-filled with `fill`.
fn pad(bytes: &[u8], shape: &[usize], out_shape: &[usize], sides: &[(usize, usize)], fill: &[u8]) -> Option<Vec<u8>> {
    let es = fill.len();
    let total = numel(out_shape)?.checked_mul(es)?;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        out.extend_from_slice(fill);
    }
    let rank = shape.len();
    if rank == 0 {
        out.copy_from_slice(bytes);
        return Some(out);
    }
    if numel(shape)? == 0 {
        return Some(out);
    }
    let out_strides = strides(out_shape);
    let row = shape[rank - 1] * es;
    let mut index = vec![0usize; rank - 1];
    for chunk in bytes.chunks_exact(row) {
        let start: usize = (0..rank).map(|d| (index.get(d).copied().unwrap_or(0) + sides[d].0) * out_strides[d]).sum();
        out[start * es..start * es + row].copy_from_slice(chunk);
        for d in (0..rank - 1).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrumc_ir::interp::eval_single_op;
    use ferrumc_ir::TensorType;

    /// The interpreter's result for `op` on `x`, as bytes.
    fn reference(op: &Op, x: &Tensor, out_shape: &[usize]) -> Vec<u8> {
        let dims: Vec<i64> = out_shape.iter().map(|&d| d as i64).collect();
        let ty = TensorType::fixed(x.dtype, &dims);
        eval_single_op(op, &[x], &[&ty]).unwrap().remove(0).to_le_bytes().unwrap()
    }

    fn check(op: Op, dtype: DType, shape: &[usize], out_shape: &[usize]) {
        let n = numel(shape).unwrap();
        let values: Vec<f64> = (0..n).map(|i| (i as f64) * 0.37 - 5.0).collect();
        let values = if dtype.is_float() { values } else { values.iter().map(|v| v.round()).collect() };
        let x = Tensor::from_f64(dtype, shape.to_vec(), values).unwrap();
        let bx = ByteTensor { dtype, shape: shape.to_vec(), bytes: x.to_le_bytes().unwrap() };
        let bop = byte_op(&op, dtype, shape.len()).unwrap_or_else(|| panic!("{op:?} on {dtype}"));
        let got = apply(&bop, bx, out_shape).unwrap();
        assert_eq!(got.bytes, reference(&op, &x, out_shape), "{op:?} {dtype} {shape:?}");
        assert_eq!(got.shape, out_shape);
    }

    #[test]
    fn transposes_match_the_interpreter_bytewise() {
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::I64, DType::I8] {
            check(Op::Transpose { perm: vec![1, 0] }, dtype, &[5, 7], &[7, 5]);
            check(Op::Transpose { perm: vec![0, 2, 1] }, dtype, &[3, 16, 5], &[3, 5, 16]);
            check(Op::Transpose { perm: vec![2, 0, 3, 1] }, dtype, &[2, 3, 4, 5], &[4, 2, 5, 3]);
            check(Op::Transpose { perm: vec![0] }, dtype, &[6], &[6]);
            check(Op::Transpose { perm: vec![1, 0] }, dtype, &[0, 3], &[3, 0]);
        }
    }

    #[test]
    fn constant_pads_match_the_interpreter_bytewise() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for value in [0.0, -0.0, 1.5, 1e-30] {
                let pad = |pads: Vec<i64>| Op::Pad { pads, mode: PadMode::Constant, value };
                check(pad(vec![0, 0, 3, 0]), dtype, &[5, 4], &[8, 4]);
                check(pad(vec![1, 2, 3, 4]), dtype, &[2, 3], &[6, 9]);
                check(pad(vec![0, 1, 0, 2, 0, 0]), dtype, &[2, 2, 3], &[4, 3, 3]);
                check(pad(vec![2, 1]), dtype, &[0], &[3]);
            }
        }
    }

    #[test]
    fn what_bytes_cannot_do_is_left_to_the_interpreter() {
        assert_eq!(byte_op(&Op::Transpose { perm: vec![0, 0] }, DType::F32, 2), None);
        assert_eq!(byte_op(&Op::Transpose { perm: vec![1, 0] }, DType::F32, 3), None);
        assert_eq!(byte_op(&Op::Transpose { perm: vec![-1, 0] }, DType::F32, 2), None);
        assert_eq!(byte_op(&Op::Transpose { perm: vec![1, 0] }, DType::Bool, 2), None);
        assert_eq!(byte_op(&Op::Transpose { perm: vec![1, 0] }, DType::Q8_0, 2), None);
        let edge = Op::Pad { pads: vec![0, 1], mode: PadMode::Edge, value: 0.0 };
        assert_eq!(byte_op(&edge, DType::F32, 1), None);
        let crop = Op::Pad { pads: vec![0, -1], mode: PadMode::Constant, value: 0.0 };
        assert_eq!(byte_op(&crop, DType::F32, 1), None);
        let int_pad = Op::Pad { pads: vec![0, 1], mode: PadMode::Constant, value: 0.0 };
        assert_eq!(byte_op(&int_pad, DType::I32, 1), None);
        assert_eq!(byte_op(&Op::Exp, DType::F32, 1), None);
        // A view to an inconsistent shape is an error, not a silently wrong weight.
        let x = ByteTensor { dtype: DType::F32, shape: vec![2, 3], bytes: vec![0; 24] };
        assert!(apply(&ByteOp::View, x, &[5]).is_err());
    }
}
