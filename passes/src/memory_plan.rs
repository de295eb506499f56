//! Static memory planning: place every run-time intermediate of a function at a byte offset
//! in one arena, for concrete values of the symbolic dims (a *bucket*), so codegen can
//! allocate a single block per call instead of one allocation per tensor.
//!
//! What lives in the arena: every op result that is not weight-derived (see
//! [`crate::matchers::is_weight_derived`]; those are compile-time constants codegen evaluates
//! once). Function outputs are in the arena too: they live until the function returns.
//! Params and weights are not: the caller and the weight table own them.
//!
//! Time is the position of ops in [`Function::op_order`]: a value is live from the op that
//! defines it to its last use (inclusive: an op reads its operands while writing its results,
//! so it never writes over an operand); outputs stay live until time `n` (the return, one
//! past the last op). A result nobody uses still needs its bytes while its op runs.
//!
//! View ops (`reshape`, `squeeze`, `unsqueeze`, `identity`) of an arena value share their
//! operand's storage (the IR has no mutation and every tensor is contiguous row-major, so
//! the bytes are identical): such a [`Buffer`] has `alias_of` set, the same offset as the
//! value it aliases, and codegen must emit no copy for it. A storage group's live range is
//! the union of its members'.
//!
//! Placement: greedy by size, largest first (ties by definition time, then value id), each
//! group at the lowest 64-byte-aligned offset that overlaps no already placed group live at
//! the same time. The lower bound reported next to the peak is the largest total of
//! (aligned) bytes live at one moment: no placement can do better.
//!
//! A plan is bucket-specific; [`plan_buckets`] plans a list of buckets and
//! [`default_buckets`] gives the rule the `memory-plan` pass uses to choose them.

use ferrumc_ir::{Attr, Function, Module, Op, OpId, ValueDef, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Every offset and every reserved extent is a multiple of this many bytes (cache line / AVX-512).
pub const ALIGN: u64 = 64;

/// Where one value lives in the arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub value: ValueId,
    /// Byte offset in the arena (a multiple of [`ALIGN`]).
    pub offset: u64,
    /// Exact storage bytes of the value (dtype storage size, block-quantized dtypes included).
    pub size: u64,
    /// Time of the defining op (its index in `op_order` for [`plan_function`]).
    pub first: usize,
    /// Time of the last use; one past the last time for function outputs.
    pub last: usize,
    /// The value whose storage this view shares (its group's root), if any.
    pub alias_of: Option<ValueId>,
}

impl Buffer {
    /// The value that owns the storage this buffer uses.
    pub fn storage(&self) -> ValueId {
        self.alias_of.unwrap_or(self.value)
    }
}

/// An arena layout for one function and one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The symbol values the plan was made for.
    pub bucket: BTreeMap<String, i64>,
    /// Arena size in bytes (a multiple of [`ALIGN`]).
    pub peak_bytes: u64,
    /// The largest sum of aligned storage sizes live at one time (peak can not be lower).
    pub lower_bound_bytes: u64,
    /// The sum of aligned storage sizes of all groups (what one allocation per tensor costs).
    pub total_bytes: u64,
    /// One entry per arena value, in definition order.
    pub buffers: Vec<Buffer>,
}

fn align_up(x: u64) -> Option<u64> {
    x.checked_add(ALIGN - 1).map(|y| y / ALIGN * ALIGN)
}

fn overlaps(a_first: usize, a_last: usize, b_first: usize, b_last: usize) -> bool {
    a_first <= b_last && b_first <= a_last
}

