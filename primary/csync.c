/* blkship-primary's checksum resync (protocol version 3): when the
 * bitmap cannot say what the replica lacks (the write log restarted, so
 * writes may have gone unlogged; the replica lost committed epochs; a new
 * pairing with --initial-sync checksum), the disk is read through the ring
 * range by range, each block hashed (XXH3-64, the dirty grain's size), and
 * the hashes sent in HASHES frames; the secondary compares them with its
 * replica and answers with a bitmap of the blocks that differ, which are
 * marked dirty.  Only they are then sent, in epochs like any other.
 *
 * Why that is enough: a block that differs when it is read here is marked;
 * one written after it was read is in the write log, and so in a later
 * epoch.  No epoch is sealed during the scan (its reads would end the
 * copy-before-write of a sealed epoch's grains); the log is sealed for the
 * record meanwhile, so it does not fill up.  The replica keeps its last
 * committed epoch throughout, and the differences then arrive in one
 * epoch (or a few, if they are many): it stays consistent.
 *
 * Progress is kept in primary.state (checksum_resync, checksum_pos) after
 * the marks before it are synced, so a restarted agent resumes where the
 * compared part ends; a new reason starts over from sector 0.
 */
#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/blockhash.h"
#include "common/crc32c.h"
#include "common/json.h"
#include "common/log.h"
#include "primary/primary.h"

#define MOD "primary"

/* The hash block: the grain, within what the protocol allows and the
 * payload limit holds. */
uint32_t hash_block_sectors(uint32_t grain, uint64_t payload)
{
    uint32_t b = grain;

    while (b > BSR_HASH_BLOCK_MAX_SECTORS || (uint64_t)b * BSR_SECTOR_SIZE > payload)
        b /= 2;
    return b < BSR_HASH_BLOCK_MIN_SECTORS ? BSR_HASH_BLOCK_MIN_SECTORS : b;
}

static uint32_t block_sectors(const struct primary *p)
{
    return hash_block_sectors(p->grain, p->max_payload);
}

size_t hashes_frame_pack(uint8_t *out, uint64_t sector, uint32_t block, uint32_t range_sectors,
                         const uint64_t *hashes, uint32_t n)
{
    struct bsr_frame f = { .sector = sector, .count = n, .kind = BSR_HASHES };
    struct bsr_hash_range hr = { .block_sectors = block, .range_sectors = range_sectors };
    uint32_t plen = BSR_HASH_RANGE_LEN + 8 * n, crc;

    bsr_frame_pack(&f, out);
    bsr_hash_range_pack(&hr, out + BSR_FRAME_HDR_LEN);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t h = htole64(hashes[k]);
        memcpy(out + BSR_FRAME_HDR_LEN + BSR_HASH_RANGE_LEN + 8 * k, &h, 8);
    }
    crc = htole32(crc32c(0, out, BSR_FRAME_HDR_LEN + plen));
    memcpy(out + BSR_FRAME_HDR_LEN + plen, &crc, BSR_FRAME_CRC_LEN);
    return BSR_FRAME_HDR_LEN + plen + BSR_FRAME_CRC_LEN;
}

void csync_request(struct primary *p, const char *reason)
{
    if (p->cs_active)
        BS_WARN(MOD, "checksum resync starts over from the beginning: %s", reason);
    else
        BS_WARN(MOD, "%s: the replica is compared by checksums, and only the blocks that differ "
                     "are sent", reason);
    p->cs_active = true;
    p->cs_clear = true;
    p->full_resync_reason = NULL; /* what differs is found, not assumed */
    p->cs_reason = reason;
    p->cs_pos = p->cs_done = p->cs_saved = 0;
    p->cs_len = 0;
    p->cs_compared_bytes = p->cs_differ_bytes = 0;
    p->cs_start_ms = 0;
}

void csync_link_down(struct primary *p)
{
    /* What was asked and not answered is asked again. */
    p->cs_len = 0;
    p->cs_pos = p->cs_done;
}

bool csync_fallback(struct primary *p)
{
    if (!p->cs_active || p->peer_version >= 3)
        return true;
    BS_WARN(MOD, "the secondary speaks protocol version %u, which has no checksums: resending the "
                 "whole disk instead (%s)", p->peer_version, p->cs_reason);
    bs_dirty_mark_all(p->dirty);
    p->full_resync_reason = p->cs_reason;
    p->cs_active = false;
    return bs_dirty_sync(p->dirty) == 0 && save_state(p) == 0;
}

