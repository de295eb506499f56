//! `fuse-rms-norm-residual`: `s = add x, r` feeding `rms_norm s, w` while `s` also flows on
//! (the residual stream between decoder layers) becomes one
//! `(n, s') = rms_norm_residual x, r, w`, replacing both the add and the norm. Only when
//! `x`, `r` and `s` have the same type (the add does not broadcast).

use crate::fusion_util::{self as fu, binary};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Module, Op};

/// The `fuse-rms-norm-residual` pass.
#[derive(Debug)]
pub struct FuseRmsNormResidual;

impl OptimizationPass for FuseRmsNormResidual {
    fn name(&self) -> &'static str {
        "fuse-rms-norm-residual"
    }

    fn summary(&self) -> &'static str {
        "residual add followed by rms_norm -> rms_norm_residual"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["fuse-rms-norm"]
    }

    fn is_applicable(&self, module: &Module, _options: &PassOptions) -> bool {
        module
            .functions
            .iter()
            .any(|f| f.op_ids().any(|id| f.op(id).is_some_and(|d| matches!(d.op, Op::RmsNorm { .. }))))
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut fused = 0usize;
        fu::each_function(module, |_, f| {
            for id in fu::ops_in_order(f) {
                let Some(data) = f.op(id) else { continue };
                let Op::RmsNorm { epsilon } = data.op else { continue };
                let (s, w, n) = (data.operands[0], data.operands[1], data.results[0]);
                let Some((add, x, r)) = binary(f, s, fu::is_add) else { continue };
                // The sum must also be used outside this norm, or there is no residual
                // stream to return; and the add must not broadcast.
                let other_uses = f.value(s).uses.iter().any(|u| u.op != id) || f.outputs().iter().any(|(_, o)| *o == s);
                if !other_uses || !fu::same_type(f, x, s) || !fu::same_type(f, r, s) || f.ty(n) != f.ty(s) {
                    continue;
                }
                let types = vec![f.ty(n).clone(), f.ty(s).clone()];
                let new = f.add_op(Op::RmsNormResidual { epsilon }, vec![x, r, w], types);
                let Some(results) = f.op(new).map(|d| d.results.clone()) else { continue };
                f.replace_all_uses(n, results[0]);
                f.replace_all_uses(s, results[1]);
                f.erase_op(id);
                f.erase_op(add);
                fused += 1;
            }
        });
        let mut result = OptimizationResult::unchanged();
        if fused > 0 {
            result.applied = true;
            result.stats.operations_eliminated = fused;
            result.notes.push(format!("{fused} rms_norm_residual fused"));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    #[test]
    fn hf_llama_residual_adds_fuse_and_outputs_agree() {
        let (m, dir) = hf("llama");
        let m = check_preserved(m, &dir, &["fuse-rms-norm-residual"]);
        // 3 per function (forward, decode): the final norm's input has no other use.
        assert_eq!(count(&m, "rms_norm_residual"), 6);
        assert_eq!(count(&m, "rms_norm"), 4);
    }

    #[test]
    fn onnx_llama_after_norm_fusion_agrees() {
        let (m, dir) = onnx_llama();
        let m = check_preserved(m, &dir, &["fuse-rms-norm", "fuse-rms-norm-residual"]);
        assert_eq!(count(&m, "rms_norm_residual"), 3);
    }

    #[test]
    fn broadcasting_and_single_use_adds_stay() {
        let src = r#"module @m
weight @w : f32[8] = dense<f32[8]: [1.0, 2.0, 0.5, 1.5, 1.0, 1.0, 0.25, 3.0]>
func @forward(%x: f32[3, 8], %r: f32[3, 8], %b: f32[8]) -> (n: f32[3, 8], s: f32[3, 8], n2: f32[3, 8], n3: f32[3, 8]) {
  %0 = add %x, %r : f32[3, 8]
  %1 = rms_norm %0, @w {epsilon = 1e-5} : f32[3, 8]
  %2 = add %x, %b : f32[3, 8]
  %3 = rms_norm %2, @w {epsilon = 1e-5} : f32[3, 8]
  %4 = add %1, %r : f32[3, 8]
  %5 = rms_norm %4, @w {epsilon = 1e-5} : f32[3, 8]
  return %1, %2, %3, %5
}
"#;
        let m = check_random(src, &["fuse-rms-norm-residual"]);
        assert_eq!((count(&m, "rms_norm_residual"), count(&m, "rms_norm")), (0, 3));
        let ok =
            check_random(&src.replace("return %1, %2, %3, %5", "return %1, %0, %3, %5"), &["fuse-rms-norm-residual"]);
        assert_eq!(count(&ok, "rms_norm_residual"), 1);
    }
}
