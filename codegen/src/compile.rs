//! The compile driver: a ModelIR [`Module`] plus its weights → artifact bytes
//! (`ferrumc_runtime::artifact`), for the host CPU.
//!
//! Steps ([`compile_module`]):
//! 0. inputs bound at compile time ([`CompileOptions::bound_inputs`]) become constants and
//!    `shape-inference` resolves the dims computed from them ([`bind_inputs`]);
//! 1. the `-O` pass pipeline (with `quantize-weights` when asked), then `fusion-groups` and
//!    `memory-plan`, on a clone of the module;
//! 2. per function (= entry point): every fusion group is lowered ([`crate::lower`]); groups of
//!    pure views (`reshape`, `squeeze`, `unsqueeze`, `identity`) get no kernel, their results
//!    alias their operand's storage. Ops outside groups must be weight-derived (evaluated here)
//!    — anything else, and any group lowering refuses, is a [`CompileError::Unsupported`]
//!    naming the op;
//! 3. every weight-derived value a kernel reads (transposes, packing, quantization) is
//!    evaluated once and stored as an artifact weight; plain weights are read through the
//!    [`WeightProvider`]. Pure data movement on plain types (views, transposes, constant
//!    padding: what `prepack-weights` emits) is evaluated on the bytes ([`crate::weight_eval`]);
//!    everything else with the reference interpreter (`interp::eval_single_op`, op by op).
//!    A value is identified by its derivation (the op chain down to the weight names), so a
//!    packed weight every entry point reads is evaluated and stored once; the artifact
//!    builder also stores equal bytes once;
//! 4. each kernel is compiled by Cranelift for the host ISA into relocation-free machine code
//!    (compiling with a bare `Context`, refusing code with relocations), launched in
//!    [`LaunchUnits::Elements`]: a step's parallel extent is the kernel's element extent (a
//!    polynomial) and its grain the kernel's tile;
//! 5. the schedule: groups in dependency order (smallest group id first among ready ones),
//!    each a step binding the kernel's buffers to inputs, outputs, weights or arena offsets.
//!
//! # Bucket rule (memory plan)
//!
//! The runtime's schedule has one byte offset per arena buffer, so the arena is planned once,
//! for the largest allowed value of every symbol: `seq` and `past` at the largest value of
//! `memory_plan::default_buckets` (128, or `max_sequence_length` when smaller), every other
//! symbol at [`DEFAULT_DIM_BOUND`]; [`CompileOptions::dim_bounds`] overrides any symbol. Sizes
//! grow with the symbols and live ranges do not depend on them, so a placement valid at the
//! maximum is valid for every smaller value. The artifact's single memory-plan bucket states
//! these bounds (`symbol ≤ max`); the runtime refuses inputs beyond them. They are also in
//! the metadata as `memory_plan.<entry>.bounds`.
//!
//! Output is deterministic: functions, groups, weights and kernels are visited in fixed
//! orders (no hash-map iteration reaches the output), and nothing time-dependent is recorded.

use crate::cpu::host_isa;
use crate::cpu::translate::{kernel_signature, LaunchUnits, Translator};
use crate::kernel::{BufferRole, Kernel, Size};
use crate::lower::{copy_kernel, lower_function, lower_ops, LoweredGroup};
use crate::weight_eval::{self, ByteTensor};
use crate::CodegenError;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::settings::Configurable;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use ferrumc_ir::dim::Dim;
use ferrumc_ir::interp::eval_single_op;
use ferrumc_ir::weights::{static_shape, WeightError, WeightProvider};
use ferrumc_ir::{DType, Function, Module, Op, OpId, Tensor, TensorType, ValueDef, ValueId};
use ferrumc_passes::memory_plan::{default_buckets, function_symbols, plan_function_at, MemoryPlan};
use ferrumc_passes::{PassManager, PassOptions, QuantScheme};
use ferrumc_runtime::artifact::{self, ArtifactBuilder, Binding, Bucket, EntryPoint, Poly, Step, TensorSig, Term};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The bound of symbols other than `seq` and `past` when [`CompileOptions::dim_bounds`] does
/// not name them (see the module doc).
pub const DEFAULT_DIM_BOUND: i64 = 64;

/// Pseudo group ids of ops outside every fusion group that run as kernels of their own.
const SOLO_GROUP_BASE: u32 = 1 << 30;

/// What to compile with.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Called as compilation advances (a progress display); does nothing by default.
    pub progress: ProgressHook,
    /// The `-O` level (0..=3).
    pub level: u8,
    /// Weight quantization (`quantize-weights`), if any.
    pub quantize: Option<QuantScheme>,
    /// Largest value per symbol the artifact accepts (overrides the default bucket rule).
    pub dim_bounds: BTreeMap<String, i64>,
    /// Evaluate every weight-derived value with the reference interpreter, never on bytes
    /// (slower; the output is the same — tests compare the two).
    pub interpret_weights: bool,
    /// Inputs fixed at compile time (name → value): each becomes a constant before the passes
    /// run and leaves the entry points' signatures (see [`bind_inputs`]).
    pub bound_inputs: BTreeMap<String, Tensor>,
}

/// How far [`compile_module`] has come, reported through [`CompileOptions::progress`].
#[derive(Debug, Clone, Copy)]
pub enum CompileProgress<'a> {
    /// The pass pipeline runs.
    Optimizing,
    /// Code generation for entry point `function` starts: `groups` fusion groups, each
    /// loading and evaluating the weights it reads and compiling its kernel.
    Function { function: &'a str, groups: usize },
    /// The next fusion group of the current function starts.
    Group,
}

