//! `split-kv-attention`: an `attention` in KV-cache form (`q, k, v[, mask], past_k, past_v`
//! with the presents as extra results) becomes `present_k = concat(past_k, k)`,
//! `present_v = concat(past_v, v)` along the sequence axis and an `attention` of `q` over the
//! presents. That is what the KV-cache form means by definition (its keys and values are
//! those concatenations, and causal masking is bottom-right aligned over all `T` keys either
//! way), so the values computed do not change.
//!
//! Why: kernels are one parallel loop each. The fused form has to copy a kv head's cache
//! before that head's query rows read it, so its kernel runs one parallel tile per kv head —
//! with 3 kv heads on 2 threads one thread does two thirds of every decode step's cache
//! copies and attention. Split, the copies are kernels of their own and the attention runs
//! one tile per query row (9 heads' rows for SmolLM2's decode step), which the thread team
//! balances.

use crate::fusion_util as fu;
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Module, Op};

/// The `split-kv-attention` pass.
#[derive(Debug)]
pub struct SplitKvAttention;

impl OptimizationPass for SplitKvAttention {
    fn name(&self) -> &'static str {
        "split-kv-attention"
    }

    fn summary(&self) -> &'static str {
        "attention with a KV cache -> concat(past, new) for keys and values + attention over them"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    fn is_applicable(&self, module: &Module, _options: &PassOptions) -> bool {
        module.functions.iter().any(|f| {
            f.op_ids().any(|o| f.op(o).is_some_and(|d| matches!(d.op, Op::Attention { .. }) && d.results.len() == 3))
        })
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut split = 0usize;
        fu::each_function(module, |_, f| {
            for id in fu::ops_in_order(f) {
                let Some(data) = f.op(id) else { continue };
                let Op::Attention { scale, causal } = data.op else { continue };
                // 5 operands: q, k, v, past_k, past_v; 6: a mask before the pasts.
                if data.results.len() != 3 || !(5..=6).contains(&data.operands.len()) {
                    continue;
                }
                let (operands, results) = (data.operands.clone(), data.results.clone());
                let (past_k, past_v) = (operands[operands.len() - 2], operands[operands.len() - 1]);
                let seq_axis = Op::Concat { axis: 2 };
                let present_k = f.add_op1(seq_axis.clone(), vec![past_k, operands[1]], f.ty(results[1]).clone());
                let present_v = f.add_op1(seq_axis, vec![past_v, operands[2]], f.ty(results[2]).clone());
                let mut inputs = vec![operands[0], present_k, present_v];
                if operands.len() == 6 {
                    inputs.push(operands[3]);
                }
                let out = f.add_op1(Op::Attention { scale, causal }, inputs, f.ty(results[0]).clone());
                f.replace_all_uses(results[0], out);
                f.replace_all_uses(results[1], present_k);
                f.replace_all_uses(results[2], present_v);
                f.erase_op(id);
                split += 1;
            }
        });
        if split == 0 {
            return Ok(OptimizationResult::unchanged());
        }
        let mut result = OptimizationResult::unchanged();
        result.applied = true;
        result.notes.push(format!("{split} KV-cache attention split into concat + attention"));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    #[test]
    fn kv_cache_forms_split_and_compute_the_same() {
        // GQA (4 query heads on 2 kv heads) with a cache, and a masked one with its own
        // scale: both split; a plain attention without cache stays.
        let src = r#"module @m
func @forward(%q: f32[1, 4, 2, 8], %k: f32[1, 2, 2, 8], %v: f32[1, 2, 2, 8], %pk: f32[1, 2, 3, 8], %pv: f32[1, 2, 3, 8], %mask: f32[1, 4, 2, 5]) -> (o: f32[1, 4, 2, 8], k1: f32[1, 2, 5, 8], v1: f32[1, 2, 5, 8], om: f32[1, 4, 2, 8], km: f32[1, 2, 5, 8], vm: f32[1, 2, 5, 8], plain: f32[1, 4, 2, 8]) {
  %0, %1, %2 = attention %q, %k, %v, %pk, %pv {causal = true} : f32[1, 4, 2, 8], f32[1, 2, 5, 8], f32[1, 2, 5, 8]
  %3, %4, %5 = attention %q, %k, %v, %mask, %pk, %pv {causal = false, scale = 0.3} : f32[1, 4, 2, 8], f32[1, 2, 5, 8], f32[1, 2, 5, 8]
  %6 = attention %q, %k, %v {causal = true} : f32[1, 4, 2, 8]
  return %0, %1, %2, %3, %4, %5, %6
}
"#;
        let m = check_random(src, &["split-kv-attention"]);
        assert_eq!((count(&m, "attention"), count(&m, "concat")), (3, 4));
        let f = m.function("forward").unwrap();
        for id in f.op_ids() {
            let d = f.op(id).unwrap();
            if d.op.name() == "attention" {
                assert!(d.operands.len() <= 4 && d.results.len() == 1, "a KV-cache attention is left");
            }
        }
    }
}
