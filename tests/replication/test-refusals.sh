#!/usr/bin/env bash
# Start-up refusals of both agents: every bad option value, missing or
# empty required option, unusable identity file and unknown argument must
# stop the agent before it does anything, with exit status 2 (usage or
# configuration) or 1 (runtime: a name that does not resolve), and one
# message on stderr naming the option and what is wrong.  "Before it does
# anything" is checked: no control socket, no state directory, the replica
# untouched, nothing listening.  Then the same agents start with values in
# every unit form (100ms, 5s, 64K) and --version answers.
source "$(dirname "$0")/functions.sh"
requires openssl
require_build
make_workdir

CERTS=$WORKDIR/pki
make_certs "$CERTS"
rep=$WORKDIR/replica.img
truncate -s 16M "$rep"
sum0=$(sha256sum <"$rep")
port=$(random_port)

sec_base=(--listen "127.0.0.1:$port" --device "$rep" --state-dir "$WORKDIR/sec.state"
          --control "$WORKDIR/sec.ctl")
pri_base=(--writelog "$WORKDIR/log_none.ctl" --connect "127.0.0.1:$port"
          --state-dir "$WORKDIR/pri.state" --control "$WORKDIR/pri.ctl")
sec_tls=(--cert "$CERTS/secondary.crt" --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt"
         --peer-name primary)
pri_tls=(--cert "$CERTS/primary.crt" --key "$CERTS/primary.key" --ca "$CERTS/ca.crt"
         --peer-name secondary)

# nothing_started: no trace of an agent having begun.
nothing_started() {
    [ ! -e "$WORKDIR/sec.ctl" ] && [ ! -e "$WORKDIR/pri.ctl" ] || fail "$1: a control socket was created"
    [ ! -e "$WORKDIR/sec.state" ] && [ ! -e "$WORKDIR/pri.state" ] || fail "$1: a state directory was created"
    [ "$(sha256sum <"$rep")" = "$sum0" ] || fail "$1: the replica changed"
    ! ss -Htln "sport = :$port" | grep -q . || fail "$1: something listens on port $port"
}

cases=0
# refuse WHO RC REGEX ARGS...: the agent (sec or pri) given ARGS exits with
# RC at once and says REGEX on stderr.
refuse() {
    local who=$1 rc=$2 re=$3 prog got out
    shift 3
    [ "$who" = sec ] && prog=$SECONDARY || prog=$PRIMARY
    if out=$(timeout 10 "$prog" "$@" 2>&1 </dev/null); then got=0; else got=$?; fi
    [ "$got" = "$rc" ] ||
        fail "$(basename "$prog") $*: exit status $got, expected $rc; it said: $out"
    grep -Eq -- "$re" <<<"$out" ||
        fail "$(basename "$prog") $*: stderr does not match '$re'; it said: $out"
    printf '    %s -> %s: %s\n' "$who" "$rc" "$(grep -E -- "$re" <<<"$out" | head -n 1)"
    nothing_started "$(basename "$prog") $*"
    cases=$((cases + 1))
}

note "identity cannot be switched off"
refuse sec 2 '--peer-name is empty' "${sec_base[@]}" "${sec_tls[@]}" --peer-name ""
refuse pri 2 '--peer-name is empty' "${pri_base[@]}" "${pri_tls[@]}" --peer-name ""
refuse sec 2 '--peer-name is required' "${sec_base[@]}" --cert "$CERTS/secondary.crt" \
    --key "$CERTS/secondary.key" --ca "$CERTS/ca.crt"
refuse pri 2 '--ca is required' "${pri_base[@]}" --cert "$CERTS/primary.crt" \
    --key "$CERTS/primary.key" --peer-name secondary
refuse sec 2 '--ca is empty' "${sec_base[@]}" "${sec_tls[@]}" --ca ""
refuse pri 2 '--key is empty' "${pri_base[@]}" "${pri_tls[@]}" --key ""
refuse sec 2 '--crl is empty' "${sec_base[@]}" "${sec_tls[@]}" --crl ""
refuse pri 2 "--peer-name 'se cond' is neither a DNS name nor an IP address" \
    "${pri_base[@]}" "${pri_tls[@]}" --peer-name "se cond"
refuse sec 2 "--peer-name '\*\.example' is neither" "${sec_base[@]}" "${sec_tls[@]}" \
    --peer-name "*.example"
cp "$CERTS/secondary.key" "$WORKDIR/open.key"
chmod 0640 "$WORKDIR/open.key"
refuse sec 2 "private key .*open.key is accessible by group or others \(mode 0640\)" \
    "${sec_base[@]}" "${sec_tls[@]}" --key "$WORKDIR/open.key"
chmod 0604 "$WORKDIR/open.key"
refuse sec 2 "private key .*open.key is accessible by group or others \(mode 0604\)" \
    "${sec_base[@]}" "${sec_tls[@]}" --key "$WORKDIR/open.key"
refuse pri 2 '--crl .*nonexistent.crl: No such file or directory' \
    "${pri_base[@]}" "${pri_tls[@]}" --crl "$WORKDIR/nonexistent.crl"
