# Shared helpers for the write-log integration tests (bash).  A test starts
#   source "$(dirname "$0")/functions.sh"
# and gets the harness of tests/harness.sh (strict mode, a cleanup registry
# run on every exit, $WORKDIR, `requires`, `fail`, polling) plus
# `start_nbdkit` and the write-log helpers below.
#
# The build is found through the environment CTest sets: FILTER, BLKSHIP
# and RAWCLIENT, or BLKSHIP_BUILD_DIR to derive them from.

WORKDIR_PREFIX=bs-it
DUMP_LINES=40
# shellcheck source=../harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../harness.sh"

: "${TMPDIR:=/tmp}"
if [ -n "${BLKSHIP_BUILD_DIR:-}" ]; then
    : "${FILTER:=$BLKSHIP_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so}"
    : "${BLKSHIP:=$BLKSHIP_BUILD_DIR/cli/blkship}"
    : "${RAWCLIENT:=$BLKSHIP_BUILD_DIR/tests/integration/wlog-rawclient}"
fi

# The products of the build are not prerequisites: their absence fails.
require_build() {
    local v
    for v in FILTER BLKSHIP RAWCLIENT; do
        [ -n "${!v:-}" ] || fail "$v is not set (set BLKSHIP_BUILD_DIR or $v)"
        [ -f "${!v}" ] || fail "$v=${!v} does not exist: build the project first"
    done
}

# Unique per test process: parallel runs never share a log name.
unique_name() {
    echo "${1}$$"
}

# ---- nbdkit ---------------------------------------------------------------------

_nbdkit_count=0

# _await_exit PID SECONDS: 0 when nbdkit exited, 1 when it is still running.
_await_exit() {
    poll_until "$2" proc_gone "$1"
}

_kill_nbdkit() {
    local pid=$1
    if proc_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        _await_exit "$pid" "$(stop_limit "$STOP_WAIT")" || kill -KILL "$pid" 2>/dev/null
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
    _logs+=("$NBDKIT_LOG")
    cleanup_fn rm -f "$SHM"
    nbdkit -f "${opts[@]}" --filter="$FILTER" file "$image" \
        writelog-name="$name" writelog-dir="$dir" -U "$NBD_SOCK" "$@" >"$NBDKIT_LOG" 2>&1 &
    pid=$!
    NBDKIT_PID=$pid
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
# and sets NBDKIT_STATUS to its exit status.
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
}

# expect_nbdkit_failure LOG DIR NAME IMAGE NBD_SOCK [FILTER_ARGS...]: runs an
# nbdkit that must refuse to start: it must exit non-zero within 15 s.
# Sets NBDKIT_STATUS.
expect_nbdkit_failure() {
    local log=$1 dir=$2 name=$3 image=$4 sock=$5 pid
    shift 5
    _logs+=("$log")
    nbdkit -f --filter="$FILTER" file "$image" writelog-name="$name" \
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
# quoted string, printed without quotes; the " }" after the last member is
# not part of its value).
info_field() {
    "$BLKSHIP" wlog info "$CTL" --json |
        sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/;T;s/ *\$//;p"
}
