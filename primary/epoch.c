/* blkship-primary's epochs (docs/epochs.md, section 5): when to seal, the
 * steps from a seal to a commit, and the checkpoint requests that wait
 * for one.
 *
 * One epoch at a time, from its seal to its commit:
 *   EP_IDLE -> EP_PRECOPY    with much dirty in the bitmap of its own (a full
 *                            sync, a resync), it is sent first, unsealed:
 *                            only what changes meanwhile needs the seal's
 *                            protection (a grain may then be sent twice in
 *                            one epoch; the later copy lands last)
 *   EP_IDLE -> EP_ADDING     the grains the bitmap holds of its own (left
 *                            over from a lost link, a restart, an aborted
 *                            epoch) go to the log with `adds`, so that the
 *                            seal puts them under copy-before-write too
 *   EP_ADDING -> EP_SEALING  `seal`, then `next` until the log has handed
 *                            over every chunk (seal.c)
 *   EP_SEALING -> EP_SHIPPING  the pump reads every dirty grain through the
 *                            ring (the log serves the disk as it was at the
 *                            seal) and sends it
 *   EP_SHIPPING -> EP_CHECKING  nothing left to read: `cowc` says whether
 *                            copy-before-write held for the whole epoch
 *                            (after the last read nothing can break it)
 *   EP_CHECKING -> EP_COMMITTING  END_EPOCH; or ABORT_EPOCH when it broke:
 *                            its grains are due again, in the next epoch
 *   EP_COMMITTING -> EP_IDLE  COMMITTED: the epoch's grains are clean
 *
 * Keeping one epoch uncommitted at a time keeps one inflight bit per
 * grain: at a commit, every inflight grain belongs to that epoch.  A
 * grain written after the seal is in the log's live map, not in our
 * bitmap, until the next seal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ctl.h"
#include "common/json.h"
#include "common/log.h"
#include "primary/primary.h"
#include "primary/writelog/wl_json.h"

#define MOD "primary"

static const char *const state_names[] = { "idle",     "precopy",  "adding",    "sealing",
                                           "shipping", "checking", "committing" };

/* ---- Checkpoint requests ------------------------------------------------- */

static void answer(struct waiter *w, const char *error, uint64_t epoch, uint64_t now)
{
    struct bs_json_builder b;
    char reply[512];
    ssize_t n;

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (error) {
        bs_json_add_str(&b, "error", error);
    } else {
        bs_json_add_u64(&b, "epoch", epoch);
        bs_json_add_u64(&b, "latency_ms", now - w->t0_ms);
    }
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(w->pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
}

/* Answers (and removes) the waiters that `pick` selects. */
static void answer_where(struct primary *p, bool (*pick)(const struct waiter *, uint64_t),
                         uint64_t arg, const char *error, uint64_t epoch)
{
    uint64_t now = uv_now(p->loop);
    unsigned j = 0;

    for (unsigned i = 0; i < p->nwaiters; i++) {
        struct waiter *w = &p->waiters[i];
        if (pick(w, arg))
            answer(w, error, epoch ? epoch : w->epoch, now);
        else
            p->waiters[j++] = *w;
    }
    p->nwaiters = j;
}

static bool up_to(const struct waiter *w, uint64_t epoch)
{
    return w->epoch && w->epoch <= epoch;
}

static bool any(const struct waiter *w, uint64_t unused)
{
    (void)w;
    (void)unused;
    return true;
}

static bool expired(const struct waiter *w, uint64_t now)
{
    return w->deadline_ms <= now;
}

void epoch_fail_all(struct primary *p, const char *why)
{
    answer_where(p, any, 0, why, 0);
}

void epoch_tick(struct primary *p)
{
    answer_where(p, expired, uv_now(p->loop),
                 "timed out: the secondary did not commit the checkpoint in time", 0);
}

/* "checkpoint" or "checkpoint TIMEOUT_MS". */
void epoch_checkpoint_request(struct primary *p, const char *request,
                              struct bs_ctl_pending *pending)
{
    struct waiter w = { .pending = pending, .t0_ms = uv_now(p->loop) };
    uint64_t timeout = DEFAULT_CHECKPOINT_TIMEOUT_MS;
    const char *arg = request + strlen("checkpoint");

    if (*arg == ' ') {
        char *end;
        errno = 0;
        timeout = strtoull(arg + 1, &end, 10);
        if (errno || *end || end == arg + 1 || timeout == 0 || timeout > 3600000) {
            answer(&w, "usage: checkpoint [TIMEOUT_MS] (1 to 3600000)", 0, w.t0_ms);
            return;
        }
    }
    if (p->ls != LS_STREAMING) {
        answer(&w, "no link to the secondary", 0, w.t0_ms);
        return;
    }
    if (p->nwaiters == MAX_WAITERS) {
        answer(&w, "too many checkpoint requests waiting", 0, w.t0_ms);
        return;
    }
    w.deadline_ms = w.t0_ms + timeout;
    p->waiters[p->nwaiters++] = w;
    epoch_maybe_start(p);
}

/* ---- From one epoch to the next ------------------------------------------ */

static void on_epoch_timer(uv_timer_t *t)
{
    epoch_maybe_start(t->data);
}

/* Async mode, waiting for the next seal: is the log's live map past
 * --epoch-max-dirty?  Then the seal comes now. */
static void on_dirty_poll(uv_timer_t *t)
{
    struct primary *p = t->data;

    if (p->ep_state == EP_IDLE && p->log && p->ls == LS_STREAMING && p->mode == MODE_ASYNC)
        epoch_info_refresh(p);
}

void epoch_info_refresh(struct primary *p)
{
    if (p->info_inflight || log_link_info_refresh(p->log) < 0)
        return;
    p->info_inflight = true;
    p->info_req_ms = uv_now(p->loop);
}

/* --epoch-idle-ms: nothing has been written since the last seal (an info
 * asked after it says the log's maps are empty), nothing of the bitmap
 * waits to be sent and every epoch is committed.  A seal now would make an
 * empty epoch: a journal commit and a state record on the secondary, each
 * with its fsync, for nothing. */
static bool log_idle(const struct primary *p)
{
    return p->epoch_idle_ms > p->epoch_ms && p->info_req_ms > p->ep_sealed_ms &&
           !p->info_inflight && p->log_live_bytes == 0 && p->log_pending_bytes == 0 &&
           bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty) == 0 &&
           p->committed_epoch >= p->last_epoch;
}

