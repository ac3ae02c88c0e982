#!/usr/bin/env bash
# What `cmake --install` ships, checked as installed (into a DESTDIR):
#  - the programs, the filter in nbdkit's own filter directory, the three
#    templated units, the sysusers.d and tmpfiles.d files, the example;
#  - `systemd-analyze verify` finds nothing to say about any unit (with
#    their ExecStart= pointed into the DESTDIR, where the programs are);
#  - `systemd-analyze security --offline=yes` rates each unit 3.0 or lower;
#  - the units are Type=notify, bound and ordered as documented, and a
#    configuration error (exit status 2) does not restart them;
#  - blkship-generator gives each resource's writelog and secondary units
#    exactly their own disk (DeviceAllow= for a device, ReadWritePaths= for
#    a file) in drop-ins that verify cleanly, and skips what it cannot use;
#  - `blkship writelog-exec RESOURCE`, the writelog unit's ExecStart, runs
#    nbdkit with the filter as [writelog] says: the log answers on its
#    control socket and the disk is served on its NBD socket.
source "$(dirname "$0")/functions.sh"
requires cmake
requires systemd-analyze
requires nbdkit
requires pkg-config
require_build
make_workdir

dest=$WORKDIR/dest
DESTDIR=$dest cmake --install "$BLKSHIP_BUILD_DIR" >"$WORKDIR/install.log" 2>&1 ||
    fail "cmake --install failed: $(tail -n 5 "$WORKDIR/install.log")"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BLKSHIP_BUILD_DIR/CMakeCache.txt")
unitdir=$(sed -n 's/^BLKSHIP_SYSTEMD_UNITDIR:PATH=//p' "$BLKSHIP_BUILD_DIR/CMakeCache.txt")
filterdir=$(pkg-config --variable=filterdir nbdkit)
for f in "$prefix/sbin/blkship-primary" "$prefix/sbin/blkship-secondary" "$prefix/bin/blkship" \
    "$filterdir/nbdkit-writelog-filter.so" "$unitdir/blkship-writelog@.service" \
    "$unitdir/blkship-primary@.service" "$unitdir/blkship-secondary@.service" \
    "$unitdir/blkship-listener.service" "$prefix/sbin/blkship-listener" \
    "$prefix/share/man/man8/blkship-listener.8" \
    "$prefix/lib/sysusers.d/blkship.conf" "$prefix/lib/tmpfiles.d/blkship.conf" \
    "$prefix/share/doc/blkship/example.conf" "$prefix/share/man/man8/blkship.8" \
    "$prefix/share/man/man8/blkship-primary.8" "$prefix/share/man/man8/blkship-secondary.8" \
    "$prefix/share/man/man1/nbdkit-writelog-filter.1" \
    "$(sed -n 's/^BLKSHIP_SYSTEMD_GENERATORDIR:PATH=//p' "$BLKSHIP_BUILD_DIR/CMakeCache.txt")/blkship-generator"; do
    [ -f "$dest$f" ] || fail "not installed: $f"$'\n'"$(cat "$WORKDIR/install.log")"
done
grep -q '^u blkship ' "$dest$prefix/lib/sysusers.d/blkship.conf" || fail "sysusers.d makes no blkship user"

# The units as installed, but for ExecStart= pointing into the DESTDIR.
check=$WORKDIR/units
mkdir "$check"
for u in writelog primary secondary; do
    src=$dest$unitdir/blkship-$u@.service
    grep -Eq "^ExecStart=$prefix/s?bin/blkship" "$src" || fail "blkship-$u@'s ExecStart= is not under $prefix"
    sed "s|^ExecStart=$prefix/|ExecStart=$dest$prefix/|" "$src" >"$check/blkship-$u@.service"
done

