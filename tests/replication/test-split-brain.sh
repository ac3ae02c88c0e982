#!/usr/bin/env bash
# Split brain (docs/failover.md, "Generations"), twice, once per way out.
# Each time: A (nbdkit with the writelog filter, blkship-primary) replicates
# to B (blkship-secondary on a file); the primary is stopped (SIGSTOP: a
# hung host) until B has lost it, B is promoted, B's disk is written
# through an nbdkit of its own (Y at 4 MiB), the primary resumes and A's
# disk is written (Z at 8 MiB) with no secondary to take it.  A's next
# hello must be refused as a split brain, and both sides must say so: the
# logs (once), the status (split_brain, the generation they parted at and
# the other side's) and each side's --on-split-brain hook (BLKSHIP_EVENT
# split-brain, its role, the generation it holds); nothing is overwritten
# (B still holds Y, A still holds Z, neither has the other's).
#   1. The reconnects stay backed off: at most 3 connections in 40 s.
#      `blkship resolve` without a direction is refused.  `blkship resolve
#      --discard-local` on B (its nbdkit stopped first) gives up B's change:
#      B holds the parting generation again and owes a checksum resync; the
#      restarted primary's session compares checksums and sends what
#      differs (exactly Y and Z, 2 MiB); B ends byte-identical to A,
#      consistent, with no checksum resync still owed.
#   2. `blkship resolve --discard-local` on A's primary: it stops
#      connecting.  The roles are swapped (a secondary on A's disk with an
#      empty state directory, a primary on B's disk with --initial-sync
#      checksum): exactly 2 MiB are sent and A ends byte-identical to B.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=32M
CERTS=$WORKDIR/pki
make_certs "$CERTS"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)
hook=$WORKDIR/hook.sh
printf '#!/bin/sh\nenv | grep "^BLKSHIP_" | sort >"%s/hook-$1.env"\n' "$WORKDIR" >"$hook"
chmod +x "$hook"

