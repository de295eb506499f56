//! Small queries that pattern-matching passes share: who defines a value, is it a scalar
//! constant, is it used once, is it computed from weights alone.

use ferrumc_ir::{infer, Function, Module, Op, OpData, OpId, ValueDef, ValueId, WeightSource};

/// The live op that defines `v`, with its id.
pub fn def(f: &Function, v: ValueId) -> Option<(OpId, &OpData)> {
    let id = f.producer(v)?;
    Some((id, f.op(id)?))
}

/// The op kind that defines `v`, if any.
pub fn def_op(f: &Function, v: ValueId) -> Option<&Op> {
    def(f, v).map(|(_, d)| &d.op)
}

/// The value of `v` when it is a constant (a `constant` op or an inline weight) whose
/// elements are all equal (a scalar, or a splat).
pub fn splat_value(m: &Module, f: &Function, v: ValueId) -> Option<f64> {
    let tensor = match &f.value(v).def {
        ValueDef::Weight { name } => match &m.weight_decl(name)?.source {
            WeightSource::Inline(t) => t,
            _ => return None,
        },
        _ => infer::constant_value(f, v)?,
    };
    let values = tensor.to_f64_vec();
    let first = *values.first()?;
    values.iter().all(|&x| x == first || (x.is_nan() && first.is_nan())).then_some(first)
}

/// Whether `v` is a splat constant equal to `expected` (within `tolerance`, relative).
pub fn is_splat(m: &Module, f: &Function, v: ValueId, expected: f64, tolerance: f64) -> bool {
    splat_value(m, f, v).is_some_and(|x| (x - expected).abs() <= tolerance * expected.abs().max(1e-30))
}

/// Whether `v` has exactly one use and is not a function output.
pub fn single_use(f: &Function, v: ValueId) -> bool {
    f.value(v).uses.len() == 1 && !f.outputs().iter().any(|(_, o)| *o == v)
}

/// Whether `v` is computed from weights and constants only (no function input reaches it):
/// such values are compile-time constants that codegen evaluates once (weight
/// preprocessing such as transposes, packing or quantization).
pub fn is_weight_derived(f: &Function, v: ValueId) -> bool {
    !reaches_param(f, v, |_| false)
}

/// Whether `v` depends on the function's inputs only through their shapes (every path from a
/// parameter passes through a `shape` op): such values — position ranges, masks, rotary
/// tables computed from the sequence length — are fixed once the symbolic dims are known.
pub fn is_shape_derived(f: &Function, v: ValueId) -> bool {
    !reaches_param(f, v, |op| matches!(op, Op::Shape { .. }))
}

/// Whether a function input reaches `v` through operands, not looking past ops for which
/// `stops` holds.
fn reaches_param(f: &Function, v: ValueId, stops: impl Fn(&Op) -> bool) -> bool {
    let mut stack = vec![v];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        match &f.value(v).def {
            ValueDef::Param { .. } => return true,
            ValueDef::Weight { .. } => {}
            ValueDef::Result { op, .. } => match f.op(*op) {
                Some(data) if stops(&data.op) => {}
                Some(data) => stack.extend(data.operands.iter().copied()),
                None => return true,
            },
        }
    }
    false
}
