/* blkship-primary's online verify (`blkship verify`, docs/verify.md):
 * compares the replica with this disk by block checksums while
 * replication goes on, and reports the ranges that differ.
 *
 * A batch of ranges is read through the ring while no epoch is open (and
 * no seal may start until the reads are in: a sealed epoch's grains would
 * lose their copy-before-write protection to a read), each block hashed
 * as it arrives.  The batch then waits for the next seal to end.  Any
 * block with a grain dirty in the bitmap at that moment may have been
 * written since it was read (or is simply not replicated yet): its answer
 * will not count (indeterminate, checked again in a later batch, at most
 * VF_TRIES times).  Every other block was not written between its read
 * and that seal, so the replica, once that epoch is committed and
 * applied, must hold exactly what was read.  The HASHES frames go out
 * when no epoch is open any more (after the seal's epoch committed or
 * was aborted); the secondary compares them once its replica is settled,
 * which is after that epoch is applied.  A difference it reports is
 * therefore a real one, never a write in flight.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/blockhash.h"
#include "common/crc32c.h"
#include "common/ctl.h"
#include "common/hook.h"
#include "common/json.h"
#include "common/log.h"
#include "primary/primary.h"

#define MOD "primary"
#define VF_BATCH_BYTES (256ull << 20)  /* read per batch, at most */
#define VF_PIECES_MAX 1024             /* pieces (one read, one HASHES frame) per batch */
#define VF_TRIES 5                     /* checks of a block that keeps being written */
#define VF_LOG_MS 10000                /* progress in the log at most this often */

enum vf_batch_state {
    VB_IDLE,        /* none: the next may start */
    VB_READING,     /* its reads are out: no seal may start */
    VB_WAIT_SEAL,   /* read and hashed: waiting for a seal to end */
    VB_WAIT_COMMIT, /* that seal was an epoch's: waiting for it to end */
    VB_ASKING,      /* HASHES sent: waiting for the answers */
};

struct vf_piece {
    uint64_t sector;
    uint32_t count;         /* sectors */
    uint32_t first;         /* its first block's index in the batch */
    uint32_t blocks;
    uint8_t tries;          /* checks so far of a re-check piece (one block) */
    bool read, answered;
};

struct vf_recheck {
    uint64_t sector;        /* one block */
    uint32_t count;
    uint8_t tries;
};

struct verify {
    struct bs_ctl_pending *pending;
    uint64_t start, end;        /* sectors, on block boundaries (end: the disk's at most) */
    uint64_t rate;              /* bytes a second; 0: as fast as it goes */
    bool repair;
    uint32_t block;             /* sectors */
    uint32_t per_piece;         /* blocks */
    uint64_t pos;               /* the main pass's next sector */
    uint64_t issued_bytes;      /* read so far (pacing) */
    uint64_t started_ms, last_log_ms;

    enum vf_batch_state bstate;
    uint64_t seal_after;        /* the batch waits for a seal numbered above this */
    bool batch_recheck;
    uint64_t batch_start;       /* main pass: where it began */
    struct vf_piece pieces[VF_PIECES_MAX];
    unsigned npieces, next_read, reads_out, answers;
    uint64_t *hashes;
    uint8_t *indet;             /* one byte a block: not to be counted */
    uint32_t nblocks, cap_blocks;
    uint8_t *frames;
    size_t frames_cap;

    struct vf_recheck *recheck;
    size_t nrecheck, recheck_cap;
    uint64_t (*diffs)[2];       /* differing blocks' sectors and counts, merged at the end */
    size_t ndiffs, diffs_cap;
    uint64_t compared_bytes, differing_bytes, unverified_bytes, rechecked_blocks;
};

static uint32_t vf_block_sectors(const struct primary *p)
{
    /* Before any link has agreed a payload limit, the one we offer. */
    return hash_block_sectors(p->grain, p->max_payload ? p->max_payload : p->payload_pref);
}

