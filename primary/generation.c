/* blkship-primary's data generations and split brain (docs/failover.md,
 * "Generations").
 *
 * `generation` names the line of writes this disk belongs to.  The
 * replica takes it when it accepts a session; from then on it is shared
 * (gen_shared).  When the disk changes while no secondary has a session
 * (a seal for the record merges writes with the link down, or the write
 * log restarted and may have missed some), the disk has left that line:
 * a new random generation, the old one kept in `bitmap_generation` (the
 * line the bitmap's changes are against, kept from the first such change)
 * and in the history.  A primary killed -9 records nothing: a crash alone
 * is no change.
 *
 * The secondary compares the hello's generations with its own and may
 * refuse with BSR_E_SPLIT_BRAIN: it was promoted from our bitmap
 * generation, so both sides changed since they parted.  Nothing is then
 * sent: the status says split_brain, --on-split-brain runs once per
 * episode, and reconnects back off to a minute.  `blkship resolve
 * --discard-local` here stops reconnecting and gives the steps that turn
 * this disk into the replica of the other side.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/ctl.h"
#include "common/hook.h"
#include "common/json.h"
#include "common/log.h"
#include "common/state.h"
#include "primary/primary.h"

#define MOD "primary"

void gen_changed_alone(struct primary *p, const char *why)
{
    uint64_t g;

    if (!p->gen_shared)
        return; /* already on a line of its own since the last session */
    if (p->ls == LS_STREAMING)
        return; /* a secondary has a session: it takes the change itself */
    if (bs_generation_random(&g) < 0) {
        BS_ERR(MOD, "cannot draw a new data generation (%s); keeping %016" PRIx64, why,
               p->generation);
        return;
    }
    if (!p->bitmap_generation)
        p->bitmap_generation = p->generation;
    p->gen_history[1] = p->gen_history[0];
    p->gen_history[0] = p->generation;
    p->generation = g;
    p->gen_shared = false;
    BS_INFO(MOD, "new data generation %016" PRIx64 " (the replica has %016" PRIx64 "): %s",
            p->generation, p->bitmap_generation, why);
    save_state(p);
}

void gen_accepted(struct primary *p, uint64_t peer_generation)
{
    /* The replica holds our line now (it took our generation), and the
     * bitmap says what it lacks of it. */
    if (peer_generation != p->generation)
        BS_WARN(MOD, "the secondary holds generation %016" PRIx64 ", not ours (%016" PRIx64 ")",
                peer_generation, p->generation);
    if (p->split_brain)
        BS_INFO(MOD, "the split brain with %s is over: the secondary accepted us", p->peer);
    p->split_brain = false;
    p->peer_promoted = false;
    if (p->gen_shared && !p->bitmap_generation)
        return;
    p->gen_shared = true;
    p->bitmap_generation = 0;
    save_state_async(p);
}

/* What the bitmap marks: data the replica may lack. */
static uint64_t changed_bytes(const struct primary *p)
{
    if (!p->dirty)
        return 0;
    return (bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty)) * grain_bytes(p);
}

void gen_fill_hello(const struct primary *p, struct bsr_hello *h)
{
    h->generation = p->generation;
    h->bitmap_generation = p->bitmap_generation;
    h->history[0] = p->gen_history[0];
    h->history[1] = p->gen_history[1];
    h->changed_bytes = changed_bytes(p);
}

void gen_refused(struct primary *p, const struct bsr_welcome *w)
{
    /* Only an operator changes this answer: the back-off starts long. */
    if (p->backoff_ms < RETRY_MAX_MS)
        p->backoff_ms = RETRY_MAX_MS;
    uint64_t changed = changed_bytes(p);

    if (w->status == BSR_E_PROMOTED) {
        if (!p->peer_promoted)
            BS_ERR(MOD, "the replica at %s was promoted (%s); this disk has not changed since "
                        "it parted (generation %016" PRIx64 "): make this host the secondary "
                        "(docs/failover.md); retrying with back-off",
                   p->peer, w->reason, p->generation);
        p->peer_promoted = true;
        return;
    }
    if (w->status != BSR_E_SPLIT_BRAIN)
        return;
    bool new_episode = !p->split_brain || p->sb_peer_generation != w->generation;
    p->split_brain = true;
    p->sb_peer_generation = w->generation;
    if (!new_episode)
        return; /* said once; the back-off keeps asking */
    p->split_brains++;
    BS_ERR(MOD, "SPLIT BRAIN with %s: both disks changed since generation %016" PRIx64 " (this "
                "one: generation %016" PRIx64 ", %" PRIu64 " bytes the other lacks; the other: "
                "promoted, generation %016" PRIx64 "). Nothing is sent or overwritten: run "
                "'blkship resolve --discard-local' on the side whose changes are to go "
                "(docs/failover.md)",
           p->peer, p->bitmap_generation, p->generation, changed, w->generation);
    if (p->on_split_brain && p->hooks) {
        char why[160];
        snprintf(why, sizeof(why),
                 "both changed since generation %016" PRIx64 "; the peer holds %016" PRIx64,
                 p->bitmap_generation, w->generation);
        struct bs_hook_event ev = { .event = "split-brain", .peer = p->peer,
                                    .epoch = p->committed_epoch, .generation = p->generation,
                                    .reason = why };
        (void)bs_hooks_run(p->hooks, p->on_split_brain, &ev);
    }
}

