//! What CPU an artifact is compiled for: on x86-64 hosts with AVX2 the fixed `x86-64-v3`
//! baseline (not every feature of the compiling host), recorded as the artifact's required
//! features and its `compile.cpu_baseline` metadata; the result still runs correctly.

use ferrumc_codegen::compile::{compile_module, CompileOptions, X86_64_BASELINE, X86_64_BASELINE_FEATURES};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::text::parse_module;
use ferrumc_ir::weights::FileWeights;
use ferrumc_runtime::artifact::reader::host_has_cpu_feature;
use ferrumc_runtime::model::{Model, Tensor};
use std::path::PathBuf;

#[test]
fn artifacts_require_the_fixed_baseline_not_the_hosts_features() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp");
    let m = parse_module(&std::fs::read_to_string(dir.join("model.fir")).unwrap()).unwrap();
    let bytes = compile_module(&m, &FileWeights::new(&dir), &CompileOptions::default()).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let manifest = model.artifact().manifest();
    let baseline = manifest.metadata.get("compile.cpu_baseline").map(String::as_str);
    let host_has_baseline = X86_64_BASELINE_FEATURES.iter().all(|f| host_has_cpu_feature(f));
    if cfg!(target_arch = "x86_64") && host_has_baseline {
        assert_eq!(baseline, Some(X86_64_BASELINE));
        let mut want: Vec<String> = X86_64_BASELINE_FEATURES.iter().map(|f| f.to_string()).collect();
        want.sort();
        assert_eq!(manifest.cpu_features, want);
    } else {
        assert_eq!(baseline, Some("host"));
        assert!(manifest.cpu_features.iter().all(|f| host_has_cpu_feature(f)), "{:?}", manifest.cpu_features);
    }
    // The baseline code computes what the interpreter computes (softmax outputs, |Δ| ≤ 1e-5).
    let mut model = model.with_fn_table(ferrumc_runtime::ukernels::fn_table()).unwrap();
    let values: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    let x = Tensor::from_f32(vec![3, 8], &values).unwrap();
    let got = model.run("main", &[("x", x.view())]).unwrap();
    let got: Vec<f32> =
        got[0].1.bytes().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let xi = ferrumc_ir::Tensor::from_f64(
        ferrumc_ir::DType::F32,
        vec![3, 8],
        values.iter().map(|&v| f64::from(v)).collect(),
    )
    .unwrap();
    let want = run_function(&m, "main", &[("x".to_string(), xi)], &FileWeights::new(&dir)).unwrap();
    let want = want[0].1.to_f64_vec();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() <= 1e-5, "{g} vs {w}");
    }
}
