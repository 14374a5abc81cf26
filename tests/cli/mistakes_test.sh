#!/usr/bin/env bash
# The CLI mistakes of issue 16, each with its exact message and exit status:
# an unknown (sub)command named with the closest command; a missing argument
# pointing at the subcommand's own --help; one wording for a partition nobody
# has (from the host, and inside an isolated partition); every port, CID and
# limit range-checked (exit 2, and nothing done); hvsockd's bad command line
# as one "hvsockd: ..." line, exit 2.
# Usage: mistakes_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: mistakes_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

# expect STATUS MESSAGE PROGRAM ARG...: PROGRAM ARG... exits STATUS, prints
# nothing on stdout and exactly MESSAGE (one line) on stderr.
expect() {
  local want_status=$1 want=$2 status=0
  shift 2
  timeout 30 "$@" >"$work/out" 2>"$work/err" </dev/null || status=$?
  local got
  got=$(cat "$work/err")
  [[ "$got" == "$want" && $(wc -l <"$work/err") -eq 1 ]] ||
    fail "$*: expected the line
  $want
got
  $got"
  ((status == want_status)) || fail "$*: expected exit $want_status, got $status ($got)"
  [[ ! -s "$work/out" ]] || fail "$*: printed on stdout: $(cat "$work/out")"
  ok "$* -> $want_status: $want"
}
H=("$cli" --runtime-dir "$work/run")

start_daemon
hv vm create web >/dev/null
hv service register --name echo --port 5000 >/dev/null

# 1. Unknown commands and subcommands, with the closest one or none.
expect 2 'hvsock: unknown command "serivce" (did you mean "service"?) (see: hvsock --help)' \
  "${H[@]}" serivce list
expect 2 'hvsock: service: unknown command "lsit" (did you mean "list"?) (see: hvsock service --help)' \
  "${H[@]}" service lsit
expect 2 'hvsock: vm: unknown command "crate" (did you mean "create"?) (see: hvsock vm --help)' \
  "${H[@]}" vm crate db
expect 2 'hvsock: unknown command "frobnicate" (see: hvsock --help)' "${H[@]}" frobnicate
expect 2 'hvsock: unknown option "--frobnicate" (see: hvsock --help)' "${H[@]}" --frobnicate
expect 2 'hvsock: service: a subcommand is required: register, list, enable, disable, remove, export or import (see: hvsock service --help)' \
  "${H[@]}" service

# 2. Missing arguments and bad options point at the subcommand's own help.
expect 2 'hvsock: service register: --name is required (see: hvsock service register --help)' \
  "${H[@]}" service register
expect 2 'hvsock: vm create: NAME is required (see: hvsock vm create --help)' "${H[@]}" vm create
expect 2 'hvsock: connect: SERVICE is required (see: hvsock connect --help)' "${H[@]}" connect parent
expect 2 'hvsock: service list: The following argument was not expected: extra (see: hvsock service list --help)' \
  "${H[@]}" service list extra

# 3. One wording for a partition nobody has, wherever it is named.
nosuch='hvsock: no partition named "nosuch" (see: hvsock vm list)'
expect 1 "$nosuch" "${H[@]}" vm remove nosuch
expect 1 "$nosuch" "${H[@]}" vm create box --kind container --parent nosuch
expect 1 "$nosuch" "${H[@]}" service disable echo --vm nosuch
expect 1 "$nosuch" "${H[@]}" service enable 5000 --vm nosuch
expect 1 "$nosuch" "${H[@]}" connect nosuch echo
expect 1 "$nosuch" "${H[@]}" listen --from nosuch echo
expect 1 "$nosuch" "${H[@]}" exec nosuch -- true
expect 1 "$nosuch" "${H[@]}" cp nosuch:/etc/hostname "$work/copy"
expect 1 "$nosuch" "${H[@]}" forward --listen "unix:$work/fwd.sock" --to nosuch:echo
expect 1 "$nosuch" "${H[@]}" run --vm nosuch -- true
# Inside an isolated partition the name is looked up through its own socket.
expect 1 "$nosuch" "${H[@]}" run --vm web -- "$cli" connect nosuch echo
[[ ! -e "$work/fwd.sock" && ! -e "$work/copy" ]] || fail "a failed forward or cp left a file"
# Nothing was created or changed by any of them.
[[ $(hv vm list --json | grep -c '"name"') -eq 2 ]] || fail "a partition was created: $(hv vm list)"
hv service list | grep -Eq '^00001388-facb-11e6-bd58-64006a7986d3 +echo +yes +5000 +-$' ||
  fail "echo changed: $(hv service list)"

# 4. Ports, CIDs and limits are range-checked; nothing is done with them.
expect 2 'hvsock: forward --listen tcp:127.0.0.1:99999: port must be 1..65535' \
  "${H[@]}" forward --listen tcp:127.0.0.1:99999 --to web:echo
