#!/usr/bin/env bash
# Malformed and hostile control clients.  Each invalid ring request is
# answered with its errno and logged; a req_prod far from the responses
# breaks the ring (EPROTO on every kick, logged) until the client
# reconnects; unknown commands get "errr" and the connection lives on; a
# truncated command is logged; a second client gets "busy" while the first
# keeps working; a client that disconnects with reads in flight leaves the
# log intact.  Throughout, qemu-io writes and verifies data through NBD in
# the background, and after each case a write is checked: the disk's I/O
# path is never disturbed.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 128M "$img"
start_nbdkit "$WORKDIR" "$(unique_name bad)" "$img"
log_id=$(info_field log_id)

# ---- Background I/O over [64 MiB, 96 MiB) -------------------------------------------

io_loop() {
    local i=0 p off
    trap - ERR
    while [ ! -e "$WORKDIR/io.stop" ]; do
        p=$((i % 250 + 1))
        off=$((67108864 + (i % 32) * 1048576))
        if ! qemu-io -f raw -c "write -P $p $off 1048576" -c "read -P $p $off 1048576" \
            "$NBD_URI" >"$WORKDIR/io.last" 2>&1; then
            { echo "iteration $i (pattern $p at $off) failed:"; cat "$WORKDIR/io.last"; } >>"$WORKDIR/io.fail"
        fi
        i=$((i + 1))
        echo "$i" >"$WORKDIR/io.count"
    done
}
io_loop &
io_pid=$!
cleanup_fn kill_quiet "$io_pid"
cleanup_fn touch "$WORKDIR/io.stop"

# io_check K: a 64 KiB write at K MiB through NBD, read back and compared.
io_check() {
    local k=$1 p=$(($1 + 100))
    qio "write -P $p $((k << 20)) 65536" "read -P $p $((k << 20)) 65536"
    cmp <(image_range "$img" $((k * 2048)) 128) <(pattern_file "$p" 65536) ||
        fail "case $k: the write did not reach the disk intact"
    expected_peek+="$((k * 2048)) 128"$'\n'
}
expected_peek=""

# The part of the log this test controls: below the background region.
peek_low() {
    wlog peek | awk '$1 < 131072'
}

# ---- 1. Invalid ring requests ---------------------------------------------------------

io_check 1
"$RAWCLIENT" bad-ring "$CTL" all >"$WORKDIR/bad.out" || fail "bad-ring: $(cat "$WORKDIR/bad.out")"
cat "$WORKDIR/bad.out"
for c in count0:EINVAL toobig:EINVAL huge:EINVAL beyond:ERANGE straddle:ERANGE wrap:ERANGE \
    offset:EFAULT offset-wrap:EFAULT offset-end:EFAULT; do
    grep -q "^${c%%:*}: sector=[0-9]* count=0 offset=[0-9]* (${c#*:})\$" "$WORKDIR/bad.out" ||
        fail "bad-ring case ${c%%:*} was not answered with ${c#*:}"
done
grep -q '^mixed: served=2 refused=1$' "$WORKDIR/bad.out" || fail "mixed batch"
grep -q '^full-ring: 128 served$' "$WORKDIR/bad.out" || fail "full ring"
grep -q '^double-kick: 2 notifications, 64 responses$' "$WORKDIR/bad.out" || fail "double kick"
# Each refusal is logged with its reason.
expect_log 'refused ring request sector 0 count 0 offset 0: Invalid argument'
expect_log "refused ring request sector 0 count 8185 offset 0: Invalid argument"
expect_log 'refused ring request sector 0 count 4294967295 offset 0: Invalid argument'
expect_log 'refused ring request sector 262144 count 1 offset 0: Numerical result out of range'
expect_log 'refused ring request sector 262143 count 2 offset 0: Numerical result out of range'
expect_log 'refused ring request sector 18446744073709551614 count 4 offset 0: Numerical result out of range'
expect_log 'refused ring request sector 0 count 2 offset 4189696: Bad address'
expect_log 'refused ring request sector 0 count 8 offset 4294966784: Bad address'
expect_log 'refused ring request sector 0 count 1 offset 4190208: Bad address'
io_check 2

# ---- 2. req_prod far ahead of (or behind) the responses --------------------------------

for delta in 129 1000000 4294967295; do
    "$RAWCLIENT" garbage-prod "$CTL" "$delta" >"$WORKDIR/gp.out" ||
        fail "garbage-prod $delta: $(cat "$WORKDIR/gp.out")"
    grep -q '^kick 2: cmd=kick err=71 (EPROTO) refused=kick$' "$WORKDIR/gp.out" ||
        fail "garbage-prod $delta: no EPROTO notification: $(cat "$WORKDIR/gp.out")"
done
expect_log 'ring broken by the client: req_prod 130 is more than 128 past rsp_prod 1'
expect_log 'ring broken by the client: req_prod 1000001 is more than 128 past rsp_prod 1'
expect_log 'ring broken by the client: req_prod 0 is more than 128 past rsp_prod 1'
io_check 3