impl MemoryPlan {
    /// Check the plan is usable: offsets aligned, every buffer inside `peak_bytes`, views at
    /// their storage's offset, and no two buffers of different storage that are live at the
    /// same time share a byte.
    pub fn verify(&self) -> Result<(), String> {
        if self.peak_bytes % ALIGN != 0 {
            return Err(format!("peak {} is not a multiple of {ALIGN}", self.peak_bytes));
        }
        let by_value: HashMap<ValueId, &Buffer> = self.buffers.iter().map(|b| (b.value, b)).collect();
        for b in &self.buffers {
            if b.offset % ALIGN != 0 {
                return Err(format!("{}: offset {} is not {ALIGN}-byte aligned", b.value, b.offset));
            }
            if b.first > b.last {
                return Err(format!("{}: live range {}..={} is empty", b.value, b.first, b.last));
            }
            let end = b.offset.checked_add(b.size).ok_or_else(|| format!("{}: offset + size overflows", b.value))?;
            if end > self.peak_bytes {
                return Err(format!(
                    "{}: bytes {}..{end} lie outside the arena of {}",
                    b.value, b.offset, self.peak_bytes
                ));
            }
            if let Some(root) = b.alias_of {
                match by_value.get(&root) {
                    Some(r) if r.alias_of.is_none() && r.offset == b.offset && r.size >= b.size => {}
                    _ => {
                        return Err(format!(
                            "{}: aliases {root}, which is not a root buffer at the same offset",
                            b.value
                        ))
                    }
                }
            }
        }
        // Sweep by definition time so only buffers that can still be live are compared.
        let mut order: Vec<&Buffer> = self.buffers.iter().filter(|b| b.size > 0).collect();
        order.sort_by_key(|b| (b.first, b.value));
        for (i, a) in order.iter().enumerate() {
            for b in &order[i + 1..] {
                if b.first > a.last {
                    break;
                }
                if a.storage() == b.storage() {
                    continue;
                }
                let bytes_overlap = a.offset < b.offset + b.size && b.offset < a.offset + a.size;
                if bytes_overlap && overlaps(a.first, a.last, b.first, b.last) {
                    return Err(format!(
                        "{} (bytes {}..{}, live {}..={}) and {} (bytes {}..{}, live {}..={}) overlap",
                        a.value,
                        a.offset,
                        a.offset + a.size,
                        a.first,
                        a.last,
                        b.value,
                        b.offset,
                        b.offset + b.size,
                        b.first,
                        b.last
                    ));
                }
            }
        }
        Ok(())
    }

    /// A short label of the bucket, usable in a plain attribute name: `batch1_seq128`.
    pub fn bucket_label(&self) -> String {
        bucket_label(&self.bucket)
    }

    /// The buffer of `v`, if it lives in the arena.
    pub fn buffer(&self, v: ValueId) -> Option<&Buffer> {
        self.buffers.iter().find(|b| b.value == v)
    }
}

/// `{batch: 1, seq: 128}` → `batch1_seq128` (`static` for an empty bucket).
pub fn bucket_label(bucket: &BTreeMap<String, i64>) -> String {
    if bucket.is_empty() {
        return "static".to_string();
    }
    bucket.iter().map(|(k, v)| format!("{k}{v}")).collect::<Vec<_>>().join("_")
}

/// Storage bytes of a value of type `ty` under the bucket's symbol values.
fn value_bytes(f: &Function, v: ValueId, bindings: &HashMap<String, i64>) -> Result<u64, String> {
    let ty = f.ty(v);
    let shape = ty.eval_shape(bindings).ok_or_else(|| format!("{v}: type {ty} has a dim the bucket does not fix"))?;
    let mut numel: u64 = 1;
    for &d in &shape {
        let d = u64::try_from(d).map_err(|_| format!("{v}: type {ty} has a negative dim under the bucket"))?;
        numel = numel.checked_mul(d).ok_or_else(|| format!("{v}: element count overflows"))?;
    }
    let last = shape.last().map_or(1, |&d| d as u64);
    if !ty.dtype.is_quantized() || numel == 0 {
        return numel.checked_mul(ty.dtype.block_bytes()).ok_or_else(|| format!("{v}: byte size overflows"));
    }
    ty.dtype
        .storage_bytes(numel, last)
        .ok_or_else(|| format!("{v}: {} storage of {numel} elements (last dim {last}) is not whole blocks", ty.dtype))
}

/// Whether `op`'s result is a byte-identical view of its first operand.
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Identity)
}

