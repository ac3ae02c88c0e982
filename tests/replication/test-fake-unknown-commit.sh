#!/usr/bin/env bash
# A COMMITTED for an epoch that does not await one, and an ACK when no
# FLUSH was sent, are protocol errors.  With 4 MiB dirty, a fake secondary
# takes five sessions in turn, the first four receiving the 4 MiB and their
# END_EPOCH E without writing anything, then answering
#   1. COMMITTED E + 1      (the next epoch, not sealed yet),
#   2. COMMITTED E + 2^40   (far in the future),
#   3. COMMITTED of the epoch of session 1 (one the primary ended, but in
#      an earlier session: its grains were requeued when it ended),
#   4. ACK 1                (this primary sends no FLUSH);
# and the fifth sending, right behind its welcome, COMMITTED of the epoch
# the primary starts then (long before it can have ended it).  Each time the
# primary must log what was wrong, drop the link and clear nothing:
# acked_bytes unchanged, the 4 MiB still dirty.  A primary that cleared the
# epoch would leave the real secondary, which comes back at the end,
# without it: the replica must equal the image.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup
lines=$(log_lines "$pri_log")
start_fake --wait 5 -- commit-future commit-far-future commit-past ack commit-early
fake_done 90
n=0
while read -r _ _ commit _ _ _ _ ended; do
    n=$((n + 1))
    ended=${ended%)}
    note "session $n: epoch $ended answered with COMMITTED $commit"
    expect_primary_log "$lines" "the secondary reports epoch $commit committed; epoch $ended is the one that awaits it" \
        "session $n (COMMITTED $commit for epoch $ended)"
done < <(grep '^sent: COMMITTED [0-9]* (the epoch ended' "$FAKE_OUT")
[ "$n" = 3 ] || fail "the fake sent $n COMMITTED for ended epochs, not 3: $(cat "$FAKE_OUT")"
expect_primary_log "$lines" 'the secondary acknowledged FLUSH 1, which was not sent in this session' "session 4 (ACK)"
early=$(sed -n 's/^sent: COMMITTED \([0-9]*\) after .* before any END_EPOCH$/\1/p' "$FAKE_OUT")
[ -n "$early" ] || fail "the fake did not send its early COMMITTED: $(cat "$FAKE_OUT")"
expect_primary_log "$lines" "the secondary reports epoch $early committed; no epoch awaits a commit" \
    "session 5 (COMMITTED $early before the epoch ended)"
# The first four sessions were sent the whole 4 MiB; the fifth perhaps not.
# Every session was ended by the primary, none by the fake's patience.
[ "$(grep -c '^end: step [0-9] closed by the primary' "$FAKE_OUT")" = 5 ] ||
    fail "the primary did not drop every session:"$'\n'"$(grep '^end:' "$FAKE_OUT")"
[ "$(log_since "$pri_log" "$lines" | grep -c 'replication link to .* down: protocol error')" -ge 5 ] ||
    fail "the primary did not log the link down five times as a protocol error"
# Each of the first four received the whole 4 MiB: nothing was cleared in between.
[ "$(grep -c "^epoch: [0-9]* after $dirty0 bytes" "$FAKE_OUT")" = 4 ] ||
    fail "each session should have been sent the $dirty0 dirty bytes:"$'\n'"$(cat "$FAKE_OUT")"
expect_kept "after the unknown commits"
converge
[ "$sent_final" = "$dirty0" ] ||
    fail "the real secondary was sent $sent_final bytes; $dirty0 were dirty"
