#!/usr/bin/env bash
# ctest peer.smollm2: qft on a real pretrained model, SmolLM2-135M-Instruct, checked against transformers.
#   0. qft inspect reads it;
#   1. scripts/check_smollm2.py: eval loss (relative 1e-4) and greedy generation through the model's own chat
#      template (--template auto; at least 30 equal new tokens per prompt);
#   2. a 3-step INT8 fine-tune on data/smollm2_capitals, then scripts/check_export.py: the export reloads in
#      transformers with logits equal to qft's.
# Needs models/smollm2-135m-instruct (scripts/get_smollm2.sh) and a Python with torch + transformers
# ($QFT_PEER_PYTHON, default /opt/fixenv/bin/python); without either it reports SKIPPED.
set -euo pipefail
qft=$1
root=$(cd "$(dirname "$0")/.." && pwd)
model=$root/models/smollm2-135m-instruct
py=${QFT_PEER_PYTHON:-/opt/fixenv/bin/python}
if ! [ -f "$model/model.safetensors" ]; then
  echo "SKIPPED: no $model (bash scripts/get_smollm2.sh makes it)"
  exit 0
fi
if ! [ -x "$py" ] || ! "$py" -c "import torch, transformers, safetensors" 2>/dev/null; then
  echo "SKIPPED: no Python with torch and transformers ($py); set QFT_PEER_PYTHON to run this check"
  exit 0
fi
"$qft" inspect "$model" --json >/dev/null
"$py" "$root/scripts/check_smollm2.py" --qft "$qft" --model "$model" 2>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$qft" train --config "$root/configs/smollm2_capitals.json" --set model.path="$model" \
  --set data.train="$root/data/smollm2_capitals/train.jsonl" --set data.val= --set train.steps=3 \
  --set data.seq_len=64 --set train.batch_size=2 --set output.dir="$tmp/run" >/dev/null 2>&1
"$py" "$root/scripts/check_export.py" --qft "$qft" --checkpoint "$tmp/run/step_00000003" \
  --data "$root/data/eval.jsonl" --dtype fp32 2>/dev/null
