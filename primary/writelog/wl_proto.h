/* The pure checks of the write-log protocol (docs/writelog-protocol.md),
 * shared by the server (wl_server.c) and its clients (wl_client.c,
 * primary/loglink.c): reassembling and recognising control messages,
 * bounding the ring's indices and requests, validating replies.  Nothing
 * here does I/O, allocates, logs or keeps global state: every function
 * looks only at its arguments, so unit tests and the fuzz harnesses
 * (tests/fuzz/fuzz-wlog-ctl.c) call them directly.
 */
#ifndef BLKSHIP_WRITELOG_WL_PROTO_H
#define BLKSHIP_WRITELOG_WL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/writelog.h"

/* ---- Server side ---------------------------------------------------------- */

/* Reassembles 20-byte control messages from a byte stream that may split
 * them anywhere.  Zero-initialise it; `len` bytes of a message are held. */
struct wl_ctl_reader {
    uint8_t buf[WL_CTLMSG_LEN];
    size_t len;
};

/* Consumes bytes of data[0..len) until one message is complete or the data
 * runs out.  Sets *complete, and copies the message to *out, when one is;
 * the caller handles it and feeds the rest.  Returns the bytes consumed
 * (at most len; at least 1 when len > 0). */
size_t wl_ctl_reader_feed(struct wl_ctl_reader *rd, const uint8_t *data, size_t len,
                          struct wl_ctlmsg *out, bool *complete);

/* The commands a server knows. */
enum wl_cmd_id {
    WL_CMD_ID_UNKNOWN = 0, /* answered with errr / ENOSYS */
    WL_CMD_ID_SHMP,
    WL_CMD_ID_PEEK,
    WL_CMD_ID_CLRW,
    WL_CMD_ID_GETW,
    WL_CMD_ID_KICK,
    WL_CMD_ID_INFO,
    WL_CMD_ID_SEAL,
    WL_CMD_ID_NEXT,
    WL_CMD_ID_COWC,
    WL_CMD_ID_ADDS,
    WL_CMD_ID_FRZE,
};
#define WL_CMD_ID_LAST WL_CMD_ID_FRZE

/* Which command m is; its parameters are not looked at. */
enum wl_cmd_id wl_cmd_parse(const struct wl_ctlmsg *m);

/* Room for four command bytes shown as \xNN each, and the NUL. */
#define WL_CMD_PRINTABLE_LEN (WL_CMD_LEN * 4 + 1)
/* Writes the four bytes of cmd as text for a log line: printable ASCII as
 * is, anything else as \xNN.  out is always NUL-terminated. */
void wl_cmd_printable(const char cmd[WL_CMD_LEN], char out[WL_CMD_PRINTABLE_LEN]);

/* How many requests the client has published beyond req_cons, given the
 * client's req_prod (read from shared memory: anything) and the server's
 * own indices.  Returns 0 with *n set, or -EPROTO when req_prod is more
 * than a ring ahead of the responses produced or behind req_cons: the ring
 * is broken.  On success *n never exceeds the ring entries that are
 * neither consumed-and-unanswered nor answered: the jobs the server has
 * free. */
int wl_ring_new_requests(RING_IDX req_prod, RING_IDX req_cons, RING_IDX rsp_prod_pvt,
                         RING_IDX *n);

/* Checks one ring request (a copy, not the shared slot) against the disk
 * and the data area.  Returns 0, -EINVAL when count is 0 or over
 * WL_RING_MAX_SECTORS, -ERANGE when the sectors are not all on the disk,
 * -EFAULT when offset + count * 512 is past the data area. */
int wl_ring_request_check(const log_request_t *req, uint64_t disk_sectors);

/* ---- Client side ---------------------------------------------------------- */

/* Length of the server message whose first four bytes are tag ("done",
 * "kick", "errr", "busy", "seal", "next", "info", "cowc", "adds", "frze"), or 0 when no message
 * begins so.  The untagged shmp reply is not covered. */
size_t wl_msg_len(const uint8_t tag[WL_CMD_LEN]);

/* True when tag begins an "errr" or "busy" message. */
bool wl_msg_is_refusal(const uint8_t tag[WL_CMD_LEN]);

/* The -errno that the err field of an errr/busy message or of a kick
 * notification stands for: -err when it is positive, -EPROTO otherwise.
 * (A kick notification with err 0 reports no error: callers test that.) */
int wl_msg_errno(int32_t err);

/* Checks a shmp reply: the shm size we expect and a NUL-terminated name.
 * Returns 0 or -EPROTO. */
int wl_shmp_reply_check(const struct wl_shmp_reply *r);
/* Checks an info reply's fields that a client relies on.  0 or -EPROTO. */
int wl_info_reply_check(const struct wl_info_reply *r);
/* Checks a seal/next reply: extents within the export area.  0 or -EPROTO. */
int wl_export_reply_check(const struct wl_export_reply *r);

/* One round of wl_client_read(): requests of `per` sectors (the last may
 * be shorter) for consecutive sectors from `sector`, request i reading into
 * the data area at i * per * 512, as many as fit the ring and the data
 * area.  The client waits for all of them before the next round. */
struct wl_read_round {
    uint64_t sector;   /* first sector of the round */
    uint64_t sectors;  /* sectors its requests cover */
    uint32_t per;      /* sectors per request */
    unsigned n;        /* requests, at most WL_RING_ENTRIES */
    uint64_t answered[(WL_RING_ENTRIES + 63) / 64];
};

/* Plans the round that starts a read of count (> 0) sectors at sector,
 * with requests of per sectors (1..WL_RING_MAX_SECTORS). */
void wl_read_round_plan(struct wl_read_round *rr, uint64_t sector, uint64_t count,
                        uint32_t per);
/* Request i (< rr->n) of the round. */
void wl_read_round_request(const struct wl_read_round *rr, unsigned i, log_request_t *req);
/* Checks a ring response (a copy) against the round.  Returns 0 when it
 * echoes a request of the round that was not answered yet (it is then
 * marked answered: its data may be copied from the data area at
 * rsp->offset to the read's buffer at (rsp->sector - rr->sector) * 512);
 * the read's -errno when the server reports a failed read; -EPROTO for
 * anything else. */
int wl_read_round_response(struct wl_read_round *rr, const log_response_t *rsp);

#endif
