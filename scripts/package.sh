#!/usr/bin/env bash
# Builds the Debian packages hvsock and libhvsock-dev with CPack (see
# cmake/packaging.cmake) into build/package/ and prints their paths.
# Installs its build dependencies first (scripts/install-deps.sh).
#
# Usage: package.sh [--build-dir DIR]   (default <repo>/build/package-build)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$repo/build/package-build
while (($#)); do
  case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "package: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
bash "$repo/scripts/install-deps.sh" >&2
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DHVSOCK_BUILD_TESTS=OFF -DHVSOCK_BUILD_EXAMPLES=OFF \
  -DHVSOCK_BUILD_BENCH=OFF >&2
cmake --build "$build_dir" -j"$(nproc)" >&2
rm -f "$repo"/build/package/*.deb
(cd "$build_dir" && cpack -G DEB -B "$repo/build/package") >&2
rm -rf "$repo/build/package/_CPack_Packages"
ls "$repo"/build/package/*.deb
