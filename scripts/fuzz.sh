#!/usr/bin/env bash
# Fuzzes the parsers that read user files with libFuzzer under AddressSanitizer + UBSan.
#   scripts/fuzz.sh [--runs N | --seconds S] [TARGET...]     (default: --seconds 60, every target)
# Targets: safetensors run_config jsonl_record tokenizer_json trainer_state checkpoint (fuzz/fuzz_*.cpp).
# Each starts from its committed seeds (fuzz/seeds/TARGET, made by fuzz/make_seeds.py) and grows a working corpus in
# build-fuzz/corpus/TARGET; a crash leaves its input in build-fuzz/crashes/TARGET/ and makes the script exit 1.
# Prints one line per target: executions, seconds, corpus size, result.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=60)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(safetensors run_config jsonl_record tokenizer_json trainer_state checkpoint)

bash scripts/build.sh build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DQFT_FUZZ=ON -DQFT_CUDA=OFF -DQFT_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz.sh: no target '$t'" >&2; exit 1; }
  corpus=build-fuzz/corpus/$t crashes=build-fuzz/crashes/$t log=build-fuzz/fuzz_$t.log
  mkdir -p "$corpus" "$crashes"
  # -max_len: the largest seed (a tokenizer.json) must fit whole; -rss_limit_mb bounds what one input may allocate.
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$bin" "${limit[@]}" -max_len=131072 -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" "fuzz/seeds/$t" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and $crashes/)"
    status=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' || echo "?")
  printf '%-16s %10s executions %6s s  corpus %5s  %s\n' "$t" "$runs" "$secs" "$(ls "$corpus" | wc -l)" "$result"
done
exit $status
