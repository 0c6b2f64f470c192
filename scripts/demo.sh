#!/usr/bin/env bash
# Sets up, builds and runs the main job on the embedded default: qft train --config configs/tiny.json
# fine-tunes every parameter of the bundled tiny LLaMA on the bundled instruction data (about a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/qft --version
./build/qft train --config configs/tiny.json "$@"
