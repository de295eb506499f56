//! The compile driver end to end: ModelIR → artifact bytes → `ferrumc_runtime::Model` with
//! the shipped micro-kernels, compared with the reference interpreter (rtol 1e-5 relative to
//! the output's scale); determinism; clear errors for what cannot be compiled.

mod common;

use common::{assert_close, Rng};
use ferrumc_codegen::compile::{compile_module, optimize_module, CompileOptions};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::text::parse_module;
use ferrumc_ir::weights::{FileWeights, InlineWeights};
use ferrumc_ir::{DType, Module, Tensor};
use ferrumc_runtime::model::{Model, Tensor as RtTensor};
use ferrumc_runtime::ukernels;
use std::path::PathBuf;

fn example(name: &str) -> (Module, FileWeights) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    let src = std::fs::read_to_string(dir.join("model.fir")).unwrap();
    (parse_module(&src).unwrap(), FileWeights::new(dir))
}

fn to_rt(t: &Tensor) -> RtTensor {
    let dtype = match t.dtype {
        DType::F32 => ferrumc_runtime::artifact::DType::F32,
        DType::I64 => ferrumc_runtime::artifact::DType::I64,
        other => panic!("test input dtype {other}"),
    };
    RtTensor::new(dtype, t.shape.clone(), t.to_le_bytes().unwrap()).unwrap()
}

fn from_rt(t: &RtTensor) -> Tensor {
    assert_eq!(t.dtype(), ferrumc_runtime::artifact::DType::F32);
    Tensor::from_le_bytes(DType::F32, t.shape().to_vec(), t.bytes()).unwrap()
}

/// Run `bytes` on `inputs` through the runtime and compare with the interpreter on `m`.
fn check_against_interp(
    bytes: &[u8],
    m: &Module,
    weights: &dyn ferrumc_ir::weights::WeightProvider,
    inputs: &[(String, Tensor)],
    rtol: f64,
) {
    let mut model = Model::from_bytes(bytes).unwrap().with_fn_table(ukernels::fn_table()).unwrap();
    let rt_inputs: Vec<(String, RtTensor)> = inputs.iter().map(|(n, t)| (n.clone(), to_rt(t))).collect();
    let views: Vec<(&str, _)> = rt_inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    let f = &m.functions[0].name;
    let got = model.run(f, &views).unwrap();
    let want = run_function(m, f, inputs, weights).unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        assert_close(gn, &from_rt(g), w, rtol);
    }
}

#[test]
fn mlp_example_matches_the_interpreter_at_every_level() {
    let (m, w) = example("mlp");
    let mut rng = Rng(7);
    for level in 0..=3u8 {
        let opts = CompileOptions { level, ..CompileOptions::default() };
        let bytes = compile_module(&m, &w, &opts).unwrap_or_else(|e| panic!("-O{level}: {e}"));
        for batch in [1usize, 3, 17, 64] {
            let x = rng.tensor(&[batch, 8], -2.0, 2.0);
            check_against_interp(&bytes, &m, &w, &[("x".to_string(), x)], 1e-5);
        }
    }
}

#[test]
fn compiling_twice_gives_identical_bytes() {
    let (m, w) = example("mlp");
    let opts = CompileOptions { level: 2, ..CompileOptions::default() };
    let a = compile_module(&m, &w, &opts).unwrap();
    let b = compile_module(&m, &w, &opts).unwrap();
    assert!(a == b, "two compilations differ");
}

#[test]
fn inputs_beyond_the_planned_bound_are_refused_and_bounds_can_be_raised() {
    let (m, w) = example("mlp");
    let mut opts = CompileOptions { level: 2, ..CompileOptions::default() };
    opts.dim_bounds.insert("batch".into(), 4);
    let bytes = compile_module(&m, &w, &opts).unwrap();
    let mut model = Model::from_bytes(&bytes).unwrap().with_fn_table(ukernels::fn_table()).unwrap();
    assert_eq!(model.metadata().get("memory_plan.main.bounds").map(String::as_str), Some("batch<=4"));
    let x = RtTensor::from_f32(vec![5, 8], &[0.5; 40]).unwrap();
    let err = model.run("main", &[("x", x.view())]).unwrap_err().to_string();
    assert!(err.contains("bucket"), "{err}");
    let x = Rng(3).tensor(&[4, 8], -1.0, 1.0);
    check_against_interp(&bytes, &m, &w, &[("x".to_string(), x)], 1e-5);

    opts.dim_bounds.insert("batch".into(), 300);
    let bytes = compile_module(&m, &w, &opts).unwrap();
    let x = Rng(4).tensor(&[300, 8], -1.0, 1.0);
    check_against_interp(&bytes, &m, &w, &[("x".to_string(), x)], 1e-5);
}

#[test]
fn tampered_artifacts_are_refused() {
    let (m, w) = example("mlp");
    let mut bytes = compile_module(&m, &w, &CompileOptions::default()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let err = Model::from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("checksum") || err.to_lowercase().contains("tamper"), "{err}");
}

