//! AVX-512F tier of the micro-kernels (x86-64; the caller checks `avx512f`, `avx2`, `fma`,
//! `f16c` before calling anything here — [`super::Tier::Avx512`]).
//!
//! * f32 GEMM: a 6-row × 64-column register tile (24 zmm accumulators), `a` broadcast, one
//!   FMA per panel row; `m` tails use smaller row counts, `n` tails fewer panels and masked
//!   stores. Dense `b` is read in place (row stride `ldb`); only its last partial panel is
//!   packed (zero padded) into a thread-local buffer. With several row tiles per panel group
//!   (T = 16: three), the tiles prefetch the next group's packed panels into L2 in equal
//!   shares, so weight streaming overlaps the FMAs instead of stalling the group's first tile.
//! * Quantized GEMM: a 4 (`a` rows) × 4 (`w` rows) tile of dot-product accumulators; each
//!   block of a `w` row is decoded once per tile (i8/nibbles → i32 → f32 × scale) and FMA'd
//!   with 4 rows of `a`; for `m < 4` the tile is 1 × 8 (GEMV for decode) and scales each
//!   block's dot product instead of the weights. The weight rows two tiles ahead are
//!   software-prefetched into L2 (decode reads them once, from DRAM).
//! * exp/tanh/erf: the scalar algorithms on 16 lanes, masked tails, `vscalefps` for `2ⁿ`.

use super::{erfc, expc, tanhc, PANEL, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use std::arch::x86_64::*;

/// Walks an `m × n` output in dot-product register tiles, invoking `$go!(rows, cols, i0, j0)`
/// (literal tile sizes) for each: below 4 rows one row at a time in 8-column tiles and a
/// single-column tail, otherwise tiles of up to 4 × 4. Shared by the quantized GEMMs (Q8_0 /
/// Q4_0 and i8), whose tiles differ only in how they widen a block of weights.
macro_rules! walk_dot_tiles {
    ($go:ident, $m:expr, $n:expr) => {{
        let (m, n): (usize, usize) = ($m, $n);
        if m < 4 {
            for i in 0..m {
                let mut j0 = 0;
                while j0 + 8 <= n {
                    $go!(1, 8, i, j0);
                    j0 += 8;
                }
                while j0 < n {
                    $go!(1, 1, i, j0);
                    j0 += 1;
                }
            }
        } else {
            let mut j0 = 0;
            while j0 < n {
                let nj = (n - j0).min(4);
                let mut i0 = 0;
                while i0 < m {
                    let nr = (m - i0).min(4);
                    macro_rules! rows {
                        ($j:literal) => {
                            match nr {
                                1 => $go!(1, $j, i0, j0),
                                2 => $go!(2, $j, i0, j0),
                                3 => $go!(3, $j, i0, j0),
                                _ => $go!(4, $j, i0, j0),
                            }
                        };
                    }
                    match nj {
                        1 => rows!(1),
                        2 => rows!(2),
                        3 => rows!(3),
                        _ => rows!(4),
                    }
                    i0 += nr;
                }
                j0 += nj;
            }
        }
    }};
}

const MR: usize = 6;
/// Rows of the register tile for a group of `np` panels: the accumulators (`rows × np`) stay
/// within 24 of the 32 zmm registers, so narrow groups (a 16- or 32-column call, e.g. a
/// rotary half-head) take more rows per pass over their panels instead of re-reading them.
fn max_tile_rows(np: usize) -> usize {
    match np {
        1 => 16,
        2 => 12,
        3 => 8,
        _ => MR,
    }
}
const NP: usize = 4;
/// How many k-rows (64 bytes each per panel) ahead the one- and two-row GEMM tiles prefetch
/// each panel, into L2: 4 KiB per panel stream (T=1 forward and decode measured best at 64,
/// against 16, 32 and 128 rows and against prefetching into L1).
const PREFETCH_ROWS: usize = 64;
/// How many 16-float chunks ahead the one-row `sgemm_nt` tile prefetches each weight row.
const PREFETCH_CHUNKS: usize = 8;

/// Mask of the first `cols` (≤ 16) lanes.
#[inline]
fn lane_mask(cols: usize) -> __mmask16 {
    if cols >= 16 {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as __mmask16
    }
}

/// One `R × 16·P` tile: `c[r, 16j + l] (+)= Σ_kk a[r, kk] · b[j·ps + kk·ks + l]`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile<const R: usize, const P: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ps: usize,
    ks: usize,
    c: *mut f32,
    ldc: usize,
    last_mask: __mmask16,
    accumulate: bool,
    ahead: Ahead,
) {
    // SAFETY: the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let mut bp = b;
        let mut ap = a;
        let mut pf = ahead.start;
        for _ in 0..k {
            if pf < ahead.end {
                for l in 0..ahead.lines_per_step {
                    // L2, not L1: the next group is several times L1's size.
                    _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64 * l));
                }
                pf = pf.wrapping_add(64 * ahead.lines_per_step);
            }
            let mut bv = [_mm512_setzero_ps(); P];
            for j in 0..P {
                if R <= 2 {
                    // Few rows (decode's GEMV) stream the weights from memory at a few FLOPs
                    // per byte: fetch each panel well ahead into L2 (L1 prefetches tie up the few
                    // L1 miss buffers the demand loads need); prefetches never fault past the end.
                    _mm_prefetch::<_MM_HINT_T1>(bp.add(j * ps + PREFETCH_ROWS * ks) as *const i8);
                }
                bv[j] = _mm512_loadu_ps(bp.add(j * ps));
            }
            for r in 0..R {
                let av = _mm512_set1_ps(*ap.add(r * lda));
                for j in 0..P {
                    acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
                }
            }
            bp = bp.add(ks);
            ap = ap.add(1);
        }
        for r in 0..R {
            for j in 0..P {
                let p = c.add(r * ldc + j * 16);
                let mask = if j == P - 1 { last_mask } else { 0xFFFF };
                let mut v = acc[r][j];
                if accumulate {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, p));
                }
                _mm512_mask_storeu_ps(p, mask, v);
            }
        }
    }
}

