/* blkship-primary's demotion (docs/failover.md, "Demote"): `blkship demote`
 * turns this disk into the replica of the side that was promoted, keeping
 * what the bitmap knows, so that the new primary resends only what
 * differs.
 *
 * The order is what makes the bitmap complete:
 *   1. no more connects, and none may be streaming;
 *   2. the write log is frozen (frze): every later write fails, and every
 *      write that reached the disk was marked in the log before;
 *   3. a seal for the record that starts after the freeze drains the log
 *      into the bitmap, durably;
 *   4. the bitmap's dirty extents go to demoted.changes, and then
 *      primary.state says "role demoted" (format 2, which this agent
 *      refuses to start on) with the generation the changes are against.
 * A checksum resync that was due (the log restarted, the bitmap was
 * lost) means the bitmap is not complete: the state then says "changes
 * checksum" and the secondary compares by checksums instead.
 * blkship-secondary, started on this state directory, takes both.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/changes.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/log.h"
#include "primary/primary.h"

#define MOD "primary"
#define DEMOTE_POLL_MS 20
#define DEMOTE_TIMEOUT_MS 30000

static void reply_error(struct bs_ctl_pending *pending, const char *why)
{
    struct bs_json_builder b;
    char reply[4608];
    ssize_t n;

    bs_json_begin(&b);
    bs_json_add_str(&b, "error", why);
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
}

static void answer(struct primary *p, const char *error)
{
    struct bs_json_builder b;
    char reply[2048], gen[24];
    ssize_t n;

    if (!p->dm_pending)
        return;
    if (error) {
        reply_error(p->dm_pending, error);
        p->dm_pending = NULL;
        return;
    }
    bs_json_begin(&b);
    {
        snprintf(gen, sizeof(gen), "%016" PRIx64, p->dm_line);
        bs_json_add_bool(&b, "demoted", true);
        bs_json_add_str(&b, "generation", gen);
        bs_json_add_str(&b, "changes", p->dm_checksum ? "checksum" : "bitmap");
        bs_json_add_u64(&b, "changed_bytes", p->dm_changed_bytes);
        bs_json_add_str(&b, "next_1", "stop nbdkit for this disk (its write log is frozen: "
                                      "every write fails); this agent has stopped");
        bs_json_add_str(&b, "next_2", "start blkship-secondary on this disk with this same "
                                      "--state-dir: it sends these changes in its handshake");
        bs_json_add_str(&b, "next_3", "on the promoted host, start blkship-primary on the "
                                      "promoted replica's --state-dir, towards this host: it "
                                      "resends what it wrote since the promotion and what "
                                      "this disk changed, nothing else");
    }
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(p->dm_pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
    p->dm_pending = NULL;
}

static void fail(struct primary *p, const char *why)
{
    BS_ERR(MOD, "demote failed: %s", why);
    uv_timer_stop(&p->dm_timer);
    p->dm_state = DM_NONE;
    answer(p, why);
}

/* The bitmap's dirty grains as extents, clipped to the disk. */
static int write_changes(struct primary *p)
{
    size_t room = 1024, n = 0;
    struct bs_changes c = { .disk_sectors = p->disk_sectors };
    uint64_t pos = 0, first, len;
    int r;

    c.entries = malloc(room * BS_CHANGES_ENTRY_LEN);
    if (!c.entries)
        return -ENOMEM;
    p->dm_changed_bytes = 0;
    while (bs_dirty_next_todo(p->dirty, &pos, &first, &len)) {
        uint64_t s = first * p->grain, end = (first + len) * p->grain;
        if (end > p->disk_sectors)
            end = p->disk_sectors;
        while (s < end) {
            uint64_t k = end - s > UINT32_MAX ? UINT32_MAX : end - s;
            if (n == room) {
                uint8_t *more;
                if (room >= BS_CHANGES_MAX) {
                    free(c.entries);
                    return -E2BIG;
                }
                more = realloc(c.entries, 2 * room * BS_CHANGES_ENTRY_LEN);
                if (!more) {
                    free(c.entries);
                    return -ENOMEM;
                }
                c.entries = more;
                room *= 2;
            }
            bs_changes_put(c.entries, n++, s, (uint32_t)k);
            p->dm_changed_bytes += k * BSR_SECTOR_SIZE;
            s += k;
        }
    }
    c.n = n;
    r = bs_changes_write(p->changes_path, &c);
    free(c.entries);
    return r;
}

