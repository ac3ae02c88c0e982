#!/usr/bin/env bash
# Async mode's pace.  With --epoch-ms 1s and nothing written, at most one
# epoch per second is sealed (4 or fewer in 3 s, and at least 2: empty
# epochs are sealed too, so lag_ms stays bounded).  With --epoch-ms 5s and
# --epoch-max-dirty 4M, 16 MiB written through NBD are sealed early: they
# are committed and applied within 3 s (the epoch-ms alone would take up to
# 5 s), early_seals counts it, and the replica equals the disk.  Idle, the
# empty epochs are applied without the replica ever being reported not
# consistent; a written one is reported while it is applied.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "ea-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "rtea$$" "$img"
start_secondary sec "$rep"
port=$SEC_PORT

start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 1s
wait_synced "$PRI_CTL" 60
e0=$(field "$PRI_CTL" epochs_committed)
sleep 3
e1=$(field "$PRI_CTL" epochs_committed)
note "idle, --epoch-ms 1s: $((e1 - e0)) epochs in 3 s"
[ $((e1 - e0)) -le 4 ] || fail "idle with --epoch-ms 1s, $((e1 - e0)) epochs were sealed in 3 s"
[ $((e1 - e0)) -ge 2 ] || fail "idle with --epoch-ms 1s, only $((e1 - e0)) epochs in 3 s: empty epochs must go on"
lag=$(field "$PRI_CTL" lag_ms)
[ "$lag" -le 2500 ] || fail "idle, lag_ms $lag with an epoch every second"
stop_pid "$PRI_PID"

start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 5s --epoch-max-dirty 4M
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
# Let the first epoch of this run (sealed at the connection) commit: this
# process's own count, since committed_epoch starts at what the replica
# committed for the run before.
_idle() { [ "$(field "$PRI_CTL" epoch_state)" = idle ] && [ "$(field "$PRI_CTL" epochs_committed)" -ge 1 ]; }
poll_until 20 _idle || fail "the primary did not settle: $(status "$PRI_CTL")"
c0=$(field "$PRI_CTL" committed_epoch)
t0=$SECONDS
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x3c 8M 16M" >/dev/null || fail "qemu-io could not write"
_committed_after() {
    S=$(status "$PRI_CTL") || return 1
    [ "$(jget "$S" committed_epoch)" -gt "$c0" ] && [ "$(jget "$S" dirty_bytes)" = 0 ]
}
poll_until 3 _committed_after || fail "16 MiB past --epoch-max-dirty 4M were not committed within 3 s: $S"
[ "$(jget "$S" early_seals)" -ge 1 ] || fail "no early seal was counted: $S"
note "16 MiB committed $((SECONDS - t0)) s after the write with --epoch-ms 5s: $(jget "$S" early_seals) early seals"
c=$(jget "$S" committed_epoch)
_applied() { [ "$(field "$SEC_CTL" applied_epoch)" -ge "$c" ]; }
poll_until 10 _applied || fail "the secondary did not apply epoch $c: $(status "$SEC_CTL")"
expect_same "$img" "$rep" "the replica after the early seal"
stop_pid "$PRI_PID"
stop_pid "$SEC_PID"

# Idle with an epoch every 400 ms, and each epoch held 300 ms before it is
# applied: the empty epochs are applied too (applied_epoch moves on), and
# the replica stays reported consistent throughout, since applying an empty
# epoch changes nothing.  A written epoch, applied the same way, is
# reported as being applied.
BLKSHIP_TEST_APPLY_DELAY_MS=300 start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 400ms
wait_synced "$PRI_CTL" 60
a0=$(field "$SEC_CTL" applied_epoch)
for i in $(seq 40); do
    s=$(status "$SEC_CTL")
    [ "$(jget "$s" replica_consistent)" = true ] ||
        fail "idle, sample $i: the replica is reported not consistent while empty epochs apply: $s"
    sleep 0.05
done
a1=$(field "$SEC_CTL" applied_epoch)
[ "$a1" -ge $((a0 + 3)) ] || fail "idle: only epochs $a0 to $a1 were applied in 2 s"
note "idle, --epoch-ms 400ms: epochs $a0 to $a1 applied, the replica consistent in all 40 samples"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x3d 1M 1M" >/dev/null || fail "qemu-io could not write"
_applying() { [ "$(field "$SEC_CTL" consistency_note)" = "an epoch is being applied" ]; }
poll_until 10 _applying || fail "the written epoch was never reported as being applied: $(status "$SEC_CTL")"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$rep" "the replica after the last write"
stop_pid "$PRI_PID"
stop_pid "$SEC_PID"

# --epoch-idle-ms 20s with --epoch-ms 100ms: idle, no epoch is sealed (the
# log is asked instead), yet lag_ms stays small (the replica is the disk as
# of the last answer); the first write after the idle stretch is sealed at
# once, committed and applied within 2 s, not 20.
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 100ms --epoch-idle-ms 20s
# Not wait_synced: it waits for the epoch to move on three times.
_idle_synced() {
    S=$(status "$PRI_CTL") || return 1
    [ "$(jget "$S" epochs_committed)" -ge 1 ] && _synced "$PRI_CTL" &&
        [ "$(field "$SEC_CTL" applied_epoch)" -ge "$(jget "$S" committed_epoch)" ]
}
poll_until 60 _idle_synced || fail "not in sync with --epoch-idle-ms: $(status "$PRI_CTL")"
_log_idle() { [ "$(field "$PRI_CTL" log_idle)" = true ]; }
poll_until 5 _log_idle || fail "idle with --epoch-idle-ms, the log is not reported idle: $(status "$PRI_CTL")"
e0=$(field "$PRI_CTL" epochs_committed)
sleep 3
s=$(status "$PRI_CTL")
e1=$(jget "$s" epochs_committed)
[ $((e1 - e0)) -le 1 ] || fail "idle with --epoch-idle-ms 20s, $((e1 - e0)) epochs were sealed in 3 s: $s"
[ "$(jget "$s" lag_ms)" -le 1000 ] || fail "idle with --epoch-idle-ms, lag_ms grew: $s"
note "idle, --epoch-ms 100ms --epoch-idle-ms 20s: $((e1 - e0)) epochs in 3 s, lag_ms $(jget "$s" lag_ms)"
c0=$(jget "$s" committed_epoch)
t0=$(date +%s%N)
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x3e 2M 1M" >/dev/null || fail "qemu-io could not write"
_written_applied() {
    S=$(status "$PRI_CTL") || return 1
    [ "$(jget "$S" committed_epoch)" -gt "$c0" ] && [ "$(jget "$S" dirty_bytes)" = 0 ] &&
        [ "$(field "$SEC_CTL" applied_epoch)" -ge "$(jget "$S" committed_epoch)" ]
}
poll_until 2 _written_applied || fail "a write after an idle stretch was not committed and applied within 2 s: $S"
note "the first write after the idle stretch applied $((($(date +%s%N) - t0) / 1000000)) ms after it"
expect_same "$img" "$rep" "the replica after the write that ended the idle stretch"
