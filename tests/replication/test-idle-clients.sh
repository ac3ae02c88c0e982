#!/usr/bin/env bash
# Connections that never finish the handshake must not be held forever,
# nor keep the real primary out.
#
# Part 1: blkship-secondary (--handshake-timeout 2) gets two silent
# clients: one that opens TCP and sends nothing, one that completes mutual
# TLS with a valid certificate and then sends no hello.  Each must be
# closed by the secondary within the handshake timeout plus a margin (10 s);
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
start_secondary idle "$rep" --handshake-timeout 2
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
    fail "$(printf '%s; ' "${bad[@]}")with --handshake-timeout 2, a connection that has not finished its TLS handshake and hello within 2 s must be closed"
stop_pid "$SEC_PID"

# Part 2: 100 idle TCP connections held open against a secondary whose
# handshake timeout (60 s) will not rescue it, then the real primary
# (nbdkit with the writelog filter, blkship-primary) starts: it must get
# in and sync.  The secondary keeps at most 16 connections authenticating
# and drops the oldest for each newcomer, so at least 100 - 16 of the idle
# ones are closed, and the log says why.
note "100 idle connections held open, then the real primary"
img=$WORKDIR/disk.img
random_file "$img" $size 7
rep2=$WORKDIR/replica2.img
truncate -s $size "$rep2"
start_nbdkit "$WORKDIR" "idle$$" "$img"
start_secondary crowd "$rep2" --handshake-timeout 60
"$REPL_PEER" --count 100 --timeout 20 hold "$SEC_ADDR" >"$WORKDIR/hold.out" 2>&1 &
hold=$!
cleanup_fn kill_quiet "$hold"
_held() { grep -q '^held: 100$' "$WORKDIR/hold.out" || ! proc_alive "$hold"; }
poll_until 15 _held
grep -q '^held: 100$' "$WORKDIR/hold.out" || fail "repl-peer could not open 100 connections: $(tail -n 3 "$WORKDIR/hold.out")"
start_primary crowdpri "$WL_CTL" "$SEC_ADDR"
wait_synced "$PRI_CTL" 30
expect_same "$img" "$rep2" "the replica synced past 100 idle connections"
expect_log 'connections are still authenticating: dropping the oldest' "$SEC_LOG"
wait "$hold" || fail "repl-peer hold failed: $(tail -n 3 "$WORKDIR/hold.out")"
res=$(grep '^result:' "$WORKDIR/hold.out")
note "idle connections: $res"
[[ $res =~ ^result:\ held\ 100\ closed\ ([0-9]+)$ ]] || fail "repl-peer hold: $res"
[ "${BASH_REMATCH[1]}" -ge 84 ] ||
    fail "only ${BASH_REMATCH[1]} of 100 idle connections were closed: more than 16 are pending"
