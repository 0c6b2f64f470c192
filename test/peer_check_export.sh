#!/usr/bin/env bash
# ctest peer.check_export: a short qft run, exported and loaded by HuggingFace transformers
# (scripts/check_export.py), and a LoRA run exported as a PEFT adapter (scripts/check_peft_export.py). Needs a Python with torch + transformers (+ peft): $QFT_PEER_PYTHON, or the venv that
# scripts/make_fixtures.py documents. Without one it reports SKIPPED, which ctest shows as skipped.
set -euo pipefail
qft=$1
root=$(cd "$(dirname "$0")/.." && pwd)
py=${QFT_PEER_PYTHON:-/opt/fixenv/bin/python}
if ! [ -x "$py" ] || ! "$py" -c "import torch, transformers, safetensors" 2>/dev/null; then
  echo "SKIPPED: no Python with torch and transformers ($py); set QFT_PEER_PYTHON to run this check"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$qft" train --config "$root/configs/tiny.json" --set model.path="$root/models/tiny-llama" \
  --set data.train="$root/data/tiny_instruct/train.jsonl" --set data.val= --set train.eval_every=0 \
  --set train.steps=5 --set output.dir="$tmp/run" >/dev/null
for dtype in bf16 fp32; do
  "$py" "$root/scripts/check_export.py" --qft "$qft" --checkpoint "$tmp/run/step_00000005" \
    --data "$root/data/eval.jsonl" --dtype "$dtype" 2>/dev/null
done
# LoRA (train.method=lora, GSE adapters): the PEFT adapter export loads onto the exported base with matching logits
if ! "$py" -c "import peft" 2>/dev/null; then
  echo "SKIPPED: the LoRA export check needs PEFT in $py (pip install peft)"
  exit 0
fi
"$qft" train --config "$root/configs/tiny_lora.json" --set model.path="$root/models/tiny-llama" \
  --set data.train="$root/data/tiny_instruct/train.jsonl" --set data.val= --set train.eval_every=0 \
  --set train.steps=20 --set output.dir="$tmp/lora" >/dev/null 2>&1
"$py" "$root/scripts/check_peft_export.py" --qft "$qft" --checkpoint "$tmp/lora/step_00000020" \
  --data "$root/data/eval.jsonl" 2>/dev/null
