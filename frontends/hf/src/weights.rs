//! The safetensors checkpoint: locating shards, reading headers, and checking every
//! tensor against what the configuration implies.
//!
//! * `model.safetensors.index.json` (sharded) wins over `model.safetensors`. Its
//!   `weight_map` maps tensor name → shard file; every shard must be a relative path with
//!   no `..` or root component that, once canonicalized (symlinks resolved), still lies
//!   inside the canonicalized model folder.
//! * Only headers are read: each file is memory-mapped and handed to
//!   `SafeTensors::read_metadata`, which rejects lying headers (offsets past the end,
//!   overlapping or non-contiguous tensors, sizes that disagree with dtype × shape);
//!   its errors are reported naming the file. Tensor data is never copied.
//! * [`check_checkpoint`] compares names, shapes and dtypes (f32, f16, bf16) with the
//!   config before anything is built and reports every missing, extra or mis-shaped
//!   tensor (naming the tensor and the file) at once. Known harmless extras are warnings:
//!   `*.rotary_emb.inv_freq` buffers and `lm_head.weight` when embeddings are tied.

use crate::config::DecoderConfig;
use crate::{HfError, ValidationIssue, ValidationSeverity};
use ferrumc_ir::DType;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// One tensor of the checkpoint, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The file holding it, relative to the model folder (as written in the index).
    pub file: String,
    /// The safetensors dtype name (`F32`, `BF16`, …).
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// Every tensor of a checkpoint, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub tensors: BTreeMap<String, TensorEntry>,
}

/// A checked weight, ready to become a `WeightDecl`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWeight {
    pub name: String,
    pub file: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// The checked weights by name.
pub type WeightPlan = BTreeMap<String, PlannedWeight>;

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// Confine a shard path to the model folder; returns its canonical path.
fn confine(dir: &Path, shown: &Path, rel: &str) -> Result<PathBuf, HfError> {
    let bad = |message: String| HfError::Path { file: shown.to_path_buf(), message };
    if rel.is_empty() {
        return Err(bad("a shard file name is empty".into()));
    }
    if rel.contains('\0') {
        return Err(bad(format!("shard file `{}` contains a NUL byte", rel.escape_debug())));
    }
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(bad(format!(
                    "shard file `{rel}` has a `..` component; shards must lie inside the model folder"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(format!(
                    "shard file `{rel}` is an absolute path; shards are relative to the model folder"
                )))
            }
        }
    }
    let base = dir.canonicalize().map_err(|source| HfError::Io { file: dir.to_path_buf(), source })?;
    let full = base.join(rel);
    let canon = full.canonicalize().map_err(|source| HfError::Io { file: full.clone(), source })?;
    if !canon.starts_with(&base) {
        return Err(bad(format!(
            "shard file `{rel}` resolves to `{}`, outside the model folder `{}` (symlink escape)",
            canon.display(),
            base.display()
        )));
    }
    Ok(canon)
}

/// Read the header of one safetensors file (memory-mapped; data is not touched).
fn read_header(path: &Path, shown: &Path) -> Result<Vec<(String, String, Vec<usize>)>, HfError> {
    let io = |source| HfError::Io { file: shown.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(HfError::Path { file: shown.to_path_buf(), message: "not a regular file".into() });
    }
    if meta.len() < 8 {
        return Err(HfError::Safetensors {
            file: shown.to_path_buf(),
            message: format!("the file is {} bytes long, too short for a header", meta.len()),
        });
    }
    // SAFETY: read-only map; the checkpoint is treated as immutable while importing.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| HfError::Safetensors { file: shown.to_path_buf(), message: e.to_string() })?;
    let mut out: Vec<(String, String, Vec<usize>)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, format!("{:?}", info.dtype), info.shape.clone()))
        .collect();
    out.sort();
    Ok(out)
}

