//! `constant-folding`: evaluate ops whose operands are all literals (`constant` ops or
//! inline weights) with the reference interpreter's own per-op evaluation
//! ([`ferrumc_ir::interp::eval_single_op`]), so folded values are bit-identical to what a
//! run computes, and replace them by `constant` ops.
//!
//! Never folded: ops reading non-inline weights (model weights, possibly huge), `sample`,
//! ops whose result types are not fully static, results larger than
//! `PassOptions::fold_limit_bytes` (reported in the notes), and ops the interpreter rejects
//! (an integer division by zero stays a run-time error).

use crate::cleanup_util::{erase_orphans, literal, operand_producers};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::interp::eval_single_op;
use ferrumc_ir::{Function, Module, Op, OpId, Tensor, TensorType};

/// The `constant-folding` pass.
#[derive(Debug)]
pub struct ConstantFolding;

impl OptimizationPass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant-folding"
    }

    fn summary(&self) -> &'static str {
        "Evaluate ops whose operands are all constants at compile time"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["shape-inference"]
    }

    fn apply(&self, module: &mut Module, options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut result = OptimizationResult::unchanged();
        let mut counts = Counts::default();
        for i in 0..module.functions.len() {
            let mut f = std::mem::replace(&mut module.functions[i], Function::new(""));
            fold_function(module, &mut f, options.fold_limit_bytes, &mut counts);
            module.functions[i] = f;
        }
        result.applied = counts.folded > 0;
        result.stats.operations_eliminated = counts.erased;
        if counts.folded > 0 {
            result.notes.push(format!("{} ops folded into constants", counts.folded));
        }
        if counts.too_big > 0 {
            result
                .notes
                .push(format!("{} skipped over the size cap ({} bytes)", counts.too_big, options.fold_limit_bytes));
        }
        if counts.failed > 0 {
            result.notes.push(format!("{} left alone: the interpreter rejects them", counts.failed));
        }
        Ok(result)
    }
}

#[derive(Debug, Default)]
struct Counts {
    folded: usize,
    too_big: usize,
    failed: usize,
    /// Net ops removed (folded ops plus orphaned operands, minus new constants).
    erased: usize,
}

/// Storage bytes of a fully static type, `None` when not static.
fn static_bytes(ty: &TensorType) -> Option<u64> {
    let dims = ty.fixed_shape()?;
    let numel = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))?;
    let last = dims.last().and_then(|&d| u64::try_from(d).ok()).unwrap_or(1);
    ty.dtype.storage_bytes(numel, last)
}

