#!/usr/bin/env bash
# How qft's CPU training memory and step time grow with the sequence: a SmolLM2-135M-shaped model (hidden 576,
# 30 layers, GQA 9:3, random init, scripts/make_bench_model.py), batch 1, INT8 weights + momentum, at
# seq_len 512, 1024, 2048 and 4096 (or --seq LIST), with PyTorch AdamW (sdpa attention) beside it where an
# interpreter with torch exists (TORCH_PYTHON, default /opt/fixenv/bin/python). Peak RSS comes from /usr/bin/time
# (qft) and ru_maxrss (PyTorch); step time is the median over the steps after the first.
#   scripts/bench_long_context.sh [--steps N] [--seq "512 1024 2048 4096"] [--stack activations|bf16|int8]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=3
seqs="512 1024 2048 4096"
stack=activations
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --seq) seqs=$2; shift 2 ;;
    --stack) stack=$2; shift 2 ;;
    *) echo "usage: scripts/bench_long_context.sh [--steps N] [--seq LIST] [--stack KIND]" >&2; exit 1 ;;
  esac
done
[ "$steps" -ge 2 ] || { echo "--steps must be at least 2 (the first is left out)" >&2; exit 1; }
qft=${QFT:-build/qft}
[ -x "$qft" ] || { echo "$qft is missing: run scripts/build.sh build" >&2; exit 1; }
py=${TORCH_PYTHON:-/opt/fixenv/bin/python}
have_torch=1
"$py" -c "import torch, transformers" 2> /dev/null || have_torch=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/make_bench_model.py --shape smollm2 --out "$work/smollm2" > /dev/null
printf "| %7s | %14s | %10s | %14s | %10s |\n" seq_len "qft RSS MiB" "qft step s" "torch RSS MiB" "torch step s"
printf "|%9s|%16s|%12s|%16s|%12s|\n" --------- ---------------- ------------ ---------------- ------------
for seq in $seqs; do
  /usr/bin/time -f "%M" -o "$work/rss" "$qft" train --config configs/tiny.json --set model.path="$work/smollm2" \
    --set model.init=random --set train.steps="$steps" --set train.log_every=1 --set train.eval_every=0 \
    --set data.val= --set data.seq_len="$seq" --set train.batch_size=1 --set train.warmup_steps=0 \
    --set train.save_final=false --set device=cpu --set train.stack_dtype="$stack" --set output.dir="$work/run-$seq" \
    > /dev/null 2> "$work/qft.log" || { cat "$work/qft.log" >&2; exit 1; }
  step=$(python3 -c "
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '\"tokens_per_s\"' in l]
print(f'{statistics.median(int(sys.argv[2]) / r[\"tokens_per_s\"] for r in rows[1:]):.2f}')" "$work/run-$seq/metrics.jsonl" "$seq")
  trss=-; tstep=-
  if [ $have_torch = 1 ]; then
    j=$("$py" scripts/bench_torch_cpu.py --model "$work/smollm2" --batch 1 --seq-len "$seq" --steps $((steps - 1)) \
          --warmup 1 --threads "$(nproc)" 2> "$work/torch.log" | tail -1) || { cat "$work/torch.log" >&2; exit 1; }
    trss=$(python3 -c "import json, sys; print(round(json.loads(sys.argv[1])['peak_rss_bytes'] / 2**20))" "$j")
    tstep=$(python3 -c "import json, sys; print(f\"{json.loads(sys.argv[1])['step_s']:.2f}\")" "$j")
  fi
  printf "| %7s | %14s | %10s | %14s | %10s |\n" "$seq" "$(($(cat "$work/rss") / 1024))" "$step" "$trss" "$tstep"
done
