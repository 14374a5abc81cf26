#!/usr/bin/env bash
# hvsock forward both ways around VM web, with real processes:
#   curl -> tcp:127.0.0.1:A -> (forward on the host) -> web:80
#        -> (forward in web: hvsock:80 -> tcp:127.0.0.1:H) -> python's http.server
# An HTTP exchange with a checksum, 200 concurrent requests, a half-close
# passed through both forwards, a unix:PATH listener, SIGTERM stopping a
# forward cleanly, --max-connections (connections past it closed at once, one
# log line), and a forward whose hvsockd is killed: it says so once, uses
# next to no CPU while it waits, and serves again when hvsockd is back.
# Usage: forward_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: forward_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../support/test_lib.sh
source "$here/../support/test_lib.sh"
command -v curl >/dev/null || fail "curl is not installed (scripts/install-deps.sh installs it)"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_daemon
hv vm create web >/dev/null
hv service register --name "web http" --port 80 >/dev/null
hv service register --name "web echo" --port 7 >/dev/null
mkdir -p "$work/www"
head -c 2097152 /dev/urandom >"$work/www/file.bin"
for i in $(seq 200); do echo "page $i" >"$work/www/page$i.txt"; done
http_port=$(free_port) front_port=$(free_port) echo_port=$(free_port) echo_front=$(free_port)
(cd "$work/www" && exec python3 -m http.server "$http_port" --bind 127.0.0.1) >/dev/null 2>&1 &
background_pids+=($!)
python3 "$here/half_close_echo.py" serve "$echo_port" &
background_pids+=($!)

forward() {
  local log=$1
  shift
  "$cli" --runtime-dir "$work/run" "$@" 2>>"$work/$log" &
  background_pids+=($!)
  wait_for_line "$work/$log" 'listening on' 10
}
forward in-web.log run --vm web -- "$cli" forward --listen hvsock:80 --to "tcp:127.0.0.1:$http_port"
forward host.log forward --listen "tcp:127.0.0.1:$front_port" --to web:80
forward in-web-echo.log run --vm web -- "$cli" forward --listen hvsock:7 --to "tcp:127.0.0.1:$echo_port"
forward host-echo.log forward --listen "tcp:127.0.0.1:$echo_front" --to hvsock:web:7
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$http_port/page1.txt" >/dev/null && break; sleep 0.1; done

want=$(sha256sum <"$work/www/file.bin" | cut -d' ' -f1)
got=$(curl -sf "http://127.0.0.1:$front_port/file.bin" | sha256sum | cut -d' ' -f1)
[[ "$got" == "$want" ]] || fail "the 2 MiB file came through different ($got)"
ok "curl through two forwards (host TCP -> web:80 -> host TCP): 2 MiB, sha256 equal"

urls=()
for i in $(seq 200); do urls+=("http://127.0.0.1:$front_port/page$i.txt" -o "$work/got$i"); done
curl -sf --parallel --parallel-max 200 "${urls[@]}" || fail "curl --parallel failed"
for i in $(seq 200); do
  [[ "$(cat "$work/got$i")" == "page $i" ]] || fail "request $i got '$(cat "$work/got$i")'"
done
ok "200 concurrent requests, each answered with its own page"

python3 "$here/half_close_echo.py" client "$echo_front" || fail "half-close through the forwards"
ok "half-close passes through: the client's shutdown reached the server, whose answer came back"

forward unix.log forward --listen "unix:$work/front.sock" --to web:80
got=$(curl -sf --unix-socket "$work/front.sock" "http://web/file.bin" | sha256sum | cut -d' ' -f1)
[[ "$got" == "$want" ]] || fail "through a unix: listener the file came through different"
ok "a unix:PATH listener in front of web:80: curl --unix-socket, sha256 equal"

grep -q '#1: closed' "$work/host.log" || fail "no per-connection log line: $(head -3 "$work/host.log")"
ok "a log line per connection: $(grep -m1 '#1: closed' "$work/host.log")"

