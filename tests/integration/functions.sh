# Shared helpers for the write-log integration tests (bash).  A test starts
#   source "$(dirname "$0")/functions.sh"
# and gets: strict mode, a cleanup registry run on every exit, a private
# work directory ($WORKDIR), `requires`, `fail`, `start_nbdkit` and friends.
#
# The build is found through the environment CTest sets: FILTER, BLKSHIP
# and RAWCLIENT, or BLKSHIP_BUILD_DIR to derive them from.

set -eEu -o pipefail

TEST_NAME=$(basename "$0" .sh)

# A time limit below CTest's, so that a hung step still ends in our cleanup:
# timeout runs the test in its own process group and, at the limit, sends
# SIGTERM to all of it (nbdkit removes its socket and shm on SIGTERM; the
# test shell runs its EXIT trap), then SIGKILL 10 s later.
if [ -z "${_BS_IT_TIMED:-}" ] && command -v timeout >/dev/null; then
    export _BS_IT_TIMED=1
    exec timeout -k 10 "${TEST_TIME_LIMIT:-300}" bash "$0" "$@"
fi
: "${TMPDIR:=/tmp}"
if [ -n "${BLKSHIP_BUILD_DIR:-}" ]; then
    : "${FILTER:=$BLKSHIP_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so}"
    : "${BLKSHIP:=$BLKSHIP_BUILD_DIR/cli/blkship}"
    : "${RAWCLIENT:=$BLKSHIP_BUILD_DIR/tests/integration/wlog-rawclient}"
fi

# ---- Cleanup registry -------------------------------------------------------

_cleanup_fns=()
_nbdkit_logs=()
_nbdkit_count=0

# cleanup_fn CMD [ARGS...]: run CMD ARGS on exit, last registered first,
# whether the test passed, failed or was interrupted.
cleanup_fn() {
    _cleanup_fns+=("$(printf '%q ' "$@")")
}

_run_cleanups() {
    local rc=$? i
    set +eE
    trap - ERR
    for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_fns[i]}"
    done
    case $rc in
    0) echo "PASS: $TEST_NAME" ;;
    77) ;;
    *) echo "FAIL: $TEST_NAME (exit status $rc)" ;;
    esac
    exit "$rc"
}
trap _run_cleanups EXIT
trap 'echo "FAIL: $TEST_NAME: terminated (time limit ${TEST_TIME_LIMIT:-300} s?)" >&2; exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
trap 'exit 141' PIPE

_dump_logs() {
    local l
    for l in "${_nbdkit_logs[@]}"; do
        [ -f "$l" ] || continue
        echo "---- last lines of $l ----" >&2
        tail -n 40 "$l" >&2
    done
}

# An unexpected command failure (set -e) says where and shows the logs.
_on_err() {
    echo "FAIL: $TEST_NAME: line $1: command failed (status $2): $3" >&2
    _dump_logs
}
trap '_on_err "$LINENO" "$?" "$BASH_COMMAND"' ERR

# fail MSG: report, show the nbdkit logs' tails, exit 1.
fail() {
    trap - ERR
    echo "FAIL: $TEST_NAME: $*" >&2
    _dump_logs
    exit 1
}

# kill_quiet ARGS...: kill, for cleanups: a process already gone is fine.
kill_quiet() {
    kill "$@" 2>/dev/null
    return 0
}

note() {
    echo "== $TEST_NAME: $*"
}

# requires CMD: skip (exit 77) when a prerequisite cannot exist here.
requires() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "SKIP: $TEST_NAME: requires $1, which is not installed"
        exit 77
    fi
}

# The products of the build are not prerequisites: their absence fails.
require_build() {
    local v
    for v in FILTER BLKSHIP RAWCLIENT; do
        [ -n "${!v:-}" ] || fail "$v is not set (set BLKSHIP_BUILD_DIR or $v)"
        [ -f "${!v}" ] || fail "$v=${!v} does not exist: build the project first"
    done
}

# ---- Work directory, names ----------------------------------------------------

# Sets WORKDIR to a fresh private directory, removed on exit.  Short, so
# that socket paths stay under the 108-byte limit.
make_workdir() {
    WORKDIR=$(mktemp -d "$TMPDIR/bs-it-$$.XXXXXX")
    cleanup_fn rm -rf "$WORKDIR"
}

# Unique per test process: parallel runs never share a log name.
unique_name() {
    echo "${1}$$"
}

# ---- Polling -------------------------------------------------------------------

# poll_until SECONDS CMD...: runs CMD every 50 ms until it succeeds; fails
# (returns 1) after SECONDS.
poll_until() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 20; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 0.05
    done
    "$@"
}

