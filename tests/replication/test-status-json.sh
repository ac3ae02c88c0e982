#!/usr/bin/env bash
# The agents' status is JSON for any string they report.  blkship-secondary
# gets a replica file whose name holds '"', '\', a tab and non-ASCII UTF-8;
# its raw control-socket reply must be one line that python3's json module
# (and `python3 -m json.tool`) accepts, with "schema": 1, the device path
# exactly as given, null where the secondary cannot know, numbers as
# numbers.  `blkship status --json` keeps the path exactly, and the human
# output shows it, the tab and the backslash escaped.  blkship-primary,
# replicating to it, answers in schema 1 too, and both agents answer an
# unknown request with a valid error object.  No root needed: a file
# replica on loopback.
source "$(dirname "$0")/functions.sh"
requires nbdkit
requires openssl
requires python3
require_build
make_workdir

size=4M
CERTS=$WORKDIR/pki
make_certs "$CERTS"
dev=$WORKDIR/$'replica "q" back\\slash\ttab é€ ✓.img'
truncate -s $size "$dev"
start_secondary odd "$dev"

# raw CTL REQUEST: the agent's reply as sent, without the CLI.
raw() {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    buf += b
sys.stdout.buffer.write(buf)' "$1" "$2"
}

raw "$SEC_CTL" status >"$WORKDIR/sec.json"
note "the secondary's status: $(cat "$WORKDIR/sec.json")"
python3 -m json.tool "$WORKDIR/sec.json" >/dev/null || fail "the secondary's status is not JSON: $(cat -A "$WORKDIR/sec.json")"
[ "$(wc -l <"$WORKDIR/sec.json")" = 1 ] || fail "the secondary's status is not one line: $(cat -A "$WORKDIR/sec.json")"
python3 -c '
import json, sys
s = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
dev = sys.argv[2]
checks = [
    (s.get("schema") == 1, "schema is %r, not 1" % s.get("schema")),
    (s.get("role") == "secondary", "role %r" % s.get("role")),
    (s.get("device") == dev, "device %r, expected %r" % (s.get("device"), dev)),
    (s.get("connected") is False, "connected %r" % s.get("connected")),
    ("dirty_bytes" in s and s["dirty_bytes"] is None, "dirty_bytes is not null"),
    ("sync_percent" in s and s["sync_percent"] is None, "sync_percent is not null"),
    (s.get("disk_bytes") == 4 << 20, "disk_bytes %r" % s.get("disk_bytes")),
]
for k in ("inflight_bytes", "sent_bytes", "received_bytes", "written_bytes", "acked_bytes",
          "bad_frames", "generation"):
    checks.append((type(s.get(k)) is int and s[k] >= 0, "%s is %r, not a count" % (k, s.get(k))))
for k in ("replica_id", "primary_id"):
    checks.append((isinstance(s.get(k), str) and len(s[k]) == 32, "%s is %r" % (k, s.get(k))))
# Failure detection (docs/hooks.md): the defaults, the resource named after
# the state directory, no loss and no hook yet.
checks += [
    (s.get("heartbeat_ms") == 1000, "heartbeat_ms %r, not the default 1000" % s.get("heartbeat_ms")),
    (s.get("peer_timeout_ms") == 5000, "peer_timeout_ms %r, not the default 5000" % s.get("peer_timeout_ms")),
    (s.get("resource") == "odd.state", "resource %r, not named after the state directory" % s.get("resource")),
    (s.get("primaries_lost") == 0, "primaries_lost %r" % s.get("primaries_lost")),
]
h = s.get("hooks")
checks.append((isinstance(h, dict) and all(h.get(k) == 0 for k in
               ("running", "started", "succeeded", "failed", "timed_out", "skipped"))
               and h.get("last_event") == "" and h.get("last_result") == "", "hooks %r" % h))
bad = [m for ok, m in checks if not ok]
sys.exit("; ".join(bad) if bad else 0)' "$WORKDIR/sec.json" "$dev" ||
    fail "the secondary's status is wrong: $(cat "$WORKDIR/sec.json")"

# The CLI: --json keeps the path, human output shows it.
bs_status --control "$SEC_CTL" --json >"$WORKDIR/cli.json" || fail "blkship status --json failed"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))["device"]
sys.exit(0 if d == sys.argv[2] else "device %r" % d)' "$WORKDIR/cli.json" "$dev" ||
    fail "blkship status --json changed the device path: $(cat "$WORKDIR/cli.json")"
bs_status --control "$SEC_CTL" >"$WORKDIR/human" || fail "blkship status failed"
shown="device      $WORKDIR/"'replica "q" back\\slash\ttab é€ ✓.img'
grep -qxF "$shown" "$WORKDIR/human" ||
    fail "the human status does not show the device as '$shown':"$'\n'"$(cat -A "$WORKDIR/human")"
note "shown as: $(grep '^device' "$WORKDIR/human")"
grep -q '^role        secondary$' "$WORKDIR/human" || fail "no role line: $(cat "$WORKDIR/human")"

# The primary, replicating to it.
img=$WORKDIR/disk.img
random_file "$img" $size 7
start_nbdkit "$WORKDIR" "sj$$" "$img"
start_primary pri "$WL_CTL" "$SEC_ADDR"
wait_synced "$PRI_CTL" 60
expect_same "$img" "$dev" "replica after the sync"
raw "$PRI_CTL" status >"$WORKDIR/pri.json"
python3 -c '
import json, sys
s = json.load(open(sys.argv[1], encoding="utf-8"))
checks = [
    (s.get("schema") == 1, "schema is %r, not 1" % s.get("schema")),
    (s.get("role") == "primary", "role %r" % s.get("role")),
    (s.get("connected") is True, "connected %r" % s.get("connected")),
    (s.get("state") == "replicating", "state %r" % s.get("state")),
    (s.get("peer") == sys.argv[2], "peer %r" % s.get("peer")),
    (s.get("dirty_bytes") == 0 and s.get("inflight_bytes") == 0, "not in sync"),
    (s.get("acked_bytes") == 4 << 20, "acked_bytes %r" % s.get("acked_bytes")),
    (isinstance(s.get("sync_percent"), float) and s["sync_percent"] == 100.0,
     "sync_percent %r" % s.get("sync_percent")),
    (type(s.get("eta_seconds")) in (int, float), "eta_seconds %r" % s.get("eta_seconds")),
    (s.get("log_connected") is True, "log_connected %r" % s.get("log_connected")),
]
bad = [m for ok, m in checks if not ok]
sys.exit("; ".join(bad) if bad else 0)' "$WORKDIR/pri.json" "$SEC_ADDR" ||
    fail "the primary's status is wrong: $(cat "$WORKDIR/pri.json")"
bs_status --control "$PRI_CTL" >"$WORKDIR/pri-human" || fail "blkship status of the primary failed"
grep -q '^in sync     \[#\{40\}\] 100.0%$' "$WORKDIR/pri-human" ||
    fail "the primary's human status has no full progress bar: $(cat "$WORKDIR/pri-human")"
# The secondary now names its peer.
[ "$(field "$SEC_CTL" connected)" = true ] || fail "the secondary does not show the session"

# Unknown requests: a valid error object with the schema, and the CLI
# would report it.
for ctl in "$SEC_CTL" "$PRI_CTL"; do
    raw "$ctl" 'frobnicate "x\' >"$WORKDIR/err.json"
    python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
sys.exit(0 if e == {"schema": 1, "error": "unknown request"} else repr(e))' "$WORKDIR/err.json" ||
        fail "$ctl answers an unknown request with: $(cat -A "$WORKDIR/err.json")"
done
