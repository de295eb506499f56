//! The compile driver: a ModelIR [`Module`] plus its weights → artifact bytes
//! (`ferrumc_runtime::artifact`), for the host CPU.
//!
//! Steps ([`compile_module`]):
//! 1. the `-O` pass pipeline (with `quantize-weights` when asked), then `fusion-groups` and
//!    `memory-plan`, on a clone of the module;
//! 2. per function (= entry point): every fusion group is lowered ([`crate::lower`]); groups of
//!    pure views (`reshape`, `squeeze`, `unsqueeze`, `identity`) get no kernel, their results
//!    alias their operand's storage. Ops outside groups must be weight-derived (evaluated here)
//!    — anything else, and any group lowering refuses, is a [`CompileError::Unsupported`]
//!    naming the op;
//! 3. every weight-derived value a kernel reads (transposes, packing, quantization) is
//!    evaluated once with the reference interpreter (`interp::eval_single_op`, op by op) and
//!    stored as an artifact weight; plain weights are read through the [`WeightProvider`];
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
use crate::CodegenError;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use ferrumc_ir::dim::Dim;
use ferrumc_ir::interp::eval_single_op;
use ferrumc_ir::weights::WeightProvider;
use ferrumc_ir::{DType, Function, Module, Op, OpId, Tensor, ValueDef, ValueId};
use ferrumc_passes::memory_plan::{default_buckets, function_symbols, plan_function_at, MemoryPlan};
use ferrumc_passes::{PassManager, PassOptions, QuantScheme};
use ferrumc_runtime::artifact::{self, ArtifactBuilder, Binding, Bucket, EntryPoint, Poly, Step, TensorSig, Term};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The bound of symbols other than `seq` and `past` when [`CompileOptions::dim_bounds`] does
/// not name them (see the module doc).
pub const DEFAULT_DIM_BOUND: i64 = 64;

/// Pseudo group ids of ops outside every fusion group that run as kernels of their own.
const SOLO_GROUP_BASE: u32 = 1 << 30;

/// What to compile with.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// The `-O` level (0..=3).
    pub level: u8,
    /// Weight quantization (`quantize-weights`), if any.
    pub quantize: Option<QuantScheme>,
    /// Largest value per symbol the artifact accepts (overrides the default bucket rule).
    pub dim_bounds: BTreeMap<String, i64>,
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
    /// Malformed input module.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// The artifact builder refused the result.
    #[error("artifact: {0}")]
    Artifact(#[from] ferrumc_runtime::error::RuntimeError),
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
    let m = optimize_module(m, options)?;

    let isa = host_isa().map_err(|e| CompileError::Backend { kernel: "-".into(), reason: e.to_string() })?;
    let mut b = ArtifactBuilder::new(&isa.triple().to_string());
    b.ferrumc_version(env!("CARGO_PKG_VERSION"));
    for f in cpu_features(&*isa) {
        b.require_cpu_feature(&f);
    }
    b.metadata("compile.opt_level", &options.level.to_string());
    b.metadata("compile.quantize", &options.quantize.as_ref().map_or("none".to_string(), |q| q.to_string()));
    b.metadata("model.name", &m.name);

    let mut weight_index: BTreeMap<String, u32> = BTreeMap::new();
    for f in &m.functions {
        compile_function(&m, f, weights, options, &*isa, &mut b, &mut weight_index)?;
    }
    Ok(b.build()?)
}

/// Step 1 of [`compile_module`]: the optimized, grouped clone of `m` the kernels are made
/// from (also the right oracle for the interpreter when weights are quantized).
pub fn optimize_module(m: &Module, options: &CompileOptions) -> Result<Module, CompileError> {
    let mut m = m.clone();
    let popts = PassOptions { quantize: options.quantize, ..PassOptions::default() };
    PassManager::for_level(options.level, &["fusion-groups", "memory-plan"], popts)
        .map_err(|e| CompileError::Pipeline(e.to_string()))?
        .run(&mut m)
        .map_err(|e| CompileError::Pipeline(e.to_string()))?;
    Ok(m)
}

/// The host features the ISA's code may use, spelled as `is_x86_feature_detected!` names.
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

fn compile_function(
    m: &Module,
    f: &Function,
    provider: &dyn WeightProvider,
    options: &CompileOptions,
    isa: &dyn TargetIsa,
    b: &mut ArtifactBuilder,
    weight_index: &mut BTreeMap<String, u32>,
) -> Result<(), CompileError> {
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
        Ok(TensorSig { name: name.to_string(), dtype, dims })
    };
    let inputs = f.params().iter().map(|(n, v)| sig(n, *v)).collect::<Result<Vec<_>, _>>()?;
    let outputs = f.outputs().iter().map(|(n, v)| sig(n, *v)).collect::<Result<Vec<_>, _>>()?;
    let bindable: BTreeSet<String> =
        inputs.iter().flat_map(|s| s.dims.iter().filter_map(|d| d.as_symbol().map(str::to_string))).collect();

    // Bucket: every symbol at its bound.
    let defaults = default_buckets(m, f);
    let mut bucket: BTreeMap<String, i64> = BTreeMap::new();
    for s in function_symbols(f) {
        if !bindable.contains(&s) {
            return Err(c.unsupported(format!("?{s}"), "the symbol is not a plain dim of any input"));
        }
        let default = match s.as_str() {
            "seq" | "past" => defaults.iter().filter_map(|b| b.get(&s).copied()).max().unwrap_or(DEFAULT_DIM_BOUND),
            _ => DEFAULT_DIM_BOUND,
        };
        bucket.insert(s.clone(), options.dim_bounds.get(&s).copied().unwrap_or(default));
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
            Binding::Weight { index: weight_binding(&mut c, s, b, weight_index)? }
        } else {
            let name = &f.outputs()[*i as usize].0;
            return Err(c.unsupported(format!("output `{name}`"), "the output's storage is not produced by a kernel"));
        };
    }

    let mut steps = Vec::new();
    for g in sched {
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
                Binding::Weight { index: weight_binding(&mut c, *v, b, weight_index)? }
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
        let code = compile_kernel(k, isa)?;
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

/// The artifact weight index of weight-derived `v`, adding it on first use.
fn weight_binding(
    c: &mut FnCompiler<'_>,
    v: ValueId,
    b: &mut ArtifactBuilder,
    weight_index: &mut BTreeMap<String, u32>,
) -> Result<u32, CompileError> {
    let name = match &c.f.value(v).def {
        ValueDef::Weight { name } => name.clone(),
        ValueDef::Result { op, .. } => {
            let op = c.f.op(*op).map_or("?", |d| d.op.name());
            format!("{}/{op}{v}", c.f.name)
        }
        ValueDef::Param { .. } => return Err(CompileError::Invalid(format!("{v}: an input is not a weight"))),
    };
    if let Some(i) = weight_index.get(&name) {
        return Ok(*i);
    }
    let t = c.eval(v)?;
    let dtype = rt_dtype(t.dtype).ok_or_else(|| CompileError::Weight {
        name: name.clone(),
        reason: format!("dtype {} has no artifact form", t.dtype),
    })?;
    let bytes = t.to_le_bytes().map_err(|e| CompileError::Weight { name: name.clone(), reason: e.to_string() })?;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let i = b.add_weight(&name, dtype, &shape, &bytes)?;
    weight_index.insert(name, i);
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