# A process that has exited but is not yet reaped still answers kill -0.
proc_alive() {
    local st
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

proc_gone() { ! proc_alive "$1"; }

# ---- nbdkit ---------------------------------------------------------------------

# A filter built with AddressSanitizer (BLKSHIP_SANITIZE) only loads into
# nbdkit with the ASan runtime preloaded.  That preload has a side effect
# outside blkship: nbdkit starts with glibc's __libc_setlocale_lock holding
# a negative reader count (seen with gdb even with no filter), so after
# anything in the process calls strerror() nbdkit can hang in its exit
# handlers (libp11-kit's freelocale) once everything else has stopped.  In
# that mode a stop counts as clean when the filter has removed its socket
# and shm; the process is then killed.
NBDKIT_ASAN=0
_nbdkit_env=()
_asan_lib=$(ldd "${FILTER:-/nonexistent}" 2>/dev/null | awk '/libasan/ { print $3; exit }' || true)
if [ -n "$_asan_lib" ]; then
    NBDKIT_ASAN=1
    _nbdkit_env=(env "LD_PRELOAD=$_asan_lib" "ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}")
fi
declare -A _ctl_of_pid=() _shm_of_pid=()

_filter_cleaned() {
    [ ! -e "${_ctl_of_pid[$1]:-/nonexistent}" ] && [ ! -e "${_shm_of_pid[$1]:-/nonexistent}" ]
}
_gone_or_cleaned() { proc_gone "$1" || _filter_cleaned "$1"; }

# _await_exit PID SECONDS: 0 when nbdkit exited, 1 when it is still
# running, 2 when (ASan mode only) it cleaned up but hung and was killed.
_await_exit() {
    local pid=$1 limit=$2
    if [ "$NBDKIT_ASAN" = 1 ]; then
        poll_until "$limit" _gone_or_cleaned "$pid" || return 1
        poll_until 2 proc_gone "$pid" && return 0
        echo "note: nbdkit $pid (ASan preload) hung in its exit handlers after cleaning up; killed" >&2
        kill -KILL "$pid" 2>/dev/null
        poll_until 5 proc_gone "$pid"
        return 2
    fi
    poll_until "$limit" proc_gone "$pid"
}

_kill_nbdkit() {
    local pid=$1
    if proc_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        _await_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# start_nbdkit [--nbd-sock PATH] [--log PATH] [--opt NBDKIT_OPTION]... DIR NAME IMAGE [FILTER_ARGS...]
# Runs nbdkit with the writelog filter over the file plugin in the
# background and waits (bounded) for the control socket and the NBD
# socket.  Sets NBDKIT_PID, NBDKIT_LOG, CTL, SHM (the /dev/shm path),
# NBD_SOCK and NBD_URI.  nbdkit is stopped and its shm removed on exit.
start_nbdkit() {
    local nbd_sock="" log="" opts=() dir name image safe pid
    while [ $# -gt 0 ]; do
        case $1 in
        --nbd-sock) nbd_sock=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --opt) opts+=("$2"); shift 2 ;;
        *) break ;;
        esac
    done
    dir=$1 name=$2 image=$3
    shift 3
    safe=${name//[:\/]/_}
    [ -n "$nbd_sock" ] || nbd_sock=$dir/nbd.sock
    [ "${NBDKIT_VERBOSE:-0}" = 1 ] && opts+=(-v)
    _nbdkit_count=$((_nbdkit_count + 1))
    NBDKIT_LOG=${log:-$dir/nbdkit-$safe.$_nbdkit_count.log}
    CTL=$dir/log_$safe.ctl
    SHM=/dev/shm/log_$safe.wlog
    NBD_SOCK=$nbd_sock
    NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
    [ ${#CTL} -lt 108 ] || fail "control socket path too long: $CTL"
    _nbdkit_logs+=("$NBDKIT_LOG")
    cleanup_fn rm -f "$SHM"
    "${_nbdkit_env[@]}" nbdkit -f "${opts[@]}" --filter="$FILTER" file "$image" \
        writelog-name="$name" writelog-dir="$dir" -U "$NBD_SOCK" "$@" >"$NBDKIT_LOG" 2>&1 &
    pid=$!
    NBDKIT_PID=$pid
    _ctl_of_pid[$pid]=$CTL
    _shm_of_pid[$pid]=$SHM
    cleanup_fn _kill_nbdkit "$pid"
    local i
    for ((i = 0; i < 300; i++)); do
        if ! proc_alive "$pid"; then
            wait "$pid" 2>/dev/null && rc=0 || rc=$?
            fail "nbdkit ($name) exited with status $rc before its sockets appeared"
        fi
        if [ -S "$CTL" ] && [ -S "$NBD_SOCK" ]; then
            return 0
        fi
        sleep 0.05
    done
    fail "nbdkit ($name) did not create $CTL and $NBD_SOCK within 15 s"
}

# stop_nbdkit PID [SIGNAL]: signals nbdkit, waits (bounded) for it to exit
# and sets NBDKIT_STATUS to its exit status ("asan-hang" for the ASan-mode
# exit hang described above).
stop_nbdkit() {
    local pid=$1 sig=${2:-TERM} r=0
    kill "-$sig" "$pid" || fail "kill -$sig $pid"
    if [ "$sig" = KILL ] || [ "$sig" = 9 ]; then
        poll_until 15 proc_gone "$pid" || fail "nbdkit $pid survived SIGKILL"
    else
        _await_exit "$pid" 15 || r=$?
        [ "$r" != 1 ] || fail "nbdkit $pid still running 15 s after SIG$sig"
    fi
    wait "$pid" 2>/dev/null && NBDKIT_STATUS=0 || NBDKIT_STATUS=$?
    [ "$r" != 2 ] || NBDKIT_STATUS=asan-hang
}

# expect_nbdkit_failure LOG DIR NAME IMAGE NBD_SOCK [FILTER_ARGS...]: runs an
# nbdkit that must refuse to start: it must exit non-zero within 15 s.
# Sets NBDKIT_STATUS.
expect_nbdkit_failure() {
    local log=$1 dir=$2 name=$3 image=$4 sock=$5 pid
    shift 5
    _nbdkit_logs+=("$log")
    "${_nbdkit_env[@]}" nbdkit -f --filter="$FILTER" file "$image" writelog-name="$name" \
        writelog-dir="$dir" -U "$sock" "$@" >"$log" 2>&1 &
    pid=$!
    cleanup_fn _kill_nbdkit "$pid"
    if ! poll_until 15 proc_gone "$pid"; then
        fail "nbdkit ($name, expected to fail) is still running after 15 s"
    fi
    wait "$pid" 2>/dev/null && NBDKIT_STATUS=0 || NBDKIT_STATUS=$?
    [ "$NBDKIT_STATUS" -ne 0 ] || fail "nbdkit ($name) exited 0; it should have refused to start"
}

# log_has PATTERN [LOG]: the nbdkit log contains an extended regexp.
log_has() {
    grep -Eq -- "$1" "${2:-$NBDKIT_LOG}"
}

# expect_log PATTERN [LOG]: polls (the log is written asynchronously).
expect_log() {
    poll_until 5 log_has "$@" || fail "nbdkit log ${2:-$NBDKIT_LOG} has no line matching: $1"
}

# ---- I/O helpers ---------------------------------------------------------------------

# qio CMD...: one qemu-io session over NBD running each CMD; any failure
# (including a read -P mismatch) fails the test.
qio() {
    local args=() c out
    for c in "$@"; do
        args+=(-c "$c")
    done
    out=$(qemu-io -f raw "${args[@]}" "$NBD_URI" 2>&1) || fail "qemu-io failed: $*"$'\n'"$out"
    if grep -Eq 'failed|error|Error' <<<"$out"; then
        fail "qemu-io reported an error: $*"$'\n'"$out"
    fi
}

# image_range IMAGE SECTOR COUNT: the bytes of the image at those sectors.
image_range() {
    dd if="$1" bs=512 skip="$2" count="$3" status=none
}

# pattern_file BYTE LEN: LEN bytes of value BYTE on stdout.
pattern_file() {
    head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"
}

# expect_extents WHAT ACTUAL_FILE EXPECTED_TEXT: exact comparison.
expect_extents() {
    local what=$1 actual=$2 expected=$3
    if ! diff -u <(printf '%s' "$expected" | sed '/^$/d') "$actual" >"$WORKDIR/diff.out"; then
        fail "$what: extents differ from the expected (- expected, + actual):"$'\n'"$(head -n 40 "$WORKDIR/diff.out")"
    fi
}

# wlog VERB ARGS...: `blkship wlog` on $CTL; fails the test if it fails.
wlog() {
    local verb=$1
    shift
    "$BLKSHIP" wlog "$verb" "$CTL" "$@" || fail "blkship wlog $verb $CTL $* failed"
}

# ring_cmp SECTOR COUNT IMAGE: reads through the ring with `blkship wlog
# read` and compares with the image's bytes.
ring_cmp() {
    local s=$1 c=$2 img=$3
    wlog read "$s" "$c" --output "$WORKDIR/ring.bin"
    image_range "$img" "$s" "$c" >"$WORKDIR/image.bin"
    cmp "$WORKDIR/ring.bin" "$WORKDIR/image.bin" ||
        fail "ring read of sectors $s+$c differs from the image"
}

# info_field KEY: one field of `blkship wlog info --json` (an integer or a
# quoted string, printed without quotes).
info_field() {
    "$BLKSHIP" wlog info "$CTL" --json | sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"
}
