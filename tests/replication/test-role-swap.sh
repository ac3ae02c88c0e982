#!/usr/bin/env bash
# The role swap by bitmaps (docs/failover.md, "Demote"): the old primary
# comes back as the secondary on its own state directory, and only what
# differs is sent, without reading either disk whole.
#   1. A replicates to B (4 KiB grains); 1 MiB written and committed.
#   2. A's agent is stopped (SIGSTOP): B's peer timeout ends the session.
#      2 MiB written on A meanwhile (into A's write log), B promoted.
#   3. On B: nbdkit on the promoted device, blkship-primary on the promoted
#      replica's state directory (it takes up its line), 3 MiB written.
#   4. A's agent resumes: it drained its 2 MiB for the record, so it is in
#      split brain with the promoted B, which says so.
#   5. 1 MiB more written on A, then `blkship demote` on A: the log is
#      frozen (a write after it fails: EROFS, EPERM to the NBD client), drained, and the bitmap
#      (exactly the 3 MiB never committed on B) recorded; the agent stops,
#      and no primary starts on that state directory again.
#   6. blkship-secondary on A's disk with A's state directory: it takes up
#      the demoted disk, sends its 3 MiB of changes in the handshake, and
#      B's primary sends exactly 6 MiB (its 3 MiB and A's), with no
#      checksums; A's disk then equals B's, the replica is consistent, and
#      the changes file is gone.  A later write on B replicates as usual.
#   7. A secondary refuses a primary's state directory that was not
#      demoted, and a primary refuses a replica's that was not promoted.
#   8. And back, each directory taking its third and fourth role, with a
#      bitmap that is not complete: A's secondary stopped, B's nbdkit
#      killed -9 and restarted (a new log: writes may have gone unlogged),
#      1 MiB written on B; A promoted (listening where B's primary does not
#      reach it); `blkship demote` on B records "checksum"; blkship-primary
#      on A's directory (a demoted primary's, then a promoted replica's:
#      the promotion is newer) and blkship-secondary on B's (a promoted
#      replica's, then a demoted primary's: the demotion is newer, and a
#      primary is refused there) compare
#      checksums: exactly that 1 MiB differs and is sent, and B then
#      equals A.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=64M
a_img=$WORKDIR/a.img
b_img=$WORKDIR/b.img
random_file "$a_img" $size "rs-$$"
truncate -s $size "$b_img"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)

# ---- 1 ------------------------------------------------------------------------------
start_nbdkit "$WORKDIR" "rsa$$" "$a_img"
a_wl=$WL_CTL a_uri=$NBD_URI a_nbdkit=$NBDKIT_PID
start_secondary sec "$b_img" "${fast[@]}"
b_sec_ctl=$SEC_CTL b_sec_addr=$SEC_ADDR b_sec_pid=$SEC_PID b_sec_log=$SEC_LOG
# A seal for the record only every 2 s: the write just before the demote
# is still in the log when it freezes.
start_primary pri "$a_wl" "$b_sec_addr" "${fast[@]}" --epoch-ms 2000
a_ctl=$PRI_CTL a_pid=$PRI_PID a_log=$PRI_LOG
wait_synced "$a_ctl" 60
qemu-io -f raw "$a_uri" -c "write -q -P 0x11 1M 1M" >/dev/null || fail "1: qemu-io could not write"
wait_synced "$a_ctl" 30
expect_same "$a_img" "$b_img" "1: the replica"

# ---- 2 ------------------------------------------------------------------------------
kill -STOP "$a_pid"
cleanup_fn kill -CONT "$a_pid"
_b_alone() { [ "$(field "$b_sec_ctl" connected)" = false ]; }
poll_until 20 _b_alone || fail "2: B still has a session: $(status "$b_sec_ctl")"
qemu-io -f raw "$a_uri" -c "write -q -P 0x22 20M 2M" >/dev/null || fail "2: qemu-io could not write"
out=$("$BLKSHIP" promote --control "$b_sec_ctl" 2>&1) || fail "2: promote failed: $out"
note "2: $(head -n 1 <<<"$out")"

# ---- 3 ------------------------------------------------------------------------------
start_nbdkit "$WORKDIR" "rsb$$" "$b_img"
b_wl=$WL_CTL b_uri=$NBD_URI b_nbdkit=$NBDKIT_PID
a_port=$(random_port)
ln -s "$WORKDIR/sec.state" "$WORKDIR/bpri.state"
start_primary bpri "$b_wl" "$TEST_HOST:$a_port" "${fast[@]}"
b_ctl=$PRI_CTL b_log=$PRI_LOG b_pid=$PRI_PID
expect_log 'taking up the promoted replica in this state directory' "$b_log"
qemu-io -f raw "$b_uri" -c "write -q -P 0x33 40M 3M" >/dev/null || fail "3: qemu-io could not write"

