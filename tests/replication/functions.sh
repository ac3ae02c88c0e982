# Shared helpers for the replication tests (bash).  A test starts
#   source "$(dirname "$0")/functions.sh"
# and gets: strict mode, a cleanup registry run on every exit (processes,
# loop devices, namespaces, iptables rules, shm files, the work directory),
# a time limit, `fail` that shows the tails of every log, and helpers to run
# nbdkit with the writelog filter, blkship-secondary, blkship-primary and
# to read `blkship status --json`.
#
# The harness (strict mode, cleanups, fail, polling, logs) is
# tests/harness.sh, shared with the write-log integration tests.
#
# The programs come from the environment CTest sets (FILTER, BLKSHIP,
# PRIMARY, SECONDARY, REPL_PEER, MKCERTS) or are derived from
# BLKSHIP_BUILD_DIR.

# Globals set here are for the tests (SEC_PID, NBD_URI, ...), and the small
# functions defined inside others are called through poll_until.
# shellcheck disable=SC2034,SC2317

WORKDIR_PREFIX=bs-rt
# shellcheck source=../harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../harness.sh"

: "${TMPDIR:=/tmp}"
_src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -n "${BLKSHIP_BUILD_DIR:-}" ]; then
    : "${FILTER:=$BLKSHIP_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so}"
    : "${BLKSHIP:=$BLKSHIP_BUILD_DIR/cli/blkship}"
    : "${PRIMARY:=$BLKSHIP_BUILD_DIR/primary/blkship-primary}"
    : "${SECONDARY:=$BLKSHIP_BUILD_DIR/secondary/blkship-secondary}"
    : "${LISTENER:=$BLKSHIP_BUILD_DIR/secondary/blkship-listener}"
    : "${REPL_PEER:=$BLKSHIP_BUILD_DIR/tests/replication/repl-peer}"
fi
: "${MKCERTS:=$_src_dir/scripts/mkcerts.sh}"

# The products of the build are not prerequisites: their absence fails.
require_build() {
    local v
    for v in FILTER BLKSHIP PRIMARY SECONDARY REPL_PEER MKCERTS; do
        [ -n "${!v:-}" ] || fail "$v is not set (set BLKSHIP_BUILD_DIR or $v)"
        [ -f "${!v}" ] || fail "$v=${!v} does not exist: build the project first"
    done
}

# requires_fio_nbd: fio with its nbd engine.
requires_fio_nbd() {
    requires fio
    fio --enghelp=nbd 2>/dev/null | grep -q '^uri' || skip "this fio has no nbd engine"
}

# requires_nbd_python: sets NBD_PY to a python3 that has libnbd's nbd
# module.  python3-libnbd installs it for the system's python3, which
# another python3 earlier on PATH (pyenv, a venv) does not see.
requires_nbd_python() {
    local c
    NBD_PY=""
    for c in python3 /usr/bin/python3; do
        if "$c" -c 'import nbd' 2>/dev/null; then
            NBD_PY=$c
            return 0
        fi
    done
    fail "no python3 with the nbd module: python3-libnbd is not installed (scripts/install-deps.sh installs it)"
}

# ---- Data ---------------------------------------------------------------------------

# fio_verify_job FILE IODEPTH IO_SIZE [RATE]: writes a fio job of random
# 4 KiB writes over the whole disk ($bytes) through NBD ($NBD_URI), each
# block read back and checked (crc32c), at most RATE per second if given.
fio_verify_job() {
    cat >"$1" <<EOF
[global]
thread
ioengine=nbd
uri=$NBD_URI
rw=randwrite
bs=4k
iodepth=$2
${4:+rate=$4}
verify=crc32c
verify_fatal=1
# fio would leave its verify state in the current directory (the build or
# source tree); nothing here resumes a verification.
verify_state_save=0
randseed=$$
runtime=60
[w]
size=$bytes
io_size=$3
EOF
}

# random_file PATH SIZE SEED: SIZE (as for head -c: 512M) bytes of fast,
# reproducible pseudo-random data (AES-CTR of zeroes).
random_file() {
    openssl enc -aes-128-ctr -pass "pass:$3" -nosalt -pbkdf2 </dev/zero 2>/dev/null |
        head -c "$2" >"$1" || true
    [ "$(stat -c %s "$1")" = "$(numfmt --from=iec "$2")" ] || fail "could not write $2 bytes to $1"
}

