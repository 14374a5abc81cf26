#!/usr/bin/env bash
# The HV Socket Demo, end to end: installs the build dependencies, builds the
# `release` preset, starts hvsockd on the default state and runtime
# directories (unless one is already serving them), registers the
# "HV Socket Demo" service, creates the VM partition "demo-vm", runs the
# host-side example on the host and the guest-side example inside demo-vm,
# and shows what they said to each other. Everything it started is stopped on
# exit, also on failure. Running it again reuses the persisted VM and service.
#
# Environment: HVSOCK_JOBS (parallel build jobs, default: all cores),
# HVSOCK_RUNTIME_DIR / HVSOCK_STATE_DIR (override the default directories).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

readonly vm_name="demo-vm"
readonly service_name="HV Socket Demo"
readonly service_guid="1f4e3b2a-5c6d-4e7f-8091-a2b3c4d5e6f7"
readonly build_dir="build/release"
readonly wait_seconds=15

section() { printf '\n==== %s ====\n' "$*"; }
note() { printf 'demo: %s\n' "$*"; }
die() {
  printf 'demo: error: %s\n' "$*" >&2
  exit 1
}

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/hvsock-demo.XXXXXX")
daemon_pid=""
host_pid=""

stop_process() {  # stop_process PID NAME: TERM, then KILL after 5 s
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "$name (pid $pid) did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$host_pid" || -n "$daemon_pid" ]]; then
    section "Cleaning up"
  fi
  if [[ -n "$host_pid" ]]; then
    stop_process "$host_pid" "hv_socket_demo_host"
    note "stopped the host example"
  fi
  if [[ -n "$daemon_pid" ]]; then
    stop_process "$daemon_pid" "hvsockd"
    note "stopped hvsockd (pid $daemon_pid)"
  fi
  if ((status != 0)); then
    for log in "$work_dir"/*.log; do
      [[ -s "$log" ]] || continue
      printf '\n---- %s (last 40 lines) ----\n' "$(basename "$log")" >&2
      tail -n 40 "$log" >&2
    done
    printf '\ndemo: FAILED (exit %d)\n' "$status" >&2
  fi
  rm -rf "$work_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Installing build dependencies"
bash scripts/install-deps.sh

section "Building (cmake preset: release)"
cmake --preset release
cmake --build --preset release -j "${HVSOCK_JOBS:-$(nproc)}" \
  --target hvsockd hvsock_cli hvsock_cli_static hvsock_preload hv_socket_demo_host hv_socket_demo_guest

hvsockd_bin="$repo_root/$build_dir/hvsockd"
hvsock_bin="$repo_root/$build_dir/hvsock"
host_bin="$repo_root/$build_dir/examples/hv_socket_demo_host"
guest_bin="$repo_root/$build_dir/examples/hv_socket_demo_guest"
for bin in "$hvsockd_bin" "$hvsock_bin" "$host_bin" "$guest_bin"; do
  [[ -x "$bin" ]] || die "the build did not produce $bin"
done

hvsock() { "$hvsock_bin" "$@"; }

section "Starting the switch (hvsockd)"
if hvsock status >/dev/null 2>&1; then
  note "hvsockd is already running on the default runtime directory: using it (it is left running)"
else
  "$hvsockd_bin" >"$work_dir/hvsockd.log" 2>&1 </dev/null &
  daemon_pid=$!
  note "started hvsockd (pid $daemon_pid), default state and runtime directories"
  started=""
  for _ in $(seq $((wait_seconds * 10))); do
    if hvsock status >/dev/null 2>&1; then
      started=yes
      break
    fi
    kill -0 "$daemon_pid" 2>/dev/null || die "hvsockd exited during start-up (log below)"
    sleep 0.1
  done
  [[ -n "$started" ]] || die "hvsockd did not answer 'hvsock status' within ${wait_seconds}s"
fi
hvsock status

section "Creating the VM partition \"$vm_name\""
vm_exists=$(hvsock vm list --json | python3 -c '
import json, sys
data = json.load(sys.stdin)
print("yes" if any(p.get("name") == sys.argv[1] for p in data) else "no")
' "$vm_name")
if [[ "$vm_exists" == yes ]]; then
  note "VM \"$vm_name\" already exists"
else
  vm_id=$(hvsock vm create "$vm_name")
  note "created VM \"$vm_name\" with VmId $vm_id"
fi
hvsock vm list

section "Registering the service \"$service_name\" (step 2 of the reference)"
# Prints the GUID of the service registered under our GUID or our name, or nothing.
service_id=$(hvsock service list --json | python3 -c '
import json, sys
data = json.load(sys.stdin)
guid, name = sys.argv[1].lower(), sys.argv[2]
ids = [str(s.get("id", "")).lower() for s in data]
named = [str(s.get("id", "")).lower() for s in data if s.get("name") == name]
print(guid if guid in ids else (named[0] if named else ""))
' "$service_guid" "$service_name")
if [[ -n "$service_id" ]]; then
  note "service \"$service_name\" is already registered as $service_id"
  # A previous run or a user may have disabled it, globally or for the VM.
  hvsock service enable "$service_id" >/dev/null
  hvsock service enable "$service_id" --vm "$vm_name" >/dev/null
else
  service_id=$(hvsock service register --name "$service_name" --id "$service_guid")
  note "registered \"$service_name\" as $service_id"
fi
hvsock service list

section "Host: listening on HV_GUID_WILDCARD for $service_id"
"$host_bin" "$service_id" >"$work_dir/host.log" 2>&1 </dev/null &
host_pid=$!
listening=""
for _ in $(seq $((wait_seconds * 10))); do
  if grep -q '^listening' "$work_dir/host.log"; then
    listening=yes
    break
  fi
  kill -0 "$host_pid" 2>/dev/null || die "the host example exited before listening (log below)"
  sleep 0.1
done
[[ -n "$listening" ]] || die "the host example did not start listening within ${wait_seconds}s"
grep '^listening' "$work_dir/host.log"

section "Guest: connecting to HV_GUID_PARENT from inside \"$vm_name\" (step 3 of the reference)"
note "hvsock run --vm $vm_name -- $(basename "$guest_bin") $service_id"
hvsock run --vm "$vm_name" -- "$guest_bin" "$service_id"

section "Host side of the exchange"
host_status=""
for _ in $(seq $((wait_seconds * 10))); do
  if ! kill -0 "$host_pid" 2>/dev/null; then
    host_status=0
    wait "$host_pid" || host_status=$?
    host_pid=""
    break
  fi
  sleep 0.1
done
grep -v '^listening' "$work_dir/host.log" || true
[[ -n "$host_status" ]] || die "the host example did not finish within ${wait_seconds}s"
((host_status == 0)) || die "the host example exited with status $host_status"

section "Per-service counters (hvsock stats)"
hvsock stats || note "warning: 'hvsock stats' failed"

section "Done"
note "the guest in \"$vm_name\" and the host exchanged messages over hvsock"