# ---- 4 ------------------------------------------------------------------------------
kill -CONT "$a_pid"
_sb() { [ "$(field "$a_ctl" split_brain)" = true ]; }
poll_until 30 _sb || fail "4: A does not report the split brain: $(status "$a_ctl")"
expect_log 'SPLIT BRAIN with primary' "$b_sec_log"

# ---- 5 ------------------------------------------------------------------------------
qemu-io -f raw "$a_uri" -c "write -q -P 0x44 30M 1M" >/dev/null || fail "5: qemu-io could not write"
out=$("$BLKSHIP" demote --control "$a_ctl" 2>&1) || fail "5: demote failed: $out"
note "5: $(head -n 1 <<<"$out")"
[[ $out == "demoted: "*"bitmap, $((3 << 20)) bytes"* ]] ||
    fail "5: demote did not record the 3 MiB never committed on B as a bitmap: $out"
_a_gone() { ! proc_alive "$a_pid"; }
poll_until 10 _a_gone || fail "5: A's agent did not stop after the demote"
expect_log 'DEMOTED: this disk is to become the replica' "$a_log"
grep -q '^role demoted$' "$WORKDIR/pri.state/primary.state" ||
    fail "5: primary.state does not say demoted: $(cat "$WORKDIR/pri.state/primary.state")"
dd if="$a_img" of="$WORKDIR/at50.before" bs=64k skip=800 count=1 status=none
# nbdkit answers EROFS with NBD's EPERM: qemu-io says "not permitted".
if out=$(qemu-io -f raw "$a_uri" -c "write -P 0x55 50M 64k" 2>&1) &&
    [[ $out != *"Operation not permitted"* ]]; then
    fail "5: a write after the freeze succeeded: $out"
