#!/usr/bin/env bash
# csync-bench.sh: a checksum resync against the two ways of doing without
# one, on a disk of BENCH_SIZE (default 1G) of which BENCH_CHANGED_PCT
# percent (default 1) differs from the replica, in random 64 KiB blocks:
#   checksum  blkship-primary --initial-sync checksum pairing with a replica
#             that already holds the rest (the same comparison as after a
#             write log restart): both disks read once, what differs sent
#   full      blkship-primary's full resend of the same disk (a new pairing
#             without the option, which is what a log restart cost before)
#   rsync     rsync --inplace --no-whole-file from the image to the replica
#             file on the same host (its delta algorithm over a local pipe:
#             no ssh here, so no encryption cost on its side)
# BENCH_LINK (e.g. 1gbit, 100mbit; default: none) puts the secondary and
# the rsync daemon in a network namespace behind a veth pair shaped to that
# rate with tc tbf, like a WAN link; without it everything runs on loopback.
# BENCH_TRIALS (default 3) of each, interleaved, page cache dropped before
# each.  Prints per method the median time, bytes sent (blkship: data
# bytes; rsync: its literal data) and CPU seconds of both agents (or of
# rsync's processes), and the ratios to the checksum resync.  Each run ends
# with the two disks compared byte for byte.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit,
# openssl and rsync; uses the replication tests' helpers with the build in
# BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=3}" "${BENCH_SIZE:=1G}" "${BENCH_CHANGED_PCT:=1}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 600 + 300))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
requires rsync
require_build
WORKDIR_PREFIX=bs-csb
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 50 ] || fail "BENCH_TRIALS: 1 to 50"

bytes=$(numfmt --from=iec "$BENCH_SIZE")
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
base=$WORKDIR/base.img
note "making a $BENCH_SIZE disk"
random_file "$base" "$BENCH_SIZE" "csb-$$"
cp "$base" "$img"
blocks=$((bytes / 65536))
nchg=$((blocks * BENCH_CHANGED_PCT / 100))
python3 - "$img" "$blocks" "$nchg" <<'PY' || fail "could not change the image"
import os, random, sys
path, blocks, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(4711)
with open(path, "r+b") as f:
    for b in rnd.sample(range(blocks), n):
        f.seek(b * 65536)
        f.write(os.urandom(65536))
PY
changed=$(python3 - "$base" "$img" <<'PY'
import sys
n = 0
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    while True:
        x, y = a.read(65536), b.read(65536)
        if not x:
            break
        n += x != y
print(n)
PY
)
note "$nchg random 64 KiB blocks changed ($changed differ: $((changed * 64)) KiB of $BENCH_SIZE)"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
nsargs=() rsync_dst=$rep
if [ -n "${BENCH_LINK:-}" ]; then
    shaped_ns csb "$BENCH_LINK" 232
    ns=$NS addr_ns=$ADDR_NS
    nsargs=(--ns "$ns" --host "$addr_ns")
    printf 'pid file = %s/rsyncd.pid\nuse chroot = no\n[bench]\n path = %s\n read only = no\n uid = root\n gid = root\n' \
        "$WORKDIR" "$WORKDIR" >"$WORKDIR/rsyncd.conf"
    ip netns exec "$ns" rsync --daemon --no-detach --config="$WORKDIR/rsyncd.conf" --address="$addr_ns" --port=8873 &
    rsyncd_pid=$!
    cleanup_fn stop_pid "$rsyncd_pid"
    rsync_dst=rsync://$addr_ns:8873/bench/replica.img
    note "the secondary and rsync's daemon are behind a $BENCH_LINK link"
fi

