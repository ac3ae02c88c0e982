#!/usr/bin/env bash
# --compress zstd: data frames go compressed where that pays, and not where
# it does not; the replica is the same either way.
#  1. A full sync of a 64 MiB disk whose first half compresses about 2:1
#     (each 4 KiB block: 2 KiB random, 2 KiB of one byte) and whose second
#     half is random: the replica equals the disk; the primary reports
#     zstd:3 agreed, compressed frames, frames that did not pay and frames
#     sent without a try; its wire count is exactly the secondary's
#     compressed bytes plus what went uncompressed; the ratio is above 1.2
#     and below 2, and the human status shows it.
#  2. Writes through NBD while replicating (compressible and random ranges,
#     qemu-io): they converge byte for byte.
#  3. A primary without --compress on the same pair sends no compressed
#     frame (the secondary's count stays), and the status says none.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires qemu-io
require_build
make_workdir

pair_setup 64M "cz-$$"
# The first 32 MiB: per 4 KiB, 2 KiB of the random image and 2 KiB of 0x5a.
python3 - "$img" <<'PY'
import sys
path = sys.argv[1]
with open(path, 'r+b') as f:
    for i in range(32 * 256):
        f.seek(i * 4096 + 2048)
        f.write(b'\x5a' * 2048)
PY

start_nbdkit "$WORKDIR" "rtcz$$" "$img"
start_secondary sec "$LOOP"
sec_ctl=$SEC_CTL sec_addr=$SEC_ADDR
start_primary pri "$WL_CTL" "$sec_addr" --compress zstd:3
pri_ctl=$PRI_CTL pri_log=$PRI_LOG
wait_synced "$pri_ctl" 120
expect_same "$img" "$LOOP" "replica after the compressed full sync"
expect_log 'data frames compressed with zstd level 3 where that pays' "$pri_log"

s=$(status "$pri_ctl") t=$(status "$sec_ctl")
note "primary: compression $(jget "$s" compression) active $(jget "$s" compression_active), raw $(jget "$s" compress_raw_bytes) wire $(jget "$s" compress_wire_bytes) ratio $(jget "$s" compress_ratio), frames compressed $(jget "$s" compressed_frames), not paid $(jget "$s" compress_not_paid), skipped $(jget "$s" compress_skipped)"
note "secondary: compressed frames $(jget "$t" compressed_frames), wire $(jget "$t" compressed_wire_bytes), raw $(jget "$t" compressed_raw_bytes)"
[ "$(jget "$s" compression)" = zstd:3 ] && [ "$(jget "$s" compression_active)" = true ] ||
    fail "the status does not show zstd:3 agreed: $s"
[ "$(jget "$s" compressed_frames)" -gt 0 ] && [ "$(jget "$s" compress_not_paid)" -gt 0 ] &&
    [ "$(jget "$s" compress_skipped)" -gt 0 ] ||
    fail "expected compressed frames, frames that did not pay and skipped ones: $s"
[ "$(jget "$s" compress_raw_bytes)" = "$bytes" ] ||
    fail "the primary offered $(jget "$s" compress_raw_bytes) bytes to compression, not the disk's $bytes"
[ "$(jget "$t" compressed_frames)" = "$(jget "$s" compressed_frames)" ] ||
    fail "the secondary took $(jget "$t" compressed_frames) compressed frames, the primary sent $(jget "$s" compressed_frames)"
# wire = compressed payloads + payloads sent as they are.
expect_wire=$(($(jget "$t" compressed_wire_bytes) + bytes - $(jget "$t" compressed_raw_bytes)))
[ "$(jget "$s" compress_wire_bytes)" = "$expect_wire" ] ||
    fail "the primary counts $(jget "$s" compress_wire_bytes) bytes on the wire, the secondary's frames make $expect_wire"
awk -v r="$(jget "$s" compress_ratio)" 'BEGIN { exit !(r > 1.2 && r < 2) }' ||
    fail "ratio $(jget "$s" compress_ratio): not between 1.2 and 2 for a disk half 2:1, half random"
human=$(bs_status --control "$pri_ctl")
grep -Eq '^compression zstd:3, ratio 1\.[2-9][0-9]$' <<<"$human" ||
    fail "the human status does not show the compression ratio:"$'\n'"$human"

# ---- 2. Writes while replicating ---------------------------------------------------
note "2: qemu-io writes compressible and random ranges through NBD"
random_file "$WORKDIR/rand.bin" 4M "cz2-$$"
qemu-io -f raw "$NBD_URI" -c "write -P 0x33 1M 3M" -c "write -P 0x44 40M 1M" \
    -c "write -s $WORKDIR/rand.bin 20M 4M" >/dev/null || fail "qemu-io writes failed"
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after writes under compression"
n1=$(field "$sec_ctl" compressed_frames)

# ---- 3. No --compress ----------------------------------------------------------------
stop_pid "$PRI_PID"
start_primary pri "$WL_CTL" "$sec_addr"
pri_ctl=$PRI_CTL
qemu-io -f raw "$NBD_URI" -c "write -P 0x66 8M 2M" >/dev/null || fail "qemu-io write failed"
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after writes without compression"
[ "$(field "$pri_ctl" compression)" = none ] && [ "$(field "$pri_ctl" compression_active)" = false ] ||
    fail "a primary without --compress says otherwise: $(status "$pri_ctl")"
[ "$(field "$sec_ctl" compressed_frames)" = "$n1" ] ||
    fail "compressed frames arrived from a primary without --compress"
note "OK"
