#!/usr/bin/env bash
# A replica block device that something else holds is refused at start.
#   mounted:  ext4 made on a loop device and mounted (read-only, so that the
#             device cannot change under the test): blkship-secondary exits
#             with status 1 at start, its log says the device is mounted and
#             where, no state file and no control socket were made, and not
#             a byte of the device changed.
#   claimed:  unmounted, the device is held by a running blkship-secondary
#             (which opens it O_EXCL); a second one on the same device is
#             refused the same way, saying it is in use.
#   control:  once the first one stops, a new one starts on the device:
#             the refusals were about the claim, and the claim ends with
#             the process.
source "$(dirname "$0")/functions.sh"
requires_root
requires losetup
requires openssl
requires mkfs.ext4
require_build
make_workdir

CERTS=$WORKDIR/pki
make_certs "$CERTS"
back=$WORKDIR/replica.img
truncate -s 64M "$back"
make_loop "$back"
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 $LOOP failed"
mnt=$WORKDIR/mnt
mkdir -p "$mnt"
mount -o ro "$LOOP" "$mnt" || fail "cannot mount $LOOP"
_umount_if_mounted() { ! mountpoint -q "$1" || umount -l "$1"; }
cleanup_fn _umount_if_mounted "$mnt"
sum0=$(sha256sum <"$LOOP")

# refused_start TAG PATTERN: blkship-secondary on $LOOP must exit with
# status 1 within 15 s, its log matching PATTERN, having made no state file
# nor control socket, with the device unchanged.
refused_start() {
    local tag=$1 re=$2 log=$WORKDIR/$1.log pid rc
    _logs+=("$log")
    "$SECONDARY" --listen "$TEST_HOST:$(random_port)" --device "$LOOP" \
        --state-dir "$WORKDIR/$tag.state" --control "$WORKDIR/$tag.ctl" \
        --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" \
        --peer-name primary 2>"$log" &
    pid=$!
    cleanup_fn stop_pid "$pid"
    poll_until 15 proc_gone "$pid" || fail "$tag: blkship-secondary started on a device held by another"
    wait "$pid" && rc=0 || rc=$?
    [ "$rc" = 1 ] || fail "$tag: blkship-secondary exited with status $rc, expected 1"
    log_has "$re" "$log" || fail "$tag: the log does not say why ('$re'): $(cat "$log")"
    note "$tag: $(grep -E "$re" "$log")"
    [ ! -e "$WORKDIR/$tag.state/secondary.state" ] || fail "$tag: a state file was written"
    [ ! -e "$WORKDIR/$tag.ctl" ] || fail "$tag: a control socket was made"
    [ "$(sha256sum <"$LOOP")" = "$sum0" ] || fail "$tag: the device changed"
}

note "mounted read-only on $mnt"
refused_start mounted "replica $LOOP is mounted on $mnt: refusing to use it"
mountpoint -q "$mnt" || fail "the file system is no longer mounted"

umount "$mnt"
# Unmounting may update the file system; what follows compares with now.
sum0=$(sha256sum <"$LOOP")
note "held by another blkship-secondary"
start_secondary holder "$LOOP"
holder_pid=$SEC_PID
refused_start claimed "replica $LOOP is in use .*: refusing to use it"
expect_alive "$holder_pid" "the first blkship-secondary"

note "control: free again once the holder stops"
stop_pid "$holder_pid"
start_secondary again "$LOOP"
expect_alive "$SEC_PID" "blkship-secondary on the released device"
[ "$(sha256sum <"$LOOP")" = "$sum0" ] || fail "the device changed though no primary connected"