/// The callback type behind a [`ProgressHook`].
pub type ProgressFn = dyn Fn(CompileProgress<'_>) + Send + Sync;

/// A progress callback (a cloneable, optional `Fn`).
#[derive(Clone, Default)]
pub struct ProgressHook(Option<std::sync::Arc<ProgressFn>>);

impl ProgressHook {
    /// A hook calling `f` at every [`CompileProgress`] event.
    pub fn new(f: impl Fn(CompileProgress<'_>) + Send + Sync + 'static) -> Self {
        Self(Some(std::sync::Arc::new(f)))
    }

    fn report(&self, event: CompileProgress<'_>) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ProgressHook(set)" } else { "ProgressHook(none)" })
    }
}

/// Why compilation failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The pass pipeline failed.
    #[error("pass pipeline: {0}")]
    Pipeline(String),
    /// A fusion group no kernel template lowers.
    #[error("@{function}: fusion group {group} ({ops}) cannot be compiled: {source}")]
    UnsupportedGroup { function: String, group: u32, ops: String, source: CodegenError },
    /// Something else the compiler does not handle (names the op or value).
    #[error("@{function}: `{op}` is not supported by the compiler: {reason}")]
    Unsupported { function: String, op: String, reason: String },
    /// A weight could not be loaded or evaluated.
    #[error("weight `{name}`: {reason}")]
    Weight { name: String, reason: String },
    /// Memory planning failed.
    #[error("@{function}: memory plan: {reason}")]
    MemoryPlan { function: String, reason: String },
    /// Cranelift failed or produced code the artifact cannot hold.
    #[error("kernel `{kernel}`: {reason}")]
    Backend { kernel: String, reason: String },
    /// A bound input ([`CompileOptions::bound_inputs`]) does not fit the module.
    #[error("bound input `{name}`: {reason}")]
    BoundInput { name: String, reason: String },
    /// Malformed input module.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// The artifact builder refused the result.
    #[error("artifact: {0}")]
    Artifact(#[from] ferrumc_runtime::error::RuntimeError),
}

/// Wall time per compile phase, printed to stderr at the end of [`compile_module`] when the
/// environment variable `FERRUMC_TIME` is set (diagnostics only; never part of the output).
#[derive(Debug, Default)]
struct PhaseTimes {
    phases: Vec<(&'static str, Duration)>,
}

impl PhaseTimes {
    /// Adds the time since `start` to `phase`; returns now (the next phase's start).
    fn lap(&mut self, phase: &'static str, start: Instant) -> Instant {
        let now = Instant::now();
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, d)) => *d += now - start,
            None => self.phases.push((phase, now - start)),
        }
        now
    }

    fn report(&self) {
        if std::env::var_os("FERRUMC_TIME").is_none() {
            return;
        }
        for (phase, d) in &self.phases {
            eprintln!("ferrumc compile: {phase:<16} {:8.3} s", d.as_secs_f64());
        }
    }
}

fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Identity)
}

/// Compile `m` for the host CPU into artifact bytes (see the module doc).
pub fn compile_module(
    m: &Module,
    weights: &dyn WeightProvider,
    options: &CompileOptions,
) -> Result<Vec<u8>, CompileError> {
    let b = compile_to_builder(m, weights, options)?;
    let start = Instant::now();
    let bytes = b.build()?;
    if std::env::var_os("FERRUMC_TIME").is_some() {
        eprintln!("ferrumc compile: {:<16} {:8.3} s", "build artifact", start.elapsed().as_secs_f64());
    }
    Ok(bytes)
}

/// [`compile_module`] up to the filled [`ArtifactBuilder`], whose
/// [`ArtifactBuilder::write_to`] streams the same bytes to a file without assembling them in
/// memory (what `ferrumc compile` does: the artifact is then held once, not twice).
pub fn compile_to_builder(
    m: &Module,
    weights: &dyn WeightProvider,
    options: &CompileOptions,
) -> Result<ArtifactBuilder, CompileError> {
    let mut times = PhaseTimes::default();
    let start = Instant::now();
    let m = optimize_module(m, options)?;
    times.lap("passes", start);

    let (isa, baseline) = artifact_isa()?;
    let mut b = ArtifactBuilder::new(&isa.triple().to_string());
    b.ferrumc_version(env!("CARGO_PKG_VERSION"));
    for f in cpu_features(&*isa) {
        b.require_cpu_feature(&f);
    }
    b.metadata("compile.cpu_baseline", baseline);
    b.metadata("compile.opt_level", &options.level.to_string());
    b.metadata("compile.quantize", &options.quantize.as_ref().map_or("none".to_string(), |q| q.to_string()));
    b.metadata("model.name", &m.name);
    if !options.bound_inputs.is_empty() {
        let names: Vec<&str> = options.bound_inputs.keys().map(String::as_str).collect();
        b.metadata("compile.bound_inputs", &names.join(","));
    }

    let mut weight_index: HashMap<String, u32> = HashMap::new();
    for f in &m.functions {
        compile_function(&m, f, weights, options, &*isa, &mut b, &mut weight_index, &mut times)?;
    }
    times.report();
    Ok(b)
}

/// Step 1 of [`compile_module`]: the optimized, grouped clone of `m` the kernels are made
/// from (also the right oracle for the interpreter when weights are quantized).
pub fn optimize_module(m: &Module, options: &CompileOptions) -> Result<Module, CompileError> {
    options.progress.report(CompileProgress::Optimizing);
    let mut m = bind_inputs(m, &options.bound_inputs)?;
    // Shape inference may rely on the same bounds the runtime enforces (a position table cut
    // to `min(sequence_length, 512)` is `sequence_length` when that is at most 64); the
    // largest over the functions holds for each.
    let mut dim_bounds: BTreeMap<String, i64> = BTreeMap::new();
    for f in &m.functions {
        for (s, b) in symbol_bounds(&m, f, options) {
            let e = dim_bounds.entry(s).or_insert(b);
            *e = (*e).max(b);
        }
    }
    let popts = PassOptions { quantize: options.quantize, dim_bounds, ..PassOptions::default() };
    PassManager::for_level(options.level, &["fusion-groups", "memory-plan"], popts)
        .map_err(|e| CompileError::Pipeline(e.to_string()))?
        .run(&mut m)
        .map_err(|e| CompileError::Pipeline(e.to_string()))?;
    Ok(m)
}