cpu_of() { # utime+stime of a pid, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
ms_now() { echo $(($(date +%s%N) / 1000000)); }
_resynced() {
    local s
    s=$(status "$PRI_CTL") || return 1
    [ "$(jget "$s" resync)" = none ] && [ "$(jget "$s" dirty_bytes)" = 0 ] &&
        [ "$(jget "$s" committed_epoch)" -ge 1 ]
}

run_blkship() { # run_blkship checksum|full TRIAL: "ms bytes cpu_s"
    local kind=$1 i=$2 t0 t1 s cpu flags=()
    [ "$kind" = checksum ] && flags=(--initial-sync checksum)
    cp "$base" "$rep"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    start_nbdkit "$WORKDIR" "csb$$$i$kind" "$img"
    start_secondary "${nsargs[@]}" "sec$i$kind" "$rep"
    t0=$(ms_now)
    start_primary "pri$i$kind" "$WL_CTL" "$SEC_ADDR" "${flags[@]}"
    poll_until 600 _resynced || fail "$kind $i: not in sync: $(status "$PRI_CTL")"
    t1=$(ms_now)
    s=$(status "$PRI_CTL")
    cpu=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID")))
    stop_pid "$PRI_PID"
    stop_pid "$SEC_PID"
    stop_pid "$NBDKIT_PID"
    cmp -s "$img" "$rep" || fail "$kind $i: the replica differs from the disk"
    echo "$((t1 - t0)) $(jget "$s" sent_bytes) $(awk -v c="$cpu" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", c / h }')"
}

run_rsync() { # "ms bytes cpu_s"
    local t0 t1 out lit cpu
    cp "$base" "$rep"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    t0=$(ms_now)
    out=$( { /usr/bin/time -f 'CPU %U %S' rsync --inplace --no-whole-file --stats "$img" "$rsync_dst"; } 2>&1) ||
        fail "rsync: $out"
    t1=$(ms_now)
    lit=$(sed -n 's/^Literal data: \([0-9,]*\) bytes$/\1/p' <<<"$out" | tr -d ,)
    cpu=$(sed -n 's/^CPU \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' <<<"$out" | awk '{ printf "%.2f", $1 + $2 }')
    cmp -s "$img" "$rep" || fail "rsync: the copy differs from the disk"
    echo "$((t1 - t0)) ${lit:-0} ${cpu:-0}"
}
[ -x /usr/bin/time ] || fail "needs /usr/bin/time (package time, which scripts/install-deps.sh installs)"

declare -A T B C
for ((i = 1; i <= BENCH_TRIALS; i++)); do
    for kind in checksum full rsync; do
        if [ "$kind" = rsync ]; then r=$(run_rsync); else r=$(run_blkship "$kind" "$i"); fi
        read -r ms by cpu <<<"$r"
        T[$kind]+="$ms "
        B[$kind]+="$by "
        C[$kind]+="$cpu "
        note "trial $i $kind: $ms ms, $by bytes sent, $cpu CPU s"
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# The comparison means something only if the full resend was one.
[ "$(median "${B[full]}")" -ge "$bytes" ] || fail "the full resend sent only $(median "${B[full]}") bytes of $bytes"
[ "$(median "${B[checksum]}")" -lt "$bytes" ] || fail "the checksum resync sent the whole disk"
echo
echo "checksum resync of $BENCH_SIZE with $BENCH_CHANGED_PCT% changed${BENCH_LINK:+ over a $BENCH_LINK link} ($((changed * 64)) KiB in 64 KiB blocks), medians of $BENCH_TRIALS"
printf '  %-9s %9s %14s %8s %10s %10s\n' method ms bytes_sent cpu_s "time/ck" "bytes/ck"
tc=$(median "${T[checksum]}")
bc=$(median "${B[checksum]}")
for kind in checksum full rsync; do
    t=$(median "${T[$kind]}")
    b=$(median "${B[$kind]}")
    c=$(median "${C[$kind]}")
    printf '  %-9s %9s %14s %8s %10s %10s\n' "$kind" "$t" "$b" "$c" \
        "$(awk -v a="$t" -v b="$tc" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="$b" -v b="$bc" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
done
