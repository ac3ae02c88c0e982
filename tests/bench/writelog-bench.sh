#!/usr/bin/env bash
# writelog-bench.sh: what the nbdkit write-log filter costs.
#
#   (a) 4 KiB random-write IOPS through nbdkit's file plugin, without and
#       with the filter, in alternating rounds (target: cost < 5%);
#   (b) the round trip of "seal" and of the historical "getw" on a 1 TiB
#       sparse disk with 1,000 dirty extents (target: < 10 ms);
#   (c) the memory of the dirty bitmap for that disk.
#
# A benchmark, not a test: missed targets are reported, not failed.  The
# exit status is non-zero only when something measured did not work (fio
# error, wrong extent count, a process that would not start...).
# See tests/bench/README.md for the knobs and how to read the output.
set -eEuo pipefail
# No silent exit under set -e: name the command that failed.
trap 'printf "writelog-bench: error: line %s: status %s from: %s\n" "$LINENO" "$?" "$BASH_COMMAND" >&2' ERR

# ---- Knobs ------------------------------------------------------------------

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)

BENCH_RUNTIME=${BENCH_RUNTIME:-10}          # seconds per measured fio run
BENCH_ROUNDS=${BENCH_ROUNDS:-5}             # measured runs per configuration
BENCH_WARMUP=${BENCH_WARMUP:-3}             # seconds of unmeasured fio per configuration, 0: none
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/var/tmp}} # scratch space goes in a new directory under it
BENCH_IMAGE_SIZE=${BENCH_IMAGE_SIZE:-1G}    # (a) image, written in full before the runs
BENCH_BS=${BENCH_BS:-4k}                    # (a) fio block size
BENCH_PLUGIN=${BENCH_PLUGIN:-file}          # (a) file (the target), or null / memory: no disk I/O, an upper bound on the relative cost
BENCH_IODEPTH=${BENCH_IODEPTH:-16}          # (a) fio iodepth
BENCH_BIG_SIZE=${BENCH_BIG_SIZE:-1T}        # (b, c) sparse disk
BENCH_EXTENTS=${BENCH_EXTENTS:-1000}        # (b) dirty extents per measure
BENCH_GETW_REPEATS=${BENCH_GETW_REPEATS:-5} # (b) measures per command
BENCH_MARK_WRITES=${BENCH_MARK_WRITES:-2000000} # (c) writes per thread for wl-mark-time
BENCH_PIN=${BENCH_PIN:-}                    # "NBDKIT_CPUS:CLIENT_CPUS", e.g. "1:0"; empty: no pinning
BENCH_PARTS=${BENCH_PARTS:-"iops getw"}     # parts to run; "getw" includes (c)
BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-$REPO/build}
BENCH_HELPER=${BENCH_HELPER:-}              # prebuilt wl-seal-time; default: build dir, else gcc
BENCH_MARK_TOOL=${BENCH_MARK_TOOL:-}        # prebuilt wl-mark-time; default: build dir, else gcc
BENCH_KEEP=${BENCH_KEEP:-0}                 # 1: keep the scratch directory (logs, fio JSON)

FILTER=$BENCH_BUILD_DIR/primary/writelog/nbdkit-writelog-filter.so
BLKSHIP=$BENCH_BUILD_DIR/cli/blkship
NAME_PREFIX=blkship-bench-$$   # log names: the shm object is /log_NAME.wlog, global to the host

# ---- Helpers ------------------------------------------------------------------

die() {
    printf 'writelog-bench: error: %s\n' "$*" >&2
    exit 1
}

note() { printf '%s\n' "$*"; }

need_uint() { # NAME VALUE MIN MAX
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then
        die "$1=$2: need an integer from $3 to $4"
    fi
}

# Statistics over the arguments (numbers): median, min, max.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }
calc() { awk "BEGIN { printf \"$1\n\", $2 }"; } # calc FORMAT EXPRESSION

