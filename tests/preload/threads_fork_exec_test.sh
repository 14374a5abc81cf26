#!/usr/bin/env bash
# threads_fork_exec.c under `hvsock run` (the preload shim) in a fresh
# hvsockd's host partition, three times (races show up as flakes).
# Usage: threads_fork_exec_test.sh HVSOCKD HVSOCK_CLI PROGRAM
set -euo pipefail
(($# == 3)) || {
  echo "usage: threads_fork_exec_test.sh HVSOCKD HVSOCK_CLI PROGRAM" >&2
  exit 2
}
hvsockd=$1 cli=$2 program=$3
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

start_daemon
hv service register --name "threads fork exec" --port 5100 >/dev/null
for round in 1 2 3; do
  hv run -- "$program" 5100 >"$work/round.log" 2>&1 || fail "round $round: $(cat "$work/round.log")"
  sed "s/^/round $round: /" "$work/round.log"
done
ok "threads, fork and exec under the shim: no deadlock, no leaked fd, three rounds"
