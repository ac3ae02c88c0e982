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

struct bs_ctl {
    uv_pipe_t listener;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bs_ctl_handler *handler;
    void *opaque;
};

struct ctl_client {
    uv_pipe_t pipe;
    struct bs_ctl *ctl;
    uv_write_t wreq;
    char req[BS_CTL_MAX_REQUEST];
    size_t rlen;
    char reply[BS_CTL_MAX_REPLY];
};

static void on_client_closed(uv_handle_t *h)
{
    free(h->data);
}

static void close_client(struct ctl_client *cl)
{
    if (!uv_is_closing((uv_handle_t *)&cl->pipe))
        uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    close_client(req->data);
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
    char *nl;

    (void)buf;
    if (nread < 0) {
        close_client(cl);
        return;
    }
    cl->rlen += (size_t)nread;
    cl->req[cl->rlen] = '\0';
    nl = strchr(cl->req, '\n');
    if (!nl) {
        if (cl->rlen == sizeof(cl->req) - 1) {
            BS_WARN(MOD, "control request longer than %d bytes; closing", BS_CTL_MAX_REQUEST);
            close_client(cl);
        }
        return;
    }
    *nl = '\0';
    uv_read_stop(s);
    ssize_t n = cl->ctl->handler(cl->ctl->opaque, cl->req, cl->reply, sizeof(cl->reply));
    if (n < 0 || (size_t)n >= sizeof(cl->reply)) {
        /* Only numbers go into this text: it needs no escaping. */
        if (n < 0) {
            BS_WARN(MOD, "control reply to '%s' failed: %s", cl->req, strerror((int)-n));
            n = snprintf(cl->reply, sizeof(cl->reply),
                         "{ \"schema\": %d, \"error\": \"the reply could not be built "
                         "(errno %d)\" }\n",
                         BS_CTL_SCHEMA, (int)-n);
        } else {
            BS_WARN(MOD, "control reply to '%s' is %zd bytes, more than the %d allowed",
                    cl->req, n, BS_CTL_MAX_REPLY - 1);
            n = snprintf(cl->reply, sizeof(cl->reply),
                         "{ \"schema\": %d, \"error\": \"the reply of %zd bytes exceeds "
                         "the control socket's limit of %d\" }\n",
                         BS_CTL_SCHEMA, n, BS_CTL_MAX_REPLY - 1);
        }
    }
    uv_buf_t out = uv_buf_init(cl->reply, (unsigned)n);
    cl->wreq.data = cl;
    if (uv_write(&cl->wreq, s, &out, 1, on_written) < 0)
        close_client(cl);
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
        uv_close((uv_handle_t *)&ctl->listener, on_client_closed);
        return r;
    }
    *out = ctl;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
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
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int p = poll(&pfd, 1, 10000);
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
