#!/usr/bin/env bash
# restart.streams_survive: an established stream between partitions carries
# on through kill -9 of hvsockd and its restart (hvsockd is not in the data
# path: the two processes share an AF_UNIX socketpair). A process in VM web
# sends HVSOCK_RESTART_TEST_MIB MiB (default 1024) of random bytes to a
# listener on the host; the receiver stops reading at one third and at two
# thirds, so the stream is full when hvsockd is killed with SIGKILL and
# started again on the same directories, twice; then it reads on. Both ends
# hash what they saw (sha256): 0 bytes lost or reordered, and both programs
# exit 0.
# Usage: streams_survive_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: streams_survive_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../support/test_lib.sh
source "$here/../support/test_lib.sh"
mib=${HVSOCK_RESTART_TEST_MIB:-1024}
total=$((mib * 1048576))
mark1=$((total / 3)) mark2=$((total * 2 / 3))

# wait_for_file FILE CONTENT SECONDS: until FILE holds CONTENT.
wait_for_file() {
  local _
  for _ in $(seq $(($3 * 20))); do
    [[ "$(cat "$1" 2>/dev/null)" == "$2" ]] && return 0
    sleep 0.05
  done
  fail "$(basename "$1") did not say '$2' within $3 s (it says '$(cat "$1" 2>/dev/null)')"
}

# restart_daemon: kill -9, then start on the same --state-dir/--runtime-dir.
restart_daemon() {
  local old=$daemon_pid
  kill -9 "$old"
  wait "$old" 2>/dev/null || true
  kill -0 "$old" 2>/dev/null && fail "hvsockd $old survived SIGKILL"
  cat "$work/hvsockd.log" >>"$work/hvsockd-all.log"
  start_daemon
  [[ "$daemon_pid" != "$old" ]] || fail "no new hvsockd"
}

start_daemon
hv vm create web >/dev/null
hv service register --name "bulk" --port 5001 >/dev/null

mkfifo "$work/received"
python3 "$here/bulk.py" sink "$work" "$mark1" "$mark2" <"$work/received" &
sink_pid=$!
background_pids+=("$sink_pid")
"$cli" --runtime-dir "$work/run" listen -r 5001 2>"$work/listen.log" >"$work/received" &
listen_pid=$!
background_pids+=("$listen_pid")
wait_for_line "$work/listen.log" 'listening on' 10
"$cli" --runtime-dir "$work/run" run --vm web -- bash -c "set -o pipefail; python3 '$here/bulk.py' source $mib | '$cli' connect parent 5001" \
  2>"$work/source.log" &
source_pid=$!
background_pids+=("$source_pid")
wait_for_line "$work/listen.log" 'connection from' 30
ok "web connected to the host's listener; sending $mib MiB"

for mark in "$mark1" "$mark2"; do
  wait_for_file "$work/sink.at" "$mark" 300
  grep -q '^sent' "$work/source.log" && fail "the source finished before the receiver let it"
  restart_daemon
  hv status >/dev/null || fail "the restarted hvsockd does not answer"
  touch "$work/go.$mark"
  ok "received $mark bytes, stream full: hvsockd killed (SIGKILL) and restarted as $daemon_pid"
done

status=0
wait "$source_pid" || status=$?
((status == 0)) || fail "the sender in web exited $status: $(cat "$work/source.log")"
status=0
wait "$listen_pid" || status=$?
((status == 0)) || fail "hvsock listen on the host exited $status: $(cat "$work/listen.log")"
status=0
wait "$sink_pid" || status=$?
((status == 0)) || fail "the receiver on the host exited $status: $(cat "$work/listen.log")"
read -r _ sent_bytes sent_sum < <(grep '^sent' "$work/source.log") || fail "no 'sent' line"
read -r _ got_bytes got_sum <"$work/sink.done" || fail "no sink.done"
((sent_bytes == total)) || fail "sent $sent_bytes bytes, expected $total"
((got_bytes == sent_bytes)) || fail "received $got_bytes bytes of $sent_bytes: $((sent_bytes - got_bytes)) lost"
[[ "$got_sum" == "$sent_sum" ]] || fail "same length, different sha256: bytes reordered or changed"
ok "$got_bytes bytes through two kill -9 restarts of hvsockd, sha256 equal ($got_sum): 0 lost, 0 reordered"
