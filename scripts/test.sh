#!/usr/bin/env bash
# Installs what is missing, builds blkship, and runs the whole test suite:
# every test in a normal build, then the unit tests again in a build with
# AddressSanitizer and UndefinedBehaviorSanitizer, then each libFuzzer
# harness for 30 s (tests/fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
# Every prerequisite is installed now: a test that would skip fails instead
# (tests/harness.sh, skip).
export BLKSHIP_CI=1
cmake -S . -B build -DBLKSHIP_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

cmake -S . -B build-asan -DBLKSHIP_SANITIZE=ON -DBLKSHIP_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs"
# Unit tests and the replication tests run the agents instrumented (the
# nbdkit filter itself is built without sanitizers: nbdkit is not).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs" -L 'unit|replication')

# Regression inputs first, then 30 s of fuzzing per harness; ends with
# "N passed, N failed".
bash tests/fuzz/run.sh 30
