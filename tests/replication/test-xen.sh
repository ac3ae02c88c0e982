#!/usr/bin/env bash
# Xen integration against a xenstore protocol peer (tests/xenstored-peer.py;
# the real xenstored needs a hypervisor), reached by libxenstore through
# XENSTORED_PATH:
#  - blkship xen discover lists a domain's disks (by name or id) with their
#    backends, and fails for a domain that is not there or no xenstore;
#  - blkship-primary --xen-domain vm7 (and blkship-secondary) publish the
#    resource's state under
#    /local/domain/7/blkship/RESOURCE (role, state, disk-state, connected,
#    committed-epoch, rpo-ms), readable by the domain and owned by dom0;
#  - xenstore going away does not stop the replication (logged once); when
#    it is back the state is published again;
#  - a stopped primary leaves state "stopped".
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires python3
requires_nbd_python
require_build
make_workdir

PEER=$(dirname "$0")/../xenstored-peer.py
xs=$WORKDIR/xenstored.sock
cat >"$WORKDIR/xs-init.json" <<'EOF'
{ "/local/domain/0/name": "Domain-0", "/local/domain/7/name": "vm7",
  "/local/domain/0/backend/vbd/7/51712/params": "/dev/vg0/vm7",
  "/local/domain/0/backend/vbd/7/51712/dev": "xvda",
  "/local/domain/0/backend/vbd/7/51712/mode": "w",
  "/local/domain/0/backend/qdisk/7/51728/params": "aio:/srv/vm7-data.img",
  "/local/domain/0/backend/qdisk/7/51728/dev": "xvdb",
  "/local/domain/0/backend/qdisk/7/51728/mode": "r" }
EOF
start_peer() {
    rm -f "$WORKDIR/xs-dump.json"
    python3 "$PEER" "$xs" "$WORKDIR/xs-init.json" "$WORKDIR/xs-dump.json" 200 &
    peer_pid=$!
    cleanup_fn stop_pid "$peer_pid" 5
    _peer_up() { [ -S "$xs" ] && [ -s "$WORKDIR/xs-dump.json" ]; }
    poll_until 10 _peer_up || fail "the xenstore peer did not start"
}
# xsget PATH: a node's value in the peer's tree (empty if absent).
xsget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    "$WORKDIR/xs-dump.json" "$1"; }
start_peer
export XENSTORED_PATH=$xs

# ---- blkship xen discover --------------------------------------------------------
out=$("$BLKSHIP" xen discover vm7 --json) || fail "xen discover vm7 failed"
python3 - "$out" <<'PY' || fail "xen discover vm7: $out"
import json, sys
d = json.loads(sys.argv[1])
assert d["domain"] == "vm7" and d["domid"] == "7", d
disks = {x["device"]: x for x in d["disks"]}
assert set(disks) == {"xvda", "xvdb"}, disks
assert disks["xvda"]["params"] == "/dev/vg0/vm7" and disks["xvda"]["kind"] == "vbd", disks
assert disks["xvda"]["mode"] == "w" and disks["xvda"]["resource"] == "vm7-xvda", disks
assert disks["xvdb"]["kind"] == "qdisk" and disks["xvdb"]["mode"] == "r", disks
PY
"$BLKSHIP" xen discover 7 | grep -Eq '^xvda +51712 +w +vbd +vm7-xvda +/dev/vg0/vm7$' ||
    fail "xen discover 7: $("$BLKSHIP" xen discover 7)"
