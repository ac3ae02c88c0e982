#!/usr/bin/env bash
# The secondary's epoch journal (docs/epochs.md §4), driven by repl-peer
# speaking protocol version 2 to the real blkship-secondary.
#
# Epoch e is 8 DATA frames of 64 KiB of byte (0x10 + e), contiguous from
# sector 2048 (repl-peer's "epochs" case), so the image of epoch e is that
# range of its byte over a replica of zeroes, and a replica caught between
# two epochs shows two bytes.  In order:
#   - a new pairing: epoch 1 is written in place, epochs 2-3 through the
#     journal; each COMMITTED comes, status says consistent at epoch 3,
#     the journal is empty again, the welcome's epoch is 3;
#   - an END_EPOCH at or below the committed epoch is a protocol error
#     (ERROR 8) and changes nothing;
#   - a FLUSH in version 2 is ACKed, and the DATA before it, in an epoch
#     that never ends, does not reach the replica;
#   - each test crash point (BLKSHIP_TEST_CRASH) kills the secondary once,
#     in an epoch of its own: before the commit record (no COMMITTED, and
#     after a restart the replica is the previous epoch's image), after it
#     (the epoch is replayed at start-up), mid-apply, before the
#     applied_epoch record, before the journal's release: after each
#     restart the replica is exactly the image of the newest epoch the
#     journal committed, status says consistent at that epoch, and the
#     welcome names it;
#   - kill -9 while an epoch arrives (its frames journalled, no END_EPOCH):
#     after the restart the replica is the previous epoch's image;
#   - ABORT_EPOCH: what arrived of the epoch never reaches the replica;
#   - a version 1 session still gets its ACK, and leaves the replica
#     reported inconsistent, durably (after a restart too), until the next
#     version 2 epoch commits.
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
frames=8

rep=$WORKDIR/replica.img
expected=$WORKDIR/expected.img
truncate -s $size "$rep" "$expected"

# peer ARGS...: repl-peer as the primary, protocol version 2 unless ARGS
# say otherwise; its output in PEER_OUT, also shown.
peer() {
    PEER_OUT=$("$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
        --ca "$CERTS/ca.crt" --disk-bytes "$bytes" --timeout 20 --proto-version 2 \
        --sector $first_sector --count $frame_sectors --frames $frames "$@" "$SEC_ADDR") ||
        fail "repl-peer $* could not run:"$'\n'"$PEER_OUT"
    sed 's/^/    peer: /' <<<"$PEER_OUT" | grep -v 'recv: HEARTBEAT'
}

expect_result() {
    grep -Eq "^result: $1\$" <<<"$PEER_OUT" ||
        fail "repl-peer: expected 'result: $1', got: $(grep '^result' <<<"$PEER_OUT")"
}

start() {
    start_secondary --port "$port" sec "$rep" "$@"
}

expect_welcome_epoch() {
    peer handshake
    expect_result welcome
    grep -q "^welcome: version 2 epoch $1\$" <<<"$PEER_OUT" ||
        fail "$2: the welcome does not name epoch $1 (version 2): $(grep '^welcome: version' <<<"$PEER_OUT")"
}

port=$(random_port)

# ---- A new pairing, then journalled epochs -----------------------------------

start
s=$(status "$SEC_CTL")
[ "$(jget "$s" replica_consistent)" = false ] && [ "$(jget "$s" applied_epoch)" = 0 ] ||
    fail "a new replica claims an image: $s"
note "epochs 1-3 (1 in place: a new pairing; 2 and 3 journalled)"
peer epochs --epochs 3 --first-epoch 1
expect_result 'committed 3'
for e in 1 2 3; do
    grep -q "^recv: COMMITTED $e\$" <<<"$PEER_OUT" || fail "no COMMITTED $e"
done
wait_epoch_state true 3 "after epochs 1-3"
[ "$(jget "$STATUS" committed_epoch)" = 3 ] && [ "$(jget "$STATUS" protocol_version)" = 2 ] &&
    [ "$(jget "$STATUS" journal_bytes)" = 0 ] && [ "$(jget "$STATUS" journal_max_bytes)" = 268435456 ] &&
    [ "$(jget "$STATUS" oversize_epochs)" = 0 ] ||
    fail "status after epochs 1-3: $STATUS"
epoch_image 3
expect_same "$expected" "$rep" "the replica after epoch 3"
grep -q '^applied_epoch 3$' "$WORKDIR/sec.state/secondary.state" &&
    grep -q '^consistent 1$' "$WORKDIR/sec.state/secondary.state" ||
    fail "the state file does not record epoch 3 consistent: $(cat "$WORKDIR/sec.state/secondary.state")"
expect_welcome_epoch 3 "after epochs 1-3"

note "END_EPOCH 3 again (already committed) is a protocol error"
peer epochs --epochs 1 --first-epoch 3
expect_result 'error-frame 8'
expect_log 'bad frame .*kind 7\): epoch number not above the last one closed or committed' "$SEC_LOG"
wait_epoch_state true 3 "after a duplicate END_EPOCH"
expect_same "$expected" "$rep" "the replica after a duplicate END_EPOCH"