for u in writelog primary secondary; do
    f=$check/blkship-$u@.service
    # Every unit is Type=notify with the main process notifying.
    grep -qx 'Type=notify' "$f" || fail "blkship-$u@ is not Type=notify"
    grep -qx 'NotifyAccess=main' "$f" || fail "blkship-$u@ lacks NotifyAccess=main"
    grep -qx 'RestartPreventExitStatus=2' "$f" || fail "blkship-$u@ would restart on a configuration error"
    grep -qx 'User=blkship' "$f" || fail "blkship-$u@ does not run as the blkship user"
    # Verified as an instance, with the templates' directory searched; the
    # manual pages Documentation= names are looked up where they were
    # installed.
    out=$(cd "$check" && MANPATH=$dest$prefix/share/man systemd-analyze verify "blkship-$u@vm1.service" 2>&1) && rc=0 || rc=$?
    [ "$rc" = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify blkship-$u@vm1.service (status $rc): $out"
    score=$(systemd-analyze security --offline=yes "$f" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] || fail "no security rating for blkship-$u@"
    note "blkship-$u@.service: systemd-analyze security --offline=yes: $score"
    awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "blkship-$u@ rates $score, above 3.0"
    systemd-analyze security --offline=yes --threshold=30 "$f" >/dev/null 2>&1 ||
        fail "blkship-$u@ fails systemd-analyze security --threshold=30"
done
for u in primary secondary; do
    grep -Eq '^WatchdogSec=[1-9]' "$check/blkship-$u@.service" || fail "blkship-$u@ has no watchdog"
done
# The listener (docs/resources.md): one unit, not a template.
src=$dest$unitdir/blkship-listener.service
f=$check/blkship-listener.service
sed "s|^ExecStart=$prefix/|ExecStart=$dest$prefix/|" "$src" >"$f"
for line in Type=notify NotifyAccess=main RestartPreventExitStatus=2 User=blkship; do
    grep -qx "$line" "$f" || fail "blkship-listener.service lacks $line"
done
grep -Eq '^WatchdogSec=[1-9]' "$f" || fail "blkship-listener.service has no watchdog"
out=$(cd "$check" && MANPATH=$dest$prefix/share/man systemd-analyze verify blkship-listener.service 2>&1) && rc=0 || rc=$?
[ "$rc" = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify blkship-listener.service (status $rc): $out"
score=$(systemd-analyze security --offline=yes "$f" 2>&1 |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
note "blkship-listener.service: systemd-analyze security --offline=yes: $score"
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "blkship-listener rates $score, above 3.0"
grep -qx 'BindsTo=blkship-writelog@%i.service' "$check/blkship-primary@.service" ||
    fail "the primary is not bound to its write log"
grep -Eq '^After=.*blkship-writelog@%i\.service' "$check/blkship-primary@.service" ||
    fail "the primary is not ordered after its write log"

# A unit's mistake is caught: verify must not be silent on a broken unit.
sed 's|^ExecStart=.*|ExecStart=/nonexistent/blkship-primary --resource %i|' \
    "$check/blkship-primary@.service" >"$check/blkship-broken@.service"
out=$(cd "$check" && systemd-analyze verify --man=no blkship-broken@vm1.service 2>&1) && rc=0 || rc=$?
[ "$rc" != 0 ] || [ -n "$out" ] || fail "systemd-analyze verify found nothing wrong with a missing program"

# ---- blkship-generator: each unit its own disk -----------------------------------
gen=$dest$(sed -n 's/^BLKSHIP_SYSTEMD_GENERATORDIR:PATH=//p' "$BLKSHIP_BUILD_DIR/CMakeCache.txt")/blkship-generator
gconf=$WORKDIR/gconf
gout=$WORKDIR/gen
mkdir "$gconf" "$gout"
BLKSHIP_CONFIG_DIR=$WORKDIR/none "$gen" "$gout" "$gout" "$gout" || fail "the generator failed with no configuration"
[ -z "$(ls -A "$gout")" ] || fail "the generator wrote something with no configuration: $(ls "$gout")"
printf '[writelog]\ndisk = /dev/vg0/r1\n[primary]\nconnect = dr:7789\n' >"$gconf/r1.conf"
printf '[secondary]\ndevice = %s\njournal = %s\nlisten = 0.0.0.0:7789\n' \
    "$WORKDIR/replica.img" "$WORKDIR/r2.journal" >"$gconf/r2.conf"
printf '[secondary]\ndevice = relative/path\n' >"$gconf/r3.conf"
printf 'not an ini file\n' >"$gconf/r4.conf"
BLKSHIP_CONFIG_DIR=$gconf "$gen" "$gout" "$gout" "$gout" 2>"$WORKDIR/gen.err" ||
    fail "the generator failed: $(cat "$WORKDIR/gen.err")"
d1=$gout/blkship-writelog@r1.service.d/50-blkship-disk.conf
d2=$gout/blkship-secondary@r2.service.d/50-blkship-disk.conf
[ "$(grep -v '^#' "$d1")" = $'[Service]\nDeviceAllow=/dev/vg0/r1 rw' ] ||
    fail "the writelog drop-in of r1: $(cat "$d1")"
[ "$(grep -v '^#' "$d2")" = "[Service]"$'\n'"ReadWritePaths=$WORKDIR/replica.img"$'\n'"ReadWritePaths=$WORKDIR/r2.journal" ] ||
    fail "the secondary drop-in of r2: $(cat "$d2")"
[ "$(find "$gout" -type f | wc -l)" = 2 ] || fail "drop-ins for what has no disk: $(find "$gout" -type f)"
grep -q 'r3.conf: \[secondary\] device relative/path: not an absolute path' "$WORKDIR/gen.err" ||
    fail "a relative device was not reported: $(cat "$WORKDIR/gen.err")"
grep -q 'r4.conf: not an INI file' "$WORKDIR/gen.err" || fail "a broken file was not reported: $(cat "$WORKDIR/gen.err")"
# The drop-ins are good unit syntax: verified with their units.
cp -r "$gout/blkship-writelog@r1.service.d" "$gout/blkship-secondary@r2.service.d" "$check/"
for i in blkship-writelog@r1 blkship-secondary@r2; do
    out=$(cd "$check" && MANPATH=$dest$prefix/share/man systemd-analyze verify "$i.service" 2>&1) && rc=0 || rc=$?
    [ "$rc" = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify $i with its drop-in (status $rc): $out"
done

# ---- blkship writelog-exec: the writelog unit's command -----------------------
conf=$WORKDIR/etc
mkdir "$conf"
truncate -s 16M "$WORKDIR/disk.img"
cat >"$conf/ut$$.conf" <<EOF
[writelog]
disk = $WORKDIR/disk.img
dir = $WORKDIR
socket = $WORKDIR/ut.nbd
cow-max = 8M
EOF
cmd=$(BLKSHIP_CONFIG_DIR=$conf BLKSHIP_WRITELOG_FILTER=$FILTER "$BLKSHIP" writelog-exec "ut$$" --print)
want="nbdkit -f --filter=$FILTER file $WORKDIR/disk.img writelog-name=ut$$ writelog-dir=$WORKDIR writelog-cow-max=8M -U $WORKDIR/ut.nbd"
[ "$cmd" = "$want" ] || fail "writelog-exec --print: $cmd"$'\n'"expected: $want"
printf '[writelog]\ndisk = %s\ngrain = 1000\n' "$WORKDIR/disk.img" >"$conf/bad$$.conf"
out=$(BLKSHIP_CONFIG_DIR=$conf "$BLKSHIP" writelog-exec "bad$$" 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] || fail "a bad [writelog] gave status $rc, not 2: $out"
grep -q "bad$$.conf:3: grain" <<<"$out" || fail "the error does not say FILE:LINE: key: $out"
printf '[writelog]\ncow-max = 8M\n' >"$conf/nodisk$$.conf"
out=$(BLKSHIP_CONFIG_DIR=$conf "$BLKSHIP" writelog-exec "nodisk$$" 2>&1) && rc=0 || rc=$?
[ "$rc" = 2 ] && grep -q 'no disk' <<<"$out" || fail "a [writelog] without disk: status $rc: $out"

_logs+=("$WORKDIR/nbdkit.log")
cleanup_fn rm -f "/dev/shm/log_ut$$.wlog"
BLKSHIP_CONFIG_DIR=$conf BLKSHIP_WRITELOG_FILTER=$FILTER "$BLKSHIP" writelog-exec "ut$$" \
    >"$WORKDIR/nbdkit.log" 2>&1 &
pid=$!
cleanup_fn stop_pid "$pid"
_serving() {
    proc_alive "$pid" || fail "nbdkit (writelog-exec) exited: $(cat "$WORKDIR/nbdkit.log")"
    [ -S "$WORKDIR/log_ut$$.ctl" ] && [ -S "$WORKDIR/ut.nbd" ]
}
poll_until 15 _serving || fail "writelog-exec: no sockets within 15 s"
# The exec left nbdkit as the process we started (the unit's main process).
[ "$(cat /proc/$pid/comm)" = nbdkit ] || fail "writelog-exec did not exec nbdkit: $(cat /proc/$pid/comm)"
info=$("$BLKSHIP" wlog info "$WORKDIR/log_ut$$.ctl" --json) || fail "the log does not answer"
grep -q '"disk_sectors": 32768' <<<"$info" || fail "the log serves another disk: $info"
kill -TERM "$pid"
poll_until 15 proc_gone "$pid" || fail "nbdkit did not stop on SIGTERM"
