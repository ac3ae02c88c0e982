/* The secondary's side of data generations (docs/failover.md): the hello's
 * generations judged against the replica's own by the connect table, the
 * split brain it finds once promoted, and `blkship resolve
 * --discard-local`, which gives up this replica's own changes since the
 * promotion and takes the old primary's line again, by checksums.
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/ctl.h"
#include "common/json.h"
#include "common/log.h"
#include "common/state.h"

#define MOD "secondary"

static void split_brain_found(struct secondary *sec, struct session *s, const struct bsr_hello *h)
{
    bool new_episode = !sec->split_brain || sec->sb_peer_generation != h->generation;
    char why[200];

    sec->split_brain = true;
    sec->sb_peer_generation = h->generation;
    sec->sb_peer_bitmap = h->bitmap_generation;
    sec->sb_peer_changed = h->changed_bytes;
    snprintf(sec->sb_peer, sizeof(sec->sb_peer), "%s", bs_conn_peer(s->conn));
    if (!new_episode)
        return;
    sec->split_brains++;
    snprintf(why, sizeof(why),
             "both changed since generation %016" PRIx64 ": promoted here to %016" PRIx64
             ", the primary holds %016" PRIx64 " with %" PRIu64 " bytes not here",
             sec->generation_prev, sec->generation, h->generation, h->changed_bytes);
    BS_ERR(MOD, "SPLIT BRAIN with primary %s: %s. Nothing is overwritten: run 'blkship resolve "
                "--discard-local' on the side whose changes are to go (docs/failover.md)",
           sec->sb_peer, why);
    if (sec->on_split_brain && sec->hooks) {
        struct bs_hook_event ev = { .event = "split-brain", .peer = sec->sb_peer,
                                    .epoch = sec->promoted_epoch,
                                    .generation = sec->generation, .reason = why };
        (void)bs_hooks_run(sec->hooks, sec->on_split_brain, &ev);
    }
}

int sgen_judge(struct session *s, const struct bsr_hello *h, uint16_t *flags, char *detail,
               size_t size)
{
    struct secondary *sec = s->sec;

    *flags = 0;
    if (sec->promoting) {
        snprintf(detail, size, "this replica is being promoted");
        return BSR_E_PROMOTED;
    }
    if (sec->apply_failed && !sec->promoted) {
        /* secondary/recover.c reopens it; the primary retries. */
        snprintf(detail, size, "the replica failed; reopening it");
        return BSR_E_IO;
    }
    if (sec->promoted) {
        /* Row 1 of the table: a promoted replica takes no primary.  If
         * the primary's bitmap is against the line this replica was
         * promoted from, that primary changed too since they parted. */
        if (h->version >= 3 && h->bitmap_generation &&
            h->bitmap_generation == sec->generation_prev) {
            split_brain_found(sec, s, h);
            snprintf(detail, size, "split brain: both changed since generation %016" PRIx64,
                     sec->generation_prev);
            return BSR_E_SPLIT_BRAIN;
        }
        snprintf(detail, size, "this replica was promoted");
        return BSR_E_PROMOTED;
    }
    /* A demoted primary's disk: its own changes go to a primary on its
     * line; any other primary compares by checksums. */
    if (sec->own_pending) {
        if (h->version >= 4 && (h->generation == sec->generation ||
                                (h->bitmap_generation && h->bitmap_generation == sec->generation))) {
            *flags |= BSR_WF_EXTENTS;
            return BSR_OK;
        }
        if (h->version < 3) {
            snprintf(detail, size, "this replica has changes of its own to send (protocol 4)");
            return BSR_E_GENERATION;
        }
        BS_WARN(MOD, "the primary's generations (%016" PRIx64 ", bitmap %016" PRIx64 ") are "
                     "not this replica's line (%016" PRIx64 ")%s: asking for a checksum resync",
                h->generation, h->bitmap_generation, sec->generation,
                h->version < 4 ? ", or it speaks no protocol 4" : "");
        *flags |= BSR_WF_CHECKSUM;
        return BSR_OK;
    }
    /* A new replica, or a primary from before generations: today's rules
     * (the replica takes the primary's generation); one demoted without a
     * complete bitmap is compared by checksums. */
    if (bs_id_is_zero(sec->primary_id) || sec->generation == 0) {
        if (sec->checksum_required && h->version >= 3)
            *flags |= BSR_WF_CHECKSUM;
        return BSR_OK;
    }
    if (h->version < 3) {
        if (sec->checksum_required) {
            snprintf(detail, size, "this replica must be compared by checksums (protocol 3)");
            return BSR_E_GENERATION;
        }
        return BSR_OK;
    }
    if (h->generation == sec->generation ||
        (h->bitmap_generation && h->bitmap_generation == sec->generation)) {
        if (sec->checksum_required)
            *flags |= BSR_WF_CHECKSUM;
        return BSR_OK;
    }
    if (h->history[0] == sec->generation || h->history[1] == sec->generation) {
        /* An older line of the primary's than its bitmap covers. */
        BS_WARN(MOD, "the replica holds generation %016" PRIx64 ", in the primary's history but "
                     "older than its bitmap: asking for a checksum resync", sec->generation);
        *flags |= BSR_WF_CHECKSUM;
        return BSR_OK;
    }
    snprintf(detail, size, "unrelated data: replica %016" PRIx64 ", primary %016" PRIx64,
             sec->generation, h->generation);
    return BSR_E_GENERATION;
}

