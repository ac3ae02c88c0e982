#!/usr/bin/env bash
# epoch-bench.sh: what protocol version 2 epochs (issue 10) cost, side by side
# in one run.
#
#   (1) checkpoint  --mode checkpoint: N checkpoints on one control
#                   connection (blkship checkpoint --count N --every D) while
#                   fio dirties about BENCH_CKPT_DIRTY per checkpoint;
#                   latency distribution (request -> commit acknowledged)
#   (2) async       fio 4 KiB random writes at QD16 through NBD: no agent vs
#                   this branch's agents (epochs) vs the old main's agents
#                   (BENCH_OLD_COMMIT, built in the scratch directory), same
#                   image, alternating; then lag_ms sampled every 50 ms at
#                   half the unreplicated IOPS
#   (3) cow         fio through the filter while a sealing client
#                   (wl-epoch-loop) seals and reads the log every
#                   BENCH_EPOCH_MS: writelog-cow-max=64M vs 0
#   (4) sync        1 GiB initial full sync: this branch vs the old main vs
#                   QEMU's mirror tuned as an expert would
#
# A benchmark, not a test: ctest never runs it and a missed target does not
# make it fail.  It exits non-zero only when something did not work (a tool
# failed, a sync timed out, a replica differed from its source).  Needs root.
# See tests/bench/README.md, "Epoch benchmarks".
set -Eeuo pipefail
export LC_ALL=C

# ---- Knobs -------------------------------------------------------------------

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=epoch-bench
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$HERE/bench-lib.sh"
default_build_dir
: "${BENCH_DIR:=${TMPDIR:-/var/tmp}}"
: "${BENCH_PARTS:=checkpoint async cow sync}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_SIZE:=1G}"
: "${BENCH_RUNTIME:=10}"
: "${BENCH_IODEPTH:=16}"
: "${BENCH_EPOCH_MS:=100}"
: "${BENCH_CKPT_COUNT:=1200}"
: "${BENCH_CKPT_EVERY_MS:=25}"
: "${BENCH_CKPT_DIRTY:=1M}"
: "${BENCH_CKPT_BS:=64k}"
: "${BENCH_LAG_TIME:=15}"
: "${BENCH_LAG_SAMPLE_MS:=50}"
: "${BENCH_LAG_FRACTIONS:=0.5 0.25 0.1}"
: "${BENCH_COW_MAX:=64M}"
: "${BENCH_OLD_COMMIT:=8302796}"
: "${BENCH_OLD_BUILD_DIR:=}"
: "${BENCH_DROP_CACHES:=1}"
: "${BENCH_LOOP_DIO:=1}"
: "${BENCH_SYNC_TIMEOUT:=600}"
: "${BENCH_KEEP:=0}"
# bench-lib.sh's pair_start_primary default; every pair here sets P_PRIARGS.
BENCH_INTERVAL=$BENCH_EPOCH_MS

FILTER=$BENCH_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so
PRIMARY=$BENCH_BUILD_DIR/primary/blkship-primary
SECONDARY=$BENCH_BUILD_DIR/secondary/blkship-secondary
CLI=$BENCH_BUILD_DIR/cli/blkship
LOOPER=$BENCH_BUILD_DIR/tests/bench/wl-epoch-loop
MKCERTS=$REPO/scripts/mkcerts.sh
# Read by bench-lib.sh.  QEMU as an expert configures it: O_DIRECT and
# native AIO on both ends, a 64 MiB mirror buffer.
FILTER_EXTRA=()
read -r -a PRIMARY_EXTRA <<<"${BENCH_PRIMARY_ARGS:-}"
read -r -a SECONDARY_EXTRA <<<"${BENCH_SECONDARY_ARGS:-}"
QEMU_NBD_EXTRA=(--cache=none --aio=native)
QEMU_SRC_OPTS=",cache.direct=on,aio=native"
QEMU_MIRROR_OPTS='{"buf-size": 67108864}'


WORK=
BG_PIDS=()
LOOPS=()
NAMEPFX=eb$$
VERIFY_FAILS=()
set_traps

# ---- Prerequisites -------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (loop devices, drop_caches)"
require_tools nbdkit qemu-nbd qemu-storage-daemon fio python3 losetup blkdiscard fallocate \
    openssl cmp ss timeout awk numfmt dd getconf git tar cmake
require_built "$FILTER" "$PRIMARY" "$SECONDARY" "$CLI" "$LOOPER" "$MKCERTS"
for v in BENCH_ROUNDS BENCH_RUNTIME BENCH_IODEPTH BENCH_EPOCH_MS BENCH_CKPT_COUNT \
    BENCH_CKPT_EVERY_MS BENCH_LAG_TIME BENCH_LAG_SAMPLE_MS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
for part in $BENCH_PARTS; do
    case $part in checkpoint | async | cow | sync) ;; *) die "unknown part '$part' in BENCH_PARTS" ;; esac
