#!/usr/bin/env bash
# The agents' Prometheus endpoints (--metrics HOST:PORT), scraped with curl
# and checked with promtool:
#  - both pass `promtool check metrics` (names, types, HELP);
#  - their values are the status' (sent, received, connected, dirty, the
#    committed epoch) once the replica is in sync and idle;
#  - only GET /metrics is served (404 elsewhere, 405 for POST);
#  - a client that connects and says nothing holds no scrape back and does
#    not slow the replication: writes made meanwhile reach the replica;
#  - the secondary killed: the primary's blkship_connected goes to 0 and
#    its link_down errors count it;
#  - the agents open libmicrohttpd for it (they do not link it);
#  - a bad --metrics address is a usage error (2), a port in use a start
#    failure (1), each said in the log.
source "$(dirname "$0")/functions.sh"
requires_root
requires nbdkit
requires losetup
requires openssl
requires curl
requires promtool
requires_nbd_python
require_build
make_workdir

pair_setup 64M "mt-$$"

mp=$(random_port)
ms=$(random_port)
while [ "$ms" = "$mp" ]; do ms=$(random_port); done
start_nbdkit "$WORKDIR" "rtmt$$" "$img"
start_secondary sec "$LOOP" --metrics "$TEST_HOST:$ms" --heartbeat-ms 500 --peer-timeout-ms 2000
sec_pid=$SEC_PID sec_ctl=$SEC_CTL sec_log=$SEC_LOG
start_primary pri "$WL_CTL" "$SEC_ADDR" --metrics "$TEST_HOST:$mp" --heartbeat-ms 500 \
    --peer-timeout-ms 2000
pri_ctl=$PRI_CTL pri_log=$PRI_LOG
expect_log "Prometheus metrics on http://$TEST_HOST:$mp/metrics" "$pri_log"
expect_log "Prometheus metrics on http://$TEST_HOST:$ms/metrics" "$sec_log"
# The library is opened for an endpoint (test-e2e.sh: not without one).
for pid in "$PRI_PID" "$sec_pid"; do
    grep -q libmicrohttpd "/proc/$pid/maps" || fail "agent $pid serves metrics without libmicrohttpd mapped"
done
wait_synced "$pri_ctl" 60
expect_same "$img" "$LOOP" "replica after the sync"

# scrape PORT: the metrics text.
scrape() { curl -sf --max-time 5 "http://$TEST_HOST:$1/metrics"; }
# metric TEXT NAME: the value of the one sample of NAME.
metric() { awk -v n="$2" '$1 ~ "^"n"[{]" { print $2; exit }' <<<"$1"; }

