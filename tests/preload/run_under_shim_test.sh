#!/usr/bin/env bash
# Runs PROGRAM [ARG]... under `hvsock run` (the preload shim) in the host
# partition of a fresh hvsockd; passes when the program exits 0.
# Usage: run_under_shim_test.sh HVSOCKD HVSOCK_CLI PROGRAM [ARG]...
set -euo pipefail
(($# >= 3)) || {
  echo "usage: run_under_shim_test.sh HVSOCKD HVSOCK_CLI PROGRAM [ARG]..." >&2
  exit 2
}
hvsockd=$1 cli=$2
shift 2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
start_daemon
hv run -- "$@" || fail "$(basename "$1") failed under the shim"
