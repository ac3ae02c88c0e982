#!/usr/bin/env bash
# An RBD image as the replica (docs/rbd.md), in a one-node Ceph cluster
# (memstore OSD) that scripts/ceph-cluster.sh starts for this test and
# stops at exit.
#  1. A secondary on a pool or an image that does not exist, with a Ceph
#     configuration that cannot be read, or a malformed rbd: spec, is
#     refused at start with a message that says so; one on an image of
#     another size than the primary's disk refuses the primary.
#  2. The full sync of a 64 MiB disk (its first 8 MiB zeroes, the image's
#     junk there: ZERO frames must clear it) while fio writes through NBD;
#     then `rbd export` equals the disk byte for byte.
#  3. A second secondary on the same image is refused: the first holds the
#     image's exclusive lock.
#  4. The OSD frozen (SIGSTOP) for 4 s while qemu-io writes: operations on
#     the image wait (device_stalled_ms says so), nothing is lost; once
#     thawed the pair converges and `rbd export` equals the disk again.
#  5. The secondary's Ceph client blocklisted: its operations fail, the
#     epoch is not applied, the replica is not reported consistent and the
#     primary is refused while the secondary reopens the image with a
#     back-off; once the blocklist is lifted it reopens it by itself (a new
#     client), applies the journal again and the pair converges.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires qemu-io
requires openssl
requires rbd
requires ceph-osd
requires_fio_nbd
require_build
make_workdir

CLUSTER=$WORKDIR/ceph
cleanup_fn "$_src_dir/scripts/ceph-cluster.sh" stop "$CLUSTER"
conf=$("$_src_dir/scripts/ceph-cluster.sh" start "$CLUSTER") || fail "the Ceph cluster did not start"
note "Ceph up: $conf"
rbdc() { rbd -c "$conf" "$@"; }

size=64M
bytes=$(numfmt --from=iec $size)
img=$WORKDIR/disk.img
random_file "$img" $size "rbd-$$"
dd if=/dev/zero of="$img" bs=1M count=8 conv=notrunc status=none
CERTS=$WORKDIR/pki
make_certs "$CERTS"
# The replica image starts with junk where the disk has zeroes.
random_file "$WORKDIR/junk" 8M "junk-$$"
truncate -s $size "$WORKDIR/junk"
rbdc import --no-progress "$WORKDIR/junk" rbd/rep
rbdc export --no-progress rbd/rep - | cmp -s - "$WORKDIR/junk" || fail "rbd import/export do not round-trip"
rm -f "$WORKDIR/junk"

# ---- 1 ------------------------------------------------------------------------------
refused() { # TAG DEVICE EXPECT [ARGS...]
    local tag=$1 dev=$2 expect=$3 log=$WORKDIR/refused-$1.log
    shift 3
    if "$SECONDARY" --listen "$TEST_HOST:$(random_port)" --device "$dev" --state-dir "$WORKDIR/$tag.state" \
        --control "$WORKDIR/$tag.ctl" --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" \
        --ca "$CERTS/ca.crt" --peer-name primary "$@" 2>"$log" & then :; fi
    local pid=$!
    cleanup_fn stop_pid "$pid"
    _gone() { ! proc_alive "$pid"; }
    poll_until 60 _gone || fail "1: a secondary on $dev was not refused: $(cat "$log")"
    grep -q -- "$expect" "$log" || fail "1: a secondary on $dev: expected '$expect' in: $(cat "$log")"
}
refused nopool rbd:nosuchpool/rep "pool nosuchpool" --ceph-conf "$conf"
refused noimage rbd:rbd/nosuch "cannot open image nosuch" --ceph-conf "$conf"
refused noconf rbd:rbd/rep "cannot read the Ceph configuration" --ceph-conf "$WORKDIR/none.conf"
refused badspec rbd:rep "rbd:POOL/IMAGE" --ceph-conf "$conf"
start_nbdkit "$WORKDIR" "rtrbd$$" "$img"
rbdc create --size 32M rbd/small
start_secondary small rbd:rbd/small --ceph-conf "$conf"
start_primary psmall "$WL_CTL" "$SEC_ADDR"
expect_log "refusing primary .*: disk of another size \(primary disk $bytes bytes, replica 33554432\)" "$SEC_LOG" 20
[ "$(field "$PRI_CTL" acked_bytes)" = 0 ] || fail "1: bytes acknowledged by a replica of the wrong size"
stop_pid "$PRI_PID"
stop_pid "$SEC_PID"
note "1: missing pool, missing image, unreadable configuration, bad spec, wrong size: refused"

# ---- 2 ------------------------------------------------------------------------------
start_secondary sec rbd:rbd/rep --ceph-conf "$conf"
sec_ctl=$SEC_CTL sec_pid=$SEC_PID sec_log=$SEC_LOG sec_port=$SEC_PORT
[ "$(field "$sec_ctl" device_kind)" = rbd ] || fail "2: the secondary's status: $(status "$sec_ctl")"
fio_job=$WORKDIR/w.fio
fio_verify_job "$fio_job" 8 32M 16m
fio --output="$WORKDIR/fio.out" "$fio_job" &
fio_pid=$!
cleanup_fn stop_pid "$fio_pid"
start_primary pri "$WL_CTL" "$SEC_ADDR"
wait "$fio_pid" || fail "2: fio failed: $(tail -n 20 "$WORKDIR/fio.out")"
wait_synced "$PRI_CTL" 120
rbd_same() { # WHAT
    rbdc export --no-progress rbd/rep "$WORKDIR/export.img" >/dev/null || fail "$1: rbd export"
    expect_same "$img" "$WORKDIR/export.img" "$1"
    rm -f "$WORKDIR/export.img"
}
rbd_same "2: the RBD replica after the full sync under fio"
s=$(status "$sec_ctl")
[ "$(jget "$s" bad_frames)" = 0 ] && [ "$(jget "$s" replica_consistent)" = true ] ||
    fail "2: the secondary's status: $s"
