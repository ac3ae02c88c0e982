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

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/changes.h"
#include "common/compress.h"
#include "common/conn.h"
#include "common/events.h"
#include "common/metrics.h"
#include "common/notify.h"
#include "common/xen.h"
#include "common/ctl.h"
#include "common/hook.h"
#include "common/tls.h"
#include "proto/repl.h"
#include "secondary/journal.h"
#include "secondary/target.h"

/* The newest protocol version this agent speaks (2: epochs and the
 * journal, secondary/epoch.c; 3: block checksums, secondary/hashcheck.c);
 * it accepts hellos of BSR_VERSION_MIN up. */
#define SECONDARY_VERSION 5u
#define TICK_MS 1000                  /* handshake timeouts are checked this often */
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

/* Frame buffers (max_payload each, allocated at start; pages are touched
 * only as far as frames fill them): as many frames as can wait for the
 * disk at once.  Small frames need many: with 4 KiB grains one buffer
 * holds one grain. */
#define NBUF 64
/* Payloads up to this go through the page cache: the session writes them
 * inline, the appender and the applier with a flush after them. */
#define SMALL_WRITE (64u << 10)
#define WRITEBACK_BYTES (1u << 20) /* inline bytes between writeback starts */

enum job_kind {
    JOB_WRITE,  /* a DATA payload, written in one piece */
    JOB_ZERO,   /* a ZERO range, zeroed BS_TARGET_ZERO_CHUNK at a time */
};

/* A checksum answer (HASHED): header, a bitmap of up to 1024 blocks, CRC. */
#define HC_REPLY_LEN (BSR_FRAME_HDR_LEN + BSR_HASHES_MAX / 8 + BSR_FRAME_CRC_LEN)
#define HC_OUT_SLOTS (BS_CONN_MAX_WRITES + 1)

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
    /* A HASHES comparison (secondary/hashcheck.c): the payload's range,
     * then the replica's range read over it; the answer is built here. */
    uint64_t hc_sector;
    uint32_t hc_blocks, hc_block_sectors, hc_range_sectors;
    uint32_t hc_differ;     /* blocks found different */
    uint8_t hc_reply[HC_REPLY_LEN];
    bool busy;
    bool queued;            /* handed to the thread pool */
};

struct secondary;

/* How the epoch open on a version 2 link is written (docs/epochs.md §4). */
enum ep_mode {
    EPM_NONE,       /* no frame of it yet: chosen at its first frame */
    EPM_INPLACE,    /* the replica holds no image to protect: today's write
                       path, committed by a flush and the state record */
    EPM_JOURNAL,    /* through the appender's queue (journal, or in place
                       there when the appender finds it must) */
};

/* An entry of the appender's queue: a checked frame of a version 2 session
 * that goes through the journal, in arrival order. */
enum jq_kind {
    JQ_DATA,    /* buf holds count sectors for sector */
    JQ_ZERO,    /* sectors [sector, sector + count) */
    JQ_SYNC,    /* a FLUSH: sector = its sequence, ACKed once durable */
    JQ_COMMIT,  /* END_EPOCH: sector = the epoch */
    JQ_ABORT,   /* ABORT_EPOCH: sector = the epoch */
};

struct jq_entry {
    enum jq_kind kind;
    uint64_t sector;
    uint32_t count;
    uint64_t prov_epoch;    /* DATA, ZERO: the number it is journalled under */
    struct wbuf *buf;       /* DATA */
    uint64_t session_id;
};
#define JQ_LEN (NBUF + 8)
#define AP_BATCH_MAX 64 /* DATA and ZERO entries one appender job takes */
#define APPLY_BATCH_MAX 64 /* committed epochs one applier job applies, under one flush */

/* Test-only crash points (BLKSHIP_TEST_CRASH, read once at start): the
 * secondary _exit(99)s there, so that journal replay can be tested
 * deterministically. */
enum crash_point {
    CRASH_NONE,
    CRASH_BEFORE_COMMIT,            /* 500 ms, then exit, before an epoch's commit record */
    CRASH_AFTER_COMMIT,             /* the commit is durable, COMMITTED not sent */
    CRASH_MID_APPLY,                /* the first record of an epoch applied to the replica */
    CRASH_BEFORE_APPLIED_RECORD,    /* the replica flushed, applied_epoch not recorded */
    CRASH_BEFORE_RELEASE,           /* applied_epoch recorded, the journal not released */
};

