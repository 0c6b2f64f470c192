#!/usr/bin/env python3
"""PyTorch peer for scripts/bench_cpu.sh: a full fine-tune of the same model with AdamW on the same shapes.

A model directory with weights is loaded; one with only config.json (scripts/make_bench_model.py) gets random
weights, as qft's model.init=random does. --checkpointing recomputes each layer in backward, as qft does.
Prints one JSON line: tokens/s (median over the timed steps, B*T tokens per step), the median step time and
peak RSS. Needs torch and transformers (see scripts/make_fixtures.py for the environment).
--ranks N runs N processes with DistributedDataParallel over gloo (as torchrun would), each on --batch sequences
and --threads threads: tokens/s then counts every rank's tokens (scripts/bench_ranks.sh).
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


def run(rank, args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load(args.model)
    if args.checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model.train()
    vocab = model.config.vocab_size
    if args.ranks > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
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
    if rank > 0:
        return
    tokens = args.batch * args.seq_len * args.ranks
    name = "AdamW fp32" + (", gradient checkpointing" if args.checkpointing else "")
    if args.ranks > 1:
        name += f", DDP (gloo) on {args.ranks} ranks"
    print(json.dumps({"peer": f"torch {torch.__version__} {name}", "threads": args.threads, "ranks": args.ranks,
                      "tokens_per_s": tokens / statistics.median(times), "step_s": statistics.median(times),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tiny-llama")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (recompute per layer)")
    ap.add_argument("--ranks", type=int, default=1, help="processes of DistributedDataParallel (gloo)")
    args = ap.parse_args()
    if args.ranks == 1:
        run(0, args)
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    torch.multiprocessing.spawn(run, args=(args,), nprocs=args.ranks)


if __name__ == "__main__":
    main()
