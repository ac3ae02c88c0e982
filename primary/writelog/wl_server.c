/* The write-log server (see wl_server.h).
 *
 * Threads: the control thread runs a libuv loop with the listening socket,
 * the one client connection and the completion wake-up; reader threads
 * serve ring requests through the frontend's read function, straight into
 * the shm data area, and hand finished jobs back through a mutex-protected
 * queue and uv_async_send().  Only the control thread touches the ring,
 * the socket and the log's control side.
 *
 * Client states (one client at a time):
 *   CL_NONE     no client; a connection is accepted and served at once.
 *   CL_ACTIVE   a client is connected and its commands are served.
 *   CL_WAITING  a new client is connected but reads of the previous one
 *               are still in flight; its commands wait until they finish,
 *               then the ring is reset for it.
 */
#include "primary/writelog/wl_server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"
#include "common/uds.h"
#include "primary/writelog/wl_proto.h"
#include "primary/writelog/wl_shm.h"

#define MOD "writelog"
#define NJOBS WL_RING_ENTRIES
#define NBATCH (WL_RING_ENTRIES + 1)

enum client_state {
    CL_NONE,
    CL_ACTIVE,
    CL_WAITING,
};

struct wl_job {
    log_request_t req;
    int err;            /* 0 or a positive errno from the read */
    uint64_t tag;       /* the epoch open when the kick consumed it (wl_epoch_read_tag) */
    uint64_t batch;     /* sequence number of the kick that consumed it */
};

/* The requests consumed by one kick; its notification goes out when all of
 * them, and all of earlier kicks, are answered. */
struct wl_batch {
    unsigned outstanding;
    unsigned notifies;
};

struct wl_server {
    char safe_name[200];
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint64_t disk_sectors;
    uint64_t log_id;
    const struct wl_reader_ops *ops;
    struct wl_epoch_ops epoch_ops;
    void *opaque;
    struct wl_log *log;
    struct wl_epoch *ep;
    struct wl_shm shm;

    uv_loop_t loop;
    uv_pipe_t listener;
    uv_async_t wake;
    uv_timer_t partial_timer;
    uv_thread_t loop_thread;
    bool loop_started;

    uv_pipe_t *client;
    enum client_state cstate;
    struct wl_ctl_reader rd;

    struct log_back_ring back;
    bool ring_broken;
    struct wl_batch batches[NBATCH];
    uint64_t batch_head, batch_tail; /* sequence numbers; [head, tail) pending */
    unsigned inflight;

    /* Shared with the reader threads, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    struct wl_job jobs[NJOBS];
    struct wl_job *free_jobs[NJOBS];
    unsigned nfree;
    struct wl_job *todo[NJOBS];
    unsigned todo_head, ntodo;
    struct wl_job *done[NJOBS];
    unsigned ndone;
    unsigned nreaders;
    unsigned idle;                     /* readers waiting for a job */
    pthread_t readers[WL_MAX_READERS];
    bool sync_init;
};

struct reader_arg {
    struct wl_server *srv;
    unsigned index;
};

static struct bs_ratelimit ring_rl = BS_RATELIMIT_INIT(1000, 10);

/* ---- Reader threads ----------------------------------------------------- */

