//! `dce`: dead-code elimination. Removes ops none of whose results reach a function output
//! (transitively), and weight declarations that no function references anymore (weights
//! are shared by every function of the module, so a weight goes only when all are done
//! with it).

use crate::cleanup_util::remove_dead_ops;
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::Module;
use std::collections::BTreeSet;

/// The `dce` pass.
#[derive(Debug)]
pub struct Dce;

impl OptimizationPass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn summary(&self) -> &'static str {
        "Remove ops whose results are never used and weights no function references"
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut result = OptimizationResult::unchanged();
        if module.functions.iter().any(|f| f.op_order().is_err()) {
            result.warnings.push("a function has a cycle; dce skipped".to_string());
            return Ok(result);
        }
        let erased: usize = module.functions.iter_mut().map(remove_dead_ops).sum();
        let referenced: BTreeSet<String> = module
            .functions
            .iter()
            .flat_map(|f| f.weight_values().iter().filter(|(_, v)| f.is_used(**v)).map(|(name, _)| name.clone()))
            .collect();
        let mut dropped = Vec::new();
        module.weights.retain(|w| {
            let keep = referenced.contains(&w.name);
            if !keep {
                dropped.push(w.clone());
            }
            keep
        });
        if !dropped.is_empty() {
            // Functions keep a value per weight they ever named; the canonical copy keeps
            // only referenced ones, so no function names a dropped declaration.
            for f in module.functions.iter_mut() {
                if let Ok(c) = f.canonical() {
                    *f = c;
                }
            }
        }
        for w in &dropped {
            let numel = w.ty.numel().as_fixed().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            let last = w.ty.shape.last().and_then(|d| d.as_fixed()).and_then(|n| u64::try_from(n).ok()).unwrap_or(1);
            result.stats.parameters_eliminated += numel;
            result.stats.memory_saved += w.ty.dtype.storage_bytes(numel, last).unwrap_or(0);
        }
        result.stats.operations_eliminated = erased;
        result.applied = erased > 0 || !dropped.is_empty();
        if erased > 0 {
            result.notes.push(format!("{erased} dead ops removed"));
        }
        if !dropped.is_empty() {
            result.notes.push(format!(
                "{} unreferenced weights dropped ({} elements)",
                dropped.len(),
                result.stats.parameters_eliminated
            ));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup_util::testing::assert_preserved;
    use ferrumc_ir::text::{parse_module, print_module};

    fn run(text: &str) -> (Module, OptimizationResult) {
        let mut m = parse_module(text).expect("parses");
        let r = Dce.apply(&mut m, &PassOptions::default()).expect("runs");
        ferrumc_ir::verify::verify_module(&m).expect("verifies");
        (m, r)
    }

    #[test]
    fn removes_dead_chains_and_unreferenced_weights() {
        let (m, r) = run("module @m\n\
             weight @w : f32[4] = dense<f32[4]: [1.0, 2.0, 3.0, 4.0]>\n\
             weight @unused : f32[2, 3] = dense<f32[2, 3]: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>\n\
             func @f(%x: f32[4]) -> (y: f32[4]) {\n\
               %a = exp %x : f32[4]\n\
               %b = add %a, @w : f32[4]\n\
               %c = neg %x : f32[4]\n\
               %d = mul %c, @w : f32[4]\n\
               return %a\n\
             }\n");
        let text = print_module(&m);
        assert!(!text.contains("neg") && !text.contains("mul") && !text.contains("add"), "{text}");
        assert!(text.contains("exp"));
        assert!(!text.contains("@unused") && !text.contains("weight @w"), "{text}");
        assert_eq!(r.stats.operations_eliminated, 3);
        assert_eq!(r.stats.parameters_eliminated, 10);
    }

    #[test]
    fn keeps_weights_another_function_uses_and_live_ops() {
        let (m, r) = run("module @m\n\
             weight @w : f32[4] = dense<f32[4]: [1.0, 2.0, 3.0, 4.0]>\n\
             func @f(%x: f32[4]) -> (y: f32[4]) {\n\
               %a = exp %x : f32[4]\n\
               return %a\n\
             }\n\
             func @g(%x: f32[4]) -> (y: f32[4]) {\n\
               %a = add %x, @w : f32[4]\n\
               return %a\n\
             }\n");
        assert!(!r.applied);
        assert_eq!(m.weights.len(), 1);
        assert_eq!(m.op_count(), 2);
    }

    #[test]
    fn preserves_onnx_llama_and_hf_llama() {
        assert_preserved("tests/fixtures/onnx_llama/model.onnx", &["dce"]);
        assert_preserved("tests/fixtures/hf/llama", &["dce"]);
    }
}