/// The largest value each symbol of `f` may take at run time (the bucket rule of the module
/// doc): `--max-dim` where given, else `seq`/`past` from the default buckets and every other
/// symbol at [`DEFAULT_DIM_BOUND`].
fn symbol_bounds(m: &Module, f: &Function, options: &CompileOptions) -> BTreeMap<String, i64> {
    let defaults = default_buckets(m, f);
    function_symbols(f)
        .into_iter()
        .map(|s| {
            let default = match s.as_str() {
                "seq" | "past" => defaults.iter().filter_map(|b| b.get(&s).copied()).max().unwrap_or(DEFAULT_DIM_BOUND),
                _ => DEFAULT_DIM_BOUND,
            };
            let bound = options.dim_bounds.get(&s).copied().unwrap_or(default);
            (s, bound)
        })
        .collect()
}

/// Compile-time input binding ([`CompileOptions::bound_inputs`]), like TVM's `bind_params`:
/// every function input named in `bound` is replaced by a `constant` holding the given tensor
/// and removed from the function's inputs, then `constant-folding` and `shape-inference` run,
/// so dims that depended on the input's *value* (a `reshape`/`expand`/`constant_of_shape`
/// target, `range` bounds, `slice` starts) become known. The tensor must have the input's
/// dtype and rank, and equal every static dim of its declared shape; a name no function has
/// as an input is an error. With nothing bound the module is returned as it is.
pub fn bind_inputs(m: &Module, bound: &BTreeMap<String, Tensor>) -> Result<Module, CompileError> {
    let mut m = m.clone();
    if bound.is_empty() {
        return Ok(m);
    }
    for (name, value) in bound {
        let err = |reason: String| CompileError::BoundInput { name: name.clone(), reason };
        let mut found = false;
        for f in &mut m.functions {
            let Some(&(_, param)) = f.params().iter().find(|(n, _)| n == name) else { continue };
            found = true;
            let declared = f.ty(param).clone();
            if declared.dtype != value.dtype {
                return Err(err(format!("@{}: the input is {}, the value is {}", f.name, declared.dtype, value.dtype)));
            }
            let fits = declared.rank() == value.rank()
                && declared.shape.iter().zip(&value.shape).all(|(d, &v)| d.as_fixed().is_none_or(|d| d == v as i64));
            if !fits {
                return Err(err(format!("@{}: the input has shape {declared}, the value {:?}", f.name, value.shape)));
            }
            let shape: Vec<Dim> = value.shape.iter().map(|&d| Dim::fixed(d as i64)).collect();
            let constant =
                f.add_op1(Op::Constant { value: value.clone() }, vec![], TensorType::new(value.dtype, shape));
            f.replace_all_uses(param, constant);
            f.remove_param(name);
            *f = f.canonical().map_err(|e| CompileError::Invalid(e.to_string()))?;
        }
        if !found {
            let inputs: BTreeSet<&str> =
                m.functions.iter().flat_map(|f| f.params().iter().map(|(n, _)| n.as_str())).collect();
            let inputs: Vec<&str> = inputs.into_iter().collect();
            return Err(err(format!("no entry point has an input of that name (inputs: {})", inputs.join(", "))));
        }
    }
    // Folding first lets sizes computed from the bound values in float arithmetic (a window
    // length cast to f32 for `range`) become constants; shape inference then sees them.
    for pipeline in [&["shape-inference", "constant-folding"][..], &["shape-inference"][..]] {
        PassManager::for_pipeline(pipeline, PassOptions::default())
            .map_err(|e| CompileError::Pipeline(e.to_string()))?
            .run(&mut m)
            .map_err(|e| CompileError::Pipeline(e.to_string()))?;
    }
    Ok(m)
}

/// The inclusive value ranges of integer inputs of `f` that index a table: an input used
/// as `gather` indices (directly, or through views and integer casts that keep its values)
/// into an axis of static size `N` accepts `-N..=N-1` (negative indices count from the end,
/// as in ONNX); several such uses intersect. The runtime checks these before running, so an
/// out-of-range token or position id is reported instead of read clamped.
fn index_input_ranges(f: &Function, order: &[OpId]) -> HashMap<ValueId, (i64, i64)> {
    let mut users: HashMap<ValueId, Vec<OpId>> = HashMap::new();
    for &o in order {
        if let Some(d) = f.op(o) {
            for &v in &d.operands {
                users.entry(v).or_default().push(o);
            }
        }
    }
    let mut ranges = HashMap::new();
    for &(_, p) in f.params() {
        if !matches!(f.ty(p).dtype, DType::I64 | DType::I32) {
            continue;
        }
        let mut range: Option<(i64, i64)> = None;
        let mut pending = vec![p];
        let mut seen = HashSet::new();
        while let Some(v) = pending.pop() {
            if !seen.insert(v) {
                continue;
            }
            for &o in users.get(&v).map(Vec::as_slice).unwrap_or_default() {
                let Some(d) = f.op(o) else { continue };
                let first_operand = d.operands.first() == Some(&v);
                match &d.op {
                    Op::Gather { axis } if d.operands.get(1) == Some(&v) => {
                        let Some(&data) = d.operands.first() else { continue };
                        let shape = &f.ty(data).shape;
                        let rank = shape.len() as i64;
                        let axis = if *axis < 0 { axis + rank } else { *axis };
                        let Some(n) = usize::try_from(axis).ok().and_then(|a| shape.get(a)).and_then(Dim::as_fixed)
                        else {
                            continue;
                        };
                        let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
                        range = Some((lo.max(-n), hi.min(n - 1)));
                    }
                    // Positions index the rows of the cos table (no negative positions).
                    Op::RotaryEmbedding { .. } if d.operands.get(3) == Some(&v) => {
                        let Some(n) = d.operands.get(1).and_then(|t| f.ty(*t).shape.first()).and_then(Dim::as_fixed)
                        else {
                            continue;
                        };
                        let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
                        range = Some((lo.max(0), hi.min(n - 1)));
                    }
                    Op::Identity | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Expand
                        if first_operand =>
                    {
                        pending.extend(d.results.iter().copied());
                    }
                    Op::Cast { to: DType::I64 } if first_operand => pending.extend(d.results.iter().copied()),
                    _ => {}
                }
            }
        }
        // An empty range (a table with no rows) cannot be stated; such a model reads nothing.
        if let Some(r) = range.filter(|(lo, hi)| lo <= hi) {
            ranges.insert(p, r);
        }
    }
    ranges
}

