#!/usr/bin/env bash
# Online verify (docs/verify.md): `blkship verify` compares the replica with
# the primary's disk by block checksums while replication runs.  The replica
# is a loop device over a file; the write log's reads are slowed (nbdkit's
# delay filter, 50 ms a read) so that a verify batch takes long enough for
# an epoch to fall due while its reads are out: that seal must wait.
#   1. In sync and idle: identical (exit 0), the whole disk compared; with
#      --rate the status shows it running with its progress.
#   2. Three ranges corrupted behind the secondary's back (written straight
#      into the loop device's backing file: 64 KiB at 1 MiB, 4 KiB at
#      10 MiB + 4 KiB, 128 KiB at 20 MiB): exit 1 and exactly those ranges,
#      in the human output and in the JSON; --on-out-of-sync runs (and
#      did not for the identical replica).
#   3. The same under a fio load writing random 4 KiB blocks over the disk's
#      second half: still exactly those three ranges (no write in flight is
#      reported), and blocks were checked again (the load did meet it).
#   4. --repair under the load: the ranges are marked dirty and resent; once
#      the load stops and the replica has caught up, verify says identical
#      and the replica equals the disk byte for byte.
#   5. A verify asked for while the link is down runs once it is back, in
#      pieces within the smaller payload limit the new link agrees.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires losetup
requires_fio_nbd
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
back=$WORKDIR/replica.img
random_file "$img" $size "vf-$$"
truncate -s $size "$back"
make_loop "$back"
dev=$LOOP
CERTS=$WORKDIR/pki
make_certs "$CERTS"
NBDKIT_BELOW=delay start_nbdkit "$WORKDIR" "rtvf$$" "$img" delay-read=50ms
start_secondary sec "$dev" --max-payload 256K  # below the primary's 512K: pieces follow the agreed limit
hook=$WORKDIR/hook.sh
printf '#!/bin/sh\nenv | grep "^BLKSHIP_" | sort >>"%s/hook.env"\n' "$WORKDIR" >"$hook"
chmod +x "$hook"
start_primary pri "$WL_CTL" "$SEC_ADDR" --on-out-of-sync "$hook"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$dev" "the replica after the first sync"

# ---- 1 ------------------------------------------------------------------------------
out=$("$BLKSHIP" verify --control "$PRI_CTL" 2>&1) || fail "1: verify of a replica in sync: $out"
[[ $out == "verify: identical: 67108864 bytes compared"* ]] || fail "1: $out"
[ ! -e "$WORKDIR/hook.env" ] || fail "1: the out-of-sync hook ran for an identical replica"
note "1: $out"
"$BLKSHIP" verify --control "$PRI_CTL" --rate 16M --json >"$WORKDIR/v1.json" 2>&1 &
vpid=$!
_running() {
    local s
    s=$(status "$PRI_CTL") || return 1
    [[ $s == *'"verify": { "running": true'* ]] && [[ $s == *'"percent": '* ]] && [[ $s == *'"eta_seconds": '* ]]
}
poll_until 10 _running || fail "1: the status does not show the verify running: $(status "$PRI_CTL")"
wait "$vpid" || fail "1: the rate-limited verify: $(cat "$WORKDIR/v1.json")"
ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["elapsed_ms"])' "$WORKDIR/v1.json")
[ "$ms" -ge 3000 ] || fail "1: 64 MiB at 16 MiB/s took $ms ms"
note "1: at --rate 16M: $ms ms"

# ---- 2 ------------------------------------------------------------------------------
corrupt() { # OFFSET LENGTH, straight into the backing file
    python3 -c '
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(os.urandom(int(sys.argv[3]))); os.fsync(f.fileno())' "$back" "$1" "$2"
}
corrupt $((1 << 20)) 65536
corrupt $(((10 << 20) + 4096)) 4096
corrupt $((20 << 20)) 131072
want='[(1048576, 65536), (10489856, 4096), (20971520, 131072)]'
ranges() {
    python3 -c 'import json,sys; print([(r["offset"], r["length"]) for r in json.load(open(sys.argv[1]))["ranges"]])' "$1"
}
if out=$("$BLKSHIP" verify --control "$PRI_CTL" 2>&1); then fail "2: verify found nothing: $out"; else rc=$?; fi
[ "$rc" = 1 ] || fail "2: verify exited $rc, not 1: $out"
for r in "offset 1048576 length 65536" "offset 10489856 length 4096" "offset 20971520 length 131072"; do
    grep -q "^  differs: $r$" <<<"$out" || fail "2: no '$r' in: $out"
