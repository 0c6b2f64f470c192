#!/usr/bin/env bash
# Sets up, builds and runs the main job on the embedded default: the bundled tiny LLaMA on bundled text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/qft --version
./build/qft eval --model models/tiny-llama --data data/eval.jsonl --seq-len 128
