#!/usr/bin/env bash
# qft's Debian build dependencies for a GPU machine that has no network (the CUDA toolkit, CMake, ninja and a
# C++ compiler are already there):
#   bash scripts/gpu_deps.sh download   # here, with apt: the .deb files into .debs/ (git-ignored; carry it)
#   source scripts/gpu_deps.sh env      # there: unpack into /opt/qftdeps (never /) and export the paths
#                                       # that CMake, pkg-config and the loader need
# Sourced, it changes no shell option and no directory of the caller, and returns (never exits) on failure,
# so that a failing step of scripts/gpu_check.sh is recorded and the next one still runs.
QFT_DEPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QFT_DEPS_PACKAGES=(libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10
                   libfmt-dev libfmt9 catch2 libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
                   libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2
                   libxxhash-dev libxxhash0 pkgconf pkgconf-bin libpkgconf3)
QFT_DEPS_PREFIX=/opt/qftdeps

qft_deps_download() {
  # The cuDNN frontend's headers (scripts/setup.sh unpacks them here) travel in .debs/ too.
  [ -f /opt/qft-deps/cudnn-frontend/include/cudnn_frontend.h ] || { echo "gpu_deps: run scripts/setup.sh first (cuDNN frontend headers)" >&2; return 1; }
  mkdir -p "$QFT_DEPS_ROOT/.debs" && (cd "$QFT_DEPS_ROOT/.debs" && apt-get download "${QFT_DEPS_PACKAGES[@]}") &&
    rm -rf "$QFT_DEPS_ROOT/.debs/cudnn-frontend" && cp -r /opt/qft-deps/cudnn-frontend "$QFT_DEPS_ROOT/.debs/" &&
    du -sh "$QFT_DEPS_ROOT/.debs"
}

qft_deps_env() {
  if [ ! -d "$QFT_DEPS_PREFIX/usr" ]; then
    ls "$QFT_DEPS_ROOT"/.debs/*.deb > /dev/null 2>&1 || { echo "gpu_deps: no .debs/ to unpack (run download here)" >&2; return 1; }
    local f
    for f in "$QFT_DEPS_ROOT"/.debs/*.deb; do dpkg -x "$f" "$QFT_DEPS_PREFIX" || return 1; done
  fi
  local lib=$QFT_DEPS_PREFIX/usr/lib/x86_64-linux-gnu
  export PKG_CONFIG_EXECUTABLE=$QFT_DEPS_PREFIX/usr/bin/pkgconf
  export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$QFT_DEPS_PREFIX
  export CMAKE_PREFIX_PATH=$QFT_DEPS_PREFIX/usr
  export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export QFT_CUDNN_FRONTEND=$QFT_DEPS_ROOT/.debs/cudnn-frontend/include  # CMake's hint for cudnn_frontend.h
  # Debian links libopenblas.so through update-alternatives, which dpkg -x does not run: name it directly.
  export QFT_CMAKE_DEPS="-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG_EXECUTABLE -DBLAS_LIBRARIES=$lib/openblas-pthread/libopenblas.so -DCBLAS_INCLUDE_DIR=$QFT_DEPS_PREFIX/usr/include/x86_64-linux-gnu/openblas-pthread"
}

case "${1:-}" in
  download) qft_deps_download ;;
  env) qft_deps_env ;;
  *)
    echo "usage: bash scripts/gpu_deps.sh download | source scripts/gpu_deps.sh env" >&2
    false
    ;;
esac
