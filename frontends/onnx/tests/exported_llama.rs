//! The benchmark target of the ONNX frontend: the graph `torch.onnx.export(..., dynamo=True)`
//! produces for a Hugging Face Llama (RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal, RoPE via
//! Slice/Neg/Concat, the causal mask via Range/CumSum/LessOrEqual/Where/GatherND, …). The
//! fixture (`tests/fixtures/onnx_llama/`, made by its `export_llama.py` from the transformers
//! parity model `tests/fixtures/hf/llama`) carries transformers' own logits as the reference.
//! Tolerance: max |diff| ≤ 1e-4 and the same argmax at every position.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::Dim;
use std::path::Path;

#[test]
fn dynamo_exported_llama_matches_transformers() {
    check_export(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx_llama"));
}

/// The same check on the other architectures exported by `tests/fixtures/onnx_exports/export_hf.py`
/// (qwen2: q/k/v biases; mistral; gpt2: Conv1D as Gemm, learned positions, tanh GELU, LayerNorm,
/// the causal mask as `where`).
#[test]
fn dynamo_exported_qwen2_mistral_gpt2_match_transformers() {
    for arch in ["qwen2", "mistral", "gpt2"] {
        check_export(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx_exports").join(arch));
    }
}

fn check_export(dir: &Path) {
    let m = ferrumc_onnx::import_onnx(&dir.join("model.onnx")).expect("import the exported model");
    ferrumc_ir::verify::verify_module(&m).expect("verified IR");
    let forward = m.function("forward").expect("forward");
    let (_, ids) = &forward.params()[0];
    assert_eq!(forward.ty(*ids).shape, vec![Dim::sym("batch"), Dim::sym("seq")], "symbolic batch and sequence");

    let input_ids = read_npy_file(&dir.join("input_ids.npy")).expect("input_ids.npy");
    let want = read_npy_file(&dir.join("logits.npy")).expect("logits.npy");
    let out = run_function(&m, "forward", &[("input_ids".to_string(), input_ids)], &FileWeights::new(dir))
        .expect("run the imported graph");
    let got = &out.iter().find(|(n, _)| n == "logits").expect("logits output").1;
    assert_eq!(got.shape, want.shape);
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let diff = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("{}: max |diff| vs transformers {diff:.2e}", dir.display());
    assert!(diff <= 1e-4, "{}: max |diff| {diff:e}", dir.display());
    let vocab = *want.shape.last().unwrap_or(&1);
    let argmax = |v: &[f64]| v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best });
    for (row, (a, b)) in g.chunks(vocab).zip(w.chunks(vocab)).enumerate() {
        assert_eq!(argmax(a), argmax(b), "{}: argmax differs at position {row}", dir.display());
    }
}
