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

int wl_ring_response_check(const log_response_t *rsp, uint64_t sector, uint64_t count)
{
    if (rsp->count == 0)
        return rsp->offset ? -(int)rsp->offset : -EPROTO;
    if (rsp->sector < sector || rsp->sector - sector >= count ||
        rsp->offset != (rsp->sector - sector) * WL_SECTOR_SIZE)
        return -EPROTO;
    return 0;
}
