/* blkship promote (docs/failover.md): the secondary hands its replica over
 * to become a primary's disk.
 *
 *   1. Refused while a primary session is alive: a promoted replica must
 *      never be written by the primary it leaves.
 *   2. New sessions are refused from here on ("being promoted"); every
 *      committed epoch still in the journal is applied first, and what the
 *      journal holds of an uncommitted one is dropped.
 *   3. Refused, unless forced, when the replica then holds no committed
 *      epoch's image (a full sync or an oversize epoch written in place,
 *      an apply that failed): a forced promotion says what it risks.
 *   4. The replica is flushed and the state file records, durably, the
 *      promotion, a new generation (the old one kept as its history) and
 *      the epoch the replica holds.  From then on this state directory
 *      refuses to start a secondary (secondary.c, load_state).
 *   5. The listening socket is closed and the device released (its
 *      exclusive claim too); the reply gives the epoch, the generation and
 *      the next steps.  The agent stays up to answer status until stopped.
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/state.h"

#define MOD "secondary"
#define PROMOTE_POLL_MS 10
#define PROMOTE_SETTLE_MS 120000 /* for the applier to finish the journal */

static void answer(struct bs_ctl_pending *pending, struct secondary *sec, const char *error)
{
    struct bs_json_builder b;
    char reply[12288], gen[17], prev[17], step[4352];
    ssize_t n;

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (error) {
        bs_json_add_str(&b, "error", error);
    } else {
        snprintf(gen, sizeof(gen), "%016" PRIx64, sec->generation);
        snprintf(prev, sizeof(prev), "%016" PRIx64, sec->generation_prev);
        bs_json_add_u64(&b, "epoch", sec->promoted_epoch);
        bs_json_add_str(&b, "generation", gen);
        bs_json_add_str(&b, "previous_generation", prev);
        bs_json_add_str(&b, "device", sec->target.path);
        bs_json_add_str(&b, "resource", sec->resource);
        bs_json_add_bool(&b, "forced", sec->promote_forced);
        snprintf(step, sizeof(step),
                 "serve %s through nbdkit with the writelog filter (it is the disk now) and "
                 "start the guest on it",
                 sec->target.path);
        bs_json_add_str(&b, "next_1", step);
        bs_json_add_str(&b, "next_2",
                        "start blkship-primary for it on this agent's --state-dir (it takes "
                        "up this replica's data generation), --connect to the host that is to "
                        "hold the replica");
        bs_json_add_str(&b, "next_3",
                        "on that host (the old primary, once it is back): stop its guest, run "
                        "'blkship demote' on its blkship-primary, stop its nbdkit, and start "
                        "blkship-secondary on its disk with that primary's --state-dir: only "
                        "what differs is sent, found from both bitmaps (if that primary's "
                        "state is gone, use an empty --state-dir there and --initial-sync "
                        "checksum here: the checksums find it)");
        bs_json_add_str(&b, "next_4",
                        "leave this blkship-secondary running until the old primary is the "
                        "secondary: it refuses that primary if it comes back, and says split "
                        "brain if that primary's disk changed too; then stop it (its state "
                        "directory refuses to start a secondary)");
    }
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
}

static void fail(struct secondary *sec, const char *why)
{
    struct bs_ctl_pending *pending = sec->promote_pending;

    BS_ERR(MOD, "promote refused: %s", why);
    sec->promoting = false;
    sec->promote_pending = NULL;
    uv_timer_stop(&sec->promote_timer);
    answer(pending, sec, why);
}

static void promote_work(uv_work_t *req)
{
    struct secondary *sec = req->data;
    uint64_t gen = 0;
    int r;

    /* A replica whose reopening failed is closed: nothing to hand over. */
    r = sec->target.ops ? sec->target.ops->flush(&sec->target) : -EIO;
    if (r < 0) {
        BS_ERR(MOD, "promote: flushing %s: %s", sec->target.path, strerror(-r));
        sec->promote_result = r;
        return;
    }
    r = bs_generation_random(&gen);
    if (r < 0) {
        sec->promote_result = r;
        return;
    }
    pthread_mutex_lock(&sec->state_lock);
    sec->generation_prev = sec->generation;
    sec->generation = gen;
    sec->promoted_epoch = sec->applied_epoch;
    sec->st_promoted = true;
    r = sec_write_state_locked(sec);
    if (r < 0) {
        sec->st_promoted = false;
        sec->generation = sec->generation_prev;
    }
    pthread_mutex_unlock(&sec->state_lock);
    sec->promote_result = r;
}