done
has_part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
SIZE=$(numfmt --from=iec "$BENCH_SIZE") || die "bad BENCH_SIZE $BENCH_SIZE"
{ [ $((SIZE % 1048576)) = 0 ] && [ "$SIZE" -ge $((64 << 20)) ]; } || die "BENCH_SIZE must be a multiple of 1 MiB, at least 64 MiB"
CKPT_DIRTY=$(numfmt --from=iec "$BENCH_CKPT_DIRTY") || die "bad BENCH_CKPT_DIRTY"
CLK_TCK=$(getconf CLK_TCK)
if [ "$BENCH_DROP_CACHES" = 1 ] && [ ! -w /proc/sys/vm/drop_caches ]; then BENCH_DROP_CACHES=0; fi
PY=$(python3 -c 'import sys; print(sys.executable)') || die "python3 does not run"
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/eb-$$.XXXXXX")
((${#WORK} + ${#NAMEPFX} + 20 < 108)) || die "BENCH_DIR path too long for unix sockets: $WORK"
MB=1000000
GIB=1073741824
FIO_SIZE=$((SIZE - 1048576))

# ---- The old main ----------------------------------------------------------------

# build_old: OLD_BUILD holds the agents and the filter of BENCH_OLD_COMMIT,
# built now (Release) from `git archive` unless BENCH_OLD_BUILD_DIR already
# has them.  Without BENCH_OLD_BUILD_DIR it is built in the scratch directory.
build_old() {
    local src t0
    OLD_BUILD=${BENCH_OLD_BUILD_DIR:-$WORK/old/build}
    OLD_FULL=$(git -C "$REPO" rev-parse --verify "$BENCH_OLD_COMMIT^{commit}") ||
        die "commit $BENCH_OLD_COMMIT is not in $REPO"
    if [ -x "$OLD_BUILD/primary/blkship-primary" ] && [ -x "$OLD_BUILD/secondary/blkship-secondary" ] &&
        [ -e "$OLD_BUILD/primary/writelog/nbdkit-writelog-filter.so" ]; then
        note "old main: reusing $OLD_BUILD (BENCH_OLD_BUILD_DIR)"
    else
        src=$OLD_BUILD.src
        rm -rf "$src"
        mkdir -p "$src"
        t0=$(now)
        note "old main: building $BENCH_OLD_COMMIT (Release) in $OLD_BUILD ..."
        git -C "$REPO" archive "$OLD_FULL" | tar -x -C "$src" || die "git archive $BENCH_OLD_COMMIT failed"
        timeout 600 cmake -S "$src" -B "$OLD_BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/old-cmake.log" 2>&1 ||
            die "cmake of the old main failed; see $WORK/old-cmake.log"
        timeout 1800 cmake --build "$OLD_BUILD" -j"$(nproc)" --target blkship-primary blkship-secondary \
            nbdkit-writelog-filter >"$WORK/old-build.log" 2>&1 ||
            die "build of the old main failed; see $WORK/old-build.log"
        note "old main: built in $(calc %.0f "$(now) - $t0") s"
    fi
    OLD_FILTER=$OLD_BUILD/primary/writelog/nbdkit-writelog-filter.so
    OLD_PRIMARY=$OLD_BUILD/primary/blkship-primary
    OLD_SECONDARY=$OLD_BUILD/secondary/blkship-secondary
}

# ---- Helpers of this script --------------------------------------------------------

write_epoch_helpers() {
    # Samples the primary's status (the request `blkship status --json`
    # sends) every PERIOD ms for SECONDS, without a fork per sample; prints
    # "TIME LAG_MS CONNECTED COMMITTED_EPOCH" lines.
    cat >"$WORK/statsample.py" <<'EOF'
import json, sys, time
from ctlstatus import status
path, period, seconds = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3])
end = time.time() + seconds
nxt = time.time()
while time.time() < end:
    try:
        j = json.loads(status(path))
        print("%.6f %s %s %s" % (time.time(), j.get("lag_ms", "nan"), j.get("connected"),
                                 j.get("committed_epoch", "nan")), flush=True)
    except (OSError, ValueError) as e:
        print("%.6f error %s" % (time.time(), e), flush=True)
    nxt += period
    time.sleep(max(0.0, nxt - time.time()))
EOF
}

# run_fio NAME SOCK SEED RUNTIME BS [FIO ARGS...]: randwrite through NBD at
# BENCH_IODEPTH over the first FIO_SIZE bytes; sets FIO_IOPS FIO_IOS FIO_BYTES
# FIO_CPU (fio's own CPU, % of one CPU).
run_fio() {
    local name=$1 sock=$2 seed=$3 rt=$4 bs=$5 fu fs
    shift 5
    timeout $((rt + 120)) fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
        --rw=randwrite --bs="$bs" --iodepth="$BENCH_IODEPTH" --size="$FIO_SIZE" --time_based \
        --runtime="$rt" --norandommap --randseed="$seed" --output-format=json "$@" \
        >"$WORK/fio-$name.json" 2>"$WORK/fio-$name.err" || die "fio ($name) failed: $(cat "$WORK/fio-$name.err")"
    read -r FIO_IOPS FIO_IOS FIO_BYTES fu fs < <("$PY" "$WORK/fiojson.py" "$WORK/fio-$name.json")
    FIO_CPU=$(calc %.0f "$fu + $fs")
}

primary_connected() { [ "$(json_get "$(status_json "$1")" connected)" = true ]; }

# kv KEY LINE: the value of KEY=VALUE in LINE.
kv() {
    local re="(^| )$1=([^ ]*)"
    [[ $2 =~ $re ]] && echo "${BASH_REMATCH[2]}"
}

# pctls FILE: "p50 p90 p99 max" of the numbers in FILE.
pctls() { echo "$(pctl 50 "$1") $(pctl 90 "$1") $(pctl 99 "$1") $(pctl 100 "$1")"; }

# per_round ARRAY-NAME KEY-PREFIX: the per-round values, space separated.
per_round() {
    local -n arr=$1
    local r out=
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do out+="${arr[$2,$r]} "; done
    echo "$out"
}

# median_of ARRAY-NAME KEY-PREFIX: the median over the rounds.
median_of() {
    local v
    read -r -a v <<<"$(per_round "$1" "$2")"
    median "${v[@]}"
}

# spread ARRAY-NAME KEY-PREFIX: (max - min) / median over the rounds, in %.
spread() {
    per_round "$1" "$2" | tr ' ' '\n' | awk 'NF' | sort -g |
        awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.0f", m ? 100 * (a[NR] - a[1]) / m : 0 }'
}

# ---- Header ---------------------------------------------------------------------

NCPU=$(nproc)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
note "epoch-bench: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "  host: $NCPU CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r)"
note "  load average at start: $LOAD0"
note "  this branch: $BENCH_BUILD_DIR ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- primary secondary common proto cli 2>/dev/null || echo ', agent sources modified'))"
note "  $(nbdkit --version), $(qemu-nbd --version 2>&1 | awk 'NR == 1'), $(fio --version)"
note "  scratch: $WORK ($(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo '?')); image $(numfmt --to=iec "$SIZE"); rounds $BENCH_ROUNDS; parts: $BENCH_PARTS"
note "  replica: loop device on a preallocated file (direct-io $([ "$BENCH_LOOP_DIO" = 1 ] && echo on || echo off)); page cache dropped before each full sync: $([ "$BENCH_DROP_CACHES" = 1 ] && echo yes || echo no)"
[ "$NCPU" -le 2 ] && note "  NOTE: $NCPU CPUs: fio, nbdkit, both agents, TLS and the kernel share them; other load on the host is noise."
need_old=0
{ has_part async || has_part sync; } && need_old=1
if [ "$need_old" = 1 ]; then build_old; fi
note ""

