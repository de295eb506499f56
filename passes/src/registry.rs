//! Every registered pass, in one table. Each pass lives in `passes/<name>.rs`, where `<name>`
//! is its CLI name.

use crate::pass::OptimizationPass;

#[path = "passes/canonicalize.rs"]
pub mod canonicalize;
#[path = "passes/constant-folding.rs"]
pub mod constant_folding;
#[path = "passes/cse.rs"]
pub mod cse;
#[path = "passes/dce.rs"]
pub mod dce;
#[path = "passes/fuse-attention.rs"]
pub mod fuse_attention;
#[path = "passes/fuse-gelu.rs"]
pub mod fuse_gelu;
#[path = "passes/fuse-linear.rs"]
pub mod fuse_linear;
#[path = "passes/fuse-rms-norm.rs"]
pub mod fuse_rms_norm;
#[path = "passes/fuse-rms-norm-residual.rs"]
pub mod fuse_rms_norm_residual;
#[path = "passes/fuse-rotary.rs"]
pub mod fuse_rotary;
#[path = "passes/fuse-silu-mul.rs"]
pub mod fuse_silu_mul;
#[path = "passes/fusion-groups.rs"]
pub mod fusion_groups;
#[path = "passes/memory-plan.rs"]
pub mod memory_plan;
#[path = "passes/prepack-weights.rs"]
pub mod prepack_weights;
#[path = "passes/quantize-weights.rs"]
pub mod quantize_weights;
#[path = "passes/shape-inference.rs"]
pub mod shape_inference;
#[path = "passes/split-kv-attention.rs"]
pub mod split_kv_attention;

/// Every pass, in the order `--list-passes` prints them.
pub fn all() -> &'static [&'static dyn OptimizationPass] {
    &[
        &shape_inference::ShapeInference,
        &canonicalize::Canonicalize,
        &constant_folding::ConstantFolding,
        &cse::Cse,
        &dce::Dce,
        &fuse_linear::FuseLinear,
        &fuse_rms_norm::FuseRmsNorm,
        &fuse_rms_norm_residual::FuseRmsNormResidual,
        &fuse_silu_mul::FuseSiluMul,
        &fuse_gelu::FuseGelu,
        &fuse_rotary::FuseRotary,
        &fuse_attention::FuseAttention,
        &split_kv_attention::SplitKvAttention,
        &fusion_groups::FusionGroups,
        &quantize_weights::QuantizeWeights,
        &prepack_weights::PrepackWeights,
        &memory_plan::MemoryPlan,
    ]
}

/// The pass called `name`.
pub fn find(name: &str) -> Option<&'static dyn OptimizationPass> {
    all().iter().copied().find(|p| p.name() == name)
}