# make_certs DIR [DAYS]: scripts/mkcerts.sh (DAYS 0: expired, same CA).
make_certs() {
    bash "$MKCERTS" "$@" || fail "mkcerts.sh $* failed"
}

# make_loop FILE [LOSETUP_ARGS...]: attaches FILE to a free loop device
# (LOOP), detached on exit; LOSETUP_ARGS such as --sector-size 4096.
make_loop() {
    local f=$1
    shift
    LOOP=$(losetup -f --show "$@" "$f") || fail "losetup -f --show $* $f failed"
    cleanup_fn losetup -d "$LOOP"
}

# same_bytes A B: byte-identical (the replica may be a block device).
same_bytes() {
    cmp -s "$1" "$2"
}

# expect_same A B WHAT: fails with the first differing offsets.
expect_same() {
    local out
    if ! out=$(cmp -l "$1" "$2" 2>&1 | head -n 5); then :; fi
    if ! cmp -s "$1" "$2"; then
        fail "$3: $1 and $2 differ (first differing bytes, 1-based offset and octal values):"$'\n'"$out"$'\n'"$(cmp "$1" "$2" 2>&1 || true)"
    fi
}

# ---- nbdkit ---------------------------------------------------------------------

# start_nbdkit DIR NAME IMAGE [FILTER_ARGS...]: nbdkit with the writelog
# filter over the file plugin (FILTER_ARGS such as writelog-grain=512 added),
# in the background; waits (bounded) for the control and NBD sockets.  Sets NBDKIT_PID, WL_CTL (the log's control socket), NBD_SOCK,
# NBD_URI.  Stopped and its shm removed on exit.
start_nbdkit() {
    local dir=$1 name=$2 image=$3 log pid
    shift 3
    log=$dir/nbdkit-$name.log
    WL_CTL=$dir/log_$name.ctl
    NBD_SOCK=$dir/nbd-$name.sock
    NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
    [ ${#WL_CTL} -lt 108 ] || fail "control socket path too long: $WL_CTL"
    _logs+=("$log")
    cleanup_fn rm -f "/dev/shm/log_$name.wlog"
    # A restart reuses the paths; nbdkit leaves its -U socket behind.
    rm -f "$NBD_SOCK"
    # NBDKIT_BELOW: filters to stack under the writelog filter (nearer the
    # plugin), e.g. "error" for faults that the ring's reads see too.
    local below=() f
    for f in ${NBDKIT_BELOW:-}; do below+=("--filter=$f"); done
    nbdkit -f --filter="$FILTER" "${below[@]}" file "$image" writelog-name="$name" \
        writelog-dir="$dir" "$@" -U "$NBD_SOCK" >"$log" 2>&1 &
    pid=$!
    NBDKIT_PID=$pid
    cleanup_fn stop_pid "$pid"
    _wait_sockets() {
        proc_alive "$pid" || fail "nbdkit ($name) exited before its sockets appeared"
        [ -S "$WL_CTL" ] && [ -S "$NBD_SOCK" ]
    }
    poll_until 15 _wait_sockets || fail "nbdkit ($name) did not create its sockets within 15 s"
}

# ---- Agents -----------------------------------------------------------------------

# status CTL: one line of `blkship status --json`, or nothing.  Its stderr
# goes to $WORKDIR/cli.log, which is scanned for sanitizer reports.  The
# exit statuses that tell the resource's health (3-5) count as success.
status() {
    bs_status --control "$1" --json 2>>"$WORKDIR/cli.log"
}

# jget JSON KEY: a field of the flat JSON (numbers, booleans, strings
# without their quotes; for strings free of '"', ',' and '}' and of
# escapes, which the fields tests poll are).  The last member is followed
# by " }": the space is not part of the value.
jget() {
    sed -n "s/.*\"$2\": \"\{0,1\}\([^,\"}]*\).*/\1/;T;s/ *\$//;p" <<<"$1"
}

# field CTL KEY: one field of the agent's status now.
field() {
    local s
    s=$(status "$1") || return 1
    jget "$s" "$2"
}

# TEST_HOST: this test's own loopback address, where its secondaries listen
# unless told otherwise.  Tests stop a secondary and start it again on the
# same port; on a shared address another test (ours or anyone's under
# ctest -j) could take the freed port in between.  The whole of 127/8 is
# local, and a process id is below 2^22 (pid_max's ceiling) and unique
# among running processes, so 127.64.0.0 + $$ (127.64.0.0-127.127.255.255)
# is an address no other running test uses, and nothing binds the
# wildcard address on these ports.  The primary's outgoing connections take
# their source address from the loopback route (127.0.0.1) and their port
# from the ephemeral range, so they cannot hold a port here either.
TEST_HOST=127.$((64 + ($$ >> 16))).$((($$ >> 8) & 255)).$(($$ & 255))

# random_port: a TCP port nothing listens on now (the agent's start retries
# when another process wins the race), below the kernel's ephemeral range
# (32768 and up by default) so that no outgoing connection can hold it and
# a connect while the secondary is down is refused, not connected to itself.
random_port() {
    local p i lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$lo" -gt 21000 ] || lo=61000
    for ((i = 0; i < 50; i++)); do
        p=$((20000 + RANDOM % (lo - 20000)))
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    fail "no free TCP port found"
}

# Certificates used when a test does not say otherwise.
CERTS=""

_agent_count=0

# start_secondary [--ns NS] [--host ADDR] [--port PORT] TAG DEVICE [ARGS...]
# blkship-secondary on ADDR ($TEST_HOST):PORT (random) for DEVICE, with
# state in $WORKDIR/TAG.state, control socket $WORKDIR/TAG.ctl and stderr in
# $WORKDIR/TAG.N.log; certificates from $CERTS unless ARGS give --cert etc.
# Waits (bounded: $SEC_START_WAIT seconds, 15 unless set) until its control
# socket answers.  Sets SEC_PID, SEC_PORT,
# SEC_ADDR, SEC_CTL, SEC_LOG.  Stopped on exit.  A random port taken
# meanwhile is retried with another; a --port given must be free.  With
# --listener SOCK it registers with the blkship-listener there instead of
# listening (SEC_ADDR is then the listener's, $LISTENER_ADDR).
start_secondary() {
    local ns="" host=$TEST_HOST port="" fixed_port="" tag dev wrap=() tries pid certargs=() a
    local listener="" where=()
    while [ $# -gt 0 ]; do
        case $1 in
        --listener) listener=$2; shift 2 ;;
        --ns) ns=$2; shift 2 ;;
        --host) host=$2; shift 2 ;;
        --port) port=$2; fixed_port=$2; shift 2 ;;
        *) break ;;
        esac
    done
    tag=$1 dev=$2
    shift 2
    [ -z "$ns" ] || wrap=(ip netns exec "$ns")
    certargs=(--cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt"
              --peer-name primary)
    for a in "$@"; do
        [ "$a" != --cert ] || certargs=()
    done
    for ((tries = 0; tries < 5; tries++)); do
        [ -n "$port" ] || port=$(random_port)
        _agent_count=$((_agent_count + 1))
        SEC_LOG=$WORKDIR/$tag.$_agent_count.log
        SEC_CTL=$WORKDIR/$tag.ctl
        SEC_PORT=$port
        SEC_ADDR=$host:$port
        where=(--listen "$SEC_ADDR")
        if [ -n "$listener" ]; then
            where=(--listener "$listener")
            SEC_ADDR=$LISTENER_ADDR
        fi
        _logs+=("$SEC_LOG")
        "${wrap[@]}" "$SECONDARY" "${where[@]}" --device "$dev" \
            --state-dir "$WORKDIR/$tag.state" --control "$SEC_CTL" "${certargs[@]}" "$@" \
            2>"$SEC_LOG" &
        pid=$!
        SEC_PID=$pid
        cleanup_fn stop_pid "$pid"
        _sec_ready() {
            proc_alive "$pid" || return 0
            status "$SEC_CTL" >/dev/null
        }
        poll_until "${SEC_START_WAIT:-15}" _sec_ready ||
            fail "blkship-secondary ($tag) did not answer on $SEC_CTL within ${SEC_START_WAIT:-15} s"
        if proc_alive "$pid"; then
            return 0
        fi
        wait "$pid" 2>/dev/null || true
        if [ -z "$fixed_port" ] && log_has 'Address already in use' "$SEC_LOG"; then
            port=""
            continue
        fi
        fail "blkship-secondary ($tag) exited at start: $(tail -n 5 "$SEC_LOG")"
    done
    fail "blkship-secondary ($tag): no free port after $tries tries"
}