bool verify_holds_seal(const struct primary *p)
{
    return p->vf && p->vf->bstate == VB_READING;
}

static void vf_free(struct verify *v)
{
    free(v->hashes);
    free(v->indet);
    free(v->frames);
    free(v->recheck);
    free(v->diffs);
    free(v);
}

static int cmp_range(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;

    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts the differing blocks and merges adjacent ones into byte ranges. */
static size_t merge_diffs(struct verify *v)
{
    size_t n = 0;

    if (!v->ndiffs)
        return 0;
    qsort(v->diffs, v->ndiffs, sizeof(v->diffs[0]), cmp_range);
    for (size_t i = 0; i < v->ndiffs; i++) {
        if (n && v->diffs[n - 1][0] + v->diffs[n - 1][1] >= v->diffs[i][0]) {
            uint64_t end = v->diffs[i][0] + v->diffs[i][1];
            if (end > v->diffs[n - 1][0] + v->diffs[n - 1][1])
                v->diffs[n - 1][1] = end - v->diffs[n - 1][0];
        } else {
            v->diffs[n][0] = v->diffs[i][0];
            v->diffs[n][1] = v->diffs[i][1];
            n++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        v->diffs[i][0] *= BSR_SECTOR_SIZE;
        v->diffs[i][1] *= BSR_SECTOR_SIZE;
    }
    return n;
}

static void finish(struct primary *p, const char *error)
{
    struct verify *v = p->vf;
    struct bs_json_builder b;
    uint64_t ms = uv_now(p->loop) - v->started_ms;
    size_t n = merge_diffs(v);
    size_t cap = 4096 + n * 64;
    char *reply = malloc(cap);
    ssize_t len;

    p->vf = NULL;
    uv_timer_stop(&p->vf_timer);
    if (error)
        BS_ERR(MOD, "verify stopped: %s", error);
    else
        BS_INFO(MOD, "verify of bytes %" PRIu64 "-%" PRIu64 " done in %.1f s (%.0f MB/s): %" PRIu64
                     " bytes compared, %" PRIu64 " bytes in %zu range(s) differ%s, %" PRIu64
                     " bytes could not be checked (written at every try)",
                v->start * BSR_SECTOR_SIZE, v->end * BSR_SECTOR_SIZE, (double)ms / 1000.0,
                ms ? (double)v->compared_bytes / 1000.0 / (double)ms : 0.0, v->compared_bytes,
                v->differing_bytes, n, v->repair && n ? " (marked dirty: resent)" : "",
                v->unverified_bytes);
    p->vf_last_differing = v->differing_bytes;
    p->vf_runs++;
    if (!error && v->differing_bytes && p->on_out_of_sync && p->hooks) {
        char why[160];
        snprintf(why, sizeof(why), "verify: %" PRIu64 " bytes in %zu range(s) differ%s",
                 v->differing_bytes, n, v->repair ? " (marked dirty: resent)" : "");
        struct bs_hook_event ev = { .event = "out-of-sync", .peer = p->peer,
                                    .epoch = p->committed_epoch, .generation = p->generation,
                                    .reason = why };
        (void)bs_hooks_run(p->hooks, p->on_out_of_sync, &ev);
    }
    bs_json_begin(&b);
    if (error)
        bs_json_add_str(&b, "error", error);
    bs_json_add_bool(&b, "identical", !error && v->differing_bytes == 0);
    bs_json_add_u64(&b, "offset", v->start * BSR_SECTOR_SIZE);
    bs_json_add_u64(&b, "length", (v->end - v->start) * BSR_SECTOR_SIZE);
    bs_json_add_u64(&b, "compared_bytes", v->compared_bytes);
    bs_json_add_u64(&b, "differing_bytes", v->differing_bytes);
    bs_json_add_u64(&b, "unverified_bytes", v->unverified_bytes);
    bs_json_add_u64(&b, "rechecked_blocks", v->rechecked_blocks);
    bs_json_add_u64(&b, "block_bytes", (uint64_t)v->block * BSR_SECTOR_SIZE);
    bs_json_add_u64(&b, "elapsed_ms", ms);
    bs_json_add_bool(&b, "repaired", v->repair && n > 0);
    bs_json_add_ranges(&b, "ranges", (const uint64_t (*)[2])v->diffs, n);
    if (v->pending) {
        if (!reply) {
            static const char oom[] = "{ \"error\": \"out of memory for the verify report\" }\n";
            bs_ctl_answer(v->pending, oom, sizeof(oom) - 1);
            bs_json_finish(&b, NULL, 0);
        } else {
            len = bs_json_finish(&b, reply, cap);
            if (len < 0 || (size_t)len >= cap) {
                static const char big[] = "{ \"error\": \"the verify report did not fit\" }\n";
                bs_ctl_answer(v->pending, big, sizeof(big) - 1);
            } else {
                bs_ctl_answer(v->pending, reply, (size_t)len);
            }
        }
    } else {
        bs_json_finish(&b, NULL, 0);
    }
    free(reply);
    vf_free(v);
    epoch_maybe_start(p);
}

static bool add_piece(struct verify *v, uint64_t sector, uint32_t count, uint8_t tries)
{
    uint32_t blocks = (count + v->block - 1) / v->block;

    if (v->npieces == VF_PIECES_MAX || v->nblocks + blocks > v->cap_blocks)
        return false;
    v->pieces[v->npieces++] = (struct vf_piece){ .sector = sector, .count = count,
                                                 .first = v->nblocks, .blocks = blocks,
                                                 .tries = tries };
    v->nblocks += blocks;
    return true;
}

/* Builds the next batch: blocks to check again first, then the main pass. */
static bool next_batch(struct primary *p)
{
    struct verify *v = p->vf;
    uint64_t budget = VF_BATCH_BYTES;

    v->npieces = v->next_read = v->reads_out = v->answers = 0;
    v->nblocks = 0;
    if (v->rate && budget > v->rate / 2 + (uint64_t)v->block * BSR_SECTOR_SIZE)
        budget = v->rate / 2 + (uint64_t)v->block * BSR_SECTOR_SIZE; /* about 2 batches a second */
    v->batch_recheck = v->pos >= v->end && v->nrecheck;
    if (v->batch_recheck) {
        size_t used = 0;
        for (; used < v->nrecheck; used++) {
            struct vf_recheck *r = &v->recheck[used];
            if (!add_piece(v, r->sector, r->count, r->tries))
                break;
        }
        memmove(v->recheck, v->recheck + used, (v->nrecheck - used) * sizeof(*v->recheck));
        v->nrecheck -= used;
        v->rechecked_blocks += used;
        return v->npieces > 0;
    }
    /* A piece is one frame: within the limit this link agreed, which may
     * be below the one the verify was sized for. */
    uint64_t per = p->max_payload / ((uint64_t)v->block * BSR_SECTOR_SIZE);
    if (per > v->per_piece)
        per = v->per_piece;
    if (per == 0)
        per = 1;
    v->batch_start = v->pos;
    while (v->pos < v->end && budget) {
        uint64_t count = per * v->block;
        if (count > v->end - v->pos)
            count = v->end - v->pos;
        if (!add_piece(v, v->pos, (uint32_t)count, 0))
            break;
        v->pos += count;
        budget = budget > count * BSR_SECTOR_SIZE ? budget - count * BSR_SECTOR_SIZE : 0;
    }
    return v->npieces > 0;
}

static void on_vf_timer(uv_timer_t *t)
{
    verify_pump(t->data);
}

/* Puts a batch that did not finish back: the main pass from its start,
 * re-check blocks to the list. */
static void batch_abandon(struct primary *p)
{
    struct verify *v = p->vf;

    if (v->bstate == VB_IDLE)
        return;
    if (v->batch_recheck) {
        for (unsigned i = 0; i < v->npieces; i++) {
            struct vf_piece *pc = &v->pieces[i];
            if (v->nrecheck < v->recheck_cap)
                v->recheck[v->nrecheck++] =
                    (struct vf_recheck){ .sector = pc->sector, .count = pc->count, .tries = pc->tries };
        }
    } else {
        v->pos = v->batch_start;
    }
    v->bstate = VB_IDLE;
    v->npieces = 0;
}

void verify_link_down(struct primary *p)
{
    if (p->vf)
        batch_abandon(p);
}

static void send_batch(struct primary *p)
{
    struct verify *v = p->vf;
    uint8_t *out = v->frames;

    for (unsigned i = 0; i < v->npieces; i++) {
        struct vf_piece *pc = &v->pieces[i];
        out += hashes_frame_pack(out, pc->sector, v->block, pc->count, v->hashes + pc->first,
                                 pc->blocks);
    }
    /* One write for the batch: the buffer lives until its answers are in
     * (or the link, and every write queued on it, is gone). */
    v->bstate = VB_ASKING;
    if (bs_conn_write(p->conn, v->frames, (size_t)(out - v->frames), NULL, NULL) < 0)
        link_down(p, "cannot queue the verify checksums");
}

void verify_pump(struct primary *p)
{
    struct verify *v = p->vf;
    unsigned queued = 0;

    if (!v || p->ls != LS_STREAMING || !p->log || p->stopping || p->cs_active)
        return;
    if (v->bstate == VB_WAIT_COMMIT && p->ep_state == EP_IDLE) {
        send_batch(p);
        return;
    }
    if (v->bstate == VB_IDLE) {
        if (v->pos >= v->end && !v->nrecheck) {
            finish(p, NULL);
            return;
        }
        if (p->ep_state != EP_IDLE || p->sealing)
            return; /* epoch_maybe_start calls again once it is */
        if (v->rate) {
            uint64_t due = v->started_ms + v->issued_bytes * 1000 / v->rate;
            if (uv_now(p->loop) < due) {
                uv_timer_start(&p->vf_timer, on_vf_timer, due - uv_now(p->loop), 0);
                return;
            }
        }
        if (!next_batch(p))
            return;
        v->bstate = VB_READING;
    }
    if (v->bstate != VB_READING)
        return;
    for (unsigned i = 0; i < p->nslots && v->next_read < v->npieces; i++) {
        struct slot *s = &p->slots[i];
        struct vf_piece *pc = &v->pieces[v->next_read];

        if (s->state != SLOT_FREE)
            continue;
        unsigned npages = (unsigned)(((uint64_t)pc->count * BSR_SECTOR_SIZE + AREA_PAGE - 1) /
                                     AREA_PAGE);
        int page = pages_alloc(p, npages);
        if (page < 0)
            break;
        *s = (struct slot){ .owner = p, .state = SLOT_READING, .hash = true, .verify = true,
                            .offset = (uint32_t)page * AREA_PAGE, .page = (uint32_t)page,
                            .npages = npages, .sector = pc->sector, .count = pc->count,
                            .first = v->next_read, .session = p->session };
        if (log_link_read(p->log, s->sector, s->count, s->offset) < 0) {
            slot_release(p, s);
            break;
        }
        v->next_read++;
        v->reads_out++;
        v->issued_bytes += (uint64_t)pc->count * BSR_SECTOR_SIZE;
        if (++queued == KICK_BATCH) {
            if (log_link_kick(p->log) < 0) {
                log_down(p, "cannot kick");
                return;
            }
            queued = 0;
        }
    }
    if (queued && log_link_kick(p->log) < 0)
        log_down(p, "cannot kick");
}

bool verify_on_read(struct primary *p, struct slot *s, int err)
{
    struct verify *v = p->vf;
    uint8_t *base = log_link_data(p->log) + s->offset;

    if (!v || v->bstate != VB_READING || p->ls != LS_STREAMING || s->session != p->session) {
        slot_release(p, s);
        return true;
    }
    struct vf_piece *pc = &v->pieces[s->first];
    v->reads_out--;
    if (err) {
        /* Cannot be read here: counted as unverified, not as different. */
        p->read_errors++;
        BS_ERR(MOD, "verify: the write log could not read sector %" PRIu64 " count %u: %s",
               s->sector, s->count, strerror(err));
        for (uint32_t k = 0; k < pc->blocks; k++)
            v->indet[pc->first + k] = 2;
    } else {
        bs_hash_blocks(base, (uint64_t)pc->count * BSR_SECTOR_SIZE,
                       (uint64_t)v->block * BSR_SECTOR_SIZE, v->hashes + pc->first);
        memset(v->indet + pc->first, 0, pc->blocks);
    }
    pc->read = true;
    slot_release(p, s);
    if (v->next_read == v->npieces && v->reads_out == 0) {
        /* Every block is read: the next seal decides which may count. */
        v->bstate = VB_WAIT_SEAL;
        v->seal_after = p->seal_seq;
        epoch_maybe_start(p); /* or the next seal for the record */
    } else {
        verify_pump(p);
    }
    return p->log != NULL;
}

void verify_seal_done(struct primary *p, bool epoch)
{
    struct verify *v = p->vf;

    if (!v || v->bstate != VB_WAIT_SEAL || p->seal_seq <= v->seal_after)
        return;
    /* A block with a dirty grain now may have been written after it was
     * read, or the replica may not hold it yet: its answer cannot count. */
    for (unsigned i = 0; i < v->npieces; i++) {
        struct vf_piece *pc = &v->pieces[i];
        for (uint32_t k = 0; k < pc->blocks; k++) {
            uint64_t sector = pc->sector + (uint64_t)k * v->block;
            uint64_t n = pc->count - (uint64_t)k * v->block;
            if (n > v->block)
                n = v->block;
            if (bs_dirty_any(p->dirty, sector, n) && !v->indet[pc->first + k])
                v->indet[pc->first + k] = 1;
        }
    }
    if (epoch) {
        v->bstate = VB_WAIT_COMMIT; /* sent once the epoch has ended */
        return;
    }
    send_batch(p);
}

static bool note_diff(struct verify *v, uint64_t sector, uint64_t n)
{
    if (v->ndiffs == v->diffs_cap) {
        size_t cap = v->diffs_cap ? 2 * v->diffs_cap : 256;
        void *d = realloc(v->diffs, cap * sizeof(v->diffs[0]));
        if (!d)
            return false;
        v->diffs = d;
        v->diffs_cap = cap;
    }
    v->diffs[v->ndiffs][0] = sector;
    v->diffs[v->ndiffs][1] = n;
    v->ndiffs++;
    return true;
}

bool verify_on_hashed(struct primary *p, uint64_t sector, uint32_t blocks, const uint8_t *bits)
{
    struct verify *v = p->vf;
    struct vf_piece *pc = NULL;

    if (v && v->bstate == VB_ASKING)
        for (unsigned i = 0; i < v->npieces && !pc; i++)
            if (v->pieces[i].sector == sector && !v->pieces[i].answered)
                pc = &v->pieces[i];
    if (!pc || blocks != pc->blocks) {
        BS_ERR(MOD, "checksum answer for sector %" PRIu64 " (%u blocks) matches no range asked "
                    "for", sector, blocks);
        return false;
    }
    for (uint32_t k = 0; k < blocks; k++) {
        uint64_t at = pc->sector + (uint64_t)k * v->block;
        uint64_t n = pc->count - (uint64_t)k * v->block;
        bool differs = bits[k / 8] >> (k % 8) & 1;
        if (n > v->block)
            n = v->block;
        if (v->indet[pc->first + k]) {
            /* Written meanwhile (1) or unreadable (2): check again later. */
            uint8_t tries = (uint8_t)(pc->tries + 1);
            if (v->indet[pc->first + k] == 1 && tries < VF_TRIES && v->nrecheck < v->recheck_cap)
                v->recheck[v->nrecheck++] =
                    (struct vf_recheck){ .sector = at, .count = (uint32_t)n, .tries = tries };
            else
                v->unverified_bytes += n * BSR_SECTOR_SIZE;
            continue;
        }
        v->compared_bytes += n * BSR_SECTOR_SIZE;
        if (!differs)
            continue;
        v->differing_bytes += n * BSR_SECTOR_SIZE;
        if (!note_diff(v, at, n)) {
            finish(p, "out of memory for the differing ranges");
            return true;
        }
        if (v->repair)
            bs_dirty_mark(p->dirty, at, n);
    }
    pc->answered = true;
    if (++v->answers < v->npieces)
        return true;
    v->bstate = VB_IDLE;
    if (v->repair && v->differing_bytes && bs_dirty_sync(p->dirty) < 0) {
        finish(p, "cannot sync the dirty bitmap after marking the differences");
        return true;
    }
    if (uv_now(p->loop) - v->last_log_ms >= VF_LOG_MS) {
        v->last_log_ms = uv_now(p->loop);
        BS_INFO(MOD, "verify: %" PRIu64 " of %" PRIu64 " bytes compared, %" PRIu64 " differ so far",
                v->compared_bytes, (v->end - v->start) * BSR_SECTOR_SIZE, v->differing_bytes);
    }
    verify_pump(p);
    return true;
}

/* "verify START LENGTH RATE REPAIR": bytes, bytes (0: to the end), bytes a
 * second (0: unlimited), 0 or 1.  Answered when the verify is done. */
void verify_request(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct primary *p = opaque;
    unsigned long long start, len, rate;
    unsigned repair;
    char extra;
    const char *why = NULL;
    struct verify *v;

    if (sscanf(request, "verify %llu %llu %llu %u %c", &start, &len, &rate, &repair, &extra) != 4 ||
        repair > 1)
        why = "usage: verify START LENGTH RATE REPAIR";
    else if (p->vf)
        why = "a verify is already running";
    else if (!p->dirty || !p->grain)
        why = "the write log is not connected yet: the disk's size is not known";
    else if (!p->cow_ok)
        why = "the write log does not keep sealed epochs: nothing is replicated to verify";
    else if (p->cs_active)
        why = "a checksum resync is running: verify once it is done";
    else if (p->peer_version && p->peer_version < 3)
        why = "the secondary speaks protocol version 2, which has no checksums";
    else if (start % BSR_SECTOR_SIZE || len % BSR_SECTOR_SIZE)
        why = "START and LENGTH must be multiples of 512";
    else if (start >= p->disk_sectors * BSR_SECTOR_SIZE ||
             len > p->disk_sectors * BSR_SECTOR_SIZE - start)
        why = "START and LENGTH must lie on the disk";
    if (why) {
        char reply[256];
        int n = snprintf(reply, sizeof(reply), "{ \"error\": \"%s\" }\n", why);
        bs_ctl_answer(pending, reply, (size_t)n);
        return;
    }
    v = calloc(1, sizeof(*v));
    if (!v) {
        static const char oom[] = "{ \"error\": \"out of memory\" }\n";
        bs_ctl_answer(pending, oom, sizeof(oom) - 1);
        return;
    }
    v->pending = pending;
    v->block = vf_block_sectors(p);
    /* The piece is one read and one frame: within the payload limit, and
     * the first max_payload we will have; 512 KiB until a link agrees one. */
    uint32_t payload = p->max_payload ? p->max_payload : p->payload_pref;
    v->per_piece = payload / (v->block * BSR_SECTOR_SIZE);
    if (v->per_piece > BSR_HASHES_MAX)
        v->per_piece = BSR_HASHES_MAX;
    if (v->per_piece == 0)
        v->per_piece = 1;
    v->start = start / BSR_SECTOR_SIZE / v->block * v->block;
    v->end = len ? (start + len) / BSR_SECTOR_SIZE : p->disk_sectors;
    v->end = (v->end + v->block - 1) / v->block * v->block;
    if (v->end > p->disk_sectors)
        v->end = p->disk_sectors;
    v->pos = v->start;
    v->rate = rate;
    v->repair = repair;
    v->cap_blocks = VF_PIECES_MAX * v->per_piece;
    v->hashes = calloc(v->cap_blocks, sizeof(*v->hashes));
    v->indet = calloc(v->cap_blocks, 1);
    v->frames_cap = (size_t)VF_PIECES_MAX * (BSR_FRAME_HDR_LEN + BSR_HASH_RANGE_LEN +
                                             BSR_FRAME_CRC_LEN) + (size_t)v->cap_blocks * 8;
    v->frames = malloc(v->frames_cap);
    v->recheck_cap = 65536;
    v->recheck = calloc(v->recheck_cap, sizeof(*v->recheck));
    if (!v->hashes || !v->indet || !v->frames || !v->recheck) {
        static const char oom[] = "{ \"error\": \"out of memory\" }\n";
        bs_ctl_answer(pending, oom, sizeof(oom) - 1);
        vf_free(v);
        return;
    }
    v->started_ms = v->last_log_ms = uv_now(p->loop);
    p->vf = v;
    BS_INFO(MOD, "verify of bytes %" PRIu64 "-%" PRIu64 " begins (block %u bytes%s%s)",
            v->start * BSR_SECTOR_SIZE, v->end * BSR_SECTOR_SIZE, v->block * BSR_SECTOR_SIZE,
            rate ? ", rate limited" : "", repair ? ", repairing" : "");
    epoch_maybe_start(p);
    verify_pump(p);
}

void verify_cancel(struct primary *p, const char *why)
{
    if (p->vf)
        finish(p, why);
}

double verify_progress(const struct primary *p)
{
    const struct verify *v = p->vf;

    if (!v || v->end <= v->start)
        return 0;
    return (double)(v->pos - v->start) / (double)(v->end - v->start);
}

void verify_status(struct primary *p, struct bs_json_builder *b)
{
    struct bs_json_builder o;
    struct verify *v = p->vf;

    bs_json_begin(&o);
    bs_json_add_bool(&o, "running", v != NULL);
    bs_json_add_u64(&o, "runs", p->vf_runs);
    bs_json_add_u64(&o, "last_differing_bytes", p->vf_last_differing);
    bs_json_add_u64(&o, "seals_held", p->vf_seals_held);
    if (v) {
        uint64_t total = (v->end - v->start) * BSR_SECTOR_SIZE;
        uint64_t done = (v->pos - v->start) * BSR_SECTOR_SIZE;
        uint64_t ms = uv_now(p->loop) - v->started_ms;
        double rate = ms ? (double)done * 1000.0 / (double)ms : 0.0;
        bs_json_add_u64(&o, "offset", v->start * BSR_SECTOR_SIZE);
        bs_json_add_u64(&o, "length", total);
        bs_json_add_u64(&o, "read_bytes", done);
        bs_json_add_u64(&o, "compared_bytes", v->compared_bytes);
        bs_json_add_u64(&o, "differing_bytes", v->differing_bytes);
        bs_json_add_u64(&o, "unverified_bytes", v->unverified_bytes);
        bs_json_add_fixed(&o, "percent", total ? 100.0 * (double)done / (double)total : 100.0, 2);
        bs_json_add_fixed(&o, "rate_bytes_per_sec", rate, 0);
        bs_json_add_fixed(&o, "eta_seconds", rate > 0 ? (double)(total - done) / rate : -1, 0);
        bs_json_add_bool(&o, "repair", v->repair);
    }
    bs_json_add_builder(b, "verify", &o);
}
