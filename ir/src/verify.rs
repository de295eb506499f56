//! The verifier: checks that a [`Module`] is well formed, collecting every error instead
//! of stopping at the first. It runs on hostile IR (out-of-range value ids, corrupted use
//! lists, cycles, erased producers) and never panics on it.
//!
//! Every error is a [`VerifyError`] anchored to the module, a weight, a function, an op or
//! a value; [`describe`] renders it with the text-format value names
//! ([`Function::value_names`]), e.g. `forward: %3 = matmul %1, @w: operand 1 (b): …`.
//!
//! # Invariants checked
//!
//! Module:
//! 1. Function names are unique.
//! 2. Weight names are unique.
//! 3. Every weight type is valid: rank at most [`MAX_RANK`], every dim static and
//!    non-negative (no symbols, no `?`), `int4<G>` with `G` even in `2..=4096`.
//! 4. A block-quantized weight (`q8_0`, `q4_0`, `int4<G>`) has rank ≥ 1 and a last dim
//!    that is a multiple of the block length.
//! 5. An inline weight's literal has exactly the declared dtype and shape, and its element
//!    count and storage kind are consistent.
//! 6. Raw and safetensors weight file paths are non-empty and relative, with no `..`
//!    component and no NUL; a safetensors tensor name is non-empty.
//!
//! Function (each function independently):
//! 7. At least one output; input names unique; output names unique.
//! 8. Every output value exists and is live (an input, a weight, or a result of a live
//!    op); a value defined by an erased op but still used as an output is an error.
//! 9. Every input's value records itself as that input (`ValueDef::Param` with its index).
//! 10. Every live value's type is valid: rank at most [`MAX_RANK`], static dims
//!     non-negative, symbol names valid ([`is_valid_symbol`]), `int4<G>` well formed; no
//!     input has a quantized dtype (quantized dtypes are for weights only).
//! 11. Every weight value names a weight declared in the module, its type is exactly the
//!     declaration's type, and it is registered under that name in the function's weight
//!     table (and vice versa).
//!
//! Op (each live op):
//! 12. Operand and result counts lie within [`Op::operand_range`](crate::op::Op::operand_range) and
//!     [`Op::result_range`](crate::op::Op::result_range); op-specific counts (slice 1 or 3 operands, quantized_linear by
//!     weight dtype, attention 1 or 3 results) are enforced through inference (14).
//! 13. Every operand value exists (id in range) and is live: an input, a weight, or a
//!     result of a live op; a value defined by an erased op but still used is an error.
//! 14. Declared result types agree with [`infer_types`] (via [`types_agree`]), including
//!     the number of results; inference errors (dtype rules, shape mismatches, quantized
//!     operands outside `quantized_linear`'s weight, bad attributes) are reported here.
//!     Operands produced by `constant` ops feed inference as constants.
//! 15. Every result value exists and records this op and its index as its definition.
//!
//! Graph:
//! 16. The op graph is acyclic (checked from operands, not from use lists); each cycle is
//!     reported once, anchored to an op on it.
//! 17. Use lists are consistent: every value's `uses` equals the set of (live op, operand
//!     slot) pairs that reference it, without duplicates (errors start with
//!     `internal: use list out of date`; passes that edit operands by hand can break it).
//!
//! Fusion groups (group ids in messages are the printed, densely renumbered ones):
//! 18. Every group an op belongs to has a declared kind.
//! 19. Every group is convex: no path leaves a member through a non-member and comes back
//!     into the group (such a group could not run as one kernel). Reported once per
//!     offending member, anchored to the member the path re-enters at; checked only when
//!     the graph is acyclic.

use crate::dim::is_valid_symbol;
use crate::dtype::{DType, MAX_INT4_GROUP};
use crate::graph::{quote_name, Function, Module, OpId, Use, ValueDef, ValueId, WeightDecl, WeightSource};
use crate::infer::{constant_value, infer_types, types_agree};
use crate::tensor::{checked_numel, TensorData};
use crate::types::{TensorType, MAX_RANK};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

