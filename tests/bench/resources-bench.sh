#!/usr/bin/env bash
# resources-bench.sh: BENCH_RESOURCES (default 100) resources on one
# secondary host behind one blkship-listener port (docs/resources.md),
# each a random disk of BENCH_SIZE (default 32M) with its own nbdkit,
# blkship-primary (--epoch-idle-ms 10s) and blkship-secondary.  Every
# primary is started and at once frozen (SIGSTOP); then all are thawed in
# one signal and the full syncs run against each other.  Prints:
#   - the aggregate throughput (all disks over the time to the last one in
#     sync) and the spread of the per-resource throughputs (each disk over
#     its own time to sync: min, median, max, min/max, Jain's index), the
#     fairness of the shared host;
#   - the secondaries' memory per resource once all are idle in sync
#     (proportional set size, Pss, from smaps_rollup), and their CPU use
#     while idle over BENCH_IDLE_S (default 10) seconds.
# Each replica is compared with its disk at the end.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit,
# openssl; uses the replication tests' helpers with the build in
# BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_RESOURCES:=100}" "${BENCH_SIZE:=32M}" "${BENCH_IDLE_S:=10}"
export TEST_TIME_LIMIT=3600
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
WORKDIR_PREFIX=bs-resb
make_workdir
: "${LISTENER:=$BLKSHIP_BUILD_DIR/secondary/blkship-listener}"
[ -x "$LISTENER" ] || fail "LISTENER=$LISTENER is not built"
n=$BENCH_RESOURCES
[ "$n" -ge 2 ] && [ "$n" -le 500 ] || fail "BENCH_RESOURCES: 2 to 500"
bytes=$(numfmt --from=iec "$BENCH_SIZE")
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_listener lsn
hz=$(getconf CLK_TCK)

declare -a SCTL SPID PCTL PPIDS WLC DONE
for ((i = 1; i <= n; i++)); do
    random_file "$WORKDIR/d$i.img" "$BENCH_SIZE" "resb-$i-$$"
    truncate -s "$BENCH_SIZE" "$WORKDIR/d$i.rep"
    start_nbdkit "$WORKDIR" "rb$i-$$" "$WORKDIR/d$i.img"
    WLC[i]=$WL_CTL
    start_secondary --listener "$LISTENER_SOCK" "s$i" "$WORKDIR/d$i.rep" --resource "res$i" \
        --journal-max 4M
    SCTL[i]=$SEC_CTL SPID[i]=$SEC_PID
done
for ((i = 1; i <= n; i++)); do
    start_primary "p$i" "${WLC[i]}" "$LISTENER_ADDR" --resource "res$i" --epoch-idle-ms 10s
    kill -STOP "$PRI_PID"
    PCTL[i]=$PRI_CTL PPIDS[i]=$PRI_PID
done
sync
echo 3 >/proc/sys/vm/drop_caches
note "$n pairs ready, primaries frozen; thawing them all"
t0=$(date +%s%N)
kill -CONT "${PPIDS[@]}"

# synced_now I: prints I if resource I is in sync (its first epoch
# committed, nothing dirty or in flight).
synced_now() {
    local s
    s=$(status "${PCTL[$1]}") || return 0
    [ "$(jget "$s" dirty_bytes)" = 0 ] && [ "$(jget "$s" inflight_bytes)" = 0 ] &&
        [ "$(jget "$s" committed_epoch)" -ge 1 ] && echo "$1"
    return 0
}
left=$n end=$((SECONDS + 1800))
while [ "$left" -gt 0 ]; do
    [ "$SECONDS" -lt "$end" ] || fail "$left resources not in sync after 1800 s"
    todo=()
    for ((i = 1; i <= n; i++)); do [ -z "${DONE[i]:-}" ] && todo+=("$i"); done
    # All asked at once, so that one round takes one status call's time.
    qpids=()
    for i in "${todo[@]}"; do
        synced_now "$i" >"$WORKDIR/q$i" &
        qpids+=("$!")
    done
    wait "${qpids[@]}" # not a bare wait: the agents are children too
    now=$(date +%s%N)
    for i in "${todo[@]}"; do
        if [ -s "$WORKDIR/q$i" ]; then
            DONE[i]=$(((now - t0) / 1000000))
            left=$((left - 1))
        fi
    done
    sleep 0.1
done
last=0
for ((i = 1; i <= n; i++)); do [ "${DONE[i]}" -gt "$last" ] && last=${DONE[i]}; done
for ((i = 1; i <= n; i++)); do
    cmp -s "$WORKDIR/d$i.img" "$WORKDIR/d$i.rep" || fail "res$i: the replica differs from the disk"
done

# Idle: memory and CPU of the secondaries.
pss=0 cpu0=0 cpu1=0
cpu_all() {
    local t=0 i
    for ((i = 1; i <= n; i++)); do t=$((t + $(awk '{ print $14 + $15 }' "/proc/${SPID[i]}/stat"))); done
    echo "$t"
}
sleep 2
cpu0=$(cpu_all)
sleep "$BENCH_IDLE_S"
cpu1=$(cpu_all)
for ((i = 1; i <= n; i++)); do
    pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/${SPID[i]}/smaps_rollup")))
done

echo
echo "$n resources of $BENCH_SIZE through one blkship-listener port, full syncs all at once"
printf '%s\n' "${DONE[@]}" | sort -n | awk -v n="$n" -v b="$bytes" -v last="$last" '
    { t[NR] = $1; r = b / 1048576 / ($1 / 1000); rate[NR] = r; s += r; s2 += r * r }
    END {
        # Sorted by time: rate[1] is the fastest, rate[n] the slowest.
        printf "  aggregate: %.0f MiB in %.1f s = %.0f MiB/s\n", n * b / 1048576, last / 1000, n * b / 1048576 / (last / 1000)
        printf "  per resource MiB/s: min %.2f  median %.2f  max %.2f  min/max %.2f  Jain %.3f\n",
            rate[n], rate[int((n + 1) / 2)], rate[1], rate[n] / rate[1], s * s / (n * s2)
        printf "  time to sync: first %.1f s, median %.1f s, last %.1f s\n", t[1] / 1000, t[int((n + 1) / 2)] / 1000, t[n] / 1000
    }'
echo "  idle secondaries in sync: Pss $((pss / n)) KiB per resource ($((pss / 1024)) MiB for $n);" \
    "CPU $(awk -v c=$((cpu1 - cpu0)) -v h="$hz" -v s="$BENCH_IDLE_S" -v n="$n" 'BEGIN { printf "%.2f%% of one CPU for all, %.3f%% per resource", 100 * c / h / s, 100 * c / h / s / n }')"
