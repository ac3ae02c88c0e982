/* The secondary's apply pipeline: DATA payloads and ZERO ranges written to
 * the replica by libuv's thread pool (O_DIRECT where the target allows it
 * for that write) while the loop decrypts the next frames; small
 * block-aligned ones are copied into the page cache inline.  ZERO ranges,
 * which may span the whole disk, are applied BS_TARGET_ZERO_CHUNK at a
 * time: no frame makes the loop wait for the disk.  Writes and zeroes
 * between two FLUSHes may complete in any order: the primary never has two
 * unacknowledged copies of a grain, so they never overlap.  A FLUSH waits
 * for every write and zero before it, then flushes the target, then sends
 * its ACK.  All replica I/O goes through the target's operations
 * (secondary/target.h).
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"

#define MOD "secondary"

struct wbuf *apply_get_buffer(struct secondary *sec)
{
    for (unsigned i = 0; i < NBUF; i++)
        if (!sec->bufs[i].busy) {
            sec->bufs[i].busy = true;
            sec->bufs[i].queued = false;
            return &sec->bufs[i];
        }
    return NULL;
}

static void start_fsync(struct secondary *sec);

static void fsync_work(uv_work_t *req)
{
    struct secondary *sec = req->data;

    sec->fsync_result = sec->target.ops->flush(&sec->target);
}

static void on_fsync_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    int result = status < 0 ? status : sec->fsync_result;
    struct session *s = sec->session;

    sec->fsync_running = false;
    if (result < 0) {
        /* The data may not be on stable storage: never acknowledge it.  The
         * primary keeps every bit and resends after reconnecting. */
        BS_ERR(MOD, "flushing the replica failed: %s; ending the session unacknowledged",
               uv_strerror(result));
        if (s && s->id == sec->fsync_session) {
            session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, "replica flush failed");
        }
        sec->flush_waiting = false;
        return;
    }
    sec->durable_bytes += sec->unflushed_bytes - sec->written_since_fsync_start;
    sec->unflushed_bytes = sec->written_since_fsync_start;
    if (s && s->id == sec->fsync_session)
        session_send_control(s, BSR_ACK, sec->fsync_seq, 0);
    if (sec->flush_waiting && !sec->stopping)
        start_fsync(sec);
    else if (sec->stopping)
        uv_stop(sec->loop);
}

static void start_fsync(struct secondary *sec)
{
    int r;

    sec->flush_waiting = false;
    sec->fsync_seq = sec->flush_waiting_seq;
    sec->fsync_session = sec->session ? sec->session->id : 0;
    sec->written_since_fsync_start = 0;
    sec->fsync_req.data = sec;
    r = uv_queue_work(sec->loop, &sec->fsync_req, fsync_work, on_fsync_done);
    if (r < 0) {
        BS_ERR(MOD, "cannot start a flush of the replica: %s", uv_strerror(r));
        if (sec->session)
            session_end(sec->session, "cannot flush the replica");
        return;
    }
    sec->fsync_running = true;
}

void apply_request_flush(struct session *s, uint64_t seq)
{
    struct secondary *sec = s->sec;

    sec->flush_waiting = true;
    sec->flush_waiting_seq = seq;
    if (!sec->fsync_running)
        start_fsync(sec);
}

/* Bytes now written to the replica, durable after the next fdatasync
 * that starts later. */
void apply_account_written(struct secondary *sec, uint64_t bytes)
{
    sec->written_bytes += bytes;
    sec->unflushed_bytes += bytes;
    if (sec->fsync_running)
        sec->written_since_fsync_start += bytes;
}

static void writeback_work(uv_work_t *req)
{
    struct secondary *sec = req->data;

    /* Only a hint: a failure shows up in the flush that follows. */
    sec->target.ops->writeback(&sec->target);
}

static void writeback_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;

    (void)status;
    sec->writeback_running = false;
}

/* Counts bytes written through the page cache; starts their writeback
 * once enough have gathered. */
void apply_note_cached_write(struct secondary *sec, uint64_t bytes)
{
    sec->cached_since_writeback += bytes;
    if (sec->cached_since_writeback < WRITEBACK_BYTES || sec->writeback_running ||
        sec->stopping || !sec->target.ops->writeback)
        return;
    sec->writeback_req.data = sec;
    if (uv_queue_work(sec->loop, &sec->writeback_req, writeback_work, writeback_done) == 0) {
        sec->writeback_running = true;
        sec->cached_since_writeback = 0;
    }
}

