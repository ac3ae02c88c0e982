# The harness every shell test of blkship shares (bash), sourced by the
# suites' own functions.sh: strict mode, a time limit below CTest's, a
# cleanup registry run on every exit, `fail` that shows the tails of the
# logs registered in _logs, skips (exit 77), polling, process and log
# helpers, and a sanitizer-report scan of those logs.
#
# Set WORKDIR_PREFIX before make_workdir to name the work directories.

# shellcheck disable=SC2034,SC2317

TEST_NAME=$(basename "$0" .sh)

set -eEu -o pipefail

# STOP_WAIT: the longest a test's process (nbdkit, an agent) is given to
# stop on SIGTERM before SIGKILL, in stop_pid and the suites' nbdkit stops.
STOP_WAIT=15
# A time limit below CTest's, so that a hung step still ends in our cleanup:
# timeout runs the test in its own process group and, at the limit, sends
# SIGTERM to all of it (nbdkit and the agents exit cleanly; the test shell
# runs its EXIT trap), then SIGKILL KILL_AFTER s later.  Every process got
# that SIGTERM at once, so the cleanups' stops share one STOP_WAIT from it
# (_stop_deadline) and then take at most 5 s each to see SIGKILL work;
# KILL_AFTER leaves room for that and for the rest (loop devices,
# namespaces, the work directory).  CTest's timeout is the time limit plus
# KILL_AFTER plus 5 s (tests/*/CMakeLists.txt).
KILL_AFTER=30
if [ -z "${_BS_TEST_TIMED:-}" ] && command -v timeout >/dev/null; then
    export _BS_TEST_TIMED=1
    exec timeout -k "$KILL_AFTER" "${TEST_TIME_LIMIT:-300}" bash "$0" "$@"
fi
: "${TMPDIR:=/tmp}"

# ---- Cleanup registry -------------------------------------------------------

_cleanup_fns=()
_logs=()

# cleanup_fn CMD [ARGS...]: run CMD ARGS on exit, last registered first,
# whether the test passed, failed or was interrupted.
cleanup_fn() {
    _cleanup_fns+=("$(printf '%q ' "$@")")
}

_rc_override=""
_run_cleanups() {
    local rc=$? i
    set +eE
    trap - ERR
    for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_fns[i]}"
    done
    if [ "$rc" = 0 ] && [ -n "$_rc_override" ]; then
        rc=$_rc_override
    fi
    case $rc in
    0) echo "PASS: $TEST_NAME" ;;
    77) ;;
    *) echo "FAIL: $TEST_NAME (exit status $rc)" ;;
    esac
    exit "$rc"
}
trap _run_cleanups EXIT
_stop_deadline=""
trap '_stop_deadline=$((SECONDS + STOP_WAIT)); echo "FAIL: $TEST_NAME: terminated (time limit ${TEST_TIME_LIMIT:-300} s?)" >&2; _dump_logs; exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
trap 'exit 141' PIPE

_dump_logs() {
    local l
    for l in "${_logs[@]}"; do
        [ -f "$l" ] || continue
        echo "---- last lines of $l ----" >&2
        tail -n "${DUMP_LINES:-30}" "$l" >&2
    done
}

_on_err() {
    echo "FAIL: $TEST_NAME: line $1: command failed (status $2): $3" >&2
    _dump_logs
}
trap '_on_err "$LINENO" "$?" "$BASH_COMMAND"' ERR

# fail MSG: report, show the logs' tails, exit 1.
fail() {
    trap - ERR
    echo "FAIL: $TEST_NAME: $*" >&2
    _dump_logs
    exit 1
}

# skip MSG: exit 77, for a prerequisite that cannot exist here.  In CI
# (BLKSHIP_CI=1, set by scripts/test.sh once scripts/install-deps.sh has
# installed every tool, as root) every prerequisite exists, so a skip there
# is a broken environment and fails the test instead of hiding its checks.
skip() {
    if [ "${BLKSHIP_CI:-0}" = 1 ]; then
        trap - ERR
        echo "FAIL: $TEST_NAME: would skip, but BLKSHIP_CI=1 requires every prerequisite: $*" >&2
        exit 1
    fi
    echo "SKIP: $TEST_NAME: $*"
    exit 77
}

note() {
    echo "== $TEST_NAME: $*"
}

kill_quiet() {
    kill "$@" 2>/dev/null
    return 0
}

# requires CMD: skip (exit 77) when a prerequisite is not installed.
requires() {
    command -v "$1" >/dev/null 2>&1 || skip "requires $1, which is not installed"
}

# requires_root: for loop devices, namespaces and iptables.
requires_root() {
    [ "$(id -u)" = 0 ] || skip "must run as root (loop devices, network namespaces, iptables)"
}

# ---- Work directory ------------------------------------------------------------

# Sets WORKDIR to a fresh private directory, removed on exit.  Short, so
# that socket paths stay under the 108-byte limit.
make_workdir() {
    WORKDIR=$(mktemp -d "$TMPDIR/${WORKDIR_PREFIX:-bs-t}-$$.XXXXXX")
    cleanup_fn rm -rf "$WORKDIR"
    # Runs once every process is stopped, before the directory goes.
    cleanup_fn _scan_sanitizer_reports
    # The stderr of the CLI calls the suites' helpers make (status).
    _logs+=("$WORKDIR/cli.log")
    # In a sanitizer build, every instrumented process started from now on
    # (agents, the CLI, nbdkit's filter) writes its reports to
    # $WORKDIR/sanitizer.PID, whatever the test does with its stderr.
    local o
    for o in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
        export "$o=${!o:+${!o}:}log_path=$WORKDIR/sanitizer"
    done
}

