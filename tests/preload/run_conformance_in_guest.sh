#!/usr/bin/env bash
# Runs vsock_conformance (statically linked) in the guest kit, against the
# guest kernel's own AF_VSOCK over vsock_loopback (CID 1): proof that the
# program's expectations are what the real kernel does. Never runs it on the
# host. Prints the program's ok/FAIL/info lines.
# Usage: run_conformance_in_guest.sh KIT_DIR CONFORMANCE_BINARY [ARG]...
set -euo pipefail
(($# >= 2)) || {
  echo "usage: run_conformance_in_guest.sh KIT_DIR CONFORMANCE_BINARY [ARG]..." >&2
  exit 2
}
kit=$1
program=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/hvsock-guest-conformance.XXXXXX")
trap 'rm -f "$log"' EXIT
status=0
bash "$here/../../scripts/guest-kit/run-guest.sh" --kit "$kit" --timeout 120 \
  --add "$program" -- "$(basename "$program")" "$@" >"$log" || status=$?
grep -E '^(ok|FAIL|info|vsock_conformance):' "$log" || true
if ((status != 0)); then
  echo "FAIL: vsock_conformance exited with status $status in the guest; guest log:"
  tail -n 40 "$log"
  exit 1
fi
echo "the kernel's AF_VSOCK agrees with every check of vsock_conformance"
