#!/usr/bin/env bash
# A real QEMU guest on hvsockd (`hvsock vm create web --qemu`, QEMU's
# vhost-user-vsock-pci device on the partition's socket), with data both
# ways through the switch. MODE picks the guest program:
#   raw       raw_vsock_peer: raw AF_VSOCK calls, as an unmodified program;
#   libhvsock echo_peer: libhvsock, which picks its kernel transport in the
#             guest by itself (no HVSOCK_TRANSPORT there); the guest also
#             runs the hvsock CLI (hvsock-static) to reach the host.
# Checked, in one boot:
#   guest -> host: a 64 MiB echo with checksums and half-close, then 32
#     concurrent echo connections, to echo_peer on the host;
#   refusals seen from the guest: unregistered, no listener, disabled for
#     the VM, disabled globally (the kernel reports ECONNRESET);
#   host -> guest: refusals with clear errors (unregistered, no listener in
#     the guest, disabled for the VM, disabled globally), a 64 MiB echo (raw
#     mode: through `hvsock connect`, compared with cmp; libhvsock mode:
#     echo_peer), then 32 concurrent echo connections;
#   the listeners see each other's addresses; `hvsock stats` counts it all.
# Usage: qemu_echo_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER STATIC_CLI MODE
set -euo pipefail
(($# == 7)) || {
  echo "usage: qemu_echo_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER STATIC_CLI" \
    "raw|libhvsock" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 echo_peer=$4 raw_peer=$5 static_cli=$6 mode=$7
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

big=67108864 each=2097152 many=32
guest_files=()
cli_case=""
case $mode in
  raw) guest_program=$raw_peer guest_connect="raw_vsock_peer connect 2" ;;
  libhvsock)
    guest_program=$echo_peer guest_connect="echo_peer connect parent"
    guest_files=("$static_cli:/opt/hvsock/hvsock")
    cli_case='echo "hello from the guest CLI" | hvsock connect parent 5000 >/tmp/cli.out
echo "case cli: $?"; sed "s/^/cli echo: /" /tmp/cli.out'
    ;;
  *) fail "unknown mode $mode" ;;
