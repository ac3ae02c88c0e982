#!/usr/bin/env bash
# A 3 TiB sparse disk: more than 2^32 sectors.  Writes near 2.5 TiB, across
# sector 2^32 and at the very last sector are logged with their full 64-bit
# sector numbers (a 32-bit truncation would alias them low on the disk),
# and ring reads at those sectors return the right bytes.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 3T "$img" || fail "cannot create a 3 TiB sparse file in $WORKDIR"
start_nbdkit "$WORKDIR" "$(unique_name big)" "$img"

sectors=$(info_field disk_sectors)
[ "$sectors" = 6442450944 ] || fail "disk_sectors $sectors, expected 6442450944"
grain=$(info_field grain_sectors)
# 3 TiB at 4 KiB per bit would need more than the automatic bitmap limit.
[ "$grain" = 16 ] || fail "automatic grain for 3 TiB is $grain sectors, expected 16"

s_25t=5368709120 # 2.5 TiB in sectors
qio "write -P 0x5a $(((s_25t + 3) * 512)) 4096" \
    "write -P 0x6b $((4294967293 * 512)) 4096" \
    "write -P 0x7c $((6442450943 * 512)) 512"
expected="4294967280 32
5368709120 16
6442450928 16
"
wlog peek >"$WORKDIR/peek"
expect_extents "peek on a 3 TiB disk" "$WORKDIR/peek" "$expected"
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/hpeek" || fail "hist-peek"
expect_extents "historical peek on a 3 TiB disk" "$WORKDIR/hpeek" "$expected"

# The data is where it was written.
cmp <(image_range "$img" $((s_25t + 3)) 8) <(pattern_file 0x5a 4096) || fail "data at 2.5 TiB"
cmp <(image_range "$img" 6442450943 1) <(pattern_file 0x7c 512) || fail "data at the last sector"

# Ring reads at those sectors, raw and through blkship.
"$RAWCLIENT" hist-read "$CTL" $((s_25t + 3)) 8 "$WORKDIR/r1" || fail "ring read at 2.5 TiB"
cmp "$WORKDIR/r1" <(pattern_file 0x5a 4096) || fail "ring read at 2.5 TiB returned other bytes"
"$RAWCLIENT" hist-read "$CTL" 6442450943 1 "$WORKDIR/r2" 4096 || fail "ring read of the last sector"
cmp "$WORKDIR/r2" <(pattern_file 0x7c 512) || fail "ring read of the last sector returned other bytes"
"$RAWCLIENT" hist-read "$CTL" 4294967293 8 "$WORKDIR/r3" || fail "ring read across sector 2^32"
cmp "$WORKDIR/r3" <(pattern_file 0x6b 4096) || fail "ring read across sector 2^32 returned other bytes"
ring_cmp 6442450928 16 "$img"
ring_cmp $((s_25t - 8)) 32 "$img"
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/peek" >/dev/null || fail "ring-verify of the extents"

# The disk's end is enforced with 64-bit arithmetic.
"$RAWCLIENT" bad-ring "$CTL" beyond || fail "a request at sector $sectors was not refused with ERANGE"
"$RAWCLIENT" bad-ring "$CTL" straddle || fail "a request across the disk's end was not refused with ERANGE"
"$RAWCLIENT" bad-ring "$CTL" wrap || fail "a request wrapping 2^64 was not refused with ERANGE"
"$BLKSHIP" wlog read "$CTL" "$sectors" 1 >/dev/null 2>&1 && fail "blkship read past the end succeeded"

# getw hands out the same 64-bit extents and empties the log.
wlog getw >"$WORKDIR/getw"
expect_extents "getw on a 3 TiB disk" "$WORKDIR/getw" "$expected"
wlog peek >"$WORKDIR/peek2"
[ ! -s "$WORKDIR/peek2" ] || fail "peek after getw is not empty"
