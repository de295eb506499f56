//! `fuse-attention`: matmul-scale-mask-softmax-matmul (with GQA head expansion) -> attention.
//!
//! Matches the raw exported form `matmul(softmax(scores, axis=-1), V)` where `scores` is
//! `matmul(q, Kᵀ)` under any chain of `mul`/`div` by splat constants and at most one `add`
//! of a float mask (before or after the scaling; operands in any order). Splat scalings of
//! `q` or `K` before the matmul (torch's SDPA export scales both by `√scale`) are folded in,
//! so `scale` is the product of every factor; it is left unset when it equals the default
//! `1/√D` within 1e-7 relative. `Kᵀ` must be a transpose swapping the last two dims of a
//! `[B, Hkv, T, D]` key; a GQA expansion `reshape(expand(unsqueeze(k, 2), [B, Hkv, n, T, D]),
//! [B, Hkv·n, T, D])` on K or V is stripped, since `attention` maps query head `h` to kv
//! head `h / n` natively — exactly the order that reshape produces.
//!
//! A mask added before a scaling `c` becomes the operand `mask · c` (as `(s + m)·c = s·c +
//! m·c`). The mask is always kept as an operand with `causal = false`: this pass proves no
//! causality, so masked rows behave exactly as in the unfused graph (the `attention` op
//! adds the float mask to the scaled scores just as the `add` did).

use crate::attention_util::{add_const, erase_dead, norm_axis, same_dim};
use crate::matchers::{def, single_use, splat_value};
use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions};
use ferrumc_ir::{Function, Module, Op, OpId, Tensor, TensorType, ValueId};

/// The `fuse-attention` pass.
#[derive(Debug)]
pub struct FuseAttention;

impl OptimizationPass for FuseAttention {
    fn name(&self) -> &'static str {
        "fuse-attention"
    }

    fn summary(&self) -> &'static str {
        "matmul-scale-mask-softmax-matmul (with GQA head expansion) -> attention"
    }

    fn is_applicable(&self, module: &Module, _options: &PassOptions) -> bool {
        module.functions.iter().any(|f| f.op_ids().any(|o| f.op(o).is_some_and(|d| matches!(d.op, Op::Softmax { .. }))))
    }

    fn apply(&self, module: &mut Module, _options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let (mut fused, mut with_mask, mut removed) = (0usize, 0usize, 0usize);
        for fi in 0..module.functions.len() {
            let matches = {
                let f = &module.functions[fi];
                let order = f.op_order().map_err(|e| PassError::new(e.to_string()))?;
                order.into_iter().filter_map(|op| match_attention(module, f, op)).collect::<Vec<_>>()
            };
            let f = &mut module.functions[fi];
            let before = f.op_count();
            for m in &matches {
                rewrite(f, m);
                fused += 1;
                with_mask += usize::from(m.mask.is_some());
            }
            removed += before.saturating_sub(f.op_count());
        }
        if fused == 0 {
            return Ok(OptimizationResult::unchanged());
        }
        Ok(OptimizationResult::rewrote(removed, format!("{fused} attention fused ({with_mask} with mask operand)")))
    }
}

/// One matched attention.
#[derive(Debug)]
struct AttnMatch {
    /// The final `matmul(probs, V)`.
    out: OpId,
    q: ValueId,
    k: ValueId,
    v: ValueId,
    /// The additive mask and the factor the scores were scaled by after it was added.
    mask: Option<(ValueId, f64)>,
    scale: Option<f64>,
}

/// Shapes of `a` and `b` are the same dims (so an elementwise op did not broadcast).
fn same_shape(f: &Function, a: ValueId, b: ValueId) -> bool {
    f.ty(a).shape == f.ty(b).shape
}

