#!/usr/bin/env bash
# In the session of a new pairing the first epoch (the full sync) is
# written in place, and there an ACK means the data is on the replica.
# From its commit on, the replica journals, and in the same session an ACK
# no longer means that: only COMMITTED clears anything.  Deterministic:
# the secondary runs with the test-only crash point before-commit, so it
# journals the second epoch (192 MiB, past the 64 MiB at which an
# in-place epoch is flushed and acknowledged), acknowledges whatever it is
# asked to flush, and exits at END_EPOCH before writing the commit record.
# Nothing of that epoch may count as acknowledged; after a restart (the
# journal drops the uncommitted epoch) the next checkpoint must bring all
# of it.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=256M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "aj-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "rtaj$$" "$img"
BLKSHIP_TEST_CRASH=before-commit start_secondary sec "$rep"
port=$SEC_PORT
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"

out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) ||
    fail "the first checkpoint (the full sync, in place) failed: $out"
[ "$out" = 1 ] || fail "the first checkpoint is epoch $out, not 1"
expect_alive "$SEC_PID" "the secondary after the in-place epoch"
s=$(status "$PRI_CTL")
[ "$(jget "$s" in_place)" = false ] || fail "the primary still writes in place after a commit: $s"
acked0=$(jget "$s" acked_bytes)

qemu-io -f raw "$NBD_URI" -c "write -q -P 0x77 32M 192M" >/dev/null || fail "qemu-io could not write"
cp "$img" "$WORKDIR/big.img"
if out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1); then
    fail "a checkpoint the secondary never committed succeeded: $out"
fi
poll_until 20 proc_gone "$SEC_PID" || fail "the secondary did not stop at its crash point"
wait "$SEC_PID" 2>/dev/null || true
expect_log "BLKSHIP_TEST_CRASH=before-commit: exiting here" "$SEC_LOG"
s=$(status "$PRI_CTL")
[ "$(jget "$s" committed_epoch)" = 1 ] || fail "an epoch counts as committed that was not: $s"
[ "$(jget "$s" acked_bytes)" = "$acked0" ] ||
    fail "data of a journalled, uncommitted epoch counted as acknowledged ($acked0 before): $s"
note "the secondary stopped before the commit; acked_bytes still $acked0, dirty_bytes $(jget "$s" dirty_bytes)"

start_secondary --port "$port" sec "$rep"
poll_until 20 _connected || fail "the primary did not reconnect: $(status "$PRI_CTL")"
out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) ||
    fail "the checkpoint after the secondary came back failed: $out"
_applied() {
    local s
    s=$(status "$SEC_CTL") || return 1
    [ "$(jget "$s" applied_epoch)" = "$out" ] && [ "$(jget "$s" replica_consistent)" = true ]
}
poll_until 20 _applied || fail "the secondary did not apply epoch $out: $(status "$SEC_CTL")"
expect_same "$WORKDIR/big.img" "$rep" "the replica after the uncommitted epoch was sent again"
