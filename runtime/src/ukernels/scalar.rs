//! Portable scalar tier of the micro-kernels: plain loops, the reference behaviour of every
//! [`crate::abi::RuntimeFnTable`] entry and the fallback on machines without AVX2.

use super::{erfc, expc, f16_to_f32, tanhc, PANEL, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};

/// Dense-`b` f32 GEMM (see [`crate::abi::GemmFn`]).
///
/// # Safety
/// Pointers and strides must describe valid `m × k`, `k × n` (stride `ldb`) and `m × n`
/// matrices; `c` must not overlap `a` or `b`.
pub unsafe extern "C" fn sgemm(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    let (m, n, k, lda, ldb, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldb as usize, ldc as usize);
    let b = b as *const f32;
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for kk in 0..k {
                // SAFETY: in bounds by the caller's contract.
                unsafe { s += *a.add(i * lda + kk) * *b.add(kk * ldb + j) };
            }
            // SAFETY: as above.
            unsafe { store(c.add(i * ldc + j), s, accumulate) };
        }
    }
}

/// Packed-panel f32 GEMM (`b: [⌈n/16⌉, k, 16]`).
///
/// # Safety
/// As [`sgemm`], with `b` holding `⌈n/16⌉ · k · 16` floats.
pub unsafe extern "C" fn sgemm_packed(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    b: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    let (m, n, k, lda, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldc as usize);
    let b = b as *const f32;
    let mut row = [0.0f32; PANEL];
    for i in 0..m {
        for p in 0..n.div_ceil(PANEL) {
            row.iter_mut().for_each(|x| *x = 0.0);
            let panel = p * k * PANEL;
            for kk in 0..k {
                // SAFETY: in bounds by the caller's contract.
                let av = unsafe { *a.add(i * lda + kk) };
                for j in 0..PANEL {
                    // SAFETY: as above.
                    row[j] += av * unsafe { *b.add(panel + kk * PANEL + j) };
                }
            }
            for j in 0..PANEL.min(n - p * PANEL) {
                // SAFETY: as above.
                unsafe { store(c.add(i * ldc + p * PANEL + j), row[j], accumulate) };
            }
        }
    }
}

/// `c (+)= a · wᵀ` with Q8_0 `w`.
///
/// # Safety
/// `w` holds `n · k/32` Q8_0 blocks; `k` is a multiple of 32; other pointers as [`sgemm`].
pub unsafe extern "C" fn gemm_q8_0(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        gemm_q(m, n, k, a, lda, w, c, ldc, accumulate, Q8_0_BLOCK_BYTES, |blk, out| {
            let d = f16_to_f32(u16::from_le_bytes([*blk, *blk.add(1)]));
            for (i, o) in out.iter_mut().enumerate() {
                *o = d * f32::from(*blk.add(2 + i) as i8);
            }
        })
    }
}

/// `c (+)= a · wᵀ` with Q4_0 `w`.
///
/// # Safety
/// As [`gemm_q8_0`] with Q4_0 blocks.
pub unsafe extern "C" fn gemm_q4_0(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    _ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        gemm_q(m, n, k, a, lda, w, c, ldc, accumulate, Q4_0_BLOCK_BYTES, |blk, out| {
            let d = f16_to_f32(u16::from_le_bytes([*blk, *blk.add(1)]));
            for i in 0..16 {
                let q = *blk.add(2 + i);
                out[i] = d * f32::from(q & 15) - d * 8.0;
                out[i + 16] = d * f32::from(q >> 4) - d * 8.0;
            }
        })
    }
}

/// Shared quantized GEMM loop: decode one block of a `w` row, dot it with every row of `a`.
unsafe fn gemm_q(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
    block_bytes: usize,
    decode: impl Fn(*const u8, &mut [f32; QK]),
) {
    let (m, n, k, lda, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldc as usize);
    let nb = k / QK;
    let mut buf = [0.0f32; QK];
    let mut acc = vec![0.0f32; m];
    for j in 0..n {
        acc.iter_mut().for_each(|x| *x = 0.0);
        for blk in 0..nb {
            // SAFETY: in bounds by the caller's contract.
            decode(unsafe { w.add((j * nb + blk) * block_bytes) }, &mut buf);
            for (i, s) in acc.iter_mut().enumerate() {
                for (t, wv) in buf.iter().enumerate() {
                    // SAFETY: as above.
                    *s += wv * unsafe { *a.add(i * lda + blk * QK + t) };
                }
            }
        }
        for (i, s) in acc.iter().enumerate() {
            // SAFETY: as above.
            unsafe { store(c.add(i * ldc + j), *s, accumulate) };
        }
    }
}

