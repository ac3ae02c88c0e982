#!/usr/bin/env bash
# kill -9 of blkship-secondary mid-stream, restarted on the same port with
# the same state directory and replica (a loop device):
# A: during the initial full sync of a 512 MiB disk of random data;
# B: with the replica in sync, during a fio load (random 4k writes,
#    verified) that goes on across the kill and the restart.
# Each time the primary logs the link loss, reconnects on its own, and the
# replica converges to the image.  The pairing survives: no second full
# sync, and the primary sends at most what was dirty at the kill (plus, in
# B, fio's writes) after it.
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
random_file "$img" $size "ks-$$"
truncate -s $size "$rep"
make_loop "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rtks$$" "$img"
start_secondary sec "$LOOP"
port=$SEC_PORT sec_addr=$SEC_ADDR
start_primary pri "$WL_CTL" "$sec_addr"
pri_ctl=$PRI_CTL pri_log=$PRI_LOG pri_pid=$PRI_PID

# kill_secondary_when CONDITION...: polls the primary's status (in S) until
# CONDITION holds with the link up, keeps it in KILL_STATUS, kills -9 the
# secondary and waits until the primary has noticed (its status then in
# DOWN_STATUS).  What the primary sends after DOWN_STATUS is bounded by
# what was dirty at KILL_STATUS: frames sent between the two are counted in
# both, as sent before and, requeued, as dirty.
kill_secondary_when() {
    local end=$((SECONDS + 60)) s
    while :; do
        s=$(status "$pri_ctl") || s=""
        if [ "$(jget "$s" connected)" = true ] && S=$s "$@"; then
            break
        fi
        [ "$SECONDS" -lt "$end" ] || fail "condition '$*' never held: $s"
        expect_alive "$SEC_PID" blkship-secondary
        sleep 0.02
    done
    KILL_STATUS=$s
    kill9 "$SEC_PID"
    _down() {
        DOWN_STATUS=$(status "$pri_ctl") || return 1
        [ "$(jget "$DOWN_STATUS" connected)" = false ]
    }
    poll_until 20 _down || fail "the primary still shows the link up 20 s after the secondary died"
}
_pct_at_least() { awk -v p="$(jget "$S" sync_percent)" -v m="$1" 'BEGIN { exit !(p >= m) }'; }
_inflight_after() {
    [ "$(jget "$S" acked_bytes)" -ge "$1" ] && [ "$(jget "$S" inflight_bytes)" -gt 0 ]
}

# ---- A: during the initial sync ------------------------------------------------------

kill_secondary_when _pct_at_least 40
note "A: secondary killed at: $KILL_STATUS"
dirty_a=$(jget "$KILL_STATUS" dirty_bytes)
sent_a=$(jget "$DOWN_STATUS" sent_bytes)
[ "$dirty_a" -gt 0 ] || fail "A: the sync had finished before the kill"
links_down=$(grep -c 'replication link to .* down' "$pri_log" || true)
[ "$links_down" -ge 1 ] || fail "A: the primary did not log the link loss"
# Stay down until the primary has tried and failed to connect at least once,
# so that the check on how it reports that (at the end) has something to see.
expect_log 'cannot connect to ' "$pri_log" 15
start_secondary --port "$port" sec "$LOOP"
expect_log 'primary .* connected' "$SEC_LOG" 30
wait_synced "$pri_ctl" 90
s=$(status "$pri_ctl")
note "A: after the restart: $s"
expect_same "$img" "$LOOP" "A: replica after kill -9 of the secondary during the initial sync"
resent=$(($(jget "$s" sent_bytes) - sent_a))
[ "$resent" -le "$dirty_a" ] ||
    fail "A: $resent bytes sent after the link loss; at most the $dirty_a dirty bytes at the kill were due"
[ "$(grep -c 'full sync' "$pri_log")" = 1 ] || fail "A: the primary started another full sync"
expect_alive "$pri_pid" blkship-primary

# ---- B: under fio load ----------------------------------------------------------------

fio_io=48M
fio_verify_job "$WORKDIR/load.fio" 8 "$fio_io" 16m
acked0=$(field "$pri_ctl" acked_bytes)
fio --output="$WORKDIR/fio.out" "$WORKDIR/load.fio" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid" 5
kill_secondary_when _inflight_after $((acked0 + (8 << 20)))
note "B: secondary killed under load at: $KILL_STATUS"
proc_alive "$fio_pid" || fail "B: fio had already finished at the kill; the load must go on across it"
dirty_b=$(jget "$KILL_STATUS" dirty_bytes)
sent_b=$(jget "$DOWN_STATUS" sent_bytes)
start_secondary --port "$port" sec "$LOOP"
expect_log 'primary .* connected' "$SEC_LOG" 30
wait "$fio_pid" || fail "B: fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.out")"
wait_synced "$pri_ctl" 90
s=$(status "$pri_ctl")
note "B: after the restart: $s"
expect_same "$img" "$LOOP" "B: replica after kill -9 of the secondary under load"
resent=$(($(jget "$s" sent_bytes) - sent_b))
bound=$((dirty_b + $(numfmt --from=iec $fio_io)))
[ "$resent" -le "$bound" ] ||
    fail "B: $resent bytes sent after the link loss; at most $bound (dirty $dirty_b + $fio_io from fio) were due"
[ "$(grep -c 'full sync' "$pri_log")" = 1 ] || fail "B: the primary started another full sync"
ss=$(status "$SEC_CTL")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "the restarted secondary counted bad frames: $ss"
expect_alive "$pri_pid" blkship-primary
note "link losses logged by the primary: $(grep -c 'replication link to .* down' "$pri_log")"

# Last, because it is about a message, not the data: while the secondary was
# down the primary's connects were refused, and the log should say so.
if ! log_has 'cannot connect to .*: Connection refused' "$pri_log"; then
    fail "the primary logged its refused connects as: $(grep 'cannot connect' "$pri_log" | sort -u | head -n 3)" \
        "(expected 'Connection refused': a connect to a port nobody listens on must be" \
        "reported with the socket's own error)"
fi
