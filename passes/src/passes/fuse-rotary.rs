//! `fuse-rotary`: x*cos + rotate_half(x)*sin (slice/neg/concat) -> rotary_embedding.
//!
//! Matches the raw exported form (no clean-up passes needed):
//! `add(mul(x, C), mul(concat(neg(slice(x, h:)), slice(x, :h)), S))` with `x: [B, H, S, D]`,
//! `h = D/2`, add/mul operands in any order, slices in attribute or operand form, and the
//! tables `C = g(cos(concat(F, F, axis=-1)))`, `S = g(sin(concat(F, F, axis=-1)))` where `g`
//! is any chain of `unsqueeze`/`squeeze`/`reshape`/`identity`/`mul` by a splat 1 ending in a
//! broadcastable `[1, …, 1, N, D]`. Because that chain only changes shapes (row-major data
//! is unchanged) and both ends have last dim `D`, row `r` of `C` is `cos(concat(F, F))` row
//! `r`, so the fused op's half tables are `reshape(cos(F), [-1, h])` (`[N, h]`).
//!
//! Broadcasting `C: [.., N, D]` against `x` means `N` is either `S` or 1 at run time, so the
//! position of query row `s` is `s mod N`; when `N` is provably `S` the `mod` is left out.
//! Tables and position ids are built once per source `F` (and per `(B, S)` dims), so the
//! q and k rotations of a layer share them without CSE.
//!
//! Not fused (left as is): full-width tables not of the `concat(F, F)` form, tables with a
//! non-1 batch/head dim, partial rotation (`rotary_dim < D`) and the interleaved (GPT-J) form.

use crate::attention_util::{add_const, erase_dead, i64_vec, norm_axis, same_dim, unit_slice};
use crate::matchers::{def, splat_value};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{DType, Dim, Function, Module, Op, OpId, Tensor, TensorType, ValueId};
use std::collections::HashMap;

/// The `fuse-rotary` pass.
#[derive(Debug)]
pub struct FuseRotary;

impl OptimizationPass for FuseRotary {
    fn name(&self) -> &'static str {
        "fuse-rotary"
    }

    fn summary(&self) -> &'static str {
        "x*cos + rotate_half(x)*sin (slice/neg/concat) -> rotary_embedding"
    }

    fn is_applicable(&self, module: &Module, _options: &PassOptions) -> bool {
        module.functions.iter().any(|f| f.op_ids().any(|o| f.op(o).is_some_and(|d| d.op == Op::Add)))
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut fused = 0usize;
        let mut removed = 0usize;
        for fi in 0..module.functions.len() {
            let matches = {
                let f = &module.functions[fi];
                let order = f.op_order().map_err(|e| PassError::new(e.to_string()))?;
                order.into_iter().filter_map(|op| match_rotary(module, f, op)).collect::<Vec<_>>()
            };
            if matches.is_empty() {
                continue;
            }
            let f = &mut module.functions[fi];
            let before = f.op_count();
            let mut cache = Cache::default();
            for m in &matches {
                rewrite(f, m, &mut cache);
                fused += 1;
            }
            removed += before.saturating_sub(f.op_count());
        }
        if fused == 0 {
            return Ok(OptimizationResult::unchanged());
        }
        Ok(OptimizationResult::rewrote(removed, format!("{fused} rotary_embedding fused")))
    }
}

/// One matched rotation.
#[derive(Debug)]
struct RotaryMatch {
    add: OpId,
    x: ValueId,
    /// The half-angle source `F` of `cos(concat(F, F))` / `sin(concat(F, F))`.
    freqs: ValueId,
    /// Rows `N` of the broadcast tables (`S` or 1 at run time).
    rows: Dim,
    half: i64,
}

