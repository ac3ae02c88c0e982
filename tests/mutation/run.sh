#!/usr/bin/env bash
# Mutation checks: builds the project once in a scratch copy of the source
# tree, then for each mutant in tests/mutation/mutants/ (or those named on
# the command line) applies its edit, rebuilds (only what changed), runs
# the tests the mutant names, and restores the file.  A mutant must be
# KILLED: at least one of its tests fails.  The run fails when a mutant
# survives (its tests all pass: the suite cannot see that invariant go),
# no longer applies (its text is not found exactly once: the code moved,
# so the mutant must move with it), or does not build.
#
#   bash tests/mutation/run.sh [NAME...]
#
# Ends with "N passed, N failed" (a killed mutant passes).  See README.md
# for the mutant file format.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/mutation
command -v python3 >/dev/null || { echo "mutation: python3 is required" >&2; exit 1; }

scratch=$(mktemp -d /tmp/blkship-mutation.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
src=$scratch/src
build=$scratch/build
mkdir -p "$src"
# The tracked files as they are in the work tree (uncommitted edits too).
(cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$src" ||
    { echo "mutation: cannot copy the source tree" >&2; exit 1; }

jobs=$(nproc)
if ! cmake -S "$src" -B "$build" >"$scratch/build.log" 2>&1 ||
   ! cmake --build "$build" -j"$jobs" >>"$scratch/build.log" 2>&1; then
    tail -n 30 "$scratch/build.log" >&2
    echo "mutation: the unmutated tree does not build" >&2
    exit 1
fi

# apply FILE MUTANT: replaces the mutant's "find" text (exactly once) in FILE
# with its "replace" text.  Exit 3: not found, 4: found more than once.
apply() {
    python3 - "$1" "$2" <<'PY'
import sys
path, mutant = sys.argv[1], sys.argv[2]
find, replace, part = [], [], None
for line in open(mutant).read().split("\n"):
    if line == "find:":
        part = find
    elif line == "replace:":
        part = replace
    elif part is not None:
        part.append(line)
old = "\n".join(find).strip("\n") + "\n"
new = "\n".join(replace).strip("\n")
new = new + "\n" if new else ""
text = open(path).read()
n = text.count(old)
if n != 1:
    sys.exit(3 if n == 0 else 4)
open(path, "w").write(text.replace(old, new))
PY
}

header() {
    sed -n "s/^$2: *//p" "$1" | head -n 1
}

mutants=()
if [ $# -gt 0 ]; then
    for n in "$@"; do mutants+=("$here/mutants/$n.mutant"); done
else
    for m in "$here"/mutants/*.mutant; do mutants+=("$m"); done
fi

passed=0
failed=0
for m in "${mutants[@]}"; do
    name=$(basename "$m" .mutant)
    if [ ! -f "$m" ]; then
        echo "FAIL $name: no such mutant"
        failed=$((failed + 1))
        continue
    fi
    file=$(header "$m" file)
    tests=$(header "$m" tests)
    what=$(sed -n 's/^# *//p' "$m" | head -n 1)
    if [ -z "$file" ] || [ -z "$tests" ] || [ ! -f "$src/$file" ]; then
        echo "FAIL $name: needs 'file:' naming a source file and 'tests:' (a ctest regex)"
        failed=$((failed + 1))
        continue
    fi
    cp "$src/$file" "$scratch/pristine"
    apply "$src/$file" "$m"
    rc=$?
    if [ $rc -ne 0 ]; then
        [ $rc = 3 ] && why="its text is no longer in $file" || why="its text is in $file more than once"
        echo "FAIL $name: does not apply: $why (move the mutant with the code)"
        failed=$((failed + 1))
        continue
    fi
    t0=$SECONDS
    if ! cmake --build "$build" -j"$jobs" >"$scratch/mutant.log" 2>&1; then
        echo "FAIL $name: the mutant does not build:"
        grep -E 'error' "$scratch/mutant.log" | head -n 3 | sed 's/^/    /'
        failed=$((failed + 1))
    else
        # The tests' own output shows which assertion caught the mutant.
        (cd "$build" && ctest -R "$tests" --output-on-failure) >"$scratch/ctest.log" 2>&1
        ran=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$scratch/ctest.log")
        if [ -z "$ran" ] || [ "$ran" = 0 ]; then
            echo "FAIL $name: no test matches '$tests'"
            failed=$((failed + 1))
        elif grep -q '100% tests passed' "$scratch/ctest.log"; then
            echo "FAIL $name: SURVIVED: $what; its tests ($tests) all passed"
            failed=$((failed + 1))
        else
            killers=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (Failed.*/\1/p' "$scratch/ctest.log" | paste -sd, -)
            reason=$(grep -m1 -E '^FAIL: [^ ]+: ' "$scratch/ctest.log" | cut -c1-200)
            echo "ok   $name: killed by ${killers:-?} in $((SECONDS - t0)) s${reason:+ — $reason}"
            passed=$((passed + 1))
        fi
    fi
    cp "$scratch/pristine" "$src/$file"
done
# Leave the scratch build as the pristine tree would build it (nothing to do:
# the directory goes).
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
