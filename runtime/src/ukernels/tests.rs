//! Tests of every tier's micro-kernels against naive f64 references (random shapes with
//! tails, strides, accumulate on/off) and of the math helpers against f64 `exp`/`tanh` and an
//! f64 `erf` (series + continued fraction) over a sweep including specials.

use super::*;
use crate::abi::GemmFn;

/// xorshift64*: deterministic test data without dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

const MS: [usize; 8] = [1, 2, 3, 7, 13, 16, 29, 33];
const NS: [usize; 6] = [1, 15, 16, 17, 64, 100];
const KS: [usize; 5] = [1, 5, 32, 64, 576];
const QKS: [usize; 3] = [32, 64, 576];
const SENTINEL: f32 = 12345.0;

/// The weight formats a GEMM entry reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Dense,
    /// `w: [n, k]` rows at stride `ldb` (`sgemm_nt`).
    Nt,
    Packed,
    Q8,
    Q4,
}

/// Encodes `w: [n, k]` (row-major, the logical weight; for dense/packed it is `bᵀ`) into the
/// entry's format, and returns the bytes plus the exact f64 values the kernel should see.
fn encode(kind: Kind, w: &[f32], n: usize, k: usize, ldb: usize) -> (Vec<u8>, Vec<f64>) {
    let mut exact = vec![0.0f64; n * k];
    let mut bytes = Vec::new();
    match kind {
        Kind::Dense => {
            let mut b = vec![f32::NAN; k * ldb];
            for j in 0..n {
                for kk in 0..k {
                    b[kk * ldb + j] = w[j * k + kk];
                    exact[j * k + kk] = f64::from(w[j * k + kk]);
                }
            }
            // Columns past n are NaN: a kernel that reads them poisons the result.
            bytes = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        Kind::Nt => {
            let mut b = vec![f32::NAN; n * ldb];
            for j in 0..n {
                for kk in 0..k {
                    b[j * ldb + kk] = w[j * k + kk];
                    exact[j * k + kk] = f64::from(w[j * k + kk]);
                }
            }
            // Row padding is NaN: a kernel that reads past `k` poisons the result.
            bytes = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        Kind::Packed => {
            let panels = n.div_ceil(PANEL);
            let mut b = vec![0.0f32; panels * k * PANEL];
            for j in 0..n {
                for kk in 0..k {
                    b[(j / PANEL) * k * PANEL + kk * PANEL + j % PANEL] = w[j * k + kk];
                    exact[j * k + kk] = f64::from(w[j * k + kk]);
                }
            }
            bytes = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        Kind::Q8 | Kind::Q4 => {
            for j in 0..n {
                for blk in 0..k / QK {
                    let vals = &w[j * k + blk * QK..j * k + (blk + 1) * QK];
                    let amax = vals.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let d = if kind == Kind::Q8 { amax / 127.0 } else { amax / 8.0 };
                    let dh = half::f16::from_f32(d);
                    let dd = f64::from(dh.to_f32());
                    let id = if d == 0.0 { 0.0 } else { 1.0 / dh.to_f32() };
                    bytes.extend_from_slice(&dh.to_bits().to_le_bytes());
                    if kind == Kind::Q8 {
                        for (t, v) in vals.iter().enumerate() {
                            let q = (v * id).round().clamp(-127.0, 127.0) as i8;
                            bytes.push(q as u8);
                            exact[j * k + blk * QK + t] = dd * f64::from(q);
                        }
                    } else {
                        let q: Vec<u8> = vals.iter().map(|v| ((v * id).round() + 8.0).clamp(0.0, 15.0) as u8).collect();
                        for t in 0..16 {
                            bytes.push(q[t] | (q[t + 16] << 4));
                        }
                        for t in 0..QK {
                            exact[j * k + blk * QK + t] = dd * (f64::from(q[t]) - 8.0);
                        }
                    }
                }
            }
        }
    }
    (bytes, exact)
}

/// Runs `f` on one random problem and checks it against the f64 reference.
fn check_one(f: GemmFn, kind: Kind, m: usize, n: usize, k: usize, accumulate: bool, rng: &mut Rng, what: &str) {
    let (lda, ldb, ldc) = (k + 3, if kind == Kind::Nt { k + 5 } else { n + 5 }, n + 2);
    let a: Vec<f32> = (0..m * lda).map(|_| rng.f()).collect();
    let w: Vec<f32> = (0..n * k).map(|_| rng.f()).collect();
    let (b, exact) = encode(kind, &w, n, k, ldb);
    let mut c: Vec<f32> = (0..m * ldc).map(|i| if i % ldc < n { rng.f() } else { SENTINEL }).collect();
    let c0 = c.clone();
    // SAFETY: all buffers are sized for the shapes passed.
    unsafe {
        f(
            m as u64,
            n as u64,
            k as u64,
            a.as_ptr(),
            lda as u64,
            b.as_ptr(),
            ldb as u64,
            c.as_mut_ptr(),
            ldc as u64,
            u32::from(accumulate),
        )
    };
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                assert_eq!(got, SENTINEL, "{what}: wrote past n at ({i},{j}) m={m} n={n} k={k}");
                continue;
            }
            let mut want = if accumulate { f64::from(c0[i * ldc + j]) } else { 0.0 };
            let mut mag = want.abs();
            for kk in 0..k {
                let t = f64::from(a[i * lda + kk]) * exact[j * k + kk];
                want += t;
                mag += t.abs();
            }
            let err = (f64::from(got) - want).abs();
            assert!(
                err <= 1e-5 * mag + 1e-30,
                "{what} {kind:?}: c[{i},{j}] = {got}, want {want} (err {err:e}, |terms| {mag:e}) m={m} n={n} k={k} acc={accumulate}"
            );
        }
    }
}

