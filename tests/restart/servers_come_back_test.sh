#!/usr/bin/env bash
# restart.servers_come_back: servers that opted in listen again by themselves
# after kill -9 of hvsockd and its restart on the same directories, and
# serve within 2 s of hvsockd answering: `hvsock agent` in VM web (under
# `hvsock run --vm web`), `hvsock forward --listen hvsock:9` on the host, and
# relisten_echo, a libhvsock program using listen_options::relisten, and
# an unmodified `socat VSOCK-LISTEN:13,fork EXEC:cat` in VM web under the
# preload shim (its blocking accept waits and listens again; it used to
# spin on ECONNABORTED). Each says "hvsockd went away" and "hvsockd is back"
# exactly once. An exec
# session running across the restart carries on. One-shot commands fail
# clearly instead: a waiting `hvsock listen` exits non-zero saying hvsockd
# went away, and `hvsock connect` with hvsockd down says it is not reachable.
# Usage: servers_come_back_test.sh HVSOCKD HVSOCK_CLI (HVSOCK_RELISTEN_ECHO set)
set -euo pipefail
(($# == 2)) || {
  echo "usage: servers_come_back_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../support/test_lib.sh
source "$here/../support/test_lib.sh"
echo_program=${HVSOCK_RELISTEN_ECHO:?HVSOCK_RELISTEN_ECHO: the relisten_echo program}

start_daemon
hv vm create web >/dev/null
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
hv service register --name "forwarded echo" --port 9 >/dev/null
hv service register --name "relisten echo" --port 11 >/dev/null
hv service register --name "one shot" --port 12 >/dev/null
hv service register --name "socat echo" --port 13 >/dev/null

start_tcp_echo # behind the forward

"$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent 2>>"$work/agent.log" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" forward --listen hvsock:9 --to "tcp:127.0.0.1:$tcp_echo_port" 2>>"$work/forward.log" &
background_pids+=($!)
"$echo_program" 11 2>>"$work/echo.log" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" run --vm web -- socat -d -d VSOCK-LISTEN:13,fork EXEC:cat \
  2>>"$work/socat.log" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" listen 12 2>"$work/oneshot.log" </dev/null &
oneshot_pid=$!
background_pids+=("$oneshot_pid")
wait_for_line "$work/agent.log" '^hvsock agent: listening' 10
wait_for_line "$work/forward.log" 'listening on' 10
wait_for_line "$work/echo.log" 'listening on' 10
wait_for_line "$work/oneshot.log" 'listening on' 10
wait_for_line "$work/socat.log" 'listening on' 10

# serves WHICH: one request to that server; exit 0 when answered correctly.
serves() {
  case $1 in
    agent) exec_answers web ;;
    forward) echo_answers loopback 9 ;;
    echo) echo_answers loopback 11 ;;
    socat) echo_answers web 13 ;;
  esac
}
for server in agent forward echo socat; do serves "$server" || fail "$server does not serve before the restart"; done
ok "agent, forward, relisten_echo and socat serve"

# An exec session that is running when hvsockd dies: it waits for a line.
mkfifo "$work/exec.in"
timeout 60 "$cli" --runtime-dir "$work/run" exec web -- sh -c 'echo started; read -r x; echo "got $x"' \
  <"$work/exec.in" >"$work/exec.out" 2>"$work/exec.err" &
exec_pid=$!
background_pids+=("$exec_pid")
exec 7>"$work/exec.in"
wait_for_line "$work/exec.out" '^started$' 10

kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
for log in agent forward echo socat; do wait_for_line "$work/$log.log" 'hvsockd went away' 10; done
ok "hvsockd killed: each server says it went away"

# One-shot commands fail clearly instead of waiting.
status=0
wait "$oneshot_pid" || status=$?
((status != 0)) || fail "hvsock listen exited 0 after hvsockd went away"
grep -q 'hvsockd went away' "$work/oneshot.log" ||
  fail "hvsock listen's error does not say hvsockd went away: $(cat "$work/oneshot.log")"
ok "one-shot hvsock listen: exit $status, '$(tail -n1 "$work/oneshot.log")'"
status=0
echo x | hv connect loopback 11 2>"$work/connect.err" || status=$?
((status != 0)) && grep -q 'hvsockd is not reachable' "$work/connect.err" ||
  fail "hvsock connect with hvsockd down (status $status): $(cat "$work/connect.err")"
ok "one-shot hvsock connect with hvsockd down: exit $status, '$(cat "$work/connect.err")'"

start_daemon
answered=$(date +%s%N)
for server in agent forward echo socat; do
  until serves "$server"; do
    (($(date +%s%N) - answered < 2000000000)) ||
      fail "$server does not serve 2 s after hvsockd answered again"
    sleep 0.05
  done
  ok "$server serves again $((($(date +%s%N) - answered) / 1000000)) ms after hvsockd answered"
done

echo line >&7
exec 7>&-
status=0
wait "$exec_pid" || status=$?
((status == 0)) && grep -qx 'got line' "$work/exec.out" ||
  fail "the exec session running across the restart (status $status): $(cat "$work/exec.out" "$work/exec.err")"
ok "the exec session running across the restart carried on"

for log in agent forward echo socat; do
  gone=$(grep -c 'hvsockd went away' "$work/$log.log" || true)
  back=$(grep -c 'hvsockd is back' "$work/$log.log" || true)
  ((gone == 1 && back == 1)) ||
    fail "$log: 'went away' $gone times, 'is back' $back times (want once each): $(cat "$work/$log.log")"
  ok "$log: $(grep -m1 'is back' "$work/$log.log")"
done
echo "servers_come_back test passed"
