#!/usr/bin/env bash
# The two training methods side by side on one task (issue 19's tables): QFT full fine-tuning, fp32 LoRA, and GSE
# LoRA at 8, 6 and 4 mantissa bits, with the same data, steps and seeds. Per case: val_loss (mean over seeds, and
# the spread), exact match on held-out prompts, the planner's CPU memory (total and the trainable state), and
# training tokens/s on this machine.
#   bash scripts/compare_lora.sh [--task tiny|smollm2] [--steps N] [--seeds "1234 1 2"] [--only TEXT] [--qft build/qft]
# tiny: models/tiny-llama on data/tiny_instruct (configs/tiny.json, tiny_lora.json; 1000 steps, exact match on the
# first 100 instructions). smollm2: SmolLM2-135M-Instruct on data/smollm2_capitals (configs/smollm2_capitals.json,
# smollm2_capitals_lora.json; their 20 steps, exact match on the 30 held-out countries; scripts/get_smollm2.sh
# makes the model). --only keeps the cases whose name contains TEXT (e.g. GSE).
# Run it on an idle machine: tokens/s is wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
task=tiny steps="" seeds="1234 1 2" qft=build/qft only=""
while [ $# -gt 0 ]; do
  case $1 in
    --task) task=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --qft) qft=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "compare_lora.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case $task in
  tiny) full=configs/tiny.json lora=configs/tiny_lora.json steps=${steps:-1000}
        eval_args=(--data data/tiny_instruct/val.jsonl --limit 100 --max-new-tokens 48) ;;
  smollm2) full=configs/smollm2_capitals.json lora=configs/smollm2_capitals_lora.json steps=${steps:-20}
           eval_args=(--data data/smollm2_capitals/val.jsonl --format chat --template auto --max-new-tokens 16) ;;
  *) echo "compare_lora.sh: unknown task $task (tiny or smollm2)" >&2; exit 1 ;;
esac
cases=("full|$full|"
       "LoRA fp32|$lora|--set lora.format=fp32"
       "LoRA GSE 8-bit|$lora|--set lora.bits=8"
       "LoRA GSE 6-bit|$lora|--set lora.bits=6"
       "LoRA GSE 4-bit|$lora|--set lora.bits=4")
echo "| method | val_loss (mean over seeds $seeds) | spread | exact match | plan (CPU) | trainable state | tokens/s |"
echo "|---|---|---|---|---|---|---|"
for c in "${cases[@]}"; do
  IFS='|' read -r name config extra <<<"$c"
  [[ "$name" == *"$only"* ]] || continue
  losses="" matches="" speeds=""
  for seed in $seeds; do
    dir="$out/run-$seed"
    rm -rf "$dir"
    # shellcheck disable=SC2086
    "$qft" train --config "$config" $extra --set train.steps="$steps" --set train.seed="$seed" --set train.eval_every=0 \
      --set train.eval_batches=0 --set output.dir="$dir" --set device=cpu >/dev/null 2>&1
    losses+="$(grep val_loss "$dir/metrics.jsonl" | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_loss"])') "
    speeds+="$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "tokens_per_s" in l]; print(sum(x["tokens"] for x in r[-1:]) / r[-1]["elapsed_s"])' "$dir/metrics.jsonl") "
    ckpt=$(ls -d "$dir"/step_* | sort | tail -n 1)
    matches+="$("$qft" eval --model "$ckpt" "${eval_args[@]}" --task exact-match --device cpu 2>/dev/null |
      grep '^exact match' | cut -d' ' -f3) "
  done
  # shellcheck disable=SC2086
  plan=$("$qft" plan --config "$config" $extra --cpu --json 2>/dev/null)
  python3 - "$name" "$plan" "$losses" "$matches" "$speeds" <<'PY'
import json, statistics, sys
name, plan, losses, matches, speeds = sys.argv[1], json.loads(sys.argv[2]), *[s.split() for s in sys.argv[3:]]
losses = [float(x) for x in losses]
speeds = [float(x) for x in speeds]
state = sum(b["bytes"] for b in plan["buffers"] if b["name"] in ("LoRA adapters", "Lion momentum", "AdamW moments"))
if name == "full":
    state = plan["state_bytes"]
mib = lambda b: f"{b / 2**20:.2f} MiB"
print(f"| {name} | {statistics.mean(losses):.4f} | {min(losses):.4f}-{max(losses):.4f} | {' / '.join(matches)} | "
      f"{mib(plan['total_bytes'])} | {mib(state)} | {statistics.mean(speeds):.0f} |")
PY
done
