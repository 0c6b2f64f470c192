#!/usr/bin/env bash
# Sets up, builds and runs the main job on the embedded default, and shows what it changed:
#   1. scores the bundled tiny LLaMA (pretrained on plain English, scripts/make_tiny_model.sh) on the held-out
#      instructions of data/tiny_instruct by exact match, and shows a sample answer;
#   2. fine-tunes every parameter with INT8 state: qft train --config configs/tiny.json (about a minute on 2 cores);
#   3. scores the fine-tuned checkpoint the same way and shows the same sample.
# Extra arguments go to qft train (e.g. --set train.lr=3e-4). The run goes to runs/demo (replaced each time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
qft=./build/qft
$qft --version

val=data/tiny_instruct/val.jsonl
prompt="What color is the snow?"
score() {  # score MODEL: exact match over the first 100 held-out records, two answers shown; sets $score
  local out
  out=$($qft eval --model "$1" --data "$val" --task exact-match --limit 100 --max-new-tokens 48 --show 2 --device cpu 2>/dev/null)
  echo "$out"
  score=$(echo "$out" | grep "^exact match" | cut -d' ' -f3)
}
sample() {
  echo "> $prompt"
  $qft generate --model "$1" --prompt "$prompt" --template plain --temperature 0 --max-new-tokens 40 --device cpu 2>/dev/null
}

echo; echo "== before fine-tuning: models/tiny-llama =="
score models/tiny-llama
before=$score
sample models/tiny-llama

echo; echo "== fine-tuning: qft train --config configs/tiny.json =="
rm -rf runs/demo
$qft train --config configs/tiny.json --set output.dir=runs/demo "$@"
ckpt=$(ls -d runs/demo/step_* | sort | tail -n 1)

echo; echo "== after fine-tuning: $ckpt =="
score "$ckpt"
after=$score
sample "$ckpt"

echo; echo "exact match on held-out instructions: before $before -> after $after"
