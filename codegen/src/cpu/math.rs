//! Inline f32 approximations of `exp`, `tanh` and `erf` in Cranelift IR, for scalars
//! (`f32`) and vectors (`f32x4`) alike: every instruction used works lane-wise, so one
//! emitter serves both. No libcalls and no table calls, so generated code stays
//! relocation-free and needs nothing beyond SSE2.
//!
//! * `exp`: Cephes `expf` — range reduction `x = n·ln2 + r` (ln2 split in two for
//!   accuracy), a degree-6 polynomial for `eʳ`, and `2ⁿ` built in the exponent bits.
//!   `n` is rounded with the `1.5·2²³` trick (no `nearest`, which may be a libcall).
//!   Inputs are clamped to `[-87.34, 88.38]`, so results never overflow to ∞ and
//!   underflow stops at the smallest normal. Error: about 2 ulp.
//! * `tanh`: Eigen's rational approximation (odd degree-13 over even degree-6), inputs
//!   clamped to ±7.905 (where tanh rounds to ±1). Error: a few ulp.
//! * `erf`: Eigen's rational approximation, inputs clamped to ±4. Error: a few ulp.
//! * `log`: Cephes `logf` — exponent and mantissa from the bits (mantissa in
//!   `[√½, √2)`), a degree-8 polynomial, ln2 split in two; `log 0 = -∞`, negative → NaN,
//!   `log ∞ = ∞`. Error: about 2 ulp for normal inputs.
//! * `sin`, `cos`: Cephes `sinf`/`cosf` — quadrant `j = round(x·2/π)`, Cody–Waite
//!   reduction with π/2 split in three, the two minimax polynomials on `[-π/4, π/4]`, and
//!   the quadrant picking polynomial and sign with bit masks (no branches, lane-wise).
//!   Accurate to a few ulp for `|x|` up to about 8192 (rotary angles stay far below).
//!
//! The reference interpreter computes in f64; tests compare with a relative tolerance of
//! 1e-4 plus an absolute 1e-6.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// The f32 lane type `ty` (F32 or F32X4) and its i32 counterpart.
fn int_ty(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

/// An f32 constant of type `ty` (splat for vectors).
pub fn fconst(b: &mut FunctionBuilder<'_>, ty: Type, v: f32) -> Value {
    let s = b.ins().f32const(v);
    if ty.is_vector() {
        b.ins().splat(ty, s)
    } else {
        s
    }
}

fn iconst32(b: &mut FunctionBuilder<'_>, ty: Type, v: i32) -> Value {
    let s = b.ins().iconst(types::I32, i64::from(v));
    if ty.is_vector() {
        b.ins().splat(types::I32X4, s)
    } else {
        s
    }
}

fn fma(b: &mut FunctionBuilder<'_>, x: Value, y: Value, z: Value) -> Value {
    let p = b.ins().fmul(x, y);
    b.ins().fadd(p, z)
}

/// Horner evaluation of `Σ coefs[i]·xⁱ` (coefficients from the highest degree down).
fn horner(b: &mut FunctionBuilder<'_>, ty: Type, x: Value, coefs_high_first: &[f32]) -> Value {
    let mut acc = fconst(b, ty, coefs_high_first[0]);
    for &c in &coefs_high_first[1..] {
        let cv = fconst(b, ty, c);
        acc = fma(b, acc, x, cv);
    }
    acc
}

fn clamp(b: &mut FunctionBuilder<'_>, ty: Type, x: Value, lo: f32, hi: f32) -> Value {
    let lo = fconst(b, ty, lo);
    let hi = fconst(b, ty, hi);
    let x = b.ins().fmax(x, lo);
    b.ins().fmin(x, hi)
}

/// `eˣ`.
pub fn exp(b: &mut FunctionBuilder<'_>, ty: Type, x: Value) -> Value {
    let ity = int_ty(ty);
    let x = clamp(b, ty, x, -87.336_55, 88.376_26);
    let log2e = fconst(b, ty, std::f32::consts::LOG2_E);
    let t = b.ins().fmul(x, log2e);
    // Round to nearest: adding 1.5·2²³ leaves the integer in the low mantissa bits.
    let magic = fconst(b, ty, 12_582_912.0);
    let shifted = b.ins().fadd(t, magic);
    let n = b.ins().fsub(shifted, magic);
    let bits = b.ins().bitcast(ity, MemFlagsData::new(), shifted);
    let magic_bits = iconst32(b, ty, 0x4B40_0000);
    let ni = b.ins().isub(bits, magic_bits);
    let c1 = fconst(b, ty, 0.693_359_4);
    let c2 = fconst(b, ty, -2.121_944_4e-4);
    let nc1 = b.ins().fmul(n, c1);
    let r = b.ins().fsub(x, nc1);
    let nc2 = b.ins().fmul(n, c2);
    let r = b.ins().fsub(r, nc2);
    let p = horner(b, ty, r, &[1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5]);
    let r2 = b.ins().fmul(r, r);
    let p = b.ins().fmul(p, r2);
    let p = b.ins().fadd(p, r);
    let one = fconst(b, ty, 1.0);
    let p = b.ins().fadd(p, one);
    let bias = iconst32(b, ty, 127);
    let e = b.ins().iadd(ni, bias);
    let e = b.ins().ishl_imm_u(e, 23);
    let scale = b.ins().bitcast(ty, MemFlagsData::new(), e);
    b.ins().fmul(p, scale)
}

/// `tanh x`.
pub fn tanh(b: &mut FunctionBuilder<'_>, ty: Type, x: Value) -> Value {
    let x = clamp(b, ty, x, -7.905_311, 7.905_311);
    let x2 = b.ins().fmul(x, x);
    let p = horner(
        b,
        ty,
        x2,
        &[
            -2.760_768_5e-16,
            2.000_188e-13,
            -8.604_672e-11,
            5.122_297e-8,
            1.485_722_4e-5,
            6.372_619_3e-4,
            4.893_524_6e-3,
        ],
    );
    let p = b.ins().fmul(x, p);
    let q = horner(b, ty, x2, &[1.198_258_4e-6, 1.185_347e-4, 2.268_434_6e-3, 4.893_525e-3]);
    b.ins().fdiv(p, q)
}

/// `erf x`.
pub fn erf(b: &mut FunctionBuilder<'_>, ty: Type, x: Value) -> Value {
    let x = clamp(b, ty, x, -4.0, 4.0);
    let x2 = b.ins().fmul(x, x);
    let p = horner(
        b,
        ty,
        x2,
        &[
            -2.726_142_3e-10,
            2.770_681_4e-8,
            -2.101_024e-6,
            -5.692_506_4e-5,
            -7.349_906_3e-4,
            -2.954_6e-3,
            -1.609_603_3e-2,
        ],
    );
    let p = b.ins().fmul(x, p);
    let q = horner(b, ty, x2, &[-1.456_607_2e-5, -2.133_740_5e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2]);
    b.ins().fdiv(p, q)
}

/// `1 / (1 + e⁻ˣ)`.
pub fn sigmoid(b: &mut FunctionBuilder<'_>, ty: Type, x: Value) -> Value {
    let nx = b.ins().fneg(x);
    let e = exp(b, ty, nx);
    let one = fconst(b, ty, 1.0);
    let d = b.ins().fadd(one, e);
    b.ins().fdiv(one, d)
}

/// `sin x` (or `cos x` when `cosine`), see the module doc.
pub fn sin_cos(b: &mut FunctionBuilder<'_>, ty: Type, x: Value, cosine: bool) -> Value {
    let ity = int_ty(ty);
    let x = clamp(b, ty, x, -65_536.0, 65_536.0);
    let two_over_pi = fconst(b, ty, std::f32::consts::FRAC_2_PI);
    let t = b.ins().fmul(x, two_over_pi);
    let magic = fconst(b, ty, 12_582_912.0);
    let shifted = b.ins().fadd(t, magic);
    let j = b.ins().fsub(shifted, magic);
    let bits = b.ins().bitcast(ity, MemFlagsData::new(), shifted);
    let magic_bits = iconst32(b, ty, 0x4B40_0000);
    let mut q = b.ins().isub(bits, magic_bits);
    if cosine {
        // cos x = sin(x + π/2): one quadrant further.
        let one = iconst32(b, ty, 1);
        q = b.ins().iadd(q, one);
    }
    let mut r = x;
    for c in [1.570_312_5_f32, 4.837_513e-4, 7.549_79e-8] {
        let cv = fconst(b, ty, c);
        let jc = b.ins().fmul(j, cv);
        r = b.ins().fsub(r, jc);
    }
    let z = b.ins().fmul(r, r);
    // sin r = r + r·z·P(z); cos r = 1 - z/2 + z²·Q(z).
    let ps = horner(b, ty, z, &[-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1]);
    let rz = b.ins().fmul(r, z);
    let sin_r = fma(b, rz, ps, r);
    let pc = horner(b, ty, z, &[2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2]);
    let z2 = b.ins().fmul(z, z);
    let half = fconst(b, ty, 0.5);
    let hz = b.ins().fmul(half, z);
    let one = fconst(b, ty, 1.0);
    let c0 = b.ins().fsub(one, hz);
    let cos_r = fma(b, z2, pc, c0);
    // Odd quadrants take the cosine polynomial; quadrants 2 and 3 flip the sign.
    let one_i = iconst32(b, ty, 1);
    let two_i = iconst32(b, ty, 2);
    let odd = b.ins().band(q, one_i);
    let swap = b.ins().ineg(odd);
    let sb = b.ins().bitcast(ity, MemFlagsData::new(), sin_r);
    let cb = b.ins().bitcast(ity, MemFlagsData::new(), cos_r);
    let keep = b.ins().bnot(swap);
    let from_sin = b.ins().band(sb, keep);
    let from_cos = b.ins().band(cb, swap);
    let v = b.ins().bor(from_sin, from_cos);
    let neg = b.ins().band(q, two_i);
    let sign = b.ins().ishl_imm_u(neg, 30);
    let v = b.ins().bxor(v, sign);
    b.ins().bitcast(ty, MemFlagsData::new(), v)
}

/// `cond ? a : b` lane-wise, `cond` from an `fcmp` on values of type `ty`.
fn fselect(b: &mut FunctionBuilder<'_>, ty: Type, cond: Value, x: Value, y: Value) -> Value {
    if ty.is_vector() {
        let mask = b.ins().bitcast(ty, MemFlagsData::new(), cond);
        b.ins().bitselect(mask, x, y)
    } else {
        b.ins().select(cond, x, y)
    }
}

/// `ln x`, see the module doc.
pub fn log(b: &mut FunctionBuilder<'_>, ty: Type, x: Value) -> Value {
    let ity = int_ty(ty);
    let bits = b.ins().bitcast(ity, MemFlagsData::new(), x);
    let exp_bits = b.ins().ushr_imm_u(bits, 23);
    let ff = iconst32(b, ty, 0xff);
    let exp_bits = b.ins().band(exp_bits, ff);
    let bias = iconst32(b, ty, 126);
    let e = b.ins().isub(exp_bits, bias);
    let mut e = b.ins().fcvt_from_sint(ty, e);
    let mant_mask = iconst32(b, ty, 0x807f_ffff_u32 as i32);
    let half_bits = iconst32(b, ty, 0x3f00_0000);
    let m = b.ins().band(bits, mant_mask);
    let m = b.ins().bor(m, half_bits);
    let m = b.ins().bitcast(ty, MemFlagsData::new(), m);
    // Mantissa in [0.5, 1): below √½, double it and lower the exponent.
    let sqrthf = fconst(b, ty, std::f32::consts::FRAC_1_SQRT_2);
    let small = b.ins().fcmp(FloatCC::LessThan, m, sqrthf);
    let one = fconst(b, ty, 1.0);
    let zero = fconst(b, ty, 0.0);
    let e_adj = fselect(b, ty, small, one, zero);
    e = b.ins().fsub(e, e_adj);
    let m_add = fselect(b, ty, small, m, zero);
    let m = b.ins().fadd(m, m_add);
    let m = b.ins().fsub(m, one);
    let z = b.ins().fmul(m, m);
    let p = horner(
        b,
        ty,
        m,
        &[
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_4e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let mz = b.ins().fmul(m, z);
    let mut y = b.ins().fmul(mz, p);
    let q1 = fconst(b, ty, -2.121_944_4e-4);
    y = fma(b, e, q1, y);
    let mhalf = fconst(b, ty, -0.5);
    y = fma(b, z, mhalf, y);
    let r = b.ins().fadd(m, y);
    let q2 = fconst(b, ty, 0.693_359_4);
    let r = fma(b, e, q2, r);
    // Special values: 0 → -∞, negative or NaN → NaN, ∞ → ∞.
    let ninf = fconst(b, ty, f32::NEG_INFINITY);
    let pinf = fconst(b, ty, f32::INFINITY);
    let nan = fconst(b, ty, f32::NAN);
    let is_zero = b.ins().fcmp(FloatCC::Equal, x, zero);
    let r = fselect(b, ty, is_zero, ninf, r);
    let is_inf = b.ins().fcmp(FloatCC::Equal, x, pinf);
    let r = fselect(b, ty, is_inf, pinf, r);
    let not_neg = b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
    fselect(b, ty, not_neg, r, nan)
}
