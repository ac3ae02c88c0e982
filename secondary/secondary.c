/* blkship-secondary: accepts the configured primary over mutual TLS,
 * validates every frame before reading what it describes, applies the
 * extents to the replica, and acknowledges a flush only once everything
 * before it is durable.
 *
 * Session states, in order:
 *   ST_TLS      TLS handshake (certificate and peer name checked)
 *   ST_HELLO    reading the primary's 128-byte hello
 *   ST_HEADER   reading a 16-byte frame header
 *   ST_PAYLOAD  reading a DATA payload into a free write buffer
 *   ST_TRAILER  reading the 4-byte CRC32C; the frame is applied after it
 *               matches
 *   ST_STALLED  reading paused: no free write buffer or job for a ZERO,
 *               a FLUSH waits for the writes before it to complete, or a
 *               new session waits for the previous one's I/O to drain
 *   ST_CLOSED   the session ended; waiting for libuv to release it
 *
 * Large DATA payloads are written by libuv's thread pool (O_DIRECT where
 * the target allows it for that write) while the loop decrypts the next
 * frames; small block-aligned ones are copied into the page cache inline.
 * ZERO ranges, which may span the whole disk, are applied in the thread
 * pool too, BS_TARGET_ZERO_CHUNK at a time: no frame makes the loop wait
 * for the disk.  Writes and zeroes between two FLUSHes may complete in any
 * order: the primary never has two unacknowledged copies of a grain, so
 * they never overlap.  A FLUSH waits for every write and zero before it,
 * then flushes the target, then sends its ACK.  A new session writes
 * nothing until the I/O of the one before it has drained, so that an old
 * frame can never land over a newer one.  All replica I/O goes through
 * the target's operations (secondary/target.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/conn.h"
#include "common/crc32c.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/net.h"
#include "common/opt.h"
#include "common/state.h"
#include "common/tls.h"
#include "proto/repl.h"
#include "secondary/target.h"

#define MOD "secondary"
/* The protocol version this agent speaks: 1 until its journal is wired in. */
#define SECONDARY_VERSION 1u
#define HEARTBEAT_MS 1000
/* One more buffer than the connection can queue: round-robin reuse then
 * never overwrites a frame still waiting in the queue. */
#define OUT_SLOTS (BS_CONN_MAX_WRITES + 1)

enum sess_state {
    ST_TLS,
    ST_HELLO,
    ST_HEADER,
    ST_PAYLOAD,
    ST_TRAILER,
    ST_STALLED,
    ST_CLOSED,
};

#define NBUF 8
#define SMALL_WRITE (64u << 10) /* payloads up to this are written inline */
#define WRITEBACK_BYTES (1u << 20) /* inline bytes between writeback starts */

enum job_kind {
    JOB_WRITE,  /* a DATA payload, written in one piece */
    JOB_ZERO,   /* a ZERO range, zeroed BS_TARGET_ZERO_CHUNK at a time */
};

/* One payload buffer and the thread-pool job that uses it (a ZERO job
 * leaves the buffer unused).  A job counts in writes_inflight from its
 * submission until its last piece is done. */
struct wbuf {
    struct secondary *sec;
    uv_work_t req;
    uint8_t *data;
    enum job_kind kind;
    uint32_t len;           /* JOB_WRITE: payload bytes */
    uint64_t offset;        /* JOB_WRITE: where; JOB_ZERO: next byte to zero */
    uint64_t end;           /* JOB_ZERO: end of the range */
    uint64_t piece;         /* JOB_ZERO: bytes the running piece covers */
    uint64_t session_id;    /* the session whose frame it applies */
    int result;             /* set by the worker: 0 or -errno */
    bool busy;
    bool queued;            /* handed to the thread pool */
};

struct secondary;

struct session {
    struct secondary *sec;
    struct session *next_pending;   /* not yet accepted: on the pending list */
    uint64_t started_ms;
    struct bs_conn *conn;
    enum sess_state state;
    uint64_t id;
    uint8_t primary_id[BSR_ID_LEN];
    struct bsr_limits limits;
    uint8_t hello[BSR_HELLO_LEN];
    uint8_t welcome[BSR_WELCOME_LEN];
    uint8_t hdr[BSR_FRAME_HDR_LEN];
    struct bsr_frame frame;
    struct wbuf *buf;           /* holds the payload being read */
    uint8_t trailer[BSR_FRAME_CRC_LEN];
    bool flush_pending;         /* a FLUSH waits for the writes before it */
    uint64_t flush_pending_seq;
    bool zero_waiting;          /* a checked ZERO frame waits for a free job */
    bool drain_first;           /* the previous session's I/O must end first */
    uint8_t out[OUT_SLOTS][BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN];
    unsigned out_next;
    uint64_t last_rx_ms;
    bool accepted;              /* the hello was accepted */
};

