//! gpt2 / bert specifics beyond the parity fixtures (`tests/parity.rs`): the bert
//! attention mask is really applied, unused pooler tensors are warnings, and
//! unsupported configuration switches are refused naming the field.

mod common;

use common::TempDir;
use ferrumc_hf::{import_hf, HfError};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Tensor};
use std::path::{Path, PathBuf};

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf").join(arch)
}

fn npy(path: &Path) -> Tensor {
    read_npy_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Max |diff| per batch row between two `[B, S, H]` tensors.
fn row_diffs(got: &Tensor, want: &Tensor) -> Vec<f64> {
    let per_row = got.shape[1..].iter().product::<usize>();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    g.chunks(per_row)
        .zip(w.chunks(per_row))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max))
        .collect()
}

#[test]
fn bert_attention_mask_hides_masked_keys() {
    let dir = fixture("bert");
    let (m, _) = import_hf(&dir).unwrap();
    let ids = npy(&dir.join("input_ids.npy"));
    let (batch, seq) = (ids.shape[0], ids.shape[1]);
    // Mask out the last token of batch row 0 only.
    let mut mask = vec![1i64; batch * seq];
    mask[seq - 1] = 0;
    let inputs = vec![
        ("input_ids".to_string(), ids),
        ("token_type_ids".to_string(), npy(&dir.join("token_type_ids.npy"))),
        ("attention_mask".to_string(), Tensor::from_i64(DType::I64, vec![batch, seq], mask).unwrap()),
    ];
    let out = run_function(&m, "forward", &inputs, &FileWeights::new(&dir)).unwrap();
    let hidden = &out.iter().find(|(n, _)| n == "hidden").unwrap().1;
    let diffs = row_diffs(hidden, &npy(&dir.join("hidden.npy")));
    assert!(diffs[1] <= 1e-4, "the unmasked row moved by {:e}", diffs[1]);
    assert!(diffs[0] > 1e-2, "masking a key moved row 0 by only {:e}", diffs[0]);
}

#[test]
fn bert_pooler_tensors_are_warnings_not_errors() {
    let (m, warnings) = import_hf(&fixture("bert")).unwrap();
    assert!(warnings.iter().any(|w| w.config_path == "pooler.dense.weight" && !w.severity.is_blocking()));
    assert!(m.weight_decl("pooler.dense.weight").is_none());
    let f = m.function("forward").unwrap();
    let params: Vec<&str> = f.params().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(params, ["input_ids", "token_type_ids", "attention_mask"]);
}

/// A copy of a fixture folder with `config.json` edited by `edit`.
fn edited(arch: &str, edit: impl FnOnce(&mut serde_json::Value)) -> TempDir {
    let src = fixture(arch);
    let dir = TempDir::new(arch);
    std::fs::copy(src.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    dir
}

fn config_error(dir: &Path) -> String {
    match import_hf(dir) {
        Err(e @ HfError::InvalidConfig { .. }) => e.to_string(),
        Err(e) => panic!("expected a configuration error, got: {e}"),
        Ok(_) => panic!("imported an unsupported configuration"),
    }
}

#[test]
fn unsupported_switches_are_refused_naming_the_field() {
    let d = edited("bert", |c| c["position_embedding_type"] = "relative_key".into());
    assert!(config_error(d.path()).contains("position_embedding_type"));
    let d = edited("bert", |c| c["is_decoder"] = true.into());
    assert!(config_error(d.path()).contains("is_decoder"));
    let d = edited("gpt2", |c| c["add_cross_attention"] = true.into());
    assert!(config_error(d.path()).contains("add_cross_attention"));
    let d = edited("gpt2", |c| c["activation_function"] = "swiglu".into());
    assert!(config_error(d.path()).contains("activation_function"));
    let d = edited("gpt2", |c| c["n_head"] = 5.into());
    assert!(config_error(d.path()).contains("not divisible"));
}

#[test]
fn gpt2_with_a_wrong_n_inner_names_the_tensor() {
    let d = edited("gpt2", |c| c["n_inner"] = 256.into());
    let Err(err) = import_hf(d.path()) else { panic!("imported a checkpoint whose c_fc shape is wrong") };
    let err = err.to_string();
    assert!(err.contains("mlp.c_fc.weight") && err.contains("[64, 256]"), "{err}");
}
