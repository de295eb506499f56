//! `fuse-linear`: `matmul x, W` with a weight-derived `W: [in, out]` (how ONNX exports store
//! projection weights) becomes `linear x, Wᵀ`, where `Wᵀ = transpose W {perm=[1,0]}` is
//! weight-derived (codegen evaluates it once at compile time; a `W` that is itself such a
//! transpose is unwrapped instead of transposed twice). `gemm a, b[, c]` with a weight `b`,
//! `alpha = 1`, no `trans_a` and (when `c` is there) `beta = 1` and a 1-D `c` becomes
//! `linear` too. Then `add(linear(x, w), b)` with a weight-derived 1-D bias `b: [out]` and
//! a linear used only there folds the bias into the `linear`.

use crate::fusion_util::{self as fu, either};
use crate::matchers::{def, is_weight_derived, single_use};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Function, Module, Op, TensorType, ValueId};
use std::collections::HashMap;

/// The `fuse-linear` pass.
#[derive(Debug)]
pub struct FuseLinear;

impl OptimizationPass for FuseLinear {
    fn name(&self) -> &'static str {
        "fuse-linear"
    }

    fn summary(&self) -> &'static str {
        "matmul by a [in, out] weight -> linear; bias adds folded into linear"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn is_applicable(&self, module: &Module, _options: &PassOptions) -> bool {
        module.functions.iter().any(|f| {
            f.op_ids().any(|id| f.op(id).is_some_and(|d| matches!(d.op, Op::MatMul | Op::Gemm { .. } | Op::Linear)))
        })
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let mut counts = Counts::default();
        fu::each_function(module, |_, f| fuse_function(f, &mut counts));
        let mut result = OptimizationResult::unchanged();
        let total = counts.matmul + counts.gemm + counts.bias;
        if total == 0 {
            return Ok(result);
        }
        result.applied = true;
        result.stats.operations_eliminated = counts.erased;
        result.notes.push(format!("{} matmul and {} gemm fused into linear", counts.matmul, counts.gemm));
        result.notes.push(format!("{} bias add folded into linear", counts.bias));
        Ok(result)
    }
}

#[derive(Default)]
struct Counts {
    matmul: usize,
    gemm: usize,
    bias: usize,
    erased: usize,
}

fn fuse_function(f: &mut Function, counts: &mut Counts) {
    // One transpose per weight, however many matmuls read it.
    let mut cache: HashMap<ValueId, ValueId> = HashMap::new();
    for id in fu::ops_in_order(f) {
        let Some(data) = f.op(id) else { continue };
        let (op, operands, result) = (data.op.clone(), data.operands.clone(), data.results[0]);
        let replacement = match op {
            Op::MatMul => fuse_matmul(f, &mut cache, operands[0], operands[1], result).inspect(|_| counts.matmul += 1),
            Op::Gemm { alpha, beta, trans_a, trans_b } => {
                fuse_gemm(f, &mut cache, &operands, result, (alpha, beta, trans_a, trans_b))
                    .inspect(|_| counts.gemm += 1)
            }
            Op::Add => {
                either(operands[0], operands[1], |l, b| fold_bias(f, l, b, result)).inspect(|_| counts.bias += 1)
            }
            _ => None,
        };
        if let Some(new) = replacement {
            // Fresh values get the old declared type: it may carry symbolic dims inference
            // would not recover.
            f.set_type(new, f.ty(result).clone());
            f.replace_all_uses(result, new);
            let before = f.op_count();
            fu::erase_dead(f, [id]);
            counts.erased += before - f.op_count();
        }
    }
}

/// A float matrix operand that is a compile-time constant.
fn weight_matrix(f: &Function, w: ValueId) -> Option<&TensorType> {
    let ty = f.ty(w);
    (ty.rank() == 2 && ty.dtype.is_float() && is_weight_derived(f, w)).then_some(ty)
}

/// `W` as an `[out, in]` weight: the operand of a `transpose {perm=[1,0]}` when `W` is one,
/// else a new weight-derived transpose of `W`.
fn transposed(f: &mut Function, cache: &mut HashMap<ValueId, ValueId>, w: ValueId) -> Option<ValueId> {
    if let Some(&t) = cache.get(&w) {
        return Some(t);
    }
    if let Some((_, data)) = def(f, w) {
        if matches!(&data.op, Op::Transpose { perm } if perm == &[1, 0]) {
            return Some(data.operands[0]);
        }
    }
    let ty = f.ty(w).clone();
    let out = TensorType::new(ty.dtype, vec![ty.shape[1].clone(), ty.shape[0].clone()]);
    let t = f.add_op1(Op::Transpose { perm: vec![1, 0] }, vec![w], out);
    cache.insert(w, t);
    Some(t)
}

fn fuse_matmul(
    f: &mut Function,
    cache: &mut HashMap<ValueId, ValueId>,
    x: ValueId,
    w: ValueId,
    result: ValueId,
) -> Option<ValueId> {
    let wty = weight_matrix(f, w)?;
    let xty = f.ty(x);
    // A weight-derived `x` would make the whole product a constant: nothing to gain.
    if xty.rank() < 2 || xty.dtype != wty.dtype || is_weight_derived(f, x) {
        return None;
    }
    let wt = transposed(f, cache, w)?;
    Some(add_linear(f, vec![x, wt], result))
}

