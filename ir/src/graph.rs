//! The graph: modules, weights, functions, SSA values and ops, and the editing API
//! passes use.
//!
//! A [`Function`] keeps values and ops in arenas addressed by [`ValueId`] / [`OpId`].
//! Every value records its definition and its uses (op, operand slot), so replacing a
//! value, erasing an op, or splicing in a new subgraph costs time proportional to the
//! values and uses touched, never to the size of the function. Op order is not stored:
//! it is the deterministic topological order [`Function::op_order`] computes (ties broken
//! by creation order), which is also the order the printer numbers values in.

use crate::attr::Attr;
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;

/// Handle of an SSA value within one function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Handle of an op within one function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%v{}", self.0)
    }
}
impl fmt::Debug for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}
impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueDef {
    /// The function's `index`-th input.
    Param { index: u32 },
    /// A module weight, referenced by name (`@name`); its data stays in the weight table.
    Weight { name: String },
    /// Result `index` of op `op`.
    Result { op: OpId, index: u32 },
}

/// One use of a value: operand slot `operand` of op `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Use {
    pub op: OpId,
    pub operand: u32,
}

/// An SSA value: its type, its definition and its uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueData {
    pub ty: TensorType,
    pub def: ValueDef,
    pub uses: Vec<Use>,
}

/// An op instance: the op (with attributes), its operands and its results.
#[derive(Debug, Clone, PartialEq)]
pub struct OpData {
    pub op: Op,
    pub operands: Vec<ValueId>,
    pub results: Vec<ValueId>,
}

/// A named function: typed inputs, named outputs, and a body of ops.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    params: Vec<(String, ValueId)>,
    outputs: Vec<(String, ValueId)>,
    values: Vec<ValueData>,
    ops: Vec<Option<OpData>>,
    weight_values: BTreeMap<String, ValueId>,
    /// Fusion-group membership: a side table so that ops without a group cost nothing
    /// and code that builds `OpData` needs no change.
    groups: BTreeMap<OpId, u32>,
    /// The kind of each fusion group id.
    group_kinds: BTreeMap<u32, GroupKind>,
}

/// What a fusion group computes, which tells codegen which kernel template to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKind {
    /// Elementwise ops over one iteration space (broadcasts included).
    Elementwise,
    /// A reduction (reduce_*, softmax, norms) with its elementwise producers and consumers.
    Reduction,
    /// A matmul-family op (linear, matmul, gemm, quantized_linear) with its elementwise epilogue.
    Matmul,
    /// An attention op, possibly with an elementwise epilogue.
    Attention,
    /// Pure data movement (reshape, transpose, slice, concat, gather, …).
    DataMovement,
    /// Anything else: one op, one kernel, no fusion.
    Opaque,
}

impl GroupKind {
    /// Every kind, in declaration order.
    pub const ALL: [GroupKind; 6] = [
        GroupKind::Elementwise,
        GroupKind::Reduction,
        GroupKind::Matmul,
        GroupKind::Attention,
        GroupKind::DataMovement,
        GroupKind::Opaque,
    ];

