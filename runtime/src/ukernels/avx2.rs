//! AVX2 + FMA tier of the micro-kernels (x86-64; the caller checks `avx2`, `fma`, `f16c`
//! before calling anything here — [`super::Tier::Avx2`]).
//!
//! * f32 GEMM: a 6-row × 16-column tile (two ymm per panel, 12 accumulators); for `m ≤ 2`
//!   a 2 × 64 tile (more independent FMA chains for GEMV). Partial panels go through a
//!   16-float stack row.
//! * Quantized GEMM: 2 (`a` rows) × 3 (`w` rows) dot-product tile (1 × 6 for `m = 1`), each
//!   block decoded once per tile; weight rows in blocks of 96 so they stay in L2.
//! * exp/tanh/erf: the scalar algorithms on 8 lanes; `2ⁿ` as two exponent-built factors.
//! * `sgemm_nt` / `gemm_i8`: dot-product tiles (4 × 4, 1 × 8 for single rows) over f32 or
//!   widened i8 weight rows; `sgemm_nt` packs `w` into panels from 64 rows of `a` on.
//! * `attention_row`: 8-lane score dot products, `exp`, and weighted value sums.

use super::{erfc, expc, tanhc, PANEL, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use std::arch::x86_64::*;

/// One `R × 16·P` tile: `c[r, 16j + l] (+)= Σ_kk a[r, kk] · b[j·ps + kk·ks + l]`, only the
/// first `cols` columns stored.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const P: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ps: usize,
    ks: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    // SAFETY: the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
        let mut bp = b;
        let mut ap = a;
        for _ in 0..k {
            let mut bv = [[_mm256_setzero_ps(); 2]; P];
            for j in 0..P {
                bv[j][0] = _mm256_loadu_ps(bp.add(j * ps));
                bv[j][1] = _mm256_loadu_ps(bp.add(j * ps + 8));
            }
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*ap.add(r * lda));
                for j in 0..P {
                    acc[r][j][0] = _mm256_fmadd_ps(av, bv[j][0], acc[r][j][0]);
                    acc[r][j][1] = _mm256_fmadd_ps(av, bv[j][1], acc[r][j][1]);
                }
            }
            bp = bp.add(ks);
            ap = ap.add(1);
        }
        for r in 0..R {
            for j in 0..P {
                let p = c.add(r * ldc + j * 16);
                let valid = cols.saturating_sub(j * 16).min(16);
                if valid == 16 {
                    let mut v0 = acc[r][j][0];
                    let mut v1 = acc[r][j][1];
                    if accumulate {
                        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
                    }
                    _mm256_storeu_ps(p, v0);
                    _mm256_storeu_ps(p.add(8), v1);
                } else {
                    let mut row = [0.0f32; 16];
                    _mm256_storeu_ps(row.as_mut_ptr(), acc[r][j][0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[r][j][1]);
                    for l in 0..valid {
                        *p.add(l) = if accumulate { *p.add(l) + row[l] } else { row[l] };
                    }
                }
            }
        }
    }
}

/// Runs the tile kernel over `m × ncols` with at most `MR` rows and `NP` panels per tile.
#[target_feature(enable = "avx2,fma")]
unsafe fn drive<const MR: usize, const NP: usize>(
    m: usize,
    ncols: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ps: usize,
    ks: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let panels = ncols.div_ceil(PANEL);
    let mut p0 = 0;
    while p0 < panels {
        let np = (panels - p0).min(NP);
        let cols = (ncols - p0 * PANEL).min(np * PANEL);
        let mut i0 = 0;
        while i0 < m {
            let mr = (m - i0).min(MR);
            // SAFETY: the tile lies inside the matrices by construction.
            unsafe {
                let (ap, bp, cp) = (a.add(i0 * lda), b.add(p0 * ps), c.add(i0 * ldc + p0 * PANEL));
                macro_rules! go {
                    ($r:literal, $p:literal) => {
                        tile::<$r, $p>(k, ap, lda, bp, ps, ks, cp, ldc, cols, accumulate)
                    };
                }
                match (mr, np) {
                    (1, 1) => go!(1, 1),
                    (1, 2) => go!(1, 2),
                    (1, 3) => go!(1, 3),
                    (1, _) => go!(1, 4),
                    (2, 1) => go!(2, 1),
                    (2, 2) => go!(2, 2),
                    (2, 3) => go!(2, 3),
                    (2, _) => go!(2, 4),
                    (3, _) => go!(3, 1),
                    (4, _) => go!(4, 1),
                    (5, _) => go!(5, 1),
                    _ => go!(6, 1),
                }
            }
            i0 += mr;
        }
        p0 += np;
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn drive_any(
    m: usize,
    ncols: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ps: usize,
    ks: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if m <= 2 {
            drive::<2, 4>(m, ncols, k, a, lda, b, ps, ks, c, ldc, accumulate)
        } else {
            drive::<6, 1>(m, ncols, k, a, lda, b, ps, ks, c, ldc, accumulate)
        }
    }
}

/// Packed-panel f32 GEMM.
///
/// # Safety
/// As [`super::scalar::sgemm_packed`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let k = k as usize;
    // SAFETY: forwarded contract.
    unsafe {
        drive_any(
            m as usize,
            n as usize,
            k,
            a,
            lda as usize,
            b as *const f32,
            k * PANEL,
            PANEL,
            c,
            ldc as usize,
            accumulate != 0,
        )
    }
}