note "2: full sync onto RBD under fio: rbd export equals the disk"

# ---- 3 ------------------------------------------------------------------------------
refused second rbd:rbd/rep "exclusive lock is held by another client" --ceph-conf "$conf"
note "3: a second secondary on the same image: refused"

# ---- 4 ------------------------------------------------------------------------------
osd=$("$_src_dir/scripts/ceph-cluster.sh" osd-pid "$CLUSTER")
kill -STOP "$osd"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x61 16M 4M" -c "write -q -P 0x62 40M 1M" >/dev/null ||
    { kill -CONT "$osd"; fail "4: qemu-io"; }
_stalled() { [ "$(field "$sec_ctl" device_stalled_ms)" -gt 500 ]; }
poll_until 10 _stalled || { kill -CONT "$osd"; fail "4: no stalled operation reported: $(status "$sec_ctl")"; }
sleep 2
expect_alive "$sec_pid" "4: the secondary, with the OSD frozen"
kill -CONT "$osd"
wait_synced "$PRI_CTL" 120
[ "$(field "$sec_ctl" device_stalled_ms)" -lt 500 ] || fail "4: still stalled after the thaw: $(status "$sec_ctl")"
rbd_same "4: the RBD replica after the OSD was frozen and thawed"
note "4: OSD frozen under writes: the operations waited; after the thaw the replica equals the disk"

# ---- 5 ------------------------------------------------------------------------------
# The secondary's Ceph client blocklisted (how an operator fences a client)
# and the image moved away: its operations fail.  The failed epoch is not
# reported applied, the replica not consistent, the primary is refused and
# the reopening fails with a back-off while the image is away; once it is
# back the secondary reopens it by itself, applies the journal again and
# the pair converges.
applied0=$(field "$sec_ctl" applied_epoch)
watcher=$(rbdc status rbd/rep | sed -n 's/.*watcher=\([^ ]*\) .*/\1/p' | head -n 1)
[ -n "$watcher" ] || fail "5: no watcher of rbd/rep: $(rbdc status rbd/rep)"
ceph -c "$conf" osd blocklist add "$watcher" >/dev/null 2>&1 || fail "5: cannot blocklist $watcher"
# A new client is not blocklisted: the image is also moved away meanwhile,
# so that the reopening fails until it is back.
rbdc rename rbd/rep rbd/rep.away >/dev/null 2>&1 || fail "5: cannot rename rbd/rep"
qemu-io -f raw "$NBD_URI" -c "write -q -P 0x63 20M 1M" >/dev/null || fail "5: qemu-io"
expect_log "RBD operation on bytes .* failed|flushing rbd:rbd/rep" "$sec_log" 30
_failed() { [[ $(field "$sec_ctl" consistency_note) == *"failed"* ]]; }
poll_until 30 _failed || fail "5: the failed apply is not reported: $(status "$sec_ctl")"
s=$(status "$sec_ctl")
[ "$(jget "$s" replica_consistent)" = false ] || fail "5: reported consistent after a failed write: $s"
applied1=$(jget "$s" applied_epoch)
sleep 2
[ "$(field "$sec_ctl" applied_epoch)" = "$applied1" ] || fail "5: epochs applied after the failure: $(status "$sec_ctl")"
note "5: blocklisted at epoch $applied0: apply failed at $applied1, reported, nothing applied after"
[ "$(field "$sec_ctl" device_failed)" = true ] || fail "5: device_failed: $(status "$sec_ctl")"
expect_log "refused the session: .*reopening it" "$PRI_LOG" 30
expect_log "reopening rbd:rbd/rep failed" "$sec_log" 30
rbdc rename rbd/rep.away rbd/rep >/dev/null 2>&1 || fail "5: cannot rename rbd/rep.away back"
ceph -c "$conf" osd blocklist rm "$watcher" >/dev/null 2>&1 || fail "5: cannot lift the blocklist of $watcher"
expect_log "rbd:rbd/rep reopened" "$sec_log" 90
wait_synced "$PRI_CTL" 120
rbd_same "5: the RBD replica after the blocklist was lifted"
s=$(status "$sec_ctl")
[ "$(jget "$s" replica_consistent)" = true ] && [ "$(jget "$s" device_failed)" = false ] &&
    [ "$(jget "$s" device_reopens)" -ge 1 ] || fail "5: after the reopening: $s"
[ "$(jget "$s" applied_epoch)" -gt "$applied1" ] || fail "5: nothing applied after the reopening: $s"
note "5: back: the secondary reopened the image by itself ($(jget "$s" device_reopens) reopening), the replica equals the disk"
