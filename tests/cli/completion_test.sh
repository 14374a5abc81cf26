#!/usr/bin/env bash
# hvsock completion bash (issue 11): the printed script, sourced in a fresh
# bash, completes commands, options and choices from hvsock's own
# definitions, and partition and service names asked of a running hvsockd;
# with hvsockd down (or hung) it offers no names, prints nothing and is quick.
# Drives _hvsock through COMP_WORDS/COMP_CWORD as bash's `complete -F` does.
# Usage: completion_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: completion_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"

script="$work/hvsock.bash"
"$cli" completion bash >"$script" || fail "hvsock completion bash failed"
bash -n "$script" || fail "the completion script is not valid bash"
grep -q '^complete -F _hvsock hvsock hvsock-static$' "$script" ||
  fail "the script does not register _hvsock for hvsock and hvsock-static"

# candidates WORD...: what _hvsock offers for the command line `$cli WORD...`
# with the cursor at the end of the last WORD; one a line, sorted. Its
# stderr goes to $work/completion.err.
candidates() {
  bash --norc --noprofile -c '
    script=$1
    shift
    source "$script"
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    _hvsock
    ((${#COMPREPLY[@]} == 0)) || printf "%s\n" "${COMPREPLY[@]}" | sort' \
    completion "$script" "$cli" "$@" 2>"$work/completion.err"
}

# wanted "WANT...": the words of WANT one a line, sorted, each as the
# completion offers it (shell-quoted: 'HV\ Demo' is one name with a space).
wanted() {
  local -a words
  local word
  read -a words <<<"$1" # without -r: a backslash keeps a space inside a word
  for word in "${words[@]}"; do printf '%q\n' "$word"; done | sort
}

# expect_exactly "WANT..." WORD...: the candidates are exactly WANT.
expect_exactly() {
  local want got
  want=$(wanted "$1")
  shift
  got=$(candidates "$@")
  [[ "$got" == "$want" ]] || fail "hvsock $*<TAB>: expected [$(echo $want)], got [$(echo $got)]"
  [[ ! -s "$work/completion.err" ]] || fail "hvsock $*<TAB> printed: $(cat "$work/completion.err")"
  ok "hvsock $*<TAB> -> [$(echo $got)]"
}

# expect_including "WANT..." WORD...: each of WANT is among the candidates.
expect_including() {
  local want=$1 got word
  shift
  got=$(candidates "$@")
  for word in $(wanted "$want"); do
    grep -qxF -- "$word" <<<"$got" || fail "hvsock $*<TAB>: no $word in [$(echo $got)]"
  done
  [[ ! -s "$work/completion.err" ]] || fail "hvsock $*<TAB> printed: $(cat "$work/completion.err")"
  ok "hvsock $*<TAB> includes [$want]"
}

# expect_quiet WORD...: no candidate, nothing on stderr, within 3 seconds.
expect_quiet() {
  local started elapsed got
  started=$(date +%s%N)
  got=$(candidates "$@")
  elapsed=$((($(date +%s%N) - started) / 1000000))
  [[ -z "$got" ]] || fail "hvsock $*<TAB> with hvsockd down: offered [$(echo $got)]"
  [[ ! -s "$work/completion.err" ]] || fail "hvsock $*<TAB> printed: $(cat "$work/completion.err")"
  ((elapsed < 3000)) || fail "hvsock $*<TAB> with hvsockd down took ${elapsed} ms"
  ok "hvsock $*<TAB> with hvsockd down: nothing, quiet, ${elapsed} ms"
}

# 1. hvsockd not running yet: names are nothing, quickly and quietly.
expect_quiet vm remove ""
expect_quiet exec ""
expect_quiet service enable ""
expect_quiet connect web ""

# 2. Commands, options and choices come from the definitions.
expect_exactly "status service vm run listen connect stats agent exec forward cp completion" ""
expect_exactly "service stats status" s
expect_exactly "create list remove set" vm ""
expect_exactly "register list enable disable remove export import" service ""
expect_exactly "-h --help --version --runtime-dir" -
expect_exactly "--qemu --qmp" vm create db --q
expect_including "--parent --kind --id --cid --qemu --help --runtime-dir" vm create db -
expect_exactly "vm container" vm create db --kind ""
expect_exactly "prometheus" stats --format p
expect_exactly "bash" completion ""
expect_exactly "--json" vm list --j
# A leaf with nothing to name offers its options.
expect_including "--json --help" service list ""

# 3. Live names from a running hvsockd.
start_daemon
hv vm create web >/dev/null
hv vm create db >/dev/null
hv service register --name echo --port 5000 >/dev/null
hv service register --name "HV Demo" >/dev/null
expect_including "web db" vm remove ""
expect_exactly "web" vm remove w
expect_including "web db" vm set ""
expect_exactly "web" exec w
expect_exactly "db" run --vm d
expect_exactly "web" service disable echo --vm w
expect_exactly "web" --runtime-dir "$work/run" vm remove w
expect_including "web db parent loopback" connect ""
expect_including "web db any children parent loopback" listen --from ""
expect_including "children any parent loopback web" agent --allow ""
expect_exactly 'echo HV\ Demo' service enable ""
expect_exactly 'HV\ Demo' connect web H
expect_exactly "echo" listen e
# After --: a command to run here, nothing for one run in a VM.
expect_including "echo" run --vm web -- ech
expect_exactly "" exec web -- ""
# cp's paths are local files.
touch "$work/copy-me"
expect_exactly "$work/copy-me" cp "$work/copy-"
# --runtime-dir on the line is where the names are asked for.
HVSOCK_RUNTIME_DIR="$work/elsewhere" expect_exactly "web" --runtime-dir "$work/run" vm remove w
HVSOCK_RUNTIME_DIR="$work/elsewhere" expect_quiet vm remove w

# 4. A hvsockd that accepts but never answers: still quiet, and bounded.
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
expect_quiet vm remove ""
mkdir -p "$work/hung"
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1] + "/hvsockd.sock")
s.listen(8)
print("listening", flush=True)
time.sleep(60)' "$work/hung" >"$work/hung.log" 2>&1 &
background_pids+=("$!")
wait_for_line "$work/hung.log" listening 10
HVSOCK_RUNTIME_DIR="$work/hung" expect_quiet service enable ""
echo "completion test passed"