make_certs
write_helpers
write_epoch_helpers
IMG=$WORK/s.img
note "making a $(numfmt --to=iec "$SIZE") random image..."
make_random "$IMG" "$SIZE" "blkship-epoch-bench"
# s: this branch; o: the old main; both on the same image, each with its own
# nbdkit (its filter), replica loop device and agents.  Only one of them
# runs I/O at a time.
P_PRIARGS[s]="--mode async --epoch-ms $BENCH_EPOCH_MS"
pair_init s "$IMG" "$SIZE"
if [ "$need_old" = 1 ]; then
    P_FILTER[o]=$OLD_FILTER P_PRIMARY[o]=$OLD_PRIMARY P_SECONDARY[o]=$OLD_SECONDARY
    P_PRIARGS[o]="--interval $BENCH_EPOCH_MS"
    pair_init o "$IMG" "$SIZE"
fi
declare -A F_PID
# Filter only, no agent: f64 (copy-before-write pool BENCH_COW_MAX) and f0
# (copy-before-write disabled), this branch's filter, the same image.
if has_part async || has_part cow; then
    nbdkit_start f64 "$IMG" "$FILTER" "writelog-cow-max=$BENCH_COW_MAX"
    F_PID[f64]=$LAST_PID
fi
if has_part cow; then
    nbdkit_start f0 "$IMG" "$FILTER" "writelog-cow-max=0"
    F_PID[f0]=$LAST_PID
fi
pick_port
QPORT=$PORT
note ""

# =========================================================================
# (1) Checkpoint mode
# =========================================================================

