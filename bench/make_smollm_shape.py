"""Make the SmolLM2-135M-shaped Llama used for measurements: the real model's shape (hidden 576,
30 layers, 9 heads, 3 kv heads, head_dim 64, intermediate 1536, vocab 49152, tied embeddings)
with random weights (seeded), saved as a Hugging Face folder, plus its
torch.onnx.export(dynamo=True) graph (weights as external data beside it).

    python bench/make_smollm_shape.py OUT_DIR          # writes OUT_DIR/hf/ and OUT_DIR/onnx/model.onnx
    python bench/make_smollm_shape.py --optimum OUT_DIR  # also OUT_DIR/optimum/model.onnx

Needs torch, transformers, onnx and onnxscript (tests/fixtures/hf/requirements.txt plus
onnx, onnxscript). 538 MB of f32 weights: keep OUT_DIR outside the repository. `--optimum` also
exports OUT_DIR/hf with optimum (`text-generation-with-past`: KV cache, attention mask and
position ids as inputs, the Hub's usual ONNX decoder form), which needs `optimum==2.1.0
optimum-onnx==0.1.0 onnxruntime`; an existing OUT_DIR/hf is reused.
"""
import pathlib
import sys

import torch
import transformers


class LogitsOnly(torch.nn.Module):
    """forward(input_ids) -> logits, without a KV cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits


def export_optimum(out):
    """OUT_DIR/optimum/model.onnx from OUT_DIR/hf, by optimum's exporter."""
    from optimum.exporters.onnx import main_export

    main_export(str(out / "hf"), output=str(out / "optimum"), task="text-generation-with-past")
    print(f"wrote {out / 'optimum' / 'model.onnx'}")


def main():
    argv = sys.argv[1:]
    optimum = "--optimum" in argv
    argv = [a for a in argv if a != "--optimum"]
    if len(argv) != 1:
        sys.exit(__doc__)
    out = pathlib.Path(argv[0])
    if optimum and (out / "hf" / "config.json").exists():
        export_optimum(out)
        return
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    cfg._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.save_pretrained(out / "hf", safe_serialization=True)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    input_ids = torch.randint(0, cfg.vocab_size, (1, 16), dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=2, max=2048)
    program = torch.onnx.export(
        LogitsOnly(model).eval(),
        (input_ids,),
        dynamo=True,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}},
        external_data=True,
    )
    program.save(str(out / "onnx" / "model.onnx"), external_data=True)
    print(f"wrote {out / 'hf'} and {out / 'onnx' / 'model.onnx'}")
    if optimum:
        export_optimum(out)


if __name__ == "__main__":
    main()