# In a sanitizer build the filter is instrumented and nbdkit is not: every
# nbdkit a test runs gets the sanitizer's runtime preloaded (NBDKIT_PRELOAD,
# set by CTest from the build).
# The wrapper is a script that execs nbdkit, not a shell function: a
# function run in the background is a subshell, so `$!` would be that
# subshell and stopping it would leave nbdkit running on its own.
if [ -n "${NBDKIT_PRELOAD:-}" ]; then
    _real_nbdkit=$(command -v nbdkit) || _real_nbdkit=/usr/bin/nbdkit
    _nbdkit_wrap=$(mktemp -d "$TMPDIR/bs-nbdkit-$$.XXXXXX")
    cleanup_fn rm -rf "$_nbdkit_wrap"
    printf '#!/bin/sh\nLD_PRELOAD="%s${LD_PRELOAD:+:$LD_PRELOAD}" exec %s "$@"\n' \
        "$NBDKIT_PRELOAD" "$_real_nbdkit" >"$_nbdkit_wrap/nbdkit"
    chmod 755 "$_nbdkit_wrap/nbdkit"
    PATH=$_nbdkit_wrap:$PATH
fi

# A sanitizer build (BLKSHIP_SANITIZE, BLKSHIP_TSAN) reports to the
# sanitizer.PID files above, or to stderr for a process started otherwise:
# any report there or in a registered log fails a test that otherwise
# passed.
_san_re='(ERROR|WARNING): (Address|Leak|Undefined|Thread)Sanitizer|runtime error:'
_scan_sanitizer_reports() {
    local l
    for l in "${_logs[@]}" "$WORKDIR"/sanitizer.*; do
        [ -f "$l" ] || continue
        if grep -Eq "$_san_re" "$l"; then
            echo "FAIL: $TEST_NAME: sanitizer report in $l:" >&2
            grep -E -A 30 "$_san_re" "$l" | head -n 60 >&2
            _rc_override=1
        fi
    done
    return 0
}

# ---- Polling --------------------------------------------------------------------

# bs_status ARGS...: `$BLKSHIP status ARGS`, with the exit statuses that
# tell the resource's health (3 degraded, 4 syncing, 5 split brain; see
# blkship(8)) counted as success: a failure is 1 or 2.
bs_status() {
    local rc=0
    "$BLKSHIP" status "$@" || rc=$?
    case $rc in
    0 | 3 | 4 | 5) return 0 ;;
    *) return "$rc" ;;
    esac
}

# poll_until SECONDS CMD...: runs CMD every 50 ms until it succeeds; returns
# 1 after SECONDS.
poll_until() {
    local limit=$1 end
    shift
    end=$((SECONDS + limit))
    while [ "$SECONDS" -lt "$end" ]; do
        if "$@"; then
            return 0
        fi
        sleep 0.05
    done
    "$@"
}

# now_ms: wall-clock milliseconds, for measuring intervals finer than SECONDS.
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo "${t:0:-3}"
}

# A process that has exited but is not yet reaped still answers kill -0.
proc_alive() {
    local st
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

proc_gone() { ! proc_alive "$1"; }

# stop_limit SECONDS: SECONDS, or less once the test was terminated: then
# all stops share the STOP_WAIT that began with the SIGTERM.
stop_limit() {
    local left
    if [ -n "$_stop_deadline" ]; then
        left=$((_stop_deadline - SECONDS))
        [ "$left" -gt 0 ] || left=0
        [ "$left" -lt "$1" ] && { echo "$left"; return 0; }
    fi
    echo "$1"
}

# stop_pid PID [SECONDS]: SIGTERM, a wait bounded by SECONDS (STOP_WAIT) or
# stop_limit, then SIGKILL.  For cleanups.
stop_pid() {
    local pid=$1 limit
    limit=$(stop_limit "${2:-$STOP_WAIT}")
    if proc_alive "$pid"; then
        # It may exit between the check and the signal (a test's crash
        # point, a process already stopping): that is not a failure.
        kill -TERM "$pid" 2>/dev/null || true
        poll_until "$limit" proc_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
        poll_until 5 proc_gone "$pid"
    fi
    # Its exit status (143 when SIGTERM ended it) is not the caller's concern.
    wait "$pid" 2>/dev/null || true
    return 0
}

# kill9 PID: SIGKILL and wait (bounded) until it is gone.
kill9() {
    kill -KILL "$1" || fail "kill -9 $1"
    poll_until 10 proc_gone "$1" || fail "process $1 survived SIGKILL"
    wait "$1" 2>/dev/null || true
}

# ---- Logs -------------------------------------------------------------------------

# log_has PATTERN LOG: the log contains an extended regexp.
log_has() {
    grep -Eq -- "$1" "$2"
}

# expect_log PATTERN LOG [SECONDS]: polls (logs are written asynchronously).
expect_log() {
    poll_until "${3:-10}" log_has "$1" "$2" || fail "log $2 has no line matching: $1"
}

# log_lines LOG: the number of lines now, to look only at what follows.
log_lines() {
    wc -l <"$1"
}

# log_since LOG LINES: what the log gained after LINES lines.
log_since() {
    tail -n "+$(($2 + 1))" "$1"
}

