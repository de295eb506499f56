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
        module.functions.iter().any(|f| f.op_ids().any(|id| f.op(id).is_some_and(|d| matches!(d.op, Op::RmsNorm { .. }))))
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