static void promote_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    struct bs_ctl_pending *pending = sec->promote_pending;
    int r = status < 0 ? status : sec->promote_result;
    char why[256];

    if (r < 0) {
        snprintf(why, sizeof(why), "cannot record the promotion: %s; nothing changed",
                 strerror(-r));
        fail(sec, why);
        return;
    }
    sec->promote_pending = NULL;
    sec->promoting = false;
    sec->promoted = true;
    /* Its device is free.  The listener stays: a primary that comes back
     * is refused, and told of a split brain if it changed too. */
    if (sec->target.ops) /* NULL if a reopening after a failed apply failed */
        sec->target.ops->close(&sec->target);
    BS_WARN(MOD, "PROMOTED: %s holds committed epoch %" PRIu64 " (generation %016" PRIx64
                 ", was %016" PRIx64 ")%s; the device is released and no primary is accepted",
            sec->target.path, sec->promoted_epoch, sec->generation, sec->generation_prev,
            sec->promote_forced ? "; FORCED: it may be no point in time" : "");
    answer(pending, sec, NULL);
}

static void on_promote_poll(uv_timer_t *t)
{
    struct secondary *sec = t->data;
    char why[512];
    int r;

    /* No session can have begun: on_hello refuses them while promoting. */
    /* A replica being reopened after a failed apply (secondary/recover.c)
     * is in a worker's hands: it settles, or fails again, first. */
    if (sec->rc_running || (!epoch_settled(sec) && !sec->apply_failed)) {
        if (uv_now(sec->loop) < sec->promote_deadline_ms)
            return;
        fail(sec, "the journal's committed epochs were not applied in time; try again");
        return;
    }
    uv_timer_stop(&sec->promote_timer);
    epoch_session_lost(sec); /* the open epoch, if any, goes */
    if (!epoch_replica_consistent(sec) && !sec->promote_forced) {
        snprintf(why, sizeof(why),
                 "the replica is NOT consistent (%s): promoted, it would be no point in time "
                 "of the primary's disk; --force promotes it anyway",
                 sec->note[0] ? sec->note : "no committed epoch's image");
        fail(sec, why);
        return;
    }
    if (!epoch_replica_consistent(sec))
        BS_WARN(MOD, "promote --force: the replica is NOT consistent (%s); promoting it anyway",
                sec->note[0] ? sec->note : "no committed epoch's image");
    sec->promote_req.data = sec;
    r = uv_queue_work(sec->loop, &sec->promote_req, promote_work, promote_done);
    if (r < 0) {
        snprintf(why, sizeof(why), "cannot queue the promotion: %s", uv_strerror(r));
        fail(sec, why);
    }
}

void promote_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct secondary *sec = opaque;
    char why[256];
    bool force;

    if (strcmp(request, "promote") == 0) {
        force = false;
    } else if (strcmp(request, "promote force") == 0) {
        force = true;
    } else {
        answer(pending, sec, "usage: promote [force]");
        return;
    }
    if (sec->promoted) {
        snprintf(why, sizeof(why), "already promoted, at epoch %" PRIu64, sec->promoted_epoch);
        answer(pending, sec, why);
        return;
    }
    if (sec->promoting) {
        answer(pending, sec, "a promotion is already running");
        return;
    }
    if (sec->session) {
        snprintf(why, sizeof(why),
                 "a primary session is alive (%s): stop that primary, or wait until it has "
                 "been silent for the peer timeout (%u ms)",
                 sec->peer, sec->peer_timeout_ms);
        BS_ERR(MOD, "promote refused: %s", why);
        answer(pending, sec, why);
        return;
    }
    BS_INFO(MOD, "promote%s: refusing primaries, applying what the journal has committed",
            force ? " --force" : "");
    sec->promoting = true;
    sec->promote_forced = force;
    sec->promote_pending = pending;
    sec->promote_deadline_ms = uv_now(sec->loop) + PROMOTE_SETTLE_MS;
    uv_timer_start(&sec->promote_timer, on_promote_poll, 0, PROMOTE_POLL_MS);
}

void promote_init(struct secondary *sec)
{
    uv_timer_init(sec->loop, &sec->promote_timer);
    sec->promote_timer.data = sec;
}

void promote_close(struct secondary *sec)
{
    uv_close((uv_handle_t *)&sec->promote_timer, NULL);
}
