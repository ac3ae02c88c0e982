/* What systemd is told about the secondary (common/notify.h): ready once
 * it listens with its replica open; the status line says whom it
 * replicates from and what the replica holds, or why nobody. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "secondary/secondary.h"

void sec_status_line(const struct secondary *sec, char *buf, size_t size)
{
    const char *holds = sec->consistent ? "consistent" : "NOT consistent";
    bool streaming = sec->session && sec->session->accepted;

    if (sec->promoted)
        snprintf(buf, size, "promoted: the replica is released at committed epoch %" PRIu64,
                 sec->committed_epoch);
    else if (sec->split_brain)
        snprintf(buf, size, "SPLIT BRAIN with %s: nothing applied until resolved", sec->sb_peer);
    else if (streaming)
        snprintf(buf, size, "replicating from %s: committed epoch %" PRIu64 ", replica %s",
                 sec->peer, sec->committed_epoch,
                 sec->consistent ? "consistent" : "NOT consistent (being synced in place)");
    else if (sec->last_lost[0])
        snprintf(buf, size, "no primary (%s): replica at committed epoch %" PRIu64 ", %s",
                 sec->last_lost, sec->committed_epoch, holds);
    else
        snprintf(buf, size, "listening on %s: no primary yet; replica at committed epoch %" PRIu64
                            ", %s",
                 sec->listen_addr, sec->committed_epoch, holds);
}

const char *sec_disk_state(struct secondary *sec)
{
    if (epoch_replica_consistent(sec))
        return "consistent";
    /* A committed epoch being copied in from the journal: the device is
     * between two images for that while (so not "consistent"), and a crash
     * now replays it. */
    if (sec->apply_failed)
        return "inconsistent"; /* until a restart applies the journal again */
    if (sec->consistent && sec->applying && !sec->ap_inplace && !sec->ap_try_oversize)
        return "applying";
    return sec->session && sec->session->accepted ? "syncing" : "inconsistent";
}

void sec_xen_publish(struct secondary *sec)
{
    struct bs_xen_state st;

    if (!sec->xen)
        return;
    memset(&st, 0, sizeof(st));
    snprintf(st.role, sizeof(st.role), "secondary");
    if (sec->stopping)
        snprintf(st.state, sizeof(st.state), "stopped");
    else
        sec_status_line(sec, st.state, sizeof(st.state));
    snprintf(st.disk_state, sizeof(st.disk_state), "%s", sec_disk_state(sec));
    snprintf(st.peer, sizeof(st.peer), "%s", sec->session ? sec->peer : "");
    st.connected = sec->session && sec->session->accepted;
    st.committed_epoch = sec->committed_epoch;
    bs_xen_publish(sec->xen, &st); /* rpo-ms 0: only the primary knows it */
}

void sec_notify(struct secondary *sec)
{
    char line[BS_NOTIFY_STATUS_MAX];

    sec_status_line(sec, line, sizeof(line));
    bs_notify_status(&sec->notify, line);
}
