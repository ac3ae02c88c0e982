#!/usr/bin/env bash
# A checksum resync compares the replica only once every committed epoch is
# applied to it.  Checkpoint mode, each committed epoch held in the
# secondary's journal for 8 s before it is applied (BLKSHIP_TEST_APPLY_DELAY_MS):
# pattern A is written at 1 MiB and checkpointed (and applied), then
# pattern B there and checkpointed (committed, still in the journal).  nbdkit
# is killed -9 and, behind the log's back, A written there again; nbdkit
# restarts, so the primary runs a checksum resync while B waits in the
# journal.  The replica device still holds A, like the disk: a comparison
# made now would find nothing to send, and B, applied later, would win.
# The secondary must wait for B to be applied, find the block different,
# and the replica must end holding A, equal to the disk.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=32M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "cj-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
name=rtcj$$

start_nbdkit "$WORKDIR" "$name" "$img"
BLKSHIP_TEST_APPLY_DELAY_MS=8000 start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
# The first full sync, then A.
ck=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) || fail "checkpoint: $ck"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0xaa 1M 64k" >/dev/null || fail "qemu-io could not write A"
ck=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) || fail "checkpoint A: $ck"
_applied() { [ "$(field "$SEC_CTL" applied_epoch)" -ge "$1" ]; }
poll_until 60 _applied "$ck" || fail "epoch $ck (A) was not applied: $(status "$SEC_CTL")"
expect_same "$img" "$rep" "the replica with A"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0xbb 1M 64k" >/dev/null || fail "qemu-io could not write B"
ckb=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) || fail "checkpoint B: $ckb"
s=$(status "$SEC_CTL")
[ "$(jget "$s" committed_epoch)" -ge "$ckb" ] && [ "$(jget "$s" applied_epoch)" -lt "$ckb" ] ||
    fail "epoch $ckb (B) should be committed and still in the journal: $s"
kill9 "$NBDKIT_PID"
_log_lost() { [ "$(field "$PRI_CTL" log_connected)" = false ]; }
poll_until 20 _log_lost || fail "the primary still shows the log connected: $(status "$PRI_CTL")"
# A again, where no log sees it.
python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(1 << 20); f.write(b'\xaa' * 65536)" "$img" || fail "could not write A behind the log"
start_nbdkit "$WORKDIR" "$name" "$img"
expect_log 'the write log restarted: the replica is compared by checksums' "$PRI_LOG" 20
expect_log 'checksum resync done' "$PRI_LOG" 60
s=$(status "$PRI_CTL")
[ "$(jget "$s" checksum_differing_bytes)" -ge 65536 ] ||
    fail "the checksums found the block at 1 MiB equal: the replica was compared before epoch $ckb was applied: $s"
ck=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 60s 2>&1) || fail "checkpoint after the resync: $ck"
poll_until 60 _applied "$ck" || fail "epoch $ck was not applied: $(status "$SEC_CTL")"
expect_same "$img" "$rep" "the replica after the checksum resync"
note "the block written behind the log's back was found ($(jget "$s" checksum_differing_bytes) bytes differ) and resent"
