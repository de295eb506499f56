//! The imported module against an independent, naive f64 implementation of the
//! llama / qwen2 / qwen3 decoder written directly from the transformers modelling code
//! (no IR involved), on tiny random f32 checkpoints.

mod common;

use common::{random_checkpoint, tiny_config, write_model, TempDir};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Tensor};
use safetensors::Dtype;
use serde_json::{json, Value};
use std::collections::HashMap;

type W = HashMap<String, Vec<f64>>;

fn rms(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// `x · wᵀ + b` with `w: [out, in]` row-major.
fn lin(x: &[f64], w: &[f64], b: Option<&Vec<f64>>) -> Vec<f64> {
    let n = x.len();
    let out = w.len() / n;
    (0..out)
        .map(|o| w[o * n..(o + 1) * n].iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + b.map_or(0.0, |b| b[o]))
        .collect()
}

fn rope(v: &mut [f64], pos: usize, inv: &[f64]) {
    let half = inv.len();
    for i in 0..half {
        let (c, s) = ((pos as f64 * inv[i]).cos(), (pos as f64 * inv[i]).sin());
        let (a, b) = (v[i], v[i + half]);
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
    }
}

/// Logits `[S][vocab]` for one sequence.
fn reference(c: &Value, w: &W, ids: &[usize]) -> Vec<Vec<f64>> {
    let g = |k: &str| c[k].as_u64().unwrap() as usize;
    let mt = c["model_type"].as_str().unwrap();
    let (hidden, nh, nkv, layers) =
        (g("hidden_size"), g("num_attention_heads"), g("num_key_value_heads"), g("num_hidden_layers"));
    let d = c["head_dim"].as_u64().map_or(hidden / nh, |v| v as usize);
    let eps = c["rms_norm_eps"].as_f64().unwrap();
    let theta = c["rope_theta"].as_f64().unwrap();
    let inv: Vec<f64> = (0..d / 2).map(|i| 1.0 / theta.powf(2.0 * i as f64 / d as f64)).collect();
    let mut x: Vec<Vec<f64>> =
        ids.iter().map(|&t| w["model.embed_tokens.weight"][t * hidden..(t + 1) * hidden].to_vec()).collect();
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        let wt = |n: &str| &w[&format!("{p}.{n}")];
        let bias = |n: &str| if mt == "qwen2" { w.get(&format!("{p}.{n}")) } else { None };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, xs) in x.iter().enumerate() {
            let h = rms(xs, wt("input_layernorm.weight"), eps);
            let mut q = lin(&h, wt("self_attn.q_proj.weight"), bias("self_attn.q_proj.bias"));
            let mut k = lin(&h, wt("self_attn.k_proj.weight"), bias("self_attn.k_proj.bias"));
            let v = lin(&h, wt("self_attn.v_proj.weight"), bias("self_attn.v_proj.bias"));
            for (t, heads, norm) in [(&mut q, nh, "self_attn.q_norm.weight"), (&mut k, nkv, "self_attn.k_norm.weight")]
            {
                for hh in 0..heads {
                    let seg = &mut t[hh * d..(hh + 1) * d];
                    if mt == "qwen3" {
                        let n = rms(seg, wt(norm), eps);
                        seg.copy_from_slice(&n);
                    }
                    rope(seg, pos, &inv);
                }
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for s in 0..x.len() {
            let mut attn = vec![0.0; nh * d];
            for hh in 0..nh {
                let kh = hh / (nh / nkv);
                let q = &qs[s][hh * d..(hh + 1) * d];
                let scores: Vec<f64> = (0..=s)
                    .map(|j| {
                        q.iter().zip(&ks[j][kh * d..(kh + 1) * d]).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..=s {
                    for i in 0..d {
                        attn[hh * d + i] += e[j] / z * vs[j][kh * d + i];
                    }
                }
            }
            let o = lin(&attn, wt("self_attn.o_proj.weight"), None);
            for (a, b) in x[s].iter_mut().zip(o) {
                *a += b;
            }
            let h = rms(&x[s], wt("post_attention_layernorm.weight"), eps);
            let gt = lin(&h, wt("mlp.gate_proj.weight"), None);
            let up = lin(&h, wt("mlp.up_proj.weight"), None);
            let act: Vec<f64> = gt.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = lin(&act, wt("mlp.down_proj.weight"), None);
            for (a, b) in x[s].iter_mut().zip(down) {
                *a += b;
            }
        }
    }
    let head = if c["tie_word_embeddings"].as_bool().unwrap_or(false) {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    x.iter().map(|xs| lin(&rms(xs, &w["model.norm.weight"], eps), &w[head], None)).collect()
}

fn check(c: Value) {
    let dir = TempDir::new("ref");
    let tensors = random_checkpoint(&c, Dtype::F32, 11);
    write_model(dir.path(), &c, &tensors);
    let w: W = tensors
        .iter()
        .map(|(n, _, _, b)| {
            (n.clone(), b.chunks_exact(4).map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]) as f64).collect())
        })
        .collect();
    let ids = [1usize, 7, 33, 4, 19, 25];
    let (m, _) = ferrumc_hf::import_hf(dir.path()).unwrap();
    let inputs = vec![
        (
            "input_ids".to_string(),
            Tensor::from_i64(DType::I64, vec![1, 6], ids.iter().map(|&i| i as i64).collect()).unwrap(),
        ),
        ("position_ids".to_string(), Tensor::from_i64(DType::I64, vec![1, 6], (0..6).collect()).unwrap()),
    ];
    let out = run_function(&m, "forward", &inputs, &FileWeights::new(dir.path())).unwrap();
    let got = out[0].1.to_f64_vec();
    let want: Vec<f64> = reference(&c, &w, &ids).into_iter().flatten().collect();
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(scale > 0.1, "degenerate logits");
    assert!(diff < 1e-4 * scale.max(1.0), "{}: max diff {diff} (scale {scale})", c["model_type"]);
}

#[test]
fn llama_matches_naive_reference() {
    check(tiny_config("llama"));
}

#[test]
fn qwen2_matches_naive_reference() {
    check(tiny_config("qwen2"));
}

#[test]
fn qwen3_tied_matches_naive_reference() {
    let mut c = tiny_config("qwen3");
    c["head_dim"] = json!(16);
    c["tie_word_embeddings"] = json!(true);
    check(c);
}
