#!/usr/bin/env bash
# Boots the hvsock guest kit under QEMU (TCG) and runs one command in the
# guest; exits with that command's exit status. See docs/guest-kit.md.
#
# Usage: run-guest.sh [OPTION]... [--qemu QEMU_ARG... ] [-- COMMAND [ARG]...]
#
#   --kit DIR              the kit built by build-kit.sh (default:
#                          $HVSOCK_GUEST_KIT, else <repo>/build/guest-kit)
#   --add FILE[:GUEST_PATH]
#                          put FILE into the guest, at GUEST_PATH (default
#                          /opt/hvsock/BASENAME, on the guest's PATH); ELF
#                          files must be statically linked (repeatable)
#   --initrd FILE          boot this initramfs instead of the kit's
#   --env NAME=VALUE       environment variable for COMMAND (repeatable)
#   --append TEXT          extra kernel command-line parameters
#   --memory SIZE          guest memory (default 512M)
#   --vsock-socket PATH    add a vhost-user-vsock-pci device whose backend
#                          (hvsockd) listens on the Unix socket PATH, with the
#                          shared memfd guest memory that vhost-user needs
#   --machine q35          the q35 machine (default: QEMU's pc); the vsock
#                          device then sits on a PCIe root port, where it can
#                          be hot-unplugged (q35's own bus cannot)
#   --qmp PATH             QEMU serves QMP on the Unix socket PATH (for
#                          hvsock vm create --qmp PATH: hvsockd re-plugs the
#                          vsock device through it after hvsockd restarts)
#   --timeout SECONDS      stop QEMU after this long (default 120; 0: never)
#   --log FILE             also write the guest's console output to FILE
#   --pidfile FILE         QEMU writes its pid there (to kill it in a test)
#   --interactive          the console on this terminal, no timeout (Ctrl-A X
#                          quits QEMU); the default with no COMMAND on a tty
#   --verbose              show the kernel's messages (no "quiet")
#   --seabios              boot with SeaBIOS instead of the faster qboot
#   --print-command        print the QEMU command line and exit
#   --qemu QEMU_ARG...     extra QEMU arguments, up to a "--" or the end
#   --qemu-arg QEMU_ARG    one extra QEMU argument (repeatable)
#
# COMMAND runs in the guest as root, on the console, after the modules are
# loaded; with no COMMAND the guest runs /opt/hvsock/run if present, else a
# shell. The console output (CR stripped) goes to stdout; this script's own
# messages, the boot time among them, go to stderr.
#
# Exit status: COMMAND's exit status as the guest reported it
# ("hvsock-guest: exit N"); 124 if the timeout expired; 125 if the guest never
# reported one (QEMU failed, kernel panic, guest setup failed); 2 for a usage
# error.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir
repo_root=$(cd "$script_dir/../.." && pwd)
readonly repo_root
readonly qboot_rom=/usr/share/qemu/qboot.rom

