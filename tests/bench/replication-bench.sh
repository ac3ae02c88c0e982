#!/usr/bin/env bash
# replication-bench.sh: blkship replication against the usual alternatives.
#
#   (1) sync     initial full sync of a random image onto a loop device:
#                blkship over TLS vs QEMU blockdev-mirror (sync=full) to a
#                qemu-nbd export over TLS vs a local dd copy
#   (2) catchup  restart of the primary agent after 1% of the 4 KiB blocks
#                changed: blkship vs local rsync --inplace --no-whole-file,
#                and blkship on a disk BENCH_BIG_FACTOR times larger with the
#                same number of changed blocks
#   (3) load     fio 4 KiB random writes through NBD with and without the
#                primary agent: IOPS, replication lag (dirty bytes sampled
#                from `blkship status`, and a timestamp probe block)
#   (profile)    not run by default: one more full sync under `perf record -a
#                -g`, and one under `strace -c -f`, with the top entries
#
# A benchmark, not a test: ctest never runs it, and a missed target does not
# make it fail.  It exits non-zero when a measure did not work or when the
# replica did not match the source (cmp) after a sync.  Needs root (loop
# devices, drop_caches).  See tests/bench/README.md, "Replication benchmarks".
set -Eeuo pipefail
export LC_ALL=C

# ---- Knobs -------------------------------------------------------------------

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=replication-bench
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$HERE/bench-lib.sh"
default_build_dir
: "${BENCH_DIR:=${TMPDIR:-/var/tmp}}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_PARTS:=sync catchup load}"
: "${BENCH_SIZE:=1G}"
: "${BENCH_BIG_FACTOR:=4}"
: "${BENCH_CHANGE_PCT:=1}"
: "${BENCH_CHANGE_BLOCKS:=}"
: "${BENCH_BIG_RSYNC:=1}"
: "${BENCH_SMALL_RSYNC:=1}"
: "${BENCH_LOAD_TIME:=20}"
: "${BENCH_IODEPTH:=16}"
: "${BENCH_LAG_PERIOD_MS:=100}"
: "${BENCH_SAMPLE_MS:=100}"
: "${BENCH_DROP_CACHES:=1}"
: "${BENCH_LOOP_DIO:=1}"
: "${BENCH_INTERVAL:=100}"
: "${BENCH_FILTER_ARGS:=}"
: "${BENCH_PRIMARY_ARGS:=}"
: "${BENCH_SECONDARY_ARGS:=}"
# QEMU as an expert configures it (the reference): O_DIRECT and native AIO
# on both ends, a 64 MiB mirror buffer.  BENCH_QEMU_UNTUNED=1 adds the
# defaults (buffered source, 16 MiB buffer) as a method of its own,
# labelled so.
: "${BENCH_QEMU_NBD_ARGS:=--cache=none --aio=native}"
: "${QEMU_SRC_OPTS=,cache.direct=on,aio=native}"
: "${QEMU_MIRROR_OPTS={\"buf-size\": 67108864\}}"
: "${BENCH_QEMU_UNTUNED:=0}"
: "${BENCH_SYNC_TIMEOUT:=600}"
: "${BENCH_KEEP:=0}"

FILTER=$BENCH_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so
# BENCH_PRIMARY_BIN: another blkship-primary (an A/B of one change).
PRIMARY=${BENCH_PRIMARY_BIN:-$BENCH_BUILD_DIR/primary/blkship-primary}
SECONDARY=$BENCH_BUILD_DIR/secondary/blkship-secondary
CLI=$BENCH_BUILD_DIR/cli/blkship
MKCERTS=$REPO/scripts/mkcerts.sh
read -r -a FILTER_EXTRA <<<"$BENCH_FILTER_ARGS"
read -r -a PRIMARY_EXTRA <<<"$BENCH_PRIMARY_ARGS"
read -r -a SECONDARY_EXTRA <<<"$BENCH_SECONDARY_ARGS"
read -r -a QEMU_NBD_EXTRA <<<"$BENCH_QEMU_NBD_ARGS"


# ---- Cleanup -----------------------------------------------------------------

WORK=
BG_PIDS=()
LOOPS=()
NAMEPFX=rb$$
VERIFY_FAILS=()

set_traps

# ---- Prerequisites -------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (loop devices, drop_caches)"
require_tools nbdkit qemu-nbd qemu-storage-daemon fio rsync python3 losetup blkdiscard fallocate \
    openssl cmp ss timeout awk numfmt dd getconf
require_built "$FILTER" "$PRIMARY" "$SECONDARY" "$CLI" "$MKCERTS"
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"
for part in $BENCH_PARTS; do
    case $part in sync | catchup | load | profile) ;; *) die "unknown part '$part' in BENCH_PARTS" ;; esac
done
has_part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }

SIZE=$(numfmt --from=iec "$BENCH_SIZE") || die "bad BENCH_SIZE $BENCH_SIZE"
[ $((SIZE % 1048576)) = 0 ] && [ "$SIZE" -ge $((64 << 20)) ] || die "BENCH_SIZE must be a multiple of 1 MiB, at least 64 MiB"
BIG_SIZE=$((SIZE * BENCH_BIG_FACTOR))
BLOCKS=$((SIZE / 4096))
if [ -n "$BENCH_CHANGE_BLOCKS" ]; then
    NCHANGE=$BENCH_CHANGE_BLOCKS
else
    NCHANGE=$(calc %d "$BLOCKS * $BENCH_CHANGE_PCT / 100")
fi
[ "$NCHANGE" -ge 1 ] || die "no block to change (BENCH_CHANGE_PCT/BENCH_CHANGE_BLOCKS)"
CLK_TCK=$(getconf CLK_TCK)
DROP_NOTE=
if [ "$BENCH_DROP_CACHES" = 1 ]; then
    if [ -w /proc/sys/vm/drop_caches ]; then
        DROP_NOTE="page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run: every method reads its source cold"
    else
        BENCH_DROP_CACHES=0
        DROP_NOTE="page cache NOT dropped (/proc/sys/vm/drop_caches not writable): the source may be cached"
    fi
else
    DROP_NOTE="page cache not dropped (BENCH_DROP_CACHES=0): sources may be read from cache"
fi

# The interpreter itself, not a version-manager shim: it starts faster.
PY=$(python3 -c 'import sys; print(sys.executable)') || die "python3 does not run"

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/rb-$$.XXXXXX")


# ---- Header ---------------------------------------------------------------------

