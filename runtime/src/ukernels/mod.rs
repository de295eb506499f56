//! Micro-kernels and math helpers that fill [`RuntimeFnTable`]: f32 GEMM on dense and
//! prepacked weights, GEMM on GGML Q8_0 / Q4_0 weights (dequantized inside the kernel), and
//! array `exp` / `tanh` / `erf`, the gated-MLP epilogue `silu_mul` (`x·σ(x)·z`) and `topk`
//! (selection along one strided lane, any numeric dtype: [`topk`], shared by every tier).
//!
//! Three implementation tiers share one contract (see [`crate::abi::GemmFn`]):
//! * [`avx512`] — AVX-512F (+FMA, F16C): 16-lane register-blocked kernels (x86-64 only);
//! * [`avx2`] — AVX2 + FMA + F16C: 8-lane kernels (x86-64 only);
//! * [`scalar`] — portable Rust, used on every other machine.
//!
//! [`fn_table`] picks the best tier once by run-time CPU-feature detection; [`table_for`]
//! gives a specific tier (tests and the `ukernels` bench compare them).
//!
//! Layout contracts (all pointers unaligned-safe; strides in elements):
//! * `sgemm_packed`: `b` is `[⌈n/16⌉, k, 16]` f32 panels, zero padded past `n`.
//! * `sgemm`: `b` is dense row-major `[k, n]` with row stride `ldb`.
//! * `sgemm_nt`: `c = a · wᵀ`, `w: [n, k]` f32 rows with row stride `ldb` (`linear` weights).
//! * `gemm_i8`: `c = (a · wᵀ)·diag(scale)`, `w: [n, k]` i8 rows at stride `ldb` bytes.
//! * `gemm_q8_0` / `gemm_q4_0`: `c[m, n] (+)= a[m, k] · wᵀ`, `w: [n, k]` stored row after row
//!   in GGML blocks of 32 values ([`Q8_0_BLOCK_BYTES`], [`Q4_0_BLOCK_BYTES`]); `k` must be a
//!   multiple of 32 (a trailing partial block is not read).
//!
//! Math helpers (same algorithm in every tier; max relative error measured by this module's
//! tests against f64 `exp`/`tanh` and an f64 series/continued-fraction `erf`, over ~1.1·10⁶
//! points: uniform in ±110, ±6, ±0.7, a dense walk of [0.125, 8), and ±0, ±denormals,
//! ±1e30, ±f32::MAX, ±inf, NaN; the tests fail above 2e-6):
//! * `exp`: Cephes range reduction + degree-6 polynomial; max relative error 8.4e-8 (scalar
//!   7.9e-8) where the result is a normal float, denormal results within 1.5 denormal ulps;
//!   overflow gives `+inf`, underflow `0`.
//! * `tanh`: odd polynomial for `|x| < 0.625`, `1 − 2/(e^{2|x|}+1)` above; max relative
//!   error 1.4e-7; `±inf → ±1`.
//! * `erf`: Taylor polynomial for `|x| < 1`, Abramowitz–Stegun 7.1.26 above; max relative
//!   error 2.1e-7 (scalar 2.3e-7); `±inf → ±1`.
//! * NaN in → NaN out for all three.
//!
//! [`scalar_f64`] holds the scalar f64 math (`exp`, `log`, `tanh`, `erf`, `sin`, `cos`,
//! `pow`, `fmod`) that kernels computing in f64 call; one implementation for every tier.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments, clippy::missing_safety_doc)]

use crate::abi::{RuntimeFnTable, FN_TABLE_VERSION};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod scalar;
pub mod scalar_f64;
pub mod topk;

#[cfg(test)]
mod tests;

/// Bytes per GGML Q8_0 block: f16 scale + 32 × i8.
pub const Q8_0_BLOCK_BYTES: usize = 34;
/// Bytes per GGML Q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;
/// Values per GGML block.
pub const QK: usize = 32;
/// Columns per packed weight panel.
pub const PANEL: usize = 16;

