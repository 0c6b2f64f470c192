#!/usr/bin/env python3
"""Writes test/fixtures/long_positions: a small LLaMA with llama3 RoPE scaling (Llama-3.1's: factor 8, original
context 8192, max_position_embeddings 131072), random weights, and transformers' fp32 logits for two sequences at
positions far past 8192, where the scaling's low-frequency band is what attends. qft's forward at the same
positions must agree (test/test_forward_golden.cpp). Run with the peer venv: /opt/fixenv/bin/python this."""
import json
import os
import sys

import safetensors.torch
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "long_positions")
STARTS = [9000, 100000]  # first position of each row
T = 20


def main():
    torch.manual_seed(300)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, vocab_size=300, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=1,
                         eos_token_id=2, attn_implementation="eager",
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    model = LlamaForCausalLM(config).float().eval()
    g = torch.Generator().manual_seed(301)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 if name.endswith("norm.weight") else 1.5 / p.shape[-1] ** 0.5
            p.copy_((1.0 if name.endswith("norm.weight") else 0.0) + scale * torch.randn(p.shape, generator=g))
    input_ids = torch.randint(3, config.vocab_size, (len(STARTS), T), generator=g)
    position_ids = torch.stack([torch.arange(s, s + T) for s in STARTS])
    with torch.no_grad():
        logits = model(input_ids=input_ids, position_ids=position_ids).logits
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    safetensors.torch.save_file({"input_ids": input_ids.to(torch.int32).contiguous(),
                                 "position_ids": position_ids.to(torch.int32).contiguous(),
                                 "logits": logits.float().contiguous()},
                                os.path.join(OUT, "golden.safetensors"))
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2)
    print("long_positions:", versions)


if __name__ == "__main__":
    main()
