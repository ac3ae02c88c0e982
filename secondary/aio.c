/* Kernel AIO for the replica's direct writes; see aio.h. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "secondary/aio.h"

#define MOD "aio"
#define EVENTS_PER_CALL 64

static long sys_io_setup(unsigned nr, aio_context_t *ctx)
{
    return syscall(SYS_io_setup, nr, ctx);
}

static long sys_io_destroy(aio_context_t ctx)
{
    return syscall(SYS_io_destroy, ctx);
}

static long sys_io_submit(aio_context_t ctx, long n, struct iocb **iocbs)
{
    return syscall(SYS_io_submit, ctx, n, iocbs);
}

static long sys_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
                             struct timespec *timeout)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, timeout);
}

/* Reaps what has completed, without waiting. */
static void reap(struct bs_aio *a)
{
    struct io_event ev[EVENTS_PER_CALL];
    struct timespec zero = { 0, 0 };
    long n;

    do {
        n = sys_io_getevents(a->ctx, 0, EVENTS_PER_CALL, ev, &zero);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            BS_ERR(MOD, "io_getevents: %s", strerror(errno));
            return;
        }
        for (long i = 0; i < n; i++) {
            struct bs_aio_req *req = (struct bs_aio_req *)(uintptr_t)ev[i].data;
            a->inflight--;
            req->cb(req, ev[i].res);
        }
    } while (n == EVENTS_PER_CALL);
}

static void on_eventfd(uv_poll_t *h, int status, int events)
{
    struct bs_aio *a = h->data;
    uint64_t count;

    (void)events;
    if (status < 0) {
        BS_ERR(MOD, "polling the completion eventfd: %s", uv_strerror(status));
        return;
    }
    /* Nonblocking: the counter is reset by reading it, and completions
     * that land after this read signal again. */
    if (read(a->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        BS_ERR(MOD, "reading the completion eventfd: %s", strerror(errno));
    reap(a);
}

int bs_aio_init(struct bs_aio *a, uv_loop_t *loop, unsigned depth)
{
    int r;

    memset(a, 0, sizeof(*a));
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0)
        return -errno;
    if (sys_io_setup(depth, &a->ctx) < 0) {
        r = -errno;
        close(a->efd);
        return r;
    }
    r = uv_poll_init(loop, &a->poll, a->efd);
    if (r == 0)
        r = uv_poll_start(&a->poll, UV_READABLE, on_eventfd);
    if (r < 0) {
        sys_io_destroy(a->ctx);
        close(a->efd);
        return r;
    }
    a->poll.data = a;
    a->depth = depth;
    a->open = true;
    return 0;
}

int bs_aio_pwrite(struct bs_aio *a, struct bs_aio_req *req, int fd, const void *buf, size_t len,
                  uint64_t off, bs_aio_cb cb)
{
    struct iocb *p = &req->iocb;
    long r;

    if (!a->open || a->inflight == a->depth)
        return -EAGAIN;
    memset(p, 0, sizeof(*p));
    p->aio_data = (uint64_t)(uintptr_t)req;
    p->aio_lio_opcode = IOCB_CMD_PWRITE;
    p->aio_fildes = (uint32_t)fd;
    p->aio_buf = (uint64_t)(uintptr_t)buf;
    p->aio_nbytes = len;
    p->aio_offset = (int64_t)off;
    p->aio_flags = IOCB_FLAG_RESFD;
    p->aio_resfd = (uint32_t)a->efd;
    req->cb = cb;
    do
        r = sys_io_submit(a->ctx, 1, &p);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r != 1)
        return -EAGAIN;
    a->inflight++;
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct bs_aio *a = h->data;

    close(a->efd);
    a->efd = -1;
}

void bs_aio_close(struct bs_aio *a)
{
    struct io_event ev[EVENTS_PER_CALL];

    if (!a->open)
        return;
    while (a->inflight) {
        long n = sys_io_getevents(a->ctx, 1, EVENTS_PER_CALL, ev, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; /* io_destroy below still waits for them */
        a->inflight -= (unsigned)n;
    }
    sys_io_destroy(a->ctx);
    a->open = false;
    uv_close((uv_handle_t *)&a->poll, on_poll_closed);
}
