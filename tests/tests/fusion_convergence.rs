//! The same tiny model (Llama, Qwen2, Mistral) imported two ways — from its Hugging Face
//! `config.json` (already expressed with fused ops) and from its `torch.onnx.export(dynamo=True)`
//! graph (primitive ONNX decompositions) — must reach the same fused structure after `-O2`: the same
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

fn converge(hf_dir: &str, onnx_file: &str) {
    let root = repo_root().join("tests/fixtures");
    let hf = optimized(&root.join(hf_dir));
    let onnx = optimized(&root.join(onnx_file));
    let hf_seq = compute_sequence(hf.function("forward").expect("hf forward"));
    let onnx_seq = compute_sequence(onnx.function("forward").expect("onnx forward"));
    for leftover in ["pow", "reduce_mean", "softmax", "sigmoid", "matmul", "gemm"] {
        assert!(!onnx_seq.iter().any(|s| s == leftover), "`{leftover}` left unfused in {onnx_file}: {onnx_seq:?}");
    }
    assert_eq!(hf_seq, onnx_seq, "fused structure differs\nhf:   {hf_seq:?}\nonnx: {onnx_seq:?}");
    // Per layer: 7 linear (q, k, v, o, gate, up, down), 2 rotary, 1 attention, 1 silu_mul; plus lm_head.
    let layers = match hf.attrs.get("num_layers") {
        Some(ferrumc_ir::Attr::Int(n)) => usize::try_from(*n).expect("layer count"),
        other => panic!("num_layers attribute missing: {other:?}"),
    };
    let count = |name: &str| hf_seq.iter().filter(|s| *s == name).count();
    assert_eq!(
        (count("linear"), count("rotary_embedding"), count("attention"), count("silu_mul")),
        (7 * layers + 1, 2 * layers, layers, layers)
    );
}

#[test]
fn hf_and_onnx_llama_converge_after_o2() {
    converge("hf/llama", "onnx_llama/model.onnx");
}

#[test]
fn hf_and_onnx_qwen2_converge_after_o2() {
    converge("hf/qwen2", "onnx_exports/qwen2/model.onnx");
}

#[test]
fn hf_and_onnx_mistral_converge_after_o2() {
    converge("hf/mistral", "onnx_exports/mistral/model.onnx");
}
