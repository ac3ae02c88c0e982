/* The event ring and its waiting clients (see events.h). */
#include "common/events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/json.h"

static uint64_t wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void bs_events_init(struct bs_events *e, const char *resource, const char *role)
{
    memset(e, 0, sizeof(*e));
    e->resource = resource;
    e->role = role;
    e->next_seq = 1;
}

static void answer(struct bs_events *e, struct bs_ctl_pending *pending, const struct bs_event *ev,
                   uint64_t missed)
{
    struct bs_json_builder b;
    char reply[4096];
    ssize_t n;

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    bs_json_add_u64(&b, "seq", ev->seq);
    bs_json_add_u64(&b, "time_ms", ev->time_ms);
    bs_json_add_str(&b, "resource", e->resource ? e->resource : "");
    bs_json_add_str(&b, "role", e->role);
    bs_json_add_str(&b, "event", ev->event);
    bs_json_add_str(&b, "peer", ev->peer);
    bs_json_add_str(&b, "reason", ev->reason);
    bs_json_add_u64(&b, "committed_epoch", ev->epoch);
    bs_json_add_u64(&b, "missed", missed);
    n = bs_json_finish(&b, reply, sizeof(reply)); /* with its newline */
    if (n < 0 || (size_t)n >= sizeof(reply)) {
        bs_ctl_answer(pending, reply, BS_CTL_MAX_REPLY); /* an error object */
        return;
    }
    bs_ctl_answer(pending, reply, (size_t)n);
}

/* The first kept event above `after`, and how many above it were lost. */
static const struct bs_event *first_after(const struct bs_events *e, uint64_t after,
                                          uint64_t *missed)
{
    uint64_t oldest = e->next_seq > BS_EVENTS_KEEP ? e->next_seq - BS_EVENTS_KEEP : 1;
    uint64_t want = after + 1;

    *missed = 0;
    if (want >= e->next_seq)
        return NULL;
    if (want < oldest) {
        *missed = oldest - want;
        want = oldest;
    }
    return &e->ring[want % BS_EVENTS_KEEP];
}

void bs_events_emit(struct bs_events *e, const char *event, const char *peer,
                    const char *reason, uint64_t epoch)
{
    struct bs_event *ev = &e->ring[e->next_seq % BS_EVENTS_KEEP];
    unsigned kept = 0;

    *ev = (struct bs_event){ .seq = e->next_seq++, .time_ms = wall_ms(), .epoch = epoch };
    snprintf(ev->event, sizeof(ev->event), "%s", event);
    snprintf(ev->peer, sizeof(ev->peer), "%s", peer ? peer : "");
    snprintf(ev->reason, sizeof(ev->reason), "%s", reason ? reason : "");
    for (unsigned i = 0; i < e->nwaiters; i++) {
        uint64_t missed;
        const struct bs_event *first = first_after(e, e->waiters[i].after, &missed);
        if (first)
            answer(e, e->waiters[i].pending, first, missed);
        else
            e->waiters[kept++] = e->waiters[i];
    }
    e->nwaiters = kept;
}

void bs_events_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct bs_events *e = opaque;
    const char *arg = request + strlen("events");
    uint64_t after = e->next_seq - 1, missed;
    bool stale;
    const struct bs_event *first;
    char *end;

    while (*arg == ' ')
        arg++;
    if (*arg) {
        after = strtoull(arg, &end, 10);
        if (end == arg || *end) {
            static const char bad[] = "{ \"schema\": 1, \"error\": \"usage: events [AFTER]\" }\n";
            bs_ctl_answer(pending, bad, sizeof(bad) - 1);
            return;
        }
    }
    /* A number this agent has not reached comes from an earlier run of it
     * (the numbers start at 1 with each): all it keeps is news. */
    stale = after >= e->next_seq;
    if (stale)
        after = 0;
    first = first_after(e, after, &missed);
    if (first) {
        answer(e, pending, first, missed);
        return;
    }
    if (e->nwaiters == BS_EVENTS_WAITERS) {
        /* The oldest watcher yields: it is told to ask again. */
        static const char busy[] =
            "{ \"schema\": 1, \"error\": \"too many clients wait for events; ask again\" }\n";
        bs_ctl_answer(e->waiters[0].pending, busy, sizeof(busy) - 1);
        memmove(&e->waiters[0], &e->waiters[1], sizeof(e->waiters[0]) * (e->nwaiters - 1));
        e->nwaiters--;
    }
    e->waiters[e->nwaiters].pending = pending;
    e->waiters[e->nwaiters].after = after;
    e->nwaiters++;
}

void bs_events_close(struct bs_events *e, uint64_t epoch)
{
    bs_events_emit(e, "stopping", NULL, "the agent is shutting down", epoch);
}