struct secondary {
    uv_loop_t *loop;
    struct bs_tls *tls;
    struct bs_target target;
    uint64_t disk_bytes;
    struct wbuf bufs[NBUF];
    unsigned writes_inflight;
    char state_path[4096];
    uint8_t replica_id[BSR_ID_LEN];
    uint8_t primary_id[BSR_ID_LEN];   /* paired primary; zero: none yet */
    uint64_t generation;
    uint64_t epoch;
    uint32_t max_payload;
    unsigned heartbeat_timeout_ms;
    unsigned handshake_timeout_ms;  /* TLS and the hello must be done by then */

    int listen_fd;
    uv_poll_t listen_poll;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    struct bs_ctl *ctl;
    struct session *session;    /* the one accepted session */
    struct session *pending;    /* connections still authenticating */
    unsigned npending;
    uint64_t next_session_id;

    /* One target flush at a time; flushes that arrive meanwhile coalesce. */
    uv_work_t fsync_req;
    int fsync_result;
    bool fsync_running;
    uint64_t fsync_seq;         /* sequence being made durable */
    uint64_t fsync_session;     /* session that asked for it */
    bool flush_waiting;
    uint64_t flush_waiting_seq;
    uint64_t written_since_fsync_start; /* bytes written after the running fsync began */

    /* Small frames go through the page cache.  Their writeback is started
     * every WRITEBACK_BYTES (sync_file_range, in the thread pool) so that
     * it overlaps with the frames still arriving, and the fdatasync of
     * the next FLUSH finds little left to write. */
    uv_work_t writeback_req;
    bool writeback_running;
    uint64_t cached_since_writeback;

    /* Counters for status. */
    uint64_t received_bytes;
    uint64_t written_bytes;
    uint64_t durable_bytes;
    uint64_t unflushed_bytes;   /* written, not yet covered by a finished fsync */
    uint64_t bad_frames;
    char peer[96];
    bool stopping;
};

static uint64_t now_ms(struct secondary *sec)
{
    return uv_now(sec->loop);
}

/* ---- State file ------------------------------------------------------- */

static int save_state(struct secondary *sec)
{
    char text[1024], rid[33], pid[33];
    int r;

    bs_id_to_hex(sec->replica_id, rid);
    bs_id_to_hex(sec->primary_id, pid);
    snprintf(text, sizeof(text),
             "format 1\nrole secondary\nreplica_id %s\nprimary_id %s\ngeneration %" PRIu64
             "\nepoch %" PRIu64 "\ndisk_bytes %" PRIu64 "\n",
             rid, pid, sec->generation, sec->epoch, sec->disk_bytes);
    r = bs_state_write(sec->state_path, text);
    if (r < 0)
        BS_ERR(MOD, "writing %s: %s", sec->state_path, strerror(-r));
    return r;
}

static int load_state(struct secondary *sec)
{
    char text[BS_STATE_MAX], hex[64];
    uint64_t fmt, disk;
    int r = bs_state_read(sec->state_path, text, sizeof(text));

    if (r == -ENOENT) {
        r = bs_id_random(sec->replica_id);
        if (r < 0)
            return r;
        bs_id_to_hex(sec->replica_id, hex);
        BS_INFO(MOD, "new replica identity %s", hex);
        return save_state(sec);
    }
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", sec->state_path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 || fmt != 1 ||
        bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, sec->replica_id) < 0 ||
        bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, sec->primary_id) < 0 ||
        bs_state_get_u64(text, "generation", &sec->generation) < 0 ||
        bs_state_get_u64(text, "epoch", &sec->epoch) < 0 ||
        bs_state_get_u64(text, "disk_bytes", &disk) < 0) {
        BS_ERR(MOD, "%s is not a valid secondary state file; refusing to guess", sec->state_path);
        return -EINVAL;
    }
    if (disk == sec->disk_bytes)
        return 0;
    if (bs_id_is_zero(sec->primary_id)) {
        /* Nothing was replicated to it yet: its size is only recorded. */
        BS_INFO(MOD, "replica size changed from %" PRIu64 " to %" PRIu64 " bytes; not paired yet",
                disk, sec->disk_bytes);
        return save_state(sec);
    }
    /* A replica that grew or shrank under a paired primary is not the disk
     * that was paired: what the primary believes it holds may be gone, and
     * a later hello of the matching size would be accepted as if nothing
     * had happened.  Only the operator knows which it was. */
    bs_id_to_hex(sec->primary_id, hex);
    BS_ERR(MOD, "replica %s is %" PRIu64 " bytes but was %" PRIu64 " bytes when it was paired "
                "with primary %s: refusing to start.  If it only grew by mistake, restore its "
                "size; otherwise remove %s and the primary's state for a new pairing (a full "
                "sync)",
           sec->target.path, sec->disk_bytes, disk, hex, sec->state_path);
    return -EINVAL;
}

/* ---- Session ------------------------------------------------------------ */

static void session_end(struct session *s, const char *why);
static void read_header(struct session *s);

#define MAX_PENDING 16

/* The connection that has been authenticating longest: new ones are
 * pushed at the head, so it is the last of the list. */
static struct session *oldest_pending(struct secondary *sec)
{
    struct session *s = sec->pending;