static void finish(struct primary *p)
{
    int r;

    uv_timer_stop(&p->dm_timer);
    p->dm_line = p->bitmap_generation ? p->bitmap_generation : p->generation;
    p->dm_checksum = p->cs_active;
    p->dm_changed_bytes = (bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty)) *
                          grain_bytes(p); /* whatever the changes' form */
    if (!p->dm_checksum) {
        r = write_changes(p);
        if (r == -E2BIG) {
            BS_WARN(MOD, "the bitmap has more than %u extents: the replica-to-be will be "
                         "compared by checksums", BS_CHANGES_MAX);
            p->dm_checksum = true;
        } else if (r < 0) {
            char why[4400];
            snprintf(why, sizeof(why), "cannot write %s: %s; nothing changed", p->changes_path,
                     strerror(-r));
            fail(p, why);
            return;
        }
    }
    p->demoted = true;
    if (save_state(p) < 0) {
        p->demoted = false;
        fail(p, "cannot record the demotion in primary.state; nothing changed");
        return;
    }
    p->dm_state = DM_DONE;
    BS_WARN(MOD, "DEMOTED: this disk is to become the replica of %s; its changes against "
                 "generation %016" PRIx64 " (%s, %" PRIu64 " bytes) are recorded for "
                 "blkship-secondary; the write log stays frozen; stopping",
            p->connect_addr, p->dm_line, p->dm_checksum ? "to be found by checksums" : "bitmap",
            p->dm_changed_bytes);
    answer(p, NULL);
    /* Nothing is left to do here: the next agent on this disk is a
     * secondary.  The reply goes out before the loop stops. */
    uv_timer_start(&p->dm_timer, demote_stop_timer, 200, 0);
}

void demote_stop_timer(uv_timer_t *t)
{
    struct primary *p = t->data;

    p->stopping = true;
    uv_stop(p->loop);
}

/* Waits for a seal for the record that began after the freeze to end with
 * the log still there, then finishes. */
static void on_poll(uv_timer_t *t)
{
    struct primary *p = t->data;

    if (!p->log) {
        fail(p, "the write log was lost while it was being drained; run demote again once "
                "nbdkit serves the disk (a new log means a checksum resync)");
        return;
    }
    if (uv_now(p->loop) - p->dm_start_ms > DEMOTE_TIMEOUT_MS) {
        fail(p, "the write log was not drained within 30 s; nothing changed (the log stays "
                "frozen until nbdkit restarts)");
        return;
    }
    if (p->dm_state != DM_DRAINING || p->sealing || p->sync_running || p->ep_state != EP_IDLE)
        return;
    if (p->seal_seq > p->dm_seal_after) {
        if (bs_dirty_inflight_grains(p->dirty) != 0)
            return; /* a failed epoch's grains go back first */
        finish(p);
        return;
    }
    if (verify_holds_seal(p))
        return;
    seal_record_start(p);
}

void demote_on_frozen(struct primary *p, const struct wl_frze_reply *rep)
{
    if (p->dm_state != DM_FREEZING)
        return;
    BS_INFO(MOD, "demote: the write log is frozen (%" PRIu64 " writes refused so far); "
                 "draining it into the bitmap", rep->refused);
    p->dm_state = DM_DRAINING;
    p->dm_seal_after = p->seal_seq;
}

void demote_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct primary *p = opaque;
    const char *why = NULL;
    int r;

    if (strcmp(request, "demote") != 0)
        why = "usage: demote";
    else if (p->dm_state == DM_DONE)
        why = "already demoted";
    else if (p->dm_state != DM_NONE || p->dm_pending)
        why = "a demote is in progress";
    else if (p->ls == LS_STREAMING)
        why = "a secondary has a session with this primary: its replica is of this disk. "
              "Demote only once the other side was promoted (it refuses us, or says split brain)";
    else if (!p->log || !p->dirty)
        why = "not connected to the write log: the log must be drained into the bitmap "
              "first (start nbdkit with the writelog filter for this disk)";
    else if (p->vf)
        why = "a verify is running; cancel it or wait";
    if (why) {
        reply_error(pending, why);
        return;
    }
    r = log_link_freeze(p->log);
    if (r < 0) {
        reply_error(pending, r == -ENOTSUP ? "the writelog filter is older than protocol "
                                             "version 3: it cannot be frozen"
                                           : "cannot send frze to the write log");
        return;
    }
    /* From here this disk no longer offers itself as a primary. */
    p->resolved_discard = true;
    uv_timer_stop(&p->retry);
    if (p->ls != LS_IDLE) {
        link_down(p, "demoting this disk");
        uv_timer_stop(&p->retry);
    }
    BS_WARN(MOD, "demote asked for: no more connects; freezing the write log");
    p->dm_pending = pending;
    p->dm_state = DM_FREEZING;
    p->dm_start_ms = uv_now(p->loop);
    uv_timer_start(&p->dm_timer, on_poll, DEMOTE_POLL_MS, DEMOTE_POLL_MS);
}

void demote_status(const struct primary *p, struct bs_json_builder *b)
{
    static const char *const names[] = { "none", "freezing", "draining", "demoted" };

    bs_json_add_str(b, "demote", names[p->dm_state]);
}
