#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPU cores: one process with every core against as many ranks as cores
# with one thread each, for qft (mpirun) and PyTorch DistributedDataParallel (gloo), side by side in one run, on
# the same global batch.
#   scripts/bench_ranks.sh [--steps N] [--only tiny|smollm2-256]... [--json FILE]
# Needs build/qft built with MPI (scripts/build.sh build; QFT=PATH for another) and, for the peer, an interpreter
# with torch + transformers (TORCH_PYTHON, default /opt/fixenv/bin/python; without one its rows are skipped, named).
#
# Cases (global batch per optimizer step):
#   tiny          the bundled 0.87M-parameter model, 4 x 128: qft micro-batches of 2 x 128
#   smollm2-256   a SmolLM2-135M-shaped model (scripts/make_bench_model.py, random init), 2 x 256: micro-batches 1 x 256
# Runs: qft with one process (grad_accum = ranks, every thread) and with N ranks (grad_accum 1, one thread each;
# INT8 weights and momentum, replicated weights); PyTorch AdamW fp32 with one process (the whole batch, every thread)
# and DDP with N ranks. Tokens/s is the median over the timed steps (the first WARMUP left out), counting every
# rank's tokens. Printed: one table per case and each trainer's speed-up from 1 process to N ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=8
warmup=2
only=()
json_out=
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    *) echo "usage: scripts/bench_ranks.sh [--steps N] [--only tiny|smollm2-256]... [--json FILE]" >&2; exit 1 ;;
  esac
done
[ "$steps" -gt "$warmup" ] || { echo "--steps must exceed the $warmup warm-up steps" >&2; exit 1; }
qft=${QFT:-build/qft}
[ -x "$qft" ] || { echo "$qft is missing: run scripts/build.sh build" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "mpirun is missing: run scripts/setup.sh" >&2; exit 1; }
ranks=$(nproc)
[ "$ranks" -ge 2 ] || { echo "one core: nothing to scale over" >&2; exit 1; }
py=${TORCH_PYTHON:-/opt/fixenv/bin/python}
have_torch=1
"$py" -c "import torch, transformers" 2> /dev/null || have_torch=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_btl=self,vader,tcp

wanted() { [ ${#only[@]} -eq 0 ] || printf '%s\n' "${only[@]}" | grep -qx "$1"; }

# The median tokens/s of a qft run's timed steps, from its metrics.jsonl.
qft_tokens_per_s() {
  /usr/bin/python3 - "$1" "$warmup" <<'EOF'
import json, statistics, sys
records = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
print(statistics.median(r["tokens_per_s"] for r in records[int(sys.argv[2]):]))
EOF
}

# qft_run NAME RANKS THREADS MODEL BATCH SEQ [--set ...]: one qft training run; prints its tokens/s.
qft_run() {
  local name=$1 n=$2 threads=$3 model=$4 batch=$5 seq=$6
  shift 6
  local args=(train --config configs/tiny.json --set model.path="$model" --set data.seq_len="$seq"
              --set train.batch_size="$batch" --set train.grad_accum=$((ranks / n)) --set train.steps="$steps"
              --set train.log_every=1 --set train.eval_every=0 --set train.save_final=false --set train.warmup_steps=0
              --set device=cpu --set output.dir="$work/$name" "$@")
  if [ "$n" -eq 1 ]; then
    OMP_NUM_THREADS=$threads "$qft" "${args[@]}" > "$work/$name.log" 2>&1
  else
    OMP_NUM_THREADS=$threads mpirun --allow-run-as-root --oversubscribe -np "$n" "$qft" "${args[@]}" > "$work/$name.log" 2>&1
  fi || { echo "qft run $name failed:" >&2; tail -5 "$work/$name.log" >&2; exit 1; }
  qft_tokens_per_s "$work/$name/metrics.jsonl"
}

torch_run() {  # RANKS THREADS MODEL BATCH_PER_RANK SEQ: prints tokens/s, or "-" without torch
  [ $have_torch = 1 ] || { echo "-"; return; }
  "$py" scripts/bench_torch_cpu.py --ranks "$1" --threads "$2" --model "$3" --batch "$4" --seq-len "$5" \
    --steps $((steps - warmup)) --warmup "$warmup" 2> "$work/torch.log" | tail -1 |
    /usr/bin/python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["tokens_per_s"])'
}

bench_case() {  # CASE MODEL GLOBAL_BATCH SEQ [qft --set ...]
  local case=$1 model=$2 global=$3 seq=$4
  shift 4
  local micro=$((global / ranks))
  echo "== $case: global batch $global x $seq per step, $ranks cores =="
  local q1 qn t1 tn
  q1=$(qft_run "$case-1" 1 "$ranks" "$model" "$micro" "$seq" "$@")
  qn=$(qft_run "$case-$ranks" "$ranks" 1 "$model" "$micro" "$seq" "$@")
  t1=$(torch_run 1 "$ranks" "$model" "$global" "$seq")
  tn=$(torch_run "$ranks" 1 "$model" "$micro" "$seq")
  /usr/bin/python3 - "$case" "$ranks" "$q1" "$qn" "$t1" "$tn" "$json_out" <<'EOF'
import json, sys
case, n, q1, qn, t1, tn, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7], sys.argv[7]
f = lambda v: None if v == "-" else float(v)
q1, qn, t1, tn = f(q1), f(qn), f(t1), f(tn)
rows = [("qft INT8, 1 process x %d threads" % n, q1), ("qft INT8, %d ranks x 1 thread (MPI)" % n, qn),
        ("PyTorch AdamW fp32, 1 process x %d threads" % n, t1), ("PyTorch AdamW fp32, DDP %d ranks x 1 thread (gloo)" % n, tn)]
print("| run | tokens/s |\n|---|---|")
for name, v in rows:
    print("| %s | %s |" % (name, "skipped: no torch" if v is None else "%.1f" % v))
print("qft: %d ranks / 1 process = %.2fx" % (n, qn / q1))
if t1 and tn:
    print("PyTorch: %d ranks / 1 process = %.2fx; qft / PyTorch at %d ranks = %.2fx" % (n, tn / t1, n, qn / tn))
if out:
    with open(out, "a") as fh:
        fh.write(json.dumps({"case": case, "ranks": n, "qft_1": q1, "qft_n": qn, "torch_1": t1, "torch_n": tn}) + "\n")
EOF
}

if wanted tiny; then
  bench_case tiny models/tiny-llama 4 128 --set data.packing=true
fi
if wanted smollm2-256; then
  /usr/bin/python3 scripts/make_bench_model.py --shape smollm2 --out "$work/smollm2" > /dev/null
  bench_case smollm2-256 "$work/smollm2" 2 256 --set model.init=random
fi
