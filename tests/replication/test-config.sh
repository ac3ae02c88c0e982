#!/usr/bin/env bash
# One configuration file per resource (docs/config.md).
#   1. `blkship config check` passes a primary's and a secondary's file,
#      each part checked by its own agent, and [writelog].
#   2. Both agents started from their files alone replicate a disk; the
#      file names the resource (the status says "vm7"); a command-line
#      option overrides the file (--mode async over "mode = checkpoint",
#      --log-level debug); --resource NAME finds NAME.conf in
#      BLKSHIP_CONFIG_DIR.
#   3. Every kind of error is refused at start with exit status 2 and
#      FILE:LINE: key: reason (an unknown key, a bad value, a key twice, a
#      [common] key only the other agent takes, an unknown section, a line
#      that is no key = value, a command-line-only key, an over-long line,
#      a required option missing), and `blkship config check` says the
#      same and exits 2.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires openssl
require_build
make_workdir

size=32M
img=$WORKDIR/disk.img
rep=$WORKDIR/replica.img
random_file "$img" $size "cf-$$"
truncate -s $size "$rep"
CERTS=$WORKDIR/pki
make_certs "$CERTS"
export BLKSHIP_PRIMARY=$PRIMARY BLKSHIP_SECONDARY=$SECONDARY
port=$(random_port)
start_nbdkit "$WORKDIR" "rtcf$$" "$img"

mkdir -m 0700 "$WORKDIR/etc"
sec_conf=$WORKDIR/etc/vm7s.conf
pri_conf=$WORKDIR/etc/vm7.conf
cat >"$sec_conf" <<EOF
; the DR host's view of vm7
[common]
cert = $CERTS/secondary.crt
key = $CERTS/secondary.key
ca = $CERTS/ca.crt
peer-name = primary
state-dir = $WORKDIR/sec.state
control = $WORKDIR/sec.ctl
heartbeat-ms = 200ms
peer-timeout-ms = 5s

[secondary]
listen = $TEST_HOST:$port
device = $rep
journal-max = 64M
on-failover = echo "failover; of \$BLKSHIP_RESOURCE" >>$WORKDIR/hook.out
EOF
cat >"$pri_conf" <<EOF
# the primary host's view of vm7
[common]
cert = $CERTS/primary.crt
key = $CERTS/primary.key
ca = $CERTS/ca.crt
state-dir = $WORKDIR/pri.state
control = $WORKDIR/pri.ctl

[primary]
writelog = $WL_CTL
connect = $TEST_HOST:$port
peer-name = secondary
mode = checkpoint
epoch-ms = 50ms

[writelog]
disk = $img
cow-max = 16M
EOF

# ---- 1 ------------------------------------------------------------------------------
out=$("$BLKSHIP" config check --config "$sec_conf" 2>&1) || fail "1: check of $sec_conf: $out"
[[ $out == *"blkship-secondary: configuration OK ($sec_conf)"* ]] || fail "1: $out"
[[ $out != *"blkship-primary"* ]] || fail "1: the primary checked a file with no [primary]: $out"
out=$(BLKSHIP_CONFIG_DIR=$WORKDIR/etc "$BLKSHIP" config check vm7 2>&1) || fail "1: check of vm7: $out"
[[ $out == *"blkship-primary: configuration OK ($pri_conf)"* ]] || fail "1: $out"
[[ $out == *"writelog: configuration OK ($pri_conf)"* ]] || fail "1: $out"
note "1: both files check"

# ---- 2 ------------------------------------------------------------------------------
"$SECONDARY" --config "$sec_conf" 2>"$WORKDIR/sec.log" &
sec_pid=$!
cleanup_fn stop_pid "$sec_pid"
_up() { status "$WORKDIR/sec.ctl" >/dev/null; }
poll_until 15 _up || fail "2: the secondary from its file did not start: $(tail -5 "$WORKDIR/sec.log")"
[ "$(field "$WORKDIR/sec.ctl" resource)" = vm7s ] ||
    fail "2: the secondary's resource is not its file's name: $(status "$WORKDIR/sec.ctl")"
BLKSHIP_CONFIG_DIR=$WORKDIR/etc "$PRIMARY" --resource vm7 --mode async --log-level debug \
    2>"$WORKDIR/pri.log" &
