/* The secondary behind blkship-listener (--listener PATH, docs/resources.md):
 * registers its --resource on the listener's unix socket and takes each
 * connection the listener hands over as if it had accepted it itself
 * (session_accept).  If the listener goes away the secondary keeps its
 * session, if it has one, and registers again once a second until the
 * listener is back. */
#include "secondary/secondary.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/route.h"

#define MOD "secondary"
#define RETRY_MS 1000
#define RETRY_WAIT_MS 200   /* for the answer, on the loop */
#define START_WAIT_MS 5000  /* for the answer, at start-up */

static void on_readable(uv_poll_t *h, int status, int events);

static void lost(struct secondary *sec, const char *why)
{
    BS_ERR(MOD, "blkship-listener at %s: %s; primaries cannot reach resource %s until it is "
                "back (registering again every %d ms)",
           sec->listener_path, why, sec->resource, RETRY_MS);
    uv_poll_stop(&sec->reg_poll);
    uv_close((uv_handle_t *)&sec->reg_poll, NULL);
    close(sec->reg_fd);
    sec->reg_fd = -1;
}

static int attach(struct secondary *sec, int fd)
{
    int r = uv_poll_init(sec->loop, &sec->reg_poll, fd);

    if (r < 0) {
        close(fd);
        return r;
    }
    sec->reg_fd = fd;
    sec->reg_poll.data = sec;
    uv_poll_start(&sec->reg_poll, UV_READABLE | UV_DISCONNECT, on_readable);
    sec->registrations++;
    return 0;
}

static void on_retry(uv_timer_t *t)
{
    struct secondary *sec = t->data;
    char why[256];
    int fd;

    if (sec->reg_fd >= 0 || sec->stopping)
        return;
    /* On the loop: a short wait for the answer, which a listener gives
     * at once; one that does not is tried again later. */
    fd = bs_route_register(sec->listener_path, sec->resource, RETRY_WAIT_MS, why, sizeof(why));
    if (fd < 0) {
        if (fd == -EEXIST)
            BS_ERR(MOD, "blkship-listener at %s: %s", sec->listener_path, why);
        uv_timer_start(&sec->reg_retry, on_retry, RETRY_MS, 0);
        return;
    }
    if (attach(sec, fd) == 0)
        BS_INFO(MOD, "registered resource %s with blkship-listener at %s again",
                sec->resource, sec->listener_path);
    else
        uv_timer_start(&sec->reg_retry, on_retry, RETRY_MS, 0);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct secondary *sec = h->data;
    char peer[96];
    int fd;

    (void)events;
    if (status < 0) {
        lost(sec, uv_strerror(status));
        uv_timer_start(&sec->reg_retry, on_retry, RETRY_MS, 0);
        return;
    }
    while ((fd = bs_route_recv(sec->reg_fd, peer, sizeof(peer))) >= 0)
        session_accept(sec, fd, peer);
    if (fd == -EAGAIN)
        return;
    if (fd == -EPROTO) {
        BS_WARN(MOD, "blkship-listener at %s sent something that is not a connection: ignored",
                sec->listener_path);
        return;
    }
    lost(sec, fd == -ECONNRESET ? "the listener closed the registration" : strerror(-fd));
    uv_timer_start(&sec->reg_retry, on_retry, RETRY_MS, 0);
}

int registrar_start(struct secondary *sec)
{
    char why[256];
    int fd;

    uv_timer_init(sec->loop, &sec->reg_retry);
    sec->reg_retry.data = sec;
    sec->reg_fd = -1;
    fd = bs_route_register(sec->listener_path, sec->resource, START_WAIT_MS, why, sizeof(why));
    if (fd < 0) {
        BS_ERR(MOD, "cannot register resource %s with blkship-listener: %s", sec->resource, why);
        return fd;
    }
    return attach(sec, fd);
}

void registrar_close(struct secondary *sec)
{
    if (!sec->listener_path)
        return;
    uv_close((uv_handle_t *)&sec->reg_retry, NULL);
    if (sec->reg_fd >= 0) {
        uv_poll_stop(&sec->reg_poll);
        uv_close((uv_handle_t *)&sec->reg_poll, NULL);
        close(sec->reg_fd);
        sec->reg_fd = -1;
    }
}
