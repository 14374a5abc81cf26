#!/usr/bin/env bash
# Debian's socat and ncat, unmodified, under `hvsock run` (the preload shim):
#   - guest -> host: socat in VM web sends 8 MiB to a socat listener on the
#     host (VSOCK-CONNECT:2:P), checksums equal;
#   - host -> guest: ncat on the host sends 8 MiB to an ncat listener in
#     web (--vsock CID), checksums equal;
#   - an echo through socat with half-close: the client's EOF shuts down its
#     write side only, and the whole echo still comes back;
#   - refused connections (unregistered, no listener) fail with "Connection
#     reset by peer", as over the kernel's virtio transport;
#   - getsockname as socat reports it (the kernel's CID and port rules).
# Usage: unmodified_tools_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: unmodified_tools_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
for tool in socat ncat sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-deps.sh installs it)"
done

checksum() { sha256sum <"$1" | cut -d' ' -f1; }
size=8388608

start_daemon
hv vm create web >/dev/null
web_cid=$(hv vm list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["name"]=="web"][0]["cid"])')
for entry in up:5000 echo:5001 down:6000 idle:6001; do
  hv service register --name "${entry%%:*}" --port "${entry##*:}" >/dev/null
done
head -c $size /dev/urandom >"$work/data"
want=$(checksum "$work/data")

# guest -> host with socat on both ends.
hv run -- socat -d -d -u VSOCK-LISTEN:5000 "CREATE:$work/up.out" 2>"$work/socat-listen.log" &
listener=$!
background_pids+=("$listener")
wait_for_line "$work/socat-listen.log" 'listening on' 10
hv run --vm web -- socat -d -d -u "FILE:$work/data" VSOCK-CONNECT:2:5000 2>"$work/socat-connect.log" ||
  fail "socat in web could not send: $(tail -3 "$work/socat-connect.log")"
wait "$listener" || fail "the host's socat listener failed: $(cat "$work/socat-listen.log")"
[[ "$(checksum "$work/up.out")" == "$want" ]] || fail "the host received different bytes"
ok "guest -> host: socat sent 8 MiB from VM web to the host, sha256 equal"
# socat logs getsockname's answer: as Linux reports an autobound connector,
# CID VMADDR_CID_ANY (4294967295) and an ephemeral port.
grep -q "successfully connected from local address AF=40 cid:4294967295 port:[0-9]" \
  "$work/socat-connect.log" ||
  fail "socat should report CID ANY and a port as its local address: $(cat "$work/socat-connect.log")"
ok "getsockname as socat reports it: $(grep -o "local address AF=40 cid:[0-9]* port:[0-9]*" "$work/socat-connect.log")"

# host -> guest with ncat on both ends.
hv run --vm web -- ncat -v --vsock -l 6000 >"$work/down.out" 2>"$work/ncat-listen.log" &
listener=$!
background_pids+=("$listener")
wait_for_line "$work/ncat-listen.log" 'Listening on' 10
hv run -- ncat --vsock --send-only "$web_cid" 6000 <"$work/data" 2>"$work/ncat-connect.log" ||
  fail "ncat on the host could not send: $(cat "$work/ncat-connect.log")"
wait "$listener" || fail "ncat in web failed: $(cat "$work/ncat-listen.log")"
[[ "$(checksum "$work/down.out")" == "$want" ]] || fail "VM web received different bytes"
ok "host -> guest: ncat sent 8 MiB from the host to VM web (CID $web_cid), sha256 equal"

# An echo with half-close: the client shuts down its write side at EOF (socat's
# default) and must still read everything back.
hv run -- socat -d -d VSOCK-LISTEN:5001 EXEC:cat 2>"$work/echo-server.log" &
listener=$!
background_pids+=("$listener")
wait_for_line "$work/echo-server.log" 'listening on' 10
hv run --vm web -- socat -t 30 - VSOCK-CONNECT:2:5001 <"$work/data" >"$work/echo.out" \
  2>"$work/echo-client.log" || fail "the echo client failed: $(cat "$work/echo-client.log")"
wait "$listener" || true
[[ "$(checksum "$work/echo.out")" == "$want" ]] ||
  fail "the echo came back different ($(stat -c %s "$work/echo.out") bytes)"
ok "half-close: socat's shutdown at EOF kept the return direction open; 8 MiB echoed intact"

# Refusals.
refused() {
  local what=$1 status=0
  shift
  "$@" </dev/null >/dev/null 2>"$work/refused.log" || status=$?
  ((status != 0)) || fail "$what: the connection should have been refused"
  grep -q "Connection reset by peer" "$work/refused.log" ||
    fail "$what: expected 'Connection reset by peer': $(cat "$work/refused.log")"
  ok "$what: $(grep -m1 'Connection reset by peer' "$work/refused.log")"
}
refused "socat to an unregistered port" hv run --vm web -- socat - VSOCK-CONNECT:2:7777
refused "socat to a port nobody listens on" hv run --vm web -- socat - VSOCK-CONNECT:2:6001
refused "ncat to a port nobody listens on" hv run -- ncat --vsock "$web_cid" 6001

# hvsockd unreachable: the shim fails loudly (one stderr line) with ENETDOWN.
preload=$(dirname "$cli")/libhvsock-preload.so
status=0
LD_PRELOAD=$preload HVSOCK_CONTROL_SOCKET=$work/no-such.sock \
  socat - VSOCK-CONNECT:2:5000 </dev/null >/dev/null 2>"$work/down.log" || status=$?
((status != 0)) && grep -q "hvsock-preload: .*no-such.sock" "$work/down.log" &&
  grep -q "Network is down" "$work/down.log" ||
  fail "with hvsockd unreachable: status $status: $(cat "$work/down.log")"
ok "hvsockd unreachable: $(grep -m1 'hvsock-preload' "$work/down.log"); socat: Network is down"

stats=$(hv stats --json)
python3 - "$stats" <<'PY' || fail "stats: $stats"
import json, sys
s = {x["name"]: x for x in json.loads(sys.argv[1])["services"]}
for name in ("up", "down", "echo"):
    assert s[name]["accepted"] == 1, s[name]
assert s["idle"]["refused"]["no_listener"] == 2, s["idle"]
PY
ok "hvsock stats counted the unmodified programs' connections like any other"
echo "unmodified tools test passed"
