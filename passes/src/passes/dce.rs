//! `dce`: Remove ops whose results reach no output.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `dce` pass.
#[derive(Debug)]
pub struct Dce;

impl OptimizationPass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn summary(&self) -> &'static str {
        "Remove ops whose results reach no output"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
