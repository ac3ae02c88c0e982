#!/usr/bin/env bash
# The promise: whenever the secondary says its replica is consistent, the
# replica is exactly the primary's disk at one past instant.  One writer
# through NBD at queue depth 1 (tests/pit/pit-writer.py) stamps every 4 KiB
# block it writes with its sequence number; both agents are killed -9 at
# random moments, BLKSHIP_PIT_KILLS times (8 by default; the seed is
# printed and BLKSHIP_PIT_SEED repeats it).  Each round one of them dies
# first (primary, secondary, or both at once, at random), the other a
# random moment later; then the secondary starts again (it applies what it
# committed before it listens) and, with no primary connected, the replica
# is still: if the secondary reports it consistent, it must be a prefix of
# the write sequence, no stale, torn or misplaced block
# (tests/pit/pit-check.py); if it does not, it must never have committed
# an epoch (only the first full sync may leave it without an image).  Then
# the primary starts again and the writer goes on.  At the end, the writer
# stopped and the pair in sync, the replica is the disk itself.
#
# BLKSHIP_PIT_COW_MAX=SIZE gives the filter that writelog-cow-max (and a
# 1 ms writelog-cow-wait): with a pool of one grain most epochs break (the
# filter's count of breaks must be above 0), and the primary must abort
# them and never let a broken one reach the replica
# (test-point-in-time-broken.sh runs it so).
#
# BLKSHIP_PIT_TARGET=rbd puts the replica in an RBD image of a one-node
# Ceph cluster (scripts/ceph-cluster.sh) and checks `rbd export` of it
# (test-point-in-time-rbd.sh runs it so): the restarted secondary takes the
# image's exclusive lock from the killed one once its watch times out.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires_nbd_python
target=${BLKSHIP_PIT_TARGET:-file}
case $target in
file) ;;
rbd) requires rbd; requires ceph-osd ;;
*) fail "BLKSHIP_PIT_TARGET=$target: file or rbd" ;;
esac
require_build
make_workdir

kills=${BLKSHIP_PIT_KILLS:-8}
seed=${BLKSHIP_PIT_SEED:-$$}
if ! [ "$kills" -ge 1 ] || ! [ "$kills" -le 1000 ]; then
    fail "BLKSHIP_PIT_KILLS=$kills: 1 to 1000"
fi
RANDOM=$seed
note "$kills rounds of kills, seed $seed (BLKSHIP_PIT_SEED=$seed repeats the moments)"
pit=$_src_dir/tests/pit

size=32M
img=$WORKDIR/disk.img
truncate -s $size "$img"
sec_args=()
if [ "$target" = rbd ]; then
    cluster=$WORKDIR/ceph
    cleanup_fn "$_src_dir/scripts/ceph-cluster.sh" stop "$cluster"
    conf=$("$_src_dir/scripts/ceph-cluster.sh" start "$cluster") || fail "the Ceph cluster did not start"
    rbd -c "$conf" create --size $size rbd/pit 2>/dev/null || fail "rbd create rbd/pit"
    rep=rbd:rbd/pit
    sec_args=(--ceph-conf "$conf")
    # A restarted secondary first waits for the killed one's exclusive lock
    # (until its watch times out: osd_client_watch_timeout, 10 s in the
    # test cluster), then replays what it committed.
    SEC_START_WAIT=45
    note "replica in rbd/pit of $conf"
else
    rep=$WORKDIR/replica.img
    truncate -s $size "$rep"
fi
# replica_file: a path holding the replica's bytes now.
replica_file() {
    if [ "$target" = rbd ]; then
        rbd -c "$conf" export --no-progress rbd/pit "$WORKDIR/export.img" 2>/dev/null >/dev/null ||
            fail "rbd export rbd/pit"
        echo "$WORKDIR/export.img"
        return
    fi
    echo "$rep"
}
CERTS=$WORKDIR/pki
make_certs "$CERTS"
cow_args=()
if [ -n "${BLKSHIP_PIT_COW_MAX:-}" ]; then
    cow_args=(writelog-cow-max="$BLKSHIP_PIT_COW_MAX" writelog-cow-wait=1ms)
    note "copy-before-write pool $BLKSHIP_PIT_COW_MAX, wait 1 ms: epochs will break"
fi
start_nbdkit "$WORKDIR" "rtpit$$" "$img" "${cow_args[@]}"
start_secondary sec "$rep" "${sec_args[@]}"
port=$SEC_PORT
start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 30

if [ -n "${BLKSHIP_PIT_COW_MAX:-}" ]; then
    # With so small a pool an epoch that must keep the whole first sync
    # under writes would break every time: the writer starts once the first
    # epoch is committed.
    _first_commit() { [ "$(field "$PRI_CTL" committed_epoch)" -gt 0 ]; }
    poll_until 60 _first_commit || fail "the first epoch was not committed: $(status "$PRI_CTL")"
