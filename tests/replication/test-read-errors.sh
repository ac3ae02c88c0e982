#!/usr/bin/env bash
# Ring reads that fail are retried, never forgotten.  nbdkit runs nbdkit's
# error filter below the writelog filter, so the log's own reads of the
# disk for the primary fail with EIO (30% of them) while a trigger file
# exists.  After a clean initial sync, 4 MiB are written through NBD with
# the trigger in place: the primary must count read errors, keep the
# grains whose reads failed, and, once the trigger is removed, read them
# again and converge to a byte-identical replica.  A primary that dropped a
# grain after a failed read would leave it in flight (never in sync) or
# clean on a replica that lacks it: either way this test fails.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires qemu-io
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "re-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
trigger=$WORKDIR/errors-on

NBDKIT_BELOW=error start_nbdkit "$WORKDIR" "re$$" "$img" \
    error-pread=EIO error-pread-rate=30% error-pread-file="$trigger"
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$rep" "the initial sync"
[ "$(field "$PRI_CTL" read_errors)" = 0 ] || fail "read errors without the trigger: $(status "$PRI_CTL")"

note "4 MiB written while 30% of the ring's reads fail"
touch "$trigger"
for i in $(seq 0 31); do
    echo "write -P $((i + 1)) $((i * 2 * 1024 * 1024 + 4096 * (i % 7))) 128k"
done >"$WORKDIR/writes"
qemu-io -f raw "$NBD_URI" <"$WORKDIR/writes" >"$WORKDIR/qemu-io.out" 2>&1 ||
    fail "qemu-io failed: $(tail -n 3 "$WORKDIR/qemu-io.out")"
_errors() { [ "$(field "$PRI_CTL" read_errors)" -ge 3 ]; }
poll_until 30 _errors || fail "the primary saw no read errors with the trigger set: $(status "$PRI_CTL")"
expect_log 'could not read sector .*; will retry' "$PRI_LOG"
s=$(status "$PRI_CTL")
note "with errors: read_errors $(jget "$s" read_errors), dirty $(jget "$s" dirty_bytes), in flight $(jget "$s" inflight_bytes)"

rm -f "$trigger"
wait_synced "$PRI_CTL" 30
expect_same "$img" "$rep" "the replica after the failed reads were retried"
note "converged after $(field "$PRI_CTL" read_errors) failed ring reads"
