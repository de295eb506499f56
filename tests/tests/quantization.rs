//! Measured effect of `quantize-weights` and `prepack-weights` on the tiny HF fixture models
//! (`tests/fixtures/hf/{llama,mistral,qwen2,qwen3,gemma,phi3,gpt2}`): `forward` runs through
//! the reference interpreter before and after the pass on the same token ids, and the logits
//! are compared. `cargo test -p ferrumc-tests --test quantization -- --nocapture` prints the
//! table (max |Δlogit|, that relative to max |logit|, argmax agreement over all positions).
//!
//! Bounds asserted per scheme (measured worst case on the fixtures, with headroom). The
//! fixtures are tiny random-weight models (hidden 64, std 0.2) with near-uniform logits, which
//! amplify weight error far more than trained models do; measured worst cases: q8_0 5.4% /
//! 87.5% agreement, int8 4.3% / 87.5%, q4_0 81% / 43.8%, int4:32 80% / 37.5%.
//! * `q8_0`, `int8`: max |Δlogit| ≤ 8% of max |logit|, argmax agreement ≥ 80%;
//! * `q4_0`, `int4:32`: max |Δlogit| ≤ 100% of max |logit|, argmax agreement ≥ 25% (a
//!   regression guard only: 4-bit weights on these fixtures are close to noise);
//! * `prepack-weights` (exact rewrite up to summation order): rtol 1e-5 (|Δ| ≤ 1e-5·max|logit|),
//!   argmax agreement 100%.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Module, Tensor};
use ferrumc_passes::{PassManager, PassOptions, QuantScheme};
use ferrumc_tests::models::load;
use ferrumc_tests::repo_root;
use std::path::Path;

const ARCHS: [&str; 7] = ["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2"];
const BATCH: usize = 2;
const SEQ: usize = 8;

fn forward(m: &Module, dir: &Path, vocab: usize) -> Tensor {
    let ids: Vec<i64> = (0..BATCH * SEQ).map(|i| ((i * 37 + 5) % vocab) as i64).collect();
    let pos: Vec<i64> = (0..BATCH * SEQ).map(|i| (i % SEQ) as i64).collect();
    let inputs = vec![
        ("input_ids".to_string(), Tensor::from_i64(DType::I64, vec![BATCH, SEQ], ids).unwrap()),
        ("position_ids".to_string(), Tensor::from_i64(DType::I64, vec![BATCH, SEQ], pos).unwrap()),
    ];
    let f = m.function("forward").unwrap();
    let inputs: Vec<_> = inputs.into_iter().filter(|(n, _)| f.params().iter().any(|(p, _)| p == n)).collect();
    let out = run_function(m, "forward", &inputs, &FileWeights::new(dir)).unwrap();
    out.into_iter().next().unwrap().1
}

/// (max |Δ|, max |logit| of the reference, fraction of positions with the same argmax).
fn compare(a: &Tensor, b: &Tensor) -> (f64, f64, f64) {
    assert_eq!(a.shape, b.shape);
    let vocab = *a.shape.last().unwrap();
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let max_diff = av.iter().zip(&bv).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let max_abs = av.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let argmax = |row: &[f64]| row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
    let rows = av.len() / vocab;
    let same = (0..rows).filter(|&r| argmax(&av[r * vocab..][..vocab]) == argmax(&bv[r * vocab..][..vocab])).count();
    (max_diff, max_abs, same as f64 / rows as f64)
}

/// Run `pass` on every fixture and return (arch, max |Δ|, relative, argmax agreement).
fn measure(pass: &str, scheme: Option<QuantScheme>) -> Vec<(String, f64, f64, f64)> {
    let mut rows = Vec::new();
    for arch in ARCHS {
        let dir = repo_root().join("tests/fixtures/hf").join(arch);
        let (m, base) = load(&dir).unwrap();
        let vocab = m.function("forward").unwrap().outputs()[0].1;
        let vocab = m.function("forward").unwrap().ty(vocab).shape.last().and_then(|d| d.as_fixed()).unwrap() as usize;
        let before = forward(&m, &base, vocab);
        let mut q = m.clone();
        let options = PassOptions { quantize: scheme, ..PassOptions::default() };
        let records = PassManager::new(&[pass], options).unwrap().run(&mut q).unwrap();
        assert!(records.iter().any(|r| r.result.applied), "{arch}: {pass} did not apply");
        let after = forward(&q, &base, vocab);
        let (d, max_abs, agree) = compare(&before, &after);
        let label = scheme.map_or(pass.to_string(), |s| s.to_string());
        println!(
            "{label:>8} {arch:>8}: max|Δlogit| {d:.3e} ({:.3}% of max|logit| {max_abs:.3}), argmax agreement {:.1}%",
            100.0 * d / max_abs,
            100.0 * agree
        );
        rows.push((arch.to_string(), d, d / max_abs, agree));
    }
    rows
}

fn check(scheme: QuantScheme, max_rel: f64, min_agree: f64) {
    for (arch, _, rel, agree) in measure("quantize-weights", Some(scheme)) {
        assert!(rel <= max_rel, "{scheme} {arch}: relative max |Δlogit| {rel:.4} above {max_rel}");
        assert!(agree >= min_agree, "{scheme} {arch}: argmax agreement {agree:.3} below {min_agree}");
        // The pass must have changed something measurable (the comparison can fail).
        assert!(rel > 0.0, "{scheme} {arch}: logits unchanged, nothing was quantized");
    }
}

#[test]
fn q8_0_within_bound() {
    check(QuantScheme::Q8_0, 0.08, 0.8);
}

#[test]
fn int8_within_bound() {
    check(QuantScheme::Int8PerChannel, 0.08, 0.8);
}

#[test]
fn q4_0_within_bound() {
    check(QuantScheme::Q4_0, 1.0, 0.25);
}

#[test]
fn int4_within_bound() {
    check(QuantScheme::Int4 { group_size: 32 }, 1.0, 0.25);
}

#[test]
fn prepack_is_exact() {
    for (arch, _, rel, agree) in measure("prepack-weights", None) {
        assert!(rel <= 1e-5, "prepack {arch}: relative max |Δlogit| {rel:.3e}");
        assert_eq!(agree, 1.0, "prepack {arch}");
    }
}
