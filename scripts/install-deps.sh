#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages that building and testing hvsock
# need. Idempotent: when every package is already installed it does nothing
# (no apt-get update, no root needed). Otherwise it must run as root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libcli11-dev nlohmann-json3-dev libfmt-dev libxxhash-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang-format python3 procps socat
  # hvsockd's systemd notify support; the Debian packages (scripts/package.sh)
  # and their checks: CPack's shlibdeps needs file, lintian, the metrics parser
  libsystemd-dev file lintian python3-prometheus-client
  # the man pages' checks (cli.man_pages renders them; the package test finds
  # them); systemd-analyze for the package test's check of the unit
  groff-base man-db systemd
  # unmodified vsock programs the preload shim's tests run; curl for forward's
  ncat curl
  # the libFuzzer run of test.sh: clang and its fuzzer/sanitizer runtimes
  clang libclang-rt-14-dev
  # the guest kit (scripts/guest-kit): QEMU under TCG, a busybox initramfs
  qemu-system-x86 busybox-static cpio lz4
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (sudo bash scripts/install-deps.sh) or install them with apt-get" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
