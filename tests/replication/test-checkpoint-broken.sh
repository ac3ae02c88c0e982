#!/usr/bin/env bash
# A broken epoch is never committed.  The filter gets a copy-before-write
# pool of one grain (writelog-cow-max=4K, writelog-cow-wait=1ms) and its
# log's reads are slowed (nbdkit's delay filter under writelog, 200 ms a
# read), so that a checkpoint taken while tests/pit/pit-writer.py writes
# breaks every time: the checkpoint must fail saying so, the secondary's
# committed epoch must not move, the primary must count the abort, and the
# replica must still be a point in time (tests/pit/pit-check.py).  Once
# the writer has stopped, a checkpoint succeeds and the replica is the
# disk.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires_nbd_python
require_build
make_workdir
pit=$_src_dir/tests/pit

size=16M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
truncate -s $size "$img"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtcb$$" "$img" delay-read=200ms \
    writelog-cow-max=4K writelog-cow-wait=1ms
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) ||
    fail "the first checkpoint, with no writer, failed: $out"

wlog=$WORKDIR/writes.log
stop=$WORKDIR/writer.stop
"$NBD_PY" "$pit/pit-writer.py" "$NBD_URI" "$wlog" "$stop" 300 $$ >"$WORKDIR/writer.out" 2>&1 &
writer=$!
cleanup_fn stop_pid "$writer"
_writes() { [ -s "$wlog" ] && [ "$(wc -l <"$wlog")" -ge "$1" ]; }
poll_until 20 _writes 200 || fail "the writer made no writes: $(cat "$WORKDIR/writer.out")"

for ((i = 1; i <= 3; i++)); do
    s0=$(status "$SEC_CTL")
    if out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1); then
        fail "round $i: a checkpoint under writes with a pool of one grain succeeded (epoch $out); its epoch cannot have kept its image"
    fi
    case $out in
    *"broken epoch"*) ;;
    *) fail "round $i: the checkpoint failed for another reason than a broken epoch: $out" ;;
    esac
    s=$(status "$SEC_CTL")
    [ "$(jget "$s" committed_epoch)" = "$(jget "$s0" committed_epoch)" ] ||
        fail "round $i: the secondary committed an epoch of a failed checkpoint: $s0 -> $s"
    o=$("$NBD_PY" "$pit/pit-check.py" "$rep" "$wlog") ||
        fail "round $i: the replica is not a point in time:"$'\n'"$o"
done
s=$(status "$PRI_CTL")
[ "$(jget "$s" epochs_aborted)" -ge 3 ] || fail "the primary counts fewer than 3 aborted epochs: $s"
[ "$(field "$PRI_CTL" breaks)" -ge 3 ] || fail "the filter counts fewer than 3 breaks: $s"
note "3 checkpoints under writes failed as broken: $out"

touch "$stop"
poll_until 20 proc_gone "$writer" || fail "the writer did not stop"
wait "$writer" || fail "the writer failed: $(cat "$WORKDIR/writer.out")"
out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) ||
    fail "the checkpoint after the writer stopped failed: $out"
_applied() {
    local s
    s=$(status "$SEC_CTL") || return 1
    [ "$(jget "$s" applied_epoch)" = "$out" ] && [ "$(jget "$s" replica_consistent)" = true ]
}
poll_until 20 _applied || fail "the secondary did not apply epoch $out: $(status "$SEC_CTL")"
expect_same "$img" "$rep" "the replica once the writer stopped"
