#!/usr/bin/env bash
# Frames from the secondary that make no sense.  With 4 MiB dirty, a fake
# secondary takes one session per case; each time, once the 4 MiB and
# their END_EPOCH have arrived (written nowhere), it sends
#   a DATA frame, a ZERO frame, a FLUSH frame, an END_EPOCH frame (kinds
#   only the primary sends),
#   a COMMITTED with count 1, the right COMMITTED with a spoiled CRC32C,
#   8 bytes of a header and then close_notify,
#   64 random bytes inside TLS, 64 random bytes on the TCP socket under TLS.
# Each time the primary must log what was wrong, drop the link, stay alive
# and clear nothing (acked_bytes unchanged, the 4 MiB still dirty, and the
# next session is sent them all again).  Then the real secondary converges.
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/fake-functions.sh"
fake_setup

fake_session kind-data 'bad frame from the secondary: data frame from the secondary'
fake_session kind-zero 'bad frame from the secondary: data frame from the secondary'
fake_session kind-flush 'bad frame from the secondary: flush from the secondary'
fake_session kind-end 'bad frame from the secondary: epoch control from the secondary'
fake_session commit-count 'bad frame from the secondary: non-zero count in a control frame'
fake_session commit-bad-crc 'bad CRC32C on a frame from the secondary'
fake_session truncated 'replication link to .* down: the secondary closed the connection'
fake_session random 'bad frame from the secondary: '
fake_session raw-garbage 'TLS read with .* failed'

converge
[ "$sent_final" = "$dirty0" ] || fail "the real secondary was sent $sent_final bytes; $dirty0 were dirty"