/// Dense-`b` f32 GEMM.
///
/// # Safety
/// As [`super::scalar::sgemm`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let full = n / PANEL * PANEL;
    // SAFETY: forwarded contract; full panels are read in place, the tail from a packed copy.
    unsafe {
        if full > 0 {
            drive_any(m, full, k, a, lda, b, PANEL, ldb, c, ldc, accumulate != 0);
        }
        if n > full {
            super::with_packed_tail(k, b, ldb, full, n - full, |bp| {
                drive_any(m, n - full, k, a, lda, bp, k * PANEL, PANEL, c.add(full), ldc, accumulate != 0)
            });
        }
    }
}

/// The block's f16 scale as f32 (F16C).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scale(blk: *const u8) -> f32 {
    // SAFETY: `blk` points at a whole block.
    let bits = unsafe { std::ptr::read_unaligned(blk as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Decodes one block (Q8_0 or Q4_0) into four scaled vectors of 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode<const Q4: bool>(blk: *const u8) -> [__m256; 4] {
    // SAFETY: `blk` points at a whole block.
    unsafe {
        let d = _mm256_set1_ps(scale(blk));
        let mut out = [_mm256_setzero_ps(); 4];
        if Q4 {
            let eight = _mm256_set1_epi32(8);
            for h in 0..2 {
                let bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(blk.add(2 + 8 * h) as *const __m128i));
                let lo = _mm256_sub_epi32(_mm256_and_si256(bytes, _mm256_set1_epi32(15)), eight);
                let hi = _mm256_sub_epi32(_mm256_srli_epi32::<4>(bytes), eight);
                out[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d);
                out[2 + h] = _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d);
            }
        } else {
            for q in 0..4 {
                let v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(blk.add(2 + 8 * q) as *const __m128i));
                out[q] = _mm256_mul_ps(_mm256_cvtepi32_ps(v), d);
            }
        }
        out
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// `c[r, j] (+)= Σ a[r, :] · w[j, :]` for an `R × J` tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn qtile<const R: usize, const J: usize, const Q4: bool>(
    nb: usize,
    a: *const f32,
    lda: usize,
    w: *const u8,
    row_bytes: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let bb = if Q4 { Q4_0_BLOCK_BYTES } else { Q8_0_BLOCK_BYTES };
    // SAFETY: the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); J]; R];
        for blk in 0..nb {
            for j in 0..J {
                let wv = decode::<Q4>(w.add(j * row_bytes + blk * bb));
                for r in 0..R {
                    let ap = a.add(r * lda + blk * QK);
                    for q in 0..4 {
                        acc[r][j] = _mm256_fmadd_ps(wv[q], _mm256_loadu_ps(ap.add(8 * q)), acc[r][j]);
                    }
                }
            }
        }
        for r in 0..R {
            for j in 0..J {
                let p = c.add(r * ldc + j);
                let s = hsum(acc[r][j]);
                *p = if accumulate { *p + s } else { s };
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_q<const Q4: bool>(
    m: u64,
    n: u64,
    k: u64,
    a: *const f32,
    lda: u64,
    w: *const u8,
    c: *mut f32,
    ldc: u64,
    accumulate: u32,
) {
    let (m, n, lda, ldc, acc) = (m as usize, n as usize, lda as usize, ldc as usize, accumulate != 0);
    let nb = k as usize / QK;
    let row_bytes = nb * if Q4 { Q4_0_BLOCK_BYTES } else { Q8_0_BLOCK_BYTES };
    // SAFETY: every tile lies inside the matrices by construction.
    unsafe {
        macro_rules! go {
            ($r:literal, $j:literal, $i0:expr, $j0:expr) => {
                qtile::<$r, $j, Q4>(
                    nb,
                    a.add($i0 * lda),
                    lda,
                    w.add($j0 * row_bytes),
                    row_bytes,
                    c.add($i0 * ldc + $j0),
                    ldc,
                    acc,
                )
            };
        }
        // Blocks of JB weight rows stay in L2 while every row of `a` passes over them.
        const JB: usize = 96;
        let mut jb = 0;
        while jb < n {
            let je = (jb + JB).min(n);
            let mut i0 = 0;
            while i0 < m {
                let mut j0 = jb;
                if m - i0 >= 2 {
                    while j0 + 3 <= je {
                        go!(2, 3, i0, j0);
                        j0 += 3;
                    }
                    while j0 < je {
                        go!(2, 1, i0, j0);
                        j0 += 1;
                    }
                    i0 += 2;
                } else {
                    while j0 + 6 <= je {
                        go!(1, 6, i0, j0);
                        j0 += 6;
                    }
                    while j0 < je {
                        go!(1, 1, i0, j0);
                        j0 += 1;
                    }
                    i0 += 1;
                }
            }
            jb = je;
        }
    }
}

/// `c (+)= a · wᵀ` with Q8_0 `w`.
///
/// # Safety
/// As [`super::scalar::gemm_q8_0`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    unsafe { gemm_q::<false>(m, n, k, a, lda, w, c, ldc, accumulate) }
}

/// `c (+)= a · wᵀ` with Q4_0 `w`.
///
/// # Safety
/// As [`super::scalar::gemm_q4_0`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    unsafe { gemm_q::<true>(m, n, k, a, lda, w, c, ldc, accumulate) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn fma(p: __m256, x: __m256, c: f32) -> __m256 {
    _mm256_fmadd_ps(p, x, _mm256_set1_ps(c))
}

/// 8-lane exp (NaN handled by the callers' final blend).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(expc::LO)), _mm256_set1_ps(expc::HI));
    let n = _mm256_floor_ps(fma(xc, _mm256_set1_ps(expc::LOG2E), 0.5));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(expc::C1), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(expc::C2), r);
    let z = _mm256_mul_ps(r, r);
    let mut p = fma(_mm256_set1_ps(expc::P0), r, expc::P1);
    p = fma(p, r, expc::P2);
    p = fma(p, r, expc::P3);
    p = fma(p, r, expc::P4);
    p = fma(p, r, expc::P5);
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0));
    let ni = _mm256_cvtps_epi32(n);
    let h = _mm256_srai_epi32::<1>(ni);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias)));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias)));
    _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn keep_nan(x: __m256, y: __m256) -> __m256 {
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn abs_sign(x: __m256) -> (__m256, __m256) {
    let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
    (_mm256_andnot_ps(_mm256_set1_ps(-0.0), x), sign)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn tanh8(x: __m256) -> __m256 {
    let (ax, sign) = abs_sign(x);
    let s = _mm256_mul_ps(x, x);
    let mut p = fma(_mm256_set1_ps(tanhc::T0), s, tanhc::T1);
    p = fma(p, s, tanhc::T2);
    p = fma(p, s, tanhc::T3);
    p = fma(p, s, tanhc::T4);
    let small = _mm256_fmadd_ps(_mm256_mul_ps(p, s), x, x);
    let e = exp8(_mm256_add_ps(ax, ax));
    let big =
        _mm256_sub_ps(_mm256_set1_ps(1.0), _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, _mm256_set1_ps(1.0))));
    let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, _mm256_set1_ps(tanhc::SMALL));
    keep_nan(x, _mm256_blendv_ps(_mm256_or_ps(big, sign), small, is_small))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn erf8(x: __m256) -> __m256 {
    let (ax, sign) = abs_sign(x);
    let s = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(erfc::E[11]);
    for i in (0..11).rev() {
        p = fma(p, s, erfc::E[i]);
    }
    let small = _mm256_mul_ps(p, x);
    let t = _mm256_div_ps(_mm256_set1_ps(1.0), fma(ax, _mm256_set1_ps(erfc::P), 1.0));
    let mut q = fma(_mm256_set1_ps(erfc::A5), t, erfc::A4);
    q = fma(q, t, erfc::A3);
    q = fma(q, t, erfc::A2);
    q = fma(q, t, erfc::A1);
    q = _mm256_mul_ps(q, t);
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), s));
    let big = _mm256_fnmadd_ps(q, e, _mm256_set1_ps(1.0));
    let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, _mm256_set1_ps(1.0));
    keep_nan(x, _mm256_blendv_ps(_mm256_or_ps(big, sign), small, is_small))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn map8(x: *const f32, y: *mut f32, n: u64, f: impl Fn(__m256) -> __m256) {
    let n = n as usize;
    let mut i = 0;
    // SAFETY: the caller's contract: `n` floats readable at `x`, writable at `y`.
    unsafe {
        while i + 8 <= n {
            _mm256_storeu_ps(y.add(i), f(_mm256_loadu_ps(x.add(i))));
            i += 8;
        }
        if i < n {
            let mut buf = [0.0f32; 8];
            std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
            let v = f(_mm256_loadu_ps(buf.as_ptr()));
            _mm256_storeu_ps(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), y.add(i), n - i);
        }
    }
}

