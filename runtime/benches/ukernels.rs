//! Single-threaded GFLOP/s of the GEMM micro-kernels (`sgemm_packed`, `sgemm_nt`, `gemm_q8_0`,
//! `gemm_q4_0`) per implementation tier on the SmolLM2-135M linear shapes
//! (`cargo bench -p ferrumc-runtime --bench ukernels [-- words…]`, words filtering
//! "kernel tier"). Each cell is the median of repeated
//! runs (≥ 3, ~0.15 s in all), plus the best run (robust to other
//! processes on a shared machine); the scalar tier skips problems above 0.5 GFLOP.

use ferrumc_runtime::abi::GemmFn;
use ferrumc_runtime::ukernels::{available_tiers, table_for, Tier, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use std::time::Instant;

const MS: [usize; 3] = [1, 16, 128];
/// `(K, N)` of each problem; `(576, 16)` is one 16-column call, the width of a rotary tile
/// (one quarter-head of 16 rotation pairs) in the k projection's kernel.
const SHAPES: [(usize, usize); 6] = [(576, 576), (576, 192), (576, 16), (576, 1536), (1536, 576), (576, 49152)];

/// Deterministic filler in [-1, 1).
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Random-looking quantized weights of `n · k/32` blocks (scale 0.01 as f16).
fn quant(n: usize, k: usize, block: usize) -> Vec<u8> {
    let raw = fill(n * k / QK * block / 4 + 1, 7);
    let mut v: Vec<u8> = raw.iter().flat_map(|x| x.to_bits().to_le_bytes()).take(n * k / QK * block).collect();
    let scale = 0x211Eu16.to_le_bytes(); // ≈ 0.01
    for b in v.chunks_mut(block) {
        b[..2].copy_from_slice(&scale);
    }
    v
}

/// (median, min) seconds of repeated runs.
#[allow(clippy::too_many_arguments)]
fn time(f: GemmFn, m: usize, n: usize, k: usize, a: &[f32], b: &[u8], ldb: usize, c: &mut [f32]) -> (f64, f64) {
    let run = |c: &mut [f32]| {
        let t = Instant::now();
        // SAFETY: buffers are sized for the shapes (a: m·k, c: m·n, b: the weight layout).
        unsafe {
            f(m as u64, n as u64, k as u64, a.as_ptr(), k as u64, b.as_ptr(), ldb as u64, c.as_mut_ptr(), n as u64, 0)
        };
        t.elapsed().as_secs_f64()
    };
    let first = run(c);
    let reps = ((0.15 / first.max(1e-9)) as usize).clamp(3, 200);
    let mut ts: Vec<f64> = (0..reps).map(|_| run(c)).collect();
    ts.sort_by(|x, y| x.total_cmp(y));
    (ts[reps / 2], ts[0])
}

fn main() {
    // Optional filters (e.g. `-- q8 avx512`): every word must occur in "kernel tier".
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let tiers = available_tiers();
    println!("ukernels bench (single thread, median); tiers: {:?}", tiers.iter().map(|t| t.name()).collect::<Vec<_>>());
    println!(
        "{:<14} {:>4} {:>5} {:>6} {:>8} {:>10} {:>10} {:>10}",
        "kernel", "M", "K", "N", "tier", "median µs", "GFLOP/s", "best GF/s"
    );
    for &(k, n) in &SHAPES {
        let panels = n.div_ceil(16);
        let packed: Vec<u8> = fill(panels * k * 16, 3).iter().flat_map(|x| x.to_le_bytes()).collect();
        let rows: Vec<u8> = fill(n * k, 3).iter().flat_map(|x| x.to_le_bytes()).collect();
        let q8 = quant(n, k, Q8_0_BLOCK_BYTES);
        let q4 = quant(n, k, Q4_0_BLOCK_BYTES);
        for &m in &MS {
            let a = fill(m * k, 5);
            let mut c = vec![0.0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            for &tier in &tiers {
                if tier == Tier::Scalar && flops > 5e8 {
                    continue;
                }
                let Some(t) = table_for(tier) else { continue };
                for (name, f, b) in [
                    ("sgemm_packed", t.sgemm_packed, &packed),
                    ("sgemm_nt", t.sgemm_nt, &rows),
                    ("gemm_q8_0", t.gemm_q8_0, &q8),
                    ("gemm_q4_0", t.gemm_q4_0, &q4),
                ] {
                    let label = format!("{name} {}", tier.name());
                    if !words.iter().all(|w| label.contains(w.as_str())) {
                        continue;
                    }
                    let ldb = if name == "sgemm_nt" { k } else { n };
                    let (s, best) = time(f, m, n, k, &a, b, ldb, &mut c);
                    println!(
                        "{:<14} {:>4} {:>5} {:>6} {:>8} {:>10.1} {:>10.2} {:>10.2}",
                        name,
                        m,
                        k,
                        n,
                        tier.name(),
                        s * 1e6,
                        flops / s / 1e9,
                        flops / best / 1e9
                    );
                }
            }
        }
    }
}
