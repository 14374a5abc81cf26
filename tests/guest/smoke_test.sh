#!/usr/bin/env bash
# Smoke test of the guest kit (scripts/guest-kit): builds the kit if needed,
# compiles a statically linked C program, boots QEMU (TCG) twice with it and
# checks what the guest printed and the exit status run-guest.sh returned:
#   1. the command convention: run-guest.sh -- PROG ARGS (an argument with a
#      blank, an environment variable from --env), plus the virtio and vsock
#      modules loaded (or, as on the 6.12 kernel, built in: KIT_BUILTIN_MODULES,
#      with the virtio bus and the virtio-pci driver there) and /dev/vsock
#      present (there is no vsock device yet);
#   2. the /opt/hvsock/run convention: no command, a script placed there.
#
# Usage: smoke_test.sh KIT_DIR
set -euo pipefail

(($# == 1)) || {
  echo "usage: smoke_test.sh KIT_DIR" >&2
  exit 2
}
kit=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kit_scripts="$here/../../scripts/guest-kit"

failures=0
pass() { printf 'ok: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*"
  failures=$((failures + 1))
}
expect_line() { # FILE LINE WHAT
  if grep -qxF -- "$2" "$1"; then pass "$3"; else fail "$3: no line '$2'"; fi
}

# Usually already built by the guest.kit fixture; then this is a no-op.
bash "$kit_scripts/build-kit.sh" "$kit"

work=$(mktemp -d "${TMPDIR:-/tmp}/hvsock-guest-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT

cc=${CC:-cc}
"$cc" -static -O2 -o "$work/smoke-program" "$here/smoke_program.c" ||
  {
    echo "FAIL: cannot link a static program with $cc (is libc6-dev installed?)"
    exit 1
  }

cat >"$work/check-modules" <<'EOF'
#!/bin/sh
# Runs inside the guest: the program, then what the kit promises.
smoke-program "$@"
status=$?
for module in virtio_ring virtio virtio_pci vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  grep -q "^$module " /proc/modules && echo "guest-smoke: module $module loaded"
done
[ -d /sys/bus/virtio ] && echo "guest-smoke: virtio bus present"
[ -d /sys/bus/pci/drivers/virtio-pci ] && echo "guest-smoke: virtio-pci driver present"
[ -c /dev/vsock ] && echo "guest-smoke: /dev/vsock is a character device"
exit $status
EOF
chmod +x "$work/check-modules"

echo "== boot 1: run-guest.sh -- COMMAND"
status=0
bash "$kit_scripts/run-guest.sh" --kit "$kit" --timeout 180 --log "$work/boot1.log" \
  --add "$work/smoke-program" --add "$work/check-modules" \
  --env 'SMOKE_GREETING=hi there' \
  -- check-modules one "two words" || status=$?
if ((status == 42)); then pass "exit status 42 came back"; else fail "exit status $status, expected 42"; fi
expect_line "$work/boot1.log" "hvsock-guest: ready" "ready marker"
expect_line "$work/boot1.log" "guest-smoke: hello, argc=3 [one] [two words] greeting=[hi there]" \
  "program output, arguments and environment"
expect_line "$work/boot1.log" "hvsock-guest: exit 42" "exit marker"
builtin_modules=" $(sed -n 's/^KIT_BUILTIN_MODULES="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$kit/kit.env") "
for module in virtio_ring virtio virtio_pci vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  if [[ "$builtin_modules" == *" $module "* ]]; then
    pass "module $module built into the kernel"
  else
    expect_line "$work/boot1.log" "guest-smoke: module $module loaded" "module $module loaded"
  fi
done
expect_line "$work/boot1.log" "guest-smoke: virtio bus present" "virtio bus"
expect_line "$work/boot1.log" "guest-smoke: virtio-pci driver present" "virtio-pci driver"
expect_line "$work/boot1.log" "guest-smoke: /dev/vsock is a character device" "/dev/vsock"

echo "== boot 2: /opt/hvsock/run, no command"
cat >"$work/run" <<'EOF'
#!/bin/sh
echo "guest-smoke: /opt/hvsock/run ran as $(id -u) on $(uname -r)"
exit 3
EOF
chmod +x "$work/run"
status=0
bash "$kit_scripts/run-guest.sh" --kit "$kit" --timeout 180 --log "$work/boot2.log" \
  --add "$work/run:/opt/hvsock/run" </dev/null || status=$?
if ((status == 3)); then pass "exit status 3 came back"; else fail "exit status $status, expected 3"; fi
release=$(sed -n 's/^KIT_KERNEL_RELEASE=//p' "$kit/kit.env")
expect_line "$work/boot2.log" "guest-smoke: /opt/hvsock/run ran as 0 on $release" "/opt/hvsock/run output"

if ((failures)); then
  echo "guest smoke test: $failures check(s) failed"
  exit 1
fi
echo "guest smoke test: all checks passed"