note() { printf 'run-guest: %s\n' "$*" >&2; }
die() {
  printf 'run-guest: error: %s\n' "$*" >&2
  exit 2
}
usage() {
  sed -n '/^# Usage:/,/^# *--qemu-arg/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

kit=${HVSOCK_GUEST_KIT:-$repo_root/build/guest-kit}
adds=()
initrd=""
envs=()
append=""
memory=512M
vsock_socket=""
qmp_socket=""
machine=""
timeout_s=120
log=""
pidfile=""
interactive=""
verbose=0
firmware=qboot
print_command=0
qemu_extra=()
command=()
while (($#)); do
  case "$1" in
    --kit) (($# >= 2)) || usage; kit=$2; shift 2 ;;
    --add) (($# >= 2)) || usage; adds+=("$2"); shift 2 ;;
    --initrd) (($# >= 2)) || usage; initrd=$2; shift 2 ;;
    --env) (($# >= 2)) || usage; envs+=("$2"); shift 2 ;;
    --append) (($# >= 2)) || usage; append+=" $2"; shift 2 ;;
    --memory) (($# >= 2)) || usage; memory=$2; shift 2 ;;
    --vsock-socket) (($# >= 2)) || usage; vsock_socket=$2; shift 2 ;;
    --qmp) (($# >= 2)) || usage; qmp_socket=$2; shift 2 ;;
    --machine) (($# >= 2)) || usage; machine=$2; shift 2 ;;
    --timeout) (($# >= 2)) || usage; timeout_s=$2; shift 2 ;;
    --log) (($# >= 2)) || usage; log=$2; shift 2 ;;
    --pidfile) (($# >= 2)) || usage; pidfile=$2; shift 2 ;;
    --interactive) interactive=1; shift ;;
    --verbose) verbose=1; shift ;;
    --seabios) firmware=seabios; shift ;;
    --print-command) print_command=1; shift ;;
    --qemu-arg) (($# >= 2)) || usage; qemu_extra+=("$2"); shift 2 ;;
    --qemu)
      shift
      while (($#)) && [[ "$1" != -- ]]; do
        qemu_extra+=("$1")
        shift
      done
      ;;
    --) shift; command=("$@"); break ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (the guest command goes after --)" ;;
  esac
done
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"
[[ -z "$machine" || "$machine" == q35 ]] || die "--machine: only q35 is supported (the default is QEMU's pc)"

[[ -f "$kit/kit.env" ]] || die "no kit in $kit: build it with scripts/guest-kit/build-kit.sh $kit"
kernel="$kit/vmlinuz"
# A PVH boot of the uncompressed kernel skips firmware real mode and the
# in-guest decompression (see build-kit.sh).
[[ -f "$kit/vmlinux" ]] && kernel="$kit/vmlinux"
[[ -n "$initrd" ]] || initrd="$kit/initramfs.cpio.gz"
[[ -f "$initrd" ]] || die "$initrd: no such file"

work=$(mktemp -d "${TMPDIR:-/tmp}/hvsock-run-guest.XXXXXX")
qemu_pid=""
# shellcheck disable=SC2317 # called by the traps
cleanup() {
  if [[ -n "$qemu_pid" ]]; then
    kill "$qemu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((${#adds[@]})); then
  # The extra files follow the chosen base initramfs as a second archive.
  bash "$script_dir/make-initramfs.sh" "$work/initramfs" "$initrd" "${adds[@]}" ||
    die "could not add ${adds[*]}"
  initrd="$work/initramfs"
fi

# Kernel command line. One word per argument: words with blanks are put in
# double quotes, which the kernel strips; a double quote itself cannot be
# passed.
quote_word() {
  local w=$1
  [[ "$w" != *'"'* ]] || die "a double quote cannot be passed on the kernel command line: $w"
  if [[ -z "$w" || "$w" =~ [[:space:]] ]]; then
    printf '"%s"' "$w"
  else
    printf '%s' "$w"
  fi
}
# cryptomgr.notests skips the crypto self-tests, a fifth of the boot under TCG.
cmdline="console=ttyS0 panic=-1 cryptomgr.notests"
((verbose)) || cmdline+=" quiet"
cmdline+="$append"
for e in "${envs[@]}"; do
  [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE with a shell-style NAME: $e"
  cmdline+=" $(quote_word "$e")"
done
if ((${#command[@]})); then
  cmdline+=" -- hvsock-run"
  for w in "${command[@]}"; do
    cmdline+=" $(quote_word "$w")"
  done
fi
((${#cmdline} < 2048)) || die "the kernel command line is too long (${#cmdline} bytes, at most 2047)"

if [[ -z "$interactive" ]]; then
  interactive=0
  ((${#command[@]} == 0)) && [[ -t 0 && -t 1 ]] && interactive=1
fi

qemu=(
  qemu-system-x86_64
  -accel tcg # never kvm: it does not boot stock kernels on these machines
  -nodefaults -no-user-config -display none
  -smp 1 -m "$memory"
  -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
  -no-reboot
)
[[ -z "$machine" ]] || qemu+=(-machine "$machine")
# qboot, QEMU's minimal firmware, starts the kernel about 0.3 s sooner than
# the default SeaBIOS; PCI devices (virtio, vhost-user) work the same.
if [[ "$firmware" == qboot && -f "$qboot_rom" ]]; then
  qemu+=(-bios "$qboot_rom")
fi
if ((interactive)); then
  qemu+=(-serial mon:stdio)
else
  qemu+=(-serial stdio)
fi
if [[ -n "$vsock_socket" ]]; then
  # shellcheck disable=SC2054 # the commas are QEMU's
  qemu+=(
    -object "memory-backend-memfd,id=hvsock-mem,size=$memory,share=on"
    -machine memory-backend=hvsock-mem
    -chardev "socket,id=hvsock-vsock,path=$vsock_socket"
  )
  if [[ "$machine" == q35 ]]; then
    # shellcheck disable=SC2054
    qemu+=(
      -device pcie-root-port,id=hvsock-rp,bus=pcie.0,chassis=1
      -device vhost-user-vsock-pci,chardev=hvsock-vsock,bus=hvsock-rp,id=hvsock-vsock-dev
    )
  else
    # shellcheck disable=SC2054
    qemu+=(-device vhost-user-vsock-pci,chardev=hvsock-vsock)
  fi
fi
[[ -z "$pidfile" ]] || qemu+=(-pidfile "$pidfile")
# wait=off: QEMU starts without waiting for a QMP client. The guest kernel
# ejects a device on request through ACPI PCI hotplug (acpiphp), which the
# default machine's slots support, so hvsockd can re-plug the vsock device.
[[ -z "$qmp_socket" ]] || qemu+=(-qmp "unix:$qmp_socket,server=on,wait=off")
qemu+=("${qemu_extra[@]}")

if ((print_command)); then
  printf '%q ' "${qemu[@]}"
  printf '\n'
  exit 0
fi

if ((interactive)); then
  note "interactive console: Ctrl-A X quits QEMU, Ctrl-A C toggles the monitor"
  "${qemu[@]}"
  exit
fi

[[ -z "$log" ]] || : >"$log"
start=$EPOCHREALTIME
fifo="$work/console"
mkfifo "$fifo"
if ((timeout_s > 0)); then
  timeout --kill-after=5 "$timeout_s" "${qemu[@]}" <"/dev/null" >"$fifo" &
else
  "${qemu[@]}" </dev/null >"$fifo" &
fi
qemu_pid=$!

exit_status=""
ready_after=""
while IFS= read -r line || [[ -n "$line" ]]; do
  line=${line//$'\r'/}
  printf '%s\n' "$line"
  [[ -z "$log" ]] || printf '%s\n' "$line" >>"$log"
  case "$line" in
    "hvsock-guest: ready")
      ready_after=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
      ;;
    "hvsock-guest: exit "*)
      status=${line#hvsock-guest: exit }
      [[ "$status" =~ ^[0-9]+$ ]] && exit_status=$status
      ;;
  esac
done <"$fifo"

qemu_status=0
wait "$qemu_pid" || qemu_status=$?
qemu_pid=""
total=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')

if [[ -n "$exit_status" ]]; then
  note "guest ready after ${ready_after:-?} s, exit $exit_status after $total s"
  exit "$exit_status"
fi
if ((timeout_s > 0)) && ((qemu_status == 124 || qemu_status == 137)); then
  note "timed out after $timeout_s s (guest ready: ${ready_after:-no})"
  exit 124
fi
note "the guest reported no exit status (QEMU exit status $qemu_status, guest ready: ${ready_after:-no})"
exit 125
