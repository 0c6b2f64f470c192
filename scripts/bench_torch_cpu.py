#!/usr/bin/env python3
"""PyTorch peer for scripts/bench_cpu.sh: a full fine-tune of the same model with AdamW on the same shapes.

A model directory with weights is loaded; one with only config.json (scripts/make_bench_model.py) gets random
weights, as qft's model.init=random does. --checkpointing recomputes each layer in backward, as qft does.
Prints one JSON line: tokens/s (median over the timed steps, B*T tokens per step), the median step time and
peak RSS. Needs torch and transformers (see scripts/make_fixtures.py for the environment).
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def load(path):
    if any(os.path.exists(os.path.join(path, f)) for f in ("model.safetensors", "model.safetensors.index.json")):
        return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    config = LlamaConfig.from_pretrained(path)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).to(torch.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tiny-llama")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (recompute per layer)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load(args.model)
    if args.checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    vocab = model.config.vocab_size
    times = []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(3, vocab, (args.batch, args.seq_len))
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    tokens = args.batch * args.seq_len
    name = "AdamW fp32" + (", gradient checkpointing" if args.checkpointing else "")
    print(json.dumps({"peer": f"torch {torch.__version__} {name}", "threads": args.threads,
                      "tokens_per_s": tokens / statistics.median(times), "step_s": statistics.median(times),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