/* A thread-pool job that writes the state file (and first flushes the
 * replica when it commits an epoch written in place). */
struct state_job {
    uv_work_t req;
    bool running;
    bool flush;             /* flush the replica first: an in-place commit */
    uint64_t applied;       /* what to record */
    bool consistent;
    uint64_t session_id;    /* the session that waits for it */
    int result;
};

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
    bool hc_waiting;            /* a checked HASHES frame waits for the replica to settle */
    uint8_t hc_out[HC_OUT_SLOTS][HC_REPLY_LEN]; /* checksum answers being sent */
    unsigned hc_out_next;
    uint8_t out[OUT_SLOTS][BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN];
    unsigned out_next;
    uint64_t last_rx_ms;
    bool accepted;              /* the hello was accepted */
    bool checksum_asked;        /* its welcome asked for a checksum resync */
    bool own_sent;              /* the replica's own changes went to it (EXTENTS) */
    uint8_t *own_buf;           /* their frames, until the session is freed */
    /* ZDATA (version 5, agreed in the welcome): the compressed payload is
     * read here, then decompressed into `buf`. */
    uint8_t *zbuf;
    struct bs_zdec zd;
    uint16_t welcome_flags;

    /* Version 2 epochs on this link (secondary/epoch.c). */
    enum ep_mode ep_mode;       /* of the open epoch */
    uint64_t ep_last;           /* last epoch closed on the link, or committed at the hello */
    bool ep_hold;               /* stalled on the epoch logic (the flags below) */
    bool ep_frame_waiting;      /* the checked frame waits for room in the queue */
    bool ep_end_waiting;        /* in place: END_EPOCH waits for the writes before it */
    uint64_t ep_end_epoch;
    bool ep_v1_prepare;         /* v1: the replica is being recorded inconsistent first */
};

struct secondary {
    uv_loop_t *loop;
    struct bs_tls *tls;
    struct bs_target target;
    struct bs_target_cfg target_cfg; /* how target was opened: a reopen does the same */
    uint64_t disk_bytes;
    struct wbuf bufs[NBUF];
    unsigned writes_inflight;
    char state_path[4096];
    uint8_t replica_id[BSR_ID_LEN];
    uint8_t primary_id[BSR_ID_LEN];   /* paired primary; zero: none yet */
    uint64_t generation;
    uint64_t epoch;
    uint32_t max_payload;
    unsigned heartbeat_ms;          /* how often we send a heartbeat */
    unsigned peer_timeout_ms;       /* a primary silent this long is lost */
    unsigned handshake_timeout_ms;  /* TLS and the hello must be done by then */
    struct bs_hooks *hooks;
    const char *on_failover;        /* hook: the primary was lost; NULL: none */
    uint64_t primaries_lost;        /* sessions that ended so (status) */
    char resource[256];             /* --resource: for hooks and status */

    int listen_fd;              /* -1 behind blkship-listener */
    uv_poll_t listen_poll;
    /* --listener: registered with blkship-listener (secondary/registrar.c). */
    const char *listener_path;  /* NULL: --listen */
    int reg_fd;                 /* the registration; -1 while lost */
    uv_poll_t reg_poll;
    uv_timer_t reg_retry;
    uint64_t registrations;     /* successful ones, the first included */
    uv_timer_t tick;
    uv_timer_t heartbeat;
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
    unsigned hash_jobs;         /* checksum comparisons in the thread pool */
    uint64_t hashed_bytes;      /* replica bytes compared by checksum */
    uint64_t hash_differ_blocks; /* blocks found different */
    uint64_t received_bytes;
    uint64_t zdata_frames;      /* compressed data frames taken (--compress on the primary) */
    uint64_t zdata_wire_bytes, zdata_raw_bytes; /* their size on the link, and unpacked */
    uint64_t written_bytes;
    uint64_t durable_bytes;
    uint64_t unflushed_bytes;   /* written, not yet covered by a finished fsync */
    uint64_t bad_frames;
    char peer[96];
    char last_lost[128];        /* why the last accepted session ended */
    uint64_t sessions_accepted;
    const char *listen_addr;
    struct bs_notify notify;    /* systemd (secondary/notify.c) */
    struct bs_metrics *metrics; /* --metrics, or NULL (secondary/metrics.c) */
    struct bs_xen *xen;         /* --xen-domain, or NULL (secondary/notify.c) */
    char metrics_text[BS_METRICS_MAX]; /* built on the loop, copied out */
    struct bs_events events;    /* "events" on the control socket (secondary/events.c) */
    bool ev_consistent, ev_split_brain, ev_promoted; /* the state last reported */
    bool stopping;

