#!/usr/bin/env bash
# Isolated partitions (hvsock run --vm): every way out that we know of, tried
# as root from inside the partition, must be refused (escape_attempts.py),
# and the three transcripts of issue 9 now fail cleanly: a VM editing the
# host's registry, a VM listening as the host, management from inside.
# Also: the partition sees its own hostname and processes only, --no-network
# leaves only loopback, exit status and signals pass through, nested runs
# are refused, and --no-isolate warns.
# Usage: escape_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: escape_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Each command inside a partition runs under this limit: none may hang.
in_web() { timeout 60 "$cli" --runtime-dir "$work/run" run --vm web -- "$@"; }

[[ $(id -u) == 0 ]] || {
  echo "SKIP: the escape attempts are made as root"
  exit 0
}
start_daemon
hv vm create web >/dev/null
hv vm create db >/dev/null
hv vm create vm9 --qemu --cid 9 2>/dev/null >/dev/null
hv service register --name echo --port 5000 >/dev/null

# 1. The attempts, from a working directory inside the runtime dir and with a
# directory fd on it inherited from outside, and a host procfs mounted
# elsewhere.
mkdir -p "$work/hostproc"
mount -t proc proc "$work/hostproc"
umount_hostproc() { umount -l "$work/hostproc" 2>/dev/null || true; }
trap 'umount_hostproc; test_lib_cleanup' EXIT
# hvsockd opens its socket brokers (a stream one and a seqpacket one) at the
# first connect that brings its own socket, as the preload shim's do: one of
# each from the host, by hand on the control protocol (no AF_VSOCK socket),
# to vm9's port 5000 (the broker connects the socket before the refusal: no
# QEMU is attached).
for kind in stream seqpacket; do
  python3 - "$work/run/partitions/host/control.sock" "$kind" <<'PY' ||
import socket, struct, sys, uuid
control, kind = sys.argv[1:3]
own = socket.socket(socket.AF_UNIX,
                    socket.SOCK_SEQPACKET if kind == "seqpacket" else socket.SOCK_STREAM)
service = uuid.UUID("00001388-facb-11e6-bd58-64006a7986d3").bytes_le  # port 5000
# connect_socket_request (src/protocol/control_wire.hpp): magic "HVSK",
# version 2, type 6; target (vm unused, service); target_cid 9; local_port;
# flags target_by_cid; socket type (0 stream, 1 seqpacket).
request = struct.pack("=IHH16s16sIIII", 0x4B535648, 2, 6, bytes(16), service, 9, 0, 1,
                      1 if kind == "seqpacket" else 0)
c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
c.connect(control)
c.settimeout(10)
c.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", own.fileno()))])
c.recv(4096)  # the reply (a refusal): hvsockd has handled the request
PY
    fail "no answer to a $kind connect_socket_request"
done
# The QEMU partition's sockets and the socket brokers are there to be tried:
# a refusal means the sandbox hid them, not that they never existed.
for sock in "$work/run/vhost-user/vm9.sock" "$work/run/hybrid/vm9.sock" "$work/run/broker.sock" \
  "$work/run/broker-seqpacket.sock"; do
  [[ -S $sock ]] || fail "$sock does not exist on the host"
done
(
  cd "$work/run"
  exec 7<"$work/run"
  EXTRA_PROC="$work/hostproc" in_web python3 "$here/escape_attempts.py" \
    "$work/run" "$work/state" web "$daemon_pid" db vm9
) >"$work/attempts.out" 2>&1 || {
  cat "$work/attempts.out"
  fail "an escape attempt got through (or could not be made)"
}
cat "$work/attempts.out"
refused=$(grep -c '^refused: ' "$work/attempts.out")
((refused >= 25)) || fail "only $refused attempts were made"
ok "$refused escape attempts refused"

# 2. Issue 9's transcripts. A VM cannot edit the host's registry...
if in_web "$cli" service disable echo 2>"$work/disable.err"; then
  fail "service disable from inside web succeeded"
fi
grep -q 'the management socket is not reachable from partition "web"' "$work/disable.err" ||
  fail "unclear refusal: $(cat "$work/disable.err")"
