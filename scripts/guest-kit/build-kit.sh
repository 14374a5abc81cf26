#!/usr/bin/env bash
# Builds the hvsock guest kit into OUT_DIR: Debian's cloud kernel (vmlinuz)
# and a busybox initramfs with the kernel's virtio and vsock modules, ready for
# run-guest.sh. See docs/guest-kit.md.
#
# Usage: build-kit.sh [--kernel-series X.Y] [--add FILE[:GUEST_PATH]]... [--module NAME]... [--force] OUT_DIR
#
#   --kernel-series X.Y      use the newest linux-image-X.Y.*-cloud-amd64 or
#                            linux-image-X.Y.*-cloud-amd64-unsigned package apt
#                            knows (e.g. 6.12, bookworm's newer cloud kernel)
#                            instead of the linux-image-cloud-amd64 metapackage.
#                            The kit records it (KIT_KERNEL_SERIES in kit.env):
#                            later runs without the option keep that series;
#                            `--kernel-series default` goes back to the
#                            metapackage.
#   --add FILE[:GUEST_PATH]  also put FILE into the base initramfs, at
#                            GUEST_PATH (default /opt/hvsock/BASENAME). ELF
#                            files must be statically linked.
#   --module NAME            also load kernel module NAME (its dependencies
#                            are added and ordered automatically).
#   --force                  rebuild even if OUT_DIR is up to date.
#
# Idempotent: when OUT_DIR was built from the same kernel package, busybox,
# modules, added files and kit scripts, it says so and changes nothing. The
# only network use is Debian's archive through apt: the host packages are
# installed with apt-get (only if missing; that needs root), the kernel package
# is fetched with `apt-get download` into OUT_DIR/cache (or
# $HVSOCK_GUEST_CACHE) and unpacked with dpkg -x; it is never installed on the
# host. Set HVSOCK_GUEST_KERNEL_PACKAGE to pin a versioned image package
# (e.g. linux-image-6.1.0-56-cloud-amd64) instead of resolving the
# linux-image-cloud-amd64 metapackage; with --kernel-series the pin counts
# only if it belongs to that series (so one pin does not turn a 6.12 kit into
# a 6.1 one), otherwise the newest package of the series is used.
set -euo pipefail

readonly kit_format=1
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir
readonly meta_package=linux-image-cloud-amd64
# What the kit loads, in addition to anything given with --module. Their
# dependencies are resolved from the modules' own .modinfo sections.
# virtio_net is for the benchmarks' baseline, QEMU's user-mode network;
# vsock_loopback lets guest tests use CID 1 without any host device.
readonly default_modules=(
  virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport vsock_loopback
  virtio_net
)
readonly host_packages=(qemu-system-x86 busybox-static cpio binutils gzip lz4 xz-utils)

