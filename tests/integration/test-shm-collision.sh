#!/usr/bin/env bash
# Two nbdkit instances with the same writelog-name but different
# writelog-dir: their control sockets differ, but the POSIX shm name
# (/log_NAME.wlog) is one system-wide namespace.  Either the second must
# refuse to start, or both logs must stay separate; in no case may the
# second take over the first's shm (clients of the first would then read
# the second's export area and ring), or remove it when it stops.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires qemu-io
require_build
make_workdir

name=$(unique_name coll)
mkdir "$WORKDIR/a" "$WORKDIR/b"
truncate -s 32M "$WORKDIR/a/disk.img" "$WORKDIR/b/disk.img"

start_nbdkit "$WORKDIR/a" "$name" "$WORKDIR/a/disk.img"
ctl_a=$CTL
qio "write -P 0x61 0 4096" "write -P 0x62 1048576 4096"
expected_a="0 8
2048 8
"
CTL=$ctl_a wlog peek >"$WORKDIR/peek-a0"
expect_extents "log A before B starts" "$WORKDIR/peek-a0" "$expected_a"
ino_a=$(stat -c %i "/dev/shm/log_$name.wlog")

# Start B with the same name in another directory.
_nbdkit_count=$((_nbdkit_count + 1))
log_b=$WORKDIR/b/nbdkit.log
_logs+=("$log_b")
nbdkit -f --filter="$FILTER" file "$WORKDIR/b/disk.img" writelog-name="$name" \
    writelog-dir="$WORKDIR/b" -U "$WORKDIR/b/nbd.sock" >"$log_b" 2>&1 &
pid_b=$!
cleanup_fn _kill_nbdkit "$pid_b"
b_settled() { proc_gone "$pid_b" || { [ -S "$WORKDIR/b/log_$name.ctl" ] && [ -S "$WORKDIR/b/nbd.sock" ]; }; }
poll_until 15 b_settled || fail "B neither started nor failed in 15 s"

problems=()
if proc_gone "$pid_b"; then
    note "B refused to start: $(grep -m1 error "$log_b" || true)"
    grep -q "$name" "$log_b" || problems+=("B's error does not name the log")
else
    note "B started; checking that the two logs stay apart"
    grep -q 'removing stale shared memory' "$log_b" &&
        problems+=("B logged 'removing stale shared memory /log_$name.wlog' although A is alive and uses it")
    [ "$(stat -c %i "/dev/shm/log_$name.wlog" 2>/dev/null)" = "$ino_a" ] ||
        problems+=("the shm object named /log_$name.wlog is no longer A's (B replaced it)")
fi

# A's clients must still see A's log and A's disk.
"$BLKSHIP" wlog peek "$ctl_a" >"$WORKDIR/peek-a1" 2>&1 || problems+=("peek on A failed: $(cat "$WORKDIR/peek-a1")")
if ! diff <(printf '%s' "$expected_a") "$WORKDIR/peek-a1" >/dev/null; then
    problems+=("peek on A's socket lists [$(tr '\n' ' ' <"$WORKDIR/peek-a1")] instead of A's extents [$(tr '\n' ' ' <<<"$expected_a")]")
fi
if "$BLKSHIP" wlog read "$ctl_a" 0 8 --output "$WORKDIR/ring-a" 2>"$WORKDIR/ring-a.err"; then
    cmp -s "$WORKDIR/ring-a" <(pattern_file 0x61 4096) ||
        problems+=("a ring read through A's socket did not return A's data")
else
    problems+=("a ring read through A's socket failed: $(cat "$WORKDIR/ring-a.err")")
fi

# When B stops, A's shm must survive.
if proc_alive "$pid_b"; then
    stop_nbdkit "$pid_b" TERM
    [ -e "/dev/shm/log_$name.wlog" ] ||
        problems+=("stopping B removed /dev/shm/log_$name.wlog, which A still serves")
    if ! "$RAWCLIENT" shmp "$ctl_a" >/dev/null 2>"$WORKDIR/shmp-a.err"; then
        problems+=("after B stopped, A's clients cannot map A's shm: $(tail -n 1 "$WORKDIR/shmp-a.err")")
    fi
fi

if [ ${#problems[@]} -gt 0 ]; then
    fail "same writelog-name in two directories:"$'\n'"$(printf '  - %s\n' "${problems[@]}")"
fi
