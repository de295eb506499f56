//! `memory-plan`: assign every intermediate an offset in one arena by liveness; report peak bytes.
//!
//! For every function and every bucket of [`analysis::default_buckets`] (seq ∈ {1, S},
//! S = min(128, `max_sequence_length`), or the module's `memory_plan.seq_lengths`; `past` = the
//! largest sequence length; other symbols 1) the pass plans the arena with
//! [`analysis::plan_function`], verifies the plan (a failing plan is an error: it would be a
//! planner bug), and records the arena size as the module attribute
//! `memory_plan.<function>.<bucket label>.peak_bytes = <int>` (e.g.
//! `memory_plan.forward.batch1_seq128.peak_bytes`), so the result prints and parses with the
//! module. The ops are left untouched; codegen calls the analysis itself for its buckets.
//!
//! A function whose intermediates have a dim no bucket fixes (`?`) is skipped with a warning.
//! `memory_saved` is, summed over functions, the bytes one-allocation-per-tensor would need
//! minus the arena size, at the function's last (largest) bucket.

use crate::memory_plan as analysis;
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Attr, Module};

/// The `memory-plan` pass.
#[derive(Debug)]
pub struct MemoryPlan;

/// The attribute key a plan's peak is recorded under.
pub fn peak_attr_key(function: &str, plan: &analysis::MemoryPlan) -> String {
    format!("memory_plan.{function}.{}.peak_bytes", plan.bucket_label())
}

impl OptimizationPass for MemoryPlan {
    fn name(&self) -> &'static str {
        "memory-plan"
    }

    fn summary(&self) -> &'static str {
        "Assign every intermediate an offset in one arena by liveness; report peak bytes"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        // Refined types make more dims evaluable; the plan itself needs nothing else.
        vec!["shape-inference"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut result = OptimizationResult::unchanged();
        let mut records: Vec<(String, i64)> = Vec::new();
        for f in &module.functions {
            let buckets = analysis::default_buckets(module, f);
            let plans = match analysis::plan_buckets(module, f, &buckets) {
                Ok(plans) => plans,
                Err(e) => {
                    result.warnings.push(format!("memory-plan: @{} skipped: {e}", f.name));
                    continue;
                }
            };
            for plan in &plans {
                plan.verify().map_err(|e| {
                    PassError::new(format!("memory plan of @{} for {} is invalid: {e}", f.name, plan.bucket_label()))
                })?;
                let peak = i64::try_from(plan.peak_bytes)
                    .map_err(|_| PassError::new(format!("@{}: arena size does not fit an i64", f.name)))?;
                records.push((peak_attr_key(&f.name, plan), peak));
                let bucket: Vec<String> = plan.bucket.iter().map(|(k, v)| format!("{k}={v}")).collect();
                result.notes.push(format!(
                    "{} @ {}: peak {} (lower bound {}, {} unplanned), {} buffers",
                    f.name,
                    if bucket.is_empty() { "static".to_string() } else { bucket.join(",") },
                    analysis::human_bytes(plan.peak_bytes),
                    analysis::human_bytes(plan.lower_bound_bytes),
                    analysis::human_bytes(plan.total_bytes),
                    plan.buffers.len()
                ));
            }
            if let Some(plan) = plans.iter().max_by_key(|p| p.total_bytes) {
                result.stats.memory_saved += plan.total_bytes.saturating_sub(plan.peak_bytes);
            }
        }
        for (key, peak) in records {
            if module.attrs.get(&key) != Some(&Attr::Int(peak)) {
                module.attrs.insert(key, Attr::Int(peak));
                result.applied = true;
            }
        }
        Ok(result)
    }
}
