/* systemd notifications through libsystemd's sd_notify (see notify.h). */
#include "common/notify.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"

#define MOD "systemd"

static void send_state(struct bs_notify *n, const char *state)
{
    int r = sd_notify(0, state);

    if (r < 0 && !n->failed_logged) {
        n->failed_logged = true;
        BS_WARN(MOD, "cannot notify systemd ($NOTIFY_SOCKET): %s", strerror(-r));
    }
}

static void on_watchdog(uv_timer_t *t)
{
    struct bs_notify *n = t->data;

    send_state(n, "WATCHDOG=1");
}

int bs_notify_start(struct bs_notify *n, uv_loop_t *loop)
{
    uint64_t usec = 0;
    int r;

    memset(n, 0, sizeof(*n));
    r = uv_timer_init(loop, &n->watchdog);
    if (r < 0)
        return r;
    n->watchdog.data = n;
    n->started = true;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        n->watchdog_ms = usec / 1000 ? usec / 1000 : 1;
        /* Half the interval: a late turn of the loop is not a hang. */
        uv_timer_start(&n->watchdog, on_watchdog, 0, n->watchdog_ms / 2 ? n->watchdog_ms / 2 : 1);
        BS_INFO(MOD, "watchdog every %" PRIu64 " ms: fed every %" PRIu64 " ms", n->watchdog_ms,
                n->watchdog_ms / 2 ? n->watchdog_ms / 2 : 1);
    }
    return 0;
}

void bs_notify_ready(struct bs_notify *n, const char *status)
{
    char msg[BS_NOTIFY_STATUS_MAX + 32];

    if (n->ready) {
        bs_notify_status(n, status);
        return;
    }
    n->ready = true;
    snprintf(n->status, sizeof(n->status), "%s", status);
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", n->status);
    send_state(n, msg);
}

void bs_notify_status(struct bs_notify *n, const char *status)
{
    char msg[BS_NOTIFY_STATUS_MAX + 16];

    if (strncmp(n->status, status, sizeof(n->status) - 1) == 0)
        return;
    snprintf(n->status, sizeof(n->status), "%s", status);
    snprintf(msg, sizeof(msg), "STATUS=%s", n->status);
    send_state(n, msg);
}

void bs_notify_stopping(struct bs_notify *n, const char *status)
{
    char msg[BS_NOTIFY_STATUS_MAX + 32];

    snprintf(n->status, sizeof(n->status), "%s", status);
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", n->status);
    send_state(n, msg);
}

void bs_notify_close(struct bs_notify *n)
{
    if (!n->started)
        return;
    n->started = false;
    uv_timer_stop(&n->watchdog);
    uv_close((uv_handle_t *)&n->watchdog, NULL);
}