    /* blkship promote (secondary/promote.c). */
    bool promoting;             /* sessions are refused while it settles */
    bool promoted;              /* done: the device is released */
    bool st_promoted;           /* the state file says so */
    bool promote_forced;
    uint64_t promoted_epoch;
    uint64_t generation_prev;   /* the generation before the promotion */
    /* Generations and split brain (secondary/generation.c). */
    bool checksum_required;     /* persisted: resolved here, to be compared by checksums */
    /* A demoted primary's own changes (secondary/ownchanges.c). */
    struct bs_changes own;
    bool own_pending;           /* persisted (own_changes 1): sent to each session until a commit */
    uint64_t role_seq;          /* persisted: counts role changes of this state directory */
    uint64_t own_bytes;
    char changes_path[4200];
    bool split_brain;           /* a primary that changed too came after the promotion */
    uint64_t split_brains;
    uint64_t sb_peer_generation, sb_peer_bitmap, sb_peer_changed;
    char sb_peer[96];
    const char *on_split_brain; /* hook; NULL: none */
    struct bs_ctl_pending *promote_pending;
    uint64_t promote_deadline_ms;
    uv_timer_t promote_timer;
    uv_work_t promote_req;
    int promote_result;

    /* Epochs and the journal (secondary/epoch.c).  The loop's view: */
    struct bs_journal *journal;
    uint64_t journal_max;
    uint64_t applied_epoch;     /* the replica holds (or replay makes it hold) this image */
    uint64_t committed_epoch;   /* newest committed, journal or applied */
    bool consistent;            /* durable: applied_epoch's image is the replica's */
    bool applying;              /* a journalled epoch is being copied in */
    bool apply_failed;
    /* Reopening the replica after a failed apply (secondary/recover.c). */
    uv_timer_t rc_timer;
    uv_work_t rc_req;
    bool rc_running;            /* the target is being closed and opened: not to be read */
    unsigned rc_backoff_ms;
    int rc_result;
    char rc_path[4096];
    uint64_t rc_attempts, reopens;
    uint64_t oversize_epochs;
    char note[192];             /* why the replica is not consistent, for status */
    unsigned proto_version;     /* of the current or last session */
    enum crash_point crash;
    unsigned test_apply_delay_ms;   /* BLKSHIP_TEST_APPLY_DELAY_MS: tests only */
    /* The state file is written by the loop (pairing) and by workers
     * (epochs): state_lock serialises them; st_* is what was written. */
    pthread_mutex_t state_lock;
    uint64_t st_applied;
    bool st_consistent;
    /* The appender: one thread-pool job at a time over the queue. */
    struct jq_entry jq[JQ_LEN];
    unsigned jq_head, jq_len;
    uv_work_t ap_req;
    bool ap_running;
    bool ap_drop_open;          /* drop the open epoch once the appender is idle */
    unsigned ap_batch;          /* DATA/ZERO entries the running job takes from
                                   the head; 0: it takes the head alone */
    unsigned ap_ok;             /* ... of which it completed */
    int ap_result;
    bool ap_epoch_open;         /* an entry of the epoch has been handled */
    bool ap_inplace;            /* the epoch open in the appender goes in place */
    bool ap_oversize;           /* ... because it did not fit the journal */
    bool ap_space_wait;         /* the head append found no room: wait for releases */
    bool ap_try_oversize;       /* retrying it with nothing else in the journal */
    bool ap_went_oversize;      /* the worker switched the epoch to in place */
    uint64_t ap_journalled;     /* bytes of the epoch journalled before that */
    uint64_t ap_written;        /* bytes the worker wrote to the replica */
    uint64_t ap_commit_ns;      /* how long the last journal commit took */
    /* The applier: committed epochs to the replica, in order. */
    uv_work_t apl_req;
    bool apl_running;
    uint64_t apl_list[APPLY_BATCH_MAX]; /* the committed epochs it applies, oldest first */
    size_t apl_n;
    uint64_t apl_bytes;
    int apl_result;
    struct state_job sj;
};

