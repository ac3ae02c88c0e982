#!/usr/bin/env bash
# `blkship wlog clrw` discards what the replica has not received, so it
# must ask first: without --force it exits 2, says how many extents and
# bytes it would forget and that the replica would silently diverge until
# a full resynchronisation, and leaves the log exactly as it was (same
# extents, same counts, same epoch).  With --force it clears.  Also: `wlog
# info --json` and `peek --json` are valid JSON with the log's values.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
requires python3
require_build
make_workdir

img=$WORKDIR/disk.img
truncate -s 64M "$img"
start_nbdkit "$WORKDIR" "$(unique_name clrw)" "$img"

# 3 extents of 4 KiB grains: 8 KiB + 4 KiB + 64 KiB = 76 KiB.
qio "write -P 0xc1 0 8192" "write -P 0xc2 1048576 100" "write -P 0xc3 8388608 65536"
wlog peek >"$WORKDIR/before"
expect_extents "peek after the writes" "$WORKDIR/before" "0 16
2048 8
16384 128
"
"$BLKSHIP" wlog info "$CTL" --json >"$WORKDIR/info-before.json"
python3 -c '
import json, sys
i = json.load(open(sys.argv[1]))
want = {"disk_sectors": 131072, "disk_bytes": 67108864, "grain_sectors": 8, "epoch": 0,
        "live_grains": 19, "pending_grains": 0}
bad = {k: (i.get(k), v) for k, v in want.items() if i.get(k) != v}
if bad or not isinstance(i.get("log_id"), str) or len(i["log_id"]) != 16:
    sys.exit("wlog info --json: %r (got, wanted): %r" % (bad, i))' "$WORKDIR/info-before.json" ||
    fail "wlog info --json is not valid JSON or not the expected values"
"$BLKSHIP" wlog peek "$CTL" --json | python3 -c '
import json, sys
p = json.load(sys.stdin)
got = [(e["sector"], e["count"]) for e in p["extents"]]
sys.exit(0 if got == [(0, 16), (2048, 8), (16384, 128)] and p["truncated"] is False else repr(p))' ||
    fail "wlog peek --json is not valid JSON or not the expected extents"

# Refused: exit 2, the loss spelt out, the log untouched.
rc=0
"$BLKSHIP" wlog clrw "$CTL" >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
[ "$rc" = 2 ] || fail "clrw without --force exited $rc, expected 2: $(cat "$WORKDIR/err")"
[ ! -s "$WORKDIR/out" ] || fail "clrw without --force printed on stdout: $(cat "$WORKDIR/out")"
grep -q 'refusing without --force' "$WORKDIR/err" || fail "clrw does not say it refuses: $(cat "$WORKDIR/err")"
grep -q 'holds 3 dirty extents, 76.0 KiB (77824 bytes)' "$WORKDIR/err" ||
    fail "clrw does not say what it would forget: $(cat "$WORKDIR/err")"
grep -q 'silently' "$WORKDIR/err" && grep -q 'fully' "$WORKDIR/err" && grep -q 'resynchronised' "$WORKDIR/err" ||
    fail "clrw does not warn that the replica diverges until a full resync: $(cat "$WORKDIR/err")"
note "clrw without --force: $(tr '\n' ' ' <"$WORKDIR/err")"
wlog peek >"$WORKDIR/after"
cmp -s "$WORKDIR/before" "$WORKDIR/after" ||
    fail "the refused clrw changed the log:"$'\n'"$(diff "$WORKDIR/before" "$WORKDIR/after")"
"$BLKSHIP" wlog info "$CTL" --json >"$WORKDIR/info-after.json"
cmp -s "$WORKDIR/info-before.json" "$WORKDIR/info-after.json" ||
    fail "the refused clrw changed the log's counts: $(cat "$WORKDIR/info-before.json") -> $(cat "$WORKDIR/info-after.json")"

# --force, before or after the socket, clears.
"$BLKSHIP" wlog clrw --force "$CTL" 2>"$WORKDIR/err" || fail "clrw --force failed: $(cat "$WORKDIR/err")"
grep -q 'forgot 3 dirty extents (76.0 KiB)' "$WORKDIR/err" || fail "clrw --force does not say what it forgot: $(cat "$WORKDIR/err")"
wlog peek >"$WORKDIR/cleared"
[ ! -s "$WORKDIR/cleared" ] || fail "peek after clrw --force is not empty: $(cat "$WORKDIR/cleared")"
[ "$(info_field live_grains)" = 0 ] || fail "live grains left after clrw --force"
qio "write -P 0xc4 4096 512"
"$BLKSHIP" wlog clrw "$CTL" --force 2>/dev/null || fail "clrw SOCKET --force failed"
wlog peek >"$WORKDIR/cleared2"
[ ! -s "$WORKDIR/cleared2" ] || fail "peek after clrw SOCKET --force is not empty: $(cat "$WORKDIR/cleared2")"

# The data itself was never touched.
qio "read -P 0xc1 0 4096" "read -P 0xc3 8388608 65536" "read -P 0xc4 4096 512"