pri_pid=$!
cleanup_fn stop_pid "$pri_pid"
_pup() { status "$WORKDIR/pri.ctl" >/dev/null; }
poll_until 15 _pup || fail "2: the primary from vm7.conf did not start: $(tail -5 "$WORKDIR/pri.log")"
s=$(status "$WORKDIR/pri.ctl")
[ "$(jget "$s" mode)" = async ] || fail "2: --mode async did not override the file: $s"
[ "$(jget "$s" resource)" = vm7 ] || fail "2: the primary's resource: $s"
[ "$(jget "$s" heartbeat_ms)" = 1000 ] || fail "2: the secondary's heartbeat reached the primary? $s"
wait_synced "$WORKDIR/pri.ctl" 60
expect_same "$img" "$rep" "2: the replica"
log_has '^debug: ' "$WORKDIR/pri.log" || fail "2: --log-level debug did not override the default"
[ "$(field "$WORKDIR/sec.ctl" heartbeat_ms)" = 200 ] || fail "2: heartbeat-ms from the file: $(status "$WORKDIR/sec.ctl")"
note "2: replicated from the files alone"
stop_pid "$pri_pid"
stop_pid "$sec_pid"

# ---- 3 ------------------------------------------------------------------------------
# expect_refused NAME EXPECTED SED...: a copy of the primary's file changed
# by the sed script must be refused at start and by config check.
expect_refused() {
    local name=$1 want=$2 f=$WORKDIR/etc/$1.conf out rc
    shift 2
    sed "$@" "$pri_conf" >"$f"
    if out=$("$PRIMARY" --config "$f" 2>&1); then
        fail "3 ($name): the primary started with $(cat "$f")"
    else
        rc=$?
    fi
    [ "$rc" = 2 ] || fail "3 ($name): exit status $rc, not 2: $out"
    [[ $out == *"$want"* ]] || fail "3 ($name): the primary said: $out (wanted: $want)"
    if out=$("$BLKSHIP" config check --config "$f" 2>&1); then
        fail "3 ($name): config check passed $(cat "$f")"
    else
        rc=$?
    fi
    [ "$rc" = 2 ] || fail "3 ($name): config check exited $rc, not 2: $out"
    [[ $out == *"$want"* ]] || fail "3 ($name): config check said: $out (wanted: $want)"
}
line_of() { grep -n "^$1" "$pri_conf" | head -n 1 | cut -d: -f1; }
f=$WORKDIR/etc
expect_refused unknown "$f/unknown.conf:$(($(line_of 'mode =') + 1)): frobnicate: unknown key" \
    -e '/^mode =/a frobnicate = 1'
expect_refused value "$f/value.conf:$(line_of 'epoch-ms'): epoch-ms '5x': not a duration" \
    -e 's/^epoch-ms = 50ms/epoch-ms = 5x/'
expect_refused mode "$f/mode.conf:$(line_of 'mode'): mode later: async or checkpoint" \
    -e 's/^mode = checkpoint/mode = later/'
expect_refused twice "$f/twice.conf:$(($(line_of 'mode =') + 1)): mode: given twice (first on line $(line_of 'mode ='))" \
    -e '/^mode =/a mode = async'
expect_refused common "$f/common.conf:$(($(line_of 'control') + 1)): journal: not a key of this program" \
    -e "/^control =/a journal = $WORKDIR/j"
expect_refused section "$f/section.conf:$(($(line_of '\[writelog\]') + 1)): size: in section [disks]" \
    -e 's/^\[writelog\]/[disks]/' -e '/^\[disks\]/a size = 1G'
expect_refused syntax "$f/syntax.conf:$(($(line_of 'mode =') + 1)): not a [section] or a 'key = value' line" \
    -e '/^mode =/a this is not a key'
expect_refused cmdonly "$f/cmdonly.conf:$(($(line_of 'mode =') + 1)): config: not a configuration key" \
    -e "/^mode =/a config = /etc/other.conf"
expect_refused long "$f/long.conf:$(($(line_of 'mode =') + 1)): a line over 4093 bytes" \
    -e "/^mode =/a on-split-brain = $(head -c 5000 /dev/zero | tr '\0' x)"
expect_refused missing "--writelog is required" -e '/^writelog =/d'
out=$("$PRIMARY" --config "$f/missing.conf" 2>&1) || true
[[ $out == *"or set it in [primary] of $f/missing.conf"* ]] ||
    fail "3: the missing option's message does not name the file: $out"
expect_refused missing2 "--control is required" -e '/^control =/d'
out=$("$PRIMARY" --config "$f/missing2.conf" 2>&1) || true
[[ $out == *"or set it in [primary] or [common] of $f/missing2.conf"* ]] ||
    fail "3: the missing agent option's message does not name the file: $out"
note "3: every kind of error refused with its file and line"