static void finish(struct primary *p)
{
    uint64_t ms = uv_now(p->loop) - p->cs_start_ms;
    uint64_t disk = p->disk_sectors * BSR_SECTOR_SIZE;

    if (bs_dirty_sync(p->dirty) < 0) {
        link_down(p, "cannot sync the dirty bitmap");
        return;
    }
    p->cs_active = false;
    p->cs_resyncs++;
    save_state_async(p);
    primary_events_tick(p);
    BS_INFO(MOD, "checksum resync done (%s): %" PRIu64 " bytes compared in %.1f s (%.0f MB/s), "
                 "%" PRIu64 " bytes differ (%.2f%%) and will be sent",
            p->cs_reason, p->cs_compared_bytes, (double)ms / 1000.0,
            ms ? (double)p->cs_compared_bytes / 1000.0 / (double)ms : 0.0, p->cs_differ_bytes,
            disk ? 100.0 * (double)p->cs_differ_bytes / (double)disk : 0.0);
    epoch_maybe_start(p);
}

/* Pops the answered ranges at the head; persists the progress now and then. */
static void advance(struct primary *p)
{
    while (p->cs_len && p->cs_q[p->cs_head].done) {
        p->cs_head = (p->cs_head + 1) % CS_QMAX;
        p->cs_len--;
    }
    p->cs_done = p->cs_len ? p->cs_q[p->cs_head].sector : p->cs_pos;
    if (p->cs_done == p->disk_sectors && p->cs_len == 0) {
        finish(p);
        return;
    }
    if (p->cs_done - p->cs_saved >= CS_SAVE_SECTORS) {
        /* The marks below cs_done must be durable before the file says
         * they were made. */
        if (bs_dirty_sync(p->dirty) < 0) {
            link_down(p, "cannot sync the dirty bitmap");
            return;
        }
        p->cs_saved = p->cs_done;
        save_state_async(p);
    }
    schedule_pump(p);
}

static struct cs_range *find_range(struct primary *p, uint64_t sector)
{
    for (unsigned i = 0; i < p->cs_len; i++) {
        struct cs_range *r = &p->cs_q[(p->cs_head + i) % CS_QMAX];
        if (r->sector == sector)
            return r;
    }
    return NULL;
}

bool csync_on_hashed(struct primary *p, uint64_t sector, uint32_t blocks, const uint8_t *bits)
{
    struct cs_range *r = find_range(p, sector);
    uint32_t b = block_sectors(p);

    if (!p->cs_active || !r || r->done || r->sent == false ||
        blocks != (r->count + b - 1) / b) {
        BS_ERR(MOD, "checksum answer for sector %" PRIu64 " (%u blocks) matches no range asked "
                    "for", sector, blocks);
        return false;
    }
    for (uint32_t i = 0; i < blocks; i++) {
        if (!(bits[i / 8] >> (i % 8) & 1))
            continue;
        uint64_t at = (uint64_t)i * b;
        uint64_t n = r->count - at < b ? r->count - at : b;
        bs_dirty_mark(p->dirty, r->sector + at, n);
        p->cs_differ_bytes += n * BSR_SECTOR_SIZE;
    }
    for (uint32_t i = blocks; i < ((blocks + 7) / 8) * 8; i++) {
        if (bits[i / 8] >> (i % 8) & 1) {
            BS_ERR(MOD, "checksum answer for sector %" PRIu64 " sets bits past its %u blocks",
                   sector, blocks);
            return false;
        }
    }
    r->done = true;
    p->cs_compared_bytes += (uint64_t)r->count * BSR_SECTOR_SIZE;
    advance(p);
    return true;
}

/* Reading a range failed: its blocks cannot be compared, so they are sent. */
static void read_failed(struct primary *p, struct slot *s, int err)
{
    struct cs_range *r = find_range(p, s->sector);

    p->read_errors++;
    BS_ERR(MOD, "the write log could not read sector %" PRIu64 " count %u to compare checksums: "
                "%s; those blocks will be sent", s->sector, s->count, strerror(err));
    bs_dirty_mark(p->dirty, s->sector, s->count);
    slot_release(p, s);
    if (r) {
        r->done = true;
        advance(p);
    }
}

