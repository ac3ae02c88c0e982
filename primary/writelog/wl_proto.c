/* Pure checks of the write-log protocol (see wl_proto.h). */
#include "primary/writelog/wl_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- Server side ---------------------------------------------------------- */

size_t wl_ctl_reader_feed(struct wl_ctl_reader *rd, const uint8_t *data, size_t len,
                          struct wl_ctlmsg *out, bool *complete)
{
    size_t want = WL_CTLMSG_LEN - rd->len;
    size_t take = len < want ? len : want;

    memcpy(rd->buf + rd->len, data, take);
    rd->len += take;
    *complete = rd->len == WL_CTLMSG_LEN;
    if (*complete) {
        memcpy(out, rd->buf, sizeof(*out));
        rd->len = 0;
    }
    return take;
}

enum wl_cmd_id wl_cmd_parse(const struct wl_ctlmsg *m)
{
    static const struct {
        const char *cmd;
        enum wl_cmd_id id;
    } known[] = {
        { WL_CMD_KICK, WL_CMD_ID_KICK }, { WL_CMD_SHMP, WL_CMD_ID_SHMP },
        { WL_CMD_PEEK, WL_CMD_ID_PEEK }, { WL_CMD_CLRW, WL_CMD_ID_CLRW },
        { WL_CMD_GETW, WL_CMD_ID_GETW }, { WL_CMD_SEAL, WL_CMD_ID_SEAL },
        { WL_CMD_NEXT, WL_CMD_ID_NEXT }, { WL_CMD_INFO, WL_CMD_ID_INFO },
        { WL_CMD_COWC, WL_CMD_ID_COWC }, { WL_CMD_ADDS, WL_CMD_ID_ADDS },
        { WL_CMD_FRZE, WL_CMD_ID_FRZE },
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (wl_cmd_is(m, known[i].cmd))
            return known[i].id;
    return WL_CMD_ID_UNKNOWN;
}

void wl_cmd_printable(const char cmd[WL_CMD_LEN], char out[WL_CMD_PRINTABLE_LEN])
{
    size_t o = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < WL_CMD_LEN; i++) {
        unsigned char ch = (unsigned char)cmd[i];
        o += (size_t)snprintf(out + o, WL_CMD_PRINTABLE_LEN - o,
                              ch >= 0x20 && ch < 0x7f ? "%c" : "\\x%02x", ch);
    }
}

int wl_ring_new_requests(RING_IDX req_prod, RING_IDX req_cons, RING_IDX rsp_prod_pvt,
                         RING_IDX *n)
{
    /* Consumed and not yet answered: each holds one of the server's jobs. */
    RING_IDX busy = req_cons - rsp_prod_pvt;
    RING_IDX fresh = req_prod - req_cons;

    /* Measured from req_cons, not only from rsp_prod_pvt: a req_prod moved
     * back behind req_cons, while reads are in flight, is still within a
     * ring of the responses but would make the count wrap to ~2^32. */
    if (busy > WL_RING_ENTRIES || fresh > WL_RING_ENTRIES - busy)
        return -EPROTO;
    *n = fresh;
    return 0;
}

int wl_ring_request_check(const log_request_t *req, uint64_t disk_sectors)
{
    if (req->count == 0 || req->count > WL_RING_MAX_SECTORS)
        return -EINVAL;
    if (req->sector >= disk_sectors || req->count > disk_sectors - req->sector)
        return -ERANGE;
    if ((uint64_t)req->offset + ((uint64_t)req->count << WL_SECTOR_SHIFT) > WL_DATA_SIZE)
        return -EFAULT;
    return 0;
}

/* ---- Client side ---------------------------------------------------------- */

