#!/usr/bin/env python3
"""Writes a LLaMA directory of a named shape for benchmarks (scripts/gpu_check.sh): config.json and the bundled
tiny tokenizer (ids < 500; token ids are all a throughput benchmark needs), and no weights. qft draws its
weights with model.init=random and the PyTorch peer builds its model from the same config.json, so even
LLaMA-2-7B needs no 13 GB file. Standard library only.

    python3 scripts/make_bench_model.py --shape 7b --out /tmp/llama-7b
"""
import argparse
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {
    # the bundled demo model's shape, vocab 32000 as a real checkpoint has
    "tiny": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=32000),
    # TinyLlama-1.1B
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    # SmolLM2-135M: GQA 9:3, tied embeddings (scripts/bench_cpu.sh)
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                    max_position_embeddings=8192),
    # LLaMA-2-7B
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
}
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def parameter_count(c):
    C, I, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    kv = c["num_key_value_heads"] * (C // c["num_attention_heads"])
    tables = 1 if c["tie_word_embeddings"] else 2
    return tables * V * C + C + L * (2 * C * C + 2 * kv * C + 3 * C * I + 2 * C)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", rms_norm_eps=1e-5,
                  rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, torch_dtype="bfloat16", attention_bias=False, mlp_bias=False,
                  initializer_range=0.02)
    config.update(SHAPES[a.shape])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(ROOT, "models", "tiny-llama", name), a.out)
    print(f"{a.out}: {a.shape}, {parameter_count(config) / 1e9:.3f} B parameters, no weights")


if __name__ == "__main__":
    main()
