#!/usr/bin/env bash
# A power cut of the primary's state directory right after the write log
# forgot a chunk: its bits survive in the dirty bitmap, and the next start
# resends exactly them.
#
# The state directory is an ext4 file system on a loop device over a file
# that nbdfuse serves from a disk with a volatile write cache
# (tests/powerloss/nbdkit-volatile-filter.c): nothing the primary writes
# there is durable until the file system flushes the device, which its
# msync (of the bitmap) and fsync (of the state file) do.  A kill -9 of
# the primary alone would prove nothing: its MAP_SHARED bitmap would live
# on in the page cache.  Here the page cache goes with the file system:
# after the cut the ext4 is unmounted over a dead device, and what is
# mounted again is only what reached the backing file.
#
# 1. A 64 MiB disk of random data replicates to a file; in sync.  The
#    primary stops cleanly and restarts with nothing dirty (its bitmap on
#    the store is all clean, durably).
# 2. The secondary stops, so nothing more is acknowledged.  256 writes of
#    4 KiB, one every 256 KiB, through the primary's nbdkit; the primary
#    seals, merges them into its bitmap (1 MiB dirty) and sends `next`, and
#    the log forgets them (two more seals prove the chain ended).
# 3. Power cut of the state store, kill -9 of the primary.  `blkship wlog
#    peek` shows the log empty: the bits exist only in the bitmap.
# 4. The store comes back (journal replay), the primary restarts on it with
#    the same log: no full sync, exactly 1 MiB dirty; the secondary
#    restarts; the replica converges to the image, and the primary sent
#    exactly that 1 MiB.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/../powerloss/volatile.sh"
requires_volatile
requires qemu-io
requires openssl
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
store=$WORKDIR/state-store.img
random_file "$img" $size "ps-$$"
truncate -s $size "$rep"
truncate -s 64M "$store"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

# The primary's state directory ($WORKDIR/pri.state, as start_primary
# names it) is the root of the ext4 on the volatile store.
vol_start pst "$store"
vol_mount_ext4 pst "$WORKDIR/pri.state" mkfs
start_nbdkit "$WORKDIR" "rtps$$" "$img"
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR"
expect_log 'paired with replica [0-9a-f]{32}: full sync' "$PRI_LOG" 20
wait_synced "$PRI_CTL" 60
expect_same "$img" "$rep" "replica after the initial sync"

# A clean stop closes the bitmap with an msync of its own, so that the
# durable bitmap is all clean now: what follows depends on the msync
# before `next` alone.
_log_open() { [ "$(field "$PRI_CTL" log_connected)" = true ]; }
kill -TERM "$PRI_PID"
poll_until 15 proc_gone "$PRI_PID" || fail "blkship-primary still running 15 s after SIGTERM"
wait "$PRI_PID" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "blkship-primary exited with status $rc on SIGTERM"
start_primary pri "$WL_CTL" "$SEC_ADDR"
poll_until 20 _log_open || fail "the restarted primary did not connect to the log: $(status "$PRI_CTL")"
[ "$(field "$PRI_CTL" dirty_bytes)" = 0 ] ||
    fail "in sync and stopped cleanly, the primary restarts with dirty bytes: $(status "$PRI_CTL")"

# ---- 2: writes only the bitmap will hold ------------------------------------------

stop_pid "$SEC_PID"
_link_down() { [ "$(field "$PRI_CTL" connected)" = false ]; }
poll_until 20 _link_down || fail "the primary still shows the link up after the secondary stopped"
n=256 want=$((256 * 4096))
qio=()
for ((k = 0; k < n; k++)); do
    qio+=(-c "write -P $((k % 255 + 1)) $((k * 256 * 1024)) 4k")
done
qemu-io -f raw "$NBD_URI" "${qio[@]}" >"$WORKDIR/qio.out" 2>&1 || fail "qemu-io failed: $(tail -n 5 "$WORKDIR/qio.out")"
_dirty_is() { [ "$(field "$PRI_CTL" dirty_bytes)" = "$1" ]; }
poll_until 20 _dirty_is "$want" ||
    fail "the primary's bitmap does not hold the $want bytes written: $(status "$PRI_CTL")"
e1=$(field "$PRI_CTL" log_epoch)
# With the link down the primary seals the log for the record only.  The
# seal that exported the writes ends (its last `next` answered) before the
# next seal starts: two seals later the log has forgotten them.
_log_epoch_at_least() { [ "$(field "$PRI_CTL" log_epoch)" -ge "$1" ]; }
poll_until 20 _log_epoch_at_least $((e1 + 2)) ||
    fail "the log's seals did not advance past $((e1 + 2)): $(status "$PRI_CTL")"
note "the bitmap holds the writes, the log forgot them: $(status "$PRI_CTL")"

# ---- 3: the power cut --------------------------------------------------------------

vol_cut pst
kill9 "$PRI_PID"
peek=$WORKDIR/peek
_peek() { "$BLKSHIP" wlog peek "$WL_CTL" >"$peek" 2>"$peek.err"; }
poll_until 10 _peek || fail "blkship wlog peek failed: $(cat "$peek.err")"
[ ! -s "$peek" ] || fail "the log still holds dirty extents, so the cut did not come after it forgot them: $(head -n 5 "$peek")"
vol_teardown pst

# ---- 4: the next start resends them ---------------------------------------------------

vol_start pst "$store"
vol_mount_ext4 pst "$WORKDIR/pri.state"
port=$(random_port)
start_primary pri "$WL_CTL" "$TEST_HOST:$port"
poll_until 20 _log_open || fail "the restarted primary did not connect to the log: $(status "$PRI_CTL")"
! log_has 'full sync|no usable dirty bitmap|whole disk|another disk' "$PRI_LOG" ||
    fail "after the cut the primary lost its bitmap or state and resends the whole disk: $(grep -E 'full sync|dirty bitmap|whole disk|another disk' "$PRI_LOG")"
s=$(status "$PRI_CTL")
[ "$(jget "$s" dirty_bytes)" = "$want" ] ||
    fail "after the power cut the bitmap holds $(jget "$s" dirty_bytes) dirty bytes, not the $want written before it: $s"
start_secondary --port "$port" sec "$rep"
wait_synced "$PRI_CTL" 60
s=$(status "$PRI_CTL")
note "after the restart: $s"
expect_same "$img" "$rep" "replica after the power cut of the primary's state and the restart"
[ "$(jget "$s" sent_bytes)" = "$want" ] ||
    fail "the restarted primary sent $(jget "$s" sent_bytes) bytes; exactly the $want dirty in its bitmap were due: $s"
