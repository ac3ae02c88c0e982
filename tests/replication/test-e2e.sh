#!/usr/bin/env bash
# End to end: a 512 MiB disk of random data (its first 32 MiB zeroes) served
# by nbdkit with the writelog filter; the replica a loop device over a
# sparse file (junk where the primary has zeroes, so ZERO frames must really
# clear it); both agents on loopback.  fio writes randomly through NBD
# (4k, crc32c verification) while the initial full sync runs: fio starts
# first, rate-limited so that its writes last at least 4 s, and the primary
# must begin its full sync well inside that window.  After the writes drain, the replica is byte-identical to the image, the secondary
# saw no bad frame, every byte sent was acknowledged, and both agents stop
# cleanly on SIGTERM.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires_fio_nbd
require_build
make_workdir

size=512M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "e2e-$$"
dd if=/dev/zero of="$img" bs=1M count=32 conv=notrunc status=none
truncate -s $size "$rep"
random_file "$WORKDIR/junk" 32M "junk-$$"
dd if="$WORKDIR/junk" of="$rep" bs=1M conv=notrunc status=none
rm -f "$WORKDIR/junk"
make_loop "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rte2e$$" "$img"
start_secondary sec "$LOOP"
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG

# fio through NBD while the full sync runs: random 4k writes over the disk
# but its first 32 MiB, each block verified (crc32c) by reading it back through NBD.  At
# 64 MiB/s its 256 MiB of writes take at least 4 s from its launch, however
# fast this machine is; the sync starts after fio's first write reached the
# log and must start within 3 s of fio's launch, so the two overlap.
fio_io=256 fio_rate=64
fio_verify_job "$WORKDIR/rw.fio" 16 ${fio_io}m ${fio_rate}m
# Past the first 32 MiB, which must stay zeroes to travel as ZERO frames.
sed -i "s/^size=.*/offset=32m\nsize=$((bytes - (32 << 20)))/" "$WORKDIR/rw.fio"
fio_launch=$(now_ms)
fio --output="$WORKDIR/fio.out" "$WORKDIR/rw.fio" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid" 5
# No agent holds the log yet, so the tool can look: fio's writes are in it.
_fio_writing() { "$BLKSHIP" wlog info "$WL_CTL" --json | grep -Eq '"live_grains": [1-9]'; }
poll_until 10 _fio_writing || fail "fio's writes do not reach the log"
start_primary pri "$WL_CTL" "$SEC_ADDR"
pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
expect_log 'paired with replica [0-9a-f]{32}: full sync' "$pri_log"
# Without --metrics neither agent loads the HTTP library (common/metrics.c:
# it and GnuTLS cost every start about 6 ms); test-metrics.sh checks that
# an endpoint does load it.
for pid in "$pri_pid" "$sec_pid"; do
    [ -r "/proc/$pid/maps" ] || fail "no /proc/$pid/maps"
    ! grep -q 'libmicrohttpd\|libgnutls' "/proc/$pid/maps" ||
        fail "agent $pid, started without --metrics, has libmicrohttpd or GnuTLS mapped"
done
sync_began=$(($(now_ms) - fio_launch))
s=$(status "$pri_ctl")
proc_alive "$fio_pid" || fail "fio ended before the full sync began: the sync did not run under load"
[ "$sync_began" -le 3000 ] ||
    fail "the full sync began $sync_began ms after fio's launch; fio's writes are only sure to last 4000 ms"
[ "$(jget "$s" dirty_bytes)" -gt 0 ] || fail "the full sync had nothing left to do as it began: $s"
note "full sync began $sync_began ms after fio's launch, under fio's writes: $s"
wait "$fio_pid" || fail "fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.out")"
note "fio done: $(grep -E 'WRITE:|READ:' "$WORKDIR/fio.out" | tr -s ' ' | tr '\n' ' ')"

wait_synced "$pri_ctl" 90
ps=$(status "$pri_ctl")
ss=$(status "$sec_ctl")
note "primary: $ps"
note "secondary: $ss"
expect_same "$img" "$LOOP" "replica after fio and drain"

[ "$(jget "$ss" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $ss"
[ "$(jget "$ss" connected)" = true ] || fail "the secondary does not show the session: $ss"
[ "$(jget "$ps" read_errors)" = 0 ] || fail "the primary had read errors: $ps"
[ "$(jget "$ps" sent_bytes)" -ge "$bytes" ] || fail "a full sync sends at least the whole disk: $ps"
[ "$(jget "$ps" sent_bytes)" = "$(jget "$ps" acked_bytes)" ] ||
    fail "with the link never down, every byte sent is acknowledged: $ps"
[ "$(jget "$ps" zero_bytes)" -ge $((32 << 20)) ] ||
    fail "the 32 MiB of zeroes did not travel as ZERO frames: $ps"
[ "$(jget "$ss" written_bytes)" -ge "$bytes" ] || fail "the secondary wrote less than the disk: $ss"
[ "$(jget "$ss" primary_id)" != 00000000000000000000000000000000 ] ||
    fail "the secondary recorded no pairing: $ss"
! log_has 'bad frame|refusing|TLS .* failed' "$sec_log" || fail "the secondary logged an error"
! log_has 'link .* down|failed' "$pri_log" || fail "the primary logged a failure"

# Both stop cleanly on SIGTERM.
kill -TERM "$pri_pid"
poll_until 15 proc_gone "$pri_pid" || fail "blkship-primary still running 15 s after SIGTERM"
wait "$pri_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "blkship-primary exited with status $rc on SIGTERM"
kill -TERM "$sec_pid"
poll_until 15 proc_gone "$sec_pid" || fail "blkship-secondary still running 15 s after SIGTERM"
wait "$sec_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "blkship-secondary exited with status $rc on SIGTERM"
expect_log 'stopped' "$pri_log"
expect_log 'stopped' "$sec_log"
