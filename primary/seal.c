/* blkship-primary and the write log: connecting to it, sealing it, and
 * taking each chunk it exports into the dirty bitmap, durably, before the
 * log is told it may forget the chunk.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "primary/primary.h"

#define MOD "primary"
#include "common/state.h"

void log_down(struct primary *p, const char *why)
{
    if (!p->log)
        return;
    BS_WARN(MOD, "lost the write log (%s); reconnecting", why);
    /* Frames queued on the link point into the log's shared memory, which
     * goes away with the log link: the replication link goes first. */
    link_down(p, "the write log is gone");
    log_link_close(p->log);
    p->log = NULL;
    p->sealing = false;
    epoch_log_lost(p);
    primary_notify(p);
    primary_event(p, "log-lost", why);
    /* Reads the log had not answered will never be: their grains go back
     * to the bitmap. */
    for (unsigned i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->state == SLOT_READING) {
            if (!s->hash) /* a checksum range is asked again (link_down) */
                bs_dirty_requeue(p->dirty, s->first, s->n);
            slot_release(p, s);
        }
    }
    uv_timer_start(&p->log_retry, on_log_retry, 1000, 0);
}

static void seal_step(struct primary *p, const char *cmd)
{
    int r = log_link_export(p->log, cmd);

    if (r < 0) {
        p->sealing = false;
        log_down(p, "cannot send a seal");
    }
}

static void seal_with(struct primary *p, uint32_t flags)
{
    p->seal_seq++;
    p->sealing = true;
    p->seal_record = flags & WL_SEAL_RECORD;
    if (log_link_seal(p->log, flags) < 0) {
        p->sealing = false;
        log_down(p, "cannot send a seal");
    }
}

void seal_start(struct primary *p)
{
    seal_with(p, 0);
}

void seal_record_start(struct primary *p)
{
    seal_with(p, WL_SEAL_RECORD);
}

/* While no epoch can be shipped (the link is down, or checkpoint mode
 * between checkpoints), the log is still drained into the bitmap, for the
 * record: what the log held is then durable here, and the status shows
 * it.  The next epoch hands those grains back with adds. */
static void on_drain_timer(uv_timer_t *t)
{
    struct primary *p = t->data;

    if (!p->log || !p->dirty || p->sealing || p->sync_running || p->ep_state != EP_IDLE ||
        p->stopping || !p->cow_ok ||
        (p->ls == LS_STREAMING && p->mode == MODE_ASYNC && !p->cs_active))
        return;
    if (verify_holds_seal(p)) {
        p->vf_seals_held++;
        return;
    }
    seal_with(p, WL_SEAL_RECORD);
}

void seal_drain_start(struct primary *p)
{
    uv_timer_start(&p->drain_timer, on_drain_timer, p->epoch_ms, p->epoch_ms);
}

/* Every chunk of the seal is in the bitmap (and the log has forgotten
 * them), or the seal stopped. */
static void seal_end(struct primary *p)
{
    p->sealing = false;
    verify_seal_done(p, !p->seal_record);
    if (p->seal_record)
        epoch_maybe_start(p);
    else
        epoch_sealed(p);
}

static void bitmap_sync_work(uv_work_t *req)
{
    struct primary *p = req->data;

    p->sync_result = bs_dirty_sync(p->dirty);
}

/* The merged chunk is durable in the bitmap: the log may forget it. */
static void bitmap_sync_done(uv_work_t *req, int status)
{
    struct primary *p = req->data;

    p->sync_running = false;
    if (status < 0 || p->sync_result < 0 || p->stopping || !p->log ||
        p->log_gen != p->sync_log_gen) {
        /* Not acknowledging keeps the chunk in the log: nothing is lost.
         * (A log lost meanwhile exports it again to its next client.) */
        if (p->log && p->log_gen == p->sync_log_gen)
            log_down(p, "the dirty bitmap could not be made durable");
        return;
    }
    seal_step(p, WL_CMD_NEXT);
}

/* The chunk's extents become ours, durably, before the log may forget
 * them (next acknowledges the chunk). */
