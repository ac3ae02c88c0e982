#!/usr/bin/env bash
# An ACK means durable, even when the replica's writes are slow: a power
# cut of the replica right after an ACK loses nothing it covers.
#
# The replica is the volatile-cache store (tests/powerloss/volatile.sh)
# with every write, zero and trim delayed 100 ms before it reaches the
# cache (VOL_SLOW), so that a flush started before the writes ahead of it
# have completed returns first and covers none of them.  repl-peer, a
# stand-in primary, sends one exchange per case and waits for ACK 1; the
# store's power is cut as soon as the ACK is in, the secondary killed -9,
# and the backing file must hold the exchange exactly:
#   zero:  one ZERO from sector 7 to 3 sectors past 200 MiB (four 64 MiB
#          pieces, each applied after the one before it), then FLUSH 1;
#   data:  one DATA frame of 1 MiB (the default maximum payload) at 1 GiB
#          minus 1 MiB, then FLUSH 1.
# Outside the range, the backing file keeps its junk.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/../powerloss/volatile.sh"
requires_volatile
requires openssl
require_build
make_workdir

CERTS=$WORKDIR/pki
make_certs "$CERTS"
size=1G
bytes=$(numfmt --from=iec $size)
junk=$WORKDIR/junk.img
random_file "$junk" 256M "ack-junk-$$"
truncate -s $size "$junk"
dd if="$junk" of="$junk" bs=1M count=1 seek=1023 conv=notrunc status=none

# run_case NAME EXPECTED PEER-ARGS...: one exchange against a fresh store
# on a copy of the junk, a power cut right after the ACK, and the backing
# file compared with EXPECTED.
run_case() {
    local name=$1 expected=$2 backing=$WORKDIR/$1.backing out
    shift 2
    cp "$junk" "$backing"
    VOL_SLOW=100 vol_start "$name" "$backing"
    start_secondary "$name" "$VOL_FILE"
    out=$("$REPL_PEER" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
        --disk-bytes "$bytes" --timeout 60 "$@" "$SEC_ADDR" 2>&1) ||
        fail "$name: repl-peer could not run:"$'\n'"$out"
    grep -q '^result: acked$' <<<"$out" || fail "$name: the FLUSH was not acknowledged:"$'\n'"$out"
    vol_cut "$name"
    kill9 "$SEC_PID"
    vol_teardown "$name"
    note "$name: acknowledged; power cut right after the ACK"
    expect_same "$expected" "$backing" "$name: the replica's backing file after a power cut right after the ACK"
    ! log_has 'error' "$SEC_LOG" || fail "$name: the secondary logged an error: $(grep error "$SEC_LOG")"
}

first=7
end=$(((200 << 20) / 512 + 3))
cp "$junk" "$WORKDIR/zero.expected"
dd if=/dev/zero of="$WORKDIR/zero.expected" bs=512 seek=$first count=$((end - first)) conv=notrunc status=none
run_case zero "$WORKDIR/zero.expected" --sector $first --count $((end - first)) zero

sector=$(((bytes - (1 << 20)) / 512))
cp "$junk" "$WORKDIR/data.expected"
# repl-peer's pattern: every byte of the payload is the --pattern value.
head -c 1M /dev/zero | tr '\0' '\132' |
    dd of="$WORKDIR/data.expected" bs=512 seek="$sector" conv=notrunc status=none
run_case data "$WORKDIR/data.expected" --sector "$sector" --count 2048 --pattern 0x5a good
