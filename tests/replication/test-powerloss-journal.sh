#!/usr/bin/env bash
# Power cuts of the replica around the secondary's journal replay.  The
# replica is a disk with a volatile write cache (tests/powerloss: nothing
# reaches its backing file until a flush), so the secondary's fdatasync of
# the replica before it records applied_epoch is the only thing that makes
# an applied epoch durable; the journal and the state file live on an
# ordinary file system.  repl-peer speaks protocol version 2: epoch e is 8
# DATA frames of 64 KiB of byte (0x10 + e) from sector 2048.
#
# Epochs 1 (in place, a new pairing) and 2 (journalled) first.  Then, for
# each of the crash points mid-apply, before-applied-record and
# before-release: an epoch with the secondary set to exit there, a power
# cut of the replica right after the exit (its unflushed writes lost), the
# store and the secondary restarted: status must say consistent at that
# epoch, and after one more power cut the backing file must be that
# epoch's image exactly, whatever was lost.  An applied_epoch recorded
# before the replica is durable shows as a backing file still holding the
# previous epoch.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/../powerloss/volatile.sh"
source "$(dirname "$0")/epoch-functions.sh"
requires_volatile
requires openssl
require_build
make_workdir

CERTS=$WORKDIR/pki
make_certs "$CERTS"
size=64M
bytes=$(numfmt --from=iec $size)
first_sector=2048
frame_sectors=128
frames=8
backing=$WORKDIR/replica.backing
expected=$WORKDIR/expected.img
truncate -s $size "$backing" "$expected"

epoch() {
    local out
    out=$("$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
        --disk-bytes "$bytes" --timeout 30 --proto-version 2 --sector $first_sector \
        --count $frame_sectors --frames $frames --epochs 1 --first-epoch "$1" epochs "$SEC_ADDR" 2>&1) ||
        fail "repl-peer could not run: $out"
    grep -v HEARTBEAT <<<"$out" | grep -E 'COMMITTED|result' | sed 's/^/    peer: /'
    PEER_OUT=$out
}

port=$(random_port)
vol_start store "$backing"
start_secondary --port "$port" sec "$VOL_FILE"
note "epochs 1 and 2"
epoch 1
grep -q '^result: committed 1$' <<<"$PEER_OUT" || fail "epoch 1 not committed"
epoch 2
grep -q '^result: committed 2$' <<<"$PEER_OUT" || fail "epoch 2 not committed"
epoch_image 2
wait_epoch_state true 2 "after epoch 2"

e=3
for point in mid-apply before-applied-record before-release; do
    note "epoch $e: the secondary exits at $point, then the replica loses power"
    stop_pid "$SEC_PID"
    BLKSHIP_TEST_CRASH=$point start_secondary --port "$port" sec "$VOL_FILE"
    pid=$SEC_PID
    epoch $e
    poll_until 15 proc_gone "$pid" || fail "$point: the secondary did not exit at its crash point"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 99 ] || fail "$point: the secondary exited with $rc, not 99"
    vol_cut store
    vol_teardown store
    epoch_image $e
    vol_start store "$backing"
    start_secondary --port "$port" sec "$VOL_FILE"
    wait_epoch_state true $e "$point: after the power cut and a restart"
    stop_pid "$SEC_PID"
    vol_cut store
    vol_teardown store
    expect_same "$expected" "$backing" "$point: the backing file after a restart that says epoch $e, and a power cut"
    vol_start store "$backing"
    start_secondary --port "$port" sec "$VOL_FILE"
    e=$((e + 1))
done
