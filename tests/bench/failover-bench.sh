#!/usr/bin/env bash
# failover-bench.sh: how long the secondary takes to notice that its
# primary is gone, from the failure to the start of its --on-failover hook
# (docs/hooks.md), at the default heartbeat settings (1 s / 5 s) and at the
# fastest supported ones (--heartbeat-ms 100 --peer-timeout-ms 500).
#
# Two kinds of failure, BENCH_TRIALS times each (default 20):
#   kill   blkship-primary killed -9: its connection drops (a crash)
#   stop   blkship-primary stopped with SIGSTOP: the socket stays open and
#          nothing arrives (a hung host, a dead network): the peer timeout
# The hook records the time it starts; the figure is that minus the time
# just before the signal.  Prints p50, p99 and max per setting and kind.
#
# A benchmark, not a test: ctest never runs it.  Needs root, nbdkit and
# openssl; uses the replication tests' helpers (tests/replication/
# functions.sh) with the build in BLKSHIP_BUILD_DIR (default: build).
: "${BLKSHIP_BUILD_DIR:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BLKSHIP_BUILD_DIR
: "${BENCH_TRIALS:=20}"
export TEST_TIME_LIMIT=$((BENCH_TRIALS * 40 + 120))
source "$(dirname "$0")/../replication/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
WORKDIR_PREFIX=bs-fob
make_workdir
[ "$BENCH_TRIALS" -ge 1 ] && [ "$BENCH_TRIALS" -le 1000 ] || fail "BENCH_TRIALS: 1 to 1000"

img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
truncate -s 64M "$img" "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_nbdkit "$WORKDIR" "fob$$" "$img"
hook=$WORKDIR/hook.sh
printf '#!/bin/sh\ndate +%%s%%N >>"%s/hooks.log"\n' "$WORKDIR" >"$hook"
chmod +x "$hook"
: >"$WORKDIR/hooks.log"

# pctl FILE: p50 p99 max of the numbers in FILE.
pctl() {
    sort -n "$1" | awk '{ a[NR] = $1 } END {
        i50 = int(NR * 0.50 + 0.5); i99 = int(NR * 0.99 + 0.5)
        if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
        printf "%d %d %d", a[i50], a[i99], a[NR] }'
}

declare -A RES
for setting in default fast; do
    flags=()
    [ "$setting" = fast ] && flags=(--heartbeat-ms 100 --peer-timeout-ms 500)
    start_secondary sec "$rep" "${flags[@]}" --on-failover "$hook" --hook-timeout 5s
    port=$SEC_PORT
    for kind in kill stop; do
        out=$WORKDIR/$setting-$kind.ms
        : >"$out"
        for ((i = 1; i <= BENCH_TRIALS; i++)); do
            start_primary pri "$WL_CTL" "$SEC_ADDR" "${flags[@]}"
            _sec_connected() { [ "$(field "$SEC_CTL" connected)" = true ]; }
            poll_until 30 _sec_connected || fail "$setting $kind $i: no session: $(status "$SEC_CTL")"
            n0=$(wc -l <"$WORKDIR/hooks.log")
            t0=$(date +%s%N)
            if [ "$kind" = kill ]; then kill -KILL "$PRI_PID"; else kill -STOP "$PRI_PID"; fi
            _hooked() { [ "$(wc -l <"$WORKDIR/hooks.log")" -gt "$n0" ]; }
            poll_until 30 _hooked || fail "$setting $kind $i: the hook did not run"
            t1=$(tail -n 1 "$WORKDIR/hooks.log")
            echo $(((t1 - t0) / 1000000)) >>"$out"
            kill -KILL "$PRI_PID" 2>/dev/null || true
            kill -CONT "$PRI_PID" 2>/dev/null || true
            wait "$PRI_PID" 2>/dev/null || true
        done
        RES[$setting,$kind]=$(pctl "$out")
        read -r p50 p99 mx <<<"${RES[$setting,$kind]}"
        note "$setting ($( [ "$setting" = fast ] && echo "100 ms / 500 ms" || echo "1 s / 5 s")), $kind: p50 $p50 ms, p99 $p99 ms, max $mx ms over $BENCH_TRIALS trials"
    done
    stop_pid "$SEC_PID"
done
echo
echo "failover detection, failure to hook start, ms (p50 / p99 / max over $BENCH_TRIALS trials)"
for setting in default fast; do
    for kind in kill stop; do
        read -r p50 p99 mx <<<"${RES[$setting,$kind]}"
        printf '  %-8s %-5s %6s %6s %6s\n' "$setting" "$kind" "$p50" "$p99" "$mx"
    done
done
