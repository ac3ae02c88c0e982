#!/usr/bin/env bash
# test-point-in-time.sh with a copy-before-write pool of one grain: most
# epochs break while the writer writes, and none of them may ever reach the
# replica.
export BLKSHIP_PIT_COW_MAX=4K
exec bash "$(dirname "$0")/test-point-in-time.sh"
