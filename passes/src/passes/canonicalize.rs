//! `canonicalize`: Algebraic identities and transpose/reshape folding into one canonical form.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `canonicalize` pass.
#[derive(Debug)]
pub struct Canonicalize;

impl OptimizationPass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }

    fn summary(&self) -> &'static str {
        "Algebraic identities and transpose/reshape folding into one canonical form"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["shape-inference"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