/// What a verifier error is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Anchor {
    Module,
    Weight(String),
    Function(String),
    Op { function: String, op: OpId },
    Value { function: String, value: ValueId },
}

/// One verifier finding.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyError {
    pub anchor: Anchor,
    pub message: String,
}

/// Without the module at hand, ops and values are named by their stable handles
/// (`op3`, `%v5`); [`describe`] gives the text-format names (`%3 = matmul %1, @w`).
impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.anchor {
            Anchor::Module => write!(f, "module: {}", self.message),
            Anchor::Weight(w) => write!(f, "weight @{}: {}", quote_name(w), self.message),
            Anchor::Function(func) => write!(f, "function `{func}`: {}", self.message),
            Anchor::Op { function, op } => {
                write!(f, "function `{function}`, {op}: {}", self.message)
            }
            Anchor::Value { function, value } => {
                write!(f, "function `{function}`, {value}: {}", self.message)
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Verify the whole module; `Err` holds every error found.
pub fn verify_module(m: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for f in &m.functions {
        if !seen.insert(f.name.as_str()) {
            errs.push(VerifyError {
                anchor: Anchor::Function(f.name.clone()),
                message: format!("duplicate function name `{}`", f.name),
            });
        }
    }
    let mut seen = HashSet::new();
    for w in &m.weights {
        if !seen.insert(w.name.as_str()) {
            errs.push(VerifyError {
                anchor: Anchor::Weight(w.name.clone()),
                message: "duplicate weight name".to_string(),
            });
        }
        for message in weight_problems(w) {
            errs.push(VerifyError { anchor: Anchor::Weight(w.name.clone()), message });
        }
    }
    for f in &m.functions {
        errs.extend(verify_function(m, f));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Verify one function of `m` (invariants 7–17); returns every error found.
pub fn verify_function(m: &Module, f: &Function) -> Vec<VerifyError> {
    let mut v = FnVerifier { m, f, names: f.value_names(), errs: Vec::new() };
    v.run();
    v.errs
}

/// Render an error with the function's text-format value names:
/// `forward: %3 = matmul %1, @w: message`.
pub fn describe(m: &Module, e: &VerifyError) -> String {
    let msg = &e.message;
    match &e.anchor {
        Anchor::Module => format!("module @{}: {msg}", quote_name(&m.name)),
        Anchor::Weight(w) => format!("weight @{}: {msg}", quote_name(w)),
        Anchor::Function(func) => format!("{func}: {msg}"),
        Anchor::Op { function, op } => match m.function(function) {
            Some(f) => format!("{function}: {}: {msg}", op_text(f, &f.value_names(), *op)),
            None => format!("{function}: {op}: {msg}"),
        },
        Anchor::Value { function, value } => match m.function(function) {
            Some(f) => format!("{function}: {}: {msg}", value_name(&f.value_names(), *value)),
            None => format!("{function}: {value}: {msg}"),
        },
    }
}

fn value_name(names: &HashMap<ValueId, String>, v: ValueId) -> String {
    names.get(&v).cloned().unwrap_or_else(|| v.to_string())
}

/// `%3 = matmul %1, @w` (or `op3` once erased).
fn op_text(f: &Function, names: &HashMap<ValueId, String>, op: OpId) -> String {
    let Some(data) = f.op(op) else {
        return format!("{op} (erased)");
    };
    let results: Vec<String> = data.results.iter().map(|&r| value_name(names, r)).collect();
    let operands: Vec<String> = data.operands.iter().map(|&v| value_name(names, v)).collect();
    let mut s = String::new();
    if !results.is_empty() {
        s.push_str(&results.join(", "));
        s.push_str(" = ");
    }
    s.push_str(data.op.name());
    if !operands.is_empty() {
        s.push(' ');
        s.push_str(&operands.join(", "));
    }
    s
}

// ---------------------------------------------------------------------- types and weights

/// Problems with a type wherever it appears (invariant 10).
fn type_problems(ty: &TensorType) -> Vec<String> {
    let mut out = Vec::new();
    if ty.rank() > MAX_RANK {
        out.push(format!("type {ty} has rank {}, above the maximum {MAX_RANK}", ty.rank()));
    }
    if let DType::Int4 { group_size } = ty.dtype {
        if group_size < 2 || group_size % 2 != 0 || group_size > MAX_INT4_GROUP {
            out.push(format!("int4 group size {group_size} must be even and between 2 and {MAX_INT4_GROUP}"));
        }
    }
    for (k, d) in ty.shape.iter().enumerate() {
        if matches!(d.as_fixed(), Some(n) if n < 0) {
            out.push(format!("type {ty} has negative dim {k}"));
        }
        for s in d.symbols() {
            if !is_valid_symbol(s) {
                out.push(format!("type {ty}: invalid symbol name `{s}` in dim {k}"));
            }
        }
    }
    out
}

fn path_problem(file: &str) -> Option<String> {
    let bytes = file.as_bytes();
    if file.is_empty() {
        return Some("the file path is empty".to_string());
    }
    if file.contains('\0') {
        return Some(format!("file path {file:?} contains a NUL character"));
    }
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if file.starts_with('/') || file.starts_with('\\') || drive {
        return Some(format!("file path {file:?} is absolute; weight paths are relative to the module"));
    }
    if file.split(['/', '\\']).any(|c| c == "..") {
        return Some(format!(
            "file path {file:?} has a `..` component; weight paths may not leave the module directory"
        ));
    }
    None
}

/// Problems with one weight declaration (invariants 3–6).
fn weight_problems(w: &WeightDecl) -> Vec<String> {
    let mut out = type_problems(&w.ty);
    let Some(dims) = w.ty.fixed_shape() else {
        out.push(format!("weight type {} must be fully static", w.ty));
        return out;
    };
    if w.ty.dtype.is_quantized() {
        let block = w.ty.dtype.block_len();
        match dims.last() {
            None => out.push(format!("block-quantized weight {} must have rank at least 1", w.ty)),
            Some(&last) if block > 0 && u64::try_from(last).is_ok_and(|l| l % block != 0) => out.push(format!(
                "last dim {last} of {} is not a multiple of the {} block length {block}",
                w.ty, w.ty.dtype
            )),
            _ => {}
        }
    }
    match &w.source {
        WeightSource::Inline(t) => {
            let same_shape = t.shape.len() == dims.len()
                && t.shape.iter().zip(&dims).all(|(&a, &b)| i64::try_from(a).ok() == Some(b));
            if t.dtype != w.ty.dtype || !same_shape {
                let shape: Vec<String> = t.shape.iter().map(ToString::to_string).collect();
                out.push(format!(
                    "inline literal is {}[{}] but the weight is declared {}",
                    t.dtype,
                    shape.join(", "),
                    w.ty
                ));
            }
            if checked_numel(&t.shape) != Some(t.numel()) {
                out.push(format!(
                    "inline literal has {} elements, inconsistent with its shape {:?}",
                    t.numel(),
                    t.shape
                ));
            }
            let float_data = matches!(t.data, TensorData::Float(_));
            if float_data != (t.dtype.is_float() || t.dtype.is_quantized()) {
                out.push(format!(
                    "inline literal of dtype {} holds {} data",
                    t.dtype,
                    if float_data { "float" } else { "integer" }
                ));
            }
        }
        WeightSource::Raw { file, .. } => out.extend(path_problem(file)),
        WeightSource::Safetensors { file, tensor } => {
            out.extend(path_problem(file));
            if tensor.is_empty() {
                out.push("the safetensors tensor name is empty".to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------- functions

struct FnVerifier<'a> {
    m: &'a Module,
    f: &'a Function,
    names: HashMap<ValueId, String>,
    errs: Vec<VerifyError>,
}

fn value_ids(f: &Function) -> impl Iterator<Item = ValueId> {
    (0..f.value_capacity()).filter_map(|i| u32::try_from(i).ok()).map(ValueId)
}

impl FnVerifier<'_> {
    fn name(&self, v: ValueId) -> String {
        value_name(&self.names, v)
    }

    fn at_fn(&mut self, message: String) {
        self.errs.push(VerifyError { anchor: Anchor::Function(self.f.name.clone()), message });
    }

    fn at_op(&mut self, op: OpId, message: String) {
        self.errs.push(VerifyError { anchor: Anchor::Op { function: self.f.name.clone(), op }, message });
    }

    fn at_value(&mut self, value: ValueId, message: String) {
        self.errs.push(VerifyError { anchor: Anchor::Value { function: self.f.name.clone(), value }, message });
    }

    /// `Ok` when `v` exists and is live (invariants 8, 13); otherwise why not.
    fn liveness(&self, v: ValueId) -> Result<(), String> {
        let f = self.f;
        let Some(data) = f.try_value(v) else {
            return Err(format!("value {v} does not exist (the function has {} values)", f.value_capacity()));
        };
        match &data.def {
            ValueDef::Param { index } => {
                if f.params().get(*index as usize).map(|p| p.1) == Some(v) {
                    Ok(())
                } else {
                    Err(format!("value {} claims to be input #{index}, which is not it", self.name(v)))
                }
            }
            ValueDef::Weight { .. } => Ok(()),
            ValueDef::Result { op, index } => match f.op(*op) {
                None => Err(format!("value {} is defined by erased op {op}", self.name(v))),
                Some(d) if d.results.get(*index as usize) == Some(&v) => Ok(()),
                Some(_) => {
                    Err(format!("value {} claims to be result #{index} of {op}, which does not list it", self.name(v)))
                }
            },
        }
    }

    fn run(&mut self) {
        self.check_signature();
        self.check_values();
        let ops: Vec<OpId> = self.f.op_ids().collect();
        for id in ops {
            self.check_op(id);
        }
        self.check_uses();
        self.check_cycles();
        self.check_groups();
    }

    /// Invariants 18–19. Convexity in one topological sweep: `left[o]` holds the groups
    /// `g` with a path from a member of `g` to `o` that passes through a non-member of `g`
    /// (`o` itself included); a member of `g` whose `left` set gets `g` closes such a path.
    fn check_groups(&mut self) {
        let f = self.f;
        if f.group_members().is_empty() {
            return;
        }
        let Ok(order) = f.op_order() else { return };
        let dense = f.dense_group_ids(&order);
        let shown = |g: u32| dense.get(&g).copied().unwrap_or(g);
        for &id in &order {
            if let Some(g) = f.group(id) {
                if f.group_kind(g).is_none() {
                    self.at_op(id, format!("fusion group {} has no declared kind", shown(g)));
                }
            }
        }
        let mut left: HashMap<OpId, BTreeSet<u32>> = HashMap::new();
        for &id in &order {
            let mine = f.group(id);
            let mut set: BTreeSet<u32> = BTreeSet::new();
            let mut preds: Vec<OpId> =
                f.op(id).map(|d| d.operands.iter().filter_map(|&v| f.producer(v)).collect()).unwrap_or_default();
            preds.sort_unstable();
            preds.dedup();
            for p in preds {
                if let Some(l) = left.get(&p) {
                    set.extend(l.iter().copied());
                }
                if let Some(pg) = f.group(p) {
                    if Some(pg) != mine {
                        set.insert(pg);
                    }
                }
            }
            if let Some(g) = mine {
                if set.remove(&g) {
                    self.at_op(
                        id,
                        format!(
                            "fusion group {} is not convex: a path from one of its ops leaves the group and re-enters it here",
                            shown(g)
                        ),
                    );
                }
            }
            left.insert(id, set);
        }
    }

    /// Invariants 7–9.
    fn check_signature(&mut self) {
        let f = self.f;
        if f.outputs().is_empty() {
            self.at_fn("the function has no outputs".to_string());
        }
        let mut seen = HashSet::new();
        for (i, (name, v)) in f.params().iter().enumerate() {
            if !seen.insert(name.as_str()) {
                self.at_fn(format!("duplicate input name `{name}`"));
            }
            match f.try_value(*v).map(|d| &d.def) {
                None => self.at_fn(format!("input `{name}` refers to value {v}, which does not exist")),
                Some(ValueDef::Param { index }) if *index as usize == i => {}
                Some(_) => self.at_value(*v, format!("internal: input #{i} `{name}` is not defined as input #{i}")),
            }
        }
        let mut seen = HashSet::new();
        for (name, v) in f.outputs() {
            if !seen.insert(name.as_str()) {
                self.at_fn(format!("duplicate output name `{name}`"));
            }
            if let Err(why) = self.liveness(*v) {
                let msg = format!("output `{name}`: {why}");
                if f.try_value(*v).is_some() {
                    self.at_value(*v, msg);
                } else {
                    self.at_fn(msg);
                }
            }
        }
    }

    /// Invariants 10–11.
    fn check_values(&mut self) {
        let f = self.f;
        for (name, &v) in f.weight_values() {
            match f.try_value(v).map(|d| &d.def) {
                Some(ValueDef::Weight { name: n }) if n == name => {}
                Some(_) => self
                    .at_value(v, format!("internal: weight table entry @{} is not a weight value", quote_name(name))),
                None => self
                    .at_fn(format!("internal: weight table entry @{} refers to missing value {v}", quote_name(name))),
            }
        }
        for v in value_ids(f) {
            let Some(data) = f.try_value(v) else { continue };
            if self.liveness(v).is_err() {
                continue; // dead values are only an error when used (reported there)
            }
            for p in type_problems(&data.ty) {
                self.at_value(v, p);
            }
            match &data.def {
                ValueDef::Param { .. } if data.ty.dtype.is_quantized() => self.at_value(
                    v,
                    format!("input has quantized dtype {}; quantized dtypes are only legal for weights", data.ty.dtype),
                ),
                ValueDef::Weight { name } => {
                    if f.weight_values().get(name) != Some(&v) {
                        self.at_value(v, format!("internal: weight value is not registered as @{}", quote_name(name)));
                    }
                    match self.m.weight_decl(name) {
                        None => self.at_value(v, format!("weight @{} is not declared in the module", quote_name(name))),
                        Some(w) if w.ty != data.ty => self.at_value(
                            v,
                            format!("weight @{} is used as {} but declared as {}", quote_name(name), data.ty, w.ty),
                        ),
                        Some(_) => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Invariants 12–15.
    fn check_op(&mut self, id: OpId) {
        let f = self.f;
        let Some(data) = f.op(id) else { return };
        let op = &data.op;
        let mut sound = true;
        let (lo, hi) = op.operand_range();
        let n = data.operands.len();
        if n < lo || n > hi {
            self.at_op(id, format!("{} expects {}, found {n}", op.name(), range_phrase(lo, hi, "operand")));
            sound = false;
        }
        let (lo, hi) = op.result_range();
        let r = data.results.len();
        if r < lo || r > hi {
            self.at_op(id, format!("{} produces {}, found {r}", op.name(), range_phrase(lo, hi, "result")));
            sound = false;
        }
        let mut declared = Vec::with_capacity(r);
        for (i, &res) in data.results.iter().enumerate() {
            match f.try_value(res) {
                None => {
                    self.at_op(id, format!("internal: result {i} is value {res}, which does not exist"));
                    sound = false;
                }
                Some(vd) => {
                    let expect = ValueDef::Result { op: id, index: i as u32 };
                    if vd.def != expect {
                        self.at_op(
                            id,
                            format!(
                                "internal: result {i} ({}) is not defined by this op as result {i}",
                                self.name(res)
                            ),
                        );
                        sound = false;
                    }
                    declared.push(vd.ty.clone());
                }
            }
        }
        let mut tys = Vec::with_capacity(n);
        let mut consts = Vec::with_capacity(n);
        for (i, &v) in data.operands.iter().enumerate() {
            if let Err(why) = self.liveness(v) {
                self.at_op(id, format!("operand {i}: {why}"));
                sound = false;
                continue;
            }
            if let Some(vd) = f.try_value(v) {
                tys.push(&vd.ty);
                consts.push(constant_value(f, v));
            }
        }
        if !sound {
            return;
        }
        match infer_types(op, &tys, &consts, Some(&declared)) {
            Err(msg) => self.at_op(id, msg),
            Ok(inferred) if inferred.len() != declared.len() => self.at_op(
                id,
                format!("{} declares {} result(s) but {} are inferred", op.name(), declared.len(), inferred.len()),
            ),
            Ok(inferred) => {
                for (i, (d, inf)) in declared.iter().zip(&inferred).enumerate() {
                    if !types_agree(d, inf) {
                        let res = data.results.get(i).map(|&v| self.name(v)).unwrap_or_default();
                        self.at_op(id, format!("result {i} ({res}) is declared {d} but inferred {inf}"));
                    }
                }
            }
        }
    }

    /// Invariant 17.
    fn check_uses(&mut self) {
        let f = self.f;
        let mut expected: Vec<Vec<Use>> = vec![Vec::new(); f.value_capacity()];
        for id in f.op_ids() {
            let Some(data) = f.op(id) else { continue };
            for (slot, v) in data.operands.iter().enumerate() {
                if let Some(list) = expected.get_mut(v.0 as usize) {
                    list.push(Use { op: id, operand: slot as u32 });
                }
            }
        }
        for v in value_ids(f) {
            let (Some(data), Some(want)) = (f.try_value(v), expected.get_mut(v.0 as usize)) else {
                continue;
            };
            let mut have = data.uses.clone();
            have.sort_unstable();
            want.sort_unstable();
            if have == *want {
                continue;
            }
            let have_set: BTreeSet<Use> = have.iter().copied().collect();
            let want_set: BTreeSet<Use> = want.iter().copied().collect();
            let fmt_use = |u: &Use| format!("{}#{}", u.op, u.operand);
            let missing: Vec<String> = want_set.difference(&have_set).map(fmt_use).collect();
            let stale: Vec<String> = have_set.difference(&want_set).map(fmt_use).collect();
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing {}", missing.join(", ")));
            }
            if !stale.is_empty() {
                parts.push(format!("stale {}", stale.join(", ")));
            }
            if have.len() != have_set.len() {
                parts.push("duplicate entries".to_string());
            }
            self.at_value(v, format!("internal: use list out of date: {}", parts.join("; ")));
        }
    }

    /// Invariant 16: Kahn's algorithm over operand edges; each cycle found is reported once.
    fn check_cycles(&mut self) {
        let f = self.f;
        let ids: Vec<OpId> = f.op_ids().collect();
        let slots = ids.iter().map(|o| o.0 as usize + 1).max().unwrap_or(0);
        let preds_of = |id: OpId| -> Vec<OpId> {
            let mut p: Vec<OpId> =
                f.op(id).map(|d| d.operands.iter().filter_map(|&v| f.producer(v)).collect()).unwrap_or_default();
            p.sort_unstable();
            p.dedup();
            p
        };
        let mut pending = vec![0usize; slots];
        let mut succs: Vec<Vec<OpId>> = vec![Vec::new(); slots];
        let mut ready = Vec::new();
        for &id in &ids {
            let preds = preds_of(id);
            if let Some(p) = pending.get_mut(id.0 as usize) {
                *p = preds.len();
            }
            for p in preds {
                if let Some(s) = succs.get_mut(p.0 as usize) {
                    s.push(id);
                }
            }
            if pending.get(id.0 as usize) == Some(&0) {
                ready.push(id);
            }
        }
        while let Some(id) = ready.pop() {
            let next = succs.get(id.0 as usize).cloned().unwrap_or_default();
            for s in next {
                if let Some(p) = pending.get_mut(s.0 as usize) {
                    *p = p.saturating_sub(1);
                    if *p == 0 {
                        ready.push(s);
                    }
                }
            }
        }
        let mut remaining: BTreeSet<OpId> =
            ids.iter().copied().filter(|o| pending.get(o.0 as usize).is_some_and(|&p| p > 0)).collect();
        while let Some(&start) = remaining.iter().next() {
            // Walk backwards through remaining predecessors until an op repeats.
            let mut path: Vec<OpId> = vec![start];
            let mut cur = start;
            let cycle = loop {
                let Some(p) = preds_of(cur).into_iter().find(|p| remaining.contains(p)) else {
                    break None;
                };
                if let Some(pos) = path.iter().position(|&x| x == p) {
                    break path.get(pos..).map(<[OpId]>::to_vec);
                }
                if path.len() > remaining.len() {
                    break None;
                }
                path.push(p);
                cur = p;
            };
            let Some(mut cycle) = cycle else {
                remaining.remove(&start);
                continue;
            };
            cycle.reverse(); // data-flow order
            let first = cycle.iter().copied().min().unwrap_or(start);
            if let Some(pos) = cycle.iter().position(|&o| o == first) {
                cycle.rotate_left(pos);
            }
            let steps: Vec<String> = cycle.iter().map(|&o| op_text(f, &self.names, o)).collect();
            let head = op_text(f, &self.names, first);
            // Drop the cycle and everything downstream of it.
            let mut stack = cycle.clone();
            let mut downstream = 0usize;
            while let Some(o) = stack.pop() {
                if remaining.remove(&o) {
                    downstream += 1;
                    stack.extend(succs.get(o.0 as usize).cloned().unwrap_or_default());
                }
            }
            self.at_op(
                first,
                format!(
                    "the graph has a cycle through {} op(s): {} -> back to {head} ({downstream} op(s) on or after it cannot be ordered)",
                    cycle.len(),
                    steps.join(" -> ")
                ),
            );
        }
    }
}

fn range_phrase(lo: usize, hi: usize, what: &str) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    if lo == hi {
        format!("{lo} {what}{}", s(lo))
    } else if hi == crate::op::VARIADIC {
        format!("at least {lo} {what}{}", s(lo))
    } else {
        format!("{lo} to {hi} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;

    #[test]
    fn weight_paths() {
        assert_eq!(path_problem("mlp.safetensors"), None);
        assert_eq!(path_problem("sub/dir/w.bin"), None);
        assert!(path_problem("").is_some());
        assert!(path_problem("/etc/passwd").unwrap().contains("absolute"));
        assert!(path_problem("C:\\w.bin").unwrap().contains("absolute"));
        assert!(path_problem("a/../../w.bin").unwrap().contains(".."));
        assert!(path_problem("a\\..\\w.bin").unwrap().contains(".."));
        assert_eq!(path_problem("a/..b/w.bin"), None, "only a whole `..` component leaves the directory");
    }

    #[test]
    fn type_problems_name_each_issue() {
        let bad = TensorType::new(DType::Int4 { group_size: 3 }, vec![crate::Dim::fixed(-1), crate::Dim::sym("9x")]);
        let p = type_problems(&bad);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(type_problems(&TensorType::fixed(DType::F32, &[2, 3])).is_empty());
    }

    #[test]
    fn display_and_describe() {
        let mut m = Module::new("m");
        let mut f = Function::new("forward");
        let x = f.add_param("x", TensorType::fixed(DType::F32, &[2]));
        let y = f.add_op1(Op::Exp, vec![x], TensorType::fixed(DType::F32, &[2]));
        f.add_output("y", y);
        let op = f.producer(y).unwrap();
        m.functions.push(f);
        let e = VerifyError { anchor: Anchor::Op { function: "forward".into(), op }, message: "boom".into() };
        assert_eq!(e.to_string(), "function `forward`, op0: boom");
        assert_eq!(describe(&m, &e), "forward: %0 = exp %x: boom");
        let e = VerifyError { anchor: Anchor::Value { function: "forward".into(), value: y }, message: "m".into() };
        assert_eq!(describe(&m, &e), "forward: %0: m");
        assert_eq!(e.to_string(), "function `forward`, %v1: m");
        let e = VerifyError { anchor: Anchor::Weight("a b".into()), message: "m".into() };
        assert_eq!(describe(&m, &e), "weight @\"a b\": m");
        assert_eq!(range_phrase(2, 3, "operand"), "2 to 3 operands");
    }
}
