//! An ONNX decoder as optimum exports it (`tests/fixtures/onnx_exports/optimum_llama/`, made by
//! `export_optimum.py` from the transformers fixture `tests/fixtures/hf/llama`) runs on the
//! reference interpreter and compiled at -O2 and -O3, and matches transformers' own outputs.
//!
//! That export is the form of most ONNX decoders on the Hugging Face Hub, and differs from
//! the dynamo exports the other fixtures use: `attention_mask` is typed
//! `[batch_size, past_sequence_length + sequence_length]` (a `dim_param` expression), the mask
//! and rotary tables are built from shapes through `expand(x, where(equal(shape, -1), 1,
//! shape))`, RMSNorm divides `1` by a `sqrt`, and the traced SDPA guards its softmax with
//! `where(isnan(p), 0, p)`. Each case feeds the stored inputs:
//! * `prefill`: batch 2, 6 tokens, empty cache, the second row left-padded by 2;
//! * `decode`: one token per row over transformers' cache after `prefill`.
//!
//! Compared: logits at the unpadded positions and every `present.*` at the unpadded key
//! positions (a padded query attends to nothing, so what it computes is not defined), with
//! max |diff| ≤ 1e-4. The compiled runs must also have fused every attention (`attention`
//! ops after -O2), so the mask-building graph is seen through rather than run as is.

use ferrumc_codegen::compile::{optimize_module, CompileOptions};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{Dim, Tensor};
use ferrumc_tests::compiled::{compile, run_compiled};
use std::path::{Path, PathBuf};

const TOLERANCE: f64 = 1e-4;

fn fixture() -> PathBuf {
    ferrumc_tests::repo_root().join("tests/fixtures/onnx_exports/optimum_llama")
}

/// The `(name, tensor)` pairs stored as `<prefix>.<name>.npy` in `dir`, sorted by name.
fn tensors(dir: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let key = name.strip_prefix(prefix)?.strip_prefix('.')?.strip_suffix(".npy")?.to_string();
            Some((key, read_npy_file(&dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn flags(dir: &Path, file: &str) -> (Vec<usize>, Vec<bool>) {
    let t = read_npy_file(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    (t.shape.clone(), t.to_i64_vec().into_iter().map(|v| v != 0).collect())
}

/// Max |diff| of `got` vs `want` over the compared positions of output `name`.
fn masked_diff(dir: &Path, name: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let keep: Vec<bool> = if name == "logits" {
        // [batch, seq, vocab]: a position's row counts when it is valid.
        let (shape, valid) = flags(dir, "valid.npy");
        let vocab = want.shape[2];
        assert_eq!(shape, want.shape[..2].to_vec(), "valid.npy");
        (0..g.len()).map(|i| valid[i / vocab]).collect()
    } else {
        // [batch, heads, keys, head_dim]: key position t of batch b counts when valid.
        let (shape, valid) = flags(dir, "valid_keys.npy");
        let (heads, keys, hd) = (want.shape[1], want.shape[2], want.shape[3]);
        assert_eq!(shape, vec![want.shape[0], keys], "valid_keys.npy");
        (0..g.len()).map(|i| valid[(i / (heads * keys * hd)) * keys + (i / hd) % keys]).collect()
    };
    g.iter().zip(&w).zip(&keep).filter(|(_, k)| **k).map(|((a, b), _)| (a - b).abs()).fold(0.0, f64::max)
}

fn check_outputs(label: &str, dir: &Path, got: &[(String, Tensor)]) {
    let want = tensors(dir, "out");
    assert_eq!(got.len(), want.len(), "{label}: output count");
    for (name, w) in &want {
        let g = &got.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{label}: no output {name}")).1;
        let diff = masked_diff(dir, name, g, w);
        eprintln!("{label} {name}: max |diff| vs transformers {diff:.2e}");
        assert!(diff <= TOLERANCE, "{label} {name}: max |diff| {diff:e} > {TOLERANCE}");
    }
}

#[test]
fn optimum_export_imports_with_symbolic_mask_length() {
    let m = ferrumc_onnx::import_onnx(&fixture().join("model.onnx")).expect("import");
    let f = m.function("forward").expect("forward");
    let mask = f.params().iter().find(|(n, _)| n == "attention_mask").expect("attention_mask").1;
    let want = Dim::sym("past_sequence_length").add(&Dim::sym("sequence_length"));
    assert_eq!(f.ty(mask).shape, vec![Dim::sym("batch_size"), want], "the dim_param expression is a sum");
}

#[test]
fn optimum_export_matches_transformers_interpreted() {
    let dir = fixture();
    let m = ferrumc_onnx::import_onnx(&dir.join("model.onnx")).expect("import");
    let weights = FileWeights::new(&dir);
    for case in ["prefill", "decode"] {
        let inputs = tensors(&dir.join(case), "in");
        let got = run_function(&m, "forward", &inputs, &weights).expect("interpreter");
        check_outputs(&format!("interpreter/{case}"), &dir.join(case), &got);
    }
}

#[test]
fn optimum_export_matches_transformers_compiled() {
    let dir = fixture();
    let m = ferrumc_onnx::import_onnx(&dir.join("model.onnx")).expect("import");
    let weights = FileWeights::new(&dir);
    for level in [2, 3] {
        let options = CompileOptions { level, ..CompileOptions::default() };
        let optimized = optimize_module(&m, &options).expect("optimize");
        let f = optimized.function("forward").expect("forward");
        let fused = f.op_ids().filter(|o| f.op(*o).is_some_and(|d| d.op.name() == "attention")).count();
        assert_eq!(fused, 2, "-O{level}: one fused attention per layer");
        let bytes = compile(&m, &weights, &options).expect("compile");
        for case in ["prefill", "decode"] {
            let inputs = tensors(&dir.join(case), "in");
            let got = run_compiled(&bytes, "forward", &inputs).expect("run");
            check_outputs(&format!("-O{level}/{case}"), &dir.join(case), &got);
        }
    }
}
