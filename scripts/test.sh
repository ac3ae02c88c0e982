#!/usr/bin/env bash
# Installs what is missing, builds blkship, and runs the whole test suite:
# every test in a normal build, then again in a build with
# AddressSanitizer and UndefinedBehaviorSanitizer, the write-log tests in a
# ThreadSanitizer build, then each libFuzzer harness for 30 s
# (tests/fuzz/README.md).
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
# Every test again with everything instrumented: the agents, the CLI and the
# nbdkit filter (nbdkit runs with libasan preloaded, tests/harness.sh).
# Each process's reports go to a file the harness scans.  Left out: the two
# integration tests that expect nbdkit to refuse to start; under the
# preloaded runtime such an nbdkit hangs in exit() (libp11-kit's destructor
# waits on glibc's locale lock), which an uninstrumented filter shows too.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs" -E '^integration-(lifecycle|shm-collision)$')

# ThreadSanitizer: the write-log library's unit tests (the dirty log, the
# atomic bitmap, the protocol checks, copy-before-write with writes racing
# reads, the write gate with seals during writes, the epochs, the journal)
# and the filter under load, with
# libtsan preloaded into nbdkit: integration-fio (fio writing while getw
# drains the log), replication-e2e (fio through NBD while blkship-primary
# drains the ring through the 32 reader threads).  About 2 minutes.
cmake -S . -B build-tsan -DBLKSHIP_TSAN=ON -DBLKSHIP_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-tsan -j"$jobs"
(cd build-tsan && timeout 300 ctest --output-on-failure -j"$jobs" \
    -R '^(unit-(wlog|bitmap|wl-proto|dirty|wl-cow|wl-gate|wl-epoch|journal)|integration-fio|replication-e2e)$')

# Regression inputs first, then 30 s of fuzzing per harness; ends with
# "N passed, N failed".
bash tests/fuzz/run.sh 30

# Every mutant of a durability- or safety-critical line must be caught by
# the tests it names (tests/mutation/README.md).
bash tests/mutation/run.sh
