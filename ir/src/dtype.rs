//! Element types of ModelIR tensors, including block-quantized storage types.
//!
//! Plain dtypes store one element per `byte_size()` bytes. Block-quantized dtypes
//! (`q8_0`, `q4_0`, `int4<G>`) store the *last* dimension of a tensor in blocks of
//! `block_len()` elements, each block taking `block_bytes()` bytes; the logical shape
//! of such a tensor is still the dequantized shape, and its last dimension must be a
//! multiple of the block length. Block layouts:
//!
//! * `q8_0` (GGML Q8_0): 32 elements per block, an f16 scale `d` then 32 `i8` values
//!   `q`; element `i` is `d * q[i]`. 34 bytes per block.
//! * `q4_0` (GGML Q4_0): 32 elements per block, an f16 scale `d` then 16 bytes; byte
//!   `j` holds element `j` in its low nibble and element `j + 16` in its high nibble;
//!   element value is `d * (nibble - 8)`. 18 bytes per block.
//! * `int4<G>`: `G` elements per block (G even, 2..=4096), an f16 scale `d` then `G/2`
//!   bytes; byte `j` holds element `2j` in its low nibble and `2j + 1` in its high
//!   nibble; element value is `d * (nibble - 8)`. `2 + G/2` bytes per block.
//!
//! `cast` to one of these dtypes quantizes with [`crate::quant`] (GGML's reference
//! quantizers for `q8_0`/`q4_0`; symmetric `d = max|x| / 7` for `int4<G>`).

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I8,
    U8,
    Bool,
    /// GGML Q8_0 block quantization (32 elements per block).
    Q8_0,
    /// GGML Q4_0 block quantization (32 elements per block).
    Q4_0,
    /// Symmetric 4-bit quantization with an f16 scale per group of `group_size` elements.
    Int4 {
        group_size: u32,
    },
}

/// The largest group size accepted for `int4<G>`.
pub const MAX_INT4_GROUP: u32 = 4096;

impl DType {
    /// Every plain (non-parametric) dtype, in a stable order.
    pub const PLAIN: [DType; 11] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
        DType::Q8_0,
        DType::Q4_0,
    ];

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::I8 | DType::U8)
    }

    pub fn is_bool(self) -> bool {
        self == DType::Bool
    }

    /// True for block-quantized storage types.
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q8_0 | DType::Q4_0 | DType::Int4 { .. })
    }

    /// Elements per storage block (1 for plain dtypes).
    pub fn block_len(self) -> u64 {
        match self {
            DType::Q8_0 | DType::Q4_0 => 32,
            DType::Int4 { group_size } => u64::from(group_size),
            _ => 1,
        }
    }

    /// Bytes per storage block (the element size for plain dtypes).
    pub fn block_bytes(self) -> u64 {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Int4 { group_size } => 2 + u64::from(group_size) / 2,
        }
    }

    /// Storage bytes of a tensor with `numel` elements whose last dimension is `last_dim`.
    /// Returns `None` on overflow or when `last_dim` is not a multiple of the block length.
    pub fn storage_bytes(self, numel: u64, last_dim: u64) -> Option<u64> {
        let block = self.block_len();
        if block > 1 && last_dim % block != 0 {
            return None;
        }
        (numel / block).checked_mul(self.block_bytes())
    }

    /// The dtype compute happens in when this storage type is dequantized.
    pub fn compute_type(self) -> DType {
        if self.is_quantized() {
            DType::F32
        } else {
            self
        }
    }

    /// The text spelling, e.g. `f32`, `q4_0`, `int4<128>`.
    pub fn name(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Int4 { group_size } => return write!(f, "int4<{group_size}>"),
        };
        f.write_str(s)
    }
}

/// Error for a dtype spelling that names no dtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}` (expected one of f32, f16, bf16, f64, i64, i32, i8, u8, bool, q8_0, q4_0, int4<G>)")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("int4<").and_then(|r| r.strip_suffix('>')) {
            let group_size: u32 = rest.parse().map_err(|_| UnknownDType(s.to_string()))?;
            if group_size < 2 || group_size % 2 != 0 || group_size > MAX_INT4_GROUP {
                return Err(UnknownDType(s.to_string()));
            }
            return Ok(DType::Int4 { group_size });
        }
        DType::PLAIN.iter().copied().find(|d| d.to_string() == s).ok_or_else(|| UnknownDType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for d in DType::PLAIN.iter().copied().chain([DType::Int4 { group_size: 128 }]) {
            assert_eq!(d.to_string().parse::<DType>(), Ok(d));
        }
        assert!("int4<3>".parse::<DType>().is_err());
        assert!("f31".parse::<DType>().is_err());
    }

    #[test]
    fn block_storage_sizes() {
        assert_eq!(DType::Q8_0.storage_bytes(64, 64), Some(68));
        assert_eq!(DType::Q4_0.storage_bytes(32, 32), Some(18));
        assert_eq!(DType::Q4_0.storage_bytes(48, 48), None);
        assert_eq!(DType::Int4 { group_size: 64 }.storage_bytes(128, 128), Some(68));
        assert_eq!(DType::F32.storage_bytes(u64::MAX, 1), None);
    }
}
