//! The same tiny Llama imported two ways — from its Hugging Face `config.json` (already
//! expressed with fused ops) and from its `torch.onnx.export(dynamo=True)` graph (primitive
//! ONNX decompositions) — must reach the same fused structure after `-O2`: the same
//! sequence of compute ops (embedding gather, rms_norm / rms_norm_residual, linear,
//! rotary_embedding, attention, silu_mul) and no leftover decomposition (pow, reduce_mean,
//! softmax, sigmoid, matmul on activations).

use ferrumc_ir::{Function, Module, Op};
use ferrumc_passes::{matchers, PassManager, PassOptions};
use ferrumc_tests::{models, repo_root};

/// Ops that carry the model's arithmetic (as opposed to reshapes and index bookkeeping).
fn is_compute(op: &Op) -> bool {
    matches!(
        op,
        Op::Gather { .. }
            | Op::RmsNorm { .. }
            | Op::RmsNormResidual { .. }
            | Op::Linear
            | Op::MatMul
            | Op::Gemm { .. }
            | Op::RotaryEmbedding { .. }
            | Op::Attention { .. }
            | Op::SiluMul
            | Op::Softmax { .. }
            | Op::Sigmoid
            | Op::Pow
            | Op::ReduceMean { .. }
    )
}

/// The compute ops of `f`, in execution order, skipping weight preprocessing (transposes of
/// weights) and values fixed by the input shapes alone (the ONNX export computes its rotary
/// angle table as `inv_freq ⊗ range(seq)` at run time, where the HF import has the table as
/// a weight).
fn compute_sequence(f: &Function) -> Vec<String> {
    let order = f.op_order().unwrap_or_default();
    order
        .into_iter()
        .filter_map(|id| f.op(id))
        .filter(|data| is_compute(&data.op))
        .filter(|data| !data.results.iter().all(|r| matchers::is_weight_derived(f, *r)))
        .filter(|data| !data.results.iter().all(|r| matchers::is_shape_derived(f, *r)))
        // Position/rotary-table gathers are index bookkeeping, not the embedding lookup.
        .filter(|data| !matches!(data.op, Op::Gather { .. }) || f.ty(data.results[0]).dtype.is_float())
        .map(|data| data.op.name().to_string())
        .collect()
}

fn optimized(path: &std::path::Path) -> Module {
    let (mut m, _) = models::load(path).unwrap_or_else(|e| panic!("{e}"));
    let mut manager = PassManager::for_level(2, &[], PassOptions::default()).unwrap().verify_each(true);
    manager.run(&mut m).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m
}

#[test]
fn hf_and_onnx_llama_converge_after_o2() {
    let root = repo_root().join("tests/fixtures");
    let hf = optimized(&root.join("hf/llama"));
    let onnx = optimized(&root.join("onnx_llama/model.onnx"));
    let hf_seq = compute_sequence(hf.function("forward").expect("hf forward"));
    let onnx_seq = compute_sequence(onnx.function("forward").expect("onnx forward"));
    for leftover in ["pow", "reduce_mean", "softmax", "sigmoid", "matmul", "gemm"] {
        assert!(!onnx_seq.iter().any(|s| s == leftover), "`{leftover}` left unfused in the ONNX import: {onnx_seq:?}");
    }
    assert_eq!(hf_seq, onnx_seq, "fused structure differs\nhf:   {hf_seq:?}\nonnx: {onnx_seq:?}");
    // 2 layers: 7 linear each + lm_head, 2 rotary + 1 attention + 1 silu_mul per layer.
    let count = |name: &str| hf_seq.iter().filter(|s| *s == name).count();
    assert_eq!((count("linear"), count("rotary_embedding"), count("attention"), count("silu_mul")), (15, 4, 2, 2));
}
