//! Checkpoint checks: missing, extra and mis-shaped tensors, bad dtypes, lying headers,
//! sharded indexes with escaping paths and symlinks.

mod common;

use common::{random_checkpoint, tiny_config, write_model, write_safetensors, TempDir};
use ferrumc_hf::{import_hf, HfError};
use safetensors::Dtype;
use serde_json::json;

fn err_text(dir: &std::path::Path) -> (HfError, String) {
    match import_hf(dir) {
        Ok(_) => panic!("import of {} should fail", dir.display()),
        Err(e) => {
            let s = e.to_string();
            (e, s)
        }
    }
}

#[test]
fn missing_extra_and_misshaped_tensors_are_all_named() {
    let dir = TempDir::new("wcheck");
    let c = tiny_config("llama");
    let mut t = random_checkpoint(&c, Dtype::F32, 3);
    t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight");
    for x in t.iter_mut() {
        if x.0 == "model.layers.0.self_attn.k_proj.weight" {
            x.2 = vec![32, 32];
            x.3 = vec![0; 32 * 32 * 4];
        }
        if x.0 == "model.norm.weight" {
            x.1 = Dtype::I32;
        }
    }
    t.push(("model.layers.0.self_attn.q_proj.bias".into(), Dtype::F32, vec![32], vec![0; 128]));
    write_model(dir.path(), &c, &t);
    let (e, s) = err_text(dir.path());
    let HfError::Weights { problems } = e else { panic!("{s}") };
    assert_eq!(problems.len(), 4, "{s}");
    assert!(s.contains("`model.layers.1.mlp.up_proj.weight`") && s.contains("missing"), "{s}");
    assert!(s.contains("`model.layers.0.self_attn.k_proj.weight`") && s.contains("[32, 32]") && s.contains("[16, 32]"));
    assert!(s.contains("`model.layers.0.self_attn.q_proj.bias`") && s.contains("extra"));
    assert!(s.contains("`model.norm.weight`") && s.contains("I32"));
    assert!(s.contains("model.safetensors"));
}

#[test]
fn ignorable_extras_are_warnings() {
    let dir = TempDir::new("wwarn");
    let mut c = tiny_config("llama");
    c["tie_word_embeddings"] = json!(true);
    let mut t = random_checkpoint(&c, Dtype::F32, 3);
    t.push(("lm_head.weight".into(), Dtype::F32, vec![40, 32], vec![0; 40 * 32 * 4]));
    t.push(("model.layers.0.self_attn.rotary_emb.inv_freq".into(), Dtype::F32, vec![4], vec![0; 16]));
    write_model(dir.path(), &c, &t);
    let (m, issues) = import_hf(dir.path()).unwrap();
    assert_eq!(issues.len(), 2, "{issues:?}");
    assert!(m.weight_decl("lm_head.weight").is_none());
}

#[test]
fn lying_headers_are_rejected_naming_the_file() {
    let dir = TempDir::new("wlie");
    let c = tiny_config("llama");
    write_model(dir.path(), &c, &random_checkpoint(&c, Dtype::F32, 3));
    let path = dir.path().join("model.safetensors");
    // A header whose offsets reach past the end of the file.
    let header = br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[40,32],"data_offsets":[0,999999]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&path, &bytes).unwrap();
    let (e, s) = err_text(dir.path());
    assert!(matches!(e, HfError::Safetensors { .. }), "{s}");
    assert!(s.contains("model.safetensors"), "{s}");
    // Overlapping tensors.
    let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 24]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(err_text(dir.path()).0, HfError::Safetensors { .. }));
    // A header length larger than the file; a truncated file.
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(err_text(dir.path()).0, HfError::Safetensors { .. }));
    std::fs::write(&path, b"abc").unwrap();
    assert!(matches!(err_text(dir.path()).0, HfError::Safetensors { .. }));
}

