//! The `sample` op: deterministic token sampling, exactly the algorithm of its op doc.
//!
//! Per row `r` of `logits: [..., vocab]` (rows in row-major order):
//! 1. every distinct non-negative token id in the row's `history` has its logit divided
//!    by `repetition_penalty` when the logit is positive and multiplied by it otherwise
//!    (once per id, however often it repeats); ids ≥ vocab are an error;
//! 2. `temperature == 0` → the argmax (lowest id among equal maxima);
//! 3. otherwise the logits are divided by `temperature`; candidates are ordered by
//!    descending logit, ties by lower id; the first `top_k` are kept (0 = all);
//! 4. probabilities are the softmax over the kept candidates; the smallest prefix (at
//!    least one token) whose probability sum reaches `top_p` is kept;
//! 5. with `u = (splitmix64(seed + r·0x9E3779B97F4A7C15) >> 11) · 2⁻⁵³` and `total` the
//!    kept probability mass, the token is the first candidate whose running sum exceeds
//!    `u · total` (the last kept one if rounding leaves none).
//!
//! `splitmix64(x)` is Vigna's SplitMix64 output function applied to state `x`, including
//! its increment: `z = x + 0x9E3779B97F4A7C15; z = (z ^ z>>30)·0xBF58476D1CE4E5B9;
//! z = (z ^ z>>27)·0x94D049BB133111EB; z ^ z>>31` (all wrapping u64). So row `r`
//! draws the `(r+1)`-th output of a SplitMix64 generator seeded with `seed`.
//! All arithmetic is f64.

use super::common::{floats, int_tensor, ints, OpResult};
use crate::dtype::DType;
use crate::tensor::Tensor;

/// The attributes of `sample`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SampleParams {
    pub(crate) temperature: f64,
    pub(crate) top_k: i64,
    pub(crate) top_p: f64,
    pub(crate) repetition_penalty: f64,
    pub(crate) seed: i64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: the output for state `x` (increment included, see the module docs).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform draw in `[0, 1)` for row `r`.
