#!/usr/bin/env bash
# CPU training speed and memory of qft against PyTorch on the same shapes, side by side in one run.
#   scripts/bench_cpu.sh [--steps N] [--only tiny|smollm2-256|smollm2-1024]... [--json FILE]
# Needs build/qft (scripts/build.sh build; QFT=PATH for another) and, for the peer, an interpreter with torch + transformers
# (TORCH_PYTHON, default /opt/fixenv/bin/python; without one the PyTorch rows are skipped, named).
#
# Cases (batch x seq_len):
#   tiny          the bundled 0.87M-parameter model, 4 x 128, packed tiny_instruct data
#   smollm2-256   a SmolLM2-135M-shaped model (hidden 576, intermediate 1536, 30 layers, GQA 9:3, tied vocabulary
#                 49152), random init (scripts/make_bench_model.py: config.json only), 1 x 256
#   smollm2-1024  the same, 1 x 1024
# Runs per case: qft with INT8 weights + momentum, qft with fp32 weights + momentum (Lion, both with --profile),
# PyTorch AdamW fp32 (sdpa) and PyTorch AdamW with gradient checkpointing (scripts/bench_torch_cpu.py), all with
# the machine's thread count. Step time is the median over the timed steps (the first WARMUP are left out);
# tokens/s = batch x seq_len / step time; peak RSS from /usr/bin/time (qft) and ru_maxrss (PyTorch).
# Printed: one table per case, the ratios the README quotes, and qft's per-op share of the INT8 step time;
# --json FILE also keeps every run's record (one JSON line each, with its case).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=10
warmup=2
only=()
json_out=
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    *) echo "usage: scripts/bench_cpu.sh [--steps N] [--only tiny|smollm2-256|smollm2-1024]... [--json FILE]" >&2; exit 1 ;;
  esac
done
[ "$steps" -gt "$warmup" ] || { echo "--steps must exceed the $warmup warm-up steps" >&2; exit 1; }
qft=${QFT:-build/qft}  # QFT=build-cpu/qft for another build
[ -x "$qft" ] || { echo "$qft is missing: run scripts/build.sh build" >&2; exit 1; }
threads=$(nproc)
py=${TORCH_PYTHON:-/opt/fixenv/bin/python}
have_torch=1
"$py" -c "import torch, transformers" 2> /dev/null || have_torch=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/make_bench_model.py --shape smollm2 --out "$work/smollm2" > /dev/null

