#!/usr/bin/env bash
# The volatile-cache filter the power-loss tests rely on
# (tests/powerloss/nbdkit-volatile-filter.c) does what they assume, checked
# with qemu-io over NBD on a 1 MiB backing file of 0x11 bytes:
# - reads see every write at once, including a write of part of a sector
#   (the rest of the sector kept), write-zeroes and discard;
# - a FLUSH makes everything before it durable; a FUA write is durable by
#   itself;
# - kill -9 of nbdkit (the power cut) loses every write, zero and discard
#   after the last flush that was not FUA: the backing file holds exactly
#   what was made durable, and a restarted nbdkit serves exactly that.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
[ -f "${VOLATILE_FILTER:-}" ] || fail "VOLATILE_FILTER=${VOLATILE_FILTER:-} does not exist: build the project first"
make_workdir

backing=$WORKDIR/backing.img
truncate -s 1M "$backing"
qemu-io -f raw "$backing" -c "write -q -P 0x11 0 1M" >/dev/null || fail "cannot fill $backing"

sock=$WORKDIR/vol.sock
uri="nbd+unix:///?socket=$sock"
start_volatile() {
    local log=$WORKDIR/nbdkit-vol.$1.log
    _logs+=("$log")
    rm -f "$sock"
    nbdkit -f --filter="$VOLATILE_FILTER" file "$backing" -U "$sock" >"$log" 2>&1 &
    VPID=$!
    cleanup_fn stop_pid "$VPID"
    _up() { proc_alive "$VPID" || fail "nbdkit exited: $(tail -n 5 "$log")"; [ -S "$sock" ]; }
    poll_until 15 _up || fail "nbdkit made no socket in 15 s"
}

# qio [--crash] TARGET WHAT COMMANDS...: runs qemu-io on a raw image with
# the cache in writeback mode (a write is FUA only when asked for with -f;
# qemu's default writethrough makes every write FUA), discards passed on
# (not ignored as by default), and fails on any error or pattern mismatch
# it reports.  --crash ends it with its `abort` command: qemu flushes an
# image it closes, a crashed client flushes nothing.
qio() {
    local crash="" target what out c args=() rc
    if [ "$1" = --crash ]; then
        crash=1
        shift
    fi
    target=$1 what=$2
    shift 2
    for c in "$@"; do
        args+=(-c "$c")
    done
    [ -z "$crash" ] || args+=(-c abort)
    out=$( (ulimit -c 0; exec qemu-io -t writeback -d unmap -f raw "$target" "${args[@]}") 2>&1) && rc=0 || rc=$?
    if [ -n "$crash" ]; then
        [ "$rc" = 134 ] || fail "$what: qemu-io should have aborted (status 134), not exited with $rc: $out"
    else
        [ "$rc" = 0 ] || fail "$what: qemu-io failed (status $rc): $out"
    fi
    ! grep -Eiq 'fail|error|mismatch' <<<"$out" || fail "$what: $out"
}

start_volatile 1
qio --crash "$uri" "writes read back before any flush" \
    "write -q -P 0x22 0 4k" "write -q -P 0x33 4196 200" "write -q -z 8192 4k" \
    "read -q -P 0x22 0 4k" "read -q -P 0x11 4096 100" "read -q -P 0x33 4196 200" \
    "read -q -P 0x11 4396 3796" "read -q -P 0 8192 4k" \
    "flush" \
    "write -q -P 0x44 65536 4k" "write -q -f -P 0x55 131072 4k" "write -q -P 0x66 196608 4k" \
    "write -q -z 262144 4k" "discard -q 327680 4k" \
    "read -q -P 0x44 65536 4k" "read -q -P 0x55 131072 4k" "read -q -P 0x66 196608 4k" \
    "read -q -P 0 262144 4k" "read -q -P 0 327680 4k"

# The power cut.
kill9 "$VPID"
check_durable() {
    qio "$1" "$2" \
        "read -q -P 0x22 0 4k" "read -q -P 0x11 4096 100" "read -q -P 0x33 4196 200" \
        "read -q -P 0x11 4396 3796" "read -q -P 0 8192 4k" \
        "read -q -P 0x11 12288 53248" "read -q -P 0x11 65536 4k" "read -q -P 0x55 131072 4k" \
        "read -q -P 0x11 135168 61440" "read -q -P 0x11 196608 4k" "read -q -P 0x11 262144 4k" \
        "read -q -P 0x11 327680 4k" "read -q -P 0x11 331776 716800"
}
check_durable "$backing" "the backing file after the power cut"
start_volatile 2
check_durable "$uri" "the restarted nbdkit"
