#!/usr/bin/env bash
# Two hosts: blkship-primary in network namespace A, blkship-secondary in
# namespace B, joined by a veth pair and nothing else (nbdkit and fio talk
# to each other over a unix socket, as on the primary host).
#  1. --rate-limit 8M during the full sync: over 20 s, the data the
#     primary counts as sent and the bytes B's firewall counts arriving on
#     the replication port are each within 10% of 8 MiB/s.
#  2. Under fio's writes, the link is cut silently (iptables DROP both ways
#     in B): the primary notices within its peer timeout; restored, it
#     reconnects and the replica converges byte for byte.
#  3. The secondary's host resets the connection (REJECT with TCP reset):
#     the primary notices at once, not after the peer timeout, and its
#     reconnects are refused until the rule goes; then it converges.
#  4. The link is shaped to 16 Mbit/s (tc tbf in A) while fio writes: the
#     session lives on, slower; unshaped, it converges.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires ip
requires tc
requires iptables
requires_fio_nbd
require_build
make_workdir

nsa=bsha$$ nsb=bshb$$
veth_a=bsxa$$ veth_b=bsxb$$
# A /30 of 10.232.0.0/16 picked by the process id: parallel runs differ.
net_c=$((($$ >> 6) % 256)) net_d=$((($$ % 64) * 4))
addr_a=10.232.$net_c.$((net_d + 1)) addr_b=10.232.$net_c.$((net_d + 2))
for ns in "$nsa" "$nsb"; do
    ip netns add "$ns" || fail "cannot create network namespace $ns"
    cleanup_fn ip netns del "$ns"
done
ip link add "$veth_a" type veth peer name "$veth_b" || fail "cannot create a veth pair"
ip link set "$veth_a" netns "$nsa"
ip link set "$veth_b" netns "$nsb"
ip netns exec "$nsa" ip addr add "$addr_a/30" dev "$veth_a"
ip netns exec "$nsb" ip addr add "$addr_b/30" dev "$veth_b"
for ns in "$nsa" "$nsb"; do
    ip netns exec "$ns" ip link set lo up
done
ip netns exec "$nsa" ip link set "$veth_a" up
ip netns exec "$nsb" ip link set "$veth_b" up

pair_setup 256M "th-$$"

limit=$((8 << 20))
timing=(--heartbeat-ms 500 --peer-timeout-ms 3000)
start_nbdkit "$WORKDIR" "rtth$$" "$img"
start_secondary --ns "$nsb" --host "$addr_b" sec "$LOOP" "${timing[@]}"
sec_ctl=$SEC_CTL sec_log=$SEC_LOG port=$SEC_PORT
start_primary --ns "$nsa" pri "$WL_CTL" "$addr_b:$port" "${timing[@]}" --rate-limit 8M
pri_ctl=$PRI_CTL pri_log=$PRI_LOG
expect_log 'data sent at most 8388608 bytes per second' "$pri_log"

# B counts what arrives on the replication port (a rule that only counts).
ip netns exec "$nsb" iptables -I INPUT -p tcp --dport "$port" -m comment --comment "bs$$" ||
    fail "cannot add the counting rule"
wire_bytes() {
    ip netns exec "$nsb" iptables -nvxL INPUT | awk -v c="bs$$" '$0 ~ c { print $2; exit }'
}

# ---- 1. The rate limit, over 20 s of the full sync ---------------------------
_sending() { [ "$(field "$pri_ctl" sent_bytes)" -gt 0 ]; }
poll_until 20 _sending || fail "the full sync did not start: $(status "$pri_ctl")"
sleep 2
t0=$(now_ms) s0=$(field "$pri_ctl" sent_bytes) w0=$(wire_bytes)
sleep 20
t1=$(now_ms) s1=$(field "$pri_ctl" sent_bytes) w1=$(wire_bytes)
[ "$(field "$pri_ctl" dirty_bytes)" -gt 0 ] || fail "the full sync ended within the 20 s measured"
read -r app wire <<<"$(awk -v s="$((s1 - s0))" -v w="$((w1 - w0))" -v t="$((t1 - t0))" \
    'BEGIN { printf "%.0f %.0f", s * 1000 / t, w * 1000 / t }')"
note "rate limit 8 MiB/s ($limit B/s) over $((t1 - t0)) ms: data sent $app B/s ($(awk -v a="$app" -v l="$limit" 'BEGIN { printf "%.3f", a / l }')x), on the wire into B $wire B/s ($(awk -v a="$wire" -v l="$limit" 'BEGIN { printf "%.3f", a / l }')x)"
awk -v a="$app" -v l="$limit" 'BEGIN { exit !(a >= 0.9 * l && a <= 1.1 * l) }' ||
    fail "data sent at $app B/s, not within 10% of $limit"
