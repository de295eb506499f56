//! `prepack-weights`: Rewrite weights into the layout the CPU kernels read, at compile time.
//!
//! Every `linear x, w[, bias]` whose `w` is a weight-derived f32 `[N, K]` matrix becomes
//! `packed_linear x, wp[, bias] {out_features = N}` where `wp: [ceil(N/16), K, 16]` is built
//! from weight-derived ops (codegen evaluates them once): `pad` `w` with zero rows to a
//! multiple of 16 (only when needed) → `reshape [N'/16, 16, K]` → `transpose [0, 2, 1]`.
//! Each `[K, 16]` panel is what the CPU matmul micro-kernel streams for 16 output columns.
//! The result is the same sums in a different memory order, so the interpreter's results are
//! unchanged up to summation order.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use crate::weight_prep::{add1, erase_dead, refresh, replace_op, weight_linears, WeightLinear};
use ferrumc_ir::op::{PadMode, PACK_NR};
use ferrumc_ir::{DType, Function, Module, Op, TensorType, ValueId};
use std::collections::HashMap;

/// The `prepack-weights` pass.
#[derive(Debug)]
pub struct PrepackWeights;

fn pack(f: &mut Function, l: &WeightLinear) -> Result<ValueId, String> {
    let nr = PACK_NR as i64;
    let (n, k) = (l.out_features, l.in_features);
    let panels = (n + nr - 1) / nr;
    let padded = panels * nr;
    let w = if padded == n {
        l.w
    } else {
        add1(f, Op::Pad { pads: vec![0, 0, padded - n, 0], mode: PadMode::Constant, value: 0.0 }, vec![l.w])?
    };
    // A static reshape takes its shape from the declared type.
    let r = f.add_op1(Op::Reshape { allowzero: false }, vec![w], TensorType::fixed(DType::F32, &[panels, nr, k]));
    add1(f, Op::Transpose { perm: vec![0, 2, 1] }, vec![r])
}

fn prepack_function(f: &mut Function, warnings: &mut Vec<String>) -> usize {
    let mut done: HashMap<ValueId, ValueId> = HashMap::new();
    for l in weight_linears(f) {
        let Some(l) = refresh(f, &l) else { continue };
        if l.dtype != DType::F32 || l.out_features < 1 {
            continue;
        }
        let wp = match done.get(&l.w) {
            Some(&wp) => wp,
            None => match pack(f, &l) {
                Ok(wp) => {
                    done.insert(l.w, wp);
                    wp
                }
                Err(e) => {
                    warnings.push(format!("{}: a linear is not prepacked: {e}", f.name));
                    continue;
                }
            },
        };
        let mut operands = vec![l.x, wp];
        operands.extend(l.bias);
        match add1(f, Op::PackedLinear { out_features: l.out_features }, operands) {
            Ok(y) => replace_op(f, l.op, l.result, y),
            Err(e) => {
                warnings.push(format!("{}: a linear is not prepacked: {e}", f.name));
                if let Some(wp) = done.remove(&l.w) {
                    erase_dead(f, vec![wp]);
                }
            }
        }
    }
    // Distinct packed weights (a weight shared by several linears is packed once).
    done.len()
}

impl OptimizationPass for PrepackWeights {
    fn name(&self) -> &'static str {
        "prepack-weights"
    }

    fn summary(&self) -> &'static str {
        "Rewrite weights into the layout the CPU kernels read, at compile time"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        // Works on `linear` ops: ONNX graphs have `matmul` by a weight until fuse-linear runs.
        vec!["fuse-linear"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut result = OptimizationResult::unchanged();
        let mut count = 0;
        for f in &mut module.functions {
            count += prepack_function(f, &mut result.warnings);
        }
        if count > 0 {
            result.applied = true;
            result.notes.push(format!("{count} weights prepacked"));
        }
        Ok(result)
    }
}