PIDS=()      # every background process we started and have not reaped
WORK=

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stops a process we started: TERM, up to 5 s, then KILL.
stop_pid() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    # A killed nbdkit leaves its shm object behind; ours carry our PID.
    rm -f /dev/shm/log_"$NAME_PREFIX"-*.wlog
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $BENCH_KEEP == 1 ]]; then
            rm -f "$WORK"/*.img
            note "kept $WORK (images removed)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background, bounded by `timeout`, and waits for it
# (so that a signal to this script is handled at once).  Returns its status.
run_bounded() { # SECONDS CMD...
    local secs=$1 pid rc=0
    shift
    timeout -k 5 "$secs" "$@" <&0 &  # <&0: keep our stdin, not /dev/null
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

NBDKIT_PID=
# Starts nbdkit in the foreground mode, in the background, and waits up to
# 10 s for every path in WAIT_FOR to exist.
start_nbdkit() { # LOGFILE NBDKIT-ARGS...
    local log=$1 i f ready
    shift
    "${PIN_NBDKIT[@]}" nbdkit -f --exit-with-parent "$@" </dev/null >>"$log" 2>&1 &
    NBDKIT_PID=$!
    PIDS+=("$NBDKIT_PID")
    for ((i = 0; i < 100; i++)); do
        ready=1
        for f in "${WAIT_FOR[@]}"; do [[ -S $f ]] || ready=0; done
        if ((ready)); then
            # $! must be nbdkit itself: its CPU time and memory are measured.
            [[ $(cat "/proc/$NBDKIT_PID/comm" 2>/dev/null) == nbdkit ]] ||
                die "pid $NBDKIT_PID is not nbdkit"
            return 0
        fi
        kill -0 "$NBDKIT_PID" 2>/dev/null || break
        sleep 0.1
    done
    sed 's/^/    nbdkit: /' "$log" >&2
    die "nbdkit did not start (waited for ${WAIT_FOR[*]})"
}

rss_anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Minor page faults of all of a process's threads.
# Threads come and go (one per NBD connection): a vanished one is skipped.
min_faults() { { cat "/proc/$1/task/"*/stat 2>/dev/null || true; } | awk '{ s += $10 } END { print s + 0 }'; }

helper() { # wl-seal-time ARGS...; output on stdout, checks its status
    local out rc=0
    out=$("${PIN_CLIENT[@]}" "$HELPER" "$@" 2>"$WORK/helper.err") || rc=$?
    if ((rc)); then
        cat "$WORK/helper.err" >&2
        die "wl-seal-time $1 failed (status $rc)"
    fi
    printf '%s\n' "$out"
}

kv() { # KEY LINE: the value of KEY=value in LINE
    local w
    for w in $2; do [[ $w == "$1="* ]] && { printf '%s\n' "${w#*=}"; return 0; }; done
    die "no $1 in: $2"
}

# ---- Checks and set-up ----------------------------------------------------------

need_uint BENCH_RUNTIME "$BENCH_RUNTIME" 1 3600
need_uint BENCH_ROUNDS "$BENCH_ROUNDS" 1 100
need_uint BENCH_WARMUP "$BENCH_WARMUP" 0 600
need_uint BENCH_IODEPTH "$BENCH_IODEPTH" 1 1024
need_uint BENCH_EXTENTS "$BENCH_EXTENTS" 1 100000
need_uint BENCH_GETW_REPEATS "$BENCH_GETW_REPEATS" 1 100
need_uint BENCH_MARK_WRITES "$BENCH_MARK_WRITES" 1000 1000000000
BENCH_BS_BYTES=$(numfmt --from=iec "${BENCH_BS^^}") || die "bad BENCH_BS=$BENCH_BS"
IMAGE_BYTES=$(numfmt --from=iec "${BENCH_IMAGE_SIZE^^}") || die "bad BENCH_IMAGE_SIZE"
BIG_BYTES=$(numfmt --from=iec "${BENCH_BIG_SIZE^^}") || die "bad BENCH_BIG_SIZE"
((BENCH_BS_BYTES >= 512 && BENCH_BS_BYTES % 512 == 0)) || die "BENCH_BS must be whole sectors"
((IMAGE_BYTES >= 1048576 && IMAGE_BYTES % 1048576 == 0)) || die "BENCH_IMAGE_SIZE: whole MiB, at least 1M"
((BIG_BYTES >= 1048576)) || die "BENCH_BIG_SIZE: at least 1M"
case $BENCH_PLUGIN in
file | null | memory) ;;
*) die "BENCH_PLUGIN=$BENCH_PLUGIN: need file, null or memory" ;;
esac
RUN_IOPS=0 RUN_GETW=0
for p in $BENCH_PARTS; do
    case $p in
    iops) RUN_IOPS=1 ;;
    getw) RUN_GETW=1 ;;
    *) die "BENCH_PARTS: unknown part $p (iops, getw)" ;;
    esac
done
PIN_NBDKIT=() PIN_CLIENT=()
if [[ -n $BENCH_PIN ]]; then
    [[ $BENCH_PIN =~ ^[0-9,-]+:[0-9,-]+$ ]] || die "BENCH_PIN=$BENCH_PIN: need NBDKIT_CPUS:CLIENT_CPUS"
    PIN_NBDKIT=(taskset -c "${BENCH_PIN%%:*}")
    PIN_CLIENT=(taskset -c "${BENCH_PIN#*:}")
fi

