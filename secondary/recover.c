/* After an apply failed (the replica's I/O error, an RBD client fenced or
 * its cluster gone): the resource reports it, refuses primaries meanwhile
 * (BSR_E_IO, which they retry with their back-off) and, with its own
 * back-off (1 s, doubling to 60 s), closes the replica and opens it again
 * in the thread pool.  Once it opens, the applier applies the journal's
 * committed epochs again from the one that failed (applying is
 * idempotent; nothing was recorded applied) and primaries are taken
 * again.  Nothing is acknowledged meanwhile that the journal does not
 * hold, and the replica is reported inconsistent until the journal's
 * epochs are on it (secondary/epoch.c). */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

#define MOD "secondary"
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define BUSY_RETRY_MS 100

static void on_timer(uv_timer_t *t);

void recover_init(struct secondary *sec)
{
    uv_timer_init(sec->loop, &sec->rc_timer);
    sec->rc_timer.data = sec;
}

void recover_close(struct secondary *sec)
{
    uv_close((uv_handle_t *)&sec->rc_timer, NULL);
}

void recover_start(struct secondary *sec)
{
    if (sec->promoted || sec->stopping || sec->rc_running)
        return;
    if (sec->session)
        session_end(sec->session, "the replica cannot be written");
    sec->rc_backoff_ms = sec->rc_backoff_ms ? sec->rc_backoff_ms * 2 : BACKOFF_MIN_MS;
    if (sec->rc_backoff_ms > BACKOFF_MAX_MS)
        sec->rc_backoff_ms = BACKOFF_MAX_MS;
    BS_WARN(MOD, "reopening %s in %u ms, then applying the journal again", sec->target.path,
            sec->rc_backoff_ms);
    uv_timer_start(&sec->rc_timer, on_timer, sec->rc_backoff_ms, 0);
}

void recover_applied(struct secondary *sec)
{
    sec->rc_backoff_ms = 0;
}

/* Whether anything may still use the target: what the session started
 * (its writes, flushes, checksums), the appender, a state job. */
static bool target_busy(const struct secondary *sec)
{
    return sec->session || sec->writes_inflight || sec->hash_jobs || sec->fsync_running ||
           sec->writeback_running || sec->ap_running || sec->sj.running || sec->apl_running;
}

static void rc_work(uv_work_t *req)
{
    struct secondary *sec = req->data;

    if (sec->target.ops) /* NULL after a reopening that failed */
        sec->target.ops->close(&sec->target);
    memset(&sec->target, 0, sizeof(sec->target));
    sec->rc_result = bs_target_open(&sec->target, sec->rc_path, &sec->target_cfg);
    if (sec->rc_result == 0 && sec->target.size_bytes != sec->disk_bytes) {
        BS_ERR(MOD, "%s is %" PRIu64 " bytes now, not %" PRIu64 ": not the replica", sec->rc_path,
               sec->target.size_bytes, sec->disk_bytes);
        sec->target.ops->close(&sec->target);
        sec->rc_result = -EINVAL;
    }
}

static void rc_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    int r = status < 0 ? status : sec->rc_result;

    sec->rc_running = false;
    sec->rc_attempts++;
    if (r < 0) {
        /* The target is closed: ops NULL tells the status so, and the
         * next attempt has nothing to close. */
        memset(&sec->target, 0, sizeof(sec->target));
        snprintf(sec->target.path, sizeof(sec->target.path), "%s", sec->rc_path);
        BS_ERR(MOD, "reopening %s failed: %s", sec->rc_path, strerror(-r));
        recover_start(sec);
        return;
    }
    sec->reopens++;
    BS_INFO(MOD, "%s reopened (attempt %" PRIu64 "): applying the journal's committed epochs again",
            sec->rc_path, sec->rc_attempts);
    epoch_apply_again(sec);
}

static void on_timer(uv_timer_t *t)
{
    struct secondary *sec = t->data;
    int r;

    if (sec->promoted || sec->stopping)
        return;
    if (target_busy(sec) || sec->promoting) {
        uv_timer_start(&sec->rc_timer, on_timer, BUSY_RETRY_MS, 0);
        return;
    }
    snprintf(sec->rc_path, sizeof(sec->rc_path), "%s", sec->target.path);
    sec->rc_req.data = sec;
    r = uv_queue_work(sec->loop, &sec->rc_req, rc_work, rc_done);
    if (r < 0) {
        BS_ERR(MOD, "cannot queue the reopening of %s: %s", sec->rc_path, uv_strerror(r));
        recover_start(sec);
        return;
    }
    sec->rc_running = true;
}
