//! `canonicalize`: algebraic identities and one canonical operand order, so later pattern
//! passes see one form. Every rewrite keeps the result type identical (dtype and shape):
//! an identity such as `x + 0` whose zero would broadcast `x` to a bigger shape does not fire.
//!
//! Rules: `x+0`, `x-0`, `x*1`, `x/1`, `pow x, 1` → `x`; `pow x, 0.5` → `sqrt x` (`pow x, 2`
//! stays: RMSNorm fusion matches it); `neg (neg x)`, `identity x`, `cast` to the same dtype,
//! transposes with the identity permutation, `reshape`/`expand` to `x`'s own type and
//! reshape-like chains (`reshape`/`squeeze`/`unsqueeze`) that come back to `x`'s type → `x`;
//! two transposes → one (or none); `reshape (reshape x)` → one reshape when the outer type
//! is fully known; constant operands of commutative ops (`add`, `mul`, `max`, `min`, `and`,
//! `or`, `xor`, `equal`) move to the right.

use crate::cleanup_util::{erase_orphans, operand_producers};
use crate::matchers::{def, splat_value};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{infer, Function, Module, Op, OpId, TensorType, ValueDef, ValueId};
use std::collections::BTreeMap;

/// Passes over a function until nothing changes (each rewrite shrinks or reorders once).
const MAX_ROUNDS: usize = 8;

/// The `canonicalize` pass.
#[derive(Debug)]
pub struct Canonicalize;

impl OptimizationPass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }

    fn summary(&self) -> &'static str {
        "Algebraic identities and canonical operand order"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["shape-inference"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut erased = 0;
        for i in 0..module.functions.len() {
            let mut f = std::mem::replace(&mut module.functions[i], Function::new(""));
            let before = f.op_count();
            for _ in 0..MAX_ROUNDS {
                if !canonicalize_round(module, &mut f, &mut counts) {
                    break;
                }
            }
            erased += before.saturating_sub(f.op_count());
            module.functions[i] = f;
        }
        let mut result = OptimizationResult::unchanged();
        result.applied = !counts.is_empty();
        result.stats.operations_eliminated = erased;
        result.notes = counts.iter().map(|(rule, n)| format!("{n} {rule}")).collect();
        Ok(result)
    }
}

/// What one rule does to an op.
enum Rewrite {
    /// The op's (single) result is this existing value.
    Forward(ValueId),
    /// Replace the op by a new op on new operands (same result type).
    Replace(Op, Vec<ValueId>),
    /// Swap the two operands in place.
    Swap,
}

fn is_constant(m: &Module, f: &Function, v: ValueId) -> bool {
    match &f.value(v).def {
        ValueDef::Weight { name } => {
            matches!(m.weight_decl(name).map(|w| &w.source), Some(ferrumc_ir::WeightSource::Inline(_)))
        }
        _ => infer::constant_value(f, v).is_some(),
    }
}

fn canonicalize_round(m: &Module, f: &mut Function, counts: &mut BTreeMap<&'static str, usize>) -> bool {
    let Ok(order) = f.op_order() else { return false };
    let mut changed = false;
    let mut seeds: Vec<OpId> = Vec::new();
    for id in order {
        let Some((rule, rewrite)) = match_rule(m, f, id) else { continue };
        let Some(data) = f.op(id) else { continue };
        let result = data.results[0];
        match rewrite {
            Rewrite::Forward(v) => {
                seeds.push(id);
                f.replace_all_uses(result, v);
            }
            Rewrite::Replace(op, operands) => {
                let ty = f.ty(result).clone();
                let new = f.add_op1(op, operands, ty);
                seeds.push(id);
                f.replace_all_uses(result, new);
            }
            Rewrite::Swap => {
                let (a, b) = (data.operands[0], data.operands[1]);
                f.set_operand(id, 0, b);
                f.set_operand(id, 1, a);
            }
        }
        *counts.entry(rule).or_insert(0) += 1;
        changed = true;
    }
    let more: Vec<OpId> = seeds.iter().flat_map(|s| operand_producers(f, *s)).collect();
    erase_orphans(f, seeds.into_iter().chain(more));
    changed
}

