# Shared by the test scripts that drive real processes (source it after
# setting `hvsockd` and `cli`, and `kit` to boot guests): a work directory,
# an hvsockd started in it, background programs and QEMU guests (booted
# with the guest kit), and cleanup of all of them.
# shellcheck shell=bash

test_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_guest="$test_lib_dir/../../scripts/guest-kit/run-guest.sh"
work=$(mktemp -d /tmp/hvtest-XXXXXX)
daemon_pid=""
background_pids=()
# Host programs reach hvsockd, never the kernel's AF_VSOCK (see docs/qemu.md).
export HVSOCK_TRANSPORT=emulated HVSOCK_RUNTIME_DIR="$work/run"

test_lib_cleanup() {
  local pid
  for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${background_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap test_lib_cleanup EXIT

fail() {
  echo "FAIL: $*"
  local f
  for f in "$work"/*.log; do
    [[ -f "$f" ]] || continue
    echo "---- $(basename "$f") (last lines)"
    tail -n 25 "$f"
  done
  exit 1
}
ok() { echo "ok: $*"; }
hv() { "$cli" --runtime-dir "$work/run" "$@"; }

start_daemon() {
  "$hvsockd" --state-dir "$work/state" --runtime-dir "$work/run" 2>"$work/hvsockd.log" &
  daemon_pid=$!
  local _
  for _ in $(seq 100); do hv status >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "hvsockd did not start"
}

# create_qemu_vm NAME CID [OPTION...]: prints nothing; sets vmid_NAME and
# socket_NAME. OPTIONs go to hvsock vm create (e.g. --qmp PATH).
create_qemu_vm() {
  local name=$1 cid=$2 id socket
  shift 2
  id=$(hv vm create "$name" --qemu --cid "$cid" "$@" 2>"$work/create-$name.err") ||
    fail "vm create $name: $(cat "$work/create-$name.err")"
  socket=$(sed -n 's/^vhost-user socket: //p' "$work/create-$name.err")
  [[ -S "$socket" ]] || fail "no vhost-user socket for $name at '$socket'"
  printf -v "vmid_$name" '%s' "$id"
  printf -v "socket_$name" '%s' "$socket"
}

# boot_guest NAME SOCKET SCRIPT [FILE...]: boots a guest in the background
# that runs SCRIPT (a shell script file) with FILEs on its PATH; its console
# goes to $work/guest-NAME.log, QEMU's pid to $work/qemu-NAME.pid. Sets
# guest_pid_NAME (the run-guest.sh process; its exit status is SCRIPT's).
# More run-guest.sh options for the next boot: boot_guest_options=(...).
boot_guest_options=()
boot_guest() {
  local name=$1 socket=$2 script=$3
  shift 3
  local adds=(--add "$script")
  local f
  for f in "$@"; do adds+=(--add "$f"); done
  rm -f "$work/qemu-$name.pid"
  bash "$run_guest" --kit "$kit" --timeout 600 --log "$work/guest-$name.log" \
    --pidfile "$work/qemu-$name.pid" --vsock-socket "$socket" "${boot_guest_options[@]}" "${adds[@]}" \
    -- "$(basename "$script")" >/dev/null 2>"$work/run-guest-$name.err" &
  printf -v "guest_pid_$name" '%s' "$!"
  background_pids+=("$!")
}

# wait_for_line FILE REGEX [SECONDS]: until a line of FILE matches.
wait_for_line() {
  local file=$1 regex=$2 limit=${3:-120} _
  for _ in $(seq $((limit * 10))); do
    grep -qE "$regex" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no line matching '$regex' in $(basename "$file") after ${limit}s"
}

# guest_script NAME: reads a script for the guest from stdin into
# $work/NAME and prints its path.
guest_script() {
  { echo '#!/bin/sh'; cat; } >"$work/$1"
  chmod +x "$work/$1"
  echo "$work/$1"
}

# expect_case LOG NAME STATUS: the guest script printed "case NAME: STATUS".
expect_case() {
  grep -qx "case $2: $3" "$1" ||
    fail "guest case $2: expected status $3, got '$(grep "^case $2:" "$1" || echo nothing)'"
}

# start_tcp_echo: a TCP echo server on 127.0.0.1 in the background (each
# connection gets back what it sent, at its EOF); sets tcp_echo_port.
start_tcp_echo() {
  local port_file=$work/tcp-echo.port _
  python3 -c '
import os, socket, sys, threading
s = socket.create_server(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def serve(c):
    data = b""
    while (d := c.recv(65536)):
        data += d
    c.sendall(data)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$port_file" &
  background_pids+=($!)
  for _ in $(seq 100); do [[ -s "$port_file" ]] && break; sleep 0.05; done
  [[ -s "$port_file" ]] || fail "the TCP echo server did not start"
  tcp_echo_port=$(cat "$port_file")
}

# exec_answers VM: `hvsock exec VM -- echo` answers (the agent in VM serves).
exec_answers() {
  [[ "$(timeout 10 "$cli" --runtime-dir "$work/run" exec "$1" -- echo exec-ok 2>/dev/null)" == exec-ok ]]
}
# echo_answers VM SERVICE: a line sent with `hvsock connect` comes back.
echo_answers() {
  [[ "$(echo echo-ok | timeout 10 "$cli" --runtime-dir "$work/run" connect "$1" "$2" 2>/dev/null)" == echo-ok ]]
}
