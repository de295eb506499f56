//! The reference interpreter: runs a function of a [`Module`] on concrete tensors and is
//! the oracle every compiled backend is checked against.
//!
//! Semantics are exactly the op docs of [`crate::op`]. Every float op computes in `f64`
//! and rounds each result to its dtype ([`round_float`](crate::tensor::round_float));
//! integer ops compute in `i64` (bool as 0/1) and wrap ([`wrap_int`](crate::tensor::wrap_int));
//! sums accumulate in `f64`. Fused ops (`attention`, `rms_norm`, `layer_norm`, …) round
//! only their results, not their internal steps.
//!
//! A run:
//! 1. checks the inputs against the function's params (names, dtypes, ranks, static dims)
//!    and binds symbolic dims (`?batch`) to the inputs' sizes;
//! 2. orders the ops topologically ([`Function::op_order`]; cycles are an error);
//! 3. evaluates each op, loading weights through the [`WeightProvider`] on first use
//!    (kept for the run), and compares each result's dtype and shape with its declared
//!    type evaluated under the bindings. A declared dim that is a plain symbol not bound
//!    yet (a data-dependent size such as a `range` length) is bound by the first result
//!    that carries it;
//! 4. frees every intermediate value after its last use, and returns the outputs.
//!
//! Errors name the function, the op (as the text format would print it, `%3 = matmul`,
//! see [`Function::value_names`]) and the offending input or weight.
//!
//! Op families live in submodules: [`elementwise`], [`reduce`], [`linalg`],
//! [`shape_ops`], [`gather`], [`llm`] and [`sample`].

mod common;
pub mod elementwise;
pub mod gather;
pub mod linalg;
pub mod llm;
pub mod reduce;
pub mod sample;
pub mod shape_ops;

pub use common::MAX_ELEMENTS;
pub use elementwise::erf;

use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::{Function, Module, ValueDef, ValueId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use crate::weights::{WeightError, WeightProvider};
use common::OpResult;
use std::collections::{HashMap, HashSet};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("module has no function `{function}` (it has: {available})")]
    NoFunction { function: String, available: String },
    #[error("function `{function}`: missing input `{input}`")]
    MissingInput { function: String, input: String },
    #[error("function `{function}`: unexpected input `{input}` (the function's inputs are: {expected})")]
    ExtraInput { function: String, input: String, expected: String },
    #[error("function `{function}`: input `{input}` is given twice")]
    DuplicateInput { function: String, input: String },
    #[error("function `{function}`: input `{input}`: {message}")]
    Input { function: String, input: String, message: String },
    #[error(
        "function `{function}`: symbol `?{symbol}` is {first_value} from {first} but {second_value} from {second}"
    )]
    SymbolConflict {
        function: String,
        symbol: String,
        first: String,
        first_value: i64,
        second: String,
        second_value: i64,
    },
    #[error("function `{function}`: {message}")]
    Cycle { function: String, message: String },
    #[error("function `{function}`: weight `@{weight}`: {message}")]
    WeightDecl { function: String, weight: String, message: String },
    #[error("function `{function}`: {source}")]
    Weight { function: String, weight: String, source: Box<WeightError> },
    #[error("function `{function}`: `{op}`: {message}")]
    Op { function: String, op: String, message: String },
    #[error("function `{function}`: output `{output}`: {message}")]
    Output { function: String, output: String, message: String },
}

/// What an op implementation may read besides its operands: its declared result types
/// and the symbol bindings, for ops that take their shape from the result type.
#[derive(Debug)]
pub(crate) struct OpCtx<'a> {
    pub(crate) result_types: Vec<&'a TensorType>,
    pub(crate) bindings: &'a HashMap<String, i64>,
}