/// `*p = v` or `*p += v`.
#[inline]
unsafe fn store(p: *mut f32, v: f32, accumulate: u32) {
    // SAFETY: the caller passes a valid pointer.
    unsafe {
        if accumulate != 0 {
            *p += v;
        } else {
            *p = v;
        }
    }
}

/// `y = exp(x)` elementwise.
///
/// # Safety
/// `x` readable and `y` writable for `n` floats (they may be the same buffer).
pub unsafe extern "C" fn exp(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map(x, y, n, exp1) }
}

/// `y = tanh(x)` elementwise.
///
/// # Safety
/// As [`exp`].
pub unsafe extern "C" fn tanh(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map(x, y, n, tanh1) }
}

/// `y = erf(x)` elementwise.
///
/// # Safety
/// As [`exp`].
pub unsafe extern "C" fn erf(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map(x, y, n, erf1) }
}

/// `c[m, n] (+)= (a · wᵀ)·diag(scale)` with `i8` rows `w: [n, k]` (see `abi::GemmI8Fn`).
///
/// # Safety
/// `a` readable for `m` rows of `lda` (`k` used), `w` for `n` rows of `ldb` bytes (`k` used),
/// `scale` for `n` floats, `c` writable for `m` rows of `ldc` (`n` used).
pub unsafe extern "C" fn gemm_i8(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const i8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
    scale: *const f32,
) {
    let (m, n, k, lda, ldb, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldb as usize, ldc as usize);
    for i in 0..m {
        for j in 0..n {
            // SAFETY: the caller's contract covers these rows.
            unsafe {
                let (ar, wr) = (a.add(i * lda), w.add(j * ldb));
                // Eight partial sums (vectorizes; the order is fixed, so results are deterministic).
                let mut part = [0.0f32; 8];
                let mut kk = 0;
                while kk + 8 <= k {
                    for l in 0..8 {
                        part[l] += *ar.add(kk + l) * f32::from(*wr.add(kk + l));
                    }
                    kk += 8;
                }
                let mut s = part.iter().sum::<f32>();
                while kk < k {
                    s += *ar.add(kk) * f32::from(*wr.add(kk));
                    kk += 1;
                }
                let s = s * *scale.add(j);
                let p = c.add(i * ldc + j);
                *p = if accumulate != 0 { *p + s } else { s };
            }
        }
    }
}

/// `y = x · σ(x) · z` elementwise (`silu(x) · z`, the gated-MLP epilogue).
///
/// # Safety
/// `x`, `z` readable and `y` writable for `n` floats (`y` may be the same buffer as `x` or `z`).
pub unsafe extern "C" fn silu_mul(x: *const f32, z: *const f32, y: *mut f32, n: u64) {
    for i in 0..n as usize {
        // SAFETY: the caller's contract; both inputs are read before `y[i]` is written.
        unsafe {
            let (xv, zv) = (*x.add(i), *z.add(i));
            *y.add(i) = xv / (1.0 + exp1(-xv)) * zv;
        }
    }
}

unsafe fn map(x: *const f32, y: *mut f32, n: u64, f: fn(f32) -> f32) {
    for i in 0..n as usize {
        // SAFETY: the caller's contract; reading before writing keeps `x == y` correct.
        unsafe { *y.add(i) = f(*x.add(i)) };
    }
}

/// `2^n` for integral `n ∈ [-150, 128]` as a pair of normal factors.
#[inline]
fn pow2_pair(n: i32) -> (f32, f32) {
    let h = n >> 1;
    (f32::from_bits(((h + 127) as u32) << 23), f32::from_bits(((n - h + 127) as u32) << 23))
}

/// Scalar `exp` with the same algorithm as the SIMD tiers.
pub fn exp1(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let xc = x.clamp(expc::LO, expc::HI);
    let n = (xc * expc::LOG2E + 0.5).floor();
    let r = xc - n * expc::C1 - n * expc::C2;
    let z = r * r;
    let p = ((((expc::P0 * r + expc::P1) * r + expc::P2) * r + expc::P3) * r + expc::P4) * r + expc::P5;
    let y = p * z + r + 1.0;
    let (s1, s2) = pow2_pair(n as i32);
    y * s1 * s2
}

/// Scalar `tanh` with the same algorithm as the SIMD tiers.
pub fn tanh1(x: f32) -> f32 {
    let ax = x.abs();
    if ax < tanhc::SMALL {
        let s = x * x;
        let p = (((tanhc::T0 * s + tanhc::T1) * s + tanhc::T2) * s + tanhc::T3) * s + tanhc::T4;
        p * s * x + x
    } else if x.is_nan() {
        x
    } else {
        let e = exp1(2.0 * ax);
        (1.0 - 2.0 / (e + 1.0)).copysign(x)
    }
}

