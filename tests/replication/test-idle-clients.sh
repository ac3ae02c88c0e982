#!/usr/bin/env bash
# Connections that never finish the handshake must not be held forever.
# blkship-secondary (--heartbeat-timeout 2) gets two silent clients: one
# that opens TCP and sends nothing, one that completes mutual TLS with a
# valid certificate and then sends no hello.  Each must be closed by the
# secondary within the heartbeat timeout plus a margin (here 10 s);
# otherwise anyone who can reach the port can pin file descriptors and
# memory without authenticating (and a TLS-authenticated peer can sit in
# front of the hello indefinitely).  The replica stays untouched and a real
# session still works afterwards.
source "$(dirname "$0")/functions.sh"
requires_root
requires openssl
require_build
make_workdir

size=16M
bytes=$(numfmt --from=iec $size)
CERTS=$WORKDIR/pki
make_certs "$CERTS"
rep=$WORKDIR/replica.img
truncate -s $size "$rep"
start_secondary idle "$rep" --heartbeat-timeout 2
addr=$SEC_ADDR

creds=(--cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" --disk-bytes "$bytes")
# Both at once, each waiting at most 10 s for the secondary to let go.
"$REPL_PEER" --timeout 10 silent "$addr" >"$WORKDIR/silent.out" 2>&1 &
p1=$!
"$REPL_PEER" "${creds[@]}" --timeout 10 silent-tls "$addr" >"$WORKDIR/silent-tls.out" 2>&1 &
p2=$!
cleanup_fn kill_quiet "$p1" "$p2"
wait "$p1" || fail "repl-peer silent could not run: $(cat "$WORKDIR/silent.out")"
wait "$p2" || fail "repl-peer silent-tls could not run: $(cat "$WORKDIR/silent-tls.out")"
sed 's/^/    silent: /' "$WORKDIR/silent.out"
sed 's/^/    silent-tls: /' "$WORKDIR/silent-tls.out"
expect_alive "$SEC_PID" blkship-secondary
s=$(status "$SEC_CTL")
[ "$(jget "$s" written_bytes)" = 0 ] || fail "the replica was written: $s"

# A real session still works.
"$REPL_PEER" "${creds[@]}" --sector 8 --count 8 good "$addr" >"$WORKDIR/good.out" 2>&1 ||
    fail "repl-peer good could not run: $(cat "$WORKDIR/good.out")"
grep -q '^result: acked' "$WORKDIR/good.out" || fail "a valid session was not served: $(cat "$WORKDIR/good.out")"

bad=()
grep -q '^result: closed' "$WORKDIR/silent.out" ||
    bad+=("a TCP client that sends nothing was still connected 10 s later")
grep -q '^result: closed' "$WORKDIR/silent-tls.out" ||
    bad+=("a TLS client that sends no hello was still connected 10 s later")
[ ${#bad[@]} = 0 ] ||
    fail "$(printf '%s; ' "${bad[@]}")with --heartbeat-timeout 2 (secondary.c: on_tick times out only the accepted session; connections in ST_TLS and ST_HELLO have no deadline)"
