/* What systemd is told about the primary (common/notify.h): ready once it
 * holds its write log, since from then on every write the guest makes is
 * recorded for the replica; the status line says what the replication is
 * doing now, and why not when it is not. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "primary/primary.h"

/* The grains left to send, in bytes. */
static uint64_t left_bytes(const struct primary *p)
{
    if (!p->dirty || !p->grain)
        return 0;
    return bs_dirty_todo_grains(p->dirty) * (uint64_t)p->grain * BSR_SECTOR_SIZE;
}

void primary_status_line(const struct primary *p, char *buf, size_t size)
{
    uint64_t total = p->disk_sectors * BSR_SECTOR_SIZE;
    uint64_t left = left_bytes(p);

    if (left > total)
        left = total;
    if (p->demoted || p->resolved_discard)
        snprintf(buf, size, "demoted: this disk takes no more writes and is not replicated");
    else if (!p->log)
        snprintf(buf, size, "waiting for the write log %s", p->writelog_path);
    else if (p->split_brain)
        snprintf(buf, size, "SPLIT BRAIN with %s: replication stopped until resolved",
                 p->connect_addr);
    else if (p->peer_promoted)
        snprintf(buf, size, "the secondary %s was promoted: not replicating", p->connect_addr);
    else if (p->ls != LS_STREAMING && p->last_down[0])
        snprintf(buf, size, "disconnected from %s: %s", p->connect_addr, p->last_down);
    else if (p->ls != LS_STREAMING)
        snprintf(buf, size, "connecting to %s", p->connect_addr);
    else if (p->cs_active)
        snprintf(buf, size, "checksum resync with %s: %.1f%% compared", p->connect_addr,
                 total ? 100.0 * (double)p->cs_done * BSR_SECTOR_SIZE / (double)total : 0.0);
    else if (p->full_resync_reason && total)
        snprintf(buf, size, "syncing to %s: %.1f%% (full sync: %s)", p->connect_addr,
                 100.0 * (double)(total - left) / (double)total, p->full_resync_reason);
    else
        snprintf(buf, size, "replicating to %s: committed epoch %" PRIu64 ", %" PRIu64
                            " bytes to send",
                 p->connect_addr, p->committed_epoch, left);
}

void primary_xen_publish(struct primary *p)
{
    struct bs_xen_state st;

    if (!p->xen)
        return;
    memset(&st, 0, sizeof(st));
    snprintf(st.role, sizeof(st.role), "primary");
    if (p->stopping)
        snprintf(st.state, sizeof(st.state), "stopped");
    else
        primary_status_line(p, st.state, sizeof(st.state));
    snprintf(st.disk_state, sizeof(st.disk_state), "%s", primary_disk_state(p));
    snprintf(st.peer, sizeof(st.peer), "%s", p->connect_addr);
    st.connected = p->ls == LS_STREAMING;
    st.committed_epoch = p->committed_epoch;
    st.rpo_ms = uv_now(p->loop) - (p->committed_seal_ms ? p->committed_seal_ms : p->start_ms);
    bs_xen_publish(p->xen, &st);
}

const char *primary_disk_state(const struct primary *p)
{
    /* The replica as this side knows it: a copy that follows the disk
     * (changes may be on their way), one being made, or not known yet. */
    return p->cs_active || p->full_resync_reason ? "syncing"
           : p->committed_epoch                  ? "consistent"
                                                 : "unknown";
}

void primary_notify(struct primary *p)
{
    char line[BS_NOTIFY_STATUS_MAX];

    primary_status_line(p, line, sizeof(line));
    if (p->log)
        bs_notify_ready(&p->notify, line);
    else if (p->notify.ready)
        bs_notify_status(&p->notify, line);
}
