#!/usr/bin/env python3
"""Checks `qft export --lora` of a train.method=lora checkpoint against HuggingFace transformers + PEFT.

It exports the checkpoint three ways (the frozen base, the PEFT adapter, the merged model), loads the adapter onto
the base with PEFT's PeftModel.from_pretrained, and compares the logits of the first document of a JSONL file:

  - PEFT(base + adapter) vs transformers(merged): the two exports describe the same model; must agree to --tol;
  - PEFT(base + adapter) vs qft(merged):          the same in qft's float forward; must agree to --tol;
  - PEFT(base + adapter) vs qft(checkpoint):      what GSE adapters' integer products (rounded activations and
                                                  adapter inputs) cost against float LoRA (reported, not asserted).

    /opt/fixenv/bin/python scripts/check_peft_export.py --checkpoint runs/tiny_lora/step_00001000

Exit status 0 when both bounded comparisons hold (max-norm relative error of the logits), else 1.
"""
import argparse
import json
import os
import sys
import tempfile

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import ROOT, qft, qft_logits, rel_err  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="qft checkpoint of a train.method=lora run (step_*/)")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "eval.jsonl"), help="JSONL with a text field")
    ap.add_argument("--qft", default=os.path.join(ROOT, "build", "qft"), help="qft executable")
    ap.add_argument("--tol", type=float, default=1e-4, help="bound on the two float comparisons")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = {k: os.path.join(tmp, k) for k in ("base", "adapter", "merge")}
        for kind, path in out.items():
            qft(a.qft, "export", "--checkpoint", a.checkpoint, "--out", path, "--lora", kind, "--dtype", "fp32")
        with open(os.path.join(out["adapter"], "adapter_config.json")) as f:
            config = json.load(f)
        ids, ckpt_logits = qft_logits(a.qft, a.checkpoint, a.data, os.path.join(tmp, "ckpt.safetensors"))
        ids2, merged_qft = qft_logits(a.qft, out["merge"], a.data, os.path.join(tmp, "merged.safetensors"))
        assert torch.equal(ids, ids2)
        base = AutoModelForCausalLM.from_pretrained(out["base"], dtype=torch.float32)
        model = PeftModel.from_pretrained(base, out["adapter"])
        model.eval()
        # every adapter tensor reached a LoRA layer (a name PEFT did not match would leave B = 0 silently)
        loaded = {n for n, _ in model.named_parameters() if "lora_" in n}
        assert len(loaded) == len(config["target_modules"]) * 2 * base.config.num_hidden_layers, sorted(loaded)[:4]
        merged = AutoModelForCausalLM.from_pretrained(out["merge"], dtype=torch.float32)
        merged.eval()
        with torch.no_grad():
            peft_logits = model(input_ids=ids).logits.double()
            merged_logits = merged(input_ids=ids).logits.double()
        with model.disable_adapter(), torch.no_grad():
            base_logits = model(input_ids=ids).logits.double()

    peft_vs_merged = rel_err(merged_logits, peft_logits)
    peft_vs_qft = rel_err(merged_qft, peft_logits)
    gse = rel_err(ckpt_logits, peft_logits)
    effect = rel_err(base_logits, peft_logits)
    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}; "
          f"{ids.shape[1]} tokens; r {config['r']}, alpha {config['lora_alpha']}, targets {config['target_modules']}")
    print(f"PEFT(base + adapter) vs transformers(merged): max-norm relative {peft_vs_merged:.3e} (bound {a.tol:g})")
    print(f"PEFT(base + adapter) vs qft(merged):          max-norm relative {peft_vs_qft:.3e} (bound {a.tol:g})")
    print(f"PEFT(base + adapter) vs qft(checkpoint):      max-norm relative {gse:.3e} (the adapters' own arithmetic)")
    print(f"PEFT(base + adapter) vs the base alone:       max-norm relative {effect:.3e} (what the adapters changed)")
    ok = peft_vs_merged <= a.tol and peft_vs_qft <= a.tol and effect > 10 * a.tol
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