/// A row tile's share of the weight bytes after its panel group, to be prefetched into L2
/// while it computes: `lines_per_step` 64-byte lines per k-step from `start` until `end`.
#[derive(Clone, Copy)]
struct Ahead {
    start: *const i8,
    end: *const i8,
    lines_per_step: usize,
}

impl Ahead {
    const NONE: Ahead = Ahead { start: std::ptr::null(), end: std::ptr::null(), lines_per_step: 0 };

    /// The share of row tile `i0 / tile_rows` (of `m` rows) in the `NP` packed panels (`k` rows of
    /// 64 bytes each) that follow the group at `group_end`.
    ///
    /// With a few rows (T = 16: three row tiles) a group's first tile waits on memory and the
    /// others on the FMA units; fetching the next group during all of them keeps both busy.
    /// Packed panels lie back to back, so the next group is one contiguous run of bytes, and
    /// past the last group of a call lie the panels of the caller's next column tile (the
    /// kernels call once per tile); prefetches never fault, so the end of the weights is
    /// harmless.
    fn next_group(group_end: *const f32, k: usize, m: usize, i0: usize, tile_rows: usize) -> Ahead {
        let lines = NP * k;
        let tiles = m.div_ceil(tile_rows);
        let share = lines.div_ceil(tiles);
        let t = i0 / tile_rows;
        let first = (t * share).min(lines);
        let last = ((t + 1) * share).min(lines);
        let base = group_end as *const i8;
        Ahead {
            start: base.wrapping_add(64 * first),
            end: base.wrapping_add(64 * last),
            lines_per_step: share.div_ceil(k.max(1)),
        }
    }
}

