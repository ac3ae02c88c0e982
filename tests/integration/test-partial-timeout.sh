#!/usr/bin/env bash
# A control client that sends part of a command and then nothing is
# disconnected after 10 s, and the server says why in its log; while it is
# held, other control clients get "busy" and NBD I/O is unaffected.  A slow
# client that keeps sending pieces (each within the limit) is served.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 64M "$img"
start_nbdkit "$WORKDIR" "$(unique_name part)" "$img"

# Slow but steady: 20 bytes in 4 pieces, 2 s apart (6 s in all), is served.
"$RAWCLIENT" slow-cmd "$CTL" 4 2000 || fail "a slowly sent command was not served"

# Silent after 7 bytes.
"$RAWCLIENT" partial-hold "$CTL" 7 20000 >"$WORKDIR/hold.out" &
hold_pid=$!
cleanup_fn kill_quiet "$hold_pid"
poll_until 10 grep -q ready "$WORKDIR/hold.out" || fail "the partial client did not connect"

# While it is held: NBD I/O works and the log records it.
qio "write -P 0x3c 1048576 65536" "read -P 0x3c 1048576 65536"
# Another control client is refused (the held one is still the client).
if "$BLKSHIP" wlog info "$CTL" >"$WORKDIR/busy.out" 2>&1; then
    fail "a control client was served while a partial command was pending"
fi
# The tool reads the server's refusal even when the server closed before
# its first command went out (test-busy-report.sh forces that timing), so
# it always says busy (EBUSY, docs/writelog-protocol.md).
grep -q 'Device or resource busy' "$WORKDIR/busy.out" || fail "expected busy: $(cat "$WORKDIR/busy.out")"
expect_log 'refused a second control client: one is already connected'

poll_until 25 proc_gone "$hold_pid" || fail "the partial client was not released within 25 s"
wait "$hold_pid" || fail "partial-hold: $(cat "$WORKDIR/hold.out")"
ms=$(sed -n 's/^closed after \([0-9]*\) ms$/\1/p' "$WORKDIR/hold.out")
[ -n "$ms" ] || fail "partial-hold printed: $(cat "$WORKDIR/hold.out")"
note "a 7-byte command was dropped after $ms ms"
[ "$ms" -ge 9000 ] && [ "$ms" -le 13000 ] || fail "dropped after $ms ms; expected about 10000"
expect_log 'control client gone \(no complete command within the time limit\) in the middle of a command \(7 of 20 bytes\)'

# Service resumes, and the log holds the write made meanwhile.
wlog peek >"$WORKDIR/peek"
expect_extents "peek after the timeout" "$WORKDIR/peek" "2048 128
"
ring_cmp 2048 128 "$img"
qio "read -P 0x3c 1048576 65536"
