#!/usr/bin/env bash
# Builds and runs the whole test suite under the sanitizers.
#   scripts/test.sh ASAN_BUILD_DIR TSAN_BUILD_DIR
# 1. ASan + UBSan build: every test.
# 2. TSan build: the tests labelled "threads" (daemon, loader, decode pool),
#    where the loop/device/decode threads meet.
set -euo pipefail
asan=${1:-build-asan}
tsan=${2:-build-tsan}
jobs=$(nproc)
here=$(cd "$(dirname "$0")/.." && pwd)

# scripts/deps.sh test has installed every Python reference: a test that
# finds one missing fails rather than skipping silently.
export VT_REQUIRE_DEPS=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:protect_shadow_gap=0:detect_odr_violation=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$here/tests/lsan.supp
# history_size=7 (the most): old stacks restorable, so suppressions can match.
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$here/tests/tsan.supp
# OpenBLAS's own worker threads are not instrumented; one thread keeps TSan's
# view exact.  (The ASan run uses all cores.)

echo "== ASan+UBSan build ($asan)"
cmake -S "$here" -B "$asan" -DVT_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$asan" -j "$jobs"
(cd "$asan" && ctest --output-on-failure -j "$jobs" --timeout 900)

echo "== TSan build ($tsan): tests labelled 'threads'"
cmake -S "$here" -B "$tsan" -DVT_SANITIZE=thread -DVT_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$tsan" -j "$jobs"
# (TSan slows the daemon tests sevenfold to tenfold: daemon_faults took
# 1120 s on a 2-core machine beside daemon_e2e; the limit is for a hang,
# not a budget.)
(cd "$tsan" && OPENBLAS_NUM_THREADS=1 ctest --output-on-failure -j "$jobs" -L threads --timeout 2400)
echo "== all tests passed"