/// Runs the tile kernel over `m × ncols`, `b` panels at stride `ps`, k-rows at stride `ks`.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn drive(
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
    // Only packed panels lie back to back, so only then is the next group one run of bytes.
    let prefetch_next = ps == k * PANEL && ks == PANEL && m > 2;
    let mut p0 = 0;
    while p0 < panels {
        let np = (panels - p0).min(NP);
        let cols = (ncols - p0 * PANEL).min(np * PANEL);
        let last_mask = lane_mask(cols - (np - 1) * PANEL);
        // Equal row tiles (16 rows in two panels: 8 + 8, not 12 + 4).
        let tile_rows = m.div_ceil(m.div_ceil(max_tile_rows(np)).max(1)).max(1);
        let mut i0 = 0;
        while i0 < m {
            let mr = (m - i0).min(tile_rows);
            let ahead = if prefetch_next {
                Ahead::next_group(b.wrapping_add((p0 + np) * ps), k, m, i0, tile_rows)
            } else {
                Ahead::NONE
            };
            // SAFETY: the tile lies inside the matrices by construction.
            unsafe {
                let (ap, bp, cp) = (a.add(i0 * lda), b.add(p0 * ps), c.add(i0 * ldc + p0 * PANEL));
                macro_rules! go {
                    ($r:literal, $p:literal) => {
                        tile::<$r, $p>(k, ap, lda, bp, ps, ks, cp, ldc, last_mask, accumulate, ahead)
                    };
                }
                // Rows as literals, so each tile shape is its own monomorphized loop.
                macro_rules! rows {
                    ($p:literal; $($r:literal)*) => {
                        match mr {
                            $($r => go!($r, $p),)*
                            _ => go!(1, $p),
                        }
                    };
                }
                match np {
                    1 => rows!(1; 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2),
                    2 => rows!(2; 12 11 10 9 8 7 6 5 4 3 2),
                    3 => rows!(3; 8 7 6 5 4 3 2),
                    _ => rows!(4; 6 5 4 3 2),
                }
            }
            i0 += mr;
        }
        p0 += np;
    }
}

/// Packed-panel f32 GEMM (see [`super::scalar::sgemm_packed`] for the contract).
///
/// # Safety
/// As [`super::scalar::sgemm_packed`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
        drive(
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
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
            drive(m, full, k, a, lda, b, PANEL, ldb, c, ldc, accumulate != 0);
        }
        if n > full {
            super::with_packed_tail(k, b, ldb, full, n - full, |bp| {
                drive(m, n - full, k, a, lda, bp, k * PANEL, PANEL, c.add(full), ldc, accumulate != 0)
            });
        }
    }
}

/// Decodes one Q8_0 block's quants into two vectors (elements 0..16, 16..32), unscaled.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn dec_q8(blk: *const u8) -> (__m512, __m512) {
    // SAFETY: `blk` points at a whole block.
    unsafe {
        let q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(2) as *const __m128i)));
        let q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(18) as *const __m128i)));
        (q0, q1)
    }
}

/// Decodes one Q4_0 block's quants into two vectors (low nibbles = 0..16, high = 16..32),
/// unscaled (`q − 8`).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn dec_q4(blk: *const u8) -> (__m512, __m512) {
    // SAFETY: `blk` points at a whole block.
    unsafe {
        let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(blk.add(2) as *const __m128i));
        let eight = _mm512_set1_epi32(8);
        let lo = _mm512_sub_epi32(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), eight);
        let hi = _mm512_sub_epi32(_mm512_srli_epi32::<4>(bytes), eight);
        (_mm512_cvtepi32_ps(lo), _mm512_cvtepi32_ps(hi))
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

/// `c[r, j] (+)= Σ a[r, :] · w[j, :]` for an `R × J` tile.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
        let mut acc = [[_mm512_setzero_ps(); J]; R];
        // The next-but-one tile's weight rows: prefetched evenly over this tile's blocks
        // (several interleaved short row streams defeat the hardware prefetcher), into L2 as the
        // f32 GEMV does.
        let ahead = w.wrapping_add(2 * J * row_bytes);
        let lines = (J * bb).div_ceil(64);
        for blk in 0..nb {
            let pf = ahead.wrapping_add(blk * J * bb);
            for l in 0..lines {
                _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(l * 64) as *const i8);
            }
            let mut w0 = [_mm512_setzero_ps(); J];
            let mut w1 = [_mm512_setzero_ps(); J];
            let mut d = [_mm512_setzero_ps(); J];
            for j in 0..J {
                let p = w.add(j * row_bytes + blk * bb);
                let (x, y) = if Q4 { dec_q4(p) } else { dec_q8(p) };
                d[j] = _mm512_set1_ps(scale(p));
                if R == 1 {
                    w0[j] = x;
                    w1[j] = y;
                } else {
                    w0[j] = _mm512_mul_ps(x, d[j]);
                    w1[j] = _mm512_mul_ps(y, d[j]);
                }
            }
            for r in 0..R {
                let ap = a.add(r * lda + blk * QK);
                let a0 = _mm512_loadu_ps(ap);
                let a1 = _mm512_loadu_ps(ap.add(16));
                for j in 0..J {
                    if R == 1 {
                        // One row of `a`: scale the block's dot product, not the weights.
                        let t = _mm512_fmadd_ps(w1[j], a1, _mm512_mul_ps(w0[j], a0));
                        acc[r][j] = _mm512_fmadd_ps(t, d[j], acc[r][j]);
                    } else {
                        acc[r][j] = _mm512_fmadd_ps(w0[j], a0, acc[r][j]);
                        acc[r][j] = _mm512_fmadd_ps(w1[j], a1, acc[r][j]);
                    }
                }
            }
        }
        for r in 0..R {
            for j in 0..J {
                let p = c.add(r * ldc + j);
                let s = _mm512_reduce_add_ps(acc[r][j]);
                *p = if accumulate { *p + s } else { s };
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
        walk_dot_tiles!(go, m, n);
    }
}