NCPU=$(nproc)
note "replication-bench: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "  host: $NCPU CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r)"
note "  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
note "  build: $BENCH_BUILD_DIR ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- primary secondary common proto cli 2>/dev/null || echo ', agent sources modified'))"
note "    blkship-primary built $(date -r "$PRIMARY" '+%F %T'), blkship-secondary built $(date -r "$SECONDARY" '+%F %T')"
note "  $(nbdkit --version), $(qemu-nbd --version 2>&1 | awk 'NR == 1'), $(fio --version), $(rsync --version 2>&1 | awk 'NR == 1 { print $1, $2, $3 }')"
note "  scratch: $WORK ($(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo '?')); image $(numfmt --to=iec "$SIZE"), big disk $(numfmt --to=iec "$BIG_SIZE"); rounds $BENCH_ROUNDS; parts: $BENCH_PARTS"
note "  replica: loop device on a preallocated file (direct-io $([ "$BENCH_LOOP_DIO" = 1 ] && echo on || echo off)), discarded and re-preallocated before every full copy"
note "  $DROP_NOTE"
if [ "$NCPU" -le 2 ]; then
    note "  NOTE: $NCPU CPUs: nbdkit, both agents, TLS on both ends and the kernel share them; other load on the host shows up as noise."
fi
note ""

make_certs
write_helpers
IMG=$WORK/s.img
note "making a $(numfmt --to=iec "$SIZE") random image..."
make_random "$IMG" "$SIZE" "blkship-bench-small"
pair_init s "$IMG" "$SIZE"
pick_port
QPORT=$PORT

MB=1000000

# =========================================================================
# (1) Initial full sync
# =========================================================================

declare -A T1 # T1[method,round]
if [ -n "${BENCH_SYNC_METHODS:-}" ]; then
    read -r -a METHODS <<<"$BENCH_SYNC_METHODS"
else
    METHODS=(blkship qemu limit dd ddsync)
    [ "$BENCH_QEMU_UNTUNED" = 1 ] && METHODS+=(qemuu)
fi
declare -A MNAME=([blkship]="blkship (TLS)" [qemu]="qemu mirror tuned (TLS)" [qemuu]="qemu mirror UNTUNED (TLS)"
    [limit]="limit: fio read+write at once" [dd]="dd oflag=direct" [ddsync]="dd oflag=direct conv=fsync")
declare -A C1 # C1[method,round]: CPU seconds of the method's processes

# run_limit: the physical limit of a full sync here: fio reads the image
# and writes the replica device at the same time (4 MiB, QD32, io_uring,
# O_DIRECT), the two jobs of one run.  The replica then holds fio's data,
# not the image's: not compared.
run_limit() {
    local t0
    reset_target "${P_LOOP[s]}" "${P_REP[s]}" "$SIZE"
    drop_caches
    host_cpu_start
    t0=$(now)
    timeout "$BENCH_SYNC_TIMEOUT" fio --output=/dev/null --ioengine=io_uring --direct=1 --bs=4M \
        --iodepth=32 --size="$SIZE" \
        --name=read --rw=read --filename="$IMG" --name=write --rw=write --filename="${P_LOOP[s]}" ||
        die "fio (the limit) failed"
    T_RUN=$(calc %.3f "$(now) - $t0")
    HOST_BUSY=$(host_cpu_busy)
}


run_dd() { # extra dd args...
    local t0
    reset_target "${P_LOOP[s]}" "${P_REP[s]}" "$SIZE"
    drop_caches
    host_cpu_start
    t0=$(now)
    timeout "$BENCH_SYNC_TIMEOUT" dd if="$IMG" of="${P_LOOP[s]}" bs=4M oflag=direct status=none "$@" ||
        die "dd failed"
    T_RUN=$(calc %.3f "$(now) - $t0")
    HOST_BUSY=$(host_cpu_busy)
}

