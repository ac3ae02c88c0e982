#!/usr/bin/env bash
# A COMMITTED covers its epoch and nothing after it.  After the initial
# sync the real secondary stops and 4 MiB (A) are written and become dirty.
# A fake secondary then takes the session: it writes the first epoch's
# frames (A) to the replica and makes them durable when its END_EPOCH
# arrives, but waits 3 s before it sends COMMITTED; meanwhile 4 MiB more (B,
# other grains) are written.  B belongs to no epoch yet: the primary seals
# the next only after a commit.  The fake then commits the first epoch and
# discards the next one (B), never committing it: a secondary that lost it.
# The primary must count exactly A's bytes as acknowledged and keep B dirty
# and in flight; a primary that let the commit clear B as well fails here.
# Then the real secondary comes back on the same replica: it never heard of
# the fake's commit, so its newest committed epoch is older than the one
# the primary has on record.  The primary must not trust what it cleared:
# it says the replica lost committed data and compares the disks by
# checksums.  The fake did write A to the replica, so only B (4 MiB) is
# found different and sent, and the replica must equal the image.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

start_fake --hold 60 --replica "$rep" -- commit-first
# A, sent whole and made durable: the fake holds the commit.
fake_wait '^epoch: [0-9]+ after [0-9]+ bytes \(written\)$' 20
line=$(fake_line '\(written\)$')
epoch_a=$(sed 's/^epoch: \([0-9]*\) .*/\1/' <<<"$line")
bytes_a=$(sed 's/.* after \([0-9]*\) bytes.*/\1/' <<<"$line")
[ "$bytes_a" = "$dirty0" ] || fail "epoch $epoch_a carried $bytes_a bytes; $dirty0 were dirty"
note "epoch $epoch_a carries $bytes_a bytes; writing B while it is uncommitted"
fake_write 2m 4m
fake_wait '^committed: [0-9]+ covering [0-9]+ bytes$' 20
[ "$(fake_line '^committed:')" = "committed: $epoch_a covering $bytes_a bytes" ] ||
    fail "the fake committed something else: $(fake_line '^committed:')"

# What the primary must show: A acknowledged, B (sealed into the next epoch,
# which the fake discards) dirty and in flight.
want_acked=$((acked0 + bytes_a)) want_dirty=$((4 << 20))
_partial() {
    local s
    s=$(status "$pri_ctl") || return 1
    [ "$(jget "$s" acked_bytes)" = "$want_acked" ] && [ "$(jget "$s" dirty_bytes)" = "$want_dirty" ] &&
        [ "$(jget "$s" inflight_bytes)" = "$want_dirty" ] && [ "$(jget "$s" connected)" = true ] &&
        [ "$(jget "$s" committed_epoch)" = "$epoch_a" ]
}
poll_until 20 _partial ||
    fail "after COMMITTED $epoch_a the primary should show acked_bytes $want_acked (before: $acked0, the epoch covered $bytes_a), dirty_bytes = inflight_bytes = $want_dirty, committed_epoch $epoch_a; it shows: $(status "$pri_ctl")"
note "primary: $bytes_a bytes acknowledged, $want_dirty dirty and in flight"
# B went out in the next epoch, and only once A had committed.
fake_wait '^epoch: [0-9]+ after [0-9]+ bytes \(discarded\)$' 20
after=$(fake_line '\(discarded\)$')
[ "$after" = "epoch: $((epoch_a + 1)) after $((bytes_a + want_dirty)) bytes (discarded)" ] ||
    fail "the next epoch should be $((epoch_a + 1)) with B's $want_dirty bytes: $after"

# The fake goes away with B uncommitted; the real secondary comes back.
stop_pid "$FAKE_PID"
lines=$(log_lines "$pri_log")
converge
expect_primary_log "$lines" "the replica's newest committed epoch is [0-9]+, but it had committed epoch $epoch_a: it lost committed data"     "the real secondary's older committed epoch"
expect_primary_log "$lines" "the replica lost committed epochs: the replica is compared by checksums" "the checksum resync"
[ "$sent_final" = "$want_dirty" ] ||
    fail "the real secondary was sent $sent_final bytes; B's $want_dirty bytes differ, A is on the replica already"
note "the checksums found B only: $sent_final bytes sent; the replica equals the image"
