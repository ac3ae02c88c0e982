/* The primary's event stream (common/events.h): the link and the write log
 * report their own changes where they happen (link.c, seal.c); what is
 * derived from the state (a resync begun or done, a split brain, a
 * promoted peer, a demotion) is found here, by comparing it with what was
 * last reported: once a tick, and where such a change happens (a link up,
 * an epoch committed, a checksum resync done) so that one shorter than a
 * tick is not missed. */
#include <stdio.h>
#include <string.h>

#include "primary/primary.h"

static const char *resync_kind(const struct primary *p)
{
    if (p->cs_active)
        return "checksum";
    if (p->full_resync_reason)
        return "full";
    return "none";
}

void primary_event(struct primary *p, const char *event, const char *reason)
{
    bs_events_emit(&p->events, event, p->connect_addr, reason, p->committed_epoch);
}

void primary_events_tick(struct primary *p)
{
    const char *kind = resync_kind(p);

    if (!p->ev_resync)
        p->ev_resync = "none";
    /* A resync begins, and ends, on a link: while there is none it
     * waits, and its state is left as last reported. */
    if (p->ls == LS_STREAMING && strcmp(kind, p->ev_resync) != 0) {
        char why[256];
        if (strcmp(kind, "none") == 0) {
            snprintf(why, sizeof(why), "the %s resync is done", p->ev_resync);
            primary_event(p, "resync-done", why);
        } else {
            snprintf(why, sizeof(why), "%s: %s", kind,
                     p->cs_active ? (p->cs_reason ? p->cs_reason : "")
                                  : p->full_resync_reason);
            primary_event(p, "resync-started", why);
        }
        p->ev_resync = kind;
    }
    if (p->split_brain != p->ev_split_brain) {
        p->ev_split_brain = p->split_brain;
        primary_event(p, p->split_brain ? "split-brain" : "split-brain-resolved",
                      p->split_brain ? "both disks changed since they parted" : "");
    }
    if (p->peer_promoted != p->ev_peer_promoted) {
        p->ev_peer_promoted = p->peer_promoted;
        if (p->peer_promoted)
            primary_event(p, "peer-promoted", "the secondary was promoted");
    }
    if (p->demoted != p->ev_demoted) {
        p->ev_demoted = p->demoted;
        if (p->demoted)
            primary_event(p, "demoted", "this disk takes no more writes");
    }
}
