/* The secondary agent's shared state and the interfaces between its
 * parts: the session (secondary/session.c: handshake, frame reading and
 * checking, control frames), the apply pipeline (secondary/apply.c: jobs
 * in the thread pool, writeback, flush of the replica) and the program
 * (secondary/secondary.c: options, state file, control socket, signals).
 * Every function here runs on the event loop thread unless it says
 * otherwise; none of them blocks on disk I/O.
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
 */
#ifndef BLKSHIP_SECONDARY_SECONDARY_H
#define BLKSHIP_SECONDARY_SECONDARY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/conn.h"
#include "common/tls.h"
#include "proto/repl.h"
#include "secondary/target.h"

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

static inline uint64_t sec_now_ms(struct secondary *sec)
{
    return uv_now(sec->loop);
}

/* ---- secondary.c ---- */

/* Replaces the state file with the agent's identity, pairing and epochs
 * (atomically, durably).  Returns 0 or -errno, logged. */
int sec_save_state(struct secondary *sec);

/* ---- session.c ---- */

/* Sends a control frame (ACK, HEARTBEAT, ERROR) from the session's slot
 * ring; ends the session when it cannot be queued. */
void session_send_control(struct session *s, uint8_t kind, uint64_t sector, uint32_t count);
/* Ends the session (idempotent); queued control frames still go out. */
void session_end(struct session *s, const char *why);
/* Continues a stalled session when what it waits for is there. */
void session_resume(struct session *s);
/* Accepts the connections waiting on the listening socket. */
void session_on_listen_readable(uv_poll_t *h, int status, int events);
/* Once a second: handshake and heartbeat timeouts, our heartbeat. */
void session_on_tick(uv_timer_t *t);

/* ---- apply.c ---- */

/* A free payload buffer and job, marked busy, or NULL when all are. */
struct wbuf *apply_get_buffer(struct secondary *sec);
/* Asks for a flush of the replica and, once it is durable, ACK seq on the
 * session that asked (coalesced with a flush already running). */
void apply_request_flush(struct session *s, uint64_t seq);
/* Bytes now written to the replica, durable after the next flush that
 * starts later. */
void apply_account_written(struct secondary *sec, uint64_t bytes);
/* Counts bytes written through the page cache; starts their writeback
 * once enough have gathered. */
void apply_note_cached_write(struct secondary *sec, uint64_t bytes);
/* Writes b's len payload bytes at offset in the thread pool; a failure to
 * queue ends the session. */
void apply_submit_write(struct session *s, struct wbuf *b, uint32_t len, uint64_t offset);
/* Starts the ZERO job of the checked frame in s->frame.  Returns false
 * when every job slot is busy (the caller stalls and retries); true
 * otherwise, including when starting failed and the session ended. */
bool apply_start_zero(struct session *s);

#endif
