#!/usr/bin/env bash
# verify-bench.sh: `blkship verify` of an idle pair in sync against a plain
# read of both disks, on a disk of BENCH_SIZE (default 1G).  BENCH_TRIALS
# (default 3) of each, interleaved, the page cache dropped before each:
#   verify  blkship verify of the whole disk (the primary reads through the
#           write log's ring, the secondary with direct I/O, checksums over
#           TLS)
#   read    dd of the image and of the replica at once, 4 MiB direct reads:
#           the most the two disks give to any comparison
# Prints the median time and rate of each, the ratio, and the CPU seconds
# of both agents during a verify.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit and
# openssl; uses the replication tests' helpers with the build in
# BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=3}" "${BENCH_SIZE:=1G}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 300 + 300))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
WORKDIR_PREFIX=bs-vfb
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 50 ] || fail "BENCH_TRIALS: 1 to 50"

bytes=$(numfmt --from=iec "$BENCH_SIZE")
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
note "making a $BENCH_SIZE disk and its replica"
random_file "$img" "$BENCH_SIZE" "vfb-$$"
truncate -s "$BENCH_SIZE" "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "vfb$$" "$img"
start_secondary sec "$rep"
start_primary pri "$WL_CTL" "$SEC_ADDR"
wait_synced "$PRI_CTL" 300
cmp -s "$img" "$rep" || fail "the replica differs after the first sync"

ms_now() { echo $(($(date +%s%N) / 1000000)); }
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
T_V="" T_R="" C_V=""
for ((i = 1; i <= BENCH_TRIALS; i++)); do
    drop
    c0=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID")))
    t0=$(ms_now)
    out=$("$BLKSHIP" verify --control "$PRI_CTL" 2>&1) || fail "verify $i: $out"
    t1=$(ms_now)
    c1=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID")))
    [[ $out == "verify: identical: $bytes bytes compared"* ]] || fail "verify $i: $out"
    cpu=$(awk -v c=$((c1 - c0)) -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", c / h }')
    T_V+="$((t1 - t0)) " C_V+="$cpu "
    drop
    t0=$(ms_now)
    dd if="$img" of=/dev/null bs=4M iflag=direct status=none &
    d1=$!
    dd if="$rep" of=/dev/null bs=4M iflag=direct status=none &
    d2=$!
    wait "$d1" && wait "$d2" || fail "dd failed"
    t1=$(ms_now)
    T_R+="$((t1 - t0)) "
    note "trial $i: verify $(awk "{ print \$NF }" <<<"$T_V") ms ($cpu CPU s), plain read of both $((t1 - t0)) ms"
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
tv=$(median "$T_V") tr=$(median "$T_R") cv=$(median "$C_V")
echo
echo "verify of $BENCH_SIZE in sync, idle, medians of $BENCH_TRIALS (page cache dropped)"
printf '  %-28s %8s ms %8s MB/s\n' "blkship verify" "$tv" "$(awk -v b="$bytes" -v t="$tv" 'BEGIN { printf "%.0f", b / 1000 / t }')"
printf '  %-28s %8s ms %8s MB/s\n' "plain read of both disks" "$tr" "$(awk -v b="$bytes" -v t="$tr" 'BEGIN { printf "%.0f", b / 1000 / t }')"
echo "  verify / plain read time: $(awk -v a="$tv" -v b="$tr" 'BEGIN { printf "%.2f", a / b }'); CPU of both agents: $cv s ($(awk -v c="$cv" -v b="$bytes" 'BEGIN { printf "%.2f", c / (b / 1073741824) }') s/GiB)"
