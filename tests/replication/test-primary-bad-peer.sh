#!/usr/bin/env bash
# Bad input to blkship-primary: a secondary whose certificate it must not
# accept.  After an initial sync (64 MiB), the real secondary stops and
# 4 MiB are written through NBD; the primary drains them from the log into
# its dirty bitmap (dirty_bytes = 4 MiB).  Then, on the same address, an
# impostor secondary presents in turn
#   - a certificate from another CA,
#   - a valid certificate of the right CA named "primary", not "secondary",
#   - an expired certificate of the right CA.
# Each time the primary must log a TLS verification failure with the
# reason, stay disconnected, keep every dirty bit (dirty_bytes unchanged),
# and send nothing to the impostor (its replica stays zeroes).  Then a
# secondary with valid credentials but another replica identity (a fresh
# state directory) must refuse the hello and get nothing either.  Finally
# the real secondary comes back and the replica converges to the image.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
requires_fio_nbd
require_build
make_workdir

size=64M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
fake=$WORKDIR/impostor.img
random_file "$img" $size "pb-$$"
truncate -s $size "$rep" "$fake"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
make_certs "$WORKDIR/other"
mkdir -p "$WORKDIR/expired"
cp "$CERTS/ca.key" "$CERTS/ca.crt" "$WORKDIR/expired/"
make_certs "$WORKDIR/expired" 0

start_nbdkit "$WORKDIR" "rtpb$$" "$img"
start_secondary sec "$rep"
port=$SEC_PORT addr=$SEC_ADDR
start_primary pri "$WL_CTL" "$addr"
pri_ctl=$PRI_CTL pri_log=$PRI_LOG pri_pid=$PRI_PID
wait_synced "$pri_ctl" 60
expect_same "$img" "$rep" "replica after the initial sync"
stop_pid "$SEC_PID"

# 4 MiB written while no secondary is there.
fio --thread --name=w --ioengine=nbd --uri="$NBD_URI" --rw=write --bs=1m --offset=8m --size=4m \
    --output="$WORKDIR/fio.out" || fail "fio failed: $(tail -n 20 "$WORKDIR/fio.out")"
_dirty_4m() { [ "$(field "$pri_ctl" dirty_bytes)" = $((4 << 20)) ]; }
poll_until 20 _dirty_4m || fail "the 4 MiB written did not become dirty: $(status "$pri_ctl")"
sent0=$(field "$pri_ctl" sent_bytes)
fake_sum=$(sha256sum <"$fake")

# impostor NAME REASON_REGEX CERT KEY: runs the impostor until the primary
# has failed against it, and checks that nothing changed.
impostor() {
    local name=$1 re=$2 cert=$3 key=$4 lines s
    note "impostor: $name"
    lines=$(log_lines "$pri_log")
    start_secondary --port "$port" fake "$fake" --cert "$cert" --key "$key" --ca "$CERTS/ca.crt" \
        --peer-name primary
    _rejected() { log_since "$pri_log" "$lines" | grep -Eq -- "$re"; }
    # The primary retries with a back-off of at most 5 s.
    poll_until 20 _rejected || fail "$name: the primary logged no TLS failure matching '$re'; it says:"$'\n'"$(log_since "$pri_log" "$lines")"
    log_since "$pri_log" "$lines" | grep -E -- "$re" | head -n 1 | sed 's/^/    primary: /'
    s=$(status "$pri_ctl")
    [ "$(jget "$s" connected)" = false ] || fail "$name: the primary is connected to the impostor: $s"
    [ "$(jget "$s" dirty_bytes)" = $((4 << 20)) ] || fail "$name: the primary's dirty bits changed: $s"
    [ "$(jget "$s" sent_bytes)" = "$sent0" ] || fail "$name: the primary sent data: $s"
    s=$(status "$SEC_CTL")
    [ "$(jget "$s" written_bytes)" = 0 ] && [ "$(jget "$s" received_bytes)" = 0 ] ||
        fail "$name: the impostor received data: $s"
    [ "$(sha256sum <"$fake")" = "$fake_sum" ] || fail "$name: the impostor's replica changed"
    expect_alive "$pri_pid" blkship-primary
    stop_pid "$SEC_PID"
}

impostor "certificate from another CA" \
    'TLS handshake with .* failed: .*certificate verify failed.*unable to get local issuer certificate' \
    "$WORKDIR/other/secondary.crt" "$WORKDIR/other/secondary.key"
impostor "certificate of the right CA named \"primary\"" \
    'TLS handshake with .* failed: .*certificate verify failed.*hostname mismatch' \
    "$CERTS/primary.crt" "$CERTS/primary.key"
impostor "expired certificate of the right CA" \
    'TLS handshake with .* failed: .*certificate verify failed.*certificate has expired' \
    "$WORKDIR/expired/secondary.crt" "$WORKDIR/expired/secondary.key"

# A secondary that is not the paired replica (a new state directory: a new
# replica identity, as after a reinstall): it refuses the hello naming the
# old replica, and the primary sends it nothing; shipping deltas to a
# replica that never had the base would corrupt it silently.
note "a secondary with another replica identity"
lines=$(log_lines "$pri_log")
start_secondary --port "$port" stranger "$fake"
_refused() { log_since "$pri_log" "$lines" | grep -q 'the secondary refused the session: wrong replica'; }
poll_until 20 _refused ||
    fail "the primary did not log a refusal by the unpaired replica; it says:"$'\n'"$(log_since "$pri_log" "$lines")"
expect_log 'refusing primary .*: wrong replica' "$SEC_LOG"
s=$(status "$pri_ctl")
[ "$(jget "$s" dirty_bytes)" = $((4 << 20)) ] && [ "$(jget "$s" sent_bytes)" = "$sent0" ] ||
    fail "the primary's dirty or sent bytes changed against an unpaired replica: $s"
[ "$(field "$SEC_CTL" written_bytes)" = 0 ] || fail "the unpaired replica was written"
[ "$(sha256sum <"$fake")" = "$fake_sum" ] || fail "the unpaired replica changed"
stop_pid "$SEC_PID"

# The real secondary again: the 4 MiB arrive, and only they.
start_secondary --port "$port" sec "$rep"
wait_synced "$pri_ctl" 60
expect_same "$img" "$rep" "replica after the real secondary came back"
s=$(status "$pri_ctl")
[ $(($(jget "$s" sent_bytes) - sent0)) = $((4 << 20)) ] ||
    fail "after the impostors, $(($(jget "$s" sent_bytes) - sent0)) bytes were sent; 4 MiB were dirty: $s"
