#!/usr/bin/env bash
# An ACK covers only the frames before its FLUSH.  After the initial sync
# the real secondary stops and 4 MiB (A) are written and become dirty.  A
# fake secondary then takes the session: it writes A's frames to the replica
# and makes them durable when FLUSH a arrives, but does not acknowledge yet;
# 4 MiB more (B, other grains) are written, and their frames and FLUSH b
# arrive; only then does it send ACK a, and it never acknowledges B (it
# discarded B's frames: a secondary that lost them).  The primary must count
# exactly A's bytes as acknowledged and keep B dirty and in flight; a primary
# that let ACK a clear B as well fails here, and again below, where the real
# secondary comes back: only B is resent (A was cleared for good) and the
# replica must equal the image, B included.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

start_fake --hold 60 --replica "$rep" -- partial-ack
# A, framed and flushed: the fake holds the ACK.
fake_wait '^flush: seq [0-9]+ after [0-9]+ bytes \(written\)$' 20
line=$(fake_line '\(written\)$')
seq_a=$(sed 's/^flush: seq \([0-9]*\) .*/\1/' <<<"$line")
bytes_a=$(sed 's/.* after \([0-9]*\) bytes.*/\1/' <<<"$line")
[ "$bytes_a" -gt 0 ] || fail "the fake received nothing before FLUSH $seq_a"
note "FLUSH $seq_a covers $bytes_a bytes; writing B while it is unacknowledged"
fake_write 2m 4m
fake_wait '^acked: seq [0-9]+ covering [0-9]+ bytes$' 20
[ "$(fake_line '^acked:')" = "acked: seq $seq_a covering $bytes_a bytes" ] ||
    fail "the fake acknowledged something else: $(fake_line '^acked:')"

# What the primary must show: A (the fake's count) acknowledged, all else,
# B and whatever of A came after FLUSH a, dirty and in flight.
total=$((dirty0 + (4 << 20)))
want_acked=$((acked0 + bytes_a)) want_dirty=$((total - bytes_a))
_partial() {
    local s
    s=$(status "$pri_ctl") || return 1
    [ "$(jget "$s" acked_bytes)" = "$want_acked" ] && [ "$(jget "$s" dirty_bytes)" = "$want_dirty" ] &&
        [ "$(jget "$s" inflight_bytes)" = "$want_dirty" ] && [ "$(jget "$s" connected)" = true ]
}
poll_until 20 _partial ||
    fail "after ACK $seq_a the primary should show acked_bytes $want_acked (before: $acked0, ACK $seq_a covered $bytes_a), dirty_bytes = inflight_bytes = $want_dirty; it shows: $(status "$pri_ctl")"
note "primary: $bytes_a bytes acknowledged, $want_dirty dirty and in flight"
# The frames after FLUSH a reached the fake: they were in flight, not held back.
after=$(fake_line '\(discarded\)$')
[ "$(sed 's/.* after \([0-9]*\) bytes.*/\1/' <<<"$after")" -gt "$bytes_a" ] ||
    fail "no frame came between FLUSH $seq_a and the next: $after"

# The fake goes away with B unacknowledged; the real secondary gets B.
stop_pid "$FAKE_PID"
converge
[ "$sent_final" = "$want_dirty" ] ||
    fail "the real secondary was sent $sent_final bytes; $want_dirty were unacknowledged"
note "the real secondary received the $sent_final unacknowledged bytes; the replica equals the image"
