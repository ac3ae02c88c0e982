#!/usr/bin/env bash
# `blkship status` against a fake agent: a python control socket that
# answers every connection with the bytes of one file.  A reply that is not
# a status the CLI can show (not JSON, cut short, a field missing or of the
# wrong type, NaN, an error object, a newer schema, too long, empty) must
# end in exit status 1, a message on stderr that says what is wrong, and
# nothing on stdout, in human and --json mode alike.  A good reply is shown,
# strings with control characters escaped for the terminal; --json output
# is valid JSON with the same content.  Usage errors exit 2.
source "$(dirname "$0")/functions.sh"
requires python3
require_build
make_workdir

sock=$WORKDIR/fake.ctl
reply=$WORKDIR/reply
cat >"$WORKDIR/fake-agent.py" <<'EOF'
import os, socket, sys
path, reply = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    with c:
        req = b""
        while not req.endswith(b"\n"):
            b = c.recv(256)
            if not b:
                break
            req += b
        with open(reply, "rb") as f:
            c.sendall(f.read())
EOF
: >"$reply"
: >"$WORKDIR/fake.out"
python3 "$WORKDIR/fake-agent.py" "$sock" "$reply" >"$WORKDIR/fake.out" 2>&1 &
fake_pid=$!
cleanup_fn stop_pid "$fake_pid"
_logs+=("$WORKDIR/fake.out")
poll_until 10 grep -q ready "$WORKDIR/fake.out" || fail "the fake agent did not start"

good='{ "schema": 1, "role": "primary", "connected": true, "state": "replicating", "peer": "dr.example:7789", "disk_bytes": 1073741824, "grain_bytes": 4096, "dirty_bytes": 1048576, "inflight_bytes": 65536, "sent_bytes": 2147483648, "acked_bytes": 1073741824, "zero_bytes": 0, "sync_percent": 99.90, "rate_bytes_per_sec": 10485760, "eta_seconds": 0, "epoch": 7, "log_connected": true, "read_errors": 0, "replica_id": "00112233445566778899aabbccddeeff" }'

# expect_refused WHAT MESSAGE_ERE: both modes exit 1 with MESSAGE on
# stderr and print nothing.
expect_refused() {
    local what=$1 re=$2 mode rc
    for mode in human --json; do
        rc=0
        if [ "$mode" = human ]; then
            "$BLKSHIP" status --control "$sock" >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
        else
            "$BLKSHIP" status --control "$sock" --json >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
        fi
        [ "$rc" = 1 ] || fail "$what ($mode): exit status $rc, expected 1; stderr: $(cat "$WORKDIR/err")"
        [ ! -s "$WORKDIR/out" ] || fail "$what ($mode): printed something: $(head -c 300 "$WORKDIR/out")"
        grep -Eq -- "$re" "$WORKDIR/err" ||
            fail "$what ($mode): stderr does not match /$re/: $(cat "$WORKDIR/err")"
    done
    note "$what: refused: $(cat "$WORKDIR/err")"
}

# with_field KEY VALUE: the good reply with KEY set to the JSON VALUE, or
# removed when VALUE is "-".
with_field() {
    python3 -c '
import json, sys
o = json.loads(sys.argv[1])
if sys.argv[3] == "-":
    del o[sys.argv[2]]
else:
    o[sys.argv[2]] = json.loads(sys.argv[3])
print(json.dumps(o))' "$good" "$1" "$2"
}

# ---- Refused replies ----------------------------------------------------------------

printf 'hello, I am not JSON\n' >"$reply"
expect_refused "garbage" 'not JSON'
printf '%s' "${good:0:120}" >"$reply"
expect_refused "truncated JSON" 'not JSON.*truncated'
printf '%s garbage\n' "$good" >"$reply"
expect_refused "text after the object" "not JSON: unexpected character at offset $((${#good} + 1))"
printf '[1, 2, 3]\n' >"$reply"
expect_refused "an array" 'not a JSON object'
: >"$reply"
expect_refused "an empty reply" 'empty'
printf '{ "schema": 1, "role": "pri\xffmary" }\n' >"$reply"
expect_refused "invalid UTF-8" 'not JSON: invalid utf-8'
with_field acked_bytes - >"$reply"
expect_refused "a missing field" 'no "acked_bytes" field'
with_field schema - >"$reply"
expect_refused "no schema" 'no "schema" field'
with_field connected '"yes"' >"$reply"
expect_refused "a string for a boolean" '"connected" is a string, not a boolean'
with_field dirty_bytes '"1 MiB"' >"$reply"
expect_refused "a string for a number" '"dirty_bytes" is a string, not a number or null'
with_field sent_bytes -5 >"$reply"
expect_refused "a negative byte count" '"sent_bytes" is -5, outside'
with_field sync_percent 250 >"$reply"
expect_refused "a percentage above 100" '"sync_percent" is 250, outside'
with_field role null >"$reply"
expect_refused "a null role" '"role" is null, not a string'
with_field schema 2 >"$reply"
expect_refused "a newer schema" 'schema 2, newer than this blkship reads \(1\)'
# json-c reads NaN; JSON has no such number.
with_field sync_percent 1 | sed 's/"sync_percent": 1/"sync_percent": NaN/' >"$reply"
grep -q NaN "$reply" || fail "the NaN reply was not made"
expect_refused "NaN" 'NaN or infinite'
printf '{ "schema": 1, "error": "unknown request \\u001b[2J" }\n' >"$reply"
expect_refused "an error object" 'the agent answered with an error: unknown request \\x1b\[2J'
python3 -c 'import json; print(json.dumps({"schema": 1, "pad": "x" * 70000}))' >"$reply"
expect_refused "a reply longer than the control socket allows" 'longer than a status can be'