void epoch_on_info(struct primary *p, const struct wl_info_reply *rep)
{
    p->info_inflight = false;
    p->info_at_ms = uv_now(p->loop);
    p->log_live_bytes = rep->live_grains * grain_bytes(p);
    p->log_pending_bytes = rep->pending_grains * grain_bytes(p);
    if (p->ep_state != EP_IDLE || p->mode != MODE_ASYNC)
        return;
    if (p->epoch_idle_ms > p->epoch_ms && p->ls == LS_STREAMING) {
        if (log_idle(p)) {
            /* The replica is the disk as of the request: every write
             * acknowledged before it would have been in the live map. */
            if (p->info_req_ms > p->committed_seal_ms)
                p->committed_seal_ms = p->info_req_ms;
        } else if (p->log_live_bytes) {
            epoch_maybe_start(p); /* a write after an idle stretch: sealed now */
            return;
        }
    }
    if (p->log_live_bytes < p->epoch_max_dirty || !p->epoch_max_dirty)
        return;
    BS_DEBUG(MOD, "%" PRIu64 " bytes dirty in the log: sealing before --epoch-ms", p->log_live_bytes);
    p->early_seals++;
    p->ep_sealed_ms = 0; /* the seal may come now */
    epoch_maybe_start(p);
}

static bool unassigned_waiters(const struct primary *p)
{
    for (unsigned i = 0; i < p->nwaiters; i++)
        if (!p->waiters[i].epoch)
            return true;
    return false;
}

static void adds_step(struct primary *p);

/* The number the next epoch takes: past every one this line used. */
static uint64_t next_epoch_number(const struct primary *p)
{
    return (p->last_epoch > p->committed_epoch ? p->last_epoch : p->committed_epoch) + 1;
}

void epoch_reserve_ahead(struct primary *p)
{
    uint64_t next = next_epoch_number(p);

    if (next + EPOCH_RESERVE / 4 >= p->epoch_reserve_target) {
        p->epoch_reserve_target = next + EPOCH_RESERVE;
        save_state_async(p);
    }
}

