#!/usr/bin/env python3
"""Writes a randomly initialised LLaMA directory of a named shape, for benchmarks (scripts/gpu_check.sh).

The weights are N(0, 0.02) in bf16 (norms 1), written straight to safetensors with no model object, so even
LLaMA-2-7B takes seconds on a GPU. The tokenizer is the bundled tiny one (ids < 500): token ids are all a
throughput benchmark needs. Needs torch and safetensors only.

    python3 scripts/make_random_llama.py --shape 7b --out /tmp/llama-7b-random
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {
    # the bundled demo model's shape, vocab 32000 as a real checkpoint has
    "tiny": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=32000),
    # TinyLlama-1.1B
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    # LLaMA-2-7B
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}


def tensor_shapes(c):
    C, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    D = C // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * D
    yield "model.embed_tokens.weight", (V, C)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (C,)
        yield p + "self_attn.q_proj.weight", (C, C)
        yield p + "self_attn.k_proj.weight", (kv, C)
        yield p + "self_attn.v_proj.weight", (kv, C)
        yield p + "self_attn.o_proj.weight", (C, C)
        yield p + "post_attention_layernorm.weight", (C,)
        yield p + "mlp.gate_proj.weight", (I, C)
        yield p + "mlp.up_proj.weight", (I, C)
        yield p + "mlp.down_proj.weight", (C, I)
    yield "model.norm.weight", (C,)
    yield "lm_head.weight", (V, C)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", rms_norm_eps=1e-5,
                  rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, torch_dtype="bfloat16", attention_bias=False, mlp_bias=False, **shape)
    os.makedirs(a.out, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(a.seed)
    tensors = {}
    for name, s in tensor_shapes(config):
        if len(s) == 1:
            tensors[name] = torch.ones(s, dtype=torch.bfloat16)
        else:
            tensors[name] = (torch.randn(s, generator=gen, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(ROOT, "models", "tiny-llama", f), a.out)
    params = sum(t.numel() for t in tensors.values())
    print(f"{a.out}: {a.shape}, {params / 1e9:.3f} B parameters")


if __name__ == "__main__":
    main()
