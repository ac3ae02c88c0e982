#!/usr/bin/env bash
# Large ZERO frames, from repl-peer (the protocol allows a ZERO over the
# whole disk, which the real primary never sends).
#   whole disk: a 2 GiB loop device with junk at its start, middle and
#             end; the secondary's writes to it throttled to 256 MiB/s (a
#             blkio cgroup), so that zeroing it takes about 8 s.  One ZERO
#             over the whole disk, then FLUSH 1.  While it runs, the
#             secondary answers its control socket every time within 2 s
#             and keeps sending heartbeats; the ACK comes only once the
#             zeroing is done (it took at least 3 s: otherwise the throttle
#             did not work and the test proves nothing), and right after
#             it the device reads as zeroes throughout.
#   unaligned ends: a 160 MiB loop device with 4096-byte sectors full of
#             junk; a ZERO from sector 7 to 3 sectors past 130 MiB (its
#             ends inside 4 KiB blocks, crossing two 64 MiB pieces) is
#             acknowledged and zeroes exactly that range.
source "$(dirname "$0")/functions.sh"
requires_root
requires losetup
requires openssl
require_build
make_workdir

CERTS=$WORKDIR/pki
make_certs "$CERTS"

# peer ARGS...: repl-peer with the primary's credentials; output in PEER_OUT.
peer() {
    PEER_OUT=$("$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
        --ca "$CERTS/ca.crt" "$@") || fail "repl-peer $* could not run:"$'\n'"$PEER_OUT"
}

# ---- Whole disk, throttled --------------------------------------------------------

size=2G
bytes=$(numfmt --from=iec $size)
rate=$((256 << 20))
rep=$WORKDIR/big.img
truncate -s $size "$rep"
random_file "$WORKDIR/junk" 1M "junk-$$"
for mib in 0 1024 2047; do
    dd if="$WORKDIR/junk" of="$rep" bs=1M seek=$mib conv=notrunc status=none
done
make_loop "$rep"
devno=$(stat -c '%Hr:%Lr' "$LOOP")

# A cgroup that throttles writes to the loop device: v1 blkio or v2 io.
cg=""
if [ -d /sys/fs/cgroup/blkio ] && [ -e /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device ]; then
    cg=/sys/fs/cgroup/blkio/bsrt$$
    mkdir "$cg"
    cleanup_fn rmdir "$cg"
    echo "$devno $rate" >"$cg/blkio.throttle.write_bps_device"
elif grep -qw io /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cg=/sys/fs/cgroup/bsrt$$
    grep -qw io /sys/fs/cgroup/cgroup.subtree_control || echo +io >/sys/fs/cgroup/cgroup.subtree_control
    mkdir "$cg"
    cleanup_fn rmdir "$cg"
    echo "$devno wbps=$rate" >"$cg/io.max"
else
    skip "no block I/O throttling (cgroup v1 blkio or v2 io controller) to make zeroing last long enough to watch"
fi

start_secondary big "$LOOP"
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG
echo "$sec_pid" >"$cg/cgroup.procs"
note "ZERO over all $bytes bytes, writes throttled to $rate bytes/s"
"$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
    --disk-bytes "$bytes" --timeout 60 --sector 0 --count $((bytes / 512)) zero "$SEC_ADDR" \
    >"$WORKDIR/peer.out" 2>&1 &
peer_pid=$!
cleanup_fn kill_quiet "$peer_pid"

# Sampling the control socket for as long as the zeroing runs.
answers=0 late=0 worst=0
while proc_alive "$peer_pid"; do
    t0=$(date +%s%N)
    rc=0
    timeout 2 "$BLKSHIP" status --control "$sec_ctl" --json >/dev/null 2>&1 || rc=$?
    # 3-5 are the resource's health: the agent answered.
    if [ "$rc" = 0 ] || { [ "$rc" -ge 3 ] && [ "$rc" -le 5 ]; }; then
        answers=$((answers + 1))
    else
        late=$((late + 1))
    fi
    t=$((($(date +%s%N) - t0) / 1000000))
    [ "$t" -le "$worst" ] || worst=$t
    sleep 0.1
done
wait "$peer_pid" || fail "repl-peer failed: $(cat "$WORKDIR/peer.out")"
grep -v 'recv: HEARTBEAT' "$WORKDIR/peer.out" | sed 's/^/    peer: /'
grep -q '^result: acked$' "$WORKDIR/peer.out" || fail "the whole-disk ZERO was not acknowledged"
took=$(sed -n 's/^zero: answered after \([0-9]*\)\.[0-9]* s.*/\1/p' "$WORKDIR/peer.out")
beats=$(sed -n 's/^zero: .* s, \([0-9]*\) heartbeats meanwhile/\1/p' "$WORKDIR/peer.out")
note "acknowledged after about $took s with $beats heartbeats; control socket: $answers answers, $late late, slowest $worst ms"
cmp -n "$bytes" "$LOOP" /dev/zero || fail "the replica does not read as zeroes right after the ACK"
s=$(status "$sec_ctl")
[ "$(jget "$s" written_bytes)" = "$bytes" ] && [ "$(jget "$s" acked_bytes)" = "$bytes" ] ||
    fail "the secondary's counters do not show the whole disk zeroed and durable: $s"
[ "$took" -ge 3 ] || fail "zeroing 2 GiB at $rate bytes/s took under 3 s: the throttle did not slow it, so nothing was shown"
[ "$late" = 0 ] || fail "the control socket did not answer within 2 s $late times while zeroing ran (the loop was blocked)"
[ "$answers" -ge "$took" ] || fail "only $answers status answers in $took s"
[ "$beats" -ge $((took - 2)) ] || fail "only $beats heartbeats in $took s while zeroing ran"
! log_has 'error' "$sec_log" || fail "the secondary logged an error"
stop_pid "$sec_pid"

# ---- Unaligned ends on a 4 KiB-sector device -----------------------------------------

size=160M
bytes=$(numfmt --from=iec $size)
rep=$WORKDIR/small.img
random_file "$rep" $size "z4k-$$"
cp "$rep" "$WORKDIR/expected.img"
first=7
end=$(((130 << 20) / 512 + 3))
dd if=/dev/zero of="$WORKDIR/expected.img" bs=512 seek=$first count=$((end - first)) conv=notrunc status=none
make_loop "$rep" --sector-size 4096
start_secondary small "$LOOP"
note "ZERO of sectors $first to $end on a 4096-byte-sector device"
peer --disk-bytes "$bytes" --timeout 30 --sector $first --count $((end - first)) zero "$SEC_ADDR"
grep -q '^result: acked$' <<<"$PEER_OUT" || fail "the unaligned ZERO was not acknowledged: $PEER_OUT"
expect_same "$WORKDIR/expected.img" "$LOOP" "the 4 KiB-sector replica after an unaligned ZERO"
! log_has 'error' "$SEC_LOG" || fail "the secondary logged an error"
