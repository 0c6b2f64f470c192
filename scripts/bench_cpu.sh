#!/usr/bin/env bash
# CPU training throughput and memory of qft against PyTorch on the same shapes, side by side.
#   scripts/bench_cpu.sh [STEPS]      (build/qft must exist: scripts/build.sh build)
# qft: configs/tiny.json with packing to seq_len 128, batch 4, no evaluation; tokens/s is the median of the
# per-step figures after the first 5 steps (B*T tokens per step); peak RSS from /usr/bin/time.
# PyTorch: scripts/bench_torch_cpu.py, AdamW full fine-tune, same model, batch and seq_len, same thread count.
# Set TORCH_PYTHON to an interpreter with torch + transformers (default /opt/fixenv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
threads=$(nproc)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

/usr/bin/time -f "%M" -o "$out/rss" ./build/qft train --config configs/tiny.json --set train.steps="$steps" \
  --set train.log_every=1 --set train.eval_every=0 --set data.val= --set data.seq_len=128 --set train.batch_size=4 \
  --set output.dir="$out/run" >/dev/null
qft_tps=$(/usr/bin/python3 -c "
import json, statistics, sys
rows = [json.loads(l) for l in open('$out/run/metrics.jsonl') if 'tokens_per_s' in l]
print(statistics.median(r['tokens_per_s'] for r in rows[5:]))")
qft_rss=$(( $(cat "$out/rss") * 1024 ))
printf '%-28s %12s %14s\n' "run" "tokens/s" "peak RSS MiB"
printf '%-28s %12.0f %14.1f\n' "qft (Lion, fp32 state)" "$qft_tps" "$(echo "$qft_rss / 1048576" | bc -l)"

py=${TORCH_PYTHON:-/opt/fixenv/bin/python}
if ! "$py" -c "import torch, transformers" 2>/dev/null; then
  echo "PyTorch peer skipped: $py has no torch/transformers (set TORCH_PYTHON)"
  exit 0
fi
peer=$("$py" scripts/bench_torch_cpu.py --batch 4 --seq-len 128 --steps "$steps" --threads "$threads" 2>/dev/null | tail -1)
read -r t_tps t_rss < <(/usr/bin/python3 -c "import json; j=json.loads('''$peer'''); print(j['tokens_per_s'], j['peak_rss_bytes'])")
printf '%-28s %12.0f %14.1f\n' "PyTorch (AdamW, fp32)" "$t_tps" "$(echo "$t_rss / 1048576" | bc -l)"
printf 'ratio qft/PyTorch: tokens/s %.2f, peak RSS %.2f (threads: %s)\n' \
  "$(echo "$qft_tps / $t_tps" | bc -l)" "$(echo "$qft_rss / $t_rss" | bc -l)" "$threads"
