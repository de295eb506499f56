//! Helpers the pattern-fusion passes (`fuse-linear`, `fuse-rms-norm`,
//! `fuse-rms-norm-residual`, `fuse-silu-mul`, `fuse-gelu`) share: matching binary ops with
//! either operand order, removing the ops a rewrite orphaned, and (for tests) running real
//! fixtures through the interpreter before and after a pass.

use crate::matchers;
use ferrumc_ir::{Function, Module, Op, OpId, ValueId};

/// The two operands of the binary op defining `v` when `is_op` accepts it.
pub fn binary(f: &Function, v: ValueId, is_op: fn(&Op) -> bool) -> Option<(OpId, ValueId, ValueId)> {
    let (id, data) = matchers::def(f, v)?;
    (is_op(&data.op) && data.operands.len() == 2).then(|| (id, data.operands[0], data.operands[1]))
}

/// The single operand of the unary op defining `v` when `is_op` accepts it.
pub fn unary(f: &Function, v: ValueId, is_op: fn(&Op) -> bool) -> Option<(OpId, ValueId)> {
    let (id, data) = matchers::def(f, v)?;
    (is_op(&data.op) && data.operands.len() == 1).then(|| (id, data.operands[0]))
}

/// Try `matcher` on `(a, b)` and then on `(b, a)`: add and mul commute.
pub fn either<T>(a: ValueId, b: ValueId, mut matcher: impl FnMut(ValueId, ValueId) -> Option<T>) -> Option<T> {
    matcher(a, b).or_else(|| matcher(b, a))
}

pub fn is_add(op: &Op) -> bool {
    matches!(op, Op::Add)
}
pub fn is_mul(op: &Op) -> bool {
    matches!(op, Op::Mul)
}
pub fn is_div(op: &Op) -> bool {
    matches!(op, Op::Div)
}

/// Whether `a` and `b` have the same dtype and the same dims (so an elementwise op over
/// them does not broadcast).
pub fn same_type(f: &Function, a: ValueId, b: ValueId) -> bool {
    f.ty(a) == f.ty(b)
}

/// Erase every op among `candidates` (and, transitively, their producers) whose results
/// are all unused. Returns how many ops were erased.
pub fn erase_dead(f: &mut Function, candidates: impl IntoIterator<Item = OpId>) -> usize {
    let mut work: Vec<OpId> = candidates.into_iter().collect();
    let mut erased = 0;
    while let Some(id) = work.pop() {
        let Some(data) = f.op(id) else { continue };
        if data.results.iter().any(|&r| f.is_used(r)) {
            continue;
        }
        let producers: Vec<OpId> = data.operands.iter().filter_map(|&v| f.producer(v)).collect();
        f.erase_op(id);
        erased += 1;
        work.extend(producers);
    }
    erased
}

/// Run `body` on every function of `m` with read access to the rest of the module (its
/// weight table, which scalar-constant matching reads).
pub fn each_function(m: &mut Module, mut body: impl FnMut(&Module, &mut Function)) {
    let mut functions = std::mem::take(&mut m.functions);
    for f in &mut functions {
        body(m, f);
    }
    m.functions = functions;
}

/// Live ops of `f` in topological order (empty if the graph has a cycle: the verifier
/// reports that, and a pass then leaves the function alone).
pub fn ops_in_order(f: &Function) -> Vec<OpId> {
    f.op_order().unwrap_or_default()
}

/// Test support: fixtures, interpreter runs and comparisons.
#[cfg(test)]
pub mod testing {
    use crate::{PassManager, PassOptions};
    use ferrumc_ir::interp::run_function;
    use ferrumc_ir::weights::FileWeights;
    use ferrumc_ir::{DType, Module, Tensor};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    pub fn fixture(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
    }

    /// The torch-exported ONNX llama and the directory its weights resolve against.
    pub fn onnx_llama() -> (Module, PathBuf) {
        let path = fixture("onnx_llama/model.onnx");
        let m = ferrumc_onnx::import_onnx(&path).expect("import onnx llama");
        (m, fixture("onnx_llama"))
    }