static void *reader_main(void *arg_)
{
    struct reader_arg *arg = arg_;
    struct wl_server *srv = arg->srv;
    unsigned index = arg->index;

    free(arg);
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        srv->idle++;
        while (srv->ntodo == 0 && !srv->stopping)
            pthread_cond_wait(&srv->cond, &srv->lock);
        srv->idle--;
        if (srv->ntodo == 0 && srv->stopping)
            break;
        struct wl_job *job = srv->todo[srv->todo_head];
        srv->todo_head = (srv->todo_head + 1) % NJOBS;
        srv->ntodo--;
        pthread_mutex_unlock(&srv->lock);

        uint8_t *buf = wl_shm_data(srv->shm.base) + job->req.offset;
        int r = srv->ops->read(srv->opaque, index, buf, job->req.sector, job->req.count);
        /* The disk as of the seal: preserved copies over what was read,
         * before the response tells the client the data is there. */
        if (r == 0)
            wl_epoch_read_done(srv->ep, job->tag, buf, job->req.sector, job->req.count);
        job->err = r < 0 ? -r : 0;

        pthread_mutex_lock(&srv->lock);
        srv->done[srv->ndone++] = job;
        uv_async_send(&srv->wake);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ---- Control socket output ---------------------------------------------- */

struct send_req {
    uv_write_t req;
    size_t len;
    char data[];
};

static void close_client(struct wl_server *srv, const char *why);

static void on_sent(uv_write_t *req, int status)
{
    struct send_req *s = (struct send_req *)req;

    if (status < 0 && status != UV_ECANCELED)
        BS_WARN(MOD, "control client write failed: %s", uv_strerror(status));
    free(s);
}

/* Queues len bytes to the connected client; they are copied. */
static void client_send(struct wl_server *srv, uv_pipe_t *to, const void *buf, size_t len)
{
    struct send_req *s = malloc(sizeof(*s) + len);
    uv_buf_t b;
    int r;

    if (!s) {
        close_client(srv, "out of memory for a reply");
        return;
    }
    memcpy(s->data, buf, len);
    s->len = len;
    b = uv_buf_init(s->data, (unsigned)len);
    r = uv_write(&s->req, (uv_stream_t *)to, &b, 1, on_sent);
    if (r < 0) {
        free(s);
        BS_WARN(MOD, "control client write: %s", uv_strerror(r));
    }
}

static void send_ctlmsg(struct wl_server *srv, const char *cmd, int err, const char *refused)
{
    struct wl_ctlmsg_err m;

    memset(&m, 0, sizeof(m));
    memcpy(m.cmd, cmd, WL_CMD_LEN);
    m.err = err;
    if (refused)
        memcpy(m.refused, refused, WL_CMD_LEN);
    client_send(srv, srv->client, &m, sizeof(m));
}

/* ---- Client lifecycle ----------------------------------------------------- */

static void on_client_closed(uv_handle_t *h)
{
    free(h);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char rx[4096];

    (void)h;
    (void)suggested;
    /* Only the control thread reads, and on_read consumes the bytes before
     * the next allocation: one static buffer is enough. */
    *buf = uv_buf_init(rx, sizeof(rx));
}

/* Gives the (new) client a fresh ring and starts reading its commands. */
static void activate_client(struct wl_server *srv)
{
    struct log_sring *sring = wl_shm_ring(srv->shm.base);
    int r;

    SHARED_RING_INIT(sring);
    BACK_RING_INIT(&srv->back, sring, WL_RING_SIZE);
    srv->ring_broken = false;
    srv->batch_head = srv->batch_tail = 0;
    srv->rd.len = 0;
    srv->cstate = CL_ACTIVE;
    r = uv_read_start((uv_stream_t *)srv->client, on_alloc, on_read);
    if (r < 0)
        close_client(srv, uv_strerror(r));
}

static void close_client(struct wl_server *srv, const char *why)
{
    if (!srv->client)
        return;
    if (srv->rd.len)
        BS_WARN(MOD, "control client gone (%s) in the middle of a command (%zu of %u bytes)",
                why, srv->rd.len, WL_CTLMSG_LEN);
    else
        BS_INFO(MOD, "control client disconnected (%s)", why);
    if (srv->inflight)
        BS_INFO(MOD, "%u ring reads still in flight; they complete unobserved", srv->inflight);
    wl_epoch_client_gone(srv->ep);
    uv_timer_stop(&srv->partial_timer);
    uv_close((uv_handle_t *)srv->client, on_client_closed);
    srv->client = NULL;
    srv->cstate = CL_NONE;
    srv->rd.len = 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct wl_server *srv = server->data;
    uv_pipe_t *c;
    int r;

    if (status < 0) {
        BS_WARN(MOD, "accept on control socket: %s", uv_strerror(status));
        return;
    }
    c = malloc(sizeof(*c));
    if (!c) {
        BS_ERR(MOD, "out of memory accepting a control client");
        return;
    }
    uv_pipe_init(&srv->loop, c, 0);
    c->data = srv;
    r = uv_accept(server, (uv_stream_t *)c);
    if (r < 0) {
        BS_WARN(MOD, "accept on control socket: %s", uv_strerror(r));
        uv_close((uv_handle_t *)c, on_client_closed);
        return;
    }
    if (srv->client) {
        struct wl_ctlmsg_err m;
        uv_buf_t b;

        BS_WARN(MOD, "refused a second control client: one is already connected");
        memset(&m, 0, sizeof(m));
        memcpy(m.cmd, WL_MSG_BUSY, WL_CMD_LEN);
        m.err = EBUSY;
        b = uv_buf_init((char *)&m, sizeof(m));
        uv_try_write((uv_stream_t *)c, &b, 1);
        uv_close((uv_handle_t *)c, on_client_closed);
        return;
    }
    srv->client = c;
    if (srv->inflight) {
        BS_INFO(MOD, "control client connected; waiting for %u reads of the previous one",
                srv->inflight);
        srv->cstate = CL_WAITING;
        return;
    }
    BS_INFO(MOD, "control client connected");
    activate_client(srv);
}

/* ---- Ring service --------------------------------------------------------- */

static void push_response(struct wl_server *srv, const log_request_t *req, int err)
{
    log_response_t *rsp = RING_GET_RESPONSE(&srv->back, srv->back.rsp_prod_pvt);

    if (err) {
        rsp->sector = req->sector;
        rsp->count = 0;
        rsp->offset = (uint32_t)err;
    } else {
        *rsp = *req;
    }
    srv->back.rsp_prod_pvt++;
}

/* Sends the notifications of every leading kick whose requests are done. */
static void flush_batches(struct wl_server *srv)
{
    while (srv->batch_head != srv->batch_tail) {
        struct wl_batch *b = &srv->batches[srv->batch_head % NBATCH];
        if (b->outstanding)
            break;
        if (srv->client && srv->cstate == CL_ACTIVE)
            for (unsigned i = 0; i < b->notifies; i++)
                send_ctlmsg(srv, WL_CMD_KICK, 0, NULL);
        srv->batch_head++;
    }
}

static void handle_kick(struct wl_server *srv)
{
    RING_IDX rp, rc, nreq;
    unsigned queued = 0;
    uint32_t dropped;

    if (srv->ring_broken) {
        send_ctlmsg(srv, WL_CMD_KICK, EPROTO, WL_CMD_KICK);
        return;
    }
    rp = srv->back.sring->req_prod;
    xen_rmb(); /* read requests only after the index that publishes them */
    if (wl_ring_new_requests(rp, srv->back.req_cons, srv->back.rsp_prod_pvt, &nreq) < 0) {
        BS_ERR(MOD, "ring broken by the client: req_prod %u is more than %u past rsp_prod %u "
                    "or behind req_cons %u; ignoring the ring until the client reconnects",
               rp, (unsigned)WL_RING_ENTRIES, srv->back.rsp_prod_pvt, srv->back.req_cons);
        srv->ring_broken = true;
        send_ctlmsg(srv, WL_CMD_KICK, EPROTO, WL_CMD_KICK);
        return;
    }

    pthread_mutex_lock(&srv->lock);
    for (rc = srv->back.req_cons; rc != srv->back.req_cons + nreq; rc++) {
        log_request_t req;
        int err;

        /* Copy first: the client may change the slot while we look at it. */
        RING_COPY_REQUEST(&srv->back, rc, &req);
        err = -wl_ring_request_check(&req, srv->disk_sectors);
        if (err) {
            if (bs_ratelimit_ok(&ring_rl, &dropped))
                BS_WARN(MOD, "refused ring request sector %" PRIu64 " count %u offset %u: %s%s",
                        (uint64_t)req.sector, req.count, req.offset, strerror(err),
                        dropped ? " (earlier messages suppressed)" : "");
            push_response(srv, &req, err);
            continue;
        }
        struct wl_job *job = srv->free_jobs[--srv->nfree];
        job->req = req;
        job->err = 0;
        job->tag = wl_epoch_read_tag(srv->ep);
        job->batch = srv->batch_tail;
        srv->todo[(srv->todo_head + srv->ntodo) % NJOBS] = job;
        srv->ntodo++;
        queued++;
    }
    srv->back.req_cons = rc;
    /* One wake-up per new job, as far as readers are idle: waking them all
     * for a kick of a few requests would have most of them take the lock
     * only to sleep again.  A busy reader takes the rest when it is done. */
    for (unsigned i = 0; i < queued && i < srv->idle; i++)
        pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    RING_PUSH_RESPONSES(&srv->back);

    srv->inflight += queued;
    if (queued) {
        srv->batches[srv->batch_tail % NBATCH] = (struct wl_batch){ queued, 1 };
        srv->batch_tail++;
    } else if (srv->batch_head != srv->batch_tail) {
        srv->batches[(srv->batch_tail - 1) % NBATCH].notifies++;
    } else {
        send_ctlmsg(srv, WL_CMD_KICK, 0, NULL);
    }
}

static void on_wake(uv_async_t *a)
{
    struct wl_server *srv = a->data;
    struct wl_job *done[NJOBS];
    unsigned n;

    pthread_mutex_lock(&srv->lock);
    n = srv->ndone;
    memcpy(done, srv->done, n * sizeof(done[0]));
    srv->ndone = 0;
    pthread_mutex_unlock(&srv->lock);

    for (unsigned i = 0; i < n; i++) {
        struct wl_job *job = done[i];
        if (job->err && bs_ratelimit_ok(&ring_rl, &(uint32_t){ 0 }))
            BS_ERR(MOD, "reading sector %" PRIu64 " count %u for the ring: %s",
                   (uint64_t)job->req.sector, job->req.count, strerror(job->err));
        push_response(srv, &job->req, job->err);
        srv->batches[job->batch % NBATCH].outstanding--;
    }
    if (n)
        RING_PUSH_RESPONSES(&srv->back);

    pthread_mutex_lock(&srv->lock);
    for (unsigned i = 0; i < n; i++)
        srv->free_jobs[srv->nfree++] = done[i];
    pthread_mutex_unlock(&srv->lock);
    srv->inflight -= n;
    flush_batches(srv);

    if (srv->inflight == 0 && srv->cstate == CL_WAITING) {
        BS_INFO(MOD, "previous client's reads finished; serving the new control client");
        activate_client(srv);
    }
}

/* ---- Commands ------------------------------------------------------------- */

static void send_export_reply(struct wl_server *srv, const char *cmd, struct wl_export_result res)
{
    struct wl_export_reply r;

    memset(&r, 0, sizeof(r));
    memcpy(r.tag, cmd, WL_CMD_LEN);
    r.extents = res.extents;
    r.epoch = wl_log_epoch(srv->log);
    r.pending_grains = wl_log_pending_grains(srv->log);
    r.more = res.more ? 1 : 0;
    r.flags = wl_epoch_flags(srv->ep, r.epoch);
    client_send(srv, srv->client, &r, sizeof(r));
}

/* "adds": the client wrote n ranges at the start of the export area. */
static void handle_adds(struct wl_server *srv, const struct wl_ctlmsg *m)
{
    struct wl_adds_params p;
    struct wl_adds_reply r;
    uint64_t grains = 0;
    int err;

    memcpy(&p, m->params, sizeof(p));
    err = wl_epoch_adds(srv->ep, wl_shm_export(srv->shm.base), p.n, &grains);
    if (err < 0) {
        BS_WARN(MOD, "adds of %" PRIu32 " ranges refused: a range is empty or outside the "
                     "disk, or there are more than %u",
                p.n, (unsigned)WL_EXPORT_MAX);
        send_ctlmsg(srv, WL_MSG_ERRR, -err, m->cmd);
        return;
    }
    memset(&r, 0, sizeof(r));
    memcpy(r.tag, WL_CMD_ADDS, WL_CMD_LEN);
    r.extents = p.n;
    r.grains = grains;
    client_send(srv, srv->client, &r, sizeof(r));
}

static void handle_command(struct wl_server *srv, const struct wl_ctlmsg *m)
{
    struct wl_disk_range *area = wl_shm_export(srv->shm.base);
    const uint32_t slots = WL_EXPORT_MAX;
    struct wl_export_result res;
    enum wl_cmd_id id = wl_cmd_parse(m);

    if (id == WL_CMD_ID_KICK) {
        handle_kick(srv);
    } else if (id == WL_CMD_ID_SHMP) {
        struct wl_shmp_reply r;
        memset(&r, 0, sizeof(r));
        r.shm_size = WL_SHM_SIZE;
        memcpy(r.shm_name, srv->shm.name, sizeof(r.shm_name));
        client_send(srv, srv->client, &r, sizeof(r));
    } else if (id == WL_CMD_ID_PEEK) {
        wl_log_peek(srv->log, area, slots);
        client_send(srv, srv->client, "done", WL_RSPLEN_DONE);
    } else if (id == WL_CMD_ID_CLRW) {
        wl_epoch_clear(srv->ep);
        client_send(srv, srv->client, "done", WL_RSPLEN_DONE);
    } else if (id == WL_CMD_ID_GETW) {
        res = wl_epoch_seal(srv->ep, WL_SEAL_HISTORICAL, area, slots);
        if (res.more)
            BS_INFO(MOD, "getw: export area full; the rest of epoch %" PRIu64
                         " stays pending for \"next\"", wl_log_epoch(srv->log));
        client_send(srv, srv->client, "done", WL_RSPLEN_DONE);
    } else if (id == WL_CMD_ID_SEAL) {
        struct wl_seal_params sp;
        static const uint8_t zero[sizeof(sp.reserved)];
        memcpy(&sp, m->params, sizeof(sp));
        if ((sp.flags & ~WL_SEAL_RECORD) || memcmp(sp.reserved, zero, sizeof(zero)) != 0) {
            BS_WARN(MOD, "seal with unknown flags 0x%" PRIx32 " refused", sp.flags);
            send_ctlmsg(srv, WL_MSG_ERRR, EINVAL, m->cmd);
            return;
        }
        res = wl_epoch_seal(srv->ep, sp.flags & WL_SEAL_RECORD ? WL_SEAL_ONLY_RECORD : WL_SEAL_COW,
                            area, slots);
        send_export_reply(srv, WL_CMD_SEAL, res);
    } else if (id == WL_CMD_ID_NEXT) {
        res = wl_log_next(srv->log, area, slots);
        send_export_reply(srv, WL_CMD_NEXT, res);
    } else if (id == WL_CMD_ID_INFO) {
        struct wl_info_reply r;
        memset(&r, 0, sizeof(r));
        memcpy(r.tag, WL_CMD_INFO, WL_CMD_LEN);
        r.version = WL_PROTO_VERSION;
        r.disk_sectors = srv->disk_sectors;
        r.sector_size = WL_SECTOR_SIZE;
        r.grain_sectors = wl_log_grain(srv->log);
        r.export_max = WL_EXPORT_MAX;
        r.ring_max_sectors = WL_RING_MAX_SECTORS;
        r.log_id = srv->log_id;
        r.epoch = wl_log_epoch(srv->log);
        r.live_grains = wl_log_live_grains(srv->log);
        r.pending_grains = wl_log_pending_grains(srv->log);
        uint64_t refused;
        r.flags = wl_epoch_flags(srv->ep, r.epoch) |
                  (wl_epoch_cow_enabled(srv->ep) ? WL_IF_COW : 0) |
                  (wl_epoch_frozen(srv->ep, &refused) ? WL_IF_FROZEN : 0);
        client_send(srv, srv->client, &r, sizeof(r));
    } else if (id == WL_CMD_ID_COWC) {
        struct wl_cowc_reply r;
        wl_epoch_cowc(srv->ep, &r);
        client_send(srv, srv->client, &r, sizeof(r));
    } else if (id == WL_CMD_ID_ADDS) {
        handle_adds(srv, m);
    } else if (id == WL_CMD_ID_FRZE) {
        struct wl_frze_reply r;
        uint64_t refused;
        memset(&r, 0, sizeof(r));
        memcpy(r.tag, WL_CMD_FRZE, WL_CMD_LEN);
        if (!wl_epoch_frozen(srv->ep, &refused))
            BS_WARN(MOD, "frozen by the agent: every write fails from now on (EROFS)");
        wl_epoch_freeze(srv->ep);
        (void)wl_epoch_frozen(srv->ep, &refused);
        r.refused = refused;
        client_send(srv, srv->client, &r, sizeof(r));
    } else {
        char printable[WL_CMD_PRINTABLE_LEN];

        wl_cmd_printable(m->cmd, printable);
        BS_WARN(MOD, "unknown control command \"%s\"; answered with errr", printable);
        send_ctlmsg(srv, WL_MSG_ERRR, ENOSYS, m->cmd);
    }
}

static void on_partial_timeout(uv_timer_t *t)
{
    struct wl_server *srv = t->data;

    close_client(srv, "no complete command within the time limit");
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct wl_server *srv = stream->data;
    size_t used = 0;

    if (nread < 0) {
        close_client(srv, nread == UV_EOF ? "end of file" : uv_strerror((int)nread));
        return;
    }
    while (used < (size_t)nread && srv->client) {
        struct wl_ctlmsg m;
        bool complete;

        used += wl_ctl_reader_feed(&srv->rd, (const uint8_t *)buf->base + used,
                                   (size_t)nread - used, &m, &complete);
        if (complete)
            handle_command(srv, &m);
    }
    if (!srv->client)
        return;
    if (srv->rd.len)
        uv_timer_start(&srv->partial_timer, on_partial_timeout, WL_PARTIAL_TIMEOUT_MS, 0);
    else
        uv_timer_stop(&srv->partial_timer);
}

/* ---- Start and stop --------------------------------------------------------- */

/* Every handle is closed by on_wake_or_stop; this catches none in normal
 * operation and keeps uv_loop_close() from failing if one was missed. */
static void on_stop_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        BS_WARN(MOD, "closing a leftover handle of type %s", uv_handle_type_name(h->type));
        uv_close(h, NULL);
    }
}

