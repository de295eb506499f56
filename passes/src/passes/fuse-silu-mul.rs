//! `fuse-silu-mul`: silu(gate) * up (also x*sigmoid(x) forms) -> silu_mul.
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `fuse-silu-mul` pass.
#[derive(Debug)]
pub struct FuseSiluMul;

impl OptimizationPass for FuseSiluMul {
    fn name(&self) -> &'static str {
        "fuse-silu-mul"
    }

    fn summary(&self) -> &'static str {
        "silu(gate) * up (also x*sigmoid(x) forms) -> silu_mul"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