    /// The text-format spelling: `elementwise`, `reduction`, `matmul`, `attention`,
    /// `data_movement`, `opaque`.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Elementwise => "elementwise",
            GroupKind::Reduction => "reduction",
            GroupKind::Matmul => "matmul",
            GroupKind::Attention => "attention",
            GroupKind::DataMovement => "data_movement",
            GroupKind::Opaque => "opaque",
        }
    }

    /// The kind spelled `name`, if any.
    pub fn from_name(name: &str) -> Option<GroupKind> {
        GroupKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The graph contains a cycle through the listed ops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the graph has a cycle through {} op(s), e.g. {}", ops.len(), ops.first().map(|o| o.to_string()).unwrap_or_default())]
pub struct CycleError {
    pub ops: Vec<OpId>,
}

impl Function {
    pub fn new(name: impl Into<String>) -> Function {
        Function {
            name: name.into(),
            params: Vec::new(),
            outputs: Vec::new(),
            values: Vec::new(),
            ops: Vec::new(),
            weight_values: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_kinds: BTreeMap::new(),
        }
    }

    // ------------------------------------------------------------------ reading

    /// Inputs in order, with their names.
    pub fn params(&self) -> &[(String, ValueId)] {
        &self.params
    }

    /// Outputs in order, with their names.
    pub fn outputs(&self) -> &[(String, ValueId)] {
        &self.outputs
    }

    /// The value's data. Panics on a handle from another function (a programming error).
    pub fn value(&self, v: ValueId) -> &ValueData {
        &self.values[v.0 as usize]
    }

    /// The value's data, or `None` for a handle this function never issued.
    pub fn try_value(&self, v: ValueId) -> Option<&ValueData> {
        self.values.get(v.0 as usize)
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.value(v).ty
    }

    /// The op's data, or `None` once erased.
    pub fn op(&self, o: OpId) -> Option<&OpData> {
        self.ops.get(o.0 as usize).and_then(Option::as_ref)
    }

    /// Mutable access to an op, e.g. to change attributes in place.
    pub fn op_mut(&mut self, o: OpId) -> Option<&mut OpData> {
        self.ops.get_mut(o.0 as usize).and_then(Option::as_mut)
    }

    /// Number of value handles issued (live or not).
    pub fn value_capacity(&self) -> usize {
        self.values.len()
    }

    /// Live ops in creation order.
    pub fn op_ids(&self) -> impl Iterator<Item = OpId> + '_ {
        self.ops.iter().enumerate().filter(|(_, o)| o.is_some()).map(|(i, _)| OpId(i as u32))
    }

    /// Number of live ops.
    pub fn op_count(&self) -> usize {
        self.ops.iter().filter(|o| o.is_some()).count()
    }

    /// The weights this function references, by name.
    pub fn weight_values(&self) -> &BTreeMap<String, ValueId> {
        &self.weight_values
    }

    /// The op defining `v`, if it is an op result of a live op.
    pub fn producer(&self, v: ValueId) -> Option<OpId> {
        match self.try_value(v)?.def {
            ValueDef::Result { op, .. } if self.op(op).is_some() => Some(op),
            _ => None,
        }
    }

    /// Deterministic topological order of live ops: Kahn's algorithm, always taking the
    /// ready op created first. Errors if the ops form a cycle.
    pub fn op_order(&self) -> Result<Vec<OpId>, CycleError> {
        let mut pending: Vec<u32> = vec![0; self.ops.len()];
        let mut ready = BinaryHeap::new();
        for id in self.op_ids() {
            let data = self.op(id).expect("live op");
            let mut preds: Vec<OpId> = data.operands.iter().filter_map(|&v| self.producer(v)).collect();
            preds.sort_unstable();
            preds.dedup();
            pending[id.0 as usize] = preds.len() as u32;
            if preds.is_empty() {
                ready.push(Reverse(id));
            }
        }
        let mut order = Vec::with_capacity(pending.len());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            let data = self.op(id).expect("live op");
            let mut succs: Vec<OpId> = data
                .results
                .iter()
                .flat_map(|&r| self.try_value(r).into_iter().flat_map(|v| v.uses.iter().map(|u| u.op)))
                .filter(|o| self.op(*o).is_some())
                .collect();
            succs.sort_unstable();
            succs.dedup();
            for s in succs {
                // Only a 1 -> 0 transition readies an op, so corrupted use or result
                // lists can never queue an op twice (which would loop forever).
                let p = &mut pending[s.0 as usize];
                if *p > 0 {
                    *p -= 1;
                    if *p == 0 {
                        ready.push(Reverse(s));
                    }
                }
            }
        }
        if order.len() != self.op_count() {
            let placed: std::collections::HashSet<OpId> = order.iter().copied().collect();
            let ops = self.op_ids().filter(|o| !placed.contains(o)).collect();
            return Err(CycleError { ops });
        }
        Ok(order)
    }

    /// The text-format name of every live value: inputs `%name`, weights `@name`, op
    /// results `%0, %1, …` numbered densely in [`op_order`](Self::op_order). Printer,
    /// verifier messages, DOT and interpreter errors all use these names. Ops that sit on
    /// a cycle are numbered after the rest, in creation order, so errors can still name them.
    pub fn value_names(&self) -> HashMap<ValueId, String> {
        let mut names = HashMap::new();
        for (name, v) in &self.params {
            names.insert(*v, format!("%{}", quote_name(name)));
        }
        for (name, v) in &self.weight_values {
            names.insert(*v, format!("@{}", quote_name(name)));
        }
        let order = self.op_order().unwrap_or_else(|cycle| {
            let mut placed: Vec<OpId> = self.op_ids().filter(|o| !cycle.ops.contains(o)).collect();
            placed.extend(cycle.ops.iter().copied());
            placed
        });
        let mut next = 0usize;
        for id in order {
            for r in &self.op(id).expect("live op").results {
                names.insert(*r, format!("%{next}"));
                next += 1;
            }
        }
        names
    }

    // ------------------------------------------------------------------ fusion groups

    /// The fusion group `op` belongs to, if any.
    pub fn group(&self, op: OpId) -> Option<u32> {
        self.groups.get(&op).copied()
    }

    /// Put `op` into group `group`, or take it out of any group with `None`. Erased ops
    /// are ignored.
    pub fn set_group(&mut self, op: OpId, group: Option<u32>) {
        match group {
            Some(g) if self.op(op).is_some() => {
                self.groups.insert(op, g);
            }
            _ => {
                self.groups.remove(&op);
            }
        }
    }

    /// Every (op, group) membership, by op id.
    pub fn group_members(&self) -> &BTreeMap<OpId, u32> {
        &self.groups
    }

    /// The declared kind of group `group`.
    pub fn group_kind(&self, group: u32) -> Option<GroupKind> {
        self.group_kinds.get(&group).copied()
    }

    /// Declare (or redeclare) the kind of group `group`.
    pub fn set_group_kind(&mut self, group: u32, kind: GroupKind) {
        self.group_kinds.insert(group, kind);
    }

    /// Every declared group kind, by group id.
    pub fn group_kinds(&self) -> &BTreeMap<u32, GroupKind> {
        &self.group_kinds
    }

    /// Drop every group membership and kind.
    pub fn clear_groups(&mut self) {
        self.groups.clear();
        self.group_kinds.clear();
    }

    /// Group ids renumbered densely (0, 1, …) in order of first appearance along `order`:
    /// the numbering the printer and [`canonical`](Self::canonical) use, so equal
    /// groupings print the same whatever ids a pass picked.
    pub fn dense_group_ids(&self, order: &[OpId]) -> BTreeMap<u32, u32> {
        let mut map = BTreeMap::new();
        for id in order {
            if let Some(g) = self.group(*id) {
                let next = map.len() as u32;
                map.entry(g).or_insert(next);
            }
        }
        map
    }

    // ------------------------------------------------------------------ building

    fn new_value(&mut self, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueData { ty, def, uses: Vec::new() });
        id
    }

    /// Append an input.
    pub fn add_param(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let index = self.params.len() as u32;
        let v = self.new_value(ty, ValueDef::Param { index });
        self.params.push((name.into(), v));
        v
    }

    /// The value standing for weight `name` in this function (created on first use).
    pub fn weight(&mut self, name: &str, ty: TensorType) -> ValueId {
        if let Some(&v) = self.weight_values.get(name) {
            return v;
        }
        let v = self.new_value(ty, ValueDef::Weight { name: name.to_string() });
        self.weight_values.insert(name.to_string(), v);
        v
    }

    /// Append an op with the given operands and declared result types; returns its id.
    /// Types are not checked here: the verifier does that.
    pub fn add_op(&mut self, op: Op, operands: Vec<ValueId>, result_types: Vec<TensorType>) -> OpId {
        let id = OpId(self.ops.len() as u32);
        for (slot, &v) in operands.iter().enumerate() {
            if let Some(data) = self.values.get_mut(v.0 as usize) {
                data.uses.push(Use { op: id, operand: slot as u32 });
            }
        }
        let results = result_types
            .into_iter()
            .enumerate()
            .map(|(index, ty)| self.new_value(ty, ValueDef::Result { op: id, index: index as u32 }))
            .collect();
        self.ops.push(Some(OpData { op, operands, results }));
        id
    }

    /// Append an op with exactly one result and return that result.
    pub fn add_op1(&mut self, op: Op, operands: Vec<ValueId>, result_type: TensorType) -> ValueId {
        let id = self.add_op(op, operands, vec![result_type]);
        self.ops[id.0 as usize].as_ref().expect("just added").results[0]
    }

    /// Remove input `name` (its value must already be unused: see
    /// [`replace_all_uses`](Self::replace_all_uses)); later inputs move up one place. Returns
    /// the removed value, or `None` when there is no such input.
    pub fn remove_param(&mut self, name: &str) -> Option<ValueId> {
        let at = self.params.iter().position(|(n, _)| n == name)?;
        let (_, removed) = self.params.remove(at);
        for (i, (_, v)) in self.params.iter().enumerate().skip(at) {
            self.values[v.0 as usize].def = ValueDef::Param { index: i as u32 };
        }
        Some(removed)
    }

    /// Append a named output.
    pub fn add_output(&mut self, name: impl Into<String>, v: ValueId) {
        self.outputs.push((name.into(), v));
    }

    /// Replace the whole output list.
    pub fn set_outputs(&mut self, outputs: Vec<(String, ValueId)>) {
        self.outputs = outputs;
    }

    // ------------------------------------------------------------------ rewriting

    /// Make every use of `old` (op operands and function outputs) use `new` instead.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        if old == new {
            return;
        }
        let uses = std::mem::take(&mut self.values[old.0 as usize].uses);
        for u in &uses {
            if let Some(Some(op)) = self.ops.get_mut(u.op.0 as usize) {
                op.operands[u.operand as usize] = new;
            }
        }
        self.values[new.0 as usize].uses.extend(uses);
        for (_, v) in self.outputs.iter_mut() {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Replace operand `slot` of `op` with `new`.
    pub fn set_operand(&mut self, op: OpId, slot: usize, new: ValueId) {
        let Some(Some(data)) = self.ops.get_mut(op.0 as usize) else { return };
        let old = std::mem::replace(&mut data.operands[slot], new);
        let u = Use { op, operand: slot as u32 };
        self.values[old.0 as usize].uses.retain(|x| *x != u);
        self.values[new.0 as usize].uses.push(u);
    }

    /// Erase an op, dropping its operand uses. Its results must already be unused
    /// (otherwise the verifier will report the dangling uses).
    pub fn erase_op(&mut self, op: OpId) {
        let Some(data) = self.ops.get_mut(op.0 as usize).and_then(Option::take) else { return };
        self.groups.remove(&op);
        for (slot, v) in data.operands.iter().enumerate() {
            let u = Use { op, operand: slot as u32 };
            if let Some(vd) = self.values.get_mut(v.0 as usize) {
                vd.uses.retain(|x| *x != u);
            }
        }
    }

    /// Whether `v` is used by any op or output.
    pub fn is_used(&self, v: ValueId) -> bool {
        !self.value(v).uses.is_empty() || self.outputs.iter().any(|(_, o)| *o == v)
    }

    /// Change the declared type of a value (e.g. after shape inference refines it).
    pub fn set_type(&mut self, v: ValueId, ty: TensorType) {
        self.values[v.0 as usize].ty = ty;
    }

    // ------------------------------------------------------------------ canonical form

    /// A copy with ops renumbered in [`op_order`](Self::op_order), values renumbered in
    /// first-definition order (inputs, then each op's weight operands on first use and
    /// results), erased ops and unreferenced values dropped, fusion groups renumbered
    /// densely in order of first appearance (kinds of groups without members dropped).
    /// Two functions that print the same have equal canonical forms, which is what
    /// round-trip tests compare.
    pub fn canonical(&self) -> Result<Function, CycleError> {
        let order = self.op_order()?;
        let dense = self.dense_group_ids(&order);
        let mut out = Function::new(self.name.clone());
        for (old, new) in &dense {
            if let Some(kind) = self.group_kind(*old) {
                out.set_group_kind(*new, kind);
            }
        }
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for (name, v) in &self.params {
            let nv = out.add_param(name.clone(), self.ty(*v).clone());
            map.insert(*v, nv);
        }
        for id in order {
            let data = self.op(id).expect("ordered op is live");
            let mut operands = Vec::with_capacity(data.operands.len());
            for &v in &data.operands {
                let nv = match map.get(&v) {
                    Some(nv) => *nv,
                    None => {
                        let vd = self.value(v);
                        let nv = match &vd.def {
                            ValueDef::Weight { name } => out.weight(name, vd.ty.clone()),
                            // A dangling operand: keep a placeholder so the verifier still sees it.
                            _ => out.new_value(vd.ty.clone(), vd.def.clone()),
                        };
                        map.insert(v, nv);
                        nv
                    }
                };
                operands.push(nv);
            }
            let types = data.results.iter().map(|r| self.ty(*r).clone()).collect();
            let nid = out.add_op(data.op.clone(), operands, types);
            out.set_group(nid, self.group(id).and_then(|g| dense.get(&g).copied()));
            let new_results = out.op(nid).expect("just added").results.clone();
            for (old, new) in data.results.iter().zip(new_results) {
                map.insert(*old, new);
            }
        }
        for (name, v) in &self.outputs {
            let nv = match map.get(v) {
                Some(nv) => *nv,
                None => {
                    let vd = self.value(*v);
                    match &vd.def {
                        ValueDef::Weight { name } => out.weight(name, vd.ty.clone()),
                        _ => out.new_value(vd.ty.clone(), vd.def.clone()),
                    }
                }
            };
            map.insert(*v, nv);
            out.add_output(name.clone(), nv);
        }
        Ok(out)
    }
}