    while (s && s->next_pending)
        s = s->next_pending;
    return s;
}

static void pending_remove(struct session *s)
{
    struct secondary *sec = s->sec;

    for (struct session **pp = &sec->pending; *pp; pp = &(*pp)->next_pending) {
        if (*pp == s) {
            *pp = s->next_pending;
            sec->npending--;
            return;
        }
    }
}

static void on_session_conn_closed(void *arg)
{
    struct session *s = arg;

    if (s->buf && !s->buf->queued)
        s->buf->busy = false; /* read into, never submitted */
    free(s);
}

static struct wbuf *get_buffer(struct secondary *sec)
{
    for (unsigned i = 0; i < NBUF; i++)
        if (!sec->bufs[i].busy) {
            sec->bufs[i].busy = true;
            sec->bufs[i].queued = false;
            return &sec->bufs[i];
        }
    return NULL;
}

/* Sends a control frame (ACK, HEARTBEAT, ERROR) from the slot ring. */
static void send_control(struct session *s, uint8_t kind, uint64_t sector, uint32_t count)
{
    uint8_t *b = s->out[s->out_next];
    struct bsr_frame f = { .sector = sector, .count = count, .kind = kind };
    uint32_t crc;

    if (s->state == ST_CLOSED)
        return;
    s->out_next = (s->out_next + 1) % OUT_SLOTS;
    bsr_frame_pack(&f, b);
    crc = htole32(crc32c(0, b, BSR_FRAME_HDR_LEN));
    memcpy(b + BSR_FRAME_HDR_LEN, &crc, BSR_FRAME_CRC_LEN);
    if (bs_conn_write(s->conn, b, BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN, NULL, NULL) < 0)
        session_end(s, "cannot queue a control frame");
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
            send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, "replica flush failed");
        }
        sec->flush_waiting = false;
        return;
    }
    sec->durable_bytes += sec->unflushed_bytes - sec->written_since_fsync_start;
    sec->unflushed_bytes = sec->written_since_fsync_start;
    if (s && s->id == sec->fsync_session)
        send_control(s, BSR_ACK, sec->fsync_seq, 0);
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

static void request_flush(struct session *s, uint64_t seq)
{
    struct secondary *sec = s->sec;

    sec->flush_waiting = true;
    sec->flush_waiting_seq = seq;
    if (!sec->fsync_running)
        start_fsync(sec);
}

static void reject_frame(struct session *s, const char *why)
{
    s->sec->bad_frames++;
    BS_ERR(MOD, "bad frame from %s (sector %" PRIu64 " count %u kind %u): %s; nothing applied",
           bs_conn_peer(s->conn), s->frame.sector, s->frame.count, s->frame.kind, why);
    send_control(s, BSR_ERROR, 0, BSR_E_PROTOCOL);
    session_end(s, "protocol error");
}

static void resume(struct session *s);
static void read_payload(struct session *s);

/* Bytes now written to the replica, durable after the next fdatasync
 * that starts later. */
static void account_written(struct secondary *sec, uint64_t bytes)
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
static void note_cached_write(struct secondary *sec, uint64_t bytes)
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
            send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, b->kind == JOB_WRITE ? "replica write failed" : "replica zero failed");
        }
        return;
    }
    if (b->kind == JOB_ZERO) {
        account_written(sec, b->piece);
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
                send_control(s, BSR_ERROR, 0, BSR_E_IO);
                session_end(s, "replica zero failed");
                return;
            }
        }
    } else {
        account_written(sec, b->len);
    }
    job_release(b);
    if (s && s->state == ST_STALLED)
        resume(s);
}

static void submit_write(struct session *s, struct wbuf *b, uint32_t len, uint64_t offset)
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
        send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica write failed");
        return;
    }
    b->queued = true;
    sec->writes_inflight++;
}

/* Starts the ZERO job of the checked frame in s->frame.  Returns false
 * when every job slot is busy (the caller stalls and retries); true
 * otherwise, including when starting failed and the session ended. */
static bool start_zero(struct session *s)
{
    struct secondary *sec = s->sec;
    struct wbuf *b = get_buffer(sec);
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
        send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "replica zero failed");
        return true;
    }
    b->queued = true;
    sec->writes_inflight++;
    return true;
}