esac
host_connections=$((1 + many + (${#guest_files[@]} > 0 ? 1 : 0)))
port_guid() { printf '%08x-facb-11e6-bd58-64006a7986d3' "$1"; }

start_daemon
create_qemu_vm web 7
ok "vm create --qemu printed the VmId and the socket $socket_web"
for entry in echo:5000 idle:5001 off-for-web:5002 off:5003 \
  to-guest:7000 nobody-in-guest:7001 guest-off-for-web:7002 guest-off:7003; do
  hv service register --name "${entry%%:*}" --port "${entry##*:}" >/dev/null
done
hv service disable off-for-web --vm web
hv service disable guest-off-for-web --vm web
hv service disable off
hv service disable guest-off

"$echo_peer" serve 5000 $host_connections >"$work/host-serve.log" 2>&1 &
host_serve_pid=$!
background_pids+=("$host_serve_pid")
wait_for_line "$work/host-serve.log" '^listening' 10

script=$(guest_script cases <<EOF
$guest_connect 5000 1 $big; echo "case echo-64MiB: \$?"
$guest_connect 5000 $many $each; echo "case echo-$many: \$?"
$guest_connect 6000 1 1; echo "case unregistered: \$?"
$guest_connect 5001 1 1; echo "case no-listener: \$?"
$guest_connect 5002 1 1; echo "case disabled-for-vm: \$?"
$guest_connect 5003 1 1; echo "case disabled: \$?"
$cli_case
$(basename "$guest_program") serve 7000 $((1 + many)); echo "case serve: \$?"
EOF
)
boot_guest web "$socket_web" "$script" "$guest_program" "${guest_files[@]}"
log=$work/guest-web.log

# The guest's connects come first; its listener follows.
wait_for_line "$log" '^listening on.*(port 7000|00001b58-)' 300
expect_case "$log" echo-64MiB 0
grep -q '^checksum [0-9a-f]* both ways' "$log" || fail "no checksum line from the guest"
ok "guest -> host: 64 MiB echoed with half-close, checksums equal ($(grep -m1 '^checksum' "$log"))"
expect_case "$log" "echo-$many" 0
ok "guest -> host: $many concurrent connections, $each bytes each way each"
for c in unregistered no-listener disabled-for-vm disabled; do expect_case "$log" "$c" 3; done
if [[ $mode == raw ]]; then
  (($(grep -c '^connect: errno 104$' "$log") == 4)) ||
    fail "refused connects should fail with ECONNRESET (104): $(grep '^connect:' "$log")"
fi
ok "guest -> host refusals fail in the guest: unregistered, no listener, disabled for the VM, disabled"
if [[ -n $cli_case ]]; then
  expect_case "$log" cli 0
  grep -qx 'cli echo: hello from the guest CLI' "$log" || fail "the guest CLI got no echo"
  ok "the hvsock CLI in the guest reached the host by port number and got its echo"
fi

# Host -> guest refusals: one clear line each, nothing hangs.
refusal() {
  local what=$1 service=$2 expected=$3 status=0
  hv connect web "$service" </dev/null >/dev/null 2>"$work/refusal.err" || status=$?
  ((status == 1)) || fail "host -> guest $what: exit $status, expected 1"
  grep -q "$expected" "$work/refusal.err" ||
    fail "host -> guest $what: '$(cat "$work/refusal.err")' does not say '$expected'"
  ok "host -> guest $what: $(cat "$work/refusal.err")"
}
refusal unregistered "$(port_guid 7010)" "not registered"
refusal "no listener in the guest" nobody-in-guest "refused by the guest"
refusal "disabled for the VM" guest-off-for-web "disabled for VM \"web\""
refusal disabled guest-off "is disabled"

if [[ $mode == raw ]]; then
  head -c $big /dev/urandom >"$work/big.in"
  hv connect web to-guest <"$work/big.in" >"$work/big.out" 2>"$work/connect.err" ||
    fail "hvsock connect web to-guest: $(cat "$work/connect.err")"
  cmp "$work/big.in" "$work/big.out" || fail "the guest echoed different bytes"
  ok "host -> guest: hvsock connect sent 64 MiB and got the same 64 MiB back"
else
  "$echo_peer" connect "$vmid_web" 7000 1 $big >"$work/host-connect.log" 2>&1 ||
    fail "host -> guest 64 MiB echo: $(cat "$work/host-connect.log")"
  ok "host -> guest: 64 MiB echoed, $(grep '^checksum' "$work/host-connect.log")"
fi
"$echo_peer" connect "$vmid_web" 7000 $many $each >"$work/host-connect.log" 2>&1 ||
  fail "host -> guest $many connections: $(cat "$work/host-connect.log")"
ok "host -> guest: $many concurrent connections, $each bytes each way each"

status=0
wait "$guest_pid_web" || status=$?
((status == 0)) || fail "the guest run failed (status $status)"
expect_case "$log" serve 0
wait "$host_serve_pid" || fail "the host echo server failed: $(cat "$work/host-serve.log")"
grep -q "^connection 0 from $vmid_web:" "$work/host-serve.log" ||
  fail "the host listener should see the guest's VmId: $(head -3 "$work/host-serve.log")"
grep -qE '^connection 0 from (parent|2):' "$log" ||
  fail "the guest listener should see the host as its parent (CID 2): $(grep -m1 '^connection 0' "$log")"
ok "each listener saw the other side's address (the guest's VmId; the host as the parent)"

stats=$(hv stats --json)
python3 - "$stats" "$many" "$host_connections" <<'PY' || fail "stats: $stats"
import json, sys
stats, many, to_host = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = {x["name"]: x for x in stats["services"]}
assert s["echo"]["accepted"] == to_host, s["echo"]
assert s["to-guest"]["accepted"] == 1 + many, s["to-guest"]
assert s["idle"]["refused"]["no_listener"] == 1, s["idle"]
assert s["nobody-in-guest"]["refused"]["no_listener"] == 1, s["nobody-in-guest"]
for name in ("off-for-web", "off", "guest-off-for-web", "guest-off"):
    assert s[name]["refused"]["disabled"] == 1, s[name]
assert stats["unregistered_refused"] == 2, stats
PY
ok "hvsock stats counted both directions' connections and refusals by ElementName"
attached=$(hv vm list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["name"]=="web"][0]["guest_attached"])')
[[ "$attached" == False ]] || fail "guest_attached should be false after QEMU exited"
echo "qemu echo test ($mode) passed"
