//! Pass manager and optimization passes over ModelIR.
//!
//! * [`pass`]: the [`OptimizationPass`] interface and what a pass reports.
//! * [`manager`]: dependency scheduling, presets `-O0..-O3`, running with verification.
//! * [`registry`]: every pass; each lives in `src/passes/<cli-name>.rs`.
//!
//! This crate depends only on `ferrumc-ir`.

pub mod cleanup_util;
pub mod manager;
pub mod matchers;
pub mod pass;
pub mod registry;

pub use manager::{preset, schedule, PassManager, PassRecord, PipelineError};
pub use pass::{OptimizationPass, OptimizationResult, OptimizationStats, PassError, PassOptions, QuantScheme};
