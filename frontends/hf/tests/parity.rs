//! Parity with transformers, on fixtures under `tests/fixtures/hf/<arch>/` (produced
//! separately; the test passes vacuously, saying so, when there are none).
//!
//! Layout read: `config.json` + safetensors checkpoint; `forward`: `input_ids.npy`,
//! optional `position_ids.npy` (default `arange(seq)` per row), expected `logits.npy`.
//! `decode/` (optional): one `<input>.npy` per `decode` input (`input_ids`,
//! `position_ids`, `past_key_<l>`, `past_value_<l>`) and `<output>.npy` for whichever
//! outputs (`logits`, `present_key_<l>`, …) should be compared.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Module, Tensor};
use std::path::{Path, PathBuf};

/// `FERRUMC_HF_FIXTURES` overrides the default `tests/fixtures/hf`.
fn fixtures_root() -> PathBuf {
    match std::env::var_os("FERRUMC_HF_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf"),
    }
}

fn as_i64(t: Tensor) -> Tensor {
    if t.dtype == DType::I64 {
        t
    } else {
        let v = t.to_i64_vec();
        Tensor::from_i64(DType::I64, t.shape.clone(), v).unwrap()
    }
}

fn compare(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1.0);
    let diff = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff <= 1e-4 * scale, "{what}: max abs diff {diff} (scale {scale})");
    diff
}

/// Run `func` with inputs from `dir`; compare every output that has an `.npy` there.
/// A folder lacking one of the inputs is skipped (returns 0), saying so.
fn run_dir(m: &Module, model_dir: &Path, dir: &Path, func: &str) -> usize {
    let f = m.function(func).unwrap();
    let missing: Vec<String> = f
        .params()
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n != "position_ids" && !dir.join(format!("{n}.npy")).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!("{}: no {} for `{func}`; skipped", dir.display(), missing.join(", "));
        return 0;
    }
    let mut inputs = Vec::new();
    let mut seq_shape = None;
    for (name, _) in f.params() {
        let p = dir.join(format!("{name}.npy"));
        let t = if p.exists() {
            read_npy_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        } else if name == "position_ids" {
            let shape: Vec<usize> = seq_shape.clone().expect("input_ids first");
            let (b, s) = (shape[0], shape[1]);
            Tensor::from_i64(DType::I64, shape, (0..b).flat_map(|_| 0..s as i64).collect()).unwrap()
        } else {
            unreachable!("checked above")
        };
        let t = if name.ends_with("_ids") { as_i64(t) } else { t };
        if name == "input_ids" {
            seq_shape = Some(t.shape.clone());
        }
        inputs.push((name.clone(), t));
    }
    let out = run_function(m, func, &inputs, &FileWeights::new(model_dir)).unwrap_or_else(|e| panic!("{func}: {e}"));
    let mut compared = 0;
    for (name, t) in &out {
        let p = dir.join(format!("{name}.npy"));
        if p.exists() {
            let want = read_npy_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let diff = compare(&format!("{} {func} {name}", dir.display()), t, &want);
            eprintln!("{}: {func} {name} matches (max abs diff {diff:.2e})", dir.display());
            compared += 1;
        }
    }
    compared
}

#[test]
fn transformers_parity_fixtures() {
    let root = fixtures_root();
    let Ok(entries) = std::fs::read_dir(&root) else {
        eprintln!("no HF parity fixtures at {}; skipped", root.display());
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        if !dir.join("config.json").exists() {
            continue;
        }
        let (m, _) = ferrumc_hf::import_hf(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        ferrumc_ir::verify::verify_module(&m).unwrap();
        if dir.join("input_ids.npy").exists() {
            assert!(run_dir(&m, &dir, &dir, "forward") > 0, "{}: no logits.npy", dir.display());
        }
        let dec = dir.join("decode");
        if dec.is_dir() {
            run_dir(&m, &dir, &dec, "decode");
        }
    }
}
