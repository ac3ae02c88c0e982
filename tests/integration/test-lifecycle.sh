#!/usr/bin/env bash
# The write log's lifecycle in nbdkit: the control socket exists before
# nbdkit serves any NBD client; socket and shm are mode 0600 whatever the
# umask; ':' and '/' in the name become '_'; SIGTERM removes both (also with
# a control client connected); a second nbdkit with the same name fails
# with a clear error and leaves the first alone; a socket and shm left by
# kill -9 are replaced on the next start (with a new log id); a non-socket
# file in the way and bad parameters are refused.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
requires nbdinfo
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 32M "$img"
name="lc$$:vm/disk0"
safe="lc$$_vm_disk0"

# ---- Start: socket before service, modes, names ---------------------------------------

old_umask=$(umask)
umask 000
start_nbdkit --opt -v "$WORKDIR" "$name" "$img"
umask "$old_umask"
pid1=$NBDKIT_PID
log1=$NBDKIT_LOG
[ "$CTL" = "$WORKDIR/log_$safe.ctl" ] || fail "unexpected control socket path $CTL"

# An NBD client is served only after the write log is up.
nbdinfo --size "$NBD_URI" >"$WORKDIR/size" || fail "nbdinfo failed"
[ -S "$CTL" ] || fail "no control socket while an NBD client is being served"
[ "$(cat "$WORKDIR/size")" = 33554432 ] || fail "nbdinfo size $(cat "$WORKDIR/size")"
serving=$(grep -n 'writelog: serving log' "$log1" | head -n 1 | cut -d: -f1)
accepted=$(grep -n 'accepted connection' "$log1" | head -n 1 | cut -d: -f1)
[ -n "$serving" ] || fail "nbdkit -v did not log the write log's start"
[ -n "$accepted" ] || fail "nbdkit -v did not log the NBD connection"
[ "$serving" -lt "$accepted" ] || fail "an NBD connection was accepted before the write log served"

# Modes: 0600, root's, even under umask 000.
[ "$(stat -c '%a %U %F' "$CTL")" = "600 root socket" ] ||
    fail "control socket: $(stat -c '%a %U %F' "$CTL"), expected 600 root socket"
[ -e "/dev/shm/log_$safe.wlog" ] || fail "no shm object /dev/shm/log_$safe.wlog"
[ "$(stat -c '%a %U %s' "/dev/shm/log_$safe.wlog")" = "600 root 8388608" ] ||
    fail "shm: $(stat -c '%a %U %s' "/dev/shm/log_$safe.wlog"), expected 600 root 8388608"
[ "$("$RAWCLIENT" shmp "$CTL")" = "size=8388608 name=/log_$safe.wlog" ] || fail "shmp name"
[ "$(info_field disk_sectors)" = 65536 ] || fail "disk_sectors"
log_id1=$(info_field log_id)
shm_ino=$(stat -c %i "/dev/shm/log_$safe.wlog")

qio "write -P 0x42 0 4096"

# ---- A second nbdkit with the same name fails clearly ----------------------------------

expect_nbdkit_failure "$WORKDIR/second.log" "$WORKDIR" "$name" "$img" "$WORKDIR/nbd2.sock"
note "second nbdkit: exit status $NBDKIT_STATUS"
grep -q "control socket $CTL: another write log is serving it" "$WORKDIR/second.log" ||
    fail "the second nbdkit's error does not say the log is in use: $(cat "$WORKDIR/second.log")"
# The first is untouched.
proc_alive "$pid1" || fail "the first nbdkit died"
[ -S "$CTL" ] || fail "the second nbdkit removed the first's control socket"
[ "$(stat -c %i "/dev/shm/log_$safe.wlog" 2>/dev/null)" = "$shm_ino" ] ||
    fail "the second nbdkit replaced the first's shm object"
[ "$(info_field log_id)" = "$log_id1" ] || fail "the first log's id changed"
wlog peek >"$WORKDIR/peek1"
expect_extents "first log after the second start" "$WORKDIR/peek1" "0 8
"
ring_cmp 0 8 "$img"

# ---- SIGTERM with a control client connected -------------------------------------------

"$RAWCLIENT" hold "$CTL" 30 >"$WORKDIR/hold.out" &
hold_pid=$!
cleanup_fn kill_quiet "$hold_pid"
poll_until 10 grep -q ready "$WORKDIR/hold.out" || fail "hold client did not connect"
stop_nbdkit "$pid1" TERM
note "nbdkit exit status after SIGTERM: $NBDKIT_STATUS"
[ ! -e "$CTL" ] || fail "control socket still there after SIGTERM"
[ ! -e "/dev/shm/log_$safe.wlog" ] || fail "shm object still there after SIGTERM"
log_has 'writelog: stopped; removed' "$log1" || fail "the filter did not log its stop"
[ "$NBDKIT_STATUS" = 0 ] || fail "nbdkit exited with status $NBDKIT_STATUS after SIGTERM"
poll_until 10 proc_gone "$hold_pid" || fail "the control client was not disconnected"
wait "$hold_pid" || fail "hold client: $(cat "$WORKDIR/hold.out")"

