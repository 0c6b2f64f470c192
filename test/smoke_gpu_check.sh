#!/usr/bin/env bash
# ctest smoke.gpu_check: scripts/gpu_check.sh where no GPU can run, with a stand-in nvidia-smi. --plan names every
# step's device command and bound; build-test and bench-small (on this build) must record each failing check,
# go on to the next, leave results.jsonl, the step's log and the table in the results folder, and exit 1. On a
# machine where qft sees a GPU this says SKIPPED: there, run the real check.
set -uo pipefail
qft=$1
build=$(cd "$(dirname "$qft")" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp"/*.out 2>/dev/null; exit 1; }

plan=$(bash "$root/scripts/gpu_check.sh" --plan) || fail "--plan exited non-zero"
for s in build-test bench-small bench-7b; do
  grep -q "device command: bash scripts/gpu_check.sh $s \$OUT    timeout_s: [0-9]" <<< "$plan" || fail "--plan lacks step $s"
done
if "$qft" --version 2>&1 | grep -q "GPU visible: yes"; then
  echo "SKIPPED: a GPU is visible; run bash scripts/gpu_check.sh --plan and its steps"
  exit 0
fi

mkdir "$tmp/bin"
cat > "$tmp/bin/nvidia-smi" <<'SH'
#!/bin/sh
case "$*" in *compute_cap*) echo 9.0 ;; *name*) echo "NVIDIA H200" ;; *) echo 1000 ;; esac
SH
chmod +x "$tmp/bin/nvidia-smi"

for step in build-test bench-small; do
  PATH="$tmp/bin:$PATH" QFT_GPU_BUILD_DIR="$build" bash "$root/scripts/gpu_check.sh" "$step" "$tmp/$step" > "$tmp/$step.out" 2>&1
  status=$?
  [ $status -eq 1 ] || fail "$step exited $status, expected 1"
  for f in results.jsonl "$step.log" table.txt; do [ -s "$tmp/$step/$f" ] || fail "$step left no $f"; done
done
results=$tmp/build-test/results.jsonl
grep -q '"check": "GPU visible", "ok": false' "$results" || fail "GPU visible: no was not recorded as a failure"
grep -q '"check": "no \[cuda\] test skipped", "ok": false' "$results" || fail "skipped [cuda] tests were not a failure"
grep -q '"check": "a --debug-sync run' "$results" || fail "the step stopped before its last check"
grep -q '"runner": "qft", "model": "1b", "failed": true' "$tmp/bench-small/results.jsonl" || fail "bench-small stopped before 1b"
grep -q "FAILED bench-small: qft train 1b" "$tmp/bench-small/table.txt" || fail "the table lacks the failed 1b run"
echo "gpu_check: every step planned; failures recorded, steps went on, results kept"
