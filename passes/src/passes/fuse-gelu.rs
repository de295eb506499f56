//! `fuse-gelu`: GELU from its erf and tanh decompositions -> gelu.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-gelu` pass.
#[derive(Debug)]
pub struct FuseGelu;

impl OptimizationPass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }

    fn summary(&self) -> &'static str {
        "GELU from its erf and tanh decompositions -> gelu"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
