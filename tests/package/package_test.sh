#!/usr/bin/env bash
# The Debian packages as a user gets them (issue 11): builds them with
# scripts/package.sh, checks them with lintian (no errors), installs them
# with dpkg -i, verifies the systemd unit, starts the installed
# /usr/sbin/hvsockd on its default directories under a test NOTIFY_SOCKET
# (READY=1, WATCHDOG=1, STOPPING=1: tests/daemon/systemd_notify_test.py),
# runs CLI commands against it, checks the man pages and the bash
# completion (with the VM it created), builds a consumer against the installed
# headers with find_package(hvsock) and with pkg-config, then removes (the
# state stays), reinstalls (it is still there) and purges (nothing of the
# packages is left, /var/lib/hvsock neither).
#
# Changes the machine: run as root on a machine without hvsock installed
# (scripts/test.sh runs it in CI). Usage: package_test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fail() {
  echo "FAIL: $*"
  exit 1
}
ok() { echo "ok: $*"; }
[[ "$(id -u)" == 0 ]] || fail "package_test.sh installs packages: run it as root"
installed=$(dpkg-query -W -f='${db:Status-Status} ' hvsock libhvsock-dev 2>/dev/null || true)
if [[ "$installed" == *installed* ]]; then
  fail "hvsock is installed as a package here: this test installs and purges it, run it elsewhere"
fi
work=$(mktemp -d /var/tmp/hvpackage-XXXXXX)
daemon_pid=""
# A state directory of hand-started daemons (scripts/demo.sh uses the
# default one) is put aside for the test and restored afterwards.
saved=""
for dir in /var/lib/hvsock /run/hvsock; do
  if [[ -e "$dir" ]]; then
    mkdir -p "$work/saved"
    mv "$dir" "$work/saved/${dir//\//_}"
    saved+=" $dir"
  fi
done
cleanup() {
  [[ -z "$daemon_pid" ]] || kill "$daemon_pid" 2>/dev/null || true
  dpkg --purge hvsock libhvsock-dev >/dev/null 2>&1 || true
  local dir
  for dir in $saved; do
    rm -rf "$dir"
    mv "$work/saved/${dir//\//_}" "$dir"
  done
  rm -rf "$work"
}
trap cleanup EXIT

mapfile -t debs < <(bash "$repo/scripts/package.sh" 2>"$work/package.log") ||
  { tail -n 30 "$work/package.log"; fail "scripts/package.sh failed"; }
