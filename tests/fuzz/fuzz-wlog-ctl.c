/* libFuzzer harness for the write-log protocol's checks
 * (primary/writelog/wl_proto.c): the server's reassembly and recognition
 * of control messages and its bounds on the client's ring indices and
 * requests; the clients' checks of replies and ring responses.
 *
 * Input: byte 0 picks the part (modulo 4), the rest is its parameters:
 *   0  control stream: a chunking byte, then bytes as a client sends them
 *   1  server ring: disk_sectors u64, the server's req_cons and
 *      rsp_prod_pvt (u32 each), the client's req_prod u32, then requests
 *      of 16 bytes (sector u64, count u32, offset u32)
 *   2  replies: 256 bytes as a reply, read as each reply kind
 *   3  client ring: a read's sector u64 and count u64, the sectors per
 *      request u32, then responses of 16 bytes
 * Fields are little-endian; what is missing reads as zero.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "primary/writelog/wl_proto.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const commands[] = {
    NULL, WL_CMD_SHMP, WL_CMD_PEEK, WL_CMD_CLRW, WL_CMD_GETW,
    WL_CMD_KICK, WL_CMD_INFO, WL_CMD_SEAL, WL_CMD_NEXT, WL_CMD_COWC, WL_CMD_ADDS, WL_CMD_FRZE,
};
_Static_assert(sizeof(commands) / sizeof(commands[0]) == WL_CMD_ID_LAST + 1,
               "one name per command id");

static void fuzz_stream(struct fuzz_input *in)
{
    struct wl_ctl_reader rd = { .len = 0 };
    unsigned chunk = fuzz_u8(in) % 23 + 1; /* splits at every offset of a message */
    const uint8_t *stream = in->p;
    size_t len = in->left, used = 0, nmsg = 0;

    while (used < len) {
        size_t give = len - used < chunk ? len - used : chunk;
        /* A buffer of exactly the bytes given, so ASan sees an overread. */
        uint8_t *buf = malloc(give);
        size_t off = 0;

        FUZZ_CHECK(buf);
        memcpy(buf, stream + used, give);
        while (off < give) {
            struct wl_ctlmsg m;
            bool complete;
            size_t took = wl_ctl_reader_feed(&rd, buf + off, give - off, &m, &complete);

            FUZZ_CHECK(took >= 1 && took <= give - off);
            off += took;
            if (!complete)
                continue;
            /* Messages come out whole and in order: the n-th 20 bytes. */
            FUZZ_CHECK(memcmp(&m, stream + nmsg * WL_CTLMSG_LEN, WL_CTLMSG_LEN) == 0);
            nmsg++;

            enum wl_cmd_id id = wl_cmd_parse(&m);
            char text[WL_CMD_PRINTABLE_LEN];

            FUZZ_CHECK(id >= WL_CMD_ID_UNKNOWN && id <= WL_CMD_ID_LAST);
            if (id != WL_CMD_ID_UNKNOWN)
                FUZZ_CHECK(memcmp(m.cmd, commands[id], WL_CMD_LEN) == 0);
            wl_cmd_printable(m.cmd, text);
            FUZZ_CHECK(memchr(text, '\0', sizeof(text)) != NULL);
            FUZZ_CHECK(strlen(text) >= WL_CMD_LEN);
        }
        free(buf);
        used += give;
    }
    FUZZ_CHECK(nmsg == len / WL_CTLMSG_LEN);
    FUZZ_CHECK(rd.len == len % WL_CTLMSG_LEN);
}

static void fuzz_server_ring(struct fuzz_input *in)
{
    uint64_t disk_sectors = fuzz_u64(in);
    RING_IDX req_cons = fuzz_u32(in);
    /* The server's own invariant: at most a ring of requests consumed and
     * not yet answered (each one holds a job, and there are as many jobs
     * as ring entries). */
    RING_IDX rsp_prod_pvt = req_cons - fuzz_u32(in) % (WL_RING_ENTRIES + 1);
    RING_IDX req_prod = fuzz_u32(in), n = 0;

    if (wl_ring_new_requests(req_prod, req_cons, rsp_prod_pvt, &n) == 0) {
        /* Never more new requests than free jobs and free response slots. */
        FUZZ_CHECK(n <= WL_RING_ENTRIES - (req_cons - rsp_prod_pvt));
        FUZZ_CHECK(req_cons + n == req_prod);
    }

    while (in->left) {
        log_request_t req;
        int r;

        req.sector = fuzz_u64(in);
        req.count = fuzz_u32(in);
        req.offset = fuzz_u32(in);
        r = wl_ring_request_check(&req, disk_sectors);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE || r == -EFAULT);
        if (r != 0)
            continue;
        /* An accepted request reads sectors of the disk into the data area. */
        FUZZ_CHECK(req.count > 0 && req.count <= WL_RING_MAX_SECTORS);
        FUZZ_CHECK((unsigned __int128)req.sector + req.count <= disk_sectors);
        FUZZ_CHECK((uint64_t)req.offset + (uint64_t)req.count * WL_SECTOR_SIZE <= WL_DATA_SIZE);
    }
}

