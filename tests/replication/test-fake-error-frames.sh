#!/usr/bin/env bash
# ERROR frames from the secondary, one session per status code: 0 to 8 and
# 99 (none).  With 4 MiB dirty, a fake secondary receives the 4 MiB and
# their END_EPOCH (written nowhere) and then sends ERROR with the code.  The
# primary must log the code with its meaning, drop the link, stay alive and
# clear nothing; then the real secondary converges.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

meanings=([0]='ok' [1]='protocol version not supported' [2]='disk of another size'
          [3]='wrong replica' [4]='replica paired with another primary'
          [5]='another primary session is active' [6]='limits out of range'
          [7]='replica I/O error' [8]='protocol error' [99]='unknown status')
for code in 0 1 2 3 4 5 6 7 8 99; do
    fake_session "error-$code" "the secondary ended the session: ${meanings[code]} \($code\)"
done

converge
[ "$sent_final" = "$dirty0" ] || fail "the real secondary was sent $sent_final bytes; $dirty0 were dirty"