    /// An HF fixture folder (`llama`, `gpt2`, ...).
    pub fn hf(name: &str) -> (Module, PathBuf) {
        let dir = fixture(&format!("hf/{name}"));
        let (m, _) = ferrumc_hf::import_hf(&dir).expect("import hf fixture");
        (m, dir)
    }

    /// Deterministic pseudo-random values in [-scale, scale).
    pub fn random(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// `input_ids` i64 [1, 5] below 128 and `position_ids` 0..4 for the inputs `forward` has.
    pub fn llm_inputs(m: &Module) -> Vec<(String, Tensor)> {
        let f = m.function("forward").expect("forward");
        let ids = Tensor::from_i64(DType::I64, vec![1, 5], vec![3, 17, 99, 42, 127]).expect("ids");
        let pos = Tensor::from_i64(DType::I64, vec![1, 5], vec![0, 1, 2, 3, 4]).expect("pos");
        f.params()
            .iter()
            .map(|(name, _)| match name.as_str() {
                "input_ids" => (name.clone(), ids.clone()),
                "position_ids" => (name.clone(), pos.clone()),
                other => panic!("unexpected input {other}"),
            })
            .collect()
    }

    pub fn run(m: &Module, dir: &std::path::Path, inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        run_function(m, "forward", inputs, &FileWeights::new(dir)).expect("interpreter run")
    }

    /// Outputs agree within rtol 1e-4 / atol 1e-5.
    pub fn assert_close(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
        assert_eq!(a.len(), b.len());
        for ((na, ta), (_, tb)) in a.iter().zip(b) {
            assert_eq!(ta.shape, tb.shape, "{na}: shapes");
            for (x, y) in ta.to_f64_vec().iter().zip(tb.to_f64_vec()) {
                assert!((x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{na}: {x} vs {y}");
            }
        }
    }

    /// Run the named passes (with their dependencies, verifying after each).
    pub fn apply(m: &mut Module, passes: &[&str]) {
        PassManager::new(passes, PassOptions::default()).expect("schedule").run(m).expect("pipeline");
    }

    /// How many live ops of each kind all functions hold.
    pub fn histogram(m: &Module) -> BTreeMap<&'static str, usize> {
        let mut h = BTreeMap::new();
        for f in &m.functions {
            for id in f.op_ids() {
                if let Some(d) = f.op(id) {
                    *h.entry(d.op.name()).or_insert(0) += 1;
                }
            }
        }
        h
    }

    pub fn count(m: &Module, op: &str) -> usize {
        histogram(m).get(op).copied().unwrap_or(0)
    }

    /// Parse a text module (tests write small graphs by hand).
    pub fn parse(src: &str) -> Module {
        ferrumc_ir::text::parse_module(src).expect("parse")
    }

    /// Run `forward` of a module with only inline weights on random f32 inputs for each
    /// parameter (shapes must be static) and return the outputs.
    pub fn run_random(m: &Module, seed: u64) -> Vec<(String, Tensor)> {
        let f = m.function("forward").expect("forward");
        let inputs: Vec<(String, Tensor)> = f
            .params()
            .iter()
            .enumerate()
            .map(|(i, (name, v))| {
                let ty = f.ty(*v);
                let shape: Vec<usize> = ty.fixed_shape().expect("static").iter().map(|&d| d as usize).collect();
                let n = shape.iter().product();
                let t = Tensor::from_f64(ty.dtype, shape, random(n, seed + i as u64, 3.0)).expect("tensor");
                (name.clone(), t)
            })
            .collect();
        run(m, std::path::Path::new("."), &inputs)
    }

    /// Run `passes` on `m` and assert `forward` computes the same before and after on the
    /// LLM inputs; returns the optimized module.
    pub fn check_preserved(mut m: Module, dir: &std::path::Path, passes: &[&str]) -> Module {
        let inputs = llm_inputs(&m);
        let before = run(&m, dir, &inputs);
        apply(&mut m, passes);
        assert_close(&run(&m, dir, &inputs), &before);
        m
    }

    /// Run `passes` on a hand-written module and assert `forward` agrees on random inputs;
    /// returns the optimized module.
    pub fn check_random(src: &str, passes: &[&str]) -> Module {
        let mut m = parse(src);
        let before = run_random(&m, 11);
        apply(&mut m, passes);
        assert_close(&run_random(&m, 11), &before);
        m
    }
}
