//! `fuse-rms-norm-residual`: add + rms_norm of the sum -> rms_norm_residual.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-rms-norm-residual` pass.
#[derive(Debug)]
pub struct FuseRmsNormResidual;

impl OptimizationPass for FuseRmsNormResidual {
    fn name(&self) -> &'static str {
        "fuse-rms-norm-residual"
    }

    fn summary(&self) -> &'static str {
        "add + rms_norm of the sum -> rms_norm_residual"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["fuse-rms-norm"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
