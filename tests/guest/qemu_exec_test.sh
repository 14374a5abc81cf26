#!/usr/bin/env bash
# hvsock exec and cp into a real QEMU guest: the static CLI runs `hvsock
# agent` in the guest (the guest kernel's vsock, port 0x4856), and the host
# runs commands there with output, stderr, exit status and a 16 MiB stdin
# checksum coming back, a missing command, and a file copied in and out.
# Usage: qemu_exec_test.sh KIT_DIR HVSOCKD HVSOCK_CLI STATIC_CLI
set -euo pipefail
(($# == 4)) || {
  echo "usage: qemu_exec_test.sh KIT_DIR HVSOCKD HVSOCK_CLI STATIC_CLI" >&2
  exit 2
}
kit=$1 hvsockd=$2 cli=$3 static_cli=$4
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
ex() { timeout 120 "$cli" --runtime-dir "$work/run" exec "$@"; }

start_daemon
create_qemu_vm web 7
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
# The guest stays up while the agent serves; cleanup stops QEMU.
script=$(guest_script agent <<'EOF2'
hvsock agent &
agent=$!
sleep 600 &
wait $!
EOF2
)
boot_guest web "$socket_web" "$script" "$static_cli:/opt/hvsock/hvsock"
for _ in $(seq 300); do
  "$cli" --runtime-dir "$work/run" exec --timeout 1000 web -- true 2>/dev/null && break
  sleep 0.5
done
wait_for_line "$work/guest-web.log" 'hvsock agent: listening' 5

[[ "$(ex web -- uname -s)" == Linux ]] || fail "uname in the guest"
kernel=$(ex web -- uname -r)
ok "hvsock exec ran uname in the QEMU guest (kernel $kernel)"
status=0
ex web -- sh -c 'echo out; echo err >&2; exit 9' >"$work/out" 2>"$work/err" || status=$?
((status == 9)) && [[ "$(cat "$work/out")" == out && "$(cat "$work/err")" == err ]] ||
  fail "status $status, out '$(cat "$work/out")', err '$(cat "$work/err")'"
ok "stdout and stderr apart, exit status 9 came back"
head -c 16777216 /dev/urandom >"$work/data"
want=$(sha256sum <"$work/data" | cut -d' ' -f1)
got=$(ex web -- sha256sum <"$work/data" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || fail "16 MiB stdin: $got, expected $want"
ok "16 MiB of stdin into the guest, sha256 equal"
status=0
ex web -- /no/such/program 2>"$work/err" || status=$?
((status == 127)) || fail "a missing command: status $status: $(cat "$work/err")"
ok "a missing command in the guest: 127, $(cat "$work/err")"
chmod 604 "$work/data"
timeout 120 "$cli" --runtime-dir "$work/run" cp "$work/data" web:/tmp/data ||
  fail "cp into the guest"
[[ "$(ex web -- sha256sum /tmp/data | cut -d' ' -f1)" == "$want" ]] || fail "cp into the guest: checksum"
[[ "$(ex web -- stat -c %a /tmp/data)" == 604 ]] || fail "cp into the guest: mode"
timeout 120 "$cli" --runtime-dir "$work/run" cp web:/tmp/data "$work/back" || fail "cp out of the guest"
[[ "$(sha256sum <"$work/back" | cut -d' ' -f1)" == "$want" ]] || fail "cp out of the guest: checksum"
ok "hvsock cp 16 MiB into the guest and back out, checksum and mode kept"
echo "qemu exec test passed"
