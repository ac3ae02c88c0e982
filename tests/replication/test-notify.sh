#!/usr/bin/env bash
# What the three services tell systemd (sd_notify), with the test playing
# systemd's side: each process gets its own $NOTIFY_SOCKET, a unix
# datagram socket that tests/notify-listen.py records.
#  - blkship-secondary: READY=1 once it listens with its replica open,
#    WATCHDOG=1 at half of $WATCHDOG_USEC, none without it;
#  - blkship-primary started before its write log exists: no READY=1 while
#    there is no log to hold, READY=1 once nbdkit serves it; STATUS= from
#    "waiting for the write log" through the full sync to "replicating",
#    "disconnected from ...: reason" when the secondary is killed, and
#    "replicating" again when it is back; STOPPING=1 on SIGTERM;
#  - nbdkit with the writelog filter: READY=1 only when its NBD socket and
#    the log's control socket both accept connections.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires python3
require_build
make_workdir

LISTEN=$(dirname "$0")/../notify-listen.py

# listen_notify NAME: a notify socket $WORKDIR/NAME.notify recorded in
# $WORKDIR/NAME.msgs; sets NOTIFY_PATH and MSGS.
listen_notify() {
    NOTIFY_PATH=$WORKDIR/$1.notify
    MSGS=$WORKDIR/$1.msgs
    : >"$MSGS"
    python3 "$LISTEN" "$NOTIFY_PATH" "$MSGS" 200 &
    cleanup_fn stop_pid $! 5
    _bound() { [ -S "$NOTIFY_PATH" ]; }
    poll_until 10 _bound || fail "the notify listener did not bind $NOTIFY_PATH"
}
# has MSGS REGEX: a notification matching REGEX was received.
has() { grep -Eq -- "$2" "$1"; }
# count MSGS REGEX
count() { grep -Ec -- "$2" "$1" || true; }
# last_status MSGS: the newest STATUS= text.
last_status() { grep -o 'STATUS=[^|]*' "$1" | tail -n 1 | cut -d= -f2-; }
# status_seen MSGS REGEX: some STATUS= so far matched REGEX.
status_seen() { grep -o 'STATUS=[^|]*' "$1" | cut -d= -f2- | grep -Eq -- "$2"; }

pair_setup 64M "notify-$$"

# ---- The secondary: READY once listening; the watchdog ----------------------
listen_notify sec
sec_msgs=$MSGS
NOTIFY_SOCKET=$NOTIFY_PATH WATCHDOG_USEC=400000 start_secondary sec "$LOOP"
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG sec_addr=$SEC_ADDR
_sec_ready() { has "$sec_msgs" 'READY=1'; }
poll_until 10 _sec_ready || fail "the secondary sent no READY=1: $(cat "$sec_msgs")"
[ "$(count "$sec_msgs" 'READY=1')" = 1 ] || fail "READY=1 sent more than once: $(cat "$sec_msgs")"
has "$sec_msgs" "READY=1\|STATUS=listening on $sec_addr: no primary yet" ||
    fail "the secondary's first status does not say it listens: $(cat "$sec_msgs")"
# Ready means serving: the listening socket takes a connection.
timeout 5 bash -c ">/dev/tcp/${sec_addr%:*}/${sec_addr##*:}" ||
    fail "READY=1 sent, but nothing accepts on $sec_addr"
sleep 2
n=$(count "$sec_msgs" '^[0-9]+	WATCHDOG=1$')
# Fed every 200 ms: about 10 in 2 s, from the loop (a stopped loop feeds nothing).
[ "$n" -ge 6 ] || fail "the secondary fed the watchdog $n times in 2 s (WATCHDOG_USEC=400000): $(cat "$sec_msgs")"
kill -STOP "$sec_pid"
before=$(count "$sec_msgs" 'WATCHDOG=1')
sleep 1
after=$(count "$sec_msgs" 'WATCHDOG=1')
kill -CONT "$sec_pid"
[ "$after" = "$before" ] || fail "WATCHDOG=1 arrived while the secondary was stopped"
_fed_again() { [ "$(count "$sec_msgs" 'WATCHDOG=1')" -gt "$after" ]; }
poll_until 5 _fed_again || fail "the secondary did not feed the watchdog after SIGCONT"

# ---- The primary before its write log exists: not ready --------------------
listen_notify pri
pri_msgs=$MSGS
wl_ctl=$WORKDIR/log_rtn$$.ctl
NOTIFY_SOCKET=$NOTIFY_PATH start_primary pri "$wl_ctl" "$sec_addr" --peer-timeout-ms 2000 \
    --heartbeat-ms 500
pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
sleep 2
! has "$pri_msgs" 'READY=1' || fail "the primary said READY=1 with no write log: $(cat "$pri_msgs")"
! has "$pri_msgs" 'WATCHDOG=1' || fail "WATCHDOG=1 sent without WATCHDOG_USEC: $(cat "$pri_msgs")"
[ "$(field "$pri_ctl" log_connected)" = false ] || fail "the primary holds a log that does not exist"

# ---- nbdkit: READY when both of its sockets accept --------------------------
listen_notify nbdkit
nbd_msgs=$MSGS
# Reads slowed (the delay filter under ours), so that the full sync lasts
# several of the primary's 1 s status ticks.
NOTIFY_SOCKET=$NOTIFY_PATH NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtn$$" "$img" rdelay=300ms
nbd_pid=$NBDKIT_PID
[ "$WL_CTL" = "$wl_ctl" ] || fail "the log's socket is $WL_CTL, not $wl_ctl"
_nbd_ready() { has "$nbd_msgs" 'READY=1'; }
poll_until 10 _nbd_ready || fail "nbdkit with the filter sent no READY=1: $(cat "$nbd_msgs")"
has "$nbd_msgs" "READY=1\|STATUS=serving; write log rtn$$ in $WORKDIR" ||
    fail "the filter's status does not name its log: $(cat "$nbd_msgs")"
python3 -c 'import socket,sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(p); s.close()' \
    "$NBD_SOCK" || fail "nbdkit said READY=1 but its NBD socket refuses connections"

# ---- The primary becomes ready, syncs, replicates ---------------------------
_pri_ready() { has "$pri_msgs" 'READY=1'; }
poll_until 20 _pri_ready || fail "the primary sent no READY=1 after the log appeared: $(cat "$pri_msgs")"
[ "$(field "$pri_ctl" log_connected)" = true ] || fail "READY=1, but the primary holds no write log"
_replicating() { [[ "$(last_status "$pri_msgs")" == "replicating to $sec_addr: committed epoch "* ]]; }
poll_until 60 _replicating || fail "the primary's status never said replicating: $(cat "$pri_msgs")"
status_seen "$pri_msgs" "^syncing to $sec_addr: [0-9.]+% \(full sync: " ||
    fail "the full sync was not shown in the status: $(cat "$pri_msgs")"
_sec_replicating() { [[ "$(last_status "$sec_msgs")" == "replicating from "* ]]; }
poll_until 10 _sec_replicating || fail "the secondary's status never said replicating: $(cat "$sec_msgs")"
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after the sync"

# ---- The secondary lost: the primary says so, and why -----------------------
kill -KILL "$sec_pid"
poll_until 10 proc_gone "$sec_pid" || fail "the secondary did not die"
_disconnected() { [[ "$(last_status "$pri_msgs")" == "disconnected from $sec_addr: "* ]]; }
poll_until 15 _disconnected || fail "the primary's status did not say disconnected: $(last_status "$pri_msgs")"
note "primary's status with the secondary gone: $(last_status "$pri_msgs")"
[ -n "$(field "$pri_ctl" last_disconnect)" ] || fail "the status JSON has no last_disconnect"
NOTIFY_SOCKET= start_secondary --port "${sec_addr##*:}" sec "$LOOP"
sec_pid=$SEC_PID
poll_until 30 _replicating || fail "the primary's status did not return to replicating: $(last_status "$pri_msgs")"

# ---- Stopping -----------------------------------------------------------------
kill -TERM "$pri_pid"
poll_until 15 proc_gone "$pri_pid" || fail "blkship-primary still running 15 s after SIGTERM"
has "$pri_msgs" 'STOPPING=1' || fail "the primary sent no STOPPING=1: $(tail -n 3 "$pri_msgs")"
kill -TERM "$nbd_pid"
# The notification is the point here: nbdkit's own exit can hang under a
# sanitizer's preloaded runtime (tests/harness.sh), and stop_pid ends it.
_nbd_stopping() { has "$nbd_msgs" 'STOPPING=1'; }
poll_until 15 _nbd_stopping || fail "the filter sent no STOPPING=1: $(cat "$nbd_msgs")"
note "secondary: $(grep -c . "$sec_msgs") notifications; primary: $(grep -c . "$pri_msgs"); nbdkit: $(cat "$nbd_msgs" | tr '\n' ' ')"
