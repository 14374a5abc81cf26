#!/usr/bin/env bash
# SOCK_SEQPACKET between a real QEMU guest and the host, through hvsockd's
# vhost-user-vsock device (VIRTIO_VSOCK_F_SEQPACKET): seqpacket_peer on
# libhvsock at both ends (message_socket; the guest's kernel AF_VSOCK
# SOCK_SEQPACKET inside, the emulated transport on the host). Checked, in
# one boot, both ways (the guest connecting to a host listener, then the
# host to a guest listener):
#   messages of 1, 4096, 65536, 65537, 300000 bytes and 1 MiB (larger than
#   any descriptor: the device fragments and gathers them, EOM on the last
#   fragment) each echoed whole: same length, same bytes;
#   host -> guest also an empty message, which the guest receives as one
#   (not as the end). Linux's vsock sends nothing for a zero-length send,
#   so a guest cannot send one (tests/preload/vsock_conformance.c checks
#   that in the guest kernel);
#   200 small messages queued back to back, each echoed whole, in order;
#   the end of the messages told apart from an empty message;
#   a message connect to a stream listener refused both ways;
#   `hvsock stats` counts the SEQPACKET connections.
# Usage: qemu_seqpacket_test.sh KIT_DIR HVSOCKD HVSOCK_CLI SEQPACKET_PEER ECHO_PEER
set -euo pipefail
(($# == 5)) || {
  echo "usage: qemu_seqpacket_test.sh KIT_DIR HVSOCKD HVSOCK_CLI SEQPACKET_PEER ECHO_PEER" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 peer=$4 echo_peer=$5
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

sizes=1,4096,65536,65537,300000,1048576

start_daemon
create_qemu_vm web 7
for entry in msgs:5100 bytes:5101 guest-msgs:7100 guest-bytes:7101; do
  hv service register --name "${entry%%:*}" --port "${entry##*:}" >/dev/null
done

"$peer" serve 5100 1 >"$work/host-serve.log" 2>&1 &
host_serve_pid=$!
background_pids+=("$host_serve_pid")
wait_for_line "$work/host-serve.log" '^listening' 10
# A stream listener for the guest's message connect to be refused by.
"$echo_peer" serve 5101 1 >"$work/host-stream.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/host-stream.log" '^listening' 10

script=$(guest_script cases <<EOF
seqpacket_peer connect parent 5100 $sizes; echo "case to-host: \$?"
seqpacket_peer connect parent 5101 0; echo "case to-host-stream-listener: \$?"
echo_peer serve 7101 1 &
seqpacket_peer serve 7100 1; echo "case serve: \$?"
wait
EOF
)
boot_guest web "$socket_web" "$script" "$peer" "$echo_peer"
log=$work/guest-web.log

wait_for_line "$log" '^listening on.*(port 7100|00001bbc-)' 300
expect_case "$log" to-host 0
for size in ${sizes//,/ }; do
  grep -qx "message of $size bytes: echoed whole" "$log" ||
    fail "guest -> host: no whole echo of $size bytes"
done
grep -qx '200 queued messages: echoed whole and in order' "$log" ||
  fail "guest -> host: queued messages"
ok "guest -> host: messages of $sizes bytes and 200 queued ones echoed whole, then the end"
expect_case "$log" to-host-stream-listener 3
ok "guest -> host: a message connect to a stream listener is refused"

# Host -> guest; the guest's stream listener refuses a message connect.
status=0
"$peer" connect "$vmid_web" 7101 0 >"$work/host-mismatch.log" 2>&1 || status=$?
((status == 3)) || fail "host -> guest stream listener: exit $status: $(cat "$work/host-mismatch.log")"
ok "host -> guest: a message connect to a stream listener is refused: $(cat "$work/host-mismatch.log")"
"$echo_peer" connect "$vmid_web" 7101 1 1000 >"$work/host-stream-connect.log" 2>&1 ||
  fail "host -> guest stream echo: $(cat "$work/host-stream-connect.log")"
"$peer" connect "$vmid_web" 7100 "0,$sizes" >"$work/host-connect.log" 2>&1 ||
  fail "host -> guest messages: $(cat "$work/host-connect.log")"
grep -qx 'message of 0 bytes: echoed whole' "$work/host-connect.log" ||
  fail "host -> guest: the empty message"
grep -qx '200 queued messages: echoed whole and in order' "$work/host-connect.log" ||
  fail "host -> guest: queued messages"
ok "host -> guest: an empty message, messages of $sizes bytes and 200 queued ones echoed whole, then the end"

status=0
wait "$guest_pid_web" || status=$?
((status == 0)) || fail "the guest run failed (status $status)"
expect_case "$log" serve 0
grep -qE '^connection 0 from (parent|2):.*echoed 207 messages' "$log" ||
  fail "the guest listener: $(grep -m1 '^connection 0' "$log" || echo nothing)"
wait "$host_serve_pid" || fail "the host listener failed: $(cat "$work/host-serve.log")"
grep -qE "^connection 0 from $vmid_web:.*echoed 206 messages" "$work/host-serve.log" ||
  fail "the host listener: $(cat "$work/host-serve.log")"
ok "each listener echoed every message (206 on the host, 207 in the guest) and saw the other side's address"

stats=$(hv stats --json)
python3 - "$stats" <<'PY' || fail "stats: $stats"
import json, sys
s = {x["name"]: x for x in json.loads(sys.argv[1])["services"]}
assert s["msgs"]["accepted_seqpacket"] == 1, s["msgs"]
assert s["guest-msgs"]["accepted_seqpacket"] == 1, s["guest-msgs"]
PY
ok "hvsock stats counted the SEQPACKET connections both ways"
echo "qemu seqpacket test passed"
