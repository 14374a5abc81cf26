#!/usr/bin/env bash
# seqpacket_marker_check under `hvsock run` in the host partition of a fresh
# hvsockd, with its port registered; passes when it exits 0.
# Usage: seqpacket_marker_test.sh HVSOCKD HVSOCK_CLI PROGRAM
set -euo pipefail
(($# == 3)) || {
  echo "usage: seqpacket_marker_test.sh HVSOCKD HVSOCK_CLI PROGRAM" >&2
  exit 2
}
hvsockd=$1 cli=$2 program=$3
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
start_daemon
hv service register --name marker --port 21000 >/dev/null
hv run -- "$program" 21000 || fail "seqpacket_marker_check failed under the shim"
ok "the shim's seqpacket data calls leak no marker fd and keep MSG_EOR"
