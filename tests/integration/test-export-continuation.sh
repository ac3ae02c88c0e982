#!/usr/bin/env bash
# More dirty extents than the export area holds.  With a 512-byte grain,
# fio writes every other sector: N > WL_EXPORT_MAX separate extents.  The
# historical getw exports exactly WL_EXPORT_MAX (262143) of them and leaves
# the rest pending (the historical server lost them); `blkship wlog getw`
# (seal + next) then returns exactly the rest.  Nothing is lost, nothing is
# returned twice.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires fio
requires python3
fio --enghelp=nbd 2>/dev/null | grep -q '^uri' || skip "this fio has no nbd engine"
require_build
make_workdir

export_max=262143
n=270000 # extents written: sectors 0, 2, 4, ..., 2(n-1)
rest=$((n - export_max))

img=$WORKDIR/disk.img
truncate -s 512M "$img"
start_nbdkit "$WORKDIR" "$(unique_name cont)" "$img" writelog-grain=512
[ "$(info_field grain_sectors)" = 1 ] || fail "grain is not 1 sector"
[ "$(info_field export_max)" = "$export_max" ] || fail "export_max is not $export_max"

# Write 512 bytes, skip 512 bytes, n times.
fio --name=stride --ioengine=nbd --uri="$NBD_URI" --rw=write:512 --bs=512 \
    --size=$((n * 1024)) --iodepth=32 --runtime=120 --output="$WORKDIR/fio.out" ||
    fail "fio failed: $(tail -n 20 "$WORKDIR/fio.out")"
live=$(info_field live_grains)
[ "$live" = "$n" ] || fail "after fio: $live dirty sectors, expected $n"

# check_stride FILE FIRST COUNT: FILE lists COUNT extents "2k 1", k from FIRST.
check_stride() {
    local lines
    lines=$(wc -l <"$1")
    [ "$lines" = "$3" ] || fail "$(basename "$1"): $lines extents, expected $3"
    awk -v first="$2" '{
        k = first + NR - 1
        if ($1 != 2 * k || $2 != 1) { print "line " NR ": \"" $0 "\", expected \"" 2 * k " 1\""; exit 1 }
    }' "$1" || fail "$(basename "$1"): not the written sectors"
}

# peek shows the first export area's worth and says it is truncated.
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/peek1" || fail "hist-peek"
check_stride "$WORKDIR/peek1" 0 "$export_max"
wlog peek --json | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["truncated"] else 1)' ||
    fail "peek --json does not say it is truncated"

# The historical getw: exactly WL_EXPORT_MAX extents; the rest stay pending.
"$RAWCLIENT" hist-getw "$CTL" >"$WORKDIR/getw1" || fail "hist-getw"
check_stride "$WORKDIR/getw1" 0 "$export_max"
[ "$(info_field live_grains)" = 0 ] || fail "live grains left after getw"
pending=$(info_field pending_grains)
[ "$pending" = "$rest" ] || fail "after the historical getw: $pending pending, expected $rest"
# What is left is still visible to peek.
"$RAWCLIENT" hist-peek "$CTL" >"$WORKDIR/peek2" || fail "hist-peek"
check_stride "$WORKDIR/peek2" "$export_max" "$rest"

# blkship wlog getw fetches the rest and acknowledges it.
wlog getw >"$WORKDIR/getw2"
check_stride "$WORKDIR/getw2" "$export_max" "$rest"
[ "$(info_field pending_grains)" = 0 ] || fail "pending grains left after blkship getw"
wlog peek >"$WORKDIR/peek3"
[ ! -s "$WORKDIR/peek3" ] || fail "peek after the last getw lists $(wc -l <"$WORKDIR/peek3") extents"

# Together: every written sector exactly once.
total=$(cat "$WORKDIR/getw1" "$WORKDIR/getw2" | sort -u | wc -l)
[ "$total" = "$n" ] || fail "the two getw returned $total distinct extents, expected $n"

# The data of a sample of them (first, across the chunk boundary, last)
# through the ring.
printf '%s\n' "0 1" "$((2 * (export_max - 1))) 1" "$((2 * export_max)) 1" "$((2 * (n - 1))) 1" \
    >"$WORKDIR/sample"
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/sample" >/dev/null || fail "ring-verify of samples"

# Once more with only the new protocol: `blkship wlog getw` walks an epoch
# larger than the export area chunk by chunk and lists all of it.
fio --name=stride2 --ioengine=nbd --uri="$NBD_URI" --rw=write:512 --bs=512 \
    --size=$((n * 1024)) --iodepth=32 --runtime=120 --output="$WORKDIR/fio2.out" ||
    fail "fio (second run) failed: $(tail -n 20 "$WORKDIR/fio2.out")"
wlog getw >"$WORKDIR/getw3"
check_stride "$WORKDIR/getw3" 0 "$n"
[ "$(info_field pending_grains)" = 0 ] || fail "pending grains left after a full blkship getw"
[ "$(info_field live_grains)" = 0 ] || fail "live grains left after a full blkship getw"
[ "$(info_field epoch)" = 3 ] || fail "epoch $(info_field epoch), expected 3 (three seals)"
