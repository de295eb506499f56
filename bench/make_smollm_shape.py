"""Make the SmolLM2-135M-shaped Llama used for measurements: the real model's shape (hidden 576,
30 layers, 9 heads, 3 kv heads, head_dim 64, intermediate 1536, vocab 49152, tied embeddings)
with random weights (seeded), saved as a Hugging Face folder, plus its
torch.onnx.export(dynamo=True) graph (weights as external data beside it).

    python bench/make_smollm_shape.py OUT_DIR          # writes OUT_DIR/hf/ and OUT_DIR/onnx/model.onnx

Needs torch, transformers, onnx and onnxscript (tests/fixtures/hf/requirements.txt plus
onnx, onnxscript). 538 MB of f32 weights: keep OUT_DIR outside the repository.
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


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
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


if __name__ == "__main__":
    main()
