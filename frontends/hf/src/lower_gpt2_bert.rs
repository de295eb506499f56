//! GPT-2 (`model_type: "gpt2"`) and BERT (`model_type: "bert"`) lowering.
//!
//! These two architectures do not fit [`DecoderConfig`](crate::DecoderConfig) (different
//! `config.json` keys, LayerNorm with biases, learned positions, Conv1D weights, an
//! encoder), so they have their own small config reader, tensor table and builder here;
//! [`import_hf`](crate::import_hf) dispatches to [`import`] when [`handles`] says so.
//!
//! # gpt2 (`GPT2LMHeadModel` / `GPT2Model` checkpoints)
//!
//! Same interface as the llama family:
//! * `forward(input_ids: i64[?batch, ?seq], position_ids: i64[?batch, ?seq])
//!   -> logits: f32[?batch, ?seq, vocab]`, causal;
//! * `decode(input_ids, position_ids, past_key_<l>, past_value_<l>, …)
//!   -> (logits, present_key_<l>, present_value_<l>, …)` with caches
//!   `f32[?batch, n_head, ?past, head_dim]` (HF layout; raw `c_attn` keys, no RoPE).
//!
//! `position_ids` index the learned table `wpe` with `gather` (added to the `wte` row).
//! Conv1D weights are stored `[in, out]`, so projections are `matmul(x, w) + b` (never
//! `linear`); the fused `c_attn` output `[…, 3·hidden]` is `split` into q, k, v. The
//! lm_head is tied to `wte` (a `lm_head.weight` copy in the checkpoint is ignored with a
//! warning) unless `tie_word_embeddings` is false. Tensor names may carry the
//! `transformer.` prefix (`GPT2LMHeadModel`) or not (`GPT2Model`); the attention-mask
//! buffers older checkpoints carry (`attn.bias`, `attn.masked_bias`) are ignored.
//! `scale_attn_weights` and `scale_attn_by_inverse_layer_idx` set the attention scale;
//! cross-attention (`add_cross_attention`) is refused.
//!
//! # bert (`BertModel` encoder)
//!
//! `forward(input_ids, token_type_ids, attention_mask: i64[?batch, ?seq])
//! -> hidden: f32[?batch, ?seq, hidden]` (`last_hidden_state`).
//!
//! Positions are absolute and computed in-graph: the first `seq` rows of
//! `position_embeddings` (`slice` with `ends = shape(input_ids)[1:2]`), i.e.
//! `arange(seq)` as transformers does without explicit `position_ids`. The attention
//! mask (1 = attend) is cast to bool and unsqueezed to `[batch, 1, 1, seq]` for the
//! non-causal `attention` op (false = masked out). A row whose mask is all zeros yields
//! zeros here (transformers' additive `finfo.min` mask gives a uniform average instead);
//! such rows are padding whose output is meaningless either way. Pooler (`pooler.*`)
//! and pre-training head (`cls.*`) tensors are not used and are reported as warnings.
//! Tensor names may carry the `bert.` prefix (`BertFor…` checkpoints).

use crate::weights::{Checkpoint, WeightPlan};
use crate::{HfError, ValidationIssue, ValidationSeverity};
use ferrumc_ir::infer::add_inferred;
use ferrumc_ir::op::GeluApproximation;
use ferrumc_ir::{DType, Dim, Function, Module, Op, Tensor, TensorType, ValueId};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// The `model_type`s handled here.
pub const MODEL_TYPES: &[&str] = &["gpt2", "bert"];

/// Whether this `config.json` document is one of [`MODEL_TYPES`].
pub fn handles(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str).is_some_and(|t| MODEL_TYPES.contains(&t))
}

/// The activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

/// Which of the two architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Gpt2,
    Bert,
}

