#!/usr/bin/env bash
# Builds hvsock and runs the whole test suite: the `dev` preset (warnings as
# errors) with CTest, a clang-format check, then the `asan` preset
# (AddressSanitizer + UndefinedBehaviorSanitizer) with CTest, then bounded
# libFuzzer runs over what guests and clients write (`fuzz` preset, fuzz/).
# Installs its own apt dependencies first. Stops at the first failure.
#
# Environment: HVSOCK_SKIP_ASAN=1 skips the sanitizer build and the fuzz runs
# (quick local runs); HVSOCK_FUZZ_SECONDS sets the fuzz runs' total length,
# shared equally by the fuzz targets (default 60); HVSOCK_JOBS sets build and
# test parallelism (default 2).
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

section "Debian packages: build, lintian, install, run, purge"
if [[ "$(id -u)" == 0 ]]; then
  bash tests/package/package_test.sh
else
  echo "skipped: tests/package/package_test.sh installs packages and needs root"
fi

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

  # What guests and clients write, fuzzed (fuzz/README.md): a guest's
  # virtqueues, control socket messages, vhost-user messages and agent
  # frames, each target for an equal share of HVSOCK_FUZZ_SECONDS. Each
  # corpus grows in build/fuzz/corpus/<target> across runs, next to the
  # seeds fuzz_seeds writes; a crash, a leak or a hang (-timeout) fails the
  # run, and the input that did it is left in build/fuzz/crashes/<target>.
  fuzz_seconds=${HVSOCK_FUZZ_SECONDS:-60}
  fuzz_targets=(vsock_packet_fuzzer control_message_fuzzer vhost_user_message_fuzzer
    agent_frame_fuzzer)
  fuzz_share=$((fuzz_seconds / ${#fuzz_targets[@]}))
  ((fuzz_share >= 1)) || fuzz_share=1
  section "fuzz: ${#fuzz_targets[@]} targets for ${fuzz_share}s each"
  cmake --preset fuzz
  cmake --build --preset fuzz -j "$jobs"
  rm -rf build/fuzz/seeds
  build/fuzz/fuzz/fuzz_seeds build/fuzz/seeds
  fuzz_failed=()
  for target in "${fuzz_targets[@]}"; do
    corpus=build/fuzz/corpus/$target crashes=build/fuzz/crashes/$target log=build/fuzz/$target.log
    mkdir -p "$corpus" "$crashes" "build/fuzz/seeds/$target"
    fuzz_status=0
    "build/fuzz/fuzz/$target" -max_total_time="$fuzz_share" -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" "build/fuzz/seeds/$target" >"$log" 2>&1 ||
      fuzz_status=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
      sed "s/^stat::/$target: /" || true
    if ((fuzz_status != 0)); then
      tail -n 40 "$log"
      input=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
      echo "$target failed (status $fuzz_status); the input: ${input:-none written, see $log}" >&2
      echo "reproduce with: build/fuzz/fuzz/$target ${input:-INPUT}" >&2
      fuzz_failed+=("$target")
    fi
  done
  if ((${#fuzz_failed[@]} > 0)); then
    echo "fuzzing failed: ${fuzz_failed[*]}" >&2
    exit 1
  fi
fi

section "all checks passed"