void gen_resolve_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct primary *p = opaque;
    struct bs_json_builder b;
    char reply[2048], gen[24];
    ssize_t n;

    bs_json_begin(&b);
    if (strcmp(request, "resolve discard-local") != 0) {
        bs_json_add_str(&b, "error", "usage: resolve discard-local");
    } else if (!p->split_brain) {
        bs_json_add_str(&b, "error", p->resolved_discard
                                         ? "already resolved: this disk's changes are to be "
                                           "discarded"
                                         : "no split brain to resolve");
    } else {
        p->resolved_discard = true;
        uv_timer_stop(&p->retry);
        link_down(p, "split brain resolved: this disk's changes are to be discarded");
        uv_timer_stop(&p->retry); /* link_down schedules a retry: none */
        BS_WARN(MOD, "split brain resolved here with --discard-local: this primary stops "
                     "connecting; its disk is to become the replica of %s",
                p->connect_addr);
        snprintf(gen, sizeof(gen), "%016" PRIx64, p->generation);
        bs_json_add_str(&b, "resolved", "discard-local");
        bs_json_add_str(&b, "generation", gen);
        bs_json_add_str(&b, "next_1", "stop the guest on this disk, then this blkship-primary "
                                      "and its nbdkit");
        bs_json_add_str(&b, "next_2",
                        "start blkship-secondary on this disk with an empty --state-dir");
        bs_json_add_str(&b, "next_3",
                        "on the other host (the promoted one), serve its disk through nbdkit "
                        "with the writelog filter and start blkship-primary towards this host "
                        "with --initial-sync checksum: only the blocks that differ are sent, "
                        "this disk's own changes are overwritten");
    }
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
}

bool gen_on_extents(struct primary *p)
{
    const char *why = NULL;

    if (!p->ext_expect) {
        BS_ERR(MOD, "the secondary sent its own changes (EXTENTS) unasked");
        return false;
    }
    if (p->rx.count == 0) {
        /* The last: durable before anything is sent against them, so that
         * the replica may forget its copy once an epoch commits. */
        if (bs_dirty_sync(p->dirty) < 0) {
            BS_ERR(MOD, "cannot make the replica's own changes durable in the bitmap");
            return false;
        }
        p->ext_expect = false;
        BS_INFO(MOD, "the replica's own changes: %" PRIu64 " bytes in %" PRIu64 " extents, "
                     "taken into the bitmap", p->ext_bytes, p->ext_extents);
        epoch_maybe_start(p);
        return true;
    }
    for (uint32_t i = 0; i < p->rx.count; i++) {
        uint64_t sector;
        uint32_t count;
        if (bsr_extent_unpack(p->rx_payload + (size_t)i * BSR_EXTENT_LEN, &p->rx_limits, &sector,
                              &count, &why) < 0) {
            BS_ERR(MOD, "bad EXTENTS entry %u from the secondary: %s", i, why);
            return false;
        }
        bs_dirty_mark(p->dirty, sector, count);
        p->ext_bytes += (uint64_t)count * BSR_SECTOR_SIZE;
        p->ext_extents++;
    }
    return true;
}

void gen_status(struct primary *p, struct bs_json_builder *b)
{
    bs_json_add_u64(b, "replica_changes_bytes", p->ext_bytes);
    bs_json_add_u64(b, "bitmap_generation", p->bitmap_generation);
    bs_json_add_u64(b, "generation_history_1", p->gen_history[0]);
    bs_json_add_u64(b, "generation_history_2", p->gen_history[1]);
    bs_json_add_bool(b, "generation_shared", p->gen_shared);
    bs_json_add_bool(b, "split_brain", p->split_brain);
    bs_json_add_u64(b, "split_brain_peer_generation", p->split_brain ? p->sb_peer_generation : 0);
    bs_json_add_u64(b, "split_brains", p->split_brains);
    bs_json_add_bool(b, "peer_promoted", p->peer_promoted);
    bs_json_add_bool(b, "resolved_discard_local", p->resolved_discard);
    if (p->hooks) {
        struct bs_json_builder hk;
        bs_json_begin(&hk);
        bs_hooks_status(p->hooks, &hk);
        bs_json_add_builder(b, "hooks", &hk);
    }
}
