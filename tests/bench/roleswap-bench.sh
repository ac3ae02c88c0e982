#!/usr/bin/env bash
# roleswap-bench.sh: the old primary coming back as the secondary after a
# failover, by bitmaps against by checksums, on a disk of BENCH_SIZE
# (default 1G) of which BENCH_CHANGED_PCT percent (default 1) differs:
# half written on the old primary A after the two parted (its split
# brain), half on the promoted B since its promotion, in random 64 KiB
# blocks through nbdkit.
#   bitmap    `blkship demote` on A, blkship-secondary on A's state
#             directory, B's primary on the promoted replica's: the union
#             of both bitmaps is sent, neither disk is read whole
#   checksum  the fallback when A's state is gone: blkship-secondary on A
#             with an empty state directory, B's primary with a new one and
#             --initial-sync checksum: both disks read once, what differs
#             sent
# Both start from copies of the same two disks, page cache dropped.  The
# time is from starting B's primary until it has nothing dirty
# and an epoch committed: the secondary is up first, then the primary
# starts (B's, which was waiting in its back-off, is restarted on its own
# state and log, which loses nothing).  BENCH_TRIALS (default 3).  Prints the medians
# (ms, bytes sent, CPU seconds of both agents) and their ratios; every run
# ends with the two disks compared byte for byte.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit,
# qemu-io and openssl; uses the replication tests' helpers with the build
# in BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=3}" "${BENCH_SIZE:=1G}" "${BENCH_CHANGED_PCT:=1}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 300 + 300))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
WORKDIR_PREFIX=bs-rsb
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 20 ] || fail "BENCH_TRIALS: 1 to 20"

bytes=$(numfmt --from=iec "$BENCH_SIZE")
blocks=$((bytes / 65536))
nchg=$((blocks * BENCH_CHANGED_PCT / 100 / 2))
CERTS=$WORKDIR/pki
make_certs "$CERTS"
fast=(--heartbeat-ms 100 --peer-timeout-ms 500)
note "making a $BENCH_SIZE disk; $nchg random 64 KiB blocks to change on each side"
random_file "$WORKDIR/base.img" "$BENCH_SIZE" "rsb-$$"

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
_resynced() {
    local s
    s=$(status "$PRI_CTL") || return 1
    [ "$(jget "$s" connected)" = true ] && [ "$(jget "$s" resync)" = none ] &&
        [ "$(jget "$s" dirty_bytes)" = 0 ] && [ "$(jget "$s" committed_epoch)" -ge 1 ]
}
# write_random URI SEED: nchg random 64 KiB blocks, one qemu-io.
write_random() {
    local cmds=()
    mapfile -t cmds < <(python3 - "$blocks" "$nchg" "$2" <<'PY'
import random, sys
blocks, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for b in rnd.sample(range(blocks), n):
    print(f"write -q -P {rnd.randrange(1, 255)} {b * 65536} 64k")
PY
)
    local args=()
    for c in "${cmds[@]}"; do args+=(-c "$c"); done
    qemu-io -f raw "$1" "${args[@]}" >/dev/null || fail "qemu-io could not write"
}

