//! `config.json`: validation ([`validate_config`]) and the typed [`DecoderConfig`].
//!
//! The document is read as a `serde_json::Value`, so unknown fields are ignored. Every
//! problem is collected (never just the first) as a [`ValidationIssue`] with its JSON
//! path; errors block the import, warnings do not.
//!
//! Bounds treated as absurd (an error): `hidden_size` or `intermediate_size` above 2^20,
//! more than 10^4 layers, a vocabulary above 2^24, more than 2^14 heads, `head_dim`
//! above 2^14, `max_position_embeddings` above 2^24.

use crate::{ValidationIssue, ValidationSeverity};
use serde_json::{Map, Value};

/// The `model_type`s the decoder lowering supports.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3"];

/// Every `model_type` `import_hf` accepts: the decoders above plus gpt2 and bert, which have
/// their own config reading in `lower_gpt2_bert`. Used in messages.
pub const ALL_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2", "bert"];

/// The `hidden_act` values the MLP lowering supports.
pub const SUPPORTED_ACTS: &[&str] = &["silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new"];

const MAX_HIDDEN: u64 = 1 << 20;
const MAX_LAYERS: u64 = 10_000;
const MAX_VOCAB: u64 = 1 << 24;
const MAX_HEADS: u64 = 1 << 14;
const MAX_HEAD_DIM: u64 = 1 << 14;
const MAX_POSITIONS: u64 = 1 << 24;

/// MLP activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `silu` / `swish`: the gate goes through SiLU (fused as `silu_mul`).
    Silu,
    /// `gelu`: exact erf GELU.
    Gelu,
    /// `gelu_pytorch_tanh` / `gelu_new`: tanh approximation.
    GeluTanh,
}

/// Llama-3 style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: u64,
}

/// A decoder-only transformer configuration, as far as the lowering needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v/o projections (llama/mistral/qwen3 `attention_bias`).
    pub attention_bias: bool,
    /// Bias on the MLP projections (llama `mlp_bias`).
    pub mlp_bias: bool,
    pub hidden_act: HiddenAct,
}

impl DecoderConfig {
    /// q/k/v projections carry a bias: always for qwen2, else `attention_bias`.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// The output projection carries a bias (`attention_bias`; never for qwen2).
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }

    /// Per-head RMSNorm on q and k before RoPE (qwen3).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// Gemma: RMSNorm scales by `1 + w`, embeddings are multiplied by `sqrt(hidden_size)`.
    pub fn gemma_style(&self) -> bool {
        self.model_type == "gemma"
    }

    /// Phi-3: fused `qkv_proj` (`[q; k; v]` rows) and `gate_up_proj` (`[gate; up]` rows).
    pub fn fused_projections(&self) -> bool {
        self.model_type == "phi3"
    }
}

/// Collects issues while reading fields.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    issues: Vec<ValidationIssue>,
}

fn err(category: &str, path: &str, description: String, fix: Option<String>) -> ValidationIssue {
    ValidationIssue::new(ValidationSeverity::Error, category, path, description, fix)
}

