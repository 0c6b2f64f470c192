#!/usr/bin/env python3
"""Checks qft on a real pretrained model, SmolLM2-135M-Instruct (scripts/get_smollm2.sh), against transformers:

  - eval: the mean token loss of data/eval.jsonl, qft vs transformers in fp32 (relative difference <= --loss-tol);
  - generate: greedy answers to chat prompts through the model's own chat template (qft --template auto vs
    apply_chat_template + generate(do_sample=False)); the new tokens must be identical for at least
    --min-tokens tokens on every prompt (or to the same stop token).

    /opt/fixenv/bin/python scripts/check_smollm2.py --qft build/qft

Prints one line per check; exit status 0 when all pass.
"""
import argparse
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import qft  # noqa: E402  (runs a qft command, exits with its stderr when it fails)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue in a few sentences.",
    "List five fruits and describe the taste of each one.",
]


def hf_eval_loss(model, tok, data, seq_len):
    """qft eval's definition: each text encoded with the tokenizer's own BOS/EOS, cut into seq_len windows."""
    total, count = 0.0, 0
    with open(data) as f:
        for line in f:
            if not line.strip():
                continue
            ids = tok(json.loads(line)["text"])["input_ids"]
            for s in range(0, len(ids) - 1, seq_len):
                window = ids[s:s + seq_len + 1]
                x = torch.tensor([window[:-1]])
                with torch.no_grad():
                    logits = model(x).logits.double()[0]
                total += torch.nn.functional.cross_entropy(logits, torch.tensor(window[1:]), reduction="sum").item()
                count += len(window) - 1
    return total / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qft", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "smollm2-135m-instruct"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "eval.jsonl"))
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--loss-tol", type=float, default=1e-4)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--min-tokens", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    ok = True

    ours = json.loads(qft(args.qft, "eval", "--model", args.model, "--data", args.data, "--seq-len", str(args.seq_len),
                          "--device", "cpu", "--json"))["loss"]
    theirs = hf_eval_loss(model, tok, args.data, args.seq_len)
    rel = abs(ours - theirs) / abs(theirs)
    print(f"eval loss: qft {ours:.6f}, transformers {theirs:.6f}, relative difference {rel:.2e} (tolerance {args.loss_tol:g})")
    ok &= rel <= args.loss_tol

    stops = set(tok.convert_tokens_to_ids([tok.eos_token]))
    for prompt in PROMPTS:
        g = json.loads(qft(args.qft, "generate", "--model", args.model, "--template", "auto", "--temperature", "0",
                           "--max-new-tokens", str(args.new_tokens), "--device", "cpu", "--json", "--prompt", prompt))
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True)["input_ids"]
        same_prompt = g["prompt_tokens"] == len(ids)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False,
                                 eos_token_id=sorted(stops), pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        if out and out[-1] in stops:
            out = out[:-1]
        agree = 0
        while agree < min(len(out), len(g["tokens"])) and out[agree] == g["tokens"][agree]:
            agree += 1
        stopped_together = g["hit_eos"] and len(out) < args.new_tokens and agree == len(out) == len(g["tokens"])
        passed = same_prompt and (agree >= args.min_tokens or stopped_together)
        print(f"generate: {agree} of {len(g['tokens'])} new tokens equal to transformers' ({len(out)}) "
              f"{'ok' if passed else 'MISMATCH'}: {prompt!r} -> {g['text'][:60]!r}")
        ok &= passed
    print("check_smollm2:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
