#!/usr/bin/env bash
# blkship promote, and the role swap it starts (docs/failover.md).
#   A. The Remus sequence: checkpoint mode at --heartbeat-ms 100
#      --peer-timeout-ms 500, the replica a loop device.  Three checkpoints
#      with writes between them (a copy of the disk at each); promote is
#      refused while the primary's session is alive; more writes never
#      checkpointed, then nbdkit and the primary killed -9 while the last
#      checkpoint is still in the journal (BLKSHIP_TEST_APPLY_DELAY_MS): the
#      failover hook runs `blkship promote`, which applies it and succeeds
#      with the last acknowledged checkpoint's epoch; the device then equals that copy
#      exactly, is released (an O_EXCL open succeeds), and a second promote
#      is refused.  Stopped, the secondary refuses to start again on that
#      state directory (exit status 2).
#   B. The documented procedure: nbdkit with the writelog filter on the
#      promoted device, a 2 MiB write through it, blkship-primary with
#      --initial-sync checksum towards a new blkship-secondary on the old
#      primary's disk (an empty state directory): the checksums find exactly
#      what differs (that write, and the 8 MiB the old primary wrote after
#      its last checkpoint), only that is sent, and the old disk then equals
#      the device.
#   C. An inconsistent replica: a new pairing's first full sync (written in
#      place, the log's reads slowed) cut by kill -9 of the primary:
#      promote is refused as NOT consistent; --force promotes it and says
#      FORCED.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires losetup
requires openssl
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "pr-$$"
truncate -s $size "$rep"
make_loop "$rep"
dev=$LOOP
CERTS=$WORKDIR/pki
make_certs "$CERTS"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)

hook=$WORKDIR/failover.sh
cat >"$hook" <<EOF
#!/bin/sh
"$BLKSHIP" promote --control "\$1" >"$WORKDIR/promote.out" 2>&1
echo \$? >"$WORKDIR/promote.rc"
EOF
chmod +x "$hook"

start_nbdkit "$WORKDIR" "rtpr$$" "$img"
# Each committed epoch waits 700 ms before it is applied (test only): the
# promotion finds committed epochs still in the journal, and must apply
# them first.
BLKSHIP_TEST_APPLY_DELAY_MS=700 start_secondary sec "$dev" "${fast[@]}" \
    --on-failover "$hook $WORKDIR/sec.ctl" --hook-timeout 30s
sec_ctl=$SEC_CTL sec_log=$SEC_LOG sec_pid=$SEC_PID
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint "${fast[@]}"
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"

# ---- A ------------------------------------------------------------------------------
for ((k = 1; k <= 3; k++)); do
    qemu-io -f raw "$NBD_URI" -c "write -q -P $((k + 1)) $((k << 20)) 1M" >/dev/null ||
        fail "qemu-io could not write"
    cp "$img" "$WORKDIR/ck.img"
    ck=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 30s 2>&1) || fail "A: checkpoint: $ck"
done
# The replica is consistent now: only the live session may stop a promote.
if out=$("$BLKSHIP" promote --control "$sec_ctl" 2>&1); then
    fail "A: promote succeeded while the primary's session is alive: $out"
fi
[[ $out == *"a primary session is alive"* ]] || fail "A: promote refused for another reason: $out"
note "A: refused while connected: $out"
qemu-io -f raw "$NBD_URI" -c "write -q -P 9 8M 8M" >/dev/null || fail "qemu-io could not write"
s=$(status "$sec_ctl")
[ "$(jget "$s" applied_epoch)" -lt "$ck" ] ||
    fail "A: checkpoint $ck is applied already; the test needs it still in the journal: $s"
pri_gen=$(field "$PRI_CTL" generation)
kill -KILL "$PRI_PID" "$NBDKIT_PID" || fail "kill -9 of the primary and nbdkit"
_promoted() { [ -s "$WORKDIR/promote.rc" ]; }
poll_until 30 _promoted || fail "A: the failover hook did not run promote: $(status "$sec_ctl")"
[ "$(cat "$WORKDIR/promote.rc")" = 0 ] || fail "A: promote in the hook failed: $(cat "$WORKDIR/promote.out")"
grep -q "^promoted: $dev holds committed epoch $ck (generation [0-9a-f]\{16\})$" "$WORKDIR/promote.out" ||
    fail "A: promote did not report epoch $ck: $(cat "$WORKDIR/promote.out")"
grep -q "^  1\. serve $dev through nbdkit" "$WORKDIR/promote.out" ||
    fail "A: promote gave no next steps: $(cat "$WORKDIR/promote.out")"
note "A: $(head -n 1 "$WORKDIR/promote.out")"
s=$(status "$sec_ctl")
[ "$(jget "$s" promoted)" = true ] || fail "A: the status does not say promoted: $s"
new_gen=$(jget "$s" generation)
[ "$new_gen" -gt 0 ] && [ "$new_gen" != "$pri_gen" ] ||
    fail "A: the promotion did not make a new generation (primary's $pri_gen): $s"