/// `mul(y, c)` / `mul(c, y)` / `div(y, c)` with splat `c` and no broadcast of `y`:
/// returns `(y, factor)`.
fn splat_scaling(m: &Module, f: &Function, v: ValueId) -> Option<(ValueId, f64)> {
    let (_, data) = def(f, v)?;
    let (a, b) = (*data.operands.first()?, *data.operands.get(1)?);
    let (y, factor) = match data.op {
        Op::Mul => match (splat_value(m, f, b), splat_value(m, f, a)) {
            (Some(c), _) => (a, c),
            (None, Some(c)) => (b, c),
            _ => return None,
        },
        Op::Div => {
            let c = splat_value(m, f, b)?;
            (a, 1.0 / c)
        }
        _ => return None,
    };
    (factor.is_finite() && factor != 0.0 && same_shape(f, y, v)).then_some((y, factor))
}

/// Whether `v` reaches a `matmul` through splat scalings and adds (the score side of an add).
fn reaches_matmul(m: &Module, f: &Function, v: ValueId, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    let Some((_, data)) = def(f, v) else { return false };
    match data.op {
        Op::MatMul => true,
        Op::Add => data.operands.iter().any(|&o| reaches_matmul(m, f, o, depth - 1)),
        _ => splat_scaling(m, f, v).is_some_and(|(y, _)| reaches_matmul(m, f, y, depth - 1)),
    }
}

/// `reshape(expand(unsqueeze(k, 2), [B, Hkv, n, T, D]), [B, Hkv·n, T, D])` → `k`.
fn strip_gqa(f: &Function, v: ValueId) -> Option<ValueId> {
    let (_, r) = def(f, v)?;
    let Op::Reshape { .. } = r.op else { return None };
    let e = r.operands[0];
    let (_, ed) = def(f, e)?;
    if ed.op != Op::Expand {
        return None;
    }
    let u = ed.operands[0];
    let (_, ud) = def(f, u)?;
    let Op::Unsqueeze { axes } = &ud.op else { return None };
    let k = ud.operands[0];
    let (kt, ut, et, rt) = (f.ty(k), f.ty(u), f.ty(e), f.ty(v));
    if kt.rank() != 4 || ut.rank() != 5 || et.rank() != 5 || rt.rank() != 4 || axes.len() != 1 {
        return None;
    }
    if norm_axis(axes[0], 5)? != 2 {
        return None;
    }
    let hkv = kt.shape[1].as_fixed()?;
    let n = et.shape[2].as_fixed()?;
    let ks = &kt.shape;
    let expand_ok = [0, 1, 3, 4].iter().zip([0, 1, 2, 3]).all(|(&ei, ki)| same_dim(&et.shape[ei], &ks[ki]));
    let reshape_ok = same_dim(&rt.shape[0], &ks[0])
        && rt.shape[1].as_fixed() == Some(hkv * n)
        && same_dim(&rt.shape[2], &ks[2])
        && same_dim(&rt.shape[3], &ks[3]);
    (expand_ok && reshape_ok && n >= 1).then_some(k)
}

/// Peel the key operand of `matmul(q, Kᵀ)` back to `[B, Hkv, T, D]`: splat scalings,
/// last-two-dim transposes and a GQA expansion. Returns `(k, factor)`.
fn key_source(m: &Module, f: &Function, kt: ValueId) -> Option<(ValueId, f64)> {
    let (mut v, mut factor, mut transposed) = (kt, 1.0, true);
    for _ in 0..16 {
        if let Some((y, c)) = splat_scaling(m, f, v) {
            (v, factor) = (y, factor * c);
            continue;
        }
        if let Some((_, data)) = def(f, v) {
            if let Op::Transpose { perm } = &data.op {
                if perm.as_slice() == [0, 1, 3, 2] {
                    (v, transposed) = (data.operands[0], !transposed);
                    continue;
                }
                return None;
            }
        }
        if !transposed {
            if let Some(k) = strip_gqa(f, v) {
                v = k;
                continue;
            }
        }
        break;
    }
    (!transposed && f.ty(v).rank() == 4).then_some((v, factor))
}