# ---- A good reply -------------------------------------------------------------------

printf '%s\n' "$good" >"$reply"
"$BLKSHIP" status --control "$sock" >"$WORKDIR/human" || fail "status of a good reply failed"
grep -q '^role        primary$' "$WORKDIR/human" || fail "no role line: $(cat "$WORKDIR/human")"
grep -q '^connected   yes — dr.example:7789$' "$WORKDIR/human" || fail "no connected line: $(cat "$WORKDIR/human")"
grep -q '^dirty       1.0 MiB$' "$WORKDIR/human" || fail "no dirty line: $(cat "$WORKDIR/human")"
grep -q '^in sync     \[#*\.*\] 99.9%$' "$WORKDIR/human" || fail "no progress bar: $(cat "$WORKDIR/human")"
"$BLKSHIP" status --control "$sock" --json >"$WORKDIR/json" || fail "status --json of a good reply failed"
python3 -c '
import json, sys
a = json.loads(sys.argv[1])
b = json.load(open(sys.argv[2]))
sys.exit(0 if a == b else "--json changed the content: %r != %r" % (a, b))' "$good" "$WORKDIR/json"

# Strings reach the terminal escaped: ESC, tab, C1 control, backslash.  The
# peer (a string the agent took from its command line) holds all four.
with_field peer '"a\u001b[31mb\tc\u009bd\\e \"q\" é"' >"$reply"
"$BLKSHIP" status --control "$sock" >"$WORKDIR/human" || fail "status with control characters failed"
grep -qF 'connected   yes — a\x1b[31mb\tc\u009bd\\e "q" é' "$WORKDIR/human" ||
    fail "the peer is not shown escaped: $(cat -A "$WORKDIR/human")"
if grep -q $'\e' "$WORKDIR/human"; then
    fail "an escape character reached the output: $(cat -A "$WORKDIR/human")"
fi
"$BLKSHIP" status --control "$sock" --json | python3 -c '
import json, sys
p = json.load(sys.stdin)["peer"]
sys.exit(0 if p == "a\x1b[31mb\tc\x9bd\\e \"q\" é" else "peer %r" % p)' ||
    fail "--json did not keep the peer string exactly"

# ---- Exit status: usage 2, runtime 1 ----------------------------------------------

expect_status() {
    local want=$1 rc=0
    shift
    "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want"
}
expect_status 2 "$BLKSHIP"
expect_status 2 "$BLKSHIP" frobnicate
expect_status 2 "$BLKSHIP" status
expect_status 2 "$BLKSHIP" status --control "$sock" extra
expect_status 2 "$BLKSHIP" status --bogus
expect_status 2 "$BLKSHIP" wlog
expect_status 2 "$BLKSHIP" wlog frobnicate "$sock"
expect_status 1 "$BLKSHIP" status --control "$WORKDIR/nothing-here.ctl"
expect_status 0 "$BLKSHIP" --version
"$BLKSHIP" --version | grep -Eq '^blkship [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version: $("$BLKSHIP" --version)"

# ---- Health: the exit status of blkship status --------------------------------------

# with_fields KEY=JSON...: the good reply with each KEY set to its JSON value.
with_fields() {
    python3 -c '
import json, sys
o = json.loads(sys.argv[1])
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    o[k] = json.loads(v)
print(json.dumps(o))' "$good" "$@"
}
# expect_health CODE REASON_ERE [KEY=JSON...]: both modes exit CODE; with
# --quiet nothing is printed on stdout and, unless CODE is 0, stderr says
# REASON.
expect_health() {
    local want=$1 re=$2 mode rc
    shift 2
    with_fields "$@" >"$reply"
    for mode in "" --json; do
        rc=0
        "$BLKSHIP" status --control "$sock" $mode >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
        [ "$rc" = "$want" ] || fail "health of $* ($mode): exit status $rc, expected $want: $(cat "$WORKDIR/err")"
        [ -s "$WORKDIR/out" ] || fail "health of $* ($mode): the status was not printed"
    done
    rc=0
    "$BLKSHIP" status --control "$sock" --quiet >"$WORKDIR/out" 2>"$WORKDIR/err" || rc=$?
    [ "$rc" = "$want" ] || fail "health of $* (--quiet): exit status $rc, expected $want"
    [ ! -s "$WORKDIR/out" ] || fail "--quiet printed: $(cat "$WORKDIR/out")"
    if [ "$want" != 0 ]; then
        grep -Eq -- "$re" "$WORKDIR/err" || fail "health of $*: stderr does not match /$re/: $(cat "$WORKDIR/err")"
    fi
    # --watch runs until stopped; its status is not the health.
    note "health $want: $* ${re:+($(cat "$WORKDIR/err"))}"
}
expect_health 0 ""
expect_health 3 'not connected: the link dropped' connected=false 'last_disconnect="the link dropped"'
expect_health 3 'write log is not held' log_connected=false
expect_health 4 'full resync under way' 'resync="full"'
expect_health 4 'checksum resync under way' 'resync="checksum"'
expect_health 0 "" 'resync="bitmap"'
expect_health 0 "" 'resync="bitmap"' 'disk_state="consistent"'
expect_health 4 'committed no epoch yet' 'resync="bitmap"' 'disk_state="unknown"'
expect_health 5 'split brain' split_brain=true
expect_health 5 'the secondary was promoted' peer_promoted=true
expect_health 4 'not consistent' 'role="secondary"' replica_consistent=false
expect_health 3 'promoted' 'role="secondary"' replica_consistent=true promoted=true
expect_health 0 "" 'role="secondary"' replica_consistent=true
expect_health 0 "" 'role="secondary"' replica_consistent=false 'disk_state="applying"' 
