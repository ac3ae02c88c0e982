#!/usr/bin/env bash
# Link cut and restore.  blkship-secondary runs in its own network
# namespace, joined to the root namespace (where nbdkit and blkship-primary
# run) by a veth pair.  iptables in the namespace cuts the link by dropping
# the replication port both ways (INPUT --dport, OUTPUT --sport: a silent
# black hole, not a reset).
# A: both agents with --heartbeat-timeout 3.  After the initial sync, the
#    link is cut while fio writes through NBD.  Both sides must notice
#    within the heartbeat timeout plus a tick (and a margin), not before
#    the timeout less a heartbeat interval, and log it; the writes stay
#    dirty on the primary; after the restore the replica converges to the
#    image without a full resync, sending only what was dirty.
# B: the secondary restarted with --heartbeat-timeout 60, so that during a
#    cut only the primary gives up and the secondary holds a half-open
#    session.  After the restore the primary's new session must replace it
#    (logged), and the replica converges again.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires ip
requires_fio_nbd
require_build
requires iptables
make_workdir

ns=bsrt$$
veth_root=bsa$$ veth_ns=bsb$$
# A /30 of 10.231.0.0/16 picked by the process id: parallel runs differ.
net_c=$((($$ >> 6) % 256)) net_d=$((($$ % 64) * 4))
addr_root=10.231.$net_c.$((net_d + 1)) addr_ns=10.231.$net_c.$((net_d + 2))
ip netns add "$ns" || skip "cannot create a network namespace here"
cleanup_fn ip netns del "$ns"
ip link add "$veth_root" type veth peer name "$veth_ns" || fail "cannot create a veth pair"
cleanup_fn ip link del "$veth_root"
ip link set "$veth_ns" netns "$ns"
ip addr add "$addr_root/30" dev "$veth_root"
ip link set "$veth_root" up
ip netns exec "$ns" ip addr add "$addr_ns/30" dev "$veth_ns"
ip netns exec "$ns" ip link set "$veth_ns" up
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" iptables -S >/dev/null 2>&1 || skip "iptables does not work in a namespace here"

size=256M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "lc-$$"
truncate -s $size "$rep"
make_loop "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

start_nbdkit "$WORKDIR" "rtlc$$" "$img"
start_secondary --ns "$ns" --host "$addr_ns" sec "$LOOP" --heartbeat-timeout 3
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG port=$SEC_PORT
start_primary pri "$WL_CTL" "$SEC_ADDR" --heartbeat-timeout 3
pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after the initial sync"
note "in sync over the veth pair ($addr_root -> $addr_ns:$port)"


# ---- Cut and restore ------------------------------------------------------------

rules=()
_unrule() { ns_unrule "$ns" "${rules[@]}"; }
cleanup_fn _unrule

# cut_link: drops the replication port both ways inside the namespace, and
# remembers where the logs were.
cut_link() {
    local r
    rules=("INPUT -p tcp --dport $port -j DROP" "OUTPUT -p tcp --sport $port -j DROP")
    pri_lines=$(log_lines "$pri_log")
    sec_lines=$(log_lines "$sec_log")
    for r in "${rules[@]}"; do
        # shellcheck disable=SC2086
        ip netns exec "$ns" iptables -A $r || fail "iptables -A $r failed"
    done
    cut_ms=$(now_ms)
    note "link cut (iptables in $ns: ${rules[*]})"
}

# restore_link [RULE...]: replaces the rules with RULEs (none: the link is
# whole again) and waits (bounded) for the reconnection and for the replica
# to catch up with the image.
restore_link() {
    local restored_at r old=("${rules[@]}")
    # The new rules go in before the cut's come out: otherwise a packet of
    # the old connection retransmitted in between meets the primary's
    # kernel, which answers with a reset and ends the session B keeps
    # half-open.
    rules=("${old[@]}" "$@")
    for r in "$@"; do
        # shellcheck disable=SC2086
        ip netns exec "$ns" iptables -A $r || fail "iptables -A $r failed"
    done
    rules=("${old[@]}")
    _unrule
    rules=("$@")
    restored_at=$SECONDS
    note "link restored"
    _reconnected() { [ "$(field "$pri_ctl" connected)" = true ]; }
    poll_until 60 _reconnected ||
        fail "the primary did not reconnect within 60 s of the restore: $(status "$pri_ctl")"
    note "reconnected $((SECONDS - restored_at)) s after the restore"
    wait_synced "$pri_ctl" 60
    expect_same "$img" "$LOOP" "replica after the link came back"
}

_pri_noticed() { log_since "$pri_log" "$pri_lines" | grep -q 'replication link to .* down'; }
_sec_noticed() { log_since "$sec_log" "$sec_lines" | grep -q 'session with .* ended'; }

# write_during_cut MIB: random 4k writes through NBD, verified.
write_during_cut() {
    fio --thread --name=cut --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=4k --iodepth=8 \
        --size="$bytes" --io_size="${1}m" --verify=crc32c --verify_fatal=1 --verify_state_save=0 --randseed=$RANDOM \
        --output="$WORKDIR/fio.out" || fail "fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.out")"
}

# ---- A: both sides time out ----------------------------------------------------------

