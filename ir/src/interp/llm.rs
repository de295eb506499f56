//! Normalisation and fused LLM ops: `layer_norm`, `rms_norm`, `rms_norm_residual`,
//! `rotary_embedding`, `attention` and `silu_mul`.
//!
//! Fused ops compute every intermediate in f64 and round only their results.
//! `rms_norm_residual` normalises the *rounded* sum `x + residual`, so it equals the
//! unfused `add` followed by `rms_norm` bit for bit. `rotary_embedding` also accepts
//! `position_ids` of shape `[1, seq]` (shared by every batch row). `attention` returns
//! `present_k`/`present_v` whenever three results are declared (without a cache they are
//! the new keys and values).

use super::common::{
    broadcast_strides, class, filled, float_tensor, floats, ints, norm_axis, numel, Class, OffsetIter, OpResult,
};
use super::elementwise::silu;
use super::linalg::dot;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Expand `t` (broadcast unidirectionally) to `shape`, as f64 values.
fn expand_to(t: &Tensor, shape: &[usize], what: &str) -> OpResult<Vec<f64>> {
    let v = floats(t, what)?;
    let st = broadcast_strides(&t.shape, shape).map_err(|e| format!("{what}: {e}"))?;
    let n = numel(shape)?;
    let mut out = super::common::vec_with_capacity(n)?;
    for o in OffsetIter::new(shape, &st, 0) {
        out.push(*v.get(o).ok_or("internal error: broadcast offset")?);
    }
    Ok(out)
}

/// `layer_norm x, scale[, bias] {axis, epsilon}`.
pub(crate) fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: i64,
    epsilon: f64,
) -> OpResult<Tensor> {
    let xv = floats(x, "the input of `layer_norm`")?;
    let axis = norm_axis(axis, x.rank())?;
    let norm_shape = &x.shape[axis..];
    let inner: usize = norm_shape.iter().product();
    let s = expand_to(scale, norm_shape, "the scale of `layer_norm`")?;
    let b = match bias {
        Some(b) => Some(expand_to(b, norm_shape, "the bias of `layer_norm`")?),
        None => None,
    };
    let mut out = filled(xv.len(), 0.0f64)?;
    if inner > 0 {
        for (row, o) in xv.chunks_exact(inner).zip(out.chunks_exact_mut(inner)) {
            let mean = row.iter().sum::<f64>() / inner as f64;
            let var = row.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (var + epsilon).sqrt();
            for (i, (y, a)) in o.iter_mut().zip(row).enumerate() {
                *y = (a - mean) * inv * s[i] + b.as_ref().map_or(0.0, |b| b[i]);
            }
        }
    }
    Ok(float_tensor(x.dtype, x.shape.clone(), out))
}

fn rms_rows(xv: &[f64], w: &[f64], hidden: usize, epsilon: f64) -> OpResult<Vec<f64>> {
    let mut out = filled(xv.len(), 0.0f64)?;
    if hidden > 0 {
        for (row, o) in xv.chunks_exact(hidden).zip(out.chunks_exact_mut(hidden)) {
            let ms = row.iter().map(|a| a * a).sum::<f64>() / hidden as f64;
            let inv = 1.0 / (ms + epsilon).sqrt();
            for ((y, a), g) in o.iter_mut().zip(row).zip(w) {
                *y = a * inv * g;
            }
        }
    }
    Ok(out)
}

fn check_rms(x: &Tensor, weight: &Tensor, name: &str) -> OpResult<usize> {
    if x.rank() == 0 {
        return Err(format!("`{name}` needs an input of rank ≥ 1"));
    }
    let hidden = x.shape[x.rank() - 1];
    if weight.shape != [hidden] {
        return Err(format!("`{name}`: weight must have shape [{hidden}], found {:?}", weight.shape));
    }
    Ok(hidden)
}

/// `rms_norm x, weight {epsilon}`.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> OpResult<Tensor> {
    let xv = floats(x, "the input of `rms_norm`")?;
    let hidden = check_rms(x, weight, "rms_norm")?;
    let w = floats(weight, "the weight of `rms_norm`")?;
    Ok(float_tensor(x.dtype, x.shape.clone(), rms_rows(xv, w, hidden, epsilon)?))
}

