#!/usr/bin/env bash
# shellcheck disable=SC2154 # socket_NAME, guest_pid_NAME: set by test_lib.sh (printf -v)
# QEMU guests across a restart of hvsockd (kill -9), with QEMU left running:
#   - VM web, created with --qmp (its QEMU serves QMP there): hvsockd re-plugs
#     its vsock device at start-up; within 10 s of the restart the guest,
#     which retries its connect in a loop, reaches a host listener again, and
#     `hvsock connect web in-guest` reaches a guest program listening on
#     vsock port 7000 (both times measured and printed);
#   - web removed and created again with the same VmId and --qmp (how a
#     VM gets a QMP socket) is reattached at once, the same way;
#   - VM plain, created without --qmp: hvsockd says in its log that it cannot
#     reattach it, the guest stays detached, and a restarted QEMU attaches.
# MACHINE: pc (QEMU's default; the device on the root bus, ACPI hotplug) or
# q35 (the device on a PCIe root port: run-guest.sh --machine q35).
# Usage: qemu_reattach_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER MACHINE
set -euo pipefail
(($# == 6)) || {
  echo "usage: qemu_reattach_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER pc|q35" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 echo_peer=$4 raw_peer=$5 machine=$6
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

readonly budget_s=10 # from the restart to working connections, both ways

guest_attached() {
  hv vm list --json | python3 -c \
    'import json,sys; print([p for p in json.load(sys.stdin) if p["name"]==sys.argv[1]][0]["guest_attached"])' "$1"
}
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# Starts hvsockd again on the same directories, appending to its log.
restart_daemon() {
  "$hvsockd" --state-dir "$work/state" --runtime-dir "$work/run" 2>>"$work/hvsockd.log" &
  daemon_pid=$!
  local _
  for _ in $(seq 100); do hv status >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "hvsockd did not start again"
}

start_daemon
qmp=$work/qmp-web.sock
create_qemu_vm web 7 --qmp "$qmp"
create_qemu_vm plain 8
hv service register --name before --port 5001 >/dev/null
hv service register --name after --port 5002 >/dev/null
hv service register --name plain-after --port 5003 >/dev/null
hv service register --name in-guest --port 7000 >/dev/null
qmp_sockets=$(hv vm list --json | python3 -c \
  'import json,sys; d={p["name"]: p.get("qmp_socket") for p in json.load(sys.stdin)}; print(d["web"], d["plain"])')
[[ "$qmp_sockets" == "$qmp None" ]] || fail "vm list --json should show web's QMP socket only: $qmp_sockets"
hv vm list | grep -q "^web .* qemu  *$qmp\$" || fail "vm list's table should show web's QMP socket: $(hv vm list)"
grep -q "\"qmp_socket\": \"$qmp\"" "$work/state/state.json" || fail "state.json lacks web's qmp_socket"

"$echo_peer" serve 5001 1 >"$work/serve-before.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/serve-before.log" '^listening' 10

# web: echoes whatever connects to port 7000, reaches the host once, then
# (after the restart) retries port 5002 until it works, for at most 120 s.
script=$(guest_script cases-web <<'EOF'
(while :; do raw_vsock_peer serve 7000 64; done) &
raw_vsock_peer connect 2 5001 1 65536; echo "case before: $?"
i=0
while [ $i -lt 600 ]; do
  if raw_vsock_peer connect 2 5002 1 65536 >/tmp/after.log 2>&1; then
    echo "case after: 0 (attempt $i)"
    break
  fi
  i=$((i + 1))
  sleep 0.2
done
[ $i -lt 600 ] || { echo "case after: gave up: $(cat /tmp/after.log)"; exit 1; }
sleep 600
EOF
)
plain_script=$(guest_script idle-plain <<'EOF'
echo "plain is up"
sleep 600
EOF
)
boot_guest_options=(--qmp "$qmp")
[[ "$machine" == pc ]] || boot_guest_options+=(--machine "$machine")
boot_guest web "$socket_web" "$script" "$raw_peer"
boot_guest_options=()
boot_guest plain "$socket_plain" "$plain_script"
wait_for_line "$work/guest-web.log" '^case before:' 300
expect_case "$work/guest-web.log" before 0
wait_for_line "$work/guest-plain.log" '^plain is up' 300
[[ "$(guest_attached web)/$(guest_attached plain)" == True/True ]] || fail "both guests should be attached"
reply=$(echo ping | hv connect web in-guest) || fail "host -> web before the restart failed"
[[ "$reply" == ping ]] || fail "host -> web before the restart: got '$reply'"
ok "before the restart ($machine machine): web reaches the host and the host reaches web; plain is attached"

kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
restarted=$(now)
restart_daemon
"$echo_peer" serve 5002 1 >"$work/serve-after.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/serve-after.log" '^listening' 10

# Host -> guest: connect until the guest's program answers, within the budget.
# Guest -> host first: once it worked, the guest's driver has probed the new
# device. (On q35, host connects made within about 0.1 s of the re-plug,
# while the guest was still probing it, were refused and then answered
# without their data ever arriving; see docs/qemu.md.) Each host attempt is
# bounded all the same.
wait_for_line "$work/guest-web.log" '^case after: 0' "$budget_s"
guest_to_host=$(since "$restarted")
host_to_guest=""
while [[ -z "$host_to_guest" ]]; do
  status=0
  reply=$(echo ping | timeout 2 "$cli" --runtime-dir "$work/run" connect --timeout 1500 web in-guest \
    2>"$work/connect.err") || status=$?
  echo "$(since "$restarted") s: status $status, reply '$reply', $(cat "$work/connect.err")" >>"$work/host-connects.log"
  if [[ "$reply" == ping ]]; then
    host_to_guest=$(since "$restarted")
  elif awk -v t="$(since "$restarted")" -v b="$budget_s" 'BEGIN { exit !(t > b) }'; then
    fail "host -> web: no answer within ${budget_s} s of the restart"
  else
    sleep 0.1
  fi
done
grep -q 'web: QEMU reattached through QMP' "$work/hvsockd.log" || fail "hvsockd should log web's reattach"
attempts=$(wc -l <"$work/host-connects.log")
ok "web reattached through QMP: host -> guest after ${host_to_guest} s (attempt $attempts), guest -> host after at most ${guest_to_host} s (from the restart; budget ${budget_s} s)"
echo "hvsockd: $(grep -o 'web: QEMU reattached through QMP.*' "$work/hvsockd.log")"
echo "guest: $(grep '^case after:' "$work/guest-web.log")"

# A partition created again for a running QEMU (to add --qmp, say) gets it
# back the same way, at once.
hv vm remove web
hv vm create web --qemu --cid 7 --id "$vmid_web" --qmp "$qmp" >/dev/null 2>&1 || fail "vm create web again"
recreated=$(now)
reply=""
until [[ "$reply" == ping ]]; do
  awk -v t="$(since "$recreated")" -v b="$budget_s" 'BEGIN { exit !(t > b) }' &&
    fail "host -> web: no answer within ${budget_s} s of creating web again"
  reply=$(echo ping | timeout 2 "$cli" --runtime-dir "$work/run" connect --timeout 1500 web in-guest \
    2>/dev/null) || sleep 0.1
done
[[ $(grep -c 'web: QEMU reattached through QMP' "$work/hvsockd.log") == 2 ]] ||
  fail "hvsockd should log a second reattach of web"
ok "web removed and created again: its running QEMU is reattached (host -> guest after $(since "$recreated") s)"

# plain: hvsockd says it cannot reattach it; it stays detached until its
# QEMU restarts.
grep -q 'plain: no QMP socket recorded for this QEMU guest' "$work/hvsockd.log" ||
  fail "hvsockd should say it cannot reattach plain"
[[ "$(guest_attached plain)" == False ]] || fail "plain should stay detached (no QMP socket)"
ok "plain (no --qmp) stays detached; hvsockd says: $(grep -o 'plain: no QMP socket.*' "$work/hvsockd.log" | head -1)"
kill "$(cat "$work/qemu-plain.pid")"
wait "$guest_pid_plain" 2>/dev/null || true
"$echo_peer" serve 5003 1 >"$work/serve-plain.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/serve-plain.log" '^listening' 10
script=$(guest_script cases-plain2 <<'EOF'
raw_vsock_peer connect 2 5003 1 65536; echo "case host: $?"
EOF
)
boot_guest plain2 "$socket_plain" "$script" "$raw_peer"
status=0
wait "$guest_pid_plain2" || status=$?
((status == 0)) || fail "plain's new QEMU: the guest's run failed (status $status)"
expect_case "$work/guest-plain2.log" host 0
ok "plain's QEMU restarted: the guest reaches the host again"

kill -0 "$daemon_pid" || fail "hvsockd is gone"
if grep -E 'reattaching through QMP' "$work/hvsockd.log"; then
  echo "note: the lines above are failed re-plug steps that were retried"
fi
echo "qemu reattach test passed ($machine)"
