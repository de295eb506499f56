//! The compile driver's weight handling on the HF Llama fixture: weight-derived values
//! evaluated on bytes give exactly the artifact the reference interpreter's evaluation gives
//! (-O2, -O3 with packed weights, Q8_0); weights every entry point reads are stored once;
//! recompiling gives identical bytes.

use ferrumc_codegen::compile::{compile_module, CompileOptions};
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::Module;
use ferrumc_runtime::artifact::Artifact;
use std::collections::BTreeMap;
use std::path::Path;

fn llama() -> (Module, FileWeights) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/llama");
    let (m, _) = ferrumc_hf::import_hf(&dir).unwrap();
    (m, FileWeights::new(dir))
}

fn options(level: u8, quantize: Option<&str>) -> CompileOptions {
    CompileOptions {
        level,
        quantize: quantize.map(|q| ferrumc_passes::QuantScheme::parse(q).unwrap()),
        ..CompileOptions::default()
    }
}

#[test]
fn byte_evaluated_weights_give_the_interpreters_artifact() {
    let (m, w) = llama();
    for (level, quantize) in [(2, None), (3, None), (2, Some("q8_0"))] {
        let fast = compile_module(&m, &w, &options(level, quantize)).unwrap();
        let reference =
            compile_module(&m, &w, &CompileOptions { interpret_weights: true, ..options(level, quantize) }).unwrap();
        assert!(fast == reference, "-O{level} {quantize:?}: the artifacts differ");
    }
}

/// Bytes of `WEIGHT_DATA` actually used, each stored range counted once.
fn stored_weight_bytes(art: &Artifact) -> u64 {
    let ranges: BTreeMap<u64, u64> = art.manifest().weights.iter().map(|w| (w.offset, w.len)).collect();
    ranges.values().sum()
}

#[test]
fn weights_every_entry_point_reads_are_stored_once() {
    let (m, w) = llama();
    assert!(m.functions.len() >= 2, "the fixture has forward and decode");
    let mut forward_only = m.clone();
    forward_only.functions.retain(|f| f.name == "forward");
    for level in [2, 3] {
        let all = compile_module(&m, &w, &options(level, None)).unwrap();
        let one = compile_module(&forward_only, &w, &options(level, None)).unwrap();
        let (all, one) = (Artifact::from_bytes(&all).unwrap(), Artifact::from_bytes(&one).unwrap());
        assert_eq!(stored_weight_bytes(&all), stored_weight_bytes(&one), "-O{level}");
        // No two stored ranges hold equal bytes.
        let mut seen: BTreeMap<&[u8], &str> = BTreeMap::new();
        let mut offsets = BTreeMap::new();
        for (i, wi) in all.manifest().weights.iter().enumerate() {
            if offsets.insert(wi.offset, i).is_some() {
                continue;
            }
            if let Some(other) = seen.insert(all.weight_bytes(i).unwrap(), &wi.name) {
                panic!("-O{level}: `{}` and `{other}` hold equal bytes at different offsets", wi.name);
            }
        }
    }
}

#[test]
fn recompiling_gives_identical_bytes() {
    let (m, w) = llama();
    let a = compile_module(&m, &w, &options(3, None)).unwrap();
    let b = compile_module(&m, &w, &options(3, None)).unwrap();
    assert!(a == b, "two -O3 compilations differ");
}
