#!/usr/bin/env bash
# `hvsock run` refuses what the preload shim cannot serve, with the reason:
# a statically linked executable (unless --no-preload), and a missing
# libhvsock-preload.so.
# Usage: run_refusals_test.sh HVSOCKD HVSOCK_CLI STATIC_EXECUTABLE
set -euo pipefail
(($# == 3)) || {
  echo "usage: run_refusals_test.sh HVSOCKD HVSOCK_CLI STATIC_EXECUTABLE" >&2
  exit 2
}
hvsockd=$1 cli=$2 static_exe=$3
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

start_daemon
status=0
hv run -- "$static_exe" --version >/dev/null 2>"$work/err" || status=$?
((status == 1)) && grep -q "is statically linked" "$work/err" ||
  fail "a static executable: status $status: $(cat "$work/err")"
ok "a static executable: $(cat "$work/err")"
hv run --no-preload -- "$static_exe" --version >/dev/null || fail "--no-preload should run it"
ok "--no-preload runs it"
status=0
HVSOCK_PRELOAD_LIBRARY=$work/missing.so hv run -- true 2>"$work/err" || status=$?
((status == 1)) && grep -q "libhvsock-preload.so not found" "$work/err" ||
  fail "a missing shim: status $status: $(cat "$work/err")"
ok "a missing shim: $(cat "$work/err")"
