# bench-lib.sh: helpers shared by replication-bench.sh and epoch-bench.sh.
# Sourced, not run.  The caller sets BENCH_NAME (message prefix) and, before
# calling anything here, the knobs and paths its functions read: WORK, PY,
# CLI, FILTER, PRIMARY, SECONDARY, CERTS, NAMEPFX, CLK_TCK, BENCH_*, and
# the arrays BG_PIDS, LOOPS, VERIFY_FAILS.
# shellcheck shell=bash disable=SC2034,SC2153

# ---- Output helpers ----------------------------------------------------------

note() { printf '%s\n' "$*"; }
die() {
    trap - ERR
    echo "$BENCH_NAME: ERROR: $*" >&2
    exit 1
}
trap 'echo "$BENCH_NAME: line $LINENO: command failed (status $?): $BASH_COMMAND" >&2' ERR

# calc FORMAT EXPR: awk arithmetic, printed with FORMAT.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# median VALUES...: the median, or "nan" when there are none.
median() {
    printf '%s\n' "$@" | awk 'NF' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# pctl P FILE: nearest-rank P-th percentile of the numbers in FILE (one a line).
pctl() {
    sort -g "$2" | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(p / 100 * NR); if (i < p / 100 * NR) i++; if (i < 1) i = 1; print a[i] }'
}

# verdict MET-CONDITION: "met" or "NOT met".
verdict() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "NOT met"; fi; }

now() { echo "$EPOCHREALTIME"; }

# iec BYTES: 1.5MiB style, or the input when it is not a number.
iec() {
    if [[ $1 =~ ^[0-9.]+$ ]]; then echo "$(numfmt --to=iec-i "$(calc %.0f "$1")")B"; else echo "$1"; fi
}

# Host CPU use between two snapshots of /proc/stat: host_cpu_start, then
# host_cpu_busy prints the busy percentage of all CPUs (100 = every CPU busy).
host_cpu_start() { HOST_CPU0=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat); }
host_cpu_busy() {
    awk -v s="$HOST_CPU0" '/^cpu / { split(s, a, " "); b = $2 + $3 + $4 + $7 + $8 + $9 - a[1]; i = $5 + $6 - a[2]; printf "%.0f", (b + i) ? 100 * b / (b + i) : 0 }' /proc/stat
}

# default_build_dir: BENCH_BUILD_DIR, if unset, is build-bench when it has
# the agents, else build.
default_build_dir() {
    if [ -z "${BENCH_BUILD_DIR:-}" ]; then
        if [ -x "$REPO/build-bench/primary/blkship-primary" ]; then
            BENCH_BUILD_DIR=$REPO/build-bench
        else
            BENCH_BUILD_DIR=$REPO/build
        fi
    fi
}