hv service list --json | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin) if x["name"] == "echo"][0]
sys.exit(0 if s["enabled"] else 1)' || fail "the registry changed"
ok "service disable from a VM: refused, registry unchanged"
for cmd in "vm create evil" "vm list" "stats" "service register --name evil --port 6000" "status"; do
  # shellcheck disable=SC2086
  if in_web "$cli" $cmd >/dev/null 2>"$work/mgmt.err"; then fail "'$cmd' worked inside web"; fi
  grep -q 'not reachable from partition "web"' "$work/mgmt.err" ||
    fail "'$cmd': unclear refusal: $(cat "$work/mgmt.err")"
done
hv vm list --json | grep -q evil && fail "a partition was created from inside web"
ok "management from inside a partition: refused with one clear line each"

# ...nor listen as the host, whatever its environment says.
if HVSOCK_CONTROL_SOCKET="$work/run/partitions/host/control.sock" in_web \
  env HVSOCK_CONTROL_SOCKET="$work/run/partitions/host/control.sock" "$cli" listen echo \
  </dev/null >/dev/null 2>"$work/listen.err"; then
  fail "web listened as the host"
fi
grep -q 'only its own control socket' "$work/listen.err" ||
  fail "unclear refusal: $(cat "$work/listen.err")"
# The host's address is still free: the host can bind it.
"$cli" --runtime-dir "$work/run" listen echo </dev/null >"$work/host-listen.out" \
  2>"$work/host-listen.log" &
host_listener=$!
background_pids+=("$host_listener")
wait_for_line "$work/host-listen.log" '^listening on' 10 || fail "the host could not listen on echo"
echo "from web" | in_web "$cli" connect parent echo || fail "web could not reach the host's listener"
wait "$host_listener" || true
grep -qx 'from web' "$work/host-listen.out" || fail "the host's listener got nothing"
ok "listen as the host from web: refused; the host's own listener serves web"

