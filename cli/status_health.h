/* Whether a resource is healthy, from an agent's status reply: the exit
 * status of `blkship status`, for scripts and monitoring (documented in
 * blkship(8), EXIT STATUS).  Pure, like status_view.h. */
#ifndef BLKSHIP_CLI_STATUS_HEALTH_H
#define BLKSHIP_CLI_STATUS_HEALTH_H

#include <stddef.h>

enum bs_health {
    BS_HEALTH_OK = 0,         /* replicating: the replica follows the disk */
    BS_HEALTH_DEGRADED = 3,   /* no replication now: no peer, no write log, promoted */
    BS_HEALTH_SYNCING = 4,    /* connected, but the replica is not yet a copy (full or
                               * checksum resync, or not consistent) */
    BS_HEALTH_SPLIT = 5,      /* split brain, or the peer was promoted: an operator decides */
};

/* The health of reply[0, len) (a status that bs_status_view accepted),
 * with a one-line reason in why.  -EBADMSG if it is not a status object. */
int bs_status_health(const char *reply, size_t len, char *why, size_t size);

#endif
