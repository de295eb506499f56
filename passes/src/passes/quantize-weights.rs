//! `quantize-weights`: Weight-only quantization of linear weights (int8 per channel, q8_0, q4_0, int4<G>).
//!
//! PLACEHOLDER: not implemented yet; does nothing.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;

/// The `quantize-weights` pass.
#[derive(Debug)]
pub struct QuantizeWeights;

impl OptimizationPass for QuantizeWeights {
    fn name(&self) -> &'static str {
        "quantize-weights"
    }

    fn summary(&self) -> &'static str {
        "Weight-only quantization of linear weights (int8 per channel, q8_0, q4_0, int4<G>)"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn apply(&self, _module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        Ok(OptimizationResult::unchanged())
    }
}
