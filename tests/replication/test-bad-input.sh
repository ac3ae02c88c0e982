#!/usr/bin/env bash
# Bad input to blkship-secondary, from repl-peer (a stand-in primary built
# on the project's encoders, TLS 1.3 with plain blocking OpenSSL).
#
# First the control: against a secondary of its own, a valid DATA frame and
# a FLUSH get an ACK and the data lands (so the peer is correct and the
# refusals below mean something).
#
# Then, against one secondary (--max-payload 65536) whose replica is a 64
# MiB file of zeroes, each case must leave NOTHING written (the file's
# sha256 unchanged, written_bytes and received_bytes 0), be logged with its
# reason, and leave the secondary serving:
#   TLS:   a plaintext client; a certificate from another CA; an expired
#          certificate of the right CA; a valid certificate of the right CA
#          with the wrong name; no certificate at all.  None of them gets as
#          far as the hello: the replica stays unpaired.
#   hello: a wrong magic; a disk of another size (refused with status 2,
#          and no pairing recorded).
#   frames, after an accepted hello: a header beyond the disk's end; a
#          header whose sector + count wraps past 2^64; count 0; a count one
#          sector over the negotiated payload limit; a payload whose CRC32C
#          does not match; a header of an unknown kind; an ACK header (only
#          the secondary sends those); a DATA header with count 2^32-1; 64 KiB
#          of random bytes (each answered with an ERROR frame and counted in
#          bad_frames); a frame cut off mid-payload, with and without
#          close_notify, and by a TCP reset.
#   pairing: a hello from a primary of another identity (refused, status 4).
# Last, a valid hello still gets a welcome: the secondary survived it all.
source "$(dirname "$0")/functions.sh"
requires_root
requires openssl
require_build
make_workdir

size=64M
bytes=$(numfmt --from=iec $size)
CERTS=$WORKDIR/pki
make_certs "$CERTS"
# Another CA, with certificates carrying the right names.
make_certs "$WORKDIR/other"
# Expired certificates signed by the right CA.
mkdir -p "$WORKDIR/expired"
cp "$CERTS/ca.key" "$CERTS/ca.crt" "$WORKDIR/expired/"
make_certs "$WORKDIR/expired" 0
! openssl x509 -checkend 0 -noout -in "$WORKDIR/expired/primary.crt" >/dev/null ||
    fail "mkcerts.sh DIR 0 made a certificate that has not expired"
openssl verify -CAfile "$CERTS/ca.crt" -no_check_time "$WORKDIR/expired/primary.crt" >/dev/null ||
    fail "the expired certificate is not signed by the test CA"

# peer [OPTIONS] CASE ADDR: repl-peer with the right primary credentials
# unless OPTIONS replace them; its output in PEER_OUT, also shown.
peer() {
    local creds=(--cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt")
    local a
    for a in "$@"; do
        case $a in --cert | --no-cert) creds=(--ca "$CERTS/ca.crt") ;; esac
    done
    PEER_OUT=$("$REPL_PEER" "${creds[@]}" --disk-bytes "$bytes" --timeout 10 "$@") ||
        fail "repl-peer $* could not run:"$'\n'"$PEER_OUT"
    sed 's/^/    peer: /' <<<"$PEER_OUT" | grep -v 'recv: HEARTBEAT'
}

expect_result() {
    grep -Eq "^result: $1\$" <<<"$PEER_OUT" || fail "repl-peer: expected 'result: $1', got: $(grep '^result' <<<"$PEER_OUT")"
}

# ---- The control: a valid frame lands and is acknowledged ------------------------

good_rep=$WORKDIR/good.img
truncate -s $size "$good_rep"
start_secondary good "$good_rep"
good_ctl=$SEC_CTL
note "control: a valid DATA frame (16 sectors of 0xa5 at sector 2048) and FLUSH 1"
peer --sector 2048 --count 16 --pattern 0xa5 good "$SEC_ADDR"
expect_result acked
truncate -s $size "$WORKDIR/expected.img"
head -c 8192 /dev/zero | tr '\0' '\245' |
    dd of="$WORKDIR/expected.img" bs=512 seek=2048 conv=notrunc status=none
expect_same "$WORKDIR/expected.img" "$good_rep" "the control frame's data on its replica"
s=$(status "$good_ctl")
[ "$(jget "$s" written_bytes)" = 8192 ] && [ "$(jget "$s" received_bytes)" = 8192 ] &&
    [ "$(jget "$s" acked_bytes)" = 8192 ] && [ "$(jget "$s" bad_frames)" = 0 ] ||
    fail "the control secondary's counters are not one 8 KiB frame, durable: $s"
