#!/usr/bin/env bash
# Fault injection: hvsockd is killed (SIGKILL) and started again K times
# while N echo streams run between the host and an emulated VM partition
# (half each way), and, with --kit, N more into a real QEMU guest. Prints:
#   - bytes lost on the emulated streams (must be 0: they do not pass
#     through hvsockd once connected);
#   - guest connections reset (hvsockd is in their data path, so a kill
#     resets them);
#   - for each server (hvsock agent in the VM, hvsock forward on the host,
#     and the guest's own listener), the time from hvsockd answering again
#     until it serves, median and max over the K restarts;
#   - hvsockd's RSS and open fds with the servers idle, before the first
#     kill and after the last restart once the streams ended (a leak shows
#     as more fds).
# A report by default (exit 0 whenever it measured); with --check it exits
# 1 when a byte was lost, a server did not serve again within 10 s, or the
# fd count grew (CTest runs it that way, in a short form).
#
# Usage: faults.sh [--build DIR] [--streams N] [--kills K] [--interval S]
#                  [--kit DIR] [--check]
#   --build DIR   a build tree with hvsockd, hvsock and tests/guest/echo_peer
#                 (default <repo>/build/release, else <repo>/build/dev)
#   --streams N   emulated echo streams (default 16), and guest streams
#   --kills K     restarts of hvsockd (default 3)
#   --interval S  seconds between restarts (default 3)
#   --kit DIR     also stream into a QEMU guest booted with this guest kit
#                 (scripts/guest-kit), reattached over QMP after each restart
#   --check       exit 1 when a property above does not hold
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="" streams=16 kills=3 interval=3 kit="" check=0
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --kit) kit=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "faults: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$build" ]]; then
  build=$repo/build/release
  [[ -x "$build/hvsockd" ]] || build=$repo/build/dev
fi
hvsockd=$build/hvsockd cli=$build/hvsock echo_peer=$build/tests/guest/echo_peer
for program in "$hvsockd" "$cli" "$echo_peer"; do
  [[ -x "$program" ]] || { echo "faults: $program is missing (build first)" >&2; exit 2; }
done
[[ "$streams" =~ ^[1-9][0-9]*$ && "$kills" =~ ^[1-9][0-9]*$ && "$interval" =~ ^[1-9][0-9]*$ ]] ||
  { echo "faults: --streams, --kills and --interval take positive integers" >&2; exit 2; }
# shellcheck source=../tests/support/test_lib.sh
source "$repo/tests/support/test_lib.sh"

# Long enough to span every restart (each also waits for the servers, and
# with a guest for its re-plug), with time to spare at both ends.
round_overhead=1
[[ -z "$kit" ]] || round_overhead=3
seconds=$(((kills + 1) * (interval + round_overhead) + 2))
to_web=$((streams / 2)) to_host=$((streams - streams / 2))

# field LINE NAME: the number after NAME in an `echo_peer timed` summary.
field() { sed -n "s/.* $2 \([0-9]*\).*/\1/p" <<<"$1"; }

daemon_usage() {
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon_pid/status")
  fds=$(find "/proc/$daemon_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$rss $fds"
}

start_daemon
hv vm create web >/dev/null
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
hv service register --name "forwarded echo" --port 9 >/dev/null
hv service register --name "echo into web" --port 5001 >/dev/null
hv service register --name "echo on the host" --port 5002 >/dev/null
hv service register --name "echo in the guest" --port 7000 >/dev/null
hv service register --name "probe in the guest" --port 7001 >/dev/null
vmid_web=$(hv vm list --json | python3 -c \
  'import json,sys; print([p for p in json.load(sys.stdin) if p["name"] == "web"][0]["id"])')

start_tcp_echo # behind the forward

"$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent 2>>"$work/agent.log" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" forward --listen hvsock:9 --to "tcp:127.0.0.1:$tcp_echo_port" 2>>"$work/forward.log" &
background_pids+=($!)
wait_for_line "$work/agent.log" '^hvsock agent: listening' 10
wait_for_line "$work/forward.log" 'listening on' 10

servers=(agent forward)
if [[ -n "$kit" ]]; then
  # q35: its PCIe root port re-plugs the device in ~0.1 s (docs/qemu.md).
  create_qemu_vm guest 9 --qmp "$work/qmp-guest.sock"
  boot_guest_options=(--qmp "$work/qmp-guest.sock" --machine q35)
  script=$(guest_script faults-guest <<EOF
# Servers that outlive every reset: they keep accepting.
echo_peer serve 7001 1000000 >/dev/null 2>&1 &
echo_peer serve 7000 1000000
EOF
)
  # shellcheck disable=SC2154 # set by create_qemu_vm
  boot_guest guest "$socket_guest" "$script" "$echo_peer"
  servers+=(guest)
fi

# serves SERVER: one request to it; exit 0 when answered correctly.
serves() {
  case $1 in
    agent) exec_answers web ;;
    forward) echo_answers loopback 9 ;;
    guest) timeout 10 "$echo_peer" connect "$vmid_guest" 7001 1 1 >/dev/null 2>&1 ;;
  esac
}
# until_served SERVER LIMIT: prints the ms from now until it serves.
until_served() {
  local start now
  start=$(date +%s%N)
  until serves "$1"; do
    now=$(date +%s%N)
    if (((now - start) / 1000000 > $2 * 1000)); then
      echo never
      return
    fi
    sleep 0.05
  done
  echo $((($(date +%s%N) - start) / 1000000))
}
for server in "${servers[@]}"; do
  [[ "$(until_served "$server" 300)" != never ]] || fail "$server does not serve before the first kill"
