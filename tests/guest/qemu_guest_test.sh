#!/usr/bin/env bash
# A real QEMU guest on hvsockd: `hvsock vm create web --qemu`, QEMU's
# vhost-user-vsock-pci device on the partition's socket, and an unmodified
# guest program (raw AF_VSOCK) connecting to the host (CID 2):
#   - port 5000, registered, `hvsock listen` on the host: data both ways
#     with half-close, checked byte for byte on both sides;
#   - port 6000 unregistered, 5001 registered without a listener, 5002
#     disabled for the VM: each connect fails in the guest (the switch
#     answers RST) and is counted by `hvsock stats`.
# Usage: qemu_guest_test.sh KIT_DIR HVSOCKD HVSOCK_CLI GUEST_CHECK
set -euo pipefail
(($# == 4)) || {
  echo "usage: qemu_guest_test.sh KIT_DIR HVSOCKD HVSOCK_CLI GUEST_CHECK" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 check=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d /tmp/hvqg-XXXXXX)
daemon_pid="" listener_pid=""
cleanup() {
  [[ -n "$listener_pid" ]] && kill "$listener_pid" 2>/dev/null
  [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "---- hvsockd log"
  tail -n 30 "$work/hvsockd.log" || true
  exit 1
}
hv() { "$cli" --runtime-dir "$work/run" "$@"; }

"$hvsockd" --state-dir "$work/state" --runtime-dir "$work/run" 2>"$work/hvsockd.log" &
daemon_pid=$!
for _ in $(seq 100); do hv status >/dev/null 2>&1 && break; sleep 0.1; done
hv status >/dev/null || fail "hvsockd did not start"

hv vm create web --qemu --cid 7 >"$work/vmid" 2>"$work/create.err"
socket=$(sed -n 's/^vhost-user socket: //p' "$work/create.err")
[[ -S "$socket" ]] || fail "no vhost-user socket at '$socket'"
echo "ok: vm create --qemu printed the VmId and the socket $socket"
hv service register --name echo --port 5000 >/dev/null
hv service register --name idle --port 5001 >/dev/null
hv service register --name off --port 5002 >/dev/null
hv service disable off --vm web

# The guest program writes everything before it reads; hvsock listen keeps
# reading while its own writes wait, so the sizes need not fit in buffers.
up=4194304 down=3145728
python3 - "$work" "$up" "$down" <<'PY'
import sys
work, up, down = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
open(f"{work}/down.bin", "wb").write(bytes((i * 13 + 5) & 0xff for i in range(down)))
open(f"{work}/up.expected", "wb").write(bytes((i * 7 + 1) & 0xff for i in range(up)))
PY
hv listen echo <"$work/down.bin" >"$work/up.out" 2>"$work/listen.err" &
listener_pid=$!
for _ in $(seq 100); do grep -q '^listening' "$work/listen.err" && break; sleep 0.1; done
grep -q '^listening' "$work/listen.err" || fail "hvsock listen did not start"

cat >"$work/guest-cases" <<EOF2
#!/bin/sh
guest_to_host_check 5000 $up $down; echo "case echo: \$?"
guest_to_host_check 6000 1 0; echo "case unregistered: \$?"
guest_to_host_check 5001 1 0; echo "case no-listener: \$?"
guest_to_host_check 5002 1 0; echo "case disabled: \$?"
EOF2
chmod +x "$work/guest-cases"

status=0
bash "$here/../../scripts/guest-kit/run-guest.sh" --kit "$kit" --timeout 300 \
  --log "$work/guest.log" --vsock-socket "$socket" \
  --add "$check" --add "$work/guest-cases" -- guest-cases >/dev/null 2>&1 || status=$?
grep -E '^(case|connect|connected|sent|received|data|read|write)' "$work/guest.log" || true
((status == 0)) || fail "the guest run failed (status $status)"

grep -qx 'case echo: 0' "$work/guest.log" || fail "guest -> host echo"
for c in unregistered no-listener disabled; do
  grep -qx "case $c: 3" "$work/guest.log" || fail "case $c: connect should have been refused"
done
echo "ok: refused connects fail in the guest (unregistered, no listener, disabled for the VM)"

wait "$listener_pid" || fail "hvsock listen exited non-zero: $(cat "$work/listen.err")"
listener_pid=""
cmp "$work/up.out" "$work/up.expected" || fail "the host received different bytes"
echo "ok: host received $up bytes from the guest, guest received $down bytes from the host"
grep -q "connection from $(cat "$work/vmid")" "$work/listen.err" ||
  fail "the listener should see the guest's VmId: $(cat "$work/listen.err")"
echo "ok: the host listener saw the guest's VmId as its peer"

stats=$(hv stats --json)
python3 - "$stats" <<'PY' || fail "stats: $stats"
import json, sys
s = {x["name"]: x for x in json.loads(sys.argv[1])["services"]}
assert s["echo"]["accepted"] == 1, s["echo"]
assert s["idle"]["refused"]["no_listener"] == 1, s["idle"]
assert s["off"]["refused"]["disabled"] == 1, s["off"]
assert json.loads(sys.argv[1])["unregistered_refused"] == 1
PY
echo "ok: hvsock stats counted the guest's connections and refusals by ElementName"
attached=$(hv vm list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["name"]=="web"][0]["guest_attached"])')
[[ "$attached" == False ]] || fail "guest_attached should be false after QEMU exited"
echo "qemu guest test passed"
