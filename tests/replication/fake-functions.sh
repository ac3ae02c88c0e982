# Helpers for the tests of blkship-primary against fake-secondary (bash),
# sourced after functions.sh.  A test calls fake_setup, which leaves a
# primary paired with a real secondary, that secondary stopped and 4 MiB
# written and dirty; then it runs fake-secondary on the secondary's address
# (start_fake, fake_wait), checks the primary (expect_kept), and ends with
# converge: the real secondary back, the replica equal to the image.

# shellcheck disable=SC2034,SC2317

if [ -n "${BLKSHIP_BUILD_DIR:-}" ]; then
    : "${FAKE_SECONDARY:=$BLKSHIP_BUILD_DIR/tests/replication/fake-secondary}"
fi
[ -n "${FAKE_SECONDARY:-}" ] || fail "FAKE_SECONDARY is not set (set BLKSHIP_BUILD_DIR or FAKE_SECONDARY)"
[ -f "$FAKE_SECONDARY" ] || fail "FAKE_SECONDARY=$FAKE_SECONDARY does not exist: build the project first"

# fake_setup: a 16 MiB image behind nbdkit, the initial sync to a real
# secondary, its replica identity read from its state file (the fake
# answers with it, so the real secondary is still the paired replica
# afterwards), the secondary stopped, then 4 MiB written at 8 MiB through
# NBD and drained into the primary's bitmap.  Sets img, rep, port, addr,
# replica_id, pri_ctl, pri_log, pri_pid, and dirty0/acked0/sent0 (the
# primary's counters once the 4 MiB are dirty).
fake_setup() {
    local s
    requires_root
    requires nbdkit
    requires openssl
    requires_fio_nbd
    require_build
    make_workdir
    img=$WORKDIR/disk.img
    rep=$WORKDIR/replica.img
    random_file "$img" 16M "fs-$$"
    truncate -s 16M "$rep"
    CERTS=$WORKDIR/pki
    make_certs "$CERTS"
    start_nbdkit "$WORKDIR" "rtfs$$" "$img"
    start_secondary sec "$rep"
    port=$SEC_PORT addr=$SEC_ADDR
    start_primary pri "$WL_CTL" "$addr"
    pri_ctl=$PRI_CTL pri_log=$PRI_LOG pri_pid=$PRI_PID
    wait_synced "$pri_ctl" 60
    expect_same "$img" "$rep" "replica after the initial sync"
    replica_id=$(sed -n 's/^replica_id //p' "$WORKDIR/sec.state/secondary.state")
    [ ${#replica_id} = 32 ] || fail "no replica_id in $WORKDIR/sec.state/secondary.state"
    stop_pid "$SEC_PID"
    fake_write 8m 4m
    _dirty_4m() { [ "$(field "$pri_ctl" dirty_bytes)" = $((4 << 20)) ]; }
    poll_until 20 _dirty_4m || fail "the 4 MiB written did not become dirty: $(status "$pri_ctl")"
    s=$(status "$pri_ctl")
    dirty0=$(jget "$s" dirty_bytes) acked0=$(jget "$s" acked_bytes) sent0=$(jget "$s" sent_bytes)
}

# fake_write OFFSET SIZE: sequential 1 MiB writes through NBD.
_fake_writes=0
fake_write() {
    _fake_writes=$((_fake_writes + 1))
    fio --thread --name=w --ioengine=nbd --uri="$NBD_URI" --rw=write --bs=1m --offset="$1" \
        --size="$2" --randseed=$((_fake_writes + $$)) --output="$WORKDIR/fio.$_fake_writes.out" ||
        fail "fio failed: $(tail -n 20 "$WORKDIR/fio.$_fake_writes.out")"
}

# start_fake [OPTIONS...] -- STEP...: fake-secondary on $addr with the
# secondary's certificate, answering with $replica_id; waits (bounded) until
# it listens.  Sets FAKE_PID and FAKE_OUT (its stdout, one fact a line).
_fake_runs=0
start_fake() {
    local opts=() pid
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    _fake_runs=$((_fake_runs + 1))
    FAKE_OUT=$WORKDIR/fake.$_fake_runs.out
    _logs+=("$FAKE_OUT" "$WORKDIR/fake.$_fake_runs.err")
    "$FAKE_SECONDARY" --listen "$addr" --cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" \
        --ca "$CERTS/ca.crt" --peer-name primary --replica-id "$replica_id" "${opts[@]}" "$@" \
        >"$FAKE_OUT" 2>"$WORKDIR/fake.$_fake_runs.err" &
    pid=$!
    FAKE_PID=$pid
    cleanup_fn stop_pid "$pid"
    _fake_listening() {
        proc_alive "$pid" || fail "fake-secondary exited at start: $(cat "$WORKDIR/fake.$_fake_runs.err")"
        grep -q '^listening: ' "$FAKE_OUT"
    }
    poll_until 10 _fake_listening || fail "fake-secondary did not listen on $addr within 10 s"
}

# fake_wait PATTERN SECONDS: polls the fake's output for an extended regexp.
fake_wait() {
    _fake_has() { grep -Eq -- "$1" "$FAKE_OUT"; }
    poll_until "$2" _fake_has "$1" ||
        fail "fake-secondary did not report '$1' within $2 s; it says:"$'\n'"$(cat "$FAKE_OUT")"
}

# fake_done SECONDS: the fake ran every step and exited 0.
fake_done() {
    fake_wait '^done$' "$1"
    poll_until 10 proc_gone "$FAKE_PID" || fail "fake-secondary did not exit after its steps"
    wait "$FAKE_PID" || fail "fake-secondary failed: $(cat "$WORKDIR/fake.$_fake_runs.err")"
}

# fake_line PATTERN: the first line of the fake's output matching it.
fake_line() {
    grep -E -m 1 -- "$1" "$FAKE_OUT" || fail "fake-secondary did not report '$1'; it says:"$'\n'"$(cat "$FAKE_OUT")"
}

# expect_kept WHAT: the primary is alive, nothing of the 4 MiB was
# acknowledged and every bit of it is still dirty.
expect_kept() {
    local s
    expect_alive "$pri_pid" blkship-primary
    s=$(status "$pri_ctl") || fail "$1: no status from the primary"
    [ "$(jget "$s" dirty_bytes)" = "$dirty0" ] ||
        fail "$1: the primary's dirty bytes changed from $dirty0: $s"
    [ "$(jget "$s" acked_bytes)" = "$acked0" ] ||
        fail "$1: the primary counted bytes as acknowledged ($acked0 before): $s"
}

# expect_primary_log LINES REGEX WHAT: the primary logged REGEX after LINES.
expect_primary_log() {
    _pri_logged() { log_since "$pri_log" "$1" | grep -Eq -- "$2"; }
    poll_until 10 _pri_logged "$1" "$2" ||
        fail "$3: the primary logged nothing matching '$2'; it says:"$'\n'"$(log_since "$pri_log" "$1")"
    log_since "$pri_log" "$1" | grep -E -m 1 -- "$2" | sed 's/^/    primary: /'
}

# converge: the real secondary back on the same address; the replica
# converges to the image.  Sets sent_final (what the primary sent it).
converge() {
    local s0
    s0=$(field "$pri_ctl" sent_bytes)
    start_secondary --port "$port" sec "$rep"
    wait_synced "$pri_ctl" 60
    expect_same "$img" "$rep" "replica after the real secondary came back"
    sent_final=$(($(field "$pri_ctl" sent_bytes) - s0))
    expect_alive "$pri_pid" blkship-primary
}

# fake_session STEP REGEX: one session of the fake doing STEP.  The primary
# must log REGEX, drop the link itself (the fake's patience, --wait 5, is
# not what ends the session), stay alive and clear nothing.
fake_session() {
    local step=$1 re=$2 lines
    note "$step"
    lines=$(log_lines "$pri_log")
    start_fake --wait 5 -- "$step"
    fake_done 30
    grep -q '^end: step 1 closed by the primary' "$FAKE_OUT" ||
        fail "$step: the primary did not drop the link: $(grep '^end:' "$FAKE_OUT")"
    grep -q '^epoch: [0-9]* after '"$dirty0"' bytes' "$FAKE_OUT" ||
        fail "$step: the session was not sent the $dirty0 dirty bytes:"$'\n'"$(cat "$FAKE_OUT")"
    expect_primary_log "$lines" "$re" "$step"
    expect_primary_log "$lines" 'replication link to .* down' "$step"
    expect_kept "$step"
}