note() { printf 'build-kit: %s\n' "$*" >&2; }
die() {
  printf 'build-kit: error: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# *--force/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

orig_args=("$@")
out_dir=""
adds=()
extra_modules=()
force=0
kernel_series=""
while (($#)); do
  case "$1" in
    --kernel-series) (($# >= 2)) || usage; kernel_series=$2; shift 2 ;;
    --add) (($# >= 2)) || usage; adds+=("$2"); shift 2 ;;
    --module) (($# >= 2)) || usage; extra_modules+=("$2"); shift 2 ;;
    --force) force=1; shift ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$out_dir" ]] || usage; out_dir=$1; shift ;;
  esac
done
[[ -n "$out_dir" ]] || usage
# Without the option a kit keeps the series it was built with, so that tests
# and scripts that run `build-kit.sh DIR` on a 6.12 kit do not turn it into a
# 6.1 one.
if [[ -z "$kernel_series" && -f "$out_dir/kit.env" ]]; then
  kernel_series=$(sed -n 's/^KIT_KERNEL_SERIES=//p' "$out_dir/kit.env")
fi
[[ "$kernel_series" != default ]] || kernel_series=""
[[ -z "$kernel_series" || "$kernel_series" =~ ^[0-9]+\.[0-9]+$ ]] ||
  die "--kernel-series wants MAJOR.MINOR (e.g. 6.12), not $kernel_series"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cache_dir=${HVSOCK_GUEST_CACHE:-$out_dir/cache}
mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)
# One build at a time per kit directory (parallel CTest runs, two shells).
exec 9>"$out_dir/.lock"
flock 9

# --- host packages ----------------------------------------------------------

apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  [[ "$(id -u)" -eq 0 ]] || return 1
  note "apt-get update"
  apt-get update -qq >&2 || return 1
  apt_updated=1
}

missing=()
for pkg in "${host_packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ "$(id -u)" -eq 0 ]] ||
    die "missing host packages: ${missing[*]} (run as root, or apt-get install them)"
  note "installing ${missing[*]}"
  apt_update || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" </dev/null >&2 || die "apt-get install ${missing[*]} failed"
fi

busybox=/bin/busybox
[[ -x "$busybox" ]] || die "$busybox not found (package busybox-static)"
if readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  die "$busybox is dynamically linked: install busybox-static (it replaces busybox)"
fi

# --- the kernel package -----------------------------------------------------

# Prints the versioned image package the metapackage depends on, from apt's
# local lists (no network).
# With --kernel-series: the newest image package of that series that apt
# knows, by version (6.12.117+deb12 sorts after 6.12.99+deb12).
resolve_kernel_package() {
  if [[ -n "$kernel_series" ]]; then
    apt-cache pkgnames "linux-image-$kernel_series." 2>/dev/null |
      grep -E "^linux-image-${kernel_series//./\\.}\.[0-9][^ ]*-cloud-amd64(-unsigned)?$" |
      sort -V | tail -n 1
    return
  fi
  apt-cache depends "$meta_package" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }'
}
# The kernel series of an image package name: linux-image-6.1.0-56-... -> 6.1.
package_series() {
  sed -E -n 's/^linux-image-([0-9]+\.[0-9]+)[.-].*/\1/p' <<<"$1"
}
resolve_what=$meta_package
[[ -z "$kernel_series" ]] || resolve_what="linux-image-$kernel_series.*-cloud-amd64"

kernel_package=${HVSOCK_GUEST_KERNEL_PACKAGE:-}
if [[ -n "$kernel_package" && -n "$kernel_series" && "$(package_series "$kernel_package")" != "$kernel_series" ]]; then
  note "HVSOCK_GUEST_KERNEL_PACKAGE=$kernel_package is not a $kernel_series kernel: ignored for this kit"
  kernel_package=""
fi
if [[ -z "$kernel_package" ]]; then
  kernel_package=$(resolve_kernel_package || true)
  if [[ -z "$kernel_package" ]] && apt_update; then
    kernel_package=$(resolve_kernel_package || true)
  fi
  if [[ -z "$kernel_package" ]]; then
    # Offline and without apt lists: keep a kit that is already there.
    if [[ -f "$out_dir/kit.env" && -f "$out_dir/vmlinuz" && -f "$out_dir/initramfs.cpio.gz" ]]; then
      note "cannot resolve $resolve_what with apt; keeping the existing kit in $out_dir"
      exit 0
    fi
    die "cannot resolve $resolve_what with apt-cache (run apt-get update as root)"
  fi
fi
kernel_version_deb=$(apt-cache policy "$kernel_package" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
if [[ -z "$kernel_version_deb" || "$kernel_version_deb" == "(none)" ]]; then
  # A pinned package known only from the cache.
  deb=$(find "$cache_dir" -maxdepth 1 -name "${kernel_package}_*_amd64.deb" | sort -V | tail -n 1)
  [[ -n "$deb" ]] || die "apt knows no version of $kernel_package"
  kernel_version_deb=$(dpkg-deb -f "$deb" Version)
fi
# Debian file names drop the epoch and escape ':' as %3a.
deb="$cache_dir/${kernel_package}_${kernel_version_deb#*:}_amd64.deb"

# --- up to date? ------------------------------------------------------------

modules=("${default_modules[@]}" "${extra_modules[@]}")
busybox_sum=$(sha256sum "$busybox" | cut -d' ' -f1)
adds_sum=""
for spec in "${adds[@]}"; do
  src=${spec%%:*}
  [[ -f "$src" ]] || die "--add $src: no such file"
  adds_sum+="$spec $(sha256sum "$src" | cut -d' ' -f1);"
done
stamp=$(
  printf 'format=%s\npackage=%s %s\nbusybox=%s\nmodules=%s\nadds=%s\n' \
    "$kit_format" "$kernel_package" "$kernel_version_deb" "$busybox_sum" "${modules[*]}" "$adds_sum"
  cat "$script_dir/init.sh" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
)
if ((!force)) && [[ -f "$out_dir/.stamp" && -f "$out_dir/kit.env" && -f "$out_dir/vmlinuz" && -f "$out_dir/initramfs.cpio.gz" ]] &&
  [[ "$(cat "$out_dir/.stamp")" == "$stamp" ]]; then
  note "up to date: $out_dir ($kernel_package $kernel_version_deb)"
  exit 0
fi

if [[ ! -f "$deb" ]]; then
  note "downloading $kernel_package $kernel_version_deb into $cache_dir"
  sandbox=()
  # apt's download sandbox user cannot write into a root-owned 0755 directory.
  [[ "$(id -u)" -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  if ! (cd "$cache_dir" && apt-get download -qq "${sandbox[@]}" "$kernel_package=$kernel_version_deb" >&2); then
    # Stale apt lists name a version the archive no longer has: update them
    # and start over, once.
    if [[ -z "${HVSOCK_GUEST_KIT_RETRY:-}" ]] && apt_update; then
      exec 9>&-
      HVSOCK_GUEST_KIT_RETRY=1 exec bash "${BASH_SOURCE[0]}" "${orig_args[@]}"
    fi
    die "apt-get download $kernel_package=$kernel_version_deb failed"
  fi
  [[ -f "$deb" ]] || die "apt-get download did not produce $deb"
  # Keep only the newest package of this kernel series in the cache (a cache
  # shared through HVSOCK_GUEST_CACHE by a 6.1 and a 6.12 kit keeps both).
  find "$cache_dir" -maxdepth 1 -name "linux-image-$(package_series "$kernel_package").[0-9]*.deb" \
    ! -path "$deb" -delete
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hvsock-guest-kit.XXXXXX")
trap 'rm -rf "$work"' EXIT

note "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$work/pkg"
shopt -s nullglob
vmlinuz_files=("$work"/pkg/boot/vmlinuz-*)
((${#vmlinuz_files[@]} == 1)) || die "expected one vmlinuz in $(basename "$deb")"
kernel_release=${vmlinuz_files[0]##*/vmlinuz-}
mod_root="$work/pkg/lib/modules/$kernel_release"
[[ -d "$mod_root" ]] || die "no /lib/modules/$kernel_release in $(basename "$deb")"

# --- modules: locate, decompress, order --------------------------------------

rootfs="$work/rootfs"
mkdir -p "$rootfs/lib/modules"

declare -A module_file=()  # name -> .ko path in the package
while IFS= read -r -d '' f; do
  name=${f##*/}
  name=${name%%.ko*}
  module_file[$name]=$f
  # modules.dep and the .modinfo section spell names with '_' and '-' alike.
  module_file[${name//-/_}]=$f
done < <(find "$mod_root" \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)

is_builtin() {
  grep -Eq "(^|/)$1\.ko$" "$mod_root/modules.builtin" 2>/dev/null ||
    grep -Eq "(^|/)${1//_/-}\.ko$" "$mod_root/modules.builtin" 2>/dev/null
}

# Writes an uncompressed copy of module $1 to $2 (the busybox insmod of
# bookworm reads plain .ko files only).
extract_module() {
  local src=$1 dst=$2
  case "$src" in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
  esac
}

module_depends() {
  objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null |
    tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '
}

declare -A visited=()
load_order=()
builtin_modules=()
# Depth-first: a module goes into load_order after all its dependencies.
visit() {
  local name=${1//-/_} dep
  [[ -n "${visited[$name]:-}" ]] && return 0
  visited[$name]=1
  if [[ -z "${module_file[$name]:-}" ]]; then
    if is_builtin "$name"; then
      builtin_modules+=("$name")
      return 0
    fi
    die "module $name is neither in $(basename "$deb") nor built in"
  fi
  local ko="$rootfs/lib/modules/$name.ko"
  extract_module "${module_file[$name]}" "$ko"
  for dep in $(module_depends "$ko"); do
    visit "$dep"
  done
  load_order+=("$name")
}
for m in "${modules[@]}"; do
  visit "$m"
done
printf '%s\n' "${load_order[@]}" >"$rootfs/lib/modules/load-order"
note "modules (load order): ${load_order[*]}"
((${#builtin_modules[@]} == 0)) || note "built into the kernel: ${builtin_modules[*]}"

# --- rootfs -----------------------------------------------------------------

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc,opt/hvsock}
cp "$busybox" "$rootfs/bin/busybox"
# Every applet, as a symlink in the directory busybox itself would use.
"$busybox" --list-full | while read -r applet; do
  [[ "$applet" == bin/busybox ]] && continue
  [[ -e "$rootfs/$applet" ]] || ln -s /bin/busybox "$rootfs/$applet"
done
install -m 0755 "$script_dir/init.sh" "$rootfs/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
printf '%s %s\n' "$kernel_package" "$kernel_version_deb" >"$rootfs/etc/hvsock-guest-kit"

for spec in "${adds[@]}"; do
  bash "$script_dir/make-initramfs.sh" --stage-only "$rootfs" "$spec"
done

# --- vmlinux for a PVH boot --------------------------------------------------

# QEMU can start an uncompressed ELF vmlinux at its PVH entry point, which
# skips the firmware's real-mode boot and the in-guest decompression of the
# bzImage: under TCG that saves most of a second. The bzImage's payload is
# found by its compression magic; the result counts only if it is an ELF file
# with a PVH entry note (Xen note type 18). Otherwise the kit boots vmlinuz.
pvh_note_present() {
  readelf -nW "$1" 2>/dev/null | grep -Eq '^ *Xen .*(\(0x00000012\)|PHYS32)'
}
extract_vmlinux() {
  local image=$1 out=$2 magic tool offset
  for magic_tool in '\x02\x21\x4c\x18:lz4 -dc' '\x1f\x8b\x08:gzip -dc' \
    '\xfd\x37\x7a\x58\x5a\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -qdc'; do
    magic=${magic_tool%%:*}
    tool=${magic_tool#*:}
    command -v "${tool%% *}" >/dev/null || continue
    for offset in $(LC_ALL=C grep -obUaP "$magic" "$image" 2>/dev/null | cut -d: -f1 | head -n 4); do
      # Trailing data after the payload makes the tools complain: ignore them.
      tail -c "+$((offset + 1))" "$image" | $tool >"$out" 2>/dev/null || true
      if [[ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' ')" == 7f454c46 ]] && pvh_note_present "$out"; then
        return 0
      fi
    done
  done
  rm -f "$out"
  return 1
}
boot_kernel=vmlinuz
if extract_vmlinux "${vmlinuz_files[0]}" "$work/vmlinux"; then
  boot_kernel=vmlinux
else
  note "no PVH-capable vmlinux in the bzImage: the kit boots vmlinuz (slower)"
fi

# --- outputs ----------------------------------------------------------------

# Reproducible: fixed mtimes, sorted names, device-independent inode numbers.
find "$rootfs" -exec touch -h -d @0 {} +
(cd "$rootfs" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
  gzip -9 -n >"$work/initramfs.cpio.gz"

rm -rf "$out_dir/modules"
mkdir -p "$out_dir/modules"
cp "$rootfs"/lib/modules/*.ko "$rootfs/lib/modules/load-order" "$out_dir/modules/"
cp "${vmlinuz_files[0]}" "$out_dir/vmlinuz.new"
cp "$work/pkg/boot/config-$kernel_release" "$out_dir/config"
mv "$work/initramfs.cpio.gz" "$out_dir/initramfs.cpio.gz"
mv "$out_dir/vmlinuz.new" "$out_dir/vmlinuz"
rm -f "$out_dir/vmlinux"
[[ "$boot_kernel" == vmlinuz ]] || mv "$work/vmlinux" "$out_dir/vmlinux"
cat >"$out_dir/kit.env" <<EOF
# hvsock guest kit, written by scripts/guest-kit/build-kit.sh
KIT_FORMAT=$kit_format
KIT_KERNEL_SERIES=$kernel_series
KIT_KERNEL_PACKAGE=$kernel_package
KIT_KERNEL_PACKAGE_VERSION=$kernel_version_deb
KIT_KERNEL_RELEASE=$kernel_release
KIT_MODULES="${load_order[*]}"
KIT_BUILTIN_MODULES="${builtin_modules[*]}"
KIT_BOOT_KERNEL=$boot_kernel
EOF
printf '%s\n' "$stamp" >"$out_dir/.stamp"
note "built $out_dir: $boot_kernel ($kernel_release), initramfs.cpio.gz ($(du -k "$out_dir/initramfs.cpio.gz" | cut -f1) KiB)"