void epoch_maybe_start(struct primary *p)
{
    uint64_t now = uv_now(p->loop);

    if (p->ep_state != EP_IDLE || p->ls != LS_STREAMING || !p->log || !p->cow_ok ||
        p->stopping || p->sync_running || p->sealing || p->ext_expect)
        return;
    if (p->cs_active) {
        /* No epoch until the checksums have said what differs. */
        csync_pump(p);
        return;
    }
    /* A verify batch is read (and a finished one sent) only while no
     * epoch is open; no seal starts while its reads are out. */
    verify_pump(p);
    if (verify_holds_seal(p)) {
        p->vf_seals_held++;
        return;
    }
    if (!unassigned_waiters(p)) {
        if (p->mode == MODE_CHECKPOINT)
            return;
        /* Async: at most one seal per epoch_ms, unless the log holds more
         * than epoch_max_dirty (polled meanwhile with info). */
        unsigned interval = log_idle(p) ? p->epoch_idle_ms : p->epoch_ms;
        if (p->ep_sealed_ms && now - p->ep_sealed_ms < interval) {
            uint64_t wait = interval - (now - p->ep_sealed_ms);
            uv_timer_start(&p->epoch_timer, on_epoch_timer, wait, 0);
            if (wait > DIRTY_POLL_MS && (p->epoch_max_dirty || p->epoch_idle_ms > p->epoch_ms))
                uv_timer_start(&p->dirty_poll, on_dirty_poll, DIRTY_POLL_MS, DIRTY_POLL_MS);
            return;
        }
    }
    uint64_t next = next_epoch_number(p);
    /* The number must be reserved durably before END_EPOCH can carry it:
     * reserve ahead, and wait (state_done starts the epoch) if the
     * reservation is not on disk yet. */
    epoch_reserve_ahead(p);
    if (next >= p->epoch_reserved_durable)
        return;
    if (now - p->last_rx_ms > p->peer_timeout_ms) {
        /* After a stall of this process (stopped, or paused with its VM)
         * the timers run in the order they fell due, and the epoch's may
         * come before the heartbeat's: no epoch goes into a link already
         * silent past the timeout.  Writes made meanwhile are then a
         * change with no secondary (primary/generation.c). */
        char why[96];
        snprintf(why, sizeof(why), "secondary silent for %" PRIu64 " ms (peer timeout %u ms)",
                 now - p->last_rx_ms, p->peer_timeout_ms);
        link_down(p, why);
        return;
    }
    uv_timer_stop(&p->epoch_timer);
    uv_timer_stop(&p->dirty_poll);
    p->ep_number = next;
    p->last_epoch = p->ep_number;
    p->ep_broken = false;
    p->ep_bytes = 0;
    p->ep_acked_bytes = 0;
    p->ep_sealed_ms = now;
    p->ep_adds_pos = 0;
    /* Every request waiting now is answered by this epoch: its seal comes
     * after them. */
    for (unsigned i = 0; i < p->nwaiters; i++)
        if (!p->waiters[i].epoch)
            p->waiters[i].epoch = p->ep_number;
    if (bs_dirty_todo_grains(p->dirty) * grain_bytes(p) > PRECOPY_BYTES) {
        BS_INFO(MOD, "epoch %" PRIu64 ": %" PRIu64 " bytes dirty in the bitmap, sent before the "
                     "seal (pre-copy)", p->ep_number,
                bs_dirty_todo_grains(p->dirty) * grain_bytes(p));
        p->ep_state = EP_PRECOPY;
        pump(p);
        return;
    }
    p->ep_state = EP_ADDING;
    adds_step(p);
}

/* Hands the next export area's worth of the bitmap's own dirty grains to
 * the log; seals once none are left. */
static void adds_step(struct primary *p)
{
    struct wl_disk_range *area = log_link_area(p->log);
    uint64_t first, n, ngrains = bs_dirty_ngrains(p->dirty);
    /* A range counts sectors in 32 bits. */
    uint64_t max_grains = (UINT32_MAX / p->grain);
    uint32_t k = 0;
    int r;

    if (!area) {
        log_down(p, "the export area is busy at the start of an epoch");
        return;
    }
    while (k < WL_EXPORT_MAX && p->ep_adds_pos < ngrains &&
           bs_dirty_next_todo(p->dirty, &p->ep_adds_pos, &first, &n)) {
        while (n && k < WL_EXPORT_MAX) {
            uint64_t take = n < max_grains ? n : max_grains;
            uint64_t sector = first * p->grain;
            uint64_t end = (first + take) * p->grain;
            if (end > p->disk_sectors)
                end = p->disk_sectors;
            area[k++] = (struct wl_disk_range){ .sector = sector, .count = (uint32_t)(end - sector) };
            first += take;
            n -= take;
        }
        if (n)
            p->ep_adds_pos = first; /* the rest of this run goes in the next call */
    }
    if (k == 0) {
        p->ep_state = EP_SEALING;
        seal_start(p);
        return;
    }
    r = log_link_adds(p->log, k);
    if (r < 0)
        log_down(p, "cannot send adds");
}

