//! Shared helpers of the weight-preprocessing passes (`quantize-weights`, `prepack-weights`):
//! finding `linear` ops whose weight is a compile-time constant, building weight-derived op
//! chains, and removing what a rewrite orphaned.

use crate::matchers::is_weight_derived;
use ferrumc_ir::infer::add_inferred;
use ferrumc_ir::{DType, Function, Op, OpId, ValueDef, ValueId};

/// A `linear x, w[, bias]` whose `w` is weight-derived, 2-D `[out, in]` with static dims.
#[derive(Debug, Clone)]
pub struct WeightLinear {
    pub op: OpId,
    pub x: ValueId,
    pub w: ValueId,
    pub bias: Option<ValueId>,
    pub result: ValueId,
    pub out_features: i64,
    pub in_features: i64,
    pub dtype: DType,
}

/// Every `linear` of `f` with a weight-derived, statically shaped 2-D weight, in op order
/// (deterministic).
pub fn weight_linears(f: &Function) -> Vec<WeightLinear> {
    let Ok(order) = f.op_order() else { return Vec::new() };
    let mut out = Vec::new();
    for id in order {
        let Some(data) = f.op(id) else { continue };
        if data.op != Op::Linear || data.results.len() != 1 || !(2..=3).contains(&data.operands.len()) {
            continue;
        }
        let (x, w) = (data.operands[0], data.operands[1]);
        let ty = f.ty(w);
        let Some([out_features, in_features]) = ty.fixed_shape().as_deref().and_then(|s| <[i64; 2]>::try_from(s).ok())
        else {
            continue;
        };
        if !is_weight_derived(f, w) {
            continue;
        }
        out.push(WeightLinear {
            op: id,
            x,
            w,
            bias: data.operands.get(2).copied(),
            result: data.results[0],
            out_features,
            in_features,
            dtype: ty.dtype,
        });
    }
    out
}

/// Re-read `x` and `bias` of a collected linear: earlier rewrites in the same walk may have
/// replaced the values it consumes. `None` when the op is gone.
pub fn refresh(f: &Function, l: &WeightLinear) -> Option<WeightLinear> {
    let data = f.op(l.op)?;
    Some(WeightLinear { x: *data.operands.first()?, bias: data.operands.get(2).copied(), ..l.clone() })
}

/// Append `op` with inferred types and return its single result (errors become strings).
pub fn add1(f: &mut Function, op: Op, operands: Vec<ValueId>) -> Result<ValueId, String> {
    let name = op.name();
    let results = add_inferred(f, op, operands).map_err(|e| format!("{name}: {e}"))?;
    match results.as_slice() {
        [r] => Ok(*r),
        _ => Err(format!("{name}: expected one result")),
    }
}

/// Replace the single result of `old` by `new` everywhere (outputs included) and erase
/// `old`, then erase the producers of its former operands that are left without uses.
pub fn replace_op(f: &mut Function, old: OpId, old_result: ValueId, new: ValueId) {
    let operands = f.op(old).map(|d| d.operands.clone()).unwrap_or_default();
    f.replace_all_uses(old_result, new);
    f.erase_op(old);
    erase_dead(f, operands);
}

/// Erase ops whose results are all unused and not outputs, starting from the producers
/// of `roots` and walking up through their operands.
pub fn erase_dead(f: &mut Function, roots: Vec<ValueId>) {
    let mut stack = roots;
    while let Some(v) = stack.pop() {
        let Some(ValueDef::Result { op, .. }) = f.try_value(v).map(|d| d.def.clone()) else { continue };
        let Some(data) = f.op(op) else { continue };
        if data.results.iter().any(|r| f.is_used(*r)) {
            continue;
        }
        let operands = data.operands.clone();
        f.erase_op(op);
        stack.extend(operands);
    }
}

/// Bytes a `[rows, cols]` tensor of `dtype` takes in storage (0 when it cannot be stored).
pub fn storage_bytes(dtype: DType, rows: i64, cols: i64) -> u64 {
    let (rows, cols) = (u64::try_from(rows).unwrap_or(0), u64::try_from(cols).unwrap_or(0));
    rows.checked_mul(cols).and_then(|n| dtype.storage_bytes(n, cols)).unwrap_or(0)
}

/// `bytes` as megabytes with two decimals, for pass notes.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}
