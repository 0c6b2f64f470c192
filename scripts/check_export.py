#!/usr/bin/env python3
"""Checks `qft export` against HuggingFace transformers, the peer an exported model must work in.

It exports a qft checkpoint, has qft write the logits of the first document of a JSONL file (once from the
checkpoint, once from the export), loads the export with transformers' LlamaForCausalLM and compares:

  - transformers(export) vs qft(export): the same weights in two implementations; must agree to --tol;
  - qft(export) vs qft(checkpoint): what the export's dtype rounding costs (reported, not asserted).

    /opt/fixenv/bin/python scripts/check_export.py --checkpoint runs/tiny/step_00000500 --data data/eval.jsonl

Exit status 0 when the first comparison is within --tol (max-norm relative error of the logits), else 1.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qft(exe, *args):
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check_export: `qft {' '.join(args)}` failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def qft_logits(exe, model, data, path):
    qft(exe, "eval", "--model", model, "--data", data, "--json", "--save-logits", path)
    t = load_file(path)
    return t["input_ids"].long(), t["logits"].double()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="qft checkpoint directory (step_*/)")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "eval.jsonl"), help="JSONL with a text field")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--qft", default=os.path.join(ROOT, "build", "qft"), help="qft executable")
    ap.add_argument("--tol", type=float, default=1e-4, help="bound on transformers(export) vs qft(export)")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        export = os.path.join(tmp, "export")
        qft(a.qft, "export", "--checkpoint", a.checkpoint, "--out", export, "--dtype", a.dtype)
        ids, ckpt_logits = qft_logits(a.qft, a.checkpoint, a.data, os.path.join(tmp, "ckpt.safetensors"))
        ids2, export_logits = qft_logits(a.qft, export, a.data, os.path.join(tmp, "export.safetensors"))
        assert torch.equal(ids, ids2)
        model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
        model.eval()
        with torch.no_grad():
            hf_logits = model(input_ids=ids).logits.double()

    hf_vs_qft = rel_err(export_logits, hf_logits)
    rounding = rel_err(export_logits, ckpt_logits)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; {ids.shape[1]} tokens, "
          f"vocab {hf_logits.shape[-1]}, export dtype {a.dtype}")
    print(f"transformers(export) vs qft(export):   max |diff| {(export_logits - hf_logits).abs().max().item():.3e}, "
          f"max-norm relative {hf_vs_qft:.3e} (bound {a.tol:g})")
    print(f"qft(export) vs qft(checkpoint):         max |diff| {(export_logits - ckpt_logits).abs().max().item():.3e}, "
          f"max-norm relative {rounding:.3e} ({a.dtype} rounding of the weights)")
    ok = hf_vs_qft <= a.tol
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
