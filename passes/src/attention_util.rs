//! Helpers shared by the `fuse-rotary` and `fuse-attention` matchers: reading constant
//! integer operands (constant ops or inline weights), decoding both `slice` forms, adding
//! small constants, and erasing the ops a rewrite left without uses.

use crate::matchers::def;
use ferrumc_ir::{
    DType, Dim, Function, Module, Op, OpId, Tensor, TensorData, TensorType, ValueDef, ValueId, WeightSource,
};

/// The integer elements of `v` when it is a constant (a `constant` op or an inline weight).
pub fn const_ints(m: &Module, f: &Function, v: ValueId) -> Option<Vec<i64>> {
    let tensor = match &f.value(v).def {
        ValueDef::Weight { name } => match &m.weight_decl(name)?.source {
            WeightSource::Inline(t) => t,
            _ => return None,
        },
        _ => ferrumc_ir::infer::constant_value(f, v)?,
    };
    if tensor.dtype.is_float() {
        return None;
    }
    Some(tensor.to_i64_vec())
}

/// A `slice` along one axis with step 1, in either form (attributes or `starts`/`ends`
/// operands), with its start/end normalised against a static extent `dim`:
/// negative indices count from the end, then both are clamped to `[0, dim]`.
/// Returns `(source, axis (normalised against rank), start, end)`.
pub fn unit_slice(m: &Module, f: &Function, v: ValueId) -> Option<(ValueId, usize, i64, i64)> {
    let (_, data) = def(f, v)?;
    let Op::Slice { axes, starts, ends, steps } = &data.op else { return None };
    let src = *data.operands.first()?;
    let (starts, ends) = match data.operands.len() {
        1 => (starts.clone(), ends.clone()),
        3 => (const_ints(m, f, data.operands[1])?, const_ints(m, f, data.operands[2])?),
        _ => return None,
    };
    if axes.len() != 1 || starts.len() != 1 || ends.len() != 1 {
        return None;
    }
    if !(steps.is_empty() || steps.as_slice() == [1]) {
        return None;
    }
    let rank = f.ty(src).rank() as i64;
    let axis = if axes[0] < 0 { axes[0] + rank } else { axes[0] };
    if !(0..rank).contains(&axis) {
        return None;
    }
    let dim = f.ty(src).shape[axis as usize].as_fixed()?;
    let norm = |i: i64| if i < 0 { i.saturating_add(dim).clamp(0, dim) } else { i.clamp(0, dim) };
    Some((src, axis as usize, norm(starts[0]), norm(ends[0])))
}

/// Normalise a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Add a `constant` op holding `t`.
pub fn add_const(f: &mut Function, t: Tensor) -> ValueId {
    let ty = TensorType::fixed(t.dtype, &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
    f.add_op1(Op::Constant { value: t }, vec![], ty)
}

/// Add an i64 1-D `constant` holding `v`.
pub fn i64_vec(f: &mut Function, v: &[i64]) -> ValueId {
    add_const(f, Tensor { dtype: DType::I64, shape: vec![v.len()], data: TensorData::Int(v.to_vec()) })
}

/// Erase `roots` and, transitively, the producers of their operands, as long as the op's
/// results have no uses left (so only what the rewrite orphaned goes).
pub fn erase_dead(f: &mut Function, roots: Vec<OpId>) {
    let mut stack = roots;
    while let Some(op) = stack.pop() {
        let Some(data) = f.op(op) else { continue };
        if data.results.iter().any(|&r| f.is_used(r)) {
            continue;
        }
        let operands = data.operands.clone();
        f.erase_op(op);
        stack.extend(operands.iter().filter_map(|&v| f.producer(v)));
    }
}

/// Whether two dims are the same size at run time for certain (equal and not `?`).
pub fn same_dim(a: &Dim, b: &Dim) -> bool {
    a.provably_eq(b) == Some(true)
}

/// Interpreter harness for the fusion tests: run a module before and after passes and
/// compare every output.
#[cfg(test)]
pub mod test_support {
    use crate::{PassManager, PassOptions};
    use ferrumc_ir::interp::run_function;
    use ferrumc_ir::weights::{FileWeights, InlineWeights, WeightProvider};
    use ferrumc_ir::{text, DType, Module, Tensor, TensorData};
    use std::path::PathBuf;

    pub fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx_llama")
    }

    /// The dynamo-exported tiny Llama, imported raw.
    pub fn onnx_llama() -> Module {
        ferrumc_onnx::import_onnx(&fixture_dir().join("model.onnx")).expect("fixture imports")
    }

    pub fn parse(src: &str) -> Module {
        text::parse_module(src).unwrap_or_else(|e| panic!("parse: {e}"))
    }

    /// Token ids `[b, s]` below 128.
    pub fn ids(b: usize, s: usize) -> Tensor {
        let v = (0..b * s).map(|i| ((i * 37 + 11) % 128) as i64).collect();
        Tensor { dtype: DType::I64, shape: vec![b, s], data: TensorData::Int(v) }
    }

    /// Deterministic pseudo-random floats in [-2, 2).
    pub fn floats(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        let v = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            })
            .map(|v| (v as f32) as f64)
            .collect();
        Tensor { dtype: DType::F32, shape: shape.to_vec(), data: TensorData::Float(v) }
    }

    pub fn run(m: &Module, func: &str, inputs: &[(&str, Tensor)], weights: &dyn WeightProvider) -> Vec<Tensor> {
        let inputs: Vec<(String, Tensor)> = inputs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        run_function(m, func, &inputs, weights)
            .unwrap_or_else(|e| panic!("interp: {e}"))
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Run `passes` (with verification), returning the optimized module.
    pub fn optimize(m: &Module, passes: &[&str]) -> Module {
        let mut out = m.clone();
        let mut pm = PassManager::new(passes, PassOptions::default()).expect("known passes").verify_each(true);
        pm.run(&mut out).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    pub fn assert_close(a: &[Tensor], b: &[Tensor], rtol: f64, atol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.shape, y.shape);
            for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
                assert!((p - q).abs() <= atol + rtol * q.abs(), "{p} vs {q}");
            }
        }
    }

    /// Count live ops of the given name in function `func`.
    pub fn count(m: &Module, func: &str, name: &str) -> usize {
        let f = m.function(func).expect("function");
        f.op_ids().filter(|o| f.op(*o).is_some_and(|d| d.op.name() == name)).count()
    }

    /// The ONNX Llama forward at `[1, 5]` and `[2, 7]` agrees before and after `passes`;
    /// returns the optimized module.
    pub fn check_onnx_llama(passes: &[&str]) -> Module {
        let m = onnx_llama();
        let opt = optimize(&m, passes);
        let w = FileWeights::new(fixture_dir());
        for (b, s) in [(1, 5), (2, 7)] {
            let before = run(&m, "forward", &[("input_ids", ids(b, s))], &w);
            let after = run(&opt, "forward", &[("input_ids", ids(b, s))], &w);
            assert_close(&after, &before, 1e-4, 1e-5);
        }
        opt
    }

    /// A small inline module before/after `passes` on the given inputs.
    pub fn check_small(m: &Module, passes: &[&str], inputs: &[(&str, Tensor)]) -> Module {
        let opt = optimize(m, passes);
        let before = run(m, "forward", inputs, &InlineWeights);
        let after = run(&opt, "forward", inputs, &InlineWeights);
        assert_close(&after, &before, 1e-5, 1e-6);
        opt
    }
}