/// Locate and read the checkpoint headers of a model folder.
pub fn open_checkpoint(dir: &Path) -> Result<Checkpoint, HfError> {
    let index_path = dir.join(INDEX_FILE);
    let mut tensors = BTreeMap::new();
    if index_path.exists() {
        let text = crate::read_text(&index_path)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| HfError::Json { file: index_path.clone(), message: e.to_string() })?;
        let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| HfError::Index {
            file: index_path.clone(),
            message: "`weight_map` is missing or not an object".into(),
        })?;
        let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| HfError::Index {
                file: index_path.clone(),
                message: format!("weight_map entry `{tensor}` is not a file name string"),
            })?;
            by_file.entry(file.to_string()).or_default().push(tensor.clone());
        }
        let mut problems = Vec::new();
        for (file, names) in &by_file {
            let canon = confine(dir, &index_path, file)?;
            let shown = dir.join(file);
            let header = read_header(&canon, &shown)?;
            let in_file: BTreeMap<&str, (&String, &Vec<usize>)> =
                header.iter().map(|(n, d, s)| (n.as_str(), (d, s))).collect();
            for name in names {
                match in_file.get(name.as_str()) {
                    Some((dtype, shape)) => {
                        tensors.insert(
                            name.clone(),
                            TensorEntry { file: file.clone(), dtype: (*dtype).clone(), shape: (*shape).clone() },
                        );
                    }
                    None => problems.push(format!(
                        "tensor `{name}`: {} maps it to `{file}`, but `{}` has no such tensor",
                        INDEX_FILE,
                        shown.display()
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(HfError::Weights { problems });
        }
    } else {
        let path = dir.join(SINGLE_FILE);
        if !path.exists() {
            return Err(HfError::Path {
                file: dir.to_path_buf(),
                message: format!("neither `{SINGLE_FILE}` nor `{INDEX_FILE}` exists in the model folder"),
            });
        }
        let canon = confine(dir, &path, SINGLE_FILE)?;
        for (name, dtype, shape) in read_header(&canon, &path)? {
            tensors.insert(name, TensorEntry { file: SINGLE_FILE.to_string(), dtype, shape });
        }
    }
    Ok(Checkpoint { dir: dir.to_path_buf(), tensors })
}

/// The tensors a config implies, with their shapes, in a stable order.
pub fn expected_tensors(cfg: &DecoderConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let d = cfg.head_dim;
    let q = cfg.num_attention_heads * d;
    let kv = cfg.num_key_value_heads * d;
    let i = cfg.intermediate_size;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab_size, h])];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
        push(format!("{p}.input_layernorm.weight"), vec![h]);
        // phi3 fuses q/k/v into `qkv_proj` (rows `[q; k; v]`) and gate/up into `gate_up_proj`.
        let fused = cfg.fused_projections();
        let attn_projs: &[(&str, usize)] =
            if fused { &[("qkv_proj", q + 2 * kv)] } else { &[("q_proj", q), ("k_proj", kv), ("v_proj", kv)] };
        for &(proj, rows) in attn_projs {
            push(format!("{p}.self_attn.{proj}.weight"), vec![rows, h]);
            if cfg.qkv_bias() {
                push(format!("{p}.self_attn.{proj}.bias"), vec![rows]);
            }
        }
        push(format!("{p}.self_attn.o_proj.weight"), vec![h, q]);
        if cfg.o_bias() {
            push(format!("{p}.self_attn.o_proj.bias"), vec![h]);
        }
        if cfg.qk_norm() {
            push(format!("{p}.self_attn.q_norm.weight"), vec![d]);
            push(format!("{p}.self_attn.k_norm.weight"), vec![d]);
        }
        push(format!("{p}.post_attention_layernorm.weight"), vec![h]);
        let mlp_projs = if fused {
            vec![("gate_up_proj", vec![2 * i, h]), ("down_proj", vec![h, i])]
        } else {
            vec![("gate_proj", vec![i, h]), ("up_proj", vec![i, h]), ("down_proj", vec![h, i])]
        };
        for (proj, shape) in mlp_projs {
            let rows = shape[0];
            push(format!("{p}.mlp.{proj}.weight"), shape);
            if cfg.mlp_bias {
                push(format!("{p}.mlp.{proj}.bias"), vec![rows]);
            }
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}