fn warn(category: &str, path: &str, description: String, fix: Option<String>) -> ValidationIssue {
    ValidationIssue::new(ValidationSeverity::Warning, category, path, description, fix)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Reader<'a> {
    /// The field's value, treating JSON `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// A positive integer size no larger than `max`. `None` (with an issue) when missing
    /// or invalid; `None` without an issue when absent and `required` is false.
    fn size(&mut self, key: &str, required: bool, max: u64) -> Option<usize> {
        let Some(v) = self.get(key) else {
            if required {
                self.issues.push(err(
                    "missing_field",
                    key,
                    format!("required field `{key}` is missing"),
                    Some(format!("add `\"{key}\": <positive integer>` to config.json")),
                ));
            }
            return None;
        };
        let n = match v {
            Value::Number(n) => n,
            other => {
                self.issues.push(err(
                    "invalid_type",
                    key,
                    format!("`{key}` must be a positive integer, found {}", kind(other)),
                    Some(format!("write `{key}` as a JSON integer")),
                ));
                return None;
            }
        };
        let value = if let Some(u) = n.as_u64() {
            u
        } else if let Some(i) = n.as_i64() {
            self.issues.push(err(
                "invalid_value",
                key,
                format!("`{key}` must be positive, found {i}"),
                Some(format!("set `{key}` to a positive integer")),
            ));
            return None;
        } else {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let fix = if f.fract() == 0.0 && f > 0.0 {
                format!("write {} without a fractional part", f as u64)
            } else {
                format!("set `{key}` to a positive integer")
            };
            self.issues.push(err("invalid_value", key, format!("`{key}` must be an integer, found {n}"), Some(fix)));
            return None;
        };
        if value == 0 {
            self.issues.push(err(
                "invalid_value",
                key,
                format!("`{key}` must be positive, found 0"),
                Some(format!("set `{key}` to a positive integer")),
            ));
            return None;
        }
        if value > max {
            self.issues.push(err(
                "invalid_value",
                key,
                format!("`{key}` = {value} is absurdly large (the limit is {max})"),
                Some(format!("check `{key}`; a real model has `{key}` ≤ {max}")),
            ));
            return None;
        }
        usize::try_from(value).ok()
    }

    /// A positive finite float, `default` when absent.
    fn positive_float(&mut self, key: &str, default: f64) -> f64 {
        match self.get(key) {
            None => default,
            Some(Value::Number(n)) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f > 0.0 {
                    f
                } else {
                    self.issues.push(err(
                        "invalid_value",
                        key,
                        format!("`{key}` must be a positive finite number, found {n}"),
                        Some(format!("set `{key}` to a positive number (default {default})")),
                    ));
                    default
                }
            }
            Some(other) => {
                self.issues.push(err(
                    "invalid_type",
                    key,
                    format!("`{key}` must be a number, found {}", kind(other)),
                    Some(format!("write `{key}` as a JSON number")),
                ));
                default
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.issues.push(err(
                    "invalid_type",
                    key,
                    format!("`{key}` must be true or false, found {}", kind(other)),
                    Some(format!("write `{key}` as a JSON boolean")),
                ));
                default
            }
        }
    }
}

/// Validate a parsed `config.json`, reporting every problem found.
pub fn validate_config(config: &Value) -> Vec<ValidationIssue> {
    match parse_config(config) {
        Ok((_, issues)) | Err(issues) => issues,
    }
}