# Version 5 with compressed frames: an epoch of two ZDATA frames (32
# sectors of 0x11 from sector 4096) is committed and lands.
note "control: an epoch of two compressed (ZDATA) frames, version 5"
peer --proto-version 5 --compress --sector 4096 --count 16 --epochs 1 --frames 2 epochs "$SEC_ADDR"
expect_result 'committed 1'
grep -q '^welcome: flags 0x4$' <<<"$PEER_OUT" || fail "the welcome did not agree to compressed frames"
head -c 16384 /dev/zero | tr '\0' '\021' |
    dd of="$WORKDIR/expected.img" bs=512 seek=4096 conv=notrunc status=none
expect_same "$WORKDIR/expected.img" "$good_rep" "the compressed frames' data on the replica"
s=$(status "$good_ctl")
[ "$(jget "$s" compressed_frames)" = 2 ] && [ "$(jget "$s" compressed_raw_bytes)" = 16384 ] &&
    [ "$(jget "$s" compressed_wire_bytes)" -lt 1024 ] ||
    fail "the secondary did not count two compressed frames of 8 KiB each: $s"
stop_pid "$SEC_PID"

# ---- The target of the bad input ------------------------------------------------------

rep=$WORKDIR/replica.img
truncate -s $size "$rep"
sum0=$(sha256sum <"$rep")
start_secondary neg "$rep" --max-payload 65536
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG addr=$SEC_ADDR
zero_id=00000000000000000000000000000000
bad_frames=0

# nothing_written: the replica untouched, the secondary alive and counting.
nothing_written() {
    local s
    expect_alive "$sec_pid" blkship-secondary
    s=$(status "$sec_ctl") || fail "the secondary does not answer its control socket"
    [ "$(jget "$s" written_bytes)" = 0 ] && [ "$(jget "$s" received_bytes)" = 0 ] ||
        fail "$1: the secondary wrote or accepted data: $s"
    [ "$(jget "$s" bad_frames)" = "$bad_frames" ] ||
        fail "$1: bad_frames is $(jget "$s" bad_frames), expected $bad_frames: $s"
    [ "$(sha256sum <"$rep")" = "$sum0" ] || fail "$1: the replica changed"
    STATUS=$s
}

# case_run NAME LOG_REGEX PEER_ARGS...: runs the peer, then expects the
# secondary's log (the part written since) to match LOG_REGEX and nothing
# written.
case_run() {
    local name=$1 re=$2 lines
    shift 2
    note "$name"
    lines=$(log_lines "$sec_log")
    peer "$@"
    _logged() { log_since "$sec_log" "$lines" | grep -Eq -- "$re"; }
    poll_until 10 _logged || fail "$name: the secondary's log has no line matching '$re'; it says:"$'\n'"$(log_since "$sec_log" "$lines")"
    log_since "$sec_log" "$lines" | grep -E -- "$re" | head -n 2 | sed 's/^/    secondary: /'
    nothing_written "$name"
}

# ---- TLS ------------------------------------------------------------------------------

case_run "plaintext client" 'TLS handshake with .* failed' plain "$addr"
expect_result closed
case_run "certificate from another CA" \
    'TLS handshake with .* failed: .*certificate verify failed.*(unable to get local issuer|unable to verify)' \
    --cert "$WORKDIR/other/primary.crt" --key "$WORKDIR/other/primary.key" handshake "$addr"
expect_result tls-failed
case_run "expired certificate" 'TLS handshake with .* failed: .*certificate has expired' \
    --cert "$WORKDIR/expired/primary.crt" --key "$WORKDIR/expired/primary.key" handshake "$addr"
expect_result tls-failed
# The secondary's own certificate: the right CA, but named "secondary".
case_run "valid certificate with the wrong name" 'TLS handshake with .* failed: .*hostname mismatch' \
    --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" handshake "$addr"
expect_result tls-failed
case_run "no client certificate" 'TLS handshake with .* failed: .*(did not return a certificate|certificate required)' \
    --no-cert handshake "$addr"
expect_result tls-failed
[ "$(jget "$STATUS" primary_id)" = "$zero_id" ] ||
    fail "a peer that failed TLS authentication got the replica paired: $STATUS"

# ---- Hello -------------------------------------------------------------------------------

case_run "hello with a wrong magic" 'bad magic' bad-magic "$addr"
case_run "hello for a disk of another size" 'refusing primary .*: disk of another size' size "$addr"
expect_result 'refused 2'
[ "$(jget "$STATUS" primary_id)" = "$zero_id" ] || fail "a refused hello got the replica paired: $STATUS"

# ---- Frames after an accepted hello ----------------------------------------------------

bad_frames=1
case_run "DATA header beyond the disk's end" 'bad frame .*: extent beyond the end of the disk; nothing applied' \
    beyond-end "$addr"