# start_listener TAG [ARGS...]: blkship-listener on $TEST_HOST:(random
# port), its registration socket $WORKDIR/TAG.sock, stderr in
# $WORKDIR/TAG.N.log; waits (bounded) for the socket.  Sets LISTENER_PID,
# LISTENER_ADDR, LISTENER_SOCK, LISTENER_LOG.  Stopped on exit.
start_listener() {
    local tag=$1 port=${LISTENER_PORT:-} pid
    shift
    [ -n "$port" ] || port=$(random_port)
    _agent_count=$((_agent_count + 1))
    LISTENER_LOG=$WORKDIR/$tag.$_agent_count.log
    LISTENER_SOCK=$WORKDIR/$tag.sock
    LISTENER_ADDR=$TEST_HOST:$port
    _logs+=("$LISTENER_LOG")
    "$LISTENER" --listen "$LISTENER_ADDR" --socket "$LISTENER_SOCK" "$@" 2>"$LISTENER_LOG" &
    pid=$!
    LISTENER_PID=$pid
    cleanup_fn stop_pid "$pid"
    _listener_ready() { ! proc_alive "$pid" || [ -S "$LISTENER_SOCK" ]; }
    poll_until 10 _listener_ready || fail "blkship-listener ($tag) made no socket within 10 s"
    proc_alive "$pid" || fail "blkship-listener ($tag) exited at start: $(tail -n 5 "$LISTENER_LOG")"
}

