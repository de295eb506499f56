//! Coverage on real models. The HF Llama fixture at `-O2` and `-O3` (prepacked weights):
//! every group of `forward` and `decode` lowers to a kernel and all kernels JIT-compile. The
//! ONNX Llama fixture at `-O2`: lowering never panics, kernels JIT-compile, and the
//! remaining `Unsupported` groups are reported (not asserted: coverage there is partial).
//! The tables are printed (`cargo test -p ferrumc-codegen --test coverage -- --nocapture`).

use ferrumc_codegen::cpu::JitKernels;
use ferrumc_codegen::lower::lower_function;
use ferrumc_codegen::CodegenError;
use ferrumc_ir::Module;
use ferrumc_passes::{preset, PassManager, PassOptions};
use std::collections::BTreeMap;
use std::path::Path;

/// Lower every function of `m`: (lowered groups per kind, unsupported groups per reason),
/// after JIT-compiling all kernels.
fn lower_all(m: &Module, label: &str) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut kernels = Vec::new();
    let mut missing: BTreeMap<String, usize> = BTreeMap::new();
    let mut lowered: BTreeMap<String, usize> = BTreeMap::new();
    for f in &m.functions {
        for (g, r) in lower_function(f).unwrap() {
            let kind = f.group_kind(g).map(|k| k.name().to_string()).unwrap_or_default();
            match r {
                Ok(l) => {
                    *lowered.entry(kind).or_default() += 1;
                    kernels.push(l.kernel);
                }
                Err(CodegenError::Unsupported { op, reason }) => {
                    *missing.entry(format!("{}: {kind}: `{op}`: {reason}", f.name)).or_default() += 1;
                }
                Err(other) => panic!("group {g} of {}: {other}", f.name),
            }
        }
    }
    println!("{label}: lowered {lowered:?}");
    for (what, n) in &missing {
        println!("{label}: {n} × {what}");
    }
    assert!(!kernels.is_empty());
    JitKernels::compile(&kernels).unwrap();
    (lowered, missing)
}

fn optimize(m: &mut Module, level: u8) {
    let passes = preset(level).unwrap();
    PassManager::new(&passes, PassOptions::default()).unwrap().run(m).unwrap();
}

#[test]
fn hf_llama_forward_and_decode_lower_completely() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    for level in [2u8, 3] {
        let (mut m, _) = ferrumc_hf::import_hf(&dir).unwrap();
        optimize(&mut m, level);
        let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"forward") && names.contains(&"decode"), "{names:?}");
        let (lowered, missing) = lower_all(&m, &format!("hf llama -O{level}"));
        assert!(missing.is_empty(), "unsupported groups at -O{level}: {missing:?}");
        assert!(lowered.get("attention").is_some_and(|n| *n > 0));
    }
}

#[test]
fn onnx_llama_coverage_is_reported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx_llama/model.onnx");
    let mut m = ferrumc_onnx::import_onnx(&path).unwrap();
    optimize(&mut m, 2);
    let (lowered, missing) = lower_all(&m, "onnx llama -O2");
    let total_missing: usize = missing.values().sum();
    let total_lowered: usize = lowered.values().sum();
    println!("onnx llama -O2: {total_lowered} groups lowered, {total_missing} unsupported");
}
