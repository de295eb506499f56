//! `fusion-groups`: partition each function's ops into fusion groups (one kernel each)
//! and record them in the IR ([`Function::set_group`], [`GroupKind`]).
//!
//! Greedy, in topological order: every op starts a group of its own class's kind and then
//! tries to join the groups of its operands' producers, in operand order:
//! * an elementwise op joins elementwise chains (any shape: broadcasting operands are fine,
//!   except from a group with transcendental ops, which would be recomputed per repeat),
//!   a reduction group as its consumer, a matmul or attention group as its epilogue when
//!   the value it reads has no other use, or a group of pure views;
//! * a reduction (`reduce_*`, `softmax`, `log_softmax`, `argmax/argmin`, the norms) pulls
//!   in the elementwise/view group producing its input when that value has no other use and
//!   the group gathers nothing (a gathered row has no affine address to reduce over);
//! * a pure view (`reshape`, `transpose`, `squeeze`, `unsqueeze`, `expand`, `slice`) joins
//!   the group producing its data operand (single use for matmul/attention groups);
//! * other data movement (`concat`, `gather`, `pad`, …) joins data-movement groups;
//! * matmul-family ops and attention never absorb producers; everything else is `opaque`.
//!
//! A group holds at most one anchor (reduction, matmul or attention). A merge is only made
//! when the graph of groups stays acyclic (checked by a search that treats every other
//! group as one node), which also keeps every group convex. Weight-derived ops are
//! compile-time constants and stay ungrouped. Rerunning recomputes groups from scratch;
//! group ids are dense in order of first appearance. The pass only annotates: what the
//! module computes does not change. Run it last, after the fusion passes.

use crate::pass::{OptimizationPass, OptimizationResult, OptimizationStats, PassError, PassOptions};
use ferrumc_ir::{Function, GroupKind, Module, Op, OpId, ValueDef, ValueId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The `fusion-groups` pass.
#[derive(Debug)]
pub struct FusionGroups;

impl OptimizationPass for FusionGroups {
    fn name(&self) -> &'static str {
        "fusion-groups"
    }

    fn summary(&self) -> &'static str {
        "Partition ops into fusion groups (one kernel each) recorded in the IR"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut applied = false;
        let mut counts: BTreeMap<GroupKind, usize> = BTreeMap::new();
        let mut ops = 0usize;
        let mut on_chip = 0usize;
        for f in &mut module.functions {
            let before = grouping_signature(f);
            let Some(stats) = assign_groups(f) else {
                // A cyclic function is reported by the verifier; leave it alone.
                continue;
            };
            applied |= grouping_signature(f) != before;
            ops += stats.ops;
            on_chip += stats.internal_values;
            for (k, n) in stats.kinds {
                *counts.entry(k).or_default() += n;
            }
        }
        let groups: usize = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut notes = vec![format!("{ops} ops in {groups} groups ({})", parts.join(", "))];
        if on_chip > 0 {
            notes.push(format!("{on_chip} intermediate values never leave their kernel"));
        }
        // Each grouped op is no longer its own kernel launch with a round trip to memory;
        // a deliberately modest estimate from the fraction of launches saved.
        let speedup = if groups > 0 && ops > 0 { 1.0 + 0.1 * (1.0 - groups as f32 / ops as f32) } else { 1.0 };
        Ok(OptimizationResult {
            applied,
            stats: OptimizationStats { estimated_speedup: speedup, ..Default::default() },
            warnings: Vec::new(),
            notes,
        })
    }
}

/// The grouping as printed: per op in order, its dense group and that group's kind.
fn grouping_signature(f: &Function) -> Vec<Option<(u32, Option<GroupKind>)>> {
    let Ok(order) = f.op_order() else { return Vec::new() };
    let dense = f.dense_group_ids(&order);
    order.iter().map(|&o| f.group(o).map(|g| (dense.get(&g).copied().unwrap_or(g), f.group_kind(g)))).collect()
}

