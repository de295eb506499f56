//! config.json validation: every problem class, reported all at once, with paths.

mod common;

use common::tiny_config;
use ferrumc_hf::{parse_config, validate_config, HiddenAct, ValidationIssue, ValidationSeverity};
use serde_json::{json, Value};

fn errors(issues: &[ValidationIssue]) -> Vec<&ValidationIssue> {
    issues.iter().filter(|i| i.severity.is_blocking()).collect()
}

fn has(issues: &[ValidationIssue], path: &str, category: &str) -> bool {
    issues.iter().any(|i| i.config_path == path && i.category == category && i.severity.is_blocking())
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[test]
fn a_good_config_parses_with_defaults() {
    let v = without(without(tiny_config("llama"), "num_key_value_heads"), "rope_theta");
    let (cfg, issues) = parse_config(&v).unwrap();
    assert!(errors(&issues).is_empty(), "{issues:?}");
    assert_eq!(cfg.num_key_value_heads, 4);
    assert_eq!(cfg.head_dim, 8);
    assert_eq!(cfg.rope_theta, 10000.0);
    assert_eq!(cfg.hidden_act, HiddenAct::Silu);
    assert!(!cfg.qkv_bias());
    // Extra, unknown fields are tolerated.
    let v = with(tiny_config("qwen2"), "some_future_field", json!({"x": [1, 2]}));
    let (cfg, _) = parse_config(&v).unwrap();
    assert!(cfg.qkv_bias() && !cfg.o_bias());
}

#[test]
fn missing_fields_are_all_reported() {
    let v = without(without(without(tiny_config("llama"), "hidden_size"), "vocab_size"), "model_type");
    let issues = validate_config(&v);
    assert!(has(&issues, "hidden_size", "missing_field"), "{issues:#?}");
    assert!(has(&issues, "vocab_size", "missing_field"));
    assert!(has(&issues, "model_type", "missing_field"));
    assert!(issues.iter().all(|i| !i.description.is_empty() && i.suggested_fix.is_some()));
    assert!(parse_config(&v).is_err());
}

#[test]
fn bad_sizes_are_reported() {
    let mut v = tiny_config("llama");
    v["hidden_size"] = json!(0);
    v["num_hidden_layers"] = json!(-3);
    v["intermediate_size"] = json!(48.5);
    v["vocab_size"] = json!(1u64 << 25);
    v["num_attention_heads"] = json!("4");
    let issues = validate_config(&v);
    assert!(has(&issues, "hidden_size", "invalid_value"), "{issues:#?}");
    assert!(has(&issues, "num_hidden_layers", "invalid_value"));
    assert!(has(&issues, "intermediate_size", "invalid_value"));
    assert!(has(&issues, "vocab_size", "invalid_value"));
    assert!(has(&issues, "num_attention_heads", "invalid_type"));
    assert_eq!(errors(&issues).len(), 5);

    let issues = validate_config(&with(tiny_config("llama"), "hidden_size", json!(1u64 << 21)));
    assert!(has(&issues, "hidden_size", "invalid_value"));
    let issues = validate_config(&with(tiny_config("llama"), "num_hidden_layers", json!(20_000)));
    assert!(has(&issues, "num_hidden_layers", "invalid_value"));
}

#[test]
fn head_divisibility_is_checked() {
    // hidden not divisible by heads, no head_dim.
    let issues = validate_config(&with(tiny_config("llama"), "num_attention_heads", json!(5)));
    assert!(has(&issues, "num_attention_heads", "incompatible_dimensions"), "{issues:#?}");
    // ... but fine with an explicit head_dim.
    let mut v = with(tiny_config("llama"), "num_attention_heads", json!(6));
    v["num_key_value_heads"] = json!(3);
    v["head_dim"] = json!(8);
    let (cfg, _) = parse_config(&v).unwrap();
    assert_eq!(cfg.head_dim, 8);
    // kv heads must divide heads.
    let issues = validate_config(&with(tiny_config("llama"), "num_key_value_heads", json!(3)));
    assert!(has(&issues, "num_key_value_heads", "incompatible_dimensions"));
}

#[test]
fn unsupported_things_are_reported_together() {
    let mut v = tiny_config("gpt_neox");
    v["hidden_act"] = json!("relu2");
    v["rope_scaling"] = json!({"type": "yarn", "factor": 4.0});
    v["num_key_value_heads"] = json!(3);
    let issues = validate_config(&v);
    assert!(has(&issues, "model_type", "unsupported"), "{issues:#?}");
    assert!(issues.iter().any(|i| i.config_path == "model_type" && i.description.contains("llama")));
    assert!(issues.iter().any(|i| i.config_path == "model_type" && i.description.contains("gpt2, bert")));
    assert!(has(&issues, "hidden_act", "unsupported"));
    assert!(has(&issues, "rope_scaling.type", "unsupported"));
    assert!(has(&issues, "num_key_value_heads", "incompatible_dimensions"));
    assert_eq!(errors(&issues).len(), 4);
}

#[test]
fn llama3_rope_scaling_is_parsed_and_checked() {
    let v = with(
        tiny_config("llama"),
        "rope_scaling",
        json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}),
    );
    let (cfg, _) = parse_config(&v).unwrap();
    let s = cfg.rope_scaling.unwrap();
    assert_eq!((s.factor, s.original_max_position_embeddings), (8.0, 8192));
    let v = with(tiny_config("llama"), "rope_scaling", json!({"rope_type": "llama3", "factor": -1.0}));
    let issues = validate_config(&v);
    assert!(has(&issues, "rope_scaling.factor", "invalid_value"), "{issues:#?}");
    assert!(has(&issues, "rope_scaling.low_freq_factor", "missing_field"));
    assert!(has(&issues, "rope_scaling.original_max_position_embeddings", "missing_field"));
    // null rope_scaling and the default type are fine.
    assert!(parse_config(&with(tiny_config("llama"), "rope_scaling", Value::Null)).is_ok());
    assert!(parse_config(&with(tiny_config("llama"), "rope_scaling", json!({"rope_type": "default"}))).is_ok());
}