for tool in nbdkit fio qemu-io python3 numfmt timeout awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -f $FILTER ]] || die "no filter at $FILTER: build first (cmake --build $BENCH_BUILD_DIR), or set BENCH_BUILD_DIR"
[[ -x $BLKSHIP ]] || die "no blkship tool at $BLKSHIP"
nbdkit file --version >/dev/null 2>&1 || die "nbdkit has no file plugin"
fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"

[[ -d $BENCH_DIR ]] || die "BENCH_DIR=$BENCH_DIR is not a directory"
WORK=$(mktemp -d "$BENCH_DIR/writelog-bench.XXXXXX")
# Unix socket paths are limited to 107 bytes.
((${#WORK} + ${#NAME_PREFIX} + 20 < 108)) || die "BENCH_DIR path too long for unix sockets: $WORK"

# The C helpers: given, or built by CMake (tests/bench), or built here.
TOOL=
find_tool() { # NAME GIVEN SOURCE...
    local name=$1 given=$2
    shift 2
    if [[ -n $given ]]; then
        TOOL=$given
    elif [[ -x $BENCH_BUILD_DIR/tests/bench/$name ]]; then
        TOOL=$BENCH_BUILD_DIR/tests/bench/$name
    else
        TOOL=$WORK/$name
        gcc -O2 -D_GNU_SOURCE -std=gnu11 -I"$REPO" -o "$TOOL" "$@" -lrt -lpthread ||
            die "cannot build $name"
    fi
    [[ -x $TOOL ]] || die "$TOOL is not executable"
}
find_tool wl-seal-time "$BENCH_HELPER" "$SCRIPT_DIR/wl-seal-time.c" "$REPO/primary/writelog/wl_client.c"
HELPER=$TOOL
find_tool wl-mark-time "$BENCH_MARK_TOOL" "$SCRIPT_DIR/wl-mark-time.c" \
    "$REPO/primary/writelog/wlog.c" "$REPO/common/bitmap.c"
MARK_TOOL=$TOOL

NCPU=$(nproc)
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BENCH_BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
BUILD_TYPE=${BUILD_TYPE:-"RelWithDebInfo (project default)"}
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- common primary proto 2>/dev/null) ]]; then
    COMMIT="$COMMIT + uncommitted changes in common/ primary/ proto/"
fi
CLK_TCK=$(getconf CLK_TCK)
LOAD_START=$(cut -d ' ' -f 1-3 /proc/loadavg)

note "writelog-bench: $(date -u '+%Y-%m-%d %H:%M:%SZ') on $(uname -n), $NCPU CPUs, $(uname -r)"
note "  $(nbdkit --version), $(fio --version), $(qemu-io --version | head -n 1)"
note "  filter $FILTER ($BUILD_TYPE build of $(date -u -r "$FILTER" '+%Y-%m-%d %H:%M:%SZ'); repo HEAD $COMMIT)"
note "  scratch $WORK; pinning: ${BENCH_PIN:-none}; load average $LOAD_START"
if ((NCPU <= 2)); then
    note "  NOTE: $NCPU CPUs: fio, nbdkit's threads and the kernel share them, so IOPS is"
    note "        CPU bound and any CPU the filter spends shows up in full; other load"
    note "        on this machine adds noise.  nbdkit CPU per write is the steadier figure."
fi

# ---- (b, c) seal / getw on a big sparse disk, bitmap memory ----------------------