/// `y = exp(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe extern "C" fn exp(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map8(x, y, n, |v| keep_nan(v, exp8(v))) }
}

/// `y = x · σ(x) · z` elementwise (`silu(x) · z`).
///
/// # Safety
/// As [`super::scalar::silu_mul`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe extern "C" fn silu_mul(x: *const f32, z: *const f32, y: *mut f32, n: u64) {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn f(xv: __m256, zv: __m256) -> __m256 {
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), xv));
        let s = _mm256_div_ps(xv, _mm256_add_ps(e, _mm256_set1_ps(1.0)));
        keep_nan(xv, _mm256_mul_ps(s, zv))
    }
    let n = n as usize;
    let mut i = 0;
    // SAFETY: the caller's contract: `n` floats readable at `x` and `z`, writable at `y`.
    unsafe {
        while i + 8 <= n {
            _mm256_storeu_ps(y.add(i), f(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(z.add(i))));
            i += 8;
        }
        if i < n {
            let (mut bx, mut bz) = ([0.0f32; 8], [0.0f32; 8]);
            std::ptr::copy_nonoverlapping(x.add(i), bx.as_mut_ptr(), n - i);
            std::ptr::copy_nonoverlapping(z.add(i), bz.as_mut_ptr(), n - i);
            let v = f(_mm256_loadu_ps(bx.as_ptr()), _mm256_loadu_ps(bz.as_ptr()));
            _mm256_storeu_ps(bx.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(bx.as_ptr(), y.add(i), n - i);
        }
    }
}