if has_part sync; then
    note "== (1) initial full sync of $(numfmt --to=iec "$SIZE") onto ${P_LOOP[s]} (127.0.0.1, TLS for blkship and qemu)"
    note "   blkship: blkship-primary started with a fresh state dir -> status connected, dirty_bytes 0 (polled every 20 ms)"
    note "   qemu:    qemu-storage-daemon started -> BLOCK_JOB_READY of blockdev-mirror sync=full (the target is flushed before READY)"
    note "            source file node on the image, target nbd node -> qemu-nbd (x509, verify-peer=on) on the loop device"
    note "   dd:      dd if=IMAGE of=LOOP bs=4M oflag=direct [conv=fsync]"
    note "   after each run: cmp IMAGE LOOP"
    note "   host CPU = busy share of all $NCPU CPUs during the run (100% = all busy)"
    note "   $(printf '%-6s %-28s %9s %9s %6s  %s' round method seconds 'MB/s' 'host' 'notes')"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        for ((k = 0; k < ${#METHODS[@]}; k++)); do
            m=${METHODS[$(((k + r - 1) % ${#METHODS[@]}))]}
            extra=
            case $m in
            blkship)
                pair_fullsync s
                s_sent=$(json_get "$SYNC_JSON" sent_bytes)
                pair_stop_primary s
                pair_stop_secondary s
                extra="CPU s: primary $CPU_PRI, secondary $CPU_SEC, nbdkit $CPU_NBD; sent $s_sent B"
                C1[$m,$r]=$(calc %.2f "$CPU_PRI + $CPU_SEC + $CPU_NBD")
                ;;
            qemu)
                run_qemu_mirror
                C1[$m,$r]=$QEMU_CPU
                extra="CPU s: qemu-storage-daemon + qemu-nbd $QEMU_CPU"
                ;;
            qemuu)
                saved=("${QEMU_NBD_EXTRA[@]}") saved_src=$QEMU_SRC_OPTS saved_mir=$QEMU_MIRROR_OPTS
                QEMU_NBD_EXTRA=() QEMU_SRC_OPTS= QEMU_MIRROR_OPTS='{}'
                run_qemu_mirror
                QEMU_NBD_EXTRA=("${saved[@]}") QEMU_SRC_OPTS=$saved_src QEMU_MIRROR_OPTS=$saved_mir
                C1[$m,$r]=$QEMU_CPU
                extra="CPU s: qemu-storage-daemon + qemu-nbd $QEMU_CPU"
                ;;
            limit) run_limit ;;
            dd) run_dd ;;
            ddsync) run_dd conv=fsync ;;
            esac
            if [ "$m" = limit ]; then VERIFY_NOTE="(fio's data: not compared)"; else verify "$IMG" "${P_LOOP[s]}" "sync round $r $m"; fi
            T1[$m,$r]=$T_RUN
            note "   $(printf '%-6s %-28s %9.3f %9.1f %5s%%  %s' "$r" "${MNAME[$m]}" "$T_RUN" "$(calc %.1f "$SIZE / $MB / $T_RUN")" "$HOST_BUSY" "$VERIFY_NOTE${extra:+; $extra}")"
        done
    done
    declare -A M1
    for m in "${METHODS[@]}"; do
        v=()
        for ((r = 1; r <= BENCH_ROUNDS; r++)); do v+=("${T1[$m,$r]}"); done
        M1[$m]=$(median "${v[@]}")
    done
    if [ -z "${BENCH_SYNC_METHODS:-}" ]; then
    rq=() rd=() rds=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        rq+=("$(calc %.4f "${T1[qemu,$r]} / ${T1[blkship,$r]}")")
        rd+=("$(calc %.4f "${T1[dd,$r]} / ${T1[blkship,$r]}")")
        rds+=("$(calc %.4f "${T1[ddsync,$r]} / ${T1[blkship,$r]}")")
    done
    rl=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do rl+=("$(calc %.4f "${T1[blkship,$r]} / ${T1[limit,$r]}")"); done
    S1_LIMIT=$(calc %.3f "${M1[blkship]} / ${M1[limit]}")
    S1_LIMIT_R=$(median "${rl[@]}")
    declare -A MC1
    for m in blkship qemu qemuu; do
        v=()
        for ((r = 1; r <= BENCH_ROUNDS; r++)); do [ -n "${C1[$m,$r]:-}" ] && v+=("${C1[$m,$r]}"); done
        [ "${#v[@]}" -gt 0 ] && MC1[$m]=$(calc %.2f "$(median "${v[@]}") * 1073741824 / $SIZE")
    done
    S1_QEMU=$(calc %.2f "${M1[qemu]} / ${M1[blkship]}")
    S1_DD=$(calc %.3f "${M1[dd]} / ${M1[blkship]}")
    S1_DDS=$(calc %.3f "${M1[ddsync]} / ${M1[blkship]}")
    S1_QEMU_R=$(median "${rq[@]}")
    S1_DD_R=$(median "${rd[@]}")
    S1_DDS_R=$(median "${rds[@]}")
    fi
    note "   medians: $(for m in "${METHODS[@]}"; do printf '%s %.3f s; ' "$m" "${M1[$m]}"; done)"
    [ -n "${BENCH_SYNC_METHODS:-}" ] || note "   blkship speedup over qemu mirror: $S1_QEMU (median of per-round ratios $(calc %.2f "$S1_QEMU_R"))"
    [ -n "${BENCH_SYNC_METHODS:-}" ] || note "   blkship speed / dd oflag=direct: $(calc %.1f "$S1_DD * 100")%; / dd conv=fsync: $(calc %.1f "$S1_DDS * 100")%"
    note ""
fi

# =========================================================================
# (2) Catch-up after a restart of the primary agent
# =========================================================================

# change_blocks P SEED: fio writes NCHANGE distinct random 4 KiB blocks of
# fresh random data through the pair's NBD socket.
change_blocks() {
    local p=$1 out=$WORK/fio-change.json
    timeout 600 fio --name=change --ioengine=nbd --uri="nbd+unix:///?socket=${P_NBSOCK[$p]}" \
        --rw=randwrite --bs=4k --iodepth=16 --number_ios="$NCHANGE" --size="${P_SIZE[$p]}" \
        --randseed="$2" --refill_buffers --output-format=json >"$out" 2>"$WORK/fio-change.err" ||
        die "fio (change) failed: $(cat "$WORK/fio-change.err")"
    read -r _ ios _ _ _ < <("$PY" "$WORK/fiojson.py" "$out")
    [ "$ios" = "$NCHANGE" ] || die "fio wrote $ios blocks, not $NCHANGE"
}

# catchup_blkship P: restarts the primary agent (same state dir) and times it
# to in sync.  Sets T_RUN, RESENT (acked_bytes of the new process) and
# CU_CPU (the CPU milliseconds of nbdkit, the primary and the secondary).
catchup_blkship() {
    local p=$1 t0 nb0 se0
    # A catch-up takes a few hundred ms at most: poll every 5 ms, so that
    # the polling period is not a tenth of the result.
    sync_watch_start "${P_PCTL[$p]}" $((NCHANGE * 4096)) "" 0.005
    drop_caches
    # The dropped cache took blkship-primary's program and its 27 shared
    # libraries too: loading them from a cold disk took 30-40 ms here.
    # fio's start-up is not part of the limit either: both are warmed.
    "${P_PRIMARY[$p]:-$PRIMARY}" --version >/dev/null
    nb0=$(cpu_ns "${P_NBPID[$p]}") se0=$(cpu_ns "${P_SECPID[$p]}")
    t0=$(now)
    pair_start_primary "$p"
    sync_watch_wait
    T_RUN=$(calc %.3f "$SYNC_T - $t0")
    RESENT=$(json_get "$SYNC_JSON" acked_bytes)
    CU_CPU="CPU ms: nbdkit $(calc %.0f "($(cpu_ns "${P_NBPID[$p]}") - $nb0) / 1e6")"
    CU_CPU+=", primary $(calc %.0f "$(cpu_ns "${P_PRIPID[$p]}") / 1e6")"
    CU_CPU+=", secondary $(calc %.0f "($(cpu_ns "${P_SECPID[$p]}") - $se0) / 1e6")"
}

catchup_rsync() { # SRC DST
    local t0 out=$WORK/rsync.out
    drop_caches
    t0=$(now)
    timeout 1800 rsync --inplace --no-whole-file -I --stats "$1" "$2" >"$out" 2>&1 ||
        die "rsync failed: $(tail -n 5 "$out")"
    T_RUN=$(calc %.3f "$(now) - $t0")
    LITERAL=$(awk -F': ' '/^Literal data/ { gsub(/[^0-9]/, "", $2); print $2 }' "$out")
}

# catchup_limit P SEED: the physical limit of a catch-up here: fio does
# the same I/O a catch-up must do, at a deep queue, all at once: NCHANGE
# random 4 KiB reads of the image (the blocks change_blocks wrote with
# SEED) and NCHANGE random 4 KiB writes to a scratch loop device made like
# the replica's, then an fsync (a catch-up is durable).  io_uring,
# O_DIRECT, queue depth 128 each.  The scratch device, not the replica,
# takes the writes, so the pair stays in sync.  Sets T_RUN to the longer
# of the two jobs' run times (fio's job_runtime, which includes the final
# fsync): fio's own start-up takes about 0.3 s here whatever the job, so
# the process's wall time would measure fio, not the disk.
catchup_limit() {
    local p=$1 out=$WORK/fio-culimit.json
    drop_caches
    timeout 600 fio --output-format=json --output="$out" --ioengine=io_uring --direct=1 --bs=4k \
        --iodepth=128 --number_ios="$NCHANGE" --size="${P_SIZE[$p]}" --randseed="$2" \
        --name=read --rw=randread --filename="${P_IMG[$p]}" \
        --name=write --rw=randwrite --filename="${P_LIMDEV[$p]}" --end_fsync=1 \
        2>"$WORK/fio-culimit.err" || die "fio (the catch-up limit) failed: $(cat "$WORK/fio-culimit.err")"
    T_RUN=$("$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
ios = sum(x["read"]["total_ios"] + x["write"]["total_ios"] for x in j["jobs"])
if ios != 2 * int(sys.argv[2]):
    sys.exit("fio did %d I/Os, not %d" % (ios, 2 * int(sys.argv[2])))
print("%.3f" % (max(x["job_runtime"] for x in j["jobs"]) / 1000))' "$out" "$NCHANGE") ||
        die "fio (the catch-up limit): unexpected result in $out"
}

# catchup_series P LABEL RSYNC(0/1): rounds of stop / change / restart.
# Fills CU_B[LABEL,r] CU_R[LABEL,r] CU_L[LABEL,r].
declare -A CU_B CU_R CU_L P_LIMDEV
catchup_series() {
    local p=$1 label=$2 with_rsync=$3 r order first copy=$WORK/$1.copy setup
    note "   [$label] disk $(numfmt --to=iec "${P_SIZE[$p]}"): initial full sync (not part of the comparison)..."
    pair_fullsync "$p"
    setup=$T_RUN
    verify "${P_IMG[$p]}" "${P_LOOP[$p]}" "catch-up $label initial sync"
    note "   [$label] initial full sync $setup s ($(calc %.1f "${P_SIZE[$p]} / $MB / $setup") MB/s), $VERIFY_NOTE"
    if [ "$with_rsync" = 1 ]; then
        timeout 1800 cp --sparse=never "${P_IMG[$p]}" "$copy"
    fi
    # The limit's scratch device holds written data, as the replica does
    # after its full sync: writes into unwritten extents cost the file
    # system more.  The limit is taken on the 1x disk only, where the
    # target is.
    local with_limit=0
    P_LIMDEV[$p]=
    if [ "$label" = small ]; then
        with_limit=1
        make_loop "$WORK/$p.lim" "${P_SIZE[$p]}"
        P_LIMDEV[$p]=$LOOPDEV
        timeout 1800 dd if="${P_IMG[$p]}" of="$LOOPDEV" bs=4M oflag=direct status=none ||
            die "could not fill $LOOPDEV"
    fi
    note "   $(printf '%-6s %-8s %-26s %9s %12s  %s' round disk method seconds 'bytes moved' notes)"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        pair_stop_primary "$p"
        change_blocks "$p" $((1000 + r))
        case $((r % 3)) in
        1) order="blkship rsync limit" ;;
        2) order="rsync limit blkship" ;;
        0) order="limit blkship rsync" ;;
        esac
        for first in $order; do
            if [ "$first" = limit ]; then
                [ "$with_limit" = 1 ] || continue
                catchup_limit "$p" $((1000 + r))
                CU_L[$label,$r]=$T_RUN
                note "   $(printf '%-6s %-8s %-26s %9.3f %12s  %s' "$r" "$label" "limit: fio read+write QD128" "$T_RUN" $((NCHANGE * 4096)) "fio: reads of the image, writes to a scratch device, fsync")"
            elif [ "$first" = blkship ]; then
                catchup_blkship "$p"
                CU_B[$label,$r]=$T_RUN
                verify "${P_IMG[$p]}" "${P_LOOP[$p]}" "catch-up $label round $r blkship"
                local note2=$VERIFY_NOTE
                [ "$RESENT" = $((NCHANGE * 4096)) ] || note2+="; resent $RESENT B, expected $((NCHANGE * 4096))"
                note "   $(printf '%-6s %-8s %-26s %9.3f %12s  %s' "$r" "$label" "blkship restart" "$T_RUN" "$RESENT" "$note2; $CU_CPU")"
            elif [ "$with_rsync" = 1 ]; then
                catchup_rsync "${P_IMG[$p]}" "$copy"
                CU_R[$label,$r]=$T_RUN
                verify "${P_IMG[$p]}" "$copy" "catch-up $label round $r rsync"
                note "   $(printf '%-6s %-8s %-26s %9.3f %12s  %s' "$r" "$label" "rsync (local, no ssh)" "$T_RUN" "$LITERAL" "$VERIFY_NOTE; literal data")"
            fi
        done
    done
    rm -f "$copy"
    if [ -n "${P_LIMDEV[$p]}" ]; then
        losetup -d "${P_LIMDEV[$p]}" 2>/dev/null
        rm -f "$WORK/$p.lim"
    fi
}

