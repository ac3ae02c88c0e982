#!/usr/bin/env bash
# kill -9 of blkship-primary mid-stream, restarted with the same state
# directory: the replica converges to the image, and the restarted agent
# resends only what was dirty, not the whole disk.
#
# A: during the initial full sync of a 1 GiB disk of random data, once at
#    least 60% is on the replica.  No writes happen, so the bound is strict:
#    the new process sends at most the dirty_bytes read just before the kill
#    (dirty_bytes counts every grain not yet acknowledged, those in flight
#    included; the bitmap is a shared mapping of the state file, so a
#    SIGKILL loses none of its updates, and acknowledgements after the
#    status read only shrink it).
# B: with the replica in sync, during a fio load (rate-limited random 4k
#    writes, verified) that goes on across the kill and the restart.  The
#    new process may send what was dirty at the kill, plus every write fio
#    makes from then on, plus writes the log held but had not yet handed
#    over (made before the status read): each of those is one of fio's
#    writes, so the bound is dirty_bytes at the read plus all of fio's
#    writes in this phase (its io_size), at 4 KiB each.  That is far less
#    than the disk, and is asserted to be.
# C: restarted while the secondary is down, after 8 MiB changed through
#    NBD.  The new process keeps retrying; once the secondary is back on
#    its port the replica converges, and exactly the change is sent: the
#    pair was in sync (nothing dirty or in flight) when both were killed,
#    the 8 MiB are whole 4 KiB grains, sent_bytes counts the disk bytes
#    each frame covers, and a grain goes out once per session; the only
#    session is the one after the secondary's return, and no link loss
#    happens in it to put frames back.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires qemu-io
requires_fio_nbd
require_build
make_workdir

size=1G
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "kp-$$"
truncate -s $size "$rep"
make_loop "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rtkp$$" "$img"
start_secondary sec "$LOOP"
sec_ctl=$SEC_CTL sec_addr=$SEC_ADDR sec_pid=$SEC_PID
start_primary pri "$WL_CTL" "$sec_addr"

# kill_primary_when MIN_PERCENT: polls until at least MIN_PERCENT of the
# disk is acknowledged (dirty_bytes, which counts what is sent but not yet
# acknowledged too, is at most the rest; sync_percent counts what is sent,
# and up to 256 MiB may be sent unacknowledged) with the link up, keeps
# that status line in KILL_STATUS and kills -9.
kill_primary_when() {
    local min=$1 s d end=$((SECONDS + 60))
    while :; do
        s=$(status "$PRI_CTL") || s=""
        d=$(jget "$s" dirty_bytes)
        if [ -n "$d" ] && [ "$(jget "$s" connected)" = true ] &&
            [ "$d" -le $((bytes * (100 - min) / 100)) ]; then
            break
        fi
        [ "$SECONDS" -lt "$end" ] || fail "sync never reached $min%: $s"
        proc_alive "$PRI_PID" || fail "blkship-primary died: $(tail -n 5 "$PRI_LOG")"
        sleep 0.02
    done
    KILL_STATUS=$s
    kill9 "$PRI_PID"
}

# ---- A: kill -9 late in the initial sync ------------------------------------------

kill_primary_when 60
note "A: killed during the initial sync at: $KILL_STATUS"
dirty_a=$(jget "$KILL_STATUS" dirty_bytes)
sent_a=$(jget "$KILL_STATUS" sent_bytes)
[ "$dirty_a" -lt "$bytes" ] || fail "killed before any progress: $KILL_STATUS"
[ "$dirty_a" -gt 0 ] || fail "the sync had already finished when killed; the test needs a slower sync"
start_primary pri "$WL_CTL" "$sec_addr"
wait_synced "$PRI_CTL" 90
s=$(status "$PRI_CTL")
resent_a=$(jget "$s" sent_bytes)
note "A: after the restart: $s"
expect_same "$img" "$LOOP" "A: replica after kill -9 of the primary during the initial sync"
[ "$resent_a" -le "$dirty_a" ] ||
    fail "A: the restarted primary sent $resent_a bytes; at most the $dirty_a dirty bytes at the kill were due"
