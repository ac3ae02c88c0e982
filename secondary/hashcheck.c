/* The secondary's side of block checksums (protocol version 3, HASHES and
 * HASHED; docs/protocol.md): the primary sends the XXH3-64 of each block
 * of a range as its disk holds it; the replica's range is read in the
 * thread pool, hashed block by block, and a bitmap of the blocks that
 * differ goes back.  Nothing is written here: the primary marks the
 * differing blocks dirty and sends them as data, in an epoch like any
 * other.
 *
 * A range is read only once the replica is settled (every committed epoch
 * applied, nothing being appended or written): the answer then describes
 * the replica's committed image, not a write half done.  The HASHES
 * payload buffer (a write buffer) carries the job; the answer goes out
 * from a ring in the session, so the buffer is free as soon as the job
 * is done.
 */
#include "secondary/secondary.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/blockhash.h"
#include "common/crc32c.h"
#include "common/log.h"

#define MOD "secondary"

static void hc_work(uv_work_t *req)
{
    struct wbuf *b = req->data;
    struct secondary *sec = b->sec;
    uint64_t want[BSR_HASHES_MAX];
    uint8_t *bits = b->hc_reply + BSR_FRAME_HDR_LEN;
    uint32_t nbits = (b->hc_blocks + 7) / 8;
    uint64_t block_bytes = (uint64_t)b->hc_block_sectors * BSR_SECTOR_SIZE;
    uint64_t range_bytes = (uint64_t)b->hc_range_sectors * BSR_SECTOR_SIZE;
    struct bsr_frame f = { .sector = b->hc_sector, .count = b->hc_blocks, .kind = BSR_HASHED };
    uint32_t crc;

    /* The hashes first: the range is read over them. */
    for (uint32_t i = 0; i < b->hc_blocks; i++) {
        uint64_t v;
        memcpy(&v, b->data + BSR_HASH_RANGE_LEN + 8 * i, 8);
        want[i] = le64toh(v);
    }
    b->hc_differ = 0;
    b->result = sec->target.ops->read(&sec->target, b->data, range_bytes,
                                      b->hc_sector * BSR_SECTOR_SIZE);
    if (b->result < 0)
        return;
    memset(bits, 0, nbits);
    for (uint32_t i = 0; i < b->hc_blocks; i++) {
        uint64_t at = i * block_bytes;
        uint64_t len = range_bytes - at < block_bytes ? range_bytes - at : block_bytes;
        if (bs_block_hash(b->data + at, len) != want[i]) {
            bits[i / 8] |= (uint8_t)(1u << (i % 8));
            b->hc_differ++;
        }
    }
    bsr_frame_pack(&f, b->hc_reply);
    crc = htole32(crc32c(0, b->hc_reply, BSR_FRAME_HDR_LEN + nbits));
    memcpy(bits + nbits, &crc, BSR_FRAME_CRC_LEN);
}

static void hc_done(uv_work_t *req, int status)
{
    struct wbuf *b = req->data;
    struct secondary *sec = b->sec;
    struct session *s = sec->session;
    size_t len = BSR_FRAME_HDR_LEN + (b->hc_blocks + 7) / 8 + BSR_FRAME_CRC_LEN;

    b->queued = false;
    b->busy = false;
    sec->hash_jobs--;
    if (!s || s->id != b->session_id || s->state == ST_CLOSED) {
        session_kick(sec);
        return;
    }
    if (status < 0 || b->result < 0) {
        BS_ERR(MOD, "reading %" PRIu64 " bytes at sector %" PRIu64 " of %s to compare checksums: "
                    "%s", (uint64_t)b->hc_range_sectors * BSR_SECTOR_SIZE, b->hc_sector,
               sec->target.path, strerror(status < 0 ? ECANCELED : -b->result));
        session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica read failed");
        return;
    }
    sec->hashed_bytes += (uint64_t)b->hc_range_sectors * BSR_SECTOR_SIZE;
    sec->hash_differ_blocks += b->hc_differ;
    /* The session's ring holds more answers than the connection can
     * queue, so a slot is never reused while its frame still waits. */
    uint8_t *out = s->hc_out[s->hc_out_next];
    s->hc_out_next = (s->hc_out_next + 1) % HC_OUT_SLOTS;
    memcpy(out, b->hc_reply, len);
    if (bs_conn_write(s->conn, out, len, NULL, NULL) < 0) {
        session_end(s, "cannot queue a checksum answer");
        return;
    }
    session_kick(sec);
}

/* Starts the job of the checked HASHES frame whose payload is in s->buf,
 * once the replica is settled.  Returns false when it must wait (the
 * session stalls; session_resume calls again). */
static bool hc_start(struct session *s)
{
    struct secondary *sec = s->sec;
    struct wbuf *b = s->buf;
    struct bsr_hash_range r;
    int rc;

    if (!epoch_settled(sec) || sec->writes_inflight) {
        s->state = ST_STALLED;
        return false;
    }
    bsr_hash_range_unpack(b->data, &r);
    s->buf = NULL;
    b->hc_sector = s->frame.sector;
    b->hc_blocks = s->frame.count;
    b->hc_block_sectors = r.block_sectors;
    b->hc_range_sectors = r.range_sectors;
    b->session_id = s->id;
    b->req.data = b;
    rc = uv_queue_work(sec->loop, &b->req, hc_work, hc_done);
    if (rc < 0) {
        b->busy = false;
        BS_ERR(MOD, "cannot start a checksum comparison: %s", uv_strerror(rc));
        session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica read failed");
        return true;
    }
    b->queued = true;
    sec->hash_jobs++;
    return true;
}

void hashcheck_frame(struct session *s)
{
    struct bsr_hash_range r;
    const char *why = NULL;

    bsr_hash_range_unpack(s->buf->data, &r);
    if (bsr_hash_range_check(&s->frame, &r, &s->limits, &why) < 0) {
        session_reject_frame(s, why);
        return;
    }
    if (!hc_start(s)) {
        s->hc_waiting = true;
        return;
    }
    if (s->state != ST_CLOSED)
        session_read_header(s);
}

bool hashcheck_resume(struct session *s)
{
    if (!hc_start(s))
        return false;
    s->hc_waiting = false;
    return true;
}
