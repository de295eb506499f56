//! Reference quantizers for the block-quantized dtypes (`q8_0`, `q4_0`, `int4<G>`).
//!
//! They produce the storage bytes documented in [`crate::dtype`]; `cast` to a block dtype
//! and [`Tensor::to_le_bytes`](crate::Tensor::to_le_bytes) both go through them, and the
//! dequantized values a `cast` yields are read back from those bytes, so the interpreter,
//! the codegen and the stored weights can never disagree. Arithmetic is in `f32`, as in
//! GGML's `quantize_row_*_ref`, so the bytes match GGML's for the same `f32` input:
//!
//! * `q8_0` (`quantize_row_q8_0_ref`): per block of 32, `d = max|x| / 127`, `id = 1/d`
//!   (0 when `d = 0`), `q = round(x·id)` (half away from zero), `d` stored as f16.
//! * `q4_0` (`quantize_row_q4_0_ref`): `max` = the element with the largest `|x|` (signed,
//!   first one on ties), `d = max / -8`, `id = 1/d` (0 when `d = 0`),
//!   `q = min(15, trunc(x·id + 8.5))`.
//! * `int4<G>` (symmetric): per group of `G`, `d = max|x| / 7`, `id = 1/d` (0 when `d = 0`),
//!   `q = clamp(round(x·id), -8, 7) + 8` (half away from zero).
//!
//! Re-quantizing dequantized values gives back the same values (the largest element of a
//! block maps exactly onto the scale again), so `to_le_bytes` after `cast` is lossless.

use crate::dtype::DType;
use half::f16;

/// Quantize `values` (a whole number of blocks of `dtype`, in row-major order with the
/// blocks running along the last dim) into `dtype`'s storage bytes. `None` when `dtype` is
/// not block-quantized or `values.len()` is not a multiple of the block length.
pub fn quantize_blocks(dtype: DType, values: &[f64]) -> Option<Vec<u8>> {
    let block = usize::try_from(dtype.block_len()).ok()?;
    if !dtype.is_quantized() || block == 0 || values.len() % block != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / block * dtype.block_bytes() as usize);
    let mut x = vec![0f32; block];
    for chunk in values.chunks_exact(block) {
        for (dst, &v) in x.iter_mut().zip(chunk) {
            *dst = v as f32;
        }
        match dtype {
            DType::Q8_0 => q8_0_block(&x, &mut out),
            DType::Q4_0 => q4_0_block(&x, &mut out),
            _ => int4_block(&x, &mut out),
        }
    }
    Some(out)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    // `as i8` saturates (and maps NaN to 0), where C would be undefined.
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).clamp(0, 15) as u8;
    let half = x.len() / 2;
    out.extend((0..half).map(|j| q(x[j]) | (q(x[j + half]) << 4)));
}

fn int4_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 7.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    let q = |v: f32| (((v * id).round() as i8).clamp(-8, 7) + 8) as u8;
    out.extend(x.chunks_exact(2).map(|p| q(p[0]) | (q(p[1]) << 4)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn roundtrip(dtype: DType, values: &[f64]) -> Vec<f64> {
        let bytes = quantize_blocks(dtype, values).unwrap();
        Tensor::from_le_bytes(dtype, vec![values.len()], &bytes).unwrap().to_f64_vec()
    }

    #[test]
    fn q8_0_matches_ggml_on_a_hand_block() {
        let mut v: Vec<f64> = (0..32).map(|i| f64::from(i) - 16.0).collect();
        v[3] = 20.0; // largest magnitude: d = 20/127
        let bytes = quantize_blocks(DType::Q8_0, &v).unwrap();
        assert_eq!(bytes.len(), 34);
        let d = f16::from_le_bytes([bytes[0], bytes[1]]).to_f64();
        assert_eq!(d, f64::from(f16::from_f32(20.0 / 127.0)));
        assert_eq!(bytes[2 + 3] as i8, 127);
        assert_eq!(bytes[2] as i8, -102); // -16·127/20 = -101.6
        assert_eq!(bytes[2 + 16 + 8] as i8, 51); // 8·127/20 = 50.8
        let back = roundtrip(DType::Q8_0, &v);
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= d / 2.0 + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_0_uses_the_signed_max_and_full_range() {
        let mut v = vec![0.5; 32];
        v[7] = -4.0; // the signed max: d = -4 / -8 = 0.5 and it maps onto nibble 0
        v[20] = 3.5;
        let bytes = quantize_blocks(DType::Q4_0, &v).unwrap();
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f64(), 0.5);
        assert_eq!(bytes[2 + 7] & 0x0f, 0);
        assert_eq!(bytes[2 + 4] >> 4, 15); // element 20: 3.5/0.5 + 8.5 = 15.5 -> 15
        let back = roundtrip(DType::Q4_0, &v);
        assert_eq!(back[7], -4.0);
        assert_eq!(back[20], 3.5);
        assert_eq!(back[0], 0.5);
    }

    #[test]
    fn int4_is_symmetric_and_packs_pairs() {
        let v: Vec<f64> = (0..8).map(|i| f64::from(i) - 3.5).collect(); // ±3.5 max: d = 0.5
        let dt = DType::Int4 { group_size: 8 };
        let bytes = quantize_blocks(dt, &v).unwrap();
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f64(), 0.5);
        assert_eq!(bytes[2] & 0x0f, 1); // -3.5 / 0.5 = -7 -> nibble 1
        assert_eq!(roundtrip(dt, &v), v);
    }

    #[test]
    fn requantizing_dequantized_values_is_exact() {
        let v: Vec<f64> = (0..128).map(|i| ((f64::from(i) * 0.37).sin() * 3.0) + 0.01 * f64::from(i)).collect();
        for dt in [DType::Q8_0, DType::Q4_0, DType::Int4 { group_size: 32 }, DType::Int4 { group_size: 64 }] {
            let once = roundtrip(dt, &v);
            assert_eq!(roundtrip(dt, &once), once, "{dt}");
        }
        assert_eq!(roundtrip(DType::Q4_0, &[0.0; 32]), vec![0.0; 32]);
        assert!(quantize_blocks(DType::Q8_0, &[0.0; 31]).is_none());
        assert!(quantize_blocks(DType::F32, &[0.0; 32]).is_none());
    }
}
