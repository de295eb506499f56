//! Loading test models from any frontend (HF folder, `.onnx`, `.fir`), and the list of
//! fixture models the pass-preservation and convergence tests run over.

use ferrumc_ir::Module;
use std::path::{Path, PathBuf};

/// Import `path`: a Hugging Face folder or `config.json`, an `.onnx` file, or a `.fir` file.
/// Returns the module and the folder its weight paths are relative to.
pub fn load(path: &Path) -> Result<(Module, PathBuf), String> {
    let base =
        if path.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let module = if path.is_dir() || path.file_name().is_some_and(|n| n == "config.json") {
        ferrumc_hf::import_hf(path).map(|(m, _)| m).map_err(|e| format!("{}: {e}", path.display()))?
    } else if ext == "onnx" {
        ferrumc_onnx::import_onnx(path).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ferrumc_ir::text::parse_module(&text).map_err(|e| format!("{}:{e}", path.display()))?
    };
    Ok((module, base))
}

/// The tiny real models under `tests/fixtures` (every HF architecture; the dynamo-exported
/// ONNX Llama, Qwen2, Mistral and GPT-2) and the examples, as `(label, path)`.
pub fn fixture_models() -> Vec<(String, PathBuf)> {
    let root = crate::repo_root();
    let mut models = Vec::new();
    for arch in ["llama", "llama_sharded", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2", "bert"] {
        models.push((format!("hf/{arch}"), root.join("tests/fixtures/hf").join(arch)));
    }
    models.push(("onnx/llama".to_string(), root.join("tests/fixtures/onnx_llama/model.onnx")));
    for arch in ["qwen2", "mistral", "gpt2"] {
        models.push((format!("onnx/{arch}"), root.join("tests/fixtures/onnx_exports").join(arch).join("model.onnx")));
    }
    models.push(("examples/mlp".to_string(), root.join("examples/mlp/model.fir")));
    models.push(("examples/llama_block".to_string(), root.join("examples/llama_block/model.fir")));
    models
}
