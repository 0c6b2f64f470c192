#!/usr/bin/env bash
# How the bundled demo model models/tiny-llama was made (about 10 minutes on 2 cores):
#   1. initialise a small LLaMA (hidden 128, 4 layers, GQA 4/2 heads, vocab 500: 0.87M parameters) with
#      HuggingFace transformers: scripts/make_fixtures.py --tiny-only (seeded; needs torch + transformers);
#   2. write the license-clean pretraining corpus: scripts/make_tiny_corpus.py (standard library only);
#   3. pretrain every parameter with qft itself in fp32 mode: configs/tiny_pretrain.json;
#   4. export the final checkpoint back to a HuggingFace directory in bf16: qft export.
# The tokenizer stays the one the test fixtures share (trained by make_fixtures.py).
#
# usage: scripts/make_tiny_model.sh [OUT_DIR [QFT_TRAIN_ARGS...]]   (default models/tiny-llama; it is replaced)
#   e.g. scripts/make_tiny_model.sh /tmp/tiny --set train.steps=50   for a quick check of the recipe
#   QFT_PEER_PYTHON  a Python with torch + transformers (default /opt/fixenv/bin/python)
#   QFT_TINY_INIT    skip step 1 and start from this HF directory instead
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/models/tiny-llama}
shift || true
qft=${QFT:-$root/build/qft}
py=${QFT_PEER_PYTHON:-/opt/fixenv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$qft" ] || { echo "error: $qft not found; build first (bash scripts/build.sh build)" >&2; exit 1; }

if [ -n "${QFT_TINY_INIT:-}" ]; then
  cp -r "$QFT_TINY_INIT" "$work/init"
else
  "$py" "$root/scripts/make_fixtures.py" --tiny-only --tiny "$work/init"
fi
cp "$root/test/fixtures/gqa_tied/tokenizer.model" "$work/init/tokenizer.model"

/usr/bin/env python3 "$root/scripts/make_tiny_corpus.py" "$work/corpus"
"$qft" train --config "$root/configs/tiny_pretrain.json" --set model.path="$work/init" \
  --set data.train="$work/corpus/train.jsonl" --set data.val="$work/corpus/val.jsonl" --set output.dir="$work/run" "$@"
last=$(ls -d "$work"/run/step_* | sort | tail -n 1)
"$qft" eval --model "$last" --data "$work/corpus/val.jsonl" --seq-len 128

rm -rf "$work/export"
"$qft" export --checkpoint "$last" --out "$work/export" --dtype bf16
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$work/export" "$out"
echo "wrote $out"
