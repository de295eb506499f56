//! `shape-inference`: re-infer every op's result types in topological order and refine
//! declared dims that are `?` where inference now knows them (symbolic or static), never
//! making a type less precise.
//!
//! ONNX exports compute shapes at run time (`shape` → `gather`/`squeeze`/`concat` →
//! `reshape`/`expand`/`range`). To see through those chains the pass tracks the *content*
//! of small integer values (rank ≤ 1, at most [`MAX_TRACKED`] elements) as a vector of
//! [`Dim`] polynomials: `shape x` yields `x`'s dims, and index/arithmetic ops on such
//! vectors are computed symbolically. Then:
//! * a value whose content is fully static becomes a `constant`;
//! * `reshape`/`expand`/`constant_of_shape` whose shape operand's content is known get
//!   exact result types, and when the result type is fully known (no `?`) the shape
//!   operand is dropped (their 1-operand forms take the target from the result type);
//! * `slice` with static `starts`/`ends` operands becomes the attribute form.
//!
//! Symbolic slice lengths assume, like [`ferrumc_ir::infer::slice_dim`], that a symbolic
//! dim is at least as long as what the slice cuts off.

use crate::cleanup_util::{erase_orphans, literal, operand_producers};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::infer::infer_types;
use ferrumc_ir::{DType, Dim, Function, Module, Op, OpId, Tensor, TensorType, ValueId};
use std::collections::{BTreeMap, HashMap};

/// Longest integer vector whose content is tracked symbolically.
pub const MAX_TRACKED: usize = 16;

/// The `shape-inference` pass.
#[derive(Debug)]
pub struct ShapeInference;

impl OptimizationPass for ShapeInference {
    fn name(&self) -> &'static str {
        "shape-inference"
    }

    fn summary(&self) -> &'static str {
        "Refine result types and resolve computed shapes symbolically"
    }

    fn apply(&self, module: &mut Module, options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut stats = Stats::default();
        for i in 0..module.functions.len() {
            let mut f = std::mem::replace(&mut module.functions[i], Function::new(""));
            let before = f.op_count();
            infer_function(module, &mut f, &options.dim_bounds, &mut stats);
            stats.erased += before.saturating_sub(f.op_count());
            module.functions[i] = f;
        }
        let mut result = OptimizationResult::unchanged();
        result.applied = stats.refined + stats.constants + stats.dropped_shapes > 0;
        result.stats.operations_eliminated = stats.erased;
        if stats.refined > 0 {
            result.notes.push(format!("{} result types refined", stats.refined));
        }
        if stats.constants > 0 {
            result.notes.push(format!("{} shape values became constants", stats.constants));
        }
        if stats.dropped_shapes > 0 {
            result.notes.push(format!("{} computed shape operands dropped", stats.dropped_shapes));
        }
        Ok(result)
    }
}

#[derive(Debug, Default)]
struct Stats {
    refined: usize,
    constants: usize,
    dropped_shapes: usize,
    erased: usize,
}

/// Symbolic content of tracked values.
type Contents = HashMap<ValueId, Vec<Dim>>;

/// Integer and bool values of rank ≤ 1 have tracked contents (a bool as 0 or 1: the
/// `where(equal(shape, -1), 1, shape)` that exporters wrap around `expand` targets).
fn is_index_type(ty: &TensorType) -> bool {
    matches!(ty.dtype, DType::I64 | DType::I32 | DType::Bool) && ty.rank() <= 1
}

fn content_of_tensor(t: &Tensor) -> Option<Vec<Dim>> {
    (matches!(t.dtype, DType::I64 | DType::I32 | DType::Bool) && t.rank() <= 1 && t.numel() <= MAX_TRACKED)
        .then(|| t.to_i64_vec().into_iter().map(Dim::fixed).collect())
}

fn all_fixed(c: &[Dim]) -> Option<Vec<i64>> {
    c.iter().map(Dim::as_fixed).collect()
}