/// The configuration of a gpt2 or bert model, as far as the lowering needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2BertConfig {
    pub arch: Arch,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    /// bert only.
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub act: Act,
    /// gpt2: lm_head reads `wte`.
    pub tie_word_embeddings: bool,
    /// gpt2 `scale_attn_weights` (else the scale is 1).
    pub scale_attn_weights: bool,
    /// gpt2: scores further divided by `layer + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
}

fn err(category: &str, path: &str, description: String, fix: Option<String>) -> ValidationIssue {
    ValidationIssue::new(ValidationSeverity::Error, category, path, description, fix)
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    issues: Vec<ValidationIssue>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// A positive integer (first present key of `keys`), `default` when absent.
    fn size(&mut self, keys: &[&str], default: Option<usize>, max: u64) -> Option<usize> {
        let Some((key, v)) = keys.iter().find_map(|k| self.get(k).map(|v| (*k, v))) else {
            if default.is_none() {
                self.issues.push(err(
                    "missing_field",
                    keys[0],
                    format!("required field `{}` is missing", keys[0]),
                    Some(format!("add `\"{}\": <positive integer>` to config.json", keys[0])),
                ));
            }
            return default;
        };
        match v.as_u64() {
            Some(n) if n > 0 && n <= max => usize::try_from(n).ok(),
            _ => {
                self.issues.push(err(
                    "invalid_value",
                    key,
                    format!("`{key}` must be a positive integer no larger than {max}, found {v}"),
                    Some(format!("set `{key}` to a positive integer")),
                ));
                None
            }
        }
    }

    fn float(&mut self, key: &str, default: f64) -> f64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() && f > 0.0 => f,
                _ => {
                    self.issues.push(err(
                        "invalid_value",
                        key,
                        format!("`{key}` must be a positive finite number, found {v}"),
                        Some(format!("set `{key}` to a positive number (default {default})")),
                    ));
                    default
                }
            },
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.issues.push(err(
                    "invalid_type",
                    key,
                    format!("`{key}` must be true or false, found {v}"),
                    Some(format!("write `{key}` as a JSON boolean")),
                ));
                default
            }
        }
    }

    fn act(&mut self, key: &str, default: &str) -> Act {
        let name = match self.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                self.issues.push(err("invalid_type", key, format!("`{key}` must be a string, found {v}"), None));
                return Act::GeluErf;
            }
        };
        match name.as_str() {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => {
                self.issues.push(err(
                    "unsupported",
                    key,
                    format!(
                        "activation `{other}` is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, \
                         gelu_fast, relu)"
                    ),
                    None,
                ));
                Act::GeluErf
            }
        }
    }
}