# start_primary [--ns NS] TAG WL_CTL ADDR [ARGS...]: blkship-primary (in
# network namespace NS if given) for the log at
# WL_CTL, replicating to ADDR, with state in $WORKDIR/TAG.state (kept across
# restarts), control socket $WORKDIR/TAG.ctl, stderr in $WORKDIR/TAG.N.log;
# certificates from $CERTS unless ARGS give --cert etc.  Waits (bounded)
# until its control socket answers.  Sets PRI_PID, PRI_CTL, PRI_LOG.
start_primary() {
    local wrap=() tag wl addr pid certargs a
    if [ "${1:-}" = --ns ]; then
        wrap=(ip netns exec "$2")
        shift 2
    fi
    tag=$1 wl=$2 addr=$3
    shift 3
    certargs=(--cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt"
              --peer-name secondary)
    for a in "$@"; do
        [ "$a" != --cert ] || certargs=()
    done
    _agent_count=$((_agent_count + 1))
    PRI_LOG=$WORKDIR/$tag.$_agent_count.log
    PRI_CTL=$WORKDIR/$tag.ctl
    _logs+=("$PRI_LOG")
    "${wrap[@]}" "$PRIMARY" --writelog "$wl" --connect "$addr" --state-dir "$WORKDIR/$tag.state" \
        --control "$PRI_CTL" "${certargs[@]}" "$@" 2>"$PRI_LOG" &
    pid=$!
    PRI_PID=$pid
    cleanup_fn stop_pid "$pid"
    _pri_ready() {
        proc_alive "$pid" || fail "blkship-primary ($tag) exited at start: $(tail -n 5 "$PRI_LOG")"
        status "$PRI_CTL" >/dev/null
    }
    poll_until 15 _pri_ready || fail "blkship-primary ($tag) did not answer on $PRI_CTL within 15 s"
}

# pair_setup SIZE SEED: the usual start of a pair's test: a disk image
# $img of SIZE random bytes (seeded), an empty replica $rep of that size
# behind a loop device ($LOOP), certificates in $CERTS; sets size, bytes.
pair_setup() {
    size=$1
    bytes=$(numfmt --from=iec "$size")
    img=$WORKDIR/disk.img
    rep=$WORKDIR/replica.img
    random_file "$img" "$size" "$2"
    truncate -s "$size" "$rep"
    make_loop "$rep"
    CERTS=$WORKDIR/pki
    make_certs "$CERTS"
}