grep -q "^generation_history $pri_gen$" "$WORKDIR/sec.state/secondary.state" ||
    fail "A: the state file does not keep the previous generation $pri_gen: $(cat "$WORKDIR/sec.state/secondary.state")"
[ "$(printf '%016x' "$new_gen")" = "$(sed -n 's/^promoted: .*(generation \([0-9a-f]*\))$/\1/p' "$WORKDIR/promote.out")" ] ||
    fail "A: promote printed another generation than the status's $new_gen: $(cat "$WORKDIR/promote.out")"
expect_log "PROMOTED: $dev holds committed epoch $ck" "$sec_log"
expect_same "$WORKDIR/ck.img" "$dev" "A: the promoted device (checkpoint $ck)"
python3 -c "import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_EXCL))" "$dev" ||
    fail "A: the promoted device is still claimed"
if out=$("$BLKSHIP" promote --control "$sec_ctl" 2>&1); then
    fail "A: a second promote succeeded: $out"
fi
[[ $out == *"already promoted"* ]] || fail "A: the second promote: $out"
stop_pid "$sec_pid"
if out=$(timeout 10 "$SECONDARY" --listen "$SEC_ADDR" --device "$dev" --state-dir "$WORKDIR/sec.state" \
    --control "$WORKDIR/sec2.ctl" --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" \
    --ca "$CERTS/ca.crt" --peer-name primary 2>&1); then
    fail "A: a secondary started on a promoted state directory"
else
    rc=$?
fi
[ "$rc" = 2 ] || fail "A: a secondary on a promoted state directory exited $rc, not 2: $out"
[[ $out == *"this replica was promoted (at epoch $ck)"* ]] || fail "A: its message: $out"

# ---- B ------------------------------------------------------------------------------
start_nbdkit "$WORKDIR" "rtpb$$" "$dev"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x5a 40M 2M" >/dev/null || fail "B: qemu-io could not write"
start_secondary sec2 "$img"
start_primary pri2 "$WL_CTL" "$SEC_ADDR" --initial-sync checksum
wait_synced "$PRI_CTL" 60
expect_same "$dev" "$img" "B: the old primary's disk after the role swap"
s=$(status "$PRI_CTL")
expect_log 'paired with replica [0-9a-f]*: checksum sync' "$PRI_LOG"
expect_log 'checksum resync done \(a new pairing \(--initial-sync checksum\)\)' "$PRI_LOG"
# 4 KiB grains: the differences are exact.  Random data never hashes alike
# by chance, so 8 MiB + 2 MiB differ, and that is all that is sent.
[ "$(jget "$s" checksum_differing_bytes)" = $((10 << 20)) ] ||
    fail "B: the checksums found $(jget "$s" checksum_differing_bytes) bytes different, not the 10 MiB written on either side: $s"
[ "$(jget "$s" sent_bytes)" = $((10 << 20)) ] ||
    fail "B: $(jget "$s" sent_bytes) bytes sent for the 10 MiB that differ: $s"
note "B: the old primary's disk holds the promoted one; $(jget "$s" sent_bytes) bytes sent of a $size disk"


# ---- C ------------------------------------------------------------------------------
img3=$WORKDIR/disk3.img
rep3=$WORKDIR/replica3.img
random_file "$img3" $size "pr3-$$"
truncate -s $size "$rep3"
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtpc$$" "$img3" delay-read=300ms
start_secondary sec3 "$rep3"
start_primary pri3 "$WL_CTL" "$SEC_ADDR"
_some_sent() { [ "$(field "$PRI_CTL" sent_bytes)" -gt 0 ]; }
poll_until 30 _some_sent || fail "C: the full sync did not start: $(status "$PRI_CTL")"
kill9 "$PRI_PID"
_sec_alone() { [ "$(field "$SEC_CTL" connected)" = false ]; }
poll_until 20 _sec_alone || fail "C: the secondary still has a session: $(status "$SEC_CTL")"
if out=$("$BLKSHIP" promote --control "$SEC_CTL" 2>&1); then
    fail "C: an inconsistent replica was promoted without --force: $out"
fi
[[ $out == *"NOT consistent"*"--force"* ]] || fail "C: promote refused for another reason: $out"
note "C: refused: $out"
out=$("$BLKSHIP" promote --control "$SEC_CTL" --force 2>&1) || fail "C: promote --force failed: $out"
[[ $out == *"FORCED"* ]] || fail "C: promote --force does not say what it risked: $out"
[ "$(field "$SEC_CTL" promoted)" = true ] || fail "C: not promoted: $(status "$SEC_CTL")"
note "C: forced: $(head -n 2 <<<"$out" | tr '\n' ' ')"
