#!/usr/bin/env bash
# Hybrid vsock for real (issue 12, docs/hybrid-vsock.md): switch B serves a
# guest-kit QEMU guest and exposes its hybrid socket; switch A makes that
# socket a Firecracker-style partition (`vm create --hybrid-vsock`). With
# the guest's raw_vsock_peer echoing on port 7000:
#   - socat typing "CONNECT 7000" into B's hybrid socket gets "OK <port>"
#     and its bytes echoed; an unregistered port and garbage get nothing;
#   - A's `hvsock connect fcvm 7000` and an unmodified socat under A's
#     preload shim (VSOCK-CONNECT:<the VM's CID>:7000) get 1 MiB echoed,
#     compared with cmp;
#   - the guest's connect to CID 2 port 5400 (no listener on B) reaches
#     B's <hybrid socket>_5400, where A listens for fcvm, and A's host
#     echo_peer: 1 MiB of the pattern echoed and checked in the guest;
#   - A refuses a port it has not registered, and says so.
# Usage: hybrid_vsock_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER
set -euo pipefail
(($# == 5)) || {
  echo "usage: hybrid_vsock_test.sh KIT_DIR HVSOCKD HVSOCK_CLI ECHO_PEER RAW_PEER" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 echo_peer=$4 raw_peer=$5
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

# Switch B: the QEMU guest and its hybrid socket.
start_daemon
create_qemu_vm inner 7
hybrid=$(sed -n 's/^hybrid vsock socket: //p' "$work/create-inner.err")
[[ -S "$hybrid" ]] || fail "no hybrid vsock socket printed or made: '$hybrid'"
ok "vm create --qemu printed the hybrid vsock socket $hybrid"
hv service register --name "guest echo" --port 7000 >/dev/null
hv service register --name "host echo" --port 5400 >/dev/null

script=$(guest_script cases <<GUEST
raw_vsock_peer serve 7000 3; echo "case serve: \$?"
raw_vsock_peer connect 2 5400 1 1048576; echo "case to-a: \$?"
GUEST
)
boot_guest inner "$socket_inner" "$script" "$raw_peer"
log=$work/guest-inner.log

# Switch A: the same guest as a hybrid vsock VM.
a() { "$cli" --runtime-dir "$work/a-run" "$@"; }
"$hvsockd" --state-dir "$work/a-state" --runtime-dir "$work/a-run" 2>"$work/a.log" &
background_pids+=($!)
a status --wait 10 >/dev/null || fail "switch A did not start: $(cat "$work/a.log")"
a service register --name "guest echo" --port 7000 >/dev/null
a service register --name "host echo" --port 5400 >/dev/null
a vm create fcvm --hybrid-vsock "$hybrid" --cid 40 >/dev/null
fcvm_id=$(a vm list --json | python3 -c \
  'import json, sys; print(next(p["id"] for p in json.load(sys.stdin) if p["name"] == "fcvm"))')
[[ -S "${hybrid}_5400" ]] || fail "switch A does not listen at ${hybrid}_5400"
ok "switch A: fcvm ($fcvm_id) behind $hybrid; listening at ${hybrid}_5400 for its guest"
HVSOCK_RUNTIME_DIR=$work/a-run "$echo_peer" serve 5400 1 >"$work/a-serve.log" 2>&1 &
a_serve_pid=$!
background_pids+=("$a_serve_pid")
wait_for_line "$work/a-serve.log" '^listening' 10

wait_for_line "$log" '^listening' 300

# 1. socat, typing the CONNECT line into B's hybrid socket.
{
  printf 'CONNECT 7000\n'
  echo "typed through the hybrid socket"
} | timeout 60 socat -t 30 - "UNIX-CONNECT:$hybrid" >"$work/typed.out" 2>"$work/typed.err" ||
  fail "socat on the hybrid socket: $(cat "$work/typed.err")"
head -n1 "$work/typed.out" | grep -qE '^OK [0-9]+$' ||
  fail "no OK line first: $(head -c 200 "$work/typed.out" | od -c | head -3)"
[[ "$(sed -n 2p "$work/typed.out")" == "typed through the hybrid socket" ]] ||
  fail "the guest's echo did not come back: $(cat "$work/typed.out")"
ok "socat typed CONNECT 7000: '$(head -n1 "$work/typed.out")', then the echo"
# A port B has not registered, and garbage: closed without a byte.
for line in 'CONNECT 7999' 'HELLO'; do
  printf '%s\n' "$line" | timeout 60 socat -t 10 - "UNIX-CONNECT:$hybrid" >"$work/refused.out" \
    2>/dev/null || true
  [[ ! -s "$work/refused.out" ]] || fail "'$line' got an answer: $(cat "$work/refused.out")"
done
grep -q 'closed a connection: expected "CONNECT <port>", got "HELLO"' "$work/hvsockd.log" ||
  fail "switch B did not log the garbage line: $(tail -3 "$work/hvsockd.log")"
ok "socat typing CONNECT 7999 (not registered) and HELLO: closed without an answer"

# 2. and 3. Switch A's host, by name and under the shim by CID.
head -c 1048576 /dev/urandom >"$work/mib.in"
a connect fcvm 7000 <"$work/mib.in" >"$work/a-connect.out" 2>"$work/a-connect.err" ||
  fail "hvsock connect fcvm 7000 on switch A: $(cat "$work/a-connect.err")"
cmp -s "$work/mib.in" "$work/a-connect.out" || fail "switch A's connect got different bytes back"
ok "switch A's hvsock connect fcvm 7000: 1 MiB echoed by the guest behind B"
a run -- timeout 60 socat -t 30 - VSOCK-CONNECT:40:7000 <"$work/mib.in" \
  >"$work/shim.out" 2>"$work/shim.err" || fail "socat under A's shim: $(cat "$work/shim.err")"
cmp -s "$work/mib.in" "$work/shim.out" || fail "socat under A's shim got different bytes back"
ok "socat VSOCK-CONNECT:40:7000 under switch A's shim: 1 MiB echoed"

# 4. The guest to A's host listener.
status=0
wait "$guest_pid_inner" || status=$?
((status == 0)) || fail "the guest run failed (status $status): $(tail -5 "$log")"
expect_case "$log" serve 0
expect_case "$log" to-a 0
wait "$a_serve_pid" || fail "A's echo_peer failed: $(cat "$work/a-serve.log")"
grep -q "^connection 0 from $fcvm_id:" "$work/a-serve.log" ||
  fail "A's listener should see fcvm's VmId: $(cat "$work/a-serve.log")"
ok "guest -> CID 2 port 5400 -> ${hybrid}_5400 -> switch A's listener: 1 MiB echoed, from fcvm"

# 5. A refuses what it has not registered, and says why.
status=0
a connect fcvm 7001 </dev/null >/dev/null 2>"$work/refused.err" || status=$?
((status == 1)) && grep -q "not registered" "$work/refused.err" ||
  fail "an unregistered port on A: exit $status, $(cat "$work/refused.err")"
ok "switch A refuses port 7001: $(cat "$work/refused.err")"
echo "hybrid_vsock test passed"