/// The x86-64 features of [`X86_64_BASELINE`] (`x86-64-v3` plus AVX, which Cranelift's
/// preset leaves out although every v3 CPU has it), as `is_x86_feature_detected!` names.
pub const X86_64_BASELINE_FEATURES: [&str; 12] =
    ["avx", "avx2", "bmi1", "bmi2", "cmpxchg16b", "fma", "lzcnt", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"];

/// The CPU level kernels are compiled for on x86-64 hosts that have it.
pub const X86_64_BASELINE: &str = "x86-64-v3";

/// The ISA artifacts are compiled for, and its name for the `compile.cpu_baseline` metadata.
///
/// On x86-64 this is a fixed level, [`X86_64_BASELINE`], not everything the compiling host
/// has: an artifact then loads on every x86-64-v3 machine (Haswell / Zen 1 and later), and
/// the same input gives the same bytes on any such host. The heavy lifting is in the
/// runtime's micro-kernels, which pick AVX-512, AVX2 or scalar code at run time on the
/// machine that runs the artifact, so the kernels' own code loses little by not using
/// AVX-512. A host below the baseline compiles for its own features (`host`), as does every
/// other architecture.
fn artifact_isa() -> Result<(cranelift_codegen::isa::OwnedTargetIsa, &'static str), CompileError> {
    let backend = |reason: String| CompileError::Backend { kernel: "-".into(), reason };
    let host_has_baseline =
        X86_64_BASELINE_FEATURES.iter().all(|f| ferrumc_runtime::artifact::reader::host_has_cpu_feature(f));
    if cfg!(target_arch = "x86_64") && host_has_baseline {
        let mut flags = cranelift_codegen::settings::builder();
        let mut isa = cranelift_native::builder_with_options(false).map_err(|e| backend(e.to_string()))?;
        let set = |b: &mut dyn Configurable, name: &str, value: &str| {
            b.set(name, value).map_err(|e| backend(format!("setting `{name}`: {e}")))
        };
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "is_pic", "false")?;
        isa.enable(X86_64_BASELINE).map_err(|e| backend(format!("preset `{X86_64_BASELINE}`: {e}")))?;
        set(&mut isa, "has_avx", "true")?;
        let isa = isa.finish(cranelift_codegen::settings::Flags::new(flags)).map_err(|e| backend(e.to_string()))?;
        return Ok((isa, X86_64_BASELINE));
    }
    let isa = host_isa().map_err(|e| backend(e.to_string()))?;
    Ok((isa, "host"))
}

/// The features the ISA's code may use, spelled as `is_x86_feature_detected!` names.
fn cpu_features(isa: &dyn TargetIsa) -> Vec<String> {
    let mut out = BTreeSet::new();
    for v in isa.isa_flags() {
        let Some(name) = v.name.strip_prefix("has_") else { continue };
        if v.as_bool() != Some(true) {
            continue;
        }
        let name = match name {
            "sse41" => "sse4.1",
            "sse42" => "sse4.2",
            n => n,
        };
        if ferrumc_runtime::artifact::reader::host_has_cpu_feature(name) {
            out.insert(name.to_string());
        }
    }
    out.into_iter().collect()
}

fn rt_dtype(d: DType) -> Option<artifact::DType> {
    use artifact::DType as R;
    Some(match d {
        DType::F32 => R::F32,
        DType::F16 => R::F16,
        DType::BF16 => R::BF16,
        DType::F64 => R::F64,
        DType::I64 => R::I64,
        DType::I32 => R::I32,
        DType::I8 => R::I8,
        DType::U8 => R::U8,
        DType::Bool => R::Bool,
        DType::Q8_0 => R::Q8_0,
        DType::Q4_0 => R::Q4_0,
        _ => return None,
    })
}

fn dim_poly(d: &Dim) -> Option<Poly> {
    match d {
        Dim::Expr(terms) => {
            Some(Poly::from_terms(terms.iter().map(|(syms, c)| Term { symbols: syms.clone(), coef: *c }).collect()))
        }
        Dim::Unknown => None,
    }
}

fn size_poly(s: &Size, dims: &[String]) -> Option<Poly> {
    let mut terms = Vec::new();
    for (c, mono) in &s.terms {
        let symbols = mono.iter().map(|j| dims.get(*j as usize).cloned()).collect::<Option<Vec<_>>>()?;
        terms.push(Term { symbols, coef: *c });
    }
    Some(Poly::from_terms(terms))
}

struct FnCompiler<'a> {
    m: &'a Module,
    f: &'a Function,
    provider: &'a dyn WeightProvider,
    /// Weight-derived values.
    constant: HashSet<ValueId>,
    /// Evaluated weight-derived values.
    evaluated: HashMap<ValueId, Tensor>,
    /// Ops whose results alias their operand (skipped pure-view groups, ungrouped views).
    alias_ops: HashSet<OpId>,
}