awk -v a="$wire" -v l="$limit" 'BEGIN { exit !(a >= 0.9 * l && a <= 1.1 * l) }' ||
    fail "$wire B/s reached B, not within 10% of $limit"
[ "$(field "$pri_ctl" rate_limit_waits)" -gt 0 ] || fail "the bucket never made the pump wait"
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after the full sync"

# ---- Link faults under load ----------------------------------------------------
rules=()
_unrule() { ns_unrule "$nsb" "${rules[@]}"; }
cleanup_fn _unrule
add_rules() {
    local r
    rules=("$@")
    for r in "$@"; do
        # shellcheck disable=SC2086
        ip netns exec "$nsb" iptables -I $r || fail "iptables -I $r failed"
    done
}
fio_job=$WORKDIR/rw.fio
fio_verify_job "$fio_job" 8 24m 4m
start_fio() {
    fio --output="$WORKDIR/fio.$1.out" "$fio_job" &
    fio_pid=$!
    cleanup_fn stop_pid "$fio_pid" 5
}
end_fio() {
    wait "$fio_pid" || fail "fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio.$1.out")"
}
_down() { [ "$(field "$pri_ctl" connected)" = false ]; }
_up() { [ "$(field "$pri_ctl" connected)" = true ]; }
converge() {
    poll_until 60 _up || fail "$1: the primary did not reconnect: $(status "$pri_ctl")"
    wait_synced "$pri_ctl" 90
    expect_same "$img" "$LOOP" "replica after $1"
    note "$1: converged"
}

# ---- 2. A silent cut: DROP both ways --------------------------------------------
start_fio drop
sleep 1
add_rules "INPUT -p tcp --dport $port -j DROP" "OUTPUT -p tcp --sport $port -j DROP"
cut=$(now_ms)
poll_until 10 _down || fail "DROP: the primary did not notice within 10 s: $(status "$pri_ctl")"
took=$(($(now_ms) - cut))
note "DROP: the primary noticed after $took ms: $(field "$pri_ctl" last_disconnect)"
[ "$took" -ge 2000 ] || fail "DROP: noticed after $took ms, before the 3 s peer timeout less a heartbeat"
end_fio drop
_unrule
rules=()
converge "a silent cut"

# ---- 3. A reset: REJECT with TCP reset ------------------------------------------
start_fio reject
sleep 1
add_rules "INPUT -p tcp --dport $port -j REJECT --reject-with tcp-reset"
cut=$(now_ms)
poll_until 10 _down || fail "REJECT: the primary did not notice within 10 s: $(status "$pri_ctl")"
took=$(($(now_ms) - cut))
why=$(field "$pri_ctl" last_disconnect)
note "REJECT: the primary noticed after $took ms: $why"
[ "$took" -lt 2500 ] || fail "REJECT: a reset took $took ms to notice, as long as a silence"
[[ "$why" == *reset* ]] || fail "REJECT: not reported as a reset: $why"
sleep 3
log_has 'cannot connect to .*: Connection refused' "$pri_log" || fail "REJECT: no refused reconnect was logged"
end_fio reject
_unrule
rules=()
converge "a reset"

# ---- 4. A shaped link: tc tbf at 16 Mbit/s --------------------------------------
ip netns exec "$nsa" tc qdisc add dev "$veth_a" root tbf rate 16mbit burst 32kbit latency 400ms ||
    fail "tc tbf failed"
cleanup_fn ip netns exec "$nsa" tc qdisc del dev "$veth_a" root
w0=$(wire_bytes) t0=$(now_ms)
start_fio tbf
end_fio tbf
w1=$(wire_bytes) t1=$(now_ms)
shaped=$(( (w1 - w0) * 1000 / (t1 - t0) ))
note "shaped: $shaped B/s reached B during fio's writes (tbf 16 Mbit/s = 2,000,000 B/s)"
[ "$shaped" -le 2200000 ] || fail "$shaped B/s went through a 16 Mbit/s shaper"
_up || fail "the session did not live through the shaped link: $(status "$pri_ctl")"
ip netns exec "$nsa" tc qdisc del dev "$veth_a" root
converge "the shaped link"

[ "$(field "$sec_ctl" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $(status "$sec_ctl")"
