#!/usr/bin/env bash
# The reference's flow in its Windows style (hyperv_style_flow.c, built
# against <hvsock/hvsocket.h>) under `hvsock run`: the service registered
# by GUID with the CLI, a host-side listener on HV_GUID_WILDCARD, a client
# in VM web connecting to HV_GUID_PARENT; then the Windows-style error cases.
# Usage: hyperv_style_test.sh HVSOCKD HVSOCK_CLI PROGRAM
set -euo pipefail
(($# == 3)) || {
  echo "usage: hyperv_style_test.sh HVSOCKD HVSOCK_CLI PROGRAM" >&2
  exit 2
}
hvsockd=$1 cli=$2 program=$3
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

start_daemon
web_id=$(hv vm create web)
hv service register --name "Windows-style flow" --id 4a2e0c5b-9d13-4c6e-8f21-3b7d5e90a1c4 >/dev/null
hv run -- "$program" server >"$work/server.log" 2>&1 &
server=$!
background_pids+=("$server")
wait_for_line "$work/server.log" '^listening' 10
hv run --vm web -- "$program" client >"$work/client.log" 2>&1 ||
  fail "the client failed: $(cat "$work/client.log")"
wait "$server" || fail "the server failed: $(cat "$work/server.log")"
grep -qx "client VmId $web_id" "$work/server.log" ||
  fail "the listener should see VM web's VmId: $(cat "$work/server.log")"
grep -qx "received: hello from the guest" "$work/server.log" || fail "$(cat "$work/server.log")"
grep -qx "local VmId $web_id" "$work/client.log" || fail "$(cat "$work/client.log")"
grep -qx "reply: hello from the host" "$work/client.log" || fail "$(cat "$work/client.log")"
ok "Windows-style flow: HV_GUID_WILDCARD listener on the host, HV_GUID_PARENT client in web"
hv run --vm web -- "$program" checks >"$work/checks.log" 2>&1 ||
  fail "Windows-style checks: $(cat "$work/checks.log")"
sed 's/^/checks: /' "$work/checks.log"
ok "Windows-style error cases"
