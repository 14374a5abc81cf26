#!/usr/bin/env bash
# vsock_conformance (the checks proven against the kernel in the guest, see
# guest.vsock_conformance_kernel) run on the host under the preload shim, in
# the host partition of a fresh hvsockd. Every FAIL must be one of the known,
# documented differences (shim_known_differences.txt), and every known
# difference must still fail, so the list stays true.
# Usage: conformance_under_shim_test.sh HVSOCKD HVSOCK_CLI CONFORMANCE_PROGRAM
set -euo pipefail
(($# == 3)) || {
  echo "usage: conformance_under_shim_test.sh HVSOCKD HVSOCK_CLI CONFORMANCE_PROGRAM" >&2
  exit 2
}
hvsockd=$1 cli=$2 program=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../support/test_lib.sh
source "$here/../support/test_lib.sh"

start_daemon
# The program's cases use ports 20000 and up, 32 each; connects need the
# services registered.
for port in $(seq 20000 20511); do
  hv service register --name "conformance $port" --port "$port" >/dev/null
done
status=0
hv run -- "$program" >"$work/conformance.log" 2>&1 || status=$?
grep -E '^vsock_conformance:' "$work/conformance.log" || true
((status <= 1)) || fail "the program did not run to the end (status $status): $(tail -5 "$work/conformance.log")"

grep -v '^#' "$here/shim_known_differences.txt" | sed '/^$/d' | sort >"$work/known"
sed -n 's/^FAIL: \(.*\): expected .*/\1/p' "$work/conformance.log" | sort -u >"$work/failed"
unexpected=$(comm -13 "$work/known" "$work/failed")
fixed=$(comm -23 "$work/known" "$work/failed")
while IFS= read -r check; do
  [[ -n "$check" ]] && echo "known difference (docs/compatibility.md): $check"
done <"$work/known"
[[ -z "$unexpected" ]] || fail "the shim differs from the kernel in checks not documented:
$(grep -F "$unexpected" "$work/conformance.log")"
[[ -z "$fixed" ]] || fail "these known differences no longer fail; remove them from shim_known_differences.txt and docs/compatibility.md:
$fixed"
ok "$(grep -c '^ok:' "$work/conformance.log") checks agree with the kernel; $(wc -l <"$work/known") documented differences"
