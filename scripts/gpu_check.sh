#!/usr/bin/env bash
# The GPU check, in steps that each fit one command on a GPU machine lent for minutes:
#
#   bash scripts/gpu_check.sh --plan               # every step: the command to run there, its time bound, what to carry
#   bash scripts/gpu_check.sh STEP RESULTS_DIR     # run one step; results are appended to RESULTS_DIR
#   bash scripts/gpu_check.sh report DIR...        # the table of everything recorded in the results folders
#
# Steps: build-test (build for this GPU, [cuda] tests), bench-small and bench-7b (qft and PyTorch side by side on
# random-init LLaMA shapes: model.init=random, no weight files). A step records each check and each benchmark as
# one JSON line in RESULTS_DIR/results.jsonl as soon as it ends, and its output in RESULTS_DIR/STEP.log, so a step
# that is stopped at its time bound still leaves what it finished. A failing check is recorded and the step goes
# on; the exit status says whether anything failed. On the GPU machine a skipped [cuda] test is a failure.
set -uo pipefail  # no -e: a failure is recorded, and the step goes on
cd "$(dirname "$0")/.."

STEPS=(build-test bench-small bench-7b)
bound_s() {  # the time bound of a step, in seconds, on one H200 with 16 cores
  case $1 in build-test) echo 300 ;; bench-small) echo 150 ;; bench-7b) echo 210 ;; esac
}
describe() {
  case $1 in
    build-test) echo "build qft and its tests for this GPU's architecture; qft --version must say 'GPU visible: yes'; every [cuda] test must pass, none skip (cuDNN's fused attention among them); compute-sanitizer's memcheck over the op harness; a tiny run with --debug-sync reports its device-to-host reads per step and attends through cuDNN" ;;
    bench-small) echo "train the tiny and TinyLlama-1.1B shapes at seq 2048, batch 1: qft (INT8 state) and PyTorch (bf16 + AdamW) side by side, and qft on 1.1B again with the layer-input stack in host memory" ;;
    bench-7b) echo "train LLaMA-2-7B shapes at seq 2048, batch 1: qft and PyTorch (at the longest sequence it fits, if 2048 does not)" ;;
  esac
}

plan() {
  local total=0 s
  echo "gpu_check steps (bounds for one H200 with 16 cores; run them in order, as soon as each returns):"
  for s in "${STEPS[@]}"; do
    total=$((total + $(bound_s "$s")))
    printf '\n  %s (bound %s s): %s\n' "$s" "$(bound_s "$s")" "$(describe "$s")"
    printf '    device command: bash scripts/gpu_check.sh %s $OUT    timeout_s: %s\n' "$s" "$(bound_s "$s")"
  done
  printf '\n  together: %d s of commands, plus the machine'"'"'s start.\n' "$total"
  echo "  carry: .debs (bash scripts/gpu_deps.sh download, here; the machine has no -dev packages and no network)."
  echo "  A later step builds again only when the machine was given back between calls (build-gpu/ is gone)."
  echo "  The device empties \$OUT before each command: each step's results come back in its own folder, and"
  echo "  bash scripts/gpu_check.sh report FOLDER... prints the table of them all."
}

[ "${1:-}" = "--plan" ] && { plan; exit 0; }
step=${1:-}
[ -n "$step" ] && [ -n "${2:-}" ] || { echo "usage: bash scripts/gpu_check.sh --plan | STEP RESULTS_DIR | report RESULTS_DIR (STEP: ${STEPS[*]})" >&2; exit 2; }
if [ "$step" = report ]; then
  shift
  files=()
  for d in "$@"; do files+=("$d/results.jsonl"); done
  exec python3 scripts/gpu_report.py "${files[@]}"
fi
out=$(mkdir -p "$2" && cd "$2" && pwd) || exit 1
results=$out/results.jsonl
bound_s "$step" > /dev/null && [ -n "$(bound_s "$step")" ] || { echo "gpu_check: unknown step '$step' (${STEPS[*]})" >&2; exit 2; }

log=$out/$step.log
work=$(mktemp -d /tmp/qft_gpu_check.XXXX)
trap 'rm -rf "$work"' EXIT  # scratch only: every result and log is under RESULTS_DIR
failed=0
say() { echo "== gpu_check $step: $*" | tee -a "$log"; }
# record NAME OK [DETAIL]: one check's outcome, as a line of results.jsonl
record() {
  python3 -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "check": sys.argv[2], "ok": sys.argv[3] == "1", "detail": sys.argv[4]}))' \
    "$step" "$1" "$2" "${3:-}" >> "$results"
  if [ "$2" = 1 ]; then say "ok: $1"; else say "FAILED: $1 ${3:-}"; failed=1; fi
}