static inline uint64_t sec_now_ms(struct secondary *sec)
{
    return uv_now(sec->loop);
}

/* ---- secondary.c ---- */

/* Replaces the state file with the agent's identity, pairing and epochs
 * (atomically, durably).  Returns 0 or -errno, logged. */
int sec_save_state(struct secondary *sec);
/* Writes the state file from the fields; state_lock held. */
int sec_write_state_locked(struct secondary *sec);

/* ---- secondary.c ---- */

/* Writes the state file with applied and consistent as the epoch fields;
 * any thread (takes state_lock; blocks on I/O). */
int sec_save_epochs(struct secondary *sec, uint64_t applied, bool consistent);
/* Records a new pairing or generation (on the loop, like before). */
int sec_save_pairing(struct secondary *sec, const uint8_t primary_id[BSR_ID_LEN],
                     uint64_t generation);

/* ---- epoch.c ---- */

/* Opens the journal (created at max_bytes if absent) and, before anything
 * else happens, applies its committed epochs not yet applied and drops
 * what followed them.  Blocks: call before the loop runs.  0 or -errno. */
int epoch_open(struct secondary *sec, const char *path, uint64_t max_bytes);
void epoch_close(struct secondary *sec);
/* Whether nothing of an earlier session is queued or running (a new
 * session starts reading only then). */
bool epoch_quiet(struct secondary *sec);
/* A session's hello was accepted and the I/O before it drained: sets up
 * its epoch state.  False when it must stall first (a version 1 session
 * records the replica inconsistent before its first write); the epoch
 * logic resumes it. */
bool epoch_session_begin(struct session *s);
/* The primary of the session that just ended is lost: what the journal
 * holds of an epoch it did not end is dropped (now, or once the appender
 * has let go of that session's frames). */
void epoch_session_lost(struct secondary *sec);
/* A checked frame of a version 2 session (DATA, ZERO, FLUSH, END_EPOCH,
 * ABORT_EPOCH).  True: it goes today's in-place path (the caller applies
 * it).  False: the epoch logic took it (queued, stalled or the session
 * ended); it reads the next header itself. */
bool epoch_frame(struct session *s);
/* A stalled session with ep_hold set: retries what it waits for. */
void epoch_resume(struct session *s);
/* Whether the replica holds the image of applied_epoch now. */
bool epoch_replica_consistent(struct secondary *sec);
/* The target was reopened after a failed apply: applies the journal's
 * committed epochs again. */
void epoch_apply_again(struct secondary *sec);
/* Every committed epoch is applied, nothing is queued or running, and no
 * apply failed. */
bool epoch_settled(struct secondary *sec);

/* ---- generation.c ---- */

/* Judges a hello's generations by the connect table (docs/failover.md):
 * BSR_OK with the welcome's flags, or a refusal status with `detail`. */
int sgen_judge(struct session *s, const struct bsr_hello *h, uint16_t *flags, char *detail,
               size_t size);
/* The session is about to send COMMITTED: the checksum resync a resolved
 * split brain asked for is done (state written). */
void sgen_committed(struct session *s);

/* ownchanges.c */
/* secondary.state is missing: takes up a demoted primary's state in
 * state_dir (its generation, and its own changes or a checksum resync).
 * With `newer`, only a demotion whose role_seq is above `above` (one made
 * after this directory's promotion) counts.  Returns 1 when it did, 0 when
 * there is none, -EPERM for a primary that was not demoted, or -errno
 * (logged). */
int own_adopt(struct secondary *sec, const char *state_dir, bool newer, uint64_t above);
/* Reads changes_path (the state said own_changes 1).  0 or -errno (logged). */
int own_load(struct secondary *sec);
/* Queues the EXTENTS frames (the last with count 0) right after the welcome.
 * Returns false when they cannot be queued. */