# One trial's starting point: A and B parted, each changed, A demoted and
# stopped; B's nbdkit and its primary (on the promoted replica's state
# directory) run, waiting for A.  Copies of both disks and of A's state go
# to a0.img, b0.img and a0.state for the checksum run.
prepare() {
    local i=$1 a_pid b_sec_pid out
    rm -rf "$WORKDIR"/a.state "$WORKDIR"/b.state "$WORKDIR"/*.ctl "$WORKDIR"/*.state
    cp "$WORKDIR/base.img" "$WORKDIR/a.img"
    truncate -s 0 "$WORKDIR/b.img"
    truncate -s "$BENCH_SIZE" "$WORKDIR/b.img"
    start_nbdkit "$WORKDIR" "rsa$$" "$WORKDIR/a.img"
    local a_nbdkit=$NBDKIT_PID a_uri=$NBD_URI a_wl=$WL_CTL
    start_secondary b "$WORKDIR/b.img" "${fast[@]}"
    local b_ctl=$SEC_CTL b_addr=$SEC_ADDR
    b_sec_pid=$SEC_PID
    start_primary a "$a_wl" "$b_addr" "${fast[@]}"
    a_pid=$PRI_PID
    local a_ctl=$PRI_CTL
    PRI_LOG_A=$PRI_LOG
    wait_synced "$a_ctl" 300
    kill -STOP "$a_pid"
    _b_alone() { [ "$(field "$b_ctl" connected)" = false ]; }
    poll_until 20 _b_alone || fail "B kept its session"
    write_random "$a_uri" $((i * 2))
    out=$("$BLKSHIP" promote --control "$b_ctl" 2>&1) || fail "promote: $out"
    start_nbdkit "$WORKDIR" "rsb$$" "$WORKDIR/b.img"
    B_NBDKIT=$NBDKIT_PID
    local b_uri=$NBD_URI
    B_WL=$WL_CTL
    A_PORT=$(random_port)
    ln -s "$WORKDIR/b.state" "$WORKDIR/bp.state"
    start_primary bp "$B_WL" "$TEST_HOST:$A_PORT" "${fast[@]}"
    B_PRI=$PRI_PID B_CTL=$PRI_CTL
    write_random "$b_uri" $((i * 2 + 1))
    # B's primary has drained its log: its bitmap holds B's writes.
    _b_drained() { [ "$(field "$B_CTL" dirty_bytes)" -ge $((nchg * 65536)) ]; }
    poll_until 30 _b_drained || fail "B's primary did not take B's writes: $(status "$B_CTL")"
    kill -CONT "$a_pid"
    _sb() { [ "$(field "$a_ctl" split_brain)" = true ]; }
    # (A is refused either way; split brain once its drain has taken the
    # writes made while it was stopped.)
    poll_until 90 _sb || fail "A did not find the split brain: $(status "$a_ctl"); $(tail -n 8 "$PRI_LOG_A")"
    out=$("$BLKSHIP" demote --control "$a_ctl" 2>&1) || fail "demote: $out"
    poll_until 10 proc_gone "$a_pid" || fail "A's agent did not stop"
    stop_pid "$a_nbdkit"
    stop_pid "$b_sec_pid"
    cp "$WORKDIR/a.img" "$WORKDIR/a0.img"
    cp "$WORKDIR/b.img" "$WORKDIR/b0.img"
}

# Stops a process this (sub)shell did not start: no `wait` (inside $(...)
# bash would wait for its own other children instead).
stop_foreign() {
    kill -TERM "$1" 2>/dev/null || return 0
    poll_until 15 proc_gone "$1" || kill -KILL "$1" 2>/dev/null || true
}

finish_run() { # finish_run KIND TRIAL T0 CPU0: "ms bytes cpu_s"
    local kind=$1 i=$2 t0=$3 cpu0=$4 t1 s cpu
    poll_until 300 _resynced || fail "$kind $i: not in sync: $(status "$PRI_CTL")"
    t1=$(ms_now)
    s=$(status "$PRI_CTL")
    cpu=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID") - cpu0))
    stop_foreign "$PRI_PID"
    stop_pid "$SEC_PID"
    stop_foreign "$NBDKIT_PID"
    cmp -s "$WORKDIR/a.img" "$WORKDIR/b.img" || fail "$kind $i: A differs from B"
    echo "$((t1 - t0)) $(jget "$s" sent_bytes) $(awk -v c="$cpu" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", c / h }')"
}

run_bitmap() { # B's nbdkit from prepare; A's secondary on its own directory
    local t0
    # B's primary is in its reconnect back-off: restarted on the same state
    # and log (nothing is lost: its bitmap is durable), it connects at once.
    stop_foreign "$B_PRI"
    ln -s "$WORKDIR/a.state" "$WORKDIR/as.state"
    start_secondary --port "$A_PORT" as "$WORKDIR/a.img" "${fast[@]}"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    t0=$(ms_now)
    start_primary bp "$B_WL" "$TEST_HOST:$A_PORT" "${fast[@]}"
    NBDKIT_PID=$B_NBDKIT
    finish_run bitmap "$1" "$t0" 0
}

run_checksum() { # the same disks, new state directories on both sides
    local t0
    cp "$WORKDIR/a0.img" "$WORKDIR/a.img"
    cp "$WORKDIR/b0.img" "$WORKDIR/b.img"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    start_nbdkit "$WORKDIR" "rsc$$" "$WORKDIR/b.img"
    local wl=$WL_CTL nbd=$NBDKIT_PID
    start_secondary --port "$A_PORT" an "$WORKDIR/a.img" "${fast[@]}"
    t0=$(ms_now)
    start_primary bn "$wl" "$TEST_HOST:$A_PORT" "${fast[@]}" --initial-sync checksum
    NBDKIT_PID=$nbd
    finish_run checksum "$1" "$t0" 0
}

declare -A T B C
for ((i = 1; i <= BENCH_TRIALS; i++)); do
    prepare "$i"
    for kind in bitmap checksum; do
        r=$(run_$kind "$i")
        read -r ms by cpu <<<"$r"
        T[$kind]+="$ms " B[$kind]+="$by " C[$kind]+="$cpu "
        note "trial $i $kind: $ms ms, $by bytes sent, $cpu CPU s"
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "role swap of $BENCH_SIZE with $BENCH_CHANGED_PCT% changed ($nchg 64 KiB blocks on each side), medians of $BENCH_TRIALS"
printf '  %-9s %9s %14s %8s %12s %12s\n' method ms bytes_sent cpu_s "time/bitmap" "cpu/bitmap"
tb=$(median "${T[bitmap]}")
cb=$(median "${C[bitmap]}")
for kind in bitmap checksum; do
    t=$(median "${T[$kind]}")
    b=$(median "${B[$kind]}")
    c=$(median "${C[$kind]}")
    printf '  %-9s %9s %14s %8s %12s %12s\n' "$kind" "$t" "$b" "$c" \
        "$(awk -v a="$t" -v b="$tb" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="$c" -v b="$cb" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }')"
done
