//! The config-driven decoder lowering (llama / mistral / qwen2 / qwen3 / gemma / phi3).
//!
//! # Entry points
//!
//! * `forward(input_ids: i64[?batch, ?seq], position_ids: i64[?batch, ?seq])
//!   -> (logits: f32[?batch, ?seq, vocab])` — causal attention over the given tokens.
//!   Positions are a second input rather than computed in-graph: the caller knows them
//!   (left padding, packed batches), and it keeps `forward` a special case of `decode`.
//! * `decode(input_ids, position_ids, past_key_0, past_value_0, …)
//!   -> (logits, present_key_0, present_value_0, …)` with caches
//!   `f32[?batch, kv_heads, ?past, head_dim]`; presents are `[…, ?past+?seq, …]`. The
//!   attention op's KV-cache form concatenates past and new keys, and its bottom-right
//!   causal alignment lets the new tokens see the whole prefix. `?past = 0` (empty caches)
//!   makes `decode` a prefill that also returns the caches.
//!
//! Activations are f32. f16/bf16 weights stay in their files with their own dtype and
//! are `cast` to f32 where used (after the `gather` for the embedding).
//!
//! # RoPE
//!
//! `inv_freq[i] = rope_theta^(-2i/head_dim)`, adjusted for `rope_scaling.rope_type ==
//! "llama3"` exactly as transformers' `_compute_llama3_parameters` does. The tables
//! `cos, sin: [P, head_dim/2]` are computed in f64 and stored as inline f32 weights
//! (`rope.cos`, `rope.sin`) with `P = min(max_position_embeddings,`
//! [`MAX_ROPE_POSITIONS`]`)`, which bounds the module size (a 128k-context model would
//! otherwise carry 2 × 128k × head_dim/2 floats); positions ≥ P are a run-time gather
//! error. Raise the constant to serve longer contexts.
//!
//! # Adding architectures (the switches live in [`Variant`])
//!
//! Everything architecture-specific is decided once in [`Variant::from_config`]; the
//! builder below only reads the switches. Supported beyond the llama family:
//! * **gemma**: `embed_scale = Some(sqrt(hidden))` (a constant `mul` after the gather and
//!   cast; the constant is rounded to the embedding dtype as transformers does, the product
//!   is f32), `NormKind::RmsPlusOne` (the stored weight `w` stays in its file; the graph
//!   adds a constant 1 to it once per function), gelu-tanh MLP (`hidden_act` /
//!   `hidden_activation` = `gelu_pytorch_tanh`: `gelu(gate) * up`), head_dim from the
//!   config, lm_head tied by default.
//! * **phi3**: `fused_projections`: one `linear` with `qkv_proj` (rows `[q; k; v]`) and
//!   one with `gate_up_proj` (rows `[gate; up]`), split by `slice` on the last axis
//!   (tensor names in `weights::expected_tensors`). `partial_rotary_factor` other than 1
//!   and the `longrope`/`su` rope scalings are refused at config validation.
//!
//! Still to add:
//! * **gpt2**: `NormKind::LayerNorm` (`layer_norm` with bias), learned position embeddings
//!   (`gather` of `wpe` by `position_ids`, added to the token embedding) instead of RoPE,
//!   Conv1D weights stored `[in, out]` (transpose once, or `matmul`), fused `c_attn`, and
//!   different tensor names (a naming table in `weights::expected_tensors`).

use crate::config::{DecoderConfig, HiddenAct};
use crate::weights::WeightPlan;
use crate::HfError;
use ferrumc_ir::infer::add_inferred;
use ferrumc_ir::op::GeluApproximation;
use ferrumc_ir::{Attr, DType, Dim, Function, Module, Op, Tensor, TensorType, ValueId, WeightDecl, WeightSource};
use std::collections::HashMap;

/// The most RoPE positions tabulated at import (see the module docs).
pub const MAX_ROPE_POSITIONS: usize = 4096;

/// Normalisation flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `rms_norm x, w` (llama family).
    Rms,
    /// `rms_norm x, (w + 1)` (gemma: `x * (1 + w)`); the `+ 1` is a constant `add` on the
    /// stored weight, made once per function.
    RmsPlusOne,
}

/// MLP flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    /// `down(act(gate(x)) * up(x))`.
    Gated(HiddenAct),
}