/// `where(isnan(p), 0, p)` → `p`: the guard transformers' SDPA path puts after the softmax
/// so a fully masked row (all scores -∞, softmax NaN) gives zeros, which is what `attention`
/// defines for such a row. The one difference: NaN inputs give a NaN row where the guard
/// would have zeroed it.
fn strip_nan_guard(m: &Module, f: &Function, v: ValueId) -> Option<ValueId> {
    let (_, w) = def(f, v)?;
    if w.op != Op::Where {
        return None;
    }
    let (cond, zero, p) = (w.operands[0], w.operands[1], w.operands[2]);
    let (_, isnan) = def(f, cond)?;
    (isnan.op == Op::IsNan
        && isnan.operands[0] == p
        && splat_value(m, f, zero) == Some(0.0)
        && same_shape(f, p, v)
        && single_use(f, cond)
        && f.value(p).uses.len() == 2
        && !f.outputs().iter().any(|(_, o)| *o == p))
    .then_some(p)
}

fn match_attention(m: &Module, f: &Function, op: OpId) -> Option<AttnMatch> {
    let data = f.op(op)?;
    if data.op != Op::MatMul {
        return None;
    }
    let (probs, v_exp) = (data.operands[0], data.operands[1]);
    let probs = strip_nan_guard(m, f, probs).unwrap_or(probs);
    let (_, sm) = def(f, probs)?;
    let Op::Softmax { axis } = sm.op else { return None };
    if f.ty(probs).rank() != 4 || norm_axis(axis, 4)? != 3 {
        return None;
    }
    let scores = sm.operands[0];
    // Walk from the softmax input down to matmul(q, Kᵀ), collecting factors and the mask.
    let (mut s, mut factor, mut mask) = (scores, 1.0f64, None);
    let (qq, kk) = loop {
        if !same_shape(f, s, scores) {
            return None;
        }
        let (_, d) = def(f, s)?;
        match d.op {
            Op::MatMul => break (d.operands[0], d.operands[1]),
            Op::Add => {
                let (a, b) = (d.operands[0], d.operands[1]);
                let (score, msk) = match (reaches_matmul(m, f, a, 8), reaches_matmul(m, f, b, 8)) {
                    (true, false) => (a, b),
                    (false, true) => (b, a),
                    _ => return None,
                };
                if mask.is_some() || !f.ty(msk).dtype.is_float() || f.ty(msk).rank() > 4 {
                    return None;
                }
                mask = Some((msk, factor));
                s = score;
            }
            _ => {
                let (y, c) = splat_scaling(m, f, s)?;
                (s, factor) = (y, factor * c);
            }
        }
    };
    let (mut q, mut qfactor) = (qq, 1.0);
    while let Some((y, c)) = splat_scaling(m, f, q) {
        (q, qfactor) = (y, qfactor * c);
    }
    let (k, kfactor) = key_source(m, f, kk)?;
    let v = strip_gqa(f, v_exp).unwrap_or(v_exp);
    let (qt, kt, vt, ot) = (f.ty(q), f.ty(k), f.ty(v), f.ty(*data.results.first()?));
    if [qt, kt, vt, ot].iter().any(|t| t.rank() != 4) || qt.dtype != kt.dtype || kt.dtype != vt.dtype {
        return None;
    }
    let (qs, ks, vs) = (&qt.shape, &kt.shape, &vt.shape);
    let heads_ok = match (qs[1].as_fixed(), ks[1].as_fixed()) {
        (Some(h), Some(hkv)) => hkv > 0 && h % hkv == 0,
        _ => same_dim(&qs[1], &ks[1]),
    };
    let fits = same_dim(&qs[0], &ks[0])
        && same_dim(&qs[0], &vs[0])
        && same_dim(&ks[1], &vs[1])
        && same_dim(&ks[2], &vs[2])
        && same_dim(&qs[3], &ks[3])
        && heads_ok;
    // The scores and output must be exactly [B, H, S, T] / [B, H, S, Dv] (no broadcasting).
    let st = &f.ty(scores).shape;
    let shapes_ok =
        [&st[0], &st[1], &st[2], &st[3]].iter().zip([&qs[0], &qs[1], &qs[2], &ks[2]]).all(|(a, b)| same_dim(a, b))
            && [&ot.shape[0], &ot.shape[1], &ot.shape[2], &ot.shape[3]]
                .iter()
                .zip([&qs[0], &qs[1], &qs[2], &vs[3]])
                .all(|(a, b)| same_dim(a, b));
    if !fits || !shapes_ok {
        return None;
    }
    let total = factor * qfactor * kfactor;
    let default = qs[3].as_fixed().filter(|&d| d > 0).map(|d| 1.0 / (d as f64).sqrt());
    let scale = match default {
        Some(d) if (total - d).abs() <= 1e-7 * d => None,
        _ => Some(total),
    };
    Some(AttnMatch { out: op, q, k, v, mask, scale })
}