# 3. What the partition sees of itself.
[[ $(in_web hostname) == web ]] || fail "hostname inside web is not web"
pids=$(in_web sh -c 'ls /proc | grep -c "^[0-9]"')
((pids <= 4)) || fail "$pids processes visible inside web"
ifaces=$(timeout 60 "$cli" --runtime-dir "$work/run" run --vm web --no-network -- \
  sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "')
[[ "$ifaces" == lo ]] || fail "--no-network left interfaces: $ifaces"
python3 -m http.server --bind 127.0.0.1 0 >"$work/http.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/http.log" 'Serving HTTP' 10 || fail "the host web server did not start"
port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.log" | head -1)
if timeout 60 "$cli" --runtime-dir "$work/run" run --vm web --no-network -- \
  curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
  fail "--no-network reached the host's loopback"
fi
in_web curl -s -o /dev/null "http://127.0.0.1:$port/" || fail "the default network is not the host's"
ok "hostname web, only the partition's processes, --no-network has only lo"

# 4. Exit status and signals pass through; background children end with it.
set +e
in_web sh -c 'exit 7'
[[ $? == 7 ]] || fail "exit status not passed through"
in_web sh -c 'kill -TERM $$'
[[ $? == 143 ]] || fail "a signal death not passed through"
set -e
"$cli" --runtime-dir "$work/run" run --vm web -- sh -c 'echo $$ >/dev/null; trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done' \
  >"$work/trap.out" 2>&1 &
runner=$!
wait_for_line "$work/trap.out" '^ready' 10 || fail "the trapping command did not start"
kill -TERM "$runner"
set +e
wait "$runner"
status=$?
set -e
[[ $status == 3 ]] || fail "SIGTERM to hvsock run did not reach the command (status $status)"
grep -q 'got TERM' "$work/trap.out" || fail "the command did not see SIGTERM"
ok "exit status, signal deaths and SIGTERM pass through"

# 4b. hvsockd restarts (kill -9) under a running isolated partition: the
# partition's directory is bind-mounted, so the new daemon's socket shows and
# the partition's next connect works.
"$cli" --runtime-dir "$work/run" run --vm web -- sh -c \
  'echo waiting; while [ ! -e "$0/go" ]; do sleep 0.05; done; echo "after restart" | "$1" connect parent echo' \
  "$work" "$cli" >"$work/restart.out" 2>&1 &
survivor=$!
background_pids+=("$survivor")
wait_for_line "$work/restart.out" '^waiting' 10 || fail "the partition's command did not start"
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
start_daemon
"$cli" --runtime-dir "$work/run" listen echo </dev/null >"$work/restart-listen.out" \
  2>"$work/restart-listen.log" &
background_pids+=("$!")
wait_for_line "$work/restart-listen.log" '^listening on' 10 || fail "no listener after the restart"
touch "$work/go"
wait "$survivor" || fail "web could not connect after hvsockd restarted: $(cat "$work/restart.out")"
wait_for_line "$work/restart-listen.out" '^after restart$' 10 || fail "nothing arrived after the restart"
ok "hvsockd killed and restarted under a running isolated partition: its next connect works"

# 5. hvsock run from inside is refused; --no-isolate warns.
if in_web "$cli" run --vm db true 2>"$work/nested.err"; then fail "a nested run worked"; fi
grep -q 'not available inside partition "web"' "$work/nested.err" ||
  fail "unclear refusal: $(cat "$work/nested.err")"
hv run --vm web --no-isolate -- "$cli" status >/dev/null 2>"$work/noiso.err" ||
  fail "--no-isolate did not reach the management socket"
[[ $(grep -c 'warning: --no-isolate' "$work/noiso.err") == 1 ]] || fail "no single warning line"
ok "nested run refused; --no-isolate warns once"

kill -0 "$daemon_pid" || fail "hvsockd died"

# 6. The same attempts by an unprivileged user (nobody), whose sandbox is an
# unprivileged user namespace: with its own hvsockd, where the kernel allows
# unprivileged user namespaces (else hvsock run must say so in one line).
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  mine=$work/nobody
  mkdir -p "$mine/bin"
  cp "$hvsockd" "$cli" "$here/escape_attempts.py" "$mine/bin/"
  chmod 711 "$work"
  chown -R nobody: "$mine"
  as_nobody() {
    setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
      env HOME="$mine" HVSOCK_RUNTIME_DIR="$mine/run" HVSOCK_STATE_DIR="$mine/state" "$@"
  }
  # Not through the function: $! must be hvsockd itself, for the cleanup.
  setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
    "$mine/bin/$(basename "$hvsockd")" --state-dir "$mine/state" --runtime-dir "$mine/run" \
    2>"$work/hvsockd-nobody.log" &
  nobody_daemon=$!
  background_pids+=("$nobody_daemon")
  ncli="$mine/bin/$(basename "$cli")"
  for _ in $(seq 100); do as_nobody "$ncli" status >/dev/null 2>&1 && break; sleep 0.1; done
  as_nobody "$ncli" vm create web >/dev/null
  as_nobody "$ncli" vm create db >/dev/null
  status=0
  (cd "$mine/run" && as_nobody timeout 60 "$ncli" run --vm web --no-preload -- \
    python3 "$mine/bin/escape_attempts.py" "$mine/run" "$mine/state" web "$nobody_daemon" db) \
    >"$work/attempts-nobody.out" 2>&1 || status=$?
  if ((status == 125)); then
    grep -q 'user namespaces' "$work/attempts-nobody.out" ||
      fail "unclear refusal for nobody: $(cat "$work/attempts-nobody.out")"
    ok "no unprivileged user namespaces here; hvsock run says so: $(cat "$work/attempts-nobody.out")"
  else
    cat "$work/attempts-nobody.out"
    ((status == 0)) || fail "as nobody, an escape attempt got through (status $status)"
    n=$(grep -c '^refused: ' "$work/attempts-nobody.out")
    ((n >= 20)) || fail "as nobody only $n attempts were made"
    ok "as nobody: $n escape attempts refused"
  fi
fi
echo "all isolation checks passed"