fn match_rotary(m: &Module, f: &Function, op: OpId) -> Option<RotaryMatch> {
    let data = f.op(op)?;
    if data.op != Op::Add {
        return None;
    }
    let out = *data.results.first()?;
    let (a, b) = (data.operands[0], data.operands[1]);
    [(a, b), (b, a)].into_iter().find_map(|(plain, rotated)| match_halves(m, f, op, out, plain, rotated))
}

/// `plain = mul(x, C)`, `rotated = mul(rotate_half(x), S)`.
fn match_halves(
    m: &Module,
    f: &Function,
    add: OpId,
    out: ValueId,
    plain: ValueId,
    rotated: ValueId,
) -> Option<RotaryMatch> {
    let (_, pm) = def(f, plain)?;
    let (_, rm) = def(f, rotated)?;
    if pm.op != Op::Mul || rm.op != Op::Mul {
        return None;
    }
    let (x, half, sin_side) = [(rm.operands[0], rm.operands[1]), (rm.operands[1], rm.operands[0])]
        .into_iter()
        .find_map(|(r, s)| rotate_half(m, f, r).map(|(x, h)| (x, h, s)))?;
    let cos_side = if pm.operands[0] == x {
        pm.operands[1]
    } else if pm.operands[1] == x {
        pm.operands[0]
    } else {
        return None;
    };
    let xt = f.ty(x);
    if xt.rank() != 4 || f.ty(out).shape != xt.shape || f.ty(out).dtype != xt.dtype {
        return None;
    }
    let d = 2 * half;
    let (cf, crows) = table_source(m, f, cos_side, Trig::Cos, d)?;
    let (sf, srows) = table_source(m, f, sin_side, Trig::Sin, d)?;
    if cf != sf || crows != srows {
        return None;
    }
    Some(RotaryMatch { add, x, freqs: cf, rows: crows, half })
}

/// `concat(neg(slice(x, h:D)), slice(x, 0:h), axis=-1)` → `(x, h)`.
fn rotate_half(m: &Module, f: &Function, v: ValueId) -> Option<(ValueId, i64)> {
    let (_, data) = def(f, v)?;
    let Op::Concat { axis } = data.op else { return None };
    if data.operands.len() != 2 {
        return None;
    }
    let rank = f.ty(v).rank();
    if norm_axis(axis, rank)? != rank - 1 {
        return None;
    }
    let negated = negated(m, f, data.operands[0])?;
    let (x2, ax2, s2, e2) = unit_slice(m, f, negated)?;
    let (x1, ax1, s1, e1) = unit_slice(m, f, data.operands[1])?;
    let d = f.ty(x1).shape.last()?.as_fixed()?;
    if x1 != x2 || ax1 != rank - 1 || ax2 != rank - 1 || f.ty(x1).rank() != rank || d <= 0 || d % 2 != 0 {
        return None;
    }
    let h = d / 2;
    ((s1, e1) == (0, h) && (s2, e2) == (h, d)).then_some((x1, h))
}