pub fn uniform_for_row(seed: i64, row: u64) -> f64 {
    let state = (seed as u64).wrapping_add(row.wrapping_mul(GOLDEN_GAMMA));
    (splitmix64(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn sample_row(logits: &mut [f64], history: &[i64], p: &SampleParams, row: u64) -> OpResult<i64> {
    let vocab = logits.len();
    if p.repetition_penalty != 1.0 {
        let mut seen = std::collections::HashSet::new();
        for &id in history {
            if id < 0 || !seen.insert(id) {
                continue;
            }
            let l = usize::try_from(id)
                .ok()
                .and_then(|i| logits.get_mut(i))
                .ok_or_else(|| format!("history token id {id} in row {row} is outside the vocabulary of {vocab}"))?;
            *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
        }
    }
    if p.temperature == 0.0 {
        let mut best = 0usize;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] || (logits[best].is_nan() && !l.is_nan()) {
                best = i;
            }
        }
        return Ok(best as i64);
    }
    let mut order: Vec<usize> = (0..vocab).collect();
    order.sort_by(|&a, &b| super::common::cmp_nan_max(logits[b], logits[a]).then(a.cmp(&b)));
    let k = if p.top_k <= 0 { vocab } else { usize::try_from(p.top_k).unwrap_or(vocab).min(vocab) };
    order.truncate(k);
    let scaled: Vec<f64> = order.iter().map(|&i| logits[i] / p.temperature).collect();
    let m = scaled.first().copied().unwrap_or(0.0);
    let exps: Vec<f64> = scaled.iter().map(|&l| (l - m).exp()).collect();
    let z: f64 = exps.iter().sum();
    let probs: Vec<f64> = exps.iter().map(|&e| e / z).collect();
    let mut keep = probs.len();
    let mut acc = 0.0;
    for (i, &pr) in probs.iter().enumerate() {
        acc += pr;
        if acc >= p.top_p {
            keep = i + 1;
            break;
        }
    }
    let keep = keep.max(1);
    let total: f64 = probs[..keep].iter().sum();
    let target = uniform_for_row(p.seed, row) * total;
    let mut run = 0.0;
    for (i, &pr) in probs[..keep].iter().enumerate() {
        run += pr;
        if run > target {
            return Ok(order[i] as i64);
        }
    }
    Ok(order[keep - 1] as i64)
}

/// `sample logits[, history] {…}` → i64 token ids of shape `logits.shape[:-1]`.
pub(crate) fn sample(logits: &Tensor, history: Option<&Tensor>, p: &SampleParams) -> OpResult<Tensor> {
    let lv = floats(logits, "logits")?;
    if logits.rank() == 0 {
        return Err("logits must have rank ≥ 1 ([..., vocab])".into());
    }
    if p.temperature < 0.0 || p.temperature.is_nan() {
        return Err(format!("temperature {} must be ≥ 0", p.temperature));
    }
    if p.repetition_penalty.is_nan() || p.repetition_penalty <= 0.0 || p.repetition_penalty.is_infinite() {
        return Err(format!("repetition_penalty {} must be a positive number", p.repetition_penalty));
    }
    let vocab = logits.shape[logits.rank() - 1];
    let lead = &logits.shape[..logits.rank() - 1];
    if vocab == 0 {
        return Err("cannot sample from an empty vocabulary".into());
    }
    let rows = lv.len() / vocab;
    let (hv, hlen) = match history {
        Some(h) => {
            let hv = ints(h, "history")?;
            if h.rank() != logits.rank() || &h.shape[..h.rank() - 1] != lead {
                return Err(format!(
                    "history must be [{}, H] to match logits {:?}, found {:?}",
                    lead.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                    logits.shape,
                    h.shape
                ));
            }
            (hv, h.shape[h.rank() - 1])
        }
        None => (&[][..], 0),
    };
    let mut out = Vec::with_capacity(rows);
    let mut row_buf = vec![0.0; vocab];
    for r in 0..rows {
        row_buf.copy_from_slice(&lv[r * vocab..(r + 1) * vocab]);
        let hist = if hlen > 0 { &hv[r * hlen..(r + 1) * hlen] } else { &[][..] };
        out.push(sample_row(&mut row_buf, hist, p, r as u64)?);
    }
    Ok(int_tensor(DType::I64, lead.to_vec(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::*;

    fn params(temperature: f64, top_k: i64, top_p: f64, repetition_penalty: f64, seed: i64) -> SampleParams {
        SampleParams { temperature, top_k, top_p, repetition_penalty, seed }
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference generator).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(GOLDEN_GAMMA), 0x6E78_9E6A_A1B9_65F4);
        let u = uniform_for_row(0, 0);
        assert_eq!(u, (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / 9007199254740992.0);
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn greedy_penalty_and_top_k() {
        let logits = f64t(&[2, 4], &[1.0, 3.0, 3.0, 2.0, -1.0, -2.0, 0.5, 0.4]);
        let g = sample(&logits, None, &params(0.0, 0, 1.0, 1.0, 7)).unwrap();
        assert_eq!((g.shape.clone(), g.to_i64_vec()), (vec![2], vec![1, 2]));
        // Penalty 4 on tokens 1 and 2 (row 0) and 2 (row 1; -1 ignored, repeats count once).
        let hist = i64t(&[2, 3], &[1, 2, 2, 2, -1, 2]);
        let g = sample(&logits, Some(&hist), &params(0.0, 0, 1.0, 4.0, 7)).unwrap();
        assert_eq!(g.to_i64_vec(), vec![3, 3]);
        // top_k = 1 is greedy at any temperature and seed.
        for seed in 0..20 {
            let s = sample(&logits, None, &params(0.7, 1, 1.0, 1.0, seed)).unwrap();
            assert_eq!(s.to_i64_vec(), vec![1, 2]);
        }
        assert!(sample(&logits, Some(&i64t(&[2, 1], &[4, 0])), &params(0.0, 0, 1.0, 2.0, 0))
            .unwrap_err()
            .contains("token id 4"));
    }

    #[test]
    fn top_p_and_draw_follow_the_doc() {
        // Probabilities 0.5, 0.25, 0.25 (logits ln 2, 0, 0).
        let logits = f64t(&[1, 3], &[0.0, 2f64.ln(), 0.0]);
        for seed in 0..50i64 {
            let u = uniform_for_row(seed, 0);
            let full = sample(&logits, None, &params(1.0, 0, 1.0, 1.0, seed)).unwrap().to_i64_vec()[0];
            let want = if u * 1.0 < 0.5 {
                1
            } else if u < 0.75 {
                0
            } else {
                2
            };
            assert_eq!(full, want, "seed {seed}, u {u}");
            // top_p = 0.4 keeps only the most likely token.
            assert_eq!(sample(&logits, None, &params(1.0, 0, 0.4, 1.0, seed)).unwrap().to_i64_vec(), vec![1]);
        }
        // Rows draw different uniforms.
        let rows = f64t(&[64, 2], &[0.0; 128]);
        let s = sample(&rows, None, &params(1.0, 0, 1.0, 1.0, 3)).unwrap().to_i64_vec();
        assert!(s.contains(&0) && s.contains(&1));
        assert!(sample(&rows, None, &params(-1.0, 0, 1.0, 1.0, 3)).is_err());
    }
}
