#!/usr/bin/env bash
# rbd-bench.sh: a full sync onto an RBD image (docs/rbd.md) against the two
# ways the same cluster takes the same bytes without blkship, in a one-node
# Ceph cluster (scripts/ceph-cluster.sh: one monitor, one memstore OSD):
#   blkship   a new pairing of a BENCH_SIZE (default 1G) random disk served
#             by nbdkit with the writelog filter, blkship-primary to a
#             blkship-secondary on --device rbd:rbd/IMAGE over TLS, until
#             the first epoch is committed and nothing is dirty
#   import    rbd import of the same image file (librbd, from the file)
#   fio       fio's rbd engine writing BENCH_SIZE sequentially, 4 MiB
#             blocks, queue depth 32: the cluster's own write limit here
# BENCH_TRIALS (default 3) of each, interleaved, the page cache dropped and
# the images removed between them.  Prints per method the median time and
# throughput, the CPU seconds of the client processes (blkship: both agents;
# import: rbd; fio: fio) and of the OSD, per GiB, and blkship's ratios to
# the others.  Each blkship run ends with `rbd export` of the image
# compared with the disk byte for byte.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit,
# openssl and Ceph (scripts/install-deps.sh installs them); uses the
# replication tests' helpers with the build in BLKSHIP_BUILD_DIR (default:
# build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=3}" "${BENCH_SIZE:=1G}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 900 + 300))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
requires rbd
requires ceph-osd
requires fio
require_build
WORKDIR_PREFIX=bs-rbdb
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 50 ] || fail "BENCH_TRIALS: 1 to 50"
[ -x /usr/bin/time ] || fail "needs /usr/bin/time (package time, which scripts/install-deps.sh installs)"
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*rbd' || fail "this fio has no rbd engine"

bytes=$(numfmt --from=iec "$BENCH_SIZE")
mib=$((bytes >> 20))
cluster=$WORKDIR/ceph
cleanup_fn "$_src_dir/scripts/ceph-cluster.sh" stop "$cluster"
conf=$("$_src_dir/scripts/ceph-cluster.sh" start "$cluster") || fail "the Ceph cluster did not start"
osd_pid=$("$_src_dir/scripts/ceph-cluster.sh" osd-pid "$cluster")
rbdc() { rbd -c "$conf" "$@" 2>/dev/null; }
img=$WORKDIR/disk.img
note "making a $BENCH_SIZE disk"
random_file "$img" "$BENCH_SIZE" "rbdb-$$"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
hz=$(getconf CLK_TCK)

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
secs() { awk -v c="$1" -v h="$hz" 'BEGIN { printf "%.2f", c / h }'; }
fresh() { # fresh NAME: an empty image of the disk's size, caches dropped
    rbdc rm --no-progress "rbd/$1" >/dev/null || true
    rbdc create --size "$mib"M "rbd/$1" || fail "rbd create rbd/$1"
    sync
    echo 3 >/proc/sys/vm/drop_caches
}
_synced() {
    local s
    s=$(status "$PRI_CTL") || return 1
    [ "$(jget "$s" dirty_bytes)" = 0 ] && [ "$(jget "$s" committed_epoch)" -ge 1 ] &&
        [ "$(jget "$s" inflight_bytes)" = 0 ]
}

run_blkship() { # TRIAL: "ms client_cpu_s osd_cpu_s"
    local i=$1 t0 t1 cpu osd0 osd1
    fresh b
    start_nbdkit "$WORKDIR" "rbdb$$$i" "$img"
    start_secondary "sec$i" rbd:rbd/b --ceph-conf "$conf"
    osd0=$(cpu_of "$osd_pid")
    t0=$(ms_now)
    start_primary "pri$i" "$WL_CTL" "$SEC_ADDR"
    poll_until 900 _synced || fail "blkship $i: not in sync: $(status "$PRI_CTL")"
    t1=$(ms_now)
    osd1=$(cpu_of "$osd_pid")
    cpu=$(($(cpu_of "$PRI_PID") + $(cpu_of "$SEC_PID")))
    stop_pid "$PRI_PID"
    stop_pid "$SEC_PID"
    stop_pid "$NBDKIT_PID"
    rbdc export --no-progress rbd/b - | cmp -s - "$img" || fail "blkship $i: rbd export differs from the disk"
    echo "$((t1 - t0)) $(secs "$cpu") $(secs $((osd1 - osd0)))"
}

