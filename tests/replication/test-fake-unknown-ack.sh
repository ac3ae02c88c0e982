#!/usr/bin/env bash
# An ACK for a FLUSH that was never sent is a protocol error.  With 4 MiB
# dirty, a fake secondary takes three sessions in turn, each time receiving
# the 4 MiB and their FLUSH S without writing anything, then answering
#   1. ACK S + 1      (the next FLUSH, not sent yet),
#   2. ACK S + 2^40   (far in the future),
#   3. ACK of the FLUSH of session 1 (one the primary sent, but in an
#      earlier session: that session's frames were requeued when it ended).
# Each time the primary must log the unknown sequence, drop the link and
# clear nothing: acked_bytes unchanged, the 4 MiB still dirty.  A primary
# that cleared the frames in flight would leave the real secondary, which
# comes back at the end, without them: the replica must equal the image.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

lines=$(log_lines "$pri_log")
start_fake --wait 5 -- ack-future ack-far-future ack-past
fake_done 60
n=0
while read -r _ _ ack _ _ _ _ flush; do
    n=$((n + 1))
    flush=${flush%)}
    note "session $n: FLUSH $flush answered with ACK $ack"
    expect_primary_log "$lines" "the secondary acknowledged FLUSH $ack, which was not sent in this session" \
        "session $n (ACK $ack for FLUSH $flush)"
done < <(grep '^sent: ACK ' "$FAKE_OUT")
[ "$n" = 3 ] || fail "the fake sent $n ACKs, not 3: $(cat "$FAKE_OUT")"
# Every session was ended by the primary, none by the fake's patience.
[ "$(grep -c '^end: step [0-9] closed by the primary' "$FAKE_OUT")" = 3 ] ||
    fail "the primary did not drop every session with an unknown ACK:"$'\n'"$(grep '^end:' "$FAKE_OUT")"
[ "$(log_since "$pri_log" "$lines" | grep -c 'replication link to .* down: protocol error')" -ge 3 ] ||
    fail "the primary did not log the link down three times as a protocol error"
# Each session received the whole 4 MiB: nothing was cleared in between.
[ "$(grep -c "^flush: seq [0-9]* after $dirty0 bytes" "$FAKE_OUT")" = 3 ] ||
    fail "each session should have been sent the $dirty0 dirty bytes:"$'\n'"$(cat "$FAKE_OUT")"
expect_kept "after the unknown ACKs"

converge
[ "$sent_final" = "$dirty0" ] ||
    fail "the real secondary was sent $sent_final bytes; $dirty0 were dirty"
