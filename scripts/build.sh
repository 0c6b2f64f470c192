#!/usr/bin/env bash
# Configures and builds one build tree: scripts/build.sh BUILD_DIR [cmake options...]
# CUDA sources are compiled whenever nvcc is found (CUDA architectures: QFT_CUDA_ARCHS, default 80;86;89;90).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
mkdir -p "$dir"
log="$dir/configure.log"  # inside the build folder: nothing lands in the source tree
cmake -S . -B "$dir" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${QFT_CUDA_ARCHS:-80;86;89;90}" "$@" >"$log" 2>&1 \
  || { cat "$log"; exit 1; }
grep -E "qft:" "$log" || true
cmake --build "$dir" --parallel "$(nproc)"