expect 2 'hvsock: forward --listen tcp:127.0.0.1:0: port must be 1..65535' \
  "${H[@]}" forward --listen tcp:127.0.0.1:0 --to web:echo
expect 2 'hvsock: forward --listen tcp:[::1]:http: port must be 1..65535' \
  "${H[@]}" forward --listen 'tcp:[::1]:http' --to web:echo
expect 2 'hvsock: forward --to tcp:127.0.0.1:65536: port must be 1..65535' \
  "${H[@]}" forward --listen "unix:$work/fwd.sock" --to tcp:127.0.0.1:65536
expect 2 'hvsock: service "4294967296": a vsock port number must be 0..4294967295' \
  "${H[@]}" forward --listen hvsock:4294967296 --to tcp:127.0.0.1:80
expect 2 'hvsock: service "99999999999999999999999": a vsock port number must be 0..4294967295' \
  "${H[@]}" connect web 99999999999999999999999
expect 2 'hvsock: service "4294967296": a vsock port number must be 0..4294967295' \
  "${H[@]}" listen 4294967296
expect 2 'hvsock: service "4294967296": a vsock port number must be 0..4294967295' \
  "${H[@]}" service disable 4294967296
expect 2 'hvsock: service "4294967296": a vsock port number must be 0..4294967295' \
  "${H[@]}" service remove 4294967296
expect 2 'hvsock: vm create: --cid: Value 2 not in range 3 to 4294967294 (see: hvsock vm create --help)' \
  "${H[@]}" vm create db --cid 2
expect 2 'hvsock: vm create: --cid: Value 4294967295 not in range 3 to 4294967294 (see: hvsock vm create --help)' \
  "${H[@]}" vm create db --cid 4294967295
expect 2 'hvsock: vm create: --cid: Value 99999999999 not in range 3 to 4294967294 (see: hvsock vm create --help)' \
  "${H[@]}" vm create db --cid 99999999999
expect 2 'hvsock: service register: --port: Value 2147483648 not in range 0 to 2147483647 (see: hvsock service register --help)' \
  "${H[@]}" service register --name big --port 2147483648
expect 2 'hvsock: agent: --max-sessions: Value 0 not in range 1 to 4096 (see: hvsock agent --help)' \
  "${H[@]}" agent --max-sessions 0
expect 2 'hvsock: forward: --max-connections: Value 65537 not in range 1 to 65536 (see: hvsock forward --help)' \
  "${H[@]}" forward --max-connections 65537 --listen tcp:127.0.0.1:8080 --to web:echo
expect 2 'hvsock: exec: --timeout: Value 0 not in range 1 to 3600000 (see: hvsock exec --help)' \
  "${H[@]}" exec --timeout 0 web -- true
expect 2 'hvsock: connect: --timeout: Value 0 not in range 1 to 3600000 (see: hvsock connect --help)' \
  "${H[@]}" connect --timeout 0 web echo
[[ ! -e "$work/fwd.sock" ]] || fail "a refused forward listened"
[[ $(hv vm list --json | grep -c '"name"') -eq 2 ]] || fail "a partition was created: $(hv vm list)"
[[ $(hv service list --json | grep -c '"name"') -eq 1 ]] || fail "a service changed: $(hv service list)"
# A port number in range works for enable/disable/remove (no name lookup).
hv service disable 5000
hv service list | grep -Eq ' echo +no ' || fail "service disable 5000: $(hv service list)"
hv service enable 5000
hv service list | grep -Eq ' echo +yes ' || fail "service enable 5000: $(hv service list)"
ok "service enable/disable take a vsock port number"

# 5. hvsockd answers like hvsock.
expect 2 'hvsockd: The following argument was not expected: --frobnicate (see: hvsockd --help)' \
  "$hvsockd" --frobnicate
expect 2 'hvsockd: --max-clients: Value 0 not in range 1 to 1048576 (see: hvsockd --help)' \
  "$hvsockd" --max-clients 0
expect 2 'hvsockd: --max-clients: Value 99999999999999999999999 not in range 1 to 1048576 (see: hvsockd --help)' \
  "$hvsockd" --max-clients 99999999999999999999999
expect 2 'hvsockd: --socket-mode: expected an octal mode 0..0777 such as 0600 or 0660, got "01777" (see: hvsockd --help)' \
  "$hvsockd" --socket-mode 01777
expect 2 'hvsockd: --socket-mode: expected an octal mode 0..0777 such as 0600 or 0660, got "0689" (see: hvsockd --help)' \
  "$hvsockd" --socket-mode 0689
# The running daemon was not disturbed by any of them.
hv status >/dev/null || fail "hvsockd stopped answering"
ok "all mistakes answered with their exact message"
