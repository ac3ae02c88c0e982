#!/usr/bin/env bash
# Checkpoint mode (blkship-primary --mode checkpoint): an epoch is sealed
# only when `blkship checkpoint` asks, and the answer comes once the
# secondary has committed it.
#   1. Nothing is sealed unasked; the first checkpoint carries the full sync
#      and the replica is then the disk.
#   2. Five rounds of 1 MiB written through NBD (qemu-io), a copy of the
#      disk taken, a checkpoint: epochs increase, and once applied the
#      replica equals that copy exactly.
#   3. 20 checkpoints on one connection (--count): 20 answers, epochs
#      increasing.
#   3b. Still in the first session, after its first commit, the replica journals: an ACK no
#      longer means the data is on it.  192 MiB written, a checkpoint, and
#      the secondary killed -9 once 100 MiB of that epoch are sent (past the
#      64 MiB at which an in-place epoch is flushed and acknowledged) and
#      before its commit: nothing of it may count as acknowledged, and
#      after the restart (the journal dropped the uncommitted epoch) the
#      next checkpoint must bring all of it.
#   4. The secondary killed -9 in the middle of a checkpoint, at a random
#      moment; then the primary killed -9 in the middle of one: once the
#      secondary is back and has applied what it committed, the replica is
#      the previous checkpoint's image or the new one, never a mix; the
#      next checkpoint brings the new one.
#   5. With no link a checkpoint fails at once with the reason; a bad
#      --timeout is a usage error.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=256M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "ck-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "rtck$$" "$img"
start_secondary sec "$rep"
port=$SEC_PORT
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint

# checkpoint [ARGS...]: one checkpoint; CK_OUT its output, CK_RC its status.
checkpoint() {
    CK_OUT=$("$BLKSHIP" checkpoint --control "$PRI_CTL" "$@" 2>&1) && CK_RC=0 || CK_RC=$?
}
# applied E: waits until the secondary has applied epoch E and is consistent.
applied() {
    _applied_is() {
        local s
        s=$(status "$SEC_CTL") || return 1
        [ "$(jget "$s" applied_epoch)" = "$1" ] && [ "$(jget "$s" replica_consistent)" = true ]
    }
    poll_until 20 _applied_is "$1" || fail "the secondary did not apply epoch $1: $(status "$SEC_CTL")"
}
# settled: waits until the secondary has applied everything it committed.
settled() {
    _settled() {
        SETTLED=$(status "$SEC_CTL") || return 1
        [ "$(jget "$SETTLED" applied_epoch)" = "$(jget "$SETTLED" committed_epoch)" ]
    }
    poll_until 20 _settled || fail "the secondary did not apply what it committed: $SETTLED"
}
# write_mib K: 1 MiB of byte K at a random MiB of the disk, through NBD.
write_mib() {
    qemu-io -f raw "$NBD_URI" -c "write -q -P $1 $(((RANDOM % 64) << 20)) 1M" >/dev/null ||
        fail "qemu-io could not write"
}

# ---- 1 ------------------------------------------------------------------------------
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"
sleep 1
s=$(status "$PRI_CTL")
[ "$(jget "$s" committed_epoch)" = 0 ] && [ "$(jget "$s" epochs_committed)" = 0 ] ||
    fail "checkpoint mode sealed an epoch nobody asked for: $s"
[ "$(jget "$s" mode)" = checkpoint ] || fail "the primary is not in checkpoint mode: $s"
[ "$(jget "$s" resync)" = full ] && [ "$(jget "$s" resync_reason)" = "a new pairing" ] ||
    fail "before the first checkpoint, the status does not say a full resync for a new pairing: $s"
# The secondary takes the primary's generation when it accepts the session.
[ "$(jget "$s" peer_generation)" = "$(jget "$s" generation)" ] && [ "$(jget "$s" generation)" -gt 1 ] ||
    fail "the replica did not take the primary's generation: $s"
bs_status --control "$PRI_CTL" | grep -qx "resync      FULL: the whole disk is being sent (a new pairing)" ||
    fail "the human status does not show the full resync: $(bs_status --control "$PRI_CTL")"
checkpoint --timeout 60s
[ "$CK_RC" = 0 ] || fail "the first checkpoint failed ($CK_RC): $CK_OUT"
e=$CK_OUT
note "the first checkpoint (the full sync) is epoch $e"
applied "$e"
expect_same "$img" "$rep" "the replica after the first checkpoint"
s=$(status "$PRI_CTL")
[ "$(jget "$s" resync)" = none ] && [ "$(jget "$s" resync_reason)" = "" ] ||
    fail "after the full sync committed, the status still says a resync: $s"

# ---- 2 ------------------------------------------------------------------------------
for k in 1 2 3 4 5; do
    write_mib $((k + 16))
    cp "$img" "$WORKDIR/image.$k"
    prev=$e
    checkpoint
    [ "$CK_RC" = 0 ] || fail "checkpoint $k failed ($CK_RC): $CK_OUT"
    e=$CK_OUT
    [ "$e" -gt "$prev" ] || fail "checkpoint $k answered epoch $e after $prev"
    applied "$e"
    expect_same "$WORKDIR/image.$k" "$rep" "the replica at checkpoint $k (epoch $e)"
done
note "five checkpoints, each the disk as it was when asked"

# ---- 3 ------------------------------------------------------------------------------
out=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --count 20 --every 20ms 2>&1) ||
    fail "20 checkpoints on one connection failed: $out"