# ---- 3. Unknown commands -----------------------------------------------------------------

"$RAWCLIENT" unknown-cmd "$CTL" >"$WORKDIR/unk.out" || fail "unknown-cmd: $(cat "$WORKDIR/unk.out")"
[ "$(grep -c 'reply=errr err=38 (ENOSYS)' "$WORKDIR/unk.out")" = 5 ] ||
    fail "unknown commands: $(cat "$WORKDIR/unk.out")"
expect_log 'unknown control command "xyzw"; answered with errr'
expect_log 'unknown control command "\\x00\\x00\\x00\\x00"; answered with errr'
expect_log 'unknown control command "SHMP"; answered with errr'
io_check 4

# ---- 4. A truncated command, then close ---------------------------------------------------

for len in 1 7 19; do
    "$RAWCLIENT" short-msg "$CTL" "$len" || fail "short-msg $len"
    expect_log "control client gone \\(end of file\\) in the middle of a command \\($len of 20 bytes\\)"
    # The next client is served normally.
    "$RAWCLIENT" hist-read "$CTL" 2048 128 "$WORKDIR/after-short" ||
        fail "no service after a $len-byte command"
done
io_check 5

# ---- 5. A second client while one is connected ------------------------------------------

"$RAWCLIENT" second-client "$CTL" >"$WORKDIR/sc.out" || fail "second-client: $(cat "$WORKDIR/sc.out")"
grep -q '^second client: msg=busy err=16 (EBUSY)$' "$WORKDIR/sc.out" || fail "second client not refused"
expect_log 'refused a second control client: one is already connected'
# And blkship itself, while the raw client holds the connection.
"$RAWCLIENT" hold "$CTL" 60 >"$WORKDIR/hold.out" &
hold_pid=$!
cleanup_fn kill_quiet "$hold_pid"
poll_until 10 grep -q ready "$WORKDIR/hold.out" || fail "hold client did not connect"
if "$BLKSHIP" wlog info "$CTL" >"$WORKDIR/busy.out" 2>&1; then
    fail "blkship wlog info succeeded while another client was connected"
fi
# The tool reads the server's refusal even when the server closed before
# its first command went out (test-busy-report.sh forces that timing), so
# it always says busy (EBUSY, docs/writelog-protocol.md).
grep -q 'Device or resource busy' "$WORKDIR/busy.out" ||
    fail "blkship did not report busy: $(cat "$WORKDIR/busy.out")"
[ "$(grep -c 'refused a second control client' "$NBDKIT_LOG")" -ge 2 ] ||
    fail "the refusal of blkship was not logged"
kill "$hold_pid"
wait "$hold_pid" 2>/dev/null || true
io_check 6

# ---- 6. Disconnecting with reads in flight ------------------------------------------------

peek_low >"$WORKDIR/before"
expect_extents "log before the disconnecting kicks" "$WORKDIR/before" "$expected_peek"
"$RAWCLIENT" kick-disconnect "$CTL" 20 >"$WORKDIR/kd.out" || fail "kick-disconnect: $(cat "$WORKDIR/kd.out")"
peek_low >"$WORKDIR/after"
expect_extents "log after the disconnecting kicks" "$WORKDIR/after" "$expected_peek"
[ "$(info_field log_id)" = "$log_id" ] || fail "the log id changed: the log's history was lost"
[ "$(info_field epoch)" = 0 ] || fail "something sealed the log"
ring_cmp 2048 128 "$img"
ring_cmp 0 8184 "$img"
io_check 7

# ---- The background I/O went through every case undisturbed ------------------------------

touch "$WORKDIR/io.stop"
poll_until 60 proc_gone "$io_pid" || fail "background I/O did not stop"
wait "$io_pid" || true
[ ! -e "$WORKDIR/io.fail" ] || fail "background I/O failed:"$'\n'"$(head -n 20 "$WORKDIR/io.fail")"
count=$(cat "$WORKDIR/io.count" 2>/dev/null || echo 0)
note "$count background qemu-io rounds"
[ "$count" -ge 3 ] || fail "only $count background I/O rounds ran"

peek_low >"$WORKDIR/final"
expect_extents "final log" "$WORKDIR/final" "$expected_peek"
# The background region is in the log too, and its data reads back right.
wlog peek | awk '$1 >= 131072' >"$WORKDIR/bg.extents"
[ -s "$WORKDIR/bg.extents" ] || fail "the background writes are not in the log"
awk '$1 < 131072 || $1 + $2 > 196608 { exit 1 }' "$WORKDIR/bg.extents" ||
    fail "background extents outside [64 MiB, 96 MiB): $(cat "$WORKDIR/bg.extents")"
wlog peek >"$WORKDIR/all.extents"
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/all.extents" >/dev/null || fail "ring-verify of the whole log"
