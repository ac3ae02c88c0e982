#!/usr/bin/env bash
# qemu-io writes, write-zeroes and discards through NBD are logged: peek
# lists exactly the expected extents (rounded to the grain, adjacent grains
# merged), getw hands them out and empties the log, and ring reads return
# the image's bytes.  Then again with a 512-byte grain: sector-exact.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
requires python3
require_build
make_workdir

# Random data in the first 16 MiB so that zeroes and trims change something.
head -c $((16 << 20)) /dev/urandom >"$WORKDIR/base.img"
truncate -s 64M "$WORKDIR/base.img"

# The same writes for both grains.
do_writes() {
    qio "write -P 0xa1 0 4096" \
        "write -P 0xa2 10240 1000" \
        "write -z 1048576 65536" \
        "discard 4194304 8192" \
        "write -P 0xa4 8388608 4096" \
        "write -P 0xa5 8392704 4096" \
        "write -P 0xa6 12586496 1024" \
        "write -P 0xa8 30000000 1" \
        "write -P 0xa7 67108352 512"
}

# check_data IMAGE: what the writes put on the disk, read from the image.
check_data() {
    local img=$1
    cmp <(image_range "$img" 0 8) <(pattern_file 0xa1 4096) || fail "sectors 0-7 are not 0xa1"
    cmp <(dd if="$img" bs=1 skip=10240 count=1000 status=none) <(pattern_file 0xa2 1000) ||
        fail "bytes 10240+1000 are not 0xa2"
    cmp <(image_range "$img" 2048 128) <(head -c 65536 /dev/zero) || fail "zeroed range not zero"
    cmp <(image_range "$img" 16384 8) <(pattern_file 0xa4 4096) || fail "0xa4 range wrong"
    cmp <(image_range "$img" 16392 8) <(pattern_file 0xa5 4096) || fail "0xa5 range wrong"
    cmp <(image_range "$img" 131071 1) <(pattern_file 0xa7 512) || fail "last sector wrong"
}

# ring_check_all LIST IMAGE: every listed extent read through the ring
# equals the image.
ring_check_all() {
    local s c
    while read -r s c; do
        ring_cmp "$s" "$c" "$1"
    done <"$2"
}

# ---- Default grain: 4 KiB = 8 sectors ----------------------------------------------

mkdir "$WORKDIR/g4k"
cp --sparse=always "$WORKDIR/base.img" "$WORKDIR/g4k/disk.img"
start_nbdkit "$WORKDIR/g4k" "$(unique_name qio)" "$WORKDIR/g4k/disk.img"

[ "$(info_field grain_sectors)" = 8 ] || fail "default grain is not 8 sectors"
[ "$(info_field disk_sectors)" = 131072 ] || fail "disk_sectors is not 131072"
wlog peek >"$WORKDIR/peek0"
[ ! -s "$WORKDIR/peek0" ] || fail "a fresh log is not empty: $(cat "$WORKDIR/peek0")"

do_writes
expected="0 8
16 8
2048 128
8192 16
16384 16
24576 16
58592 8
131064 8
"
wlog peek >"$WORKDIR/peek1"
expect_extents "peek (4 KiB grain)" "$WORKDIR/peek1" "$expected"
# peek changes nothing.
wlog peek >"$WORKDIR/peek2"
expect_extents "second peek" "$WORKDIR/peek2" "$expected"
[ "$(info_field live_grains)" = 26 ] || fail "live_grains $(info_field live_grains), expected 26"
[ "$(info_field epoch)" = 0 ] || fail "peek changed the epoch"

# The historical client sees the same through the same socket.
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/hpeek" || fail "historical peek failed"
expect_extents "historical peek" "$WORKDIR/hpeek" "$expected"

# --json is well-formed and carries the same extents.
wlog peek --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["truncated"] is False, d
for e in d["extents"]:
    print(e["sector"], e["count"])' >"$WORKDIR/peekjson" || fail "peek --json is not valid JSON"
expect_extents "peek --json" "$WORKDIR/peekjson" "$expected"