static void on_log_export(void *opaque, const struct wl_export_reply *rep)
{
    struct primary *p = opaque;
    const struct wl_disk_range *area = log_link_extents(p->log);

    if (!memcmp(rep->tag, WL_CMD_SEAL, WL_CMD_LEN))
        p->ep_log_epoch = rep->epoch;
    else if (rep->epoch != p->ep_log_epoch) {
        log_down(p, "the log's sealed epoch changed between two chunks");
        return;
    }
    if (rep->flags & WL_EF_BROKEN)
        p->ep_broken = true;
    if (rep->extents && p->seal_record && p->ls != LS_STREAMING)
        gen_changed_alone(p, "the disk was written with no secondary connected");
    for (uint32_t i = 0; i < rep->extents; i++) {
        if (area[i].count == 0 || area[i].sector >= p->disk_sectors ||
            area[i].count > p->disk_sectors - area[i].sector) {
            log_down(p, "the log exported an extent outside the disk");
            return;
        }
        bs_dirty_mark(p->dirty, area[i].sector, area[i].count);
    }
    if (rep->extents == 0) {
        seal_end(p);
        return;
    }
    /* The msync runs in the thread pool; the log's "next" waits for it.
     * Nothing is shipped before the last chunk is in: a grain read before
     * its chunk arrived would be read again after the log counted it
     * read, from the disk as it is now. */
    p->sync_req.data = p;
    p->sync_log_gen = p->log_gen;
    if (uv_queue_work(p->loop, &p->sync_req, bitmap_sync_work, bitmap_sync_done) < 0) {
        log_down(p, "cannot start the dirty bitmap's sync");
        return;
    }
    p->sync_running = true;
}

static void on_log_adds(void *opaque, const struct wl_adds_reply *rep)
{
    epoch_on_adds(opaque, rep);
}

static void on_log_cowc(void *opaque, const struct wl_cowc_reply *rep)
{
    epoch_on_cowc(opaque, rep);
}

static void on_log_frozen(void *opaque, const struct wl_frze_reply *rep)
{
    demote_on_frozen(opaque, rep);
}

static void on_log_info(void *opaque, const struct wl_info_reply *rep)
{
    epoch_on_info(opaque, rep);
}

static void on_log_error(void *opaque, int err)
{
    struct primary *p = opaque;

    (void)err;
    log_down(p, "link error");
}

static const struct log_link_ops log_ops = {
    .on_export = on_log_export,
    .on_adds = on_log_adds,
    .on_cowc = on_log_cowc,
    .on_frozen = on_log_frozen,
    .on_info = on_log_info,
    .on_read = on_log_read,
    .on_kick_done = on_log_kick_done,
    .on_error = on_log_error,
};

static void on_log_connected(void *opaque, int status, struct log_link *l);

void on_log_retry(uv_timer_t *t)
{
    struct primary *p = t->data;
    int r;

    if (p->log || p->log_connecting || p->stopping)
        return;
    r = log_link_connect(p->loop, p->writelog_path, &log_ops, p, on_log_connected);
    if (r < 0) {
        BS_WARN(MOD, "cannot start connecting to the write log %s: %s", p->writelog_path,
                strerror(-r));
        uv_timer_start(&p->log_retry, on_log_retry, 1000, 0);
        return;
    }
    p->log_connecting = true;
}

