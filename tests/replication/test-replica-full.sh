#!/usr/bin/env bash
# The replica cannot be written: a 64 MiB file replica on a 32 MiB tmpfs.
# The secondary must report the failed writes (its log, an ERROR frame),
# the primary must keep every unacknowledged bit (nothing past what fits is
# ever acknowledged) and retry with its back-off, not in a tight loop: over
# a 6 s window at most 10 sessions (the back-off is 250 ms doubling to 5 s,
# about 5 attempts).  Once the tmpfs grows, the replica converges.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
random_file "$img" $size "rf-$$"
small=$WORKDIR/small
mkdir -p "$small"
mount -t tmpfs -o size=32M "bsrt$$" "$small" || skip "cannot mount a tmpfs here"
cleanup_fn umount -l "$small"
rep=$small/replica.img
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rtrf$$" "$img"
start_secondary sec "$rep"
sec_log=$SEC_LOG sec_pid=$SEC_PID
start_primary pri "$WL_CTL" "$SEC_ADDR"
pri_ctl=$PRI_CTL pri_log=$PRI_LOG pri_pid=$PRI_PID

expect_log 'no space left on device' "$sec_log" 30
note "the replica is full; watching the primary retry for 6 s"

# A measurement window, not a wait for a condition: how many sessions does
# the primary open in 6 s while every one of them fails?
s0=$(status "$pri_ctl")
n0=$(grep -c 'secondary: primary .* connected' "$sec_log" || true)
end=$((SECONDS + 6))
while [ "$SECONDS" -lt "$end" ]; do
    expect_alive "$pri_pid" blkship-primary
    expect_alive "$sec_pid" blkship-secondary
    sleep 0.2
done
s1=$(status "$pri_ctl")
n1=$(grep -c 'secondary: primary .* connected' "$sec_log" || true)
sessions=$((n1 - n0))
resent=$(($(jget "$s1" sent_bytes) - $(jget "$s0" sent_bytes)))
note "in 6 s: $sessions sessions, $resent bytes sent, $(wc -l <"$sec_log") lines in the secondary's log"
[ "$(jget "$s1" acked_bytes)" -le $((32 << 20)) ] ||
    fail "more was acknowledged than the replica can hold: $s1"
[ "$(jget "$s1" dirty_bytes)" -gt 0 ] || fail "the primary dropped dirty bits it could not ship: $s1"
# The harm first (above), then how it was reported.
expect_log 'ended: replica write failed' "$sec_log" 10
expect_log 'the secondary ended the session: replica I/O error' "$pri_log" 10
too_fast=""
[ "$sessions" -le 10 ] ||
    too_fast="the primary opened $sessions sessions in 6 s ($resent bytes resent) against a replica that fails every write: at most 10 are expected, since a session that ends in an error must not reset the reconnect back-off"

# Room again: it converges.
mount -o remount,size=128M "$small" || fail "cannot grow the tmpfs"
wait_synced "$pri_ctl" 90
expect_same "$img" "$rep" "replica after the tmpfs grew"
[ -z "$too_fast" ] || fail "$too_fast"
