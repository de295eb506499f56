//! `cse`: common-subexpression elimination. Two ops merge when they are the same op with
//! the same attributes (floats compared by bit pattern, so NaN attributes match
//! themselves), the same operands and the same declared result types; `constant` ops merge
//! when their literals are bit-identical. The first op in topological order survives, so the
//! result is deterministic.

use crate::cleanup_util::remove_dead_ops;
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Function, Module, OpId, ValueId};
use std::collections::HashMap;

/// The `cse` pass.
#[derive(Debug)]
pub struct Cse;

impl OptimizationPass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn summary(&self) -> &'static str {
        "Merge ops that compute the same thing from the same operands"
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut result = OptimizationResult::unchanged();
        let mut merged = 0;
        for f in module.functions.iter_mut() {
            merged += cse_function(f);
        }
        result.applied = merged > 0;
        result.stats.operations_eliminated = merged;
        if merged > 0 {
            result.notes.push(format!("{merged} duplicate ops merged"));
        }
        Ok(result)
    }
}

/// Bucket key: everything but the attributes, which are compared exactly within a bucket
/// (`Op::attrs` compares floats and literals bitwise).
type Key = (&'static str, Vec<ValueId>, Vec<String>);

fn cse_function(f: &mut Function) -> usize {
    let Ok(order) = f.op_order() else { return 0 };
    let mut seen: HashMap<Key, Vec<OpId>> = HashMap::new();
    let mut merged = 0;
    for id in order {
        let Some(data) = f.op(id) else { continue };
        // Operands were already rewritten to the surviving duplicates (topological order).
        let key: Key =
            (data.op.name(), data.operands.clone(), data.results.iter().map(|r| f.ty(*r).to_string()).collect());
        let attrs = data.op.attrs();
        let bucket = seen.entry(key).or_default();
        let twin = bucket.iter().copied().find(|other| f.op(*other).is_some_and(|o| o.op.attrs() == attrs));
        match twin {
            Some(keep) => {
                let pairs: Vec<(ValueId, ValueId)> = match f.op(keep) {
                    Some(k) => data.results.iter().copied().zip(k.results.iter().copied()).collect(),
                    None => continue,
                };
                for (old, new) in pairs {
                    f.replace_all_uses(old, new);
                }
                f.erase_op(id);
                merged += 1;
            }
            None => bucket.push(id),
        }
    }
    // Merging never orphans anything but the erased twins; this only tidies leftovers.
    merged + if merged > 0 { remove_dead_ops(f) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup_util::testing::assert_preserved;
    use ferrumc_ir::text::{parse_module, print_module};

    fn run(text: &str) -> (String, OptimizationResult) {
        let mut m = parse_module(text).expect("parses");
        let r = Cse.apply(&mut m, &PassOptions::default()).expect("runs");
        ferrumc_ir::verify::verify_module(&m).expect("verifies");
        (print_module(&m), r)
    }

    #[test]
    fn merges_identical_ops_and_constants_transitively() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[4]) -> (y: f32[4]) {\n\
               %c1 = constant {value = dense<f32[]: [2.0]>} : f32[]\n\
               %c2 = constant {value = dense<f32[]: [2.0]>} : f32[]\n\
               %a = mul %x, %c1 : f32[4]\n\
               %b = mul %x, %c2 : f32[4]\n\
               %e1 = exp %a : f32[4]\n\
               %e2 = exp %b : f32[4]\n\
               %s = add %e1, %e2 : f32[4]\n\
               return %s\n\
             }\n");
        assert_eq!(r.stats.operations_eliminated, 3, "{text}");
        assert_eq!(text.matches("exp").count(), 1, "{text}");
        assert!(text.contains("add %2, %2"), "{text}");
    }

    #[test]
    fn nan_literals_and_attrs_merge_but_different_ones_do_not() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[4]) -> (y: f32[4], z: f32[4], w: f32[4]) {\n\
               %a = leaky_relu %x {alpha = nan} : f32[4]\n\
               %b = leaky_relu %x {alpha = nan} : f32[4]\n\
               %c = leaky_relu %x {alpha = 0.1} : f32[4]\n\
               %s = add %a, %b : f32[4]\n\
               return %s, %c, %a\n\
             }\n");
        assert_eq!(r.stats.operations_eliminated, 1, "{text}");
        assert_eq!(text.matches("leaky_relu").count(), 2, "{text}");
    }

    #[test]
    fn different_operands_order_or_types_do_not_merge() {
        let (text, r) = run("module @m\n\
             func @f(%x: f32[4], %y: f32[4]) -> (a: f32[4], b: f32[4], c: f32[4]) {\n\
               %a = sub %x, %y : f32[4]\n\
               %b = sub %y, %x : f32[4]\n\
               %c = constant {value = dense<f32[]: [0.0]>} : f32[]\n\
               %d = constant {value = dense<f32[]: [-0.0]>} : f32[]\n\
               %e = add %x, %c : f32[4]\n\
               %g = add %x, %d : f32[4]\n\
               %h = add %e, %g : f32[4]\n\
               return %a, %b, %h\n\
             }\n");
        assert!(!r.applied, "{text}");
    }

    #[test]
    fn preserves_onnx_llama_and_hf_gpt2() {
        assert_preserved("tests/fixtures/onnx_llama/model.onnx", &["cse"]);
        assert_preserved("tests/fixtures/hf/gpt2", &["cse"]);
    }
}