/// Per-dim merge: keep the declared dim unless it is `?` and the other side knows it.
fn refine(declared: &TensorType, inferred: &TensorType) -> Option<TensorType> {
    if declared.dtype != inferred.dtype || declared.rank() != inferred.rank() {
        return None;
    }
    let mut changed = false;
    let shape = declared
        .shape
        .iter()
        .zip(&inferred.shape)
        .map(|(d, i)| {
            if d.is_unknown() && i.is_known() {
                changed = true;
                i.clone()
            } else {
                d.clone()
            }
        })
        .collect();
    changed.then(|| TensorType::new(declared.dtype, shape))
}

fn infer_function(m: &Module, f: &mut Function, bounds: &BTreeMap<String, i64>, stats: &mut Stats) {
    let Ok(order) = f.op_order() else { return };
    let mut contents: Contents = HashMap::new();
    let mut orphan_seeds: Vec<OpId> = Vec::new();
    for id in order {
        let Some(data) = f.op(id) else { continue };
        let (op, operands, results) = (data.op.clone(), data.operands.clone(), data.results.clone());
        let content = |v: &ValueId, contents: &Contents| -> Option<Vec<Dim>> {
            contents.get(v).cloned().or_else(|| literal(m, f, *v).and_then(content_of_tensor))
        };
        let ops_content: Vec<Option<Vec<Dim>>> = operands.iter().map(|v| content(v, &contents)).collect();

        // 1. Re-infer with every statically known operand supplied as a literal.
        let temps: Vec<Option<Tensor>> = operands
            .iter()
            .zip(&ops_content)
            .map(|(v, c)| {
                if literal(m, f, *v).is_some() {
                    return None;
                }
                let values = all_fixed(c.as_ref()?)?;
                let ty = f.ty(*v);
                let shape = ty.fixed_shape()?.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<_>>>()?;
                Tensor::from_i64(ty.dtype, shape, values).ok()
            })
            .collect();
        let consts: Vec<Option<&Tensor>> =
            operands.iter().zip(&temps).map(|(v, t)| t.as_ref().or_else(|| literal(m, f, *v))).collect();
        let owned_tys: Vec<TensorType> = operands.iter().map(|v| f.ty(*v).clone()).collect();
        let tys: Vec<&TensorType> = owned_tys.iter().collect();
        let declared: Vec<TensorType> = results.iter().map(|r| f.ty(*r).clone()).collect();
        let mut inferred: Vec<TensorType> = infer_types(&op, &tys, &consts, Some(&declared)).unwrap_or_default();
        if inferred.len() == declared.len() {
            if let Some(special) = symbolic_result(&op, &tys, &ops_content, &declared, bounds) {
                if let Some(better) = inferred.first().and_then(|i| refine(i, &special)) {
                    inferred[0] = better;
                }
            }
            for (r, (d, i)) in results.iter().zip(declared.iter().zip(&inferred)) {
                if let Some(t) = refine(d, i) {
                    f.set_type(*r, t);
                    stats.refined += 1;
                }
            }
        }

        // 2. Track the content of small integer results.
        if results.len() == 1 && is_index_type(f.ty(results[0])) {
            let r = results[0];
            let c = match &op {
                Op::Constant { value } => content_of_tensor(value),
                _ => eval_content(&op, &tys, &ops_content, f.ty(r)),
            };
            if let Some(c) = c.filter(|c| c.len() <= MAX_TRACKED) {
                if !matches!(op, Op::Constant { .. }) {
                    if let Some(values) = all_fixed(&c) {
                        let ty = f.ty(r).clone();
                        let shape = ty.fixed_shape().and_then(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect());
                        if let Some(t) = shape.and_then(|s| Tensor::from_i64(ty.dtype, s, values).ok()) {
                            let new = f.add_op1(Op::Constant { value: t }, vec![], ty);
                            f.replace_all_uses(r, new);
                            orphan_seeds.push(id);
                            stats.constants += 1;
                            contents.insert(new, c);
                            continue;
                        }
                    }
                }
                contents.insert(r, c);
            }
        }

        // 3. Drop shape operands the result type now makes redundant.
        if let Some(new_op) =
            static_form(&op, &operands, &tys, &ops_content, &results.iter().map(|r| f.ty(*r)).collect::<Vec<_>>())
        {
            let (new_op, keep) = new_op;
            let types: Vec<TensorType> = results.iter().map(|r| f.ty(*r).clone()).collect();
            let kept: Vec<ValueId> = keep.iter().map(|&k| operands[k]).collect();
            let nid = f.add_op(new_op, kept, types);
            let new_results = f.op(nid).map(|d| d.results.clone()).unwrap_or_default();
            for (old, new) in results.iter().zip(new_results) {
                f.replace_all_uses(*old, new);
                // Later ops look their operands' contents up under the new value.
                if let Some(c) = contents.get(old).cloned() {
                    contents.insert(new, c);
                }
            }
            orphan_seeds.extend(operand_producers(f, id));
            f.erase_op(id);
            stats.dropped_shapes += 1;
        }
    }
    erase_orphans(f, orphan_seeds);
}

