//! The compiled path agrees with the reference interpreter on every fixture model.
//!
//! One trial per (fixture model, compile configuration): every HF architecture (sharded
//! checkpoint included), the dynamo-exported ONNX Llama, Qwen2, Mistral and GPT-2, and the
//! examples are compiled with `ferrumc_codegen::compile::compile_module` at `-O2`; a few
//! models also at `-O3` (prepacked weights) and with `q8_0` weights. Each artifact is loaded
//! with the runtime's micro-kernels and every function runs three times — `forward` at batch 2,
//! seq 5 and `decode` with a non-empty cache (batch 2, seq 2, past 3, pseudo-normal cache
//! tensors), then batch 1, seq 1, past 4, then batch 1, seq 2 with an empty cache (past 0:
//! zero-element `past_*` inputs) — and every output is compared with the interpreter
//! on the same optimized module: rtol 1e-4, atol 1e-4 (the interpreter rounds per op from
//! f64; kernels accumulate in f32 in a different order). A model that does not compile
//! fails its trial with the compiler's error. Trial names: `<model>::<config>`.
//!
//! Models whose sizes need symbol bounds compile with them ([`DIM_BOUNDS`]); without them the
//! compiler must refuse with an error that names the op and the `--max-dim` remedy (one trial
//! each, `<model>::unbounded`).

use ferrumc_codegen::compile::CompileOptions;
use ferrumc_ir::weights::FileWeights;
use ferrumc_passes::QuantScheme;
use ferrumc_tests::compare::Tolerance;
use ferrumc_tests::compiled::check_compiled;
use ferrumc_tests::inputs::synthetic_inputs;
use ferrumc_tests::models;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::Path;

const TOLERANCE: Tolerance = Tolerance { rtol: 1e-4, atol: 1e-4 };
/// Quantized weights: the kernels may round activations differently from the interpreter's
/// dequantize-then-f64 rule; the bound is still far below the quantization error itself.
const Q8_TOLERANCE: Tolerance = Tolerance { rtol: 2e-3, atol: 2e-3 };

/// Symbol bounds some models need. The ONNX GPT-2 export slices its `[1, 1, 64, 64]`
/// causal-mask table to `min(seq, 64)` rows: with `seq ≤ 64` (its position table has 64 rows,
/// so no longer input is valid anyway) shape inference resolves that to `seq`.
const DIM_BOUNDS: [(&str, &str, i64); 1] = [("onnx/gpt2", "seq", 64)];

/// Symbol sizes of the runs: (batch, seq, past). The last is a prefill through `decode`
/// with an empty cache (past 0), as `ferrumc generate` runs the prompt.
const RUNS: [[(&str, i64); 3]; 3] = [
    [("batch", 2), ("seq", 5), ("past", 3)],
    [("batch", 1), ("seq", 1), ("past", 4)],
    [("batch", 1), ("seq", 3), ("past", 0)],
];

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (label, path) in models::fixture_models() {
        let mut configs = vec![("-O2", CompileOptions { level: 2, ..CompileOptions::default() })];
        if ["hf/llama", "hf/phi3", "hf/qwen2", "hf/qwen3", "onnx/llama", "examples/llama_block"]
            .contains(&label.as_str())
        {
            configs.push(("-O3", CompileOptions { level: 3, ..CompileOptions::default() }));
        }
        // Qwen2's q/k/v projections have biases (added in the head-split epilogue); Qwen3
        // reshapes its q/k products per head before their norms (a matmul group whose output
        // is a row-changing reshape).
        if ["hf/llama", "hf/qwen2", "hf/qwen3", "examples/llama_block"].contains(&label.as_str()) {
            configs.push((
                "-O2-q8_0",
                CompileOptions { level: 2, quantize: Some(QuantScheme::Q8_0), ..CompileOptions::default() },
            ));
        }
        let bounds: Vec<(String, i64)> =
            DIM_BOUNDS.iter().filter(|(m, _, _)| *m == label).map(|(_, s, v)| (s.to_string(), *v)).collect();
        if !bounds.is_empty() {
            let (unbounded, path) = (configs[0].1.clone(), path.clone());
            trials.push(Trial::test(format!("{label}::unbounded"), move || {
                check_refused(&path, &unbounded, "--max-dim").map_err(Failed::from)
            }));
        }
        for (name, mut options) in configs {
            options.dim_bounds.extend(bounds.iter().cloned());
            let (label, path) = (label.clone(), path.clone());
            trials.push(Trial::test(format!("{label}::{name}"), move || {
                check(&label, &path, &options).map_err(Failed::from)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn check(label: &str, path: &Path, options: &CompileOptions) -> Result<(), String> {
    let (module, base) = models::load(path)?;
    let weights = FileWeights::new(&base);
    let mut runs = Vec::new();
    for sizes in &RUNS {
        for function in &module.functions {
            // `seq` of a decode step is kept small: the step after a prefill.
            let sizes: Vec<(&str, i64)> = sizes
                .iter()
                .map(|&(k, v)| if k == "seq" && function.name == "decode" && v > 1 { (k, 2) } else { (k, v) })
                .collect();
            runs.push((function.name.clone(), synthetic_inputs(&module, &function.name, &sizes)?));
        }
    }
    let tol = if options.quantize.is_some() { Q8_TOLERANCE } else { TOLERANCE };
    check_compiled(label, &module, &weights, options, &runs, tol)
}

/// Without its [`DIM_BOUNDS`] a model must fail to compile with an error containing `why`.
fn check_refused(path: &Path, options: &CompileOptions, why: &str) -> Result<(), String> {
    let (module, base) = models::load(path)?;
    let weights = FileWeights::new(&base);
    match ferrumc_codegen::compile::compile_module(&module, &weights, options) {
        Ok(_) => Err("the model compiles without its bounds: drop them from DIM_BOUNDS".into()),
        Err(e) if e.to_string().contains(why) => Ok(()),
        Err(e) => Err(format!("refused for another reason than `{why}`: {e}")),
    }
}