/// `c (+)= a · wᵀ` with Q8_0 `w`.
///
/// # Safety
/// As [`super::scalar::gemm_q8_0`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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

/// Horner evaluation helper: `p·x + c`.
#[inline]
#[target_feature(enable = "avx512f")]
fn fma(p: __m512, x: __m512, c: f32) -> __m512 {
    _mm512_fmadd_ps(p, x, _mm512_set1_ps(c))
}

/// 16-lane exp (NaN handled by the callers' final blend).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(expc::LO)), _mm512_set1_ps(expc::HI));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(fma(
        xc,
        _mm512_set1_ps(expc::LOG2E),
        0.5,
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(expc::C1), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(expc::C2), r);
    let z = _mm512_mul_ps(r, r);
    let mut p = fma(_mm512_set1_ps(expc::P0), r, expc::P1);
    p = fma(p, r, expc::P2);
    p = fma(p, r, expc::P3);
    p = fma(p, r, expc::P4);
    p = fma(p, r, expc::P5);
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(y, n)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn keep_nan(x: __m512, y: __m512) -> __m512 {
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_ps(y, nan, x)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn abs_sign(x: __m512) -> (__m512, __m512i) {
    let bits = _mm512_castps_si512(x);
    let sign = _mm512_and_si512(bits, _mm512_set1_epi32(i32::MIN));
    (_mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32(i32::MIN), bits)), sign)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn with_sign(v: __m512, sign: __m512i) -> __m512 {
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn tanh16(x: __m512) -> __m512 {
    let (ax, sign) = abs_sign(x);
    let s = _mm512_mul_ps(x, x);
    let mut p = fma(_mm512_set1_ps(tanhc::T0), s, tanhc::T1);
    p = fma(p, s, tanhc::T2);
    p = fma(p, s, tanhc::T3);
    p = fma(p, s, tanhc::T4);
    let small = _mm512_fmadd_ps(_mm512_mul_ps(p, s), x, x);
    let e = exp16(_mm512_add_ps(ax, ax));
    let big =
        _mm512_sub_ps(_mm512_set1_ps(1.0), _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, _mm512_set1_ps(1.0))));
    let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, _mm512_set1_ps(tanhc::SMALL));
    keep_nan(x, _mm512_mask_mov_ps(with_sign(big, sign), is_small, small))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn erf16(x: __m512) -> __m512 {
    let (ax, sign) = abs_sign(x);
    let s = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(erfc::E[11]);
    for i in (0..11).rev() {
        p = fma(p, s, erfc::E[i]);
    }
    let small = _mm512_mul_ps(p, x);
    let t = _mm512_div_ps(_mm512_set1_ps(1.0), fma(ax, _mm512_set1_ps(erfc::P), 1.0));
    let mut q = fma(_mm512_set1_ps(erfc::A5), t, erfc::A4);
    q = fma(q, t, erfc::A3);
    q = fma(q, t, erfc::A2);
    q = fma(q, t, erfc::A1);
    q = _mm512_mul_ps(q, t);
    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), s));
    let big = _mm512_fnmadd_ps(q, e, _mm512_set1_ps(1.0));
    let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, _mm512_set1_ps(1.0));
    keep_nan(x, _mm512_mask_mov_ps(with_sign(big, sign), is_small, small))
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn map16(x: *const f32, y: *mut f32, n: u64, f: impl Fn(__m512) -> __m512) {
    let n = n as usize;
    let mut i = 0;
    // SAFETY: the caller's contract: `n` floats readable at `x`, writable at `y`.
    unsafe {
        while i + 16 <= n {
            _mm512_storeu_ps(y.add(i), f(_mm512_loadu_ps(x.add(i))));
            i += 16;
        }
        if i < n {
            let mask = lane_mask(n - i);
            _mm512_mask_storeu_ps(y.add(i), mask, f(_mm512_maskz_loadu_ps(mask, x.add(i))));
        }
    }
}

