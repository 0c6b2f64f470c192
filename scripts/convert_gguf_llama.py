#!/usr/bin/env python3
"""Converts a LLaMA-architecture GGUF file into a plain HF model directory (safetensors, config, tokenizer).

transformers dequantizes GGUF weights when it loads them (`from_pretrained(dir, gguf_file=...)`), but refuses to
save such a model; so the weights are copied into a LlamaForCausalLM built from the same config without any
quantization_config, which is saved with the tokenizer (tokenizer.json, tokenizer_config.json with the chat
template) and the generation config.

    python scripts/convert_gguf_llama.py --gguf FILE.gguf --out models/NAME
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()

    src_dir, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if config.model_type != "llama":
        sys.exit(f"{args.gguf}: model_type {config.model_type!r} is not llama")
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight is the embedding and may be absent from the state dict.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        sys.exit(f"weights do not match: missing {missing}, unexpected {unexpected}")
    plain = plain.to(getattr(torch, args.dtype))

    tmp = tempfile.mkdtemp(prefix=".convert_", dir=os.path.dirname(os.path.abspath(args.out)) or ".")
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        gen = quantized.generation_config
        if gen is not None:
            gen.save_pretrained(tmp)
        with open(os.path.join(tmp, "CONVERTED_FROM.json"), "w") as f:
            json.dump({"gguf": os.path.basename(args.gguf), "transformers": transformers.__version__,
                       "torch": torch.__version__, "dtype": args.dtype}, f, indent=1)
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.replace(tmp, args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.out}: {sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