fi
[[ $out == *"Operation not permitted"* ]] || fail "5: a write after the freeze: $out"
expect_log 'writelog: the write log is frozen' "$WORKDIR/nbdkit-rsa$$.log"
dd if="$a_img" of="$WORKDIR/at50.after" bs=64k skip=800 count=1 status=none
cmp -s "$WORKDIR/at50.before" "$WORKDIR/at50.after" || fail "5: the refused write reached the disk"
if out=$(timeout 10 "$PRIMARY" --writelog "$a_wl" --connect "$b_sec_addr" \
    --state-dir "$WORKDIR/pri.state" --control "$WORKDIR/pri2.ctl" --cert "$CERTS/primary.crt" \
    --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" --peer-name secondary 2>&1); then
    fail "5: a primary started on a demoted state directory"
fi
[[ $out == *"this disk was demoted"* ]] || fail "5: the primary's refusal: $out"
stop_pid "$a_nbdkit"
stop_pid "$b_sec_pid" # its job (refusing A) is done

# ---- 6 ------------------------------------------------------------------------------
sent0=$(field "$b_ctl" sent_bytes)
[ "$sent0" = 0 ] || fail "6: B's primary sent $sent0 bytes before it had a secondary"
ln -s "$WORKDIR/pri.state" "$WORKDIR/asec.state"
start_secondary --port "$a_port" asec "$a_img" "${fast[@]}"
a_sec_ctl=$SEC_CTL a_sec_log=$SEC_LOG a_sec_pid=$SEC_PID
expect_log "taking up the demoted primary's disk" "$a_sec_log"
wait_synced "$b_ctl" 60
s=$(status "$b_ctl")
expect_log 'paired with replica [0-9a-f]*: bitmap sync' "$b_log"
expect_log "the replica's own changes: $((3 << 20)) bytes" "$b_log"
[ "$(jget "$s" sent_bytes)" = $((6 << 20)) ] ||
    fail "6: B's primary sent $(jget "$s" sent_bytes) bytes, not the 6 MiB that differ: $s"
[ "$(jget "$s" checksum_compared_bytes)" = 0 ] || fail "6: checksums were compared: $s"
expect_same "$b_img" "$a_img" "6: A's disk after the role swap"
_a_consistent() { [ "$(field "$a_sec_ctl" replica_consistent)" = true ] &&
                  [ "$(field "$a_sec_ctl" own_changes_pending)" = false ]; }
poll_until 20 _a_consistent || fail "6: A's replica is not consistent: $(status "$a_sec_ctl")"
[ ! -e "$WORKDIR/pri.state/demoted.changes" ] || fail "6: the changes file is still there"
! grep -q '^own_changes' "$WORKDIR/pri.state/secondary.state" ||
    fail "6: the state still owes the changes: $(cat "$WORKDIR/pri.state/secondary.state")"
note "6: $(jget "$s" sent_bytes) bytes sent of a $size disk"
qemu-io -f raw "$b_uri" -c "write -q -P 0x66 60M 1M" >/dev/null || fail "6: qemu-io could not write"
wait_synced "$b_ctl" 30
expect_same "$b_img" "$a_img" "6: after a write on the new primary"

# ---- 7 ------------------------------------------------------------------------------
mkdir -m 0700 "$WORKDIR/p7.state"
cp "$WORKDIR/bpri.state/primary.state" "$WORKDIR/p7.state/"
truncate -s $size "$WORKDIR/c.img"
if out=$(timeout 10 "$SECONDARY" --listen "$TEST_HOST:$(random_port)" --device "$WORKDIR/c.img" \
    --state-dir "$WORKDIR/p7.state" --control "$WORKDIR/s7.ctl" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>&1); then
    fail "7: a secondary started on a live primary's state directory"
fi
[[ $out == *"run 'blkship demote' on that primary"* ]] || fail "7: the secondary's refusal: $out"
mkdir -m 0700 "$WORKDIR/s7.state"
cp "$WORKDIR/asec.state/secondary.state" "$WORKDIR/s7.state/"
if out=$(timeout 10 "$PRIMARY" --writelog "$b_wl" --connect "$TEST_HOST:1" \
    --state-dir "$WORKDIR/s7.state" --control "$WORKDIR/p7.ctl" --cert "$CERTS/primary.crt" \
    --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" --peer-name secondary 2>&1); then
    fail "7: a primary started on a replica's state directory"
fi
[[ $out == *"holds a replica that was not promoted"* ]] || fail "7: the primary's refusal: $out"

# ---- 8 ------------------------------------------------------------------------------
stop_pid "$a_sec_pid"
kill9 "$b_nbdkit"
start_nbdkit "$WORKDIR" "rsb$$" "$b_img"
b_nbdkit=$NBDKIT_PID
expect_log 'the write log restarted' "$b_log" 30
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x77 10M 1M" >/dev/null || fail "8: qemu-io could not write"
start_secondary asec "$a_img" "${fast[@]}"
out=$("$BLKSHIP" promote --control "$SEC_CTL" 2>&1) || fail "8: promote of A failed: $out"
stop_pid "$SEC_PID"
out=$("$BLKSHIP" demote --control "$b_ctl" 2>&1) || fail "8: demote of B failed: $out"
[[ $out == "demoted: "*": checksum, "* ]] || fail "8: B's bitmap was not complete, yet: $out"
note "8: $(head -n 1 <<<"$out")"
poll_until 10 proc_gone "$b_pid" || fail "8: B's agent did not stop after the demote"
# B's directory holds its old promotion too; the demotion is newer.
if out=$(timeout 10 "$PRIMARY" --writelog "$b_wl" --connect "$TEST_HOST:1" \
    --state-dir "$WORKDIR/sec.state" --control "$WORKDIR/p8.ctl" --cert "$CERTS/primary.crt" \
    --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" --peer-name secondary 2>&1); then
    fail "8: a primary started on B's demoted directory (its promotion is older)"
fi
[[ $out == *"this disk was demoted"* ]] || fail "8: the primary's refusal on B: $out"
stop_pid "$b_nbdkit"
b_port=$(random_port)
start_nbdkit "$WORKDIR" "rsa$$" "$a_img"
ln -s "$WORKDIR/pri.state" "$WORKDIR/apri.state"
start_primary apri "$WL_CTL" "$TEST_HOST:$b_port" "${fast[@]}"
expect_log 'taking up the promoted replica in this state directory' "$PRI_LOG"
ln -s "$WORKDIR/sec.state" "$WORKDIR/bsec.state"
start_secondary --port "$b_port" bsec "$b_img" "${fast[@]}"
expect_log "taking up the demoted primary's disk .*: to be compared by checksums" "$SEC_LOG"
wait_synced "$PRI_CTL" 60
s=$(status "$PRI_CTL")
[ "$(jget "$s" checksum_differing_bytes)" = $((1 << 20)) ] && [ "$(jget "$s" sent_bytes)" = $((1 << 20)) ] ||
    fail "8: exactly the 1 MiB written on B after its log restarted should differ and be sent: $s"
expect_same "$a_img" "$b_img" "8: B's disk after the swap back"
note "8: $(jget "$s" sent_bytes) bytes sent after checksums"
