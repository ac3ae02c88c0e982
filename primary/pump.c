/* blkship-primary's data path: slots of the shm data area hold runs of
 * pages, sized to their frame.  A dirty run (at most one frame) is taken
 * from the bitmap, read by the write log through the ring into a slot,
 * framed in place (header before the payload, CRC after it) and written
 * to TLS straight from the slot.  Every frame belongs to the epoch being
 * shipped (primary/epoch.c); its COMMITTED clears them.
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

static bool page_used(const struct primary *p, unsigned i)
{
    return (p->area_used[i / 64] >> (i % 64)) & 1;
}

static void pages_mark(struct primary *p, unsigned first, unsigned n, bool used)
{
    for (unsigned i = first; i < first + n; i++) {
        if (used)
            p->area_used[i / 64] |= 1ull << (i % 64);
        else
            p->area_used[i / 64] &= ~(1ull << (i % 64));
    }
}

/* First fit over at most AREA_PAGES (1,023) bits; -1 when no run fits. */
int pages_alloc(struct primary *p, unsigned n)
{
    unsigned run = 0;

    for (unsigned i = 0; i < AREA_PAGES; i++) {
        run = page_used(p, i) ? 0 : run + 1;
        if (run == n) {
            pages_mark(p, i + 1 - n, n, true);
            return (int)(i + 1 - n);
        }
    }
    return -1;
}

void slot_release(struct primary *p, struct slot *s)
{
    if (s->zbuf) {
        p->zbuf_busy[s->zbuf - 1] = false;
        s->zbuf = 0;
    }
    pages_mark(p, s->page, s->npages, false);
    s->state = SLOT_FREE;
}

static bool is_zero(const uint8_t *b, size_t len)
{
    static const uint8_t zero[64];

    if (len < 64)
        return memcmp(b, zero, len) == 0;
    return memcmp(b, zero, 64) == 0 && memcmp(b, b + 64, len - 64) == 0;
}

/* What a DATA frame of `count` sectors puts on the link. */
static uint64_t frame_bytes(uint32_t count)
{
    return BSR_FRAME_HDR_LEN + (uint64_t)count * BSR_SECTOR_SIZE + BSR_FRAME_CRC_LEN;
}

/* --compress: the payload at base compressed into a free buffer, as a
 * ZDATA frame there; returns that frame's start and sets *plen and the
 * frame, or NULL to send the payload as it is. */
static uint8_t *compress_slot(struct primary *p, struct slot *s, const uint8_t *base,
                              uint32_t *plen, struct bsr_frame *f)
{
    unsigned i;
    size_t n;

    for (i = 0; i < ZBUFS && p->zbuf_busy[i]; i++)
        ;
    if (i == ZBUFS) {
        p->zc.no_buffer++;
        bs_zcomp_note_raw(&p->zc, *plen);
        return NULL;
    }
    n = bs_zcomp_payload(&p->zc, p->zbuf[i] + BSR_FRAME_HDR_LEN, p->zbuf_cap,
                         base + BSR_FRAME_HDR_LEN, *plen);
    if (n == 0)
        return NULL;
    /* The bucket was charged for the payload as read. */
    bs_rate_refund(&p->rl, *plen - n);
    p->zbuf_busy[i] = true;
    s->zbuf = i + 1;
    f->kind = BSR_ZDATA;
    f->count = (uint32_t)n;
    *plen = (uint32_t)n;
    return p->zbuf[i];
}

