//! `fusion-groups`: Partition ops into fusion groups (one kernel each) recorded in the IR.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fusion-groups` pass.
#[derive(Debug)]
pub struct FusionGroups;

impl OptimizationPass for FusionGroups {
    fn name(&self) -> &'static str {
        "fusion-groups"
    }

    fn summary(&self) -> &'static str {
        "Partition ops into fusion groups (one kernel each) recorded in the IR"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
