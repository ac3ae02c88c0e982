#!/usr/bin/env bash
# Failure detection and the failover hook, with both agents at the fastest
# supported settings (--heartbeat-ms 100 --peer-timeout-ms 500) and the
# secondary running --on-failover (a script that records its environment
# and start time, writes to stdout and stderr, and then succeeds, fails or
# hangs as told) with --hook-timeout 2s.
#   A. Checkpoint mode: three checkpoints with writes between them (a copy
#      of the disk at each); then 32 MiB more and a checkpoint, and nbdkit
#      and the primary killed -9 while that epoch is shipped (the log's
#      reads are slowed by nbdkit's delay filter, 300 ms a read).  The hook runs
#      once, within the peer timeout of the kill, with BLKSHIP_EVENT
#      failover, the role, the resource, the primary's address, the last
#      acknowledged checkpoint's epoch and the reason; its output is in the
#      secondary's log; the uncommitted epoch is discarded and the replica
#      is exactly the last acknowledged checkpoint's copy.
#   B. The primary stopped (SIGSTOP: a host that hangs, the socket open):
#      the hook runs after the peer timeout, not before, with the silence
#      as its reason; it hangs, and is killed at the hook timeout while
#      replication resumes once the primary goes on (SIGCONT).
#   C. The primary stopped with SIGTERM (a TLS close): no hook.  Then
#      killed -9 with the hook told to fail: its exit status is logged and
#      counted.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "fo-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"

hook=$WORKDIR/hook.sh
cat >"$hook" <<EOF
#!/bin/sh
t=\$(date +%s%N)
n=\$(ls "$WORKDIR"/hook.*.env 2>/dev/null | wc -l)
{ env | grep '^BLKSHIP_'; echo "T=\$t"; } >"$WORKDIR/hook.tmp"
mv "$WORKDIR/hook.tmp" "$WORKDIR/hook.\$n.env"
echo "hello from the failover hook"
echo "a line on stderr" >&2
case \$(cat "$WORKDIR/hook.mode") in
fail) exit 3 ;;
hang) exec sleep 60.$$ ;;
esac
exit 0
EOF
chmod +x "$hook"
echo ok >"$WORKDIR/hook.mode"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)

# The log's reads are slowed (nbdkit's delay filter under writelog) so that
# an epoch is seen shipping for most of a second.
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtfo$$" "$img" delay-read=300ms
start_secondary sec "$rep" "${fast[@]}" --on-failover "$hook" --hook-timeout 2s --resource vm-test
port=$SEC_PORT
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint "${fast[@]}"
_connected() { [ "$(field "$PRI_CTL" connected)" = true ]; }
poll_until 20 _connected || fail "the primary did not connect: $(status "$PRI_CTL")"

