//! Reading models and writing results for the CLI: format detection, UTF-8 checks with
//! positions, verifier reports with errors shown inline, and all-or-nothing output writes.

use ferrumc_ir::{json, text, verify, Module};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest model file (text or JSON) the CLI reads; weights live in separate files.
pub const MAX_MODEL_FILE_BYTES: u64 = 1 << 30;

/// A user-facing failure: the complete message to print.
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed module and where it came from (its folder is where weights are read from).
#[derive(Debug)]
pub struct LoadedModule {
    pub module: Module,
    pub path: PathBuf,
    pub base_dir: PathBuf,
}

impl LoadedModule {
    /// Run the verifier; on failure, list every error and show the module with the
    /// errors printed under the ops they are about.
    pub fn verified(&self) -> Result<(), CliError> {
        let Err(errors) = verify::verify_module(&self.module) else {
            return Ok(());
        };
        let mut msg = format!("error: {}: {} verifier error(s)\n", self.path.display(), errors.len());
        for e in &errors {
            msg.push_str(&format!("  {}\n", verify::describe(&self.module, e)));
        }
        let annotated = text::print_module_annotated(&self.module, &|function, op| {
            errors
                .iter()
                .filter(|e| match (&e.anchor, op) {
                    (verify::Anchor::Op { function: f, op: o }, Some(op)) => f == function && *o == op,
                    (verify::Anchor::Function(f), None) => f == function,
                    _ => false,
                })
                .map(|e| format!("error: {}", e.message))
                .collect()
        });
        msg.push_str("\nThe module, with errors under the ops they concern:\n");
        msg.push_str(&annotated);
        Err(CliError(msg))
    }
}

/// Read a model: a Hugging Face model folder or its `config.json`, a `.fir` file, or a
/// ModelIR `.json` document. Anything else is refused.
pub fn load_module(path: &Path) -> Result<LoadedModule, CliError> {
    if is_hf_checkpoint(path) {
        return load_hf(path);
    }
    if path.extension().is_some_and(|e| e == "onnx") {
        let module = ferrumc_onnx::import_onnx(path).map_err(|e| CliError(format!("error: {e}")))?;
        return Ok(LoadedModule { module, path: path.to_path_buf(), base_dir: parent_dir(path) });
    }
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| CliError(format!("error: {shown}: cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(CliError(format!("error: {shown}: not a regular file")));
    }
    if meta.len() > MAX_MODEL_FILE_BYTES {
        return Err(CliError(format!(
            "error: {shown}: {} bytes is larger than the {} byte limit for model files (weights belong in separate files)",
            meta.len(),
            MAX_MODEL_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| CliError(format!("error: {shown}: cannot read: {e}")))?;
    let src = std::str::from_utf8(&bytes).map_err(|e| {
        let (line, column) = line_column(&bytes, e.valid_up_to());
        CliError(format!("error: {shown}:{line}:{column}: invalid UTF-8 (byte offset {})", e.valid_up_to()))
    })?;
    let module = match path.extension().and_then(|e| e.to_str()) {
        Some("fir") => text::parse_module(src).map_err(|e| CliError(format!("error: {shown}:{e}")))?,
        Some("json") => json::from_json_str(src).map_err(|e| CliError(format!("error: {shown}: {e}")))?,
        _ => {
            return Err(CliError(format!(
                "error: {shown}: unrecognised model format (expected a Hugging Face folder or config.json, a .onnx, .fir or ModelIR .json file)"
            )))
        }
    };
    Ok(LoadedModule { module, path: path.to_path_buf(), base_dir: parent_dir(path) })
}

/// A Hugging Face checkpoint is a folder with a `config.json`, or a file named `config.json`.
fn is_hf_checkpoint(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("config.json").is_file();
    }
    path.file_name().is_some_and(|n| n == "config.json")
}

/// Lower a Hugging Face checkpoint; validation warnings go to stderr, errors fail.
fn load_hf(path: &Path) -> Result<LoadedModule, CliError> {
    let (module, warnings) = ferrumc_hf::import_hf(path).map_err(|e| CliError(format!("error: {e}")))?;
    for w in &warnings {
        eprintln!("{w}");
    }
    let base_dir = if path.is_dir() { path.to_path_buf() } else { parent_dir(path) };
    Ok(LoadedModule { module, path: path.to_path_buf(), base_dir })
}

/// The folder a model file lives in (where its weights are read from).
fn parent_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."))
}

/// 1-based line and column (in characters) of a byte offset into possibly-invalid UTF-8.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

/// Write to `path`, or to stdout when `None`.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match path {
        Some(p) => std::fs::write(p, bytes).map_err(|e| CliError(format!("error: {}: cannot write: {e}", p.display()))),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes).map_err(|e| CliError(format!("error: cannot write to stdout: {e}")))
        }
    }
}

/// A warning when `output` is written outside the folder the module's weight files are
/// relative to: weight paths stay relative (they may not leave a model's folder), so the
/// written module only finds its weights if the files sit beside it.
pub fn weight_location_warning(loaded: &LoadedModule, output: Option<&Path>) -> Option<String> {
    let output = output?;
    let files: std::collections::BTreeSet<&str> = loaded
        .module
        .weights
        .iter()
        .filter_map(|w| match &w.source {
            ferrumc_ir::WeightSource::Safetensors { file, .. } | ferrumc_ir::WeightSource::Raw { file, .. } => {
                Some(file.as_str())
            }
            ferrumc_ir::WeightSource::Inline(_) => None,
        })
        .collect();
    let out_dir = parent_dir(output);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if files.is_empty() || same(&out_dir, &loaded.base_dir) {
        return None;
    }
    let list: Vec<&str> = files.into_iter().collect();
    Some(format!(
        "warning: {} references its weights relative to its own folder ({}); copy or link them beside it to run it",
        output.display(),
        list.join(", ")
    ))
}