void epoch_on_adds(struct primary *p, const struct wl_adds_reply *rep)
{
    (void)rep;
    if (p->ep_state != EP_ADDING) {
        log_down(p, "an adds reply came for no epoch");
        return;
    }
    adds_step(p);
}

void epoch_sealed(struct primary *p)
{
    if (p->ep_state != EP_SEALING)
        return;
    if (p->ls != LS_STREAMING) {
        /* The link went while sealing: the grains wait in the bitmap. */
        p->ep_state = EP_IDLE;
        return;
    }
    p->ep_state = EP_SHIPPING;
    p->ep_t_ms[0] = uv_now(p->loop);
    BS_DEBUG(MOD, "epoch %" PRIu64 " (log epoch %" PRIu64 ") sealed: %" PRIu64 " grains to ship",
             p->ep_number, p->ep_log_epoch, bs_dirty_todo_grains(p->dirty));
    pump(p);
}

void epoch_all_read(struct primary *p)
{
    if (p->ep_state == EP_PRECOPY) {
        /* In place, grains are sent again after the seal only once the
         * pre-copy's ACKs are in (flush.c); the last ACK pumps again. */
        if (p->in_place && p->sent_count) {
            flush_now(p);
            return;
        }
        /* The epoch's image is the one at its seal, which comes now. */
        p->ep_sealed_ms = uv_now(p->loop);
        p->ep_state = EP_ADDING;
        adds_step(p);
        return;
    }
    if (p->ep_state != EP_SHIPPING)
        return;
    p->ep_state = EP_CHECKING;
    p->ep_t_ms[1] = uv_now(p->loop);
    epoch_request_cowc(p);
}

void epoch_request_cowc(struct primary *p)
{
    bool for_check = p->ep_state == EP_CHECKING;

    if (!p->log)
        return;
    if (p->cowc_inflight) {
        /* Its answer may predate the epoch's last read: ask again after. */
        p->cowc_again = p->cowc_again || for_check;
        return;
    }
    if (log_link_cowc(p->log) < 0) {
        log_down(p, "cannot send cowc");
        return;
    }
    p->cowc_inflight = true;
    p->cowc_for_check = for_check;
}

static void abort_epoch(struct primary *p, const char *why)
{
    BS_WARN(MOD, "epoch %" PRIu64 " aborted: %s; its grains go into the next epoch", p->ep_number,
            why);
    send_ctrl(p, BSR_ABORT_EPOCH, p->ep_number);
    bs_dirty_requeue_all(p->dirty);
    flush_forget(p);
    p->epochs_aborted++;
    answer_where(p, up_to, p->ep_number, "broken epoch: copy-before-write ran out of room or time; "
                                         "ask again", 0);
    p->ep_state = EP_IDLE;
    p->ep_sealed_ms = 0; /* the next one may start at once */
    epoch_maybe_start(p);
}

void epoch_on_cowc(struct primary *p, const struct wl_cowc_reply *rep)
{
    bool for_check = p->cowc_for_check;

    p->cow = *rep;
    p->cowc_inflight = false;
    if (p->cowc_again) {
        p->cowc_again = false;
        epoch_request_cowc(p);
        return;
    }
    /* Only an answer to a question asked after the last read can vouch
     * for the epoch: a break can happen until then. */
    if (p->ep_state != EP_CHECKING || !for_check)
        return;
    if (p->ep_broken || rep->epoch != p->ep_log_epoch || (rep->flags & WL_EF_BROKEN)) {
        abort_epoch(p, rep->epoch != p->ep_log_epoch
                           ? "the log's sealed epoch changed under it"
                           : "the log could not keep its image (copy-before-write broken)");
        return;
    }
    send_ctrl(p, BSR_END_EPOCH, p->ep_number);
    if (p->ls != LS_STREAMING)
        return; /* link_down ran: the epoch is gone */
    p->ep_state = EP_COMMITTING;
    p->ep_t_ms[2] = uv_now(p->loop);
}