/// How an op takes part in fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Elementwise,
    Reduction,
    Matmul,
    Attention,
    /// A data-movement op that codegen can express as an index map of its input.
    View,
    /// Data movement that copies (concat, gather, pad, …).
    Move,
    Opaque,
}

fn classify(op: &Op) -> Class {
    if op.is_unary_elementwise() || op.is_binary_elementwise() {
        return Class::Elementwise;
    }
    if op.reduction().is_some() {
        return Class::Reduction;
    }
    match op {
        Op::Where | Op::SiluMul | Op::RotaryEmbedding { .. } => Class::Elementwise,
        Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::RmsNorm { .. }
        | Op::RmsNormResidual { .. }
        | Op::LayerNorm { .. } => Class::Reduction,
        Op::MatMul | Op::Gemm { .. } | Op::Linear | Op::QuantizedLinear | Op::PackedLinear { .. } => Class::Matmul,
        Op::Attention { .. } => Class::Attention,
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Expand
        | Op::Slice { .. } => Class::View,
        Op::Concat { .. }
        | Op::Split { .. }
        | Op::Gather { .. }
        | Op::GatherElements { .. }
        | Op::GatherNd { .. }
        | Op::Pad { .. }
        | Op::Tile { .. }
        | Op::Trilu { .. } => Class::Move,
        _ => Class::Opaque,
    }
}

/// Ops costing a libm-style call or polynomial per element.
fn is_transcendental(op: &Op) -> bool {
    matches!(
        op,
        Op::Exp
            | Op::Log
            | Op::Sin
            | Op::Cos
            | Op::Tanh
            | Op::Erf
            | Op::Pow
            | Op::Sigmoid
            | Op::Softplus
            | Op::Gelu { .. }
    )
}

/// Whether op `o` reads `v` broadcast: its (first) result has more elements than `v`, by a
/// higher rank or a size-1 dim of `v` where the result's dim is not 1.
fn broadcasts(f: &Function, v: ValueId, o: OpId) -> bool {
    let Some(r) = f.op(o).and_then(|d| d.results.first().copied()) else { return false };
    let (vs, rs) = (&f.ty(v).shape, &f.ty(r).shape);
    if vs.len() < rs.len() {
        return true;
    }
    vs.iter()
        .zip(rs.iter().skip(rs.len().saturating_sub(vs.len())))
        .any(|(a, b)| a.as_fixed() == Some(1) && b.as_fixed() != Some(1))
}

fn is_gather(op: &Op) -> bool {
    matches!(op, Op::Gather { .. } | Op::GatherElements { .. } | Op::GatherNd { .. })
}

fn base_kind(class: Class) -> GroupKind {
    match class {
        Class::Elementwise => GroupKind::Elementwise,
        Class::Reduction => GroupKind::Reduction,
        Class::Matmul => GroupKind::Matmul,
        Class::Attention => GroupKind::Attention,
        Class::View | Class::Move => GroupKind::DataMovement,
        Class::Opaque => GroupKind::Opaque,
    }
}

fn is_anchor(kind: GroupKind) -> bool {
    matches!(kind, GroupKind::Reduction | GroupKind::Matmul | GroupKind::Attention)
}

