#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu_check.sh: a full fine-tune of the same LLaMA shapes with transformers,
as people run it on one GPU: bf16 weights, fused AdamW, gradient checkpointing. Random token batches.

    python3 scripts/bench_torch_gpu.py --model /tmp/llama-7b-random --seq-len 2048 --steps 6 --results r.jsonl

Appends one JSON object to --results: tokens_per_s (mean over the timed steps), peak memory reserved by
PyTorch's allocator, or "oom" when the shape does not fit.
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default=None, help="label in the results (default: the model path)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="timed steps, after 2 warm-up steps")
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rec = {"runner": "pytorch", "model": a.name or a.model, "seq_len": a.seq_len, "batch": a.batch,
           "torch": torch.__version__, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).to(dev)
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
        model.train()
        rec["params"] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=dev == "cuda")
        vocab = model.config.vocab_size
        gen = torch.Generator(device=dev).manual_seed(0)

        def step():
            ids = torch.randint(0, vocab, (a.batch, a.seq_len), device=dev, generator=gen)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        for _ in range(2):
            step()
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        if dev == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        rec["tokens_per_s"] = a.batch * a.seq_len * a.steps / secs
        if dev == "cuda":
            rec["peak_mem_bytes"] = torch.cuda.max_memory_reserved()
    except torch.OutOfMemoryError:
        rec["oom"] = True
    with open(a.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
