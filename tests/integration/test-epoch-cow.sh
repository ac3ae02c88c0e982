#!/usr/bin/env bash
# Point-in-time epochs through the real filter (docs/epochs.md, section 2).
# A disk with random contents; qemu-io writes through NBD; wlog-epochclient
# (wl_client, one connection kept open) seals and reads through the ring.
#   1. copy-before-write: the image is copied while no write runs, the
#      client seals, qemu-io overwrites every sealed grain, and the ring
#      reads of the epoch must be the copy byte for byte (then once more
#      with the writer running while the client reads);
#   2. adds: ranges the log never saw become pending at the next seal and
#      are protected the same way; a range outside the disk is refused;
#   3. a client that disconnects with unread grains breaks its epoch;
#   4. writelog-cow-max of one grain and writelog-cow-wait=50ms: a write
#      needing two copies breaks the epoch instead of stalling, the guest's
#      write completes within the bound, cowc and info report it, the
#      broken epoch's reads still answer, and a new seal is clean;
#      `blkship wlog cowc` and `info` show the breaks.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

EPOCHCLIENT=${EPOCHCLIENT:-${BLKSHIP_BUILD_DIR:-}/tests/integration/wlog-epochclient}
[ -x "$EPOCHCLIENT" ] || fail "EPOCHCLIENT=$EPOCHCLIENT does not exist: build the project first"

img=$WORKDIR/disk.img
head -c $((32 << 20)) /dev/urandom >"$img"
name=$(unique_name epoch)

# client_start: the scripted client on $CTL as a coprocess.
client_start() {
    coproc CLIENT { "$EPOCHCLIENT" "$CTL" 2>"$WORKDIR/client.err"; }
    CLIENT_PID=$CLIENT_PID
    cleanup_fn kill_quiet "$CLIENT_PID"
}

# ask CMD: sends one command, sets REPLY_LINE to its answer.
ask() {
    echo "$1" >&"${CLIENT[1]}"
    IFS= read -r -t 30 REPLY_LINE <&"${CLIENT[0]}" ||
        fail "no answer from the client to '$1' ($(cat "$WORKDIR/client.err"))"
    echo "   $1 -> $REPLY_LINE"
}

# field KEY: the value of KEY=VALUE in REPLY_LINE.
field() {
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$REPLY_LINE"
}

client_quit() {
    echo quit >&"${CLIENT[1]}"
    wait "$CLIENT_PID" || fail "the client exited with an error: $(cat "$WORKDIR/client.err")"
}

snapshot() {
    cp "$img" "$WORKDIR/$1"
}

