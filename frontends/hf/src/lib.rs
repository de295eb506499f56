//! Hugging Face `config.json` + safetensors frontend.
//!
//! [`import_hf`] turns a model folder (or its `config.json`) into a verified ModelIR
//! [`Module`] with two entry points, `forward` and `decode` (see [`lower`]):
//!
//! 1. [`config`]: `config.json` is validated ([`validate_config`] reports *every*
//!    problem as a [`ValidationIssue`]) and parsed into a typed [`DecoderConfig`].
//! 2. [`weights`]: the safetensors checkpoint (single file or sharded with
//!    `model.safetensors.index.json`) is opened, only the headers are read, and every
//!    tensor is checked against what the config implies before anything is built.
//! 3. [`lower`]: one config-driven decoder lowering for llama / mistral / qwen2 / qwen3 /
//!    gemma / phi3; [`lower_gpt2_bert`]: gpt2 (Conv1D weights, learned positions) and the
//!    bert encoder, whose configs use their own keys.
//!
//! Weights stay in their files (`WeightSource::Safetensors`); only the RoPE cos/sin
//! tables, computed at import, are inline.

pub mod config;
pub mod lower;
pub mod lower_gpt2_bert;
pub mod weights;

pub use config::{parse_config, validate_config, DecoderConfig, HiddenAct, RopeScaling, SUPPORTED_MODEL_TYPES};
pub use lower::{lower_decoder, MAX_ROPE_POSITIONS};
pub use weights::{open_checkpoint, Checkpoint, TensorEntry};

use ferrumc_ir::Module;
use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a [`ValidationIssue`] is. Errors (and critical errors) block the import;
/// warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValidationSeverity {
    /// Worth knowing; the import goes on.
    Warning,
    /// Blocks the import.
    Error,
    /// A serious misconfiguration (e.g. the document is not a JSON object); blocks the import.
    Critical,
}

impl ValidationSeverity {
    /// Whether an issue of this severity blocks the import.
    pub fn is_blocking(self) -> bool {
        self >= ValidationSeverity::Error
    }
}

/// One problem found in a model's configuration or checkpoint (the `ValidationIssue` of
/// the ferrum `ModelBuilder` contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    pub severity: ValidationSeverity,
    /// A short class: `missing_field`, `invalid_type`, `invalid_value`,
    /// `incompatible_dimensions`, `unsupported`, `weights`.
    pub category: String,
    pub description: String,
    pub suggested_fix: Option<String>,
    /// Where in `config.json` (e.g. `num_key_value_heads`, `rope_scaling.factor`), or the
    /// tensor name for checkpoint issues.
    pub config_path: String,
}

impl ValidationIssue {
    pub(crate) fn new(
        severity: ValidationSeverity,
        category: &str,
        config_path: impl Into<String>,
        description: impl Into<String>,
        suggested_fix: Option<String>,
    ) -> ValidationIssue {
        ValidationIssue {
            severity,
            category: category.to_string(),
            description: description.into(),
            suggested_fix,
            config_path: config_path.into(),
        }
    }
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            ValidationSeverity::Warning => "warning",
            ValidationSeverity::Error => "error",
            ValidationSeverity::Critical => "critical",
        };
        write!(f, "{sev}: {}: {} [{}]", self.config_path, self.description, self.category)?;
        if let Some(fix) = &self.suggested_fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

fn join_lines<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| format!("\n  {i}")).collect()
}

/// Why an import failed. Every variant names the file (and the field or tensor).
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{}: not valid JSON: {message}", file.display())]
    Json { file: PathBuf, message: String },
    #[error("{}: the configuration cannot be imported:{}", file.display(), join_lines(issues))]
    InvalidConfig { file: PathBuf, issues: Vec<ValidationIssue> },
    #[error("{}: {message}", file.display())]
    Index { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Path { file: PathBuf, message: String },
    #[error("{}: not a valid safetensors file: {message}", file.display())]
    Safetensors { file: PathBuf, message: String },
    #[error("the checkpoint does not match the configuration:{}", join_lines(problems))]
    Weights { problems: Vec<String> },
    #[error("internal lowering error: {0}")]
    Lower(String),
    #[error("the imported module does not verify:{}", join_lines(errors))]
    Verify { errors: Vec<String> },
}

/// The largest `config.json` / index file read (real ones are a few KiB / a few MiB).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Read a JSON text file, refusing anything larger than [`MAX_JSON_BYTES`].
pub(crate) fn read_text(file: &Path) -> Result<String, HfError> {
    use std::io::Read;
    let io = |source| HfError::Io { file: file.to_path_buf(), source };
    let f = std::fs::File::open(file).map_err(io)?;
    let mut text = String::new();
    f.take(MAX_JSON_BYTES + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_JSON_BYTES {
        return Err(HfError::Json { file: file.to_path_buf(), message: format!("larger than {MAX_JSON_BYTES} bytes") });
    }
    Ok(text)
}

/// Import a Hugging Face decoder checkpoint.
///
/// `path` is the model folder or its `config.json`. Returns the verified module and the
/// non-blocking issues (warnings) found on the way.
pub fn import_hf(path: &Path) -> Result<(Module, Vec<ValidationIssue>), HfError> {
    let (dir, config_file) = if path.is_dir() {
        (path.to_path_buf(), path.join("config.json"))
    } else {
        (path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), path.to_path_buf())
    };
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let text = read_text(&config_file)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| HfError::Json { file: config_file.clone(), message: e.to_string() })?;
    if lower_gpt2_bert::handles(&value) {
        return lower_gpt2_bert::import(&value, &config_file, &dir);
    }
    let (cfg, mut issues) =
        parse_config(&value).map_err(|issues| HfError::InvalidConfig { file: config_file.clone(), issues })?;
    let ckpt = open_checkpoint(&dir)?;
    let (plan, weight_warnings) = weights::check_checkpoint(&cfg, &ckpt)?;
    issues.extend(weight_warnings);
    let module = lower_decoder(&cfg, &plan)?;
    if let Err(errors) = ferrumc_ir::verify::verify_module(&module) {
        return Err(HfError::Verify {
            errors: errors.iter().map(|e| ferrumc_ir::verify::describe(&module, e)).collect(),
        });
    }
    Ok((module, issues))
}
