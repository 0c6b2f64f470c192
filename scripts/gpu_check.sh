#!/usr/bin/env bash
# On a GPU machine (CUDA toolkit + PyTorch/transformers, no network): build qft for this GPU, run the [cuda]
# tests, then train random-init LLaMA shapes with qft and with PyTorch side by side, and print one table:
# model, tokens/s, MFU, peak memory measured (nvidia-smi) and planned (qft plan).
#
#   bash scripts/gpu_check.sh [OUT_DIR] [SHAPES]     # SHAPES default: "tiny 1b 7b"
#
# Without the Debian build dependencies it uses the .deb files that `bash scripts/gpu_deps.sh download` put
# into .debs/ (carry that folder). Every number lands in OUT_DIR/results.jsonl; the table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-gpu_check_out}" && cd "${1:-gpu_check_out}" && pwd)
shapes=${2:-tiny 1b 7b}
results=$out/results.jsonl
: > "$results"
work=$(mktemp -d /tmp/qft_gpu_check.XXXX)
trap 'rm -rf "$work"' EXIT
status=0
say() { echo "== gpu_check: $*"; }

# ---- build for the local architecture ----
cmake_deps=()
if ! pkg-config --exists sentencepiece 2>/dev/null; then
  [ -d .debs ] || { echo "gpu_check: no build dependencies and no .debs/ (run scripts/gpu_deps.sh download)"; exit 1; }
  source scripts/gpu_deps.sh env
  read -r -a cmake_deps <<< "$QFT_CMAKE_DEPS"
fi
say "build"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFT_REQUIRE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native \
  "${cmake_deps[@]}" > "$out/configure.log" 2>&1 && cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log" "$out/configure.log"; echo "gpu_check: build failed"; exit 1; }
qft=$PWD/build-gpu/qft
"$qft" --version

# ---- [cuda] tests ----
say "[cuda] tests"
./build-gpu/test/qft_tests "[cuda]" --durations yes 2>&1 | tee "$out/cuda_tests.log" | tail -40
[ "${PIPESTATUS[0]}" -eq 0 ] || { status=1; echo "gpu_check: [cuda] tests FAILED"; }

# ---- benchmarks ----
# Text for packing: the bundled corpus, repeated; token ids do not matter for throughput.
python3 - "$work/bench.jsonl" <<'PY'
import json, sys
text = open("data/corpus.txt").read()
with open(sys.argv[1], "w") as f:
    for i in range(400):
        f.write(json.dumps({"text": text}) + "\n")
PY

gpu_mem_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
# Runs "$@" while sampling GPU memory; prints the peak in MiB above what was in use before.
with_peak() {
  local base log=$work/mem.log
  base=$(gpu_mem_mib)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log" &
  local smi=$!
  "$@"
  local rc=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  echo $(( $(sort -n "$log" | tail -1) - base )) > "$work/peak_mib"
  return $rc
}

for shape in $shapes; do
  say "benchmark $shape"
  model=$work/llama-$shape
  python3 scripts/make_random_llama.py --shape "$shape" --out "$model" || { status=1; continue; }
  steps=12; [ "$shape" = tiny ] && steps=30
  args=(--config configs/llama7b.json --set model.path="$model" --set data.train="$work/bench.jsonl" --set data.val=
        --set data.format=text --set data.template=plain --set train.steps=$steps --set train.log_every=1
        --set train.warmup_steps=0 --set train.eval_every=0 --set train.save_final=false
        --set output.dir="$work/run-$shape" --set device=cuda)
  "$qft" plan --json "${args[@]}" > "$work/plan.json" || { status=1; continue; }
  if with_peak "$qft" train "${args[@]}" > "$out/qft_$shape.log" 2>&1; then
    python3 - "$work/run-$shape/metrics.jsonl" "$shape" "$work/plan.json" "$(cat "$work/peak_mib")" >> "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
timed = [r["tokens_per_s"] for r in rows[2:]] or [r["tokens_per_s"] for r in rows]  # the first steps warm up
plan = json.load(open(sys.argv[3]))
print(json.dumps({"runner": "qft", "model": sys.argv[2], "params": plan["parameters"],
                  "tokens_per_s": statistics.median(timed), "planned_bytes": plan["total_bytes"],
                  "measured_peak_bytes": int(sys.argv[4]) << 20, "tracked_peak_bytes": rows[-1]["peak_mem_bytes"]}))
PY
  else
    status=1
    tail -5 "$out/qft_$shape.log"
    echo "{\"runner\": \"qft\", \"model\": \"$shape\", \"failed\": true}" >> "$results"
  fi
  if with_peak python3 scripts/bench_torch_gpu.py --model "$model" --name "$shape" --seq-len 2048 --steps 6 \
      --results "$work/torch.jsonl" > "$out/torch_$shape.log" 2>&1; then
    python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).readlines()[-1]); r['measured_peak_bytes']=int(sys.argv[2])<<20; print(json.dumps(r))" \
      "$work/torch.jsonl" "$(cat "$work/peak_mib")" >> "$results"
  else
    tail -5 "$out/torch_$shape.log"
  fi
  rm -rf "$model" "$work/run-$shape"
done

say "results"
python3 scripts/gpu_report.py "$results" | tee "$out/table.txt"
exit $status