GETW_OK=0
if ((RUN_GETW)); then
    note ""
    note "== (b, c) seal/getw on a $BENCH_BIG_SIZE sparse disk, $BENCH_EXTENTS extents, $BENCH_GETW_REPEATS repeats =="
    BIG=$WORK/big.img
    truncate -s "$BIG_BYTES" "$BIG"

    # (c) baseline: nbdkit without the filter on the same disk.
    WAIT_FOR=("$WORK/bigplain.sock")
    start_nbdkit "$WORK/nbdkit-bigplain.log" -U "$WORK/bigplain.sock" file file="$BIG"
    sleep 0.5
    RSS_PLAIN=$(rss_anon_kib "$NBDKIT_PID")
    stop_pid "$NBDKIT_PID"

    BIGNAME=$NAME_PREFIX-big
    BIGSOCK=$WORK/big.sock
    BIGCTL=$WORK/log_$BIGNAME.ctl
    WAIT_FOR=("$BIGSOCK" "$BIGCTL")
    # -v: for the "serving log" line; no debug is printed on the seal path.
    start_nbdkit "$WORK/nbdkit-big.log" -v -U "$BIGSOCK" --filter="$FILTER" file file="$BIG" \
        writelog-name="$BIGNAME" writelog-dir="$WORK"
    BIG_PID=$NBDKIT_PID
    sleep 0.5
    RSS_FILTER_START=$(rss_anon_kib "$BIG_PID")
    SERVING=$(grep -m 1 'serving log .* KiB of bitmap' "$WORK/nbdkit-big.log") ||
        die "no 'serving log ... KiB of bitmap' line in the nbdkit -v log"
    BITMAP_KIB=$(sed -n 's/.*, \([0-9]*\) KiB of bitmap.*/\1/p' <<<"$SERVING")
    [[ -n $BITMAP_KIB ]] || die "cannot parse: $SERVING"

    INFO=$(helper info "$BIGCTL")
    DISK_SECTORS=$(kv disk_sectors "$INFO")
    GRAIN_SECTORS=$(kv grain_sectors "$INFO")
    EXPORT_MAX=$(kv export_max "$INFO")
    ((DISK_SECTORS * 512 == BIG_BYTES)) || die "log reports $DISK_SECTORS sectors for a $BIG_BYTES-byte disk"
    ((BENCH_EXTENTS <= EXPORT_MAX)) || die "BENCH_EXTENTS=$BENCH_EXTENTS exceeds one export ($EXPORT_MAX)"
    # Each dirty block is one whole grain (at least 4 KiB) so that it is
    # exactly one extent.
    BLOCK=$((GRAIN_SECTORS * 512 > 4096 ? GRAIN_SECTORS * 512 : 4096))
    ((BLOCK % (GRAIN_SECTORS * 512) == 0)) || die "grain $GRAIN_SECTORS sectors does not divide 4 KiB"
    STRIPE_BLOCKS=$((BIG_BYTES / BLOCK / BENCH_EXTENTS))
    ((STRIPE_BLOCKS >= 2)) || die "disk too small for $BENCH_EXTENTS non-adjacent blocks"
    note "  log: grain $((GRAIN_SECTORS * 512)) bytes, $BITMAP_KIB KiB of bitmap; dirtying $BENCH_EXTENTS blocks of $BLOCK bytes"

    # One random block in each of BENCH_EXTENTS equal stripes, never the last
    # block of its stripe: no two blocks are adjacent.
    gen_offsets() { # SEED FILE
        awk -v n="$BENCH_EXTENTS" -v stripe="$STRIPE_BLOCKS" -v bs="$BLOCK" -v seed="$1" 'BEGIN {
            srand(seed)
            for (i = 0; i < n; i++)
                printf "%.0f\n", (i * stripe + int(rand() * (stripe - 1))) * bs
        }' >"$2"
        [[ $(sort -u "$2" | wc -l) -eq $BENCH_EXTENTS ]] || die "offset generator made duplicates"
    }

    # Writes every block of the offsets file through NBD, one request each.
    dirty() { # OFFSETS_FILE
        local cmds=$WORK/qemu-io.cmds out=$WORK/qemu-io.out rc=0 n
        awk -v bs="$BLOCK" '{ printf "write -P 0x%02x %s %d\n", NR % 255 + 1, $1, bs }' "$1" >"$cmds"
        run_bounded 300 "${PIN_CLIENT[@]}" qemu-io -f raw "nbd+unix:///?socket=$BIGSOCK" <"$cmds" >"$out" 2>&1 || rc=$?
        n=$(grep -c "^\(qemu-io> \)*wrote $BLOCK/$BLOCK bytes" "$out" || true)
        if ((rc != 0 || n != BENCH_EXTENTS)); then
            tail -n 5 "$out" >&2
            die "qemu-io: status $rc, $n of $BENCH_EXTENTS writes done"
        fi
    }

    SEAL_US=() SEAL_ACK_US=() SEAL_EMPTY_US=() GETW_US=() GETW_EMPTY_US=() INFO_US=()
    SEALW_US=() SEAL_FLT=() SEALW_FLT=() GETW_FLT=()
    note "  times in ms, client round trip; 'empty' = same command on the emptied log;"
    note "  seal/getw dirty new random blocks (cold), seal-warm the blocks of the seal before;"
    note "  faults = minor page faults nbdkit took during the measure"
    note "  $(printf '%-6s %-9s %9s %9s %9s %9s %7s' repeat cmd command ack-next empty info-rtt faults)"
    seed=1
    for ((rep = 1; rep <= BENCH_GETW_REPEATS; rep++)); do
        for mode in seal seal-warm getw; do
            helper clear "$BIGCTL" >/dev/null
            if [[ $mode != seal-warm ]]; then
                gen_offsets "$seed" "$WORK/offsets"
                seed=$((seed + 1))
            fi
            dirty "$WORK/offsets"
            f0=$(min_faults "$BIG_PID")
            line=$(helper measure "$BIGCTL" "${mode%-warm}" "$WORK/offsets" "$BLOCK")
            f1=$(min_faults "$BIG_PID")
            flt=$((f1 - f0))
            [[ $(kv extents "$line") -eq $BENCH_EXTENTS ]] || die "wrong extent count: $line"
            op=$(kv op_us "$line")
            ack=$(kv ack_us "$line")
            empty=$(kv empty_us "$line")
            inf=$(kv info_us "$line")
            INFO_US+=("$inf")
            ackms=-
            case $mode in
            seal)
                SEAL_US+=("$op") SEAL_ACK_US+=("$ack") SEAL_EMPTY_US+=("$empty") SEAL_FLT+=("$flt")
                ackms=$(calc %.3f "$ack / 1000")
                ;;
            seal-warm)
                SEALW_US+=("$op") SEALW_FLT+=("$flt")
                ackms=$(calc %.3f "$ack / 1000")
                ;;
            getw) GETW_US+=("$op") GETW_EMPTY_US+=("$empty") GETW_FLT+=("$flt") ;;
            esac
            note "  $(printf '%-6s %-9s %9.3f %9s %9.3f %9.3f %7d' "$rep" "$mode" "$(calc %.3f "$op / 1000")" \
                "$ackms" "$(calc %.3f "$empty / 1000")" "$(calc %.3f "${INFO_US[-1]} / 1000")" "$flt")"
        done
    done

    # Cross-check with the blkship tool: its getw must list exactly the
    # blocks written.  Its wall time includes exec, connect and printing.
    helper clear "$BIGCTL" >/dev/null
    gen_offsets "$seed" "$WORK/offsets"
    dirty "$WORK/offsets"
    t0=$(date +%s%N)
    "${PIN_CLIENT[@]}" "$BLKSHIP" wlog getw "$BIGCTL" >"$WORK/cli-getw.out" 2>"$WORK/cli-getw.err" ||
        { cat "$WORK/cli-getw.err" >&2; die "blkship wlog getw failed"; }
    t1=$(date +%s%N)
    CLI_GETW_MS=$(calc %.3f "($t1 - $t0) / 1000000")
    awk '{ printf "%.0f %.0f\n", $1 * 512, $2 * 512 }' "$WORK/cli-getw.out" | sort -n >"$WORK/cli-getw.got"
    sort -n "$WORK/offsets" | awk -v bs="$BLOCK" '{ print $1, bs }' >"$WORK/cli-getw.want"
    cmp -s "$WORK/cli-getw.got" "$WORK/cli-getw.want" ||
        die "blkship wlog getw listed $(wc -l <"$WORK/cli-getw.out") extents, not the $BENCH_EXTENTS blocks written"
    CLI_LINES=$(wc -l <"$WORK/cli-getw.out")
    note "  blkship wlog getw (whole process): $CLI_GETW_MS ms, $CLI_LINES extents, as written"

    RSS_FILTER_END=$(rss_anon_kib "$BIG_PID")
    stop_pid "$BIG_PID"
    rm -f "$BIG"

    # (c) the write path's share: wl_log_mark() alone, twice per write as
    # the filter calls it, on a log of this disk's size.
    note "  wl_log_mark() alone, $BENCH_MARK_WRITES random $BLOCK-byte writes per thread, ns per write (2 marks):"
    MARK_THREADS=(1)
    ((NCPU > 1)) && MARK_THREADS+=("$NCPU")
    MARK_COLD=() MARK_HOT=()
    for t in "${MARK_THREADS[@]}"; do
        line=$(run_bounded 300 "${PIN_NBDKIT[@]}" "$MARK_TOOL" "$BIG_BYTES" "$BLOCK" "$BENCH_MARK_WRITES" "$t") ||
            die "wl-mark-time failed"
        cold=$(kv cold_ns "$line")
        hot=$(kv hot_ns "$line")
        MARK_COLD+=("$cold") MARK_HOT+=("$hot")
        note "    $t thread(s): cold (new bits) $cold ns, hot (bits already set) $hot ns"
    done
    GETW_OK=1
