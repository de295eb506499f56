//! Deterministic synthetic inputs for a model's functions: token ids below the vocabulary
//! size, position ids counting from the cache length, all-ones masks, and pseudo-normal
//! floats (KV caches included), shaped by given sizes of the symbolic dims.

use ferrumc_ir::{Attr, DType, Dim, Module, Op, Tensor, ValueDef};
use std::collections::HashMap;

/// The sizes the pass-preservation tests use: batch 2, seq 5, past 3 (other symbols 3).
pub const DEFAULT_SIZES: [(&str, i64); 3] = [("batch", 2), ("seq", 5), ("past", 3)];

/// Deterministic inputs for every parameter of `function`; `sizes` gives symbol values
/// (symbols it does not name are 3).
pub fn synthetic_inputs(m: &Module, function: &str, sizes: &[(&str, i64)]) -> Result<Vec<(String, Tensor)>, String> {
    let f = m.function(function).ok_or_else(|| format!("no function {function}"))?;
    let mut sizes: HashMap<String, i64> = sizes.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let symbols_used: Vec<String> = f
        .params()
        .iter()
        .flat_map(|(_, v)| {
            f.ty(*v).shape.iter().flat_map(|d| d.symbols().into_iter().map(String::from)).collect::<Vec<_>>()
        })
        .collect();
    for symbol in &symbols_used {
        sizes.entry(symbol.clone()).or_insert(3);
    }
    let past = if symbols_used.iter().any(|s| s == "past") { sizes["past"] } else { 0 };
    let mut inputs = Vec::new();
    for (index, (name, value)) in f.params().iter().enumerate() {
        let ty = f.ty(*value);
        let mut shape = Vec::new();
        for dim in &ty.shape {
            let size = dim.eval(&sizes).ok_or_else(|| format!("{function}: cannot size `{name}` dim {dim}"))?;
            shape.push(usize::try_from(size).map_err(|_| format!("negative size for `{name}`"))?);
        }
        let numel: usize = shape.iter().product();
        let lower = name.to_ascii_lowercase();
        let tensor = match ty.dtype {
            DType::I64 | DType::I32 => {
                let values: Vec<i64> = if lower.contains("position") {
                    let seq = shape.last().copied().unwrap_or(1);
                    (0..numel).map(|i| past + (i % seq.max(1)) as i64).collect()
                } else if lower.contains("token_type") {
                    vec![0; numel]
                } else if lower.contains("mask") {
                    vec![1; numel]
                } else {
                    let vocab = vocab_size(m, f, *value).max(1);
                    (0..numel).map(|i| ((i * 7919 + index * 31 + 3) as i64) % vocab).collect()
                };
                Tensor::from_i64(ty.dtype, shape, values).map_err(|e| e.to_string())?
            }
            DType::Bool => Tensor::from_i64(DType::Bool, shape, vec![1; numel]).map_err(|e| e.to_string())?,
            dtype => {
                let values: Vec<f64> = (0..numel).map(|i| pseudo_normal(i as u64 + 1000 * index as u64)).collect();
                Tensor::from_f64(dtype, shape, values).map_err(|e| e.to_string())?
            }
        };
        inputs.push((name.clone(), tensor));
    }
    Ok(inputs)
}

/// The vocabulary an id input indexes: the module's `vocab_size`, else the row count of the
/// table a `gather` looks it up in.
fn vocab_size(m: &Module, f: &ferrumc_ir::Function, param: ferrumc_ir::ValueId) -> i64 {
    if let Some(Attr::Int(v)) = m.attrs.get("vocab_size") {
        return *v;
    }
    for u in &f.value(param).uses {
        let Some(op) = f.op(u.op) else { continue };
        if matches!(op.op, Op::Gather { axis: 0 }) && u.operand == 1 {
            let table = op.operands[0];
            if let (ValueDef::Weight { .. }, Some(rows)) =
                (&f.value(table).def, f.ty(table).shape.first().and_then(Dim::as_fixed))
            {
                return rows;
            }
        }
    }
    2
}

/// Deterministic values in roughly [-1.7, 1.7] (sum of uniforms).
fn pseudo_normal(seed: u64) -> f64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x2545_F491_4F6C_DD1D);
    let mut sum = 0.0;
    for _ in 0..3 {
        state ^= state >> 33;
        state = state.wrapping_mul(0xff51_afd7_ed55_8ccd);
        state ^= state >> 29;
        sum += (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    }
    sum
}