if has_part catchup; then
    note "== (2) catch-up: primary agent stopped (SIGTERM), $NCHANGE random 4 KiB blocks changed through NBD"
    note "   ($(calc %.2f "$NCHANGE * 100 / $BLOCKS")% of the $(numfmt --to=iec "$SIZE") disk; fio randwrite, distinct blocks, fresh random data), agent restarted"
    note "   blkship: blkship-primary restarted on the same state dir -> connected, dirty_bytes 0 and acked_bytes >= changed bytes"
    note "   rsync:   rsync --inplace --no-whole-file -I IMAGE COPY, both local files (no ssh, no daemon), COPY = previous state"
    catchup_series s small "$BENCH_SMALL_RSYNC"
    big_rsync=$BENCH_BIG_RSYNC
    if [ "$BENCH_BIG_FACTOR" -gt 1 ]; then
        note "   making a $(numfmt --to=iec "$BIG_SIZE") random image for the big disk..."
        make_random "$WORK/b.img" "$BIG_SIZE" "blkship-bench-big"
        pair_init b "$WORK/b.img" "$BIG_SIZE"
        catchup_series b big "$big_rsync"
        pair_stop_primary b
        pair_stop_secondary b
        stop_pid "${P_NBPID[b]}"
        rm -f "$WORK/b.img"
    fi
    v=() w=() x=() y=() rr=() lv=() lr=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        lv+=("${CU_L[small,$r]}")
        lr+=("$(calc %.4f "${CU_B[small,$r]} / ${CU_L[small,$r]}")")
        v+=("${CU_B[small,$r]}")
        if [ "$BENCH_SMALL_RSYNC" = 1 ]; then
            w+=("${CU_R[small,$r]}")
            rr+=("$(calc %.4f "${CU_R[small,$r]} / ${CU_B[small,$r]}")")
        fi
        if [ "$BENCH_BIG_FACTOR" -gt 1 ]; then
            x+=("${CU_B[big,$r]}")
            [ "$big_rsync" = 1 ] && y+=("${CU_R[big,$r]}")
        fi
    done
    M2_B=$(median "${v[@]}")
    M2_L=$(median "${lv[@]}")
    S2_LIMIT=$(calc %.3f "$M2_B / $M2_L")
    S2_LIMIT_R=$(median "${lr[@]}")
    M2_R=nan S2_RSYNC=nan S2_RSYNC_R=nan
    if [ "$BENCH_SMALL_RSYNC" = 1 ]; then
        M2_R=$(median "${w[@]}")
        S2_RSYNC=$(calc %.1f "$M2_R / $M2_B")
        S2_RSYNC_R=$(median "${rr[@]}")
    fi
    M2_BB=nan M2_BR=nan
    if [ "$BENCH_BIG_FACTOR" -gt 1 ]; then
        M2_BB=$(median "${x[@]}")
        [ "$big_rsync" = 1 ] && M2_BR=$(median "${y[@]}")
    fi
    note "   medians: blkship $M2_B s, rsync $M2_R s (speedup $S2_RSYNC, median of per-round ratios $(calc %.1f "$S2_RSYNC_R")); big disk: blkship $M2_BB s, rsync $M2_BR s"
    note ""
