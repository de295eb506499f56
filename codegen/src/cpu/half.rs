//! Scalar conversions between `f32` and the half-precision storage formats (`f16`, `bf16`)
//! in Cranelift IR, in integer code (no F16C instructions, no libcalls), so kernels load
//! half buffers as `f32` and store `f32` values back (see the kernel form's module doc).
//!
//! * `f16 → f32` (exact): the 15 magnitude bits shifted into an f32's position and scaled by
//!   2¹¹² — one multiply handles normal and subnormal halves alike (a subnormal half becomes
//!   an f32 denormal times 2¹¹², which is exact); inf/NaN (exponent 31) get the f32 exponent
//!   set instead, keeping the NaN payload.
//! * `f32 → f16`: round to nearest even (F. Giesen's `float_to_half_fast3_rtne`): NaN → a
//!   quiet NaN, magnitudes ≥ 2¹⁶ → ±inf, results below the smallest normal half by adding a
//!   magic denormal in float arithmetic (the FPU rounds), normal results by adding the
//!   rounding bias (plus the mantissa's odd bit for ties-to-even) before the shift; an
//!   overflowing round carries into the exponent and gives ±inf.
//! * `bf16 ↔ f32`: the upper 16 bits; stores round to nearest even by adding
//!   `0x7fff + lsb` to the bits, NaN becomes a quiet NaN of the same sign.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

fn i32c(b: &mut FunctionBuilder<'_>, v: u32) -> Value {
    b.ins().iconst(types::I32, i64::from(v))
}

/// The `f32` value of the f16 whose bits are the low 16 bits of the `i32` `h`.
pub fn f16_to_f32(b: &mut FunctionBuilder<'_>, h: Value) -> Value {
    let mag = b.ins().band_imm_u(h, 0x7fff);
    let shifted = b.ins().ishl_imm_u(mag, 13);
    let as_f = b.ins().bitcast(types::F32, MemFlagsData::new(), shifted);
    let magic = b.ins().f32const(f32::from_bits(0x7780_0000)); // 2^112
    let scaled = b.ins().fmul(as_f, magic);
    let scaled_bits = b.ins().bitcast(types::I32, MemFlagsData::new(), scaled);
    let exp = b.ins().band_imm_u(h, 0x7c00);
    let is_inf_nan = b.ins().icmp_imm_u(IntCC::Equal, exp, 0x7c00);
    let inf_nan_bits = b.ins().bor_imm_u(shifted, 0x7f80_0000);
    let bits = b.ins().select(is_inf_nan, inf_nan_bits, scaled_bits);
    let sign = b.ins().band_imm_u(h, 0x8000);
    let sign = b.ins().ishl_imm_u(sign, 16);
    let bits = b.ins().bor(bits, sign);
    b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
}

/// The f16 bits (in the low 16 bits of an `i32`) nearest to the `f32` `x` (ties to even).
pub fn f32_to_f16(b: &mut FunctionBuilder<'_>, x: Value) -> Value {
    let bits = b.ins().bitcast(types::I32, MemFlagsData::new(), x);
    let sign = b.ins().band_imm_u(bits, 0x8000_0000);
    let mag = b.ins().bxor(bits, sign);
    // Overflow to inf, or NaN.
    let is_nan = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, mag, 0x7f80_0000);
    let (qnan, inf) = (i32c(b, 0x7e00), i32c(b, 0x7c00));
    let big = b.ins().select(is_nan, qnan, inf);
    // Results in the subnormal range (or zero): let the FPU round by adding 0.5 (the magic
    // `((127 - 15) + (23 - 10) + 1) << 23`), then subtract its bits.
    let magic_bits = (127 - 15 + 23 - 10 + 1) << 23;
    let as_f = b.ins().bitcast(types::F32, MemFlagsData::new(), mag);
    let magic = b.ins().f32const(f32::from_bits(magic_bits));
    let sum = b.ins().fadd(as_f, magic);
    let sum_bits = b.ins().bitcast(types::I32, MemFlagsData::new(), sum);
    let small = b.ins().iadd_imm_s(sum_bits, -i64::from(magic_bits));
    // Normal results: rebias the exponent, add the rounding bias and the odd bit, shift.
    let odd = b.ins().ushr_imm_u(mag, 13);
    let odd = b.ins().band_imm_u(odd, 1);
    let rebiased = b.ins().iadd_imm_s(mag, ((15i64 - 127) << 23) + 0xfff);
    let rounded = b.ins().iadd(rebiased, odd);
    let normal = b.ins().ushr_imm_u(rounded, 13);
    let is_small = b.ins().icmp_imm_u(IntCC::UnsignedLessThan, mag, 113 << 23);
    let finite = b.ins().select(is_small, small, normal);
    let is_big = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, mag, (127 + 16) << 23);
    let h = b.ins().select(is_big, big, finite);
    let sign16 = b.ins().ushr_imm_u(sign, 16);
    b.ins().bor(h, sign16)
}

/// The `f32` value of the bf16 whose bits are the low 16 bits of the `i32` `h`.
pub fn bf16_to_f32(b: &mut FunctionBuilder<'_>, h: Value) -> Value {
    let bits = b.ins().ishl_imm_u(h, 16);
    b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
}

/// The bf16 bits (in the low 16 bits of an `i32`) nearest to the `f32` `x` (ties to even).
pub fn f32_to_bf16(b: &mut FunctionBuilder<'_>, x: Value) -> Value {
    let bits = b.ins().bitcast(types::I32, MemFlagsData::new(), x);
    let lsb = b.ins().ushr_imm_u(bits, 16);
    let lsb = b.ins().band_imm_u(lsb, 1);
    let biased = b.ins().iadd_imm_s(bits, 0x7fff);
    let biased = b.ins().iadd(biased, lsb);
    let rounded = b.ins().ushr_imm_u(biased, 16);
    let quiet = b.ins().ushr_imm_u(bits, 16);
    let quiet = b.ins().bor_imm_u(quiet, 0x40);
    let mag = b.ins().band_imm_u(bits, 0x7fff_ffff);
    let is_nan = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, mag, 0x7f80_0000);
    b.ins().select(is_nan, quiet, rounded)
}
