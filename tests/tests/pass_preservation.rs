//! Every pass preserves what the reference interpreter computes, on real models.
//!
//! One trial per (fixture model, pipeline): every registered pass on its own (with the
//! dependencies it pulls in), and the presets -O1, -O2 and -O3. Each function of the model
//! (`forward`, `decode`, …) runs on the interpreter before and after on deterministic
//! synthetic inputs (batch 2, seq 5, past 3; token ids below the vocabulary size, position
//! ids counting from the cache length), and every output must agree within rtol 1e-4 /
//! atol 1e-5: fusion changes only where rounding to f32 happens. `quantize-weights` changes
//! results on purpose and is checked against its own bound in `quantization.rs`.
//! Trial names: `<model>::<pipeline>`, e.g. `onnx/llama::-O2`.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{Attr, DType, Dim, Module, Op, Tensor, ValueDef};
use ferrumc_passes::{registry, PassManager, PassOptions};
use ferrumc_tests::compare::{assert_close, Tolerance};
use ferrumc_tests::models;
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::HashMap;
use std::path::PathBuf;

const TOLERANCE: Tolerance = Tolerance { rtol: 1e-4, atol: 1e-5 };

fn main() {
    let args = Arguments::from_args();
    let mut pipelines: Vec<String> =
        registry::all().iter().map(|p| p.name().to_string()).filter(|name| name != "quantize-weights").collect();
    pipelines.extend(["-O1", "-O2", "-O3"].map(String::from));
    let mut trials = Vec::new();
    for (label, path) in models::fixture_models() {
        for pipeline in &pipelines {
            let (path, pipeline) = (path.clone(), pipeline.clone());
            trials.push(Trial::test(format!("{label}::{pipeline}"), move || {
                check(&path, &pipeline).map_err(Failed::from)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn check(path: &PathBuf, pipeline: &str) -> Result<(), String> {
    let (original, base) = models::load(path)?;
    let mut optimized = original.clone();
    let mut manager = match pipeline.strip_prefix("-O") {
        Some(level) => PassManager::for_level(level.parse().map_err(|_| "bad level")?, &[], PassOptions::default()),
        None => PassManager::new(&[pipeline], PassOptions::default()),
    }
    .map_err(|e| e.to_string())?
    .verify_each(true);
    manager.run(&mut optimized).map_err(|e| e.to_string())?;
    let weights = FileWeights::new(&base);
    for function in &original.functions {
        let inputs = synthetic_inputs(&original, &function.name)?;
        let before = run_function(&original, &function.name, &inputs, &weights)
            .map_err(|e| format!("{}: before: {e}", function.name))?;
        let after = run_function(&optimized, &function.name, &inputs, &weights)
            .map_err(|e| format!("{}: after {pipeline}: {e}", function.name))?;
        if before.len() != after.len() {
            return Err(format!("{}: {} outputs before, {} after", function.name, before.len(), after.len()));
        }
        for ((name, want), (name_after, got)) in before.iter().zip(&after) {
            if name != name_after {
                return Err(format!("{}: output `{name}` became `{name_after}`", function.name));
            }
            assert_close(&format!("{}/{name}", function.name), got, want, TOLERANCE)?;
        }
    }
    Ok(())
}

/// Deterministic inputs for every parameter of `function`.
fn synthetic_inputs(m: &Module, function: &str) -> Result<Vec<(String, Tensor)>, String> {
    let f = m.function(function).ok_or_else(|| format!("no function {function}"))?;
    let mut sizes: HashMap<String, i64> =
        [("batch", 2), ("seq", 5), ("past", 3)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
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