fi

# ---- (a) IOPS without and with the filter --------------------------------------

IOPS_OK=0
if ((RUN_IOPS)); then
    note ""
    note "== (a) fio randwrite bs=$BENCH_BS iodepth=$BENCH_IODEPTH, ${BENCH_RUNTIME} s x $BENCH_ROUNDS rounds per config, order A/B/A/B =="
    IMG=$WORK/iops.img
    if [[ $BENCH_PLUGIN == file ]]; then
        note "  writing the $BENCH_IMAGE_SIZE image in full (no sparse or unwritten extents)..."
        dd if=/dev/zero of="$IMG" bs=1M count=$((IMAGE_BYTES / 1048576)) conv=fsync status=none ||
            die "cannot write $IMG"
        PLUGIN_ARGS=(file file="$IMG")
    else
        # Each instance has its own disk: only the relative cost is meaningful.
        PLUGIN_ARGS=("$BENCH_PLUGIN" size="$IMAGE_BYTES")
    fi

    PSOCK=$WORK/plain.sock
    WAIT_FOR=("$PSOCK")
    start_nbdkit "$WORK/nbdkit-plain.log" -U "$PSOCK" "${PLUGIN_ARGS[@]}"
    PLAIN_PID=$NBDKIT_PID
    IOPSNAME=$NAME_PREFIX-iops
    FSOCK=$WORK/filter.sock
    FCTL=$WORK/log_$IOPSNAME.ctl
    WAIT_FOR=("$FSOCK" "$FCTL")
    start_nbdkit "$WORK/nbdkit-filter.log" -U "$FSOCK" --filter="$FILTER" "${PLUGIN_ARGS[@]}" \
        writelog-name="$IOPSNAME" writelog-dir="$WORK"
    FILTER_PID=$NBDKIT_PID
    note "  A = plain:  nbdkit $BENCH_PLUGIN plugin (pid $PLAIN_PID)"
    note "  B = filter: nbdkit --filter=writelog $BENCH_PLUGIN plugin (pid $FILTER_PID), log cleared before each run"
    note "  default thread count; both runs of a round use the same random sequence"
    if [[ $BENCH_PLUGIN == file ]]; then
        note "  both instances serve the same image file"
    else
        note "  NOTE: $BENCH_PLUGIN plugin, no disk I/O: the ratio is an upper bound of the filter's relative cost"
    fi

    # One fio run; sets R_IOPS R_IOS R_LAT R_P99 (us) R_FIOCPU (%) R_NCPU (nbdkit CPU us per write).
    fio_run() { # TAG SOCKET NBDKIT_PID SECONDS
        local tag=$1 sock=$2 pid=$3 secs=$4 json=$WORK/fio-$1.json c0 c1 rc=0 vals
        c0=$(cpu_ticks "$pid")
        run_bounded $((secs * 3 + 60)) "${PIN_CLIENT[@]}" fio --name=writelog-bench --ioengine=nbd \
            --uri="nbd+unix:///?socket=$sock" --rw=randwrite --bs="$BENCH_BS" \
            --iodepth="$BENCH_IODEPTH" --size="$IMAGE_BYTES" --time_based=1 --runtime="$secs" \
            --direct=0 --numjobs=1 --output-format=json --output="$json" \
            </dev/null >"$WORK/fio-$tag.err" 2>&1 || rc=$?
        c1=$(cpu_ticks "$pid")
        if ((rc)); then
            cat "$WORK/fio-$tag.err" "$json" >&2 2>/dev/null || true
            die "fio run $tag failed (status $rc)"
        fi
        vals=$(python3 "$WORK/fio-parse.py" "$json") || die "fio run $tag: no usable results in $json"
        read -r R_IOPS R_IOS R_LAT R_P99 R_FIOCPU <<<"$vals"
        R_NCPU=$(calc %.2f "($c1 - $c0) * 1e6 / $CLK_TCK / $R_IOS")
    }
    cat >"$WORK/fio-parse.py" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    text = f.read()