/// Plan `f`'s arena for the symbol values in `bucket`. Fails when an arena value has a dim
/// the bucket does not fix (`?`, or a symbol missing from the bucket), on a cycle, or on
/// byte-size overflow.
pub fn plan_function(m: &Module, f: &Function, bucket: &BTreeMap<String, i64>) -> Result<MemoryPlan, String> {
    let order = f.op_order().map_err(|e| e.to_string())?;
    let position: HashMap<OpId, usize> = order.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    plan_function_at(m, f, bucket, &position)
}

/// [`plan_function`] with explicit op times instead of positions in `op_order`: `time[op]` is
/// when the op runs (ops sharing a time run as one step, e.g. a fused kernel that reads its
/// operands while writing its results, so everything it reads and writes is live together).
/// Times must respect dependencies (an op's time ≥ its operands' producers' times); buffers'
/// `first`/`last` are then times, and outputs live until one past the largest time.
pub fn plan_function_at(
    _m: &Module,
    f: &Function,
    bucket: &BTreeMap<String, i64>,
    position: &HashMap<OpId, usize>,
) -> Result<MemoryPlan, String> {
    let order = f.op_order().map_err(|e| e.to_string())?;
    let n = position.values().max().map_or(0, |t| t + 1);
    let bindings: HashMap<String, i64> = bucket.iter().map(|(k, v)| (k.clone(), *v)).collect();

    // Weight-derived in one forward sweep (same definition as `matchers::is_weight_derived`).
    let mut constant: HashMap<ValueId, bool> = HashMap::new();
    let is_const = |constant: &HashMap<ValueId, bool>, v: ValueId| match &f.value(v).def {
        ValueDef::Param { .. } => false,
        ValueDef::Weight { .. } => true,
        ValueDef::Result { .. } => constant.get(&v).copied().unwrap_or(false),
    };
    // Arena values in definition order, each with (first, last, size, root).
    let mut values: Vec<ValueId> = Vec::new();
    let mut first: HashMap<ValueId, usize> = HashMap::new();
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    for &id in &order {
        let Some(data) = f.op(id) else { continue };
        let i = position.get(&id).copied().ok_or_else(|| format!("op {id:?} has no time"))?;
        // A result of symbolic shape (`expand` of a constant to `?seq`) depends on the
        // inputs' dims: codegen computes it at run time, so it needs a slot.
        let static_results = data.results.iter().all(|r| f.ty(*r).shape.iter().all(|d| d.as_fixed().is_some()));
        let c = static_results && data.operands.iter().all(|&v| is_const(&constant, v));
        for &r in &data.results {
            constant.insert(r, c);
            if !c {
                values.push(r);
                first.insert(r, i);
            }
        }
        if !c && is_view(&data.op) && data.results.len() == 1 {
            if let (Some(&src), Some(&dst)) = (data.operands.first(), data.results.first()) {
                if let Some(&src_root) = root.get(&src).or(first.get(&src).map(|_| &src)) {
                    if f.ty(src).dtype == f.ty(dst).dtype {
                        root.insert(dst, src_root);
                    }
                }
            }
        }
    }
    let outputs: BTreeSet<ValueId> = f.outputs().iter().map(|(_, v)| *v).collect();
    let mut last: HashMap<ValueId, usize> = HashMap::new();
    let mut size: HashMap<ValueId, u64> = HashMap::new();
    for &v in &values {
        let mut l = first[&v];
        for u in &f.value(v).uses {
            if let Some(&p) = position.get(&u.op) {
                l = l.max(p);
            }
        }
        if outputs.contains(&v) {
            l = n;
        }
        last.insert(v, l);
        size.insert(v, value_bytes(f, v, &bindings)?);
    }

    // Storage groups: root → (first, last, aligned bytes).
    let mut groups: BTreeMap<ValueId, (usize, usize, u64)> = BTreeMap::new();
    for &v in &values {
        let r = root.get(&v).copied().unwrap_or(v);
        let aligned = align_up(size[&v]).ok_or_else(|| format!("{v}: byte size overflows"))?;
        let g = groups.entry(r).or_insert((first[&v], last[&v], aligned));
        g.0 = g.0.min(first[&v]);
        g.1 = g.1.max(last[&v]);
        g.2 = g.2.max(aligned);
    }

    let mut by_size: Vec<(ValueId, (usize, usize, u64))> = groups.iter().map(|(r, g)| (*r, *g)).collect();
    by_size.sort_by(|a, b| b.1 .2.cmp(&a.1 .2).then(a.1 .0.cmp(&b.1 .0)).then(a.0.cmp(&b.0)));
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new(); // (offset, aligned size, first, last)
    let mut offsets: HashMap<ValueId, u64> = HashMap::new();
    let mut peak: u64 = 0;
    for (r, (gf, gl, gsize)) in by_size {
        let offset = if gsize == 0 {
            0
        } else {
            let mut busy: Vec<(u64, u64)> =
                placed.iter().filter(|p| p.1 > 0 && overlaps(gf, gl, p.2, p.3)).map(|p| (p.0, p.0 + p.1)).collect();
            busy.sort_unstable();
            let mut candidate = 0u64;
            for (start, end) in busy {
                if candidate.checked_add(gsize).is_some_and(|e| e <= start) {
                    break;
                }
                candidate = candidate.max(end);
            }
            candidate
        };
        let end = offset.checked_add(gsize).ok_or_else(|| "arena size overflows".to_string())?;
        peak = peak.max(end);
        placed.push((offset, gsize, gf, gl));
        offsets.insert(r, offset);
    }

    // Lower bound: sweep the events of every group.
    let mut delta: Vec<i128> = vec![0; n + 2];
    for (gf, gl, gsize) in groups.values() {
        delta[*gf] += i128::from(*gsize);
        delta[*gl + 1] -= i128::from(*gsize);
    }
    let mut live: i128 = 0;
    let mut lower: i128 = 0;
    for d in delta {
        live += d;
        lower = lower.max(live);
    }
    let total: u64 = groups.values().map(|g| g.2).fold(0u64, u64::saturating_add);

    let buffers = values
        .iter()
        .map(|&v| {
            let r = root.get(&v).copied();
            let storage = r.unwrap_or(v);
            Buffer {
                value: v,
                offset: offsets.get(&storage).copied().unwrap_or(0),
                size: size[&v],
                first: first[&v],
                last: last[&v],
                alias_of: r,
            }
        })
        .collect();
    Ok(MemoryPlan {
        bucket: bucket.clone(),
        peak_bytes: peak,
        lower_bound_bytes: u64::try_from(lower).unwrap_or(u64::MAX),
        total_bytes: total,
        buffers,
    })
}