# case NAME MODEL_DIR BATCH SEQ_LEN: the four runs, one line of JSON each into $work/NAME.jsonl
run_case() {
  local name=$1 model=$2 batch=$3 seq=$4 out=$work/$1.jsonl
  local args=(--config configs/tiny.json --set train.steps="$steps" --set train.log_every=1 --set train.eval_every=0
              --set data.val= --set data.seq_len="$seq" --set train.batch_size="$batch" --set train.warmup_steps=0
              --set train.save_final=false --set device=cpu --profile)
  [ "$model" != models/tiny-llama ] && args+=(--set model.path="$model" --set model.init=random)
  local quant
  for quant in int8 fp32; do
    echo "[$name] qft $quant ..." >&2
    /usr/bin/time -f "%M" -o "$work/rss" "$qft" train "${args[@]}" --set quant.weights=$quant \
      --set quant.momentum=$quant --set output.dir="$work/run-$name-$quant" > /dev/null 2> "$work/qft.log" \
      || { cat "$work/qft.log" >&2; exit 1; }
    python3 - "$work/run-$name-$quant" "$quant" "$batch" "$seq" "$(cat "$work/rss")" "$warmup" >> "$out" <<'PY'
import json, re, statistics, sys
run, quant, batch, seq, rss_kb, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"tokens_per_s"' in l]
step_s = statistics.median(batch * seq / r["tokens_per_s"] for r in rows[warmup:])
log = open(run + "/train.log").read()
profile = log[log.index("op profile:"):].split("\n")
shares = {m.group(1): float(m.group(2)) for m in (re.match(r"\s+(\S+)\s+[\d.]+\s+([\d.]+)%", l) for l in profile) if m}
table = "\n".join(l for l in profile if l.strip())
print(json.dumps({"run": f"qft Lion, {quant} weights + momentum", "key": f"qft-{quant}", "step_s": step_s,
                  "tokens_per_s": batch * seq / step_s, "peak_rss_bytes": rss_kb * 1024,
                  "lion_share": shares.get("lion_step_rows", 0.0), "profile": table}))
PY
  done
  if [ $have_torch = 0 ]; then
    echo "{\"run\": \"PyTorch\", \"key\": \"torch\", \"skipped\": \"$py has no torch + transformers (set TORCH_PYTHON)\"}" >> "$out"
    return
  fi
  local ckpt
  for ckpt in "" --checkpointing; do
    echo "[$name] PyTorch AdamW $ckpt ..." >&2
    "$py" scripts/bench_torch_cpu.py --model "$model" --batch "$batch" --seq-len "$seq" --steps $((steps - warmup)) \
      --warmup "$warmup" --threads "$threads" $ckpt 2> "$work/torch.log" | tail -1 \
      | python3 -c "import json, sys; j = json.load(sys.stdin); j['key'] = 'torch' + ('-ckpt' if sys.argv[1] else ''); j['run'] = j['peer']; print(json.dumps(j))" "$ckpt" >> "$out" \
      || { cat "$work/torch.log" >&2; exit 1; }
  done
}

cases=(tiny smollm2-256 smollm2-1024)
[ ${#only[@]} -gt 0 ] && cases=("${only[@]}")
for c in "${cases[@]}"; do
  case $c in
    tiny) run_case tiny models/tiny-llama 4 128 ;;
    smollm2-256) run_case smollm2-256 "$work/smollm2" 1 256 ;;
    smollm2-1024) run_case smollm2-1024 "$work/smollm2" 1 1024 ;;
    *) echo "unknown case '$c' (tiny, smollm2-256, smollm2-1024)" >&2; exit 1 ;;
  esac
done

if [ -n "$json_out" ]; then
  for c in "${cases[@]}"; do
    python3 -c "import json, sys; [print(json.dumps(dict(json.loads(l), case=sys.argv[1]))) for l in open(sys.argv[2])]" "$c" "$work/$c.jsonl"
  done > "$json_out"
fi
python3 - "$work" "$threads" "${cases[@]}" <<'PY'
import json, sys
work, threads, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
for case in cases:
    runs = {r["key"]: r for r in map(json.loads, open(f"{work}/{case}.jsonl"))}
    print(f"\n{case} ({threads} threads)")
    print(f"| {'run':<50} | {'tokens/s':>8} | {'step s':>7} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 52}|{'-' * 10}|{'-' * 9}|{'-' * 14}|")
    for r in runs.values():
        if "skipped" in r:
            print(f"| {r['run']:<50} | skipped: {r['skipped']}")
            continue
        print(f"| {r['run'][:50]:<50} | {r['tokens_per_s']:8.1f} | {r['step_s']:7.3f} | {r['peak_rss_bytes'] / 2**20:12.0f} |")
    q8, q32, t = runs["qft-int8"], runs["qft-fp32"], runs.get("torch", {})
    print(f"qft INT8 step time / qft fp32: {q8['step_s'] / q32['step_s']:.2f}; Lion share of the INT8 step: "
          f"{q8['lion_share']:.1f}% (fp32: {q32['lion_share']:.1f}%)")
    if "tokens_per_s" in t:
        print(f"qft INT8 / PyTorch AdamW: tokens/s {q8['tokens_per_s'] / t['tokens_per_s']:.2f}, "
              f"peak RSS {q8['peak_rss_bytes'] / t['peak_rss_bytes']:.2f}")
    print("qft INT8 " + q8["profile"])
PY
