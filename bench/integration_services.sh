#!/usr/bin/env bash
# The integration services, measured against a fresh hvsockd with an agent
# in an emulated VM: `hvsock exec web -- true` round trips (median and p90
# of N runs, whole process included), `hvsock cp` throughput both ways, and
# `hvsock forward` throughput next to a direct TCP loopback connection in the
# same run (the ratio is printed). A report, not a test: exit 0 whenever it
# measured.
#
# Usage: integration_services.sh [--build DIR] [--execs N] [--mib N]
#   --build DIR  a build tree with hvsockd and hvsock (default <repo>/build/release)
#   --execs N    exec round trips (default 50)
#   --mib N      MiB per cp and forward transfer (default 512)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$repo/build/release execs=50 mib=512
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --execs) execs=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "integration_services: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
hvsockd=$build/hvsockd cli=$build/hvsock
# shellcheck source=../tests/support/test_lib.sh
source "$repo/tests/support/test_lib.sh"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / 1048576 / ($3 - $2):.0f}')"; }

start_daemon
hv vm create web >/dev/null
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
hv service register --name "bench sink" --port 9 >/dev/null
"$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent 2>>"$work/agent.log" &
background_pids+=($!)
wait_for_line "$work/agent.log" 'listening' 10

# exec round trips
python3 - "$cli" "$work/run" "$execs" <<'PY'
import statistics, subprocess, sys, time
cli, run, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(n):
    t = time.perf_counter()
    subprocess.run([cli, "--runtime-dir", run, "exec", "web", "--", "true"], check=True)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"exec web -- true: median {statistics.median(times):.1f} ms, p90 {times[int(n * 0.9) - 1]:.1f} ms ({n} runs, process start included)")
PY

# cp both ways (the emulated VM shares this file system)
head -c $((mib * 1048576)) /dev/urandom >"$work/data"
mkdir -p "$work/vm" "$work/back"
t0=$(now)
hv cp -q "$work/data" "web:$work/vm/data"
t1=$(now)
hv cp -q "web:$work/vm/data" "$work/back/data"
t2=$(now)
cmp -s "$work/data" "$work/back/data" || fail "cp came back different"
echo "cp $mib MiB into the VM: $(rate $((mib * 1048576)) "$t0" "$t1") MiB/s; out of it: $(rate $((mib * 1048576)) "$t1" "$t2") MiB/s"
rm -f "$work/vm/data" "$work/back/data"

# forward vs direct TCP: a sink on loopback, reached directly and through
# host TCP -> forward -> web:9 -> forward in web -> the sink.
sink_port=$(free_port) front_port=$(free_port)
python3 -c '
import socket, sys
s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
    c.sendall(b"k")
    c.close()
' "$sink_port" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" run --vm web -- "$cli" forward --listen hvsock:9 \
  --to "tcp:127.0.0.1:$sink_port" 2>>"$work/fwd-in.log" &
background_pids+=($!)
"$cli" --runtime-dir "$work/run" forward --listen "tcp:127.0.0.1:$front_port" --to web:9 \
  2>>"$work/fwd-host.log" &
background_pids+=($!)
wait_for_line "$work/fwd-in.log" 'listening' 10
wait_for_line "$work/fwd-host.log" 'listening' 10
python3 - "$sink_port" "$front_port" "$work/data" <<'PY'
import socket, sys, time
sink, front, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()
def send(port):
    c = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter()
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    assert c.recv(1) == b"k"
    return len(data) / (1 << 20) / (time.perf_counter() - t)
for _ in range(2):
    direct, forwarded = send(sink), send(front)
print(f"forward: {forwarded:.0f} MiB/s through two forwards (host TCP -> web:9 -> TCP), direct TCP loopback {direct:.0f} MiB/s: ratio {forwarded / direct:.2f}x")
PY
