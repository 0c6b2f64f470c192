#!/usr/bin/env bash
# Sets up, builds and runs every test:
#   1. the normal build (CUDA sources compiled when nvcc is present; required when CI is set), all tests;
#   2. a CPU-only build under AddressSanitizer + UBSan, all tests again;
#   3. every fuzz target for a short while (scripts/fuzz.sh; the long runs are reported in the README).
# ctest fails when no test ran; [cuda] tests without a GPU are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cuda_flags=()
if [ -n "${CI:-}" ]; then
  cuda_flags=(-DQFT_REQUIRE_CUDA=ON)  # CI must compile the CUDA sources
  export QFT_CUDA_ARCHS=${QFT_CUDA_ARCHS:-80}
fi

# ctest runs one test per core, and each uses OpenMP: waiting threads must sleep, not spin, or the processes
# starve each other (one test measured 15 s alone and 460 s beside another).
export OMP_WAIT_POLICY=PASSIVE

echo "== build: default =="
bash scripts/build.sh build "${cuda_flags[@]}"
echo "== test: default =="
(cd build && ctest --no-tests=error --output-on-failure -j "$(nproc)")

echo "== build: CPU-only, AddressSanitizer + UBSan =="
bash scripts/build.sh build-asan -DQFT_CUDA=OFF -DQFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== test: CPU-only, AddressSanitizer + UBSan =="
# The INT8-vs-fp32 quality test trains 19 short runs to measure a statistical claim; the default build runs it,
# and the same code paths run under the sanitizers in every other training test.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --no-tests=error --output-on-failure -j "$(nproc)" -E "INT8 training state matches fp32 quality")

echo "== fuzz: every parser of user files, 10 s each (clang, libFuzzer, ASan + UBSan) =="
bash scripts/fuzz.sh --seconds 10
