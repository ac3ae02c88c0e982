#!/usr/bin/env bash
# fio's nbd engine writes randomly (two jobs, two connections, aligned and
# unaligned block sizes) with crc32c verification.  The log then holds
# exactly the grains fio wrote (from fio's own I/O log), getw hands them all
# out, and reading every dirty extent through the ring gives the image's
# bytes.  Then getw runs in a loop while fio writes: the union of all the
# getw outputs still covers every block written.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires fio
fio --enghelp=nbd 2>/dev/null | grep -q '^uri' || skip "this fio has no nbd engine"
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 256M "$img"
start_nbdkit "$WORKDIR" "$(unique_name fio)" "$img"
grain=$(info_field grain_sectors)
[ "$grain" = 8 ] || fail "unexpected grain $grain"

# run_fio SEED TAG: two jobs on disjoint regions, iologs in $WORKDIR/TAG-*.
run_fio() {
    local seed=$1 tag=$2
    cat >"$WORKDIR/$tag.fio" <<EOF
[global]
ioengine=nbd
uri=$NBD_URI
rw=randwrite
iodepth=16
verify=crc32c
verify_fatal=1
# fio would leave its verify state in the current directory (the build or
# source tree); nothing here resumes a verification.
verify_state_save=0
randseed=$seed
runtime=60
[aligned]
bs=4k
offset=16m
size=64m
io_size=24m
write_iolog=$WORKDIR/$tag-aligned.iolog
[unaligned]
bsrange=512-36k
blockalign=512
offset=100m
size=64m
io_size=24m
write_iolog=$WORKDIR/$tag-unaligned.iolog
EOF
    fio --output="$WORKDIR/$tag.out" "$WORKDIR/$tag.fio" ||
        fail "fio ($tag) failed:"$'\n'"$(tail -n 30 "$WORKDIR/$tag.out")"
}

# written_grains IOLOG...: the grains (of $grain sectors) fio wrote, one per line.
written_grains() {
    awk -v g=$((grain * 512)) '$3 == "write" {
        first = int($4 / g); last = int(($4 + $5 - 1) / g)
        for (i = first; i <= last; i++) print i
    }' "$@" | sort -n -u
}

# extent_grains FILE: the grains covered by "SECTOR COUNT" lines.
extent_grains() {
    awk -v g="$grain" '{
        if ($1 % g != 0 || $2 % g != 0) { print "unaligned extent: " $0 > "/dev/stderr"; exit 1 }
        for (i = $1 / g; i < ($1 + $2) / g; i++) print i
    }' "$1" | sort -n -u
}

# ---- Quiescent: the log is exactly what fio wrote ------------------------------------

run_fio 4242 p1
written_grains "$WORKDIR"/p1-*.iolog >"$WORKDIR/p1.expected"
nexp=$(wc -l <"$WORKDIR/p1.expected")
[ "$nexp" -gt 1000 ] || fail "fio wrote only $nexp grains; its iolog is not what this test expects"
note "fio wrote $nexp grains"

live=$(info_field live_grains)
[ "$live" = "$nexp" ] || fail "info: $live live grains, fio wrote $nexp"

wlog getw >"$WORKDIR/p1.getw"
extent_grains "$WORKDIR/p1.getw" >"$WORKDIR/p1.got" || fail "getw returned unaligned extents"
if ! cmp -s "$WORKDIR/p1.expected" "$WORKDIR/p1.got"; then
    fail "getw grains differ from fio's writes: $(comm -23 "$WORKDIR/p1.expected" "$WORKDIR/p1.got" | wc -l) written but not logged, $(comm -13 "$WORKDIR/p1.expected" "$WORKDIR/p1.got" | wc -l) logged but not written"
fi
# Adjacent grains are merged: no two extents touch.
awk 'NR > 1 && $1 <= end { print "extents touch at line " NR ": " $0; exit 1 } { end = $1 + $2 }' \
    "$WORKDIR/p1.getw" || fail "getw returned adjacent or overlapping extents"
wlog peek >"$WORKDIR/p1.peek"
[ ! -s "$WORKDIR/p1.peek" ] || fail "peek after getw is not empty ($(wc -l <"$WORKDIR/p1.peek") extents)"

# Every dirty extent, read through the ring, equals the image.
"$RAWCLIENT" ring-verify "$CTL" "$img" "$WORKDIR/p1.getw" >"$WORKDIR/p1.verify" ||
    fail "ring-verify: $(cat "$WORKDIR/p1.verify")"
cat "$WORKDIR/p1.verify"
nsect=$(awk '{ s += $2 } END { print s }' "$WORKDIR/p1.getw")
grep -q "^verified $(wc -l <"$WORKDIR/p1.getw") extents, $nsect sectors" "$WORKDIR/p1.verify" ||
    fail "ring-verify did not read every extent: $(cat "$WORKDIR/p1.verify")"
# And through `blkship wlog read`, a few of them.
head -n 5 "$WORKDIR/p1.getw" | while read -r s c; do ring_cmp "$s" "$c" "$img"; done

# ---- getw racing with the writes ---------------------------------------------------

: >"$WORKDIR/p2.all"
run_fio 777 p2 &
fio_pid=$!
cleanup_fn kill_quiet "$fio_pid"
rounds=0
while proc_alive "$fio_pid"; do
    "$BLKSHIP" wlog getw "$CTL" >>"$WORKDIR/p2.all" || fail "getw during fio failed"
    rounds=$((rounds + 1))
done
wait "$fio_pid" || fail "fio (p2) failed"
wlog getw >>"$WORKDIR/p2.all"
note "$rounds getw rounds during fio"
[ "$rounds" -ge 2 ] || fail "getw ran only $rounds times during fio: no race was exercised"
written_grains "$WORKDIR"/p2-*.iolog >"$WORKDIR/p2.expected"
extent_grains "$WORKDIR/p2.all" >"$WORKDIR/p2.got" || fail "getw returned unaligned extents"
missing=$(comm -23 "$WORKDIR/p2.expected" "$WORKDIR/p2.got" | wc -l)
[ "$missing" = 0 ] || fail "$missing grains written during the getw loop were never exported"
extra=$(comm -13 "$WORKDIR/p2.expected" "$WORKDIR/p2.got" | wc -l)
[ "$extra" = 0 ] || fail "$extra grains exported that fio did not write"
"$RAWCLIENT" ring-verify "$CTL" "$img" <(sort -n -u "$WORKDIR/p2.all") >"$WORKDIR/p2.verify" ||
    fail "ring-verify: $(cat "$WORKDIR/p2.verify")"