/// The architecture switches the builder reads (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub norm: NormKind,
    pub mlp: MlpKind,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMSNorm of q and k over head_dim before RoPE (qwen3).
    pub qk_norm: bool,
    /// lm_head reads `model.embed_tokens.weight`.
    pub tied_lm_head: bool,
    /// Multiply the embeddings by this constant after the gather (gemma: `sqrt(hidden)`
    /// rounded to the embedding dtype, as transformers' `torch.tensor(hidden**0.5, dtype)`).
    pub embed_scale: Option<f64>,
    /// One `qkv_proj` (rows `[q; k; v]`) and one `gate_up_proj` (rows `[gate; up]`),
    /// split with `slice` on the last axis after the `linear` (phi3).
    pub fused_projections: bool,
}

impl Variant {
    pub fn from_config(cfg: &DecoderConfig) -> Variant {
        Variant {
            norm: if cfg.gemma_style() { NormKind::RmsPlusOne } else { NormKind::Rms },
            mlp: MlpKind::Gated(cfg.hidden_act),
            qkv_bias: cfg.qkv_bias(),
            o_bias: cfg.o_bias(),
            mlp_bias: cfg.mlp_bias,
            qk_norm: cfg.qk_norm(),
            tied_lm_head: cfg.tie_word_embeddings,
            embed_scale: cfg.gemma_style().then(|| embed_scale(cfg)),
            fused_projections: cfg.fused_projections(),
        }
    }
}

/// Gemma's embedding multiplier: `sqrt(hidden_size)` rounded to the embedding dtype
/// (transformers: `torch.tensor(hidden_size**0.5, dtype=embeddings.dtype)`). The embedding
/// dtype is not known here, so this is the f32 rounding; [`Builder::build`] re-rounds it
/// for f16/bf16 embeddings.
pub fn embed_scale(cfg: &DecoderConfig) -> f64 {
    f64::from((cfg.hidden_size as f64).sqrt() as f32)
}

/// RoPE inverse frequencies (length head_dim/2), with llama3 scaling applied.
pub fn rope_inv_freq(cfg: &DecoderConfig) -> Vec<f64> {
    let dim = cfg.head_dim as f64;
    let base: Vec<f64> = (0..cfg.head_dim / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / dim)).collect();
    let Some(s) = cfg.rope_scaling else { return base };
    // transformers `_compute_llama3_parameters`.
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old_ctx / s.low_freq_factor;
    let high_freq_wavelen = old_ctx / s.high_freq_factor;
    base.into_iter()
        .map(|inv| {
            let wavelen = 2.0 * std::f64::consts::PI / inv;
            let inv_llama = if wavelen > low_freq_wavelen { inv / s.factor } else { inv };
            let smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            let smoothed = (1.0 - smooth) * inv_llama / s.factor + smooth * inv_llama;
            // `~(wavelen < high) * ~(wavelen > low)`; wavelen is never NaN here.
            let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if medium {
                smoothed
            } else {
                inv_llama
            }
        })
        .collect()
}

/// Number of tabulated RoPE positions.
pub fn rope_positions(cfg: &DecoderConfig) -> usize {
    cfg.max_position_embeddings.clamp(1, MAX_ROPE_POSITIONS)
}

/// The cos and sin tables, `f32[P, head_dim/2]`.
pub fn rope_tables(cfg: &DecoderConfig) -> Result<(Tensor, Tensor), HfError> {
    let inv = rope_inv_freq(cfg);
    let p = rope_positions(cfg);
    let mut cos = Vec::with_capacity(p * inv.len());
    let mut sin = Vec::with_capacity(p * inv.len());
    for pos in 0..p {
        for &f in &inv {
            let a = pos as f64 * f;
            // Computed in f64, stored as f32 (the weight's dtype).
            cos.push(f64::from(a.cos() as f32));
            sin.push(f64::from(a.sin() as f32));
        }
    }
    let shape = vec![p, inv.len()];
    let mk = |v| Tensor::from_f64(DType::F32, shape.clone(), v).map_err(|e| HfError::Lower(e.to_string()));
    Ok((mk(cos)?, mk(sin)?))
}

struct Builder<'a> {
    f: Function,
    plan: &'a WeightPlan,
    cfg: &'a DecoderConfig,
    v: Variant,
    cos_sin_ty: TensorType,
    f32_cache: HashMap<String, ValueId>,
}

fn lower_err(what: &str, e: String) -> HfError {
    HfError::Lower(format!("{what}: {e}"))
}

