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

#[cfg(test)]
mod tests {
    use super::*;
    use ferrumc_ir::interp::run_function;
    use ferrumc_ir::text::{parse_module, print_module};
    use ferrumc_ir::weights::InlineWeights;
    use ferrumc_ir::{DType, Tensor};

    const MLP: &str = r#"module @m {max_sequence_length = 16}

weight @w1 : f32[8, 4] = dense<f32[8, 4]: [0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, 0.9, 1.0, -1.1, 1.2, 1.3, 1.4, 1.5, -1.6, 0.1, 0.2, 0.3, -0.4, 0.5, 0.6, -0.7, 0.8, 0.9, -1.0, 1.1, 1.2, -1.3, 1.4, 1.5, 1.6]>
weight @w2 : f32[4, 8] = dense<f32[4, 8]: [0.1, 0.2, -0.3, 0.4, 0.5, 0.6, 0.7, -0.8, 0.9, 1.0, 1.1, 1.2, -1.3, 1.4, 1.5, 1.6, 0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, -1.1, 1.2, 1.3, 1.4, -1.5, 1.6]>

func @forward(%x: f32[?seq, 4]) -> (y: f32[?seq, 4]) {
  %0 = linear %x, @w1 : f32[?seq, 8]
  %1 = relu %0 : f32[?seq, 8]
  %2 = linear %1, @w2 : f32[?seq, 4]
  %3 = add %2, %x : f32[?seq, 4]
  return %3
}
"#;

    fn run(m: &Module, x: &Tensor) -> Vec<(String, Tensor)> {
        run_function(m, "forward", &[("x".to_string(), x.clone())], &InlineWeights).unwrap()
    }

    #[test]
    fn records_peaks_as_parseable_attributes_and_keeps_results() {
        let mut m = parse_module(MLP).unwrap();
        let x = Tensor::from_f64(DType::F32, vec![3, 4], (0..12).map(|i| i as f64 * 0.25 - 1.0).collect()).unwrap();
        let before = run(&m, &x);
        let r = MemoryPlan.apply(&mut m, &PassOptions::default()).unwrap();
        assert!(r.applied);
        // seq ∈ {1, 16}: 4 f32 intermediates of [seq, ≤8]; at seq=16 the largest live pair is
        // relu's input and output (512 + 512 bytes).
        assert_eq!(m.attrs.get("memory_plan.forward.seq1.peak_bytes"), Some(&Attr::Int(128)));
        assert_eq!(m.attrs.get("memory_plan.forward.seq16.peak_bytes"), Some(&Attr::Int(1024)));
        assert_eq!(r.notes.len(), 2);
        assert!(r.notes[1].starts_with("forward @ seq=16: peak 1.0 KB"), "{}", r.notes[1]);
        assert_eq!(r.stats.memory_saved, (512 + 512 + 256 + 256) - 1024);
        let after = run(&m, &x);
        assert_eq!(after.len(), before.len());
        for ((na, a), (nb, b)) in after.iter().zip(&before) {
            assert!(na == nb && a.bit_eq(b), "{na}: results changed");
        }
        let text = print_module(&m);
        assert_eq!(parse_module(&text).unwrap(), m);
        // Running again changes nothing.
        let again = MemoryPlan.apply(&mut m, &PassOptions::default()).unwrap();
        assert!(!again.applied);
        assert_eq!(print_module(&m), text);
    }

    #[test]
    fn unknown_dims_skip_the_function_with_a_warning() {
        let src = MLP.replace("%1 = relu %0 : f32[?seq, 8]", "%1 = relu %0 : f32[?, 8]");
        let mut m = parse_module(&src).unwrap();
        let r = MemoryPlan.apply(&mut m, &PassOptions::default()).unwrap();
        assert!(!r.applied);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("@forward skipped"), "{}", r.warnings[0]);
        assert!(!m.attrs.keys().any(|k| k.starts_with("memory_plan.")));
    }

    #[test]
    fn quoted_function_names_still_round_trip() {
        let mut m = parse_module(&MLP.replace("@forward", "@\"fwd-1\"")).unwrap();
        MemoryPlan.apply(&mut m, &PassOptions::default()).unwrap();
        assert!(m.attrs.contains_key("memory_plan.fwd-1.seq16.peak_bytes"));
        assert_eq!(parse_module(&print_module(&m)).unwrap(), m);
    }
}
