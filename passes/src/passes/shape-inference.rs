//! `shape-inference`: Re-infer every type symbolically so shape arithmetic collapses to constants or symbolic dims.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `shape-inference` pass.
#[derive(Debug)]
pub struct ShapeInference;

impl OptimizationPass for ShapeInference {
    fn name(&self) -> &'static str {
        "shape-inference"
    }

    fn summary(&self) -> &'static str {
        "Re-infer every type symbolically so shape arithmetic collapses to constants or symbolic dims"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
