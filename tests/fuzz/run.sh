#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz-*.c) with clang in
# build-fuzz/, replays each harness's regression inputs, then fuzzes it for
# SECONDS (default 30) from a scratch copy of its seed corpus, so that the
# committed corpus is never written to.  Fails on any crash, leak, timeout
# or sanitizer report, naming the harness and the input, which is kept in
# build-fuzz/fuzz-artifacts/.  Ends with "N passed, N failed".
#
#   bash tests/fuzz/run.sh [SECONDS]
set -uo pipefail

secs=${1:-30}
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/fuzz
build=$root/build-fuzz
artifacts=$build/fuzz-artifacts

scratch=$(mktemp -d /tmp/blkship-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

if ! CC=clang cmake -S "$root" -B "$build" -DBLKSHIP_FUZZ=ON -DBLKSHIP_TESTS=OFF \
    -DBLKSHIP_WERROR=ON >"$scratch/build.log" 2>&1 ||
   ! cmake --build "$build" -j"$(nproc)" --target blkship-fuzz >>"$scratch/build.log" 2>&1; then
  cat "$scratch/build.log" >&2
  echo "fuzz: building the harnesses in $build with clang failed" >&2
  exit 1
fi
mkdir -p "$artifacts"

# Leaks are reported at exit of each input (libFuzzer's -detect_leaks is on
# by default with ASan); make every other report fatal as well.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# A report is any of these in a harness's output, whatever its exit code.
report_re='ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: |property violated'

passed=0
failed=0
for src in "$here"/fuzz-*.c; do
  name=$(basename "$src" .c)
  h=${name#fuzz-}
  bin=$build/tests/fuzz/$name
  log=$scratch/$h.log
  if [ ! -x "$bin" ]; then
    echo "FAIL $name: not built (add blkship_fuzz($h ...) to tests/fuzz/CMakeLists.txt)"
    failed=$((failed + 1))
    continue
  fi

  # Regression inputs first: each must run clean.
  regs=()
  if [ -d "$here/regressions/$h" ]; then
    while IFS= read -r -d '' f; do regs+=("$f"); done \
      < <(find "$here/regressions/$h" -type f ! -name '*.md' -print0 | sort -z)
  fi
  if [ "${#regs[@]}" -gt 0 ]; then
    if ! "$bin" "${regs[@]}" >"$log" 2>&1 || grep -Eq "$report_re" "$log"; then
      bad=$(grep -E '^Running: ' "$log" | tail -1 | sed 's/^Running: //')
      echo "FAIL $name: regression input ${bad:-?} fails again:"
      grep -E "$report_re" "$log" | head -5 | sed 's/^/    /'
      failed=$((failed + 1))
      continue
    fi
  fi

  # Then fuzz from a scratch copy of the seeds (and the regression inputs).
  corpus=$scratch/$h.corpus
  mkdir -p "$corpus"
  [ -d "$here/corpus/$h" ] && cp "$here/corpus/$h"/* "$corpus"/ 2>/dev/null
  [ "${#regs[@]}" -gt 0 ] && cp "${regs[@]}" "$corpus"/
  seeds=$(find "$corpus" -type f | wc -l)
  rm -f "$artifacts/$h"-*
  timeout $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$h-" "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  size=$(find "$corpus" -type f | wc -l)
  stats="${execs:-?} execs, cov: ${cov:-?} ft: ${ft:-?}, corpus $seeds -> $size inputs"
  if [ "$rc" -ne 0 ] || grep -Eq "$report_re" "$log"; then
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    [ "$rc" -eq 124 ] && input="(hung past $((secs + 120)) s)"
    echo "FAIL $name: exit $rc, $stats; input: ${input:-none written}"
    grep -E "$report_re" "$log" | head -5 | sed 's/^/    /'
    cp "$log" "$artifacts/$h.log"
    failed=$((failed + 1))
  else
    echo "ok   $name: ${#regs[@]} regression inputs clean; $stats in ${secs} s"
    passed=$((passed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