/// rms_norm → gate/up linears → silu_mul → down linear → residual add, random weights.
fn norm_mlp_source() -> String {
    let mut rng = Rng(11);
    let mut weight = |name: &str, shape: &[usize], scale: f64| {
        let t = rng.tensor(shape, -scale, scale);
        let lit = t.to_f64_vec().iter().map(|v| format!("{:?}", *v as f32)).collect::<Vec<_>>().join(", ");
        let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        format!("weight @{name} : f32[{dims}] = dense<f32[{dims}]: [{lit}]>\n")
    };
    let mut src = String::from("module @norm_mlp\n");
    src += &weight("g", &[32], 1.0);
    src += &weight("wg", &[48, 32], 0.3);
    src += &weight("wu", &[48, 32], 0.3);
    src += &weight("wd", &[32, 48], 0.3);
    src += "func @main(%x: f32[?seq, 32]) -> (y: f32[?seq, 32]) {
  %0 = rms_norm %x, @g {epsilon = 1e-05} : f32[?seq, 32]
  %1 = linear %0, @wg : f32[?seq, 48]
  %2 = linear %0, @wu : f32[?seq, 48]
  %3 = silu_mul %1, %2 : f32[?seq, 48]
  %4 = linear %3, @wd : f32[?seq, 32]
  %5 = add %4, %x : f32[?seq, 32]
  return %5
}
";
    src
}

#[test]
fn rms_norm_linear_silu_mul_block_matches_the_interpreter() {
    let m = parse_module(&norm_mlp_source()).unwrap_or_else(|e| panic!("fixture: {e}"));
    for level in 0..=3u8 {
        let opts = CompileOptions { level, ..CompileOptions::default() };
        let bytes = compile_module(&m, &InlineWeights, &opts).unwrap_or_else(|e| panic!("-O{level}: {e}"));
        for seq in [1usize, 5, 40] {
            let x = Rng(seq as u64).tensor(&[seq, 32], -1.5, 1.5);
            check_against_interp(&bytes, &m, &InlineWeights, &[("x".to_string(), x)], 1e-5);
        }
    }
}

#[test]
fn quantized_weights_match_the_interpreter_on_the_quantized_module() {
    let m = parse_module(&norm_mlp_source()).unwrap_or_else(|e| panic!("fixture: {e}"));
    for scheme in ["q8_0", "q4_0", "int8"] {
        let opts = CompileOptions {
            level: 2,
            quantize: Some(ferrumc_passes::QuantScheme::parse(scheme).unwrap()),
            ..CompileOptions::default()
        };
        let bytes = compile_module(&m, &InlineWeights, &opts).unwrap_or_else(|e| panic!("{scheme}: {e}"));
        // The oracle runs the same optimized (quantized) module.
        let optimized = optimize_module(&m, &opts).unwrap();
        for seq in [1usize, 7] {
            let x = Rng(seq as u64 + 50).tensor(&[seq, 32], -1.5, 1.5);
            check_against_interp(&bytes, &optimized, &InlineWeights, &[("x".to_string(), x)], 1e-4);
        }
    }
}

#[test]
fn unsupported_ops_are_named_in_the_error() {
    let (m, w) = example("llama_block");
    match compile_module(&m, &w, &CompileOptions { level: 2, ..CompileOptions::default() }) {
        Ok(bytes) => {
            // Lowering covers the whole block: then it must also be right.
            let ids = Tensor::from_i64(DType::I64, vec![1, 5], vec![1, 7, 3, 90, 12]).unwrap();
            let pos = Tensor::from_i64(DType::I64, vec![1, 5], vec![0, 1, 2, 3, 4]).unwrap();
            check_against_interp(
                &bytes,
                &m,
                &w,
                &[("input_ids".to_string(), ids), ("position_ids".to_string(), pos)],
                1e-4,
            );
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("llama_block: {text}");
            assert!(text.contains("@main") && text.contains('`'), "the error names the function and op: {text}");
        }
    }
}

#[test]
fn tiled_kernels_split_across_threads_at_any_boundary() {
    // -O3 packs the linears: micro-kernel groups walk rows in tiles of 16, and the runtime
    // hands them element ranges whose boundaries are not multiples of the tile.
    let m = parse_module(&norm_mlp_source()).unwrap_or_else(|e| panic!("fixture: {e}"));
    let opts = CompileOptions { level: 3, ..CompileOptions::default() };
    let bytes = compile_module(&m, &InlineWeights, &opts).unwrap();
    let grains: Vec<u64> =
        Model::from_bytes(&bytes).unwrap().artifact().manifest().schedules["main"].iter().map(|s| s.grain).collect();
    assert!(grains.iter().any(|g| *g > 1), "expected a tiled kernel, grains {grains:?}");
    for threads in [2usize, 3] {
        let mut model =
            Model::from_bytes(&bytes).unwrap().with_fn_table(ukernels::fn_table()).unwrap().with_threads(threads);
        for seq in [17usize, 37, 128] {
            let x = Rng(seq as u64 * 7).tensor(&[seq, 32], -1.5, 1.5);
            let rt = to_rt(&x);
            let got = model.run("main", &[("x", rt.view())]).unwrap();
            let want = run_function(&m, "main", &[("x".to_string(), x)], &InlineWeights).unwrap();
            assert_close("y", &from_rt(&got[0].1), &want[0].1, 1e-5);
        }
    }
}