#[test]
fn warnings_do_not_block() {
    let mut v = without(tiny_config("mistral"), "max_position_embeddings");
    v["sliding_window"] = json!(16);
    let (cfg, issues) = parse_config(&v).unwrap();
    assert_eq!(cfg.max_position_embeddings, 2048);
    assert!(issues
        .iter()
        .any(|i| i.config_path == "max_position_embeddings" && i.severity == ValidationSeverity::Warning));
    assert!(issues.iter().any(|i| i.config_path == "sliding_window" && i.severity == ValidationSeverity::Warning));
}

#[test]
fn non_objects_are_critical() {
    let issues = validate_config(&json!([1, 2, 3]));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].severity, ValidationSeverity::Critical);
}

#[test]
fn gemma_and_phi3_specifics() {
    // Gemma ties lm_head to the embeddings unless told otherwise; the others do not.
    let (cfg, _) = parse_config(&without(tiny_config("gemma"), "tie_word_embeddings")).unwrap();
    assert!(cfg.tie_word_embeddings && cfg.gemma_style() && !cfg.fused_projections());
    let (cfg, _) = parse_config(&without(tiny_config("phi3"), "tie_word_embeddings")).unwrap();
    assert!(!cfg.tie_word_embeddings && cfg.fused_projections() && !cfg.gemma_style());
    // gelu tanh under either key.
    let v = with(without(tiny_config("gemma"), "hidden_act"), "hidden_activation", json!("gelu_pytorch_tanh"));
    assert_eq!(parse_config(&v).unwrap().0.hidden_act, HiddenAct::GeluTanh);
    // Partial rotary embeddings are refused; a factor of 1 is fine.
    assert!(parse_config(&with(tiny_config("phi3"), "partial_rotary_factor", json!(1.0))).is_ok());
    let issues = validate_config(&with(tiny_config("phi3"), "partial_rotary_factor", json!(0.75)));
    assert!(has(&issues, "partial_rotary_factor", "unsupported"), "{issues:#?}");
    // phi3 longrope scaling is refused.
    let issues = validate_config(&with(tiny_config("phi3"), "rope_scaling", json!({"type": "longrope"})));
    assert!(has(&issues, "rope_scaling.type", "unsupported"), "{issues:#?}");
    // phi3 sliding windows are not lowered: a warning below max_position_embeddings.
    let (_, issues) = parse_config(&with(tiny_config("phi3"), "sliding_window", json!(16))).unwrap();
    assert!(issues.iter().any(|i| i.config_path == "sliding_window" && !i.severity.is_blocking()));
}