fn rewrite(f: &mut Function, mt: &AttnMatch) {
    let Some(out) = f.op(mt.out).and_then(|d| d.results.first().copied()) else { return };
    let mut operands = vec![mt.q, mt.k, mt.v];
    if let Some((mask, factor)) = mt.mask {
        let mask = if factor == 1.0 {
            mask
        } else {
            let ty = f.ty(mask).clone();
            let c = add_const(f, Tensor::scalar_f64(ty.dtype, factor));
            f.add_op1(Op::Mul, vec![mask, c], ty)
        };
        operands.push(mask);
    }
    let ty: TensorType = f.ty(out).clone();
    let attn = f.add_op1(Op::Attention { scale: mt.scale, causal: false }, operands, ty);
    f.replace_all_uses(out, attn);
    erase_dead(f, vec![mt.out]);
}

#[cfg(test)]
mod tests {
    use crate::attention_util::test_support::*;
    use ferrumc_ir::{Op, Tensor};

    /// GQA (4 query heads over 2 kv heads, n_rep = 2) in torch's SDPA export form: K and V
    /// expanded by unsqueeze/expand/reshape (V's reshape with a shape operand, K's without),
    /// q and Kᵀ each scaled by 0.5, the mask added before a final `div` by 2.
    const GQA: &str = "module @m

func @forward(%q: f32[1, 4, 4, 4], %k: f32[1, 2, 4, 4], %v: f32[1, 2, 4, 4], %mask: f32[1, 1, 4, 4]) -> (y: f32[1, 4, 4, 4]) {
  %ku = unsqueeze %k {axes = [2]} : f32[1, 2, 1, 4, 4]
  %e5 = constant {value = dense<i64[5]: [1, 2, 2, 4, 4]>} : i64[5]
  %ke = expand %ku, %e5 : f32[1, 2, 2, 4, 4]
  %kr = reshape %ke {allowzero = false} : f32[1, 4, 4, 4]
  %vu = unsqueeze %v {axes = [2]} : f32[1, 2, 1, 4, 4]
  %ve = expand %vu, %e5 : f32[1, 2, 2, 4, 4]
  %r4 = constant {value = dense<i64[4]: [1, 4, 4, 4]>} : i64[4]
  %vr = reshape %ve, %r4 {allowzero = false} : f32[1, 4, 4, 4]
  %kt = transpose %kr {perm = [0, 1, 3, 2]} : f32[1, 4, 4, 4]
  %c = constant {value = dense<f32[]: [0.5]>} : f32[]
  %qs = mul %c, %q : f32[1, 4, 4, 4]
  %kts = mul %kt, %c : f32[1, 4, 4, 4]
  %s = matmul %qs, %kts : f32[1, 4, 4, 4]
  %sm = add %mask, %s : f32[1, 4, 4, 4]
  %two = constant {value = dense<f32[]: [2.0]>} : f32[]
  %sd = div %sm, %two : f32[1, 4, 4, 4]
  %p = softmax %sd {axis = -1} : f32[1, 4, 4, 4]
  %o = matmul %p, %vr : f32[1, 4, 4, 4]
  return %o
}
";

