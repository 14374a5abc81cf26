#!/bin/sh
# /init of the hvsock guest kit (busybox sh, PID 1 in the guest).
#
# Mounts the pseudo file systems, loads the virtio, vsock and virtio-net
# modules listed in /lib/modules/load-order (one name a line, dependencies
# first), configures eth0 if there is one, prints "hvsock-guest: ready", runs
# the guest command and reports its status as "hvsock-guest: exit N" before
# powering the VM off. See docs/guest-kit.md.
#
# The guest command is, in this order of preference:
#   1. the words after "hvsock-run" among the init arguments: the kernel
#      command line "... -- hvsock-run PROG ARGS..." (run-guest.sh writes its
#      COMMAND so). The kernel also hands init any bare word it does not know
#      (e.g. "nokaslr" on a PVH boot), so the marker word is what counts;
#      double quotes group words with spaces: hvsock-run /bin/sh -c "a; b";
#   2. /opt/hvsock/run, if it is executable (e.g. a file added as PROG:/opt/hvsock/run);
#   3. an interactive shell on the console.
# Kernel command-line words of the form NAME=VALUE that the kernel does not
# know (run-guest.sh --env) arrive as environment variables.
#
# A failure before the command runs prints "hvsock-guest: setup failed: WHY"
# and powers off without an exit line.

export PATH=/opt/hvsock:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
export TERM="${TERM:-linux}"

# Lets the console drain before the VM is switched off: busybox stty applies
# its settings with tcsetattr(TCSADRAIN), which waits until the UART has sent
# everything queued. Without it the last lines could be lost.
drain_console() {
  stty -F /dev/console onlcr 2>/dev/null || true
}

power_off() {
  drain_console
  sync
  poweroff -f
  # poweroff -f does not return; if it did, PID 1 exiting panics the kernel,
  # and with panic=-1 and QEMU's -no-reboot that ends QEMU as well.
  exit 1
}

setup_failed() {
  echo "hvsock-guest: setup failed: $*"
  power_off
}

mount -t proc proc /proc || setup_failed "mount /proc"
mount -t sysfs sysfs /sys || setup_failed "mount /sys"
mount -t devtmpfs devtmpfs /dev || setup_failed "mount /dev"
mkdir -p /dev/pts /dev/shm /tmp /run /root
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
exec </dev/console >/dev/console 2>&1

hostname hvsock-guest
ip link set lo up 2>/dev/null

while read -r module; do
  case "$module" in '' | '#'*) continue ;; esac
  insmod "/lib/modules/$module.ko" || setup_failed "insmod $module"
done </lib/modules/load-order

# A NIC (e.g. QEMU's -netdev user with virtio-net-pci, the baseline of the
# benchmarks) gets QEMU user networking's usual guest address, unless
# HVSOCK_GUEST_IP=none; HVSOCK_GUEST_IP / HVSOCK_GUEST_GATEWAY change it.
if [ -e /sys/class/net/eth0 ] && [ "${HVSOCK_GUEST_IP:-}" != none ]; then
  if ! { ip link set eth0 up &&
    ip addr add "${HVSOCK_GUEST_IP:-10.0.2.15/24}" dev eth0 &&
    ip route add default via "${HVSOCK_GUEST_GATEWAY:-10.0.2.2}"; }; then
    setup_failed "configure eth0"
  fi
fi

echo "hvsock-guest: ready"

have_command=0
while [ "$#" -gt 0 ]; do
  arg=$1
  shift
  if [ "$arg" = hvsock-run ]; then
    have_command=1
    break
  fi
done

if [ "$have_command" = 1 ] && [ "$#" -gt 0 ]; then
  "$@"
  status=$?
elif [ -x /opt/hvsock/run ]; then
  /opt/hvsock/run
  status=$?
else
  echo "hvsock-guest: no command given: starting a shell (exit it to power off)"
  setsid cttyhack sh -l
  status=$?
fi

echo "hvsock-guest: exit $status"
power_off
