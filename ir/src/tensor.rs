//! Concrete tensors: constant literals in the IR and the values the reference
//! interpreter computes with.
//!
//! Every element is held widened: floating dtypes as `f64` (exact for f16/bf16/f32),
//! integer and bool dtypes as `i64`. A tensor of a block-quantized dtype holds its
//! *dequantized* values. Storage (little-endian bytes) is only produced or consumed at
//! the edges: weights, `.npy` files, literals.

use crate::dtype::DType;
use crate::quant::quantize_blocks;
use half::{bf16, f16};
use std::fmt;

/// Element storage, widened.
#[derive(Debug, Clone)]
pub enum TensorData {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

/// A dense tensor with a concrete shape.
#[derive(Clone)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// Errors building a tensor from untrusted parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} has {expected} elements but {actual} were given")]
    ElementCount { shape: Vec<usize>, expected: usize, actual: usize },
    #[error("shape {0:?} overflows the element count")]
    Overflow(Vec<usize>),
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes but {actual} were given")]
    ByteCount { dtype: DType, shape: Vec<usize>, expected: u64, actual: u64 },
    #[error("last dimension {last} of a {dtype} tensor is not a multiple of its block length {block}")]
    BlockAlignment { dtype: DType, last: u64, block: u64 },
    #[error("cannot encode a {0} tensor as raw elements")]
    NotEncodable(DType),
}

/// Round a widened float to what `dtype` can hold (identity for f64).
pub fn round_float(v: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        DType::Q8_0 | DType::Q4_0 | DType::Int4 { .. } => v as f32 as f64,
        _ => v,
    }
}

/// Wrap a widened integer to what `dtype` can hold (two's complement, like a C cast).
pub fn wrap_int(v: i64, dtype: DType) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::Bool => (v != 0) as i64,
        _ => v,
    }
}

