//! `fuse-rotary`: x*cos + rotate_half(x)*sin (slice/neg/concat) -> rotary_embedding.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-rotary` pass.
#[derive(Debug)]
pub struct FuseRotary;

impl OptimizationPass for FuseRotary {
    fn name(&self) -> &'static str {
        "fuse-rotary"
    }

    fn summary(&self) -> &'static str {
        "x*cos + rotate_half(x)*sin (slice/neg/concat) -> rotary_embedding"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
