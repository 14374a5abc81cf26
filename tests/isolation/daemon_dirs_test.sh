#!/usr/bin/env bash
# hvsockd refuses state and runtime directories that are not its own or that
# group or others may write (they could replace its sockets or registry),
# with one clear line and a non-zero exit, and starts on its own ones.
# Usage: daemon_dirs_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: daemon_dirs_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

# refuses STATE RUNTIME REGEX: hvsockd must exit non-zero, saying REGEX.
refuses() {
  local state=$1 runtime=$2 regex=$3 status=0
  timeout 20 "$hvsockd" --state-dir "$state" --runtime-dir "$runtime" 2>"$work/refused.err" ||
    status=$?
  ((status != 0 && status != 124)) || fail "hvsockd started (status $status) on $state / $runtime"
  grep -qE "$regex" "$work/refused.err" || fail "unclear refusal: $(cat "$work/refused.err")"
  [[ -e "$runtime/hvsockd.sock" ]] && fail "a management socket was created in $runtime"
  ok "refused: $(head -n 1 "$work/refused.err")"
}

mkdir -m 0777 "$work/open-run"
chmod 0777 "$work/open-run" # past the umask
refuses "$work/state1" "$work/open-run" "refusing to use runtime directory .*writable by others \(mode 0777\)"
mkdir -m 0770 "$work/group-state"
chmod 0770 "$work/group-state"
refuses "$work/group-state" "$work/run2" "refusing to use state directory .*writable by its group"
mkdir -p "$work/real-run"
ln -s "$work/real-run" "$work/link-run"
refuses "$work/state3" "$work/link-run" "symbolic link"
if id nobody >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  mkdir -m 0700 "$work/foreign-run"
  chown nobody "$work/foreign-run"
  refuses "$work/state4" "$work/foreign-run" "belongs to uid [0-9]+, not to uid 0"
fi

# Its own directories, created or pre-created private: it starts.
mkdir -m 0700 "$work/run"
start_daemon
ok "hvsockd starts on private directories"