# set_traps: cleanup on exit, and an exit (so, cleanup) on INT, TERM, HUP.
set_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# require_tools TOOL...; require_built FILE...: die unless all are there
# (and bash is 5 or later, for EPOCHREALTIME).
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (see scripts/install-deps.sh)"
    done
}
require_built() {
    local f
    for f in "$@"; do
        [ -e "$f" ] || die "$f does not exist: build the project first (BENCH_BUILD_DIR=$BENCH_BUILD_DIR)"
    done
    [ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
}

# drop_caches: with BENCH_DROP_CACHES=1, writes back and drops the page cache.
drop_caches() {
    if [ "$BENCH_DROP_CACHES" = 1 ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# ---- Cleanup -----------------------------------------------------------------

# cleanup: the EXIT trap.  Stops BG_PIDS (TERM, then KILL after 10 s), detaches
# the LOOPS that still point at their files, removes the shm logs of NAMEPFX
# and the scratch directory WORK (with BENCH_KEEP=1, only its images).
cleanup() {
    local rc=$? pid i l
    set +eE
    trap - ERR
    [ -n "$WORK" ] && touch "$WORK/stop" 2>/dev/null
    for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for pid in "${BG_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${BG_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
    for l in "${LOOPS[@]}"; do
        local dev=${l%%:*} file=${l#*:}
        # Only if it is still ours.
        if [ "$(losetup -nO BACK-FILE "$dev" 2>/dev/null | sed 's/ *$//')" = "$file" ]; then
            losetup -d "$dev" 2>/dev/null
        fi
    done
    rm -f /dev/shm/log_"$NAMEPFX"*.wlog
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$BENCH_KEEP" = 1 ]; then
            rm -f "$WORK"/*.img "$WORK"/*.rep "$WORK"/*.copy
            echo "$BENCH_NAME: kept $WORK (images removed)" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

# ---- Processes -----------------------------------------------------------------

# bg_start LOG CMD...: runs CMD in the background; LAST_PID is its pid.
bg_start() {
    local log=$1
    shift
    "$@" </dev/null >>"$log" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

# stop_pid PID [SIGNAL]: signals PID, waits up to 20 s, then SIGKILL; reaps it.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 400; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$BENCH_NAME: pid $pid did not stop on SIG$sig; killed" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 20 ms.
wait_for() {
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 50; i++)); do
        "$@" && return 0
        sleep 0.02
    done
    "$@" || die "timed out after $limit s waiting for $what"
}

port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
port_listening() { [ -n "$(ss -Htln "src 127.0.0.1 and sport = :$1" 2>/dev/null)" ]; }
USED_PORTS=" "
# pick_port: sets PORT to a free TCP port not handed out before.
pick_port() {
    local i p
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if port_free "$p" && [[ $USED_PORTS != *" $p "* ]]; then
            USED_PORTS+="$p "
            PORT=$p
            return 0
        fi
    done
    die "no free TCP port found"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_ns PID: the CPU time of PID's live threads in nanoseconds (the
# scheduler's own count, not 10 ms ticks: for events of a few tens of ms).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
has_child() { pgrep -P "$1" -x "$2" >/dev/null; }

# ---- Status --------------------------------------------------------------------

status_json() { timeout 5 "$CLI" status --control "$1" --json 2>/dev/null || true; }
# json_get JSON KEY: a number or true/false, or empty.
json_get() {
    local re="\"$2\": *([0-9.eE+-]+|true|false)"
    if [[ $1 =~ $re ]]; then echo "${BASH_REMATCH[1]}"; fi
}

# In sync: connected, dirty_bytes 0 and acked_bytes >= MIN_ACKED (so that a
# restarted agent is not taken as in sync before it has learnt what is
# dirty).  The 20 ms polling is done by syncwait.py, which asks the agent's
# control socket exactly what `blkship status --json` asks, without a fork
# and two execs per poll (about 4 ms of CPU each, 10% of a 2-CPU host at
# 20 ms).  It is started before the timed action, and the `blkship status
# --json` CLI confirms the result once at the end.
#
# sync_watch_start CTL MIN_ACKED [GATE [PERIOD]]: starts the poller; with
# GATE, it only judges statuses taken once the file GATE exists, and waits
# for the first epoch sealed after it to commit.  PERIOD:
# seconds between polls (default 0.02).
sync_watch_start() {
    local out=$WORK/syncwait.out
    : >"$out"
    bg_start "$out" "$PY" "$WORK/syncwait.py" "$1" "$2" "$BENCH_SYNC_TIMEOUT" "${4:-0.02}" "${3:-}"
    SW_PID=$LAST_PID
    SW_CTL=$1
    wait_for 30 "syncwait.py to start" grep -q '^ready' "$out"
}

# sync_watch_wait: waits for the poller; sets SYNC_T (time of the first
# in-sync status, seconds since the epoch) and SYNC_JSON.
sync_watch_wait() {
    local i line c d
    for ((i = 0; i < (BENCH_SYNC_TIMEOUT + 30) * 20; i++)); do
        alive "$SW_PID" || break
        sleep 0.05
    done
    alive "$SW_PID" && stop_pid "$SW_PID"
    wait "$SW_PID" 2>/dev/null || true
    line=$(tail -n 1 "$WORK/syncwait.out")
    if [[ $line != "synced "* ]]; then
        echo "last status: $line" >&2
        die "no sync after $BENCH_SYNC_TIMEOUT s ($SW_CTL)"
    fi
    line=${line#synced }
    SYNC_T=${line%% *}
    SYNC_JSON=${line#* }
    # The CLI must agree.
    line=$(status_json "$SW_CTL")
    c=$(json_get "$line" connected)
    d=$(json_get "$line" dirty_bytes)
    [ "$c" = true ] && [ "$d" = 0 ] || die "blkship status disagrees: $line"
}

# wait_sync CTL MIN_ACKED: both of the above, for untimed waits.
wait_sync() {
    sync_watch_start "$1" "$2"
    sync_watch_wait
}

# ---- Images, loop devices, certificates -------------------------------------------

# make_random FILE BYTES SEED
make_random() {
    (
        set +o pipefail
        openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$3" -in /dev/zero 2>/dev/null |
            head -c "$2" >"$1"
    )
    [ "$(stat -c %s "$1")" = "$2" ] || die "could not make $1"
}

# make_loop FILE BYTES: sets LOOPDEV to a loop device on a preallocated file.
make_loop() {
    local dio=off
    truncate -s "$2" "$1"
    fallocate -l "$2" "$1"
    [ "$BENCH_LOOP_DIO" = 1 ] && dio=on
    LOOPDEV=$(losetup -f --show --direct-io="$dio" "$1") || die "losetup $1 failed"
    LOOPS+=("$LOOPDEV:$1")
}

# reset_target DEV FILE BYTES: the replica reads as zeroes again, on
# preallocated (unwritten) extents, with nothing of it cached.  Every method
# starts from this state.
reset_target() {
    blkdiscard "$1" || timeout 600 dd if=/dev/zero of="$1" bs=4M oflag=direct status=none
    fallocate -l "$3" "$2"
}

# verify A B LABEL: cmp; a mismatch is recorded and makes the run fail at the end.
verify() {
    if timeout 900 cmp -s "$1" "$2"; then
        VERIFY_NOTE="cmp ok"
    else
        VERIFY_NOTE="CMP FAILED"
        VERIFY_FAILS+=("$3")
        echo "$BENCH_NAME: $3: $1 and $2 differ" >&2
    fi
}

make_certs() {
    local d=$WORK/certs q
    timeout 60 "$MKCERTS" "$d" >/dev/null
    # QEMU (GnuTLS) wants a directory per endpoint with fixed names.  Same CA.
    mkdir -p "$d/qsrv" "$d/qcli"
    for q in qsrv qcli; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$q.key" \
            -out "$d/$q.csr" -subj "/CN=$q" 2>/dev/null
    done
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$d/qsrv.ext"
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$d/qcli.ext"
    for q in qsrv qcli; do
        openssl x509 -req -in "$d/$q.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -out "$d/$q.crt" -days 2 -extfile "$d/$q.ext" 2>/dev/null
    done
    cp "$d/ca.crt" "$d/qsrv/ca-cert.pem"
    cp "$d/qsrv.crt" "$d/qsrv/server-cert.pem"
    cp "$d/qsrv.key" "$d/qsrv/server-key.pem"
    cp "$d/ca.crt" "$d/qcli/ca-cert.pem"
    cp "$d/qcli.crt" "$d/qcli/client-cert.pem"
    cp "$d/qcli.key" "$d/qcli/client-key.pem"
    chmod 600 "$d"/*.key "$d"/q*/*-key.pem
    QSRV=$d/qsrv
    QCLI=$d/qcli
    CERTS=$d
}

# ---- Python helpers -------------------------------------------------------------

write_helpers() {
    # QMP client: blockdev-mirror sync=full from node "src" to node "dst";
    # prints the wall-clock time of BLOCK_JOB_READY, then cancels the job
    # (the target keeps the copy).  It leaves the daemon running: its CPU
    # time is read after this returns, and a quit here raced that read
    # (a CPU of 0.00 when both processes had gone).
    cat >"$WORK/qmp.py" <<'EOF'
import json, socket, sys, time
path, limit = sys.argv[1], float(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
deadline = time.time() + limit
while True:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("qmp.py: no QMP socket at %s" % path)
        time.sleep(0.01)
s.settimeout(limit)
f = s.makefile("rwb", buffering=0)
def recv():
    line = f.readline()
    if not line:
        sys.exit("qmp.py: QMP connection closed")
    return json.loads(line)
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
    while True:
        m = recv()
        if "return" in m:
            return m["return"]
        if "error" in m:
            sys.exit("qmp.py: %s: %s" % (name, m["error"]))
recv()
cmd("qmp_capabilities")
cmd("blockdev-mirror", **{"job-id": "m0", "device": "src", "target": "dst", "sync": "full", **extra})
while True:
    m = recv()
    ev = m.get("event")
    if ev == "BLOCK_JOB_READY":
        t = time.time()
        break
    if ev in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR", "BLOCK_JOB_CANCELLED"):
        sys.exit("qmp.py: mirror failed: %s" % m)
print("%.6f" % t, flush=True)
cmd("block-job-cancel", device="m0")
while True:
    m = recv()
    if m.get("event") in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"):
        break
EOF

    # Lag probe: a minimal NBD client writes a 4 KiB block holding a nonce
    # and a sequence number every PERIOD ms at OFFSET (outside fio's range),
    # and records when each write was acknowledged.  A reader polls the same
    # block on the replica device every 2 ms (buffered pread, as any reader
    # of the device sees it).  For each sequence number the lag is the time
    # it first showed on the replica minus the time the primary acknowledged
    # its write; a number overtaken by a later one gets the later one's
    # sighting time.  Mode "write" only writes (runs without the agent).
    cat >"$WORK/lagprobe.py" <<'EOF'
import json, os, socket, struct, sys, threading, time
sock_path, replica, offset, duration, period_ms, mode = sys.argv[1:7]
offset, duration, period = int(offset), float(duration), float(period_ms) / 1000
nonce = os.urandom(8)
filler = b"\xa5" * (4096 - 16)
def recvall(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("lagprobe: NBD server closed the connection")
        b += c
    return b
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sock_path)
if recvall(s, 16) != b"NBDMAGICIHAVEOPT":
    sys.exit("lagprobe: not a newstyle NBD server")
hflags, = struct.unpack(">H", recvall(s, 2))
cflags = 1 | (2 if hflags & 2 else 0)
s.sendall(struct.pack(">I", cflags) + b"IHAVEOPT" + struct.pack(">II", 1, 0))
size, tflags = struct.unpack(">QH", recvall(s, 10))
if not cflags & 2:
    recvall(s, 124)
if offset + 4096 > size:
    sys.exit("lagprobe: offset beyond the disk")
sent, acked = {}, {}
state = {"last": 0, "done": None, "error": None}
def writer():
    try:
        seq = 0
        start = time.monotonic()
        nxt = start
        while time.monotonic() - start < duration:
            seq += 1
            sent[seq] = time.monotonic()
            s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, seq, offset, 4096) +
                      nonce + struct.pack("<Q", seq) + filler)
            m, err, h = struct.unpack(">IIQ", recvall(s, 16))
            if m != 0x67446698 or err or h != seq:
                raise RuntimeError("bad NBD reply (magic %x error %d handle %d)" % (m, err, h))
            acked[seq] = time.monotonic()
            state["last"] = seq
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))
    except Exception as e:
        state["error"] = str(e)
    state["done"] = time.monotonic()
t = threading.Thread(target=writer)
t.start()
lags = []
seen = 0
if mode == "read":
    fd = os.open(replica, os.O_RDONLY)
    while True:
        now = time.monotonic()
        b = os.pread(fd, 16, offset)
        if b[:8] == nonce:
            q, = struct.unpack("<Q", b[8:16])
            if q > seen:
                for j in range(seen + 1, q + 1):
                    lags.append(max(0.0, now - acked.get(j, sent.get(j, now))))
                seen = q
        d = state["done"]
        if d is not None and (seen >= state["last"] or now - d > 20):
            break
        time.sleep(0.002)
    os.close(fd)
t.join()
if state["error"]:
    sys.exit("lagprobe: " + state["error"])
def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    i = max(1, -(-len(v) * p // 100))
    return v[int(i) - 1] * 1000
wl = [acked[k] - sent[k] for k in acked]
print(json.dumps({"writes": state["last"], "seen": seen,
                  "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99),
                  "lag_max_ms": max(lags) * 1000 if lags else None,
                  "write_p50_ms": pct(wl, 50)}))
EOF

    # status(PATH): the reply to the request `blkship status --json` sends.
    cat >"$WORK/ctlstatus.py" <<'EOF'
import socket
def status(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    try:
        s.sendall(b"status\n")
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
    finally:
        s.close()
    return buf.decode().strip()
EOF

    cat >"$WORK/syncwait.py" <<'EOF'
import json, os, sys, time
from ctlstatus import status
path, min_acked, limit, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
gate = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
print("ready", flush=True)
deadline = time.time() + limit
last = ""
# With a gate, the writes it waits for were all made before it appeared,
# but those not sealed yet are in no dirty_bytes: between a commit and the
# next seal the status says 0 with the log still full of them.  The first
# epoch sealed after the gate holds them all, so that one must commit.
first_epoch = 0
while time.time() < deadline:
    try:
        gated = gate is None or os.path.exists(gate)
        last = status(path)
        t = time.time()
        j = json.loads(last)
        if gated and gate is not None and not first_epoch:
            first_epoch = j.get("epoch", 0) + 1
        if gated and j.get("connected") is True and j.get("dirty_bytes") == 0 \
                and j.get("acked_bytes", 0) >= min_acked \
                and j.get("committed_epoch", 0) >= first_epoch:
            print("synced %.6f %s" % (t, last), flush=True)
            sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(period)
print("timeout " + last, flush=True)
sys.exit(1)
EOF

    # fio JSON (after fio's "connected" line): iops, total_ios, bytes, cpu.
    cat >"$WORK/fiojson.py" <<'EOF'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])
job = j["jobs"][0]
if job.get("error"):
    sys.exit("fio error %s" % job["error"])
w = job["write"]
print("%.1f %d %d %.1f %.1f" % (w["iops"], w["total_ios"], w["io_bytes"],
                                job["usr_cpu"], job["sys_cpu"]))
EOF

    cat >"$WORK/jsonf.py" <<'EOF'
import json, sys
j = json.loads(sys.argv[1])
print(" ".join("nan" if j.get(k) is None else str(j[k]) for k in sys.argv[2:]))
EOF
}

# ---- Replication pairs -------------------------------------------------------------
# A pair P: image P_IMG[P] served by nbdkit + writelog filter, replica loop
# device P_LOOP[P] (on file P_REP[P]), secondary on P_PORT[P], state dirs.
# Optional, set before pair_init: P_FILTER[P], P_PRIMARY[P], P_SECONDARY[P]
# (another build's binaries; default FILTER, PRIMARY, SECONDARY), and
# P_PRIARGS[P] (primary options instead of "--interval BENCH_INTERVAL").

declare -A P_IMG P_REP P_LOOP P_SIZE P_PORT P_NBPID P_NBSOCK P_WLCTL P_SECPID P_PRIPID \
    P_SST P_PST P_SCTL P_PCTL P_FILTER P_PRIMARY P_SECONDARY P_PRIARGS

pair_init() { # P IMAGE BYTES
    local p=$1
    P_IMG[$p]=$2
    P_SIZE[$p]=$3
    P_REP[$p]=$WORK/$p.rep
    make_loop "${P_REP[$p]}" "$3"
    P_LOOP[$p]=$LOOPDEV
    pick_port
    P_PORT[$p]=$PORT
    P_NBSOCK[$p]=$WORK/$p.nbd
    P_WLCTL[$p]=$WORK/log_$NAMEPFX$p.ctl
    P_SST[$p]=$WORK/$p.sst
    P_PST[$p]=$WORK/$p.pst
    P_SCTL[$p]=$WORK/$p.sctl
    P_PCTL[$p]=$WORK/$p.pctl
    P_SECPID[$p]=
    P_PRIPID[$p]=
    nbdkit_start "$p" "${P_IMG[$p]}" "${P_FILTER[$p]:-$FILTER}" "${FILTER_EXTRA[@]}"
    P_NBPID[$p]=$LAST_PID
}

# nbdkit_start NAME IMAGE FILTER [PARAMS...]: nbdkit serving IMAGE through
# FILTER on $WORK/NAME.nbd, its log's control socket $WORK/log_NAMEPFXNAME.ctl;
# waits for both sockets.  LAST_PID is its pid.
nbdkit_start() {
    local n=$1 img=$2 filter=$3
    shift 3
    bg_start "$WORK/nbdkit-$n.log" nbdkit -f --exit-with-parent --filter="$filter" file \
        file="$img" writelog-name="$NAMEPFX$n" writelog-dir="$WORK" "$@" -U "$WORK/$n.nbd"
    wait_for 30 "nbdkit ($n)" test -S "$WORK/log_$NAMEPFX$n.ctl" -a -S "$WORK/$n.nbd"
}

pair_start_secondary() { # P [fresh]
    local p=$1
    [ "${2:-}" = fresh ] && rm -rf "${P_SST[$p]}"
    rm -f "${P_SCTL[$p]}"
    bg_start "$WORK/secondary-$p.log" "${P_SECONDARY[$p]:-$SECONDARY}" --listen "127.0.0.1:${P_PORT[$p]}" \
        --device "${P_LOOP[$p]}" --state-dir "${P_SST[$p]}" --control "${P_SCTL[$p]}" \
        --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" \
        --peer-name primary "${SECONDARY_EXTRA[@]}"
    P_SECPID[$p]=$LAST_PID
    wait_for 30 "blkship-secondary ($p)" test -S "${P_SCTL[$p]}"
    alive "${P_SECPID[$p]}" || die "blkship-secondary ($p) exited; see $WORK/secondary-$p.log"
}

pair_start_primary() { # P [fresh]
    local p=$1 pargs
    read -r -a pargs <<<"${P_PRIARGS[$p]:---interval $BENCH_INTERVAL}"
    [ "${2:-}" = fresh ] && rm -rf "${P_PST[$p]}"
    rm -f "${P_PCTL[$p]}"
    bg_start "$WORK/primary-$p.log" "${P_PRIMARY[$p]:-$PRIMARY}" --writelog "${P_WLCTL[$p]}" \
        --connect "127.0.0.1:${P_PORT[$p]}" --state-dir "${P_PST[$p]}" --control "${P_PCTL[$p]}" \
        --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt" \
        --peer-name secondary "${pargs[@]}" "${PRIMARY_EXTRA[@]}"
    P_PRIPID[$p]=$LAST_PID
}

pair_stop_primary() {
    stop_pid "${P_PRIPID[$1]}"
    P_PRIPID[$1]=
}
pair_stop_secondary() {
    stop_pid "${P_SECPID[$1]}"
    P_SECPID[$1]=
}

# pair_fullsync P: fresh state on both sides, replica reset, caches dropped;
# times blkship-primary's start to in sync.  Leaves both agents running.
# Sets T_RUN and CPU_PRI/CPU_SEC/CPU_NBD (CPU seconds during the sync).
pair_fullsync() {
    local p=$1 t0 nb0
    pair_stop_primary "$p"
    pair_stop_secondary "$p"
    reset_target "${P_LOOP[$p]}" "${P_REP[$p]}" "${P_SIZE[$p]}"
    pair_start_secondary "$p" fresh
    sync_watch_start "${P_PCTL[$p]}" "${P_SIZE[$p]}"
    drop_caches
    nb0=$(cpu_ticks "${P_NBPID[$p]}")
    host_cpu_start
    t0=$(now)
    pair_start_primary "$p" fresh
    sync_watch_wait
    T_RUN=$(calc %.3f "$SYNC_T - $t0")
    HOST_BUSY=$(host_cpu_busy)
    CPU_PRI=$(calc %.2f "$(cpu_ticks "${P_PRIPID[$p]}") / $CLK_TCK")
    CPU_SEC=$(calc %.2f "$(cpu_ticks "${P_SECPID[$p]}") / $CLK_TCK")
    CPU_NBD=$(calc %.2f "($(cpu_ticks "${P_NBPID[$p]}") - $nb0) / $CLK_TCK")
}

# run_qemu_mirror: QEMU's blockdev-mirror (sync=full) of pair s's image to a
# qemu-nbd export of its replica, over TLS; sets T_RUN and HOST_BUSY.
# QEMU_SRC_OPTS (",cache.direct=on,...") is appended to the source node,
# QEMU_MIRROR_OPTS (a JSON object) to the blockdev-mirror arguments.
run_qemu_mirror() {
    local t0 tr qn qs
    reset_target "${P_LOOP[s]}" "${P_REP[s]}" "$SIZE"
    bg_start "$WORK/qemu-nbd.log" qemu-nbd \
        --object "tls-creds-x509,id=tls0,endpoint=server,dir=$QSRV,verify-peer=on" --tls-creds tls0 \
        -f raw -b 127.0.0.1 -p "$QPORT" -x disk "${QEMU_NBD_EXTRA[@]}" "${P_LOOP[s]}"
    qn=$LAST_PID
    wait_for 30 "qemu-nbd" port_listening "$QPORT"
    rm -f "$WORK/qmp.sock"
    drop_caches
    host_cpu_start
    t0=$(now)
    bg_start "$WORK/qsd.log" qemu-storage-daemon \
        --object "tls-creds-x509,id=tls0,endpoint=client,dir=$QCLI" \
        --blockdev "driver=file,node-name=src,filename=${P_IMG[s]}${QEMU_SRC_OPTS:-}" \
        --blockdev "driver=nbd,node-name=dst,server.type=inet,server.host=127.0.0.1,server.port=$QPORT,export=disk,tls-creds=tls0" \
        --chardev "socket,path=$WORK/qmp.sock,server=on,wait=off,id=qmp0" --monitor chardev=qmp0
    qs=$LAST_PID
    tr=$(timeout "$BENCH_SYNC_TIMEOUT" "$PY" "$WORK/qmp.py" "$WORK/qmp.sock" "$BENCH_SYNC_TIMEOUT" \
        "${QEMU_MIRROR_OPTS:-"{}"}") ||
        die "QEMU mirror failed; see $WORK/qsd.log and $WORK/qemu-nbd.log"
    T_RUN=$(calc %.3f "$tr - $t0")
    HOST_BUSY=$(host_cpu_busy)
    # Both of QEMU's processes, over the whole mirror.
    QEMU_CPU=$(calc %.2f "($(cpu_ticks "$qs") + $(cpu_ticks "$qn")) / $CLK_TCK")
    stop_pid "$qs" TERM
    stop_pid "$qn" TERM
}
