#!/usr/bin/env python3
"""Tokenizer speed, qft against HF tokenizers (the Rust library behind transformers' fast tokenizers), side by side.

Both encode the same lines (a few MB in all, each line a text of its own, as the records of a dataset) on one
thread (RAYON_NUM_THREADS=1; HF's encode_batch); the ids must be equal (compared by an FNV-1a fingerprint).
Prints MB/s for each and qft's share of HF's throughput. Tokenizers: the fixtures of each kind and, when present,
the real SmolLM2 one (scripts/get_smollm2.sh).

    /opt/fixenv/bin/python scripts/bench_tokenizer.py --qft build/qft [--mb 4]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_text(mb, seed=0):
    """English, code, numbers and some multilingual text, shuffled by paragraph: a few MB of varied input."""
    rng = random.Random(seed)
    parts = []
    with open(os.path.join(ROOT, "data", "corpus.txt")) as f:
        parts += [p for p in f.read().split("\n") if p.strip()]
    for name in ("tiny_instruct/train.jsonl", "eval.jsonl"):
        with open(os.path.join(ROOT, "data", name)) as f:
            parts += [line.strip() for line in f if line.strip()]
    for d in ("llama3_bpe",):
        with open(os.path.join(ROOT, "test", "fixtures", "tokenizers", d, "cases.json")) as f:
            parts += [c["text"] for c in json.load(f) if "<|" not in c["text"]]
    for root, _, files in os.walk(os.path.join(ROOT, "text")):
        for name in files:
            with open(os.path.join(root, name)) as f:
                parts.append(f.read())
    out, size = [], 0
    while size < mb * 1e6:
        p = rng.choice(parts)
        out.append(p)
        size += len(p.encode()) + 1
    return "\n".join(out)


def fingerprint(ids):
    """FNV-1a over the ids' 32-bit little-endian bytes, as `qft tokenize --json` reports it."""
    h = 0xcbf29ce484222325
    for i in ids:
        for b in (i & 0xFF, (i >> 8) & 0xFF, (i >> 16) & 0xFF, (i >> 24) & 0xFF):
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qft", required=True)
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs for each")
    args = ap.parse_args()
    text = make_text(args.mb)
    dirs = [os.path.join(ROOT, "test", "fixtures", "tokenizers", d) for d in ("llama3_bpe", "gpt2_bpe", "sp_bpe")]
    smol = os.path.join(ROOT, "models", "smollm2-135m-instruct")
    if os.path.isdir(smol):
        dirs.append(smol)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
        path = f.name
    print(f"text: {len(text.encode()) / 1e6:.2f} MB, one thread each, best of {args.repeat}")
    print(f"{'tokenizer':<24} {'tokens':>9} {'HF MB/s':>9} {'qft MB/s':>9} {'qft/HF':>7}  ids")
    ok = True
    try:
        for d in dirs:
            hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            hf_best, ids = 0.0, None
            lines = text.split("\n")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                encodings = hf.encode_batch(lines, add_special_tokens=False)
                hf_best = max(hf_best, len(text.encode()) / 1e6 / (time.perf_counter() - t0))
            ids = [i for e in encodings for i in e.ids]
            qft_best, qft_tokens = 0.0, None
            for _ in range(args.repeat):
                r = subprocess.run([args.qft, "tokenize", "--model", d, "--file", path, "--lines", "--json"], capture_output=True,
                                   text=True, check=True)
                j = json.loads(r.stdout)
                qft_best, qft_print = max(qft_best, j["mb_per_s"]), j["fingerprint"]
            ids_ok = qft_print == fingerprint(ids)
            ok &= ids_ok
            print(f"{os.path.basename(d):<24} {len(ids):>9} {hf_best:>9.2f} {qft_best:>9.2f} {qft_best / hf_best:>6.2f}x  "
                  f"{'equal' if ids_ok else 'DIFFERENT'}")
    finally:
        os.unlink(path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
