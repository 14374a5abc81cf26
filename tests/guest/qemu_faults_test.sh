#!/usr/bin/env bash
# Two real QEMU guests on one hvsockd, then a QEMU killed and restarted:
#   - VMs a (CID 7) and b (CID 8) each reach the host; neither reaches the
#     other (a guest connect to the other's CID gets no answer: ETIMEDOUT),
#     and an emulated VM partition cannot reach a QEMU guest either;
#   - QEMU a is killed (SIGKILL) while the host streams into it: the host's
#     stream fails with a reset (ECONNRESET/EPIPE), not a clean EOF, while a
#     transfer with b, and an emulated partition's connection, go on;
#   - QEMU a started again on the same socket works both ways, with the same
#     hvsockd (never restarted).
# Usage: qemu_faults_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER
set -euo pipefail
(($# == 5)) || {
  echo "usage: qemu_faults_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 echo_peer=$4 raw_peer=$5
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

guest_attached() {
  hv vm list --json | python3 -c \
    'import json,sys; print([p for p in json.load(sys.stdin) if p["name"]==sys.argv[1]][0]["guest_attached"])' "$1"
}

start_daemon
create_qemu_vm a 7
create_qemu_vm b 8
hv vm create emu >/dev/null
hv service register --name echo --port 5000 >/dev/null
hv service register --name in-guest --port 7000 >/dev/null
# a, b, the emulated VM, then a again after its restart.
"$echo_peer" serve 5000 4 >"$work/host-serve.log" 2>&1 &
host_serve_pid=$!
background_pids+=("$host_serve_pid")
wait_for_line "$work/host-serve.log" '^listening' 10

# Each guest listens on port 7000, tries the other's CID on it, then the host.
for vm in a:8 b:7; do
  name=${vm%%:*} other=${vm##*:}
  script=$(guest_script "cases-$name" <<EOF
raw_vsock_peer serve 7000 1 &
serve=\$!
sleep 1
raw_vsock_peer connect $other 7000 1 1; echo "case reach-other: \$?"
raw_vsock_peer connect 2 5000 1 1048576; echo "case host: \$?"
wait \$serve; echo "case serve: \$?"
EOF
)
  socket_var=socket_$name
  boot_guest "$name" "${!socket_var}" "$script" "$raw_peer"
done
for name in a b; do wait_for_line "$work/guest-$name.log" '^case host:' 300; done
for name in a b; do
  log=$work/guest-$name.log
  expect_case "$log" host 0
  expect_case "$log" reach-other 3
  grep -qx 'connect: errno 110' "$log" ||
    fail "VM $name reaching the other VM: expected ETIMEDOUT (110): $(grep '^connect:' "$log")"
done
ok "VMs a and b each reach the host; neither reaches the other (connect times out, ETIMEDOUT)"
status=0
hv run --no-preload --vm emu -- "$echo_peer" connect "$vmid_a" 7000 1 1 >"$work/emu.log" 2>&1 || status=$?
((status == 3)) && grep -q "cannot reach" "$work/emu.log" ||
  fail "the emulated VM should not reach QEMU guest a (status $status): $(cat "$work/emu.log")"
ok "an emulated VM cannot reach a QEMU guest: $(grep 'connect failed' "$work/emu.log")"

# Kill QEMU a in the middle of a host -> a stream, with b and emu busy too.
"$echo_peer" flood "$vmid_a" 7000 >"$work/flood.log" 2>&1 &
flood_pid=$!
background_pids+=("$flood_pid")
wait_for_line "$work/flood.log" '^flooding' 30
"$echo_peer" connect "$vmid_b" 7000 1 16777216 >"$work/b-transfer.log" 2>&1 &
b_transfer_pid=$!
background_pids+=("$b_transfer_pid")
wait_for_line "$work/b-transfer.log" '^connected' 30 # b's transfer is under way
kill -KILL "$(cat "$work/qemu-a.pid")"
status=0
wait "$flood_pid" || status=$?
((status == 0)) || fail "the host stream into the killed guest should end with a reset (status $status): $(cat "$work/flood.log")"
ok "QEMU a killed mid-transfer: the host stream $(grep '^ended' "$work/flood.log")"
wait "$guest_pid_a" || true
hv run --no-preload --vm emu -- "$echo_peer" connect parent 5000 1 1048576 >"$work/emu.log" 2>&1 ||
  fail "the emulated VM's connection failed after QEMU a died: $(cat "$work/emu.log")"
wait "$b_transfer_pid" || fail "the transfer with VM b failed: $(cat "$work/b-transfer.log")"
ok "meanwhile VM b finished a 16 MiB echo and the emulated VM reached the host"
[[ "$(guest_attached a)" == False ]] || fail "a should show no guest attached"
status=0
wait "$guest_pid_b" || status=$?
((status == 0)) || fail "VM b's run failed (status $status)"
expect_case "$work/guest-b.log" serve 0

# The same partition, a new QEMU, the same hvsockd.
script=$(guest_script cases-a2 <<'EOF'
raw_vsock_peer connect 2 5000 1 1048576; echo "case host: $?"
raw_vsock_peer serve 7000 1; echo "case serve: $?"
EOF
)
boot_guest a2 "$socket_a" "$script" "$raw_peer"
wait_for_line "$work/guest-a2.log" '^listening on port 7000' 300
"$echo_peer" connect "$vmid_a" 7000 1 4194304 >"$work/a2.log" 2>&1 ||
  fail "host -> restarted a: $(cat "$work/a2.log")"
status=0
wait "$guest_pid_a2" || status=$?
((status == 0)) || fail "the restarted guest's run failed (status $status)"
expect_case "$work/guest-a2.log" host 0
expect_case "$work/guest-a2.log" serve 0
kill -0 "$daemon_pid" || fail "hvsockd is gone"
wait "$host_serve_pid" || fail "the host echo server failed: $(cat "$work/host-serve.log")"
ok "QEMU a restarted: the partition works both ways again, same hvsockd (pid $daemon_pid)"
grep -q 'a: QEMU detached' "$work/hvsockd.log" || fail "hvsockd should log a's detach"
echo "qemu faults test passed"
