/* Control socket server and client (see ctl.h). */
#include "common/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/uds.h"

#define MOD "control"

struct async_verb {
    char verb[32];
    bs_ctl_async_handler *handler;
};

struct bs_ctl {
    uv_pipe_t listener;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bs_ctl_handler *handler;
    void *opaque;
    struct async_verb async[8];
    unsigned nasync;
};

struct bs_ctl_pending {
    struct ctl_client *cl;
};

/* One connection.  Requests are answered one at a time, in order; a
 * request of an asynchronous verb is answered when its owner calls
 * bs_ctl_answer.  The connection closes after its reply unless it has
 * made an asynchronous request (a session: it stays open for more, until
 * the client closes its end). */
struct ctl_client {
    uv_pipe_t pipe;
    struct bs_ctl *ctl;
    uv_write_t wreq;
    struct bs_ctl_pending pending;
    char req[BS_CTL_MAX_REQUEST];
    size_t rlen;
    char line[BS_CTL_MAX_REQUEST];
    char reply[BS_CTL_MAX_REPLY];
    bool session;   /* made an asynchronous request: stays open */
    bool busy;      /* a request is being answered (deferred or writing) */
    bool deferred;  /* its owner holds `pending` */
    bool eof;       /* the client closed its end */
    bool closing;   /* uv_close called */
    bool closed;    /* the pipe is closed; freed once not deferred */
    bool paused;    /* reading stopped: the request buffer is full */
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void process(struct ctl_client *cl);

static void on_client_closed(uv_handle_t *h)
{
    struct ctl_client *cl = h->data;

    cl->closed = true;
    if (!cl->deferred)
        free(cl);
}

static void close_client(struct ctl_client *cl)
{
    if (cl->closing)
        return;
    cl->closing = true;
    uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct ctl_client *cl = req->data;

    cl->busy = false;
    if (status < 0 || !cl->session) {
        close_client(cl);
        return;
    }
    process(cl);
}

/* Sends reply (n bytes, or a failure as a negative errno or a length
 * that did not fit) for the request in cl->line. */
static void send_reply(struct ctl_client *cl, ssize_t n)
{
    if (n < 0 || (size_t)n >= sizeof(cl->reply)) {
        /* Only numbers go into this text: it needs no escaping. */
        if (n < 0) {
            BS_WARN(MOD, "control reply to '%s' failed: %s", cl->line, strerror((int)-n));
            n = snprintf(cl->reply, sizeof(cl->reply),
                         "{ \"schema\": %d, \"error\": \"the reply could not be built "
                         "(errno %d)\" }\n",
                         BS_CTL_SCHEMA, (int)-n);
        } else {
            BS_WARN(MOD, "control reply to '%s' is %zd bytes, more than the %d allowed",
                    cl->line, n, BS_CTL_MAX_REPLY - 1);
            n = snprintf(cl->reply, sizeof(cl->reply),
                         "{ \"schema\": %d, \"error\": \"the reply of %zd bytes exceeds "
                         "the control socket's limit of %d\" }\n",
                         BS_CTL_SCHEMA, n, BS_CTL_MAX_REPLY - 1);
        }
    }
    uv_buf_t out = uv_buf_init(cl->reply, (unsigned)n);
    cl->wreq.data = cl;
    cl->busy = true;
    if (uv_write(&cl->wreq, (uv_stream_t *)&cl->pipe, &out, 1, on_written) < 0) {
        cl->busy = false;
        close_client(cl);
    }
}

/* The asynchronous verb a request starts with, or NULL. */
static const struct async_verb *async_verb(const struct bs_ctl *ctl, const char *line)
{
    for (unsigned i = 0; i < ctl->nasync; i++) {
        size_t n = strlen(ctl->async[i].verb);
        if (strncmp(line, ctl->async[i].verb, n) == 0 && (line[n] == '\0' || line[n] == ' '))
            return &ctl->async[i];
    }
    return NULL;
}

/* Answers the next complete request line, if no answer is under way. */
static void process(struct ctl_client *cl)
{
    const struct async_verb *av;
    char *nl;
    size_t len;

    if (cl->busy || cl->closing)
        return;
    nl = memchr(cl->req, '\n', cl->rlen);
    if (!nl) {
        if (cl->eof)
            close_client(cl);
        else if (cl->rlen == sizeof(cl->req) - 1) {
            BS_WARN(MOD, "control request longer than %d bytes; closing", BS_CTL_MAX_REQUEST);
            close_client(cl);
        }
        return;
    }
    len = (size_t)(nl - cl->req);
    memcpy(cl->line, cl->req, len);
    cl->line[len] = '\0';
    memmove(cl->req, nl + 1, cl->rlen - len - 1);
    cl->rlen -= len + 1;
    if (cl->paused && !cl->eof) {
        cl->paused = false;
        if (uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read) < 0) {
            close_client(cl);
            return;
        }
    }
    av = async_verb(cl->ctl, cl->line);
    if (av) {
        cl->session = true;
        cl->busy = true;
        cl->deferred = true;
        cl->pending.cl = cl;
        av->handler(cl->ctl->opaque, cl->line, &cl->pending);
        return;
    }
    send_reply(cl, cl->ctl->handler(cl->ctl->opaque, cl->line, cl->reply, sizeof(cl->reply)));
}