/// Plan `f` for each bucket, in order.
pub fn plan_buckets(m: &Module, f: &Function, buckets: &[BTreeMap<String, i64>]) -> Result<Vec<MemoryPlan>, String> {
    buckets.iter().map(|b| plan_function(m, f, b)).collect()
}

/// Every symbol any value type of `f` mentions (params, op results, weights).
pub fn function_symbols(f: &Function) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |v: ValueId| {
        for d in &f.ty(v).shape {
            out.extend(d.symbols().into_iter().map(str::to_string));
        }
    };
    for (_, v) in f.params() {
        add(*v);
    }
    for id in f.op_ids() {
        if let Some(data) = f.op(id) {
            data.results.iter().copied().for_each(&mut add);
        }
    }
    out
}

/// The default sequence length `S` of the bucket rule: 128, or the module's
/// `max_sequence_length` attribute when that is smaller.
pub const DEFAULT_SEQ: i64 = 128;

/// The buckets the `memory-plan` pass plans `f` for.
///
/// Rule: the sequence lengths are the module attribute `memory_plan.seq_lengths` (a list of
/// integers) when present, else `{1, S}` with `S` = min(128, `max_sequence_length` attribute).
/// One bucket per sequence length `q`: `seq = q`, `past = S'` (the largest sequence length:
/// a decode step after a full prompt) when `f` mentions `past`, and every other symbol
/// (`batch`, …) 1. A function without symbols gets one empty bucket.
pub fn default_buckets(m: &Module, f: &Function) -> Vec<BTreeMap<String, i64>> {
    let symbols = function_symbols(f);
    if symbols.is_empty() {
        return vec![BTreeMap::new()];
    }
    let max_seq = match m.attrs.get("max_sequence_length") {
        Some(Attr::Int(s)) if *s >= 1 => (*s).min(DEFAULT_SEQ),
        _ => DEFAULT_SEQ,
    };
    let mut seqs: Vec<i64> = match m.attrs.get("memory_plan.seq_lengths") {
        Some(Attr::Ints(v)) if !v.is_empty() && v.iter().all(|&x| x >= 1) => v.clone(),
        _ => vec![1, max_seq],
    };
    seqs.sort_unstable();
    seqs.dedup();
    let past = seqs.last().copied().unwrap_or(max_seq);
    let mut out = Vec::new();
    if !symbols.contains("seq") {
        // No sequence axis: one bucket with everything at 1 (and `past` at S').
        return vec![symbols.iter().map(|s| (s.clone(), if s == "past" { past } else { 1 })).collect()];
    }
    for q in seqs {
        out.push(
            symbols
                .iter()
                .map(|s| {
                    let v = match s.as_str() {
                        "seq" => q,
                        "past" => past,
                        _ => 1,
                    };
                    (s.clone(), v)
                })
                .collect(),
        );
    }
    out
}

