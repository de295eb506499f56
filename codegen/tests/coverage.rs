//! Coverage on a real model: the HF Llama fixture at `-O2` and `-O3` (prepacked weights)
//! lowers group by group without panicking; groups are either kernels (all of which the
//! Cranelift backend compiles) or `Unsupported` errors naming the op. The coverage table
//! is printed (`cargo test -p ferrumc-codegen --test coverage -- --nocapture`).

use ferrumc_codegen::cpu::JitKernels;
use ferrumc_codegen::lower::lower_function;
use ferrumc_codegen::CodegenError;
use ferrumc_passes::{preset, PassManager, PassOptions};
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn llama_fixture_lowers_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    for level in [2u8, 3] {
        let (mut m, _) = ferrumc_hf::import_hf(&dir).unwrap();
        let passes = preset(level).unwrap();
        PassManager::new(&passes, PassOptions::default()).unwrap().run(&mut m).unwrap();
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
                        *missing.entry(format!("{kind}: `{op}`: {reason}")).or_default() += 1;
                    }
                    Err(other) => panic!("group {g} of {}: {other}", f.name),
                }
            }
        }
        println!("-O{level}: lowered {lowered:?}");
        for (what, n) in &missing {
            println!("-O{level}: {n} × {what}");
        }
        assert!(!kernels.is_empty());
        JitKernels::compile(&kernels).unwrap();
    }
}
