#!/usr/bin/env bash
# Makes an initramfs that is the kit's base initramfs plus extra files, for
# putting statically linked test programs into the guest. See
# docs/guest-kit.md.
#
# Usage: make-initramfs.sh OUT KIT_DIR|BASE_INITRAMFS [FILE[:GUEST_PATH]]...
#
# OUT is the base initramfs (KIT_DIR/initramfs.cpio.gz, or the file given)
# followed by an uncompressed cpio (newc) archive of the FILEs; the kernel
# unpacks concatenated archives in order, so this takes milliseconds and
# leaves the kit untouched. Each FILE lands at
# GUEST_PATH, by default /opt/hvsock/BASENAME (on the guest's PATH), with its
# permission bits. ELF files must be statically linked: the guest has no
# shared libraries. Scripts may use #!/bin/sh (busybox).
# A FILE placed at /opt/hvsock/run is what the guest runs when it is given no
# command.
set -euo pipefail

note() { printf 'make-initramfs: %s\n' "$*" >&2; }
die() {
  printf 'make-initramfs: error: %s\n' "$*" >&2
  exit 1
}

# Copies the file named by spec $2 (FILE[:GUEST_PATH]) into the tree $1.
stage() {
  local root=$1 spec=$2 src dest
  src=${spec%%:*}
  if [[ "$spec" == *:* ]]; then dest=${spec#*:}; else dest=/opt/hvsock/${src##*/}; fi
  [[ "$dest" == /* && "$dest" != */ ]] || die "$spec: the guest path must be absolute, naming a file"
  [[ -f "$src" ]] || die "$src: no such file"
  if [[ "$(head -c 4 "$src" | od -An -tx1 | tr -d ' ')" == 7f454c46 ]] &&
    readelf -l "$src" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$src is dynamically linked; the guest has no shared libraries (link it with -static)"
  fi
  mkdir -p "$root$(dirname "$dest")"
  cp "$src" "$root$dest"
  chmod "$(stat -c %a "$src")" "$root$dest"
}

if [[ "${1:-}" == --stage-only ]]; then
  # Internal, for build-kit.sh: stage one file into a tree.
  (($# == 3)) || die "usage: make-initramfs.sh --stage-only ROOT FILE[:GUEST_PATH]"
  stage "$2" "$3"
  exit 0
fi

(($# >= 2)) || {
  sed -n 's/^# \{0,1\}//; /^Usage:/p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
out=$1
base=$2
shift 2
if [[ -d "$base" ]]; then
  [[ -f "$base/initramfs.cpio.gz" ]] ||
    die "$base/initramfs.cpio.gz not found: build the kit first (scripts/guest-kit/build-kit.sh $base)"
  base="$base/initramfs.cpio.gz"
fi
[[ -f "$base" ]] || die "$base: no such file"

work=$(mktemp -d "${TMPDIR:-/tmp}/hvsock-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"
for spec in "$@"; do
  stage "$work/root" "$spec"
done

tmp_out="$out.tmp.$$"
cp "$base" "$tmp_out"
if (($#)); then
  # The kernel looks for an uncompressed archive only at a 4-byte aligned
  # offset; zero bytes between archives are skipped.
  size=$(stat -c %s "$tmp_out")
  head -c $(((4 - size % 4) % 4)) /dev/zero >>"$tmp_out"
  (cd "$work/root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >>"$tmp_out"
fi
mv "$tmp_out" "$out"