/// True if `name` can be written without quotes after `%` or `@`: `[A-Za-z_][A-Za-z0-9_.]*`.
pub fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A name as the text format spells it: bare when plain, otherwise a quoted string
/// (`"onnx::MatMul_12"`) with the escapes of [`crate::attr::write_string`].
pub fn quote_name(name: &str) -> String {
    if is_plain_name(name) {
        name.to_string()
    } else {
        let mut s = String::new();
        let _ = crate::attr::write_string(&mut s, name);
        s
    }
}

/// Where a weight's bytes live. Paths are relative to the module's directory and may
/// not leave it.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// Tensor `tensor` of a safetensors file.
    Safetensors { file: String, tensor: String },
    /// Raw little-endian storage bytes at `offset` of `file` (length implied by the type).
    Raw { file: String, offset: u64 },
    /// A literal in the module itself (small constants, tests).
    Inline(Tensor),
}

/// A module-level weight: name, static type and data source.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightDecl {
    pub name: String,
    pub ty: TensorType,
    pub source: WeightSource,
}

/// A compilation unit: attributes (model metadata), a weight table shared by all
/// functions, and the functions (entry points such as `forward` and `decode`).
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub name: String,
    pub attrs: BTreeMap<String, Attr>,
    pub weights: Vec<WeightDecl>,
    pub functions: Vec<Function>,
}