# ---- Stale socket and shm after kill -9 ---------------------------------------------------

start_nbdkit --nbd-sock "$WORKDIR/nbd-b.sock" "$WORKDIR" "$name" "$img"
pid2=$NBDKIT_PID
log_id2=$(info_field log_id)
[ "$log_id2" != "$log_id1" ] || fail "a new log has the old log id"
qio "write -P 0x43 8192 4096"
stop_nbdkit "$pid2" KILL
[ -S "$CTL" ] || fail "after kill -9 the control socket is gone (expected it stale)"
[ -e "/dev/shm/log_$safe.wlog" ] || fail "after kill -9 the shm object is gone (expected it stale)"
stale_ino=$(stat -c %i "/dev/shm/log_$safe.wlog")
"$BLKSHIP" wlog info "$CTL" >/dev/null 2>&1 && fail "a stale socket answered"

# (nbdkit's own NBD socket is not ours to test: use a fresh path.)
start_nbdkit --nbd-sock "$WORKDIR/nbd-c.sock" "$WORKDIR" "$name" "$img"
pid3=$NBDKIT_PID
expect_log "removing stale control socket $CTL"
expect_log "removing stale shared memory /log_$safe.wlog"
[ "$(stat -c %i "/dev/shm/log_$safe.wlog")" != "$stale_ino" ] || fail "the stale shm was reused"
[ "$(stat -c '%a' "/dev/shm/log_$safe.wlog")" = 600 ] || fail "new shm mode"
log_id3=$(info_field log_id)
[ "$log_id3" != "$log_id2" ] || fail "the restarted log kept the id of the lost one"
[ "$(info_field epoch)" = 0 ] || fail "the restarted log's epoch is not 0"
wlog peek >"$WORKDIR/peek3"
[ ! -s "$WORKDIR/peek3" ] || fail "the restarted log is not empty"
qio "write -P 0x44 16384 4096"
wlog peek >"$WORKDIR/peek4"
expect_extents "restarted log" "$WORKDIR/peek4" "32 8
"
ring_cmp 32 8 "$img"
stop_nbdkit "$pid3" TERM
[ ! -e "$CTL" ] && [ ! -e "/dev/shm/log_$safe.wlog" ] || fail "restarted nbdkit left files behind"

# ---- Refusals ----------------------------------------------------------------------------

# Something that is not a socket at the control path is not removed.
echo "precious" >"$CTL"
expect_nbdkit_failure "$WORKDIR/notsock.log" "$WORKDIR" "$name" "$img" "$WORKDIR/nbd4.sock"
grep -q "control socket $CTL: File exists" "$WORKDIR/notsock.log" ||
    fail "no clear error for a non-socket in the way: $(cat "$WORKDIR/notsock.log")"
[ "$(cat "$CTL")" = precious ] || fail "nbdkit clobbered a regular file at the socket path"
[ ! -e "/dev/shm/log_$safe.wlog" ] || fail "a refused start left a shm object"
rm -f "$CTL"

# Missing or bad parameters.
_logs+=("$WORKDIR/noname.log")
if nbdkit -f --filter="$FILTER" file "$img" writelog-dir="$WORKDIR" \
    -U "$WORKDIR/nbd5.sock" >"$WORKDIR/noname.log" 2>&1; then
    fail "nbdkit started without writelog-name"
fi
grep -q 'writelog-name=NAME is required' "$WORKDIR/noname.log" || fail "no clear error without a name"
expect_nbdkit_failure "$WORKDIR/grain.log" "$WORKDIR" "$name" "$img" "$WORKDIR/nbd6.sock" \
    writelog-grain=3000
grep -q 'writelog-grain=3000: must be a power of two' "$WORKDIR/grain.log" || fail "no clear error for a bad grain"
expect_nbdkit_failure "$WORKDIR/readers.log" "$WORKDIR" "$name" "$img" "$WORKDIR/nbd7.sock" \
    writelog-readers=0
grep -q 'writelog-readers=0: must be 1 to' "$WORKDIR/readers.log" || fail "no clear error for 0 readers"
expect_nbdkit_failure "$WORKDIR/dir.log" "$WORKDIR" "$name" "$img" "$WORKDIR/nbd8.sock" \
    writelog-dir=
grep -q 'writelog-dir must not be empty' "$WORKDIR/dir.log" || fail "no clear error for an empty writelog-dir"
[ ! -e "$CTL" ] && [ ! -e "/dev/shm/log_$safe.wlog" ] || fail "refused starts left files behind"

# A control directory that does not exist yet is created.
start_nbdkit --nbd-sock "$WORKDIR/nbd-d.sock" --log "$WORKDIR/newdir.log" \
    "$WORKDIR/newdir" "$name" "$img" writelog-readers=1
[ -S "$WORKDIR/newdir/log_$safe.ctl" ] || fail "no socket in the created directory"
ring_cmp 0 8 "$img"