/// Validate and parse a `config.json`. `Ok` holds the config and the warnings; `Err`
/// every issue (at least one of them blocking).
pub fn parse_config(config: &Value) -> Result<(DecoderConfig, Vec<ValidationIssue>), Vec<ValidationIssue>> {
    let Some(obj) = config.as_object() else {
        return Err(vec![ValidationIssue::new(
            ValidationSeverity::Critical,
            "invalid_type",
            "",
            format!("config.json must be a JSON object, found {}", kind(config)),
            Some("use the config.json written by transformers' `save_pretrained`".into()),
        )]);
    };
    let mut r = Reader { obj, issues: Vec::new() };

    // model_type
    let model_type = match r.get("model_type") {
        None => {
            r.issues.push(err(
                "missing_field",
                "model_type",
                "required field `model_type` is missing".into(),
                Some(format!("add `\"model_type\"`, one of: {}", ALL_MODEL_TYPES.join(", "))),
            ));
            None
        }
        Some(Value::String(s)) if SUPPORTED_MODEL_TYPES.contains(&s.as_str()) => Some(s.clone()),
        Some(Value::String(s)) => {
            r.issues.push(err(
                "unsupported",
                "model_type",
                format!("model_type `{s}` is not supported (supported: {})", ALL_MODEL_TYPES.join(", ")),
                Some("import a supported architecture, or add it to the lowering (frontends/hf/src/lower.rs)".into()),
            ));
            None
        }
        Some(other) => {
            r.issues.push(err(
                "invalid_type",
                "model_type",
                format!("`model_type` must be a string, found {}", kind(other)),
                Some(format!("one of: {}", ALL_MODEL_TYPES.join(", "))),
            ));
            None
        }
    };

    let hidden = r.size("hidden_size", true, MAX_HIDDEN);
    let layers = r.size("num_hidden_layers", true, MAX_LAYERS);
    let heads = r.size("num_attention_heads", true, MAX_HEADS);
    let kv_present = r.get("num_key_value_heads").is_some();
    let kv_heads = r.size("num_key_value_heads", false, MAX_HEADS);
    let head_dim_present = r.get("head_dim").is_some();
    let head_dim_field = r.size("head_dim", false, MAX_HEAD_DIM);
    let intermediate = r.size("intermediate_size", true, MAX_HIDDEN);
    let vocab = r.size("vocab_size", true, MAX_VOCAB);
    let max_pos_present = r.get("max_position_embeddings").is_some();
    let max_pos = r.size("max_position_embeddings", false, MAX_POSITIONS);
    if !max_pos_present {
        r.issues.push(warn(
            "missing_field",
            "max_position_embeddings",
            "`max_position_embeddings` is missing; assuming 2048".into(),
            Some("add `max_position_embeddings` to config.json".into()),
        ));
    }
    let eps = r.positive_float("rms_norm_eps", 1e-6);
    let rope_theta = r.positive_float("rope_theta", 10000.0);
    // Gemma ties lm_head to the embeddings by default (its checkpoints have no lm_head).
    let tie = r.boolean("tie_word_embeddings", model_type.as_deref() == Some("gemma"));
    let attention_bias = r.boolean("attention_bias", false);
    let mlp_bias = r.boolean("mlp_bias", false);

    // hidden_act
    let act_key = if r.get("hidden_act").is_some() { "hidden_act" } else { "hidden_activation" };
    let hidden_act = match r.get(act_key) {
        None => HiddenAct::Silu,
        Some(Value::String(s)) => match s.as_str() {
            "silu" | "swish" => HiddenAct::Silu,
            "gelu" => HiddenAct::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" => HiddenAct::GeluTanh,
            other => {
                r.issues.push(err(
                    "unsupported",
                    act_key,
                    format!("activation `{other}` is not supported (supported: {})", SUPPORTED_ACTS.join(", ")),
                    Some("use a supported activation or add it to the MLP lowering".into()),
                ));
                HiddenAct::Silu
            }
        },
        Some(other) => {
            r.issues.push(err(
                "invalid_type",
                act_key,
                format!("`{act_key}` must be a string, found {}", kind(other)),
                Some(format!("one of: {}", SUPPORTED_ACTS.join(", "))),
            ));
            HiddenAct::Silu
        }
    };

    let rope_scaling = parse_rope_scaling(&mut r);

    // Partial rotary embeddings (phi3 `partial_rotary_factor`) are not lowered: only 1.
    if let Some(v) = r.get("partial_rotary_factor") {
        if v.as_f64() != Some(1.0) {
            r.issues.push(err(
                "unsupported",
                "partial_rotary_factor",
                format!("`partial_rotary_factor` = {v} is not supported (only 1.0: RoPE over the whole head_dim)"),
                Some("remove `partial_rotary_factor` or set it to 1.0".into()),
            ));
        }
    }

    // Sliding window attention is not lowered: exact only below the window.
    let sliding_active = match model_type.as_deref() {
        Some("mistral") | Some("phi3") => true,
        Some("qwen2") | Some("qwen3") => r.get("use_sliding_window").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    };
    if sliding_active {
        if let Some(w) = r.get("sliding_window").and_then(Value::as_u64) {
            if max_pos.is_none_or(|m| (w as usize) < m) {
                r.issues.push(warn(
                    "unsupported",
                    "sliding_window",
                    format!(
                        "sliding-window attention (window {w}) is not lowered; attention is full-causal, which is \
                         exact only for sequences of at most {w} tokens"
                    ),
                    Some("keep prompts plus generated tokens within the window".into()),
                ));
            }
        }
    }

    // Cross-field checks.
    if let (Some(k), Some(h)) = (kv_heads, heads) {
        if h % k != 0 {
            r.issues.push(err(
                "incompatible_dimensions",
                "num_key_value_heads",
                format!("num_attention_heads ({h}) is not a multiple of num_key_value_heads ({k})"),
                Some(format!("set num_key_value_heads to a divisor of {h}")),
            ));
        }
    }
    if kv_present && kv_heads.is_none() {
        // already reported
    }
    let head_dim = match (head_dim_field, head_dim_present, hidden, heads) {
        (Some(d), _, _, _) => Some(d),
        (None, true, _, _) => None,
        (None, false, Some(hs), Some(h)) => {
            if hs % h != 0 {
                r.issues.push(err(
                    "incompatible_dimensions",
                    "num_attention_heads",
                    format!(
                        "hidden_size ({hs}) is not divisible by num_attention_heads ({h}) and `head_dim` is absent"
                    ),
                    Some("set num_attention_heads to a divisor of hidden_size, or give `head_dim` explicitly".into()),
                ));
                None
            } else {
                Some(hs / h)
            }
        }
        _ => None,
    };
    if let Some(d) = head_dim {
        if d % 2 != 0 {
            r.issues.push(err(
                "incompatible_dimensions",
                "head_dim",
                format!("head_dim ({d}) must be even for rotary embeddings"),
                Some("check hidden_size / num_attention_heads or `head_dim`".into()),
            ));
        }
    }

    let blocking = r.issues.iter().any(|i| i.severity.is_blocking());
    let issues = r.issues;
    match (model_type, hidden, layers, heads, head_dim, intermediate, vocab) {
        (
            Some(model_type),
            Some(hidden_size),
            Some(num_hidden_layers),
            Some(num_attention_heads),
            Some(head_dim),
            Some(intermediate_size),
            Some(vocab_size),
        ) if !blocking => {
            let cfg = DecoderConfig {
                model_type,
                hidden_size,
                num_hidden_layers,
                num_attention_heads,
                num_key_value_heads: kv_heads.unwrap_or(num_attention_heads),
                head_dim,
                intermediate_size,
                vocab_size,
                rms_norm_eps: eps,
                rope_theta,
                rope_scaling,
                max_position_embeddings: max_pos.unwrap_or(2048),
                tie_word_embeddings: tie,
                attention_bias,
                mlp_bias,
                hidden_act,
            };
            Ok((cfg, issues))
        }
        _ => {
            let mut issues = issues;
            if !issues.iter().any(|i| i.severity.is_blocking()) {
                // Defensive: never return Err without a blocking issue.
                issues.push(err("invalid_value", "", "the configuration is incomplete".into(), None));
            }
            Err(issues)
        }
    }
}

