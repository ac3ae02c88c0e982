#!/usr/bin/env bash
# The Remus sequence under a live writer: checkpoint mode at the fastest
# heartbeat settings (--heartbeat-ms 100 --peer-timeout-ms 500), and
# tests/pit/pit-writer.py writing through NBD all along.  20 checkpoints,
# one every 25 ms on one control connection; the moment the last one is
# acknowledged, nbdkit and the primary are killed -9 (the writer dies
# with nbdkit).  The secondary's failover hook runs `blkship promote`.
# The promoted replica must be exactly the disk at the last acknowledged
# checkpoint: a prefix of the write sequence (tests/pit/pit-check.py) that
# holds every write completed before that checkpoint was asked for, and
# none logged after its answer; and the hook must have started within the
# peer timeout of the kill.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires_nbd_python
require_build
make_workdir
pit=$_src_dir/tests/pit

size=32M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
truncate -s $size "$img" "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)
hook=$WORKDIR/failover.sh
cat >"$hook" <<EOF
#!/bin/sh
date +%s%N >"$WORKDIR/hook.t"
"$BLKSHIP" promote --control "$WORKDIR/sec.ctl" >"$WORKDIR/promote.out" 2>&1
echo \$? >"$WORKDIR/promote.rc"
EOF
chmod +x "$hook"

start_nbdkit "$WORKDIR" "rtrm$$" "$img"
start_secondary sec "$rep" "${fast[@]}" --on-failover "$hook"
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint "${fast[@]}"
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
# The first checkpoint carries the full sync, before the writer starts.
out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 30s 2>&1) || fail "the first checkpoint: $out"

wlog=$WORKDIR/writes.log
"$NBD_PY" "$pit/pit-writer.py" "$NBD_URI" "$wlog" "$WORKDIR/writer.stop" 120 $$ \
    >"$WORKDIR/writer.out" 2>&1 &
writer=$!
cleanup_fn stop_pid "$writer"
_writes() { [ -s "$wlog" ] && [ "$(wc -l <"$wlog")" -ge 200 ]; }
poll_until 20 _writes || fail "the writer made no writes: $(cat "$WORKDIR/writer.out")"

# 19 checkpoints on one connection, then the last one by itself, with the
# writer's log counted just before it is asked for and just after it is
# answered.
"$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 5s --count 19 --every 25ms \
    >"$WORKDIR/ck.out" 2>&1 || fail "a checkpoint failed: $(cat "$WORKDIR/ck.out")"
before=$(wc -l <"$wlog")
last=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 5s 2>&1) || fail "the last checkpoint: $last"
t0=$(date +%s%N)
kill -KILL "$PRI_PID" "$NBDKIT_PID" || fail "kill -9 of the primary and nbdkit"
after=$(wc -l <"$wlog")
note "the last acknowledged checkpoint is epoch $last; the writer had logged $before writes before it was asked for, $after when it was answered"

_promoted() { [ -s "$WORKDIR/promote.rc" ]; }
poll_until 30 _promoted || fail "the failover hook did not promote: $(status "$SEC_CTL")"
[ "$(cat "$WORKDIR/promote.rc")" = 0 ] || fail "promote failed: $(cat "$WORKDIR/promote.out")"
dt=$((($(cat "$WORKDIR/hook.t") - t0) / 1000000))
[ "$dt" -lt 500 ] || fail "the failover hook started $dt ms after the kill (peer timeout 500 ms)"
grep -q "holds committed epoch $last " "$WORKDIR/promote.out" ||
    fail "promote does not report the last acknowledged checkpoint $last: $(cat "$WORKDIR/promote.out")"
out=$("$NBD_PY" "$pit/pit-check.py" "$rep" "$wlog") ||
    fail "the promoted replica is not a point in time:"$'\n'"$out"
k=$(sed -n 's/^pit-check: prefix of \([0-9]*\) writes holds.*/\1/p' <<<"$out")
[ -n "$k" ] || fail "pit-check said: $out"
[ "$k" -ge "$before" ] ||
    fail "the promoted replica holds $k writes: it lacks writes completed before checkpoint $last was asked for ($before)"
[ "$k" -le "$after" ] ||
    fail "the promoted replica holds $k writes: more than were completed when checkpoint $last was answered ($after)"
note "promoted $dt ms after the kill; the replica is the prefix of $k writes ($before <= $k <= $after): $out"
