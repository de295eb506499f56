//! `fuse-rms-norm`: the decomposed RMSNorm exporters emit,
//! `w · (x · 1/√(mean(x², last axis, keepdims) + ε))`, becomes `rms_norm x, w {epsilon = ε}`.
//!
//! Accepted spellings: `pow(x, 2)` or `x · x`; the mean over `-1` or `rank - 1`; ε on either
//! side of the add; `reciprocal(sqrt(·))`, `1 / sqrt(·)` or `rsqrt(·)` times `x`, or `x / sqrt(·)`; the
//! weight on either side of the final multiply. The weight must be a weight-derived 1-D
//! `[hidden]` vector (Gemma's `1 + w` qualifies); without a weight multiply nothing fuses.
//! Every intermediate must be used only inside the pattern, and nothing may broadcast.

use crate::fusion_util::{self as fu, binary, either, unary};
use crate::matchers::{def, is_weight_derived, single_use, splat_value};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{DType, Function, Module, Op, ValueId};

/// The `fuse-rms-norm` pass.
#[derive(Debug)]
pub struct FuseRmsNorm;

impl OptimizationPass for FuseRmsNorm {
    fn name(&self) -> &'static str {
        "fuse-rms-norm"
    }

    fn summary(&self) -> &'static str {
        "decomposed RMSNorm (pow/mean/add/sqrt/div/mul) -> rms_norm"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["canonicalize"]
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let (mut fused, mut erased) = (0usize, 0usize);
        fu::each_function(module, |m, f| {
            for id in fu::ops_in_order(f) {
                let Some(data) = f.op(id) else { continue };
                if !matches!(data.op, Op::Mul) {
                    continue;
                }
                let (a, b, root) = (data.operands[0], data.operands[1], data.results[0]);
                let Some((x, w, epsilon)) = either(a, b, |n, w| match_rms_norm(m, f, n, w, root)) else { continue };
                let ty = f.ty(root).clone();
                let new = f.add_op1(Op::RmsNorm { epsilon }, vec![x, w], ty);
                f.replace_all_uses(root, new);
                let before = f.op_count();
                fu::erase_dead(f, [id]);
                erased += before - f.op_count();
                fused += 1;
            }
        });
        let mut result = OptimizationResult::unchanged();
        if fused > 0 {
            result.applied = true;
            result.stats.operations_eliminated = erased;
            result.notes.push(format!("{fused} rms_norm fused"));
        }
        Ok(result)
    }
}

/// `root = n · w` with `n` the normalised `x`: returns `(x, w, ε)`.
fn match_rms_norm(m: &Module, f: &Function, n: ValueId, w: ValueId, root: ValueId) -> Option<(ValueId, ValueId, f64)> {
    if !single_use(f, n) {
        return None;
    }
    let (x, denom) = normalised(m, f, n)?;
    let xty = f.ty(x);
    let wty = f.ty(w);
    let shape_ok = xty.dtype.is_float()
        && xty.rank() >= 1
        && f.ty(root) == xty
        && f.ty(n) == xty
        && wty.rank() == 1
        && wty.dtype == xty.dtype
        && xty.shape.last() == Some(&wty.shape[0])
        && is_weight_derived(f, w);
    if !shape_ok {
        return None;
    }
    // denom = mean(x²) + ε, used only by its sqrt.
    let (_, p, q) = binary(f, denom, fu::is_add).filter(|_| single_use(f, denom))?;
    let (mean, epsilon) = either(p, q, |mean, eps| Some((mean, splat_value(m, f, eps)?)))?;
    // An f32 literal 1e-5 reads back as 9.99999974e-6; keep the value the exporter wrote.
    let epsilon = if xty.dtype == DType::F32 { shortest_f32(epsilon) } else { epsilon };
    if f.ty(denom) != f.ty(mean) || epsilon.is_nan() || epsilon < 0.0 || !single_use(f, mean) {
        return None;
    }
    let (_, mdata) = def(f, mean)?;
    let Op::ReduceMean { axes, keepdims: true } = &mdata.op else { return None };
    let rank = xty.rank() as i64;
    if axes.len() != 1 || (axes[0] != -1 && axes[0] != rank - 1) {
        return None;
    }
    let square = mdata.operands[0];
    if !single_use(f, square) || f.ty(square) != xty || !is_square_of(m, f, square, x) {
        return None;
    }
    Some((x, w, epsilon))
}

/// `n = x · r(d)` / `r(d) · x` with `r` = reciprocal∘sqrt or rsqrt, or `n = x / sqrt(d)`:
/// returns `(x, d)`.
fn normalised(m: &Module, f: &Function, n: ValueId) -> Option<(ValueId, ValueId)> {
    if let Some((_, a, b)) = binary(f, n, fu::is_mul) {
        return either(a, b, |x, r| Some((x, inverse_sqrt(m, f, r)?)));
    }
    let (_, x, s) = binary(f, n, fu::is_div)?;
    let (_, d) = unary(f, s, |op| matches!(op, Op::Sqrt)).filter(|_| single_use(f, s))?;
    Some((x, d))
}