overwrite() { # BYTE OFFSET LEN...
    local byte=$1 cmds=()
    shift
    while [ $# -gt 0 ]; do
        cmds+=("write -P $byte $1 $2")
        shift 2
    done
    qio "${cmds[@]}"
}

start_nbdkit "$WORKDIR" "$name" "$img"

note "1. a sealed epoch reads as the disk was at the seal while the guest overwrites it"
overwrite 0x11 1M 256K 8M 64K 20M 4K
snapshot at-seal-1.img
client_start
ask info
[ $(( $(field flags) & 2 )) = 2 ] || fail "info does not report copy-before-write enabled: $REPLY_LINE"
ask seal
[ "$(field extents)" = 3 ] || fail "seal: expected 3 extents: $REPLY_LINE"
[ "$(field flags)" = 0 ] || fail "seal: the epoch is flagged: $REPLY_LINE"
# Overwrite every sealed grain, and past the edges, before reading any.
overwrite 0xee 1020K 264K 8M 64K 20M 8K
cmp -s "$img" "$WORKDIR/at-seal-1.img" && fail "the overwrites did not reach the disk"
ask readcmp\ "$WORKDIR/at-seal-1.img"
[ "$REPLY_LINE" = "readcmp ok sectors=648" ] ||
    fail "ring reads of the sealed epoch are not the disk at the seal: $REPLY_LINE"
ask cowc
[ "$(field preserved)" -ge 81 ] || fail "cowc: expected at least 81 copies (one per grain overwritten): $REPLY_LINE"
[ "$(field breaks)" = 0 ] && [ "$(field flags)" = 0 ] || fail "cowc: epoch broken: $REPLY_LINE"
[ "$(field bytes_now)" = 0 ] || fail "cowc: copies left after every grain was read: $REPLY_LINE"
ask info
[ $(( $(field flags) & 1 )) = 0 ] || fail "info: epoch broken after a clean read: $REPLY_LINE"
ask next

note "1b. the same with the writer running during the reads"
snapshot at-seal-2.img
ask seal
[ "$(field extents)" = 3 ] || fail "second seal: expected the 3 overwritten extents: $REPLY_LINE"
qemu-io -f raw -c "write -P 0x77 1020K 264K" -c "write -P 0x78 8M 64K" -c "write -P 0x79 20M 8K" \
    -c "write -P 0x7a 1020K 264K" "$NBD_URI" >"$WORKDIR/writer.out" 2>&1 &
writer=$!
cleanup_fn kill_quiet "$writer"
ask readcmp\ "$WORKDIR/at-seal-2.img"
wait "$writer" || fail "the concurrent writer failed: $(cat "$WORKDIR/writer.out")"
[ "$REPLY_LINE" = "readcmp ok sectors=672" ] ||
    fail "ring reads racing the writer are not the disk at the seal: $REPLY_LINE"
ask next

# Drain what the concurrent writer left, so that the log is empty.
ask seal
ask next

note "2. adds: ranges become pending at the next seal and are protected"
ask "adds 99999999 8"
[ "$REPLY_LINE" = "adds error=22" ] || fail "adds outside the disk was not refused with EINVAL: $REPLY_LINE"
ask "adds 49152 128 0 0"
[ "$REPLY_LINE" = "adds error=22" ] || fail "adds with an empty range was not refused: $REPLY_LINE"
ask info
[ "$(field live)" = 0 ] || fail "a refused adds marked grains: $REPLY_LINE"
ask "adds 49152 128"
[ "$REPLY_LINE" = "adds extents=1 grains=16" ] || fail "adds: $REPLY_LINE"
snapshot at-seal-3.img
ask seal
ask extents
[ "$REPLY_LINE" = "extents 49152 128" ] || fail "the added range is not the sealed epoch: $REPLY_LINE"
overwrite 0x5c 24M 64K
ask readcmp\ "$WORKDIR/at-seal-3.img"
[ "$REPLY_LINE" = "readcmp ok sectors=128" ] || fail "the added range was not protected: $REPLY_LINE"
ask next

note "3. a client that goes away with unread grains breaks its epoch"
ask cowc
breaks0=$(field breaks)
overwrite 0x21 4M 8K
ask seal
sealed=$(field epoch)
client_quit
client_start
ask info
[ "$(field epoch)" = "$sealed" ] && [ $(( $(field flags) & 1 )) = 1 ] ||
    fail "epoch $sealed left unread by a client that went away is not flagged broken: $REPLY_LINE"
ask cowc
[ "$(field breaks)" -gt "$breaks0" ] && [ "$(field epoch)" = "$sealed" ] ||
    fail "cowc does not count the break: $REPLY_LINE"
ask seal
[ "$(field flags)" = 0 ] || fail "a new seal after the break is flagged: $REPLY_LINE"
client_quit
stop_nbdkit "$NBDKIT_PID"

note "4. a pool of one grain: the epoch breaks, the guest does not stall"
start_nbdkit --nbd-sock "$WORKDIR/nbd2.sock" "$WORKDIR" "$name" "$img" writelog-cow-max=4K writelog-cow-wait=50ms
overwrite 0x31 2M 16K
client_start
ask seal
[ "$(field extents)" = 1 ] || fail "tiny pool: seal: $REPLY_LINE"
t0=$(now_ms)
overwrite 0x32 2M 16K
elapsed=$(( $(now_ms) - t0 ))
[ "$elapsed" -lt 3000 ] || fail "a write needing 4 copies from a pool of 1 took $elapsed ms"
ask cowc
[ "$(field breaks)" -ge 1 ] && [ "$(field waits)" -ge 1 ] && [ $(( $(field flags) & 1 )) = 1 ] ||
    fail "cowc does not report the broken epoch: $REPLY_LINE"
[ "$(field bytes_now)" = 0 ] || fail "copies kept after the break: $REPLY_LINE"
ask info
[ $(( $(field flags) & 1 )) = 1 ] || fail "info does not flag the broken epoch: $REPLY_LINE"
ask readcmp\ "$img"
[[ $REPLY_LINE = "readcmp ok"* ]] || fail "ring reads of a broken epoch do not answer with the disk: $REPLY_LINE"
ask next
ask seal
[ "$(field extents)" = 1 ] && [ "$(field flags)" = 0 ] ||
    fail "the reseal after a break does not hold the grains cleanly: $REPLY_LINE"
client_quit
# That quit left the reseal's grains unread: broken too, as blkship wlog shows.
"$BLKSHIP" wlog cowc "$CTL" --json >"$WORKDIR/cowc.json" || fail "blkship wlog cowc --json failed"
grep -q '"broken": true' "$WORKDIR/cowc.json" && grep -q '"breaks": 2' "$WORKDIR/cowc.json" &&
    grep -q '"max_bytes": 4096' "$WORKDIR/cowc.json" || fail "wlog cowc --json: $(cat "$WORKDIR/cowc.json")"
"$BLKSHIP" wlog cowc "$CTL" | grep -q '^epoch  *2 BROKEN$' || fail "wlog cowc: $("$BLKSHIP" wlog cowc "$CTL")"
[ "$(info_field cow)" = true ] && [ "$(info_field broken)" = true ] ||
    fail "wlog info --json: $("$BLKSHIP" wlog info "$CTL" --json)"

note "5. bad parameters are refused at start-up"
for bad in writelog-cow-max=12Q writelog-cow-max=-1 writelog-cow-wait=0 writelog-cow-wait=5x \
    writelog-cow-max=1K; do
    expect_nbdkit_failure "$WORKDIR/bad.log" "$WORKDIR" "${name}bad" "$img" "$WORKDIR/bad.sock" "$bad"
    grep -q "writelog-cow" "$WORKDIR/bad.log" || fail "$bad: refused without naming the parameter: $(cat "$WORKDIR/bad.log")"
done