# hooks_run N: waits until N hook runs have recorded their environment.
hooks_run() {
    _n_env() { [ -f "$WORKDIR/hook.$(($1 - 1)).env" ]; }
    poll_until 10 _n_env "$1" || fail "hook run $1 did not happen: $(status "$SEC_CTL")"
}
# henv K VAR: VAR from run K's environment.
henv() { sed -n "s/^$2=//p" "$WORKDIR/hook.$1.env"; }
now_ns() { date +%s%N; }
checkpoint() {
    CK=$("$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 30s 2>&1) || fail "checkpoint failed: $CK"
}
applied() {
    _applied_is() {
        local s
        s=$(status "$SEC_CTL") || return 1
        [ "$(jget "$s" applied_epoch)" = "$1" ] && [ "$(jget "$s" replica_consistent)" = true ]
    }
    poll_until 20 _applied_is "$1" || fail "the secondary did not apply epoch $1: $(status "$SEC_CTL")"
}

# ---- A ------------------------------------------------------------------------------
for ((k = 1; k <= 3; k++)); do
    qemu-io -f raw "$NBD_URI" -c "write -q -P $((k + 1)) $((k << 20)) 1M" >/dev/null ||
        fail "qemu-io could not write"
    cp "$img" "$WORKDIR/ck.img"
    checkpoint
done
last=$CK
applied "$last"
qemu-io -f raw "$NBD_URI" -c "write -q -P 9 16M 32M" >/dev/null || fail "qemu-io could not write"
"$BLKSHIP" checkpoint --control "$PRI_CTL" --timeout 30s >"$WORKDIR/ck4.out" 2>&1 &
ck=$!
cleanup_fn stop_pid "$ck"
_journalling() {
    local s
    s=$(status "$SEC_CTL") || return 1
    [ "$(jget "$s" journal_bytes)" -gt 0 ] && [ "$(jget "$s" committed_epoch)" = "$last" ]
}
poll_until 20 _journalling ||
    fail "A: the secondary was not seen journalling the last epoch: $(status "$SEC_CTL")"
pri_gen=$(field "$PRI_CTL" generation)
t0=$(now_ns)
kill -KILL "$PRI_PID" "$NBDKIT_PID" || fail "kill -9 of the primary and nbdkit"
wait "$ck" 2>/dev/null || true
hooks_run 1
dt=$((($(henv 0 T) - t0) / 1000000))
note "A: kill -9 to the hook's start: $dt ms"
[ "$dt" -lt 500 ] || fail "A: the failover hook started $dt ms after the kill (peer timeout 500 ms)"
[ "$(henv 0 BLKSHIP_EVENT)" = failover ] || fail "A: BLKSHIP_EVENT: $(cat "$WORKDIR/hook.0.env")"
[ "$(henv 0 BLKSHIP_ROLE)" = secondary ] || fail "A: BLKSHIP_ROLE: $(cat "$WORKDIR/hook.0.env")"
[ "$(henv 0 BLKSHIP_RESOURCE)" = vm-test ] || fail "A: BLKSHIP_RESOURCE: $(cat "$WORKDIR/hook.0.env")"
[ "$(henv 0 BLKSHIP_EPOCH)" = "$last" ] ||
    fail "A: BLKSHIP_EPOCH is not the last acknowledged checkpoint $last: $(cat "$WORKDIR/hook.0.env")"
[ "$pri_gen" -gt 1 ] || fail "A: the primary's generation is $pri_gen, not a random one"
[ "$(henv 0 BLKSHIP_GENERATION)" = "$pri_gen" ] && [ "$(field "$SEC_CTL" generation)" = "$pri_gen" ] ||
    fail "A: BLKSHIP_GENERATION is not the primary's generation $pri_gen: $(cat "$WORKDIR/hook.0.env")"
[[ $(henv 0 BLKSHIP_PEER) =~ ^127\.[0-9.]+:[0-9]+$ ]] || fail "A: BLKSHIP_PEER: $(cat "$WORKDIR/hook.0.env")"
[[ $(henv 0 BLKSHIP_REASON) == *"connection lost"* ]] || fail "A: BLKSHIP_REASON: $(cat "$WORKDIR/hook.0.env")"
_hook_done() { [ "$(field "$SEC_CTL" succeeded)" = 1 ]; }
poll_until 10 _hook_done || fail "A: the hook's success is not counted: $(status "$SEC_CTL")"
_journal_empty() { [ "$(field "$SEC_CTL" journal_bytes)" = 0 ]; }
poll_until 10 _journal_empty ||
    fail "A: the journal still holds the uncommitted epoch after the loss: $(status "$SEC_CTL")"
expect_log "hook: failover\[[0-9]+\] stdout: hello from the failover hook" "$SEC_LOG"
expect_log "hook: failover\[[0-9]+\] stderr: a line on stderr" "$SEC_LOG"
expect_log "PRIMARY LOST: .*the replica stays at committed epoch $last" "$SEC_LOG"
expect_log "the uncommitted epoch after $last is discarded" "$SEC_LOG"
s=$(status "$SEC_CTL")
[ "$(jget "$s" primaries_lost)" = 1 ] && [ "$(jget "$s" connected)" = false ] ||
    fail "A: the secondary's status after the loss: $s"
applied "$last"
expect_same "$WORKDIR/ck.img" "$rep" "A: the replica after the failover (checkpoint $last)"

# ---- B ------------------------------------------------------------------------------
echo hang >"$WORKDIR/hook.mode"
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtfo$$" "$img" delay-read=300ms
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint "${fast[@]}"
poll_until 20 _connected || fail "B: the primary did not connect: $(status "$PRI_CTL")"
checkpoint
applied "$CK"
cp "$img" "$WORKDIR/ck.img"
t0=$(now_ns)
kill -STOP "$PRI_PID"
cleanup_fn kill -CONT "$PRI_PID"
hooks_run 2
dt=$((($(henv 1 T) - t0) / 1000000))
note "B: SIGSTOP to the hook's start: $dt ms"
[ "$dt" -ge 400 ] || fail "B: the hook ran $dt ms after the primary went silent: before the peer timeout (500 ms)"
[ "$dt" -lt 1500 ] || fail "B: the hook ran $dt ms after the primary went silent (peer timeout 500 ms)"
[[ $(henv 1 BLKSHIP_REASON) =~ ^primary\ silent\ for\ [0-9]+\ ms\ \(peer\ timeout\ 500\ ms\)$ ]] ||
    fail "B: BLKSHIP_REASON: $(cat "$WORKDIR/hook.1.env")"
[ "$(henv 1 BLKSHIP_EPOCH)" = "$CK" ] || fail "B: BLKSHIP_EPOCH: $(cat "$WORKDIR/hook.1.env")"
kill -CONT "$PRI_PID"
poll_until 20 _connected || fail "B: the primary did not reconnect while the hook hangs: $(status "$PRI_CTL")"
checkpoint
applied "$CK"
_hook_killed() { [ "$(field "$SEC_CTL" timed_out)" = 1 ]; }
poll_until 10 _hook_killed || fail "B: the hanging hook was not killed: $(status "$SEC_CTL")"
expect_log "failover hook \(pid [0-9]+\) still ran after the hook timeout \(2000 ms\): killed" "$SEC_LOG"
_sleep_gone() { ! pgrep -f "sleep 60\.$$" >/dev/null; }
poll_until 5 _sleep_gone || fail "B: the hook's process group outlived its timeout: $(pgrep -af "sleep 60\.$$")"
expect_same "$img" "$rep" "B: the replica after the primary came back"

# ---- C ------------------------------------------------------------------------------
echo fail >"$WORKDIR/hook.mode"
stop_pid "$PRI_PID"
sleep 1
[ ! -f "$WORKDIR/hook.2.env" ] || fail "C: a primary stopped with SIGTERM ran the failover hook"
expect_log "session with .* ended: closed by the primary" "$SEC_LOG"
start_primary pri "$WL_CTL" "$SEC_ADDR" --mode checkpoint "${fast[@]}"
poll_until 20 _connected || fail "C: the primary did not connect: $(status "$PRI_CTL")"
kill9 "$PRI_PID"
hooks_run 3
_hook_failed() { [ "$(field "$SEC_CTL" failed)" = 1 ]; }
poll_until 10 _hook_failed || fail "C: the failing hook is not counted: $(status "$SEC_CTL")"
expect_log "failover hook \(pid [0-9]+\) failed with exit status 3" "$SEC_LOG"
s=$(status "$SEC_CTL")
[ "$(jget "$s" primaries_lost)" = 3 ] || fail "C: primaries_lost after three losses: $s"
note "hooks: $(field "$SEC_CTL" started) started, last result $(field "$SEC_CTL" last_result)"
human=$(bs_status --control "$SEC_CTL") || fail "blkship status failed"
grep -qx "heartbeat   every 100 ms, peer lost after 500 ms; primary lost 3 time(s)" <<<"$human" ||
    fail "the human status does not show the losses:"$'\n'"$human"
grep -qx "hooks       3 run, 1 failed, 1 timed out, 0 running; last: failover (exit status 3)" <<<"$human" ||
    fail "the human status does not show the hooks:"$'\n'"$human"