/// Scalar `erf` with the same algorithm as the SIMD tiers.
pub fn erf1(x: f32) -> f32 {
    let ax = x.abs();
    if ax < 1.0 {
        let s = x * x;
        let e = &erfc::E;
        let mut p = e[11];
        for i in (0..11).rev() {
            p = p * s + e[i];
        }
        p * x
    } else if x.is_nan() {
        x
    } else {
        let t = 1.0 / (1.0 + erfc::P * ax);
        let q = ((((erfc::A5 * t + erfc::A4) * t + erfc::A3) * t + erfc::A2) * t + erfc::A1) * t;
        (1.0 - q * exp1(-ax * ax)).copysign(x)
    }
}

/// One query row of softmax attention (see [`crate::abi::AttentionRowFn`]): scores, their
/// maximum, `exp` of the shifted scores, then the weighted sum of value rows divided by the
/// sum of the weights.
///
/// # Safety
/// `q` readable for `dk` floats, `k` for `keys · dk`, `v` for `keys · dv`, `o` writable for
/// `dv` floats and not overlapping the others.
pub unsafe extern "C" fn attention_row(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    keys: u64,
    dk: u64,
    dv: u64,
    scale: f32,
    o: *mut f32,
) {
    // SAFETY: the caller's contract; no mask.
    unsafe { attention_row_masked(q, k, v, std::ptr::null(), 0, keys, dk, dv, scale, o) }
}

/// [`attention_row`] with a mask (see [`crate::abi::AttentionRowMaskedFn`]); a null `mask`
/// hides nothing.
///
/// # Safety
/// As [`attention_row`], and `mask` null or readable for `keys` elements of its kind.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn attention_row_masked(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    mask: *const u8,
    mask_kind: u32,
    keys: u64,
    dk: u64,
    dv: u64,
    scale: f32,
    o: *mut f32,
) {
    let (keys, dk, dv) = (keys as usize, dk as usize, dv as usize);
    // SAFETY: the caller's contract.
    let (q, k, v, o) = unsafe {
        (
            std::slice::from_raw_parts(q, dk),
            std::slice::from_raw_parts(k, keys * dk),
            std::slice::from_raw_parts(v, keys * dv),
            std::slice::from_raw_parts_mut(o, dv),
        )
    };
    let mask = crate::abi::RowMask::from_abi(mask, mask_kind);
    o.iter_mut().for_each(|x| *x = 0.0);
    if keys == 0 {
        return;
    }
    super::with_scratch(keys, |scores| {
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let krow = &k[j * dk..(j + 1) * dk];
            // SAFETY: the mask covers the `keys` keys (the caller's contract).
            *s = scale * q.iter().zip(krow).map(|(a, b)| a * b).sum::<f32>() + unsafe { mask.added(j) };
            max = max.max(*s);
        }
        let mut sum = 0.0f32;
        for (j, s) in scores.iter_mut().enumerate() {
            // An all −inf row (not produced by the kernels) gives weights 0, not NaN.
            let p = if max == f32::NEG_INFINITY { 0.0 } else { exp1(*s - max) };
            *s = p;
            sum += p;
            for (oe, ve) in o.iter_mut().zip(&v[j * dv..(j + 1) * dv]) {
                *oe += p * ve;
            }
        }
        let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        o.iter_mut().for_each(|x| *x *= inv);
    })
}

/// `c (+)= a · wᵀ` with f32 `w: [n, k]` rows at stride `ldb` (see [`crate::abi::RuntimeFnTable::sgemm_nt`]).
///
/// # Safety
/// `a`: `m × k` (stride `lda`), `w`: `n × k` (stride `ldb`), `c`: `m × n` (stride `ldc`), all
/// valid; `c` must not overlap `a` or `w`.
pub unsafe extern "C" fn sgemm_nt(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    ldb: u64,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    let (m, n, k, lda, ldb, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldb as usize, ldc as usize);
    let w = w as *const f32;
    for i in 0..m {
        for j in 0..n {
            // SAFETY: rows inside the matrices by the caller's contract.
            let (ar, wr) = unsafe {
                (std::slice::from_raw_parts(a.add(i * lda), k), std::slice::from_raw_parts(w.add(j * ldb), k))
            };
            // Eight partial sums (vectorizable, and the same order for every row).
            let mut acc = [0.0f32; 8];
            let chunks = k / 8 * 8;
            for kk in (0..chunks).step_by(8) {
                for l in 0..8 {
                    acc[l] += ar[kk + l] * wr[kk + l];
                }
            }
            let mut s: f32 = acc.iter().sum();
            for kk in chunks..k {
                s += ar[kk] * wr[kk];
            }
            // SAFETY: as above.
            unsafe { store(c.add(i * ldc + j), s, accumulate) };
        }
    }
}
