#!/usr/bin/env bash
# A client written to the 2009 protocol works unchanged: shmp answers
# exactly 256 bytes (size 8 MiB, the shm name), peek/getw/clrw exactly
# "done", kick one 20-byte "kick" notification with zero params, the export
# area lists the extents, and ring reads echo the requests and carry the
# disk's bytes.  The raw client checks every reply length and that nothing
# extra arrives.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
requires nbdcopy
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 128M "$img"
name=$(unique_name hist)
start_nbdkit "$WORKDIR" "$name" "$img"

# shmp: size and name.
out=$("$RAWCLIENT" shmp "$CTL") || fail "shmp failed"
[ "$out" = "size=8388608 name=/log_$name.wlog" ] || fail "shmp reply: $out"
[ -e "/dev/shm/log_$name.wlog" ] || fail "the named shm object does not exist"

# kick with nothing queued: one notification per kick, no responses.
"$RAWCLIENT" hist-kick-empty "$CTL" || fail "empty kicks"

# An empty log exports an empty list.
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/p0" || fail "hist-peek"
[ ! -s "$WORKDIR/p0" ] || fail "empty log: historical peek lists extents"

# Random data at the start (2 MiB), patterns elsewhere.
head -c $((2 << 20)) /dev/urandom >"$WORKDIR/rand.bin"
nbdcopy "$WORKDIR/rand.bin" "$NBD_URI" || fail "nbdcopy to the export failed"
qio "write -P 0x11 16777216 65536" \
    "write -P 0x22 33554432 512" \
    "write -z 50331648 1048576" \
    "write -P 0x33 134213632 4096"
expected="0 4096
32768 128
65536 8
98304 2048
262136 8
"
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/p1" || fail "hist-peek"
expect_extents "historical peek" "$WORKDIR/p1" "$expected"
cmp <(image_range "$img" 0 4096) "$WORKDIR/rand.bin" || fail "nbdcopy data is not on the disk"

# Ring reads, one request each, at data-area offsets 0 and elsewhere.
"$RAWCLIENT" hist-read "$CTL" 0 4096 "$WORKDIR/r0" || fail "hist-read 0 4096"
cmp "$WORKDIR/r0" "$WORKDIR/rand.bin" || fail "ring read of sectors 0+4096 differs"
"$RAWCLIENT" hist-read "$CTL" 32768 128 "$WORKDIR/r1" 1048576 || fail "hist-read at offset 1 MiB"
cmp "$WORKDIR/r1" <(pattern_file 0x11 65536) || fail "ring read of the 0x11 range differs"
# The largest single request: the whole data area.
"$RAWCLIENT" hist-read "$CTL" 0 8184 "$WORKDIR/r2" || fail "hist-read of 8184 sectors"
cmp "$WORKDIR/r2" <(image_range "$img" 0 8184) || fail "ring read of 8184 sectors differs"
# The last sector of the disk, at the last sector of the data area.
"$RAWCLIENT" hist-read "$CTL" 262143 1 "$WORKDIR/r3" $((8388608 - 4194304 - 4096 - 512)) ||
    fail "hist-read of the last sector"
cmp "$WORKDIR/r3" <(image_range "$img" 262143 1) || fail "ring read of the last sector differs"

# The agent's cycle: getw, then read every extent through the ring, many
# requests per kick, and compare with the disk.
"$RAWCLIENT" hist-getw "$CTL" >"$WORKDIR/g1" || fail "hist-getw"
expect_extents "historical getw" "$WORKDIR/g1" "$expected"
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/g1" >"$WORKDIR/v1" || fail "ring-verify"
cat "$WORKDIR/v1"
grep -q '^verified 5 extents, 6288 sectors' "$WORKDIR/v1" || fail "ring-verify: $(cat "$WORKDIR/v1")"
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/p2" || fail "hist-peek"
[ ! -s "$WORKDIR/p2" ] || fail "historical getw left extents in the log"

# The extension's view agrees: one seal, nothing left.
[ "$(info_field epoch)" = 1 ] || fail "historical getw did not count as a seal"
[ "$(info_field pending_grains)" = 0 ] || fail "historical getw left pending grains"

# Many small extents, more than one ring's worth per kick: 300 separate
# 4 KiB writes, every other grain.
cmds=()
for ((i = 0; i < 300; i++)); do
    cmds+=("write -P $((i % 255 + 1)) $((8388608 + i * 8192)) 4096")
done
qio "${cmds[@]}"
"$RAWCLIENT" hist-getw "$CTL" >"$WORKDIR/g2" || fail "hist-getw"
[ "$(wc -l <"$WORKDIR/g2")" = 300 ] || fail "expected 300 extents, got $(wc -l <"$WORKDIR/g2")"
awk -v base=16384 '{ if ($1 != base + (NR - 1) * 16 || $2 != 8) { print "bad extent " NR ": " $0; exit 1 } }' \
    "$WORKDIR/g2" || fail "the 300 extents are not the written grains"
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/g2" >"$WORKDIR/v2" || fail "ring-verify of 300"
grep -q '^verified 300 extents, 2400 sectors, 3 kicks' "$WORKDIR/v2" || fail "ring-verify: $(cat "$WORKDIR/v2")"

# clrw forgets everything.
qio "write -P 0x44 0 512"
"$RAWCLIENT" hist-clrw "$CTL" || fail "hist-clrw"
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/p3" || fail "hist-peek"
[ ! -s "$WORKDIR/p3" ] || fail "historical clrw left extents in the log"

# Reconnecting over and over, as a historical client does per cycle.
for ((i = 0; i < 20; i++)); do
    "$RAWCLIENT" hist-read "$CTL" $((i * 8)) 8 "$WORKDIR/rr" $((i * 4096)) || fail "reconnect $i"
    cmp "$WORKDIR/rr" <(image_range "$img" $((i * 8)) 8) || fail "reconnect $i: data differs"
done
