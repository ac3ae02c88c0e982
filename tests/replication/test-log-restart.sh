#!/usr/bin/env bash
# The write log restarts under the primary.  With the replica in sync, nbdkit
# (and the log inside it) is killed with SIGKILL during a fio load; while it
# is down the image changes behind its back (writes the log never sees: one
# random 64 KiB block and a 2 MiB hole of zeroes), then nbdkit starts again
# with the same name.  The log has a new identity, so the primary must say
# that writes may have gone unlogged and resend the whole disk (the file
# replica gets the zeroes as a punched hole); the replica then equals the
# image.
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
sent0=$(field "$pri_ctl" sent_bytes)

start_nbdkit "$WORKDIR" "$name" "$img"
_log_back() { [ "$(field "$pri_ctl" log_connected)" = true ]; }
poll_until 20 _log_back || fail "the primary did not reconnect to the restarted log: $(status "$pri_ctl")"
expect_log 'the write log restarted .*resending the whole disk' "$pri_log" 10
s=$(status "$pri_ctl")
[ "$(jget "$s" resync)" = full ] && [ "$(jget "$s" resync_reason)" = "the write log restarted" ] ||
    [ "$(jget "$s" dirty_bytes)" = 0 ] ||
    fail "while the whole disk is resent, the status does not say why: $s"
wait_synced "$pri_ctl" 90
s=$(status "$pri_ctl")
note "after the log restart: $s"
expect_same "$img" "$rep" "replica after the log restarted"
resent=$(($(jget "$s" sent_bytes) - sent0))
[ "$resent" -ge "$bytes" ] || fail "only $resent bytes resent after the log restart; the whole disk ($bytes) was due"
# Frames are at most 512 KiB but need not start on a 512 KiB boundary (a run
# starts wherever the bitmap's dirty run does), so of the 2 MiB hole only the
# two frames at its ends may carry data as well: at least 1 MiB of it must
# travel as ZERO frames.
[ "$(jget "$s" zero_bytes)" -ge $((1 << 20)) ] || fail "less than 1 MiB of the 2 MiB hole travelled as ZERO frames: $s"
expect_alive "$pri_pid" blkship-primary
ss=$(status "$SEC_CTL")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $ss"