# split_brain N: builds the split brain of round N.
split_brain() {
    local n=$1 s env side out
    IMG_A=$WORKDIR/a$n.img REP_B=$WORKDIR/b$n.img
    random_file "$IMG_A" $size "sb$n-$$"
    truncate -s $size "$REP_B"
    rm -f "$WORKDIR"/hook-*.env
    start_nbdkit "$WORKDIR" "sba$n$$" "$IMG_A"
    A_NBD_PID=$NBDKIT_PID A_URI=$NBD_URI A_WL=$WL_CTL
    start_secondary "b$n" "$REP_B" "${fast[@]}" --on-split-brain "$hook secondary"
    B_CTL=$SEC_CTL B_LOG=$SEC_LOG B_PID=$SEC_PID B_ADDR=$SEC_ADDR
    start_primary "a$n" "$A_WL" "$B_ADDR" "${fast[@]}" --on-split-brain "$hook primary"
    A_CTL=$PRI_CTL A_LOG=$PRI_LOG A_PID=$PRI_PID
    wait_synced "$A_CTL" 60
    expect_same "$IMG_A" "$REP_B" "round $n: the replica before the split"
    gen0=$(field "$A_CTL" generation)
    [ "$(field "$B_CTL" generation)" = "$gen0" ] || fail "round $n: B does not hold A's generation $gen0"

    kill -STOP "$A_PID"
    _b_alone() { [ "$(field "$B_CTL" connected)" = false ]; }
    poll_until 20 _b_alone || { kill -CONT "$A_PID"; fail "round $n: B did not lose the stopped primary"; }
    out=$("$BLKSHIP" promote --control "$B_CTL" 2>&1) || { kill -CONT "$A_PID"; fail "round $n: promote: $out"; }
    start_nbdkit "$WORKDIR" "sbb$n$$" "$REP_B"
    B_NBD_PID=$NBDKIT_PID B_WL=$WL_CTL
    qemu-io -f raw "$NBD_URI" -c "write -q -P 0x59 4M 1M" >/dev/null || fail "round $n: qemu-io on B"
    kill -CONT "$A_PID"
    qemu-io -f raw "$A_URI" -c "write -q -P 0x5a 8M 1M" >/dev/null || fail "round $n: qemu-io on A"
    _split() { [ "$(field "$A_CTL" split_brain)" = true ] && [ "$(field "$B_CTL" split_brain)" = true ]; }
    poll_until 30 _split || fail "round $n: no split brain on both sides: A $(status "$A_CTL"); B $(status "$B_CTL")"
    expect_log "SPLIT BRAIN with .*both disks changed since generation" "$A_LOG"
    expect_log "SPLIT BRAIN with primary .*both changed since generation" "$B_LOG"
    s=$(status "$A_CTL")
    genA=$(jget "$s" generation) genB=$(field "$B_CTL" generation)
    [ "$genA" != "$gen0" ] && [ "$genB" != "$gen0" ] && [ "$genA" != "$genB" ] ||
        fail "round $n: both sides should have left generation $gen0: A $genA, B $genB"
    [ "$(jget "$s" bitmap_generation)" = "$gen0" ] && [ "$(jget "$s" split_brain_peer_generation)" = "$genB" ] ||
        fail "round $n: A's status does not give the parting generation $gen0 and B's $genB: $s"
    [ "$(jget "$s" dirty_bytes)" -ge $((1 << 20)) ] || fail "round $n: A does not count its own change: $s"
    s=$(status "$B_CTL")
    [ "$(jget "$s" split_brain_peer_generation)" = "$genA" ] && [ "$(jget "$s" generation_history_1)" = "$gen0" ] &&
        [ "$(jget "$s" split_brain_peer_changed_bytes)" -ge $((1 << 20)) ] ||
        fail "round $n: B's status does not give A's generation $genA, the parting one $gen0 and A's change: $s"
    _hooks() { [ -s "$WORKDIR/hook-primary.env" ] && [ -s "$WORKDIR/hook-secondary.env" ]; }
    poll_until 20 _hooks || fail "round $n: the split-brain hooks did not both run"
    for side in primary:$genA secondary:$genB; do
        env=$(cat "$WORKDIR/hook-${side%%:*}.env")
        grep -qx "BLKSHIP_EVENT=split-brain" <<<"$env" && grep -qx "BLKSHIP_ROLE=${side%%:*}" <<<"$env" &&
            grep -qx "BLKSHIP_GENERATION=${side#*:}" <<<"$env" ||
            fail "round $n: the ${side%%:*}'s hook had: $env"
    done
    python3 - "$IMG_A" "$REP_B" <<'PY' || fail "round $n: a side lost its own change, or got the other's"
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
assert a[8 << 20:9 << 20] == b"\x5a" * (1 << 20), "A lost Z"
assert a[4 << 20:5 << 20] != b"\x59" * (1 << 20), "Y reached A"
assert b[4 << 20:5 << 20] == b"\x59" * (1 << 20), "B lost Y"
assert b[8 << 20:9 << 20] != b"\x5a" * (1 << 20), "Z reached B"
PY
    note "round $n: split brain seen on both sides (A $genA, B $genB, parted at $gen0); hooks ran"
}

# ---- 1 ------------------------------------------------------------------------------
split_brain 1
c0=$(grep -c 'info: secondary: connection from' "$B_LOG")
sleep 40
c1=$(grep -c 'info: secondary: connection from' "$B_LOG")
[ $((c1 - c0)) -le 3 ] || fail "1: $((c1 - c0)) connections in 40 s after the split brain: not backed off"
[ "$(grep -c 'SPLIT BRAIN' "$A_LOG")" = 1 ] || fail "1: the primary said SPLIT BRAIN more than once: $(grep 'SPLIT BRAIN' "$A_LOG")"
note "1: $((c1 - c0)) reconnects in 40 s"
if out=$("$BLKSHIP" resolve --control "$B_CTL" 2>&1); then fail "1: resolve without --discard-local: $out"; fi
[[ $out == *"--discard-local"* ]] || fail "1: resolve without a direction: $out"
stop_pid "$B_NBD_PID"
out=$("$BLKSHIP" resolve --control "$B_CTL" --discard-local 2>&1) || fail "1: resolve on B: $out"
[[ $out == resolved:* ]] || fail "1: resolve on B: $out"
expect_log "SPLIT BRAIN RESOLVED with --discard-local" "$B_LOG"
s=$(status "$B_CTL")
[ "$(jget "$s" promoted)" = false ] && [ "$(jget "$s" checksum_required)" = true ] &&
    [ "$(jget "$s" generation)" = "$gen0" ] && [ "$(jget "$s" split_brain)" = false ] ||
    fail "1: after resolve, B should hold generation $gen0 again and owe a checksum resync: $s"
