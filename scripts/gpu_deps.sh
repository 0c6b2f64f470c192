#!/usr/bin/env bash
# qft's Debian build dependencies for a GPU machine that has no network (the CUDA toolkit, CMake, ninja and a
# C++ compiler are already there):
#   bash scripts/gpu_deps.sh download   # here, with apt: the .deb files into .debs/ (git-ignored; carry it)
#   source scripts/gpu_deps.sh env      # there: unpack into /opt/qftdeps (never /) and export the paths
#                                       # that CMake, pkg-config and the loader need
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACKAGES=(libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10
          libfmt-dev libfmt9 catch2 libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
          pkgconf pkgconf-bin libpkgconf3)
PREFIX=/opt/qftdeps
case "${1:-}" in
  download)
    mkdir -p .debs
    (cd .debs && apt-get download "${PACKAGES[@]}")
    du -sh .debs
    ;;
  env)
    if [ ! -d "$PREFIX/usr" ]; then
      for f in .debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
    fi
    lib=$PREFIX/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_EXECUTABLE=$PREFIX/usr/bin/pkgconf
    export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$PREFIX
    export CMAKE_PREFIX_PATH=$PREFIX/usr
    export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # Debian links libopenblas.so through update-alternatives, which dpkg -x does not run: name it directly.
    export QFT_CMAKE_DEPS="-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG_EXECUTABLE -DBLAS_LIBRARIES=$lib/openblas-pthread/libopenblas.so -DCBLAS_INCLUDE_DIR=$PREFIX/usr/include/x86_64-linux-gnu/openblas-pthread"
    ;;
  *)
    echo "usage: bash scripts/gpu_deps.sh download | source scripts/gpu_deps.sh env" >&2
    exit 2
    ;;
esac