fn check_entry(f: GemmFn, kind: Kind, what: &str) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let ks: &[usize] = if matches!(kind, Kind::Q8 | Kind::Q4) { &QKS } else { &KS };
    let mut count = 0;
    for &m in &MS {
        for &n in &NS {
            for &k in ks {
                check_one(f, kind, m, n, k, count % 2 == 1, &mut rng, what);
                count += 1;
            }
        }
    }
    if kind == Kind::Nt {
        // From 64 rows on the AVX-512 tier packs `w` first: cover that path with tails.
        for (m, n, k) in [(64usize, 17usize, 5usize), (70, 40, 64), (129, 33, 100)] {
            check_one(f, kind, m, n, k, m % 2 == 0, &mut rng, what);
        }
    }
    // Degenerate shapes leave `c` alone (m or n = 0) or write zeros / keep `c` (k = 0).
    check_one(f, kind, 0, 17, 32, false, &mut rng, what);
    check_one(f, kind, 3, 0, 32, false, &mut rng, what);
    if !matches!(kind, Kind::Q8 | Kind::Q4) {
        check_one(f, kind, 3, 17, 0, false, &mut rng, what);
        check_one(f, kind, 3, 17, 0, true, &mut rng, what);
    }
}

fn check_table(t: &RuntimeFnTable, what: &str) {
    assert_eq!(t.version, FN_TABLE_VERSION);
    check_entry(t.sgemm, Kind::Dense, what);
    check_entry(t.sgemm_packed, Kind::Packed, what);
    check_entry(t.sgemm_nt, Kind::Nt, what);
    check_entry(t.gemm_q8_0, Kind::Q8, what);
    check_entry(t.gemm_q4_0, Kind::Q4, what);
}

