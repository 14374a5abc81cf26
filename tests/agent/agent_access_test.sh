#!/usr/bin/env bash
# Who may use the guest agent, and how many at once (issue 9), with real
# processes: by default the agent in VM web serves its parent (the host)
# and nobody else (a container c in web is refused with a clear message);
# --allow children admits c; with --allow parent a refused child is logged
# by its VmId and told why; a connection that never says HELLO is closed
# after 10 s; --max-sessions 2 turns a third exec away as busy, and the
# count comes down again when sessions end; when hvsockd stops, the agent
# ends.
# Usage: agent_access_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: agent_access_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
# No exec may hang: each runs under this limit.
ex() { timeout 60 "$cli" --runtime-dir "$work/run" exec "$@"; }
# An exec from inside container c, to its parent (web).
ex_from_c() { timeout 60 "$cli" --runtime-dir "$work/run" run --vm c -- "$cli" exec parent "$@"; }

start_daemon
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
hv vm create web >/dev/null
c_id=$(hv vm create c --parent web --kind container)

agent_pid=""
# start_agent LOG [AGENT OPTIONS...]: an agent in web, logging to LOG.
start_agent() {
  local log=$1
  shift
  : >"$log"
  "$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent "$@" 2>>"$log" &
  agent_pid=$!
  background_pids+=("$agent_pid")
  wait_for_line "$log" '^hvsock agent: listening' 10
}
stop_agent() {
  kill "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
}

# --- the default: the parent only ---------------------------------------------
start_agent "$work/agent-default.log"
grep -q '^hvsock agent: listening on parent:' "$work/agent-default.log" ||
  fail "the default agent should listen on PARENT: $(cat "$work/agent-default.log")"
[[ "$(ex web -- echo served)" == served ]] || fail "the default agent should serve the host"
ok "default agent in web listens on parent and serves the host"

status=0
ex_from_c -- id >"$work/out" 2>"$work/err" || status=$?
((status != 0)) || fail "container c ran a command in web through the default agent: $(cat "$work/out")"
[[ ! -s "$work/out" ]] || fail "a refused exec printed output: $(cat "$work/out")"
grep -q "admits only its parent" "$work/err" ||
  fail "the refusal should say the agent admits only its parent (status $status): $(cat "$work/err")"
ok "container c is refused by the default agent (exit $status): $(cat "$work/err")"
stop_agent

# The host has no parent: the default agent there says so.
status=0
timeout 10 "$cli" --runtime-dir "$work/run" agent 2>"$work/err" || status=$?
((status == 1)) && grep -q "has no parent" "$work/err" ||
  fail "an agent on the host should refuse to start without --allow ($status): $(cat "$work/err")"
ok "on the host: $(cat "$work/err")"

status=0
timeout 10 "$cli" --runtime-dir "$work/run" agent --allow no-such-vm 2>"$work/err" || status=$?
((status != 0)) && [[ $(wc -l <"$work/err") == 1 ]] && grep -q "no-such-vm" "$work/err" ||
  fail "an unresolvable --allow NAME should fail in one line ($status): $(cat "$work/err")"
ok "an unknown --allow name: $(cat "$work/err")"

# --- --allow children ---------------------------------------------------------
start_agent "$work/agent-children.log" --allow children
[[ "$(ex_from_c -- echo served c)" == "served c" ]] ||
  fail "with --allow children the container should be served"
status=0
ex web -- true 2>"$work/err" || status=$?
((status == 255)) && grep -q "refused by the agent" "$work/err" ||
  fail "with --allow children only, the host should be refused ($status): $(cat "$work/err")"
ok "--allow children: c is served, the host (the parent) is not"
stop_agent

# --- --allow parent: a refused child is logged by its VmId -----------------------
start_agent "$work/agent-parent.log" --allow parent
[[ "$(ex web -- echo served)" == served ]] || fail "with --allow parent the host should be served"
status=0
ex_from_c -- id >"$work/out" 2>"$work/err" || status=$?
((status == 255)) && grep -q "refused by the agent: partition $c_id may not use this agent" "$work/err" ||
  fail "a refused child should be told why, exit 255 ($status): $(cat "$work/err")"
[[ ! -s "$work/out" ]] || fail "a refused exec printed output: $(cat "$work/out")"
wait_for_line "$work/agent-parent.log" "^hvsock agent: refused a connection from $c_id" 10
ok "--allow parent: the host is served; c is refused and logged by its VmId $c_id"
stop_agent