/// `rms_norm_residual x, residual, weight {epsilon}` → (normalised, x + residual).
pub(crate) fn rms_norm_residual(x: &Tensor, residual: &Tensor, weight: &Tensor, epsilon: f64) -> OpResult<Vec<Tensor>> {
    let xv = floats(x, "the input of `rms_norm_residual`")?;
    let rv = floats(residual, "the residual of `rms_norm_residual`")?;
    if x.shape != residual.shape || x.dtype != residual.dtype {
        return Err(format!(
            "x and residual must have one type, found {}{:?} and {}{:?}",
            x.dtype, x.shape, residual.dtype, residual.shape
        ));
    }
    let hidden = check_rms(x, weight, "rms_norm_residual")?;
    let w = floats(weight, "the weight of `rms_norm_residual`")?;
    let sum = float_tensor(x.dtype, x.shape.clone(), xv.iter().zip(rv).map(|(a, b)| a + b).collect());
    let sv = floats(&sum, "sum")?;
    let normed = float_tensor(x.dtype, x.shape.clone(), rms_rows(sv, w, hidden, epsilon)?);
    Ok(vec![normed, sum])
}

/// `rotary_embedding x, cos, sin, position_ids {interleaved, rotary_dim}`.
pub(crate) fn rotary(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    pos: &Tensor,
    interleaved: bool,
    rotary_dim: i64,
) -> OpResult<Tensor> {
    let xv = floats(x, "the input of `rotary_embedding`")?;
    let cv = floats(cos, "the cos table")?;
    let sv = floats(sin, "the sin table")?;
    let pv = ints(pos, "position_ids")?;
    let [b, h, s, d] = x.shape[..] else {
        return Err(format!("x must be [batch, heads, seq, head_dim], found shape {:?}", x.shape));
    };
    let rd = if rotary_dim == 0 {
        d
    } else {
        usize::try_from(rotary_dim).map_err(|_| format!("rotary_dim {rotary_dim} is negative"))?
    };
    if rd > d || rd % 2 != 0 {
        return Err(format!("rotary_dim {rd} must be even and at most head_dim {d}"));
    }
    let half = rd / 2;
    if cos.rank() != 2 || cos.shape != sin.shape || cos.shape[1] != half {
        return Err(format!("cos and sin must both be [max_pos, {half}], found {:?} and {:?}", cos.shape, sin.shape));
    }
    let max_pos = cos.shape[0];
    if pos.rank() != 2 || pos.shape[1] != s || (pos.shape[0] != b && pos.shape[0] != 1) {
        return Err(format!("position_ids must be [{b}, {s}] (or [1, {s}]), found {:?}", pos.shape));
    }
    let mut out = xv.to_vec();
    for bi in 0..b {
        for si in 0..s {
            let p_at = if pos.shape[0] == 1 { si } else { bi * s + si };
            let p = pv[p_at];
            let p = usize::try_from(p)
                .ok()
                .filter(|&p| p < max_pos)
                .ok_or_else(|| format!("position id {p} at [{bi}, {si}] is outside the tables' {max_pos} positions"))?;
            let (c, sn) = (&cv[p * half..(p + 1) * half], &sv[p * half..(p + 1) * half]);
            for hi in 0..h {
                let base = ((bi * h + hi) * s + si) * d;
                let row = &xv[base..base + d];
                let o = &mut out[base..base + d];
                for i in 0..half {
                    let (ia, ib) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let (a, bb) = (row[ia], row[ib]);
                    o[ia] = a * c[i] - bb * sn[i];
                    o[ib] = bb * c[i] + a * sn[i];
                }
            }
        }
    }
    Ok(float_tensor(x.dtype, x.shape.clone(), out))
}

/// Concatenate `past` and `new` along the sequence dim of `[B, H, S, D]` tensors.
fn concat_seq(past: Option<&[f64]>, p: usize, new: &[f64], sn: usize, bh: usize, d: usize) -> OpResult<Vec<f64>> {
    let t = p + sn;
    let mut out = super::common::vec_with_capacity(bh * t * d)?;
    for g in 0..bh {
        if let Some(past) = past {
            out.extend_from_slice(&past[g * p * d..(g + 1) * p * d]);
        }
        out.extend_from_slice(&new[g * sn * d..(g + 1) * sn * d]);
    }
    Ok(out)
}

fn dims4(t: &Tensor, what: &str) -> OpResult<[usize; 4]> {
    match t.shape[..] {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(format!("{what} must be 4-D [batch, heads, seq, head_dim], found shape {:?}", t.shape)),
    }
}

