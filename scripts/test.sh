#!/usr/bin/env bash
# Builds hvsock and runs the whole test suite: the `dev` preset (warnings as
# errors) with CTest, a clang-format check, then the `asan` preset
# (AddressSanitizer + UndefinedBehaviorSanitizer) with CTest. Installs its own
# apt dependencies first. Stops at the first failure.
#
# Environment: HVSOCK_SKIP_ASAN=1 skips the sanitizer build (quick local runs);
# HVSOCK_JOBS sets build and test parallelism (default 2).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

jobs=${HVSOCK_JOBS:-2}
# Host-side code never picks libhvsock's kernel (AF_VSOCK) transport here:
# vsock on this machine belongs to its infrastructure. Guests get their own.
export HVSOCK_TRANSPORT=emulated
started=$SECONDS

section() { printf '\n==== %s (%ds) ====\n' "$*" $((SECONDS - started)); }

section "Installing dependencies"
bash scripts/install-deps.sh

section "dev: configure and build"
cmake --preset dev
cmake --build --preset dev -j "$jobs"

section "dev: tests"
ctest --preset dev -j "$jobs" --no-tests=error

section "clang-format check"
mapfile -d '' sources < <(find include src tools tests bench examples \
  -type f \( -name '*.hpp' -o -name '*.cpp' \) -print0 2>/dev/null | sort -z)
if ((${#sources[@]} == 0)); then
  echo "no sources found to check" >&2
  exit 1
fi
clang-format --dry-run --Werror "${sources[@]}"
echo "clang-format: ${#sources[@]} files clean"

if [[ "${HVSOCK_SKIP_ASAN:-0}" == 1 ]]; then
  section "asan: skipped (HVSOCK_SKIP_ASAN=1)"
else
  section "asan: configure and build"
  cmake --preset asan
  cmake --build --preset asan -j "$jobs"

  # LeakSanitizer needs ptrace-like access that some sandboxes deny; use it
  # where it works and say so where it does not.
  probe_dir=$(mktemp -d)
  printf 'int main() { return 0; }\n' >"$probe_dir/probe.cpp"
  detect_leaks=0
  if c++ -fsanitize=address "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>/dev/null &&
    ASAN_OPTIONS=detect_leaks=1 "$probe_dir/probe" >/dev/null 2>&1; then
    detect_leaks=1
  else
    echo "LeakSanitizer does not work here: running with detect_leaks=0"
  fi
  rm -rf "$probe_dir"
  export ASAN_OPTIONS="detect_leaks=${detect_leaks}:halt_on_error=1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

  section "asan: tests (ASAN_OPTIONS=$ASAN_OPTIONS)"
  ctest --preset asan -j "$jobs" --no-tests=error
fi

section "all checks passed"
