#!/usr/bin/env bash
# One port for many resources (docs/resources.md): blkship-listener routes
# each connection by the resource name in its TLS ClientHello to the
# blkship-secondary that registered it (--listener), which does TLS and
# everything after as if it had accepted it.
#  1. Three resources behind one listener, each primary naming its own:
#     all three converge, each replica equal to its own disk.
#  2. Refusals that leave the others alone: a primary naming a resource
#     nobody registered, a peer that sends no TLS, a second secondary for a
#     registered name (refused at start, the first keeps it).
#  3. One resource's secondary frozen (SIGSTOP): the other two take a write
#     burst each and converge while it is frozen; thawed, it converges too.
#  4. The listener restarted: the secondaries register again by themselves
#     and keep their sessions; a primary restarted afterwards reaches its
#     secondary through the new listener.
#  5. A connection handed to the wrong secondary (a fake listener made with
#     Python's socket.send_fds): the secondary checks the ClientHello's name
#     against its own and refuses it.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir
[ -x "$LISTENER" ] || fail "LISTENER=$LISTENER is not built"

size=16M
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_listener lsn
note "listener on $LISTENER_ADDR, socket $LISTENER_SOCK"

declare -A SCTL SPID PCTL PPID_ WLC URI
names=(r1 r2 r3)
for n in "${names[@]}"; do
    random_file "$WORKDIR/$n.img" $size "lsn-$n-$$"
    truncate -s $size "$WORKDIR/$n.rep"
    start_nbdkit "$WORKDIR" "rtl$n$$" "$WORKDIR/$n.img"
    WLC[$n]=$WL_CTL URI[$n]=$NBD_URI
    start_secondary --listener "$LISTENER_SOCK" "sec-$n" "$WORKDIR/$n.rep" --resource "$n"
    SCTL[$n]=$SEC_CTL SPID[$n]=$SEC_PID
    [ "$(field "$SEC_CTL" listener_registered)" = true ] || fail "1: $n not registered: $(status "$SEC_CTL")"
done
expect_log "resource r3 registered" "$LISTENER_LOG"
for n in "${names[@]}"; do
    start_primary "pri-$n" "${WLC[$n]}" "$LISTENER_ADDR" --resource "$n"
    PCTL[$n]=$PRI_CTL PPID_[$n]=$PRI_PID
done
synced_all() { # synced_all PART LIMIT NAMES...
    local part=$1 limit=$2 n
    shift 2
    for n in "$@"; do
        SEC_CTL=${SCTL[$n]}
        wait_synced "${PCTL[$n]}" "$limit"
        expect_same "$WORKDIR/$n.img" "$WORKDIR/$n.rep" "$part: resource $n"
    done
}
synced_all 1 60 "${names[@]}"
for n in "${names[@]}"; do
    [[ $(field "${SCTL[$n]}" peer_certificate) == *CN=primary* ]] || fail "1: $n: $(status "${SCTL[$n]}")"
done
note "1: three resources through one port: each replica equals its disk"

# ---- 2 ------------------------------------------------------------------------------
random_file "$WORKDIR/x.img" $size "lsn-x-$$"
start_nbdkit "$WORKDIR" "rtlx$$" "$WORKDIR/x.img"
wl_x=$WL_CTL
start_primary pri-x "$wl_x" "$LISTENER_ADDR" --resource nosuch
expect_log "resource nosuch is not registered here" "$LISTENER_LOG" 20
[ "$(field "$PRI_CTL" connected)" = false ] || fail "2: a primary of no resource is connected: $(status "$PRI_CTL")"
stop_pid "$PRI_PID"
host=${LISTENER_ADDR%:*} port=${LISTENER_ADDR##*:}
printf 'GET / HTTP/1.1\r\n\r\n' | timeout 5 bash -c "cat > /dev/tcp/$host/$port" || true
expect_log "connection from .*: not a TLS handshake record; closed" "$LISTENER_LOG"
# A record header that promises 16 KiB, then the peer's side shut: refused
# at once, without the listener spinning on a socket that stays readable.
cpu0=$(awk '{ print $14 + $15 }' "/proc/$LISTENER_PID/stat")
python3 - "$host" "$port" <<'PY' || fail "2: the half-hello peer"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"\x16\x03\x01\x40\x00")
time.sleep(0.3)
s.shutdown(socket.SHUT_WR)
time.sleep(2)
s.close()
PY
cpu1=$(awk '{ print $14 + $15 }' "/proc/$LISTENER_PID/stat")
expect_log "closed before its ClientHello was whole; closed" "$LISTENER_LOG" 5
[ $((cpu1 - cpu0)) -lt 50 ] || fail "2: the listener used $((cpu1 - cpu0)) ticks of CPU on a half-closed peer"
if "$SECONDARY" --listener "$LISTENER_SOCK" --resource r1 --device "$WORKDIR/x.img" \
    --state-dir "$WORKDIR/dup.state" --control "$WORKDIR/dup.ctl" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>"$WORKDIR/dup.log"; then
    fail "2: a second secondary for r1 started: $(cat "$WORKDIR/dup.log")"