# A partition by name: c, web's child, and nobody else.
start_agent "$work/agent-name.log" --allow c
[[ "$(ex_from_c -- echo served c)" == "served c" ]] || fail "with --allow c the container should be served"
status=0
ex web -- true 2>"$work/err" || status=$?
((status == 255)) && grep -q "refused by the agent" "$work/err" ||
  fail "with --allow c only, the host should be refused ($status): $(cat "$work/err")"
wait_for_line "$work/agent-name.log" "^hvsock agent: refused a connection from a42e7cda-d03f-480c-9cc2-a4de20abb878 \\(parent\\)" 10
ok "--allow c (a partition name): c is served, the host is refused and logged as the parent"
stop_agent

# The parent by its name, and by its VmId: the switch names it "parent" on
# accept, and the agent (isolated in web, without the management socket)
# learns that through web's own control socket.
host_id=$(hv vm list --json | python3 -c 'import json,sys; print([p["id"] for p in json.load(sys.stdin) if p["name"]=="host"][0])')
for who in host "$host_id"; do
  start_agent "$work/agent-host.log" --allow "$who"
  [[ "$(ex web -- echo served)" == served ]] || fail "with --allow $who the host should be served"
  status=0
  ex_from_c -- true 2>"$work/err" || status=$?
  ((status == 255)) || fail "with --allow $who, c should be refused ($status): $(cat "$work/err")"
  grep -q "note:" "$work/agent-host.log" && fail "--allow $who: $(cat "$work/agent-host.log")"
  stop_agent
done
ok "--allow host and --allow <host's VmId> from an isolated web: the host is served, c is not"

# --- a connection that never says HELLO -------------------------------------------
start_agent "$work/agent-limits.log" --max-sessions 2
mkfifo "$work/silent.in"
# The fifo held open for writing (fd 7) keeps connect's stdin open.
exec 7<>"$work/silent.in"
began=$SECONDS
timeout 60 "$cli" --runtime-dir "$work/run" connect web 18518 <"$work/silent.in" \
  >"$work/silent.out" 2>"$work/silent.err" 7>&- &
silent_pid=$!
background_pids+=("$silent_pid")
wait_for_line "$work/silent.out" 'no HELLO within 10 s' 30
waited=$((SECONDS - began))
((waited >= 9)) || fail "the silent connection was closed after ${waited}s, before 10 s"
exec 7>&-  # stdin ends: connect has nothing left to do
status=0
wait "$silent_pid" || status=$?
((status == 0)) || fail "hvsock connect should end once the agent closed and stdin ended ($status)"
ok "a connection without HELLO is told so and closed after ${waited}s"

# --- --max-sessions 2 ---------------------------------------------------------------
for i in 1 2; do
  "$cli" --runtime-dir "$work/run" exec web -- sh -c 'echo started; exec sleep 120' \
    >"$work/long.$i" 2>&1 &
  long_pids[i]=$!
  background_pids+=("$!")
done
for i in 1 2; do wait_for_line "$work/long.$i" '^started$' 20; done
status=0
ex web -- echo third >"$work/out" 2>"$work/err" || status=$?
((status == 255)) && grep -q "refused by the agent: agent busy: 2 sessions running" "$work/err" ||
  fail "a third exec should be turned away as busy, exit 255 ($status): $(cat "$work/err")"
[[ ! -s "$work/out" ]] || fail "the busy exec ran: $(cat "$work/out")"
ok "--max-sessions 2: a third exec is told: $(cat "$work/err")"
# When the two end, their sessions are reaped and the count comes down.
for i in 1 2; do kill -TERM "${long_pids[i]}"; done
for i in 1 2; do wait "${long_pids[i]}" 2>/dev/null || true; done
served=""
for _ in $(seq 100); do
  if out=$(ex web -- echo again 2>/dev/null) && [[ "$out" == again ]]; then
    served=yes
    break
  fi
  sleep 0.1
done
[[ -n "$served" ]] || fail "after the sessions ended the agent still turned execs away"
ok "after the two sessions ended a new exec is served"

# --- hvsockd goes away: the agent waits for it (restart.servers_come_back has the rest)
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
wait_for_line "$work/agent-limits.log" 'hvsockd went away' 20 ||
  fail "the agent did not say that hvsockd went away"
kill -0 "$agent_pid" || fail "the agent ended instead of waiting for hvsockd"
stop_agent
ok "hvsockd stopped: the agent says so and waits"
echo "agent access test passed"