static void loop_main(void *arg)
{
    struct wl_server *srv = arg;

    uv_run(&srv->loop, UV_RUN_DEFAULT);
}

/* The stop request arrives through the same async handle as completions. */
static void on_wake_or_stop(uv_async_t *a)
{
    struct wl_server *srv = a->data;
    bool stopping;

    on_wake(a);
    pthread_mutex_lock(&srv->lock);
    stopping = srv->stopping && srv->ntodo == 0 && srv->ndone == 0;
    pthread_mutex_unlock(&srv->lock);
    if (stopping && srv->inflight == 0) {
        if (srv->client) {
            uv_close((uv_handle_t *)srv->client, on_client_closed);
            srv->client = NULL;
        }
        uv_close((uv_handle_t *)&srv->listener, NULL);
        uv_close((uv_handle_t *)&srv->partial_timer, NULL);
        uv_close((uv_handle_t *)&srv->wake, NULL);
    }
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

/* Refuses a path owned by a live server; removes a stale socket file. */
static int claim_socket_path(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    BS_WARN(MOD, "removing stale control socket %s", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int random_u64(uint64_t *out)
{
    if (getrandom(out, sizeof(*out), 0) != (ssize_t)sizeof(*out))
        return -errno;
    return 0;
}

int wl_server_start(const struct wl_server_config *cfg, struct wl_server **out)
{
    struct wl_server *srv;
    const char *dir = cfg->dir ? cfg->dir : WL_DEFAULT_DIR;
    int r, n;

    if (!cfg->name || !cfg->ops || !cfg->ops->read || cfg->readers == 0 ||
        cfg->readers > WL_MAX_READERS)
        return -EINVAL;
    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->disk_sectors = cfg->disk_sectors;
    srv->ops = cfg->ops;
    srv->epoch_ops.preserve_read = cfg->ops->preserve_read;
    srv->opaque = cfg->opaque;
    r = wl_sanitize_name(cfg->name, srv->safe_name, sizeof(srv->safe_name));
    if (r < 0)
        goto fail_free;
    n = snprintf(srv->sock_path, sizeof(srv->sock_path), "%s/log_%s.ctl", dir, srv->safe_name);
    if (n < 0 || (size_t)n >= sizeof(srv->sock_path)) {
        r = -ENAMETOOLONG;
        BS_ERR(MOD, "control socket path %s/log_%s.ctl is too long", dir, srv->safe_name);
        goto fail_free;
    }
    r = random_u64(&srv->log_id);
    if (r < 0)
        goto fail_free;
    r = wl_log_create(cfg->disk_sectors, cfg->grain_sectors, &srv->log);
    if (r < 0) {
        BS_ERR(MOD, "creating the dirty log: %s", strerror(-r));
        goto fail_free;
    }
    r = wl_epoch_create(&(struct wl_epoch_config){ .log = srv->log,
                                                   .cow_max_bytes = cfg->cow_max_bytes,
                                                   .cow_wait_ms = cfg->cow_wait_ms,
                                                   .ops = &srv->epoch_ops,
                                                   .opaque = cfg->opaque },
                        &srv->ep);
    if (r < 0) {
        BS_ERR(MOD, "setting up epochs: %s", strerror(-r));
        goto fail_log;
    }
    r = make_dir(dir);
    if (r < 0) {
        BS_ERR(MOD, "creating %s: %s", dir, strerror(-r));
        goto fail_log;
    }
    r = claim_socket_path(srv->sock_path);
    if (r < 0) {
        BS_ERR(MOD, "control socket %s: %s", srv->sock_path,
               r == -EADDRINUSE ? "another write log is serving it" : strerror(-r));
        goto fail_log;
    }
    srv->shm.fd = -1;
    r = wl_shm_create(&srv->shm, srv->safe_name);
    if (r < 0)
        goto fail_log;

    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->sync_init = true;
    for (unsigned i = 0; i < NJOBS; i++)
        srv->free_jobs[i] = &srv->jobs[i];
    srv->nfree = NJOBS;

    r = uv_loop_init(&srv->loop);
    if (r < 0)
        goto fail_shm;
    uv_pipe_init(&srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    uv_async_init(&srv->loop, &srv->wake, on_wake_or_stop);
    srv->wake.data = srv;
    uv_timer_init(&srv->loop, &srv->partial_timer);
    srv->partial_timer.data = srv;
    r = bs_uds_listen(&srv->listener, srv->sock_path, 4, on_connection);
    if (r < 0) {
        BS_ERR(MOD, "listen on %s: %s", srv->sock_path, uv_strerror(r));
        goto fail_loop;
    }

    for (unsigned i = 0; i < cfg->readers; i++) {
        struct reader_arg *arg = malloc(sizeof(*arg));
        if (!arg) {
            r = -ENOMEM;
            goto fail_threads;
        }
        *arg = (struct reader_arg){ srv, i };
        r = -pthread_create(&srv->readers[i], NULL, reader_main, arg);
        if (r < 0) {
            free(arg);
            goto fail_threads;
        }
        srv->nreaders++;
    }
    r = uv_thread_create(&srv->loop_thread, loop_main, srv);
    if (r < 0)
        goto fail_threads;
    srv->loop_started = true;
    BS_INFO(MOD, "serving log %s on %s (shm %s, %" PRIu64 " sectors, grain %u sectors, "
                 "%u readers, %" PRIu64 " KiB of bitmap, copy-before-write pool %" PRIu64
                 " KiB, wait %u ms)",
            cfg->name, srv->sock_path, srv->shm.name, srv->disk_sectors, wl_log_grain(srv->log),
            srv->nreaders, wl_log_mem_bytes(srv->log) >> 10, cfg->cow_max_bytes >> 10,
            cfg->cow_wait_ms);
    *out = srv;
    return 0;

fail_threads:
    wl_server_stop(srv);
    return r;
fail_loop:
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->wake, NULL);
    uv_close((uv_handle_t *)&srv->partial_timer, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    unlink(srv->sock_path);
fail_shm:
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    wl_shm_destroy(&srv->shm);
fail_log:
    wl_epoch_destroy(srv->ep);
    wl_log_destroy(srv->log);
fail_free:
    free(srv);
    return r;
}

void wl_server_stop(struct wl_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    for (unsigned i = 0; i < srv->nreaders; i++)
        pthread_join(srv->readers[i], NULL);
    /* Every read has finished: the loop can now close everything. */
    if (srv->loop_started) {
        uv_async_send(&srv->wake);
        uv_thread_join(&srv->loop_thread);
    } else {
        on_wake_or_stop(&srv->wake);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    uv_walk(&srv->loop, on_stop_walk, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    unlink(srv->sock_path);
    wl_shm_destroy(&srv->shm);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    wl_epoch_destroy(srv->ep);
    wl_log_destroy(srv->log);
    BS_INFO(MOD, "stopped; removed %s", srv->sock_path);
    free(srv);
}

struct wl_log *wl_server_log(struct wl_server *srv)
{
    return srv->log;
}

struct wl_epoch *wl_server_epoch(struct wl_server *srv)
{
    return srv->ep;
}