impl Builder<'_> {
    fn op(&mut self, op: Op, operands: Vec<ValueId>) -> Result<ValueId, HfError> {
        let name = op.name();
        let r = add_inferred(&mut self.f, op, operands).map_err(|e| lower_err(name, e))?;
        r.first().copied().ok_or_else(|| HfError::Lower(format!("{name}: no result")))
    }

    fn op_n(&mut self, op: Op, operands: Vec<ValueId>) -> Result<Vec<ValueId>, HfError> {
        let name = op.name();
        add_inferred(&mut self.f, op, operands).map_err(|e| lower_err(name, e))
    }

    /// The raw weight value (in its stored dtype).
    fn raw(&mut self, name: &str) -> Result<(ValueId, DType), HfError> {
        let w = self.plan.get(name).ok_or_else(|| HfError::Lower(format!("weight `{name}` was not planned")))?;
        let dims: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
        let dtype = w.dtype;
        Ok((self.f.weight(name, TensorType::fixed(dtype, &dims)), dtype))
    }

    /// The weight as f32 (a `cast` for f16/bf16 storage, made once per function).
    fn w(&mut self, name: &str) -> Result<ValueId, HfError> {
        if let Some(&v) = self.f32_cache.get(name) {
            return Ok(v);
        }
        let (v, dtype) = self.raw(name)?;
        let v = if dtype == DType::F32 { v } else { self.op(Op::Cast { to: DType::F32 }, vec![v])? };
        self.f32_cache.insert(name.to_string(), v);
        Ok(v)
    }

    fn linear(&mut self, x: ValueId, prefix: &str, bias: bool) -> Result<ValueId, HfError> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let mut operands = vec![x, w];
        if bias {
            operands.push(self.w(&format!("{prefix}.bias"))?);
        }
        self.op(Op::Linear, operands)
    }

    /// A scalar f32 constant.
    fn scalar(&mut self, value: f64) -> Result<ValueId, HfError> {
        let t = Tensor::from_f64(DType::F32, vec![], vec![value]).map_err(|e| HfError::Lower(e.to_string()))?;
        self.op(Op::Constant { value: t }, vec![])
    }

    fn norm(&mut self, x: ValueId, weight: &str) -> Result<ValueId, HfError> {
        let w = match self.v.norm {
            NormKind::Rms => self.w(weight)?,
            NormKind::RmsPlusOne => {
                let key = format!("{weight} + 1");
                match self.f32_cache.get(&key) {
                    Some(&w1) => w1,
                    None => {
                        let w = self.w(weight)?;
                        let one = self.scalar(1.0)?;
                        let w1 = self.op(Op::Add, vec![w, one])?;
                        self.f32_cache.insert(key, w1);
                        w1
                    }
                }
            }
        };
        self.op(Op::RmsNorm { epsilon: self.cfg.rms_norm_eps }, vec![x, w])
    }

    /// `x[..., start..end]` on the last axis (`axis`) of a fused projection.
    fn slice_last(&mut self, x: ValueId, axis: i64, start: usize, end: usize) -> Result<ValueId, HfError> {
        let op = Op::Slice { axes: vec![axis], starts: vec![start as i64], ends: vec![end as i64], steps: vec![] };
        self.op(op, vec![x])
    }

    fn reshape(&mut self, x: ValueId, shape: Vec<Dim>) -> ValueId {
        self.f.add_op1(Op::Reshape { allowzero: false }, vec![x], TensorType::new(DType::F32, shape))
    }

    /// `[B, S, heads*D]` → `[B, heads, S, D]`, with an optional per-head norm first.
    fn split_heads(&mut self, x: ValueId, heads: usize, norm: Option<&str>) -> Result<ValueId, HfError> {
        let (b, s) = (Dim::sym("batch"), Dim::sym("seq"));
        let d = self.cfg.head_dim as i64;
        let x = self.reshape(x, vec![b, s, Dim::fixed(heads as i64), Dim::fixed(d)]);
        let x = match norm {
            Some(w) => self.norm(x, w)?,
            None => x,
        };
        self.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![x])
    }

    fn build(&mut self, with_cache: bool) -> Result<(), HfError> {
        let cfg = self.cfg;
        let (b, s) = (Dim::sym("batch"), Dim::sym("seq"));
        let ids = self.f.add_param("input_ids", TensorType::new(DType::I64, vec![b.clone(), s.clone()]));
        let pos = self.f.add_param("position_ids", TensorType::new(DType::I64, vec![b.clone(), s.clone()]));
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let mut pasts = Vec::new();
        if with_cache {
            let ty = TensorType::new(
                DType::F32,
                vec![b.clone(), Dim::fixed(nkv as i64), Dim::sym("past"), Dim::fixed(hd as i64)],
            );
            for l in 0..cfg.num_hidden_layers {
                let k = self.f.add_param(format!("past_key_{l}"), ty.clone());
                let v = self.f.add_param(format!("past_value_{l}"), ty.clone());
                pasts.push((k, v));
            }
        }
        let cos = self.f.weight("rope.cos", self.cos_sin_ty.clone());
        let sin = self.f.weight("rope.sin", self.cos_sin_ty.clone());

        let (embed, embed_dtype) = self.raw("model.embed_tokens.weight")?;
        let mut x = self.op(Op::Gather { axis: 0 }, vec![embed, ids])?;
        if embed_dtype != DType::F32 {
            x = self.op(Op::Cast { to: DType::F32 }, vec![x])?;
        }
        if let Some(scale) = self.v.embed_scale {
            // Rounded to the embedding dtype like transformers; the product is taken in f32.
            let rounded = Tensor::from_f64(embed_dtype, vec![], vec![scale])
                .map_err(|e| HfError::Lower(e.to_string()))?
                .to_f64_vec()[0];
            let c = self.scalar(rounded)?;
            x = self.op(Op::Mul, vec![x, c])?;
        }
        let mut presents = Vec::new();
        let v = self.v.clone();
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let h = self.norm(x, &format!("{p}.input_layernorm.weight"))?;
            let (q, k, vv) = if v.fused_projections {
                let qkv = self.linear(h, &format!("{p}.self_attn.qkv_proj"), v.qkv_bias)?;
                let (qn, kvn) = (nh * hd, nkv * hd);
                let q = self.slice_last(qkv, 2, 0, qn)?;
                let k = self.slice_last(qkv, 2, qn, qn + kvn)?;
                let vv = self.slice_last(qkv, 2, qn + kvn, qn + 2 * kvn)?;
                (q, k, vv)
            } else {
                let q = self.linear(h, &format!("{p}.self_attn.q_proj"), v.qkv_bias)?;
                let k = self.linear(h, &format!("{p}.self_attn.k_proj"), v.qkv_bias)?;
                let vv = self.linear(h, &format!("{p}.self_attn.v_proj"), v.qkv_bias)?;
                (q, k, vv)
            };
            let qn = format!("{p}.self_attn.q_norm.weight");
            let kn = format!("{p}.self_attn.k_norm.weight");
            let q = self.split_heads(q, nh, v.qk_norm.then_some(qn.as_str()))?;
            let k = self.split_heads(k, nkv, v.qk_norm.then_some(kn.as_str()))?;
            let vv = self.split_heads(vv, nkv, None)?;
            let rope = Op::RotaryEmbedding { interleaved: false, rotary_dim: 0 };
            let q = self.op(rope.clone(), vec![q, cos, sin, pos])?;
            let k = self.op(rope, vec![k, cos, sin, pos])?;
            let attn = Op::Attention { scale: None, causal: true };
            let a = match pasts.get(l) {
                Some(&(pk, pv)) => {
                    let r = self.op_n(attn, vec![q, k, vv, pk, pv])?;
                    if r.len() != 3 {
                        return Err(HfError::Lower("attention with a KV cache must give 3 results".into()));
                    }
                    presents.push((r[1], r[2]));
                    r[0]
                }
                None => self.op(attn, vec![q, k, vv])?,
            };
            let a = self.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![a])?;
            let a = self.reshape(a, vec![b.clone(), s.clone(), Dim::fixed((nh * hd) as i64)]);
            let o = self.linear(a, &format!("{p}.self_attn.o_proj"), v.o_bias)?;
            x = self.op(Op::Add, vec![x, o])?;
            let h = self.norm(x, &format!("{p}.post_attention_layernorm.weight"))?;
            let (g, u) = if v.fused_projections {
                let gu = self.linear(h, &format!("{p}.mlp.gate_up_proj"), v.mlp_bias)?;
                let i = cfg.intermediate_size;
                (self.slice_last(gu, 2, 0, i)?, self.slice_last(gu, 2, i, 2 * i)?)
            } else {
                let g = self.linear(h, &format!("{p}.mlp.gate_proj"), v.mlp_bias)?;
                let u = self.linear(h, &format!("{p}.mlp.up_proj"), v.mlp_bias)?;
                (g, u)
            };
            let act = match v.mlp {
                MlpKind::Gated(HiddenAct::Silu) => self.op(Op::SiluMul, vec![g, u])?,
                MlpKind::Gated(HiddenAct::Gelu) => {
                    let g = self.op(Op::Gelu { approximate: GeluApproximation::None }, vec![g])?;
                    self.op(Op::Mul, vec![g, u])?
                }
                MlpKind::Gated(HiddenAct::GeluTanh) => {
                    let g = self.op(Op::Gelu { approximate: GeluApproximation::Tanh }, vec![g])?;
                    self.op(Op::Mul, vec![g, u])?
                }
            };
            let m = self.linear(act, &format!("{p}.mlp.down_proj"), v.mlp_bias)?;
            x = self.op(Op::Add, vec![x, m])?;
        }
        let x = self.norm(x, "model.norm.weight")?;
        let head = if v.tied_lm_head { "model.embed_tokens.weight" } else { "lm_head.weight" };
        let w = self.w(head)?;
        let logits = self.op(Op::Linear, vec![x, w])?;
        self.f.add_output("logits", logits);
        for (l, (k, v)) in presents.into_iter().enumerate() {
            self.f.add_output(format!("present_key_{l}"), k);
            self.f.add_output(format!("present_value_{l}"), v);
        }
        Ok(())
    }
}