# ---- the GPU and the build ----
gpu=${CUDA_VISIBLE_DEVICES:-0}
gpu=${gpu%%,*}  # qft and torch run on the first visible GPU: read its memory, not the sum or the maximum of all
arch=$(nvidia-smi -i "$gpu" --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
build_dir=${QFT_GPU_BUILD_DIR:-build-gpu}  # tests point it at an existing build
case $build_dir in /*) ;; *) build_dir=$PWD/$build_dir ;; esac
qft=$build_dir/qft

build() {
  [ -x "$qft" ] && [ -x "$build_dir/test/qft_tests" ] && return 0
  local cmake_deps=() nvcc
  if ! pkg-config --exists sentencepiece 2>/dev/null; then
    # shellcheck source=gpu_deps.sh
    source scripts/gpu_deps.sh env || return 1
    read -r -a cmake_deps <<< "$QFT_CMAKE_DEPS"
  fi
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc 2>/dev/null | head -1)
  [ -n "$nvcc" ] || { echo "gpu_check: no nvcc on PATH or under /usr/local/cuda*" >&2; return 1; }
  say "build for sm_${arch:-native} with $nvcc"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFT_REQUIRE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
    -DCMAKE_CUDA_ARCHITECTURES="${arch:-native}" "${cmake_deps[@]}" >> "$log" 2>&1 &&
    cmake --build "$build_dir" -j "$(nproc)" --target qft qft_tests >> "$log" 2>&1
}

# cuDNN for the fused attention: the loader's, or the Python environment's (the nvidia-cudnn-cu13 package).
if [ -z "${QFT_CUDNN_LIBRARY:-}" ]; then
  cudnn_lib=$(python3 -c "import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], 'lib', 'libcudnn.so.9'))" 2> /dev/null)
  [ -n "$cudnn_lib" ] && [ -f "$cudnn_lib" ] && export QFT_CUDNN_LIBRARY=$cudnn_lib
fi

# NCCL for the communicator's [cuda] test: the loader's, or the Python environment's (nvidia-nccl-cu13).
if [ -z "${QFT_NCCL_LIBRARY:-}" ]; then
  nccl_lib=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib', 'libnccl.so.2'))" 2> /dev/null)
  [ -n "$nccl_lib" ] && [ -f "$nccl_lib" ] && ! ldconfig -p | grep -q libnccl.so.2 && export QFT_NCCL_LIBRARY=$nccl_lib
fi

gpu_mem_mib() { nvidia-smi -i "$gpu" --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
# with_peak CMD...: runs CMD while sampling this GPU's memory; $work/peak_mib gets the peak above the baseline.
with_peak() {
  local base samples=$work/mem.log smi rc
  base=$(gpu_mem_mib)
  nvidia-smi -i "$gpu" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$samples" &
  smi=$!
  "$@"
  rc=$?
  kill "$smi" 2> /dev/null
  wait "$smi" 2> /dev/null
  echo $(( $(sort -n "$samples" | tail -1) - base )) > "$work/peak_mib"
  return $rc
}

# bench SHAPE STEPS QFT_TIMEOUT_S TORCH_TIMEOUT_S [LABEL KEY=VALUE...]: qft, then PyTorch, on one random-init
# shape; with a label, qft alone with those settings (recorded as SHAPE+LABEL)
bench() {
  local shape=$1 steps=$2 model=$work/llama-$1 run=$work/run-$1 name=$1 sets=()
  if [ $# -gt 4 ]; then
    name="$1+$5"
    for kv in "${@:6}"; do sets+=(--set "$kv"); done
  fi
  say "benchmark $name"
  python3 scripts/make_bench_model.py --shape "$shape" --out "$model" >> "$log" 2>&1 || { record "$shape model directory" 0; return; }
  local args=(--config configs/llama7b.json --set model.path="$model" --set model.init=random
              --set data.train="$work/bench.jsonl" --set data.val= --set data.format=text --set data.template=plain
              --set train.steps="$steps" --set train.log_every=1 --set train.warmup_steps=0 --set train.eval_every=0
              --set train.save_final=false --set output.dir="$run" --set device=cuda "${sets[@]}")
  "$qft" plan --json "${args[@]}" > "$work/plan.json" 2>> "$log" || record "qft plan $shape" 0
  if with_peak timeout "$3" "$qft" train "${args[@]}" >> "$log" 2>&1; then
    python3 - "$run/metrics.jsonl" "$name" "$work/plan.json" "$(cat "$work/peak_mib")" >> "$results" <<'PY' || record "qft $name result" 0
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
timed = [r["tokens_per_s"] for r in rows[2:]] or [r["tokens_per_s"] for r in rows]  # the first steps warm up
plan = json.load(open(sys.argv[3]))
config = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), "config.json")))
print(json.dumps({"runner": "qft", "model": sys.argv[2], "params": plan["parameters"],
                  "seq_len": config["data"]["seq_len"], "batch": config["train"]["batch_size"],
                  "tokens_per_s": statistics.median(timed), "setup_s": rows[0]["elapsed_s"],
                  "planned_bytes": plan["total_bytes"], "allowance_bytes": plan["allowance_bytes"],
                  "measured_peak_bytes": int(sys.argv[4]) << 20, "tracked_peak_bytes": rows[-1]["peak_mem_bytes"]}))
PY
  else
    record "qft train $name" 0 "exit $?; see $step.log"
    echo "{\"runner\": \"qft\", \"model\": \"$name\", \"failed\": true}" >> "$results"
  fi
  [ ${#sets[@]} -gt 0 ] && { rm -rf "$model" "$run"; return; }
  local seq
  for seq in 2048 1024 512; do  # PyTorch at the longest sequence it fits
    : > "$work/torch.jsonl"
    with_peak timeout "$4" python3 scripts/bench_torch_gpu.py --model "$model" --name "$shape" --seq-len "$seq" \
      --steps "$steps" --results "$work/torch.jsonl" >> "$log" 2>&1 || { record "pytorch $shape" 0 "exit $?"; break; }
    grep -q '"oom": true' "$work/torch.jsonl" && [ "$shape" = 7b ] && continue
    python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).readlines()[-1]); r['measured_peak_bytes']=int(sys.argv[2])<<20; print(json.dumps(r))" \
      "$work/torch.jsonl" "$(cat "$work/peak_mib")" >> "$results"
    break
  done
  rm -rf "$model" "$run"
}

bench_data() {  # text for packing: the bundled corpus, repeated; token ids do not matter for throughput
  python3 - "$work/bench.jsonl" <<'PY'
import json, sys
text = open("data/corpus.txt").read()
with open(sys.argv[1], "w") as f:
    for i in range(400):
        f.write(json.dumps({"text": text}) + "\n")
PY
}

say "start $(date -u +%FT%TZ) on GPU $gpu (compute capability ${arch:-unknown}); bound $(bound_s "$step") s"
if build; then [ "$step" = build-test ] && record "build for sm_${arch:-native}" 1; else record "build" 0 "see $step.log"; exit 1; fi

case $step in
  build-test)
    "$qft" --version > "$work/version" 2>&1
    cat "$work/version" >> "$log"
    if grep -q "GPU visible: yes" "$work/version"; then record "GPU visible" 1; else record "GPU visible" 0 "$(grep 'GPU visible' "$work/version")"; fi
    "$build_dir/test/qft_tests" "[cuda]" --durations yes > "$work/tests.log" 2>&1
    rc=$?
    cat "$work/tests.log" >> "$log"
    record "[cuda] tests pass" "$([ $rc -eq 0 ] && echo 1 || echo 0)" "$(tail -2 "$work/tests.log" | tr '\n' ' ')"
    skipped=$(grep -c "^SKIPPED:" "$work/tests.log")
    record "no [cuda] test skipped" "$([ "$skipped" -eq 0 ] && echo 1 || echo 0)" "$skipped skipped"
    # Out-of-bounds and misaligned accesses of every op kernel (the harness's shapes are small enough).
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
    if [ -n "$sanitizer" ]; then
      timeout 90 "$sanitizer" --tool memcheck --error-exitcode 1 "$build_dir/test/qft_tests" "[cuda][ops]" > "$work/memcheck.log" 2>&1
      rc=$?
      cat "$work/memcheck.log" >> "$log"
      record "compute-sanitizer memcheck of the op harness" "$([ $rc -eq 0 ] && echo 1 || echo 0)" "exit $rc$([ $rc -eq 124 ] && echo ', timed out')"
    else
      record "compute-sanitizer memcheck of the op harness" 0 "no compute-sanitizer"
    fi
    # One device-to-host read per step (the step's totals): the hot path does not wait on the host.
    bench_data
    python3 scripts/make_bench_model.py --shape tiny --out "$work/tiny" >> "$log" 2>&1
    timeout 60 "$qft" train --config configs/tiny.json --set model.path="$work/tiny" --set model.init=random \
      --set train.steps=3 --set train.eval_every=0 --set data.val= --set train.clip_grad_norm=1.0 \
      --set output.dir="$work/debug-run" --set device=cuda --debug-sync > "$work/debug.log" 2>&1
    rc=$?
    cat "$work/debug.log" >> "$log"
    reads=$(grep -o "| [0-9]* device-to-host reads" "$work/debug.log" | awk '{print $2}' | sort -u | tr '\n' ' ')
    record "a --debug-sync run; device-to-host reads per step: ${reads:-none}" "$([ $rc -eq 0 ] && [ "${reads% }" = 1 ] && echo 1 || echo 0)"
    attention=$(grep -o "attention: .*; layer-input stack" "$work/debug.log" | head -1)
    record "cuDNN's fused attention in use (${attention:-no attention line})" "$(echo "$attention" | grep -q "attention: cuDNN" && ! grep -q "qft's own for this shape" "$work/debug.log" && echo 1 || echo 0)"
    ;;
  bench-small)
    bench_data
    bench tiny 30 60 60
    bench 1b 12 90 60
    bench 1b 12 60 0 offload train.stack_offload=true  # the stack in host memory: its cost in tokens/s
    ;;
  bench-7b)
    bench_data
    bench 7b 8 120 80
    ;;
esac
say "end $(date -u +%FT%TZ)"
python3 scripts/gpu_report.py "$results" | tee "$out/table.txt"
exit $failed
