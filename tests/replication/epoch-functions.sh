# Helpers for the epoch tests (bash), sourced after functions.sh.  Their
# epochs come from repl-peer's "epochs" case: epoch e is DATA frames of
# $frame_sectors sectors of byte (0x10 + e) & 0xff, contiguous from
# $first_sector, over a replica of zeroes; $expected is the image the
# replica must equal.
# shellcheck shell=bash disable=SC2154,SC2317

# epoch_image E [FRAMES]: writes FRAMES ($frames) frames of epoch E into
# $expected.
epoch_image() {
    local byte
    byte=$(printf '%03o' $(((0x10 + $1) & 0xff)))
    head -c $((${2:-$frames} * frame_sectors * 512)) /dev/zero | tr '\0' "\\$byte" |
        dd of="$expected" bs=512 seek="$first_sector" conv=notrunc status=none
}

# wait_epoch_state CONSISTENT APPLIED WHAT [OVERSIZE]: polls (the applier
# runs in the background) until $SEC_CTL's status says replica_consistent
# CONSISTENT at applied_epoch APPLIED (and oversize_epochs OVERSIZE when
# given); sets STATUS.
wait_epoch_state() {
    _epoch_state_is() {
        local s
        s=$(status "$SEC_CTL") || return 1
        [ "$(jget "$s" replica_consistent)" = "$1" ] && [ "$(jget "$s" applied_epoch)" = "$2" ] &&
            { [ -z "${3:-}" ] || [ "$(jget "$s" oversize_epochs)" = "$3" ]; }
    }
    poll_until 20 _epoch_state_is "$1" "$2" "${4:-}" ||
        fail "$3: expected replica_consistent $1 at applied_epoch $2${4:+, oversize_epochs $4}: $(status "$SEC_CTL")"
    STATUS=$(status "$SEC_CTL")
}