static void apply_frame(struct session *s)
{
    struct secondary *sec = s->sec;
    uint32_t want, got;
    uint32_t plen = bsr_frame_payload(&s->frame);
    int r;

    memcpy(&got, s->trailer, sizeof(got));
    got = le32toh(got);
    want = crc32c(0, s->hdr, BSR_FRAME_HDR_LEN);
    if (plen)
        want = crc32c(want, s->buf->data, plen);
    if (want != got) {
        reject_frame(s, "CRC32C of the payload does not match");
        return;
    }
    s->last_rx_ms = now_ms(sec);
    switch (s->frame.kind) {
    case BSR_DATA: {
        struct wbuf *b = s->buf;
        uint64_t offset = s->frame.sector * BSR_SECTOR_SIZE;
        s->buf = NULL;
        sec->received_bytes += plen;
        if (plen <= SMALL_WRITE && bs_target_block_aligned(&sec->target, plen, offset)) {
            /* A small frame costs less as a copy into the page cache here
             * than as a thread-pool round trip; the target's flush covers
             * both kinds.  One that is not made of whole blocks goes to
             * the thread pool instead: the page cache would first read the
             * partial blocks from the disk, and the loop must not wait. */
            r = sec->target.ops->write(&sec->target, b->data, plen, offset, BS_TARGET_CACHED);
            b->busy = false;
            if (r < 0) {
                BS_ERR(MOD, "writing %u bytes at sector %" PRIu64 " of %s: %s", plen,
                       s->frame.sector, sec->target.path, strerror(-r));
                send_control(s, BSR_ERROR, 0, BSR_E_IO);
                session_end(s, "replica write failed");
                return;
            }
            account_written(sec, plen);
            note_cached_write(sec, plen);
            break;
        }
        submit_write(s, b, plen, offset);
        if (s->state == ST_CLOSED)
            return;
        break;
    }
    case BSR_ZERO:
        sec->received_bytes += (uint64_t)s->frame.count * BSR_SECTOR_SIZE;
        if (!start_zero(s)) {
            s->zero_waiting = true;
            s->state = ST_STALLED; /* job_done resumes us */
            return;
        }
        if (s->state == ST_CLOSED)
            return;
        break;
    case BSR_FLUSH:
        /* Everything before the FLUSH must be written before the flush. */
        s->flush_pending = true;
        s->flush_pending_seq = s->frame.sector;
        s->state = ST_STALLED;
        resume(s);
        return;
    case BSR_HEARTBEAT:
        break;
    default:
        reject_frame(s, "unexpected frame kind");
        return;
    }
    read_header(s);
}

/* Continues a stalled session when what it waits for is there. */
static void resume(struct session *s)
{
    if (s->drain_first) {
        if (s->sec->writes_inflight)
            return;
        s->drain_first = false;
    }
    if (s->zero_waiting) {
        if (!start_zero(s))
            return;
        s->zero_waiting = false;
        read_header(s);
        return;
    }
    if (s->flush_pending) {
        if (s->sec->writes_inflight)
            return;
        s->flush_pending = false;
        request_flush(s, s->flush_pending_seq);
        read_header(s);
        return;
    }
    if (s->frame.kind == BSR_DATA && !s->buf) {
        read_payload(s);
        return;
    }
    read_header(s);
}

/* A read inside a frame failed: a clean close there is a truncated frame. */
static void mid_frame_failure(struct session *s, int status)
{
    session_end(s, status == -ECONNRESET ? "connection closed in the middle of a frame (truncated frame)"
                                         : "read error");
}

static void on_trailer(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;

    (void)c;
    if (status < 0) {
        mid_frame_failure(s, status);
        return;
    }
    apply_frame(s);
}

static void read_trailer(struct session *s)
{
    s->state = ST_TRAILER;
    if (bs_conn_read(s->conn, s->trailer, sizeof(s->trailer), on_trailer, s) < 0)
        session_end(s, "read error");
}

static void on_payload(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;

    (void)c;
    if (status < 0) {
        mid_frame_failure(s, status);
        return;
    }
    read_trailer(s);
}

static void read_payload(struct session *s)
{
    s->buf = get_buffer(s->sec);
    if (!s->buf) {
        s->state = ST_STALLED; /* on_write_done resumes us */
        return;
    }
    s->state = ST_PAYLOAD;
    if (bs_conn_read(s->conn, s->buf->data, bsr_frame_payload(&s->frame), on_payload, s) < 0)
        session_end(s, "read error");
}

static void on_header(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;
    const char *why = NULL;

    (void)c;
    if (status < 0) {
        session_end(s, status == -ECONNRESET ? "closed by the primary" : "read error");
        return;
    }
    /* Validate before reading a single payload byte. */
    if (bsr_frame_unpack(s->hdr, &s->limits, true, &s->frame, &why) < 0) {
        reject_frame(s, why);
        return;
    }
    if (bsr_frame_payload(&s->frame))
        read_payload(s);
    else
        read_trailer(s);
}

static void read_header(struct session *s)
{
    if (s->state == ST_CLOSED)
        return;
    s->state = ST_HEADER;
    if (bs_conn_read(s->conn, s->hdr, sizeof(s->hdr), on_header, s) < 0)
        session_end(s, "read error");
}

static void send_welcome(struct session *s, int status, const char *reason)
{
    struct secondary *sec = s->sec;
    struct bsr_welcome w;

    memset(&w, 0, sizeof(w));
    w.version = SECONDARY_VERSION;
    w.status = status;
    w.disk_bytes = sec->disk_bytes;
    w.max_payload = s->limits.max_payload;
    memcpy(w.replica_id, sec->replica_id, BSR_ID_LEN);
    memcpy(w.primary_id, sec->primary_id, BSR_ID_LEN);
    w.generation = sec->generation;
    w.epoch = sec->epoch;
    snprintf(w.reason, sizeof(w.reason), "%s", reason ? reason : "");
    bsr_welcome_pack(&w, s->welcome);
    if (bs_conn_write(s->conn, s->welcome, sizeof(s->welcome), NULL, NULL) < 0)
        session_end(s, "cannot send the welcome");
}