/// The replacement op (and which operands it keeps) when a shape operand is redundant.
fn static_form(
    op: &Op,
    operands: &[ValueId],
    operand_tys: &[&TensorType],
    contents: &[Option<Vec<Dim>>],
    results: &[&TensorType],
) -> Option<(Op, Vec<usize>)> {
    let known = results.first().is_some_and(|t| t.is_known());
    match op {
        Op::Reshape { .. } | Op::Expand if operands.len() == 2 && known => Some((op.clone(), vec![0])),
        Op::ConstantOfShape { .. } if operands.len() == 1 && known => Some((op.clone(), vec![])),
        Op::Slice { axes, steps, .. } if operands.len() == 3 => {
            let starts = all_fixed(contents.get(1)?.as_ref()?)?;
            let ends = contents.get(2)?.as_ref()?;
            if starts.len() != ends.len() {
                return None;
            }
            let x = operand_tys.first()?;
            let rank = i64::try_from(x.rank()).ok()?;
            // A symbolic end that provably reaches the end of its axis (the key-length cut of
            // a mask whose last dim already is the key length) slices to the end.
            let ends = ends
                .iter()
                .enumerate()
                .map(|(j, e)| {
                    if let Some(v) = e.as_fixed() {
                        return Some(v);
                    }
                    let step = if steps.is_empty() { 1 } else { *steps.get(j)? };
                    let axis = if axes.is_empty() { i64::try_from(j).ok()? } else { *axes.get(j)? };
                    let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).ok()?;
                    let reaches = e.compare(x.shape.get(axis)?).is_some_and(|o| o != std::cmp::Ordering::Less);
                    (step == 1 && reaches).then_some(i64::MAX)
                })
                .collect::<Option<Vec<_>>>()?;
            let op = Op::Slice { axes: axes.clone(), starts, ends, steps: steps.clone() };
            Some((op, vec![0]))
        }
        _ => None,
    }
}

