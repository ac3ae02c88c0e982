/* Asynchronous write-log link (see loglink.h). */
#include "primary/loglink.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "primary/writelog/wl_proto.h"

#define MOD "loglink"
#define NMSG 256

struct log_link {
    uv_pipe_t pipe;
    struct wl_client c;
    const struct log_link_ops *ops;
    void *opaque;
    uint8_t rx[256];
    size_t rxlen;
    bool export_pending;        /* seal, next or adds: the export area is in use */
    const char *export_cmd;
    bool cowc_pending;
    bool frze_pending;
    bool info_pending;
    bool failed;
    bool closing;
    struct {
        uv_write_t req;
        struct wl_ctlmsg msg;
        bool busy;
    } out[NMSG];
    unsigned out_next;
};

static void link_fail(struct log_link *l, int err, const char *why)
{
    if (l->failed || l->closing)
        return;
    l->failed = true;
    BS_ERR(MOD, "write-log link failed: %s", why);
    uv_read_stop((uv_stream_t *)&l->pipe);
    l->ops->on_error(l->opaque, err);
}

/* Hands every response the log has pushed to the owner, in ring order. */
static void deliver_responses(struct log_link *l)
{
    RING_IDX rp = l->c.front.sring->rsp_prod;

    xen_rmb(); /* the responses are read after the index that covers them */
    while (l->c.front.rsp_cons != rp) {
        log_response_t rsp = *RING_GET_RESPONSE(&l->c.front, l->c.front.rsp_cons);
        l->c.front.rsp_cons++;
        if (!l->ops->on_read(l->opaque, &rsp))
            return;
    }
    l->ops->on_kick_done(l->opaque);
}