bool epoch_committed(struct primary *p, uint64_t epoch)
{
    uint64_t now = uv_now(p->loop);

    if (p->ep_state != EP_COMMITTING || epoch != p->ep_number) {
        if (p->ep_state == EP_COMMITTING)
            BS_ERR(MOD, "the secondary reports epoch %" PRIu64 " committed; epoch %" PRIu64
                        " is the one that awaits it", epoch, p->ep_number);
        else
            BS_ERR(MOD, "the secondary reports epoch %" PRIu64 " committed; no epoch awaits a "
                        "commit (epoch %" PRIu64 " is %s)", epoch, p->ep_number,
                   state_names[p->ep_state]);
        return false;
    }
    BS_DEBUG(MOD, "epoch %" PRIu64 " committed: %" PRIu64 " bytes in %" PRIu64 " ms from its "
                  "seal's start (sealed after %" PRIu64 ", read after %" PRIu64 ", ended after %"
                  PRIu64 ")", epoch, p->ep_bytes, now - p->ep_sealed_ms,
             p->ep_t_ms[0] - p->ep_sealed_ms, p->ep_t_ms[1] - p->ep_sealed_ms,
             p->ep_t_ms[2] - p->ep_sealed_ms);
    bs_dirty_acked_all(p->dirty);
    flush_forget(p);
    if (bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty) == 0)
        p->full_resync_reason = NULL; /* the replica holds the whole disk */
    /* The replica holds an image now: from here on it journals, and only
     * COMMITTED clears anything. */
    p->in_place = false;
    p->acked_bytes += p->ep_bytes - p->ep_acked_bytes;
    p->committed_epoch = epoch;
    primary_events_tick(p); /* a full sync done */
    p->committed_seal_ms = p->ep_sealed_ms;
    p->last_commit_ms = now - p->ep_sealed_ms;
    p->epochs_committed++;
    /* Only a session that commits resets the back-off: one that is
     * accepted and then fails must not turn into a reconnect storm. */
    p->backoff_ms = 0;
    save_state_async(p);
    answer_where(p, up_to, epoch, NULL, 0);
    p->ep_state = EP_IDLE;
    epoch_maybe_start(p);
    if (p->ep_state == EP_IDLE)
        schedule_pump(p);
    return true;
}

void epoch_link_lost(struct primary *p)
{
    if (p->ep_state == EP_PRECOPY || p->ep_state >= EP_SHIPPING)
        p->ep_state = EP_IDLE;
    /* An epoch still adding or sealing finishes taking the log's chunks
     * (seal.c) and then waits for the link. */
    answer_where(p, any, 0, "the link to the secondary was lost", 0);
    uv_timer_stop(&p->epoch_timer);
    uv_timer_stop(&p->dirty_poll);
}

void epoch_log_lost(struct primary *p)
{
    p->ep_state = EP_IDLE;
}

void epoch_status(struct primary *p, struct bs_json_builder *b)
{
    uint64_t now = uv_now(p->loop);
    struct bs_json_builder cow;

    bs_json_add_str(b, "mode", p->mode == MODE_ASYNC ? "async" : "checkpoint");
    bs_json_add_u64(b, "epoch", p->ep_state == EP_IDLE ? p->last_epoch : p->ep_number);
    bs_json_add_str(b, "epoch_state", state_names[p->ep_state]);
    bs_json_add_u64(b, "committed_epoch", p->committed_epoch);
    bs_json_add_u64(b, "epochs_committed", p->epochs_committed);
    bs_json_add_u64(b, "epochs_aborted", p->epochs_aborted);
    bs_json_add_u64(b, "last_epoch_ms", p->last_commit_ms);
    /* Every write that completed before the newest committed epoch's seal
     * is on the replica: the oldest write that may not be is younger. */
    bs_json_add_u64(b, "lag_ms", now - (p->committed_seal_ms ? p->committed_seal_ms : p->start_ms));
    /* --epoch-idle-ms (docs/resources.md): fields added. */
    bs_json_add_u64(b, "epoch_idle_ms", p->epoch_idle_ms > p->epoch_ms ? p->epoch_idle_ms : p->epoch_ms);
    bs_json_add_bool(b, "log_idle", log_idle(p));
    bs_json_add_u64(b, "checkpoints_waiting", p->nwaiters);
    bs_json_add_u64(b, "early_seals", p->early_seals);
    /* What the replica lacks: nothing, changes, or the whole disk (why). */
    bs_json_add_str(b, "resync",
                    p->cs_active            ? "checksum"
                    : p->full_resync_reason ? "full"
                    : p->dirty && bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty)
                        ? "bitmap"
                        : "none");
    bs_json_add_str(b, "resync_reason", p->cs_active            ? p->cs_reason
                                        : p->full_resync_reason ? p->full_resync_reason
                                                                : "");
    bs_json_add_u64(b, "peer_generation", p->peer_generation);
    bs_json_begin(&cow);
    bs_json_add_bool(&cow, "enabled", p->cow_ok);
    wl_json_add_cowc(&cow, &p->cow);
    bs_json_add_builder(b, "cow", &cow);
}