[ "$(wc -l <<<"$out")" = 20 ] || fail "20 checkpoints gave $(wc -l <<<"$out") answers: $out"
last=$e
while read -r ep lat; do
    [ "$ep" -gt "$last" ] || fail "checkpoint answered epoch $ep after $last: $out"
    last=$ep
    [[ $lat =~ ^[0-9]+\.[0-9]+$ ]] || fail "no latency in '$ep $lat'"
done <<<"$out"
e=$last
note "20 checkpoints on one connection: epochs up to $e, latencies $(awk '{print $2}' <<<"$out" | sort -n | sed -n '1p;$p' | paste -sd- ) ms"

# ---- 3b ------------------------------------------------------------------------------
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x77 32M 192M" >/dev/null || fail "qemu-io could not write"
cp "$img" "$WORKDIR/big.img"
s=$(status "$PRI_CTL")
sent0=$(jget "$s" sent_bytes) c0=$(jget "$s" committed_epoch) acked0=$(jget "$s" acked_bytes)
"$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 30s >"$WORKDIR/ck.out" 2>&1 &
ck=$!
_mid_epoch() {
    S=$(status "$PRI_CTL") || return 1
    [ $(($(jget "$S" sent_bytes) - sent0)) -ge $((100 << 20)) ]
}
poll_until 30 _mid_epoch || fail "the 192 MiB epoch did not get 100 MiB out: $S"
kill9 "$SEC_PID"
[ "$(jget "$S" committed_epoch)" = "$c0" ] ||
    fail "the epoch committed before the kill; the test needs it uncommitted: $S"
[ "$(jget "$S" acked_bytes)" = "$acked0" ] ||
    fail "data of a journalled, uncommitted epoch counted as acknowledged ($acked0 before): $S"
note "secondary killed with $(($(jget "$S" sent_bytes) - sent0)) bytes of the epoch sent, acked_bytes $(jget "$S" acked_bytes), state $(jget "$S" epoch_state)"
wait "$ck" || true
start_secondary --port "$port" sec "$rep"
poll_until 20 _connected || fail "the primary did not reconnect: $(status "$PRI_CTL")"
checkpoint --timeout 60s
[ "$CK_RC" = 0 ] || fail "the checkpoint after the secondary came back failed: $CK_OUT"
applied "$CK_OUT"
expect_same "$WORKDIR/big.img" "$rep" "the replica after a journalled epoch was lost and sent again"

# ---- 4 ------------------------------------------------------------------------------
prev_img=$WORKDIR/image.5
cp "$img" "$prev_img"
for victim in secondary primary; do
    for ((k = 0; k < 8; k++)); do
        write_mib $((k + 40))
    done
    cp "$img" "$WORKDIR/new.img"
    "$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 10s >"$WORKDIR/ck.out" 2>&1 &
    ck=$!
    sleep "0.0$((RANDOM % 10))"
    if [ "$victim" = secondary ]; then kill9 "$SEC_PID"; else kill9 "$PRI_PID"; fi
    wait "$ck" && rc=0 || rc=$?
    note "$victim killed during a checkpoint: it answered ($rc) $(cat "$WORKDIR/ck.out")"
    if [ "$victim" = secondary ]; then
        [ "$rc" = 0 ] || grep -q 'link to the secondary was lost\|no link' "$WORKDIR/ck.out" ||
            fail "the failed checkpoint gave no reason: $(cat "$WORKDIR/ck.out")"
        start_secondary --port "$port" sec "$rep"
    else
        [ "$rc" != 0 ] || [ -n "$(cat "$WORKDIR/ck.out")" ] || fail "no answer from the checkpoint"
        kill9 "$SEC_PID"
        start_secondary --port "$port" sec "$rep"
    fi
    settled
    [ "$(jget "$SETTLED" replica_consistent)" = true ] || fail "the replica is not consistent after the $victim died: $SETTLED"
    if cmp -s "$rep" "$prev_img"; then
        note "$victim killed: the replica is the previous checkpoint's image (epoch $(jget "$SETTLED" applied_epoch))"
    elif cmp -s "$rep" "$WORKDIR/new.img"; then
        note "$victim killed: the replica is the new checkpoint's image (epoch $(jget "$SETTLED" applied_epoch))"
    else
        fail "$victim killed during a checkpoint: the replica is neither the previous checkpoint's image nor the new one: $(cmp "$rep" "$prev_img" | head -1); $(cmp "$rep" "$WORKDIR/new.img" | head -1)"
    fi
    [ "$victim" = secondary ] || start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint
    poll_until 20 _connected || fail "the primary did not reconnect: $(status "$PRI_CTL")"
    checkpoint --timeout 30s
    [ "$CK_RC" = 0 ] || fail "the checkpoint after the $victim came back failed: $CK_OUT"
    applied "$CK_OUT"
    expect_same "$WORKDIR/new.img" "$rep" "the replica at the checkpoint after the $victim came back"
    cp "$WORKDIR/new.img" "$prev_img"
done

# ---- 5 ------------------------------------------------------------------------------
stop_pid "$SEC_PID"
_down() { [ "$(field "$PRI_CTL" connected)" = false ]; }
poll_until 20 _down || fail "the primary still shows the link up"
checkpoint
[ "$CK_RC" = 1 ] && grep -q 'no link to the secondary' <<<"$CK_OUT" ||
    fail "a checkpoint with no link should fail with the reason (status 1): ($CK_RC) $CK_OUT"
checkpoint --timeout 0
[ "$CK_RC" = 2 ] || fail "--timeout 0 should be a usage error (status 2): ($CK_RC) $CK_OUT"
checkpoint --timeout 5x
[ "$CK_RC" = 2 ] || fail "--timeout 5x should be a usage error (status 2): ($CK_RC) $CK_OUT"
note "no link: '$(head -n 1 <<<"$CK_OUT")'"