/* The write log answered shmp and info (in the thread pool), or not. */
static void on_log_connected(void *opaque, int status, struct log_link *l)
{
    struct primary *p = opaque;
    const struct wl_info_reply *info;
    bool fresh = false;
    int r = status;

    p->log_connecting = false;
    if (r == 0 && p->stopping) {
        log_link_close(l);
        return;
    }
    if (r == 0) {
        p->log = l;
        p->log_gen++;
    }
    if (r < 0) {
        static unsigned attempts;
        if (attempts++ % 10 == 0)
            BS_WARN(MOD, "write log %s not available: %s; retrying", p->writelog_path,
                    strerror(-r));
        if (!p->stopping)
            uv_timer_start(&p->log_retry, on_log_retry, 1000, 0);
        return;
    }
    info = log_link_info(p->log);
    if (p->dirty && (info->disk_sectors != p->disk_sectors || info->grain_sectors != p->grain)) {
        BS_ERR(MOD, "the write log now describes another disk (%" PRIu64 " sectors, grain %u); "
                    "restart the agent", (uint64_t)info->disk_sectors, info->grain_sectors);
        log_link_close(p->log);
        p->log = NULL;
        uv_timer_start(&p->log_retry, on_log_retry, 10000, 0);
        return;
    }
    if (!p->dirty) {
        p->disk_sectors = info->disk_sectors;
        p->grain = info->grain_sectors;
        r = bs_dirty_open(p->dirty_path, p->disk_sectors, p->grain, &fresh, &p->dirty);
        if (r < 0) {
            BS_ERR(MOD, "cannot open the dirty bitmap %s: %s", p->dirty_path, strerror(-r));
            uv_stop(p->loop);
            return;
        }
        if (fresh && p->adopted) {
            /* A promoted replica's disk: it holds the epoch the promotion
             * recorded, and every change since went through this log. */
            bs_dirty_clear_todo(p->dirty);
            BS_INFO(MOD, "the promoted replica's disk: the bitmap starts empty and takes "
                         "every write since the promotion");
        } else if (fresh && !bs_id_is_zero(p->replica_id)) {
            /* Paired, but what the replica lacks is lost with the bitmap:
             * compare, rather than send everything. */
            csync_request(p, "no usable dirty bitmap");
            gen_changed_alone(p, "no usable dirty bitmap: the disk may have changed unrecorded");
            if (save_state(p) < 0) {
                uv_stop(p->loop);
                return;
            }
        } else if (fresh) {
            BS_INFO(MOD, "no usable dirty bitmap: the whole disk will be sent");
            p->full_resync_reason = "no usable dirty bitmap";
        }
    }
    if (p->log_id != info->log_id) {
        if (p->log_id != 0 && !fresh) {
            BS_WARN(MOD, "the write log restarted (log id %016" PRIx64 " -> %016" PRIx64
                         "): writes may have gone unlogged",
                    p->log_id, (uint64_t)info->log_id);
            csync_request(p, "the write log restarted");
            gen_changed_alone(p, "the write log restarted: unlogged writes may have changed the disk");
        }
        if (bs_dirty_sync(p->dirty) < 0) {
            uv_stop(p->loop);
            return;
        }
        p->log_id = info->log_id;
        save_state(p);
    }
    BS_INFO(MOD, "write log %s: %" PRIu64 " sectors, grain %u, log id %016" PRIx64,
            p->writelog_path, p->disk_sectors, p->grain, p->log_id);
    p->info_at_ms = uv_now(p->loop);
    primary_notify(p); /* READY=1: every write is recorded from here on */
    primary_event(p, "log-connected", p->writelog_path);
    /* An epoch is a point in time only if the log keeps the sealed image
     * while the guest writes on. */
    p->cow_ok = info->version >= 2 && (info->flags & WL_IF_COW);
    if (!p->cow_ok)
        BS_ERR(MOD, "the write log %s does not keep sealed epochs (protocol version %u, %s): "
                    "no epoch could be a point in time, so nothing is replicated; use a "
                    "writelog filter of version 2 with writelog-cow-max above 0",
               p->writelog_path, info->version,
               info->version >= 2 ? "copy-before-write off" : "no copy-before-write");
    p->cowc_inflight = p->cowc_again = p->info_inflight = false;
    if (p->cow_ok)
        epoch_request_cowc(p);
    /* Frames are built in the data area: its slots must fit our payload. */
    if (p->nslots == 0)
        setup_slots(p);
    if (p->ls == LS_IDLE && !uv_is_active((uv_handle_t *)&p->retry))
        uv_timer_start(&p->retry, on_retry, 0, 0);
    epoch_maybe_start(p);
}