/// `attention q, k, v[, mask][, past_k, past_v] {scale?, causal}`.
pub(crate) fn attention(args: &[&Tensor], scale: Option<f64>, causal: bool, n_results: usize) -> OpResult<Vec<Tensor>> {
    let (q, k, v) = match args {
        [q, k, v, ..] => (*q, *k, *v),
        _ => return Err("`attention` needs q, k and v".into()),
    };
    let (mask, past) = match args.len() {
        3 => (None, None),
        4 => (Some(args[3]), None),
        5 => (None, Some((args[3], args[4]))),
        6 => (Some(args[3]), Some((args[4], args[5]))),
        n => return Err(format!("`attention` takes 3 to 6 operands, found {n}")),
    };
    if n_results != 1 && n_results != 3 {
        return Err(format!("`attention` has 1 result (or 3 with present_k, present_v), found {n_results}"));
    }
    let qv = floats(q, "q")?;
    let kv = floats(k, "k")?;
    let vv = floats(v, "v")?;
    let [bq, hq, s, d] = dims4(q, "q")?;
    let [bk, hkv, sn, dk] = dims4(k, "k")?;
    let [bv, hv, snv, dv] = dims4(v, "v")?;
    if bk != bq || bv != bq || hv != hkv || snv != sn || dk != d {
        return Err(format!(
            "q {:?}, k {:?} and v {:?} do not fit [B, H, S, D], [B, Hkv, S_new, D], [B, Hkv, S_new, Dv]",
            q.shape, k.shape, v.shape
        ));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(format!("query heads {hq} are not a multiple of kv heads {hkv}"));
    }
    if k.dtype != v.dtype {
        return Err(format!("k and v must share a dtype, found {} and {}", k.dtype, v.dtype));
    }
    let group = hq / hkv;
    let (pk, pv, p) = match past {
        Some((pk, pv)) => {
            let [b1, h1, p1, d1] = dims4(pk, "past_k")?;
            let [b2, h2, p2, d2] = dims4(pv, "past_v")?;
            if (b1, h1, d1) != (bq, hkv, d) || (b2, h2, d2) != (bq, hkv, dv) || p1 != p2 {
                return Err(format!(
                    "past_k {:?} / past_v {:?} must be [{bq}, {hkv}, P, {d}] / [{bq}, {hkv}, P, {dv}]",
                    pk.shape, pv.shape
                ));
            }
            if pk.dtype != k.dtype || pv.dtype != v.dtype {
                return Err(format!(
                    "past_k/past_v dtypes {}/{} differ from k/v {}/{}",
                    pk.dtype, pv.dtype, k.dtype, v.dtype
                ));
            }
            (Some(floats(pk, "past_k")?), Some(floats(pv, "past_v")?), p1)
        }
        None => (None, None, 0),
    };
    let t = p.checked_add(sn).ok_or("sequence length overflows")?;
    numel(&[bq, hkv, t, d.max(dv)])?;
    let keys = concat_seq(pk, p, kv, sn, bq * hkv, d)?;
    let vals = concat_seq(pv, p, vv, sn, bq * hkv, dv)?;
    let full = [bq, hq, s, t];
    numel(&full)?;
    // Mask: additive floats, or bools where false masks out.
    let mask_info = match mask {
        Some(m) => {
            let st = broadcast_strides(&m.shape, &full).map_err(|e| format!("mask: {e}"))?;
            let kind = class(m.dtype);
            let data: Vec<f64> = match kind {
                Class::Float => floats(m, "mask")?.to_vec(),
                Class::Bool => super::common::bools(m, "mask")?
                    .iter()
                    .map(|&b| if b != 0 { 0.0 } else { f64::NEG_INFINITY })
                    .collect(),
                Class::Int => return Err(format!("mask must be float or bool, found {}", m.dtype)),
            };
            Some((data, st))
        }
        None => None,
    };
    let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
    let offset = t as i128 - s as i128;
    let rows = bq * hq * s;
    let mut out = filled(numel(&[rows, dv])?, 0.0f64)?;
    if dv > 0 && rows > 0 {
        out.par_chunks_mut(dv).enumerate().for_each(|(row, o)| {
            let (bh, i) = (row / s, row % s);
            let (b, h) = (bh / hq, bh % hq);
            let g = b * hkv + h / group;
            let q_row = &qv[row * d..(row + 1) * d];
            let mut scores = vec![f64::NEG_INFINITY; t];
            let mut m = f64::NEG_INFINITY;
            for (j, sc) in scores.iter_mut().enumerate() {
                if causal && j as i128 > i as i128 + offset {
                    continue;
                }
                let k_row = &keys[(g * t + j) * d..(g * t + j + 1) * d];
                let mut val = dot(q_row, k_row) * scale;
                if let Some((md, st)) = &mask_info {
                    let off = b as isize * st[0] + h as isize * st[1] + i as isize * st[2] + j as isize * st[3];
                    val += md.get(off as usize).copied().unwrap_or(0.0);
                }
                *sc = val;
                if val.is_nan() || val > m {
                    m = val;
                }
            }
            if m == f64::NEG_INFINITY {
                return; // fully masked row: zeros
            }
            let mut sum = 0.0;
            for sc in scores.iter_mut() {
                *sc = (*sc - m).exp();
                sum += *sc;
            }
            for (j, &pj) in scores.iter().enumerate() {
                let v_row = &vals[(g * t + j) * dv..(g * t + j + 1) * dv];
                let w = pj / sum;
                for (y, x) in o.iter_mut().zip(v_row) {
                    *y += w * x;
                }
            }
        });
    }
    let mut results = vec![float_tensor(q.dtype, vec![bq, hq, s, dv], out)];
    if n_results == 3 {
        results.push(float_tensor(k.dtype, vec![bq, hkv, t, d], keys));
        results.push(float_tensor(v.dtype, vec![bq, hkv, t, dv], vals));
    }
    Ok(results)
}