impl OpCtx<'_> {
    pub(crate) fn n_results(&self) -> usize {
        self.result_types.len()
    }

    fn result_type(&self, i: usize) -> OpResult<&TensorType> {
        self.result_types
            .get(i)
            .copied()
            .ok_or_else(|| format!("the op needs a result #{i} but declares only {}", self.n_results()))
    }

    pub(crate) fn result_dtype(&self, i: usize) -> OpResult<DType> {
        Ok(self.result_type(i)?.dtype)
    }

    /// Evaluate one declared dim of result `i`.
    pub(crate) fn result_dim(&self, i: usize, d: usize) -> OpResult<usize> {
        let ty = self.result_type(i)?;
        let dim = ty.shape.get(d).ok_or_else(|| format!("declared result type {ty} has no dim {d}"))?;
        self.eval_dim(ty, dim)
    }

    /// Evaluate the whole declared shape of result `i` (for ops that take their shape
    /// from the result type).
    pub(crate) fn result_shape(&self, i: usize) -> OpResult<Vec<usize>> {
        let ty = self.result_type(i)?;
        ty.shape.iter().map(|d| self.eval_dim(ty, d)).collect()
    }

    fn eval_dim(&self, ty: &TensorType, dim: &Dim) -> OpResult<usize> {
        if dim.is_unknown() {
            return Err(format!(
                "this op takes its shape from its declared result type {ty}, which has an unknown dim `?`"
            ));
        }
        let v = dim.eval(self.bindings).ok_or_else(|| {
            let unbound: Vec<String> = dim
                .symbols()
                .into_iter()
                .filter(|s| !self.bindings.contains_key(*s))
                .map(|s| format!("?{s}"))
                .collect();
            if unbound.is_empty() {
                format!("dim `{dim}` of the declared result type {ty} overflows")
            } else {
                format!(
                    "this op takes its shape from its declared result type {ty}, but {} {} not bound by the inputs",
                    unbound.join(", "),
                    if unbound.len() == 1 { "is" } else { "are" }
                )
            }
        })?;
        usize::try_from(v).map_err(|_| format!("dim `{dim}` of the declared result type {ty} evaluates to {v}"))
    }
}

/// Run `function` of `m` on `inputs` (by parameter name), loading weights from `weights`.
/// Returns the function's outputs in order, with their names.
pub fn run_function(
    m: &Module,
    function: &str,
    inputs: &[(String, Tensor)],
    weights: &dyn WeightProvider,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    let f = m.function(function).ok_or_else(|| InterpError::NoFunction {
        function: function.to_string(),
        available: if m.functions.is_empty() {
            "no functions".into()
        } else {
            m.functions.iter().map(|f| format!("`{}`", f.name)).collect::<Vec<_>>().join(", ")
        },
    })?;
    Run::new(m, f, weights).run(inputs)
}

/// State of one run.
struct Run<'a> {
    module: &'a Module,
    f: &'a Function,
    provider: &'a dyn WeightProvider,
    names: HashMap<ValueId, String>,
    bindings: HashMap<String, i64>,
    /// Where each binding came from (an input name or a result), for conflict messages.
    origins: HashMap<String, String>,
    env: HashMap<ValueId, Tensor>,
    weights: HashMap<String, Tensor>,
}