fn write_sharded(dir: &std::path::Path, map_override: Option<(&str, &str)>) {
    let c = tiny_config("llama");
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let t = random_checkpoint(&c, Dtype::F32, 5);
    let (a, b): (Vec<_>, Vec<_>) = t.into_iter().partition(|x| x.0.contains("layers.0") || x.0.contains("embed"));
    write_safetensors(&dir.join("model-00001-of-00002.safetensors"), &a);
    write_safetensors(&dir.join("model-00002-of-00002.safetensors"), &b);
    let mut map = serde_json::Map::new();
    for x in &a {
        map.insert(x.0.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for x in &b {
        map.insert(x.0.clone(), json!("model-00002-of-00002.safetensors"));
    }
    if let Some((k, v)) = map_override {
        map.insert(k.to_string(), json!(v));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_checkpoints_import() {
    let dir = TempDir::new("wshard");
    write_sharded(dir.path(), None);
    let (m, _) = import_hf(dir.path()).unwrap();
    let src = &m.weight_decl("model.norm.weight").unwrap().source;
    assert!(
        matches!(src, ferrumc_ir::WeightSource::Safetensors { file, .. } if file == "model-00002-of-00002.safetensors")
    );
}

#[test]
fn index_paths_may_not_escape() {
    for bad in ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""] {
        let dir = TempDir::new("wesc");
        write_sharded(dir.path(), Some(("model.norm.weight", bad)));
        let (e, s) = err_text(dir.path());
        assert!(matches!(e, HfError::Path { .. }), "{bad}: {s}");
        assert!(s.contains("model.safetensors.index.json"), "{s}");
    }
}

#[cfg(unix)]
#[test]
fn symlinks_may_not_escape() {
    let outside = TempDir::new("woutside");
    let dir = TempDir::new("wsym");
    write_sharded(dir.path(), None);
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    let target = outside.path().join("real.safetensors");
    std::fs::rename(&shard, &target).unwrap();
    std::os::unix::fs::symlink(&target, &shard).unwrap();
    let (e, s) = err_text(dir.path());
    assert!(matches!(e, HfError::Path { .. }), "{s}");
    assert!(s.contains("symlink escape") && s.contains("model-00002-of-00002.safetensors"), "{s}");
    // A symlink that stays inside the folder is fine.
    std::fs::remove_file(&shard).unwrap();
    std::fs::rename(&target, dir.path().join("real.safetensors")).unwrap();
    std::os::unix::fs::symlink("real.safetensors", &shard).unwrap();
    assert!(import_hf(dir.path()).is_ok());
}

#[test]
fn index_entries_must_exist_in_their_shard() {
    let dir = TempDir::new("wmap");
    write_sharded(dir.path(), Some(("model.norm.weight", "model-00001-of-00002.safetensors")));
    let (e, s) = err_text(dir.path());
    assert!(matches!(e, HfError::Weights { .. }), "{s}");
    assert!(s.contains("`model.norm.weight`") && s.contains("model-00001-of-00002.safetensors"), "{s}");
}

#[test]
fn config_errors_block_import_and_name_the_file() {
    let dir = TempDir::new("wcfg");
    let mut c = tiny_config("llama");
    c["num_key_value_heads"] = json!(3);
    c["vocab_size"] = json!(0);
    std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    let (e, s) = err_text(dir.path());
    let HfError::InvalidConfig { issues, .. } = e else { panic!("{s}") };
    assert_eq!(issues.len(), 2, "{s}");
    assert!(s.contains("config.json") && s.contains("num_key_value_heads") && s.contains("vocab_size"));
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    assert!(matches!(err_text(dir.path()).0, HfError::Json { .. }));
    let empty = TempDir::new("wnone");
    assert!(matches!(err_text(empty.path()).0, HfError::Io { .. }));
    std::fs::write(empty.path().join("config.json"), tiny_config("llama").to_string()).unwrap();
    let (e, s) = err_text(empty.path());
    assert!(matches!(e, HfError::Path { .. }) && s.contains("model.safetensors"), "{s}");
}