fi

# =========================================================================
# (3) Replication under load
# =========================================================================

# sampler CTL OUT STOPFILE MAXN: status every BENCH_SAMPLE_MS ms.
sampler() {
    local ctl=$1 out=$2 stop=$3 max=$4 i s pause
    pause=$(calc %.3f "$BENCH_SAMPLE_MS / 1000")
    for ((i = 0; i < max; i++)); do
        [ -e "$stop" ] && break
        # Raw lines, parsed afterwards: no more forks than needed meanwhile.
        s=$(status_json "$ctl")
        echo "$EPOCHREALTIME $s" >>"$out"
        sleep "$pause"
    done
}

ensure_synced_running() { # P LABEL
    local p=$1 label=$2 t0
    if ! alive "${P_SECPID[$p]}"; then
        pair_fullsync "$p"
        note "   (set-up: full sync $T_RUN s)"
        return
    fi
    if ! alive "${P_PRIPID[$p]}"; then
        # What accumulated while the agent was down is at least one write.
        sync_watch_start "${P_PCTL[$p]}" 1
        t0=$(now)
        pair_start_primary "$p"
        sync_watch_wait
        note "   $label: agent restarted, caught up $(iec "$(json_get "$SYNC_JSON" acked_bytes)") written without it in $(calc %.2f "$SYNC_T - $t0") s"
    else
        wait_sync "${P_PCTL[$p]}" 0
    fi
}

declare -A L_CPUGIB L_IOPS L_DP50 L_DP99 L_LAG50 L_LAG99 L_LAGMAX L_DRAIN L_NSAMP L_PROBE
if has_part load; then
    p=s
    note "== (3) replication under load: fio randwrite bs=4k iodepth=$BENCH_IODEPTH for $BENCH_LOAD_TIME s through NBD (nbdkit + writelog filter)"
    note "   with: blkship-primary replicating (in sync at the start); without: blkship-primary not running (the filter still logs)"
    note "   dirty: \`blkship status --json\` dirty_bytes every $BENCH_SAMPLE_MS ms during the run (grains the replica lacks, sealed ones only)"
    note "   probe: a 4 KiB block with a sequence number written through NBD every $BENCH_LAG_PERIOD_MS ms outside fio's range;"
    note "          lag = first sighting on the replica device (polled every 2 ms) - the primary's write acknowledgement"
    note "   drain: after fio ends, time until in sync again"
    note "   $(printf '%-6s %-9s %9s %9s %11s %11s %9s %9s %9s %8s  %s' round agent IOPS MB/s 'dirty p50' 'dirty p99' 'lag p50' 'lag p99' 'lag max' drain 'CPU% of one CPU: nbdkit/primary/secondary/fio; host busy')"
    FIO_SIZE=$((SIZE - 1048576))
    PROBE_OFF=$((SIZE - 4096))
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        if [ $((r % 2)) = 1 ]; then order="with without"; else order="without with"; fi
        for mode in $order; do
            if [ "$mode" = with ]; then
                ensure_synced_running "$p" "$(printf '%-6s %-9s' "$r" with) (before the run)"
            else
                alive "${P_SECPID[$p]}" || pair_fullsync "$p"
                pair_stop_primary "$p"
            fi
            samples=$WORK/samples-$r-$mode
            stopf=$WORK/stop-$r-$mode
            : >"$samples"
            spid=
            if [ "$mode" = with ]; then
                sampler "${P_PCTL[$p]}" "$samples" "$stopf" $(((BENCH_LOAD_TIME + 30) * 1000 / BENCH_SAMPLE_MS)) &
                spid=$!
                BG_PIDS+=("$spid")
            fi
            probe_mode="write"
            [ "$mode" = with ] && probe_mode="read"
            bg_start "$WORK/lagprobe-$r-$mode.out" timeout $((BENCH_LOAD_TIME + 60)) "$PY" "$WORK/lagprobe.py" \
                "${P_NBSOCK[$p]}" "${P_LOOP[$p]}" "$PROBE_OFF" "$BENCH_LOAD_TIME" "$BENCH_LAG_PERIOD_MS" "$probe_mode"
            lpid=$LAST_PID
            c_nb=$(cpu_ticks "${P_NBPID[$p]}")
            c_pr=0 c_se=$(cpu_ticks "${P_SECPID[$p]}")
            [ "$mode" = with ] && c_pr=$(cpu_ticks "${P_PRIPID[$p]}")
            gate=$WORK/gate-$r-$mode
            [ "$mode" = with ] && sync_watch_start "${P_PCTL[$p]}" 0 "$gate"
            host_cpu_start
            tf0=$(now)
            timeout $((BENCH_LOAD_TIME + 120)) fio --name=load --ioengine=nbd \
                --uri="nbd+unix:///?socket=${P_NBSOCK[$p]}" --rw=randwrite --bs=4k \
                --iodepth="$BENCH_IODEPTH" --size="$FIO_SIZE" --time_based --runtime="$BENCH_LOAD_TIME" \
                --norandommap --randseed=$((2000 + r)) --output-format=json \
                >"$WORK/fio-load-$r-$mode.json" 2>"$WORK/fio-load.err" ||
                die "fio (load) failed: $(cat "$WORK/fio-load.err")"
            tf1=$(now)
            touch "$gate"
            hb=$(host_cpu_busy)
            el=$(calc %.3f "$tf1 - $tf0")
            cpu_nb=$(calc %.0f "($(cpu_ticks "${P_NBPID[$p]}") - $c_nb) / $CLK_TCK / $el * 100")
            cpu_se=$(calc %.0f "($(cpu_ticks "${P_SECPID[$p]}") - $c_se) / $CLK_TCK / $el * 100")
            cpu_pr=-
            [ "$mode" = with ] && cpu_pr=$(calc %.0f "($(cpu_ticks "${P_PRIPID[$p]}") - $c_pr) / $CLK_TCK / $el * 100")
            if [ -n "$spid" ]; then
                touch "$stopf"
                stop_pid "$spid" TERM
            fi
            read -r iops _ wbytes fusr fsys < <("$PY" "$WORK/fiojson.py" "$WORK/fio-load-$r-$mode.json")
            L_IOPS[$mode,$r]=$iops
            drain=- dp50=- dp99=- lag50=- lag99=- lagmax=-
            if [ "$mode" = with ]; then
                sync_watch_wait
                drain=$(calc %.2f "$SYNC_T - $tf1")
                # Replication's CPU for these writes runs until the drain
                # ends, so it is read after it.
                L_CPUGIB[with,$r]=$(calc %.3f "($(cpu_ticks "${P_NBPID[$p]}") - $c_nb + $(cpu_ticks "${P_PRIPID[$p]}") - $c_pr \
                    + $(cpu_ticks "${P_SECPID[$p]}") - $c_se) / $CLK_TCK / ($wbytes / 1073741824)")
                awk -v a="$tf0" -v b="$tf1" '$1 >= a && $1 <= b && /"connected": true/ && match($0, /"dirty_bytes": [0-9]+/) {
                    print substr($0, RSTART + 15, RLENGTH - 15) }' "$samples" >"$samples.dirty"
                dp50=$(pctl 50 "$samples.dirty")
                dp99=$(pctl 99 "$samples.dirty")
                L_DP50[$r]=$dp50 L_DP99[$r]=$dp99 L_DRAIN[$r]=$drain
                L_NSAMP[$r]=$(wc -l <"$samples.dirty")
            else
                L_CPUGIB[without,$r]=$(calc %.3f "($(cpu_ticks "${P_NBPID[$p]}") - $c_nb + $(cpu_ticks "${P_SECPID[$p]}") - $c_se) \
                    / $CLK_TCK / ($wbytes / 1073741824)")
            fi
            for ((i = 0; i < 1800; i++)); do alive "$lpid" || break; sleep 0.05; done
            wait "$lpid" || die "lag probe failed: $(cat "$WORK/lagprobe-$r-$mode.out")"
            if [ "$mode" = with ]; then
                read -r pw ps lag50 lag99 lagmax < <("$PY" "$WORK/jsonf.py" "$(tail -n 1 "$WORK/lagprobe-$r-$mode.out")" \
                    writes seen lag_p50_ms lag_p99_ms lag_max_ms)
                L_LAG50[$r]=$lag50 L_LAG99[$r]=$lag99 L_LAGMAX[$r]=$lagmax
                L_PROBE[$r]="$ps/$pw"
                lag50=$(calc %.0f "$lag50")ms lag99=$(calc %.0f "$lag99")ms lagmax=$(calc %.0f "$lagmax")ms
                dp50=$(iec "$dp50") dp99=$(iec "$dp99") drain=${drain}s
            fi
            note "   $(printf '%-6s %-9s %9.0f %9.1f %11s %11s %9s %9s %9s %8s  %s' "$r" "$mode" "$iops" \
                "$(calc %.1f "$iops * 4096 / $MB")" "$dp50" "$dp99" "$lag50" "$lag99" "$lagmax" "$drain" \
                "$cpu_nb/$cpu_pr/$cpu_se/$(calc %.0f "$fusr + $fsys")  host $hb%")"
        done
    done
    ensure_synced_running "$p" "   after the last run"
    verify "$IMG" "${P_LOOP[$p]}" "load: replica after the runs"
    note "   replica after the runs and a final catch-up: $VERIFY_NOTE"
    v=() w=() x=() y=() z=() q=() dr=() rr=() xc=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        v+=("${L_IOPS[with,$r]}")
        w+=("${L_IOPS[without,$r]}")
        rr+=("$(calc %.4f "${L_IOPS[with,$r]} / ${L_IOPS[without,$r]}")")
        x+=("${L_DP50[$r]}") y+=("${L_DP99[$r]}") z+=("${L_LAG50[$r]}") q+=("${L_LAG99[$r]}") dr+=("${L_DRAIN[$r]}")
        xc+=("$(calc %.3f "${L_CPUGIB[with,$r]} - ${L_CPUGIB[without,$r]}")")
    done
    M3_XCPU=$(median "${xc[@]}")
    M3_WITH=$(median "${v[@]}")
    M3_WITHOUT=$(median "${w[@]}")
    M3_COST=$(calc %.1f "(1 - $M3_WITH / $M3_WITHOUT) * 100")
    M3_COST_R=$(calc %.1f "(1 - $(median "${rr[@]}")) * 100")
    M3_DP50=$(median "${x[@]}") M3_DP99=$(median "${y[@]}")
    M3_LAG50=$(median "${z[@]}") M3_LAG99=$(median "${q[@]}")
    M3_LAGMAX=$(printf '%s\n' "${L_LAGMAX[@]}" | sort -g | tail -n 1)
    M3_DRAIN=$(median "${dr[@]}")
    M3_EST50=$(calc %.0f "$M3_DP50 / ($M3_WITH * 4096) * 1000")
    M3_EST99=$(calc %.0f "$M3_DP99 / ($M3_WITH * 4096) * 1000")
    note ""