static void refuse(struct session *s, int status, const char *detail)
{
    BS_ERR(MOD, "refusing primary %s: %s (%s)", bs_conn_peer(s->conn), bsr_status_str(status), detail);
    send_welcome(s, status, detail);
    session_end(s, "handshake refused");
}

static void on_hello(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;
    struct secondary *sec = s->sec;
    struct bsr_hello h;
    const char *why = NULL;
    char detail[160];

    (void)c;
    if (status < 0) {
        session_end(s, "closed before the hello");
        return;
    }
    if (bsr_hello_unpack(s->hello, &h, &why) < 0) {
        BS_ERR(MOD, "refusing %s: %s", bs_conn_peer(s->conn), why);
        session_end(s, "bad hello");
        return;
    }
    if (h.version != SECONDARY_VERSION) {
        snprintf(detail, sizeof(detail), "version %u, we speak %u", h.version, SECONDARY_VERSION);
        refuse(s, BSR_E_VERSION, detail);
        return;
    }
    if (h.disk_bytes != sec->disk_bytes || h.sector_size != BSR_SECTOR_SIZE) {
        snprintf(detail, sizeof(detail), "primary disk %" PRIu64 " bytes, replica %" PRIu64,
                 h.disk_bytes, sec->disk_bytes);
        refuse(s, BSR_E_SIZE, detail);
        return;
    }
    if (h.max_payload < BSR_SECTOR_SIZE || h.max_payload > BSR_MAX_PAYLOAD_LIMIT ||
        h.max_payload % BSR_SECTOR_SIZE || h.flags != 0) {
        refuse(s, BSR_E_LIMITS, "payload limit or flags out of range");
        return;
    }
    if (!bs_id_is_zero(h.replica_id) && memcmp(h.replica_id, sec->replica_id, BSR_ID_LEN) != 0) {
        refuse(s, BSR_E_IDENTITY, "the primary expects another replica");
        return;
    }
    if (!bs_id_is_zero(sec->primary_id) && memcmp(h.primary_id, sec->primary_id, BSR_ID_LEN) != 0) {
        refuse(s, BSR_E_PAIRED, "this replica belongs to another primary");
        return;
    }
    /* Accepted: a previous session of this primary (a half-open link) yields. */
    if (sec->session && sec->session != s) {
        BS_WARN(MOD, "a new session from the primary replaces the old one");
        session_end(sec->session, "replaced by a new session");
    }
    pending_remove(s);
    sec->session = s;
    s->accepted = true;
    snprintf(sec->peer, sizeof(sec->peer), "%s", bs_conn_peer(s->conn));
    if (bs_id_is_zero(sec->primary_id) || sec->generation != h.generation) {
        memcpy(sec->primary_id, h.primary_id, BSR_ID_LEN);
        sec->generation = h.generation;
        if (save_state(sec) < 0) {
            refuse(s, BSR_E_IO, "cannot record the pairing");
            return;
        }
    }
    s->limits.disk_sectors = sec->disk_bytes / BSR_SECTOR_SIZE;
    s->limits.max_payload = h.max_payload < sec->max_payload ? h.max_payload : sec->max_payload;
    BS_INFO(MOD, "primary %s connected (max payload %u bytes)", sec->peer, s->limits.max_payload);
    send_welcome(s, BSR_OK, NULL);
    s->last_rx_ms = now_ms(sec);
    if (sec->writes_inflight) {
        /* Writes or zeroes of the session before may still be running: a
         * frame of this one over the same grain must land after them. */
        s->drain_first = true;
        s->state = ST_STALLED;
        return;
    }
    read_header(s);
}

static void on_handshake(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;

    (void)c;
    if (status < 0) {
        session_end(s, status == -EPROTO ? "TLS handshake failed" : "closed during the TLS handshake");
        return;
    }
    s->state = ST_HELLO;
    if (bs_conn_read(s->conn, s->hello, sizeof(s->hello), on_hello, s) < 0)
        session_end(s, "read error");
}

static void session_end(struct session *s, const char *why)
{
    struct secondary *sec = s->sec;

    if (s->state == ST_CLOSED)
        return;
    if (s->accepted)
        BS_WARN(MOD, "session with %s ended: %s", bs_conn_peer(s->conn), why);
    else
        BS_WARN(MOD, "connection from %s dropped: %s", bs_conn_peer(s->conn), why);
    s->state = ST_CLOSED;
    if (sec->session == s)
        sec->session = NULL;
    pending_remove(s);
    /* Queued control frames (an ERROR, a refusing welcome) still go out;
     * the session memory they live in is freed with the connection. */
    bs_conn_close(s->conn, true, on_session_conn_closed, s);
}