    /// A causal additive mask with -3.4e38 above the diagonal.
    fn causal_mask() -> Tensor {
        let v = (0..16).map(|i| if i % 4 > i / 4 { -3.4028234663852886e38 } else { 0.0 }).collect();
        Tensor { dtype: ferrumc_ir::DType::F32, shape: vec![1, 1, 4, 4], data: ferrumc_ir::TensorData::Float(v) }
    }

    fn inputs() -> Vec<(&'static str, Tensor)> {
        vec![
            ("q", floats(&[1, 4, 4, 4], 1)),
            ("k", floats(&[1, 2, 4, 4], 2)),
            ("v", floats(&[1, 2, 4, 4], 3)),
            ("mask", causal_mask()),
        ]
    }

    fn attention_ops(m: &ferrumc_ir::Module) -> Vec<(Op, usize)> {
        let f = m.function("forward").expect("forward");
        f.op_ids()
            .filter_map(|o| f.op(o))
            .filter(|d| matches!(d.op, Op::Attention { .. }))
            .map(|d| (d.op.clone(), d.operands.len()))
            .collect()
    }

    #[test]
    fn gqa_sdpa_form_fuses_with_the_product_scale() {
        let opt = check_small(&parse(GQA), &["fuse-attention"], &inputs());
        assert_eq!(attention_ops(&opt), vec![(Op::Attention { scale: Some(0.125), causal: false }, 4)]);
        // The GQA expansion, transpose, softmax and both matmuls are gone; the mask is
        // scaled by the 1/2 applied after it was added.
        for gone in ["expand", "unsqueeze", "transpose", "softmax", "matmul", "div"] {
            assert_eq!(count(&opt, "forward", gone), 0, "{gone}");
        }
        assert_eq!(count(&opt, "forward", "mul"), 1);
    }

