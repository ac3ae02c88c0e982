# Helpers for the power-loss tests (bash), sourced after
# tests/replication/functions.sh: a disk with a volatile write cache
# (nbdkit with nbdkit-volatile-filter.so over the file plugin on a backing
# file), served as a file through nbdfuse, optionally with a loop device
# and ext4 on top; a power cut (kill -9 of that nbdkit: what was not
# flushed is gone); the teardown of the dead layers; and the restart.
#
#   vol_start NAME BACKING        nbdkit + nbdfuse; VOL_FILE is the file
#   vol_mount_ext4 NAME DIR [mkfs] loop device on VOL_FILE, ext4 on DIR
#   vol_cut NAME                  power cut: kill -9 of the nbdkit
#   vol_teardown NAME             unmount, detach, stop what is left
#
# VOL_SLOW=MS puts nbdkit's delay filter in front of the volatile cache:
# every write, zero and trim waits MS milliseconds before it reaches the
# cache (flushes are not delayed), so that a replica write is still
# running when a flush issued too early completes.
#
# VOL_DEBUG=1 runs the stores' nbdkit with -v: every request and every
# flush ("volatile: flush N: B bytes made durable") in its log.
#
# One cleanup, registered at the first vol_start, tears down every store
# still up, whatever state it is in.  Each layer is recorded in the arrays
# below only while it exists, so that a loop device detached here is never
# detached again after another test has taken its number.

# _src_dir comes from functions.sh; the small functions defined inside others
# are called through poll_until.
# shellcheck shell=bash disable=SC2034,SC2154,SC2317

: "${VOLATILE_FILTER:=${BLKSHIP_BUILD_DIR:-}/tests/powerloss/nbdkit-volatile-filter.so}"
CHECK_ACKED=$_src_dir/tests/powerloss/check-acked.py

declare -A _vol_nbdkit=() _vol_fuse=() _vol_mnt=() _vol_loop=() _vol_fs=()
_vol_registered=""

# requires_volatile: what the power-loss tests need.  scripts/install-deps.sh
# installs every tool, so a missing one fails; only a kernel without FUSE
# (no /dev/fuse, as in some containers) is a prerequisite that cannot be met.
requires_volatile() {
    local t
    requires_root
    [ -c /dev/fuse ] || skip "no /dev/fuse: this kernel or container has no FUSE"
    for t in nbdkit nbdfuse fusermount3 python3 losetup mkfs.ext4 findmnt; do
        command -v "$t" >/dev/null 2>&1 ||
            fail "$t is not installed (scripts/install-deps.sh installs it)"
    done
    [ -f "$VOLATILE_FILTER" ] ||
        fail "VOLATILE_FILTER=$VOLATILE_FILTER does not exist: build the project first"
}

# vol_start NAME BACKING: nbdkit with the volatile filter over BACKING on
# $WORKDIR/NAME.sock, and nbdfuse serving it as $WORKDIR/NAME.mnt/nbd
# (VOL_FILE).  Waits (bounded) until the file is there.
vol_start() {
    local name=$1 backing=$2 sock=$WORKDIR/$1.sock mnt=$WORKDIR/$1.mnt log pid
    if [ -z "$_vol_registered" ]; then
        cleanup_fn _vol_cleanup_all
        _vol_registered=1
    fi
    _vol_count=$((${_vol_count:-0} + 1))
    log=$WORKDIR/nbdkit-$name.$_vol_count.log
    _logs+=("$log")
    rm -f "$sock"
    local slow=()
    if [ -n "${VOL_SLOW:-}" ]; then
        slow=(--filter=delay "delay-write=${VOL_SLOW}ms" "delay-zero=${VOL_SLOW}ms" "delay-trim=${VOL_SLOW}ms")
    fi
    # The delay filter's parameters follow the plugin's; nbdkit hands each
    # key to the layer that knows it.
    nbdkit -f ${VOL_DEBUG:+-v} "${slow[@]:0:1}" --filter="$VOLATILE_FILTER" file "$backing" \
        "${slow[@]:1}" -U "$sock" >"$log" 2>&1 &
    pid=$!
    _vol_nbdkit[$name]=$pid
    _vol_sock_ready() {
        proc_alive "$pid" || fail "the volatile nbdkit ($name) exited at start: $(tail -n 5 "$log")"
        [ -S "$sock" ]
    }
    poll_until 15 _vol_sock_ready || fail "the volatile nbdkit ($name) made no socket in 15 s"

    mkdir -p "$mnt"
    log=$WORKDIR/nbdfuse-$name.$_vol_count.log
    _logs+=("$log")
    rm -f "$WORKDIR/$name.fuse.pid"
    # nbdfuse aborts when its server dies under it, as a power cut does:
    # no core files.
    (ulimit -c 0; exec nbdfuse -P "$WORKDIR/$name.fuse.pid" "$mnt" --unix "$sock") >"$log" 2>&1 &
    pid=$!
    _vol_fuse[$name]=$pid
    _vol_mnt[$name]=$mnt
    _vol_fuse_ready() {
        proc_alive "$pid" || fail "nbdfuse ($name) exited at start: $(tail -n 5 "$log")"
        [ -s "$WORKDIR/$name.fuse.pid" ] && [ -f "$mnt/nbd" ]
    }
    poll_until 15 _vol_fuse_ready || fail "nbdfuse ($name) did not serve $mnt/nbd within 15 s"
    VOL_FILE=$mnt/nbd
}

