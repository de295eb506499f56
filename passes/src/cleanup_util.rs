//! Helpers shared by the cleanup passes (`shape-inference`, `canonicalize`,
//! `constant-folding`, `cse`, `dce`): removing ops a rewrite orphaned, reading constant
//! operands, and (in tests) running fixtures through the interpreter before and after a pass.

use ferrumc_ir::{infer, Function, Module, OpId, Tensor, ValueDef, ValueId, WeightSource};

/// Erase every op none of whose results is used (transitively: an op that only fed
/// erased ops goes too). Returns how many ops were erased.
pub fn remove_dead_ops(f: &mut Function) -> usize {
    let Ok(order) = f.op_order() else { return 0 };
    let mut erased = 0;
    for id in order.into_iter().rev() {
        let Some(data) = f.op(id) else { continue };
        if data.results.iter().all(|r| !f.is_used(*r)) {
            f.erase_op(id);
            erased += 1;
        }
    }
    erased
}

/// The literal behind `v`: a live `constant` op's value or an inline weight's tensor.
pub fn literal<'a>(m: &'a Module, f: &'a Function, v: ValueId) -> Option<&'a Tensor> {
    match &f.try_value(v)?.def {
        ValueDef::Weight { name } => match &m.weight_decl(name)?.source {
            WeightSource::Inline(t) => Some(t),
            _ => None,
        },
        _ => infer::constant_value(f, v),
    }
}

/// Interpreter harness for the passes' preservation tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::{PassManager, PassOptions};
    use ferrumc_ir::interp::run_function;
    use ferrumc_ir::weights::FileWeights;
    use ferrumc_ir::{DType, Module, Tensor};
    use std::path::PathBuf;

    pub(crate) fn repo_path(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    /// Import an HF fixture folder or an `.onnx` file (path relative to the repo root).
    pub(crate) fn load(rel: &str) -> (Module, PathBuf) {
        let path = repo_path(rel);
        if rel.ends_with(".onnx") {
            let m = ferrumc_onnx::import_onnx(&path).expect("import onnx fixture");
            (m, path.parent().expect("has a parent").to_path_buf())
        } else {
            let (m, _) = ferrumc_hf::import_hf(&path).expect("import hf fixture");
            (m, path)
        }
    }

    /// `input_ids: i64[1, 5]` (values below 128) and `position_ids` 0..4 when the function takes them.
    pub(crate) fn run_forward(m: &Module, base: &PathBuf) -> Vec<(String, Tensor)> {
        let f = m.function("forward").expect("forward");
        let mut inputs = Vec::new();
        for (name, _) in f.params() {
            let t = match name.as_str() {
                "input_ids" => Tensor::from_i64(DType::I64, vec![1, 5], vec![3, 17, 101, 64, 127]),
                "position_ids" => Tensor::from_i64(DType::I64, vec![1, 5], vec![0, 1, 2, 3, 4]),
                "token_type_ids" => Tensor::from_i64(DType::I64, vec![1, 5], vec![0; 5]),
                "attention_mask" => Tensor::from_i64(DType::I64, vec![1, 5], vec![1, 1, 1, 1, 0]),
                other => panic!("unexpected input {other}"),
            };
            inputs.push((name.clone(), t.expect("input tensor")));
        }
        run_function(m, "forward", &inputs, &FileWeights::new(base)).expect("interpreter run")
    }

    /// A decode step (when the module has `decode`): one new token after a zero 3-token cache.
    pub(crate) fn run_decode(m: &Module, base: &PathBuf) -> Option<Vec<(String, Tensor)>> {
        let f = m.function("decode")?;
        let mut inputs = Vec::new();
        for (name, v) in f.params() {
            let ty = f.ty(*v);
            let shape: Vec<usize> = ty
                .shape
                .iter()
                .map(|d| match (d.as_fixed(), d.as_symbol()) {
                    (Some(n), _) => n as usize,
                    (_, Some("past")) => 3,
                    _ => 1,
                })
                .collect();
            let n = shape.iter().product();
            let t = match name.as_str() {
                "input_ids" => Tensor::from_i64(DType::I64, shape, vec![42; n]),
                "position_ids" => Tensor::from_i64(DType::I64, shape, vec![3; n]),
                _ => Tensor::from_f64(ty.dtype, shape, (0..n).map(|i| (i % 7) as f64 * 0.1).collect()),
            };
            inputs.push((name.clone(), t.expect("input tensor")));
        }
        Some(run_function(m, "decode", &inputs, &FileWeights::new(base)).expect("decode run"))
    }

    /// Run `passes` (verifier after each) on the fixture and compare the interpreter's
    /// outputs before and after (rtol 1e-4, atol 1e-5). Returns the optimized module.
    pub(crate) fn assert_preserved(rel: &str, passes: &[&str]) -> Module {
        let (mut m, base) = load(rel);
        let before = run_forward(&m, &base);
        let decode_before = run_decode(&m, &base);
        let ops_before = m.op_count();
        PassManager::new(passes, PassOptions::default())
            .expect("known passes")
            .run(&mut m)
            .expect("pipeline runs and verifies");
        let after = run_forward(&m, &base);
        assert_eq!(before.len(), after.len());
        assert_eq!(decode_before.is_some(), m.function("decode").is_some());
        let decode_after = run_decode(&m, &base).unwrap_or_default();
        assert_eq!(decode_before.as_ref().map_or(0, Vec::len), decode_after.len());
        let pairs = before.iter().zip(&after).chain(decode_before.iter().flatten().zip(&decode_after));
        for ((na, a), (nb, b)) in pairs {
            assert_eq!(na, nb);
            assert_eq!(a.shape, b.shape, "{na}: shape");
            assert_eq!(a.dtype, b.dtype, "{na}: dtype");
            for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{na}: {x} vs {y}");
            }
        }
        assert!(m.op_count() <= ops_before, "a cleanup pass never adds ops");
        m
    }
}

/// Erase the ops in `seeds` that have become dead, and then whatever only they used,
/// leaving dead code that was there before the rewrite alone. Returns how many were erased.
pub fn erase_orphans(f: &mut Function, seeds: impl IntoIterator<Item = OpId>) -> usize {
    let mut work: Vec<OpId> = seeds.into_iter().collect();
    let mut erased = 0;
    while let Some(id) = work.pop() {
        let Some(data) = f.op(id) else { continue };
        if data.results.iter().any(|r| f.is_used(*r)) {
            continue;
        }
        let feeders: Vec<OpId> = data.operands.iter().filter_map(|v| f.producer(*v)).collect();
        f.erase_op(id);
        erased += 1;
        work.extend(feeders);
    }
    erased
}

/// The producers of `op`'s operands (the ops a rewrite of `op` may orphan).
pub fn operand_producers(f: &Function, op: OpId) -> Vec<OpId> {
    f.op(op).map(|d| d.operands.iter().filter_map(|v| f.producer(*v)).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::testing::assert_preserved;

    const PIPELINE: &[&str] = &["shape-inference", "canonicalize", "constant-folding", "cse", "dce"];

    #[test]
    fn the_whole_cleanup_pipeline_preserves_every_fixture() {
        let onnx = assert_preserved("tests/fixtures/onnx_llama/model.onnx", PIPELINE);
        assert!(onnx.op_count() < 200, "{}", onnx.op_count());
        for arch in ["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2", "bert"] {
            assert_preserved(&format!("tests/fixtures/hf/{arch}"), PIPELINE);
        }
    }
}
