/* systemd service notifications (sd_notify(3), from libsystemd) for a
 * program with a libuv loop: readiness once, when the program truly
 * serves; a status line kept current; the watchdog fed from the loop, so
 * that a loop that hangs stops feeding it and systemd restarts the
 * service.  Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op;
 * a failed notification is logged once and never stops the program. */
#ifndef BLKSHIP_COMMON_NOTIFY_H
#define BLKSHIP_COMMON_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define BS_NOTIFY_STATUS_MAX 256

struct bs_notify {
    uv_timer_t watchdog;
    bool started;
    bool ready;
    bool failed_logged;
    uint64_t watchdog_ms;       /* systemd's WatchdogSec=; 0: none */
    char status[BS_NOTIFY_STATUS_MAX]; /* the last STATUS= sent */
};

/* Starts feeding the watchdog, every half of the interval systemd gives in
 * $WATCHDOG_USEC, when it gives one (and $WATCHDOG_PID, if set, is us).
 * Returns 0, or -errno from libuv. */
int bs_notify_start(struct bs_notify *n, uv_loop_t *loop);
/* READY=1, with STATUS=status; only the first call sends READY=1. */
void bs_notify_ready(struct bs_notify *n, const char *status);
/* STATUS=status, sent only when it differs from the last one. */
void bs_notify_status(struct bs_notify *n, const char *status);
/* STOPPING=1 with STATUS=status. */
void bs_notify_stopping(struct bs_notify *n, const char *status);
/* Closes the watchdog timer; the loop must run once more to release it. */
void bs_notify_close(struct bs_notify *n);

#endif
