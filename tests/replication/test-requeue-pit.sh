#!/usr/bin/env bash
# An epoch that carries grains only the primary's own bitmap holds dirty
# (those of an aborted epoch, which the filter's log has forgotten) is a
# point in time too: the primary hands them to the filter before the seal,
# so copy-before-write keeps their sealed contents while the guest writes
# on.  The reads of the write log are slowed (nbdkit's delay filter under
# writelog, 200 ms a read) so that an epoch is shipped over seconds while
# tests/pit/pit-writer.py writes through NBD; once applied, the replica
# must be a prefix of the writes (tests/pit/pit-check.py), after the first
# full sync and after the epoch that follows an aborted one.  The filter
# must report copies preserved.
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
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtrs$$" "$img" delay-read=200ms
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint

wlog=$WORKDIR/writes.log
stop=$WORKDIR/writer.stop
"$NBD_PY" "$pit/pit-writer.py" "$NBD_URI" "$wlog" "$stop" 300 $$ >"$WORKDIR/writer.out" 2>&1 &
writer=$!
cleanup_fn stop_pid "$writer"
_writes() { [ -s "$wlog" ] && [ "$(wc -l <"$wlog")" -ge "$1" ]; }
poll_until 20 _writes 50 || fail "the writer made no writes: $(cat "$WORKDIR/writer.out")"

# checkpoint_check WHAT: one checkpoint while the writer goes on; the
# writer must have completed writes while it was shipped, and once the
# secondary applied it the replica must be a prefix of the writes.
checkpoint_check() {
    local before after out e s
    before=$(wc -l <"$wlog")
    out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 120s 2>&1) ||
        fail "$1: the checkpoint failed: $out"
    after=$(wc -l <"$wlog")
    e=$(field "$PRI_CTL" committed_epoch)
    [ $((after - before)) -ge 5 ] ||
        fail "$1: only $((after - before)) writes completed while the epoch was shipped"
    _applied() {
        s=$(status "$SEC_CTL") || return 1
        [ "$(jget "$s" applied_epoch)" = "$e" ] && [ "$(jget "$s" replica_consistent)" = true ]
    }
    poll_until 30 _applied || fail "$1: the secondary did not apply epoch $e: $(status "$SEC_CTL")"
    out=$("$NBD_PY" "$pit/pit-check.py" "$rep" "$wlog") ||
        fail "$1: the replica at epoch $e is not a point in time:"$'\n'"$out"
    note "$1: epoch $e, $((after - before)) writes during it: $out"
}

_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
checkpoint_check "the first full sync"

# The secondary killed -9 while the next epoch is shipped: the primary
# aborts it and its grains go back to the primary's own bitmap, which the
# filter's log no longer holds.  The secondary restarts (its journal drops
# the uncommitted epoch), and the next checkpoint carries them.
"$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 120s >"$WORKDIR/ck2.out" 2>&1 &
ck=$!
cleanup_fn stop_pid "$ck"
_shipping() { [ "$(field "$PRI_CTL" epoch_state)" = shipping ]; }
poll_until 30 _shipping || fail "the second checkpoint's epoch was not shipped: $(status "$PRI_CTL")"
kill9 "$SEC_PID"
if wait "$ck"; then
    fail "a checkpoint whose secondary was killed before its commit succeeded: $(cat "$WORKDIR/ck2.out")"
fi
note "the checkpoint with the secondary killed: $(cat "$WORKDIR/ck2.out")"
start_secondary --port "$SEC_PORT" sec "$rep"
poll_until 20 _connected || fail "the primary did not connect again: $(status "$PRI_CTL")"
checkpoint_check "the epoch after the aborted one"
preserved=$(field "$PRI_CTL" preserved)
[ "${preserved:-0}" -gt 0 ] || fail "the filter preserved nothing: $(status "$PRI_CTL")"
note "the filter preserved $preserved copies"

touch "$stop"
poll_until 20 proc_gone "$writer" || fail "the writer did not stop"
wait "$writer" || fail "the writer failed: $(cat "$WORKDIR/writer.out")"