# shaped_ns TAG RATE NET: a network namespace reached from this one over a
# veth pair shaped to RATE with tc tbf in both directions (a WAN link),
# removed at exit; sets NS, ADDR_ROOT (this side) and ADDR_NS.  TAG (3
# letters) and the pid name the namespace and the links; the /30 comes from
# 10.NET.0.0/16, picked by the pid.
shaped_ns() {
    local tag=$1 rate=$2 vr=${1}a$$ vn=${1}b$$ c d
    requires tc
    c=$((($$ >> 6) % 256)) d=$((($$ % 64) * 4))
    NS=bs$tag$$ ADDR_ROOT=10.$3.$c.$((d + 1)) ADDR_NS=10.$3.$c.$((d + 2))
    ip netns add "$NS" || fail "cannot create a network namespace"
    cleanup_fn ip netns del "$NS"
    ip link add "$vr" type veth peer name "$vn" || fail "cannot create a veth pair"
    cleanup_fn ip link del "$vr"
    ip link set "$vn" netns "$NS"
    ip addr add "$ADDR_ROOT/30" dev "$vr"
    ip link set "$vr" up
    ip netns exec "$NS" ip addr add "$ADDR_NS/30" dev "$vn"
    ip netns exec "$NS" ip link set "$vn" up
    ip netns exec "$NS" ip link set lo up
    tc qdisc add dev "$vr" root tbf rate "$rate" burst 256kb latency 50ms ||
        fail "tc tbf at $rate"
    ip netns exec "$NS" tc qdisc add dev "$vn" root tbf rate "$rate" burst 256kb latency 50ms ||
        fail "tc tbf at $rate in the namespace"
}

# ns_unrule NS RULE...: deletes every copy of each iptables RULE ("INPUT
# -p tcp --dport 7789 -j DROP") in network namespace NS; never fails.
ns_unrule() {
    local ns=$1 r
    shift
    for r in "$@"; do
        # shellcheck disable=SC2086
        while ip netns exec "$ns" iptables -D $r 2>/dev/null; do :; done
    done
    return 0
}

# expect_alive PID WHAT: the agent has not died.
expect_alive() {
    proc_alive "$1" || fail "$2 (pid $1) died"
}

# _synced CTL: connected, and nothing dirty or in flight.
_synced() {
    local s
    s=$(status "$1") || return 1
    [ "$(jget "$s" connected)" = true ] && [ "$(jget "$s" dirty_bytes)" = 0 ] &&
        [ "$(jget "$s" inflight_bytes)" = 0 ]
}

_epoch_at_least() {
    local e
    e=$(field "$1" epoch) || return 1
    [ -n "$e" ] && [ "$e" -ge "$2" ]
}

# wait_synced CTL SECONDS: waits until everything written before the call is
# on the replica (committed, and applied by the secondary last started).  dirty_bytes alone is not enough: writes still in the
# log's live map are in no bitmap of the primary yet.  The epoch counts the
# log's seals (every --interval, empty or not) and a seal's chain of chunks
# ends before the next seal starts, so once the epoch is 3 past the one read
# now, a whole seal that began after this call has been merged; then
# dirty_bytes 0 with the link up means the replica has it all.
wait_synced() {
    local ctl=$1 limit=$2 e0 end
    end=$((SECONDS + limit))
    e0=$(field "$ctl" epoch) || fail "no status from $ctl"
    [ -n "$e0" ] || fail "no epoch in the status of $ctl"
    poll_until "$limit" _epoch_at_least "$ctl" $((e0 + 3)) ||
        fail "the primary's epoch did not advance past $((e0 + 3)) in $limit s: $(status "$ctl")"
    poll_until $((end - SECONDS > 1 ? end - SECONDS : 1)) _synced "$ctl" ||
        fail "not in sync within $limit s: $(status "$ctl")"
    # Committed is durable in the secondary's journal; the replica itself
    # has it once the secondary applied that epoch (in the background).
    # The secondary started last ($SEC_CTL), when it answers as one.
    local c
    c=$(field "$ctl" committed_epoch) || fail "no status from $ctl"
    if [ -n "${SEC_CTL:-}" ] && [ "$(field "$SEC_CTL" role 2>/dev/null)" = secondary ]; then
        _applied_at_least() {
            local a
            a=$(field "$SEC_CTL" applied_epoch) || return 1
            [ "$a" -ge "$1" ]
        }
        poll_until $((end - SECONDS > 1 ? end - SECONDS : 1)) _applied_at_least "$c" ||
            fail "the secondary did not apply epoch $c within $limit s: $(status "$SEC_CTL")"
    fi
}