if has_part checkpoint; then
    ck_time=$(calc %.0f "$BENCH_CKPT_COUNT * $BENCH_CKPT_EVERY_MS / 1000 + 0.5")
    ck_rate=$(calc %.0f "$CKPT_DIRTY * 1000 / $BENCH_CKPT_EVERY_MS")
    note "== (1) checkpoint mode: $BENCH_CKPT_COUNT checkpoints, one every $BENCH_CKPT_EVERY_MS ms (~$ck_time s), one persistent control connection"
    note "   blkship-primary --mode checkpoint; blkship checkpoint --count $BENCH_CKPT_COUNT --every ${BENCH_CKPT_EVERY_MS}ms"
    note "   writer: fio randwrite bs=$BENCH_CKPT_BS through NBD at $(iec "$ck_rate")/s = $(iec "$CKPT_DIRTY") per checkpoint interval"
    note "   latency = request sent -> reply (secondary committed the epoch), as the CLI measures it"
    # In checkpoint mode nothing is sent until a checkpoint is asked, the
    # full sync included: sync in async mode, then restart the agent in
    # checkpoint mode on the same state and take one untimed checkpoint.
    pair_fullsync s
    note "   (set-up: full sync in async mode $T_RUN s, then the primary restarted with --mode checkpoint)"
    pair_stop_primary s
    P_PRIARGS[s]="--mode checkpoint"
    pair_start_primary s
    wait_for 30 "the primary to connect" primary_connected "${P_PCTL[s]}"
    timeout 70 "$CLI" checkpoint --control "${P_PCTL[s]}" --timeout 60s >/dev/null ||
        die "the first checkpoint failed; see $WORK/primary-s.log"
    st0=$(status_json "${P_PCTL[s]}")
    sent0=$(json_get "$st0" sent_bytes)
    bg_start "$WORK/fio-ckpt.log" timeout $((ck_time + 180)) fio --name=ckpt --ioengine=nbd \
        --uri="nbd+unix:///?socket=${P_NBSOCK[s]}" --rw=randwrite --bs="$BENCH_CKPT_BS" --iodepth=4 \
        --size="$FIO_SIZE" --time_based --runtime=$((ck_time + 4)) --rate="$ck_rate" --norandommap \
        --randseed=7 --output-format=json --output="$WORK/fio-ckpt.json"
    fio_pid=$LAST_PID
    sleep 1
    c_nb=$(cpu_ticks "${P_NBPID[s]}") c_pr=$(cpu_ticks "${P_PRIPID[s]}") c_se=$(cpu_ticks "${P_SECPID[s]}")
    host_cpu_start
    t0=$(now)
    ck_rc=0
    timeout $((ck_time + BENCH_CKPT_COUNT / 10 + 120)) "$CLI" checkpoint --control "${P_PCTL[s]}" \
        --count "$BENCH_CKPT_COUNT" --every "${BENCH_CKPT_EVERY_MS}ms" >"$WORK/ckpt.out" 2>"$WORK/ckpt.err" || ck_rc=$?
    ck_el=$(calc %.3f "$(now) - $t0")
    ck_host=$(host_cpu_busy)
    ck_cpu="$(calc %.0f "($(cpu_ticks "${P_NBPID[s]}") - $c_nb) / $CLK_TCK / $ck_el * 100")/$(calc %.0f "($(cpu_ticks "${P_PRIPID[s]}") - $c_pr) / $CLK_TCK / $ck_el * 100")/$(calc %.0f "($(cpu_ticks "${P_SECPID[s]}") - $c_se) / $CLK_TCK / $ck_el * 100")"
    st1=$(status_json "${P_PCTL[s]}")
    for ((i = 0; i < (ck_time + 200) * 10; i++)); do alive "$fio_pid" || break; sleep 0.1; done
    wait "$fio_pid" || die "fio (checkpoint writer) failed: $(cat "$WORK/fio-ckpt.log")"
    read -r ck_wiops _ ck_wbytes _ _ < <("$PY" "$WORK/fiojson.py" "$WORK/fio-ckpt.json")
    awk 'NF == 2 { print $2 }' "$WORK/ckpt.out" >"$WORK/ckpt.ms"
    CK_OK=$(wc -l <"$WORK/ckpt.ms")
    CK_FAIL=$((BENCH_CKPT_COUNT - CK_OK))
    read -r CK_P50 CK_P90 CK_P99 CK_MAX <<<"$(pctls "$WORK/ckpt.ms")"
    CK_MEAN=$(awk '{ s += $1 } END { printf "%.2f", NR ? s / NR : 0 }' "$WORK/ckpt.ms")
    CK_RATE=$(calc %.1f "$CK_OK / $ck_el")
    CK_MIB=$(calc %.2f "($(json_get "$st1" sent_bytes) - $sent0) / 1048576 / ($CK_OK > 0 ? $CK_OK : 1)")
    CK_WMIB=$(calc %.2f "$ck_wbytes / ($ck_time + 4) * $BENCH_CKPT_EVERY_MS / 1000 / 1048576")
    CK_ERRS=$(sed 's/^blkship checkpoint: //' "$WORK/ckpt.err" | sort | uniq -c | sort -rn | head -n 5 | awk '{ $1 = $1 "x"; print }' | paste -sd ';' -)
    note "   $CK_OK answered of $BENCH_CKPT_COUNT in $ck_el s ($CK_RATE/s); failures $CK_FAIL (CLI exit status $ck_rc)${CK_ERRS:+: $CK_ERRS}"
    note "   latency ms: p50 $CK_P50, p90 $CK_P90, p99 $CK_P99, max $CK_MAX, mean $CK_MEAN"
    note "   shipped per checkpoint (sent_bytes / answered): $CK_MIB MiB; fio wrote $CK_WMIB MiB per interval ($ck_wiops IOPS of $BENCH_CKPT_BS)"
    note "   CPU % of one CPU during the run: nbdkit/primary/secondary $ck_cpu; host busy $ck_host%"
    note "   primary: epochs_committed $(json_get "$st1" epochs_committed), epochs_aborted $(json_get "$st1" epochs_aborted), cow preserved $(json_get "$st1" preserved), breaks $(json_get "$st1" breaks), waits $(json_get "$st1" waits), bytes_peak $(iec "$(json_get "$st1" bytes_peak)")"
    pair_stop_primary s
    P_PRIARGS[s]="--mode async --epoch-ms $BENCH_EPOCH_MS"
    note ""