#[test]
fn scalar_gemms_match_f64() {
    check_entry(scalar::sgemm, Kind::Dense, "scalar");
    check_entry(scalar::sgemm_packed, Kind::Packed, "scalar");
    check_entry(scalar::gemm_q8_0, Kind::Q8, "scalar");
    check_entry(scalar::gemm_q4_0, Kind::Q4, "scalar");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_gemms_match_f64() {
    if !Tier::Avx2.is_supported() {
        eprintln!("avx2 tier not supported here; skipped");
        return;
    }
    check_entry(avx2::sgemm, Kind::Dense, "avx2");
    check_entry(avx2::sgemm_packed, Kind::Packed, "avx2");
    check_entry(avx2::gemm_q8_0, Kind::Q8, "avx2");
    check_entry(avx2::gemm_q4_0, Kind::Q4, "avx2");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_gemms_match_f64() {
    if !Tier::Avx512.is_supported() {
        eprintln!("avx512 tier not supported here; skipped");
        return;
    }
    check_entry(avx512::sgemm, Kind::Dense, "avx512");
    check_entry(avx512::sgemm_packed, Kind::Packed, "avx512");
    check_entry(avx512::gemm_q8_0, Kind::Q8, "avx512");
    check_entry(avx512::gemm_q4_0, Kind::Q4, "avx512");
}

#[test]
fn fn_table_is_the_best_tier_and_correct() {
    let t = fn_table();
    let best = table_for(best_tier()).expect("best tier is supported");
    assert_eq!(t.sgemm_packed as usize, best.sgemm_packed as usize);
    assert_eq!(t.erf as usize, best.erf as usize);
    check_table(&t, "fn_table");
    assert!(table_for(Tier::Scalar).is_some());
    assert!(available_tiers().contains(&Tier::Scalar));
}

/// f64 erf: Maclaurin series for |x| < 3, continued fraction for erfc above.
fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 3.0 {
        let (mut term, mut sum, mut n) = (ax, ax, 0.0f64);
        // term_n = (-1)^n x^(2n+1) / n!; sum += term_n / (2n+1)
        loop {
            n += 1.0;
            term *= -ax * ax / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        1.0 - erfc_cf(ax)
    };
    r.copysign(x)
}

fn erfc_cf(x: f64) -> f64 {
    let mut t = x;
    for i in (1..=200).rev() {
        t = x + (f64::from(i) / 2.0) / t;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * t)
}

#[test]
fn erf_reference_is_consistent() {
    // The two branches of the reference agree where both converge.
    for x in [2.5f64, 2.9, 3.0] {
        let series = {
            let (mut term, mut sum, mut n) = (x, x, 0.0f64);
            while n < 200.0 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        assert!((series - (1.0 - erfc_cf(x))).abs() < 1e-13, "x={x}");
    }
    assert!((erf_f64(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
    assert!((erf_f64(-1.0) + 0.842_700_792_949_714_9).abs() < 1e-15);
}

fn sweep() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1e-45,
        -1e-45,
        1e-40,
        -1e-40,
        1.17e-38,
        1e-30,
        -1e-20,
        1e-7,
        0.625,
        -0.625,
        1.0,
        -1.0,
        3.0,
        4.0,
        9.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        88.72,
        88.73,
        89.0,
        -87.0,
        -87.4,
        -100.0,
        -103.9,
        -104.0,
        -200.0,
        1e30,
        -1e30,
    ];
    let mut rng = Rng(42);
    for _ in 0..200_000 {
        v.push(rng.f() * 110.0);
        v.push(rng.f() * 6.0);
        v.push(rng.f() * 0.7);
    }
    // Every float in [0.5, 2) region and around the branch points, one in 64.
    let mut b = 0x3E00_0000u32;
    while b < 0x4100_0000 {
        v.push(f32::from_bits(b));
        v.push(-f32::from_bits(b));
        b += 64;
    }
    v
}

/// Max relative error of `f` vs `reference` over the sweep, where the reference's result is
/// a normal f32; results in the denormal range must be within 1.5 denormal ulps.
fn max_rel_err(f: UnaryArrayFnAlias, reference: fn(f64) -> f64, name: &str, tier: &str) -> f64 {
    let xs = sweep();
    let mut ys = vec![0.0f32; xs.len()];
    // SAFETY: both buffers hold xs.len() floats.
    unsafe { f(xs.as_ptr(), ys.as_mut_ptr(), xs.len() as u64) };
    // In place, odd length (exercises the tail).
    let mut inplace = xs[..xs.len() - 3].to_vec();
    // SAFETY: as above.
    unsafe { f(inplace.as_ptr(), inplace.as_mut_ptr(), inplace.len() as u64) };
    assert_eq!(
        inplace[..].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        ys[..inplace.len()].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let mut worst = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(&ys) {
        let want = reference(f64::from(x));
        let y = f64::from(y);
        if want.abs() < f64::from(f32::MIN_POSITIVE) {
            assert!((y - want).abs() <= 1.5 * 1.401e-45, "{tier} {name}({x:e}) = {y:e}, want {want:e}");
            continue;
        }
        if want.abs() > f64::from(f32::MAX) {
            assert_eq!(y, f64::INFINITY.copysign(want), "{tier} {name}({x:e})");
            continue;
        }
        let rel = (y - want).abs() / want.abs();
        if rel > worst.0 {
            worst = (rel, x);
        }
    }
    assert!(worst.0 <= 2e-6, "{tier} {name}: max relative error {:e} at x = {:e}", worst.0, worst.1);
    // Specials.
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0];
    let mut out = [0.0f32; 4];
    // SAFETY: 4 floats each.
    unsafe { f(specials.as_ptr(), out.as_mut_ptr(), 4) };
    assert!(out[0].is_nan(), "{tier} {name}(NaN) = {}", out[0]);
    for i in 1..4 {
        assert_eq!(f64::from(out[i]), reference(f64::from(specials[i])), "{tier} {name}({})", specials[i]);
    }
    eprintln!("{tier} {name}: max relative error {:.3e} at x = {:e}", worst.0, worst.1);
    worst.0
}

type UnaryArrayFnAlias = crate::abi::UnaryArrayFn;

fn check_math(exp: UnaryArrayFnAlias, tanh: UnaryArrayFnAlias, erf: UnaryArrayFnAlias, tier: &str) {
    max_rel_err(exp, f64::exp, "exp", tier);
    max_rel_err(tanh, f64::tanh, "tanh", tier);
    max_rel_err(erf, erf_f64, "erf", tier);
}

#[test]
fn scalar_math_matches_f64() {
    check_math(scalar::exp, scalar::tanh, scalar::erf, "scalar");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_math_matches_f64() {
    if Tier::Avx2.is_supported() {
        check_math(avx2::exp, avx2::tanh, avx2::erf, "avx2");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_math_matches_f64() {
    if Tier::Avx512.is_supported() {
        check_math(avx512::exp, avx512::tanh, avx512::erf, "avx512");
    }
}

/// Every tier's `attention_row_masked` against an f64 reference: additive masks with finite
/// values and `−∞` (hidden keys, including every key of a row, which gives zeros), and byte
/// (bool) masks that keep the keys where nonzero, over key counts with 4- and 16-wide tails.
#[test]
fn masked_attention_row_matches_f64_in_every_tier() {
    let mut rng = Rng(11);
    for tier in available_tiers() {
        let Some(t) = table_for(tier) else { continue };
        for &keys in &[1usize, 3, 4, 17, 129] {
            for &(dk, dv) in &[(64usize, 64usize), (5, 7), (80, 200)] {
                for (hide_all, bytes) in [(false, false), (true, false), (false, true), (true, true)] {
                    let q: Vec<f32> = (0..dk).map(|_| rng.f()).collect();
                    let k: Vec<f32> = (0..keys * dk).map(|_| rng.f()).collect();
                    let v: Vec<f32> = (0..keys * dv).map(|_| rng.f()).collect();
                    // A byte mask keeps key j where nonzero: the additive mask 0 / −∞.
                    let keep: Vec<u8> =
                        (0..keys).map(|j| u8::from(!hide_all && j % 3 != 1) * (1 + j as u8 % 3)).collect();
                    let mask: Vec<f32> = keep
                        .iter()
                        .map(|&kp| match (kp, bytes) {
                            (0, _) => f32::NEG_INFINITY,
                            (_, true) => 0.0,
                            (_, false) => 2.0 * rng.f(),
                        })
                        .collect();
                    let (ptr, kind) = if bytes {
                        (keep.as_ptr(), crate::abi::MASK_KEEP)
                    } else {
                        (mask.as_ptr().cast::<u8>(), crate::abi::MASK_ADDITIVE)
                    };
                    let mut o = vec![SENTINEL; dv + 1];
                    // SAFETY: the buffers have the sizes the contract names.
                    unsafe {
                        (t.attention_row_masked)(
                            q.as_ptr(),
                            k.as_ptr(),
                            v.as_ptr(),
                            ptr,
                            kind,
                            keys as u64,
                            dk as u64,
                            dv as u64,
                            0.5,
                            o.as_mut_ptr(),
                        )
                    };
                    let s: Vec<f64> = (0..keys)
                        .map(|j| {
                            let dot = (0..dk).map(|d| q[d] as f64 * k[j * dk + d] as f64).sum::<f64>();
                            0.5 * dot + mask[j] as f64
                        })
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> =
                        s.iter().map(|x| if max == f64::NEG_INFINITY { 0.0 } else { (x - max).exp() }).collect();
                    let sum: f64 = p.iter().sum();
                    for e in 0..dv {
                        let want = if sum > 0.0 {
                            (0..keys).map(|j| p[j] * v[j * dv + e] as f64).sum::<f64>() / sum
                        } else {
                            0.0
                        };
                        let got = o[e] as f64;
                        assert!(
                            (got - want).abs() <= 2e-5 * (1.0 + want.abs()),
                            "{} keys {keys} dk {dk} dv {dv} hide_all {hide_all} bytes {bytes} col {e}: {got} vs {want}",
                            tier.name()
                        );
                    }
                    assert_eq!(o[dv], SENTINEL, "{}: wrote past dv", tier.name());
                }
            }
        }
    }
}

/// Every tier's `attention_row` against an f64 softmax-attention reference, over key counts
/// with and without 4- and 16-wide tails (0 included), head sizes with lane tails and above
/// the 128-column pass, and large score ranges (a scale of 8 makes the softmax peaky).
#[test]
fn attention_row_matches_f64_in_every_tier() {
    let mut rng = Rng(7);
    for tier in available_tiers() {
        let Some(t) = table_for(tier) else { continue };
        for &keys in &[0usize, 1, 3, 4, 17, 129, 300] {
            for &(dk, dv) in &[(64usize, 64usize), (5, 7), (16, 130), (80, 200)] {
                for &scale in &[0.125f32, 8.0] {
                    let q: Vec<f32> = (0..dk).map(|_| rng.f()).collect();
                    let k: Vec<f32> = (0..keys * dk).map(|_| rng.f()).collect();
                    let v: Vec<f32> = (0..keys * dv).map(|_| rng.f()).collect();
                    let mut o = vec![SENTINEL; dv + 1];
                    // SAFETY: the buffers have the sizes the contract names.
                    unsafe {
                        (t.attention_row)(
                            q.as_ptr(),
                            k.as_ptr(),
                            v.as_ptr(),
                            keys as u64,
                            dk as u64,
                            dv as u64,
                            scale,
                            o.as_mut_ptr(),
                        )
                    };
                    let s: Vec<f64> = (0..keys)
                        .map(|j| scale as f64 * (0..dk).map(|d| q[d] as f64 * k[j * dk + d] as f64).sum::<f64>())
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = p.iter().sum();
                    for e in 0..dv {
                        let want = if keys == 0 {
                            0.0
                        } else {
                            (0..keys).map(|j| p[j] * v[j * dv + e] as f64).sum::<f64>() / sum
                        };
                        let got = o[e] as f64;
                        assert!(
                            (got - want).abs() <= 2e-5 * (1.0 + want.abs()),
                            "{} keys {keys} dk {dk} dv {dv} scale {scale} col {e}: {got} vs {want}",
                            tier.name()
                        );
                    }
                    assert_eq!(o[dv], SENTINEL, "{}: wrote past dv", tier.name());
                }
            }
        }
    }
}

/// Every tier's `silu_mul` against f64 `x / (1 + e⁻ˣ) · z`: lengths with and without 8/16-lane
/// tails, in place over `x` and over `z`, large arguments of both signs, nothing written past
/// `n`, and NaN in → NaN out.
#[test]
fn silu_mul_matches_f64_in_every_tier() {
    let mut rng = Rng(11);
    for tier in available_tiers() {
        let Some(t) = table_for(tier) else { continue };
        for &n in &[0usize, 1, 7, 8, 15, 16, 17, 64, 100] {
            let mut x: Vec<f32> = (0..n).map(|_| rng.f() * 12.0).collect();
            if n > 3 {
                x[1] = 95.0;
                x[2] = -95.0;
                x[3] = -1e30;
            }
            let z: Vec<f32> = (0..n).map(|_| rng.f() * 3.0).collect();
            let mut y = vec![SENTINEL; n + 1];
            // SAFETY: `x`, `z` hold `n` floats, `y` `n + 1`.
            unsafe { (t.silu_mul)(x.as_ptr(), z.as_ptr(), y.as_mut_ptr(), n as u64) };
            for i in 0..n {
                let (xv, zv) = (f64::from(x[i]), f64::from(z[i]));
                let want = xv / (1.0 + (-xv).exp()) * zv;
                let got = f64::from(y[i]);
                assert!(
                    (got - want).abs() <= 2e-6 * want.abs() + 1e-7,
                    "{} n {n} i {i}: silu_mul({xv}, {zv}) = {got}, want {want}",
                    tier.name()
                );
            }
            assert_eq!(y[n], SENTINEL, "{}: wrote past n", tier.name());
            // In place over either input gives the same bits.
            let (mut over_x, mut over_z) = (x.clone(), z.clone());
            // SAFETY: as above; the contract allows `y` to alias `x` or `z`.
            unsafe {
                (t.silu_mul)(over_x.as_ptr(), z.as_ptr(), over_x.as_mut_ptr(), n as u64);
                (t.silu_mul)(x.as_ptr(), over_z.as_ptr(), over_z.as_mut_ptr(), n as u64);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&over_x), bits(&y[..n]), "{}: in place over x", tier.name());
            assert_eq!(bits(&over_z), bits(&y[..n]), "{}: in place over z", tier.name());
        }
        let (x, z) = ([f32::NAN, 1.0], [1.0f32, f32::NAN]);
        let mut y = [0.0f32; 2];
        // SAFETY: two floats each.
        unsafe { (t.silu_mul)(x.as_ptr(), z.as_ptr(), y.as_mut_ptr(), 2) };
        assert!(y[0].is_nan() && y[1].is_nan(), "{}: NaN in gives {y:?}", tier.name());
    }
}

/// Every tier's `gemm_i8` against f64 `Σ a·w · scale[j]`: shapes with tails, a padded weight
/// row stride and an `a`/`c` stride above the used width, accumulate on and off.
#[test]
fn gemm_i8_matches_f64_in_every_tier() {
    let mut rng = Rng(21);
    for tier in available_tiers() {
        let Some(t) = table_for(tier) else { continue };
        for &(m, n, k) in &[(1usize, 1usize, 1usize), (1, 17, 33), (3, 5, 64), (7, 40, 576), (16, 3, 9)] {
            for accumulate in [false, true] {
                let (lda, ldb, ldc) = (k + 2, k + 3, n + 1);
                let a: Vec<f32> = (0..m * lda).map(|_| rng.f()).collect();
                let w: Vec<i8> = (0..n * ldb).map(|_| (rng.next() >> 56) as u8 as i8).collect();
                let scale: Vec<f32> = (0..n).map(|_| rng.f() * 0.01).collect();
                let c0: Vec<f32> = (0..m * ldc).map(|_| rng.f()).collect();
                let mut c = c0.clone();
                // SAFETY: every buffer covers the strides and sizes passed.
                unsafe {
                    (t.gemm_i8)(
                        m as u64,
                        n as u64,
                        k as u64,
                        a.as_ptr(),
                        lda as u64,
                        w.as_ptr(),
                        ldb as u64,
                        c.as_mut_ptr(),
                        ldc as u64,
                        u32::from(accumulate),
                        scale.as_ptr(),
                    )
                };
                for i in 0..m {
                    for j in 0..ldc {
                        let got = f64::from(c[i * ldc + j]);
                        if j >= n {
                            assert_eq!(c[i * ldc + j], c0[i * ldc + j], "{}: wrote past n", tier.name());
                            continue;
                        }
                        let dot: f64 =
                            (0..k).map(|kk| f64::from(a[i * lda + kk]) * f64::from(w[j * ldb + kk])).sum::<f64>();
                        let base = if accumulate { f64::from(c0[i * ldc + j]) } else { 0.0 };
                        let want = base + dot * f64::from(scale[j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{} m {m} n {n} k {k} acc {accumulate} [{i}, {j}]: {got} vs {want}",
                            tier.name()
                        );
                    }
                }
            }
        }
    }
}
