//! End to end: the HF Llama fixture at `-O2` and `-O3` (prepacked weights: `sgemm_packed`
//! micro-kernel calls), every group of `forward` and `decode` lowered
//! and JIT-compiled, run group by group by the test executor (`common::run_with`) with the
//! runtime's real micro-kernel table (`ferrumc_runtime::ukernels::fn_table()`), compared with
//! the reference interpreter on the same weights (rtol 1e-4, see `common::assert_close`).
//! Covers the gather, head-split (reshape/transpose/rotary) matmul, attention (causal GQA,
//! with and without a KV cache, S < T) and norm/MLP kernels together, batch 1 and 2.

mod common;

use common::{assert_close, compile_function, run_with, Rng};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{DType, Module, Tensor};
use ferrumc_passes::{PassManager, PassOptions};
use std::path::{Path, PathBuf};

fn fixture(level: u8) -> (Module, PathBuf) {
    fixture_quantized(level, None)
}

fn fixture_quantized(level: u8, quantize: Option<&str>) -> (Module, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    let (mut m, _) = ferrumc_hf::import_hf(&dir).unwrap();
    let options = PassOptions {
        quantize: quantize.map(|q| ferrumc_passes::QuantScheme::parse(q).unwrap()),
        ..PassOptions::default()
    };
    PassManager::for_level(level, &[], options).unwrap().run(&mut m).unwrap();
    if quantize.is_some() {
        let text = ferrumc_ir::text::print_module(&m);
        assert!(text.contains("quantized_linear") && text.contains("i8["), "the fixture was not quantized to i8");
    }
    (m, dir)
}

/// `--quantize int8` (per-channel i8 weights: the `gemm_i8` micro-kernel, in the head-split
/// q/k/v projections too): `forward` and `decode` against the interpreter running the same
/// quantized module.
#[test]
fn int8_quantized_model_matches_the_interpreter() {
    for level in [2, 3] {
        let (m, dir) = fixture_quantized(level, Some("int8"));
        let mut rng = Rng(17);
        for (b, s) in [(1, 1), (2, 5)] {
            let inputs =
                vec![("input_ids".to_string(), ids(&mut rng, b, s, 128)), ("position_ids".into(), positions(b, s, 0))];
            compare(&m, &dir, "forward", &inputs);
        }
        let (b, s, p) = (1, 2, 5);
        let mut inputs =
            vec![("input_ids".to_string(), ids(&mut rng, b, s, 128)), ("position_ids".into(), positions(b, s, p))];
        for name in ["past_key_0", "past_value_0", "past_key_1", "past_value_1"] {
            inputs.push((name.to_string(), rng.tensor(&[b, 2, p, 16], -1.0, 1.0)));
        }
        compare(&m, &dir, "decode", &inputs);
    }
}

fn ids(rng: &mut Rng, b: usize, s: usize, hi: usize) -> Tensor {
    Tensor::from_f64(DType::I64, vec![b, s], (0..b * s).map(|_| rng.below(hi) as f64).collect()).unwrap()
}

fn positions(b: usize, s: usize, start: usize) -> Tensor {
    Tensor::from_f64(DType::I64, vec![b, s], (0..b * s).map(|i| (start + i % s) as f64).collect()).unwrap()
}

fn compare(m: &Module, dir: &Path, name: &str, inputs: &[(String, Tensor)]) {
    let c = compile_function(m.clone(), name);
    let weights = FileWeights::new(dir);
    let table = ferrumc_runtime::ukernels::fn_table();
    let got = run_with(&c, inputs, &weights, &table);
    let want = run_function(m, name, inputs, &weights).unwrap();
    assert_eq!(got.len(), want.len());
    for ((n, g), (_, w)) in got.iter().zip(&want) {
        assert_close(&format!("{name}: {n}"), g, w, 1e-4);
    }
}

#[test]
fn forward_matches_the_interpreter() {
    for level in [2, 3] {
        let (m, dir) = fixture(level);
        let mut rng = Rng(7);
        for (b, s) in [(1, 1), (1, 7), (2, 5)] {
            let inputs =
                vec![("input_ids".to_string(), ids(&mut rng, b, s, 128)), ("position_ids".into(), positions(b, s, 0))];
            compare(&m, &dir, "forward", &inputs);
        }
    }
}

#[test]
fn decode_with_cache_matches_the_interpreter() {
    for level in [2, 3] {
        let (m, dir) = fixture(level);
        let mut rng = Rng(11);
        for (b, s, p) in [(1, 1, 6), (2, 3, 4), (1, 4, 0)] {
            let mut inputs =
                vec![("input_ids".to_string(), ids(&mut rng, b, s, 128)), ("position_ids".into(), positions(b, s, p))];
            for name in ["past_key_0", "past_value_0", "past_key_1", "past_value_1"] {
                inputs.push((name.to_string(), rng.tensor(&[b, 2, p, 16], -1.0, 1.0)));
            }
            compare(&m, &dir, "decode", &inputs);
        }
    }
}