/// `y = exp(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe extern "C" fn exp(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map16(x, y, n, |v| keep_nan(v, exp16(v))) }
}

/// `y = x · σ(x) · z` elementwise (`silu(x) · z`).
///
/// # Safety
/// As [`super::scalar::silu_mul`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe extern "C" fn silu_mul(x: *const f32, z: *const f32, y: *mut f32, n: u64) {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn f(xv: __m512, zv: __m512) -> __m512 {
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), xv));
        let s = _mm512_div_ps(xv, _mm512_add_ps(e, _mm512_set1_ps(1.0)));
        keep_nan(xv, _mm512_mul_ps(s, zv))
    }
    let n = n as usize;
    let mut i = 0;
    // SAFETY: the caller's contract: `n` floats readable at `x` and `z`, writable at `y`.
    unsafe {
        while i + 16 <= n {
            _mm512_storeu_ps(y.add(i), f(_mm512_loadu_ps(x.add(i)), _mm512_loadu_ps(z.add(i))));
            i += 16;
        }
        if i < n {
            let mask = lane_mask(n - i);
            let v = f(_mm512_maskz_loadu_ps(mask, x.add(i)), _mm512_maskz_loadu_ps(mask, z.add(i)));
            _mm512_mask_storeu_ps(y.add(i), mask, v);
        }
    }
}

/// `y = tanh(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe extern "C" fn tanh(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map16(x, y, n, |v| tanh16(v)) }
}

/// `y = erf(x)` elementwise.
///
/// # Safety
/// As [`super::scalar::exp`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe extern "C" fn erf(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: forwarded contract.
    unsafe { map16(x, y, n, |v| erf16(v)) }
}

/// `Σ_l v[l]` of 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum(v: __m512) -> f32 {
    _mm512_reduce_add_ps(v)
}

/// One query row of softmax attention (see [`crate::abi::AttentionRowFn`]): scores four keys
/// at a time (16-lane FMAs over `dk`, masked tail), 16-lane `exp` of the shifted scores, then
/// the weighted sum of value rows with up to 8 accumulators (128 columns) per pass over the
/// keys.
///
/// # Safety
/// As [`super::scalar::attention_row`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
        let dot4 = |j: usize| {
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut d = 0;
            while d < dk {
                let mask = lane_mask(dk - d);
                let qv = _mm512_maskz_loadu_ps(mask, q.add(d));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, k.add((j + r) * dk + d)), *a);
                }
                d += 16;
            }
            acc
        };
        let added = |j: usize| mask.added(j);
        let mut j = 0;
        let mut maxv = f32::NEG_INFINITY;
        while j + 4 <= keys {
            let acc = dot4(j);
            for r in 0..4 {
                let s = scale * hsum(acc[r]) + added(j + r);
                scores[j + r] = s;
                maxv = maxv.max(s);
            }
            j += 4;
        }
        while j < keys {
            let mut a = _mm512_setzero_ps();
            let mut d = 0;
            while d < dk {
                let mask = lane_mask(dk - d);
                a = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, q.add(d)),
                    _mm512_maskz_loadu_ps(mask, k.add(j * dk + d)),
                    a,
                );
                d += 16;
            }
            let s = scale * hsum(a) + added(j);
            scores[j] = s;
            maxv = maxv.max(s);
            j += 1;
        }
        // Weights: exp(s − max); an all −inf row (not produced by the kernels) gives zeros.
        let dead = maxv == f32::NEG_INFINITY;
        let mv = _mm512_set1_ps(maxv);
        let mut sumv = _mm512_setzero_ps();
        let mut j = 0;
        while j < keys {
            let mask = lane_mask(keys - j);
            let s = _mm512_maskz_loadu_ps(mask, scores.as_ptr().add(j));
            let p = if dead { _mm512_setzero_ps() } else { _mm512_maskz_mov_ps(mask, exp16(_mm512_sub_ps(s, mv))) };
            _mm512_mask_storeu_ps(scores.as_mut_ptr().add(j), mask, p);
            sumv = _mm512_add_ps(sumv, p);
            j += 16;
        }
        let sum = hsum(sumv);
        let inv = _mm512_set1_ps(if sum > 0.0 { 1.0 / sum } else { 0.0 });
        // Output columns in passes of up to 128 (8 accumulators).
        let mut e0 = 0;
        while e0 < dv {
            let cols = (dv - e0).min(128);
            let nacc = cols.div_ceil(16);
            let mut acc = [_mm512_setzero_ps(); 8];
            for j in 0..keys {
                let p = _mm512_set1_ps(scores[j]);
                let vrow = v.add(j * dv + e0);
                for a in 0..nacc {
                    let mask = lane_mask(cols - 16 * a);
                    acc[a] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(mask, vrow.add(16 * a)), acc[a]);
                }
            }
            for a in 0..nacc {
                let mask = lane_mask(cols - 16 * a);
                _mm512_mask_storeu_ps(o.add(e0 + 16 * a), mask, _mm512_mul_ps(acc[a], inv));
            }
            e0 += cols;
        }
    }
}