/// Validate and parse a gpt2 or bert `config.json` document (every problem at once).
pub fn parse_config(value: &Value) -> Result<(Gpt2BertConfig, Vec<ValidationIssue>), Vec<ValidationIssue>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![ValidationIssue::new(
            ValidationSeverity::Critical,
            "invalid_type",
            "",
            "config.json must be a JSON object".to_string(),
            None,
        )]);
    };
    let mut r = Reader { obj, issues: Vec::new() };
    let arch = match r.get("model_type").and_then(Value::as_str) {
        Some("gpt2") => Arch::Gpt2,
        Some("bert") => Arch::Bert,
        other => {
            r.issues.push(err("unsupported", "model_type", format!("model_type {other:?} is not gpt2 or bert"), None));
            return Err(r.issues);
        }
    };
    const MAX: u64 = 1 << 20;
    let cfg = match arch {
        Arch::Gpt2 => {
            let hidden = r.size(&["n_embd", "hidden_size"], None, MAX);
            let layers = r.size(&["n_layer", "num_hidden_layers"], None, 10_000);
            let heads = r.size(&["n_head", "num_attention_heads"], None, 1 << 14);
            let inner = r.size(&["n_inner"], Some(hidden.unwrap_or(1) * 4), MAX);
            let vocab = r.size(&["vocab_size"], None, 1 << 24);
            let positions = r.size(&["n_positions", "max_position_embeddings"], None, 1 << 24);
            let eps = r.float("layer_norm_epsilon", 1e-5);
            let act = r.act("activation_function", "gelu_new");
            let tie = r.boolean("tie_word_embeddings", true);
            let scale = r.boolean("scale_attn_weights", true);
            let inv_layer = r.boolean("scale_attn_by_inverse_layer_idx", false);
            if r.boolean("add_cross_attention", false) {
                r.issues.push(err(
                    "unsupported",
                    "add_cross_attention",
                    "gpt2 with cross-attention is not lowered".into(),
                    Some("import a decoder-only gpt2".into()),
                ));
            }
            (hidden, layers, heads, inner, vocab, positions, 1, eps, act, tie, scale, inv_layer)
        }
        Arch::Bert => {
            let hidden = r.size(&["hidden_size"], None, MAX);
            let layers = r.size(&["num_hidden_layers"], None, 10_000);
            let heads = r.size(&["num_attention_heads"], None, 1 << 14);
            let inner = r.size(&["intermediate_size"], None, MAX);
            let vocab = r.size(&["vocab_size"], None, 1 << 24);
            let positions = r.size(&["max_position_embeddings"], Some(512), 1 << 24);
            let types = r.size(&["type_vocab_size"], Some(2), 1 << 20).unwrap_or(2);
            let eps = r.float("layer_norm_eps", 1e-12);
            let act = r.act("hidden_act", "gelu");
            match r.get("position_embedding_type").map(|v| v.as_str()) {
                None | Some(Some("absolute")) => {}
                Some(other) => r.issues.push(err(
                    "unsupported",
                    "position_embedding_type",
                    format!("position_embedding_type {other:?} is not supported (only \"absolute\")"),
                    None,
                )),
            }
            if r.boolean("is_decoder", false) || r.boolean("add_cross_attention", false) {
                r.issues.push(err(
                    "unsupported",
                    "is_decoder",
                    "bert as a decoder (causal or cross-attention) is not lowered; only the encoder is".into(),
                    None,
                ));
            }
            (hidden, layers, heads, inner, vocab, positions, types, eps, act, true, true, false)
        }
    };
    let (hidden, layers, heads, inner, vocab, positions, types, eps, act, tie, scale, inv_layer) = cfg;
    if let (Some(h), Some(n)) = (hidden, heads) {
        if h % n != 0 {
            r.issues.push(err(
                "incompatible_dimensions",
                "num_attention_heads",
                format!("hidden size ({h}) is not divisible by the number of heads ({n})"),
                None,
            ));
        }
    }
    let blocking = r.issues.iter().any(|i| i.severity.is_blocking());
    match (hidden, layers, heads, inner, vocab, positions) {
        (Some(hidden_size), Some(num_layers), Some(num_heads), Some(intermediate_size), Some(vocab_size), Some(mp))
            if !blocking =>
        {
            Ok((
                Gpt2BertConfig {
                    arch,
                    hidden_size,
                    num_layers,
                    num_heads,
                    head_dim: hidden_size / num_heads,
                    intermediate_size,
                    vocab_size,
                    max_positions: mp,
                    type_vocab_size: types,
                    layer_norm_eps: eps,
                    act,
                    tie_word_embeddings: tie,
                    scale_attn_weights: scale,
                    scale_attn_by_inverse_layer_idx: inv_layer,
                },
                r.issues,
            ))
        }
        _ => {
            let mut issues = r.issues;
            if !issues.iter().any(|i| i.severity.is_blocking()) {
                issues.push(err("invalid_value", "", "the configuration is incomplete".into(), None));
            }
            Err(issues)
        }
    }
}