/// Check every expected tensor against the checkpoint: present, stored as F32/F16/BF16, and
/// of the shape the config implies. Problems are appended (all of them, each naming the
/// tensor and its file); the tensors that pass are planned as weights.
pub(crate) fn plan_expected(
    ckpt: &Checkpoint,
    expected: &[(String, Vec<usize>)],
    problems: &mut Vec<String>,
) -> WeightPlan {
    let shown = |file: &str| ckpt.dir.join(file).display().to_string();
    let mut plan = WeightPlan::new();
    for (name, shape) in expected {
        let Some(entry) = ckpt.tensors.get(name) else {
            problems.push(format!("tensor `{name}` (expected shape {shape:?}) is missing from the checkpoint"));
            continue;
        };
        let file = shown(&entry.file);
        let dtype = dtype_of(&entry.dtype);
        if dtype.is_none() {
            problems.push(format!(
                "tensor `{name}` in `{file}` has dtype {}; only F32, F16 and BF16 are accepted",
                entry.dtype
            ));
        }
        if &entry.shape != shape {
            problems.push(format!(
                "tensor `{name}` in `{file}` has shape {:?}, but the config implies {shape:?}",
                entry.shape
            ));
        }
        if let (Some(dtype), true) = (dtype, &entry.shape == shape) {
            plan.insert(
                name.clone(),
                PlannedWeight { name: name.clone(), file: entry.file.clone(), dtype, shape: shape.clone() },
            );
        }
    }
    plan
}

/// Declare every planned tensor as a module weight that stays in its safetensors file.
pub(crate) fn declare_weights(m: &mut ferrumc_ir::Module, plan: &WeightPlan) {
    for w in plan.values() {
        let dims: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
        m.weights.push(ferrumc_ir::WeightDecl {
            name: w.name.clone(),
            ty: ferrumc_ir::TensorType::fixed(w.dtype, &dims),
            source: ferrumc_ir::WeightSource::Safetensors { file: w.file.clone(), tensor: w.name.clone() },
        });
    }
}

fn dtype_of(name: &str) -> Option<DType> {
    match name {
        "F32" => Some(DType::F32),
        "F16" => Some(DType::F16),
        "BF16" => Some(DType::BF16),
        _ => None,
    }
}

/// Check a checkpoint against a config: every problem (missing, extra, mis-shaped or
/// wrongly typed tensor) is reported at once. Returns the plan and non-blocking warnings.
pub fn check_checkpoint(cfg: &DecoderConfig, ckpt: &Checkpoint) -> Result<(WeightPlan, Vec<ValidationIssue>), HfError> {
    let shown = |file: &str| ckpt.dir.join(file).display().to_string();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let expected = expected_tensors(cfg);
    let plan = plan_expected(ckpt, &expected, &mut problems);
    let wanted: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for (name, entry) in &ckpt.tensors {
        if wanted.contains(name.as_str()) {
            continue;
        }
        let file = shown(&entry.file);
        if name.ends_with(".rotary_emb.inv_freq") || (name == "lm_head.weight" && cfg.tie_word_embeddings) {
            warnings.push(ValidationIssue::new(
                ValidationSeverity::Warning,
                "weights",
                name.clone(),
                format!("tensor `{name}` in `{file}` is not used (tied embeddings or a recomputed buffer); ignored"),
                None,
            ));
        } else {
            problems
                .push(format!("tensor `{name}` in `{file}` is not used by a {} model (extra tensor)", cfg.model_type));
        }
    }
    if problems.is_empty() {
        Ok((plan, warnings))
    } else {
        Err(HfError::Weights { problems })
    }
}