/// Checked element count of a shape.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Build from widened floats; the values are rounded to `dtype`.
    pub fn from_f64(dtype: DType, shape: Vec<usize>, values: Vec<f64>) -> Result<Tensor, TensorError> {
        Self::check_count(&shape, values.len())?;
        let data = if dtype.is_float() || dtype.is_quantized() {
            TensorData::Float(values.into_iter().map(|v| round_float(v, dtype)).collect())
        } else {
            TensorData::Int(values.into_iter().map(|v| wrap_int(v as i64, dtype)).collect())
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// Build from widened integers; the values are converted to `dtype`.
    pub fn from_i64(dtype: DType, shape: Vec<usize>, values: Vec<i64>) -> Result<Tensor, TensorError> {
        Self::check_count(&shape, values.len())?;
        let data = if dtype.is_float() || dtype.is_quantized() {
            TensorData::Float(values.into_iter().map(|v| round_float(v as f64, dtype)).collect())
        } else {
            TensorData::Int(values.into_iter().map(|v| wrap_int(v, dtype)).collect())
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// A scalar float tensor.
    pub fn scalar_f64(dtype: DType, v: f64) -> Tensor {
        Tensor { dtype, shape: Vec::new(), data: TensorData::Float(vec![round_float(v, dtype)]) }
    }

    /// A scalar integer tensor.
    pub fn scalar_i64(dtype: DType, v: i64) -> Tensor {
        Tensor { dtype, shape: Vec::new(), data: TensorData::Int(vec![wrap_int(v, dtype)]) }
    }

    fn check_count(shape: &[usize], actual: usize) -> Result<(), TensorError> {
        let expected = checked_numel(shape).ok_or_else(|| TensorError::Overflow(shape.to_vec()))?;
        if expected != actual {
            return Err(TensorError::ElementCount { shape: shape.to_vec(), expected, actual });
        }
        Ok(())
    }

    pub fn numel(&self) -> usize {
        match &self.data {
            TensorData::Float(v) => v.len(),
            TensorData::Int(v) => v.len(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Every element as f64 (integers converted).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::Float(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every element as i64 (floats truncated toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::Float(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Int(v) => v.clone(),
        }
    }

    /// Decode little-endian storage bytes of `dtype` (dequantizing block types).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor, TensorError> {
        let numel = checked_numel(&shape).ok_or_else(|| TensorError::Overflow(shape.clone()))?;
        let last = shape.last().copied().unwrap_or(1) as u64;
        if dtype.is_quantized() && last % dtype.block_len() != 0 {
            return Err(TensorError::BlockAlignment { dtype, last, block: dtype.block_len() });
        }
        let expected = dtype.storage_bytes(numel as u64, last).ok_or_else(|| TensorError::Overflow(shape.clone()))?;
        if expected != bytes.len() as u64 {
            return Err(TensorError::ByteCount { dtype, shape, expected, actual: bytes.len() as u64 });
        }
        let data = match dtype {
            DType::F32 => TensorData::Float(chunks::<4>(bytes).map(|b| f32::from_le_bytes(b) as f64).collect()),
            DType::F64 => TensorData::Float(chunks::<8>(bytes).map(f64::from_le_bytes).collect()),
            DType::F16 => TensorData::Float(chunks::<2>(bytes).map(|b| f16::from_le_bytes(b).to_f64()).collect()),
            DType::BF16 => TensorData::Float(chunks::<2>(bytes).map(|b| bf16::from_le_bytes(b).to_f64()).collect()),
            DType::I64 => TensorData::Int(chunks::<8>(bytes).map(i64::from_le_bytes).collect()),
            DType::I32 => TensorData::Int(chunks::<4>(bytes).map(|b| i32::from_le_bytes(b) as i64).collect()),
            DType::I8 => TensorData::Int(bytes.iter().map(|&b| b as i8 as i64).collect()),
            DType::U8 => TensorData::Int(bytes.iter().map(|&b| b as i64).collect()),
            DType::Bool => TensorData::Int(bytes.iter().map(|&b| (b != 0) as i64).collect()),
            DType::Q8_0 | DType::Q4_0 | DType::Int4 { .. } => TensorData::Float(dequantize_blocks(dtype, bytes)),
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// Encode as little-endian storage bytes. Block-quantized tensors are quantized along
    /// their last dim with [`quantize_blocks`] (lossless for values a `cast` produced, so
    /// `from_le_bytes(to_le_bytes(t)) == t` for them).
    pub fn to_le_bytes(&self) -> Result<Vec<u8>, TensorError> {
        if self.dtype.is_quantized() {
            let last = self.shape.last().copied().unwrap_or(1) as u64;
            let block = self.dtype.block_len();
            if last % block != 0 {
                return Err(TensorError::BlockAlignment { dtype: self.dtype, last, block });
            }
            let TensorData::Float(v) = &self.data else {
                return Err(TensorError::NotEncodable(self.dtype));
            };
            return quantize_blocks(self.dtype, v).ok_or(TensorError::NotEncodable(self.dtype));
        }
        let mut out = Vec::with_capacity(self.numel() * self.dtype.block_bytes() as usize);
        match (&self.data, self.dtype) {
            (TensorData::Float(v), DType::F32) => v.iter().for_each(|x| out.extend((*x as f32).to_le_bytes())),
            (TensorData::Float(v), DType::F64) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            (TensorData::Float(v), DType::F16) => v.iter().for_each(|x| out.extend(f16::from_f64(*x).to_le_bytes())),
            (TensorData::Float(v), DType::BF16) => v.iter().for_each(|x| out.extend(bf16::from_f64(*x).to_le_bytes())),
            (TensorData::Int(v), DType::I64) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            (TensorData::Int(v), DType::I32) => v.iter().for_each(|x| out.extend((*x as i32).to_le_bytes())),
            (TensorData::Int(v), DType::I8) => v.iter().for_each(|x| out.push(*x as i8 as u8)),
            (TensorData::Int(v), DType::U8) => v.iter().for_each(|x| out.push(*x as u8)),
            (TensorData::Int(v), DType::Bool) => v.iter().for_each(|x| out.push((*x != 0) as u8)),
            _ => return Err(TensorError::NotEncodable(self.dtype)),
        }
        Ok(out)
    }

    /// Bitwise equality (so NaN literals compare equal to themselves).
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        self.dtype == other.dtype
            && self.shape == other.shape
            && match (&self.data, &other.data) {
                (TensorData::Float(a), TensorData::Float(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
                }
                (TensorData::Int(a), TensorData::Int(b)) => a == b,
                _ => false,
            }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.bit_eq(other)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype, self.shape)?;
        let preview: Vec<String> = match &self.data {
            TensorData::Float(v) => v.iter().take(8).map(|x| format!("{x}")).collect(),
            TensorData::Int(v) => v.iter().take(8).map(|x| format!("{x}")).collect(),
        };
        write!(f, "[{}{}]", preview.join(", "), if self.numel() > 8 { ", …" } else { "" })
    }
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// Dequantize whole blocks; `bytes.len()` must be a multiple of the block size.
fn dequantize_blocks(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    let block_bytes = dtype.block_bytes() as usize;
    let block_len = dtype.block_len() as usize;
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * block_len);
    for block in bytes.chunks_exact(block_bytes) {
        let scale = f16::from_le_bytes([block[0], block[1]]).to_f64();
        let payload = &block[2..];
        match dtype {
            DType::Q8_0 => out.extend(payload.iter().map(|&q| scale * f64::from(q as i8))),
            DType::Q4_0 => {
                let low = payload.iter().map(|&b| scale * (f64::from(b & 0x0f) - 8.0));
                let high: Vec<f64> = payload.iter().map(|&b| scale * (f64::from(b >> 4) - 8.0)).collect();
                out.extend(low);
                out.extend(high);
            }
            _ => {
                for &b in payload {
                    out.push(scale * (f64::from(b & 0x0f) - 8.0));
                    out.push(scale * (f64::from(b >> 4) - 8.0));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_layout_matches_ggml() {
        // scale 1.0 (f16 0x3c00); byte j = (hi << 4) | lo.
        let mut block = vec![0x00, 0x3c];
        block.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let t = Tensor::from_le_bytes(DType::Q4_0, vec![32], &block).unwrap();
        let v = t.to_f64_vec();
        assert_eq!(v[0], -8.0);
        assert_eq!(v[15], 7.0);
        assert_eq!(v[16], 7.0);
        assert_eq!(v[31], -8.0);
    }

    #[test]
    fn byte_count_is_checked() {
        assert!(Tensor::from_le_bytes(DType::F32, vec![2, 2], &[0; 15]).is_err());
        assert!(Tensor::from_le_bytes(DType::F32, vec![usize::MAX, 2], &[]).is_err());
        let t = Tensor::from_le_bytes(DType::I32, vec![2], &[1, 0, 0, 0, 255, 255, 255, 255]).unwrap();
        assert_eq!(t.to_i64_vec(), vec![1, -1]);
        assert_eq!(t.to_le_bytes().unwrap(), vec![1, 0, 0, 0, 255, 255, 255, 255]);
    }

    #[test]
    fn quantized_bytes_round_trip() {
        // A canonical q4_0 block (one nibble is 0, i.e. the block's signed max): bytes survive
        // decode + encode unchanged.
        let mut block = vec![0x00, 0x3c];
        block.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let t = Tensor::from_le_bytes(DType::Q4_0, vec![1, 32], &block).unwrap();
        assert_eq!(t.to_le_bytes().unwrap(), block);
        let again = Tensor::from_le_bytes(DType::Q4_0, vec![1, 32], &t.to_le_bytes().unwrap()).unwrap();
        assert_eq!(again, t);
        let bad = Tensor { dtype: DType::Q8_0, shape: vec![16], data: TensorData::Float(vec![0.0; 16]) };
        assert!(bad.to_le_bytes().is_err());
    }
}
