//! `fuse-rms-norm`: RMSNorm from its decomposition (pow/reduce_mean/add/sqrt/reciprocal/mul) -> rms_norm.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-rms-norm` pass.
#[derive(Debug)]
pub struct FuseRmsNorm;

impl OptimizationPass for FuseRmsNorm {
    fn name(&self) -> &'static str {
        "fuse-rms-norm"
    }

    fn summary(&self) -> &'static str {
        "RMSNorm from its decomposition (pow/reduce_mean/add/sqrt/reciprocal/mul) -> rms_norm"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
