#!/usr/bin/env bash
# test-point-in-time.sh with the replica in an RBD image of a one-node Ceph
# cluster: every replica the restarted secondary reports consistent, read
# back with `rbd export`, is a point in time of the writer's sequence.
# Six rounds unless told: each restart waits up to 10 s for the killed
# secondary's lock.
export BLKSHIP_PIT_TARGET=rbd BLKSHIP_PIT_KILLS=${BLKSHIP_PIT_KILLS:-6}
exec bash "$(dirname "$0")/test-point-in-time.sh"