# The write log, held by the primary: asked directly it is busy, and the
# tool says to ask the agent; asked through the agent it answers.
out=$("$BLKSHIP" wlog info "$WL_CTL" 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && grep -q -- "--control" <<<"$out" || fail "wlog info on a held log: status $rc: $out"
wi=$("$BLKSHIP" wlog info --control "$pri_ctl" --json) || fail "wlog info --control failed"
[ "$(jget "$wi" disk_sectors)" = $((bytes / 512)) ] || fail "wlog info through the agent: $wi"
[ "$(jget "$wi" log_id)" = "$(field "$pri_ctl" log_id)" ] || fail "the log id differs from the status': $wi"
"$BLKSHIP" wlog cowc --control "$pri_ctl" | grep -q '^copies made' || fail "wlog cowc --control failed"
"$BLKSHIP" wlog info --control "$pri_ctl" | grep -q 'as the agent holding .* had it [0-9]* ms ago' ||
    fail "wlog info --control does not say where it came from"
! "$BLKSHIP" wlog info --control "$sec_ctl" >/dev/null 2>&1 || fail "the secondary answered wlog info"

# The health in blkship status' exit status, from real agents.
"$BLKSHIP" status --control "$pri_ctl" --quiet || fail "in sync, the primary's status exits $?"
"$BLKSHIP" status --control "$sec_ctl" --quiet || fail "in sync, the secondary's status exits $?"
sleep 1.5 # a tick: the snapshot is taken after the sync
pm=$(scrape "$mp") || fail "the primary's endpoint does not answer"
sm=$(scrape "$ms") || fail "the secondary's endpoint does not answer"
ps=$(status "$pri_ctl")
ss=$(status "$sec_ctl")
# Who the peer is, and what the replica is, in each status.
[[ "$(jget "$ps" peer_certificate)" == *CN=secondary*sha256* ]] ||
    fail "the primary's status does not name the secondary's certificate: $ps"
[[ "$(jget "$ss" peer_certificate)" == *CN=primary*sha256* ]] ||
    fail "the secondary's status does not name the primary's certificate: $(jget "$ss" peer_certificate)"
# The secondary may be copying an epoch in from its journal as it answers.
[ "$(jget "$ps" disk_state)" = consistent ] && [[ "$(jget "$ss" disk_state)" =~ ^(consistent|applying)$ ]] ||
    fail "in sync, the disk states are $(jget "$ps" disk_state) / $(jget "$ss" disk_state)"
[ "$(jget "$ps" reconnects)" = 0 ] || fail "reconnects on a link never lost: $(jget "$ps" reconnects)"
human=$(bs_status --control "$pri_ctl") || fail "blkship status failed"
grep -qx 'disk        consistent' <<<"$human" && grep -q '^peer cert   .*CN=secondary' <<<"$human" &&
    grep -q '^resource    ' <<<"$human" || fail "the human status lacks disk, peer cert or resource:"$'\n'"$human"

for who in primary secondary; do
    [ "$who" = primary ] && text=$pm || text=$sm
    out=$(promtool check metrics <<<"$text" 2>&1) && rc=0 || rc=$?
    [ "$rc" = 0 ] || fail "promtool check metrics on the $who's endpoint (status $rc): $out"$'\n'"$text"
    note "$who: promtool check metrics: OK, $(grep -c '^# TYPE' <<<"$text") metrics"
    grep -q "^blkship_up{resource=\"[^\"]*\",role=\"$who\"} 1\$" <<<"$text" ||
        fail "the $who's blkship_up lacks its labels: $(grep blkship_up <<<"$text")"
done
[ "$(metric "$pm" blkship_connected)" = 1 ] || fail "the primary's blkship_connected is not 1"
[ "$(metric "$sm" blkship_connected)" = 1 ] || fail "the secondary's blkship_connected is not 1"
[ "$(metric "$pm" blkship_sent_bytes_total)" = "$(jget "$ps" sent_bytes)" ] ||
    fail "blkship_sent_bytes_total $(metric "$pm" blkship_sent_bytes_total) is not the status' $(jget "$ps" sent_bytes)"
[ "$(metric "$pm" blkship_sent_bytes_total)" -ge "$bytes" ] || fail "the full sync is not in blkship_sent_bytes_total"
[ "$(metric "$sm" blkship_received_bytes_total)" = "$(jget "$ss" received_bytes)" ] ||
    fail "blkship_received_bytes_total is not the status' received_bytes"
[ "$(metric "$pm" blkship_dirty_bytes)" = 0 ] || fail "in sync, yet blkship_dirty_bytes $(metric "$pm" blkship_dirty_bytes)"
[ "$(metric "$pm" blkship_sync_ratio)" = 1 ] || fail "in sync, yet blkship_sync_ratio $(metric "$pm" blkship_sync_ratio)"
[ "$(metric "$sm" blkship_replica_consistent)" = 1 ] || fail "the secondary's replica is not shown consistent"
[ "$(metric "$pm" blkship_committed_epoch)" -ge 1 ] || fail "no committed epoch in the primary's metrics"
# Epochs go on while idle: the snapshot (at most a tick old) is not ahead.
e=$(metric "$sm" blkship_committed_epoch)
[ "$e" -ge 1 ] && [ "$e" -le "$(jget "$ss" committed_epoch)" ] ||
    fail "the secondary's blkship_committed_epoch $e; the status says $(jget "$ss" committed_epoch)"
grep -q '^# TYPE blkship_sent_bytes_total counter$' <<<"$pm" || fail "blkship_sent_bytes_total is not a counter"
grep -q '^# TYPE blkship_dirty_bytes gauge$' <<<"$pm" || fail "blkship_dirty_bytes is not a gauge"
grep -q "^blkship_build_info{.*version=\"[0-9.]*\"} 1\$" <<<"$pm" || fail "no blkship_build_info"

code=$(curl -s -o /dev/null -w '%{http_code}' "http://$TEST_HOST:$mp/other")
[ "$code" = 404 ] || fail "GET /other answered $code, not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$TEST_HOST:$mp/metrics")
[ "$code" = 405 ] || fail "POST /metrics answered $code, not 405"