done
[ "$(grep -c '^  differs:' <<<"$out")" = 3 ] || fail "2: more than the three ranges: $out"
_hooked() { [ -s "$WORKDIR/hook.env" ]; }
poll_until 10 _hooked || fail "2: the out-of-sync hook did not run"
grep -qx 'BLKSHIP_EVENT=out-of-sync' "$WORKDIR/hook.env" && grep -qx 'BLKSHIP_ROLE=primary' "$WORKDIR/hook.env" &&
    grep -q '^BLKSHIP_REASON=verify: 200704 bytes in 3 range(s) differ$' "$WORKDIR/hook.env" ||
    fail "2: the out-of-sync hook had: $(cat "$WORKDIR/hook.env")"
note "2: $(head -n 1 <<<"$out"); the out-of-sync hook ran"

# ---- 3 ------------------------------------------------------------------------------
fio --thread --name=load --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=4k --iodepth=4 \
    --rate=8m --offset=32m --size=32m --time_based --runtime=60 --output="$WORKDIR/fio.out" \
    2>"$WORKDIR/fio.err" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid" 5
_loaded() { [ "$(field "$PRI_CTL" sent_bytes)" -gt "$1" ]; }
poll_until 20 _loaded "$(field "$PRI_CTL" sent_bytes)" || fail "3: the fio load does not reach the replica"
"$BLKSHIP" verify --control "$PRI_CTL" --json >"$WORKDIR/v3.json" 2>&1 && fail "3: verify found nothing under load: $(cat "$WORKDIR/v3.json")"
[ "$(ranges "$WORKDIR/v3.json")" = "$want" ] ||
    fail "3: under the load verify reported $(ranges "$WORKDIR/v3.json"), not $want: $(cat "$WORKDIR/v3.json")"
rechecked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rechecked_blocks"])' "$WORKDIR/v3.json")
[ "$rechecked" -gt 0 ] || fail "3: no block was checked again: the load did not meet the verify: $(cat "$WORKDIR/v3.json")"
held=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["verify"]["seals_held"])' "$(status "$PRI_CTL")")
[ "$held" -gt 0 ] || fail "3: no seal waited for a verify batch's reads: $(status "$PRI_CTL")"
note "3: under load, exactly the three ranges; $rechecked blocks checked again; seals waited $held times"

# ---- 4 ------------------------------------------------------------------------------
"$BLKSHIP" verify --control "$PRI_CTL" --repair --json >"$WORKDIR/v4.json" 2>&1 && fail "4: verify --repair found nothing: $(cat "$WORKDIR/v4.json")"
[ "$(ranges "$WORKDIR/v4.json")" = "$want" ] || fail "4: verify --repair reported $(ranges "$WORKDIR/v4.json")"
grep -q '"repaired": true' "$WORKDIR/v4.json" || fail "4: not repaired: $(cat "$WORKDIR/v4.json")"
stop_pid "$fio_pid" 5
wait_synced "$PRI_CTL" 60
out=$("$BLKSHIP" verify --control "$PRI_CTL" 2>&1) || fail "4: after the repair: $out"
expect_same "$img" "$dev" "4: the replica after the repair"
note "4: repaired: $out"

# ---- 5 ------------------------------------------------------------------------------
# A verify asked for while the link is down runs once it is back, in pieces
# within the limit the new link agrees (128K here, below the last one's).
port=$SEC_PORT
stop_pid "$SEC_PID"
_down() { [ "$(field "$PRI_CTL" connected)" = false ]; }
poll_until 20 _down || fail "5: the primary still shows the link up"
"$BLKSHIP" verify --control "$PRI_CTL" --timeout 120s --json >"$WORKDIR/v5.json" 2>&1 &
vpid=$!
sleep 1
start_secondary --port "$port" sec "$dev" --max-payload 128K
wait "$vpid" || fail "5: verify across the reconnect: $(cat "$WORKDIR/v5.json")"
grep -q '"identical": true' "$WORKDIR/v5.json" || fail "5: $(cat "$WORKDIR/v5.json")"
! grep -q 'bad frame' "$SEC_LOG" || fail "5: the secondary rejected a frame: $(grep 'bad frame' "$SEC_LOG")"
note "5: a verify asked for with the link down ran after it came back"