void sgen_committed(struct session *s)
{
    struct secondary *sec = s->sec;

    own_committed(s);
    if (!s->checksum_asked || !sec->checksum_required)
        return;
    pthread_mutex_lock(&sec->state_lock);
    sec->checksum_required = false;
    if (sec_write_state_locked(sec) < 0)
        sec->checksum_required = true; /* asked again next session */
    pthread_mutex_unlock(&sec->state_lock);
    if (!sec->checksum_required)
        BS_INFO(MOD, "the checksum resync the resolved split brain asked for is committed");
}

static void answer(struct bs_ctl_pending *pending, const char *error, const char *gen)
{
    struct bs_json_builder b;
    char reply[1024];
    ssize_t n;

    bs_json_begin(&b);
    if (error) {
        bs_json_add_str(&b, "error", error);
    } else {
        bs_json_add_str(&b, "resolved", "discard-local");
        bs_json_add_str(&b, "generation", gen);
        bs_json_add_str(&b, "next_1", "leave blkship-primary running on the other host: at its "
                                      "next connect it compares checksums and overwrites what "
                                      "changed here");
    }
    n = bs_json_finish(&b, reply, sizeof(reply));
    bs_ctl_answer(pending, reply, n < 0 ? sizeof(reply) : (size_t)n);
}

void sgen_resolve_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct secondary *sec = opaque;
    static struct bs_target t; /* large (its path): not on the stack */
    char why[4400], gen[24];
    const char *path = sec->target.path;
    int r;

    if (strcmp(request, "resolve discard-local") != 0) {
        answer(pending, "usage: resolve discard-local", NULL);
        return;
    }
    if (!sec->promoted || !sec->generation_prev) {
        answer(pending, "this replica was not promoted: it has no changes of its own to discard",
               NULL);
        return;
    }
    /* Whatever wrote the promoted disk must have let go of it. */
    r = bs_target_open(&t, path, &sec->target_cfg);
    if (r < 0) {
        snprintf(why, sizeof(why),
                 "cannot claim %s again (%s): stop what serves it (its nbdkit, its guest, its "
                 "blkship-primary) first; nothing changed", path, strerror(-r));
        BS_ERR(MOD, "resolve refused: %s", why);
        answer(pending, why, NULL);
        return;
    }
    if (t.size_bytes != sec->disk_bytes) {
        t.ops->close(&t);
        snprintf(why, sizeof(why), "%s is %" PRIu64 " bytes now, was %" PRIu64 "; nothing changed",
                 path, t.size_bytes, sec->disk_bytes);
        answer(pending, why, NULL);
        return;
    }
    pthread_mutex_lock(&sec->state_lock);
    uint64_t promoted_gen = sec->generation;
    sec->st_promoted = false;
    sec->generation = sec->generation_prev;
    sec->checksum_required = true;
    sec->st_consistent = false;
    r = sec_write_state_locked(sec);
    if (r < 0) {
        sec->st_promoted = true;
        sec->generation = promoted_gen;
        sec->checksum_required = false;
        sec->st_consistent = sec->consistent;
    }
    pthread_mutex_unlock(&sec->state_lock);
    if (r < 0) {
        t.ops->close(&t);
        snprintf(why, sizeof(why), "cannot record the resolution: %s; nothing changed",
                 strerror(-r));
        answer(pending, why, NULL);
        return;
    }
    memcpy(&sec->target, &t, sizeof(t)); /* the closed one had no descriptors left */
    sec->promoted = false;
    /* Opened afresh: a failure before the promotion is behind it, and the
     * checksum resync rewrites what it may have left. */
    sec->apply_failed = false;
    recover_applied(sec);
    sec->consistent = false;
    sec->split_brain = false;
    snprintf(sec->note, sizeof(sec->note),
             "split brain resolved here: its own changes since generation %016" PRIx64
             " are being overwritten", sec->generation);
    snprintf(gen, sizeof(gen), "%016" PRIx64, sec->generation);
    BS_WARN(MOD, "SPLIT BRAIN RESOLVED with --discard-local: %s takes the line of generation %s "
                 "again; what changed here since the promotion is overwritten by the primary's "
                 "checksum resync (the replica is not consistent until it commits)",
            path, gen);
    answer(pending, NULL, gen);
}

void sgen_status(struct secondary *sec, struct bs_json_builder *b)
{
    bs_json_add_u64(b, "generation_history_1", sec->generation_prev);
    bs_json_add_bool(b, "checksum_required", sec->checksum_required);
    bs_json_add_bool(b, "split_brain", sec->split_brain);
    bs_json_add_u64(b, "split_brains", sec->split_brains);
    bs_json_add_str(b, "split_brain_peer", sec->split_brain ? sec->sb_peer : "");
    bs_json_add_u64(b, "split_brain_peer_generation", sec->split_brain ? sec->sb_peer_generation : 0);
    bs_json_add_u64(b, "split_brain_peer_bitmap_generation",
                    sec->split_brain ? sec->sb_peer_bitmap : 0);
    bs_json_add_u64(b, "split_brain_peer_changed_bytes", sec->split_brain ? sec->sb_peer_changed : 0);
}