/// The first rule that applies to op `id`, with its note label.
fn match_rule(m: &Module, f: &Function, id: OpId) -> Option<(&'static str, Rewrite)> {
    let data = f.op(id)?;
    if data.results.len() != 1 {
        return None;
    }
    let out: &TensorType = f.ty(data.results[0]);
    // Equal types mean equal run-time shapes only without `?` dims (two `?` may differ).
    let same = |v: ValueId| out.is_known() && f.ty(v) == out;
    let splat = |v: ValueId| splat_value(m, f, v);
    let x = *data.operands.first()?;
    let y = data.operands.get(1).copied();
    let forward = |v: ValueId| same(v).then_some(("identities removed", Rewrite::Forward(v)));
    match &data.op {
        Op::Add | Op::Mul | Op::Max | Op::Min | Op::And | Op::Or | Op::Xor | Op::Equal
            if y.is_some_and(|y| is_constant(m, f, x) && !is_constant(m, f, y)) =>
        {
            Some(("constant operands moved right", Rewrite::Swap))
        }
        Op::Add | Op::Sub if y.and_then(splat) == Some(0.0) => forward(x),
        Op::Mul | Op::Div if y.and_then(splat) == Some(1.0) => forward(x),
        Op::Pow if y.and_then(splat) == Some(1.0) => forward(x),
        Op::Pow if y.and_then(splat) == Some(0.5) && out.dtype.is_float() && same(x) => {
            Some(("pow 0.5 turned into sqrt", Rewrite::Replace(Op::Sqrt, vec![x])))
        }
        Op::Identity => forward(x),
        Op::Cast { to } if *to == f.ty(x).dtype => forward(x),
        Op::Neg => match def(f, x) {
            Some((_, inner)) if inner.op == Op::Neg => forward(*inner.operands.first()?),
            _ => None,
        },
        Op::Transpose { perm } => {
            if perm.iter().enumerate().all(|(i, &p)| usize::try_from(p) == Ok(i)) {
                return forward(x);
            }
            let (_, inner) = def(f, x)?;
            let Op::Transpose { perm: first } = &inner.op else { return None };
            let src = *inner.operands.first()?;
            // Result dim i is input dim first[perm[i]].
            let combined: Vec<i64> = perm
                .iter()
                .map(|&p| usize::try_from(p).ok().and_then(|p| first.get(p).copied()))
                .collect::<Option<_>>()?;
            if combined.iter().enumerate().all(|(i, &p)| usize::try_from(p) == Ok(i)) {
                return same(src).then_some(("transpose pairs merged", Rewrite::Forward(src)));
            }
            Some(("transpose pairs merged", Rewrite::Replace(Op::Transpose { perm: combined }, vec![src])))
        }
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Expand => {
            if same(x) {
                return forward(x);
            }
            if matches!(data.op, Op::Expand) {
                return None;
            }
            // Walk back through pure reshapes (they never move data) to a source of our type.
            let mut src = x;
            let mut steps = 0;
            while let Some((_, inner)) = def(f, src) {
                if !matches!(inner.op, Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }) || steps > 16 {
                    break;
                }
                src = *inner.operands.first()?;
                steps += 1;
                if same(src) {
                    return Some(("reshape chains removed", Rewrite::Forward(src)));
                }
            }
            let (_, inner) = def(f, x)?;
            let single = matches!(data.op, Op::Reshape { .. }) && matches!(inner.op, Op::Reshape { .. });
            (single && out.is_known() && f.ty(x).dtype == out.dtype).then(|| {
                let src = inner.operands[0];
                ("reshape pairs merged", Rewrite::Replace(Op::Reshape { allowzero: false }, vec![src]))
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup_util::testing::assert_preserved;
    use ferrumc_ir::text::{parse_module, print_module};

    fn run(text: &str) -> (String, OptimizationResult) {
        let mut m = parse_module(text).expect("parses");
        let r = Canonicalize.apply(&mut m, &PassOptions::default()).expect("runs");
        if let Err(e) = ferrumc_ir::verify::verify_module(&m) {
            panic!("{e:?}\n{}", print_module(&m));
        }
        (print_module(&m), r)
    }

    #[test]
    fn identities_collapse_to_the_input() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[2, 3]) -> (y: f32[2, 3]) {\n\
               %z = constant {value = dense<f32[]: [0.0]>} : f32[]\n\
               %o = constant {value = dense<f32[]: [1.0]>} : f32[]\n\
               %a = add %z, %x : f32[2, 3]\n\
               %b = mul %a, %o : f32[2, 3]\n\
               %c = neg %b : f32[2, 3]\n\
               %d = neg %c : f32[2, 3]\n\
               %e = cast %d {to = f32} : f32[2, 3]\n\
               %t = transpose %e {perm = [1, 0]} : f32[3, 2]\n\
               %u = transpose %t {perm = [1, 0]} : f32[2, 3]\n\
               %v = unsqueeze %u {axes = [0]} : f32[1, 2, 3]\n\
               %w = reshape %v {allowzero = false} : f32[6]\n\
               %q = reshape %w {allowzero = false} : f32[2, 3]\n\
               %p = pow %q, %o : f32[2, 3]\n\
               return %p\n\
             }\n");
        assert!(text.contains("return %x"), "{text}");
        assert!(r.applied);
    }

    #[test]
    fn broadcasting_identities_and_unknown_shapes_do_not_fire() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[3], %y: f32[?]) -> (a: f32[2, 3], b: f32[?], c: f32[3]) {\n\
               %z = constant {value = dense<f32[2, 3]: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]>} : f32[2, 3]\n\
               %a = add %x, %z : f32[2, 3]\n\
               %o = constant {value = dense<f32[4]: [1.0, 1.0, 1.0, 1.0]>} : f32[4]\n\
               %b = mul %y, %o : f32[?]\n\
               %two = constant {value = dense<f32[]: [2.0]>} : f32[]\n\
               %c = pow %x, %two : f32[3]\n\
               return %a, %b, %c\n\
             }\n");
        assert!(!r.applied, "{text}");
    }

    #[test]
    fn pow_half_becomes_sqrt_and_constants_move_right() {
        let (text, _) = run("module @m\n\
             func @f(%x: f32[3]) -> (a: f32[3], b: f32[3], c: f32[3]) {\n\
               %h = constant {value = dense<f32[]: [0.5]>} : f32[]\n\
               %a = pow %x, %h : f32[3]\n\
               %k = constant {value = dense<f32[]: [3.0]>} : f32[]\n\
               %b = mul %k, %x : f32[3]\n\
               %c = sub %k, %x : f32[3]\n\
               %t1 = transpose %x {perm = [0]} : f32[3]\n\
               return %a, %b, %c\n\
             }\n");
        assert!(text.contains("sqrt %x"), "{text}");
        assert!(text.contains("mul %x, %"), "{text}");
        assert!(text.contains("sub %0, %x") || text.contains("sub %1, %x"), "sub is not commutative: {text}");
    }

    #[test]
    fn double_transpose_merges_into_one() {
        let (text, _) = run("module @m\n\
             func @f(%x: f32[2, 3, 4]) -> (y: f32[4, 2, 3]) {\n\
               %a = transpose %x {perm = [0, 2, 1]} : f32[2, 4, 3]\n\
               %b = transpose %a {perm = [1, 0, 2]} : f32[4, 2, 3]\n\
               return %b\n\
             }\n");
        assert!(text.contains("transpose %x {perm = [2, 0, 1]} : f32[4, 2, 3]"), "{text}");
        assert_eq!(text.matches("transpose").count(), 1, "{text}");
    }

    #[test]
    fn preserves_onnx_llama_and_hf_llama() {
        assert_preserved("tests/fixtures/onnx_llama/model.onnx", &["canonicalize"]);
        assert_preserved("tests/fixtures/hf/phi3", &["canonicalize"]);
        assert_preserved("tests/fixtures/hf/llama", &["canonicalize"]);
    }
}