/// Result types that need symbolic operand contents (which `infer_types` cannot see).
fn symbolic_result(
    op: &Op,
    tys: &[&TensorType],
    contents: &[Option<Vec<Dim>>],
    declared: &[TensorType],
    bounds: &BTreeMap<String, i64>,
) -> Option<TensorType> {
    let dtype = declared.first()?.dtype;
    match op {
        Op::Reshape { allowzero } if tys.len() == 2 => {
            let x = tys[0];
            let target = contents.get(1)?.as_ref()?;
            let mut shape = Vec::with_capacity(target.len());
            let mut infer_at = None;
            for (k, d) in target.iter().enumerate() {
                match d.as_fixed() {
                    Some(-1) => {
                        infer_at = Some(k);
                        shape.push(Dim::Unknown);
                    }
                    Some(0) if !allowzero => shape.push(x.shape.get(k)?.clone()),
                    Some(v) if v < 0 => return None,
                    _ => shape.push(d.clone()),
                }
            }
            if let Some(k) = infer_at {
                let known = shape.iter().enumerate().filter(|(j, _)| *j != k).fold(Dim::fixed(1), |a, (_, d)| a.mul(d));
                *shape.get_mut(k)? = x.numel().div_exact(&known).unwrap_or(Dim::Unknown);
            }
            Some(TensorType::new(dtype, shape))
        }
        Op::Expand if tys.len() == 2 => {
            let x = tys[0];
            let target = contents.get(1)?.as_ref()?;
            let rank = target.len().max(x.rank());
            let get = |s: &[Dim], pos: usize| {
                (pos + s.len()).checked_sub(rank).and_then(|k| s.get(k)).cloned().unwrap_or(Dim::fixed(1))
            };
            let shape = (0..rank)
                .map(|pos| {
                    let (a, b) = (get(&x.shape, pos), get(target, pos));
                    if a.as_fixed() == Some(1) {
                        b
                    } else if b.as_fixed() == Some(1) || a == b {
                        a
                    } else {
                        Dim::Unknown
                    }
                })
                .collect();
            Some(TensorType::new(dtype, shape))
        }
        Op::ConstantOfShape { .. } if tys.len() == 1 => {
            let target = contents.first()?.as_ref()?;
            target.iter().all(|d| d.as_fixed().is_none_or(|v| v >= 0)).then(|| TensorType::new(dtype, target.clone()))
        }
        Op::Range => {
            let scalar = |i: usize| contents.get(i)?.as_ref().filter(|c| c.len() == 1).map(|c| c[0].clone());
            let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
            // Only the exporters' `range(a, b, 1)`: length b - a (assumed non-negative).
            (delta.as_fixed() == Some(1) && !dtype.is_float()).then(|| TensorType::new(dtype, vec![limit.sub(&start)]))
        }
        Op::Slice { axes, steps, .. } if tys.len() == 3 => {
            let x = tys[0];
            let starts = contents.get(1)?.as_ref()?;
            let ends = contents.get(2)?.as_ref()?;
            if starts.len() != ends.len() {
                return None;
            }
            let rank = i64::try_from(x.rank()).ok()?;
            let axes: Vec<usize> = if axes.is_empty() {
                (0..starts.len()).collect()
            } else {
                axes.iter().map(|&a| usize::try_from(if a < 0 { a + rank } else { a }).ok()).collect::<Option<_>>()?
            };
            if axes.len() != starts.len() {
                return None;
            }
            let mut shape = x.shape.clone();
            for (j, &axis) in axes.iter().enumerate() {
                let step = if steps.is_empty() { 1 } else { *steps.get(j)? };
                let d = x.shape.get(axis)?;
                let (s, e) = (&starts[j], &ends[j]);
                let len = match (s.as_fixed(), e.as_fixed()) {
                    (Some(a), Some(b)) => ferrumc_ir::infer::slice_dim(d, a, b, step),
                    (Some(a), None) if step == 1 && a >= 0 && d.is_known() && e.is_known() => {
                        // A symbolic end (from a `shape`) is non-negative; past the dim it clamps.
                        match e.sub(d).as_fixed() {
                            Some(k) if k >= 0 => d.sub(&Dim::fixed(a)),
                            Some(_) => e.sub(&Dim::fixed(a)),
                            // `min(e, d)` is `e` when the symbols' bounds keep `e` within `d`
                            // (exporters cut a fixed-size causal mask to `seq` this way).
                            None => match (e.upper_bound(bounds), d.as_fixed()) {
                                (Some(ub), Some(dv)) if ub <= dv => e.sub(&Dim::fixed(a)),
                                _ => Dim::Unknown,
                            },
                        }
                    }
                    _ => Dim::Unknown,
                };
                *shape.get_mut(axis)? = len;
            }
            Some(TensorType::new(dtype, shape))
        }
        _ => None,
    }
}

