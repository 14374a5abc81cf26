#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds and runs a
# separate project against it twice: with find_package(hvsock), and with a
# plain compiler line from `pkg-config --cflags --libs hvsock`.
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/hvsock/hvsock.hpp"
test -x "$work/prefix/sbin/hvsockd"
test -x "$work/prefix/bin/hvsock"
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer" "$work/none.sock"

pc_dir=$(dirname "$(find "$work/prefix" -name hvsock.pc -print -quit)")
[[ -f "$pc_dir/hvsock.pc" ]] || { echo "FAIL: no hvsock.pc installed"; exit 1; }
# The .pc file names the prefix it was configured with; point it here.
flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --define-variable=prefix="$work/prefix" \
  --cflags --libs hvsock)
# shellcheck disable=SC2086 # the flags are words
c++ -std=c++20 -o "$work/consumer-pc" "$source_dir/consumer/main.cpp" $flags
"$work/consumer-pc" "$work/none.sock"
echo "install test passed (find_package and pkg-config: $flags)"