fi

# =========================================================================
# (profile) where a full sync spends its time
# =========================================================================

# perf_summary DATA: the samples by command, then each of the pair's
# three processes by object and by symbol.
perf_summary() {
    local data=$1 who tp
    note "   CPU samples by command, whole host (other tenants' processes included; swapper = idle):"
    timeout 300 perf report -i "$data" --no-children --sort comm -q --percent-limit 1 2>/dev/null |
        awk 'NF' | head -n 15 | sed 's/^/     /'
    for who in primary secondary nbdkit; do
        case $who in primary) tp=${P_PRIPID[s]} ;; secondary) tp=${P_SECPID[s]} ;; nbdkit) tp=${P_NBPID[s]} ;; esac
        # Summed from the symbol list: perf's "--sort dso" with --pid
        # leaves the kernel out.
        note "   $who (pid $tp): % of its own samples by object: $(timeout 300 perf report -i "$data" \
            --pid="$tp" --percentage relative --no-children --sort dso,sym -q 2>/dev/null |
            awk '$1 ~ /%$/ { a[$2] += $1 } END { for (k in a) if (a[k] >= 1) printf "%.1f%% %s\n", a[k], k }' |
            sort -rn | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')"
        note "   $who: top symbols (libcrypto is stripped: its AES-GCM shows as many addresses):"
        timeout 300 perf report -i "$data" --pid="$tp" --percentage relative --no-children \
            --sort dso,sym -q --percent-limit 1.5 2>/dev/null | awk 'NF' | head -n 12 | sed 's/^/     /'
    done
}

# profile_load SEED: fio's load of (3) through pair s, its JSON in
# fio-profload.json.
profile_load() {
    timeout $((BENCH_LOAD_TIME + 120)) fio --name=load --ioengine=nbd \
        --uri="nbd+unix:///?socket=${P_NBSOCK[s]}" --rw=randwrite --bs=4k \
        --iodepth="$BENCH_IODEPTH" --size=$((SIZE - 1048576)) --time_based --runtime="$BENCH_LOAD_TIME" \
        --norandommap --randseed="$1" --output-format=json >"$WORK/fio-profload.json" 2>"$WORK/fio-load.err" ||
        die "fio (load profile) failed: $(cat "$WORK/fio-load.err")"
}