run_import() { # "ms client_cpu_s osd_cpu_s"
    local t0 t1 out osd0 osd1
    rbdc rm --no-progress rbd/i >/dev/null || true
    sync
    echo 3 >/proc/sys/vm/drop_caches
    osd0=$(cpu_of "$osd_pid")
    t0=$(ms_now)
    out=$( { /usr/bin/time -f 'CPU %U %S' rbd -c "$conf" import --no-progress "$img" rbd/i; } 2>&1) ||
        fail "rbd import: $out"
    t1=$(ms_now)
    osd1=$(cpu_of "$osd_pid")
    echo "$((t1 - t0)) $(sed -n 's/^CPU \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' <<<"$out" | awk '{ printf "%.2f", $1 + $2 }') $(secs $((osd1 - osd0)))"
}

run_fio() { # "ms client_cpu_s osd_cpu_s"
    local t0 t1 out osd0 osd1
    fresh f
    osd0=$(cpu_of "$osd_pid")
    t0=$(ms_now)
    out=$( { /usr/bin/time -f 'CPU %U %S' fio --name=seq --ioengine=rbd --clientname=admin \
        --pool=rbd --rbdname=f --rw=write --bs=4M --iodepth=32 --size="$bytes" \
        --output-format=terse --terse-version=3 --thread; } 2>&1 </dev/null) || fail "fio: $out"
    t1=$(ms_now)
    osd1=$(cpu_of "$osd_pid")
    echo "$((t1 - t0)) $(sed -n 's/^CPU \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' <<<"$out" | awk '{ printf "%.2f", $1 + $2 }') $(secs $((osd1 - osd0)))"
}
# fio's rbd engine reads the configuration from CEPH_CONF.
export CEPH_CONF=$conf

declare -A T C O
for ((i = 1; i <= BENCH_TRIALS; i++)); do
    for kind in blkship import fio; do
        case $kind in
        blkship) r=$(run_blkship "$i") ;;
        import) r=$(run_import) ;;
        fio) r=$(run_fio) ;;
        esac
        read -r ms cpu osd <<<"$r"
        T[$kind]+="$ms "
        C[$kind]+="$cpu "
        O[$kind]+="$osd "
        note "trial $i $kind: $ms ms, $(awk -v b="$bytes" -v t="$ms" 'BEGIN { printf "%.0f", b / 1048576 / (t / 1000) }') MiB/s, client CPU $cpu s, OSD CPU $osd s"
    done
    rbdc rm --no-progress rbd/i >/dev/null || true
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
gib=$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')
echo
echo "full sync of $BENCH_SIZE onto RBD (one-node memstore cluster), medians of $BENCH_TRIALS"
printf '  %-8s %8s %8s %14s %12s %10s\n' method ms MiB/s client_cpu/GiB osd_cpu/GiB blkship/x
tb=$(median "${T[blkship]}")
for kind in blkship import fio; do
    t=$(median "${T[$kind]}")
    printf '  %-8s %8s %8s %14s %12s %10s\n' "$kind" "$t" \
        "$(awk -v b="$bytes" -v t="$t" 'BEGIN { printf "%.0f", b / 1048576 / (t / 1000) }')" \
        "$(awk -v c="$(median "${C[$kind]}")" -v g="$gib" 'BEGIN { printf "%.2f", c / g }')" \
        "$(awk -v c="$(median "${O[$kind]}")" -v g="$gib" 'BEGIN { printf "%.2f", c / g }')" \
        "$(awk -v a="$tb" -v b="$t" 'BEGIN { printf "%.2f", a / b }')"
done
echo "  (blkship/x: blkship's time over the method's; below 1 is faster)"
