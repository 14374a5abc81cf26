#!/usr/bin/env bash
# Stream throughput between the host and a real QEMU guest (TCG), through
# hvsockd's vhost-user-vsock backend, next to TCP over QEMU's user-mode
# network (-netdev user with a forwarded port: what a user would otherwise
# pick), in one guest and one run. hvsock runs twice: with the kernel's
# default 256 KiB vsock buffer, and with the guest's socket buffer set to
# 2 MiB (SO_VM_SOCKETS_BUFFER_SIZE, the usual tuning for bulk transfers; TCP
# grows its window by itself). Prints the median MB/s of the rounds per
# transport and direction, and hvsock/user-net ratios with PASS/MISS against
# the 2x target. A report, not a test: it exits 0 whenever it
# measured (timing is noisy), non-zero only when something failed.
#
# Usage: qemu_guest_throughput.sh [--build DIR] [--kit DIR] [--bytes N] [--rounds N]
#   --build DIR   a build tree with hvsockd, hvsock, libhvsock-preload.so and
#                 bench/guest_stream{,_host} (default: <repo>/build/release)
#   --kit DIR     the guest kit (default: DIR/guest-kit, built if missing)
#   --bytes N     bytes per transfer (default 64 MiB)
#   --rounds N    transfers per transport and direction (default 3)
#
# The guest is isolated (restrict=on): its only network path is the one
# forwarded port, to 127.0.0.1 on the host. The host side never opens a
# kernel AF_VSOCK socket: its vsock calls run under `hvsock run`'s shim.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$repo/build/release kit="" bytes=$((64 * 1024 * 1024)) rounds=3
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --kit) kit=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "qemu_guest_throughput: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
kit=${kit:-$build/guest-kit}
for f in hvsockd hvsock libhvsock-preload.so bench/guest_stream bench/guest_stream_host; do
  [[ -e $build/$f ]] || { echo "qemu_guest_throughput: $build/$f is missing (build the release preset)" >&2; exit 2; }
done
[[ -f $kit/kit.env ]] || bash "$repo/scripts/guest-kit/build-kit.sh" "$kit" >&2

hvsockd=$build/hvsockd cli=$build/hvsock
# shellcheck source=../tests/support/test_lib.sh
source "$repo/tests/support/test_lib.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_daemon
create_qemu_vm bench 7
hv service register --name "bench stream" --port 7000 >/dev/null
tcp_port=$(free_port)
guest_tcp_port=7001
connections=$((rounds * 6))
tuned_buffer=$((2 * 1024 * 1024))

script=$(guest_script bench <<EOF
guest_stream serve 7000 $guest_tcp_port $connections; echo "serve exit \$?"
EOF
)
# shellcheck disable=SC2154 # socket_bench: set by create_qemu_vm (printf -v)
bash "$run_guest" --kit "$kit" --timeout 900 --log "$work/guest.log" --vsock-socket "$socket_bench" \
  --add "$script" --add "$build/bench/guest_stream" \
  --qemu-arg -netdev \
  --qemu-arg "user,id=bench-net,restrict=on,hostfwd=tcp:127.0.0.1:$tcp_port-:$guest_tcp_port" \
  --qemu-arg -device --qemu-arg virtio-net-pci,netdev=bench-net \
  -- bench >/dev/null 2>"$work/run-guest.err" &
guest=$!
background_pids+=("$guest")
wait_for_line "$work/guest.log" '^serving' 120

results=$work/results
for round in $(seq "$rounds"); do
  for mode in send recv; do
    for buffer in 0 "$tuned_buffer"; do
      hv run -- "$build/bench/guest_stream_host" run vsock 7 7000 "$mode" "$bytes" "$buffer" \
        >>"$results" || fail "hvsock $mode failed in round $round"
    done
    "$build/bench/guest_stream_host" run tcp 127.0.0.1 "$tcp_port" "$mode" "$bytes" >>"$results" ||
      fail "user-mode TCP $mode failed in round $round"
  done
done
wait "$guest" || fail "the guest run failed: $(tail -5 "$work/guest.log")"

python3 - "$results" "$bytes" "$rounds" <<'PY'
import statistics, sys
path, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rates = {}
for line in open(path):
    _, transport, mode, _, buffer, _, rate = line.split()
    key = (transport, mode, int(buffer) if transport == "vsock" else 0)
    rates.setdefault(key, []).append(float(rate))
names = {"send": "host -> guest", "recv": "guest -> host"}
print(f"QEMU guest throughput (TCG), {size // (1 << 20)} MiB per transfer, {rounds} rounds, median MB/s")
print(f"{'direction':<15} {'vsock buffer':>17} {'hvsock':>9} {'user-net TCP':>13} {'ratio':>7}  target 2x")
for mode in ("send", "recv"):
    tcp = statistics.median(rates[("tcp", mode, 0)])
    for (transport, m, buffer), values in sorted(rates.items()):
        if transport != "vsock" or m != mode:
            continue
        hv = statistics.median(values)
        ratio = hv / tcp
        label = "256 KiB (default)" if buffer == 0 else f"{buffer >> 20} MiB"
        verdict = "PASS" if ratio >= 2 else "MISS"
        print(f"{names[mode]:<15} {label:>17} {hv:>9.1f} {tcp:>13.1f} {ratio:>6.2f}x  {verdict}")
    rounds_text = {f"{k[0]}/{k[2]}": v for k, v in rates.items() if k[1] == mode}
    print(f"  rounds: {rounds_text}")
PY