/// Rows of `a` from which `sgemm_nt` packs `w` into panels first (the copy costs about as
/// much as 45 rows of dot tiles; measured with the `ukernels` bench).
const NT_PACK_ROWS: usize = 64;

/// Copies `w: [n, k]` rows (stride `ldw`) into `[⌈n/16⌉, k, 16]` panels, zero padded past `n`.
///
/// # Safety
/// `w` readable for `n` rows of `k` floats at stride `ldw`; `panels` holds `⌈n/16⌉·k·16`.
unsafe fn pack_rows(w: *const f32, ldw: usize, n: usize, k: usize, panels: &mut [f32]) {
    let np = n.div_ceil(PANEL);
    for p in 0..np {
        let panel = &mut panels[p * k * PANEL..(p + 1) * k * PANEL];
        for l in 0..PANEL {
            let j = p * PANEL + l;
            if j < n {
                // SAFETY: row `j < n` is readable for `k` floats.
                let row = unsafe { std::slice::from_raw_parts(w.add(j * ldw), k) };
                for (kk, &x) in row.iter().enumerate() {
                    panel[kk * PANEL + l] = x;
                }
            } else {
                for kk in 0..k {
                    panel[kk * PANEL + l] = 0.0;
                }
            }
        }
    }
}

/// An `R × J` tile of `c (+)= a · wᵀ` (f32 `w` rows): `R·J` 16-lane dot accumulators over `k`
/// (masked tail), reduced horizontally at the end.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn nt_tile<const R: usize, const J: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    ldw: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY (whole body): the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut s = [[_mm512_setzero_ps(); J]; R];
        let mut kk = 0;
        while kk < k {
            let mask = lane_mask(k - kk);
            let mut wv = [_mm512_setzero_ps(); J];
            for j in 0..J {
                if R == 1 {
                    // One row: a weight-streaming GEMV; fetch each row ahead.
                    _mm_prefetch::<_MM_HINT_T0>(w.add(j * ldw + kk + 16 * PREFETCH_CHUNKS) as *const i8);
                }
                wv[j] = _mm512_maskz_loadu_ps(mask, w.add(j * ldw + kk));
            }
            for r in 0..R {
                let av = _mm512_maskz_loadu_ps(mask, a.add(r * lda + kk));
                for j in 0..J {
                    s[r][j] = _mm512_fmadd_ps(av, wv[j], s[r][j]);
                }
            }
            kk += 16;
        }
        for r in 0..R {
            for j in 0..J {
                let v = hsum(s[r][j]);
                let p = c.add(r * ldc + j);
                *p = if accumulate { *p + v } else { v };
            }
        }
    }
}

