#!/usr/bin/env bash
# Peer identity as docs/certificates.md promises it, with the real agents
# and real nbdkit:
#   1. --peer-name given as an IP address is matched against the peer's IP
#      subject alternative names: a secondary whose certificate carries
#      IP:$TEST_HOST (the test's own loopback address) is accepted and the
#      pair syncs; one whose certificate carries only DNS names is refused
#      ("IP address mismatch").
#   2. --crl on the primary: once the secondary's certificate is revoked,
#      the primary refuses it on the next handshake (without a restart:
#      the CRL file is re-read when it changes), logs "certificate
#      revoked", and sends nothing.
#   3. --crl on the secondary: a primary whose certificate was revoked
#      after the secondary started is refused and logged; nothing written.
#   4. A certificate that carries the expected name only as its subject CN,
#      with no subject alternative name, is refused: the CN is never read.
source "$(dirname "$0")/functions.sh"
requires_root
requires openssl
require_build
make_workdir

size=16M
bytes=$(numfmt --from=iec $size)
CERTS=$WORKDIR/pki
make_certs "$CERTS"
bash "$MKCERTS" "$CERTS" issue sec-ip "IP:$TEST_HOST" >/dev/null || fail "mkcerts issue sec-ip"
# CN "primary", no SAN, same CA.
mkdir -p "$WORKDIR/cn"
cp "$CERTS/ca.key" "$CERTS/ca.crt" "$WORKDIR/cn/"
bash "$MKCERTS" "$WORKDIR/cn" issue primary "" >/dev/null || fail "mkcerts issue primary (CN only)"
! openssl x509 -in "$WORKDIR/cn/primary.crt" -noout -ext subjectAltName 2>/dev/null | grep -q . ||
    fail "the CN-only certificate has a subject alternative name"

img=$WORKDIR/disk.img
random_file "$img" $size 1
start_nbdkit "$WORKDIR" "id$$" "$img"

# ---- 1. IP SAN --------------------------------------------------------------------------

note "1. --peer-name $TEST_HOST against a secondary certified for IP:$TEST_HOST"
rep=$WORKDIR/replica.img
truncate -s $size "$rep"
start_secondary ipsec "$rep" --cert "$CERTS/sec-ip.crt" --key "$CERTS/sec-ip.key" \
    --ca "$CERTS/ca.crt" --peer-name primary
ip_addr=$SEC_ADDR ip_sec_log=$SEC_LOG ip_sec_pid=$SEC_PID
start_primary pri "$WL_CTL" "$ip_addr" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
    --ca "$CERTS/ca.crt" --crl "$CERTS/ca.crl" --peer-name "$TEST_HOST"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$rep" "the replica of a secondary matched by its IP SAN"
stop_pid "$PRI_PID"

note "1b. --peer-name $TEST_HOST against a secondary certified only for DNS:secondary"
rep2=$WORKDIR/replica2.img
truncate -s $size "$rep2"
start_secondary dnssec "$rep2"
start_primary pri2 "$WL_CTL" "$SEC_ADDR" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
    --ca "$CERTS/ca.crt" --peer-name "$TEST_HOST"
expect_log 'IP address mismatch' "$PRI_LOG" 15
[ "$(field "$PRI_CTL" connected)" = false ] || fail "the primary connected to a secondary without the IP SAN"
[ "$(field "$SEC_CTL" written_bytes)" = 0 ] || fail "the DNS-only secondary was written"
stop_pid "$PRI_PID"
stop_pid "$SEC_PID"

# ---- 2. CRL on the primary ----------------------------------------------------------------

note "2. the secondary's certificate revoked while the primary runs with --crl"
start_primary pri "$WL_CTL" "$ip_addr" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
    --ca "$CERTS/ca.crt" --crl "$CERTS/ca.crl" --peer-name "$TEST_HOST"
