#!/usr/bin/env bash
# Epoch numbers are reserved in primary.state ahead of their use
# (epoch_reserve_ahead in primary/epoch.c), so that a number sent by a run
# that died is never used again by the next one:
#  - in sync, with epochs going, every epoch number the status shows is
#    below the state file's epoch_reserved;
#  - killed (-9) and restarted while the secondary is down, the primary
#    reserves its next numbers at start, before any link comes up (the
#    write overlaps the connection and the TLS handshake instead of
#    delaying a catch-up's first epoch): epoch_reserved moves past the old
#    reservation with no secondary to talk to;
#  - with the secondary back, the first epoch the new run commits is past
#    the old reservation, and the replica is the image.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
require_build
make_workdir

pair_setup 64M "er-$$"
start_nbdkit "$WORKDIR" "rter$$" "$img"
start_secondary sec "$LOOP"
sec_port=$SEC_PORT sec_addr=$SEC_ADDR sec_pid=$SEC_PID
start_primary pri "$WL_CTL" "$sec_addr" --interval 50
wait_synced "$PRI_CTL" 60
state=$WORKDIR/pri.state/primary.state
reserved() { awk '$1 == "epoch_reserved" { print $2 }' "$state"; }

e0=$(jget "$(status "$PRI_CTL")" committed_epoch)
_epochs() { [ "$(jget "$(status "$PRI_CTL")" committed_epoch)" -ge $((e0 + 5)) ]; }
poll_until 20 _epochs || fail "fewer than 5 epochs committed in 20 s: $(status "$PRI_CTL")"
e1=$(jget "$(status "$PRI_CTL")" epoch)
r1=$(reserved)
[ -n "$r1" ] && [ "$e1" -lt "$r1" ] || fail "epoch $e1 is in use, but primary.state reserves below ${r1:-nothing}"
note "epoch $e1 in use, numbers below $r1 reserved"

# The secondary stopped first: the restarted primary finds no peer.
stop_pid "$sec_pid"
kill9 "$PRI_PID"
r2=$(reserved)
[ "$r2" -ge "$r1" ] || fail "the reservation went back from $r1 to $r2"
start_primary pri "$WL_CTL" "$sec_addr" --interval 50
_reserved_anew() { [ "$(reserved)" -gt "$r2" ]; }
poll_until 10 _reserved_anew ||
    fail "restarted with no secondary, the primary did not reserve past $r2 (primary.state: $(reserved))"
r3=$(reserved)
[ "$(jget "$(status "$PRI_CTL")" connected)" = false ] ||
    fail "the primary is connected with its secondary stopped"
note "restarted with no secondary: numbers below $r3 reserved (were below $r2)"

start_secondary --port "$sec_port" sec "$LOOP"
wait_synced "$PRI_CTL" 60
c=$(jget "$(status "$PRI_CTL")" committed_epoch)
[ "$c" -ge "$r2" ] || fail "the new run committed epoch $c, a number the old run's reservation ($r2) covered"
expect_same "$img" "$LOOP" "replica after the restart"
note "the new run committed epoch $c (the old reservation ended at $r2)"
