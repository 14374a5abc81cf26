#!/usr/bin/env bash
# Builds hvsock and runs the whole test suite: the `dev` preset (warnings as
# errors) with CTest, a clang-format check, then the `asan` preset
# (AddressSanitizer + UndefinedBehaviorSanitizer) with CTest, then a bounded
# libFuzzer run over the guest packet parser (`fuzz` preset). Installs its own
# apt dependencies first. Stops at the first failure.
#
# Environment: HVSOCK_SKIP_ASAN=1 skips the sanitizer build and the fuzz run
# (quick local runs); HVSOCK_FUZZ_SECONDS sets the fuzz run's length (default
# 60); HVSOCK_JOBS sets build and test parallelism (default 2).
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
mapfile -d '' sources < <(find include src tools tests bench examples fuzz -type f \
  \( -name '*.hpp' -o -name '*.cpp' -o -name '*.h' -o -name '*.c' \) -print0 2>/dev/null | sort -z)
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
  # verify_asan_link_order=0: `hvsock run` preloads libhvsock-preload.so
  # (uninstrumented) ahead of the ASan runtime into the ASan-built CLI.
  export ASAN_OPTIONS="detect_leaks=${detect_leaks}:halt_on_error=1:verify_asan_link_order=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

  section "asan: tests (ASAN_OPTIONS=$ASAN_OPTIONS)"
  ctest --preset asan -j "$jobs" --no-tests=error

  # What a guest writes into its virtqueues, fuzzed (fuzz/). The corpus
  # grows in build/fuzz across runs; a crash fails the run and leaves its
  # input there to reproduce with.
  fuzz_seconds=${HVSOCK_FUZZ_SECONDS:-60}
  section "fuzz: vsock_packet_fuzzer for ${fuzz_seconds}s"
  cmake --preset fuzz
  cmake --build --preset fuzz -j "$jobs"
  mkdir -p build/fuzz/corpus
  fuzz_status=0
  (cd build/fuzz && ./fuzz/vsock_packet_fuzzer -max_total_time="$fuzz_seconds" \
    -print_final_stats=1 corpus >fuzz.log 2>&1) || fuzz_status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' build/fuzz/fuzz.log || true
  if ((fuzz_status != 0)); then
    tail -n 40 build/fuzz/fuzz.log
    echo "the fuzzer failed (status $fuzz_status); the input is in build/fuzz" >&2
    exit 1
  fi
fi

section "all checks passed"