/// An implementation tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Portable Rust.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512F (+ AVX2, FMA, F16C).
    Avx512,
}

impl Tier {
    /// Short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
        }
    }

    /// Whether this machine can run the tier.
    pub fn is_supported(self) -> bool {
        match self {
            Tier::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The tiers this machine supports, best first.
pub fn available_tiers() -> Vec<Tier> {
    [Tier::Avx512, Tier::Avx2, Tier::Scalar].into_iter().filter(|t| t.is_supported()).collect()
}

/// The best tier this machine supports.
pub fn best_tier() -> Tier {
    available_tiers().first().copied().unwrap_or(Tier::Scalar)
}

/// The function table of one tier, or `None` when the machine cannot run it.
pub fn table_for(tier: Tier) -> Option<RuntimeFnTable> {
    if !tier.is_supported() {
        return None;
    }
    Some(match tier {
        Tier::Scalar => RuntimeFnTable {
            version: FN_TABLE_VERSION,
            sgemm: scalar::sgemm,
            sgemm_packed: scalar::sgemm_packed,
            sgemm_nt: scalar::sgemm_nt,
            gemm_q8_0: scalar::gemm_q8_0,
            gemm_q4_0: scalar::gemm_q4_0,
            exp: scalar::exp,
            tanh: scalar::tanh,
            erf: scalar::erf,
            attention_row: scalar::attention_row,
            attention_row_masked: scalar::attention_row_masked,
            silu_mul: scalar::silu_mul,
            gemm_i8: scalar::gemm_i8,
            topk: topk::topk,
            f64_math: scalar_f64::SCALAR_MATH_F64,
        },
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => RuntimeFnTable {
            version: FN_TABLE_VERSION,
            sgemm: avx2::sgemm,
            sgemm_packed: avx2::sgemm_packed,
            sgemm_nt: avx2::sgemm_nt,
            gemm_q8_0: avx2::gemm_q8_0,
            gemm_q4_0: avx2::gemm_q4_0,
            exp: avx2::exp,
            tanh: avx2::tanh,
            erf: avx2::erf,
            attention_row: avx2::attention_row,
            attention_row_masked: avx2::attention_row_masked,
            silu_mul: avx2::silu_mul,
            gemm_i8: avx2::gemm_i8,
            topk: topk::topk,
            f64_math: scalar_f64::SCALAR_MATH_F64,
        },
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => RuntimeFnTable {
            version: FN_TABLE_VERSION,
            sgemm: avx512::sgemm,
            sgemm_packed: avx512::sgemm_packed,
            sgemm_nt: avx512::sgemm_nt,
            gemm_q8_0: avx512::gemm_q8_0,
            gemm_q4_0: avx512::gemm_q4_0,
            exp: avx512::exp,
            tanh: avx512::tanh,
            erf: avx512::erf,
            attention_row: avx512::attention_row,
            attention_row_masked: avx512::attention_row_masked,
            silu_mul: avx512::silu_mul,
            gemm_i8: avx512::gemm_i8,
            topk: topk::topk,
            f64_math: scalar_f64::SCALAR_MATH_F64,
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    })
}

/// The function table of the best tier this machine supports (detected once).
pub fn fn_table() -> RuntimeFnTable {
    static TABLE: OnceLock<RuntimeFnTable> = OnceLock::new();
    *TABLE.get_or_init(|| {
        table_for(best_tier()).unwrap_or(RuntimeFnTable {
            version: FN_TABLE_VERSION,
            sgemm: scalar::sgemm,
            sgemm_packed: scalar::sgemm_packed,
            sgemm_nt: scalar::sgemm_nt,
            gemm_q8_0: scalar::gemm_q8_0,
            gemm_q4_0: scalar::gemm_q4_0,
            exp: scalar::exp,
            tanh: scalar::tanh,
            erf: scalar::erf,
            attention_row: scalar::attention_row,
            attention_row_masked: scalar::attention_row_masked,
            silu_mul: scalar::silu_mul,
            gemm_i8: scalar::gemm_i8,
            topk: topk::topk,
            f64_math: scalar_f64::SCALAR_MATH_F64,
        })
    })
}

/// f16 bits → f32.
#[inline]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Packs the columns `[col0, col0 + cols)` (`cols ≤ 16`) of dense `b` (`k` rows, stride `ldb`)
/// into a zero-padded `[k, 16]` panel held in a thread-local buffer, and calls `f` with it.
///
/// # Safety
/// `b` must be readable at `kk * ldb + col0 + j` for `kk < k`, `j < cols`.
pub(crate) unsafe fn with_packed_tail<R>(
    k: usize,
    b: *const f32,
    ldb: usize,
    col0: usize,
    cols: usize,
    f: impl FnOnce(*const f32) -> R,
) -> R {
    use std::cell::RefCell;
    thread_local! {
        static BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        // A re-entrant call (not possible from the kernels) would get a fresh buffer.
        let mut own;
        let mut guard = buf.try_borrow_mut();
        let v: &mut Vec<f32> = match guard.as_mut() {
            Ok(g) => g,
            Err(_) => {
                own = Vec::new();
                &mut own
            }
        };
        v.clear();
        v.resize(k * PANEL, 0.0);
        for kk in 0..k {
            for j in 0..cols {
                // SAFETY: the caller guarantees these elements are readable.
                v[kk * PANEL + j] = unsafe { *b.add(kk * ldb + col0 + j) };
            }
        }
        f(v.as_ptr())
    })
}

/// Exp's range reduction and polynomial constants (Cephes `expf`).
pub(crate) mod expc {
    pub const HI: f32 = 88.8;
    pub const LO: f32 = -104.0;
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    pub const C1: f32 = 0.693_359_4;
    pub const C2: f32 = -2.121_944_4e-4;
    pub const P0: f32 = 1.987_569_1e-4;
    pub const P1: f32 = 1.398_199_9e-3;
    pub const P2: f32 = 8.333_452e-3;
    pub const P3: f32 = 4.166_579_6e-2;
    pub const P4: f32 = 1.666_666_5e-1;
    pub const P5: f32 = 0.5;
}

/// Tanh's small-argument polynomial (Cephes `tanhf`), used for `|x| < TANH_SMALL`.
pub(crate) mod tanhc {
    pub const SMALL: f32 = 0.625;
    pub const T0: f32 = -5.704_988_7e-3;
    pub const T1: f32 = 2.063_909e-2;
    pub const T2: f32 = -5.373_971_6e-2;
    pub const T3: f32 = 1.333_144_2e-1;
    pub const T4: f32 = -0.333_332_8;
}

/// Erf constants: Taylor coefficients of `erf(x)/x` in `x²` for `|x| < 1`, and
/// Abramowitz–Stegun 7.1.26 for `|x| ≥ 1`.
pub(crate) mod erfc {
    /// `E[n] = 2/√π · (−1)ⁿ / (n! (2n+1))`, n = 0..=11.
    pub const E: [f32; 12] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        -0.376_126_4,
        0.112_837_92,
        -0.026_866_17,
        0.005_223_977,
        -8.548_327e-4,
        1.205_533e-4,
        -1.492_516e-5,
        1.646_28e-6,
        -1.636_6e-7,
        1.480_5e-8,
        -1.229e-9,
    ];
    pub const P: f32 = 0.327_591_1;
    pub const A1: f32 = 0.254_829_6;
    pub const A2: f32 = -0.284_496_74;
    pub const A3: f32 = 1.421_413_8;
    pub const A4: f32 = -1.453_152;
    pub const A5: f32 = 1.061_405_4;
}

/// Runs `f` with a thread-local scratch of at least `len` floats (the attention row's scores).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|buf| match buf.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        // A re-entrant call (not possible from the kernels) gets a fresh buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}