impl FnCompiler<'_> {
    fn unsupported(&self, op: impl Into<String>, reason: impl Into<String>) -> CompileError {
        CompileError::Unsupported { function: self.f.name.clone(), op: op.into(), reason: reason.into() }
    }

    fn eval(&mut self, v: ValueId) -> Result<Tensor, CompileError> {
        if let Some(t) = self.evaluated.get(&v) {
            return Ok(t.clone());
        }
        // Iterative post-order, so long weight chains cannot overflow the stack.
        let mut stack = vec![(v, false)];
        while let Some((x, expanded)) = stack.pop() {
            if self.evaluated.contains_key(&x) {
                continue;
            }
            match &self.f.value(x).def {
                ValueDef::Param { .. } => {
                    return Err(self.unsupported(format!("{x}"), "internal: a weight-derived value reads an input"))
                }
                ValueDef::Weight { name } => {
                    let decl = self
                        .m
                        .weight_decl(name)
                        .ok_or_else(|| CompileError::Weight { name: name.clone(), reason: "not declared".into() })?;
                    let t = self
                        .provider
                        .load(decl)
                        .map_err(|e| CompileError::Weight { name: name.clone(), reason: e.to_string() })?;
                    self.evaluated.insert(x, t);
                }
                ValueDef::Result { op, .. } => {
                    let data = self.f.op(*op).ok_or_else(|| CompileError::Invalid(format!("{x}: no defining op")))?;
                    if !expanded {
                        stack.push((x, true));
                        for &o in &data.operands {
                            stack.push((o, false));
                        }
                        continue;
                    }
                    let args: Vec<&Tensor> = data
                        .operands
                        .iter()
                        .map(|o| self.evaluated.get(o))
                        .collect::<Option<_>>()
                        .ok_or_else(|| CompileError::Invalid(format!("{x}: operands not evaluated")))?;
                    let tys: Vec<_> = data.results.iter().map(|r| self.f.ty(*r)).collect();
                    let outs = eval_single_op(&data.op, &args, &tys).map_err(|e| CompileError::Weight {
                        name: format!("{x}"),
                        reason: format!("evaluating `{}`: {e}", data.op.name()),
                    })?;
                    for (r, t) in data.results.iter().zip(outs) {
                        self.evaluated.insert(*r, t);
                    }
                    if !self.evaluated.contains_key(&x) {
                        return Err(CompileError::Invalid(format!("{x}: op produced too few results")));
                    }
                }
            }
        }
        self.evaluated.get(&v).cloned().ok_or_else(|| CompileError::Invalid(format!("{v}: not evaluated")))
    }

    /// `v` evaluated by the interpreter, as artifact bytes.
    fn eval_to_bytes(&mut self, v: ValueId) -> Result<ByteTensor, CompileError> {
        let t = self.eval(v)?;
        let bytes =
            t.to_le_bytes().map_err(|e| CompileError::Weight { name: format!("{v}"), reason: e.to_string() })?;
        Ok(ByteTensor { dtype: t.dtype, shape: t.shape, bytes })
    }

    /// `v` as artifact bytes: the chain of byte-evaluable ops above it ([`weight_eval::byte_op`])
    /// applied to the bytes of what they start from — a weight whose stored bytes are exact,
    /// or anything else evaluated by the interpreter. Same bytes as [`Self::eval_to_bytes`].
    fn eval_bytes(&mut self, v: ValueId) -> Result<ByteTensor, CompileError> {
        let f = self.f;
        let declared_shape = |x: ValueId| -> Option<Vec<usize>> {
            f.ty(x).fixed_shape()?.iter().map(|&d| usize::try_from(d).ok()).collect()
        };
        // Walk down through byte-evaluable ops, remembering each (result, op, shape).
        let mut chain: Vec<(ValueId, &str, weight_eval::ByteOp, Vec<usize>)> = Vec::new();
        let mut x = v;
        while let ValueDef::Result { op, index: 0 } = &f.value(x).def {
            let Some(data) = f.op(*op) else { break };
            let Some(&src) = data.operands.first() else { break };
            let (Some(byte_op), Some(shape)) =
                (weight_eval::byte_op(&data.op, f.ty(src).dtype, f.ty(src).shape.len()), declared_shape(x))
            else {
                break;
            };
            if data.results.len() != 1 || f.ty(x).dtype != f.ty(src).dtype {
                break;
            }
            chain.push((x, data.op.name(), byte_op, shape));
            x = src;
        }
        let mut t = match &f.value(x).def {
            ValueDef::Weight { name } if weight_eval::bytes_are_exact(f.ty(x).dtype) => {
                let decl = self
                    .m
                    .weight_decl(name)
                    .ok_or_else(|| CompileError::Weight { name: name.clone(), reason: "not declared".into() })?;
                let weight_err = |e: WeightError| CompileError::Weight { name: name.clone(), reason: e.to_string() };
                let shape = static_shape(decl).map_err(weight_err)?;
                let bytes = self.provider.load_le_bytes(decl).map_err(weight_err)?;
                ByteTensor { dtype: decl.ty.dtype, shape, bytes }
            }
            _ => self.eval_to_bytes(x)?,
        };
        if t.dtype != f.ty(x).dtype && !chain.is_empty() {
            return Err(CompileError::Invalid(format!("{x}: evaluated as {}, declared {}", t.dtype, f.ty(x))));
        }
        for (r, op_name, byte_op, shape) in chain.into_iter().rev() {
            t = weight_eval::apply(&byte_op, t, &shape).map_err(|reason| CompileError::Weight {
                name: format!("{r}"),
                reason: format!("evaluating `{op_name}`: {reason}"),
            })?;
        }
        Ok(t)
    }

    /// A description of how `v` is computed from weights — ops with their attributes and
    /// result types down to weight names — equal for equal derivations in any function.
    fn derivation(&self, v: ValueId) -> Result<String, CompileError> {
        let f = self.f;
        Ok(match &f.value(v).def {
            ValueDef::Weight { name } => format!("weight {name:?}"),
            ValueDef::Result { op, index } => {
                let data = f.op(*op).ok_or_else(|| CompileError::Invalid(format!("{v}: no defining op")))?;
                let operands =
                    data.operands.iter().map(|&o| self.derivation(o)).collect::<Result<Vec<_>, _>>()?.join(", ");
                format!("{:?}#{index}: {} ({operands})", data.op, f.ty(v))
            }
            ValueDef::Param { .. } => return Err(CompileError::Invalid(format!("{v}: an input is not a weight"))),
        })
    }

    /// Follows aliasing view ops back to the value that owns the bytes.
    fn storage_of(&self, mut v: ValueId) -> ValueId {
        loop {
            let ValueDef::Result { op, .. } = &self.f.value(v).def else { return v };
            if !self.alias_ops.contains(op) {
                return v;
            }
            match self.f.op(*op).and_then(|d| d.operands.first()) {
                Some(&src) if self.f.ty(src).dtype == self.f.ty(v).dtype => v = src,
                _ => return v,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_function(
    m: &Module,
    f: &Function,
    provider: &dyn WeightProvider,
    options: &CompileOptions,
    isa: &dyn TargetIsa,
    b: &mut ArtifactBuilder,
    weight_index: &mut HashMap<String, u32>,
    times: &mut PhaseTimes,
) -> Result<(), CompileError> {
    let mut start = Instant::now();
    let order = f.op_order().map_err(|e| CompileError::Invalid(e.to_string()))?;
    let mut c =
        FnCompiler { m, f, provider, constant: HashSet::new(), evaluated: HashMap::new(), alias_ops: HashSet::new() };
    let is_const = |constant: &HashSet<ValueId>, v: ValueId| match &f.value(v).def {
        ValueDef::Param { .. } => false,
        ValueDef::Weight { .. } => true,
        ValueDef::Result { .. } => constant.contains(&v),
    };
    for &o in &order {
        let Some(d) = f.op(o) else { continue };
        // A value of symbolic shape (`expand` of a constant to `?seq`) depends on the inputs'
        // dims, so it is computed at run time like any other.
        let static_results = d.results.iter().all(|r| f.ty(*r).shape.iter().all(|dm| dm.as_fixed().is_some()));
        if static_results && d.operands.iter().all(|&v| is_const(&c.constant, v)) {
            c.constant.extend(d.results.iter().copied());
        }
    }

    // Sizes that depend on input values (not on input dims) have no kernel; say which op
    // makes one, and how a bound can decide it.
    for &o in &order {
        let Some(d) = f.op(o) else { continue };
        if d.results.iter().all(|r| c.constant.contains(r)) {
            continue;
        }
        if let Some(r) = d.results.iter().find(|r| f.ty(**r).shape.iter().any(Dim::is_unknown)) {
            return Err(c.unsupported(
                d.op.name(),
                format!(
                    "a dim is unknown (`?`) in its result {}: the size depends on values the compiler \
                     cannot see; when symbol bounds decide it (e.g. `min(seq, 64)`), give them with \
                     `--max-dim NAME=N` (`CompileOptions::dim_bounds`)",
                    f.ty(*r)
                ),
            ));
        }
    }

    // Groups: members in op order; pure-view groups alias instead of running a kernel.
    let mut members: BTreeMap<u32, Vec<OpId>> = BTreeMap::new();
    let mut solo: BTreeMap<u32, OpId> = BTreeMap::new();
    for &o in &order {
        let Some(d) = f.op(o) else { continue };
        match f.group(o) {
            Some(g) => members.entry(g).or_default().push(o),
            None if d.results.iter().all(|r| c.constant.contains(r)) => {}
            None if is_view(&d.op) => {
                c.alias_ops.insert(o);
            }
            // Left out of every group (e.g. an `expand` of a constant to a symbolic shape,
            // which the grouping pass takes for weight-derived): a one-op kernel of its own.
            None => {
                let g = SOLO_GROUP_BASE + solo.len() as u32;
                solo.insert(g, o);
                members.insert(g, vec![o]);
            }
        }
    }
    let mut views_only: BTreeSet<u32> = BTreeSet::new();
    for (g, ops) in &members {
        if ops.iter().all(|o| f.op(*o).is_some_and(|d| is_view(&d.op))) {
            views_only.insert(*g);
            c.alias_ops.extend(ops.iter().copied());
        }
    }
    let mut lowered = lower_function(f).map_err(|e| CompileError::Invalid(e.to_string()))?;
    for (&g, &o) in &solo {
        lowered.push((g, lower_ops(f, &[o], g, &format!("{}_op{}", f.name, g - SOLO_GROUP_BASE))));
    }
    start = times.lap("lower", start);
    let mut kernels: BTreeMap<u32, LoweredGroup> = BTreeMap::new();
    for (g, r) in lowered {
        if views_only.contains(&g) {
            continue;
        }
        match r {
            Ok(l) => {
                kernels.insert(g, l);
            }
            Err(source) => {
                let ops: Vec<String> = members
                    .get(&g)
                    .map(|os| os.iter().filter_map(|o| f.op(*o)).map(|d| d.op.name().to_string()).collect())
                    .unwrap_or_default();
                return Err(CompileError::UnsupportedGroup {
                    function: f.name.clone(),
                    group: g,
                    ops: ops.join(", "),
                    source,
                });
            }
        }
    }

    // Group dependency order (smallest ready group id first).
    let mut producer_group: HashMap<ValueId, u32> = HashMap::new();
    for (g, ops) in &members {
        for o in ops {
            if let Some(d) = f.op(*o) {
                for r in &d.results {
                    producer_group.insert(*r, *g);
                }
            }
        }
    }
    let mut deps: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for (g, ops) in &members {
        let e = deps.entry(*g).or_default();
        for o in ops {
            for v in f.op(*o).map(|d| d.operands.as_slice()).unwrap_or(&[]) {
                // Through aliasing views outside groups too.
                let mut stack = vec![*v];
                let mut seen = HashSet::new();
                while let Some(x) = stack.pop() {
                    if !seen.insert(x) {
                        continue;
                    }
                    if let Some(pg) = producer_group.get(&x) {
                        if pg != g {
                            e.insert(*pg);
                        }
                    } else if let ValueDef::Result { op, .. } = &f.value(x).def {
                        if c.alias_ops.contains(op) {
                            stack.extend(f.op(*op).map(|d| d.operands.clone()).unwrap_or_default());
                        }
                    }
                }
            }
        }
    }
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let mut sched: Vec<u32> = Vec::new();
    while done.len() < deps.len() {
        let next =
            deps.iter().find(|(g, ds)| !done.contains(*g) && ds.iter().all(|d| done.contains(d))).map(|(g, _)| *g);
        let Some(g) = next else {
            return Err(CompileError::Invalid(format!("@{}: fusion groups depend on each other cyclically", f.name)));
        };
        done.insert(g);
        sched.push(g);
    }

    // Signature.
    let sig = |name: &str, v: ValueId| -> Result<TensorSig, CompileError> {
        let ty = f.ty(v);
        let dtype = rt_dtype(ty.dtype).filter(|d| d.is_plain()).ok_or_else(|| {
            c.unsupported(name, format!("entry-point tensors of dtype {} are not supported", ty.dtype))
        })?;
        let dims = ty
            .shape
            .iter()
            .map(|d| dim_poly(d).ok_or_else(|| c.unsupported(name, "a dim of unknown size (`?`) in the signature")))
            .collect::<Result<_, _>>()?;
        Ok(TensorSig { name: name.to_string(), dtype, dims, range: None })
    };
    let ranges = index_input_ranges(f, &order);
    let inputs = f
        .params()
        .iter()
        .map(|(n, v)| Ok(TensorSig { range: ranges.get(v).copied(), ..sig(n, *v)? }))
        .collect::<Result<Vec<_>, CompileError>>()?;
    let outputs = f.outputs().iter().map(|(n, v)| sig(n, *v)).collect::<Result<Vec<_>, _>>()?;
    let bindable: BTreeSet<String> =
        inputs.iter().flat_map(|s| s.dims.iter().filter_map(|d| d.as_symbol().map(str::to_string))).collect();

    // Bucket: every symbol at its bound.
    let bucket = symbol_bounds(m, f, options);
    if let Some(s) = bucket.keys().find(|s| !bindable.contains(*s)) {
        return Err(c.unsupported(format!("?{s}"), "the symbol is not a plain dim of any input"));
    }
    // Op times for the planner: a group runs as one step (everything it reads and writes is
    // live at once); ungrouped ops (views, constants) at their latest producer's step.
    let step_of: HashMap<u32, usize> = sched.iter().enumerate().map(|(i, g)| (*g, i)).collect();
    let mut time: HashMap<OpId, usize> = HashMap::new();
    for &o in &order {
        let Some(d) = f.op(o) else { continue };
        let group = f.group(o).or_else(|| solo.iter().find(|(_, so)| **so == o).map(|(g, _)| *g));
        let t = match group.and_then(|g| step_of.get(&g)) {
            Some(t) => *t,
            None => d
                .operands
                .iter()
                .filter_map(|v| match &f.value(*v).def {
                    ValueDef::Result { op, .. } => time.get(op).copied(),
                    _ => None,
                })
                .max()
                .unwrap_or(0),
        };
        time.insert(o, t);
    }
    let plan = plan_function_at(m, f, &bucket, &time)
        .and_then(|p| p.verify().map(|()| p))
        .map_err(|reason| CompileError::MemoryPlan { function: f.name.clone(), reason })?;
    start = times.lap("schedule+plan", start);

    // Outputs own their storage; an output that is an input, a constant, or another
    // output's storage is filled by a copy kernel after everything else ran.
    let mut output_of: HashMap<ValueId, u32> = HashMap::new();
    let mut copies: Vec<(u32, ValueId, Binding)> = Vec::new();
    for (i, (_, v)) in f.outputs().iter().enumerate() {
        let s = c.storage_of(*v);
        let produced = producer_group.get(&s).is_some_and(|g| kernels.contains_key(g));
        if produced && !output_of.contains_key(&s) {
            output_of.insert(s, i as u32);
        } else {
            copies.push((i as u32, *v, Binding::Input { index: u32::MAX }));
        }
    }
    for (i, v, src) in &mut copies {
        let s = c.storage_of(*v);
        *src = if let Some(first) = output_of.get(&s) {
            Binding::Output { index: *first }
        } else if let ValueDef::Param { index } = f.value(s).def {
            Binding::Input { index }
        } else if c.constant.contains(&s) || matches!(f.value(s).def, ValueDef::Weight { .. }) {
            Binding::Weight { index: weight_binding(&mut c, s, b, weight_index, options.interpret_weights)? }
        } else {
            let name = &f.outputs()[*i as usize].0;
            return Err(c.unsupported(format!("output `{name}`"), "the output's storage is not produced by a kernel"));
        };
    }

    let mut steps = Vec::new();
    options.progress.report(CompileProgress::Function { function: &f.name, groups: sched.len() });
    for g in sched {
        options.progress.report(CompileProgress::Group);
        let Some(l) = kernels.get(&g) else { continue };
        if l.kernel.buffers.is_empty() {
            continue;
        }
        let mut bindings = Vec::new();
        for (v, bp) in l.buffer_values.iter().zip(&l.kernel.buffers) {
            // A temp is a value internal to the group: the plan gives it a slot live for
            // exactly this step, and every parallel iteration uses its own rows of it.
            let binding = if bp.role == BufferRole::Temp {
                arena_binding(&plan, f, *v)?
            } else if c.constant.contains(v) || matches!(f.value(*v).def, ValueDef::Weight { .. }) {
                start = times.lap("schedule+plan", start);
                let index = weight_binding(&mut c, *v, b, weight_index, options.interpret_weights)?;
                start = times.lap("weights", start);
                Binding::Weight { index }
            } else {
                let s = c.storage_of(*v);
                if let Some(i) = output_of.get(&s) {
                    Binding::Output { index: *i }
                } else if let ValueDef::Param { index } = f.value(s).def {
                    if bp.role != BufferRole::Input {
                        return Err(c.unsupported(&l.kernel.name, "a kernel writes a function input"));
                    }
                    Binding::Input { index }
                } else {
                    arena_binding(&plan, f, *v)?
                }
            };
            bindings.push(binding);
        }
        let k = &l.kernel;
        start = times.lap("schedule+plan", start);
        let code = compile_kernel(k, isa)?;
        start = times.lap("cranelift", start);
        let kernel = b.add_kernel(&k.name, &code);
        let dims = k.dims.iter().map(|d| Poly::symbol(d)).collect();
        let extent = size_poly(&k.parallel.extent, &k.dims)
            .ok_or_else(|| CompileError::Invalid(format!("kernel `{}`: extent uses an unknown dim", k.name)))?;
        steps.push(Step { kernel, bindings, dims, extent, grain: u64::from(k.parallel.tile.max(1)) });
    }

    for (i, v, src) in copies {
        let ty = f.ty(v);
        let name = format!("{}_copy_out{i}", f.name);
        let k = copy_kernel(&name, ty.dtype, &ty.shape).map_err(|e| CompileError::UnsupportedGroup {
            function: f.name.clone(),
            group: u32::MAX,
            ops: format!("copy to output `{}`", f.outputs()[i as usize].0),
            source: e,
        })?;
        let code = compile_kernel(&k, isa)?;
        let kernel = b.add_kernel(&k.name, &code);
        let dims = k.dims.iter().map(|d| Poly::symbol(d)).collect();
        let extent = size_poly(&k.parallel.extent, &k.dims)
            .ok_or_else(|| CompileError::Invalid(format!("kernel `{}`: extent uses an unknown dim", k.name)))?;
        let bindings = vec![src, Binding::Output { index: i }];
        steps.push(Step { kernel, bindings, dims, extent, grain: u64::from(k.parallel.tile.max(1)) });
    }

    let arena = i64::try_from(plan.peak_bytes)
        .map_err(|_| CompileError::MemoryPlan { function: f.name.clone(), reason: "arena size overflows".into() })?;
    let bounds: Vec<(String, i64)> = bucket.iter().map(|(s, v)| (s.clone(), *v)).collect();
    let text: Vec<String> = bounds.iter().map(|(s, v)| format!("{s}<={v}")).collect();
    b.metadata(&format!("memory_plan.{}.bounds", f.name), &text.join(","));
    times.lap("schedule+plan", start);
    b.add_entry_point(
        EntryPoint { name: f.name.clone(), inputs, outputs },
        steps,
        vec![Bucket { bounds, arena_size: Poly::constant(arena) }],
    );
    Ok(())
}

/// The arena slot the memory plan gave `v`.
fn arena_binding(plan: &MemoryPlan, f: &Function, v: ValueId) -> Result<Binding, CompileError> {
    let buf = plan.buffer(v).ok_or_else(|| CompileError::MemoryPlan {
        function: f.name.clone(),
        reason: format!("{v} has no arena buffer"),
    })?;
    let off = i64::try_from(buf.offset)
        .map_err(|_| CompileError::MemoryPlan { function: f.name.clone(), reason: "arena offset overflows".into() })?;
    Ok(Binding::Arena { offset: Poly::constant(off) })
}

/// The artifact weight index of weight-derived `v`, adding it on first use. `weight_index` is
/// keyed by [`FnCompiler::derivation`], so every function reading the same derived value (the
/// same ops on the same weights) shares one weight, evaluated once.
fn weight_binding(
    c: &mut FnCompiler<'_>,
    v: ValueId,
    b: &mut ArtifactBuilder,
    weight_index: &mut HashMap<String, u32>,
    interpret: bool,
) -> Result<u32, CompileError> {
    let key = c.derivation(v)?;
    if let Some(i) = weight_index.get(&key) {
        return Ok(*i);
    }
    let name = match &c.f.value(v).def {
        ValueDef::Weight { name } => name.clone(),
        ValueDef::Result { op, .. } => {
            let op = c.f.op(*op).map_or("?", |d| d.op.name());
            format!("{}/{op}{v}", c.f.name)
        }
        ValueDef::Param { .. } => return Err(CompileError::Invalid(format!("{v}: an input is not a weight"))),
    };
    let t = if interpret { c.eval_to_bytes(v)? } else { c.eval_bytes(v)? };
    // Intermediate tensors are not needed again: derived values are shared through
    // `weight_index`, and holding them would keep an f64 copy of every weight alive.
    c.evaluated.clear();
    let dtype = rt_dtype(t.dtype).ok_or_else(|| CompileError::Weight {
        name: name.clone(),
        reason: format!("dtype {} has no artifact form", t.dtype),
    })?;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let i = b.add_weight_vec(&name, dtype, &shape, t.bytes)?;
    weight_index.insert(key, i);
    Ok(i)
}

/// Relocation-free machine code of `k` (launched in [`LaunchUnits::Elements`]).
pub fn compile_kernel(k: &Kernel, isa: &dyn TargetIsa) -> Result<Vec<u8>, CompileError> {
    let backend = |reason: String| CompileError::Backend { kernel: k.name.clone(), reason };
    let mut ctx = Context::new();
    ctx.func.signature = kernel_signature(isa);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        Translator::translate_launch(&mut fb, k, isa, LaunchUnits::Elements).map_err(|e| backend(e.to_string()))?;
        fb.finalize(isa.frontend_config());
    }
    cranelift_codegen::verify_function(&ctx.func, isa).map_err(|e| backend(format!("failed the verifier: {e}")))?;
    let code = ctx.compile(isa, &mut ControlPlane::default()).map_err(|e| backend(format!("{:?}", e.inner)))?;
    let relocs = code.buffer.relocs().len();
    if relocs > 0 {
        // The ABI promises machine code that needs no relocation at load time.
        return Err(backend(format!("needs {relocs} relocation(s)")));
    }
    Ok(code.code_buffer().to_vec())
}
