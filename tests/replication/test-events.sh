#!/usr/bin/env bash
# blkship events: the agents' event streams, followed from the start of a
# pairing to the primary's stop.
#  - the primary's stream, in order and without gaps: log-connected,
#    connected, resync-started (full: a new pairing), resync-done; the
#    secondary killed: disconnected, with the reason; back: connected;
#    SIGTERM: stopping, and the follower ends with status 0;
#  - the secondary's: connected, consistent;
#  - a follower that starts late with --since 0 gets the backlog from
#    event 1; one without --since gets only what happens after it asked;
#  - a follower whose agent dies (kill -9) ends with status 1.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires python3
require_build
make_workdir

pair_setup 64M "ev-$$"

timing=(--heartbeat-ms 500 --peer-timeout-ms 2000)
start_nbdkit "$WORKDIR" "rtev$$" "$img"
start_secondary sec "$LOOP" "${timing[@]}"
sec_pid=$SEC_PID sec_ctl=$SEC_CTL port=$SEC_PORT
"$BLKSHIP" events --control "$sec_ctl" --since 0 --json >"$WORKDIR/sec.events" 2>"$WORKDIR/sec.events.err" &
sec_follow=$!
cleanup_fn stop_pid "$sec_follow" 5
start_primary pri "$WL_CTL" "$SEC_ADDR" "${timing[@]}"
pri_pid=$PRI_PID pri_ctl=$PRI_CTL
"$BLKSHIP" events --control "$pri_ctl" --since 0 --json >"$WORKDIR/pri.events" 2>"$WORKDIR/pri.events.err" &
pri_follow=$!
cleanup_fn stop_pid "$pri_follow" 5
wait_synced "$pri_ctl" 60

# events FILE: the event names in the file, one per line.
events() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    print(json.loads(l)["event"])' "$1"; }
has_event() { events "$1" | grep -qx "$2"; }
_resync_done() { has_event "$WORKDIR/pri.events" resync-done; }
poll_until 10 _resync_done || fail "no resync-done event: $(cat "$WORKDIR/pri.events" "$WORKDIR/pri.events.err")"
_sec_consistent() { has_event "$WORKDIR/sec.events" consistent; }
poll_until 10 _sec_consistent || fail "the secondary sent no consistent event: $(cat "$WORKDIR/sec.events")"

# A late follower gets the backlog; a new one only what comes next.
"$BLKSHIP" events --control "$pri_ctl" --since 0 --count 2 --json >"$WORKDIR/late.events" ||
    fail "a late follower failed"
[ "$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["seq"])' "$WORKDIR/late.events")" = 1 ] ||
    fail "--since 0 did not start at event 1: $(cat "$WORKDIR/late.events")"
# A number from an earlier run of the agent (beyond its newest event):
# everything it keeps, from event 1.
"$BLKSHIP" events --control "$pri_ctl" --since 100000 --count 1 --json >"$WORKDIR/stale.events" ||
    fail "a follower from an earlier run failed"
[ "$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["seq"])' "$WORKDIR/stale.events")" = 1 ] ||
    fail "--since beyond the newest event did not start at event 1: $(cat "$WORKDIR/stale.events")"
"$BLKSHIP" events --control "$pri_ctl" --count 1 --json >"$WORKDIR/new.events" 2>&1 &
new_follow=$!
cleanup_fn stop_pid "$new_follow" 5
sleep 1 # its request is in before the next event (nothing else happens meanwhile)

kill -KILL "$sec_pid"
_disc() { has_event "$WORKDIR/pri.events" disconnected; }
poll_until 10 _disc || fail "no disconnected event on the primary: $(cat "$WORKDIR/pri.events")"
poll_until 10 proc_gone "$new_follow" || fail "the new follower did not see the disconnect"
wait "$new_follow" || fail "the new follower failed: $(cat "$WORKDIR/new.events")"
[ "$(events "$WORKDIR/new.events")" = disconnected ] ||
    fail "a follower without --since saw old events: $(cat "$WORKDIR/new.events")"
poll_until 10 proc_gone "$sec_follow" || fail "the secondary's follower outlived its agent"
rc=0
wait "$sec_follow" || rc=$?
[ "$rc" = 1 ] || fail "the follower of a killed agent ended with status $rc, not 1"

start_secondary --port "$port" sec "$LOOP" "${timing[@]}"
_again() { [ "$(events "$WORKDIR/pri.events" | grep -cx connected)" -ge 2 ]; }
poll_until 30 _again || fail "no second connected event: $(cat "$WORKDIR/pri.events")"
wait_synced "$pri_ctl" 60
[ "$(field "$pri_ctl" reconnects)" = 1 ] || fail "one reconnect, but the status counts $(field "$pri_ctl" reconnects)"
kill -TERM "$pri_pid"
poll_until 15 proc_gone "$pri_follow" || fail "the primary's follower did not end with the primary"
wait "$pri_follow" || fail "the primary's follower ended with status $?: $(cat "$WORKDIR/pri.events.err")"

note "primary's events: $(events "$WORKDIR/pri.events" | paste -sd' ')"
python3 - "$WORKDIR/pri.events" "$SEC_ADDR" <<'PY' || fail "the primary's events are wrong: $(cat "$WORKDIR/pri.events")"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
names = [e["event"] for e in evs]
seqs = [e["seq"] for e in evs]
assert seqs == list(range(1, len(evs) + 1)), "gaps or disorder: %r" % seqs
assert all(e["missed"] == 0 and e["role"] == "primary" for e in evs), evs
want = ["log-connected", "connected", "resync-started", "resync-done", "disconnected",
        "connected", "stopping"]
it = iter(names)
assert all(w in it for w in want), "%r does not hold %r in order" % (names, want)
start = next(e for e in evs if e["event"] == "resync-started")
assert start["reason"].startswith("full: a new pairing"), start
disc = next(e for e in evs if e["event"] == "disconnected")
assert disc["reason"] and disc["peer"] == sys.argv[2], disc
assert names[-1] == "stopping", names
PY
[ "$(events "$WORKDIR/sec.events" | head -n 2 | paste -sd' ')" = "connected consistent" ] ||
    fail "the secondary's first events: $(events "$WORKDIR/sec.events" | paste -sd' ')"

out=$("$BLKSHIP" events --control "$pri_ctl" --since x 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] || fail "--since x: status $rc: $out"
