#!/usr/bin/env bash
# The write log restarts under the primary.  With the replica in sync, nbdkit
# (and the log inside it) is killed with SIGKILL during a fio load; while it
# is down the image changes behind its back (writes the log never sees: one
# random 64 KiB block and a 2 MiB hole of zeroes), and one 64 KiB block of
# the replica is overwritten too; then nbdkit starts again with the same
# name.  The log has a new identity, so the primary must say that writes may
# have gone unlogged and run a checksum resync: the replica then equals the
# image, only about what differs was sent (not the whole disk), the zeroes
# travelled as ZERO frames (a punched hole in the file replica), and the
# replica stayed consistent at its last committed epoch throughout.  Then
# the primary's dirty bitmap is lost: a checksum resync again, nothing sent.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires_fio_nbd
require_build
make_workdir

size=128M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "lr-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
name=rtlr$$

start_nbdkit "$WORKDIR" "$name" "$img"
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR"
pri_ctl=$PRI_CTL pri_log=$PRI_LOG pri_pid=$PRI_PID
wait_synced "$pri_ctl" 60
expect_same "$img" "$rep" "replica after the initial sync"

fio --thread --name=load --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=4k --iodepth=8 --rate=8m \
    --size="$bytes" --io_size=64m --output="$WORKDIR/fio.out" 2>"$WORKDIR/fio.err" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid" 5
acked0=$(field "$pri_ctl" acked_bytes)
_flowing() { [ "$(field "$pri_ctl" acked_bytes)" -ge $((acked0 + (2 << 20))) ]; }
poll_until 20 _flowing || fail "the fio load does not reach the replica: $(status "$pri_ctl")"
kill9 "$NBDKIT_PID"
note "nbdkit killed under load"
# fio fails with its server gone, and its nbd engine may then spin
# ("nothing to poll for in state DEAD"): it is stopped.
kill -KILL "$fio_pid" 2>/dev/null || true
wait "$fio_pid" 2>/dev/null || true
_log_lost() { [ "$(field "$pri_ctl" log_connected)" = false ]; }
poll_until 20 _log_lost || fail "the primary still shows the log connected: $(status "$pri_ctl")"

# Changes the log never sees.
head -c 65536 /dev/urandom | dd of="$img" bs=64k seek=100 conv=notrunc status=none
dd if=/dev/zero of="$img" bs=1M seek=64 count=2 conv=notrunc status=none
# And one the replica took behind the secondary's back.
head -c 65536 /dev/urandom | dd of="$rep" bs=64k seek=1500 conv=notrunc status=none
sent0=$(field "$pri_ctl" sent_bytes)
committed0=$(field "$SEC_CTL" committed_epoch)
sec_lines=$(wc -l <"$SEC_LOG")

start_nbdkit "$WORKDIR" "$name" "$img"
_log_back() { [ "$(field "$pri_ctl" log_connected)" = true ]; }
poll_until 20 _log_back || fail "the primary did not reconnect to the restarted log: $(status "$pri_ctl")"
expect_log 'the write log restarted .*writes may have gone unlogged' "$pri_log" 10
expect_log 'the write log restarted: the replica is compared by checksums' "$pri_log" 10
s=$(status "$pri_ctl")
[ "$(jget "$s" resync)" = checksum ] && [ "$(jget "$s" resync_reason)" = "the write log restarted" ] ||
    [ "$(jget "$s" checksum_resyncs)" -ge 1 ] ||
    fail "while the checksums are compared, the status does not say why: $s"
expect_log 'checksum resync done \(the write log restarted\)' "$pri_log" 60
wait_synced "$pri_ctl" 90
s=$(status "$pri_ctl")
note "after the log restart: $s"
expect_same "$img" "$rep" "replica after the log restarted"
[ "$(jget "$s" checksum_compared_bytes)" = "$bytes" ] ||
    fail "the checksum resync did not compare the whole disk ($bytes bytes): $s"
resent=$(($(jget "$s" sent_bytes) - sent0))
differ=$(jget "$s" checksum_differing_bytes)
# The three changes (2 MiB + 128 KiB), and the fio writes the dead log had
# not yet sealed: the load ran at 8 MiB/s, so well under 4 MiB of them.
[ "$differ" -ge $(((2 << 20) + (128 << 10))) ] ||
    fail "the checksums found only $differ bytes different; at least the 2 MiB + 128 KiB changed behind the log's back do: $s"
[ "$resent" -ge "$differ" ] || fail "$resent bytes resent, but $differ bytes differed: $s"
[ "$resent" -le $((8 << 20)) ] ||
    fail "$resent bytes resent after the log restart for about $differ bytes that differ (the disk is $bytes): $s"
# Frames are at most 512 KiB but need not start on a 512 KiB boundary (a run
# starts wherever the bitmap's dirty run does), so of the 2 MiB hole only the
# two frames at its ends may carry data as well: at least 1 MiB of it must
# travel as ZERO frames.
[ "$(jget "$s" zero_bytes)" -ge $((1 << 20)) ] || fail "less than 1 MiB of the 2 MiB hole travelled as ZERO frames: $s"
expect_alive "$pri_pid" blkship-primary
ss=$(status "$SEC_CTL")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $ss"
[ "$(jget "$ss" replica_consistent)" = true ] && [ "$(jget "$ss" committed_epoch)" -gt "$committed0" ] ||
    fail "the replica did not stay consistent through the checksum resync, or committed nothing after it: $ss"
[ "$(jget "$ss" checksum_compared_bytes)" = "$bytes" ] ||
    fail "the secondary did not compare the whole replica: $ss"
after=$(tail -n +$((sec_lines + 1)) "$SEC_LOG")
! grep -qi 'not consistent\|in place' <<<"$after" ||
    fail "the secondary wrote in place during the resync: $(grep -i 'consistent\|in place' <<<"$after")"

# The dirty bitmap lost while paired (the primary stopped, its dirty.bitmap
# removed): a checksum resync again, not a full resend; nothing differs, so
# nothing is sent, and the replica still equals the image.
stop_pid "$pri_pid"
rm -f "$WORKDIR/pri.state/dirty.bitmap"
sent1=$(jget "$s" sent_bytes)
start_primary pri "$WL_CTL" "$SEC_ADDR"
expect_log 'no usable dirty bitmap: the replica is compared by checksums' "$PRI_LOG" 20
expect_log 'checksum resync done \(no usable dirty bitmap\)' "$PRI_LOG" 60
wait_synced "$PRI_CTL" 60
s=$(status "$PRI_CTL")
[ "$(jget "$s" checksum_differing_bytes)" = 0 ] && [ "$(jget "$s" sent_bytes)" = 0 ] ||
    fail "with the bitmap lost and nothing changed, something was sent: $s"
expect_same "$img" "$rep" "replica after the bitmap was lost"
note "bitmap lost: compared by checksums, nothing sent"