out=$("$BLKSHIP" xen discover vm9 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && grep -q 'no domain vm9' <<<"$out" || fail "an unknown domain: status $rc: $out"
out=$(XENSTORED_PATH=$WORKDIR/none "$BLKSHIP" xen discover vm7 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && grep -q 'cannot connect to xenstore' <<<"$out" || fail "no xenstore: status $rc: $out"

# ---- The primary publishes its state ------------------------------------------------
pair_setup 32M "xen-$$"
start_nbdkit "$WORKDIR" "rtxen$$" "$img"
# The secondary publishes too (domain 8 here: both agents share this
# xenstore, where two hosts would each have their own).
start_secondary sec "$LOOP" --xen-domain 8 --resource vm7-xvda
start_primary pri "$WL_CTL" "$SEC_ADDR" --xen-domain vm7 --resource vm7-xvda
pri_pid=$PRI_PID pri_ctl=$PRI_CTL pri_log=$PRI_LOG
wait_synced "$pri_ctl" 60
base=/local/domain/7/blkship/vm7-xvda
_published() { [ "$(xsget $base/disk-state)" = consistent ] && [ "$(xsget $base/connected)" = 1 ]; }
poll_until 10 _published || fail "the state is not in xenstore: $(cat "$WORKDIR/xs-dump.json")"
[ "$(xsget $base/role)" = primary ] || fail "role: $(xsget $base/role)"
[[ "$(xsget $base/state)" == "replicating to $SEC_ADDR"* ]] || fail "state: $(xsget $base/state)"
[ "$(xsget $base/peer)" = "$SEC_ADDR" ] || fail "peer: $(xsget $base/peer)"
[ "$(xsget $base/committed-epoch)" -ge 1 ] || fail "committed-epoch: $(xsget $base/committed-epoch)"
[[ "$(xsget $base/rpo-ms)" =~ ^[0-9]+$ ]] || fail "rpo-ms: $(xsget $base/rpo-ms)"
[ "$(xsget "perms:$base")" = "['n0', 'r7']" ] || fail "permissions of $base: $(xsget "perms:$base")"
note "published: $(xsget $base/state)"
sbase=/local/domain/8/blkship/vm7-xvda
_sec_published() { [ "$(xsget $sbase/disk-state)" = consistent ]; }
poll_until 10 _sec_published || fail "the secondary's state is not in xenstore: $(cat "$WORKDIR/xs-dump.json")"
[ "$(xsget $sbase/role)" = secondary ] && [ "$(xsget $sbase/connected)" = 1 ] ||
    fail "the secondary's state: role $(xsget $sbase/role), connected $(xsget $sbase/connected)"
[[ "$(xsget $sbase/state)" == "replicating from "* ]] || fail "the secondary's state: $(xsget $sbase/state)"

# ---- xenstore gone, then back ------------------------------------------------------
kill -TERM "$peer_pid"
poll_until 10 proc_gone "$peer_pid" || fail "the peer did not stop"
rm -f "$xs"
"$NBD_PY" - "$NBD_URI" <<'PY' || fail "the NBD writes failed"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(16):
    h.pwrite(bytes([i + 1]) * 65536, i * 1048576)
h.flush()
h.shutdown()
PY
sleep 2
wait_synced "$pri_ctl" 30
expect_log 'xenstore: .*replication goes on' "$pri_log"
[ "$(grep -c 'xenstore: .*replication goes on' "$pri_log")" = 1 ] ||
    fail "the outage was logged more than once: $(grep xenstore "$pri_log")"
start_peer
poll_until 10 _published || fail "the state was not published again: $(cat "$WORKDIR/xs-dump.json")"
expect_log 'xenstore: publishing again' "$pri_log"

kill -TERM "$pri_pid"
poll_until 15 proc_gone "$pri_pid" || fail "the primary did not stop"
[ "$(xsget $base/state)" = stopped ] || fail "after the stop, state: $(xsget $base/state)"

# A resource name xenstore cannot take is refused at start.
out=$("$PRIMARY" --writelog "$WL_CTL" --connect "$SEC_ADDR" --state-dir "$WORKDIR/x.state" \
    --control "$WORKDIR/x.ctl" --cert "$CERTS/primary.crt" --key "$CERTS/primary.key" \
    --ca "$CERTS/ca.crt" --peer-name secondary --xen-domain vm7 --resource vm7.disk0 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] && grep -q "cannot be a xenstore node" <<<"$out" || fail "--resource vm7.disk0: status $rc: $out"