wait_synced "$PRI_CTL" 30
sent0=$(field "$PRI_CTL" sent_bytes)
lines=$(log_lines "$PRI_LOG")
bash "$MKCERTS" "$CERTS" revoke sec-ip >/dev/null || fail "mkcerts revoke sec-ip"
# Drop the link: the next handshake must see the new CRL.
stop_pid "$ip_sec_pid"
start_secondary --port "${ip_addr##*:}" ipsec "$rep" --cert "$CERTS/sec-ip.crt" \
    --key "$CERTS/sec-ip.key" --ca "$CERTS/ca.crt" --peer-name primary
_revoked() { log_since "$PRI_LOG" "$lines" | grep -q 'certificate revoked'; }
poll_until 20 _revoked || fail "the primary did not refuse the revoked secondary; its log since: $(log_since "$PRI_LOG" "$lines")"
log_since "$PRI_LOG" "$lines" | grep -E 'reloaded|certificate revoked' | head -n 2 | sed 's/^/    primary: /'
[ "$(field "$PRI_CTL" connected)" = false ] || fail "the primary is connected to a revoked secondary"
[ "$(field "$SEC_CTL" written_bytes)" = 0 ] || fail "the revoked secondary received data"
stop_pid "$PRI_PID"
stop_pid "$SEC_PID"

# ---- 3. CRL on the secondary ----------------------------------------------------------------

note "3. the primary's certificate revoked while the secondary runs with --crl"
rep3=$WORKDIR/replica3.img
truncate -s $size "$rep3"
sum3=$(sha256sum <"$rep3")
start_secondary crlsec "$rep3" --crl "$CERTS/ca.crl"
peer_args=(--cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt"
           --disk-bytes "$bytes" --timeout 10)
out=$("$REPL_PEER" "${peer_args[@]}" handshake "$SEC_ADDR") || fail "repl-peer: $out"
grep -q '^result: welcome' <<<"$out" || fail "before the revocation the primary was not welcome: $out"
lines=$(log_lines "$SEC_LOG")
bash "$MKCERTS" "$CERTS" revoke primary >/dev/null || fail "mkcerts revoke primary"
out=$("$REPL_PEER" "${peer_args[@]}" --sector 0 --count 8 good "$SEC_ADDR") || fail "repl-peer: $out"
grep -Eq '^result: (tls-failed|closed)' <<<"$out" || fail "a revoked primary was served: $out"
_sec_revoked() { log_since "$SEC_LOG" "$lines" | grep -q 'TLS handshake with .* failed: .*certificate revoked'; }
poll_until 10 _sec_revoked || fail "the secondary did not log the revoked certificate: $(log_since "$SEC_LOG" "$lines")"
log_since "$SEC_LOG" "$lines" | grep 'certificate revoked' | head -n 1 | sed 's/^/    secondary: /'
[ "$(field "$SEC_CTL" written_bytes)" = 0 ] || fail "the secondary wrote data from a revoked primary"
[ "$(sha256sum <"$rep3")" = "$sum3" ] || fail "the replica changed"

# ---- 4. CN only ----------------------------------------------------------------------------------

note "4. a primary certificate with CN=primary and no subject alternative name"
lines=$(log_lines "$SEC_LOG")
out=$("$REPL_PEER" --cert "$WORKDIR/cn/primary.crt" --key "$WORKDIR/cn/primary.key" \
    --ca "$CERTS/ca.crt" --disk-bytes "$bytes" --timeout 10 handshake "$SEC_ADDR") ||
    fail "repl-peer: $out"
grep -Eq '^result: (tls-failed|closed)' <<<"$out" || fail "a CN-only certificate was accepted: $out"
_cn_refused() { log_since "$SEC_LOG" "$lines" | grep -q 'TLS handshake with .* failed: .*hostname mismatch'; }
poll_until 10 _cn_refused || fail "the secondary did not refuse the CN-only certificate for its name: $(log_since "$SEC_LOG" "$lines")"
expect_alive "$SEC_PID" blkship-secondary