/// The tensor-name prefix the checkpoint uses (`transformer.` / `bert.` or none).
fn prefix(cfg: &Gpt2BertConfig, ckpt: &Checkpoint) -> &'static str {
    match cfg.arch {
        Arch::Gpt2 if ckpt.tensors.contains_key("transformer.wte.weight") => "transformer.",
        Arch::Bert if ckpt.tensors.contains_key("bert.embeddings.word_embeddings.weight") => "bert.",
        _ => "",
    }
}

/// The tensors a gpt2 / bert config implies (names with the checkpoint's `prefix`).
pub fn expected_tensors(cfg: &Gpt2BertConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| out.push((format!("{prefix}{name}"), shape));
    match cfg.arch {
        Arch::Gpt2 => {
            push("wte.weight".into(), vec![v, h]);
            push("wpe.weight".into(), vec![cfg.max_positions, h]);
            for l in 0..cfg.num_layers {
                let p = format!("h.{l}");
                for (name, shape) in [
                    ("ln_1.weight", vec![h]),
                    ("ln_1.bias", vec![h]),
                    ("attn.c_attn.weight", vec![h, 3 * h]),
                    ("attn.c_attn.bias", vec![3 * h]),
                    ("attn.c_proj.weight", vec![h, h]),
                    ("attn.c_proj.bias", vec![h]),
                    ("ln_2.weight", vec![h]),
                    ("ln_2.bias", vec![h]),
                    ("mlp.c_fc.weight", vec![h, i]),
                    ("mlp.c_fc.bias", vec![i]),
                    ("mlp.c_proj.weight", vec![i, h]),
                    ("mlp.c_proj.bias", vec![h]),
                ] {
                    push(format!("{p}.{name}"), shape);
                }
            }
            push("ln_f.weight".into(), vec![h]);
            push("ln_f.bias".into(), vec![h]);
            if !cfg.tie_word_embeddings {
                out.push(("lm_head.weight".into(), vec![v, h]));
            }
        }
        Arch::Bert => {
            push("embeddings.word_embeddings.weight".into(), vec![v, h]);
            push("embeddings.position_embeddings.weight".into(), vec![cfg.max_positions, h]);
            push("embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size, h]);
            push("embeddings.LayerNorm.weight".into(), vec![h]);
            push("embeddings.LayerNorm.bias".into(), vec![h]);
            for l in 0..cfg.num_layers {
                let p = format!("encoder.layer.{l}");
                for (name, shape) in [
                    ("attention.self.query.weight", vec![h, h]),
                    ("attention.self.query.bias", vec![h]),
                    ("attention.self.key.weight", vec![h, h]),
                    ("attention.self.key.bias", vec![h]),
                    ("attention.self.value.weight", vec![h, h]),
                    ("attention.self.value.bias", vec![h]),
                    ("attention.output.dense.weight", vec![h, h]),
                    ("attention.output.dense.bias", vec![h]),
                    ("attention.output.LayerNorm.weight", vec![h]),
                    ("attention.output.LayerNorm.bias", vec![h]),
                    ("intermediate.dense.weight", vec![i, h]),
                    ("intermediate.dense.bias", vec![i]),
                    ("output.dense.weight", vec![h, i]),
                    ("output.dense.bias", vec![h]),
                    ("output.LayerNorm.weight", vec![h]),
                    ("output.LayerNorm.bias", vec![h]),
                ] {
                    push(format!("{p}.{name}"), shape);
                }
            }
        }
    }
    out
}

/// Tensors present in real checkpoints that the lowering does not use (a warning, not an
/// error): gpt2 mask buffers and a tied `lm_head.weight`; bert pooler and heads.
fn ignorable(cfg: &Gpt2BertConfig, prefix: &str, name: &str) -> bool {
    match cfg.arch {
        Arch::Gpt2 => {
            name.ends_with(".attn.bias")
                || name.ends_with(".attn.masked_bias")
                || (name == "lm_head.weight" && cfg.tie_word_embeddings)
        }
        Arch::Bert => {
            name.starts_with(&format!("{prefix}pooler.")) || name.starts_with("cls.") || name.ends_with("position_ids")
        }
    }
}

/// Check the checkpoint against the config (every missing, extra, mis-shaped or wrongly
/// typed tensor at once). Returns the plan, the name prefix and the warnings.
pub fn check_checkpoint(
    cfg: &Gpt2BertConfig,
    ckpt: &Checkpoint,
) -> Result<(WeightPlan, &'static str, Vec<ValidationIssue>), HfError> {
    let prefix = prefix(cfg, ckpt);
    let shown = |file: &str| ckpt.dir.join(file).display().to_string();
    let expected = expected_tensors(cfg, prefix);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let plan = crate::weights::plan_expected(ckpt, &expected, &mut problems);
    let wanted: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let model = match cfg.arch {
        Arch::Gpt2 => "gpt2",
        Arch::Bert => "bert",
    };
    for (name, entry) in &ckpt.tensors {
        if wanted.contains(name.as_str()) {
            continue;
        }
        let file = shown(&entry.file);
        if ignorable(cfg, prefix, name) {
            warnings.push(ValidationIssue::new(
                ValidationSeverity::Warning,
                "weights",
                name.clone(),
                format!("tensor `{name}` in `{file}` is not used by the {model} lowering; ignored"),
                None,
            ));
        } else {
            problems.push(format!("tensor `{name}` in `{file}` is not used by a {model} model (extra tensor)"));
        }
    }
    if problems.is_empty() {
        Ok((plan, prefix, warnings))
    } else {
        Err(HfError::Weights { problems })
    }
}

struct Builder<'a> {
    f: Function,
    plan: &'a WeightPlan,
    cfg: &'a Gpt2BertConfig,
    prefix: &'static str,
    f32_cache: HashMap<String, ValueId>,
}

