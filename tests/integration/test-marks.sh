#!/usr/bin/env bash
# The two marks the filter makes around every write, seen from the log.
# nbdkit runs the writelog filter above the delay filter (delay-write=3,
# delay-zero=3), so each write is held for 3 s between reaching the
# writelog filter and reaching the disk.  While one is held:
#   1. `blkship wlog peek` already lists its extent: the filter marks a
#      write before passing it on, so a write in flight is never missing
#      from the log (an epoch sealed then contains it, and a crash between
#      the two steps cannot hide it);
#   2. `blkship wlog getw` seals and drains the log, extent included, as an
#      agent does; the write then completes, and `peek` must list the
#      extent again: the filter marks it a second time once it completed,
#      so a reader that drained the log during the write (and may have
#      read the disk before the write reached it) ships it again.
# The same for a write-zeroes.  Without the first mark step 1 fails;
# without the second, step 2 does: the write would be lost to the log.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 64M "$img"
name=$(unique_name marks)
CTL=$WORKDIR/log_$name.ctl
NBD_SOCK=$WORKDIR/nbd.sock
log=$WORKDIR/nbdkit.log
_logs+=("$log")
cleanup_fn rm -f "/dev/shm/log_$name.wlog"
# The writelog filter first (nearest the client), the delay filter below it.
nbdkit -f --filter="$FILTER" --filter=delay file "$img" writelog-name="$name" \
    writelog-dir="$WORKDIR" delay-write=3 delay-zero=3 -U "$NBD_SOCK" >"$log" 2>&1 &
nbdkit_pid=$!
cleanup_fn _kill_nbdkit "$nbdkit_pid"
_up() { proc_alive "$nbdkit_pid" || fail "nbdkit exited: $(tail -n 3 "$log")"; [ -S "$CTL" ] && [ -S "$NBD_SOCK" ]; }
poll_until 15 _up || fail "nbdkit did not create its sockets"

peek() { "$BLKSHIP" wlog peek "$CTL"; }

# held_write KIND SECTOR SECTORS: one write (or write-zeroes) through NBD,
# in the background; it takes 3 s to reach the disk.
held_write() {
    local off=$(($2 * 512)) len=$(($3 * 512)) cmd
    if [ "$1" = zero ]; then cmd="write -z $off $len"; else cmd="write -P 0x5a $off $len"; fi
    qemu-io -f raw -c "$cmd" "nbd+unix:///?socket=$NBD_SOCK" >"$WORKDIR/qemu-io.$1.out" 2>&1 &
    WRITER=$!
    cleanup_fn kill_quiet "$WRITER"
    START=$SECONDS
}

for kind in data zero; do
    if [ $kind = data ]; then sector=2048; else sector=4096; fi
    count=16
    [ -z "$(peek)" ] || fail "the log is not empty before the $kind write: $(peek)"

    note "$kind: a write held 3 s below the filter is in the log while in flight"
    held_write $kind $sector $count
    _listed() { peek | grep -qx "$sector $count"; }
    poll_until 2 _listed || fail "$kind write in flight: peek does not list $sector $count (it lists: $(peek)); the filter must mark a write before passing it on"
    proc_alive "$WRITER" || fail "the $kind write completed before it could be checked in flight (delay filter not in effect?)"

    note "$kind: drained while in flight, then listed again once completed"
    got=$("$BLKSHIP" wlog getw "$CTL") || fail "wlog getw failed"
    grep -qx "$sector $count" <<<"$got" || fail "getw did not return the write in flight: $got"
    proc_alive "$WRITER" || fail "the $kind write completed before getw drained the log"
    [ -z "$(peek)" ] || fail "the log is not empty right after getw, while the write is in flight: $(peek)"
    wait "$WRITER" || fail "qemu-io $kind failed: $(cat "$WORKDIR/qemu-io.$kind.out")"
    [ $((SECONDS - START)) -ge 2 ] || fail "the $kind write took under 2 s: the delay filter did not hold it"
    peek | grep -qx "$sector $count" ||
        fail "$kind write completed after the log was drained: peek does not list $sector $count again (it lists: '$(peek)'); the filter must mark a write again once it completed"
    "$BLKSHIP" wlog getw "$CTL" >/dev/null || fail "wlog getw failed"
done