refuse pri 2 'loading private key .*secondary.key: key values mismatch' \
    "${pri_base[@]}" "${pri_tls[@]}" --key "$CERTS/secondary.key"

note "strict values"
refuse sec 2 "--listen '127.0.0.1:99999': not HOST:PORT" "${sec_tls[@]}" \
    "${sec_base[@]}" --listen 127.0.0.1:99999
refuse pri 2 "--connect '127.0.0.1:0': not HOST:PORT" "${pri_tls[@]}" \
    "${pri_base[@]}" --connect 127.0.0.1:0
refuse pri 2 "--connect '::1:$port': not HOST:PORT or \[IPv6\]:PORT" "${pri_tls[@]}" \
    "${pri_base[@]}" --connect "::1:$port"
refuse pri 2 "--interval 'abc': not a duration" "${pri_base[@]}" "${pri_tls[@]}" --interval abc
refuse pri 2 "--interval '10x': not a duration" "${pri_base[@]}" "${pri_tls[@]}" --interval 10x
refuse pri 2 "--interval 0: out of range \(1ms to 1h\)" "${pri_base[@]}" "${pri_tls[@]}" --interval 0
refuse pri 2 "--peer-timeout-ms 400: out of range \(500ms to 1h\)" "${pri_base[@]}" "${pri_tls[@]}" \
    --peer-timeout-ms 400
refuse pri 2 "--peer-timeout-ms 1500 ms: must be at least twice --heartbeat-ms \(1000 ms\)" \
    "${pri_base[@]}" "${pri_tls[@]}" --peer-timeout-ms 1500ms --heartbeat-ms 1s
refuse sec 2 "--heartbeat-timeout 400ms: out of range \(500ms to 1h\)" "${sec_base[@]}" \
    "${sec_tls[@]}" --heartbeat-timeout 400ms
refuse sec 2 "--heartbeat-ms 50: out of range \(100ms to 1m\)" "${sec_base[@]}" \
    "${sec_tls[@]}" --heartbeat-ms 50
refuse sec 2 "--peer-timeout-ms 5000 ms: must be at least twice --heartbeat-ms \(5000 ms\)" \
    "${sec_base[@]}" "${sec_tls[@]}" --heartbeat-ms 5s
refuse sec 2 "--on-failover is empty" "${sec_base[@]}" "${sec_tls[@]}" --on-failover ''
refuse sec 2 "--hook-timeout 0: out of range \(100ms to 1h\)" "${sec_base[@]}" "${sec_tls[@]}" \
    --hook-timeout 0
refuse sec 2 "--handshake-timeout '-1': not a duration" "${sec_base[@]}" "${sec_tls[@]}" \
    --handshake-timeout -1
refuse sec 2 "--max-payload 16M: out of range \(512 to 8M bytes\)" "${sec_base[@]}" \
    "${sec_tls[@]}" --max-payload 16M
refuse sec 2 "--max-payload 1000: not a multiple of 512" "${sec_base[@]}" "${sec_tls[@]}" \
    --max-payload 1000
refuse pri 2 "--max-payload 6K: not a multiple of 4096" "${pri_base[@]}" "${pri_tls[@]}" \
    --max-payload 6K
refuse pri 2 "--max-payload '1Q': not a size" "${pri_base[@]}" "${pri_tls[@]}" --max-payload 1Q
refuse sec 2 "--log-level 'loud': not err, warn, info or debug" "${sec_base[@]}" \
    "${sec_tls[@]}" --log-level loud
refuse sec 2 "unrecognized option '--bogus'" "${sec_base[@]}" "${sec_tls[@]}" --bogus
refuse pri 2 "unexpected argument 'extra'" "${pri_base[@]}" "${pri_tls[@]}" extra
refuse sec 2 '--device is required' --listen "127.0.0.1:$port" --state-dir "$WORKDIR/sec.state" \
    --control "$WORKDIR/sec.ctl" "${sec_tls[@]}"
refuse pri 2 '--writelog is empty' "${pri_base[@]}" "${pri_tls[@]}" --writelog ""

note "runtime failures exit 1"
refuse pri 1 'cannot resolve no-such-host.invalid' "${pri_base[@]}" "${pri_tls[@]}" \
    --connect "no-such-host.invalid:$port"

note "$cases refusals, each before anything started"

note "values with units are taken"
ver=$("$SECONDARY" --version) || fail "blkship-secondary --version failed"
[[ $ver =~ ^blkship-secondary\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "blkship-secondary --version printed '$ver'"
ver=$("$PRIMARY" --version) || fail "blkship-primary --version failed"
[[ $ver =~ ^blkship-primary\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "blkship-primary --version printed '$ver'"
start_secondary --port "$port" sec "$rep" --max-payload 64K --peer-timeout-ms 5s --heartbeat-ms 250 \
    --hook-timeout 2s --on-failover true --resource vm-1 \
    --handshake-timeout 2500ms --crl "$CERTS/ca.crl"
expect_alive "$SEC_PID" blkship-secondary
start_primary pri "$WORKDIR/log_none.ctl" "$SEC_ADDR" --interval 100ms --max-payload 64K \
    --heartbeat-timeout 0x5 --crl "$CERTS/ca.crl"
expect_alive "$PRI_PID" blkship-primary