done
read -r rss_before fds_before < <(daemon_usage)

# The streams, for $seconds each.
"$cli" --runtime-dir "$work/run" run --vm web --no-preload -- "$echo_peer" serve 5001 "$to_web" >"$work/web-serve.log" 2>&1 &
background_pids+=($!)
"$echo_peer" serve 5002 "$to_host" >"$work/host-serve.log" 2>&1 &
background_pids+=($!)
wait_for_line "$work/web-serve.log" '^listening' 10
wait_for_line "$work/host-serve.log" '^listening' 10
"$echo_peer" timed "$vmid_web" 5001 "$to_web" "$seconds" >"$work/to-web.log" 2>&1 &
to_web_pid=$!
"$cli" --runtime-dir "$work/run" run --vm web --no-preload -- "$echo_peer" timed parent 5002 "$to_host" "$seconds" \
  >"$work/to-host.log" 2>&1 &
to_host_pid=$!
background_pids+=("$to_web_pid" "$to_host_pid")
client_pids=("$to_web_pid" "$to_host_pid")
wait_for_line "$work/to-web.log" '^connected' 10
wait_for_line "$work/to-host.log" '^connected' 10
# guest_batch K: N streams into the guest for restart K (each kill resets
# the guest's streams: hvsockd is in their data path).
guest_batch() {
  "$echo_peer" timed "$vmid_guest" 7000 "$streams" 3600 >"$work/to-guest-$1.log" 2>&1 &
  guest_batch_pid=$!
  background_pids+=("$guest_batch_pid")
  wait_for_line "$work/to-guest-$1.log" '^connected' 30
}

declare -A waits
guest_reset=0 guest_failed=0 guest_intact=0
for ((k = 1; k <= kills; ++k)); do
  [[ -z "$kit" ]] || guest_batch "$k"
  sleep "$interval" # the workload's pace, not a synchronisation
  for pid in "${client_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "the streams ended before restart $k (see the logs)"
  done
  kill -9 "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
  start_daemon
  for server in "${servers[@]}"; do
    ms=$(until_served "$server" 10)
    [[ "$ms" != never ]] || { ((check)) && fail "$server did not serve within 10 s of restart $k"; }
    waits[$server]+="$ms "
  done
  if [[ -n "$kit" ]]; then
    wait "$guest_batch_pid" || true
    line=$(grep '^timed:' "$work/to-guest-$k.log") || fail "no summary of guest batch $k"
    guest_reset=$((guest_reset + $(field "$line" reset)))
    guest_failed=$((guest_failed + $(field "$line" failed)))
    guest_intact=$((guest_intact + $(field "$line" intact)))
  fi
done

for pid in "${client_pids[@]}"; do wait "$pid" || true; done
summary() { grep '^timed:' "$1" || fail "no summary in $(basename "$1"): $(tail -n 5 "$1")"; }
to_web_line=$(summary "$work/to-web.log")
to_host_line=$(summary "$work/to-host.log")
lost=$(($(field "$to_web_line" lost) + $(field "$to_host_line" lost)))
failed=$(($(field "$to_web_line" failed) + $(field "$to_host_line" failed)))
emulated_reset=$(($(field "$to_web_line" reset) + $(field "$to_host_line" reset)))
emulated_bytes=$(($(field "$to_web_line" intact) + $(field "$to_host_line" intact)))
for server in "${servers[@]}"; do serves "$server" || fail "$server does not serve at the end"; done
read -r rss_after fds_after < <(daemon_usage)

echo "hvsockd killed and restarted $kills times, $interval s apart"
echo "emulated streams: $streams ($to_web host -> web, $to_host web -> host) for ${seconds} s:" \
  "$((emulated_bytes / 1048576)) MiB echoed intact, bytes lost $lost, reset $emulated_reset, failed $failed"
if [[ -n "$kit" ]]; then
  echo "guest streams: $streams per restart, $((guest_intact / 1048576)) MiB echoed intact," \
    "connections reset $guest_reset of $((streams * kills)), failed otherwise $guest_failed"
fi
for server in "${servers[@]}"; do
  read -r -a times <<<"${waits[$server]}"
  python3 - "$server" "${times[@]}" <<'PY'
import statistics, sys
name, values = sys.argv[1], sys.argv[2:]
served = sorted(int(v) for v in values if v != "never")
never = len(values) - len(served)
text = f"median {statistics.median(served):.0f} ms, max {served[-1]} ms" if served else "never"
print(f"{name} serves again after hvsockd answers: {text} over {len(values)} restarts"
      + (f", {never} times not within 10 s" if never else ""))
PY
done
echo "hvsockd idle: RSS ${rss_before} KiB, $fds_before fds before the first kill;" \
  "RSS ${rss_after} KiB, $fds_after fds after the last restart"

if ((check)); then
  ((emulated_bytes > 0)) || fail "no byte went through the emulated streams"
  ((lost == 0 && failed == 0 && emulated_reset == 0)) ||
    fail "emulated streams: lost $lost bytes, $failed failed, $emulated_reset reset"
  ((fds_after <= fds_before)) || fail "hvsockd holds $fds_after fds after, $fds_before before"
  if [[ -n "$kit" ]]; then
    ((guest_failed == 0)) || fail "$guest_failed guest streams failed other than by a reset"
  fi
  echo "faults check passed"
fi