fn fold_function(m: &Module, f: &mut Function, limit: u64, counts: &mut Counts) {
    let Ok(order) = f.op_order() else { return };
    let before = f.op_count();
    let mut orphan_seeds: Vec<OpId> = Vec::new();
    for id in order {
        let Some(data) = f.op(id) else { continue };
        if matches!(data.op, Op::Constant { .. } | Op::Sample { .. }) {
            continue;
        }
        let args: Option<Vec<&Tensor>> = data.operands.iter().map(|v| literal(m, f, *v)).collect();
        let Some(args) = args else { continue };
        let types: Vec<&TensorType> = data.results.iter().map(|r| f.ty(*r)).collect();
        let bytes: Option<u64> = types.iter().try_fold(0u64, |acc, t| acc.checked_add(static_bytes(t)?));
        let Some(bytes) = bytes else { continue };
        if bytes > limit {
            counts.too_big += 1;
            continue;
        }
        let Ok(values) = eval_single_op(&data.op, &args, &types) else {
            counts.failed += 1;
            continue;
        };
        let results = data.results.clone();
        let types: Vec<TensorType> = types.into_iter().cloned().collect();
        orphan_seeds.extend(operand_producers(f, id));
        for ((old, value), ty) in results.into_iter().zip(values).zip(types) {
            let new = f.add_op1(Op::Constant { value }, vec![], ty);
            f.replace_all_uses(old, new);
        }
        f.erase_op(id);
        counts.folded += 1;
    }
    erase_orphans(f, orphan_seeds);
    counts.erased += before.saturating_sub(f.op_count());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup_util::testing::assert_preserved;
    use ferrumc_ir::text::{parse_module, print_module};

    fn run_with(text: &str, limit: u64) -> (Module, OptimizationResult) {
        let mut m = parse_module(text).expect("parses");
        let options = PassOptions { fold_limit_bytes: limit, ..PassOptions::default() };
        let r = ConstantFolding.apply(&mut m, &options).expect("runs");
        ferrumc_ir::verify::verify_module(&m).expect("verifies");
        (m, r)
    }

    const CHAIN: &str = "module @m\n\
        weight @w : f32[3] = dense<f32[3]: [1.0, 2.0, 3.0]>\n\
        func @f(%x: f32[3]) -> (y: f32[3], i: i64[3]) {\n\
          %a = constant {value = dense<f32[]: [0.1]>} : f32[]\n\
          %b = exp %a : f32[]\n\
          %c = mul @w, %b : f32[3]\n\
          %d = add %x, %c : f32[3]\n\
          %s = shape %x {start = 0} : i64[1]\n\
          %r = constant {value = dense<i64[]: [0]>} : i64[]\n\
          %l = constant {value = dense<i64[]: [3]>} : i64[]\n\
          %one = constant {value = dense<i64[]: [1]>} : i64[]\n\
          %g = range %r, %l, %one : i64[3]\n\
          return %d, %g\n\
        }\n";

    #[test]
    fn folds_chains_bit_identically_to_the_interpreter() {
        let (m, r) = run_with(CHAIN, 1 << 16);
        let text = print_module(&m);
        assert_eq!(r.notes.first().map(String::as_str), Some("3 ops folded into constants"), "{text}");
        // The folded literal is exactly what the interpreter computes: f32(f32(exp(f32 0.1)) * w).
        let e = f64::from((0.1f32 as f64).exp() as f32);
        let expect: Vec<f64> = [1.0, 2.0, 3.0].iter().map(|w: &f64| f64::from((w * e) as f32)).collect();
        let f = m.function("f").expect("f");
        let add = f.op_ids().find(|id| f.op(*id).is_some_and(|d| d.op == Op::Add)).expect("add stays");
        let c = f.op(add).expect("live").operands[1];
        let lit = ferrumc_ir::infer::constant_value(f, c).expect("folded");
        assert_eq!(lit.to_f64_vec(), expect);
        assert!(!text.contains("exp") && !text.contains("range"), "{text}");
        // Dead code that was there before is not folding's business (dce's).
        assert!(text.contains("shape %x"), "{text}");
    }

    #[test]
    fn respects_the_size_cap_and_reports_it() {
        let (m, r) = run_with(CHAIN, 8);
        let text = print_module(&m);
        assert!(text.contains("mul") && text.contains("range"), "{text}");
        assert!(!text.contains("exp"), "{text}");
        assert!(r.notes.iter().any(|n| n.contains("2 skipped over the size cap")), "{:?}", r.notes);
    }

    #[test]
    fn leaves_file_weights_sample_and_runtime_errors_alone() {
        let (m, r) = run_with(
            "module @m\n\
             weight @w : f32[2] = raw(\"w.bin\", offset = 0)\n\
             func @f(%x: f32[2]) -> (y: f32[2], t: i64[], q: i64[1]) {\n\
               %a = neg @w : f32[2]\n\
               %b = add %x, %a : f32[2]\n\
               %l = constant {value = dense<f32[1, 4]: [0.0, 1.0, 5.0, 2.0]>} : f32[1, 4]\n\
               %t = sample %l {repetition_penalty = 1.0, seed = 1, temperature = 0.0, top_k = 0, top_p = 1.0} : i64[1]\n\
               %n = constant {value = dense<i64[1]: [4]>} : i64[1]\n\
               %z = constant {value = dense<i64[1]: [0]>} : i64[1]\n\
               %q = div %n, %z : i64[1]\n\
               %u = squeeze %t {axes = [0]} : i64[]\n\
               return %b, %u, %q\n\
             }\n",
            1 << 16,
        );
        let text = print_module(&m);
        assert!(text.contains("neg @w") && text.contains("sample") && text.contains("div"), "{text}");
        assert!(!r.applied);
    }

    #[test]
    fn preserves_onnx_llama_and_hf_llama() {
        assert_preserved("tests/fixtures/onnx_llama/model.onnx", &["constant-folding"]);
        assert_preserved("tests/fixtures/hf/qwen2", &["constant-folding"]);
    }
}