/// The dimensions every HF import records as module attributes; they become the ModelIR
/// JSON document's `architecture.dimensions` (ir/src/json/mod.rs).
pub(crate) struct ModelDims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub intermediate_size: usize,
    pub max_sequence_length: usize,
    pub head_dim: usize,
}

/// A module named after `model_type`, with the producer, model type and dimensions as
/// attributes and every planned tensor declared as a weight kept in its file.
pub(crate) fn new_module(model_type: &str, dims: ModelDims, plan: &WeightPlan) -> Module {
    let mut m = Module::new(model_type);
    m.attrs.insert("producer".into(), Attr::Str("ferrumc-hf".into()));
    m.attrs.insert("model_type".into(), Attr::Str(model_type.into()));
    m.attrs.insert("architecture".into(), Attr::Str(model_type.into()));
    for (k, v) in [
        ("vocab_size", dims.vocab_size),
        ("hidden_size", dims.hidden_size),
        ("num_layers", dims.num_layers),
        ("num_heads", dims.num_heads),
        ("num_kv_heads", dims.num_kv_heads),
        ("intermediate_size", dims.intermediate_size),
        ("max_sequence_length", dims.max_sequence_length),
        ("head_dim", dims.head_dim),
    ] {
        m.attrs.insert(k.into(), Attr::Int(v as i64));
    }
    crate::weights::declare_weights(&mut m, plan);
    m
}

