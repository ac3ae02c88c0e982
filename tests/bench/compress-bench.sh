#!/usr/bin/env bash
# compress-bench.sh: --compress zstd against no compression, a full sync
# over a WAN-like link: the secondary in a network namespace behind a veth
# pair shaped with tc tbf to BENCH_LINK (default 100mbit) both ways.  Two
# disks of BENCH_SIZE (default 256M):
#   half     each 4 KiB block 2 KiB random and 2 KiB of one byte: about 2:1
#   random   all random: nothing to gain, the back-off is what it costs
# BENCH_LEVELS (default "3") are the zstd levels tried; "none" is always
# run.  BENCH_TRIALS (default 3) of each, interleaved, page cache dropped
# before each.  Prints per disk and method the median time, the effective
# rate (disk bytes / time), the ratio (raw / wire, from the status), the CPU
# seconds of both agents, and the speed-up over none; every run ends with
# the replica compared with the disk.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit,
# openssl and tc; uses the replication tests' helpers with the build in
# BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=3}" "${BENCH_SIZE:=256M}" "${BENCH_LINK:=100mbit}" "${BENCH_LEVELS:=3}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 900 + 300))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
WORKDIR_PREFIX=bs-czb
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 20 ] || fail "BENCH_TRIALS: 1 to 20"

bytes=$(numfmt --from=iec "$BENCH_SIZE")
note "making two $BENCH_SIZE disks (half: about 2:1; random)"
random_file "$WORKDIR/random.img" "$BENCH_SIZE" "czb-$$"
random_file "$WORKDIR/half.img" "$BENCH_SIZE" "czb2-$$"
python3 - "$WORKDIR/half.img" "$((bytes / 4096))" <<'PY' || fail "could not make the half disk"
import sys
with open(sys.argv[1], 'r+b') as f:
    for i in range(int(sys.argv[2])):
        f.seek(i * 4096 + 2048)
        f.write(b'\x5a' * 2048)
PY
rep=$WORKDIR/replica.img
CERTS=$WORKDIR/pki
make_certs "$CERTS"

shaped_ns czb "$BENCH_LINK" 233
ns=$NS addr_ns=$ADDR_NS
note "the secondary is behind a $BENCH_LINK link (tc tbf both ways)"

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }

run_one() { # run_one DISK METHOD TRIAL: "ms ratio cpu_s"
    local disk=$1 m=$2 i=$3 img=$WORKDIR/$1.img t0 t1 s cpu flags=()
    [ "$m" = none ] || flags=(--compress "zstd:$m")
    truncate -s 0 "$rep"
    truncate -s "$bytes" "$rep"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    start_nbdkit "$WORKDIR" "czb$$$i$disk$m" "$img"
    start_secondary --ns "$ns" --host "$addr_ns" "sec$i$disk$m" "$rep"
    t0=$(ms_now)
    start_primary "pri$i$disk$m" "$WL_CTL" "$SEC_ADDR" "${flags[@]}"
    wait_synced "$PRI_CTL" 900
    t1=$(ms_now)
    s=$(status "$PRI_CTL")
    cpu=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID")))
    stop_pid "$PRI_PID"
    stop_pid "$SEC_PID"
    stop_pid "$NBDKIT_PID"
    cmp -s "$img" "$rep" || fail "$disk $m $i: the replica differs from the disk"
    echo "$((t1 - t0)) $(jget "$s" compress_ratio) $(awk -v c="$cpu" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", c / h }')"
}

methods=(none $BENCH_LEVELS)
declare -A T R C
for ((i = 1; i <= BENCH_TRIALS; i++)); do
    for disk in half random; do
        for m in "${methods[@]}"; do
            read -r ms ratio cpu <<<"$(run_one "$disk" "$m" "$i")"
            T[$disk,$m]+="$ms " R[$disk,$m]+="$ratio " C[$disk,$m]+="$cpu "
            note "trial $i $disk zstd:$m: $ms ms, ratio $ratio, $cpu CPU s (both agents)"
        done
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "full sync of $BENCH_SIZE over a $BENCH_LINK link, medians of $BENCH_TRIALS (per trial in brackets)"
printf '  %-7s %-7s %9s %10s %7s %7s %9s  %s\n' disk method ms "MB/s" ratio cpu_s speedup "per trial ms"
for disk in half random; do
    t0=$(median "${T[$disk,none]}")
    for m in "${methods[@]}"; do
        t=$(median "${T[$disk,$m]}")
        printf '  %-7s %-7s %9s %10s %7s %7s %9s  [%s]\n' "$disk" "$([ "$m" = none ] && echo none || echo "zstd:$m")" "$t" \
            "$(awk -v b="$bytes" -v t="$t" 'BEGIN { printf "%.1f", b / t / 1000 }')" \
            "$(median "${R[$disk,$m]}")" "$(median "${C[$disk,$m]}")" \
            "$(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.2fx", a / b }')" "${T[$disk,$m]% }"
    done
done