/// The kind of the merged group when op `o` (of `class`, now in a group of kind
/// `current`) absorbs the group of kind `producer` through a value that `exclusive`ly
/// feeds `o`; `None` when they must stay apart.
fn merged_kind(class: Class, current: GroupKind, producer: GroupKind, exclusive: bool) -> Option<GroupKind> {
    use GroupKind as K;
    if producer == K::Opaque || current == K::Opaque {
        return None;
    }
    match class {
        Class::Elementwise => match (current, producer) {
            (K::Elementwise, K::Elementwise) => Some(K::Elementwise),
            // Views feeding an elementwise op become its index maps.
            (K::Elementwise, K::DataMovement) => Some(K::Elementwise),
            // Consumers of a reduction share its kernel.
            (K::Elementwise, K::Reduction) => Some(K::Reduction),
            // Epilogues: only when the matmul/attention result is needed nowhere else.
            (K::Elementwise, K::Matmul | K::Attention) if exclusive => Some(producer),
            // Extra elementwise inputs of a reduction's consumer, computed in the same kernel.
            (K::Reduction, K::Elementwise) if exclusive => Some(K::Reduction),
            _ => None,
        },
        Class::Reduction => match (current, producer) {
            (K::Reduction, K::Elementwise | K::DataMovement) if exclusive => Some(K::Reduction),
            _ => None,
        },
        Class::View => match (current, producer) {
            (K::DataMovement, K::Elementwise | K::DataMovement | K::Reduction) => Some(producer),
            (K::DataMovement, K::Matmul | K::Attention) if exclusive => Some(producer),
            _ => None,
        },
        Class::Move => match (current, producer) {
            (K::DataMovement, K::DataMovement) => Some(K::DataMovement),
            _ => None,
        },
        Class::Matmul | Class::Attention | Class::Opaque => None,
    }
}

#[derive(Debug, Default)]
struct FnStats {
    ops: usize,
    kinds: BTreeMap<GroupKind, usize>,
    internal_values: usize,
}

/// Groups being built: members and kind per group index; merged-away groups are empty.
struct Partition {
    group_of: HashMap<OpId, usize>,
    members: Vec<Vec<OpId>>,
    kinds: Vec<GroupKind>,
}

impl Partition {
    fn merge(&mut self, keep: usize, gone: usize, kind: GroupKind) {
        let moved = std::mem::take(&mut self.members[gone]);
        for &o in &moved {
            self.group_of.insert(o, keep);
        }
        self.members[keep].extend(moved);
        self.kinds[keep] = kind;
    }
}

