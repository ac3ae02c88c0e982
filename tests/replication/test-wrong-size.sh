#!/usr/bin/env bash
# A replica of the wrong size is refused before anything is written.
#   smaller, larger: a 64 MiB disk behind nbdkit and the real primary; the
#             replica a loop device of 48 MiB, then a file of 80 MiB.  The
#             secondary refuses the hello (status 2, both sizes in its log),
#             the primary logs the refusal and keeps everything dirty, no
#             pairing is recorded, written_bytes stays 0 and the replica's
#             bytes are unchanged.
#   resized after pairing: a 64 MiB file replica paired and in sync, both
#             agents stopped, the file grown to 80 MiB (as an lvextend
#             would).  The secondary refuses to start (status 1), naming
#             both sizes and its state file; the replica is unchanged.  The
#             same for a shrink to 48 MiB.  Restored to 64 MiB (it only
#             grew), it starts again and the primary resumes without a new
#             full sync.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
require_build
make_workdir

size=64M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
random_file "$img" $size "ws-$$"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "rtws$$" "$img"
wl_ctl=$WL_CTL
zero_id=00000000000000000000000000000000

# refused_hello TAG DEVICE DEVICE_BYTES: the real primary against a
# secondary whose replica is DEVICE (DEVICE_BYTES long).
refused_hello() {
    local tag=$1 dev=$2 devbytes=$3 sum s p
    note "$tag: replica of $devbytes bytes for a disk of $bytes"
    sum=$(sha256sum <"$dev")
    start_secondary "sec-$tag" "$dev"
    local sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG
    start_primary "pri-$tag" "$wl_ctl" "$SEC_ADDR"
    local pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
    expect_log "refusing primary .*: disk of another size \(primary disk $bytes bytes, replica $devbytes\)" "$sec_log" 20
    expect_log 'the secondary refused the session: disk of another size' "$pri_log" 10
    s=$(status "$sec_ctl") || fail "$tag: the secondary does not answer"
    p=$(status "$pri_ctl") || fail "$tag: the primary does not answer"
    note "$tag: secondary $s"
    [ "$(jget "$s" written_bytes)" = 0 ] && [ "$(jget "$s" received_bytes)" = 0 ] ||
        fail "$tag: the secondary wrote to a replica of the wrong size: $s"
    [ "$(jget "$s" primary_id)" = "$zero_id" ] || fail "$tag: a pairing was recorded: $s"
    [ "$(jget "$p" acked_bytes)" = 0 ] || fail "$tag: the primary had bytes acknowledged: $p"
    [ "$(sha256sum <"$dev")" = "$sum" ] || fail "$tag: the replica changed"
    expect_alive "$sec_pid" "blkship-secondary ($tag)"
    stop_pid "$pri_pid"
    stop_pid "$sec_pid"
}

small=$WORKDIR/small.img
random_file "$small" 48M "small-$$"
make_loop "$small"
refused_hello smaller "$LOOP" $((48 << 20))
large=$WORKDIR/large.img
random_file "$large" 80M "large-$$"
refused_hello larger "$large" $((80 << 20))

# ---- Resized after pairing --------------------------------------------------------

rep=$WORKDIR/replica.img
truncate -s $size "$rep"
start_secondary sec "$rep"
sec_pid=$SEC_PID sec_port=$SEC_PORT sec_addr=$SEC_ADDR
start_primary pri "$wl_ctl" "$sec_addr"
pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
wait_synced "$pri_ctl" 60
expect_same "$img" "$rep" "the replica after the first sync"
stop_pid "$pri_pid"
stop_pid "$sec_pid"
state=$WORKDIR/sec.state/secondary.state
grep -q "^disk_bytes $bytes\$" "$state" || fail "the state file does not record the size: $(cat "$state")"

# start_refused TAG: the secondary must exit with status 1 at start, saying
# the replica's size changed since it was paired, and leave it unchanged.
start_refused() {
    local tag=$1 log=$WORKDIR/sec-$1.log pid rc sum
    sum=$(sha256sum <"$rep")
    _logs+=("$log")
    "$SECONDARY" --listen "$TEST_HOST:$sec_port" --device "$rep" --state-dir "$WORKDIR/sec.state" \
        --control "$WORKDIR/sec-$tag.ctl" --cert "$CERTS/secondary.crt" \
        --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>"$log" &
    pid=$!
    cleanup_fn stop_pid "$pid"
    poll_until 15 proc_gone "$pid" || fail "$tag: blkship-secondary started on a resized replica"
    wait "$pid" && rc=0 || rc=$?
    [ "$rc" = 1 ] || fail "$tag: blkship-secondary exited with status $rc, expected 1"
    log_has "replica $rep is $(stat -c %s "$rep") bytes but was $bytes bytes when it was paired with primary [0-9a-f]{32}: refusing to start.*remove $state" "$log" ||
        fail "$tag: the log does not explain the refusal: $(cat "$log")"
    note "$tag: $(cat "$log")"
    [ "$(sha256sum <"$rep")" = "$sum" ] || fail "$tag: the replica changed"
    grep -q "^disk_bytes $bytes\$" "$state" || fail "$tag: the state file was changed: $(cat "$state")"
}

truncate -s 80M "$rep"
start_refused grown
truncate -s 48M "$WORKDIR/shrunk.img"
dd if="$rep" of="$WORKDIR/shrunk.img" bs=1M count=48 conv=notrunc status=none
cp "$rep" "$WORKDIR/grown.img"
mv "$WORKDIR/shrunk.img" "$rep"
start_refused shrunk

note "restored to $size (it had only grown): it starts, the primary resumes without a full sync"
mv "$WORKDIR/grown.img" "$rep"
truncate -s $size "$rep"
pri_lines=$(log_lines "$pri_log")
start_secondary --port "$sec_port" sec "$rep"
start_primary pri "$wl_ctl" "$sec_addr"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$rep" "the replica restored to its size"
! log_has 'full sync' "$PRI_LOG" || fail "the restored replica was fully resynchronised"