# A client that connects and sends nothing.
exec 7<>"/dev/tcp/$TEST_HOST/$mp" || fail "cannot connect to the metrics port"
cleanup_fn exec 7>&-
t0=$(now_ms)
scrape "$mp" >/dev/null || fail "a silent client held a scrape back"
took=$(($(now_ms) - t0))
[ "$took" -lt 2000 ] || fail "a scrape beside a silent client took $took ms"
"$NBD_PY" - "$NBD_URI" <<'PY' || fail "the NBD writes failed"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(64):
    h.pwrite(bytes([i % 251]) * 65536, (i * 7919 % 1000) * 65536)
h.flush()
h.shutdown()
PY
wait_synced "$pri_ctl" 30
"$NBD_PY" - "$NBD_URI" "$img.now" <<'PY' || fail "cannot read the disk back"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
with open(sys.argv[2], "wb") as f:
    for off in range(0, size, 1 << 20):
        f.write(h.pread(min(1 << 20, size - off), off))
h.shutdown()
PY
expect_same "$img.now" "$LOOP" "replica after writes made beside a silent metrics client"
exec 7>&-

# The secondary lost.
kill -KILL "$sec_pid"
_gone() { [ "$(metric "$(scrape "$mp")" blkship_connected)" = 0 ]; }
poll_until 10 _gone || fail "the primary's blkship_connected stayed 1 with its secondary killed"
rc=0
"$BLKSHIP" status --control "$pri_ctl" --quiet 2>"$WORKDIR/health.err" || rc=$?
[ "$rc" = 3 ] || fail "with the secondary gone, the primary's status exits $rc, not 3 (degraded)"
grep -q 'not connected' "$WORKDIR/health.err" || fail "the degraded status says: $(cat "$WORKDIR/health.err")"
bs_status --control "$pri_ctl" | grep -q '^last down   .' || fail "the human status does not say why the link went down"
pm=$(scrape "$mp")
n=$(awk '$1 ~ /^blkship_errors_total[{].*kind="link_down"/ { print $2 }' <<<"$pm")
[ "${n:-0}" -ge 1 ] || fail "the lost link is not counted: $(grep blkship_errors_total <<<"$pm")"

# Bad addresses.
out=$("$SECONDARY" --metrics nonsense --listen "$TEST_HOST:1" --device "$LOOP" \
    --state-dir "$WORKDIR/x.state" --control "$WORKDIR/x.ctl" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] && grep -q -- '--metrics' <<<"$out" || fail "--metrics nonsense: status $rc: $out"
out=$("$SECONDARY" --metrics "$TEST_HOST:$mp" --listen "$TEST_HOST:$(random_port)" --device "$LOOP" \
    --state-dir "$WORKDIR/sec.state" --control "$WORKDIR/y.ctl" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt" --peer-name primary 2>&1) && rc=0 || rc=$?
[ "$rc" = 1 ] && grep -q "metrics: cannot listen on $TEST_HOST:$mp" <<<"$out" ||
    fail "--metrics on a port in use: status $rc: $out"