expect_result 'error-frame 8'  # BSR_E_PROTOCOL
[ "$(jget "$STATUS" primary_id)" != "$zero_id" ] || fail "an accepted hello did not pair the replica"
bad_frames=2
case_run "ZERO header whose sector + count wraps" 'bad frame .*: extent beyond the end of the disk' wrap "$addr"
expect_result 'error-frame 8'  # BSR_E_PROTOCOL
bad_frames=3
case_run "DATA header with count 0" 'bad frame .*: extent with count 0' count0 "$addr"
expect_result 'error-frame 8'  # BSR_E_PROTOCOL
bad_frames=4
case_run "DATA header one sector over the 64 KiB payload limit" \
    'bad frame .*count 129 .*: count over the negotiated payload limit' over-limit "$addr"
expect_result 'error-frame 8'  # BSR_E_PROTOCOL
bad_frames=5
case_run "DATA frame with a bad CRC32C" 'bad frame .*: CRC32C of the payload does not match' \
    --sector 64 --count 16 bad-crc "$addr"
expect_result 'error-frame 8'  # BSR_E_PROTOCOL
case_run "frame truncated mid-payload (close_notify)" 'ended: closed by the primary in the middle of a frame' \
    --sector 64 --count 16 truncated "$addr"
expect_result sent
case_run "frame truncated mid-payload (no close_notify)" 'session with .* ended: connection lost in the middle of a frame \(truncated frame\)' \
    --sector 64 --count 16 truncated-abrupt "$addr"
expect_result sent

bad_frames=6
case_run "header of an unknown kind" 'bad frame .*kind 14\): unknown frame kind' unknown-kind "$addr"
expect_result 'error-frame 8'
bad_frames=7
case_run "ACK header from the primary" 'bad frame .*: acknowledgement from the primary' \
    wrong-direction "$addr"
expect_result 'error-frame 8'
bad_frames=8
case_run "DATA header with count 2^32-1" \
    'bad frame .*count 4294967295 .*: count over the negotiated payload limit' huge-count "$addr"
expect_result 'error-frame 8'
bad_frames=9
case_run "64 KiB of random bytes after the welcome" 'bad frame .*nothing applied' garbage "$addr"
expect_result '(error-frame 8|closed)'
case_run "frame cut off by a TCP reset" 'session with .* ended' --sector 64 --count 16 reset "$addr"
expect_result sent

# Version 5: the trailer covers the header of a data frame (TLS vouches for
# the payload), and is still checked; compressed frames are checked before
# anything is written.
bad_frames=10
case_run "version 5 DATA frame with a bad CRC32C" 'bad frame .*: CRC32C of the payload does not match' \
    --proto-version 5 --sector 64 --count 16 bad-crc "$addr"
expect_result 'error-frame 8'
bad_frames=11
case_run "compressed frame in a session that did not offer them" \
    'bad frame .*kind 13\): compressed data frame in a session that did not agree' \
    --proto-version 5 --sector 64 --count 16 zdata-unagreed "$addr"
expect_result 'error-frame 8'
bad_frames=12
case_run "compressed payload that is not zstd" 'bad frame .*: compressed payload is not a zstd frame' \
    --proto-version 5 --compress --sector 64 --count 16 zdata-garbage "$addr"
expect_result 'error-frame 8'
bad_frames=13
case_run "compressed payload of 1000 bytes" 'bad frame .*: compressed payload.s size is not whole sectors' \
    --proto-version 5 --compress --sector 64 --count 16 zdata-odd "$addr"
expect_result 'error-frame 8'
bad_frames=14
case_run "compressed payload over the payload limit" \
    'bad frame .*: compressed payload.s size is not whole sectors within the payload limit' \
    --proto-version 5 --compress --sector 64 --count 16 zdata-big "$addr"
expect_result 'error-frame 8'
bad_frames=15
case_run "compressed frame running past the disk's end" \
    'bad frame .*: compressed data beyond the end of the disk' \
    --proto-version 5 --compress zdata-beyond "$addr"
expect_result 'error-frame 8'
bad_frames=16
case_run "compressed payload with bytes after its frame" \
    'bad frame .*: compressed payload is not exactly one zstd frame' \
    --proto-version 5 --compress --sector 64 --count 16 zdata-trailing "$addr"
expect_result 'error-frame 8'

# ---- Pairing -----------------------------------------------------------------------------

# The replica is paired with repl-peer's default identity by now.
case_run "hello from another primary" 'refusing primary .*: replica paired with another primary' \
    --primary-id 0123456789abcdef0123456789abcdef handshake "$addr"
expect_result 'refused 4'

# ---- Still serving -------------------------------------------------------------------------

case_run "a valid hello after all that" 'primary .* connected' handshake "$addr"
expect_result welcome
note "secondary after every case: $STATUS"
