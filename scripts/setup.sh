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
  python3-pip  # fetches the cuDNN frontend's headers (below)
  libopenmpi-dev openmpi-bin  # several ranks: MPI between CPU ranks, and NCCL's id exchange (mpirun in the tests)
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

# The cuDNN frontend: header-only C++ for the CUDA backend's fused attention (libcudnn itself is loaded at run time).
# Its headers ship in the PyPI wheel nvidia-cudnn-frontend, unpacked once into /opt/qft-deps; only CUDA builds use it.
CUDNN_FRONTEND_VERSION=1.32.0
fe_dir=/opt/qft-deps/cudnn-frontend
if command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ "$(cat "$fe_dir/VERSION" 2> /dev/null)" != "$CUDNN_FRONTEND_VERSION" ]; then
    echo "setup: unpacking the cuDNN frontend $CUDNN_FRONTEND_VERSION headers into $fe_dir"
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --dest "$tmp" "nvidia-cudnn-frontend==$CUDNN_FRONTEND_VERSION"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO rm -rf "$fe_dir"
    $SUDO mkdir -p "$fe_dir"
    $SUDO python3 -m zipfile -e "$tmp"/nvidia_cudnn_frontend-*.whl "$tmp/wheel"
    $SUDO cp -r "$tmp/wheel/include" "$fe_dir/include"
    echo "$CUDNN_FRONTEND_VERSION" | $SUDO tee "$fe_dir/VERSION" > /dev/null
    rm -rf "$tmp"
  else
    echo "setup: cuDNN frontend $CUDNN_FRONTEND_VERSION present"
  fi
fi
