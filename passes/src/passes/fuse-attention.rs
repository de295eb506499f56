//! `fuse-attention`: matmul-scale-mask-softmax-matmul (with GQA head expansion) -> attention.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-attention` pass.
#[derive(Debug)]
pub struct FuseAttention;

impl OptimizationPass for FuseAttention {
    fn name(&self) -> &'static str {
        "fuse-attention"
    }

    fn summary(&self) -> &'static str {
        "matmul-scale-mask-softmax-matmul (with GQA head expansion) -> attention"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