static void on_listen_readable(uv_poll_t *h, int status, int events)
{
    struct secondary *sec = h->data;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char peer[96];
    int fd;

    (void)events;
    if (status < 0)
        return;
    while ((fd = accept4(sec->listen_fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct session *s = calloc(1, sizeof(*s));
        bs_sockaddr_str((struct sockaddr *)&ss, peer, sizeof(peer));
        len = sizeof(ss);
        if (!s) {
            close(fd);
            continue;
        }
        if (sec->npending >= MAX_PENDING) {
            /* Unauthenticated peers must not pile up connections, nor keep
             * the real primary out by holding them: the oldest one yields.
             * A primary's handshake takes milliseconds, so only a flood
             * faster than that can push it out, and it retries. */
            struct session *old = oldest_pending(sec);
            BS_WARN(MOD, "%u connections are still authenticating: dropping the oldest, from %s "
                    "(%.1f s), for %s",
                    sec->npending, bs_conn_peer(old->conn),
                    (double)(now_ms(sec) - old->started_ms) / 1000.0, peer);
            session_end(old, "evicted for a newer connection");
        }
        bs_tcp_tune(fd);
        s->sec = sec;
        s->started_ms = now_ms(sec);
        s->id = ++sec->next_session_id;
        s->state = ST_TLS;
        s->limits.max_payload = sec->max_payload;
        SSL_CTX *ctx = bs_tls_ctx(sec->tls);
        if (!ctx || bs_conn_new(sec->loop, ctx, fd, true, peer, &s->conn) < 0) {
            if (!ctx)
                close(fd);
            free(s);
            continue;
        }
        s->next_pending = sec->pending;
        sec->pending = s;
        sec->npending++;
        BS_INFO(MOD, "connection from %s", peer);
        bs_conn_handshake(s->conn, on_handshake, s);
    }
}

/* ---- Timers, status, signals --------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct secondary *sec = t->data;
    struct session *s = sec->session;

    /* A connection has the handshake timeout to authenticate and say hello. */
    for (struct session *p = sec->pending, *next; p; p = next) {
        next = p->next_pending;
        if (now_ms(sec) - p->started_ms > sec->handshake_timeout_ms)
            session_end(p, "no TLS handshake and hello within the handshake timeout");
    }
    if (!s || s->state == ST_CLOSED)
        return;
    /* While the session waits for the replica it reads nothing, so the
     * primary's heartbeats wait in the socket: silence is counted only
     * while we listen. */
    if (s->state == ST_STALLED)
        s->last_rx_ms = now_ms(sec);
    if (now_ms(sec) - s->last_rx_ms > sec->heartbeat_timeout_ms) {
        session_end(s, "primary silent past the heartbeat timeout");
        return;
    }
    send_control(s, BSR_HEARTBEAT, now_ms(sec), 0);
}

/* Answers "status" with the replica's state as one JSON object (see
 * docs/man/blkship.8.md for the fields); a change that is not an addition
 * needs BS_CTL_SCHEMA incremented. */
static ssize_t status_handler(void *opaque, const char *request, char *reply, size_t size)
{
    struct secondary *sec = opaque;
    struct bs_json_builder b;
    char rid[33], pid[33];

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (strcmp(request, "status") != 0) {
        bs_json_add_str(&b, "error", "unknown request");
        return bs_json_finish(&b, reply, size);
    }
    bs_id_to_hex(sec->replica_id, rid);
    bs_id_to_hex(sec->primary_id, pid);
    bs_json_add_str(&b, "role", "secondary");
    bs_json_add_bool(&b, "connected", sec->session != NULL);
    bs_json_add_str(&b, "peer", sec->session ? sec->peer : "");
    bs_json_add_str(&b, "device", sec->target.path);
    bs_json_add_u64(&b, "disk_bytes", sec->disk_bytes);
    bs_json_add_str(&b, "replica_id", rid);
    bs_json_add_str(&b, "primary_id", pid);
    bs_json_add_u64(&b, "generation", sec->generation);
    /* Only the primary knows what the replica lacks. */
    bs_json_add_null(&b, "dirty_bytes");
    bs_json_add_u64(&b, "inflight_bytes", sec->unflushed_bytes);
    bs_json_add_u64(&b, "sent_bytes", 0);
    bs_json_add_u64(&b, "received_bytes", sec->received_bytes);
    bs_json_add_u64(&b, "written_bytes", sec->written_bytes);
    bs_json_add_u64(&b, "acked_bytes", sec->durable_bytes);
    bs_json_add_u64(&b, "bad_frames", sec->bad_frames);
    bs_json_add_null(&b, "sync_percent");
    return bs_json_finish(&b, reply, size);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct secondary *sec = h->data;

    BS_INFO(MOD, "signal %d: shutting down", signum);
    bs_notify("STOPPING=1");
    sec->stopping = true;
    if (sec->session)
        session_end(sec->session, "shutting down");
    if (!sec->fsync_running)
        uv_stop(sec->loop);
}

/* ---- Main ------------------------------------------------------------------ */

/* Releases what main set up before a start-up step failed (the TLS
 * context, the target's claim, the buffers); returns main's exit status. */
static int start_failed(struct secondary *sec)
{
    if (sec->target.ops)
        sec->target.ops->close(&sec->target);
    for (unsigned i = 0; i < NBUF; i++)
        free(sec->bufs[i].data);
    bs_tls_free(sec->tls);
    return BS_EXIT_FAILURE;
}

static void usage(FILE *f)
{
    fputs("Usage: blkship-secondary --listen HOST:PORT --device PATH --state-dir DIR\n"
          "                         --control SOCK --cert FILE --key FILE --ca FILE\n"
          "                         --peer-name NAME [options]\n"
          "\n"
          "Receives a replicated disk from blkship-primary over mutual TLS and writes it\n"
          "to PATH (a block device or a regular file of the same size as the primary's\n"
          "disk).\n"
          "\n"
          "  --listen HOST:PORT       address to accept the primary on ([IPv6]:PORT)\n"
          "  --device PATH            replica block device or file\n"
          "  --state-dir DIR          replica identity and pairing (created 0700)\n"
          "  --control SOCK           local control socket for 'blkship status'\n"
          "  --cert, --key FILE       this host's certificate and key (PEM; key mode 0600)\n"
          "  --ca FILE                CA the primary's certificate must chain to\n"
          "  --crl FILE               revocation list of that CA (PEM), checked every handshake\n"
          "  --peer-name NAME         DNS name (or IP address) the primary's certificate\n"
          "                           must carry as a subject alternative name\n"
          "  --max-payload SIZE       largest data frame accepted (default 1M; 512-8M,\n"
          "                           a multiple of 512)\n"
          "  --heartbeat-timeout DUR  end a session after DUR of silence (default 10s;\n"
          "                           2s-1h; a bare number is seconds)\n"
          "  --handshake-timeout DUR  a connection must finish TLS and its hello within\n"
          "                           DUR (default 5s; 1s-1h)\n"
          "  --log-level LEVEL        err, warn, info (default) or debug\n"
          "  --version, --help\n"
          "\n"
          "Exit status: 0 stopped by a signal, 1 runtime failure, 2 usage or\n"
          "configuration error.\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "device", required_argument, NULL, 'd' },
        { "state-dir", required_argument, NULL, 's' },
        { "control", required_argument, NULL, 'c' },
        { "cert", required_argument, NULL, 'C' },
        { "key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "crl", required_argument, NULL, 'R' },
        { "peer-name", required_argument, NULL, 'P' },
        { "max-payload", required_argument, NULL, 'm' },
        { "heartbeat-timeout", required_argument, NULL, 't' },
        { "handshake-timeout", required_argument, NULL, 'H' },
        { "log-level", required_argument, NULL, 'L' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct secondary sec_s = { 0 }, *sec = &sec_s;
    struct bs_tls_config tls = { 0 };
    const char *listen_addr = NULL, *device = NULL, *state_dir = NULL, *control = NULL;
    uint64_t v;
    int opt, r;

    sec->max_payload = BSR_DEFAULT_MAX_PAYLOAD;
    sec->heartbeat_timeout_ms = 10000;
    sec->handshake_timeout_ms = 5000;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen_addr = optarg; break;
        case 'd': device = optarg; break;
        case 's': state_dir = optarg; break;
        case 'c': control = optarg; break;
        case 'C': tls.cert = optarg; break;
        case 'K': tls.key = optarg; break;
        case 'A': tls.ca = optarg; break;
        case 'R': tls.crl = optarg; break;
        case 'P': tls.peer_name = optarg; break;
        case 'm':
            if (bs_opt_size("--max-payload", optarg, BSR_SECTOR_SIZE, BSR_MAX_PAYLOAD_LIMIT, &v) < 0)
                return BS_EXIT_USAGE;
            if (v % BSR_SECTOR_SIZE) {
                bs_usage_error("--max-payload %s: not a multiple of 512", optarg);
                return BS_EXIT_USAGE;
            }
            sec->max_payload = (uint32_t)v;
            break;
        case 't':
            if (bs_opt_duration_ms("--heartbeat-timeout", optarg, 1000, 2000, 3600000, &v) < 0)
                return BS_EXIT_USAGE;
            sec->heartbeat_timeout_ms = (unsigned)v;
            break;
        case 'H':
            if (bs_opt_duration_ms("--handshake-timeout", optarg, 1000, 1000, 3600000, &v) < 0)
                return BS_EXIT_USAGE;
            sec->handshake_timeout_ms = (unsigned)v;
            break;
        case 'L':
            if (bs_opt_log_level(optarg) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'V': puts("blkship-secondary " BLKSHIP_VERSION); return BS_EXIT_OK;
        case 'h': usage(stdout); return BS_EXIT_OK;
        default: usage(stderr); return BS_EXIT_USAGE;
        }
    }
    {
        const struct bs_opt_required required[] = {
            { "--listen", listen_addr, false }, { "--device", device, false },
            { "--state-dir", state_dir, false }, { "--control", control, false },
            { "--cert", tls.cert, false },       { "--key", tls.key, false },
            { "--ca", tls.ca, false },           { "--peer-name", tls.peer_name, false },
            { "--crl", tls.crl, true },
        };
        if (bs_opt_check_required(required, sizeof(required) / sizeof(required[0])) < 0)
            return BS_EXIT_USAGE;
    }
    if (bs_opt_no_arguments(optind, argc, argv) < 0)
        return BS_EXIT_USAGE;
    if (bs_opt_hostport("--listen", listen_addr) < 0)
        return BS_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);

    if (bs_tls_new(&tls, true, &sec->tls) < 0)
        return BS_EXIT_USAGE;
    if (bs_target_open(&sec->target, device) < 0)
        return start_failed(sec);
    if (sec->target.size_bytes == 0 || sec->target.size_bytes % BSR_SECTOR_SIZE) {
        BS_ERR(MOD, "replica %s has size %" PRIu64 ": must be a positive multiple of 512", device,
               sec->target.size_bytes);
        return start_failed(sec);
    }
    sec->disk_bytes = sec->target.size_bytes;
    /* Page-aligned buffers: a write's buffer never keeps it from going
     * direct (bs_target_direct_ok). */
    for (unsigned i = 0; i < NBUF; i++) {
        sec->bufs[i].sec = sec;
        if (posix_memalign((void **)&sec->bufs[i].data, 4096, sec->max_payload) != 0) {
            BS_ERR(MOD, "out of memory for write buffers");
            return start_failed(sec);
        }
    }
    r = bs_mkdir(state_dir);
    if (r < 0) {
        BS_ERR(MOD, "state directory %s: %s", state_dir, strerror(-r));
        return start_failed(sec);
    }
    snprintf(sec->state_path, sizeof(sec->state_path), "%s/secondary.state", state_dir);
    if (load_state(sec) < 0)
        return start_failed(sec);

    sec->loop = uv_default_loop();
    sec->listen_fd = bs_tcp_listen(listen_addr);
    if (sec->listen_fd < 0)
        return start_failed(sec);
    uv_poll_init(sec->loop, &sec->listen_poll, sec->listen_fd);
    sec->listen_poll.data = sec;
    uv_poll_start(&sec->listen_poll, UV_READABLE, on_listen_readable);
    r = bs_ctl_start(sec->loop, control, status_handler, sec, &sec->ctl);
    if (r < 0) {
        BS_ERR(MOD, "control socket %s: %s", control, uv_strerror(r));
        return start_failed(sec);
    }
    uv_timer_init(sec->loop, &sec->tick);
    sec->tick.data = sec;
    uv_timer_start(&sec->tick, on_tick, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_signal_init(sec->loop, &sec->sigterm);
    uv_signal_init(sec->loop, &sec->sigint);
    sec->sigterm.data = sec->sigint.data = sec;
    uv_signal_start(&sec->sigterm, on_signal, SIGTERM);
    uv_signal_start(&sec->sigint, on_signal, SIGINT);

    {
        char rid[33];
        bs_id_to_hex(sec->replica_id, rid);
        BS_INFO(MOD, "replica %s (%s, %" PRIu64 " bytes, id %s) listening on %s", device,
                sec->target.ops->name, sec->disk_bytes, rid, listen_addr);
        if (sec->target.dio_align)
            BS_INFO(MOD, "replica %s: %u-byte logical, %u-byte physical blocks; writes aligned to "
                         "%u bytes go direct, others through the page cache",
                    device, sec->target.logical_block, sec->target.physical_block,
                    sec->target.dio_align);
        else
            BS_INFO(MOD, "replica %s: %u-byte logical, %u-byte physical blocks; no direct I/O, "
                         "every write through the page cache",
                    device, sec->target.logical_block, sec->target.physical_block);
    }
    bs_notify("READY=1\nSTATUS=listening");
    uv_run(sec->loop, UV_RUN_DEFAULT);

    bs_ctl_stop(sec->ctl);
    uv_close((uv_handle_t *)&sec->listen_poll, NULL);
    uv_close((uv_handle_t *)&sec->tick, NULL);
    uv_close((uv_handle_t *)&sec->sigterm, NULL);
    uv_close((uv_handle_t *)&sec->sigint, NULL);
    uv_run(sec->loop, UV_RUN_DEFAULT);
    close(sec->listen_fd);
    r = sec->target.ops->flush(&sec->target);
    if (r < 0)
        BS_ERR(MOD, "final flush of %s: %s", device, strerror(-r));
    BS_INFO(MOD, "replica writes: %" PRIu64 " direct, %" PRIu64 " through the page cache",
            (uint64_t)sec->target.direct_writes, (uint64_t)sec->target.cached_writes);
    sec->target.ops->close(&sec->target);
    for (unsigned i = 0; i < NBUF; i++)
        free(sec->bufs[i].data);
    bs_tls_free(sec->tls);
    uv_loop_close(sec->loop);
    BS_INFO(MOD, "stopped");
    return BS_EXIT_OK;
}
