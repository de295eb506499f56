//! `constant-folding`: Evaluate ops whose operands are all constants (never materialising tensors above the size cap).
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `constant-folding` pass.
#[derive(Debug)]
pub struct ConstantFolding;

impl OptimizationPass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant-folding"
    }

    fn summary(&self) -> &'static str {
        "Evaluate ops whose operands are all constants (never materialising tensors above the size cap)"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["shape-inference"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
