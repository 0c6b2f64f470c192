#!/usr/bin/env bash
# Configures and builds one build tree: scripts/build.sh BUILD_DIR [cmake options...]
# CUDA sources are compiled whenever nvcc is found (CUDA architectures: QFT_CUDA_ARCHS, default 80;86;89;90).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$dir" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${QFT_CUDA_ARCHS:-80;86;89;90}" "$@" >"$dir.configure.log" 2>&1 \
  || { cat "$dir.configure.log"; exit 1; }
grep -E "qft:" "$dir.configure.log" || true
cmake --build "$dir" --parallel "$(nproc)"