static void send_slot(struct primary *p, struct slot *s)
{
    uint8_t *base = log_link_data(p->log) + s->offset;
    uint32_t plen = s->count * BSR_SECTOR_SIZE;
    struct bsr_frame f = { .sector = s->sector, .count = s->count, .kind = BSR_DATA };
    uint32_t crc;
    size_t len;
    uint64_t bytes = (uint64_t)s->count * BSR_SECTOR_SIZE;

    if (is_zero(base + BSR_FRAME_HDR_LEN, plen)) {
        /* Zeroes travel as a range, not as data. */
        f.kind = BSR_ZERO;
        bs_rate_refund(&p->rl, plen);
        plen = 0;
        p->zero_bytes += bytes;
    } else if (p->zstd_on) {
        uint8_t *z = compress_slot(p, s, base, &plen, &f);
        if (z)
            base = z;
    }
    bsr_frame_pack(&f, base);
    /* From version 5 TLS alone vouches for a data payload on the link. */
    crc = htole32(crc32c(0, base, BSR_FRAME_HDR_LEN +
                                      (bsr_crc_covers_payload(p->peer_version, f.kind) ? plen : 0)));
    memcpy(base + BSR_FRAME_HDR_LEN + plen, &crc, BSR_FRAME_CRC_LEN);
    len = BSR_FRAME_HDR_LEN + plen + BSR_FRAME_CRC_LEN;

    if (bs_conn_write(p->conn, base, len, pump_slot_sent, s) < 0) {
        bs_dirty_requeue(p->dirty, s->first, s->n);
        slot_release(p, s);
        link_down(p, "cannot queue a frame");
        return;
    }
    s->state = SLOT_SENDING;
    p->ep_bytes += bytes;
    p->sent_bytes += bytes;
    flush_note_sent(p, s->first, s->n, bytes);
}

/* A ring read answered: send its frame, or requeue its grains. */
bool on_log_read(void *opaque, const log_response_t *rsp)
{
    struct primary *p = opaque;
    struct slot *s = NULL;

    /* A response echoes its request; a failed one keeps only the sector. */
    for (unsigned i = 0; i < p->nslots && !s; i++) {
        struct slot *t = &p->slots[i];
        if (t->state == SLOT_READING && t->sector == rsp->sector &&
            (rsp->count == 0 || t->offset + (t->hash ? 0 : BSR_FRAME_HDR_LEN) == rsp->offset))
            s = &p->slots[i];
    }
    if (s && s->hash && (rsp->count == 0 || rsp->count == s->count))
        return csync_on_read(p, s, rsp->count == 0 ? (int)rsp->offset : 0);
    if (rsp->count == 0) {
        if (!s) {
            log_down(p, "a ring response matches no request");
            return false;
        }
        p->read_errors++;
        BS_ERR(MOD, "the write log could not read sector %" PRIu64 " count %u: %s; will retry",
               s->sector, s->count, strerror((int)rsp->offset));
        if (!s->hash)
            bs_rate_refund(&p->rl, frame_bytes(s->count));
        bs_dirty_requeue(p->dirty, s->first, s->n);
        slot_release(p, s);
        return true;
    }
    if (!s || rsp->count != s->count) {
        log_down(p, "a ring response matches no request");
        return false;
    }
    if (p->ls != LS_STREAMING || s->session != p->session) {
        /* The link went down while reading; the grains were requeued. */
        slot_release(p, s);
        return true;
    }
    send_slot(p, s);
    return p->log != NULL;
}

void on_log_kick_done(void *opaque)
{
    pump(opaque);
}

void setup_slots(struct primary *p)
{
    p->nslots = MAX_SLOTS;
    for (unsigned i = 0; i < p->nslots; i++)
        p->slots[i] = (struct slot){ .owner = p, .state = SLOT_FREE };
    memset(p->area_used, 0, sizeof(p->area_used));
}

void pump_slot_sent(struct bs_conn *c, int status, void *arg)
{
    struct slot *s = arg;

    (void)c;
    slot_release(s->owner, s);
    if (status == 0)
        schedule_pump(s->owner);
}

/* Tells the log that requests wait in the ring; false if the log is gone. */
static bool kick_log(struct primary *p)
{
    if (log_link_kick(p->log) < 0) {
        log_down(p, "cannot kick");
        return false;
    }
    return true;
}

/* Takes dirty runs into free slots and asks the log to read them, while
 * an epoch is being shipped (or pre-copied). */