/// `y = tanh(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe extern "C" fn tanh(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map8(x, y, n, |v| tanh8(v)) }
}

/// `y = erf(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe extern "C" fn erf(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map8(x, y, n, |v| erf8(v)) }
}

/// `Σ_{l < n} x[l]·y[l]`: 8-lane FMAs over whole chunks, a scalar tail.
///
/// # Safety
/// `x` and `y` readable for `n` floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot(x: *const f32, y: *const f32, n: usize) -> f32 {
    // SAFETY: as the function's contract.
    unsafe {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i + 8)), _mm256_loadu_ps(y.add(i + 8)), a1);
            i += 16;
        }
        if i + 8 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)), a0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(a0, a1));
        while i < n {
            s += *x.add(i) * *y.add(i);
            i += 1;
        }
        s
    }
}

/// One query row of softmax attention (see [`crate::abi::AttentionRowFn`]): 8-lane dot
/// products for the scores, 8-lane `exp` of the shifted scores, then the weighted sum of
/// value rows with up to 8 accumulators (64 columns) per pass over the keys.
///
/// # Safety
/// As [`super::scalar::attention_row`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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

/// [`attention_row`] with an additive mask (see [`crate::abi::AttentionRowMaskedFn`]).
///
/// # Safety
/// As [`super::scalar::attention_row_masked`], and the CPU supports this tier.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
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
    if keys == 0 {
        // SAFETY: `o` is writable for `dv` floats.
        unsafe { std::ptr::write_bytes(o, 0, dv) };
        return;
    }
    // SAFETY: the caller's contract; every access below stays inside the rows it names.
    let mask = crate::abi::RowMask::from_abi(mask, mask_kind);
    super::with_scratch(keys, |scores| unsafe { row(q, k, v, mask, keys, dk, dv, scale, o, scores) })
}