else
    rc=$?
fi
[ "$rc" = 2 ] || fail "2: the duplicate exited with $rc, not 2 (a configuration error)"
grep -q "already registered by pid ${SPID[r1]}" "$WORKDIR/dup.log" || fail "2: the duplicate: $(cat "$WORKDIR/dup.log")"
if "$SECONDARY" --listener "$LISTENER_SOCK" --resource "db+1" --device "$WORKDIR/x.img" \
    --state-dir "$WORKDIR/bad.state" --control "$WORKDIR/bad.ctl" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>"$WORKDIR/bad.log"; then
    fail "2: a secondary with an unroutable name started"
fi
grep -q "must be 1 to 64 letters" "$WORKDIR/bad.log" || fail "2: $(cat "$WORKDIR/bad.log")"
proc_alive "$LISTENER_PID" || fail "2: the listener died"
for n in "${names[@]}"; do
    [ "$(field "${PCTL[$n]}" connected)" = true ] || fail "2: $n lost its link: $(status "${PCTL[$n]}")"
done
note "2: an unknown resource, a non-TLS peer, a half-closed one, a duplicate and a bad name refused; the three untouched"

# ---- 3 ------------------------------------------------------------------------------
kill -STOP "${SPID[r2]}"
t0=$SECONDS
for n in r1 r3; do
    qemu-io -f raw "${URI[$n]}" -c "write -q -P 0x5a 1M 2M" >/dev/null || fail "3: qemu-io $n"
done
qemu-io -f raw "${URI[r2]}" -c "write -q -P 0x5a 3M 1M" >/dev/null || fail "3: qemu-io r2"
synced_all 3 30 r1 r3
proc_stopped() { [ "$(awk '{ print $3 }' "/proc/$1/stat")" = T ]; }
proc_stopped "${SPID[r2]}" || fail "3: r2's secondary is not frozen"
note "3: r1 and r3 converged in $((SECONDS - t0)) s with r2's secondary frozen"
kill -CONT "${SPID[r2]}"
synced_all 3 60 r2

# ---- 4 ------------------------------------------------------------------------------
stop_pid "$LISTENER_PID"
for n in "${names[@]}"; do
    _unregistered() { [ "$(field "${SCTL[$1]}" listener_registered)" = false ]; }
    poll_until 10 _unregistered "$n" || fail "4: $n still registered: $(status "${SCTL[$n]}")"
done
LISTENER_PORT=$port start_listener lsn
for n in "${names[@]}"; do
    _reregistered() { [ "$(field "${SCTL[$1]}" listener_registrations)" -ge 2 ]; }
    poll_until 10 _reregistered "$n" || fail "4: $n did not register again: $(status "${SCTL[$n]}")"
done
stop_pid "${PPID_[r1]}"
start_primary pri-r1 "${WLC[r1]}" "$LISTENER_ADDR" --resource r1
PCTL[r1]=$PRI_CTL PPID_[r1]=$PRI_PID
qemu-io -f raw "${URI[r1]}" -c "write -q -P 0x77 5M 1M" >/dev/null || fail "4: qemu-io"
synced_all 4 60 r1
note "4: the listener restarted: all three registered again, r1's new primary got through"

# ---- 5 ------------------------------------------------------------------------------
# A fake listener that registers nothing itself: it takes r9's registration
# and hands it whatever connects, here a primary of r3.
fake_sock=$WORKDIR/fake.sock fake_port=$(random_port)
python3 - "$fake_sock" "$TEST_HOST" "$fake_port" >"$WORKDIR/fake.out" 2>&1 <<'PY' &
import socket, sys
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
u.bind(path); u.listen(1)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((host, port)); t.listen(1)
u.settimeout(30); t.settimeout(30)
reg, _ = u.accept()
print("got", reg.recv(256).decode(), flush=True)
reg.send(b"ok")
conn, addr = t.accept()
socket.send_fds(reg, [b"conn %s:%d" % (addr[0].encode(), addr[1])], [conn.fileno()])
print("handed", flush=True)
reg.settimeout(30)
reg.recv(1)
PY
fake_pid=$!
cleanup_fn stop_pid "$fake_pid"
poll_until 10 test -S "$fake_sock" || fail "5: the fake listener made no socket: $(cat "$WORKDIR/fake.out")"
truncate -s $size "$WORKDIR/r9.rep"
start_secondary --listener "$fake_sock" sec-r9 "$WORKDIR/r9.rep" --resource r9
r9_log=$SEC_LOG r9_ctl=$SEC_CTL
start_primary pri-x "$wl_x" "$TEST_HOST:$fake_port" --resource r3
expect_log "asked for resource 'r3', this is r9: refused" "$r9_log" 20
[ "$(field "$r9_ctl" connected)" = false ] || fail "5: r9 took r3's primary: $(status "$r9_ctl")"
stop_pid "$PRI_PID"
note "5: a connection for r3 handed to r9's secondary: refused"
