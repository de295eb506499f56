//! Pass manager and optimization passes over ModelIR.
//!
//! * [`pass`]: the [`OptimizationPass`] interface and what a pass reports.
//! * [`manager`]: dependency scheduling, presets `-O0..-O3`, running with verification.
//! * [`memory_plan`]: liveness-based arena planning (the `memory-plan` pass, codegen).
//! * [`registry`]: every pass; each lives in `src/passes/<cli-name>.rs`.
//! * [`weight_prep`]: helpers shared by the weight-preprocessing passes.
//!
//! This crate depends only on `ferrumc-ir`.

pub mod attention_util;
pub mod cleanup_util;
pub mod fusion_util;
pub mod manager;
pub mod matchers;
pub mod memory_plan;
pub mod pass;
pub mod registry;
pub mod weight_prep;

pub use manager::{preset, schedule, PassManager, PassRecord, PipelineError};
pub use pass::{OptimizationPass, OptimizationResult, OptimizationStats, PassError, PassOptions, QuantScheme};