if has_part profile; then
    note "== (profile) one full sync under perf record -a, one under strace -c -f (not timed for the comparison);"
    note "   then fio's load of (3) under perf record -a"
    if command -v perf >/dev/null; then
        pair_stop_primary s
        pair_stop_secondary s
        reset_target "${P_LOOP[s]}" "${P_REP[s]}" "$SIZE"
        pair_start_secondary s fresh
        drop_caches
        # System-wide (the loop device and writeback work in kernel threads),
        # without call graphs: frame pointers are usually absent.  For callers
        # of a user-space symbol: perf record --call-graph dwarf -p PID.
        bg_start "$WORK/perf.log" perf record -a -F 999 -o "$WORK/perf.data"
        perf_pid=$LAST_PID
        sync_watch_start "${P_PCTL[s]}" "$SIZE"
        sleep 0.5
        nb0=$(cpu_ticks "${P_NBPID[s]}")
        host_cpu_start
        t0=$(now)
        pair_start_primary s fresh
        sync_watch_wait
        el=$(calc %.3f "$SYNC_T - $t0")
        hb=$(host_cpu_busy)
        note "   sync under perf: $el s, host CPU busy $hb%; CPU seconds: primary $(calc %.2f "$(cpu_ticks "${P_PRIPID[s]}") / $CLK_TCK"), secondary $(calc %.2f "$(cpu_ticks "${P_SECPID[s]}") / $CLK_TCK"), nbdkit $(calc %.2f "($(cpu_ticks "${P_NBPID[s]}") - $nb0) / $CLK_TCK")"
        stop_pid "$perf_pid" INT
        perf_summary "$WORK/perf.data"
        # Under load: the pair in sync, fio writing 4 KiB at random as in (3).
        ensure_synced_running s "   load profile (set-up)"
        c_nb=$(cpu_ticks "${P_NBPID[s]}") c_pr=$(cpu_ticks "${P_PRIPID[s]}") c_se=$(cpu_ticks "${P_SECPID[s]}")
        bg_start "$WORK/perf-load.log" perf record -a -F 999 -o "$WORK/perf-load.data"
        perf_pid=$LAST_PID
        profile_load 3000
        wait_sync "${P_PCTL[s]}" 0
        stop_pid "$perf_pid" INT
        read -r iops _ wbytes _ _ < <("$PY" "$WORK/fiojson.py" "$WORK/fio-profload.json")
        gib=$(calc %.6f "$wbytes / 1073741824")
        note "   under load, perf -a: fio $(calc %.0f "$iops") IOPS for $BENCH_LOAD_TIME s, then the drain; CPU seconds per written GiB:" \
            "nbdkit $(calc %.2f "($(cpu_ticks "${P_NBPID[s]}") - $c_nb) / $CLK_TCK / $gib")," \
            "primary $(calc %.2f "($(cpu_ticks "${P_PRIPID[s]}") - $c_pr) / $CLK_TCK / $gib")," \
            "secondary $(calc %.2f "($(cpu_ticks "${P_SECPID[s]}") - $c_se) / $CLK_TCK / $gib")"
        perf_summary "$WORK/perf-load.data"
        if command -v strace >/dev/null; then
            # The same load under strace -c: system calls per written block.
            st=()
            for who in primary secondary nbdkit; do
                case $who in primary) tp=${P_PRIPID[s]} ;; secondary) tp=${P_SECPID[s]} ;; nbdkit) tp=${P_NBPID[s]} ;; esac
                bg_start "$WORK/strace-load-$who.log" strace -c -f -o "$WORK/strace-load-$who.txt" -p "$tp"
                st+=("$LAST_PID")
            done
            sleep 0.5
            profile_load 3001
            wait_sync "${P_PCTL[s]}" 0
            for pid in "${st[@]}"; do stop_pid "$pid" INT; done
            read -r _ ios _ _ _ < <("$PY" "$WORK/fiojson.py" "$WORK/fio-profload.json")
            for who in primary secondary nbdkit; do
                note "   under load, strace -c -f, $who: $(awk -v n="$ios" '$NF == "total" { printf "%.2f", $4 / n }' \
                    "$WORK/strace-load-$who.txt") system calls per written 4 KiB block ($ios blocks); top 8 by calls:"
                awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total"' "$WORK/strace-load-$who.txt" | sort -k4,4 -rn | head -n 8 |
                    awk -v n="$ios" '{ printf "     %-16s %9d calls  %6.2f per block\n", $NF, $4, $4 / n }' |
                    while IFS= read -r line; do note "$line"; done
            done
        fi
    else
        note "   perf not installed: skipped"
    fi
    if command -v strace >/dev/null; then
        pair_stop_primary s
        pair_stop_secondary s
        reset_target "${P_LOOP[s]}" "${P_REP[s]}" "$SIZE"
        pair_start_secondary s fresh
        drop_caches
        st=()
        for who in secondary nbdkit; do
            case $who in secondary) tp=${P_SECPID[s]} ;; nbdkit) tp=${P_NBPID[s]} ;; esac
            bg_start "$WORK/strace-$who.log" strace -c -f -o "$WORK/strace-$who.txt" -p "$tp"
            st+=("$LAST_PID")
        done
        sync_watch_start "${P_PCTL[s]}" "$SIZE"
        sleep 0.5
        t0=$(now)
        # The primary starts under strace so that its first system calls count too.
        rm -rf "${P_PST[s]}"
        rm -f "${P_PCTL[s]}"
        bg_start "$WORK/primary-s.log" strace -c -f -o "$WORK/strace-primary.txt" "$PRIMARY" \
            --writelog "${P_WLCTL[s]}" --connect "127.0.0.1:${P_PORT[s]}" --state-dir "${P_PST[s]}" \
            --control "${P_PCTL[s]}" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
            --ca "$CERTS/ca.crt" --peer-name secondary --interval "$BENCH_INTERVAL" "${PRIMARY_EXTRA[@]}"
        st_pri=$LAST_PID
        wait_for 30 "the primary under strace" has_child "$st_pri" blkship-primary
        tp=$(pgrep -P "$st_pri" -x blkship-primary)
        BG_PIDS+=("$tp")
        sync_watch_wait
        note "   sync under strace: $(calc %.3f "$SYNC_T - $t0") s (strace slows system calls down)"
        # Stop the traced primary itself; strace then writes its summary.
        kill -TERM "$tp" 2>/dev/null || true
        stop_pid "$st_pri" CONT
        for pid in "${st[@]}"; do stop_pid "$pid" INT; done
        for who in primary secondary nbdkit; do
            note "   strace -c -f, $who (top 10 by time):"
            head -n 13 "$WORK/strace-$who.txt" 2>/dev/null | tail -n +1 | sed 's/^/     /'
        done
        P_PRIPID[s]=
    else
        note "   strace not installed: skipped"
    fi
    note ""
fi

# =========================================================================
# Summary
# =========================================================================

