//! `memory-plan`: Assign every intermediate an offset in one arena by liveness; report peak bytes.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `memory-plan` pass.
#[derive(Debug)]
pub struct MemoryPlan;

impl OptimizationPass for MemoryPlan {
    fn name(&self) -> &'static str {
        "memory-plan"
    }

    fn summary(&self) -> &'static str {
        "Assign every intermediate an offset in one arena by liveness; report peak bytes"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