grep -q '^format 1$' "$WORKDIR/b1.state/secondary.state" &&
    grep -q '^checksum_required 1$' "$WORKDIR/b1.state/secondary.state" ||
    fail "1: B's state file: $(cat "$WORKDIR/b1.state/secondary.state")"
# The operator restarts A's primary rather than wait for its back-off.
stop_pid "$A_PID"
start_primary a1 "$A_WL" "$B_ADDR" "${fast[@]}"
wait_synced "$PRI_CTL" 60
expect_log 'the replica changed on its own: the replica is compared by checksums' "$PRI_LOG"
expect_same "$IMG_A" "$REP_B" "1: B after its change was discarded"
s=$(status "$PRI_CTL")
[ "$(jget "$s" checksum_differing_bytes)" = $((2 << 20)) ] && [ "$(jget "$s" split_brain)" = false ] ||
    fail "1: the checksums should find exactly Y and Z (2 MiB) different: $s"
# B settles (a link lost to a stall of this shared machine reconnects).
_b_settled() {
    s=$(status "$B_CTL") || return 1
    [ "$(jget "$s" replica_consistent)" = true ] && [ "$(jget "$s" checksum_required)" = false ] &&
        [ "$(jget "$s" generation)" = "$(field "$PRI_CTL" generation)" ]
}
poll_until 20 _b_settled || fail "1: B should be consistent, owe nothing and hold A's generation: $s"
! grep -q checksum_required "$WORKDIR/b1.state/secondary.state" ||
    fail "1: B's state file still owes a checksum resync: $(cat "$WORKDIR/b1.state/secondary.state")"
note "1: B gave up its change; it equals A"
stop_pid "$PRI_PID"
stop_pid "$B_PID"
stop_pid "$A_NBD_PID"

# ---- 2 ------------------------------------------------------------------------------
split_brain 2
out=$("$BLKSHIP" resolve --control "$A_CTL" --discard-local 2>&1) || fail "2: resolve on A: $out"
[[ $out == resolved:* ]] && [[ $out == *"--initial-sync checksum"* ]] || fail "2: resolve on A: $out"
[ "$(field "$A_CTL" resolved_discard_local)" = true ] || fail "2: A's status: $(status "$A_CTL")"
c0=$(grep -c 'info: secondary: connection from' "$B_LOG")
sleep 5
[ "$(grep -c 'info: secondary: connection from' "$B_LOG")" = "$c0" ] || fail "2: A's primary still connects after resolve"
# The role swap that resolve printed.
stop_pid "$A_PID"
stop_pid "$A_NBD_PID"
stop_pid "$B_PID"
start_secondary a2s "$IMG_A"
start_primary b2p "$B_WL" "$SEC_ADDR" --initial-sync checksum
wait_synced "$PRI_CTL" 60
expect_same "$REP_B" "$IMG_A" "2: A after its change was discarded"
s=$(status "$PRI_CTL")
[ "$(jget "$s" checksum_differing_bytes)" = $((2 << 20)) ] && [ "$(jget "$s" sent_bytes)" = $((2 << 20)) ] ||
    fail "2: exactly Y and Z (2 MiB) should differ and be sent: $s"
note "2: A gave up its change; it equals B ($(jget "$s" sent_bytes) bytes sent)"