#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn row(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    mask: crate::abi::RowMask,
    keys: usize,
    dk: usize,
    dv: usize,
    scale: f32,
    o: *mut f32,
    scores: &mut [f32],
) {
    // SAFETY (whole body): pointers as the caller's contract states; `scores` has `keys` slots.
    unsafe {
        let mut maxv = f32::NEG_INFINITY;
        for (j, sc) in scores.iter_mut().enumerate().take(keys) {
            let s = scale * dot(q, k.add(j * dk), dk) + mask.added(j);
            *sc = s;
            maxv = maxv.max(s);
        }
        // Weights: exp(s − max); an all −inf row (not produced by the kernels) gives zeros.
        let dead = maxv == f32::NEG_INFINITY;
        let mv = _mm256_set1_ps(maxv);
        let mut sumv = _mm256_setzero_ps();
        let mut j = 0;
        while j < keys {
            let n = (keys - j).min(8);
            let mut buf = [f32::NEG_INFINITY; 8];
            std::ptr::copy_nonoverlapping(scores.as_ptr().add(j), buf.as_mut_ptr(), n);
            let p = if dead { _mm256_setzero_ps() } else { exp8(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv)) };
            // Lanes past `keys` held −inf: their exp is 0 and adds nothing.
            _mm256_storeu_ps(buf.as_mut_ptr(), p);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), scores.as_mut_ptr().add(j), n);
            sumv = _mm256_add_ps(sumv, p);
            j += 8;
        }
        let sum = hsum(sumv);
        let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        // Output columns in passes of up to 64 (8 accumulators); a column tail in scalar.
        let full = dv / 8 * 8;
        let mut e0 = 0;
        while e0 < full {
            let nacc = ((full - e0) / 8).min(8);
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, &w) in scores.iter().enumerate().take(keys) {
                let p = _mm256_set1_ps(w);
                let vrow = v.add(j * dv + e0);
                for (a, slot) in acc.iter_mut().enumerate().take(nacc) {
                    *slot = _mm256_fmadd_ps(p, _mm256_loadu_ps(vrow.add(8 * a)), *slot);
                }
            }
            let invv = _mm256_set1_ps(inv);
            for (a, slot) in acc.iter().enumerate().take(nacc) {
                _mm256_storeu_ps(o.add(e0 + 8 * a), _mm256_mul_ps(*slot, invv));
            }
            e0 += 8 * nacc;
        }
        for e in full..dv {
            let mut s = 0.0f32;
            for (j, &w) in scores.iter().enumerate().take(keys) {
                s += w * *v.add(j * dv + e);
            }
            *o.add(e) = s * inv;
        }
    }
}

/// Rows of `a` from which `sgemm_nt` packs `w` into panels first (as the AVX-512 tier).
const NT_PACK_ROWS: usize = 64;

/// Copies `w: [n, k]` rows (stride `ldw`) into `[⌈n/16⌉, k, 16]` panels, zero padded past `n`.
///
/// # Safety
/// `w` readable for `n` rows of `k` floats at stride `ldw`; `panels` holds `⌈n/16⌉·k·16`.
unsafe fn pack_rows(w: *const f32, ldw: usize, n: usize, k: usize, panels: &mut [f32]) {
    for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate().take(n.div_ceil(PANEL)) {
        for l in 0..PANEL {
            let j = p * PANEL + l;
            // SAFETY: row `j < n` is readable for `k` floats.
            let row = (j < n).then(|| unsafe { std::slice::from_raw_parts(w.add(j * ldw), k) });
            for kk in 0..k {
                panel[kk * PANEL + l] = row.map_or(0.0, |r| r[kk]);
            }
        }
    }
}

