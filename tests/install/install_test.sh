#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds and runs a
# separate project against it with find_package(hvsock).
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/hvsock/hvsock.hpp"
test -x "$work/prefix/bin/hvsockd"
test -x "$work/prefix/bin/hvsock"
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/build/consumer" "$work/none.sock"