bool csync_on_read(struct primary *p, struct slot *s, int err)
{
    uint8_t *base = log_link_data(p->log) + s->offset;
    uint64_t hashes[BSR_HASHES_MAX];
    uint32_t b = block_sectors(p);
    uint32_t n = (s->count + b - 1) / b;
    struct cs_range *r;
    size_t len;

    if (s->verify)
        return verify_on_read(p, s, err);
    if (p->ls != LS_STREAMING || s->session != p->session) {
        slot_release(p, s); /* asked again on the next link */
        return true;
    }
    if (err) {
        read_failed(p, s, err);
        return true;
    }
    bs_hash_blocks(base, (uint64_t)s->count * BSR_SECTOR_SIZE, (uint64_t)b * BSR_SECTOR_SIZE,
                   hashes);
    /* The frame replaces the data it describes, in the same slot. */
    len = hashes_frame_pack(base, s->sector, b, s->count, hashes, n);
    if (bs_conn_write(p->conn, base, len, pump_slot_sent, s) < 0) {
        slot_release(p, s);
        link_down(p, "cannot queue a checksum frame");
        return p->log != NULL;
    }
    s->state = SLOT_SENDING;
    r = find_range(p, s->sector);
    if (r)
        r->sent = true;
    return true;
}

void csync_pump(struct primary *p)
{
    unsigned queued = 0;

    if (!p->cs_active || p->ls != LS_STREAMING || !p->log || p->stopping || p->sealing ||
        p->ep_state != EP_IDLE || p->peer_version < 3)
        return;
    if (!p->cs_start_ms)
        p->cs_start_ms = uv_now(p->loop);
    if (p->cs_clear && bs_dirty_inflight_grains(p->dirty) == 0) {
        /* The state file says a resync from sector 0 is due (the caller
         * wrote it), so what the bitmap holds may go: every grain it
         * marks that still differs is found again.  A full bitmap (a new
         * pairing) would otherwise be sent whole. */
        uint64_t was = bs_dirty_todo_grains(p->dirty) * grain_bytes(p);
        bs_dirty_clear_todo(p->dirty);
        p->cs_clear = false;
        if (was)
            BS_INFO(MOD, "checksum resync: the bitmap's %" PRIu64 " dirty bytes are set aside; "
                         "the checksums find what differs", was);
    }
    uint32_t b = block_sectors(p);
    uint64_t per = p->max_payload / ((uint64_t)b * BSR_SECTOR_SIZE);
    if (per > BSR_HASHES_MAX)
        per = BSR_HASHES_MAX;
    for (unsigned i = 0; i < p->nslots && p->cs_pos < p->disk_sectors && p->cs_len < CS_QMAX;
         i++) {
        struct slot *s = &p->slots[i];

        if (s->state != SLOT_FREE)
            continue;
        uint64_t count = per * b;
        if (count > p->disk_sectors - p->cs_pos)
            count = p->disk_sectors - p->cs_pos;
        unsigned npages = (unsigned)((count * BSR_SECTOR_SIZE + AREA_PAGE - 1) / AREA_PAGE);
        int page = pages_alloc(p, npages);
        if (page < 0)
            break; /* the area is full: again when a frame has gone out */
        *s = (struct slot){ .owner = p, .state = SLOT_READING, .hash = true,
                            .offset = (uint32_t)page * AREA_PAGE, .page = (uint32_t)page,
                            .npages = npages, .sector = p->cs_pos, .count = (uint32_t)count,
                            .session = p->session };
        if (log_link_read(p->log, s->sector, s->count, s->offset) < 0) {
            slot_release(p, s);
            break;
        }
        p->cs_q[(p->cs_head + p->cs_len) % CS_QMAX] =
            (struct cs_range){ .sector = p->cs_pos, .count = (uint32_t)count };
        p->cs_len++;
        p->cs_pos += count;
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

void csync_status(struct primary *p, struct bs_json_builder *b)
{
    bs_json_add_u64(b, "checksum_compared_bytes", p->cs_compared_bytes);
    bs_json_add_u64(b, "checksum_differing_bytes", p->cs_differ_bytes);
    bs_json_add_fixed(b, "checksum_percent",
                      p->cs_active && p->disk_sectors
                          ? 100.0 * (double)p->cs_done / (double)p->disk_sectors
                          : (p->cs_resyncs ? 100.0 : 0.0), 2);
    bs_json_add_u64(b, "checksum_resyncs", p->cs_resyncs);
}
