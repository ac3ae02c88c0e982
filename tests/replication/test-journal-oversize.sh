#!/usr/bin/env bash
# Epochs larger than the secondary's journal (docs/epochs.md §4.3), with
# repl-peer speaking protocol version 2 to a secondary whose journal is
# 1 MiB (--journal-max 1M) and whose frames are 64 KiB.  Epoch e is N DATA
# frames of byte (0x10 + e) from sector 2048, as in test-journal-replay.sh.
#   1. epoch 1, 32 frames (2 MiB): a new pairing, written in place;
#   2. epoch 2, 8 frames: fits, journalled; no oversize epoch counted;
#   3. epoch 3, 32 frames that never end: it outgrows the journal, is
#      applied in place with a loud log line, and while it arrives status
#      says inconsistent, with the reason and oversize_epochs 1; the link
#      is dropped in the middle: the replica stays inconsistent;
#   4. epoch 4, 32 frames: the replica has no image, written in place;
#      consistent once committed;
#   5. epoch 5, 20 frames (1.25 MiB): outgrows the journal after about 15
#      frames; those reach the replica too, in place, and the epoch's
#      COMMITTED makes the replica consistent again, also after a restart;
#   6. epoch 6, 8 frames: journalled again.
# After each commit the replica equals the expected image byte for byte.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/epoch-functions.sh"
requires_root
requires openssl
require_build
make_workdir

size=64M
bytes=$(numfmt --from=iec $size)
CERTS=$WORKDIR/pki
make_certs "$CERTS"
first_sector=2048
frame_sectors=128

rep=$WORKDIR/replica.img
expected=$WORKDIR/expected.img
truncate -s $size "$rep" "$expected"

peer_args() {
    echo --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
        --disk-bytes "$bytes" --timeout 30 --proto-version 2 --max-payload 65536 \
        --sector $first_sector --count $frame_sectors
}

# epoch E FRAMES: one whole epoch, waited for; then the expected image.
epoch() {
    local out
    # shellcheck disable=SC2046
    out=$("$REPL_PEER" $(peer_args) --epochs 1 --first-epoch "$1" --frames "$2" epochs "$SEC_ADDR") ||
        fail "repl-peer could not run: $out"
    grep -v HEARTBEAT <<<"$out" | sed 's/^/    peer: /'
    grep -q "^result: committed $1\$" <<<"$out" || fail "epoch $1 was not committed"
    epoch_image "$1" "$2"
}

port=$(random_port)
start_secondary --port "$port" sec "$rep" --journal-max 1M --max-payload 65536
[ "$(field "$SEC_CTL" journal_max_bytes)" = 1048576 ] || fail "journal_max_bytes: $(status "$SEC_CTL")"

note "epoch 1 (a new pairing, in place), epoch 2 (journalled)"
epoch 1 32
wait_epoch_state true 1 "after epoch 1" 0
epoch 2 8
wait_epoch_state true 2 "after epoch 2" 0
expect_same "$expected" "$rep" "the replica after epoch 2"

note "epoch 3: 32 frames (2 MiB) into a 1 MiB journal, never ended"
lines=$(log_lines "$SEC_LOG")
# shellcheck disable=SC2046
"$REPL_PEER" $(peer_args) --epochs 0 --first-epoch 3 --partial 32 epochs "$SEC_ADDR" \
    >"$WORKDIR/peer3.log" 2>&1 &
peer_pid=$!
cleanup_fn stop_pid "$peer_pid"
wait_epoch_state false 2 "while oversize epoch 3 arrives" 1
grep -q '"consistency_note": "the epoch after 2 is larger than the journal' <<<"$STATUS" ||
    fail "status does not say why the replica is inconsistent: $STATUS"
_oversize_logged() {
    log_since "$SEC_LOG" "$lines" |
        grep -Eq '^error: secondary: OVERSIZE EPOCH: the epoch after 2 does not fit in the journal \(1048576 bytes, [0-9]+ journalled'
}
poll_until 10 _oversize_logged || fail "no loud log line for the oversize epoch: $(log_since "$SEC_LOG" "$lines")"
log_since "$SEC_LOG" "$lines" | grep OVERSIZE | sed 's/^/    secondary: /'
grep -q '^consistent 0$' "$WORKDIR/sec.state/secondary.state" ||
    fail "the oversize epoch was not recorded inconsistent: $(cat "$WORKDIR/sec.state/secondary.state")"
poll_until 20 grep -q '^sent: partial epoch 3' "$WORKDIR/peer3.log" || fail "the peer did not send epoch 3"
stop_pid "$peer_pid"
_disconnected() { [ "$(field "$SEC_CTL" connected)" = false ]; }
poll_until 10 _disconnected || fail "the session did not end"
wait_epoch_state false 2 "after oversize epoch 3 was cut off" 1

note "epoch 4: 32 frames over no image, in place"
epoch 4 32
wait_epoch_state true 4 "after epoch 4" 1
expect_same "$expected" "$rep" "the replica after epoch 4"

note "epoch 5: 20 frames (1.25 MiB), oversize, committed"
epoch 5 20
wait_epoch_state true 5 "after oversize epoch 5" 2
[ "$(jget "$STATUS" consistency_note)" = "" ] || fail "a note is left: $STATUS"
expect_log 'oversize epoch 5 committed in place: the replica is consistent again' "$SEC_LOG"
expect_same "$expected" "$rep" "the replica after oversize epoch 5 (its journalled frames included)"
stop_pid "$SEC_PID"
start_secondary --port "$port" sec "$rep" --journal-max 1M --max-payload 65536
wait_epoch_state true 5 "after a restart" 0

note "epoch 6: journalled again"
epoch 6 8
wait_epoch_state true 6 "after epoch 6" 0
expect_same "$expected" "$rep" "the replica after epoch 6"
