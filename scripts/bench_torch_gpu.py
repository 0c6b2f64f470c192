#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu_check.sh: a full fine-tune of a LLaMA shape with transformers, as people run
it on one GPU: bf16 weights, fused AdamW, gradient checkpointing, random token batches. The model is built from
config.json with random weights, directly on the GPU (as qft's model.init=random): no weight file is read.

    python3 scripts/bench_torch_gpu.py --model DIR_WITH_CONFIG_JSON --seq-len 2048 --steps 6 --results r.jsonl

Appends one JSON object to --results: tokens_per_s (over the timed steps), peak memory reserved by PyTorch's
allocator, or "oom": true when the shape does not fit. Refuses to run without a GPU (a 7B step on the CPU takes
hours): exit 2.
"""
import argparse
import json
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def build_model(path, device="cuda"):
    """Random bf16 weights from config.json, created on the device. from_config without a dtype argument works with
    every transformers release (the keyword was renamed from torch_dtype to dtype)."""
    config = AutoConfig.from_pretrained(path)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(default)
    return model.to(torch.bfloat16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="directory with config.json")
    ap.add_argument("--name", default=None, help="label in the results (default: the model path)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="timed steps, after 2 warm-up steps")
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_torch_gpu: torch sees no GPU; refusing to benchmark on the CPU", file=sys.stderr)
        sys.exit(2)
    rec = {"runner": "pytorch", "model": a.name or a.model, "seq_len": a.seq_len, "batch": a.batch,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name()}
    try:
        model = build_model(a.model)
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
        model.train()
        rec["params"] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        vocab = model.config.vocab_size
        gen = torch.Generator(device="cuda").manual_seed(0)

        def step():
            ids = torch.randint(0, vocab, (a.batch, a.seq_len), device="cuda", generator=gen)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        for _ in range(2):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        rec["tokens_per_s"] = a.batch * a.seq_len * a.steps / secs
        rec["tracked_peak_bytes"] = torch.cuda.max_memory_reserved()
    except torch.OutOfMemoryError:
        rec["oom"] = True
    with open(a.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