# Bad endpoints are usage errors (exit 2) naming what is wrong.
for bad in "--listen tcp:nohostport --to web:80" "--listen hvsock:80 --to web" \
  "--listen unix: --to web:80" "--listen tcp:127.0.0.1:1 --to nosuchvm:80"; do
  status=0
  # shellcheck disable=SC2086 # the words are the options
  "$cli" --runtime-dir "$work/run" forward $bad 2>"$work/bad.log" || status=$?
  ((status == 2 || status == 1)) && grep -q "^hvsock: " "$work/bad.log" ||
    fail "forward $bad: status $status: $(cat "$work/bad.log")"
done
ok "bad endpoints are refused with one line each (e.g. $(head -1 "$work/bad.log"))"

"$cli" --runtime-dir "$work/run" forward --listen "tcp:127.0.0.1:$(free_port)" --to web:80 \
  2>"$work/stop.log" &
stopper=$!
wait_for_line "$work/stop.log" 'listening on' 10
kill -TERM "$stopper"
status=0
wait "$stopper" || status=$?
((status == 0)) || fail "SIGTERM: forward exited $status"
ok "SIGTERM stops a forward cleanly (exit 0)"

for bad in 0 65537 many; do
  status=0
  "$cli" --runtime-dir "$work/run" forward --max-connections "$bad" \
    --listen "tcp:127.0.0.1:$(free_port)" --to web:80 2>"$work/bad.log" || status=$?
  ((status == 2)) || fail "--max-connections $bad: status $status: $(cat "$work/bad.log")"
done
ok "--max-connections outside 1..65536 is a usage error ($(head -1 "$work/bad.log"))"

held_port=$(free_port) limit_port=$(free_port)
python3 "$here/held_echo.py" serve "$held_port" >"$work/held-echo.log" &
background_pids+=($!)
wait_for_line "$work/held-echo.log" '^serving' 10
forward limit.log forward --max-connections 2 --listen "tcp:127.0.0.1:$limit_port" \
  --to "tcp:127.0.0.1:$held_port"
python3 "$here/held_echo.py" limit "$limit_port" 2 || fail "--max-connections 2"
n=$(grep -c 'at the limit of 2 open connections' "$work/limit.log" || true)
((n == 1)) || fail "at the limit: expected one log line for the episode, got $n"
grep -q 'below the limit again; [0-9]* connection(s) were refused' "$work/limit.log" ||
  fail "no log line when connections were taken again"
ok "--max-connections 2: $(grep -m1 'at the limit' "$work/limit.log" | cut -d: -f2-)"

# hvsockd killed under an hvsock: listener: one line, no spinning, and it
# listens again when hvsockd comes back on the same directories (the service
# stays registered: the registry is in the state directory).
hv service register --name "restart echo" --port 9 >/dev/null
"$cli" --runtime-dir "$work/run" forward --listen hvsock:9 --to "tcp:127.0.0.1:$held_port" \
  2>>"$work/restart.log" &
restarter=$!
background_pids+=("$restarter")
wait_for_line "$work/restart.log" 'listening on' 10
[[ "$(echo before | hv connect loopback 9)" == before ]] || fail "no echo through hvsock:9"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
wait_for_line "$work/restart.log" 'hvsockd went away' 10
before=$(cpu_ticks "$restarter")
sleep 2 # the window CPU time is measured over (the check is the CPU used, not the time)
after=$(cpu_ticks "$restarter")
ticks=$(getconf CLK_TCK)
((after - before < ticks * 3 / 10)) ||
  fail "with hvsockd gone the forward used $((after - before)) ticks of CPU in 2 s (spinning)"
n=$(grep -c 'hvsockd went away' "$work/restart.log" || true)
((n == 1)) || fail "hvsockd went away: expected one line, got $n"
ok "hvsockd killed: one line ($(grep -m1 'went away' "$work/restart.log" | cut -d: -f2- |
  cut -c1-60)...), $((after - before)) ticks of CPU in 2 s"
start_daemon
wait_for_line "$work/restart.log" 'hvsockd is back' 10
[[ "$(echo after | hv connect loopback 9)" == after ]] || fail "no echo after hvsockd came back"
n=$(grep -c 'hvsockd is back' "$work/restart.log" || true)
((n == 1)) || fail "hvsockd is back: expected one line, got $n"
ok "hvsockd restarted: the forward listens again and serves ($(grep -m1 'is back' \
  "$work/restart.log" | cut -d: -f2-))"
echo "forward test passed"