static void handle_message(struct log_link *l, const uint8_t *m)
{
    if (!memcmp(m, WL_CMD_KICK, 4)) {
        struct wl_ctlmsg_err e;
        memcpy(&e, m, sizeof(e));
        if (e.err) {
            link_fail(l, -e.err, "the log reports the ring broken");
            return;
        }
        deliver_responses(l);
    } else if (!memcmp(m, WL_CMD_SEAL, 4) || !memcmp(m, WL_CMD_NEXT, 4)) {
        struct wl_export_reply rep;
        memcpy(&rep, m, sizeof(rep));
        if (!l->export_pending || memcmp(m, l->export_cmd, 4) != 0 ||
            wl_export_reply_check(&rep) < 0) {
            link_fail(l, -EPROTO, "unexpected export reply");
            return;
        }
        l->export_pending = false;
        l->ops->on_export(l->opaque, &rep);
    } else if (!memcmp(m, WL_CMD_ADDS, 4)) {
        struct wl_adds_reply rep;
        memcpy(&rep, m, sizeof(rep));
        if (!l->export_pending || memcmp(l->export_cmd, WL_CMD_ADDS, 4) != 0) {
            link_fail(l, -EPROTO, "unexpected adds reply");
            return;
        }
        l->export_pending = false;
        l->ops->on_adds(l->opaque, &rep);
    } else if (!memcmp(m, WL_CMD_INFO, 4)) {
        struct wl_info_reply rep;
        memcpy(&rep, m, sizeof(rep));
        if (!l->info_pending || wl_info_reply_check(&rep) < 0 ||
            rep.disk_sectors != l->c.info.disk_sectors ||
            rep.grain_sectors != l->c.info.grain_sectors || rep.log_id != l->c.info.log_id) {
            link_fail(l, -EPROTO, "unexpected info reply");
            return;
        }
        l->info_pending = false;
        l->c.info = rep;
        l->ops->on_info(l->opaque, &rep);
    } else if (!memcmp(m, WL_CMD_COWC, 4)) {
        struct wl_cowc_reply rep;
        memcpy(&rep, m, sizeof(rep));
        if (!l->cowc_pending) {
            link_fail(l, -EPROTO, "unexpected cowc reply");
            return;
        }
        l->cowc_pending = false;
        l->ops->on_cowc(l->opaque, &rep);
    } else if (!memcmp(m, WL_CMD_FRZE, 4)) {
        struct wl_frze_reply rep;
        memcpy(&rep, m, sizeof(rep));
        if (!l->frze_pending) {
            link_fail(l, -EPROTO, "unexpected frze reply");
            return;
        }
        l->frze_pending = false;
        l->ops->on_frozen(l->opaque, &rep);
    } else if (!memcmp(m, WL_MSG_ERRR, 4)) {
        link_fail(l, -EPROTO, "the log refused a command (errr)");
    } else {
        link_fail(l, -EPROTO, "unexpected message from the log");
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct log_link *l = h->data;

    (void)suggested;
    *buf = uv_buf_init((char *)l->rx + l->rxlen, (unsigned)(sizeof(l->rx) - l->rxlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct log_link *l = s->data;

    (void)buf;
    if (nread < 0) {
        link_fail(l, (int)nread, nread == UV_EOF ? "the write log closed its socket"
                                                 : uv_strerror((int)nread));
        return;
    }
    l->rxlen += (size_t)nread;
    while (l->rxlen >= 4 && !l->failed) {
        size_t len = wl_msg_len(l->rx);
        if (len == 0) {
            link_fail(l, -EPROTO, "unknown reply tag from the write log");
            return;
        }
        if (l->rxlen < len)
            break;
        handle_message(l, l->rx);
        memmove(l->rx, l->rx + len, l->rxlen - len);
        l->rxlen -= len;
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct log_link *l = req->handle->data;

    for (unsigned i = 0; i < NMSG; i++)
        if (&l->out[i].req == req)
            l->out[i].busy = false;
    if (status < 0 && status != UV_ECANCELED)
        link_fail(l, status, "writing to the write log failed");
}

static int send_cmd(struct log_link *l, const char *cmd, const void *params, size_t plen)
{
    unsigned i = l->out_next;
    uv_buf_t b;
    int r;

    if (l->failed)
        return -EPIPE;
    if (l->out[i].busy)
        return -ENOBUFS;
    l->out_next = (i + 1) % NMSG;
    memset(&l->out[i].msg, 0, sizeof(l->out[i].msg));
    memcpy(l->out[i].msg.cmd, cmd, WL_CMD_LEN);
    if (plen)
        memcpy(l->out[i].msg.params, params, plen);
    b = uv_buf_init((char *)&l->out[i].msg, sizeof(l->out[i].msg));
    r = uv_write(&l->out[i].req, (uv_stream_t *)&l->pipe, &b, 1, on_written);
    if (r < 0)
        return r;
    l->out[i].busy = true;
    return 0;
}

static void on_closed(uv_handle_t *h);

/* Serves the connected client's socket on loop.  On failure the pipe is
 * initialised and owns no fd: the caller closes it (on_closed frees). */
static int attach(uv_loop_t *loop, struct log_link *l)
{
    int r;

    uv_pipe_init(loop, &l->pipe, 0);
    l->pipe.data = l;
    r = uv_pipe_open(&l->pipe, l->c.fd);
    if (r < 0) {
        close(l->c.fd);
        l->c.fd = -1;
        return r;
    }
    return uv_read_start((uv_stream_t *)&l->pipe, on_alloc, on_read);
}

struct connect_req {
    uv_work_t req;
    struct log_link *l;
    char sock[108];
    int result;
    log_link_connected_fn *done;
    void *opaque;
};

static void connect_work(uv_work_t *req)
{
    struct connect_req *cr = req->data;

    cr->result = wl_client_open(&cr->l->c, cr->sock);
}

static void connect_done(uv_work_t *req, int status)
{
    struct connect_req *cr = req->data;
    struct log_link *l = cr->l;
    int r = status < 0 ? status : cr->result;

    if (r < 0) {
        free(l); /* wl_client_open left nothing open */
        cr->done(cr->opaque, r, NULL);
    } else if ((r = attach(req->loop, l)) < 0) {
        l->closing = true;
        uv_close((uv_handle_t *)&l->pipe, on_closed); /* unmaps and frees */
        cr->done(cr->opaque, r, NULL);
    } else {
        cr->done(cr->opaque, 0, l);
    }
    free(cr);
}

int log_link_connect(uv_loop_t *loop, const char *sock, const struct log_link_ops *ops,
                     void *opaque, log_link_connected_fn *done)
{
    struct connect_req *cr;
    struct log_link *l;
    int r;

    if (strlen(sock) >= sizeof(cr->sock))
        return -ENAMETOOLONG;
    cr = calloc(1, sizeof(*cr));
    l = calloc(1, sizeof(*l));
    if (!cr || !l) {
        free(cr);
        free(l);
        return -ENOMEM;
    }
    l->ops = ops;
    l->opaque = opaque;
    l->c.fd = -1;
    cr->l = l;
    strcpy(cr->sock, sock);
    cr->done = done;
    cr->opaque = opaque;
    cr->req.data = cr;
    r = uv_queue_work(loop, &cr->req, connect_work, connect_done);
    if (r < 0) {
        free(cr);
        free(l);
    }
    return r;
}

static void on_closed(uv_handle_t *h)
{
    struct log_link *l = h->data;

    /* The pipe owned the fd and closed it; only the mapping remains. */
    l->c.fd = -1;
    wl_client_close(&l->c);
    free(l);
}

void log_link_close(struct log_link *l)
{
    if (!l || l->closing)
        return;
    l->closing = true;
    uv_close((uv_handle_t *)&l->pipe, on_closed);
}

const struct wl_info_reply *log_link_info(const struct log_link *l)
{
    return &l->c.info;
}

const struct wl_disk_range *log_link_extents(const struct log_link *l)
{
    return wl_client_extents(&l->c);
}

uint8_t *log_link_data(const struct log_link *l)
{
    return wl_shm_data(l->c.shm);
}

int log_link_read(struct log_link *l, uint64_t sector, uint32_t count, uint32_t offset)
{
    log_request_t *req;

    if (RING_FULL(&l->c.front))
        return -ENOSPC;
    req = RING_GET_REQUEST(&l->c.front, l->c.front.req_prod_pvt);
    req->sector = sector;
    req->count = count;
    req->offset = offset;
    l->c.front.req_prod_pvt++;
    return 0;
}

/* Sends cmd unless *pending is set, and sets it: one outstanding request
 * per kind of reply.  Returns 0, -EBUSY or send_cmd's error. */
static int send_once(struct log_link *l, bool *pending, const char *cmd, const void *params,
                     size_t plen)
{
    int r;

    if (*pending)
        return -EBUSY;
    r = send_cmd(l, cmd, params, plen);
    if (r == 0)
        *pending = true;
    return r;
}

/* seal, next and adds share the export area: one of them at a time. */
static int send_export(struct log_link *l, const char *cmd, const void *params, size_t plen)
{
    int r = send_once(l, &l->export_pending, cmd, params, plen);

    if (r == 0)
        l->export_cmd = cmd;
    return r;
}

int log_link_export(struct log_link *l, const char *cmd)
{
    return send_export(l, cmd, NULL, 0);
}

int log_link_seal(struct log_link *l, uint32_t flags)
{
    struct wl_seal_params sp = { .flags = flags };

    return send_export(l, WL_CMD_SEAL, &sp, sizeof(sp));
}

struct wl_disk_range *log_link_area(struct log_link *l)
{
    return l->export_pending ? NULL : wl_shm_export(l->c.shm);
}

int log_link_adds(struct log_link *l, uint32_t n)
{
    if (n == 0 || n > WL_EXPORT_MAX)
        return l->export_pending ? -EBUSY : -EINVAL;
    return send_export(l, WL_CMD_ADDS, &n, sizeof(n));
}

int log_link_info_refresh(struct log_link *l)
{
    return send_once(l, &l->info_pending, WL_CMD_INFO, NULL, 0);
}

int log_link_cowc(struct log_link *l)
{
    return send_once(l, &l->cowc_pending, WL_CMD_COWC, NULL, 0);
}

int log_link_freeze(struct log_link *l)
{
    if (l->c.info.version < 3)
        return -ENOTSUP;
    return send_once(l, &l->frze_pending, WL_CMD_FRZE, NULL, 0);
}

int log_link_kick(struct log_link *l)
{
    RING_PUSH_REQUESTS(&l->c.front);
    return send_cmd(l, WL_CMD_KICK, NULL, 0);
}