/* Runs on a thread-pool thread: one write, or one piece of a ZERO range. */
static void job_work(uv_work_t *req)
{
    struct wbuf *b = req->data;
    struct bs_target *t = &b->sec->target;

    if (b->kind == JOB_WRITE)
        b->result = t->ops->write(t, b->data, b->len, b->offset, 0);
    else
        b->result = t->ops->zero(t, b->offset, b->piece);
}

static void job_done(uv_work_t *req, int status);

/* Queues the next piece of a ZERO job: up to the next multiple of
 * BS_TARGET_ZERO_CHUNK, so that only the first and last pieces of a
 * range can have unaligned ends.  Returns 0 or a libuv error. */
static int queue_zero_piece(struct wbuf *b)
{
    uint64_t next = (b->offset / BS_TARGET_ZERO_CHUNK + 1) * BS_TARGET_ZERO_CHUNK;

    b->piece = (next < b->end ? next : b->end) - b->offset;
    return uv_queue_work(b->sec->loop, &b->req, job_work, job_done);
}

static void job_release(struct wbuf *b)
{
    b->busy = false;
    b->queued = false;
    b->sec->writes_inflight--;
}

/* A job's piece finished (on the loop): account for it, queue the next
 * piece of a ZERO range, or release the job and let a stalled session go
 * on.  A failure ends the session unacknowledged. */
static void job_done(uv_work_t *req, int status)
{
    struct wbuf *b = req->data;
    struct secondary *sec = b->sec;
    struct session *s = sec->session;
    /* -errno, which is also libuv's error code on Linux (uv_strerror). */
    int r = status < 0 ? status : b->result;

    if (r < 0) {
        if (b->kind == JOB_WRITE)
            BS_ERR(MOD, "writing %u bytes at offset %" PRIu64 " of %s: %s", b->len, b->offset,
                   sec->target.path, uv_strerror(r));
        else
            BS_ERR(MOD, "zeroing %" PRIu64 " bytes at offset %" PRIu64 " of %s: %s", b->piece,
                   b->offset, sec->target.path, uv_strerror(r));
        job_release(b);
        if (s) {
            session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, b->kind == JOB_WRITE ? "replica write failed" : "replica zero failed");
        }
        return;
    }
    if (b->kind == JOB_ZERO) {
        apply_account_written(sec, b->piece);
        b->offset += b->piece;
        if (b->offset < b->end) {
            if (!s || s->id != b->session_id || sec->stopping) {
                /* Nothing of an ended session is acknowledged: its primary
                 * sends the range again.  Going on could zero what a newer
                 * session writes there. */
                BS_INFO(MOD, "zeroing of %s stopped at offset %" PRIu64 " of %" PRIu64
                             ": its session ended",
                        sec->target.path, b->offset, b->end);
            } else if ((r = queue_zero_piece(b)) == 0) {
                return;
            } else {
                BS_ERR(MOD, "cannot queue zeroing: %s", uv_strerror(r));
                job_release(b);
                session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
                session_end(s, "replica zero failed");
                return;
            }
        }
    } else {
        apply_account_written(sec, b->len);
    }
    job_release(b);
    if (s && s->state == ST_STALLED)
        session_resume(s);
}

void apply_submit_write(struct session *s, struct wbuf *b, uint32_t len, uint64_t offset)
{
    struct secondary *sec = s->sec;
    int r;

    b->kind = JOB_WRITE;
    b->len = len;
    b->offset = offset;
    b->session_id = s->id;
    b->req.data = b;
    r = uv_queue_work(sec->loop, &b->req, job_work, job_done);
    if (r < 0) {
        b->busy = false;
        BS_ERR(MOD, "cannot start a write: %s", uv_strerror(r));
        session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica write failed");
        return;
    }
    b->queued = true;
    sec->writes_inflight++;
}

/* Starts the ZERO job of the checked frame in s->frame.  Returns false
 * when every job slot is busy (the caller stalls and retries); true
 * otherwise, including when starting failed and the session ended. */
bool apply_start_zero(struct session *s)
{
    struct secondary *sec = s->sec;
    struct wbuf *b = apply_get_buffer(sec);
    int r;

    if (!b)
        return false;
    b->kind = JOB_ZERO;
    b->offset = s->frame.sector * BSR_SECTOR_SIZE;
    b->end = b->offset + (uint64_t)s->frame.count * BSR_SECTOR_SIZE;
    b->session_id = s->id;
    b->req.data = b;
    r = queue_zero_piece(b);
    if (r < 0) {
        b->busy = false;
        BS_ERR(MOD, "cannot start zeroing: %s", uv_strerror(r));
        session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica zero failed");
        return true;
    }
    b->queued = true;
    sec->writes_inflight++;
    return true;
}

