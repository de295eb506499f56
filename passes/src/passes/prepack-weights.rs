//! `prepack-weights`: Rewrite weights into the layout the CPU kernels read, at compile time.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `prepack-weights` pass.
#[derive(Debug)]
pub struct PrepackWeights;

impl OptimizationPass for PrepackWeights {
    fn name(&self) -> &'static str {
        "prepack-weights"
    }

    fn summary(&self) -> &'static str {
        "Rewrite weights into the layout the CPU kernels read, at compile time"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
