/* The secondary's event stream (common/events.h): sessions report their
 * own changes (session.c); what is derived from the state (the replica
 * consistent or not, a split brain, a promotion) is found here once a
 * tick, by comparing it with what was last reported. */
#include <string.h>

#include "secondary/secondary.h"

void sec_event(struct secondary *sec, const char *event, const char *peer, const char *reason)
{
    bs_events_emit(&sec->events, event, peer, reason, sec->committed_epoch);
}

void sec_events_tick(struct secondary *sec)
{
    /* As the status counts it: an epoch being copied in from the journal
     * does not make the replica inconsistent in the stream. */
    const char *ds = sec_disk_state(sec);
    bool consistent = strcmp(ds, "consistent") == 0 || strcmp(ds, "applying") == 0;

    if (consistent != sec->ev_consistent) {
        sec->ev_consistent = consistent;
        sec_event(sec, consistent ? "consistent" : "inconsistent", sec->peer,
                  consistent ? "the replica is the primary's disk at the applied epoch"
                             : sec->note);
    }
    if (sec->split_brain != sec->ev_split_brain) {
        sec->ev_split_brain = sec->split_brain;
        sec_event(sec, sec->split_brain ? "split-brain" : "split-brain-resolved", sec->sb_peer,
                  sec->split_brain ? "the primary changed too after the promotion" : "");
    }
    if (sec->promoted != sec->ev_promoted) {
        sec->ev_promoted = sec->promoted;
        if (sec->promoted)
            sec_event(sec, "promoted", "", "the replica is released as a disk");
    }
}