/// `r = 1/√d` spelled `reciprocal(sqrt(d))`, `1 / sqrt(d)` or `rsqrt(d)`, each step used
/// once: returns `d`.
fn inverse_sqrt(m: &Module, f: &Function, r: ValueId) -> Option<ValueId> {
    if !single_use(f, r) {
        return None;
    }
    if let Some((_, d)) = unary(f, r, |op| matches!(op, Op::Rsqrt)) {
        return Some(d);
    }
    let s = match unary(f, r, |op| matches!(op, Op::Reciprocal)) {
        Some((_, s)) => s,
        None => {
            // `1 / sqrt(d)`, as TorchScript exports write `torch.rsqrt`.
            let (_, one, s) = binary(f, r, fu::is_div)?;
            if splat_value(m, f, one) != Some(1.0) || f.ty(r) != f.ty(s) {
                return None;
            }
            s
        }
    };
    let (_, d) = unary(f, s, |op| matches!(op, Op::Sqrt)).filter(|_| single_use(f, s))?;
    Some(d)
}

/// `sq` is `pow(x, 2)` or `x · x`.
fn is_square_of(m: &Module, f: &Function, sq: ValueId, x: ValueId) -> bool {
    if let Some((_, a, b)) = binary(f, sq, |op| matches!(op, Op::Pow)) {
        return a == x && splat_value(m, f, b) == Some(2.0);
    }
    matches!(binary(f, sq, fu::is_mul), Some((_, a, b)) if a == x && b == x)
}

/// The shortest decimal that rounds to the same f32 as `v`, as an f64.
fn shortest_f32(v: f64) -> f64 {
    (v as f32).to_string().parse::<f64>().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use crate::fusion_util::testing::*;

    #[test]
    fn onnx_llama_norms_fuse_and_outputs_agree() {
        let (m, dir) = onnx_llama();
        let m = check_preserved(m, &dir, &["fuse-rms-norm"]);
        assert_eq!(count(&m, "rms_norm"), 5);
        assert_eq!(count(&m, "reduce_mean") + count(&m, "reciprocal") + count(&m, "sqrt"), 0);
    }

    const HEAD: &str = r#"module @m
weight @w : f32[8] = dense<f32[8]: [1.0, 2.0, 0.5, 1.5, 1.0, 1.0, 0.25, 3.0]>
func @forward(%x: f32[2, 3, 8]) -> (y: f32[2, 3, 8]) {
  %0 = constant {value = dense<f32[]: [2.0]>} : f32[]
  %1 = constant {value = dense<f32[]: [1e-6]>} : f32[]
"#;

    fn module(body: &str) -> String {
        format!("{HEAD}{body}}}\n")
    }

    #[test]
    fn spellings_fuse_and_agree() {
        let bodies = [
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = sqrt %4 : f32[2, 3, 1]\n  %6 = reciprocal %5 : f32[2, 3, 1]\n  %7 = mul %x, %6 : f32[2, 3, 8]\n  %8 = mul @w, %7 : f32[2, 3, 8]\n  return %8\n",
            "  %2 = mul %x, %x : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [2], keepdims = true} : f32[2, 3, 1]\n  %4 = add %1, %3 : f32[2, 3, 1]\n  %5 = sqrt %4 : f32[2, 3, 1]\n  %6 = div %x, %5 : f32[2, 3, 8]\n  %7 = mul %6, @w : f32[2, 3, 8]\n  return %7\n",
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = rsqrt %4 : f32[2, 3, 1]\n  %6 = mul %5, %x : f32[2, 3, 8]\n  %7 = mul %6, @w : f32[2, 3, 8]\n  return %7\n",
            // TorchScript's rsqrt: `1 / sqrt(·)` (optimum exports)
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = sqrt %4 : f32[2, 3, 1]\n  %9 = constant {value = dense<f32[]: [1.0]>} : f32[]\n  %6 = div %9, %5 : f32[2, 3, 1]\n  %7 = mul %x, %6 : f32[2, 3, 8]\n  %8 = mul @w, %7 : f32[2, 3, 8]\n  return %8\n",
        ];
        for body in bodies {
            let m = check_random(&module(body), &["fuse-rms-norm"]);
            assert_eq!(count(&m, "rms_norm"), 1, "{body}");
            assert_eq!(m.op_count() - count(&m, "constant"), 1, "{body}");
        }
    }

    #[test]
    fn near_misses_do_not_fuse() {
        let bodies = [
            // epsilon added after the sqrt
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = sqrt %3 : f32[2, 3, 1]\n  %5 = add %4, %1 : f32[2, 3, 1]\n  %6 = reciprocal %5 : f32[2, 3, 1]\n  %7 = mul %x, %6 : f32[2, 3, 8]\n  %8 = mul @w, %7 : f32[2, 3, 8]\n  return %8\n",
            // cube instead of square
            "  %2 = pow %x, %1 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = rsqrt %4 : f32[2, 3, 1]\n  %6 = mul %5, %x : f32[2, 3, 8]\n  %7 = mul %6, @w : f32[2, 3, 8]\n  return %7\n",
            // the normalised value also used elsewhere
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = rsqrt %4 : f32[2, 3, 1]\n  %6 = mul %5, %x : f32[2, 3, 8]\n  %7 = mul %6, @w : f32[2, 3, 8]\n  %8 = add %7, %6 : f32[2, 3, 8]\n  return %8\n",
            // no weight multiply: the activation is not weight-derived
            "  %2 = pow %x, %0 : f32[2, 3, 8]\n  %3 = reduce_mean %2 {axes = [-1], keepdims = true} : f32[2, 3, 1]\n  %4 = add %3, %1 : f32[2, 3, 1]\n  %5 = rsqrt %4 : f32[2, 3, 1]\n  %6 = mul %5, %x : f32[2, 3, 8]\n  %7 = mul %6, %x : f32[2, 3, 8]\n  return %7\n",
        ];
        for body in bodies {
            let m = check_random(&module(body), &["fuse-rms-norm"]);
            assert_eq!(count(&m, "rms_norm"), 0, "{body}");
        }
    }
}