bool own_send(struct session *s);
/* An epoch of the session committed: the changes are resent; forget them. */
void own_committed(struct session *s);
void own_status(struct secondary *sec, struct bs_json_builder *b);
/* The control socket's "resolve discard-local". */
void sgen_resolve_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
struct bs_json_builder;
void sgen_status(struct secondary *sec, struct bs_json_builder *b);

/* ---- promote.c ---- */

/* The control socket's "promote" and "promote force" requests. */
void promote_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
/* Sets up the timer; closes it at shutdown. */
void promote_init(struct secondary *sec);
void promote_close(struct secondary *sec);
/* Exits the process (_exit(99)) if point is the configured test crash. */
void epoch_crash_point(struct secondary *sec, enum crash_point point);
/* Parses BLKSHIP_TEST_CRASH; -EINVAL for an unknown value. */
int epoch_parse_crash(const char *value, enum crash_point *out);

/* ---- session.c ---- */

/* Sends a control frame (ACK, HEARTBEAT, ERROR) from the session's slot
 * ring; ends the session when it cannot be queued. */
void session_send_control(struct session *s, uint8_t kind, uint64_t sector, uint32_t count);
/* Ends the session (idempotent); queued control frames still go out. */
void session_end(struct session *s, const char *why);
/* Continues a stalled session when what it waits for is there. */
void session_resume(struct session *s);
/* Reads the next frame header. */
void session_read_header(struct session *s);
/* Logs a bad frame, sends ERROR (protocol) and ends the session. */
void session_reject_frame(struct session *s, const char *why);
/* Resumes the accepted session if it is stalled (after I/O it may wait for). */
void session_kick(struct secondary *sec);
/* Accepts the connections waiting on the listening socket. */
void session_on_listen_readable(uv_poll_t *h, int status, int events);
/* Starts a session on a connected socket (accepted, or handed over by
 * blkship-listener); takes fd. */
void session_accept(struct secondary *sec, int fd, const char *peer);
/* Once a second: handshake timeouts. */
void session_on_tick(uv_timer_t *t);
/* Every heartbeat_ms: the peer timeout, our heartbeat. */
void session_on_heartbeat(uv_timer_t *t);

/* ---- recover.c ---- */
void recover_init(struct secondary *sec);
void recover_close(struct secondary *sec);
/* An apply failed: ends the session and reopens the target after the
 * back-off, then applies again (epoch_apply_again). */
void recover_start(struct secondary *sec);
/* An apply succeeded: the next failure starts the back-off afresh. */
void recover_applied(struct secondary *sec);

/* ---- registrar.c ---- */
/* Registers sec->resource with the blkship-listener at listener_path
 * (blocks, at most about 5 s: start-up only).  0 or -errno, logged. */
int registrar_start(struct secondary *sec);
void registrar_close(struct secondary *sec);

/* ---- events.c ---- */
/* Records an event with the committed epoch. */
void sec_event(struct secondary *sec, const char *event, const char *peer, const char *reason);
/* Once a tick: the events the state's changes make. */
void sec_events_tick(struct secondary *sec);

/* ---- metrics.c ---- */
/* Builds the Prometheus text and hands it to the endpoint (every tick). */
void sec_metrics_publish(struct secondary *sec);

/* ---- notify.c ---- */
/* One line on what the secondary does now, for systemd's STATUS=. */
void sec_status_line(const struct secondary *sec, char *buf, size_t size);
/* Sends the status line to systemd if it changed (after READY=1). */
void sec_notify(struct secondary *sec);
/* Writes the state into the domain's xenstore area (--xen-domain). */
void sec_xen_publish(struct secondary *sec);
/* consistent, syncing or inconsistent. */
const char *sec_disk_state(struct secondary *sec);

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

/* ---- hashcheck.c ---- */

/* A HASHES frame passed its CRC, its payload in s->buf: checks the range
 * and compares it once the replica is settled (stalling until then), or
 * rejects the frame. */
void hashcheck_frame(struct session *s);
/* The stalled HASHES frame: false while the replica is still not settled. */
bool hashcheck_resume(struct session *s);

#endif
