#!/usr/bin/env bash
# hvsock cp through the guest agent in VM web, with real processes: a file
# both ways with its mode, a 1 GiB file with a checksum, a directory tree
# with modes, no setuid/setgid bits and no writing through a link planted
# in the destination, refusals (missing source, missing destination
# directory, a file as a directory), and no partial file left when a copy is
# cut off.
# Usage: cp_test.sh HVSOCKD HVSOCK_CLI
set -euo pipefail
(($# == 2)) || {
  echo "usage: cp_test.sh HVSOCKD HVSOCK_CLI" >&2
  exit 2
}
hvsockd=$1 cli=$2
# shellcheck source=../support/test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/test_lib.sh"
cp_() { timeout 300 "$cli" --runtime-dir "$work/run" cp "$@"; }
sum() { sha256sum <"$1" | cut -d' ' -f1; }

start_daemon
hv vm create web >/dev/null
hv service register --name "hvsock Guest Agent" --port 18518 >/dev/null
"$cli" --runtime-dir "$work/run" run --vm web -- "$cli" agent 2>>"$work/agent.log" &
background_pids+=($!)
wait_for_line "$work/agent.log" '^hvsock agent: listening' 10
mkdir -p "$work/vm" "$work/back"  # "in the VM": an emulated VM shares this file system

head -c 3000000 /dev/urandom >"$work/small"
chmod 640 "$work/small"
cp_ "$work/small" "web:$work/vm/small.copy"
[[ "$(sum "$work/vm/small.copy")" == "$(sum "$work/small")" ]] || fail "into the VM: different bytes"
[[ "$(stat -c %a "$work/vm/small.copy")" == 640 ]] || fail "into the VM: mode not kept"
cp_ "web:$work/vm/small.copy" "$work/back/"
[[ "$(sum "$work/back/small.copy")" == "$(sum "$work/small")" ]] || fail "out of the VM: different bytes"
[[ "$(stat -c %a "$work/back/small.copy")" == 640 ]] || fail "out of the VM: mode not kept"
ok "a file into the VM and back out (into an existing directory), bytes and mode kept"

# 1 GiB; sanitizer builds, many times slower, set HVSOCK_CP_TEST_BIG_MIB lower.
big_mib=${HVSOCK_CP_TEST_BIG_MIB:-1024}
head -c $((big_mib * 1048576)) /dev/urandom >"$work/big"
want=$(sum "$work/big")
cp_ "$work/big" "web:$work/vm/big"
[[ "$(sum "$work/vm/big")" == "$want" ]] || fail "$big_mib MiB into the VM: checksum differs"
rm -f "$work/big"
cp_ "web:$work/vm/big" "$work/back/big"
[[ "$(sum "$work/back/big")" == "$want" ]] || fail "$big_mib MiB out of the VM: checksum differs"
rm -f "$work/vm/big" "$work/back/big"
ok "$big_mib MiB both ways, sha256 equal (each side also checks XXH3-128)"

mkdir -p "$work/tree/a/b" "$work/tree/c"
echo one >"$work/tree/one"
echo two >"$work/tree/a/b/two"
chmod 750 "$work/tree/a"
chmod 600 "$work/tree/a/b/two"
cp_ "$work/tree" "web:$work/vm/"
cp_ "web:$work/vm/tree" "$work/back/tree"
diff -r "$work/tree" "$work/back/tree" || fail "the tree came back different"
[[ "$(stat -c %a "$work/back/tree/a")" == 750 && "$(stat -c %a "$work/back/tree/a/b/two")" == 600 ]] ||
  fail "tree modes not kept"
[[ -d "$work/back/tree/c" ]] || fail "an empty directory was lost"
ok "a directory tree both ways, with modes and an empty directory"

# setuid/setgid never arrive (and the sticky bit not on files): cp without -p.
mkdir -p "$work/special"
echo a >"$work/special/suid" && chmod 4755 "$work/special/suid"
echo b >"$work/special/sgid" && chmod 2750 "$work/special/sgid"
echo c >"$work/special/sticky" && chmod 1644 "$work/special/sticky"
cp_ "$work/special" "web:$work/vm/"
modes=$(cd "$work/vm/special" && stat -c '%n %a' suid sgid sticky | tr '\n' ' ')
[[ "$modes" == "suid 755 sgid 750 sticky 644 " ]] || fail "into the VM, special bits: $modes"
chmod 6755 "$work/vm/special/suid"  # as if the VM made it setuid root
cp_ "web:$work/vm/special/suid" "$work/back/suid"
[[ "$(stat -c %a "$work/back/suid")" == 755 ]] ||
  fail "out of the VM, a setuid file arrived as $(stat -c %a "$work/back/suid")"
ok "setuid, setgid and sticky bits dropped both ways: $modes; out: $(stat -c %a "$work/back/suid")"

# A link planted inside the destination tree (pointing at a stand-in for
# /etc) is not followed, both ways: the copy fails naming it, nothing appears
# where it points.
mkdir -p "$work/etc" "$work/payload/sub" "$work/vm/payload" "$work/back/payload"
echo "root::0:0::/:/bin/sh" >"$work/payload/sub/passwd"
ln -s "$work/etc" "$work/vm/payload/sub"
ln -s "$work/etc" "$work/back/payload/sub"
planted() {
  local what=$1 link=$2 status=0
  shift 2
  cp_ "$@" 2>"$work/err" || status=$?
  ((status == 1)) && grep -qF "$link: a symbolic link" "$work/err" ||
    fail "$what: status $status, '$(cat "$work/err")' does not name the link $link"
  [[ -z "$(ls -A "$work/etc")" ]] || fail "$what: written through the link: $(ls -A "$work/etc")"
  [[ -L "$link" ]] || fail "$what: the link was replaced"
  ok "$what: $(cat "$work/err")"
}
planted "into the VM onto a planted link" "$work/vm/payload/sub" "$work/payload" "web:$work/vm/"
planted "out of the VM onto a planted link" "$work/back/payload/sub" \
  "web:$work/payload" "$work/back/"
ln -s "$work/etc/passwd" "$work/vm/passwd"  # dangling: where a file is to go
planted "a file onto a planted dangling link" "$work/vm/passwd" \
  "$work/payload/sub/passwd" "web:$work/vm/"

refused() {
  local what=$1 expected=$2 status=0
  shift 2
  cp_ "$@" 2>"$work/err" || status=$?
  ((status == 1)) && grep -q "$expected" "$work/err" ||
    fail "$what: status $status, '$(cat "$work/err")' does not say '$expected'"
  ok "$what: $(cat "$work/err")"
}
refused "a missing source in the VM" "No such file or directory" "web:$work/vm/nothing" "$work/back/"
refused "a missing local source" "no such file or directory" "$work/nothing" "web:$work/vm/"
refused "a missing destination directory" "No such file or directory" "$work/small" "web:$work/vm/no/dir/x"
refused "a file used as a directory" "Not a directory" "$work/small" "web:$work/vm/small.copy/x"
status=0
cp_ "$work/small" "$work/elsewhere" 2>"$work/err" || status=$?
((status == 2)) || fail "two local paths: expected a usage error, got $status"

python3 "$(dirname "${BASH_SOURCE[0]}")/agent_misuse.py" "$cli" "$work/run" "$work" ||
  fail "the agent took bad input"

# Cut off midway: the client is killed during a large copy into the VM; no
# file, partial or hidden, may be left in the destination directory.
mkdir -p "$work/vm/cut"
head -c 536870912 /dev/zero >"$work/half"
"$cli" --runtime-dir "$work/run" cp "$work/half" "web:$work/vm/cut/half" 2>/dev/null &
copier=$!
# Files the agent's session holds open under the destination (the copy
# being written, O_TMPFILE or hidden name).
writing() { find /proc/[0-9]*/fd -lname "$work/vm/cut/*" 2>/dev/null | head -1; }
started=""
for _ in $(seq 500); do
  [[ -n "$(ls -A "$work/vm/cut")" || -n "$(writing)" ]] && started=1 && break
  sleep 0.02
done
[[ -n "$started" ]] || fail "the copy to cut off never started"
kill -KILL "$copier" 2>/dev/null || true
wait "$copier" 2>/dev/null || true
# The session notices its peer gone and ends: wait until nothing holds a
# file there any more.
for _ in $(seq 500); do [[ -z "$(writing)" ]] && break; sleep 0.02; done
[[ -z "$(writing)" ]] || fail "the agent's session still writes after the client was killed"
[[ -z "$(ls -A "$work/vm/cut")" ]] || fail "a cut-off copy left: $(ls -A "$work/vm/cut")"
ok "a copy cut off midway leaves nothing behind"
echo "cp test passed"