# fio may print notes before the JSON document.
job = json.loads(text[text.index("{"):])["jobs"][0]
w = job["write"]
if job["error"] or w["total_ios"] <= 0 or w["iops"] <= 0:
    sys.exit("fio reported error %s, %s writes" % (job["error"], w["total_ios"]))
p99 = w["clat_ns"].get("percentile", {}).get("99.000000", 0)
print(w["iops"], w["total_ios"], w["lat_ns"]["mean"] / 1e3, p99 / 1e3, job["usr_cpu"] + job["sys_cpu"])
EOF

    if ((BENCH_WARMUP > 0)); then
        note "  warm-up: ${BENCH_WARMUP} s per config, not counted"
        fio_run warm-plain "$PSOCK" "$PLAIN_PID" "$BENCH_WARMUP"
        helper clear "$FCTL" >/dev/null
        fio_run warm-filter "$FSOCK" "$FILTER_PID" "$BENCH_WARMUP"
    fi

    P_IOPS=() F_IOPS=() P_LAT=() F_LAT=() P_P99=() F_P99=() P_CPU=() F_CPU=() RATIOS=()
    note "  $(printf '%-7s %-6s %10s %10s %10s %9s %11s  %s' round config IOPS 'lat(us)' 'p99(us)' 'fio-CPU%' 'nbdkit-us/IO' 'dirty grains after')"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        fio_run "$r-plain" "$PSOCK" "$PLAIN_PID" "$BENCH_RUNTIME"
        P_IOPS+=("$R_IOPS") P_LAT+=("$R_LAT") P_P99+=("$R_P99") P_CPU+=("$R_NCPU")
        note "  $(printf '%-7s %-6s %10.0f %10.1f %10.1f %9.1f %11s' "$r/$BENCH_ROUNDS" plain "$R_IOPS" "$R_LAT" "$R_P99" "$R_FIOCPU" "$R_NCPU")"

        helper clear "$FCTL" >/dev/null
        fio_run "$r-filter" "$FSOCK" "$FILTER_PID" "$BENCH_RUNTIME"
        info=$(helper info "$FCTL")
        live=$(kv live_grains "$info")
        ((live > 0)) || die "the filter marked nothing during run $r"
        F_IOPS+=("$R_IOPS") F_LAT+=("$R_LAT") F_P99+=("$R_P99") F_CPU+=("$R_NCPU")
        RATIOS+=("$(calc %.4f "$R_IOPS / ${P_IOPS[-1]}")")
        note "  $(printf '%-7s %-6s %10.0f %10.1f %10.1f %9.1f %11s  %s' "$r/$BENCH_ROUNDS" filter "$R_IOPS" "$R_LAT" "$R_P99" "$R_FIOCPU" "$R_NCPU" "$live")"
    done
    stop_pid "$PLAIN_PID"
    stop_pid "$FILTER_PID"
    rm -f "$IMG"
    IOPS_OK=1
