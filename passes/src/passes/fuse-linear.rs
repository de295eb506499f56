//! `fuse-linear`: matmul by a [in, out] weight -> linear; bias adds folded into linear.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-linear` pass.
#[derive(Debug)]
pub struct FuseLinear;

impl OptimizationPass for FuseLinear {
    fn name(&self) -> &'static str {
        "fuse-linear"
    }

    fn summary(&self) -> &'static str {
        "matmul by a [in, out] weight -> linear; bias adds folded into linear"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