# vol_mount_ext4 NAME DIR [mkfs]: a loop device on the store's file and
# its ext4 mounted on DIR (made first when the third argument is mkfs).
vol_mount_ext4() {
    local name=$1 dir=$2 loop
    loop=$(losetup -f --show "${_vol_mnt[$name]}/nbd") || fail "losetup on ${_vol_mnt[$name]}/nbd failed"
    _vol_loop[$name]=$loop
    if [ "${3:-}" = mkfs ]; then
        mkfs.ext4 -q -F "$loop" || fail "mkfs.ext4 on $loop failed"
    fi
    mkdir -p "$dir"
    mount -t ext4 "$loop" "$dir" ||
        fail "mounting ext4 from $loop (the store $name) on $dir failed: $(dmesg 2>/dev/null | tail -n 5)"
    _vol_fs[$name]=$dir
}

# vol_cut NAME: the power cut.  Everything the store's clients wrote and
# did not flush is lost; its backing file keeps only what was flushed.
vol_cut() {
    local pid=${_vol_nbdkit[$1]:-}
    [ -n "$pid" ] || fail "vol_cut $1: the store is not running"
    kill -KILL "$pid" || fail "kill -9 of the volatile nbdkit ($1) failed"
    poll_until 10 proc_gone "$pid" || fail "the volatile nbdkit ($1) survived SIGKILL"
    wait "$pid" 2>/dev/null || true
}

# _vol_umount DIR: unmounts, lazily if it stays busy for 2 s.  findmnt,
# because a dead FUSE mount answers ENOTCONN to anything that looks at it.
_vol_umount() {
    local dir=$1 i
    for ((i = 0; i < 20; i++)); do
        findmnt -rn --mountpoint "$dir" >/dev/null 2>&1 || return 0
        umount "$dir" 2>/dev/null && return 0
        sleep 0.1
    done
    umount -l "$dir" 2>/dev/null || true
}

# vol_teardown NAME: ext4, loop device, FUSE mount, nbdfuse and (if it is
# still running) nbdkit, in that order.  Idempotent.
vol_teardown() {
    local name=$1 pid
    if [ -n "${_vol_fs[$name]:-}" ]; then
        _vol_umount "${_vol_fs[$name]}"
        unset "_vol_fs[$name]"
    fi
    if [ -n "${_vol_loop[$name]:-}" ]; then
        losetup -d "${_vol_loop[$name]}" 2>/dev/null || true
        unset "_vol_loop[$name]"
    fi
    if [ -n "${_vol_mnt[$name]:-}" ]; then
        fusermount3 -u "${_vol_mnt[$name]}" 2>/dev/null || _vol_umount "${_vol_mnt[$name]}"
        unset "_vol_mnt[$name]"
    fi
    pid=${_vol_fuse[$name]:-}
    if [ -n "$pid" ]; then
        poll_until 10 proc_gone "$pid" || kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
        unset "_vol_fuse[$name]"
    fi
    pid=${_vol_nbdkit[$name]:-}
    if [ -n "$pid" ]; then
        stop_pid "$pid" 10 || true
        unset "_vol_nbdkit[$name]"
    fi
    return 0
}

_vol_cleanup_all() {
    local n
    for n in "${!_vol_nbdkit[@]}" "${!_vol_mnt[@]}"; do
        vol_teardown "$n"
    done
}
