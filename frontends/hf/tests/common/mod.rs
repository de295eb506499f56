//! Test helpers: temporary model folders, tiny configs and random safetensors checkpoints.
#![allow(dead_code)]

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "ferrumc-hf-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny llama-style config: hidden 32, 4 heads, 2 kv heads (head_dim 8), 2 layers.
pub fn tiny_config(model_type: &str) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "vocab_size": 40,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 64,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "torch_dtype": "float32"
    })
}

/// Deterministic pseudo-random numbers in [-scale, scale).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f32(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = ((self.0 >> 40) as f32) / ((1u64 << 24) as f32);
        (u * 2.0 - 1.0) * scale
    }
}

/// Bytes of a tensor filled with random values in the given dtype.
pub fn random_bytes(rng: &mut Rng, dtype: Dtype, shape: &[usize], scale: f32, ones: bool) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = Vec::new();
    for _ in 0..n {
        let v = if ones { 1.0 + rng.next_f32(0.1) } else { rng.next_f32(scale) };
        match dtype {
            Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::BF16 => out.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes()),
            Dtype::F16 => out.extend_from_slice(&half_bits(v).to_le_bytes()),
            Dtype::I64 => out.extend_from_slice(&(v as i64).to_le_bytes()),
            _ => panic!("unsupported test dtype"),
        }
    }
    out
}

fn half_bits(v: f32) -> u16 {
    // Good enough for small test values: round-to-zero f32 → f16.
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// Write a safetensors file with the given (name, dtype, shape, bytes).
pub fn write_safetensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Random tensors for every tensor the config implies (norm weights near 1).
pub fn random_checkpoint(config: &Value, dtype: Dtype, seed: u64) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let (cfg, _) = ferrumc_hf::parse_config(config).unwrap();
    let mut rng = Rng(seed);
    ferrumc_hf::weights::expected_tensors(&cfg)
        .into_iter()
        .map(|(name, shape)| {
            let ones = name.contains("norm");
            let scale = if name.contains("embed") { 1.0 } else { 0.3 };
            let bytes = random_bytes(&mut rng, dtype, &shape, scale, ones);
            (name, dtype, shape, bytes)
        })
        .collect()
}

/// A model folder with config.json and a single model.safetensors.
pub fn write_model(dir: &Path, config: &Value, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(config).unwrap()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), tensors);
}