impl<'a> Run<'a> {
    fn new(module: &'a Module, f: &'a Function, provider: &'a dyn WeightProvider) -> Run<'a> {
        Run {
            module,
            f,
            provider,
            names: f.value_names(),
            bindings: HashMap::new(),
            origins: HashMap::new(),
            env: HashMap::new(),
            weights: HashMap::new(),
        }
    }

    fn fname(&self) -> String {
        self.f.name.clone()
    }

    fn value_name(&self, v: ValueId) -> String {
        self.names.get(&v).cloned().unwrap_or_else(|| v.to_string())
    }

    /// `%3 = matmul`, `%4, %5 = topk`.
    fn op_label(&self, results: &[ValueId], op: &Op) -> String {
        if results.is_empty() {
            return op.name().to_string();
        }
        let names: Vec<String> = results.iter().map(|r| self.value_name(*r)).collect();
        format!("{} = {}", names.join(", "), op.name())
    }

    fn run(mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, InterpError> {
        let f: &'a Function = self.f;
        let order = f.op_order().map_err(|cycle| {
            let ops: Vec<String> = cycle
                .ops
                .iter()
                .take(8)
                .filter_map(|o| self.f.op(*o).map(|d| format!("`{}`", self.op_label(&d.results, &d.op))))
                .collect();
            InterpError::Cycle {
                function: self.fname(),
                message: format!("the graph has a cycle through {} op(s): {}", cycle.ops.len(), ops.join(", ")),
            }
        })?;
        self.bind_inputs(inputs)?;

        // Position of the last op reading each value; outputs are never freed.
        let mut last_use: HashMap<ValueId, usize> = HashMap::new();
        for (pos, id) in order.iter().enumerate() {
            if let Some(data) = self.f.op(*id) {
                for v in &data.operands {
                    last_use.insert(*v, pos);
                }
            }
        }
        let outputs: HashSet<ValueId> = self.f.outputs().iter().map(|(_, v)| *v).collect();

        for (pos, id) in order.iter().enumerate() {
            let Some(data) = f.op(*id) else { continue };
            let label = self.op_label(&data.results, &data.op);
            let op_err = |message: String| InterpError::Op { function: f.name.clone(), op: label.clone(), message };
            let (lo, hi) = data.op.operand_range();
            if data.operands.len() < lo || data.operands.len() > hi {
                return Err(op_err(format!("has {} operands, expected {}", data.operands.len(), range_text(lo, hi))));
            }
            let (lo, hi) = data.op.result_range();
            if data.results.len() < lo || data.results.len() > hi {
                return Err(op_err(format!("has {} results, expected {}", data.results.len(), range_text(lo, hi))));
            }
            // Make sure every operand is available (loading weights lazily).
            for (slot, v) in data.operands.iter().enumerate() {
                self.ensure_value(*v, slot, &label)?;
            }
            let mut result_types = Vec::with_capacity(data.results.len());
            for r in &data.results {
                let ty = f
                    .try_value(*r)
                    .map(|d| &d.ty)
                    .ok_or_else(|| op_err("has a result the function never issued".into()))?;
                result_types.push(ty);
            }
            let results = {
                let args: Vec<&Tensor> = data.operands.iter().filter_map(|v| self.lookup(*v)).collect();
                if args.len() != data.operands.len() {
                    return Err(op_err("internal error: an operand vanished".into()));
                }
                let ctx = OpCtx { result_types: result_types.clone(), bindings: &self.bindings };
                eval_op(&data.op, &args, &ctx).map_err(op_err)?
            };
            if results.len() != data.results.len() {
                return Err(op_err(format!(
                    "internal error: produced {} results for {} declared",
                    results.len(),
                    data.results.len()
                )));
            }
            for (i, (t, ty)) in results.iter().zip(&result_types).enumerate() {
                self.check_result(t, ty, &self.value_name(data.results[i])).map_err(op_err)?;
            }
            // Free operands whose last use this was.
            for v in &data.operands {
                if last_use.get(v) == Some(&pos) && !outputs.contains(v) {
                    self.env.remove(v);
                }
            }
            for (r, t) in data.results.iter().zip(results) {
                if last_use.contains_key(r) || outputs.contains(r) {
                    self.env.insert(*r, t);
                }
            }
        }

        let mut out = Vec::with_capacity(self.f.outputs().len());
        for (name, v) in self.f.outputs() {
            if let Some(ValueDef::Weight { .. }) = self.f.try_value(*v).map(|d| &d.def) {
                self.ensure_value(*v, 0, "output").map_err(|e| match e {
                    InterpError::Op { message, .. } => {
                        InterpError::Output { function: self.fname(), output: name.clone(), message }
                    }
                    other => other,
                })?;
            }
            let t = self.lookup(*v).cloned().ok_or_else(|| InterpError::Output {
                function: self.fname(),
                output: name.clone(),
                message: format!("value {} was never computed (dangling or erased producer)", self.value_name(*v)),
            })?;
            out.push((name.clone(), t));
        }
        Ok(out)
    }

    fn lookup(&self, v: ValueId) -> Option<&Tensor> {
        match self.f.try_value(v).map(|d| &d.def) {
            Some(ValueDef::Weight { name }) => self.weights.get(name),
            Some(_) => self.env.get(&v),
            None => None,
        }
    }

    /// Load a weight operand if needed; error if an operand has no value.
    fn ensure_value(&mut self, v: ValueId, slot: usize, label: &str) -> Result<(), InterpError> {
        let Some(vd) = self.f.try_value(v) else {
            return Err(InterpError::Op {
                function: self.fname(),
                op: label.to_string(),
                message: format!("operand {slot} ({v}) is not a value of this function"),
            });
        };
        match &vd.def {
            ValueDef::Weight { name } => {
                if self.weights.contains_key(name) {
                    return Ok(());
                }
                let decl = self.module.weight_decl(name).ok_or_else(|| InterpError::WeightDecl {
                    function: self.fname(),
                    weight: name.clone(),
                    message: "the module declares no such weight".into(),
                })?;
                if decl.ty != vd.ty {
                    return Err(InterpError::WeightDecl {
                        function: self.fname(),
                        weight: name.clone(),
                        message: format!("used as {} but declared as {}", vd.ty, decl.ty),
                    });
                }
                let t = self.provider.load(decl).map_err(|source| InterpError::Weight {
                    function: self.fname(),
                    weight: name.clone(),
                    source: Box::new(source),
                })?;
                let decl_err =
                    |message: String| InterpError::WeightDecl { function: self.fname(), weight: name.clone(), message };
                let t = common::normalize(t).map_err(&decl_err)?;
                let shape_ok = decl.ty.fixed_shape().is_some_and(|s| {
                    s.len() == t.shape.len()
                        && s.iter().zip(&t.shape).all(|(a, b)| usize::try_from(*a).ok() == Some(*b))
                });
                if t.dtype != decl.ty.dtype || !shape_ok {
                    return Err(decl_err(format!(
                        "the provider returned {}{:?}, but the declaration is {}",
                        t.dtype, t.shape, decl.ty
                    )));
                }
                self.weights.insert(name.clone(), t);
                Ok(())
            }
            _ if self.env.contains_key(&v) => Ok(()),
            _ => Err(InterpError::Op {
                function: self.fname(),
                op: label.to_string(),
                message: format!(
                    "operand {slot} ({}) has no value (its producer was erased or is not part of this function)",
                    self.value_name(v)
                ),
            }),
        }
    }

    fn bind_inputs(&mut self, inputs: &[(String, Tensor)]) -> Result<(), InterpError> {
        let params = self.f.params();
        let mut seen: HashSet<&str> = HashSet::new();
        for (name, _) in inputs {
            if !seen.insert(name.as_str()) {
                return Err(InterpError::DuplicateInput { function: self.fname(), input: name.clone() });
            }
            if !params.iter().any(|(p, _)| p == name) {
                let expected = params.iter().map(|(p, _)| format!("`{p}`")).collect::<Vec<_>>().join(", ");
                return Err(InterpError::ExtraInput {
                    function: self.fname(),
                    input: name.clone(),
                    expected: if expected.is_empty() { "none".into() } else { expected },
                });
            }
        }
        // First pass: dtype, rank, static dims and plain-symbol bindings.
        let mut given: Vec<(&str, ValueId, &TensorType, Tensor)> = Vec::new();
        for (pname, v) in params {
            let (_, t) = inputs
                .iter()
                .find(|(n, _)| n == pname)
                .ok_or_else(|| InterpError::MissingInput { function: self.fname(), input: pname.clone() })?;
            let fname = self.fname();
            let in_err =
                |message: String| InterpError::Input { function: fname.clone(), input: pname.clone(), message };
            let ty = self.f.try_value(*v).map(|d| &d.ty).ok_or_else(|| in_err("parameter has no type".into()))?;
            if t.dtype != ty.dtype {
                return Err(in_err(format!("expected dtype {} (type {ty}), found {}", ty.dtype, t.dtype)));
            }
            if t.rank() != ty.rank() {
                return Err(in_err(format!("expected rank {} (type {ty}), found shape {:?}", ty.rank(), t.shape)));
            }
            let t = common::normalize(t.clone()).map_err(&in_err)?;
            for (i, (dim, &actual)) in ty.shape.iter().zip(&t.shape).enumerate() {
                let actual = i64::try_from(actual).map_err(|_| in_err(format!("dim {i} is too large")))?;
                if let Some(fixed) = dim.as_fixed() {
                    if fixed != actual {
                        return Err(in_err(format!(
                            "dim {i} must be {fixed} (type {ty}), found {actual} in shape {:?}",
                            t.shape
                        )));
                    }
                } else if let Some(sym) = dim.as_symbol() {
                    self.bind(sym, actual, format!("input `{pname}` (dim {i})"))?;
                }
            }
            given.push((pname.as_str(), *v, ty, t));
        }
        // Second pass: compound dims (`?a*?b`) must agree when evaluable.
        for (pname, v, ty, t) in given {
            for (i, (dim, &actual)) in ty.shape.iter().zip(&t.shape).enumerate() {
                if let Some(expected) = dim.eval(&self.bindings) {
                    if i64::try_from(actual).ok() != Some(expected) {
                        return Err(InterpError::Input {
                            function: self.fname(),
                            input: pname.to_string(),
                            message: format!("dim {i} is `{dim}` = {expected} under the bindings, found {actual}"),
                        });
                    }
                }
            }
            self.env.insert(v, t);
        }
        Ok(())
    }

    fn bind(&mut self, sym: &str, value: i64, origin: String) -> Result<(), InterpError> {
        match self.bindings.get(sym) {
            Some(&old) if old != value => Err(InterpError::SymbolConflict {
                function: self.fname(),
                symbol: sym.to_string(),
                first: self.origins.get(sym).cloned().unwrap_or_default(),
                first_value: old,
                second: origin,
                second_value: value,
            }),
            Some(_) => Ok(()),
            None => {
                self.bindings.insert(sym.to_string(), value);
                self.origins.insert(sym.to_string(), origin);
                Ok(())
            }
        }
    }

    /// Compare a computed result with its declared type; bind fresh plain symbols.
    fn check_result(&mut self, t: &Tensor, ty: &TensorType, name: &str) -> OpResult<()> {
        if common::numel(&t.shape)? != t.numel() {
            return Err(format!("internal error: result {name} of shape {:?} holds {} elements", t.shape, t.numel()));
        }
        if t.dtype != ty.dtype {
            return Err(format!("result {name} is declared {ty} but the op computes dtype {}", t.dtype));
        }
        if t.rank() != ty.rank() {
            return Err(format!("result {name} is declared {ty} but the op computes shape {:?}", t.shape));
        }
        for (dim, &actual) in ty.shape.iter().zip(&t.shape) {
            let actual_i = i64::try_from(actual).map_err(|_| format!("result {name} has a dim too large"))?;
            match dim.eval(&self.bindings) {
                Some(expected) if expected != actual_i => {
                    let shown: Vec<String> = ty
                        .shape
                        .iter()
                        .map(|d| d.eval(&self.bindings).map(|v| v.to_string()).unwrap_or_else(|| d.to_string()))
                        .collect();
                    return Err(format!(
                        "result {name} is declared {ty} (= [{}] under the bindings) but the op computes shape {:?}",
                        shown.join(", "),
                        t.shape
                    ));
                }
                Some(_) => {}
                None => {
                    if let Some(sym) = dim.as_symbol() {
                        if !self.bindings.contains_key(sym) {
                            self.bindings.insert(sym.to_string(), actual_i);
                            self.origins.insert(sym.to_string(), format!("result {name}"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn range_text(lo: usize, hi: usize) -> String {
    if hi == crate::op::VARIADIC {
        format!("at least {lo}")
    } else if lo == hi {
        lo.to_string()
    } else {
        format!("{lo} to {hi}")
    }
}

/// Evaluate one op on concrete operands outside a run (constant folding): `result_types`
/// are the op's declared result types, which must be fully static wherever the op takes
/// its shape from them (no symbol bindings exist here). Results are normalised exactly as
/// a run would produce them, and checked against the declared dtypes and static shapes.
pub fn eval_single_op(op: &Op, args: &[&Tensor], result_types: &[&TensorType]) -> Result<Vec<Tensor>, String> {
    let (lo, hi) = op.operand_range();
    if args.len() < lo || args.len() > hi {
        return Err(format!("has {} operands, expected {}", args.len(), range_text(lo, hi)));
    }
    let bindings = HashMap::new();
    let ctx = OpCtx { result_types: result_types.to_vec(), bindings: &bindings };
    let results = eval_op(op, args, &ctx)?;
    if results.len() != result_types.len() {
        return Err(format!("produced {} results for {} declared", results.len(), result_types.len()));
    }
    for (t, ty) in results.iter().zip(result_types) {
        let shape_ok = t.rank() == ty.rank()
            && ty.shape.iter().zip(&t.shape).all(|(d, &n)| d.as_fixed().is_none_or(|x| usize::try_from(x) == Ok(n)));
        if t.dtype != ty.dtype || !shape_ok {
            return Err(format!("computes {} {:?}, declared {ty}", t.dtype, t.shape));
        }
    }
    Ok(results)
}

/// Evaluate one op on its operands.
fn eval_op(op: &Op, args: &[&Tensor], ctx: &OpCtx<'_>) -> OpResult<Vec<Tensor>> {
    let one = |t: Tensor| Ok(vec![t]);
    let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("missing operand {i}"));
    match op {
        Op::Constant { value } => one(common::normalize(value.clone()).map_err(|e| format!("literal: {e}"))?),
        op if op.is_unary_elementwise() => one(elementwise::unary(op, arg(0)?)?),
        op if op.is_binary_elementwise() => one(elementwise::binary(op, arg(0)?, arg(1)?)?),
        Op::Where => one(elementwise::where_(arg(0)?, arg(1)?, arg(2)?)?),
        op if op.reduction().is_some() => one(reduce::reduce(op, arg(0)?)?),
        Op::ArgMax { axis, keepdims, select_last_index } => {
            one(reduce::arg_extreme(arg(0)?, *axis, *keepdims, *select_last_index, true)?)
        }
        Op::ArgMin { axis, keepdims, select_last_index } => {
            one(reduce::arg_extreme(arg(0)?, *axis, *keepdims, *select_last_index, false)?)
        }
        Op::Softmax { axis } => one(reduce::softmax(arg(0)?, *axis, false)?),
        Op::LogSoftmax { axis } => one(reduce::softmax(arg(0)?, *axis, true)?),
        Op::CumSum { axis, exclusive, reverse } => one(reduce::cumsum(arg(0)?, *axis, *exclusive, *reverse)?),
        Op::TopK { axis, k, largest, sorted: _ } => reduce::topk(arg(0)?, *axis, *k, *largest),
        Op::MatMul => one(linalg::matmul(arg(0)?, arg(1)?)?),
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            one(linalg::gemm(arg(0)?, arg(1)?, args.get(2).copied(), *alpha, *beta, *trans_a, *trans_b)?)
        }
        Op::Linear => one(linalg::linear(arg(0)?, arg(1)?, args.get(2).copied())?),
        Op::QuantizedLinear => one(linalg::quantized_linear(args)?),
        Op::PackedLinear { out_features } => {
            one(linalg::packed_linear(arg(0)?, arg(1)?, args.get(2).copied(), *out_features)?)
        }
        Op::Reshape { allowzero } => one(shape_ops::reshape(arg(0)?, args.get(1).copied(), *allowzero, ctx)?),
        Op::Transpose { perm } => one(shape_ops::transpose(arg(0)?, perm)?),
        Op::Concat { axis } => one(shape_ops::concat(args, *axis)?),
        Op::Split { axis } => shape_ops::split(arg(0)?, *axis, ctx),
        Op::Slice { axes, starts, ends, steps } => one(shape_ops::slice(args, axes, starts, ends, steps)?),
        Op::Gather { axis } => one(gather::gather(arg(0)?, arg(1)?, *axis)?),
        Op::GatherElements { axis } => one(gather::gather_elements(arg(0)?, arg(1)?, *axis)?),
        Op::GatherNd { batch_dims } => one(gather::gather_nd(arg(0)?, arg(1)?, *batch_dims)?),
        Op::ScatterNd { reduction } => one(gather::scatter_nd(arg(0)?, arg(1)?, arg(2)?, *reduction)?),
        Op::Expand => one(shape_ops::expand(arg(0)?, args.get(1).copied(), ctx)?),
        Op::Squeeze { axes } => one(shape_ops::squeeze(arg(0)?, axes)?),
        Op::Unsqueeze { axes } => one(shape_ops::unsqueeze(arg(0)?, axes)?),
        Op::Shape { start, end } => one(shape_ops::shape(arg(0)?, *start, *end)),
        Op::ConstantOfShape { value } => one(shape_ops::constant_of_shape(args.first().copied(), value, ctx)?),
        Op::Range => one(shape_ops::range(arg(0)?, arg(1)?, arg(2)?)?),
        Op::Trilu { upper, k } => one(shape_ops::trilu(arg(0)?, *upper, *k)?),
        Op::Pad { pads, mode, value } => one(shape_ops::pad(arg(0)?, pads, *mode, *value)?),
        Op::Tile { repeats } => one(shape_ops::tile(arg(0)?, repeats)?),
        Op::LayerNorm { axis, epsilon } => {
            one(llm::layer_norm(arg(0)?, arg(1)?, args.get(2).copied(), *axis, *epsilon)?)
        }
        Op::RmsNorm { epsilon } => one(llm::rms_norm(arg(0)?, arg(1)?, *epsilon)?),
        Op::RmsNormResidual { epsilon } => llm::rms_norm_residual(arg(0)?, arg(1)?, arg(2)?, *epsilon),
        Op::RotaryEmbedding { interleaved, rotary_dim } => {
            one(llm::rotary(arg(0)?, arg(1)?, arg(2)?, arg(3)?, *interleaved, *rotary_dim)?)
        }
        Op::Attention { scale, causal } => llm::attention(args, *scale, *causal, ctx.n_results()),
        Op::SiluMul => one(llm::silu_mul(arg(0)?, arg(1)?)?),
        Op::Sample { temperature, top_k, top_p, repetition_penalty, seed } => {
            let params = sample::SampleParams {
                temperature: *temperature,
                top_k: *top_k,
                top_p: *top_p,
                repetition_penalty: *repetition_penalty,
                seed: *seed,
            };
            one(sample::sample(arg(0)?, args.get(1).copied(), &params)?)
        }
        other => Err(format!("internal error: op `{}` has no interpreter implementation", other.name())),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Small builders for the op-family tests.
    use crate::dtype::DType;
    use crate::tensor::Tensor;

    pub(crate) fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec()).unwrap()
    }
    pub(crate) fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F64, shape.to_vec(), v.to_vec()).unwrap()
    }
    pub(crate) fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_i64(DType::I64, shape.to_vec(), v.to_vec()).unwrap()
    }
    pub(crate) fn boolt(shape: &[usize], v: &[bool]) -> Tensor {
        Tensor::from_i64(DType::Bool, shape.to_vec(), v.iter().map(|&b| b as i64).collect()).unwrap()
    }
    pub(crate) fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            let ok = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= tol * (1.0 + e.abs());
            assert!(ok, "element {i}: {a} vs {e} (all: {actual:?} vs {expected:?})");
        }
    }
}

#[cfg(test)]
mod tests;
