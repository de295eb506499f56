//! `fuse-silu-mul`: `x · sigmoid(x)` becomes `silu x`, and `silu(g) · u` (either operand
//! order, `silu` possibly just fused from the sigmoid form) becomes `silu_mul g, u` (SwiGLU).
//! Only when the operands have the result's type (no broadcasting) and the intermediates
//! are used only inside the pattern.

use crate::fusion_util::{self as fu, either, unary};
use crate::matchers::single_use;
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Function, Module, Op, ValueId};

/// The `fuse-silu-mul` pass.
#[derive(Debug)]
pub struct FuseSiluMul;

impl OptimizationPass for FuseSiluMul {
    fn name(&self) -> &'static str {
        "fuse-silu-mul"
    }

    fn summary(&self) -> &'static str {
        "x * sigmoid(x) -> silu; silu(gate) * up -> silu_mul"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let (mut silu, mut silu_mul, mut erased) = (0usize, 0usize, 0usize);
        fu::each_function(module, |_, f| {
            for id in fu::ops_in_order(f) {
                let Some(data) = f.op(id) else { continue };
                if !matches!(data.op, Op::Mul) {
                    continue;
                }
                let (a, b, root) = (data.operands[0], data.operands[1], data.results[0]);
                let (op, operands) = if let Some(g) = either(a, b, |g, s| sigmoid_of(f, g, s, root)) {
                    silu += 1;
                    (Op::Silu, vec![g])
                } else if let Some((g, u)) = either(a, b, |s, u| silu_times(f, s, u, root)) {
                    silu_mul += 1;
                    (Op::SiluMul, vec![g, u])
                } else {
                    continue;
                };
                let ty = f.ty(root).clone();
                let new = f.add_op1(op, operands, ty);
                f.replace_all_uses(root, new);
                let before = f.op_count();
                fu::erase_dead(f, [id]);
                erased += before - f.op_count();
            }
        });
        let mut result = OptimizationResult::unchanged();
        if silu + silu_mul > 0 {
            result.applied = true;
            result.stats.operations_eliminated = erased;
            // A silu folded into a silu_mul is counted in both.
            result.notes.push(format!("{silu} silu fused, {silu_mul} silu_mul fused"));
        }
        Ok(result)
    }
}

/// `root = g · s` with `s = sigmoid(g)` used only here: returns `g`.
fn sigmoid_of(f: &Function, g: ValueId, s: ValueId, root: ValueId) -> Option<ValueId> {
    let (_, inner) = unary(f, s, |op| matches!(op, Op::Sigmoid))?;
    (inner == g && single_use(f, s) && fu::same_type(f, g, root) && f.ty(g).dtype.is_float()).then_some(g)
}

/// `root = s · u` with `s = silu(g)` used only here and `g`, `u`, `root` of one type:
/// returns `(g, u)`.
fn silu_times(f: &Function, s: ValueId, u: ValueId, root: ValueId) -> Option<(ValueId, ValueId)> {
    let (_, g) = unary(f, s, |op| matches!(op, Op::Silu))?;
    (single_use(f, s) && fu::same_type(f, g, root) && fu::same_type(f, u, root)).then_some((g, u))
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    #[test]
    fn onnx_llama_swiglu_fuses_and_outputs_agree() {
        let (m, dir) = onnx_llama();
        let m = check_preserved(m, &dir, &["fuse-silu-mul"]);
        assert_eq!(count(&m, "silu_mul"), 2);
        assert_eq!(count(&m, "sigmoid") + count(&m, "silu"), 0);
    }

    #[test]
    fn forms_fuse_and_near_misses_stay() {
        let src = r#"module @m
func @forward(%g: f32[2, 8], %u: f32[2, 8], %b: f32[8]) -> (a: f32[2, 8], b: f32[2, 8], c: f32[2, 8], d: f32[2, 8], e: f32[2, 8]) {
  %0 = sigmoid %g : f32[2, 8]
  %1 = mul %0, %g : f32[2, 8]
  %2 = mul %u, %1 : f32[2, 8]
  %3 = silu %u : f32[2, 8]
  %4 = mul %3, %g : f32[2, 8]
  %5 = sigmoid %u : f32[2, 8]
  %6 = mul %g, %5 : f32[2, 8]
  %7 = silu %g : f32[2, 8]
  %8 = mul %7, %b : f32[2, 8]
  return %2, %4, %6, %8, %7
}
"#;
        let m = check_random(src, &["fuse-silu-mul"]);
        // %6 is g·sigmoid(u) (not SiLU); %8 broadcasts and its silu has another use.
        assert_eq!((count(&m, "silu_mul"), count(&m, "silu"), count(&m, "sigmoid")), (2, 1, 1));
    }
}