/// An `R × J` tile of dot products: `c[r, j] (+)= scale_j · Σ_kk a[r, kk] · w_j[kk]`, with
/// `LOAD` widening 8 weights of row `j` at element `kk` to f32 lanes and `tail` giving one
/// weight as f32 for the last `k mod 8` elements.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_tile<const R: usize, const J: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    load: impl Fn(usize, usize) -> __m256,
    tail: impl Fn(usize, usize) -> f32,
    scale: impl Fn(usize) -> f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY (whole body): the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); J]; R];
        let k8 = k / 8 * 8;
        let mut kk = 0;
        while kk < k8 {
            let mut wv = [_mm256_setzero_ps(); J];
            for (j, slot) in wv.iter_mut().enumerate() {
                *slot = load(j, kk);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_loadu_ps(a.add(r * lda + kk));
                for (j, slot) in row.iter_mut().enumerate() {
                    *slot = _mm256_fmadd_ps(av, wv[j], *slot);
                }
            }
            kk += 8;
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, slot) in row.iter().enumerate() {
                let mut sum = hsum(*slot);
                for t in k8..k {
                    sum += *a.add(r * lda + t) * tail(j, t);
                }
                let v = sum * scale(j);
                let p = c.add(r * ldc + j);
                *p = if accumulate { *p + v } else { v };
            }
        }
    }
}

/// Walks `m × n` in dot tiles: 4 × 4 while four rows remain (each weight chunk feeds four
/// rows of `a`), then single rows in 1 × 8 tiles (the weight-streaming GEMV of decode), and
/// single columns for the rest.
macro_rules! walk_dot_tiles {
    ($go:ident, $m:expr, $n:expr) => {{
        let (m, n): (usize, usize) = ($m, $n);
        let mut i = 0;
        while i + 4 <= m {
            let mut j = 0;
            while j + 4 <= n {
                $go!(4, 4, i, j);
                j += 4;
            }
            while j < n {
                $go!(4, 1, i, j);
                j += 1;
            }
            i += 4;
        }
        while i < m {
            let mut j = 0;
            while j + 8 <= n {
                $go!(1, 8, i, j);
                j += 8;
            }
            while j < n {
                $go!(1, 1, i, j);
                j += 1;
            }
            i += 1;
        }
    }};
}

/// `c (+)= a · wᵀ` with f32 `w: [n, k]` rows (`linear` weights as stored): from
/// [`NT_PACK_ROWS`] rows on, `w` is packed into panels for the packed GEMM's register tiles;
/// below, dot tiles ([`walk_dot_tiles`]).
///
/// # Safety
/// As [`super::scalar::sgemm_nt`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let (m, n, k, lda, ldw, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldb as usize, ldc as usize);
    let w = w as *const f32;
    let acc = accumulate != 0;
    if m >= NT_PACK_ROWS && n > 0 && k > 0 {
        // SAFETY: `w` holds `n` rows of `k` floats at stride `ldw` (caller's contract).
        return super::with_scratch(n.div_ceil(PANEL) * k * PANEL, |panels| unsafe {
            pack_rows(w, ldw, n, k, panels);
            drive_any(m, n, k, a, lda, panels.as_ptr(), k * PANEL, PANEL, c, ldc, acc)
        });
    }
    // SAFETY: every tile lies inside the matrices by construction.
    unsafe {
        macro_rules! go {
            ($r:literal, $j:literal, $i0:expr, $j0:expr) => {{
                let wt = w.add($j0 * ldw);
                dot_tile::<$r, $j>(
                    k,
                    a.add($i0 * lda),
                    lda,
                    |j, kk| _mm256_loadu_ps(wt.add(j * ldw + kk)),
                    |j, t| *wt.add(j * ldw + t),
                    |_| 1.0,
                    c.add($i0 * ldc + $j0),
                    ldc,
                    acc,
                )
            }};
        }
        walk_dot_tiles!(go, m, n);
    }
}

/// `c (+)= (a · wᵀ)·diag(scale)` with i8 `w` rows (see [`super::scalar::gemm_i8`]): dot
/// tiles over weights widened 8 at a time (i8 → i32 → f32).
///
/// # Safety
/// As [`super::scalar::gemm_i8`], and the CPU supports this tier.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let acc = accumulate != 0;
    // SAFETY: every tile lies inside the matrices by construction.
    unsafe {
        macro_rules! go {
            ($r:literal, $j:literal, $i0:expr, $j0:expr) => {{
                let (wt, st) = (w.add($j0 * ldb), scale.add($j0));
                dot_tile::<$r, $j>(
                    k,
                    a.add($i0 * lda),
                    lda,
                    |j, kk| {
                        let bytes = _mm_loadl_epi64(wt.add(j * ldb + kk) as *const __m128i);
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes))
                    },
                    |j, t| f32::from(*wt.add(j * ldb + t)),
                    |j| *st.add(j),
                    c.add($i0 * ldc + $j0),
                    ldc,
                    acc,
                )
            }};
        }
        walk_dot_tiles!(go, m, n);
    }
}
