#!/usr/bin/env bash
# Power cuts of the replica.  The replica is a disk with a volatile write
# cache (tests/powerloss/nbdkit-volatile-filter.c: nothing reaches its
# backing file until a FLUSH), served to blkship-secondary as a regular file
# through nbdfuse, so that the secondary's fdatasync before an ACK is the
# only thing that makes its writes durable.  A 128 MiB disk of random data
# (its first 8 MiB zeroes, junk there on the replica).  Cut 1 lands during
# the initial full sync, every later one under a fio load (random 4k writes
# through the primary's nbdkit), each at a random moment (seed printed;
# BLKSHIP_POWERLOSS_SEED repeats a run, BLKSHIP_POWERLOSS_CUTS sets the
# count, 4 by default).  Odd cuts are a power loss of the whole secondary
# host (the store's nbdkit and the secondary killed -9 together); even ones
# cut the store alone, and the secondary must see its writes or flush fail
# and end the session unacknowledged before it is killed in turn.
#
# After each cut, with the load finished and the primary killed -9, and the
# secondary started once more (it applies what it committed before it
# listens) and killed, with a second power cut, every grain the secondary
# acknowledged (FLUSH in place, or COMMITTED) must be on the backing file,
# byte for byte (tests/powerloss/check-acked.py).  Then the store, the secondary and
# the primary restart on the same backing file and state directories; the
# pair converges without another full sync.  At the end, in sync, one last
# power cut: the backing file equals the image.
#
# Why "clean in the primary's bitmap file and not dirty in the write log"
# is exactly the set of grains the replica must hold durably, at a moment
# when no write is in flight (fio has finished and nbdkit answered it all)
# and the primary is dead (killed -9; its MAP_SHARED bitmap stays in the
# page cache, which is what the checker reads):
# - Pairing marks and msyncs every grain, so a clean grain has been
#   cleared since, and only bs_dirty_acked clears: on an ACK of a FLUSH
#   sent after the frames it covers, which the secondary sends only after
#   its fdatasync, i.e. after the volatile store wrote them to its backing
#   file.
# - Let W be the last write to grain G.  The writelog filter marks G in the
#   live map before W reaches the plugin and again when W completes, so
#   some seal after W's completion moved G to pending; the log forgets a
#   pending grain only on `next`, which the primary sends after it has set
#   G in the bitmap (persist_words runs inside bs_dirty_mark, before the
#   reply handler sends `next`).  So G not in `peek` (which lists live and
#   pending, including a chunk exported and not yet acknowledged) means the
#   primary set G after W completed.  A kill -9 at any point keeps this:
#   every word of the file is either before or after its update, and the
#   update precedes the `next`.
# - G clean after that set means a copy of G taken after it was
#   acknowledged: a grain set while a copy is in flight stays set (todo)
#   and is not taken again until that copy's ACK, and the ACK of the old
#   copy clears only inflight, leaving the file's bit set (todo|inflight).
#   A copy taken after the set is read through the ring after W completed
#   ("every write that completed before the kick is visible"), so it holds
#   W's data, and it was durable when its ACK came.
# - Nothing older lands on G afterwards: one copy of a grain is in flight
#   at a time, a lost link requeues it (the dead secondary's unflushed
#   writes of it are what the cut discards or, if written, the same data),
#   and sessions do not overlap on the disk.
# Grains dirty in the bitmap or in the log are not checked: the replica
# may lack them.  A grain the load never touched is clean and checked too:
# the full sync's copy must have survived every cut.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/../powerloss/volatile.sh"
requires_volatile
requires_fio_nbd
requires openssl
require_build
make_workdir

cuts=${BLKSHIP_POWERLOSS_CUTS:-4}
seed=${BLKSHIP_POWERLOSS_SEED:-$$}
if ! [ "$cuts" -ge 1 ] || ! [ "$cuts" -le 1000 ]; then
    fail "BLKSHIP_POWERLOSS_CUTS=$cuts: 1 to 1000"
fi
RANDOM=$seed
note "$cuts power cuts, seed $seed (BLKSHIP_POWERLOSS_SEED=$seed repeats the moments)"

size=128M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
backing=$WORKDIR/replica-backing.img
random_file "$img" $size "pl-$$"
dd if=/dev/zero of="$img" bs=1M count=8 conv=notrunc status=none
random_file "$backing" 8M "pl-junk-$$"
truncate -s $size "$backing"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rtpl$$" "$img"
wl_ctl=$WL_CTL
nbd_uri=$NBD_URI
vol_start rep "$backing"
start_secondary sec "$VOL_FILE"
start_primary pri "$wl_ctl" "$SEC_ADDR"
first_pri_log=$PRI_LOG

# cut_when CONDITION...: polls the primary's status (in S) until CONDITION
# holds with the link up and at least DELAY_MS have passed since T0_MS.
now_ms() { date +%s%3N; }
cut_when() {
    local end=$((SECONDS + 60)) s
    while :; do
        s=$(status "$PRI_CTL") || s=""
        if [ "$(jget "$s" connected)" = true ] && [ $(($(now_ms) - T0_MS)) -ge "$DELAY_MS" ] &&
            S=$s "$@"; then
            break
        fi
        [ "$SECONDS" -lt "$end" ] || fail "cut $i: condition '$*' never held: $s"
        expect_alive "$SEC_PID" blkship-secondary
        sleep 0.01
    done
    CUT_STATUS=$s
}
_pct_at_least() { awk -v p="$(jget "$S" sync_percent)" -v m="$1" 'BEGIN { exit !(p >= m) }'; }
_acked_past() { [ "$(jget "$S" acked_bytes)" -gt "$1" ]; }
# The first full sync is written in place and acknowledged FLUSH by FLUSH
# (every 64 MiB): cut once something is acknowledged, past PCT% sent.
_pct_and_acked() { _pct_at_least "$1" && _acked_past 0; }