static void fuzz_replies(struct fuzz_input *in)
{
    uint8_t *raw = malloc(WL_RSPLEN_SHMP);
    struct wl_shmp_reply shmp;
    struct wl_info_reply info;
    struct wl_export_reply exp;
    struct wl_ctlmsg_err err;
    size_t len;

    FUZZ_CHECK(raw);
    fuzz_take(in, raw, WL_RSPLEN_SHMP);

    len = wl_msg_len(raw);
    FUZZ_CHECK(len == 0 || len == WL_RSPLEN_DONE || len == WL_CTLMSG_LEN ||
               len == sizeof(struct wl_export_reply) || len == sizeof(struct wl_info_reply) ||
               len == sizeof(struct wl_cowc_reply) || len == sizeof(struct wl_adds_reply));
    if (wl_msg_is_refusal(raw))
        FUZZ_CHECK(len == WL_CTLMSG_LEN);

    memcpy(&err, raw, sizeof(err));
    FUZZ_CHECK(wl_msg_errno(err.err) < 0);

    memcpy(&shmp, raw, sizeof(shmp));
    if (wl_shmp_reply_check(&shmp) == 0) {
        /* The client copies the name and passes it to shm_open(). */
        FUZZ_CHECK(strlen(shmp.shm_name) < sizeof(shmp.shm_name));
        FUZZ_CHECK(shmp.shm_size == WL_SHM_SIZE);
    }
    memcpy(&info, raw, sizeof(info));
    if (wl_info_reply_check(&info) == 0)
        FUZZ_CHECK(info.sector_size == WL_SECTOR_SIZE && info.grain_sectors > 0 &&
                   info.ring_max_sectors > 0);
    memcpy(&exp, raw, sizeof(exp));
    if (wl_export_reply_check(&exp) == 0)
        FUZZ_CHECK(exp.extents <= WL_EXPORT_MAX);
    free(raw);
}

static void fuzz_client_ring(struct fuzz_input *in)
{
    uint64_t sector = fuzz_u64(in), count = fuzz_u64(in);
    uint32_t per = fuzz_u32(in) % WL_RING_MAX_SECTORS + 1;
    struct wl_read_round rr, echo;
    uint64_t accepted_from[WL_RING_ENTRIES], accepted_len[WL_RING_ENTRIES], total = 0;
    unsigned accepted = 0;

    if (count == 0)
        count = 1; /* wl_client_read() plans rounds only for what is left */
    wl_read_round_plan(&rr, sector, count, per);
    FUZZ_CHECK(rr.n >= 1 && rr.n <= WL_RING_ENTRIES);
    FUZZ_CHECK(rr.sectors >= 1 && rr.sectors <= count);

    /* The round's own requests are within the data area, and echoing each
     * of them is accepted once, never twice. */
    echo = rr;
    for (unsigned i = 0; i < rr.n; i++) {
        log_request_t req;

        wl_read_round_request(&rr, i, &req);
        FUZZ_CHECK(req.count > 0 && req.count <= per);
        FUZZ_CHECK((uint64_t)req.offset + (uint64_t)req.count * WL_SECTOR_SIZE <= WL_DATA_SIZE);
        FUZZ_CHECK(wl_read_round_response(&echo, &req) == 0);
        FUZZ_CHECK(wl_read_round_response(&echo, &req) == -EPROTO);
    }

    /* Responses as the server (or anyone who can write the shm) chose. */
    while (in->left) {
        log_response_t rsp;
        int r;

        rsp.sector = fuzz_u64(in);
        rsp.count = fuzz_u32(in);
        rsp.offset = fuzz_u32(in);
        r = wl_read_round_response(&rr, &rsp);
        FUZZ_CHECK(r <= 0);
        if (rsp.count == 0)
            FUZZ_CHECK(r < 0);
        if (r != 0)
            continue;
        /* The client copies count sectors from the data area at offset to
         * its buffer at (sector - first) * 512: both in bounds, and no two
         * accepted responses overlap, so the round adds up to its size. */
        FUZZ_CHECK((unsigned __int128)(rsp.sector - sector) + rsp.count <= rr.sectors);
        FUZZ_CHECK((uint64_t)rsp.offset + (uint64_t)rsp.count * WL_SECTOR_SIZE <= WL_DATA_SIZE);
        for (unsigned j = 0; j < accepted; j++)
            FUZZ_CHECK(rsp.sector - sector >= accepted_from[j] + accepted_len[j] ||
                       rsp.sector - sector + rsp.count <= accepted_from[j]);
        FUZZ_CHECK(accepted < rr.n);
        accepted_from[accepted] = rsp.sector - sector;
        accepted_len[accepted] = rsp.count;
        accepted++;
        total += rsp.count;
        FUZZ_CHECK(total <= rr.sectors);
    }
    if (accepted == rr.n)
        FUZZ_CHECK(total == rr.sectors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };

    switch (fuzz_u8(&in) % 4) {
    case 0:
        fuzz_stream(&in);
        break;
    case 1:
        fuzz_server_ring(&in);
        break;
    case 2:
        fuzz_replies(&in);
        break;
    case 3:
        fuzz_client_ring(&in);
        break;
    }
    return 0;
}