check_data "$WORKDIR/g4k/disk.img"
ring_check_all "$WORKDIR/g4k/disk.img" "$WORKDIR/peek1"
# A read that is not an extent, not grain-aligned, across two extents.
ring_cmp 5 20 "$WORKDIR/g4k/disk.img"

# getw returns the same and empties the log.
wlog getw >"$WORKDIR/getw1"
expect_extents "getw" "$WORKDIR/getw1" "$expected"
wlog peek >"$WORKDIR/peek3"
[ ! -s "$WORKDIR/peek3" ] || fail "peek after getw is not empty:"$'\n'"$(cat "$WORKDIR/peek3")"
[ "$(info_field epoch)" = 1 ] || fail "getw did not start epoch 1"
[ "$(info_field live_grains)" = 0 ] || fail "live grains left after getw"
[ "$(info_field pending_grains)" = 0 ] || fail "pending grains left after getw"
wlog getw >"$WORKDIR/getw2"
[ ! -s "$WORKDIR/getw2" ] || fail "a second getw returned extents"

# Only what is written after the getw shows up next.
qio "write -P 0xb1 40960 4096" "write -P 0xb2 40961 1"
wlog peek >"$WORKDIR/peek4"
expect_extents "peek after a new write" "$WORKDIR/peek4" "80 8
"
# clrw forgets it.
wlog clrw --force
wlog peek >"$WORKDIR/peek5"
[ ! -s "$WORKDIR/peek5" ] || fail "peek after clrw is not empty"

# The disk's data went through untouched.
check_data "$WORKDIR/g4k/disk.img"
qio "read -P 0xa1 0 4096" "read -P 0xa7 67108352 512" "read -P 0xb2 40961 1"

# ---- writelog-grain=512: sector-exact extents ---------------------------------------

mkdir "$WORKDIR/g512"
cp --sparse=always "$WORKDIR/base.img" "$WORKDIR/g512/disk.img"
start_nbdkit "$WORKDIR/g512" "$(unique_name qio512-)" "$WORKDIR/g512/disk.img" writelog-grain=512
[ "$(info_field grain_sectors)" = 1 ] || fail "writelog-grain=512 did not give a 1-sector grain"

do_writes
expected512="0 8
20 2
2048 128
8192 16
16384 16
24583 2
58593 1
131071 1
"
wlog peek >"$WORKDIR/p512"
expect_extents "peek (512-byte grain)" "$WORKDIR/p512" "$expected512"
check_data "$WORKDIR/g512/disk.img"
ring_check_all "$WORKDIR/g512/disk.img" "$WORKDIR/p512"
wlog getw >"$WORKDIR/g512getw"
expect_extents "getw (512-byte grain)" "$WORKDIR/g512getw" "$expected512"
wlog peek >"$WORKDIR/p512b"
[ ! -s "$WORKDIR/p512b" ] || fail "peek after getw (512) is not empty"

# ---- A disk whose size is not a multiple of the sector or the grain ----------------------

mkdir "$WORKDIR/odd"
head -c 1000000 /dev/urandom >"$WORKDIR/odd/disk.img"
start_nbdkit "$WORKDIR/odd" "$(unique_name qioodd)" "$WORKDIR/odd/disk.img"
[ "$(info_field disk_sectors)" = 1954 ] || fail "a 1000000-byte disk is not 1954 sectors"
qio "write -P 0x77 999990 10"
wlog peek >"$WORKDIR/podd"
# The last grain is cut at the disk's end.
expect_extents "peek (odd size)" "$WORKDIR/podd" "1952 2
"
# The last sector is padded with zeroes past the end of the file.
wlog read 1952 2 --output "$WORKDIR/odd.bin"
cmp <(head -c 576 "$WORKDIR/odd.bin") <(tail -c 576 "$WORKDIR/odd/disk.img") ||
    fail "ring read of the partial last sector: wrong data"
cmp <(tail -c 448 "$WORKDIR/odd.bin") <(head -c 448 /dev/zero) ||
    fail "ring read of the partial last sector: not padded with zeroes"
cmp <(tail -c 10 "$WORKDIR/odd/disk.img") <(pattern_file 0x77 10) || fail "the write at the end is missing"