/// Symbolic content of an integer result of `op` from its operands' contents.
fn eval_content(op: &Op, tys: &[&TensorType], contents: &[Option<Vec<Dim>>], result: &TensorType) -> Option<Vec<Dim>> {
    let arg = |i: usize| contents.get(i).and_then(Option::as_ref);
    let len = match result.rank() {
        0 => 1,
        _ => usize::try_from(result.shape[0].as_fixed()?).ok()?,
    };
    let out = match op {
        Op::Shape { start, end } => {
            let x = tys.first()?;
            let r = i64::try_from(x.rank()).ok()?;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
            x.shape.get(s..e.max(s))?.to_vec()
        }
        Op::Identity | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Reshape { .. } => arg(0)?.clone(),
        Op::Cast { to } if matches!(to, DType::I64 | DType::I32) && is_index_type(tys.first()?) => arg(0)?.clone(),
        Op::Cast { to: DType::Bool } if is_index_type(tys.first()?) => arg(0)?
            .iter()
            .map(|c| Some(Dim::fixed(i64::from(c.compare(&Dim::fixed(0))? != std::cmp::Ordering::Equal))))
            .collect::<Option<Vec<_>>>()?,
        Op::Concat { .. } => {
            let mut out = Vec::new();
            for (i, t) in tys.iter().enumerate() {
                if t.rank() != 1 {
                    return None;
                }
                out.extend(arg(i)?.iter().cloned());
            }
            out
        }
        Op::Gather { axis } => {
            let data = arg(0)?;
            let idx = all_fixed(arg(1)?)?;
            if tys.first()?.rank() != 1 || !(*axis == 0 || *axis == -1) {
                return None;
            }
            let n = i64::try_from(data.len()).ok()?;
            idx.iter()
                .map(|&i| {
                    let k = if i < 0 { i + n } else { i };
                    data.get(usize::try_from(k).ok()?).cloned()
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Slice { axes, starts, ends, steps } if tys.len() == 1 => {
            let data = arg(0)?;
            if tys.first()?.rank() != 1 || !(axes.is_empty() || axes == &[0] || axes == &[-1]) {
                return None;
            }
            let (s, e) = (*starts.first()?, *ends.first()?);
            let step = steps.first().copied().unwrap_or(1);
            if step != 1 {
                return None;
            }
            let n = i64::try_from(data.len()).ok()?;
            let rel = |v: i64| (if v < 0 { v.saturating_add(n) } else { v }).clamp(0, n) as usize;
            data.get(rel(s)..rel(e).max(rel(s)))?.to_vec()
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Neg => {
            let a = arg(0)?;
            let b = if matches!(op, Op::Neg) { vec![Dim::fixed(-1)] } else { arg(1)?.clone() };
            (0..len)
                .map(|i| {
                    let (x, y) = (broadcast_pick(a, i)?, broadcast_pick(&b, i)?);
                    Some(match op {
                        Op::Add => x.add(&y),
                        Op::Sub => x.sub(&y),
                        Op::Mul | Op::Neg => x.mul(&y),
                        _ => match (x.as_fixed(), y.as_fixed()) {
                            (Some(p), Some(q)) if q != 0 => Dim::fixed(p.checked_div(q)?),
                            (_, Some(q)) if q != 0 => x.div_exact(&y).unwrap_or(Dim::Unknown),
                            _ => Dim::Unknown,
                        },
                    })
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Equal | Op::Less | Op::LessEqual | Op::Greater | Op::GreaterEqual | Op::Max | Op::Min => {
            use std::cmp::Ordering;
            let (a, b) = (arg(0)?, arg(1)?);
            (0..len)
                .map(|i| {
                    let (x, y) = (broadcast_pick(a, i)?, broadcast_pick(b, i)?);
                    let ord = x.compare(&y)?;
                    let truth = |t: bool| Some(Dim::fixed(i64::from(t)));
                    match op {
                        Op::Equal => truth(ord == Ordering::Equal),
                        Op::Less => truth(ord == Ordering::Less),
                        Op::LessEqual => truth(ord != Ordering::Greater),
                        Op::Greater => truth(ord == Ordering::Greater),
                        Op::GreaterEqual => truth(ord != Ordering::Less),
                        Op::Max => Some(if ord == Ordering::Less { y } else { x }),
                        _ => Some(if ord == Ordering::Greater { y } else { x }),
                    }
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Not => {
            arg(0)?.iter().map(|c| Some(Dim::fixed(i64::from(c.as_fixed()? == 0)))).collect::<Option<Vec<_>>>()?
        }
        Op::Where => {
            let (cond, a, b) = (arg(0)?, arg(1)?, arg(2)?);
            (0..len)
                .map(|i| match broadcast_pick(cond, i)?.as_fixed()? {
                    0 => broadcast_pick(b, i),
                    _ => broadcast_pick(a, i),
                })
                .collect::<Option<Vec<_>>>()?
        }
        _ => return None,
    };
    (out.len() == len).then_some(out)
}

/// Element `i` of a tracked vector broadcast against a longer one (a scalar or a 1-vector
/// repeats).
fn broadcast_pick(c: &[Dim], i: usize) -> Option<Dim> {
    if c.len() == 1 {
        c.first().cloned()
    } else {
        c.get(i).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup_util::testing::assert_preserved;
    use ferrumc_ir::text::{parse_module, print_module};

    fn run(text: &str) -> (String, OptimizationResult) {
        let mut m = parse_module(text).expect("parses");
        let r = ShapeInference.apply(&mut m, &PassOptions::default()).expect("runs");
        if let Err(e) = ferrumc_ir::verify::verify_module(&m) {
            panic!("{e:?}\n{}", print_module(&m));
        }
        (print_module(&m), r)
    }

    #[test]
    fn resolves_a_computed_reshape_target_symbolically() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[?b, ?s, 8]) -> (y: f32[?, ?, 2, ?]) {\n\
               %s = shape %x {start = 0} : i64[3]\n\
               %i = constant {value = dense<i64[2]: [0, 1]>} : i64[2]\n\
               %bs = gather %s, %i {axis = 0} : i64[2]\n\
               %t = constant {value = dense<i64[2]: [2, -1]>} : i64[2]\n\
               %shape = concat %bs, %t {axis = 0} : i64[4]\n\
               %y = reshape %x, %shape {allowzero = false} : f32[?, ?, 2, ?]\n\
               return %y\n\
             }\n");
        assert!(text.contains("reshape %x {allowzero = false} : f32[?b, ?s, 2, 4]"), "{text}");
        assert!(!text.contains("= shape") && !text.contains("concat"), "{text}");
        assert!(r.notes.iter().any(|n| n.contains("1 computed shape operands dropped")), "{:?}", r.notes);
    }

    #[test]
    fn static_shape_values_become_constants_and_range_gets_a_symbolic_length() {
        let (text, _) = run("module @m\n\
             func @f(%x: f32[?b, 6]) -> (y: i64[?], n: i64[]) {\n\
               %s = shape %x {start = 1} : i64[1]\n\
               %n = squeeze %s {axes = [0]} : i64[]\n\
               %t = shape %x {start = 0, end = 1} : i64[1]\n\
               %b = squeeze %t {axes = [0]} : i64[]\n\
               %z = constant {value = dense<i64[]: [0]>} : i64[]\n\
               %o = constant {value = dense<i64[]: [1]>} : i64[]\n\
               %r = range %z, %b, %o : i64[?]\n\
               return %r, %n\n\
             }\n");
        assert!(text.contains("constant {value = dense<i64[]: [6]>}"), "{text}");
        assert!(text.contains(": i64[?b]"), "{text}");
    }

    #[test]
    fn never_loses_precision_or_touches_unknowable_shapes() {
        // The target comes from data (an input), so nothing can be refined; declared
        // symbolic dims stay even where inference would say `?`.
        let (text, r) = run("module @m\n\
             func @f(%x: f32[?b, 6], %t: i64[2]) -> (y: f32[?, ?], z: f32[?b, 6]) {\n\
               %y = reshape %x, %t {allowzero = false} : f32[?, ?]\n\
               %z = identity %x : f32[?b, 6]\n\
               return %y, %z\n\
             }\n");
        assert!(!r.applied, "{text}");
        assert!(text.contains("reshape %x, %t"), "{text}");
    }

    #[test]
    fn a_fixed_table_cut_to_a_bounded_symbol_takes_the_symbol() {
        // GPT-2 exports cut a 64-row causal mask to `seq` rows: `min(seq, 64)`.
        let text = "module @m\n\
             func @f(%x: f32[?seq, 4], %mask: f32[64, 4]) -> (y: f32[?, 4]) {\n\
               %s = shape %x {start = 0, end = 1} : i64[1]\n\
               %z = constant {value = dense<i64[1]: [0]>} : i64[1]\n\
               %y = slice %mask, %z, %s {axes = [0], ends = [], starts = [], steps = [1]} : f32[?, 4]\n\
               return %y\n\
             }\n";
        // Unbounded (or bounded above 64), the length stays unknown.
        let (unbounded, _) = run(text);
        assert!(unbounded.contains(": f32[?, 4]"), "{unbounded}");
        for (bound, expect) in [(65, "f32[?, 4]"), (64, "f32[?seq, 4]"), (8, "f32[?seq, 4]")] {
            let mut m = parse_module(text).expect("parses");
            let options = PassOptions { dim_bounds: [("seq".to_string(), bound)].into(), ..PassOptions::default() };
            ShapeInference.apply(&mut m, &options).expect("runs");
            let printed = print_module(&m);
            assert!(printed.contains(&format!(": {expect}")), "seq <= {bound}: {printed}");
        }
    }

    #[test]
    fn expand_targets_through_torch_minus_one_handling() {
        // `x.expand(batch, -1, 1)` as TorchScript exports it: the target is
        // `where(equal(t, -1), 1, t)` over `t = concat(shape(ids)[0], -1, 1)`; sizes are never
        // -1, so the where picks `t` where it holds a dim and 1 where it holds -1.
        let (text, _) = run("module @m\n\
             func @f(%ids: i64[?b, ?s], %x: f32[1, 8, 1]) -> (y: f32[?, 8, ?]) {\n\
               %sh = shape %ids {start = 0} : i64[2]\n\
               %i0 = constant {value = dense<i64[1]: [0]>} : i64[1]\n\
               %b = gather %sh, %i0 {axis = 0} : i64[1]\n\
               %rest = constant {value = dense<i64[2]: [-1, 1]>} : i64[2]\n\
               %t = concat %b, %rest {axis = 0} : i64[3]\n\
               %m1 = constant {value = dense<i64[3]: [-1, -1, -1]>} : i64[3]\n\
               %eq = equal %t, %m1 : bool[3]\n\
               %ones = constant {value = dense<i64[3]: [1, 1, 1]>} : i64[3]\n\
               %tt = where %eq, %ones, %t : i64[3]\n\
               %y = expand %x, %tt : f32[?, 8, ?]\n\
               return %y\n\
             }\n");
        assert!(text.contains("expand %x : f32[?b, 8, 1]"), "{text}");
        assert!(!text.contains("where") && !text.contains("equal"), "{text}");
    }

    #[test]
    fn a_symbolic_end_at_the_axis_end_slices_to_the_end() {
        // A mask `[b, 1, s, p+s]` cut to the key length `p+s` read off the keys' shape.
        let (text, _) = run("module @m\n\
             func @f(%mask: f32[?b, 1, ?s, ?p+?s], %k: f32[?b, 2, ?p+?s, 4]) -> (y: f32[?b, 1, ?s, ?]) {\n\
               %sh = shape %k {start = 2, end = 3} : i64[1]\n\
               %z = constant {value = dense<i64[1]: [0]>} : i64[1]\n\
               %y = slice %mask, %z, %sh {axes = [3], ends = [], starts = [], steps = [1]} : f32[?b, 1, ?s, ?]\n\
               return %y\n\
             }\n");
        assert!(text.contains("ends = [9223372036854775807], starts = [0]"), "{text}");
        assert!(text.contains(": f32[?b, 1, ?s, ?p+?s]"), "{text}");
        assert!(!text.contains("= shape"), "{text}");
    }

    #[test]
    fn preserves_onnx_llama_and_hf_llama() {
        let m = assert_preserved("tests/fixtures/onnx_llama/model.onnx", &["shape-inference"]);
        let text = print_module(&m);
        // The q/k/v head reshapes no longer need computed shapes.
        let head_split = |l: &&str| l.contains("= reshape %") && l.ends_with(": f32[?batch, ?seq, 4, 16]");
        assert!(text.lines().any(|l| head_split(&l)), "{text}");
        assert!(text.lines().filter(head_split).all(|l| !l.contains(", %")), "{text}");
        assert!(m.op_count() < 200, "{}", m.op_count());
        assert_preserved("tests/fixtures/hf/llama", &["shape-inference"]);
    }
}