fi

# ---- Summary ------------------------------------------------------------------

verdict() { # VALUE OP LIMIT -> MET / MISSED
    if awk "BEGIN { exit !($1 $2 $3) }"; then echo MET; else echo MISSED; fi
}

note ""
note "==================== writelog-bench summary ===================="
note "host: $NCPU CPUs, $(uname -r); $(nbdkit --version); $(fio --version)"
note "build: $BUILD_TYPE, filter built $(date -u -r "$FILTER" '+%Y-%m-%d %H:%M:%SZ'), repo HEAD $COMMIT"
note "load average (1/5/15 min): $LOAD_START at start, $(cut -d ' ' -f 1-3 /proc/loadavg) at end"
if ((IOPS_OK)); then
    PM=$(median "${P_IOPS[@]}") FM=$(median "${F_IOPS[@]}")
    RATIO=$(calc %.4f "$FM / $PM")
    COST=$(calc %.2f "(1 - $FM / $PM) * 100")
    PAIRED=$(median "${RATIOS[@]}")
    PAIRED_COST=$(calc %.2f "(1 - $PAIRED) * 100")
    PCPU=$(median "${P_CPU[@]}") FCPU=$(median "${F_CPU[@]}")
    # Round-to-round spread of the plain runs, (max - min) / median: a cost
    # smaller than this cannot be told from noise.
    SPREAD=$(calc %.2f "($(maximum "${P_IOPS[@]}") - $(minimum "${P_IOPS[@]}")) * 100 / $PM")
    FSPREAD=$(calc %.2f "($(maximum "${F_IOPS[@]}") - $(minimum "${F_IOPS[@]}")) * 100 / $FM")
    if awk -v c="$COST" -v s="$SPREAD" 'BEGIN { if (c < 0) c = -c; exit !(c < s) }'; then
        NOISE="within the noise"
    else
        NOISE="larger than the noise"
    fi
    note ""
    note "(a) fio randwrite bs=$BENCH_BS iodepth=$BENCH_IODEPTH, $BENCH_ROUNDS x ${BENCH_RUNTIME} s per config, $BENCH_IMAGE_SIZE disk, $BENCH_PLUGIN plugin, nbd engine"
    note "    $(printf '%-22s %12s %12s %12s' '' plain filter filter/plain)"
    note "    $(printf '%-22s %12.0f %12.0f %12.4f' 'IOPS median' "$PM" "$FM" "$RATIO")"
    note "    $(printf '%-22s %12.0f %12.0f' 'IOPS min' "$(minimum "${P_IOPS[@]}")" "$(minimum "${F_IOPS[@]}")")"
    note "    $(printf '%-22s %12.0f %12.0f' 'IOPS max' "$(maximum "${P_IOPS[@]}")" "$(maximum "${F_IOPS[@]}")")"
    note "    $(printf '%-22s %12.1f %12.1f' 'mean latency us' "$(median "${P_LAT[@]}")" "$(median "${F_LAT[@]}")")"
    note "    $(printf '%-22s %12.1f %12.1f' 'p99 latency us' "$(median "${P_P99[@]}")" "$(median "${F_P99[@]}")")"
    note "    $(printf '%-22s %12.2f %12.2f %12.4f' 'nbdkit CPU us/write' "$PCPU" "$FCPU" "$(calc %.4f "$FCPU / $PCPU")")"
    note "    IOPS cost of the filter (medians):       $COST %   target < 5 %: $(verdict "$COST" '<' 5)"
    note "    round-to-round spread (max-min)/median:  plain $SPREAD %, filter $FSPREAD %: the cost is $NOISE"
    note "    per-round filter/plain ratios: ${RATIOS[*]}"
    note "    IOPS cost, median of per-round ratios:   $PAIRED_COST %"
    note "    nbdkit CPU per write, filter - plain:    $(calc %+.2f "$FCPU - $PCPU") us"
    if ((NCPU <= 2)); then
        note "    NOTE: $NCPU CPUs shared by fio and nbdkit (CPU bound); a cost within the"
        note "    min-max spread of the rounds is noise, not a measurement."
    fi