/// `c (+)= a · wᵀ` with f32 `w: [n, k]` rows (`linear` weights as stored). From
/// [`NT_PACK_ROWS`] rows on, `w` is first copied into packed panels (thread-local) and the
/// packed GEMM's register tiles run; below, 4 × 4 tiles of dot products (each `w` chunk feeds
/// four rows of `a`) and 1 × 8 for the rows left over (the GEMV of decode: eight weight rows
/// streamed at once).
///
/// # Safety
/// As [`super::scalar::sgemm_nt`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
        // Enough rows to amortize a transposing copy of `w` into panels: run the packed
        // kernel's register tiles (about twice the dot tiles' rate).
        // SAFETY: `w` holds `n` rows of `k` floats at stride `ldw` (caller's contract).
        return super::with_scratch(n.div_ceil(PANEL) * k * PANEL, |panels| unsafe {
            pack_rows(w, ldw, n, k, panels);
            drive(m, n, k, a, lda, panels.as_ptr(), k * PANEL, PANEL, c, ldc, acc)
        });
    }
    // SAFETY: every tile lies inside the matrices by construction.
    unsafe {
        let mut i = 0;
        while i + 4 <= m {
            let mut j = 0;
            while j + 4 <= n {
                nt_tile::<4, 4>(k, a.add(i * lda), lda, w.add(j * ldw), ldw, c.add(i * ldc + j), ldc, acc);
                j += 4;
            }
            while j < n {
                nt_tile::<4, 1>(k, a.add(i * lda), lda, w.add(j * ldw), ldw, c.add(i * ldc + j), ldc, acc);
                j += 1;
            }
            i += 4;
        }
        while i < m {
            let mut j = 0;
            while j + 8 <= n {
                nt_tile::<1, 8>(k, a.add(i * lda), lda, w.add(j * ldw), ldw, c.add(i * ldc + j), ldc, acc);
                j += 8;
            }
            while j < n {
                nt_tile::<1, 1>(k, a.add(i * lda), lda, w.add(j * ldw), ldw, c.add(i * ldc + j), ldc, acc);
                j += 1;
            }
            i += 1;
        }
    }
}

/// `c[r, j] (+)= scale[j] · Σ a[r, :] · w[j, :]` for an `R × J` tile of i8 rows.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn i8tile<const R: usize, const J: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const i8,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    scale: *const f32,
) {
    // SAFETY: the caller guarantees the tile lies inside the matrices.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); J]; R];
        let k16 = k / 16 * 16;
        // The next-but-one tile's rows (contiguous `J·ldb` bytes), prefetched evenly over this
        // tile's k loop: interleaved short row streams defeat the hardware prefetcher.
        let ahead = w.wrapping_add(2 * J * ldb) as *const u8;
        let (lines, iters) = ((J * ldb).div_ceil(64), (k16 / 16).max(1));
        let mut kk = 0;
        let mut it = 0;
        while kk < k16 {
            for l in it * lines / iters..(it + 1) * lines / iters {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(l * 64) as *const i8);
            }
            let mut wv = [_mm512_setzero_ps(); J];
            for j in 0..J {
                let p = w.add(j * ldb + kk) as *const __m128i;
                wv[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p)));
            }
            for r in 0..R {
                let av = _mm512_loadu_ps(a.add(r * lda + kk));
                for j in 0..J {
                    acc[r][j] = _mm512_fmadd_ps(wv[j], av, acc[r][j]);
                }
            }
            kk += 16;
            it += 1;
        }
        for r in 0..R {
            for j in 0..J {
                let mut sum = _mm512_reduce_add_ps(acc[r][j]);
                for t in k16..k {
                    sum += *a.add(r * lda + t) * f32::from(*w.add(j * ldb + t));
                }
                let v = sum * *scale.add(j);
                let p = c.add(r * ldc + j);
                *p = if accumulate { *p + v } else { v };
            }
        }
    }
}

/// `c (+)= (a · wᵀ)·diag(scale)` with i8 `w` rows (see [`super::scalar::gemm_i8`]).
///
/// # Safety
/// As [`super::scalar::gemm_i8`], and the CPU supports this tier.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
            ($r:literal, $j:literal, $i0:expr, $j0:expr) => {
                i8tile::<$r, $j>(
                    k,
                    a.add($i0 * lda),
                    lda,
                    w.add($j0 * ldb),
                    ldb,
                    c.add($i0 * ldc + $j0),
                    ldc,
                    acc,
                    scale.add($j0),
                )
            };
        }
        walk_dot_tiles!(go, m, n);
    }
}