# Each side checks the silence once per tick (1 s: TICK_MS in primary.c,
# HEARTBEAT_MS in secondary.c) and ends the link once it has heard nothing
# for more than the 3 s timeout.  It last heard from the other no later
# than the cut, so it notices at most 3 s + one 1 s tick after the cut; a
# margin of 1 s covers the 50 ms polling and a loaded machine: 5 s.  Each
# side sends a heartbeat every second (the primary frames too, under fio),
# so each last heard from the other at most 1 s before the cut: noticing
# sooner than 3 s - 1 s after the cut (less 250 ms of timer slack) would
# mean a timeout shorter than configured.
hb_timeout_ms=3000 tick_ms=1000 margin_ms=1000
cut_link
write_during_cut 16 &
fio_pid=$!
pri_ms="" sec_ms=""
_both_noticed() {
    [ -n "$pri_ms" ] || ! _pri_noticed || pri_ms=$(($(now_ms) - cut_ms))
    [ -n "$sec_ms" ] || ! _sec_noticed || sec_ms=$(($(now_ms) - cut_ms))
    [ -n "$pri_ms" ] && [ -n "$sec_ms" ]
}
poll_until 20 _both_noticed ||
    fail "A: within 20 s of the cut the primary noticed after ${pri_ms:-never} ms, the secondary after ${sec_ms:-never} ms"
wait "$fio_pid" || fail "A: fio failed during the cut"
note "A: the primary logged the loss $pri_ms ms after the cut, the secondary $sec_ms ms after:"
log_since "$pri_log" "$pri_lines" | grep 'down' | head -n 1
log_since "$sec_log" "$sec_lines" | grep 'ended' | head -n 1
log_since "$pri_log" "$pri_lines" | grep -Eq 'down: secondary silent for [0-9]+ ms \(peer timeout 3000 ms\)' ||
    fail "A: the primary's link loss was not the heartbeat timeout: $(log_since "$pri_log" "$pri_lines" | grep down)"
log_since "$sec_log" "$sec_lines" | grep -Eq 'ended: primary silent for [0-9]+ ms \(peer timeout 3000 ms\)' ||
    fail "A: the secondary's link loss was not the heartbeat timeout: $(log_since "$sec_log" "$sec_lines" | grep ended)"
for side in primary:$pri_ms secondary:$sec_ms; do
    [ "${side#*:}" -le $((hb_timeout_ms + tick_ms + margin_ms)) ] ||
        fail "A: the $side noticed the loss ${side#*:} ms after the cut; at most $((hb_timeout_ms + tick_ms + margin_ms)) ms (timeout + tick + margin) are allowed"
    [ "${side#*:}" -ge $((hb_timeout_ms - tick_ms - 250)) ] ||
        fail "A: the $side noticed the loss ${side#*:} ms after the cut, sooner than the 3 s heartbeat timeout allows"
done
s=$(status "$pri_ctl")
[ "$(jget "$s" connected)" = false ] || fail "A: the primary shows the link up during the cut: $s"
# With the link down the log is sealed for the record every --epoch-ms:
# the writes reach the primary's bitmap within a few of them.
_dirty_now() { s=$(status "$pri_ctl") && [ "$(jget "$s" dirty_bytes)" -gt 0 ]; }
poll_until 5 _dirty_now || fail "A: the writes made during the cut are not dirty: $s"
[ "$(field "$sec_ctl" connected)" = false ] || fail "A: the secondary shows a session during the cut"
expect_alive "$pri_pid" blkship-primary
expect_alive "$sec_pid" blkship-secondary
sent_cut=$(jget "$s" sent_bytes)
dirty_cut=$(jget "$s" dirty_bytes)
note "A: during the cut: $s"
restore_link
s=$(status "$pri_ctl")
note "A: after the restore: $s"
resent=$(($(jget "$s" sent_bytes) - sent_cut))
[ "$resent" -le "$dirty_cut" ] ||
    fail "A: $resent bytes sent after the restore; $dirty_cut were dirty (no write happened since)"
[ "$(grep -c 'full sync' "$pri_log")" = 1 ] || fail "A: the link loss caused another full sync"
ss=$(status "$sec_ctl")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "A: the secondary counted bad frames: $ss"
[ "$(jget "$ss" connected)" = true ] || fail "A: the secondary shows no session after the restore: $ss"

# ---- B: only the primary times out; the secondary's session is half-open ------------------
# Once the link is back, the primary's kernel would answer the old
# connection's packets with a reset and end the secondary's session before
# the new one arrives.  To keep that session half-open, as after a lost NAT
# entry or a rebooted primary host, the restore goes on dropping the old
# connection's packets (matched by the primary's port) and only those.

stop_pid "$sec_pid"
start_secondary --ns "$ns" --host "$addr_ns" --port "$port" sec "$LOOP" --heartbeat-timeout 60
sec_pid=$SEC_PID sec_log=$SEC_LOG
wait_synced "$pri_ctl" 60
old_port=$(sed -n 's/.*secondary: primary .*:\([0-9]*\) connected.*/\1/p' "$sec_log" | tail -n 1)
[ -n "$old_port" ] || fail "B: no session in the secondary's log"
cut_link
write_during_cut 4
poll_until 20 _pri_noticed || fail "B: the primary did not log the link loss within 20 s of the cut"
log_since "$pri_log" "$pri_lines" | grep 'down' | head -n 1
! _sec_noticed || fail "B: the secondary (heartbeat timeout 60 s) ended its session already"
[ "$(field "$sec_ctl" connected)" = true ] || fail "B: the secondary should still hold the half-open session"
restore_link "INPUT -p tcp --sport $old_port -j DROP" "OUTPUT -p tcp --dport $old_port -j DROP"
expect_log 'a new session from the primary replaces the old one' "$sec_log" 10
log_since "$sec_log" "$sec_lines" | grep -E 'replaces|ended' | head -n 2
ss=$(status "$sec_ctl")
[ "$(jget "$ss" bad_frames)" = 0 ] || fail "B: the secondary counted bad frames: $ss"
[ "$(jget "$ss" connected)" = true ] || fail "B: the secondary shows no session after the restore: $ss"
[ "$(grep -c 'full sync' "$pri_log")" = 1 ] || fail "B: the link loss caused another full sync"
expect_alive "$pri_pid" blkship-primary
expect_alive "$sec_pid" blkship-secondary