fi

# =========================================================================
# (2) Async mode under fio: IOPS vs the old main; lag
# =========================================================================

declare -A A_IOPS A_CPU LAG
if has_part async; then
    note "== (2) async mode: fio randwrite bs=4k iodepth=$BENCH_IODEPTH for $BENCH_RUNTIME s through NBD, same image, same seed per round"
    note "   none: nbdkit + this branch's filter (writelog-cow-max=$BENCH_COW_MAX), no agent (the log only fills)"
    note "   epochs: this branch's agents, --mode async --epoch-ms $BENCH_EPOCH_MS, its filter"
    note "   old: $BENCH_OLD_COMMIT's agents (--interval $BENCH_EPOCH_MS) and filter"
    note "   before each replicated run the pair is in sync (dirty_bytes 0); CPU s/GiB = CPU of nbdkit+primary+secondary per GiB fio wrote"
    for p in s o; do
        pair_fullsync "$p"
        note "   (set-up: full sync $p $T_RUN s)"
    done
    note "   $(printf '%-6s %-8s %9s %9s %10s  %s' round config IOPS MB/s 'CPU s/GiB' 'CPU% of one CPU: nbdkit/primary/secondary/fio; host busy')"
    CONFIGS=(none epochs old)
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        for ((k = 0; k < ${#CONFIGS[@]}; k++)); do
            c=${CONFIGS[$(((k + r - 1) % ${#CONFIGS[@]}))]}
            case $c in
            none) sock=$WORK/f64.nbd nb=${F_PID[f64]} pp='' sp='' ;;
            epochs) p=s ;;
            old) p=o ;;
            esac
            if [ "$c" != none ]; then
                wait_sync "${P_PCTL[$p]}" 0
                sock=${P_NBSOCK[$p]} nb=${P_NBPID[$p]} pp=${P_PRIPID[$p]} sp=${P_SECPID[$p]}
            fi
            c_nb=$(cpu_ticks "$nb") c_pr=0 c_se=0
            [ -n "$pp" ] && c_pr=$(cpu_ticks "$pp") c_se=$(cpu_ticks "$sp")
            host_cpu_start
            t0=$(now)
            run_fio "async-$c-$r" "$sock" $((3000 + r)) "$BENCH_RUNTIME" 4k
            el=$(calc %.3f "$(now) - $t0")
            hb=$(host_cpu_busy)
            d_nb=$(($(cpu_ticks "$nb") - c_nb)) d_pr=0 d_se=0
            [ -n "$pp" ] && d_pr=$(($(cpu_ticks "$pp") - c_pr)) d_se=$(($(cpu_ticks "$sp") - c_se))
            A_IOPS[$c,$r]=$(calc %.0f "$FIO_IOPS")
            A_CPU[$c,$r]=$(calc %.2f "($d_nb + $d_pr + $d_se) / $CLK_TCK / ($FIO_BYTES / $GIB)")
            pr=- se=-
            [ -n "$pp" ] && pr=$(calc %.0f "$d_pr / $CLK_TCK / $el * 100") se=$(calc %.0f "$d_se / $CLK_TCK / $el * 100")
            note "   $(printf '%-6s %-8s %9.0f %9.1f %10s  %s' "$r" "$c" "$FIO_IOPS" "$(calc %.1f "$FIO_BYTES / $MB / $el")" "${A_CPU[$c,$r]}" \
                "$(calc %.0f "$d_nb / $CLK_TCK / $el * 100")/$pr/$se/$FIO_CPU  host $hb%")"
        done
    done
    A_NONE=$(median_of A_IOPS none) A_EP=$(median_of A_IOPS epochs) A_OLD=$(median_of A_IOPS old)
    rr=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do rr+=("$(calc %.4f "${A_IOPS[epochs,$r]} / ${A_IOPS[old,$r]}")"); done
    A_RATIO=$(calc %.3f "$A_EP / $A_OLD")
    A_RATIO_R=$(calc %.3f "$(median "${rr[@]}")")
    note "   medians: none $(calc %.0f "$A_NONE"), epochs $(calc %.0f "$A_EP"), old $(calc %.0f "$A_OLD") IOPS; epochs/old $A_RATIO (median of per-round ratios $A_RATIO_R)"

    # Lag at fractions of the unreplicated IOPS (the target is for 0.5).
    LAG_TARGET=$((2 * BENCH_EPOCH_MS + 100))
    for fr in $BENCH_LAG_FRACTIONS; do
        li=$(calc %.0f "$A_NONE * $fr")
        note "   lag: fio --rate_iops=$li ($fr x the 'none' median) for $BENCH_LAG_TIME s; the primary's lag_ms every $BENCH_LAG_SAMPLE_MS ms"
        wait_sync "${P_PCTL[s]}" 0
        samples=$WORK/lag-$fr.samples
        bg_start "$samples" timeout $((BENCH_LAG_TIME + 60)) "$PY" "$WORK/statsample.py" "${P_PCTL[s]}" \
            "$BENCH_LAG_SAMPLE_MS" $((BENCH_LAG_TIME + 30))
        lag_pid=$LAST_PID
        e0=$(json_get "$(status_json "${P_PCTL[s]}")" epochs_committed)
        t0=$(now)
        run_fio "lag-$fr" "${P_NBSOCK[s]}" 4000 "$BENCH_LAG_TIME" 4k --rate_iops="$li"
        t1=$(now)
        e1=$(json_get "$(status_json "${P_PCTL[s]}")" epochs_committed)
        stop_pid "$lag_pid"
        awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b && $3 == "True" && $2 ~ /^[0-9]+$/ { print $2 }' \
            "$samples" >"$samples.ms"
        n=$(wc -l <"$samples.ms")
        nerr=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b && ($2 == "error" || $3 == "False")' "$samples" | wc -l)
        LAG[$fr]="$(pctls "$samples.ms") $n $li $(calc %.0f "$FIO_IOPS") $((e1 - e0)) $(calc %.0f "($t1 - $t0) * 1000 / ($e1 - $e0 > 0 ? $e1 - $e0 : 1)")"
        read -r l50 l90 l99 lmax _ _ _ ne em <<<"${LAG[$fr]}"
        note "   lag_ms: p50 $l50, p90 $l90, p99 $l99, max $lmax over $n samples ($nerr failed or disconnected); fio did $(calc %.0f "$FIO_IOPS") IOPS; $ne epochs committed, one per $em ms"
    done
    note ""
fi

# =========================================================================
# (3) Copy-before-write's own cost
# =========================================================================

declare -A C_IOPS C_US
if has_part cow; then
    note "== (3) copy-before-write: fio randwrite bs=4k iodepth=$BENCH_IODEPTH for $BENCH_RUNTIME s through NBD to this branch's filter"
    note "   while wl-epoch-loop seals every $BENCH_EPOCH_MS ms (or when the previous epoch has been read) and reads"
    note "   every sealed extent through the ring (what the agent does, without network, TLS or secondary)"
    note "   cow: writelog-cow-max=$BENCH_COW_MAX; nocow: writelog-cow-max=0 (seals drain but preserve nothing)"
    note "   $(printf '%-6s %-6s %9s %13s %6s %7s  %s' round filter IOPS 'nbdkit us/wr' seals broken 'cowc: preserved peak waits wait_ms breaks drain_timeouts; mean/max ms seal->read done')"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        if [ $((r % 2)) = 1 ]; then order="cow nocow"; else order="nocow cow"; fi
        for c in $order; do
            f=f64
            [ "$c" = nocow ] && f=f0
            bg_start "$WORK/loop-$c-$r.out" timeout $((BENCH_RUNTIME + 60)) "$LOOPER" \
                "$WORK/log_$NAMEPFX$f.ctl" "$BENCH_EPOCH_MS" $((BENCH_RUNTIME + 1))
            lp=$LAST_PID
            sleep 0.3
            c_nb=$(cpu_ticks "${F_PID[$f]}")
            run_fio "cow-$c-$r" "$WORK/$f.nbd" $((5000 + r)) "$BENCH_RUNTIME" 4k
            d_nb=$(($(cpu_ticks "${F_PID[$f]}") - c_nb))
            for ((i = 0; i < 1200; i++)); do alive "$lp" || break; sleep 0.05; done
            wait "$lp" || die "wl-epoch-loop ($c) failed: $(cat "$WORK/loop-$c-$r.out")"
            line=$(tail -n 1 "$WORK/loop-$c-$r.out")
            # shellcheck disable=SC2034 # read through namerefs
            C_IOPS[$c,$r]=$(calc %.0f "$FIO_IOPS")
            C_US[$c,$r]=$(calc %.1f "$d_nb / $CLK_TCK * 1000000 / $FIO_IOS")
            note "   $(printf '%-6s %-6s %9.0f %13s %6s %7s  %s' "$r" "$c" "$FIO_IOPS" "${C_US[$c,$r]}" "$(kv seals "$line")" "$(kv broken "$line")" \
                "$(kv preserved "$line") $(iec "$(kv cow_peak "$line")") $(kv waits "$line") $(kv wait_ms "$line") $(kv breaks "$line") $(kv drain_timeouts "$line"); $(kv epoch_ms_mean "$line")/$(kv epoch_ms_max "$line")")"
        done
    done
    C_COW=$(median_of C_IOPS cow) C_NOCOW=$(median_of C_IOPS nocow)
    C_COST=$(calc %.1f "(1 - $C_COW / $C_NOCOW) * 100")
    C_USCOW=$(median_of C_US cow) C_USNOCOW=$(median_of C_US nocow)
    note "   medians: cow $(calc %.0f "$C_COW"), nocow $(calc %.0f "$C_NOCOW") IOPS; cost $C_COST%; nbdkit CPU per write $C_USCOW vs $C_USNOCOW us"
    note ""
fi

# =========================================================================
# (4) Initial full sync
# =========================================================================

declare -A S_T S_CPU
if has_part sync; then
    note "== (4) initial full sync of $(numfmt --to=iec "$SIZE") (random data) onto a loop device, 127.0.0.1, TLS"
    note "   epochs: this branch's agents (async); old: $BENCH_OLD_COMMIT's agents; both from a fresh state dir, start -> in sync (dirty 0, all acked)"
    note "   qemu: qemu-storage-daemon, source file node$QEMU_SRC_OPTS, blockdev-mirror sync=full $QEMU_MIRROR_OPTS,"
    note "         target qemu-nbd ${QEMU_NBD_EXTRA[*]} (x509), start -> BLOCK_JOB_READY"
    note "   page cache dropped before each; cmp after each; CPU s/GiB = primary+secondary+nbdkit CPU per GiB synced"
    note "   $(printf '%-6s %-8s %9s %9s %10s %6s  %s' round method seconds MB/s 'CPU s/GiB' host notes)"
    SMETHODS=(epochs old qemu)
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        # Only the measured method's agents run.
        for p in s o; do
            pair_stop_primary "$p"
            pair_stop_secondary "$p"
        done
        for ((k = 0; k < ${#SMETHODS[@]}; k++)); do
            m=${SMETHODS[$(((k + r - 1) % ${#SMETHODS[@]}))]}
            extra='' cpu=-
            case $m in
            epochs | old)
                p=s
                [ "$m" = old ] && p=o
                pair_fullsync "$p"
                pair_stop_primary "$p"
                pair_stop_secondary "$p"
                cpu=$(calc %.2f "($CPU_PRI + $CPU_SEC + $CPU_NBD) / ($SIZE / $GIB)")
                extra="CPU s: primary $CPU_PRI, secondary $CPU_SEC, nbdkit $CPU_NBD"
                dev=${P_LOOP[$p]}
                ;;
            qemu)
                run_qemu_mirror
                dev=${P_LOOP[s]}
                ;;
            esac
            verify "$IMG" "$dev" "sync round $r $m"
            S_T[$m,$r]=$T_RUN
            # shellcheck disable=SC2034 # read through namerefs
            S_CPU[$m,$r]=$cpu
            note "   $(printf '%-6s %-8s %9.3f %9.1f %10s %5s%%  %s' "$r" "$m" "$T_RUN" "$(calc %.1f "$SIZE / $MB / $T_RUN")" "$cpu" "$HOST_BUSY" "$VERIFY_NOTE${extra:+; $extra}")"
        done
    done
    S_EP=$(median_of S_T epochs) S_OLD=$(median_of S_T old) S_QEMU=$(median_of S_T qemu)
    rq=() ro=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        ro+=("$(calc %.4f "${S_T[epochs,$r]} / ${S_T[old,$r]}")")
        rq+=("$(calc %.4f "${S_T[qemu,$r]} / ${S_T[epochs,$r]}")")
    done
    S_RATIO_OLD=$(calc %.3f "$S_EP / $S_OLD")
    S_RATIO_OLD_R=$(calc %.3f "$(median "${ro[@]}")")
    S_RATIO_QEMU=$(calc %.2f "$S_QEMU / $S_EP")
    S_RATIO_QEMU_R=$(calc %.2f "$(median "${rq[@]}")")
    note "   medians: epochs $S_EP s, old $S_OLD s, qemu $S_QEMU s"
    note ""
fi

# =========================================================================
# Summary
# =========================================================================

note "======================================================================================="
note "SUMMARY  (medians of $BENCH_ROUNDS rounds; $NCPU CPUs; load average at start $LOAD0, now $(cut -d' ' -f1-3 /proc/loadavg))"
if has_part checkpoint; then
    note ""
    note "(1) checkpoint mode, $BENCH_CKPT_COUNT requests every $BENCH_CKPT_EVERY_MS ms on one connection, ~$CK_MIB MiB shipped per checkpoint"
    note "    latency ms: p50 $CK_P50  p90 $CK_P90  p99 $CK_P99  max $CK_MAX  (mean $CK_MEAN); answered $CK_OK, failed $CK_FAIL; $CK_RATE/s sustained"
    note "    p99 < 25 ms: $(verdict "$CK_OK > 0 && $CK_P99 < 25")   p50 < 10 ms: $(verdict "$CK_OK > 0 && $CK_P50 < 10")   no failure: $(verdict "$CK_FAIL == 0")"
fi
if has_part async; then
    note ""
    note "(2) async mode, fio randwrite 4 KiB QD$BENCH_IODEPTH, $BENCH_RUNTIME s; IOPS (per round) and CPU s per GiB written (nbdkit+primary+secondary)"
    for c in none epochs old; do
        note "    $(printf '%-8s %9.0f IOPS  %6s CPU s/GiB   per round: %s' "$c" "$(median_of A_IOPS "$c")" "$(median_of A_CPU "$c")" "$(per_round A_IOPS "$c")")"
    done
    note "    epochs / old: $A_RATIO (median of per-round ratios $A_RATIO_R)   within 15%: $(verdict "$A_RATIO >= 0.85")"
    note "    round-to-round spread (max - min) / median: none $(spread A_IOPS none)%, epochs $(spread A_IOPS epochs)%, old $(spread A_IOPS old)%: a difference smaller than that is noise"
    note "    replication cost vs none: epochs $(calc %.1f "(1 - $A_EP / $A_NONE) * 100")%, old $(calc %.1f "(1 - $A_OLD / $A_NONE) * 100")%"
    for fr in $BENCH_LAG_FRACTIONS; do
        read -r l50 l90 l99 lmax n li ld ne em <<<"${LAG[$fr]}"
        note "    lag_ms at $fr x none ($li IOPS asked, $ld done), --epoch-ms $BENCH_EPOCH_MS: p50 $l50, p90 $l90, p99 $l99, max $lmax ($n samples; an epoch committed every $em ms)"
        if [ "$fr" = 0.5 ]; then
            note "    p99 < 2 x epoch-ms + 100 = $LAG_TARGET ms at half the unreplicated IOPS: $(verdict "$n > 0 && $l99 < $LAG_TARGET")"
        fi
    done
fi
if has_part cow; then
    note ""
    note "(3) copy-before-write, sealing client every $BENCH_EPOCH_MS ms, fio randwrite 4 KiB QD$BENCH_IODEPTH"
    note "    cow ($BENCH_COW_MAX pool): $(calc %.0f "$C_COW") IOPS, nbdkit $C_USCOW us/write   per round: $(per_round C_IOPS cow)"
    note "    nocow (writelog-cow-max=0): $(calc %.0f "$C_NOCOW") IOPS, nbdkit $C_USNOCOW us/write   per round: $(per_round C_IOPS nocow)"
    note "    cost of copy-before-write: $C_COST% of IOPS (round-to-round spread: cow $(spread C_IOPS cow)%, nocow $(spread C_IOPS nocow)%)"
fi
if has_part sync; then
    note ""
    note "(4) initial full sync, $(numfmt --to=iec "$SIZE")"
    for m in epochs old qemu; do
        note "    $(printf '%-8s %8.3f s  %7.1f MB/s  %6s CPU s/GiB   per round: %s' "$m" "$(median_of S_T "$m")" \
            "$(calc %.1f "$SIZE / $MB / $(median_of S_T "$m")")" "$(median_of S_CPU "$m")" "$(per_round S_T "$m")")"
    done
    note "    round-to-round spread: epochs $(spread S_T epochs)%, old $(spread S_T old)%, qemu $(spread S_T qemu)%"
    note "    epochs / old time: $S_RATIO_OLD (median of per-round ratios $S_RATIO_OLD_R)   not slower: $(verdict "$S_RATIO_OLD <= 1.0")"
    note "    qemu / epochs time: $S_RATIO_QEMU (per-round $S_RATIO_QEMU_R): blkship $(if awk "BEGIN { exit !($S_RATIO_QEMU >= 1) }"; then echo "faster"; else echo "SLOWER"; fi) than the tuned QEMU mirror"
fi
note "======================================================================================="
if [ "${#VERIFY_FAILS[@]}" -gt 0 ]; then
    note "REPLICA MISMATCH (cmp): ${VERIFY_FAILS[*]}"
    exit 1
fi
exit 0