impl Builder<'_> {
    fn op(&mut self, op: Op, operands: Vec<ValueId>) -> Result<ValueId, HfError> {
        let name = op.name();
        let r = add_inferred(&mut self.f, op, operands).map_err(|e| HfError::Lower(format!("{name}: {e}")))?;
        r.first().copied().ok_or_else(|| HfError::Lower(format!("{name}: no result")))
    }

    fn op_n(&mut self, op: Op, operands: Vec<ValueId>) -> Result<Vec<ValueId>, HfError> {
        let name = op.name();
        add_inferred(&mut self.f, op, operands).map_err(|e| HfError::Lower(format!("{name}: {e}")))
    }

    /// The weight `prefix + name` in its stored dtype.
    fn raw(&mut self, name: &str) -> Result<(ValueId, DType), HfError> {
        let full = if name == "lm_head.weight" { name.to_string() } else { format!("{}{name}", self.prefix) };
        let w = self.plan.get(&full).ok_or_else(|| HfError::Lower(format!("weight `{full}` was not planned")))?;
        let dims: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
        let dtype = w.dtype;
        Ok((self.f.weight(&full, TensorType::fixed(dtype, &dims)), dtype))
    }

    /// The weight as f32 (one `cast` per function for f16/bf16 storage).
    fn w(&mut self, name: &str) -> Result<ValueId, HfError> {
        if let Some(&v) = self.f32_cache.get(name) {
            return Ok(v);
        }
        let (v, dtype) = self.raw(name)?;
        let v = if dtype == DType::F32 { v } else { self.op(Op::Cast { to: DType::F32 }, vec![v])? };
        self.f32_cache.insert(name.to_string(), v);
        Ok(v)
    }

    /// Embedding rows: `gather` in the stored dtype, then cast.
    fn embed(&mut self, table: &str, ids: ValueId) -> Result<ValueId, HfError> {
        let (t, dtype) = self.raw(table)?;
        let x = self.op(Op::Gather { axis: 0 }, vec![t, ids])?;
        if dtype == DType::F32 {
            Ok(x)
        } else {
            self.op(Op::Cast { to: DType::F32 }, vec![x])
        }
    }

    fn layer_norm(&mut self, x: ValueId, prefix: &str) -> Result<ValueId, HfError> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        self.op(Op::LayerNorm { axis: -1, epsilon: self.cfg.layer_norm_eps }, vec![x, w, b])
    }

    /// gpt2 Conv1D: `x · w + b` with `w: [in, out]`.
    fn conv1d(&mut self, x: ValueId, prefix: &str) -> Result<ValueId, HfError> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        let y = self.op(Op::MatMul, vec![x, w])?;
        self.op(Op::Add, vec![y, b])
    }

    /// `nn.Linear`: `x · wᵀ + b` with `w: [out, in]`.
    fn linear(&mut self, x: ValueId, prefix: &str) -> Result<ValueId, HfError> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        self.op(Op::Linear, vec![x, w, b])
    }

    fn act(&mut self, x: ValueId) -> Result<ValueId, HfError> {
        match self.cfg.act {
            Act::GeluErf => self.op(Op::Gelu { approximate: GeluApproximation::None }, vec![x]),
            Act::GeluTanh => self.op(Op::Gelu { approximate: GeluApproximation::Tanh }, vec![x]),
            Act::Relu => self.op(Op::Relu, vec![x]),
        }
    }

    fn bs(&self) -> (Dim, Dim) {
        (Dim::sym("batch"), Dim::sym("seq"))
    }

    /// `[B, S, hidden]` → `[B, heads, S, head_dim]`.
    fn split_heads(&mut self, x: ValueId) -> Result<ValueId, HfError> {
        let (b, s) = self.bs();
        let (n, d) = (self.cfg.num_heads as i64, self.cfg.head_dim as i64);
        let ty = TensorType::new(DType::F32, vec![b, s, Dim::fixed(n), Dim::fixed(d)]);
        let x = self.f.add_op1(Op::Reshape { allowzero: false }, vec![x], ty);
        self.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![x])
    }

    /// `[B, heads, S, head_dim]` → `[B, S, hidden]`.
    fn merge_heads(&mut self, x: ValueId) -> Result<ValueId, HfError> {
        let (b, s) = self.bs();
        let x = self.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![x])?;
        let ty = TensorType::new(DType::F32, vec![b, s, Dim::fixed(self.cfg.hidden_size as i64)]);
        Ok(self.f.add_op1(Op::Reshape { allowzero: false }, vec![x], ty))
    }

    fn build_gpt2(&mut self, with_cache: bool) -> Result<(), HfError> {
        let cfg = self.cfg;
        let (b, s) = self.bs();
        let ids = self.f.add_param("input_ids", TensorType::new(DType::I64, vec![b.clone(), s.clone()]));
        let pos = self.f.add_param("position_ids", TensorType::new(DType::I64, vec![b.clone(), s.clone()]));
        let mut pasts = Vec::new();
        if with_cache {
            let ty = TensorType::new(
                DType::F32,
                vec![b.clone(), Dim::fixed(cfg.num_heads as i64), Dim::sym("past"), Dim::fixed(cfg.head_dim as i64)],
            );
            for l in 0..cfg.num_layers {
                let k = self.f.add_param(format!("past_key_{l}"), ty.clone());
                let v = self.f.add_param(format!("past_value_{l}"), ty.clone());
                pasts.push((k, v));
            }
        }
        let tok = self.embed("wte.weight", ids)?;
        let pe = self.embed("wpe.weight", pos)?;
        let mut x = self.op(Op::Add, vec![tok, pe])?;
        let hidden = TensorType::new(DType::F32, vec![b.clone(), s.clone(), Dim::fixed(cfg.hidden_size as i64)]);
        let mut presents = Vec::new();
        for l in 0..cfg.num_layers {
            let p = format!("h.{l}");
            let h = self.layer_norm(x, &format!("{p}.ln_1"))?;
            let qkv = self.conv1d(h, &format!("{p}.attn.c_attn"))?;
            let split = self.f.add_op(Op::Split { axis: -1 }, vec![qkv], vec![hidden.clone(); 3]);
            let parts = self.f.op(split).map(|d| d.results.clone()).unwrap_or_default();
            let [q, k, v] = parts[..] else {
                return Err(HfError::Lower("split of c_attn must give 3 results".into()));
            };
            let q = self.split_heads(q)?;
            let k = self.split_heads(k)?;
            let v = self.split_heads(v)?;
            let mut scale = if cfg.scale_attn_weights { 1.0 / (cfg.head_dim as f64).sqrt() } else { 1.0 };
            if cfg.scale_attn_by_inverse_layer_idx {
                scale /= (l + 1) as f64;
            }
            let attn = Op::Attention { scale: Some(scale), causal: true };
            let a = match pasts.get(l) {
                Some(&(pk, pv)) => {
                    let r = self.op_n(attn, vec![q, k, v, pk, pv])?;
                    if r.len() != 3 {
                        return Err(HfError::Lower("attention with a KV cache must give 3 results".into()));
                    }
                    presents.push((r[1], r[2]));
                    r[0]
                }
                None => self.op(attn, vec![q, k, v])?,
            };
            let a = self.merge_heads(a)?;
            let o = self.conv1d(a, &format!("{p}.attn.c_proj"))?;
            x = self.op(Op::Add, vec![x, o])?;
            let h = self.layer_norm(x, &format!("{p}.ln_2"))?;
            let m = self.conv1d(h, &format!("{p}.mlp.c_fc"))?;
            let m = self.act(m)?;
            let m = self.conv1d(m, &format!("{p}.mlp.c_proj"))?;
            x = self.op(Op::Add, vec![x, m])?;
        }
        let x = self.layer_norm(x, "ln_f")?;
        let head = if cfg.tie_word_embeddings { "wte.weight" } else { "lm_head.weight" };
        let w = self.w(head)?;
        let logits = self.op(Op::Linear, vec![x, w])?;
        self.f.add_output("logits", logits);
        for (l, (k, v)) in presents.into_iter().enumerate() {
            self.f.add_output(format!("present_key_{l}"), k);
            self.f.add_output(format!("present_value_{l}"), v);
        }
        Ok(())
    }

    fn build_bert(&mut self) -> Result<(), HfError> {
        let cfg = self.cfg;
        let (b, s) = self.bs();
        let i64_bs = TensorType::new(DType::I64, vec![b.clone(), s.clone()]);
        let ids = self.f.add_param("input_ids", i64_bs.clone());
        let types = self.f.add_param("token_type_ids", i64_bs.clone());
        let mask = self.f.add_param("attention_mask", i64_bs);

        let we = self.embed("embeddings.word_embeddings.weight", ids)?;
        let te = self.embed("embeddings.token_type_embeddings.weight", types)?;
        // Positions arange(seq): the first `seq` rows of the position table.
        let (table, table_dtype) = self.raw("embeddings.position_embeddings.weight")?;
        let seq_len = self.op(Op::Shape { start: 1, end: Some(2) }, vec![ids])?;
        let zero = Tensor::from_i64(DType::I64, vec![1], vec![0]).map_err(|e| HfError::Lower(e.to_string()))?;
        let starts = self.op(Op::Constant { value: zero }, vec![])?;
        let pe_ty = TensorType::new(table_dtype, vec![s.clone(), Dim::fixed(cfg.hidden_size as i64)]);
        let slice = Op::Slice { axes: vec![0], starts: vec![], ends: vec![], steps: vec![] };
        let mut pe = self.f.add_op1(slice, vec![table, starts, seq_len], pe_ty);
        if table_dtype != DType::F32 {
            pe = self.op(Op::Cast { to: DType::F32 }, vec![pe])?;
        }
        let x = self.op(Op::Add, vec![we, te])?;
        let x = self.op(Op::Add, vec![x, pe])?;
        let mut x = self.layer_norm(x, "embeddings.LayerNorm")?;

        // attention_mask (1 = attend) → bool [B, 1, 1, S].
        let m = self.op(Op::Cast { to: DType::Bool }, vec![mask])?;
        let m = self.op(Op::Unsqueeze { axes: vec![1, 2] }, vec![m])?;

        for l in 0..cfg.num_layers {
            let p = format!("encoder.layer.{l}");
            let q = self.linear(x, &format!("{p}.attention.self.query"))?;
            let k = self.linear(x, &format!("{p}.attention.self.key"))?;
            let v = self.linear(x, &format!("{p}.attention.self.value"))?;
            let q = self.split_heads(q)?;
            let k = self.split_heads(k)?;
            let v = self.split_heads(v)?;
            let a = self.op(Op::Attention { scale: None, causal: false }, vec![q, k, v, m])?;
            let a = self.merge_heads(a)?;
            let o = self.linear(a, &format!("{p}.attention.output.dense"))?;
            let o = self.op(Op::Add, vec![o, x])?;
            x = self.layer_norm(o, &format!("{p}.attention.output.LayerNorm"))?;
            let i = self.linear(x, &format!("{p}.intermediate.dense"))?;
            let i = self.act(i)?;
            let o = self.linear(i, &format!("{p}.output.dense"))?;
            let o = self.op(Op::Add, vec![o, x])?;
            x = self.layer_norm(o, &format!("{p}.output.LayerNorm"))?;
        }
        self.f.add_output("hidden", x);
        Ok(())
    }
}

