#!/usr/bin/env bash
# BLKSHIP_RESOURCES (100 unless set; the sanitizer build runs 25, whose
# processes are several times larger) resources on one secondary host
# behind one blkship-listener port (docs/resources.md), each with its own
# nbdkit and blkship-primary (with --epoch-idle-ms 10s: an idle disk costs
# its secondary no fsyncs), its own replica, state directory and journal:
#  1. All of them pair and finish their full sync through the one port;
#     each replica equals its own disk.
#  2. One secondary frozen (SIGSTOP) and another killed: every other
#     resource takes a short write burst (qemu-io) and converges while
#     they stay broken, in a time that does not wait for them.
#  3. The frozen one thawed and the killed one restarted: both converge.
# Prints the secondaries' memory (proportional set size, idle and in sync)
# per resource.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
require_build
make_workdir
[ -x "$LISTENER" ] || fail "LISTENER=$LISTENER is not built"

n=${BLKSHIP_RESOURCES:-100}
# NBDKIT_PRELOAD: set by CTest in a sanitizer build only.
if [ -n "${NBDKIT_PRELOAD:-}" ] && [ -z "${BLKSHIP_RESOURCES:-}" ]; then
    n=25
fi
[ "$n" -ge 3 ] && [ "$n" -le 500 ] || fail "BLKSHIP_RESOURCES=$n: 3 to 500"
size=4M
CERTS=$WORKDIR/pki
make_certs "$CERTS"
start_listener lsn
note "$n resources behind $LISTENER_ADDR"

declare -a SCTL SPID PCTL WLC URI
t0=$SECONDS
for ((i = 1; i <= n; i++)); do
    random_file "$WORKDIR/d$i.img" $size "mr-$i-$$"
    truncate -s $size "$WORKDIR/d$i.rep"
    start_nbdkit "$WORKDIR" "mr$i-$$" "$WORKDIR/d$i.img"
    WLC[i]=$WL_CTL URI[i]=$NBD_URI
    start_secondary --listener "$LISTENER_SOCK" "s$i" "$WORKDIR/d$i.rep" --resource "res$i" \
        --journal-max 4M
    SCTL[i]=$SEC_CTL SPID[i]=$SEC_PID
done
for ((i = 1; i <= n; i++)); do
    start_primary "p$i" "${WLC[i]}" "$LISTENER_ADDR" --resource "res$i" --epoch-idle-ms 10s
    PCTL[i]=$PRI_CTL
done
note "1: $n pairs started in $((SECONDS - t0)) s"

# in_sync I: resource I's primary in sync with the newest epoch applied
# on its secondary, and the replica equal to the disk.
in_sync() {
    local s a c
    s=$(status "${PCTL[$1]}") || return 1
    [ "$(jget "$s" connected)" = true ] && [ "$(jget "$s" dirty_bytes)" = 0 ] &&
        [ "$(jget "$s" inflight_bytes)" = 0 ] || return 1
    c=$(jget "$s" committed_epoch)
    [ "${c:-0}" -ge 1 ] || return 1
    a=$(field "${SCTL[$1]}" applied_epoch) || return 1
    [ "$a" -ge "$c" ] || return 1
    cmp -s "$WORKDIR/d$1.img" "$WORKDIR/d$1.rep"
}
# all_in_sync LIMIT SKIP...: every resource but SKIP in sync within LIMIT s.
all_in_sync() {
    local limit=$1 end i skip
    shift
    end=$((SECONDS + limit))
    for ((i = 1; i <= n; i++)); do
        skip=0
        for s in "$@"; do [ "$s" = "$i" ] && skip=1; done
        [ "$skip" = 1 ] && continue
        until in_sync "$i"; do
            [ "$SECONDS" -lt "$end" ] || fail "resource res$i not in sync within $limit s: $(status "${PCTL[$i]}")"
            sleep 0.2
        done
    done
}
t0=$SECONDS
all_in_sync 240
note "1: all $n full syncs done and checked $((SECONDS - t0)) s after the last primary started"

# Memory of the idle secondaries (Pss: shared pages split among sharers).
pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
total=0
for ((i = 1; i <= n; i++)); do total=$((total + $(pss_kib "${SPID[i]}"))); done
note "memory: idle secondaries in sync, Pss $((total / n)) KiB per resource ($((total / 1024)) MiB for $n)"

# ---- 2 ------------------------------------------------------------------------------
frozen=$(( (n + 1) / 2 )) killed=$n
kill -STOP "${SPID[frozen]}"
kill9 "${SPID[killed]}"
t0=$SECONDS
for ((i = 1; i <= n; i++)); do
    qemu-io -f raw "${URI[i]}" -c "write -q -P $((i % 250 + 1)) 1M 512K" >/dev/null || fail "2: qemu-io res$i"
done
note "2: a 512 KiB burst written to each of the $n disks in $((SECONDS - t0)) s"
all_in_sync 120 "$frozen" "$killed"
note "2: res$frozen frozen and res$killed killed: the other $((n - 2)) converged $((SECONDS - t0)) s after the first burst"
[ "$(awk '{ print $3 }' "/proc/${SPID[frozen]}/stat")" = T ] || fail "2: res$frozen is not frozen"

# ---- 3 ------------------------------------------------------------------------------
kill -CONT "${SPID[frozen]}"
start_secondary --listener "$LISTENER_SOCK" "s$killed" "$WORKDIR/d$killed.rep" --resource "res$killed" \
    --journal-max 4M
SCTL[killed]=$SEC_CTL SPID[killed]=$SEC_PID
t0=$SECONDS
for i in "$frozen" "$killed"; do
    end=$((SECONDS + 60))
    until in_sync "$i"; do
        [ "$SECONDS" -lt "$end" ] || fail "3: res$i did not converge: $(status "${PCTL[$i]}")"
        sleep 0.2
    done
done
note "3: res$frozen thawed and res$killed restarted: both converged in $((SECONDS - t0)) s"