size_t wl_msg_len(const uint8_t tag[WL_CMD_LEN])
{
    if (!memcmp(tag, "done", WL_CMD_LEN))
        return WL_RSPLEN_DONE;
    if (!memcmp(tag, WL_CMD_KICK, WL_CMD_LEN) || wl_msg_is_refusal(tag))
        return WL_CTLMSG_LEN;
    if (!memcmp(tag, WL_CMD_SEAL, WL_CMD_LEN) || !memcmp(tag, WL_CMD_NEXT, WL_CMD_LEN))
        return sizeof(struct wl_export_reply);
    if (!memcmp(tag, WL_CMD_INFO, WL_CMD_LEN))
        return sizeof(struct wl_info_reply);
    if (!memcmp(tag, WL_CMD_COWC, WL_CMD_LEN))
        return sizeof(struct wl_cowc_reply);
    if (!memcmp(tag, WL_CMD_ADDS, WL_CMD_LEN))
        return sizeof(struct wl_adds_reply);
    if (!memcmp(tag, WL_CMD_FRZE, WL_CMD_LEN))
        return sizeof(struct wl_frze_reply);
    return 0;
}

bool wl_msg_is_refusal(const uint8_t tag[WL_CMD_LEN])
{
    return !memcmp(tag, WL_MSG_ERRR, WL_CMD_LEN) || !memcmp(tag, WL_MSG_BUSY, WL_CMD_LEN);
}

int wl_msg_errno(int32_t err)
{
    return err > 0 ? -err : -EPROTO;
}

int wl_shmp_reply_check(const struct wl_shmp_reply *r)
{
    if (r->shm_size != WL_SHM_SIZE || memchr(r->shm_name, 0, sizeof(r->shm_name)) == NULL)
        return -EPROTO;
    return 0;
}

int wl_info_reply_check(const struct wl_info_reply *r)
{
    if (r->version < 1 || r->sector_size != WL_SECTOR_SIZE || r->grain_sectors == 0 ||
        r->ring_max_sectors == 0)
        return -EPROTO;
    return 0;
}

int wl_export_reply_check(const struct wl_export_reply *r)
{
    return r->extents > WL_EXPORT_MAX ? -EPROTO : 0;
}

void wl_read_round_plan(struct wl_read_round *rr, uint64_t sector, uint64_t count,
                        uint32_t per)
{
    const uint64_t data_sectors = WL_DATA_SIZE / WL_SECTOR_SIZE;

    memset(rr, 0, sizeof(*rr));
    rr->sector = sector;
    rr->per = per;
    while (rr->sectors < count && rr->n < WL_RING_ENTRIES && rr->sectors + per <= data_sectors) {
        rr->sectors += count - rr->sectors < per ? count - rr->sectors : per;
        rr->n++;
    }
}

void wl_read_round_request(const struct wl_read_round *rr, unsigned i, log_request_t *req)
{
    uint64_t first = (uint64_t)i * rr->per;

    req->sector = rr->sector + first;
    req->count = (uint32_t)(rr->sectors - first < rr->per ? rr->sectors - first : rr->per);
    req->offset = (uint32_t)(first * WL_SECTOR_SIZE);
}

/* A failed read's response carries the errno in offset; errnos are small. */
#define WL_MAX_ERRNO 4095u

int wl_read_round_response(struct wl_read_round *rr, const log_response_t *rsp)
{
    log_request_t req;
    uint64_t d;
    unsigned i;

    if (rsp->count == 0)
        return rsp->offset > 0 && rsp->offset <= WL_MAX_ERRNO ? -(int)rsp->offset : -EPROTO;
    /* Modulo 2^64, as the client computes where the data goes: a round
     * whose sectors wrap past the top is bounded the same way. */
    d = rsp->sector - rr->sector;
    if (rr->per == 0 || d >= rr->sectors || d % rr->per != 0)
        return -EPROTO;
    i = (unsigned)(d / rr->per);
    wl_read_round_request(rr, i, &req);
    if (rsp->count != req.count || rsp->offset != req.offset)
        return -EPROTO;
    if (rr->answered[i / 64] & (1ull << (i % 64)))
        return -EPROTO; /* answered twice */
    rr->answered[i / 64] |= 1ull << (i % 64);
    return 0;
}