void bs_ctl_answer(struct bs_ctl_pending *pending, const char *reply, size_t len)
{
    struct ctl_client *cl = pending->cl;

    cl->deferred = false;
    if (cl->closing) {
        /* The client went away meanwhile: nobody to tell. */
        if (cl->closed)
            free(cl);
        return;
    }
    if (len >= sizeof(cl->reply)) {
        cl->busy = false;
        send_reply(cl, (ssize_t)len);
        return;
    }
    memcpy(cl->reply, reply, len);
    cl->busy = false;
    send_reply(cl, (ssize_t)len);
}

int bs_ctl_add_async(struct bs_ctl *ctl, const char *verb, bs_ctl_async_handler *handler)
{
    if (ctl->nasync == sizeof(ctl->async) / sizeof(ctl->async[0]) ||
        strlen(verb) >= sizeof(ctl->async[0].verb))
        return -ENOSPC;
    snprintf(ctl->async[ctl->nasync].verb, sizeof(ctl->async[0].verb), "%s", verb);
    ctl->async[ctl->nasync].handler = handler;
    ctl->nasync++;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ctl_client *cl = h->data;

    (void)suggested;
    *buf = uv_buf_init(cl->req + cl->rlen, (unsigned)(sizeof(cl->req) - 1 - cl->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ctl_client *cl = s->data;

    (void)buf;
    if (nread == UV_EOF) {
        cl->eof = true;
        uv_read_stop(s);
        /* A reply under way still goes out; a deferred one too, if the
         * client only closed its writing end. */
        if (!cl->busy)
            process(cl);
        return;
    }
    if (nread < 0) {
        close_client(cl);
        return;
    }
    cl->rlen += (size_t)nread;
    if (cl->rlen == sizeof(cl->req) - 1 && !memchr(cl->req, '\n', cl->rlen)) {
        BS_WARN(MOD, "control request longer than %d bytes; closing", BS_CTL_MAX_REQUEST);
        close_client(cl);
        return;
    }
    if (cl->rlen == sizeof(cl->req) - 1) {
        uv_read_stop(s); /* full of queued requests: resumed when answered */
        cl->paused = true;
    }
    process(cl);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct bs_ctl *ctl = server->data;
    struct ctl_client *cl;

    if (status < 0)
        return;
    cl = calloc(1, sizeof(*cl));
    if (!cl)
        return;
    cl->ctl = ctl;
    uv_pipe_init(server->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read) < 0)
        close_client(cl);
}

static int claim_path(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, r;

    if (access(path, F_OK) < 0)
        return 0;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    unlink(path);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

int bs_ctl_start(uv_loop_t *loop, const char *path, bs_ctl_handler *handler, void *opaque,
                 struct bs_ctl **out)
{
    struct bs_ctl *ctl = calloc(1, sizeof(*ctl));
    int r;

    if (!ctl)
        return -ENOMEM;
    if (strlen(path) >= sizeof(ctl->path)) {
        free(ctl);
        return -ENAMETOOLONG;
    }
    strcpy(ctl->path, path);
    ctl->handler = handler;
    ctl->opaque = opaque;
    r = claim_path(path);
    if (r < 0) {
        free(ctl);
        return r;
    }
    uv_pipe_init(loop, &ctl->listener, 0);
    ctl->listener.data = ctl;
    r = bs_uds_listen(&ctl->listener, path, 8, on_connection);
    if (r < 0) {
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
        return r;
    }
    *out = ctl;
    return 0;
}

void bs_ctl_stop(struct bs_ctl *ctl)
{
    if (!ctl)
        return;
    unlink(ctl->path);
    uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
}

int bs_ctl_call(const char *path, const char *request, char *reply, size_t size)
{
    return bs_ctl_call_timeout(path, request, reply, size, 10000);
}

int bs_ctl_call_timeout(const char *path, const char *request, char *reply, size_t size,
                        int timeout_ms)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = 0;
    char line[BS_CTL_MAX_REQUEST];
    int fd, n, r = 0;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    n = snprintf(line, sizeof(line), "%s\n", request);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        r = -errno;
        goto out;
    }
    /* One request: the server closes once it is answered. */
    shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int p = poll(&pfd, 1, timeout_ms);
        if (p <= 0) {
            r = p == 0 ? -ETIMEDOUT : -errno;
            goto out;
        }
        /* Once the buffer is full, the reply fits only if EOF follows:
         * one more byte means it was longer. */
        bool full = len == size - 1;
        char extra;
        ssize_t got = full ? read(fd, &extra, 1) : read(fd, reply + len, size - 1 - len);
        if (got < 0) {
            r = -errno;
            goto out;
        }
        if (got == 0)
            break;
        if (full) {
            r = -EMSGSIZE;
            goto out;
        }
        len += (size_t)got;
    }
    reply[len] = '\0';
    r = (int)len;
out:
    close(fd);
    return r;
}

int bs_ctl_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int bs_ctl_request(int fd, const char *request, char *reply, size_t size, int timeout_ms)
{
    char line[BS_CTL_MAX_REQUEST];
    size_t len = 0;
    int n = snprintf(line, sizeof(line), "%s\n", request);

    if (n < 0 || (size_t)n >= sizeof(line) || size < 2)
        return -EINVAL;
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n)
        return -errno;
    /* Byte by byte up to the newline: what follows belongs to the next
     * reply, and replies are small. */
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int p = poll(&pfd, 1, timeout_ms);
        ssize_t got;

        if (p <= 0)
            return p == 0 ? -ETIMEDOUT : -errno;
        got = read(fd, reply + len, 1);
        if (got < 0)
            return -errno;
        if (got == 0)
            return -ECONNRESET;
        if (reply[len] == '\n') {
            reply[len + 1] = '\0';
            return (int)(len + 1);
        }
        if (++len == size - 1)
            return -EMSGSIZE;
    }
}