fi
if ((GETW_OK)); then
    note ""
    note "(b) $BENCH_EXTENTS dirty extents on a $BENCH_BIG_SIZE sparse disk, $BENCH_GETW_REPEATS repeats, client round trip in ms"
    note "    $(printf '%-40s %9s %9s %9s' '' median max min)"
    row() { note "    $(printf '%-40s %9.3f %9.3f %9.3f' "$1" "$(calc %.3f "$(median "${@:2}") / 1000")" \
        "$(calc %.3f "$(maximum "${@:2}") / 1000")" "$(calc %.3f "$(minimum "${@:2}") / 1000")")"; }
    row "seal ($BENCH_EXTENTS extents, cold)" "${SEAL_US[@]}"
    row "getw ($BENCH_EXTENTS extents, cold, historical)" "${GETW_US[@]}"
    row "seal (same blocks again, warm)" "${SEALW_US[@]}"
    row "next acknowledging the seal" "${SEAL_ACK_US[@]}"
    row "seal on the empty log" "${SEAL_EMPTY_US[@]}"
    row "getw on the empty log" "${GETW_EMPTY_US[@]}"
    row "info (baseline round trip)" "${INFO_US[@]}"
    SEAL_MAX=$(calc %.3f "$(maximum "${SEAL_US[@]}") / 1000")
    GETW_MAX=$(calc %.3f "$(maximum "${GETW_US[@]}") / 1000")
    note "    every measure returned exactly the $BENCH_EXTENTS extents written"
    note "    nbdkit minor faults per measure (median): seal cold $(median "${SEAL_FLT[@]}"), getw cold $(median "${GETW_FLT[@]}"), seal warm $(median "${SEALW_FLT[@]}")"
    note "    seal max $SEAL_MAX ms, getw max $GETW_MAX ms   target < 10 ms: seal $(verdict "$SEAL_MAX" '<' 10), getw $(verdict "$GETW_MAX" '<' 10)"
    note "    blkship wlog getw, whole process (exec, connect, seal, next, print): $CLI_GETW_MS ms"
    note ""
    note "(c) marking cost on the $BENCH_BIG_SIZE disk"
    note "    grain $((GRAIN_SECTORS * 512)) bytes; bitmap reserved (live + pending, from nbdkit -v): $BITMAP_KIB KiB ($(calc %.1f "$BITMAP_KIB / 1024") MiB)"
    note "    nbdkit RssAnon: plain $RSS_PLAIN KiB; filter $RSS_FILTER_START KiB at start (+$((RSS_FILTER_START - RSS_PLAIN)) KiB, live map prefaulted),"
    note "                    $RSS_FILTER_END KiB after the seal/getw runs (+$((RSS_FILTER_END - RSS_PLAIN)) KiB)"
    note "    wl_log_mark() CPU per write (2 marks, 1 thread): $(calc %.0f "${MARK_COLD[0]}") ns on new bits, $(calc %.0f "${MARK_HOT[0]}") ns on set bits"
    if ((${#MARK_COLD[@]} > 1)); then
        note "                      ($NCPU threads at once: $(calc %.0f "${MARK_COLD[1]}") ns cold, $(calc %.0f "${MARK_HOT[1]}") ns hot, per thread)"
    fi
    if ((IOPS_OK)); then
        note "    nbdkit CPU per 4 KiB write (a): plain $PCPU us, filter $FCPU us ($(calc %+.2f "$FCPU - $PCPU") us):"
        note "    the marks are $(calc %.2f "${MARK_COLD[0]} / 10 / $PCPU") % of the plain write path's CPU"
    fi
fi
note "================================================================"
