#!/usr/bin/env bash
# Replication onto a 4 KiB-sector device: a loop device made with
# `losetup --sector-size 4096`, once with the loop's direct I/O off and
# once on.  nbdkit runs the writelog filter with writelog-grain=512, so the
# primary ships frames that start and end on any 512-byte sector: most of
# them do not cover whole 4 KiB blocks.  During the initial sync (1 MiB
# frames, block-aligned), fio writes through NBD a mix of 512 B, 1.5 KiB,
# 4 KiB, 68 KiB and 200 KiB blocks at 512-byte-aligned random offsets,
# and qemu-io writes and write-zeroes a few ranges with odd ends.  After the
# drain the replica is byte-identical to the image; the secondary logged
# its 4096-byte blocks, no EINVAL, no fallback and no error; and on
# SIGTERM it reports both direct writes (the aligned ones) and writes
# through the page cache (the others): both paths were taken.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires qemu-io
requires_fio_nbd
require_build
make_workdir

size=256M
bytes=$(numfmt --from=iec $size)
CERTS=$WORKDIR/pki
make_certs "$CERTS"

run_case() {
    local dio=$1 img=$WORKDIR/disk-$1.img rep=$WORKDIR/replica-$1.img
    local sec_pid sec_log pri_ctl pri_log ss d c rc
    note "loop device with 4096-byte sectors, direct I/O $dio"
    random_file "$img" $size "4k-$dio-$$"
    dd if=/dev/zero of="$img" bs=1M count=16 conv=notrunc status=none
    truncate -s $size "$rep"
    random_file "$WORKDIR/junk" 16M "junk-$$"
    dd if="$WORKDIR/junk" of="$rep" bs=1M conv=notrunc status=none
    rm -f "$WORKDIR/junk"
    make_loop "$rep" --sector-size 4096 --direct-io="$dio"
    [ "$(blockdev --getss "$LOOP")" = 4096 ] || fail "losetup made $LOOP with $(blockdev --getss "$LOOP")-byte sectors"

    start_nbdkit "$WORKDIR" "rt4k$dio$$" "$img" writelog-grain=512
    start_secondary "sec-$dio" "$LOOP"
    sec_pid=$SEC_PID sec_log=$SEC_LOG
    expect_log "replica $LOOP: 4096-byte logical, 4096-byte physical blocks; writes aligned to 4096 bytes go direct" "$sec_log"
    start_primary "pri-$dio" "$WL_CTL" "$SEC_ADDR"
    pri_ctl=$PRI_CTL pri_log=$PRI_LOG
    expect_log 'grain 1,' "$pri_log" 10

    cat >"$WORKDIR/mix.fio" <<EOF
[global]
thread
ioengine=nbd
uri=$NBD_URI
rw=randwrite
bssplit=512/40:1536/20:4k/20:68k/10:200k/10
blockalign=512
iodepth=8
randseed=$$
norandommap
[w]
size=$bytes
io_size=48m
EOF
    fio --output="$WORKDIR/fio-$dio.out" "$WORKDIR/mix.fio" ||
        fail "fio failed:"$'\n'"$(tail -n 30 "$WORKDIR/fio-$dio.out")"
    qemu-io -f raw "$NBD_URI" -c "write -P 0x11 512 512" -c "write -P 0x22 7680 100k" \
        -c "write -P 0x33 1048064 1024" -c "write -z 12800 300k" \
        -c "write -z $((20 << 20)) $((8 << 20))" -c "write -z $((40 << 20)) 1536" \
        -c "write -P 0x44 $((bytes - 1536)) 1536" >"$WORKDIR/qio-$dio.out" 2>&1 ||
        fail "qemu-io failed: $(cat "$WORKDIR/qio-$dio.out")"

    wait_synced "$pri_ctl" 120
    ss=$(status "$SEC_CTL")
    note "secondary: $ss"
    expect_same "$img" "$LOOP" "the 4 KiB-sector replica (direct I/O $dio)"
    [ "$(jget "$ss" bad_frames)" = 0 ] || fail "the secondary counted bad frames: $ss"
    ! log_has 'EINVAL|Invalid argument|refuses direct|fall(ing)? ?back|error' "$sec_log" ||
        fail "the secondary logged a refusal or an error: $(grep -E 'EINVAL|Invalid argument|refuses direct|fall|error' "$sec_log")"

    kill -TERM "$sec_pid"
    poll_until 15 proc_gone "$sec_pid" || fail "blkship-secondary still running 15 s after SIGTERM"
    wait "$sec_pid" && rc=0 || rc=$?
    [ "$rc" = 0 ] || fail "blkship-secondary exited with status $rc on SIGTERM"
    expect_log 'replica writes: [0-9]+ direct' "$sec_log"
    d=$(sed -n 's/.*replica writes: \([0-9]*\) direct, \([0-9]*\) through.*/\1/p' "$sec_log")
    c=$(sed -n 's/.*replica writes: \([0-9]*\) direct, \([0-9]*\) through.*/\2/p' "$sec_log")
    note "$d direct writes, $c through the page cache"
    [ "$d" -gt 0 ] || fail "no write went direct on the 4 KiB device"
    [ "$c" -gt 0 ] || fail "no write went through the page cache: the unaligned frames were not exercised"
    stop_pid "$PRI_PID"
    stop_pid "$NBDKIT_PID"
}

run_case off
run_case on