/// Lower a checked gpt2 / bert config and plan: gpt2 gets `forward` and `decode`, bert
/// gets `forward` (see the module docs).
pub fn lower(cfg: &Gpt2BertConfig, plan: &WeightPlan, prefix: &'static str) -> Result<Module, HfError> {
    let model_type = match cfg.arch {
        Arch::Gpt2 => "gpt2",
        Arch::Bert => "bert",
    };
    let mut m = crate::lower::new_module(
        model_type,
        crate::lower::ModelDims {
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_layers,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_heads,
            intermediate_size: cfg.intermediate_size,
            max_sequence_length: cfg.max_positions,
            head_dim: cfg.head_dim,
        },
        plan,
    );
    let functions: &[(&str, bool)] = match cfg.arch {
        Arch::Gpt2 => &[("forward", false), ("decode", true)],
        Arch::Bert => &[("forward", false)],
    };
    for &(name, with_cache) in functions {
        let mut b = Builder { f: Function::new(name), plan, cfg, prefix, f32_cache: HashMap::new() };
        match cfg.arch {
            Arch::Gpt2 => b.build_gpt2(with_cache)?,
            Arch::Bert => b.build_bert()?,
        }
        m.functions.push(b.f);
    }
    Ok(m)
}

/// Import a gpt2 / bert model folder whose parsed `config.json` is `value`.
pub fn import(value: &Value, config_file: &Path, dir: &Path) -> Result<(Module, Vec<ValidationIssue>), HfError> {
    let (cfg, mut issues) =
        parse_config(value).map_err(|issues| HfError::InvalidConfig { file: config_file.to_path_buf(), issues })?;
    let ckpt = crate::weights::open_checkpoint(dir)?;
    let (plan, prefix, warnings) = check_checkpoint(&cfg, &ckpt)?;
    issues.extend(warnings);
    let module = lower(&cfg, &plan, prefix)?;
    if let Err(errors) = ferrumc_ir::verify::verify_module(&module) {
        return Err(HfError::Verify {
            errors: errors.iter().map(|e| ferrumc_ir::verify::describe(&module, e)).collect(),
        });
    }
    Ok((module, issues))
}