# power_cut MODE: host (store and secondary together) or store (the store
# alone; the secondary must notice before it is killed too).
power_cut() {
    local lines
    lines=$(log_lines "$SEC_LOG")
    vol_cut rep
    if [ "$1" = store ]; then
        _sec_noticed() {
            log_since "$SEC_LOG" "$lines" |
                grep -Eq 'writing .* of .*:|zeroing .* of .*:|flushing the replica failed|flushing .* after epoch [0-9]+:|applying committed epoch [0-9]+ failed'
        }
        poll_until 20 _sec_noticed ||
            fail "cut $i: the secondary did not report a failed write or flush in 20 s after its store died"
    fi
    kill9 "$SEC_PID"
}

checked_total=0
for ((i = 1; i <= cuts; i++)); do
    mode=host
    [ $((i % 2)) = 1 ] || mode=store
    fio_pid=""
    T0_MS=$(now_ms)
    if [ "$i" = 1 ]; then
        DELAY_MS=0
        pct=$((5 + RANDOM % 45))
        cut_when _pct_and_acked "$pct"
        what="initial sync at ${pct}%"
        [ "$(jget "$CUT_STATUS" dirty_bytes)" -gt 0 ] ||
            fail "cut 1: the initial sync had finished before the cut: $CUT_STATUS"
        expect_log 'paired with replica [0-9a-f]{32}: full sync' "$PRI_LOG"
    else
        NBD_URI=$nbd_uri
        fio_verify_job "$WORKDIR/load.$i.fio" 8 24M 12m
        acked0=$(field "$PRI_CTL" acked_bytes)
        fio --output="$WORKDIR/fio.$i.out" "$WORKDIR/load.$i.fio" &
        fio_pid=$!
        cleanup_fn stop_pid "$fio_pid" 5
        DELAY_MS=$((150 + RANDOM % 1200))
        T0_MS=$(now_ms)
        cut_when _acked_past "$acked0"
        what="fio load, ${DELAY_MS} ms in"
        proc_alive "$fio_pid" || fail "cut $i: fio had finished before the cut; the load must be running"
    fi
    power_cut "$mode"
    note "cut $i ($mode, $what): $CUT_STATUS"
    # The state to judge: the primary dead, the log's view beside it, no
    # write in flight.  After a store cut the primary dies at once, so that
    # the rest of fio's writes stay in the log (and peek must show them);
    # after a host cut it drains them into its bitmap first.
    [ "$mode" = host ] || kill9 "$PRI_PID"
    if [ -n "$fio_pid" ]; then
        wait "$fio_pid" || fail "cut $i: fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.$i.out")"
    fi
    [ "$mode" = store ] || kill9 "$PRI_PID"
    peek=$WORKDIR/peek.$i
    _peek() { "$BLKSHIP" wlog peek "$wl_ctl" >"$peek" 2>"$peek.err"; }
    poll_until 10 _peek || fail "cut $i: blkship wlog peek failed: $(cat "$peek.err")"
    vol_teardown rep
    # An epoch committed in the secondary's journal may not be on the
    # replica yet: the secondary applies it at its next start, before it
    # listens.  So the store and the secondary start once, the secondary is
    # killed again and the power cut again: what is on the backing file
    # then is what the promise covers.
    vol_start rep "$backing"
    start_secondary sec "$VOL_FILE"
    kill9 "$SEC_PID"
    vol_cut rep
    vol_teardown rep
    out=$(python3 "$CHECK_ACKED" "$WORKDIR/pri.state/dirty.bitmap" "$peek" "$img" "$backing" 2>&1) ||
        fail "cut $i ($mode, $what): acknowledged data lost in the power cut:"$'\n'"$out"
    note "cut $i: $out"
    checked=$(sed -n 's/^check-acked: \([0-9]*\) acknowledged grains checked.*/\1/p' <<<"$out")
    [ "${checked:-0}" -gt 0 ] || fail "cut $i: no acknowledged grain to check: $out"
    checked_total=$((checked_total + checked))

    # Everything back on the same backing file and state directories.
    vol_start rep "$backing"
    start_secondary sec "$VOL_FILE"
    start_primary pri "$wl_ctl" "$SEC_ADDR"
    ! log_has 'full sync|no usable dirty bitmap|whole disk' "$PRI_LOG" ||
        fail "cut $i: the restarted primary resends the whole disk: $(grep -E 'full sync|dirty bitmap|whole disk' "$PRI_LOG")"
    wait_synced "$PRI_CTL" 90
    note "cut $i: converged: $(status "$PRI_CTL")"
done

[ "$(grep -c 'full sync' "$first_pri_log")" = 1 ] || fail "the first primary started more than one full sync"
ss=$(status "$SEC_CTL")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $ss"

# In sync: a last power cut; once the secondary has started again (and
# applied what it committed), the backing file is the image.
vol_cut rep
kill9 "$SEC_PID"
kill9 "$PRI_PID"
vol_teardown rep
vol_start rep "$backing"
start_secondary sec "$VOL_FILE"
kill9 "$SEC_PID"
vol_cut rep
vol_teardown rep
expect_same "$img" "$backing" "the replica's backing file after the drain, a power cut and the secondary's restart"
note "$cuts power cuts survived; $checked_total acknowledged grains checked in all"