    /// The traced SDPA of optimum exports: `where(isnan(p), 0, p)` after the softmax. With a
    /// query row whose keys are all masked by -∞ (softmax NaN, zeroed by the guard), the fused
    /// `attention` gives the same zeros.
    #[test]
    fn nan_guard_after_softmax_is_seen_through() {
        let src = "module @m

func @forward(%q: f32[1, 2, 4, 4], %k: f32[1, 2, 4, 4], %v: f32[1, 2, 4, 4], %mask: f32[1, 1, 4, 4]) -> (y: f32[1, 2, 4, 4]) {
  %kt = transpose %k {perm = [0, 1, 3, 2]} : f32[1, 2, 4, 4]
  %s = matmul %q, %kt : f32[1, 2, 4, 4]
  %sm = add %s, %mask : f32[1, 2, 4, 4]
  %p = softmax %sm {axis = -1} : f32[1, 2, 4, 4]
  %nan = isnan %p : bool[1, 2, 4, 4]
  %zero = constant {value = dense<f32[]: [0.0]>} : f32[]
  %g = where %nan, %zero, %p : f32[1, 2, 4, 4]
  %o = matmul %g, %v : f32[1, 2, 4, 4]
  return %o
}
";
        // Row 0 sees no key; the others are causal.
        let mask: Vec<f64> =
            (0..16).map(|i| if i / 4 == 0 || i % 4 > i / 4 { f64::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor {
            dtype: ferrumc_ir::DType::F32,
            shape: vec![1, 1, 4, 4],
            data: ferrumc_ir::TensorData::Float(mask),
        };
        let inputs = [
            ("q", floats(&[1, 2, 4, 4], 1)),
            ("k", floats(&[1, 2, 4, 4], 2)),
            ("v", floats(&[1, 2, 4, 4], 3)),
            ("mask", mask),
        ];
        let opt = check_small(&parse(src), &["fuse-attention"], &inputs);
        assert_eq!(attention_ops(&opt), vec![(Op::Attention { scale: Some(1.0), causal: false }, 4)]);
        for gone in ["isnan", "where", "softmax", "matmul"] {
            assert_eq!(count(&opt, "forward", gone), 0, "{gone}");
        }
    }

    #[test]
    fn plain_default_scale_is_left_unset() {
        let src = "module @m

func @forward(%q: f32[?b, 2, ?s, 4], %k: f32[?b, 2, ?s, 4], %v: f32[?b, 2, ?s, 4]) -> (y: f32[?b, 2, ?s, 4]) {
  %kt = transpose %k {perm = [0, 1, 3, 2]} : f32[?b, 2, 4, ?s]
  %s = matmul %q, %kt : f32[?b, 2, ?s, ?s]
  %c = constant {value = dense<f32[]: [0.5]>} : f32[]
  %sc = mul %c, %s : f32[?b, 2, ?s, ?s]
  %p = softmax %sc {axis = 3} : f32[?b, 2, ?s, ?s]
  %o = matmul %p, %v : f32[?b, 2, ?s, 4]
  return %o
}
";
        let ins = [("q", floats(&[2, 2, 3, 4], 4)), ("k", floats(&[2, 2, 3, 4], 5)), ("v", floats(&[2, 2, 3, 4], 6))];
        let opt = check_small(&parse(src), &["fuse-attention"], &ins);
        assert_eq!(attention_ops(&opt), vec![(Op::Attention { scale: None, causal: false }, 3)]);
        assert_eq!(count(&opt, "forward", "constant"), 0);
    }

    #[test]
    fn wrong_patterns_do_not_fuse() {
        let wrong_axis = GQA.replace("softmax %sd {axis = -1}", "softmax %sd {axis = 2}");
        let not_transposed = GQA.replace(
            "%kt = transpose %kr {perm = [0, 1, 3, 2]} : f32[1, 4, 4, 4]",
            "%kt = identity %kr : f32[1, 4, 4, 4]",
        );
        let other_perm = GQA.replace("perm = [0, 1, 3, 2]", "perm = [0, 2, 1, 3]");
        let non_splat = GQA.replace(
            "%c = constant {value = dense<f32[]: [0.5]>} : f32[]",
            "%c = constant {value = dense<f32[4]: [0.5, 0.5, 0.5, 0.25]>} : f32[4]",
        );
        for src in [wrong_axis, not_transposed, other_perm, non_splat] {
            let opt = check_small(&parse(&src), &["fuse-attention"], &inputs());
            assert!(attention_ops(&opt).is_empty(), "{src}");
        }
    }

    #[test]
    fn onnx_llama_attention_fuses_and_computes_the_same() {
        let opt = check_onnx_llama(&["fuse-attention"]);
        assert_eq!(attention_ops(&opt), vec![(Op::Attention { scale: None, causal: false }, 4); 2]);
        assert_eq!(count(&opt, "forward", "softmax"), 0);
        // The four GQA expands are gone; the position/mask expands remain.
        assert_eq!(count(&opt, "forward", "expand"), 4);
    }

    #[test]
    fn onnx_llama_rotary_then_attention_computes_the_same() {
        let opt = check_onnx_llama(&["fuse-rotary", "fuse-attention"]);
        assert_eq!(attention_ops(&opt).len(), 2);
        assert_eq!(count(&opt, "forward", "rotary_embedding"), 4);
        for gone in ["softmax", "neg", "sin", "cos"] {
            assert_eq!(count(&opt, "forward", gone), if gone == "neg" || gone == "softmax" { 0 } else { 1 }, "{gone}");
        }
    }
}