fi
wlog=$WORKDIR/writes.log
stop=$WORKDIR/writer.stop
"$NBD_PY" "$pit/pit-writer.py" "$NBD_URI" "$wlog" "$stop" 600 "$seed" >"$WORKDIR/writer.out" 2>&1 &
writer=$!
cleanup_fn stop_pid "$writer"

# ms N: sleeps N milliseconds.
ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

checked=0 unchecked=0
for ((i = 1; i <= kills; i++)); do
    ms $((300 + RANDOM % 1700))
    proc_alive "$writer" || fail "round $i: the writer died: $(cat "$WORKDIR/writer.out")"
    case $((RANDOM % 3)) in
    0) first=primary ;;
    1) first=secondary ;;
    *) first=both ;;
    esac
    pri_status=$(status "$PRI_CTL" 2>/dev/null) || pri_status="(no answer)"
    case $first in
    primary) kill9 "$PRI_PID"; ms $((RANDOM % 500)); kill9 "$SEC_PID" ;;
    secondary) kill9 "$SEC_PID"; ms $((RANDOM % 500)); kill9 "$PRI_PID" ;;
    both)
        kill -KILL "$PRI_PID" "$SEC_PID" || fail "kill -9 of both agents"
        poll_until 10 proc_gone "$PRI_PID" || fail "the primary survived SIGKILL"
        poll_until 10 proc_gone "$SEC_PID" || fail "the secondary survived SIGKILL"
        wait "$PRI_PID" "$SEC_PID" 2>/dev/null || true
        ;;
    esac
    note "round $i: $first killed first; the primary said just before: $(jget "$pri_status" epoch_state) epoch $(jget "$pri_status" epoch), committed $(jget "$pri_status" committed_epoch)"

    start_secondary --port "$port" sec "$rep" "${sec_args[@]}"
    s=$(status "$SEC_CTL") || fail "round $i: no status from the restarted secondary"
    # The applier may still be applying what it replayed: wait for it to
    # settle (applied = committed) before judging.
    _settled() {
        s=$(status "$SEC_CTL") || return 1
        [ "$(jget "$s" applied_epoch)" = "$(jget "$s" committed_epoch)" ]
    }
    poll_until 20 _settled || fail "round $i: the secondary did not apply what it committed: $s"
    if [ "$(jget "$s" replica_consistent)" = true ]; then
        rm -f "$WORKDIR/export.img"
        out=$("$NBD_PY" "$pit/pit-check.py" "$(replica_file)" "$wlog") ||
            fail "round $i: the secondary reports a consistent replica at epoch $(jget "$s" applied_epoch) that is not a point in time:"$'\n'"$out"
        note "round $i: consistent at epoch $(jget "$s" applied_epoch): $out"
        checked=$((checked + 1))
    else
        [ "$(jget "$s" committed_epoch)" = 0 ] ||
            fail "round $i: the replica is inconsistent though epoch $(jget "$s" committed_epoch) was committed: $s"
        note "round $i: no epoch committed yet (first full sync): $s"
        unchecked=$((unchecked + 1))
    fi
    start_primary pri "$WL_CTL" "$SEC_ADDR" --epoch-ms 30
done
[ "$checked" -ge $((kills / 2)) ] ||
    fail "only $checked of $kills rounds found a consistent replica to check"
if [ -n "${BLKSHIP_PIT_COW_MAX:-}" ]; then
    # The filter's count of broken epochs (in the primary's status, "cow"),
    # over every run of the primary.
    breaks=$(field "$PRI_CTL" breaks)
    [ "${breaks:-0}" -gt 0 ] || fail "with a pool of $BLKSHIP_PIT_COW_MAX no epoch broke: $(status "$PRI_CTL")"
    note "the filter broke $breaks epochs; the last primary aborted $(field "$PRI_CTL" epochs_aborted)"
fi

touch "$stop"
poll_until 20 proc_gone "$writer" || fail "the writer did not stop"
wait "$writer" || fail "the writer failed: $(cat "$WORKDIR/writer.out")"
note "$(cat "$WORKDIR/writer.out")"
wait_synced "$PRI_CTL" 60
_applied_all() {
    local s
    s=$(status "$SEC_CTL") || return 1
    [ "$(jget "$s" replica_consistent)" = true ] &&
        [ "$(jget "$s" applied_epoch)" = "$(jget "$s" committed_epoch)" ]
}
poll_until 20 _applied_all || fail "the secondary did not apply everything: $(status "$SEC_CTL")"
rm -f "$WORKDIR/export.img"
final=$(replica_file)
expect_same "$img" "$final" "the replica at the end"
out=$("$NBD_PY" "$pit/pit-check.py" "$final" "$wlog") || fail "the final replica: $out"
note "$checked rounds checked a consistent replica, $unchecked found none yet; at the end: $out"