[ "$resent_a" -lt $((bytes / 2)) ] || fail "A: the restart resent $resent_a of $bytes bytes: a full resync"
[ "$resent_a" -gt 0 ] || fail "A: the restart sent nothing although $dirty_a bytes were dirty"
! log_has 'full sync|whole disk' "$PRI_LOG" || fail "A: the restarted primary started a full sync"
note "A: sent $sent_a before the kill, $resent_a after (dirty at the kill: $dirty_a of $bytes)"

# ---- B: kill -9 during a fio load, fio going on across the restart -------------

fio_io=64M
fio_verify_job "$WORKDIR/load.fio" 8 "$fio_io" 16m
acked0=$(field "$PRI_CTL" acked_bytes)
fio --output="$WORKDIR/fio.out" "$WORKDIR/load.fio" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid" 5
# Kill once the new load has been flowing for a while (8 MiB acknowledged),
# at a moment when frames are in flight.
_load_in_flight() {
    KILL_STATUS=$(status "$PRI_CTL") || return 1
    [ "$(jget "$KILL_STATUS" acked_bytes)" -ge $((acked0 + (8 << 20))) ] &&
        [ "$(jget "$KILL_STATUS" inflight_bytes)" -gt 0 ]
}
poll_until 30 _load_in_flight || fail "B: the fio load does not reach the replica: $KILL_STATUS"
kill9 "$PRI_PID"
proc_alive "$fio_pid" || fail "B: fio had already finished at the kill; the load must go on across it"
dirty_b=$(jget "$KILL_STATUS" dirty_bytes)
note "B: killed under load at: $KILL_STATUS"
start_primary pri "$WL_CTL" "$sec_addr"
wait "$fio_pid" || fail "B: fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.out")"
wait_synced "$PRI_CTL" 90
s=$(status "$PRI_CTL")
resent_b=$(jget "$s" sent_bytes)
note "B: after the restart: $s"
expect_same "$img" "$LOOP" "B: replica after kill -9 of the primary under load"
bound=$((dirty_b + $(numfmt --from=iec $fio_io)))
[ "$resent_b" -le "$bound" ] ||
    fail "B: the restarted primary sent $resent_b bytes; at most $bound (dirty $dirty_b at the kill + $fio_io written by fio) were due"
[ "$resent_b" -lt $((bytes / 4)) ] || fail "B: the restart resent $resent_b of $bytes bytes"
! log_has 'full sync|whole disk' "$PRI_LOG" || fail "B: the restarted primary started a full sync"
s=$(status "$sec_ctl")
[ "$(jget "$s" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $s"
expect_alive "$sec_pid" blkship-secondary
note "B: sent $resent_b after the restart (bound $bound; dirty at the kill $dirty_b)"

# ---- C: restarted while the secondary is down ------------------------------------

s=$(status "$PRI_CTL")
[ "$(jget "$s" dirty_bytes)" = 0 ] && [ "$(jget "$s" inflight_bytes)" = 0 ] ||
    fail "C: the pair is not in sync before the kills: $s"
kill9 "$PRI_PID"
kill9 "$sec_pid"
qemu-io -f raw -c "write -P 0x5c 300M 8M" "$NBD_URI" >/dev/null || fail "C: qemu-io write failed"
start_primary pri "$WL_CTL" "$sec_addr"
poll_until 20 log_has 'cannot connect to|connecting to .* failed' "$PRI_LOG" ||
    fail "C: the primary did not report the refused connection: $(tail -n 5 "$PRI_LOG")"
sleep 1 # a few retries
start_secondary --port "$SEC_PORT" sec "$LOOP"
sec_pid=$SEC_PID
wait_synced "$PRI_CTL" 60
s=$(status "$PRI_CTL")
note "C: after the secondary came back: $s"
expect_same "$img" "$LOOP" "C: replica after a restart while the secondary was down"
resent_c=$(jget "$s" sent_bytes)
[ "$resent_c" = $((8 << 20)) ] || fail "C: sent $resent_c bytes; exactly the 8 MiB changed were due"
! log_has 'full sync|whole disk' "$PRI_LOG" || fail "C: the restarted primary started a full sync"
expect_alive "$sec_pid" blkship-secondary
note "C: sent $resent_c after the secondary came back"