/// Ops reading any result of `o`, deduplicated, in id order.
fn successors(f: &Function, o: OpId) -> Vec<OpId> {
    let mut out: Vec<OpId> = f
        .op(o)
        .map(|d| d.results.iter().flat_map(|&r| f.value(r).uses.iter().map(|u| u.op)).collect())
        .unwrap_or_default();
    out.retain(|s| f.op(*s).is_some());
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether uniting groups `a` and `b` would put a cycle into the graph of groups: a path
/// that leaves the union, runs through other ops (each other group counts as one node,
/// since it runs as one kernel) and comes back. Only ops already placed can lie on such a
/// path, since every member precedes the op being placed.
fn merge_makes_cycle(f: &Function, part: &Partition, a: usize, b: usize, placed: &HashSet<OpId>) -> bool {
    let union: HashSet<OpId> = part.members[a].iter().chain(&part.members[b]).copied().collect();
    let mut seen_ops: HashSet<OpId> = HashSet::new();
    let mut seen_groups: HashSet<usize> = HashSet::new();
    let mut stack: Vec<OpId> = Vec::new();
    for &m in &union {
        stack.extend(successors(f, m).into_iter().filter(|s| !union.contains(s)));
    }
    while let Some(x) = stack.pop() {
        if union.contains(&x) {
            return true;
        }
        if !placed.contains(&x) || !seen_ops.insert(x) {
            continue;
        }
        let mut from = vec![x];
        if let Some(&g) = part.group_of.get(&x) {
            if seen_groups.insert(g) {
                from = part.members[g].clone();
                seen_ops.extend(from.iter().copied());
            } else {
                continue;
            }
        }
        for o in from {
            stack.extend(successors(f, o));
        }
    }
    false
}

/// Whether every use of `v` is by op `o` (and `v` is not a function output).
fn feeds_only(f: &Function, v: ValueId, o: OpId) -> bool {
    f.value(v).uses.iter().all(|u| u.op == o) && !f.outputs().iter().any(|(_, out)| *out == v)
}

/// Recompute `f`'s groups from scratch; `None` (and `f` untouched) if the graph is cyclic.
fn assign_groups(f: &mut Function) -> Option<FnStats> {
    let order = f.op_order().ok()?;
    // Weight-derived ops: every operand a weight or a weight-derived result (this is
    // `matchers::is_weight_derived` computed once for all ops in topological order).
    let mut weight_derived: HashSet<OpId> = HashSet::new();
    for &o in &order {
        let data = f.op(o)?;
        let derived = data.operands.iter().all(|&v| match &f.value(v).def {
            ValueDef::Weight { .. } => true,
            ValueDef::Result { op, .. } => weight_derived.contains(op),
            ValueDef::Param { .. } => false,
        });
        if derived {
            weight_derived.insert(o);
        }
    }

    let mut part = Partition { group_of: HashMap::new(), members: Vec::new(), kinds: Vec::new() };
    let mut placed: HashSet<OpId> = HashSet::new();
    for &o in &order {
        if weight_derived.contains(&o) {
            continue;
        }
        let data = f.op(o)?.clone();
        let class = classify(&data.op);
        let mine = part.members.len();
        part.members.push(vec![o]);
        part.kinds.push(base_kind(class));
        part.group_of.insert(o, mine);
        placed.insert(o);
        let mut current = mine;
        // Data movement fuses along its data operand only; index and shape operands are
        // separate computations.
        let candidates: &[ValueId] = match class {
            Class::View => &data.operands[..data.operands.len().min(1)],
            _ => &data.operands,
        };
        for &v in candidates {
            let Some(p) = f.producer(v) else { continue };
            let Some(&pg) = part.group_of.get(&p) else { continue };
            if pg == current {
                continue;
            }
            let exclusive = feeds_only(f, v, o);
            let Some(kind) = merged_kind(class, part.kinds[current], part.kinds[pg], exclusive) else { continue };
            // A gathered row has no affine address, so a reduction over it could only be
            // lowered by codegen's coordinate template, which recomputes the reduction for every
            // output element (BERT's embeddings → layer_norm: 0.6 s for 256 rows of 768).
            if class == Class::Reduction && part.members[pg].iter().any(|&m| f.op(m).is_some_and(|d| is_gather(&d.op)))
            {
                continue;
            }
            if is_anchor(part.kinds[current]) && is_anchor(part.kinds[pg]) {
                continue;
            }
            // A fused producer is evaluated once per element of its consumer: reading `v`
            // broadcast (rotary cos/sin tables `[b, 1, s, d]` applied to `[b, h, s, d]`) would
            // recompute the producer's transcendentals for every repeat.
            if class == Class::Elementwise
                && broadcasts(f, v, o)
                && part.members[pg].iter().any(|&m| f.op(m).is_some_and(|d| is_transcendental(&d.op)))
            {
                continue;
            }
            if merge_makes_cycle(f, &part, current, pg, &placed) {
                continue;
            }
            part.merge(pg, current, kind);
            current = pg;
        }
    }

    // Record with ids dense in order of first appearance.
    f.clear_groups();
    let mut ids: HashMap<usize, u32> = HashMap::new();
    let mut stats = FnStats::default();
    for &o in &order {
        let Some(&g) = part.group_of.get(&o) else { continue };
        let next = ids.len() as u32;
        let id = *ids.entry(g).or_insert_with(|| {
            *stats.kinds.entry(part.kinds[g]).or_default() += 1;
            next
        });
        if f.group_kind(id).is_none() {
            f.set_group_kind(id, part.kinds[g]);
        }
        f.set_group(o, Some(id));
        stats.ops += 1;
    }
    for &o in &order {
        let Some(g) = f.group(o) else { continue };
        for &r in &f.op(o)?.results {
            let inside = f.value(r).uses.iter().all(|u| f.group(u.op) == Some(g));
            if f.is_used(r) && inside && !f.outputs().iter().any(|(_, out)| *out == r) {
                stats.internal_values += 1;
            }
        }
    }
    Some(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::PassManager;
    use ferrumc_ir::text::{parse_module, print_module};
    use ferrumc_ir::verify::verify_module;

    fn run(src: &str) -> Module {
        let mut m = parse_module(src).unwrap();
        PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
        m
    }

    /// (op name, group, kind) per op in order.
    fn groups(m: &Module) -> Vec<(String, Option<u32>, Option<GroupKind>)> {
        let f = &m.functions[0];
        let order = f.op_order().unwrap();
        order
            .iter()
            .map(|&o| (f.op(o).unwrap().op.name().to_string(), f.group(o), f.group(o).and_then(|g| f.group_kind(g))))
            .collect()
    }

    fn g(name: &str, id: u32, kind: GroupKind) -> (String, Option<u32>, Option<GroupKind>) {
        (name.to_string(), Some(id), Some(kind))
    }

    const EPILOGUE: &str = "module @m
weight @w : f32[4, 8] = safetensors(\"m.safetensors\", \"w\")
weight @b : f32[4] = safetensors(\"m.safetensors\", \"b\")
func @forward(%x: f32[?n, 8]) -> (y: f32[?n, 4]) {
  %0 = linear %x, @w : f32[?n, 4]
  %1 = add %0, @b : f32[?n, 4]
  %2 = gelu %1 {approximate = \"none\"} : f32[?n, 4]
  return %2
}
";

    #[test]
    fn matmul_takes_its_epilogue() {
        let m = run(EPILOGUE);
        use GroupKind::*;
        assert_eq!(groups(&m), vec![g("linear", 0, Matmul), g("add", 0, Matmul), g("gelu", 0, Matmul)]);
    }

    #[test]
    fn a_second_use_of_the_matmul_result_blocks_the_epilogue() {
        let src =
            EPILOGUE.replace("(y: f32[?n, 4])", "(y: f32[?n, 4], z: f32[?n, 4])").replace("return %2", "return %2, %0");
        let m = run(&src);
        use GroupKind::*;
        assert_eq!(groups(&m), vec![g("linear", 0, Matmul), g("add", 1, Elementwise), g("gelu", 1, Elementwise)]);
    }

    #[test]
    fn two_matmuls_never_share_a_group() {
        let m = run("module @m
func @forward(%x: f32[4, 8], %a: f32[8, 8], %b: f32[8, 8]) -> (y: f32[4, 8]) {
  %0 = matmul %x, %a : f32[4, 8]
  %1 = matmul %x, %b : f32[4, 8]
  %2 = silu_mul %0, %1 : f32[4, 8]
  return %2
}
");
        use GroupKind::*;
        assert_eq!(groups(&m), vec![g("matmul", 0, Matmul), g("matmul", 1, Matmul), g("silu_mul", 0, Matmul)]);
    }

    #[test]
    fn merging_that_would_make_a_cycle_is_refused() {
        // exp -> reduce_sum -> div and exp -> div: putting div with exp would need the
        // reduction both after and before that kernel.
        let m = run("module @m
func @forward(%x: f32[4, 8]) -> (y: f32[4, 8]) {
  %0 = reduce_max %x {axes = [1], keepdims = true} : f32[4, 1]
  %1 = sub %x, %0 : f32[4, 8]
  %2 = exp %1 : f32[4, 8]
  %3 = reduce_sum %2 {axes = [1], keepdims = true} : f32[4, 1]
  %4 = div %2, %3 : f32[4, 8]
  return %4
}
");
        use GroupKind::*;
        assert_eq!(
            groups(&m),
            vec![
                g("reduce_max", 0, Reduction),
                g("sub", 0, Reduction),
                g("exp", 0, Reduction),
                g("reduce_sum", 1, Reduction),
                g("div", 1, Reduction)
            ]
        );
        assert!(verify_module(&m).is_ok());
    }

    #[test]
    fn weight_derived_ops_stay_ungrouped_and_rerun_is_stable() {
        let src = "module @m
weight @w : f32[8, 4] = safetensors(\"m.safetensors\", \"w\")
func @forward(%x: f32[2, 8]) -> (y: f32[2, 4]) {
  %0 = transpose @w {perm = [1, 0]} : f32[4, 8]
  %1 = linear %x, %0 : f32[2, 4]
  %2 = relu %1 : f32[2, 4]
  return %2
}
";
        let mut m = run(src);
        use GroupKind::*;
        assert_eq!(
            groups(&m),
            vec![("transpose".to_string(), None, None), g("linear", 0, Matmul), g("relu", 0, Matmul)]
        );
        let once = print_module(&m);
        let r = PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
        assert_eq!(print_module(&m), once);
        assert!(!r.iter().any(|p| p.result.applied), "rerun changes nothing");
    }

    #[test]
    fn stale_groups_are_replaced() {
        let src = EPILOGUE
            .replace(
                "func @forward(%x: f32[?n, 8]) -> (y: f32[?n, 4]) {",
                "func @forward(%x: f32[?n, 8]) -> (y: f32[?n, 4]) {\n  group 5 : opaque\n  group 6 : opaque",
            )
            .replace(": f32[?n, 4]\n  %1", ": f32[?n, 4] group 5\n  %1")
            .replace("f32[?n, 4]\n  return", "f32[?n, 4] group 6\n  return");
        let m = run(&src);
        use GroupKind::*;
        assert_eq!(groups(&m), vec![g("linear", 0, Matmul), g("add", 0, Matmul), g("gelu", 0, Matmul)]);
        assert_eq!(m.functions[0].group_kinds().len(), 1);
    }

    fn fixture(rel: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
    }

    /// Groups are annotations: the interpreter computes exactly the same thing, and the
    /// grouping survives text and JSON round trips.
    fn check_fixture(m: Module, dir: &std::path::Path) {
        use ferrumc_ir::interp::run_function;
        use ferrumc_ir::weights::FileWeights;
        let mut grouped = m.clone();
        let result = PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut grouped).unwrap();
        assert!(result.iter().any(|p| p.result.applied));
        let f = &grouped.functions[0];
        assert!(f.op_ids().any(|o| f.group(o).is_some()));
        assert!(verify_module(&grouped).is_ok());
        let text = print_module(&grouped);
        assert_eq!(parse_module(&text).unwrap(), grouped.canonical().unwrap());
        let json = ferrumc_ir::json::to_json_string(&grouped).unwrap();
        assert_eq!(ferrumc_ir::json::from_json_str(&json).unwrap(), grouped.canonical().unwrap());

        let f = &m.functions[0];
        let inputs: Vec<(String, ferrumc_ir::Tensor)> = f
            .params()
            .iter()
            .map(|(name, v)| {
                let ty = f.ty(*v);
                let shape: Vec<usize> = ty
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d.as_fixed().map(|n| n as usize).unwrap_or(if i == 0 { 1 } else { 3 }))
                    .collect();
                let n: usize = shape.iter().product();
                let t = if ty.dtype.is_float() {
                    ferrumc_ir::Tensor::from_f64(ty.dtype, shape, (0..n).map(|i| (i as f64 * 0.37).sin()).collect())
                } else {
                    ferrumc_ir::Tensor::from_i64(ty.dtype, shape, (0..n).map(|i| (i % 7) as i64 + 1).collect())
                }
                .unwrap();
                (name.clone(), t)
            })
            .collect();
        let weights = FileWeights::new(dir);
        let a = run_function(&m, &f.name, &inputs, &weights).unwrap();
        let b = run_function(&grouped, &f.name, &inputs, &weights).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn llama_hf_groups_keep_results() {
        let dir = fixture("hf/llama");
        let (m, _) = ferrumc_hf::import_hf(&dir).unwrap();
        check_fixture(m, &dir);
    }

    #[test]
    fn llama_onnx_groups_keep_results() {
        let path = fixture("onnx_llama/model.onnx");
        let m = ferrumc_onnx::import_onnx(&path).unwrap();
        let dir = path.parent().unwrap().to_path_buf();
        check_fixture(m, &dir);
    }
}
