#!/usr/bin/env bash
# CPU training throughput and memory of qft against PyTorch on the same shapes, side by side.
#   scripts/bench_cpu.sh [STEPS]      (build/qft must exist: scripts/build.sh build)
# qft: configs/tiny.json with packing to seq_len 128, batch 4, no evaluation, with INT8 and with fp32 state;
# tokens/s is the median of the
# per-step figures after the first 5 steps (B*T tokens per step); peak RSS from /usr/bin/time.
# PyTorch: scripts/bench_torch_cpu.py, AdamW full fine-tune, same model, batch and seq_len, same thread count.
# Set TORCH_PYTHON to an interpreter with torch + transformers (default /opt/fixenv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
threads=$(nproc)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

printf '%-34s %12s %14s\n' "run" "tokens/s" "peak RSS MiB"
for quant in int8 fp32; do
  /usr/bin/time -f "%M" -o "$out/rss" ./build/qft train --config configs/tiny.json --set train.steps="$steps" \
    --set train.log_every=1 --set train.eval_every=0 --set data.val= --set data.seq_len=128 --set train.batch_size=4 \
    --set quant.weights=$quant --set quant.momentum=$quant --set output.dir="$out/run-$quant" >/dev/null
  tps=$(/usr/bin/python3 -c "
import json, statistics
rows = [json.loads(l) for l in open('$out/run-$quant/metrics.jsonl') if 'tokens_per_s' in l]
print(statistics.median(r['tokens_per_s'] for r in rows[5:]))")
  rss=$(( $(cat "$out/rss") * 1024 ))
  printf '%-34s %12.0f %14.1f\n' "qft (Lion, $quant weights+momentum)" "$tps" "$(echo "$rss / 1048576" | bc -l)"
  eval "qft_tps_$quant=$tps qft_rss_$quant=$rss"
done

py=${TORCH_PYTHON:-/opt/fixenv/bin/python}
if ! "$py" -c "import torch, transformers" 2>/dev/null; then
  echo "PyTorch peer skipped: $py has no torch/transformers (set TORCH_PYTHON)"
  exit 0
fi
peer=$("$py" scripts/bench_torch_cpu.py --batch 4 --seq-len 128 --steps "$steps" --threads "$threads" 2>/dev/null | tail -1)
read -r t_tps t_rss < <(/usr/bin/python3 -c "import json; j=json.loads('''$peer'''); print(j['tokens_per_s'], j['peak_rss_bytes'])")
printf '%-34s %12.0f %14.1f\n' "PyTorch (AdamW, fp32)" "$t_tps" "$(echo "$t_rss / 1048576" | bc -l)"
for quant in int8 fp32; do
  eval "q_tps=\$qft_tps_$quant q_rss=\$qft_rss_$quant"
  printf 'ratio qft %s / PyTorch: tokens/s %.2f, peak RSS %.2f (threads: %s)\n' "$quant" \
    "$(echo "$q_tps / $t_tps" | bc -l)" "$(echo "$q_rss / $t_rss" | bc -l)" "$threads"
done
