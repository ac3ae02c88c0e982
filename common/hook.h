/* Operator hooks: commands an agent runs when something happens that a
 * toolstack or an operator must act on (docs/hooks.md).
 *
 * A hook is run with /bin/sh -c CMD in a session of its own, stdin from
 * /dev/null, with the agent's environment plus BLKSHIP_RESOURCE,
 * BLKSHIP_EVENT, BLKSHIP_ROLE, BLKSHIP_PEER, BLKSHIP_EPOCH,
 * BLKSHIP_GENERATION and BLKSHIP_REASON.  Every line it writes to stdout or stderr is logged.  It
 * gets the hook timeout; past it, its whole process group is killed.  Its
 * exit status is logged and counted; the agent decides nothing from it.
 * Nothing here ever blocks the loop: the agent goes on replicating while
 * a hook runs, fails or hangs.  At most BS_HOOKS_MAX run at once; an event
 * past that is logged and its hook not run.
 *
 * All functions run on the loop thread. */
#ifndef BLKSHIP_COMMON_HOOK_H
#define BLKSHIP_COMMON_HOOK_H

#include <stdint.h>
#include <uv.h>

#include "common/json.h"

#define BS_HOOKS_MAX 4
#define BS_HOOK_DEFAULT_TIMEOUT_MS 30000u

struct bs_hooks;

/* What one run is told, besides the resource and the role. */
struct bs_hook_event {
    const char *event;   /* BLKSHIP_EVENT, e.g. "failover" */
    const char *peer;    /* BLKSHIP_PEER: the peer's address, "" if none */
    uint64_t epoch;      /* BLKSHIP_EPOCH: the newest committed epoch */
    uint64_t generation; /* BLKSHIP_GENERATION: the data generation held */
    const char *reason;  /* BLKSHIP_REASON: one line, for humans */
};

/* resource and role are copied.  Returns NULL when out of memory. */
struct bs_hooks *bs_hooks_new(uv_loop_t *loop, const char *resource, const char *role,
                              unsigned timeout_ms);
/* Starts cmd for ev in the background.  Returns 0, or -errno when it could
 * not be started (logged). */
int bs_hooks_run(struct bs_hooks *h, const char *cmd, const struct bs_hook_event *ev);
/* Adds the counters ("running", "started", "succeeded", "failed",
 * "timed_out", "skipped", "last_event", "last_result") to b. */
void bs_hooks_status(const struct bs_hooks *h, struct bs_json_builder *b);
/* At shutdown: hooks still running keep the loop alive for the time they
 * have left and are then killed; h is freed once the last one is gone (at
 * once if none runs).  h must not be used afterwards. */
void bs_hooks_close(struct bs_hooks *h);

#endif
