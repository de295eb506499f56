//! The pass interface (the `OptimizationPass` seed) and what a pass reports back.

use ferrumc_ir::Module;
use std::fmt;

/// The scheme `quantize-weights` uses (the seed's `QuantScheme`, plus per-channel int8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantScheme {
    /// `i8` weights with one f32 scale per output channel (symmetric, max-abs / 127).
    Int8PerChannel,
    /// GGML Q8_0: blocks of 32 values, one f16 scale and 32 `i8` per block.
    Q8_0,
    /// GGML Q4_0: blocks of 32 values, one f16 scale and 32 4-bit values per block.
    Q4_0,
    /// `int4<G>`: 4-bit groups of `group_size` values along the input dim.
    Int4 { group_size: u32 },
}

impl QuantScheme {
    /// Parse the CLI spelling: `int8`, `q8_0`, `q4_0`, `int4` (group 32) or `int4:G`.
    pub fn parse(text: &str) -> Result<QuantScheme, String> {
        match text {
            "int8" => Ok(QuantScheme::Int8PerChannel),
            "q8_0" => Ok(QuantScheme::Q8_0),
            "q4_0" => Ok(QuantScheme::Q4_0),
            "int4" => Ok(QuantScheme::Int4 { group_size: 32 }),
            other => match other.strip_prefix("int4:").map(str::parse::<u32>) {
                Some(Ok(g)) if g >= 2 && g % 2 == 0 => Ok(QuantScheme::Int4 { group_size: g }),
                Some(_) => Err(format!("`{other}`: the int4 group size must be an even number ≥ 2")),
                None => {
                    Err(format!("unknown quantization scheme `{other}` (expected int8, q8_0, q4_0, int4 or int4:G)"))
                }
            },
        }
    }
}

impl fmt::Display for QuantScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantScheme::Int8PerChannel => f.write_str("int8"),
            QuantScheme::Q8_0 => f.write_str("q8_0"),
            QuantScheme::Q4_0 => f.write_str("q4_0"),
            QuantScheme::Int4 { group_size } => write!(f, "int4:{group_size}"),
        }
    }
}

/// Settings shared by every pass of one pipeline run (the knobs of the seed's `BuildOptions`
/// that passes read).
#[derive(Debug, Clone, PartialEq)]
pub struct PassOptions {
    /// The scheme `quantize-weights` applies; `None` makes that pass a no-op.
    pub quantize: Option<QuantScheme>,
    /// `constant-folding` never materialises a tensor larger than this many bytes.
    pub fold_limit_bytes: u64,
    /// Largest value of each named symbol the compiled model will accept (`--max-dim`).
    /// `shape-inference` uses them to resolve sizes such as `min(seq, 64)` to `seq` when
    /// `seq ≤ 64`; symbols not named are unbounded.
    pub dim_bounds: std::collections::BTreeMap<String, i64>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions { quantize: None, fold_limit_bytes: 1 << 16, dim_bounds: Default::default() }
    }
}

/// What one pass run did (the seed's `OptimizationStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizationStats {
    /// Weight elements no longer stored (e.g. dropped or shared weights).
    pub parameters_eliminated: u64,
    /// Ops removed (fused ops count the ops they replaced minus one).
    pub operations_eliminated: usize,
    /// Bytes saved in weights or intermediates.
    pub memory_saved: u64,
    /// The pass's own estimate of the speedup it brings (1.0 = none).
    pub estimated_speedup: f32,
}

/// The outcome of [`OptimizationPass::apply`] (the seed's `OptimizationResult`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizationResult {
    /// Whether the pass changed the module.
    pub applied: bool,
    pub stats: OptimizationStats,
    /// Things the user should know (e.g. a pattern that almost matched).
    pub warnings: Vec<String>,
    /// One-line facts for `--stats` (e.g. "12 rms_norm fused", "peak 3.1 MB").
    pub notes: Vec<String>,
}

impl OptimizationResult {
    /// A run that changed nothing.
    pub fn unchanged() -> OptimizationResult {
        OptimizationResult {
            stats: OptimizationStats { estimated_speedup: 1.0, ..Default::default() },
            ..Default::default()
        }
    }

    /// A rewrite that removed `ops_eliminated` ops, described by `note`.
    pub fn rewrote(ops_eliminated: usize, note: String) -> OptimizationResult {
        let mut result = OptimizationResult::unchanged();
        result.applied = true;
        result.stats.operations_eliminated = ops_eliminated;
        result.notes.push(note);
        result
    }
}

/// A pass that could not run on the module it was given (the module is left unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PassError {
    pub message: String,
}

impl PassError {
    pub fn new(message: impl Into<String>) -> PassError {
        PassError { message: message.into() }
    }
}

/// One optimization pass. Implementations are stateless; everything a run needs comes in
/// through the module and the options.
pub trait OptimizationPass: Send + Sync {
    /// Unique kebab-case name: the CLI name, the source file name and the golden-test folder.
    fn name(&self) -> &'static str;
    /// One line for `--list-passes`.
    fn summary(&self) -> &'static str;
    /// Passes that must have run before this one in the same pipeline.
    fn dependencies(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Cheap check whether the pass can do anything on `module` (the manager skips it if not).
    fn is_applicable(&self, _module: &Module, _options: &PassOptions) -> bool {
        true
    }
    /// Transform `module` in place. Must leave a module that passes the verifier and computes
    /// what it computed before (quantization: within the scheme's documented bound).
    fn apply(&self, module: &mut Module, options: &PassOptions) -> Result<OptimizationResult, PassError>;
}
