//! End-to-end: tiny random checkpoints are imported, verified and run on the reference
//! interpreter; `decode` with caches must reproduce `forward`.

mod common;

use common::{random_checkpoint, tiny_config, write_model, TempDir};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Module, Tensor};
use safetensors::Dtype;
use serde_json::{json, Value};
use std::path::Path;

fn ids(batch: usize, tokens: &[i64]) -> Tensor {
    let mut v = Vec::new();
    for b in 0..batch {
        v.extend(tokens.iter().map(|t| (t + b as i64 * 3) % 40));
    }
    Tensor::from_i64(DType::I64, vec![batch, tokens.len()], v).unwrap()
}

fn positions(batch: usize, start: i64, len: usize) -> Tensor {
    let v = (0..batch).flat_map(|_| start..start + len as i64).collect();
    Tensor::from_i64(DType::I64, vec![batch, len], v).unwrap()
}

fn run(m: &Module, dir: &Path, func: &str, inputs: Vec<(&str, Tensor)>) -> Vec<(String, Tensor)> {
    let inputs: Vec<(String, Tensor)> = inputs.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    run_function(m, func, &inputs, &FileWeights::new(dir)).unwrap_or_else(|e| panic!("{func}: {e}"))
}

/// Last `n` positions of logits `[B, S, V]` as `[B][n*V]`.
fn tail(t: &Tensor, n: usize) -> Vec<Vec<f64>> {
    let (b, s, v) = (t.shape[0], t.shape[1], t.shape[2]);
    let all = t.to_f64_vec();
    (0..b).map(|i| all[i * s * v + (s - n) * v..(i + 1) * s * v].to_vec()).collect()
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// forward(7 tokens) vs decode(prefix 5 with empty caches) + decode(2 tokens with caches).
fn check_decode_matches_forward(config: Value, dtype: Dtype) {
    let dir = TempDir::new("lower");
    write_model(dir.path(), &config, &random_checkpoint(&config, dtype, 7));
    let (m, issues) = ferrumc_hf::import_hf(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(issues.iter().all(|i| !i.severity.is_blocking()));
    ferrumc_ir::verify::verify_module(&m).unwrap();
    let (cfg, _) = ferrumc_hf::parse_config(&config).unwrap();
    let layers = cfg.num_hidden_layers;
    let (kv, hd) = (cfg.num_key_value_heads, cfg.head_dim);
    let batch = 2;
    let tokens = [3i64, 17, 5, 29, 11, 2, 38];

    let full = run(
        &m,
        dir.path(),
        "forward",
        vec![("input_ids", ids(batch, &tokens)), ("position_ids", positions(batch, 0, 7))],
    );
    assert_eq!(full[0].0, "logits");
    assert_eq!(full[0].1.shape, vec![batch, 7, cfg.vocab_size]);
    assert!(full[0].1.to_f64_vec().iter().all(|x| x.is_finite()));

    let empty = Tensor::from_f64(DType::F32, vec![batch, kv, 0, hd], vec![]).unwrap();
    let mut inputs = vec![("input_ids", ids(batch, &tokens[..5])), ("position_ids", positions(batch, 0, 5))];
    let names: Vec<(String, String)> =
        (0..layers).map(|l| (format!("past_key_{l}"), format!("past_value_{l}"))).collect();
    for (k, v) in &names {
        inputs.push((k.as_str(), empty.clone()));
        inputs.push((v.as_str(), empty.clone()));
    }
    let prefill = run(&m, dir.path(), "decode", inputs);
    assert_eq!(prefill.len(), 1 + 2 * layers);
    assert_eq!(prefill[1].0, "present_key_0");
    assert_eq!(prefill[1].1.shape, vec![batch, kv, 5, hd]);
    // Prefill logits equal forward's on the prefix (causality).
    let fwd5 = run(
        &m,
        dir.path(),
        "forward",
        vec![("input_ids", ids(batch, &tokens[..5])), ("position_ids", positions(batch, 0, 5))],
    );
    assert!(max_diff(&tail(&prefill[0].1, 5), &tail(&fwd5[0].1, 5)) < 1e-4);

    let mut inputs = vec![("input_ids", ids(batch, &tokens[5..])), ("position_ids", positions(batch, 5, 2))];
    for (l, (k, v)) in names.iter().enumerate() {
        inputs.push((k.as_str(), prefill[1 + 2 * l].1.clone()));
        inputs.push((v.as_str(), prefill[2 + 2 * l].1.clone()));
    }
    let step = run(&m, dir.path(), "decode", inputs);
    assert_eq!(step[1].1.shape, vec![batch, kv, 7, hd]);
    let d = max_diff(&tail(&step[0].1, 2), &tail(&full[0].1, 2));
    assert!(d < 1e-4, "decode vs forward differ by {d}");
    // And the logits are not trivially equal across positions.
    let t = tail(&full[0].1, 2);
    let v = cfg.vocab_size;
    assert!(t[0][..v].iter().zip(&t[0][v..]).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn llama_decode_matches_forward() {
    check_decode_matches_forward(tiny_config("llama"), Dtype::F32);
}

#[test]
fn llama3_scaled_tied_bf16_decode_matches_forward() {
    let mut c = tiny_config("llama");
    c["tie_word_embeddings"] = json!(true);
    c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16});
    check_decode_matches_forward(c, Dtype::BF16);
}

#[test]
fn mistral_qwen2_qwen3_decode_matches_forward() {
    check_decode_matches_forward(tiny_config("mistral"), Dtype::F32);
    check_decode_matches_forward(tiny_config("qwen2"), Dtype::F16);
    let mut c = tiny_config("qwen3");
    c["head_dim"] = json!(16);
    c["hidden_act"] = json!("gelu_pytorch_tanh");
    check_decode_matches_forward(c, Dtype::F32);
}

#[test]
fn module_shape() {
    let dir = TempDir::new("shape");
    let c = tiny_config("qwen3");
    write_model(dir.path(), &c, &random_checkpoint(&c, Dtype::F32, 1));
    // Importing via the config.json path works too.
    let (m, _) = ferrumc_hf::import_hf(&dir.path().join("config.json")).unwrap();
    let fwd = m.function("forward").unwrap();
    let names: Vec<&str> = fwd.params().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["input_ids", "position_ids"]);
    let dec = m.function("decode").unwrap();
    assert_eq!(dec.params().len(), 2 + 2 * 2);
    assert_eq!(dec.outputs().len(), 1 + 2 * 2);
    assert_eq!(dec.ty(dec.params()[2].1).to_string(), "f32[?batch, 2, ?past, 8]");
    assert_eq!(dec.ty(dec.outputs()[1].1).to_string(), "f32[?batch, 2, ?past+?seq, 8]");
    assert!(m.weight_decl("model.layers.1.self_attn.q_norm.weight").is_some());
    assert!(matches!(
        &m.weight_decl("model.layers.0.mlp.up_proj.weight").unwrap().source,
        ferrumc_ir::WeightSource::Safetensors { file, .. } if file == "model.safetensors"
    ));
}

#[test]
fn llama3_inv_freq_matches_transformers() {
    // Values from transformers' _compute_llama3_parameters for head_dim 16, theta 500000,
    // factor 8, low 1, high 4, original 64 (computed by hand from the formula).
    let mut c = tiny_config("llama");
    c["rope_theta"] = json!(500000.0);
    c["hidden_size"] = json!(64);
    c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
    let (cfg, _) = ferrumc_hf::parse_config(&c).unwrap();
    let inv = ferrumc_hf::lower::rope_inv_freq(&cfg);
    let base: Vec<f64> = (0..8).map(|i| 1.0 / 500000f64.powf(2.0 * i as f64 / 16.0)).collect();
    for (i, (&got, &b)) in inv.iter().zip(&base).enumerate() {
        let wavelen = 2.0 * std::f64::consts::PI / b;
        let want = if wavelen < 16.0 {
            b
        } else if wavelen > 64.0 {
            b / 8.0
        } else {
            let s = (64.0 / wavelen - 1.0) / 3.0;
            (1.0 - s) * b / 8.0 + s * b
        };
        assert!((got - want).abs() <= 1e-15 * want.abs(), "inv_freq[{i}]: {got} vs {want}");
    }
    // The high-frequency end is untouched and the low-frequency end divided by the factor.
    assert_eq!(inv[0], base[0]);
    assert!((inv[7] - base[7] / 8.0).abs() < 1e-18);
}

#[test]
fn imported_module_round_trips_through_text_and_json() {
    let dir = TempDir::new("rt");
    let mut c = tiny_config("qwen2");
    c["max_position_embeddings"] = json!(8);
    write_model(dir.path(), &c, &random_checkpoint(&c, Dtype::BF16, 2));
    let (m, _) = ferrumc_hf::import_hf(dir.path()).unwrap();
    let text = ferrumc_ir::text::print_module(&m);
    assert!(text.contains("safetensors(\"model.safetensors\", \"model.layers.0.self_attn.q_proj.bias\")"));
    let back = ferrumc_ir::text::parse_module(&text).unwrap();
    assert_eq!(back, m.canonical().unwrap());
    let doc = ferrumc_ir::json::to_document(&m).unwrap();
    let again = ferrumc_ir::json::from_document(&doc).unwrap();
    assert_eq!(ferrumc_ir::text::print_module(&again), text);
}