fn parse_rope_scaling(r: &mut Reader<'_>) -> Option<RopeScaling> {
    let v = r.get("rope_scaling")?;
    let Some(obj) = v.as_object() else {
        r.issues.push(err(
            "invalid_type",
            "rope_scaling",
            format!("`rope_scaling` must be an object or null, found {}", kind(v)),
            Some("remove `rope_scaling` or give a llama3 scaling object".into()),
        ));
        return None;
    };
    let ty = obj.get("rope_type").or_else(|| obj.get("type")).and_then(Value::as_str).unwrap_or("");
    let ty_path = if obj.contains_key("rope_type") { "rope_scaling.rope_type" } else { "rope_scaling.type" };
    match ty {
        "default" => None,
        "llama3" => {
            let mut field = |name: &str, integer: bool| -> Option<f64> {
                let path = format!("rope_scaling.{name}");
                match obj.get(name).filter(|v| !v.is_null()) {
                    None => {
                        r.issues.push(err(
                            "missing_field",
                            &path,
                            format!("llama3 rope scaling needs `{name}`"),
                            Some(format!("add `{name}` to rope_scaling")),
                        ));
                        None
                    }
                    Some(Value::Number(n)) => {
                        let f = n.as_f64().unwrap_or(f64::NAN);
                        if !(f.is_finite() && f > 0.0) || (integer && f.fract() != 0.0) {
                            r.issues.push(err(
                                "invalid_value",
                                &path,
                                format!(
                                    "`{name}` must be a positive {}, found {n}",
                                    if integer { "integer" } else { "finite number" }
                                ),
                                Some(format!("fix `{path}`")),
                            ));
                            None
                        } else {
                            Some(f)
                        }
                    }
                    Some(other) => {
                        r.issues.push(err(
                            "invalid_type",
                            &path,
                            format!("`{name}` must be a number, found {}", kind(other)),
                            Some(format!("fix `{path}`")),
                        ));
                        None
                    }
                }
            };
            let factor = field("factor", false);
            let low = field("low_freq_factor", false);
            let high = field("high_freq_factor", false);
            let orig = field("original_max_position_embeddings", true);
            let (factor, low, high, orig) = (factor?, low?, high?, orig?);
            if high <= low {
                r.issues.push(err(
                    "invalid_value",
                    "rope_scaling.high_freq_factor",
                    format!("high_freq_factor ({high}) must exceed low_freq_factor ({low})"),
                    Some("Llama 3.x uses low_freq_factor 1 and high_freq_factor 4".into()),
                ));
                return None;
            }
            Some(RopeScaling {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig as u64,
            })
        }
        other => {
            let shown = if other.is_empty() { "(none given)".to_string() } else { format!("`{other}`") };
            r.issues.push(err(
                "unsupported",
                ty_path,
                format!("rope scaling type {shown} is not supported (supported: default, llama3)"),
                Some("remove `rope_scaling` or use a llama3 scaling".into()),
            ));
            None
        }
    }
}