/// `silu_mul gate, up` → `silu(gate) · up`.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> OpResult<Tensor> {
    let g = floats(gate, "gate")?;
    let u = floats(up, "up")?;
    if gate.shape != up.shape || gate.dtype != up.dtype {
        return Err(format!(
            "gate and up must have one type, found {}{:?} and {}{:?}",
            gate.dtype, gate.shape, up.dtype, up.shape
        ));
    }
    Ok(float_tensor(gate.dtype, gate.shape.clone(), g.iter().zip(u).map(|(&a, &b)| silu(a) * b).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::interp::test_util::*;

    #[test]
    fn norms() {
        let x = f64t(&[2, 2], &[1.0, 3.0, -1.0, 1.0]);
        let r = layer_norm(&x, &f64t(&[2], &[1.0, 2.0]), Some(&f64t(&[1], &[0.5])), -1, 0.0).unwrap();
        assert_close(&r.to_f64_vec(), &[-0.5, 2.5, -0.5, 2.5], 1e-15);
        let r = layer_norm(&x, &f64t(&[], &[1.0]), None, 0, 0.0).unwrap();
        let mean = 1.0;
        let sd = ((0.0 + 4.0 + 4.0 + 0.0) / 4.0f64).sqrt();
        assert_close(&r.to_f64_vec(), &[(1.0 - mean) / sd, (3.0 - mean) / sd, (-1.0 - mean) / sd, 0.0], 1e-15);
        let r = rms_norm(&f64t(&[1, 2], &[3.0, 4.0]), &f64t(&[2], &[1.0, 2.0]), 0.0).unwrap();
        let rms = (12.5f64).sqrt();
        assert_close(&r.to_f64_vec(), &[3.0 / rms, 8.0 / rms], 1e-15);
        assert!(rms_norm(&f64t(&[1, 2], &[3.0, 4.0]), &f64t(&[3], &[1.0; 3]), 0.0).is_err());
        let rr =
            rms_norm_residual(&f32t(&[1, 2], &[1.0, 2.0]), &f32t(&[1, 2], &[2.0, 2.0]), &f32t(&[2], &[1.0, 1.0]), 1e-6)
                .unwrap();
        assert_eq!(rr[1].to_f64_vec(), vec![3.0, 4.0]);
        let direct = rms_norm(&f32t(&[1, 2], &[3.0, 4.0]), &f32t(&[2], &[1.0, 1.0]), 1e-6).unwrap();
        assert!(rr[0].bit_eq(&direct));
    }

    #[test]
    fn rotary_half_split_interleaved_partial() {
        // One position with angle 90°: cos 0, sin 1 → (a, b) → (-b, a).
        let x = f64t(&[1, 1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let cos = f64t(&[2, 2], &[1.0, 1.0, 0.0, 0.0]);
        let sin = f64t(&[2, 2], &[0.0, 0.0, 1.0, 1.0]);
        let pos = i64t(&[1, 1], &[1]);
        assert_eq!(rotary(&x, &cos, &sin, &pos, false, 0).unwrap().to_f64_vec(), vec![-3.0, -4.0, 1.0, 2.0]);
        assert_eq!(rotary(&x, &cos, &sin, &pos, true, 0).unwrap().to_f64_vec(), vec![-2.0, 1.0, -4.0, 3.0]);
        let c1 = f64t(&[2, 1], &[1.0, 0.0]);
        let s1 = f64t(&[2, 1], &[0.0, 1.0]);
        assert_eq!(rotary(&x, &c1, &s1, &pos, false, 2).unwrap().to_f64_vec(), vec![-2.0, 1.0, 3.0, 4.0]);
        assert_eq!(
            rotary(&x, &cos, &sin, &i64t(&[1, 1], &[0]), false, 0).unwrap().to_f64_vec(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert!(rotary(&x, &cos, &sin, &i64t(&[1, 1], &[2]), false, 0).unwrap_err().contains("position id 2"));
        assert!(rotary(&x, &cos, &sin, &pos, false, 3).is_err());
    }

    #[test]
    fn attention_causal_gqa_mask_and_cache() {
        // q: [1, 2, 2, 1] (two heads sharing one kv head), k/v: [1, 1, 2, 1].
        let q = f64t(&[1, 2, 2, 1], &[0.0, 0.0, 0.0, 0.0]);
        let k = f64t(&[1, 1, 2, 1], &[0.0, 0.0]);
        let v = f64t(&[1, 1, 2, 1], &[1.0, 3.0]);
        let r = attention(&[&q, &k, &v], None, true, 1).unwrap();
        // Row 0 sees only key 0; row 1 averages both.
        assert_eq!(r[0].to_f64_vec(), vec![1.0, 2.0, 1.0, 2.0]);
        // Bool mask hiding key 0 everywhere; a fully masked row yields zeros.
        let mask = boolt(&[1, 1, 2, 2], &[false, true, false, false]);
        let r = attention(&[&q, &k, &v, &mask], None, false, 1).unwrap();
        assert_eq!(r[0].to_f64_vec(), vec![3.0, 0.0, 3.0, 0.0]);
        // Float additive mask.
        let fm = f64t(&[2], &[0.0, f64::NEG_INFINITY]);
        let r = attention(&[&q, &k, &v, &fm], None, false, 1).unwrap();
        assert_eq!(r[0].to_f64_vec(), vec![1.0; 4]);
        // Decode step with a cache: one new query sees the whole prefix (bottom-right causal).
        let q1 = f64t(&[1, 1, 1, 1], &[1.0]);
        let pk = f64t(&[1, 1, 2, 1], &[0.0, 0.0]);
        let pv = f64t(&[1, 1, 2, 1], &[2.0, 4.0]);
        let k1 = f64t(&[1, 1, 1, 1], &[0.0]);
        let v1 = f64t(&[1, 1, 1, 1], &[6.0]);
        let r = attention(&[&q1, &k1, &v1, &pk, &pv], Some(1.0), true, 3).unwrap();
        assert_close(&r[0].to_f64_vec(), &[4.0], 1e-15);
        assert_eq!((r[1].shape.clone(), r[2].to_f64_vec()), (vec![1, 1, 3, 1], vec![2.0, 4.0, 6.0]));
        // Scores use the scale: q·k = 1·ln 3 with keys [0, ln 3] → weights 1/4, 3/4.
        let qs = f64t(&[1, 1, 1, 1], &[1.0]);
        let ks = f64t(&[1, 1, 2, 1], &[0.0, 3f64.ln()]);
        let vs = f64t(&[1, 1, 2, 1], &[0.0, 4.0]);
        let r = attention(&[&qs, &ks, &vs], None, false, 1).unwrap();
        assert_close(&r[0].to_f64_vec(), &[3.0], 1e-15);
        assert!(attention(&[&q, &k, &v], None, false, 2).is_err());
        let k3 = f64t(&[1, 3, 2, 1], &[0.0; 6]);
        assert!(attention(&[&q, &k3, &k3], None, false, 1).is_err());
    }

    #[test]
    fn silu_mul_values() {
        let r = silu_mul(&f32t(&[2], &[0.0, 1.0]), &f32t(&[2], &[5.0, 2.0])).unwrap();
        assert_eq!(r.to_f64_vec(), vec![0.0, (2.0 * 0.7310585786300049f64) as f32 as f64]);
        assert_eq!(r.dtype, DType::F32);
        assert!(silu_mul(&f32t(&[2], &[0.0, 1.0]), &f32t(&[1], &[5.0])).is_err());
    }
}
