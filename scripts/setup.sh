#!/usr/bin/env bash
# Installs every build and test dependency of qft from Debian 12 packages. Idempotent; run as root.
# The CUDA toolkit is optional: when nvcc is on PATH the CUDA backend is built too.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev catch2
  libopenblas-dev
  libxxhash-dev  # checkpoint content hashes (XXH3-128)
  clang libomp-dev  # scripts/fuzz.sh: libFuzzer with ASan + UBSan
  libpcre2-dev libutf8proc-dev  # tokenizer.json: pre-tokenizer regexes (UTF + Unicode properties), NFC/NFKC normalizers
  python3 python3-matplotlib  # scripts/plot_metrics.py and the sweep/plot smoke test
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
