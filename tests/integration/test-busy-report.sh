#!/usr/bin/env bash
# While one control client is connected, `blkship wlog` must say the log is
# busy (the server sends a 20-byte "busy" message, err EBUSY, then closes).
# The server does its part every time (test-bad-input.sh checks it byte by
# byte).  This checks the tool's report: it must be "Device or resource
# busy" whatever the timing, also when the server has closed the
# connection before the tool's first command was sent (forced with strace
# delaying the return of connect()).
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires strace
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 16M "$img"
start_nbdkit "$WORKDIR" "$(unique_name busy)" "$img"

"$RAWCLIENT" hold "$CTL" 120 >"$WORKDIR/hold.out" &
hold_pid=$!
cleanup_fn kill_quiet "$hold_pid"
poll_until 10 grep -q ready "$WORKDIR/hold.out" || fail "hold client did not connect"

: >"$WORKDIR/outcomes"
for ((i = 0; i < 30; i++)); do
    if "$BLKSHIP" wlog info "$CTL" >/dev/null 2>"$WORKDIR/err"; then
        fail "blkship wlog info succeeded while another client was connected"
    fi
    cat "$WORKDIR/err" >>"$WORKDIR/outcomes"
done
for ((i = 0; i < 3; i++)); do
    if strace -o /dev/null -e trace=none -e inject=connect:delay_exit=300000 \
        "$BLKSHIP" wlog info "$CTL" >/dev/null 2>"$WORKDIR/err"; then
        fail "blkship wlog info (delayed) succeeded while another client was connected"
    fi
    sed 's/$/ [connect delayed 300 ms]/' "$WORKDIR/err" >>"$WORKDIR/outcomes"
done
[ "$(grep -c 'refused a second control client' "$NBDKIT_LOG")" -ge 30 ] ||
    fail "the server did not log its refusals"
summary=$(sed "s|$CTL|SOCKET|" "$WORKDIR/outcomes" | sort | uniq -c)
echo "$summary"
if grep -v -e 'Device or resource busy' -e 'another client holds the log' "$WORKDIR/outcomes" >/dev/null; then
    fail "blkship wlog did not always report busy; outcomes:"$'\n'"$summary"
fi
# Each refusal says what to do instead: ask the agent.
[ "$(grep -c "another client holds the log .*ask it with 'blkship wlog info --control" "$WORKDIR/outcomes")" = 33 ] ||
    fail "not every busy report says to ask the agent; outcomes:"$'\n'"$summary"