impl Module {
    pub fn new(name: impl Into<String>) -> Module {
        Module { name: name.into(), attrs: BTreeMap::new(), weights: Vec::new(), functions: Vec::new() }
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    pub fn function_mut(&mut self, name: &str) -> Option<&mut Function> {
        self.functions.iter_mut().find(|f| f.name == name)
    }

    pub fn weight_decl(&self, name: &str) -> Option<&WeightDecl> {
        self.weights.iter().find(|w| w.name == name)
    }

    /// Canonical form of every function (see [`Function::canonical`]).
    pub fn canonical(&self) -> Result<Module, CycleError> {
        let functions = self.functions.iter().map(Function::canonical).collect::<Result<_, _>>()?;
        Ok(Module { functions, ..self.clone() })
    }

    /// Total live ops over all functions.
    pub fn op_count(&self) -> usize {
        self.functions.iter().map(Function::op_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn f32s(dims: &[i64]) -> TensorType {
        TensorType::fixed(DType::F32, dims)
    }

    #[test]
    fn replace_and_erase_keep_use_lists_consistent() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[4]));
        let a = f.add_op1(Op::Exp, vec![x], f32s(&[4]));
        let b = f.add_op1(Op::Neg, vec![a], f32s(&[4]));
        f.add_output("y", b);
        let c = f.add_op1(Op::Tanh, vec![x], f32s(&[4]));
        f.replace_all_uses(a, c);
        let exp_op = f.producer(a).unwrap();
        f.erase_op(exp_op);
        assert_eq!(f.op_count(), 2);
        assert!(f.value(x).uses.iter().all(|u| f.op(u.op).is_some()));
        assert_eq!(f.value(c).uses.len(), 1);
        // tanh was created after neg but must come first in the order.
        let order = f.op_order().unwrap();
        assert_eq!(f.op(order[0]).unwrap().op, Op::Tanh);
    }

    #[test]
    fn cycles_are_reported() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[1]));
        let a = f.add_op1(Op::Add, vec![x, x], f32s(&[1]));
        let b = f.add_op1(Op::Neg, vec![a], f32s(&[1]));
        let add = f.producer(a).unwrap();
        f.set_operand(add, 1, b);
        assert!(f.op_order().is_err());
    }
}
