#!/usr/bin/env bash
# Boots the guest kit with kernel_transport_check (statically linked) and
# HVSOCK_TRANSPORT=kernel: libhvsock over a real guest kernel's AF_VSOCK.
# Usage: kernel_transport_test.sh KIT_DIR CHECK_BINARY
set -euo pipefail
(($# == 2)) || {
  echo "usage: kernel_transport_test.sh KIT_DIR CHECK_BINARY" >&2
  exit 2
}
kit=$1
check=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/hvsock-guest-kt.XXXXXX")
trap 'rm -f "$log"' EXIT
status=0
bash "$here/../../scripts/guest-kit/run-guest.sh" --kit "$kit" --timeout 300 --log "$log" \
  --add "$check" --env HVSOCK_TRANSPORT=kernel -- "$(basename "$check")" || status=$?
grep -E '^(ok|FAIL|client|kernel transport)' "$log" || true
if ((status != 0)); then
  echo "FAIL: the guest check exited with status $status; guest log:"
  tail -n 40 "$log"
  exit 1
fi
echo "kernel transport checks passed in the guest"