note "FLUSH in version 2: a barrier, ACKed; its frames, in an epoch never ended, are dropped"
peer --sector 0 --count 8 --pattern 0x3c good
expect_result acked
wait_epoch_state true 3 "after a FLUSH in an epoch never ended"
expect_same "$expected" "$rep" "the replica after an ACKed FLUSH in an epoch never ended"

# ---- Crash points ----------------------------------------------------------------

committed=3
for point in before-commit after-commit mid-apply before-applied-record before-release; do
    e=$((committed + 1))
    note "crash point $point in epoch $e"
    stop_pid "$SEC_PID"
    BLKSHIP_TEST_CRASH=$point start
    pid=$SEC_PID
    peer epochs --epochs 1 --first-epoch $e
    poll_until 10 proc_gone "$pid" || fail "$point: the secondary did not exit at its crash point"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 99 ] || fail "$point: the secondary exited with $rc, not 99"
    expect_log "BLKSHIP_TEST_CRASH=$point: exiting here" "$SEC_LOG"
    case $point in
    before-commit)
        # The commit record was never written: the epoch is not committed,
        # and nothing may have said it was.
        ! grep -q "^recv: COMMITTED $e\$" <<<"$PEER_OUT" ||
            fail "before-commit: COMMITTED $e was sent before its commit record"
        ;;
    *)
        epoch_image $e
        committed=$e
        ;;
    esac
    start
    wait_epoch_state true $committed "restart after crash point $point"
    [ "$(jget "$STATUS" committed_epoch)" = $committed ] ||
        fail "$point: committed_epoch is not $committed: $STATUS"
    expect_same "$expected" "$rep" "the replica after crash point $point and a restart"
    expect_welcome_epoch $committed "restart after crash point $point"
    if [ "$point" = before-commit ]; then
        log_has 'replaying committed epoch' "$SEC_LOG" && fail "before-commit: an uncommitted epoch was replayed"
    elif [ "$point" != before-release ]; then
        expect_log "replaying committed epoch $e " "$SEC_LOG"
    fi
done

# ---- kill -9 while an epoch arrives ------------------------------------------------

e=$((committed + 1))
note "kill -9 while epoch $((e + 1)) arrives (epoch $e committed before)"
peer_log=$WORKDIR/peer-partial.log
"$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
    --disk-bytes "$bytes" --timeout 20 --proto-version 2 --sector $first_sector \
    --count $frame_sectors --frames $frames --epochs 1 --first-epoch $e --partial 6 \
    epochs "$SEC_ADDR" >"$peer_log" 2>&1 &
peer_pid=$!
cleanup_fn stop_pid "$peer_pid"
_partial_journalled() {
    grep -q '^sent: partial epoch' "$peer_log" && [ "$(field "$SEC_CTL" journal_bytes)" -gt $((5 * frame_sectors * 512)) ]
}
poll_until 15 _partial_journalled || fail "the partial epoch was not journalled: $(cat "$peer_log"; status "$SEC_CTL")"
kill9 "$SEC_PID"
stop_pid "$peer_pid"
epoch_image $e
committed=$e
start
wait_epoch_state true $committed "restart after kill -9 mid-epoch"
expect_same "$expected" "$rep" "the replica after kill -9 mid-epoch (the open epoch discarded)"
expect_welcome_epoch $committed "restart after kill -9 mid-epoch"

# ---- ABORT_EPOCH ---------------------------------------------------------------------

e=$((committed + 1))
note "epoch $e committed, epoch $((e + 1)) aborted after 5 frames, empty epoch $((e + 2)) committed"
peer epochs --epochs 1 --first-epoch $e --partial 5 --abort
expect_result "committed $((e + 2))"
epoch_image $e
committed=$((e + 2))
wait_epoch_state true $committed "after ABORT_EPOCH"
expect_same "$expected" "$rep" "the replica after ABORT_EPOCH (nothing of the aborted epoch)"

# ---- A version 1 session -----------------------------------------------------------------

note "a version 1 session: FLUSH/ACK as before, the replica no longer an epoch's image"
peer --proto-version 1 --sector 0 --count 8 --pattern 0xa5 good
expect_result acked
grep -q '^welcome: version 1 epoch 0$' <<<"$PEER_OUT" || fail "a version 1 welcome: $PEER_OUT"
head -c 4096 /dev/zero | tr '\0' '\245' | dd of="$expected" conv=notrunc status=none
expect_same "$expected" "$rep" "the version 1 session's data"
s=$(status "$SEC_CTL")
[ "$(jget "$s" replica_consistent)" = false ] && [ "$(jget "$s" protocol_version)" = 1 ] ||
    fail "after a version 1 session: $s"
grep -q '^consistent 0$' "$WORKDIR/sec.state/secondary.state" ||
    fail "the state file does not record the version 1 session: $(cat "$WORKDIR/sec.state/secondary.state")"
stop_pid "$SEC_PID"
start
s=$(status "$SEC_CTL")
[ "$(jget "$s" replica_consistent)" = false ] || fail "a restart forgot the version 1 session: $s"
e=$((committed + 1))
note "epoch $e after it: written in place, consistent once committed"
peer epochs --epochs 1 --first-epoch $e
expect_result "committed $e"
epoch_image $e
wait_epoch_state true $e "after the version 2 epoch that follows a version 1 session"
expect_same "$expected" "$rep" "the replica after epoch $e"
note "status: $STATUS"
