/* An agent's event stream, in the spirit of `drbdsetup events2`: what
 * changed, when, and why (a session begun or lost, a resync begun or
 * done, the replica consistent or not, a split brain, a promotion).
 *
 * Events are kept in a ring of the last BS_EVENTS_KEEP, each with a
 * sequence number.  A client asks "events AFTER" on the control socket
 * (an asynchronous verb, so its connection stays open as a session): the
 * reply is the first event numbered above AFTER, at once if there is one,
 * else when it happens.  "events" alone waits for the next new one.  A
 * client that fell behind by more than the ring gets the oldest kept,
 * with "missed" saying how many it lost.  Nothing here blocks the loop,
 * and a client that never asks again costs nothing. */
#ifndef BLKSHIP_COMMON_EVENTS_H
#define BLKSHIP_COMMON_EVENTS_H

#include <stdint.h>

#include "common/ctl.h"

#define BS_EVENTS_KEEP 256
#define BS_EVENTS_WAITERS 16

struct bs_event {
    uint64_t seq;
    uint64_t time_ms;          /* wall clock, milliseconds since the epoch */
    char event[32];            /* "connected", "disconnected", ... */
    char peer[96];
    char reason[192];
    uint64_t epoch;            /* the newest committed epoch then */
};

struct bs_events {
    const char *resource, *role;
    struct bs_event ring[BS_EVENTS_KEEP];
    uint64_t next_seq;         /* of the next event; 1 for the first */
    struct {
        struct bs_ctl_pending *pending;
        uint64_t after;
    } waiters[BS_EVENTS_WAITERS];
    unsigned nwaiters;
};

void bs_events_init(struct bs_events *e, const char *resource, const char *role);
/* Records an event (peer and reason may be NULL) and answers every client
 * waiting for it. */
void bs_events_emit(struct bs_events *e, const char *event, const char *peer,
                    const char *reason, uint64_t epoch);
/* The "events [AFTER]" verb (bs_ctl_add_async with e as the opaque). */
void bs_events_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
/* Answers every waiting client with a "stopping" event (before
 * bs_ctl_stop, which needs every request answered). */
void bs_events_close(struct bs_events *e, uint64_t epoch);

#endif