((${#debs[@]} == 2)) || fail "expected 2 packages, got: ${debs[*]}"
ok "built: ${debs[*]##*/}"
for deb in "${debs[@]}"; do
  echo "---- $(basename "$deb")"
  dpkg-deb --field "$deb" Package Version Depends Recommends
done

# lintian: errors fail; warnings are shown.
lintian --fail-on error --suppress-tags-from-file /dev/null "${debs[@]}" >"$work/lintian.log" 2>&1 ||
  { cat "$work/lintian.log"; fail "lintian found errors"; }
ok "lintian: no errors ($(grep -c '^W:' "$work/lintian.log" || true) warnings)"
sed -n 's/^/  /p' "$work/lintian.log"

dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i failed"; }
for file in /usr/sbin/hvsockd /usr/bin/hvsock /usr/bin/hvsock-static; do
  [[ -x "$file" ]] || fail "$file is not installed"
done
[[ -f /lib/systemd/system/hvsockd.service ]] || fail "the systemd unit is not installed"
[[ -f /usr/include/hvsock/hvsock.hpp ]] || fail "the headers are not installed"
dpkg -L hvsock libhvsock-dev | sort >"$work/files"
ok "installed $(wc -l <"$work/files") paths"

# The man pages and the completion file are where man and bash-completion
# look; the pages render without a warning. (Minimised images tell dpkg not
# to unpack man pages: then the package's own contents are checked.)
pages=(man1/hvsock.1.gz man1/hvsock-static.1.gz man8/hvsockd.8.gz)
man_unpacked=1
grep -qs '^path-exclude=*/usr/share/man' /etc/dpkg/dpkg.cfg.d/* && man_unpacked=0
if ((!man_unpacked)); then
  contents=$(dpkg-deb -c "$(printf '%s\n' "${debs[@]}" | grep '/hvsock_')")
  for page in "${pages[@]}"; do
    grep -q "/usr/share/man/$page\$" <<<"$contents" ||
      fail "the package has no /usr/share/man/$page"
  done
  ok "man pages in the package (this machine's dpkg does not unpack man pages)"
else
  for page in "${pages[@]}"; do
    [[ -f /usr/share/man/$page ]] || fail "/usr/share/man/$page is not installed"
  done
  for page in hvsock hvsockd hvsock-static; do
    path=$(man -w "$page" 2>/dev/null) || fail "man -w $page finds no page"
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$path" 2>&1 >/dev/null)
    [[ -z "$warnings" ]] || fail "man $page: $warnings"
  done
  ok "man -w hvsock, hvsockd, hvsock-static: installed, rendered without a warning"
fi
completion=/usr/share/bash-completion/completions/hvsock
[[ -f "$completion" ]] || fail "$completion is not installed"
cmp -s "$completion" <(hvsock completion bash) ||
  fail "$completion is not what hvsock completion bash prints"

# The unit as systemd reads it; its Documentation= pages are installed now
# (unless this dpkg leaves man pages out: then those notes are expected).
systemd-analyze verify /lib/systemd/system/hvsockd.service >"$work/verify.log" 2>&1 || true
((man_unpacked)) || sed -i "/Command 'man /d" "$work/verify.log"
if grep -q . "$work/verify.log"; then
  cat "$work/verify.log"
  fail "systemd-analyze verify found problems in hvsockd.service"
fi
ok "systemd-analyze verify hvsockd.service: clean"

# The installed daemon, as the unit runs it, speaks the notify protocol.
HVSOCK_TRANSPORT=emulated python3 "$repo/tests/daemon/systemd_notify_test.py" \
  /usr/sbin/hvsockd /usr/bin/hvsock
# ... and on its default directories, with the installed CLI and preload shim.
export HVSOCK_TRANSPORT=emulated
/usr/sbin/hvsockd 2>"$work/hvsockd.log" &
daemon_pid=$!
for _ in $(seq 100); do hvsock status >/dev/null 2>&1 && break; sleep 0.1; done
hvsock status >/dev/null || fail "the installed hvsockd does not answer: $(cat "$work/hvsockd.log")"
hvsock vm create web >/dev/null
hvsock service register --name "package echo" --port 5000 >/dev/null
echo hello >"$work/in"
hvsock listen -r "package echo" >"$work/got" 2>"$work/listen.err" &
listen_pid=$!
for _ in $(seq 100); do grep -q listening "$work/listen.err" && break; sleep 0.1; done
hvsock run --vm web -- socat -u "FILE:$work/in" VSOCK-CONNECT:2:5000 ||
  fail "an unmodified vsock program under the installed shim could not connect"
wait "$listen_pid" || fail "hvsock listen: $(cat "$work/listen.err")"
[[ "$(cat "$work/got")" == hello ]] || fail "hvsock listen got '$(cat "$work/got")'"
ok "installed hvsockd on /var/lib/hvsock and /run/hvsock; socat in VM web under the installed shim reached hvsock listen"
# The installed completion names the daemon's partitions.
offered=$(bash --norc --noprofile -c 'source "$1"; COMP_WORDS=(hvsock vm remove w); COMP_CWORD=3
  _hvsock; printf "%s\n" "${COMPREPLY[@]}"' completion "$completion")
[[ "$offered" == web ]] || fail "the installed completion offered '$offered' for hvsock vm remove w"
ok "the installed completion: hvsock vm remove w<TAB> -> web"
kill "$daemon_pid"
wait "$daemon_pid" || fail "hvsockd exited non-zero on SIGTERM: $(cat "$work/hvsockd.log")"
daemon_pid=""

# A program built against the installed headers, both ways.
cmake -S "$repo/tests/install/consumer" -B "$work/consumer" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer" "$work/none.sock" >/dev/null || fail "the find_package consumer failed"
# shellcheck disable=SC2046 # the flags are words
c++ -std=c++20 -o "$work/consumer-pc" "$repo/tests/install/consumer/main.cpp" \
  $(pkg-config --cflags --libs hvsock)
"$work/consumer-pc" "$work/none.sock" >/dev/null || fail "the pkg-config consumer failed"
ok "a consumer builds and runs with find_package(hvsock) and with pkg-config ($(pkg-config --libs hvsock))"

# remove keeps the state, reinstall finds it, purge removes everything.
state=/var/lib/hvsock/state.json
[[ -f "$state" ]] || fail "no $state after the daemon ran"
dpkg -r hvsock libhvsock-dev >/dev/null
[[ -f "$state" ]] || fail "dpkg -r removed $state"
dpkg -i "${debs[@]}" >/dev/null
grep -q '"web"' "$state" || fail "the reinstalled package lost VM web"
ok "dpkg -r keeps /var/lib/hvsock; reinstalling finds VM web again"
dpkg --purge hvsock libhvsock-dev >/dev/null
[[ ! -e /var/lib/hvsock ]] || fail "dpkg --purge left /var/lib/hvsock"
left=()
while read -r path; do
  [[ -e "$path" && ! -d "$path" ]] && left+=("$path")
done <"$work/files"
((${#left[@]} == 0)) || fail "files left after purge: ${left[*]}"
ok "dpkg --purge: no file of the packages left, nor /var/lib/hvsock"
echo "package test passed"