note "======================================================================================="
note "SUMMARY  (medians of $BENCH_ROUNDS rounds; MB = 10^6 bytes; $NCPU CPUs; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
note "  $DROP_NOTE"
if has_part sync; then
    note ""
    note "(1) initial full sync, $(numfmt --to=iec "$SIZE") random image -> loop device"
    note "    $(printf '%-30s %9s %9s   %s' method seconds MB/s 'per round (s)')"
    for m in "${METHODS[@]}"; do
        per=
        for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${T1[$m,$r]} "; done
        note "    $(printf '%-30s %9.3f %9.1f   %s' "${MNAME[$m]}" "${M1[$m]}" "$(calc %.1f "$SIZE / $MB / ${M1[$m]}")" "$per")"
    done
    if [ -z "${BENCH_SYNC_METHODS:-}" ]; then
    note "    blkship / limit:            $(printf '%6.3f' "$S1_LIMIT") (per-round median $(calc %.3f "$S1_LIMIT_R"))   target <= 1.1: $(verdict "$S1_LIMIT <= 1.1")"
    note "    CPU s per GiB, all processes: blkship ${MC1[blkship]} (target <= 1.2: $(verdict "${MC1[blkship]} <= 1.2")), qemu tuned ${MC1[qemu]}${MC1[qemuu]:+, qemu untuned ${MC1[qemuu]}}"
    note "    blkship vs qemu mirror (tuned): $(printf '%6.2fx faster' "$S1_QEMU") (per-round median $(calc %.2f "$S1_QEMU_R")x)   ahead: $(verdict "$S1_QEMU > 1")"
    note "    blkship vs dd oflag=direct: $(printf '%6.1f%% of its speed' "$(calc %.1f "$S1_DD * 100")") (per-round median $(calc %.1f "$S1_DD_R * 100")%)   target >= 80%: $(verdict "$S1_DD >= 0.8")"
    note "    blkship vs dd conv=fsync:   $(printf '%6.1f%% of its speed' "$(calc %.1f "$S1_DDS * 100")") (per-round median $(calc %.1f "$S1_DDS_R * 100")%)   (for reference)"
    fi
fi
if has_part catchup; then
    note ""
    note "(2) catch-up after restarting the primary agent, $NCHANGE changed 4 KiB blocks ($(numfmt --to=iec $((NCHANGE * 4096))))"
    note "    $(printf '%-40s %9s   %s' method seconds 'per round (s)')"
    per=; for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${CU_B[small,$r]} "; done
    note "    $(printf '%-40s %9.3f   %s' "blkship, $(numfmt --to=iec "$SIZE") disk" "$M2_B" "$per")"
    if [ "$BENCH_SMALL_RSYNC" = 1 ]; then
        per=; for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${CU_R[small,$r]} "; done
        note "    $(printf '%-40s %9.3f   %s' "rsync local, $(numfmt --to=iec "$SIZE") disk" "$M2_R" "$per")"
    fi
    per=; for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${CU_L[small,$r]} "; done
    note "    $(printf '%-40s %9.3f   %s' "limit: fio read+write QD128" "$M2_L" "$per")"
    if [ "$BENCH_BIG_FACTOR" -gt 1 ]; then
        per=; for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${CU_B[big,$r]} "; done
        note "    $(printf '%-40s %9.3f   %s' "blkship, $(numfmt --to=iec "$BIG_SIZE") disk" "$M2_BB" "$per")"
        if [ "$big_rsync" = 1 ]; then
            per=; for ((r = 1; r <= BENCH_ROUNDS; r++)); do per+="${CU_R[big,$r]} "; done
            note "    $(printf '%-40s %9.3f   %s' "rsync local, $(numfmt --to=iec "$BIG_SIZE") disk" "$M2_BR" "$per")"
        fi
    fi
    note "    blkship / limit: $(printf '%.3f' "$S2_LIMIT") (per-round median $(calc %.3f "$S2_LIMIT_R"))   target <= 1.5: $(verdict "$S2_LIMIT <= 1.5")"
    if [ "$BENCH_SMALL_RSYNC" = 1 ]; then
        note "    blkship vs rsync: $(printf '%.1fx faster' "$S2_RSYNC") (per-round median $(calc %.1f "$S2_RSYNC_R")x)   target >= 50x: $(verdict "$S2_RSYNC >= 50")"
    fi
    if [ "$BENCH_BIG_FACTOR" -gt 1 ]; then
        note "    blkship, ${BENCH_BIG_FACTOR}x disk / 1x disk: $(calc %.2f "$M2_BB / $M2_B") (1.0 = follows the dirty data only)$([ "$big_rsync" = 1 ] && echo "; rsync: $(calc %.2f "$M2_BR / $M2_R")")"
    fi
fi
if has_part load; then
    note ""
    note "(3) fio randwrite 4 KiB, iodepth $BENCH_IODEPTH, $BENCH_LOAD_TIME s, through NBD"
    note "    IOPS without the agent:  $(calc %.0f "$M3_WITHOUT")   per round: $(for ((r = 1; r <= BENCH_ROUNDS; r++)); do printf '%.0f ' "${L_IOPS[without,$r]}"; done)"
    note "    IOPS while replicating:  $(calc %.0f "$M3_WITH")   per round: $(for ((r = 1; r <= BENCH_ROUNDS; r++)); do printf '%.0f ' "${L_IOPS[with,$r]}"; done)"
    note "    cost of replicating:     $M3_COST% of IOPS (median of per-round ratios: $M3_COST_R%)"
    note "    IOPS with / without:     $(calc %.3f "$M3_WITH / $M3_WITHOUT")   target >= 0.55: $(verdict "$M3_WITH / $M3_WITHOUT >= 0.55")"
    note "    replication's extra CPU: $(calc %.2f "$M3_XCPU") s per written GiB (median of per-round differences: $(for ((r = 1; r <= BENCH_ROUNDS; r++)); do printf '%s ' "${xc[$((r - 1))]}"; done))   target <= 2.0: $(verdict "$M3_XCPU <= 2.0")"
    note "      (nbdkit + primary + secondary, the drain included, per GiB fio wrote; minus nbdkit + secondary without the agent, whose filter still logs)"
    note "    replica behind (dirty_bytes): p50 $(iec "$M3_DP50"), p99 $(iec "$M3_DP99")  (medians over rounds)"
    note "      as time at the write rate (dirty / (IOPS x 4 KiB)): p50 ~${M3_EST50} ms, p99 ~${M3_EST99} ms (excludes up to ${BENCH_INTERVAL} ms of unsealed writes)"
    note "    probe lag (write ack -> visible on the replica): p50 $(calc %.0f "$M3_LAG50") ms, p99 $(calc %.0f "$M3_LAG99") ms, max $(calc %.0f "$M3_LAGMAX") ms"
    note "      (probe blocks seen/written per round: $(for ((r = 1; r <= BENCH_ROUNDS; r++)); do printf '%s ' "${L_PROBE[$r]}"; done); status samples per round: $(for ((r = 1; r <= BENCH_ROUNDS; r++)); do printf '%s ' "${L_NSAMP[$r]}"; done))"
    note "    drain after the load stops: $M3_DRAIN s"
fi
note "======================================================================================="
if [ "${#VERIFY_FAILS[@]}" -gt 0 ]; then
    note "REPLICA MISMATCH (cmp): ${VERIFY_FAILS[*]}"
    exit 1
fi
exit 0