/// `1536` → `1.5 KB`, decimal units as memory reports usually use.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if b < 1000 {
        return format!("{b} B");
    }
    let mut x = b as f64;
    let mut unit = "B";
    for u in UNITS {
        if x < 1000.0 {
            break;
        }
        x /= 1000.0;
        unit = u;
    }
    format!("{x:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrumc_ir::{DType, Dim, TensorType};

    fn f32s(dims: &[i64]) -> TensorType {
        TensorType::fixed(DType::F32, dims)
    }

    fn no_bucket() -> BTreeMap<String, i64> {
        BTreeMap::new()
    }

    fn plan(f: &Function, bucket: &BTreeMap<String, i64>) -> MemoryPlan {
        let m = Module::new("m");
        let p = plan_function(&m, f, bucket).unwrap();
        p.verify().unwrap();
        assert!(p.peak_bytes >= p.lower_bound_bytes);
        p
    }

    /// x → exp → neg → tanh → out: only two 4 KB tensors are ever live together.
    #[test]
    fn a_chain_reuses_memory() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[1024]));
        let a = f.add_op1(Op::Exp, vec![x], f32s(&[1024]));
        let b = f.add_op1(Op::Neg, vec![a], f32s(&[1024]));
        let c = f.add_op1(Op::Tanh, vec![b], f32s(&[1024]));
        f.add_output("y", c);
        let p = plan(&f, &no_bucket());
        assert_eq!(p.buffers.len(), 3);
        assert_eq!(p.peak_bytes, 2 * 4096);
        assert_eq!(p.lower_bound_bytes, 2 * 4096);
        assert_eq!(p.total_bytes, 3 * 4096);
        assert_eq!(p.buffer(a).unwrap().offset, p.buffer(c).unwrap().offset);
        assert_eq!((p.buffer(c).unwrap().first, p.buffer(c).unwrap().last), (2, 3));
        assert!(p.buffer(x).is_none(), "params are not in the arena");
    }

    /// a feeds both b and c, which meet in d: a, b and c are live together.
    #[test]
    fn a_diamond_keeps_both_branches_live() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[1024]));
        let a = f.add_op1(Op::Exp, vec![x], f32s(&[1024]));
        let b = f.add_op1(Op::Neg, vec![a], f32s(&[1024]));
        let c = f.add_op1(Op::Tanh, vec![a], f32s(&[1024]));
        let d = f.add_op1(Op::Add, vec![b, c], f32s(&[1024]));
        f.add_output("y", d);
        let p = plan(&f, &no_bucket());
        assert_eq!(p.lower_bound_bytes, 3 * 4096);
        assert_eq!(p.peak_bytes, 3 * 4096);
        let offsets: BTreeSet<u64> = [a, b, c].iter().map(|v| p.buffer(*v).unwrap().offset).collect();
        assert_eq!(offsets.len(), 3);
        assert_ne!(p.buffer(b).unwrap().offset, p.buffer(d).unwrap().offset);
        assert_ne!(p.buffer(c).unwrap().offset, p.buffer(d).unwrap().offset);
    }

    #[test]
    fn multi_result_ops_get_separate_buffers() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[2, 512]));
        let s = f.add_op(Op::Split { axis: 0 }, vec![x], vec![f32s(&[1, 512]), f32s(&[1, 512])]);
        let r = f.op(s).unwrap().results.clone();
        let unused = f.add_op(Op::Split { axis: 0 }, vec![x], vec![f32s(&[1, 512]), f32s(&[1, 512])]);
        let unused = f.op(unused).unwrap().results.clone();
        let y = f.add_op1(Op::Add, vec![r[0], r[1]], f32s(&[1, 512]));
        f.add_output("y", y);
        let p = plan(&f, &no_bucket());
        let (b0, b1) = (p.buffer(r[0]).unwrap(), p.buffer(r[1]).unwrap());
        assert_eq!(b0.first, b1.first);
        assert_ne!(b0.offset, b1.offset);
        // Unused results still occupy bytes while their op runs, and only then.
        let u = p.buffer(unused[1]).unwrap();
        assert_eq!(u.first, u.last);
        assert_eq!(p.buffers.len(), 5);
    }

    #[test]
    fn symbolic_dims_are_evaluated_per_bucket() {
        let mut f = Function::new("main");
        let ty = TensorType::new(DType::F32, vec![Dim::sym("seq"), Dim::fixed(64)]);
        let x = f.add_param("x", ty.clone());
        let a = f.add_op1(Op::Exp, vec![x], ty.clone());
        let cat = TensorType::new(DType::F32, vec![Dim::sym("past").add(&Dim::sym("seq")), Dim::fixed(64)]);
        let k = f.add_param("k", TensorType::new(DType::F32, vec![Dim::sym("past"), Dim::fixed(64)]));
        let c = f.add_op1(Op::Concat { axis: 0 }, vec![k, a], cat);
        f.add_output("y", c);
        let bucket = |seq: i64, past: i64| BTreeMap::from([("seq".to_string(), seq), ("past".to_string(), past)]);
        let m = Module::new("m");
        let plans = plan_buckets(&m, &f, &[bucket(1, 0), bucket(128, 0), bucket(1, 127)]).unwrap();
        let sizes: Vec<(u64, u64)> =
            plans.iter().map(|p| (p.buffer(a).unwrap().size, p.buffer(c).unwrap().size)).collect();
        assert_eq!(sizes, vec![(256, 256), (128 * 256, 128 * 256), (256, 128 * 256)]);
        assert_eq!(plans[1].peak_bytes, 2 * 128 * 256);
        assert_eq!(plans[2].bucket_label(), "past127_seq1");
        // A symbol the bucket leaves open is an error, not a guess.
        let err = plan_function(&m, &f, &BTreeMap::from([("seq".to_string(), 4)])).unwrap_err();
        assert!(err.contains("does not fix"), "{err}");
    }

    #[test]
    fn weight_derived_values_stay_out_of_the_arena() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[4, 8]));
        let w = f.weight("w", f32s(&[8, 4]));
        let wt = f.add_op1(Op::Transpose { perm: vec![1, 0] }, vec![w], f32s(&[4, 8]));
        let y = f.add_op1(Op::Add, vec![x, wt], f32s(&[4, 8]));
        f.add_output("y", y);
        let p = plan(&f, &no_bucket());
        assert!(p.buffer(wt).is_none());
        assert_eq!(p.buffers.len(), 1);
        assert_eq!(p.buffer(y).unwrap().first, 1);
    }

    #[test]
    fn block_quantized_values_use_storage_bytes() {
        let mut f = Function::new("main");
        let x = f.add_param("x", TensorType::fixed(DType::Q4_0, &[2, 64]));
        let a = f.add_op1(Op::Identity, vec![x], TensorType::fixed(DType::Q4_0, &[2, 64]));
        let b = f.add_op1(Op::Identity, vec![x], TensorType::fixed(DType::Q8_0, &[3, 32]));
        let c = f.add_op1(Op::Identity, vec![x], TensorType::fixed(DType::Int4 { group_size: 16 }, &[16]));
        f.add_output("a", a);
        f.add_output("b", b);
        f.add_output("c", c);
        let p = plan(&f, &no_bucket());
        assert_eq!(p.buffer(a).unwrap().size, 4 * 18);
        assert_eq!(p.buffer(b).unwrap().size, 3 * 34);
        assert_eq!(p.buffer(c).unwrap().size, 10);
        let mut g = Function::new("bad");
        let x = g.add_param("x", f32s(&[2, 48]));
        let q = g.add_op1(Op::Identity, vec![x], TensorType::fixed(DType::Q4_0, &[2, 48]));
        g.add_output("q", q);
        assert!(plan_function(&Module::new("m"), &g, &no_bucket()).is_err());
    }

    #[test]
    fn views_share_their_operands_storage() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[4, 256]));
        let a = f.add_op1(Op::Exp, vec![x], f32s(&[4, 256]));
        let r = f.add_op1(Op::Reshape { allowzero: false }, vec![a], f32s(&[1024]));
        let u = f.add_op1(Op::Unsqueeze { axes: vec![0] }, vec![r], f32s(&[1, 1024]));
        let b = f.add_op1(Op::Neg, vec![u], f32s(&[1, 1024]));
        let px = f.add_op1(Op::Reshape { allowzero: false }, vec![x], f32s(&[1024]));
        let c = f.add_op1(Op::Add, vec![b, px], f32s(&[1, 1024]));
        f.add_output("y", c);
        let p = plan(&f, &no_bucket());
        assert_eq!(p.buffer(r).unwrap().alias_of, Some(a));
        assert_eq!(p.buffer(u).unwrap().alias_of, Some(a));
        assert_eq!(p.buffer(u).unwrap().offset, p.buffer(a).unwrap().offset);
        // A view of a param cannot alias (the param is not in the arena): it gets bytes.
        assert_eq!(p.buffer(px).unwrap().alias_of, None);
        // The group a/r/u lives until b reads u, so b must not sit on it.
        assert_ne!(p.buffer(b).unwrap().offset, p.buffer(a).unwrap().offset);
        assert_eq!(p.total_bytes, 4 * 4096);
    }

    #[test]
    fn verify_catches_corrupted_plans() {
        let mut f = Function::new("main");
        let x = f.add_param("x", f32s(&[1024]));
        let a = f.add_op1(Op::Exp, vec![x], f32s(&[1024]));
        let b = f.add_op1(Op::Neg, vec![a], f32s(&[1024]));
        let c = f.add_op1(Op::Add, vec![a, b], f32s(&[1024]));
        f.add_output("y", c);
        let good = plan(&f, &no_bucket());
        let idx = |p: &MemoryPlan, v| p.buffers.iter().position(|b| b.value == v).unwrap();

        let mut bad = good.clone();
        let (ia, ib) = (idx(&bad, a), idx(&bad, b));
        bad.buffers[ib].offset = bad.buffers[ia].offset;
        assert!(bad.verify().unwrap_err().contains("overlap"));

        let mut bad = good.clone();
        bad.buffers[ia].offset = good.peak_bytes;
        assert!(bad.verify().unwrap_err().contains("outside"));

        let mut bad = good.clone();
        bad.buffers[ia].offset += 8;
        assert!(bad.verify().unwrap_err().contains("aligned"));

        let mut bad = good.clone();
        bad.buffers[ib].alias_of = Some(a);
        assert!(bad.verify().is_err());

        let mut bad = good.clone();
        bad.peak_bytes -= 64;
        assert!(bad.verify().is_err());
    }

    #[test]
    fn default_bucket_rule() {
        let mut m = Module::new("m");
        let mut f = Function::new("decode");
        let t = TensorType::new(DType::F32, vec![Dim::sym("batch"), Dim::sym("past").add(&Dim::sym("seq"))]);
        let x = f.add_param("x", t.clone());
        let y = f.add_op1(Op::Exp, vec![x], t);
        f.add_output("y", y);
        let labels = |m: &Module| default_buckets(m, &f).iter().map(bucket_label).collect::<Vec<_>>();
        assert_eq!(labels(&m), vec!["batch1_past128_seq1", "batch1_past128_seq128"]);
        m.attrs.insert("max_sequence_length".into(), Attr::Int(64));
        assert_eq!(labels(&m), vec!["batch1_past64_seq1", "batch1_past64_seq64"]);
        m.attrs.insert("memory_plan.seq_lengths".into(), Attr::Ints(vec![16, 1, 16]));
        assert_eq!(labels(&m), vec!["batch1_past16_seq1", "batch1_past16_seq16"]);
        let mut g = Function::new("static");
        let x = g.add_param("x", f32s(&[2]));
        g.add_output("x", x);
        assert_eq!(default_buckets(&m, &g), vec![BTreeMap::new()]);
    }

    /// Deterministic xorshift, so the property test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random DAGs of elementwise, multi-result and view ops over params, weights and
    /// symbolic sizes: every plan verifies, peak ≥ lower bound ≥ the largest live buffer, and
    /// the lower bound matches a brute-force count.
    #[test]
    fn random_dags_always_verify() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..200 {
            let mut f = Function::new("main");
            let dims = |rng: &mut Rng| -> Vec<Dim> {
                match rng.below(3) {
                    0 => vec![Dim::sym("seq"), Dim::fixed(1 + rng.below(300) as i64)],
                    1 => vec![Dim::fixed(1 + rng.below(2000) as i64)],
                    _ => vec![Dim::sym("seq"), Dim::sym("past").add(&Dim::fixed(rng.below(5) as i64))],
                }
            };
            let mut pool: Vec<ValueId> = Vec::new();
            for i in 0..1 + rng.below(3) {
                pool.push(f.add_param(format!("p{i}"), TensorType::new(DType::F32, dims(&mut rng))));
            }
            for i in 0..rng.below(3) {
                pool.push(f.weight(&format!("w{i}"), f32s(&[1 + rng.below(100) as i64])));
            }
            for _ in 0..1 + rng.below(40) {
                let a = pool[rng.below(pool.len())];
                let b = pool[rng.below(pool.len())];
                let ty = TensorType::new(DType::F32, dims(&mut rng));
                match rng.below(4) {
                    0 => pool.push(f.add_op1(Op::Add, vec![a, b], ty)),
                    1 => {
                        let id = f.add_op(Op::Split { axis: 0 }, vec![a], vec![ty.clone(), ty]);
                        pool.extend(f.op(id).unwrap().results.clone());
                    }
                    2 => pool.push(f.add_op1(Op::Reshape { allowzero: false }, vec![a], f.ty(a).clone())),
                    _ => pool.push(f.add_op1(Op::Exp, vec![a], ty)),
                }
            }
            for k in 0..1 + rng.below(3) {
                f.add_output(format!("o{k}"), pool[rng.below(pool.len())]);
            }
            let bucket = BTreeMap::from([("seq".to_string(), 1 + rng.below(64) as i64), ("past".to_string(), 7)]);
            let p = plan_function(&Module::new("m"), &f, &bucket).unwrap();
            p.verify().unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert!(p.peak_bytes >= p.lower_bound_bytes, "case {case}");
            assert!(p.total_bytes >= p.peak_bytes || p.buffers.is_empty(), "case {case}");
            let n = f.op_count();
            let mut brute = 0u64;
            for t in 0..=n {
                let live: u64 = p
                    .buffers
                    .iter()
                    .filter(|b| b.alias_of.is_none())
                    .map(|b| {
                        let (lo, hi) = p
                            .buffers
                            .iter()
                            .filter(|m| m.storage() == b.value)
                            .fold((b.first, b.last), |(lo, hi), m| (lo.min(m.first), hi.max(m.last)));
                        if lo <= t && t <= hi {
                            align_up(b.size).unwrap()
                        } else {
                            0
                        }
                    })
                    .sum();
                brute = brute.max(live);
            }
            assert_eq!(brute, p.lower_bound_bytes, "case {case}");
        }
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(25_460_736), "25.5 MB");
    }
}