void pump(struct primary *p)
{
    unsigned queued = 0;
    bool reading = false, exhausted = false;

    if (p->cs_active) {
        csync_pump(p);
        return;
    }
    if (p->ls != LS_STREAMING || !p->log || p->stopping ||
        (p->ep_state != EP_SHIPPING && p->ep_state != EP_PRECOPY))
        return;
    uint64_t max_grains = p->max_payload / grain_bytes(p);
    for (unsigned i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        uint64_t first, n;

        if (s->state != SLOT_FREE)
            continue;
        if (!flush_may_send(p))
            break;
        if (!bs_dirty_take(p->dirty, &p->cursor, max_grains, &first, &n)) {
            exhausted = true;
            break;
        }
        uint64_t sector = first * p->grain;
        uint64_t end = (first + n) * p->grain;
        if (end > p->disk_sectors)
            end = p->disk_sectors;
        uint32_t count = (uint32_t)(end - sector);
        /* The frame is built around the data: header before, CRC after. */
        unsigned npages = (BSR_FRAME_HDR_LEN + count * BSR_SECTOR_SIZE + BSR_FRAME_CRC_LEN +
                           AREA_PAGE - 1) / AREA_PAGE;
        uint64_t wait_ms = 0;
        /* Without --rate-limit no clock is read per frame. */
        if (p->rate_limit &&
            (p->rl_waiting || !bs_rate_take(&p->rl, frame_bytes(count), uv_hrtime(), &wait_ms))) {
            /* --rate-limit: the bucket refills before this frame is read. */
            bs_dirty_requeue(p->dirty, first, n);
            p->cursor = first;
            if (!p->rl_waiting) {
                p->rl_waiting = true;
                uv_timer_start(&p->rl_timer, pump_on_rate_timer, wait_ms, 0);
            }
            break;
        }
        int page = pages_alloc(p, npages);
        if (page < 0) {
            bs_rate_refund(&p->rl, frame_bytes(count));
            /* The area is full of frames on their way: try again when one
             * has been sent. */
            bs_dirty_requeue(p->dirty, first, n);
            p->cursor = first;
            break;
        }
        *s = (struct slot){ .owner = p, .state = SLOT_READING,
                            .offset = (uint32_t)page * AREA_PAGE, .page = (uint32_t)page,
                            .npages = npages, .first = first, .n = n, .sector = sector,
                            .count = count, .session = p->session };
        if (log_link_read(p->log, sector, count, s->offset + BSR_FRAME_HDR_LEN) < 0) {
            /* No ring entry free (there is one per slot, so only if the
             * log holds on to responses): try again after the next kick. */
            bs_rate_refund(&p->rl, frame_bytes(count));
            slot_release(p, s);
            bs_dirty_requeue(p->dirty, first, n);
            p->cursor = first;
            break;
        }
        queued++;
        /* The log notifies a kick once all of its reads are done.  Smaller
         * kicks let the first reads' frames go out while the later ones are
         * still being read, instead of the ring alternating between
         * reading everything and sending everything. */
        if (queued == KICK_BATCH) {
            if (!kick_log(p))
                return;
            queued = 0;
        }
    }
    if (queued && !kick_log(p))
        return;
    if (!exhausted)
        return;
    for (unsigned i = 0; i < p->nslots && !reading; i++)
        reading = p->slots[i].state == SLOT_READING;
    /* Nothing left to take and nothing being read: every grain of the
     * epoch is on its way (frames still queued go out before anything
     * queued after them). */
    if (!reading)
        epoch_all_read(p);
}

void pump_on_rate_timer(uv_timer_t *t)
{
    struct primary *p = t->data;

    p->rl_waiting = false;
    schedule_pump(p);
}

static void on_pump_soon(uv_idle_t *h)
{
    uv_idle_stop(h);
    pump(h->data);
}

/* Coalesces wake-ups (sent frames, acks) into one pump, so that the reads
 * they free up go out in one kick. */
void schedule_pump(struct primary *p)
{
    uv_idle_start(&p->pump_soon, on_pump_soon);
}

int compress_setup(struct primary *p)
{
    p->zbuf_cap = bs_zcomp_bound(p->payload_pref);
    if (bs_zcomp_init(&p->zc, p->compress_level) < 0)
        return -ENOMEM;
    for (unsigned i = 0; i < ZBUFS; i++) {
        p->zbuf[i] = malloc(BSR_FRAME_HDR_LEN + p->zbuf_cap + BSR_FRAME_CRC_LEN);
        if (!p->zbuf[i]) {
            compress_teardown(p);
            return -ENOMEM;
        }
    }
    return 0;
}

void compress_teardown(struct primary *p)
{
    for (unsigned i = 0; i < ZBUFS; i++) {
        free(p->zbuf[i]);
        p->zbuf[i] = NULL;
    }
    bs_zcomp_free(&p->zc);
}