/// Lower a checked configuration and weight plan to a module with `forward` and `decode`.
pub fn lower_decoder(cfg: &DecoderConfig, plan: &WeightPlan) -> Result<Module, HfError> {
    let mut m = new_module(
        &cfg.model_type,
        ModelDims {
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_hidden_layers,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            intermediate_size: cfg.intermediate_size,
            max_sequence_length: cfg.max_position_embeddings,
            head_dim: cfg.head_dim,
        },
        plan,
    );
    m.attrs.insert("rope_max_positions".into(), Attr::Int(rope_positions(cfg) as i64));
    let (cos, sin) = rope_tables(cfg)?;
    let cos_sin_ty = TensorType::fixed(DType::F32, &[rope_positions(cfg) as i64, (cfg.head_dim / 2) as i64]);
    m.weights.push(WeightDecl { name: "rope.cos".into(), ty: cos_sin_ty.clone(), source: WeightSource::Inline(cos) });
    m.weights.push(WeightDecl { name: "rope.sin".into(), ty: cos_sin_ty.clone(), source: WeightSource::Inline(sin) });
    for (name, with_cache) in [("forward", false), ("decode", true)] {
        let mut b = Builder {
            f: Function::new(name),
            plan,
            cfg,
            v: Variant::from_config(cfg),
            cos_sin_ty: cos_sin_ty.clone(),
            f32_cache: HashMap::new(),
        };
        b.build(with_cache)?;
        m.functions.push(b.f);
    }
    Ok(m)
}
