#!/usr/bin/env bash
# Welcomes the primary must refuse.  With 4 MiB dirty, a fake secondary
# answers eleven sessions in a row with a welcome that is wrong in one way
# each: max_payload 0, over 8 MiB, not a multiple of 512; a disk size that
# differs; a bad magic; version 2; flags 0x8000; compressed frames the
# hello did not offer; a length field of 127; status 0
# with a reason of random bytes; and 64 bytes of a welcome, then
# the close.  Each must be refused with its reason in the primary's log and
# nothing sent after it (no frame reaches the fake, sent_bytes unchanged);
# the dirty bits are kept; and the primary backs off: no two attempts are
# less than 200 ms apart and, as no session ever made data durable, the
# back-off grows to its 5 s limit and stays there (the last three gaps at
# least 4 s).  Then the real secondary converges.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

lines=$(log_lines "$pri_log")
steps=(welcome-payload-0 welcome-payload-huge welcome-payload-odd welcome-size welcome-magic
       welcome-version welcome-flags welcome-zstd welcome-length welcome-reason welcome-short)
# What the primary must log for each, in the same order.
reasons=('limits we cannot use \(payload 0,'
         'limits we cannot use \(payload 16777216,'
         'limits we cannot use \(payload 4196,'
         "limits we cannot use \(payload [0-9]+, disk $((16 << 20 | 512))\)"
         'bad welcome from .*: bad magic'
         'the secondary speaks protocol version [0-9]+; we speak [0-9]+'
         'bad welcome from .*: unknown flags 0x8000'
         'bad welcome from .*: it takes compressed frames we did not offer'
         'bad welcome from .*: bad handshake length'
         'bad welcome from .*: the reason is not text'
         'closed before the welcome')
start_fake --wait 5 -- "${steps[@]}"
fake_done 90
for i in "${!steps[@]}"; do
    expect_primary_log "$lines" "${reasons[i]}" "${steps[i]}"
done
# Nothing after any welcome: the primary closed each session without a frame.
n=$(grep -c '^end: step [0-9]* closed by the primary after [0-9.]* s, 0 frames 0 bytes after the welcome$' "$FAKE_OUT" || true)
[ "$n" = 10 ] || fail "10 malformed welcomes should each have been closed at once with no frame sent:"$'\n'"$(grep '^end:' "$FAKE_OUT")"
expect_kept "after the malformed welcomes"
[ "$(field "$pri_ctl" sent_bytes)" = "$sent0" ] || fail "the primary sent data after a malformed welcome: $(status "$pri_ctl")"

# The attempts' times (seconds since the fake started): back-off, no storm.
mapfile -t at < <(sed -n 's/^accept: step [0-9]* [^ ]* at \([0-9.]*\)$/\1/p' "$FAKE_OUT")
[ "${#at[@]}" = "${#steps[@]}" ] || fail "${#at[@]} connection attempts seen, ${#steps[@]} expected"
gaps=$(for ((i = 1; i < ${#at[@]}; i++)); do echo "${at[i]} ${at[i - 1]}"; done | awk '{ printf "%.2f ", $1 - $2 }')
note "gaps between attempts (s): $gaps"
awk -v g="$gaps" 'BEGIN { n = split(g, a, " "); for (i = 1; i <= n; i++) if (a[i] < 0.2) exit 1;
                          for (i = n - 2; i <= n; i++) if (a[i] < 4) exit 1 }' ||
    fail "no back-off between refused sessions: gaps $gaps s"

converge
[ "$sent_final" = "$dirty0" ] || fail "the real secondary was sent $sent_final bytes; $dirty0 were dirty"
