#!/usr/bin/env bash
# A throwaway one-node Ceph cluster for the RBD target's tests and
# benchmarks: one monitor and one OSD on memstore (its objects live in the
# OSD's memory), no authentication, pools of size 1, everything (config,
# data, logs, sockets) under one directory and the monitor on a port of its
# own, so that two tests may each run one at once.
#
#   ceph-cluster.sh start DIR [PORT]   starts it; prints DIR/ceph.conf
#   ceph-cluster.sh stop DIR           stops it and empties DIR (idempotent)
#   ceph-cluster.sh osd-pid DIR        the OSD's pid
#
# A memstore OSD loses its objects when it restarts: tests that make the
# cluster unreachable freeze the OSD (SIGSTOP, then SIGCONT) instead.
# No manager daemon: pools and RBD images need none.
set -euo pipefail

usage() {
    echo "usage: $0 start DIR [PORT] | stop DIR | osd-pid DIR" >&2
    exit 2
}

# pids DIR: the daemons started in DIR, one per line.
daemon_pids() {
    [ -f "$1/pids" ] && cat "$1/pids" || true
}

stop_cluster() {
    local dir=$1 pid i
    for pid in $(daemon_pids "$dir"); do
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $(daemon_pids "$dir"); do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # What DIR held (never DIR itself, which the caller made).
    [ -d "$dir" ] && find "$dir" -mindepth 1 -delete 2>/dev/null || true
}

free_port() {
    local p
    for ((i = 0; i < 50; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! ss -Htln "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_for SECONDS CMD...: runs CMD until it succeeds, at most SECONDS.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

start_failed() {
    local dir=$1 f
    echo "ceph-cluster: $2" >&2
    for f in "$dir"/log/*.log; do
        [ -f "$f" ] || continue
        echo "---- last lines of $f ----" >&2
        tail -n 20 "$f" >&2
    done
    stop_cluster "$dir"
    exit 1
}

start_cluster() {
    local dir port fsid conf osd_uuid
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    port=${2:-$(free_port)} || { echo "ceph-cluster: no free port" >&2; exit 1; }
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    conf=$dir/ceph.conf
    mkdir -p "$dir"/{mon,osd,run,log}
    : >"$dir/pids"
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
osd objectstore = memstore
memstore device bytes = 4294967296
# a loopback cluster of one host: no need to wait for peers
osd heartbeat grace = 60
mon osd report timeout = 900
# A client killed while it holds an image's exclusive lock keeps it until
# its watch times out (30 s by default): a restarted secondary waits that
# long for the lock.  Tests kill secondaries often.
osd client watch timeout = 10
[client]
log file = $dir/log/client.log
EOF
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null ||
        start_failed "$dir" "monmaptool failed"
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null 2>&1 ||
        start_failed "$dir" "ceph-mon --mkfs failed"
    ceph-mon -c "$conf" -i a >/dev/null 2>&1 || start_failed "$dir" "ceph-mon did not start"
    wait_for 10 test -s "$dir/run/mon.a.pid" || start_failed "$dir" "ceph-mon wrote no pid file"
    cat "$dir/run/mon.a.pid" >>"$dir/pids"
    wait_for 30 ceph -c "$conf" --connect-timeout 5 mon stat || start_failed "$dir" "the monitor does not answer"
    local id
    id=$(ceph -c "$conf" osd new "$osd_uuid") || start_failed "$dir" "ceph osd new failed"
    mkdir -p "$dir/osd/osd.$id"
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 ||
        start_failed "$dir" "ceph-osd --mkfs failed"
    ceph-osd -c "$conf" -i "$id" >/dev/null 2>&1 || start_failed "$dir" "ceph-osd did not start"
    wait_for 10 test -s "$dir/run/osd.$id.pid" || start_failed "$dir" "ceph-osd wrote no pid file"
    cat "$dir/run/osd.$id.pid" >>"$dir/pids"
    echo "$id" >"$dir/osd-id"
    _osd_up() { ceph -c "$conf" osd dump | grep -q "^osd.$id up"; }
    wait_for 30 _osd_up || start_failed "$dir" "the OSD did not come up"
    ceph -c "$conf" osd pool create rbd 8 8 >/dev/null 2>&1 || start_failed "$dir" "cannot create pool rbd"
    rbd -c "$conf" pool init rbd >/dev/null 2>&1 || start_failed "$dir" "rbd pool init failed"
    _usable() { rbd -c "$conf" create --size 4M rbd/probe && rbd -c "$conf" rm --no-progress rbd/probe; }
    wait_for 60 _usable || start_failed "$dir" "the pool is not usable"
    echo "$conf"
}

case ${1:-} in
start) [ $# -ge 2 ] || usage; start_cluster "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || usage; stop_cluster "$2" ;;
osd-pid)
    [ $# -eq 2 ] || usage
    cat "$2/run/osd.$(cat "$2/osd-id").pid"
    ;;
*) usage ;;
esac
