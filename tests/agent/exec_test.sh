#!/usr/bin/env bash
# hvsock exec against the guest agent (hvsock agent, run in VM web with
# `hvsock run`), with real processes: output and exit status round trip,
# stderr kept apart, a 256 MiB stdin with a checksum, environment and
# working directory, a missing command, SIGINT and SIGTERM passed on, 32
# concurrent execs, and the agent killed mid-exec (a clear error, no hang).
# Usage: exec_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: exec_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
# No exec may hang: each runs under this limit.
ex() { timeout 60 "$cli" --runtime-dir "$work/run" exec "$@"; }

start_daemon
hv vm create web >/dev/null

status=0
ex web -- true 2>"$work/err" || status=$?
((status == 255)) && grep -q 'hvsock service register --name "hvsock Guest Agent" --port 18518' "$work/err" ||
  fail "an unregistered agent service should say how to register it (status $status): $(cat "$work/err")"
ok "unregistered agent service: $(cat "$work/err")"
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
status=0
ex web -- true 2>"$work/err" || status=$?
((status == 255)) && grep -q "is the agent running there" "$work/err" ||
  fail "no agent should say so (status $status): $(cat "$work/err")"
ok "no agent running: a clear error, exit 255"

start_agent() {
  "$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent 2>>"$work/agent.log" &
  agent_pid=$!
  background_pids+=("$agent_pid")
  wait_for_line "$work/agent.log" '^hvsock agent: listening' 10
}
start_agent

[[ "$(ex web -- echo hello from web)" == "hello from web" ]] || fail "echo round trip"
status=0
ex web -- sh -c 'echo to-stdout; echo to-stderr >&2; exit 7' >"$work/out" 2>"$work/err" || status=$?
((status == 7)) || fail "exit status: expected 7, got $status"
[[ "$(cat "$work/out")" == to-stdout && "$(cat "$work/err")" == to-stderr ]] ||
  fail "stdout/stderr mixed up: out='$(cat "$work/out")' err='$(cat "$work/err")'"
ok "stdout and stderr come back apart, exit status 7 is hvsock's own"

head -c 268435456 /dev/urandom >"$work/big"
want=$(sha256sum <"$work/big" | cut -d' ' -f1)
got=$(ex web -- sha256sum <"$work/big" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || fail "256 MiB stdin: checksum $got, expected $want"
ok "256 MiB of stdin streamed in, sha256 equal"
rm -f "$work/big"

[[ "$(ex --env GREETING=hi -C /tmp web -- sh -c 'echo $GREETING $(pwd)')" == "hi /tmp" ]] ||
  fail "environment and working directory"
status=0
ex web -- /no/such/program 2>"$work/err" || status=$?
((status == 127)) && grep -q "cannot run /no/such/program" "$work/err" ||
  fail "a missing command: status $status, $(cat "$work/err")"
ok "environment, working directory, and a missing command (127 with the reason)"

# Every fd of the agent's is close-on-exec: the command has its stdio and
# nothing else (ls's own fd 3 is the directory it lists), with pipes and with
# a pty.
fds=$(ex web -- ls /proc/self/fd | tr '\n' ' ')
[[ "$fds" == "0 1 2 3 " ]] || fail "the command inherited fds beyond its stdio: $fds"
fds=$(ex -t web -- ls /proc/self/fd </dev/null | tr -d '\r' | tr '\n' ' ')
[[ "$fds" == "0  1  2  3 " || "$fds" == "0 1 2 3 " ]] ||
  fail "with a pty the command inherited fds beyond its stdio: '$fds'"
ok "the command gets fds 0, 1 and 2 only (pipes and pty)"

# (Not under `timeout`: the signal must reach hvsock itself.) The remote
# command is found by its unique command line: under `hvsock run` it has its
# own PID namespace, so the pid it would print means nothing out here.
for sig in INT TERM; do
  token="3600.$$$(kill -l "$sig")"
  "$cli" --runtime-dir "$work/run" exec web -- sh -c "echo started; exec sleep $token" \
    >"$work/started.$sig" &
  exec_pid=$!
  wait_for_line "$work/started.$sig" '^started$' 10
  kill -"$sig" "$exec_pid"
  status=0
  wait "$exec_pid" || status=$?
  expected=$((128 + $(kill -l "$sig")))
  ((status == expected)) || fail "SIG$sig: expected exit $expected, got $status"
  ! pgrep -f "^sleep $token\$" >/dev/null || fail "SIG$sig did not reach the remote command"
done
ok "SIGINT and SIGTERM reach the command; exit 130 and 143"

pids=()
for i in $(seq 32); do
  ex web -- sh -c "head -c 100000 /dev/zero | wc -c; echo job $i" >"$work/job.$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent exec failed"; done
for i in $(seq 32); do
  [[ "$(tr '\n' ' ' <"$work/job.$i")" == "100000 job $i " ]] || fail "job $i: $(cat "$work/job.$i")"
done
ok "32 concurrent execs, each with its own output"

python3 "$(dirname "${BASH_SOURCE[0]}")/exec_tty_test.py" "$cli" "$work/run" ||
  fail "hvsock exec -t through a pseudo-terminal"

"$cli" --runtime-dir "$work/run" exec web -- sh -c 'echo started; exec sleep 60' \
  >"$work/started.kill" 2>"$work/err" &
exec_pid=$!
wait_for_line "$work/started.kill" '^started$' 10
# This test's agent and its sessions only (other tests may run agents too).
pkill -KILL -P "$agent_pid" || true
kill -KILL "$agent_pid" || true
status=0
wait "$exec_pid" || status=$?
((status == 255)) && grep -q "connection to the agent was lost" "$work/err" ||
  fail "agent killed: expected exit 255 with a reason, got $status: $(cat "$work/err")"
ok "agent killed mid-exec: $(cat "$work/err") (exit 255, no hang)"
echo "exec test passed"