/// `neg(y)` or `mul(y, -1)` → `y`.
fn negated(m: &Module, f: &Function, v: ValueId) -> Option<ValueId> {
    let (_, data) = def(f, v)?;
    match data.op {
        Op::Neg => Some(data.operands[0]),
        Op::Mul => {
            let (a, b) = (data.operands[0], data.operands[1]);
            let same = |y: ValueId| f.ty(y).shape == f.ty(v).shape;
            if splat_value(m, f, b) == Some(-1.0) && same(a) {
                Some(a)
            } else if splat_value(m, f, a) == Some(-1.0) && same(b) {
                Some(b)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Trig {
    Cos,
    Sin,
}

/// Walk a table operand back to `cos/sin(concat(F, F, axis=-1))`; returns `F` and the
/// table's row dim `N`. The table must look like `[1, …, 1, N, D]` (rank 2 to 4).
fn table_source(m: &Module, f: &Function, table: ValueId, trig: Trig, d: i64) -> Option<(ValueId, Dim)> {
    let tt = f.ty(table);
    if !(2..=4).contains(&tt.rank()) || tt.shape.last()?.as_fixed()? != d {
        return None;
    }
    if !tt.shape[..tt.rank() - 2].iter().all(|x| x.as_fixed() == Some(1)) {
        return None;
    }
    let rows = tt.shape[tt.rank() - 2].clone();
    let mut v = table;
    for _ in 0..16 {
        let (_, data) = def(f, v)?;
        match &data.op {
            Op::Unsqueeze { .. } | Op::Squeeze { .. } | Op::Reshape { .. } | Op::Identity => v = data.operands[0],
            Op::Mul => {
                let (a, b) = (data.operands[0], data.operands[1]);
                let keeps = |y: ValueId| f.ty(y).shape == f.ty(v).shape;
                v = if splat_value(m, f, b) == Some(1.0) && keeps(a) {
                    a
                } else if splat_value(m, f, a) == Some(1.0) && keeps(b) {
                    b
                } else {
                    return None;
                };
            }
            Op::Cos | Op::Sin => {
                if (data.op == Op::Cos) != (trig == Trig::Cos) {
                    return None;
                }
                let (_, cat) = def(f, data.operands[0])?;
                let Op::Concat { axis } = cat.op else { return None };
                let rank = f.ty(data.operands[0]).rank();
                let src = *cat.operands.first()?;
                if cat.operands.len() != 2 || cat.operands[1] != src || norm_axis(axis, rank)? != rank - 1 {
                    return None;
                }
                if f.ty(data.operands[0]).shape.last()?.as_fixed()? != d {
                    return None;
                }
                return Some((src, rows));
            }
            _ => return None,
        }
    }
    None
}

/// Values built once per function and shared by the rotations that need them.
#[derive(Default)]
struct Cache {
    tables: HashMap<ValueId, (ValueId, ValueId)>,
    positions: HashMap<(ValueId, Dim, Dim), ValueId>,
}

fn i64_scalar(f: &mut Function, v: i64) -> ValueId {
    add_const(f, Tensor::scalar_i64(DType::I64, v))
}

/// `shape(v)[i]` as an i64 scalar.
fn dim_scalar(f: &mut Function, v: ValueId, i: i64) -> ValueId {
    let s = f.add_op1(Op::Shape { start: i, end: Some(i + 1) }, vec![v], TensorType::fixed(DType::I64, &[1]));
    f.add_op1(Op::Squeeze { axes: vec![0] }, vec![s], TensorType::scalar(DType::I64))
}

fn rewrite(f: &mut Function, mt: &RotaryMatch, cache: &mut Cache) {
    let xt = f.ty(mt.x).clone();
    let (batch, seq) = (xt.shape[0].clone(), xt.shape[2].clone());
    let (cos_t, sin_t) = match cache.tables.get(&mt.freqs) {
        Some(t) => *t,
        None => {
            let ft = f.ty(mt.freqs).clone();
            let n = ft.shape[..ft.rank().saturating_sub(1)].iter().fold(Dim::fixed(1), |acc, x| acc.mul(x));
            let target = i64_vec(f, &[-1, mt.half]);
            let table_ty = TensorType::new(ft.dtype, vec![n, Dim::fixed(mt.half)]);
            let mut make = |op: Op| {
                let t = f.add_op1(op, vec![mt.freqs], ft.clone());
                f.add_op1(Op::Reshape { allowzero: false }, vec![t, target], table_ty.clone())
            };
            let pair = (make(Op::Cos), make(Op::Sin));
            cache.tables.insert(mt.freqs, pair);
            pair
        }
    };
    let key = (mt.freqs, batch.clone(), seq.clone());
    let shareable = batch.is_known() && seq.is_known();
    let positions = match cache.positions.get(&key).filter(|_| shareable) {
        Some(p) => *p,
        None => {
            let s = dim_scalar(f, mt.x, 2);
            let (zero, one) = (i64_scalar(f, 0), i64_scalar(f, 1));
            let mut r = f.add_op1(Op::Range, vec![zero, s, one], TensorType::new(DType::I64, vec![seq.clone()]));
            if !same_dim(&mt.rows, &seq) {
                let n = dim_scalar(f, cos_t, 0);
                r = f.add_op1(Op::Mod, vec![r, n], TensorType::new(DType::I64, vec![seq.clone()]));
            }
            let u = f.add_op1(
                Op::Unsqueeze { axes: vec![0] },
                vec![r],
                TensorType::new(DType::I64, vec![Dim::fixed(1), seq.clone()]),
            );
            let b = f.add_op1(Op::Shape { start: 0, end: Some(1) }, vec![mt.x], TensorType::fixed(DType::I64, &[1]));
            let one1 = i64_vec(f, &[1]);
            let target = f.add_op1(Op::Concat { axis: 0 }, vec![b, one1], TensorType::fixed(DType::I64, &[2]));
            let p = f.add_op1(Op::Expand, vec![u, target], TensorType::new(DType::I64, vec![batch, seq]));
            if shareable {
                cache.positions.insert(key, p);
            }
            p
        }
    };
    let rot =
        f.add_op1(Op::RotaryEmbedding { interleaved: false, rotary_dim: 0 }, vec![mt.x, cos_t, sin_t, positions], xt);
    let Some(out) = f.op(mt.add).map(|d| d.results[0]) else { return };
    f.replace_all_uses(out, rot);
    erase_dead(f, vec![mt.add]);
}

#[cfg(test)]
mod tests {
    use crate::attention_util::test_support::*;

    /// A rotation in the raw form with every operand order commuted, the second-half slice
    /// in operand form ending at INT64_MAX, and a `mul` by 1 on the cos table.
    /// `{rot}` is the rotate_half concat, `{cos}`/`{sin}` the trig ops.
    fn module(rot: &str, cos: &str, sin: &str) -> String {
        format!(
            "module @m

func @forward(%x: f32[2, 2, 3, 4], %f: f32[1, 3, 2]) -> (y: f32[2, 2, 3, 4]) {{
  %0 = concat %f, %f {{axis = -1}} : f32[1, 3, 4]
  %1 = {cos} %0 : f32[1, 3, 4]
  %2 = {sin} %0 : f32[1, 3, 4]
  %c1 = constant {{value = dense<f32[]: [1.0]>}} : f32[]
  %3 = mul %c1, %1 : f32[1, 3, 4]
  %4 = unsqueeze %3 {{axes = [1]}} : f32[1, 1, 3, 4]
  %5 = unsqueeze %2 {{axes = [1]}} : f32[1, 1, 3, 4]
  %lo = slice %x {{axes = [3], ends = [2], starts = [0], steps = [1]}} : f32[2, 2, 3, 2]
  %st = constant {{value = dense<i64[1]: [2]>}} : i64[1]
  %en = constant {{value = dense<i64[1]: [9223372036854775807]>}} : i64[1]
  %hi = slice %x, %st, %en {{axes = [-1], ends = [], starts = [], steps = []}} : f32[2, 2, 3, 2]
  {rot}
  %9 = mul %5, %8 : f32[2, 2, 3, 4]
  %10 = mul %4, %x : f32[2, 2, 3, 4]
  %11 = add %9, %10 : f32[2, 2, 3, 4]
  return %11
}}
"
        )
    }

    const GOOD: &str = "%7 = neg %hi : f32[2, 2, 3, 2]\n  %8 = concat %7, %lo {axis = 3} : f32[2, 2, 3, 4]";

    fn inputs() -> Vec<(&'static str, ferrumc_ir::Tensor)> {
        vec![("x", floats(&[2, 2, 3, 4], 1)), ("f", floats(&[1, 3, 2], 2))]
    }

    #[test]
    fn commuted_raw_form_fuses_and_computes_the_same() {
        let m = parse(&module(GOOD, "cos", "sin"));
        let opt = check_small(&m, &["fuse-rotary"], &inputs());
        assert_eq!(count(&opt, "forward", "rotary_embedding"), 1);
        assert_eq!(count(&opt, "forward", "concat"), 1, "only the position target concat is left");
        assert_eq!(count(&opt, "forward", "neg"), 0);
    }

    #[test]
    fn wrong_patterns_do_not_fuse() {
        // Halves swapped (neg of the first half first): not rotate_half.
        let swapped = "%7 = neg %lo : f32[2, 2, 3, 2]\n  %8 = concat %7, %hi {axis = 3} : f32[2, 2, 3, 4]";
        // No negation.
        let unsigned = "%7 = identity %hi : f32[2, 2, 3, 2]\n  %8 = concat %7, %lo {axis = 3} : f32[2, 2, 3, 4]";
        for (rot, cos, sin) in [(swapped, "cos", "sin"), (unsigned, "cos", "sin"), (GOOD, "sin", "cos")] {
            let m = parse(&module(rot, cos, sin));
            let opt = check_small(&m, &["fuse-rotary"], &inputs());
            assert_eq!(count(&opt, "forward", "rotary_embedding"), 0, "{rot} {cos}");
        }
        // A split at 1 instead of D/2.
        let src = module(GOOD, "cos", "sin")
            .replace("ends = [2], starts = [0]", "ends = [1], starts = [0]")
            .replace("[2]>}} : i64[1]", "[1]>}} : i64[1]")
            .replace("%st = constant {value = dense<i64[1]: [2]>}", "%st = constant {value = dense<i64[1]: [1]>}")
            .replace(
                "%lo = slice %x {axes = [3], ends = [1], starts = [0], steps = [1]} : f32[2, 2, 3, 2]",
                "%lo = slice %x {axes = [3], ends = [1], starts = [0], steps = [1]} : f32[2, 2, 3, 1]",
            )
            .replace(
                "%hi = slice %x, %st, %en {axes = [-1], ends = [], starts = [], steps = []} : f32[2, 2, 3, 2]",
                "%hi = slice %x, %st, %en {axes = [-1], ends = [], starts = [], steps = []} : f32[2, 2, 3, 3]",
            )
            .replace("%7 = neg %hi : f32[2, 2, 3, 2]", "%7 = neg %hi : f32[2, 2, 3, 3]");
        let m = parse(&src);
        let opt = check_small(&m, &["fuse-rotary"], &inputs());
        assert_eq!(count(&opt, "forward", "rotary_embedding"), 0);
    }

    #[test]
    fn full_width_tables_do_not_fuse() {
        // cos of a full-width angle table (not concat(F, F)): a different rotation.
        let src = module(GOOD, "cos", "sin")
            .replace("%0 = concat %f, %f {axis = -1} : f32[1, 3, 4]", "%0 = concat %f, %g {axis = -1} : f32[1, 3, 4]")
            .replace("%f: f32[1, 3, 2])", "%f: f32[1, 3, 2], %g: f32[1, 3, 2])");
        let m = parse(&src);
        let mut ins = inputs();
        ins.push(("g", floats(&[1, 3, 2], 3)));
        let opt = check_small(&m, &["fuse-rotary"], &ins);
        assert_eq!(count(&opt, "forward", "rotary_embedding"), 0);
    }

    #[test]
    fn onnx_llama_rotations_fuse_and_compute_the_same() {
        let opt = check_onnx_llama(&["fuse-rotary"]);
        assert_eq!(count(&opt, "forward", "rotary_embedding"), 4);
        // q and k of both layers share one pair of tables and one position-id tensor.
        assert_eq!(count(&opt, "forward", "range"), 3);
        assert_eq!(count(&opt, "forward", "neg"), 0);
    }
}
