#!/usr/bin/env bash
# Installs what is missing, builds blkship and runs the whole job on an
# embedded default: a 512 MiB disk image served by nbdkit through the
# writelog filter, blkship-primary and blkship-secondary on loopback with a
# throwaway CA, the initial sync, a write workload through NBD while
# replicating, live progress, and at the end a check that the replica
# equals the primary.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

bash scripts/install-deps.sh >/dev/null
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

B=$top/build
work=$(mktemp -d "${TMPDIR:-/tmp}/blkship-demo.XXXXXX")
name=demo$$
port=$((20000 + $$ % 20000))
pids=()
loopdev=
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
    rm -rf "$work"
    rm -f "/dev/shm/log_$name.wlog"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# One progress line: rewritten in place on a terminal, a line a second in a log.
last_progress=-1
progress() {
    if [ -t 1 ]; then
        printf '\r%-78s' "$1"
    elif [ $SECONDS -ne $last_progress ]; then
        last_progress=$SECONDS
        printf '%s\n' "$1"
    fi
}
status_json() { "$B/cli/blkship" status --control "$1" --json 2>/dev/null || true; }
field() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" <<<"$1"; }
# Shows progress until the primary reports no dirty data (bounded).
wait_in_sync() {
    local deadline=$((SECONDS + ${1:-120})) j
    while [ $SECONDS -lt $deadline ]; do
        j=$(status_json "$work/primary.ctl")
        if [ "$(field "$j" connected)" = true ] && [ "$(field "$j" dirty_bytes)" = 0 ]; then
            # Committed (durable in the secondary's journal); the replica
            # itself has it once the secondary applied that epoch.
            local c k
            c=$(field "$j" committed_epoch)
            k=$(status_json "$work/secondary.ctl")
            if [ "$(field "$k" replica_consistent)" = true ] && [ "$(field "$k" applied_epoch)" -ge "$c" ]; then
                progress "in sync: $(field "$j" acked_bytes) bytes committed; the replica is consistent at epoch $(field "$k" applied_epoch)"; echo
                return 0
            fi
        fi
        progress "$("$B/cli/blkship" status --control "$work/primary.ctl" | grep -E 'in sync|rate' | tr -s ' ' | paste -sd' ')"
        sleep 0.2
    done
    echo; echo "not in sync after ${1:-120} s"; return 1
}

step "A throwaway CA and certificates for the two hosts"
bash scripts/mkcerts.sh "$work/pki"
ls "$work/pki"

step "Primary disk: a 512 MiB image of random data, served by nbdkit + writelog"
head -c 512M /dev/urandom > "$work/disk.img"
nbdkit -f --filter="$B/primary/writelog/nbdkit-writelog-filter.so" file "$work/disk.img" \
    writelog-name="$name" writelog-dir="$work" -U "$work/nbd.sock" 2>"$work/nbdkit.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/log_$name.ctl" ] && [ -S "$work/nbd.sock" ] && break; sleep 0.1; done
[ -S "$work/log_$name.ctl" ] || { cat "$work/nbdkit.log"; exit 1; }

step "Replica: a 512 MiB block device (loop device; a plain file if we are not root)"
truncate -s 512M "$work/replica.img"
if [ "$(id -u)" = 0 ] && loopdev=$(losetup -f --show "$work/replica.img" 2>/dev/null); then
    replica=$loopdev
else
    loopdev=
    replica=$work/replica.img
fi
echo "replica device: $replica"

step "blkship-secondary listening on 127.0.0.1:$port, blkship-primary connecting"
"$B/secondary/blkship-secondary" --listen "127.0.0.1:$port" --device "$replica" \
    --state-dir "$work/secondary-state" --control "$work/secondary.ctl" \
    --cert "$work/pki/secondary.crt" --key "$work/pki/secondary.key" --ca "$work/pki/ca.crt" \
    --peer-name primary 2>"$work/secondary.log" &
pids+=($!)
"$B/primary/blkship-primary" --writelog "$work/log_$name.ctl" --connect "127.0.0.1:$port" \
    --state-dir "$work/primary-state" --control "$work/primary.ctl" \
    --cert "$work/pki/primary.crt" --key "$work/pki/primary.key" --ca "$work/pki/ca.crt" \
    --peer-name secondary 2>"$work/primary.log" &
pids+=($!)

step "Initial full sync"
start=$SECONDS
wait_in_sync 180
echo "full sync of 512 MiB took about $((SECONDS - start)) s"

step "A write workload through NBD while replicating (fio, 4 KiB random writes, 10 s)"
fio --name=demo --ioengine=nbd --uri="nbd+unix:///?socket=$work/nbd.sock" \
    --rw=randwrite --bs=4k --iodepth=16 --size=512M --time_based --runtime=10 \
    --randrepeat=0 --output="$work/fio.out" &
fio_pid=$!
for _ in $(seq 50); do
    kill -0 $fio_pid 2>/dev/null || break
    progress "$("$B/cli/blkship" status --control "$work/primary.ctl" | grep -E 'dirty|rate' | tr -s ' ' | paste -sd' ')"
    sleep 0.25
done
wait $fio_pid
echo
grep -E '^ +write:' "$work/fio.out" | sed 's/^ */fio /'

step "Drain and compare"
wait_in_sync 120
"$B/cli/blkship" status --control "$work/primary.ctl"
echo
"$B/cli/blkship" status --control "$work/secondary.ctl"
a=$(sha256sum < "$work/disk.img" | cut -d' ' -f1)
b=$(sha256sum < "$replica" | cut -d' ' -f1)
echo "primary  sha256 $a"
echo "replica  sha256 $b"
if [ "$a" = "$b" ]; then
    echo "The replica equals the primary."
else
    echo "MISMATCH"; tail "$work"/*.log; exit 1
fi