fn fuse_gemm(
    f: &mut Function,
    cache: &mut HashMap<ValueId, ValueId>,
    operands: &[ValueId],
    result: ValueId,
    (alpha, beta, trans_a, trans_b): (f64, f64, bool, bool),
) -> Option<ValueId> {
    let (a, b) = (operands[0], operands[1]);
    let bty = weight_matrix(f, b)?;
    if alpha != 1.0 || trans_a || f.ty(a).dtype != bty.dtype || is_weight_derived(f, a) {
        return None;
    }
    let out_dim = if trans_b { bty.shape[0].clone() } else { bty.shape[1].clone() };
    let bias = match operands.get(2) {
        None => None,
        Some(&c) => {
            let cty = f.ty(c);
            let ok = beta == 1.0
                && cty.rank() == 1
                && cty.shape[0] == out_dim
                && cty.dtype == bty.dtype
                && is_weight_derived(f, c);
            if !ok {
                return None;
            }
            Some(c)
        }
    };
    let w = if trans_b { b } else { transposed(f, cache, b)? };
    let mut new_operands = vec![a, w];
    new_operands.extend(bias);
    Some(add_linear(f, new_operands, result))
}

/// `add(lin, b)` where `lin = linear x, w` is used only here and `b` is a weight-derived
/// `[out]` vector: `linear x, w, b`.
fn fold_bias(f: &mut Function, lin: ValueId, b: ValueId, result: ValueId) -> Option<ValueId> {
    let (_, data) = def(f, lin)?;
    if !matches!(data.op, Op::Linear) || data.operands.len() != 2 || !single_use(f, lin) {
        return None;
    }
    let (lty, bty) = (f.ty(lin), f.ty(b));
    let ok = bty.rank() == 1
        && lty.shape.last() == Some(&bty.shape[0])
        && bty.dtype == lty.dtype
        && f.ty(result) == lty
        && is_weight_derived(f, b);
    if !ok {
        return None;
    }
    let operands = vec![data.operands[0], data.operands[1], b];
    Some(add_linear(f, operands, result))
}

fn add_linear(f: &mut Function, operands: Vec<ValueId>, result: ValueId) -> ValueId {
    let ty = f.ty(result).clone();
    f.add_op1(Op::Linear, operands, ty)
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    #[test]
    fn onnx_llama_matmuls_become_linear_and_outputs_agree() {
        let (m, dir) = onnx_llama();
        let before = count(&m, "matmul");
        let m = check_preserved(m, &dir, &["fuse-linear"]);
        assert_eq!(count(&m, "linear"), 15);
        assert_eq!(count(&m, "matmul"), before - 15, "attention and rope matmuls stay");
    }

    #[test]
    fn hf_llama_is_untouched() {
        let (m, dir) = hf("llama");
        let text = ferrumc_ir::text::print_module(&m);
        let m = check_preserved(m, &dir, &["fuse-linear"]);
        assert_eq!(ferrumc_ir::text::print_module(&m), text);
    }

    const SRC: &str = r#"module @m
weight @w : f32[4, 3] = dense<f32[4, 3]: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 1.2]>
weight @b : f32[3] = dense<f32[3]: [1.0, -1.0, 0.5]>
func @forward(%x: f32[2, 5, 4], %y: f32[2, 4]) -> (a: f32[2, 5, 3], c: f32[2, 3], d: f32[2, 5, 3]) {
  %0 = matmul %x, @w : f32[2, 5, 3]
  %1 = add %0, @b : f32[2, 5, 3]
  %2 = gemm %y, @w, @b {alpha = 1.0, beta = 1.0, trans_a = false, trans_b = false} : f32[2, 3]
  %3 = transpose @w {perm = [1, 0]} : f32[3, 4]
  %4 = transpose %3 {perm = [1, 0]} : f32[4, 3]
  %5 = matmul %x, %4 : f32[2, 5, 3]
  %6 = add @b, %5 : f32[2, 5, 3]
  return %1, %2, %6
}
"#;

    #[test]
    fn matmul_gemm_and_bias_fuse_and_agree() {
        let m = check_random(SRC, &["fuse-linear"]);
        assert_eq!(count(&m, "linear"), 3);
        assert_eq!(count(&m, "add") + count(&m, "matmul") + count(&m, "gemm"), 0);
        // canonicalize (a dependency) removes the double transpose first, so every linear reads
        // the one shared transpose of @w.
        assert_eq!(count(&m, "transpose"), 1, "one shared transpose of @w");
    }

    #[test]
    fn broadcasting_bias_and_activation_operands_do_not_fuse() {
        let src = r#"module @m
weight @b1 : f32[1] = dense<f32[1]: [1.0]>
weight @w : f32[4, 3] = dense<f32[4, 3]: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 1.2]>
func @forward(%x: f32[2, 4], %y: f32[4, 3]) -> (a: f32[2, 3], b: f32[2, 3], c: f32[2, 3]) {
  %0 = matmul %x, %y : f32[2, 3]
  %1 = matmul %x, @w : f32[2, 3]
  %2 = add %1, @b1 : f32[2, 3]
  %3 = gemm %x, @w {alpha = 2.0, beta = 1.0, trans_a = false, trans_b = false} : f32[2, 3]
  return %0, %2, %3
}
"#;
        let m = check_random(src, &["fuse-linear"]);
        assert_eq!((count(&m, "matmul"), count(&m, "linear"), count(&m, "add"), count(&m, "gemm")), (1, 1, 1, 1));
    }
}
