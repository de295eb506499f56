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
use ferrumc_passes::{registry, PassManager, PassOptions};
use ferrumc_tests::compare::{assert_close, Tolerance};
use ferrumc_tests::inputs::{synthetic_inputs, DEFAULT_SIZES};
use ferrumc_tests::models;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::Path;

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

fn check(path: &Path, pipeline: &str) -> Result<(), String> {
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
        let inputs = synthetic_inputs(&original, &function.name, &DEFAULT_SIZES)?;
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
