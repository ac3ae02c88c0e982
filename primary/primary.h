/* blkship-primary's internals, shared by its modules:
 *   primary.c  options, the state file, status, signals, main
 *   seal.c     the write log: connecting, sealing, taking its chunks into
 *              the dirty bitmap (durably) before it may forget them
 *   pump.c     the data area's slots: dirty runs read through the ring and
 *              framed in place
 *   link.c     the replication link: connecting, the handshake, control
 *              frames, acknowledgements
 *   notify.c   what systemd and xenstore are told: readiness, the status line
 *   metrics.c  what Prometheus is told (--metrics)
 *   events.c   the event stream (blkship events)
 *   logstatus.c  the write log's counters, for blkship wlog --control
 * Everything runs on the agent's loop thread.
 *
 * Link states:
 *   LS_IDLE        not connected; the retry timer will start a connect
 *   LS_CONNECTING  TCP connect in progress
 *   LS_TLS         TLS handshake
 *   LS_WELCOME     hello sent, waiting for the secondary's welcome
 *   LS_STREAMING   frames flow; acknowledgements clear bits
 */
#ifndef BLKSHIP_PRIMARY_PRIMARY_H
#define BLKSHIP_PRIMARY_PRIMARY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/compress.h"
#include "common/conn.h"
#include "common/hook.h"
#include "common/net.h"
#include "common/events.h"
#include "common/metrics.h"
#include "common/notify.h"
#include "common/ratelimit.h"
#include "common/xen.h"
#include "common/opt.h"
#include "common/tls.h"
#include "primary/dirty.h"
#include "primary/loglink.h"
#include "proto/repl.h"

/* The protocol version this agent speaks: 4, epochs, checksums and the
 * replica's own changes (EXTENTS); it
 * accepts a secondary of version 2 (epochs), which it resyncs in full
 * where it would compare checksums. */
#define PRIMARY_VERSION 5u
#define PRIMARY_VERSION_MIN 2u
#define TICK_MS 1000
#define MAX_SLOTS WL_RING_ENTRIES   /* one ring request per slot */
#define KICK_BATCH 32              /* ring requests per kick, at most */
#define AREA_PAGE 4096u
#define AREA_PAGES (WL_DATA_SIZE / AREA_PAGE)
/* One more buffer than the connection can queue: round-robin reuse then
 * never overwrites a frame still waiting in the queue. */
#define CTRL_SLOTS (BS_CONN_MAX_WRITES + 1)
#define DEFAULT_PAYLOAD (512u << 10)
#define CONNECT_TIMEOUT_MS 5000
#define RETRY_MAX_MS 5000              /* reconnect back-off, at most */
#define RETRY_REFUSED_MAX_MS 60000     /* ... after a split brain or a promoted peer */
#define DEFAULT_EPOCH_MS 100
#define EPOCH_RESERVE 1024             /* epoch numbers reserved per state write */
#define DEFAULT_EPOCH_MAX_DIRTY (64ull << 20)
#define DIRTY_POLL_MS 20               /* async: how often the log's dirty count is asked */
#define SENT_CAP 65536                 /* frames awaiting an ACK (in place) */
#define FLUSH_BYTES (64ull << 20)      /* in place: a FLUSH at least this often */
#define MAX_UNACKED (256ull << 20)     /* in place: sent, not yet acknowledged */
#define MAX_WAITERS 64                 /* checkpoint requests waiting at once */
#define DEFAULT_CHECKPOINT_TIMEOUT_MS 10000
/* An epoch that starts with more of the bitmap's own dirty data than this
 * (a full sync, a resync after an outage) sends it first without a seal,
 * so that copy-before-write has to keep only what the guest writes during
 * the sealed pass that follows (docs/epochs.md, section 5). */
#define PRECOPY_BYTES (32ull << 20)
#define CS_QMAX 64                     /* checksum ranges asked and not yet answered */
#define CS_SAVE_SECTORS ((256ull << 20) / BSR_SECTOR_SIZE) /* progress saved this often */

enum link_state {
    LS_IDLE,
    LS_CONNECTING,
    LS_TLS,
    LS_WELCOME,
    LS_STREAMING,
};

enum slot_state {
    SLOT_FREE,
    SLOT_READING,   /* a ring request is out */
    SLOT_SENDING,   /* queued on the TLS connection */
};

/* Where the epoch being built stands (primary/epoch.c). */
enum demote_state { DM_NONE, DM_FREEZING, DM_DRAINING, DM_DONE };

enum epoch_state {
    EP_IDLE,        /* none open: the next waits for its moment */
    EP_PRECOPY,     /* many grains of its own: the bitmap's are sent first, unsealed */
    EP_ADDING,      /* the bitmap's own dirty grains go to the log (adds) */
    EP_SEALING,     /* sealed: the log's chunks go into the bitmap (seal, next) */
    EP_SHIPPING,    /* its grains are read through the ring and sent */
    EP_CHECKING,    /* all sent: did copy-before-write hold? (cowc) */
    EP_COMMITTING,  /* END_EPOCH sent: waiting for COMMITTED */
};

enum epoch_mode {
    MODE_ASYNC,      /* an epoch every epoch_ms */
    MODE_CHECKPOINT, /* an epoch when a checkpoint is asked for */
};

struct primary;
struct bs_ctl_pending;

/* A frame sent in place, awaiting the ACK of the FLUSH after it. */
struct sent {
    uint64_t first, n;      /* grains */
    uint64_t bytes;
    uint64_t seq;           /* the FLUSH that covers it */
};

/* A checkpoint request waiting for its epoch to commit. */
struct waiter {
    struct bs_ctl_pending *pending;
    uint64_t epoch;         /* the epoch that answers it; 0 until one is sealed */
    uint64_t t0_ms;         /* when it was asked */
    uint64_t deadline_ms;
};

/* A range of a checksum resync (primary/csync.c), asked for in order. */
struct cs_range {
    uint64_t sector;
    uint32_t count;         /* sectors */
    bool sent;              /* its HASHES frame is queued */
    bool done;              /* answered (or its read failed: all marked) */
};

struct slot {
    struct primary *owner;
    enum slot_state state;
    bool hash;              /* a checksum range: read, hashed, HASHES sent in place */
    bool verify;            /* ... of a verify batch (primary/verify.c): first = its piece */
    uint32_t offset;        /* of the frame header in the data area */
    uint32_t page, npages;  /* the data-area pages it holds */
    uint64_t first, n;      /* grains */
    uint64_t sector;
    uint32_t count;
    uint64_t session;       /* link session that issued the read */
    unsigned zbuf;          /* 1 + the compression buffer its frame went out from; 0: none */
};

/* Compressed frames are built outside the data area, in one of these
 * (--compress): a frame that finds none free goes out as it is. */
#define ZBUFS 8

struct primary {
    uv_loop_t *loop;
    struct bs_tls *tls;
    const char *writelog_path;
    const char *connect_addr;
    char connect_host[BS_HOST_MAX]; /* connect_addr split, for the resolver */
    char connect_port[8];
    char state_path[4096];
    char dirty_path[4096];
    /* What the bitmap's dirty set stands for (status): a whole-disk resend
     * and why, until the bitmap is clean again; and the replica's data
     * generation from the last welcome. */
    const char *full_resync_reason; /* NULL: the bitmap holds only changes */
    uint64_t peer_generation;
    uint16_t peer_version;          /* the protocol version of the session */
    /* Checksum resync (primary/csync.c); cs_active and cs_done persist. */
    bool cs_active;                 /* due, or running while the link is up */
    bool cs_clear;                  /* the bitmap is to be set aside when it starts */
    bool initial_checksum;          /* --initial-sync checksum */
    const char *cs_reason;
    uint64_t cs_pos;                /* next sector to read */
    uint64_t cs_done;               /* every sector below it is compared */
    uint64_t cs_saved;              /* cs_done as last made durable */
    struct cs_range cs_q[CS_QMAX];
    unsigned cs_head, cs_len;
    uint64_t cs_compared_bytes, cs_differ_bytes, cs_resyncs;
    uint64_t cs_start_ms;
    /* Online verify (primary/verify.c): the one running, or NULL. */
    struct verify *vf;
    uv_timer_t vf_timer;            /* paces batches at --rate */
    /* --rate-limit (primary/pump.c): data frames wait for the bucket. */
    uint64_t rate_limit;            /* bytes per second; 0: none */
    struct bs_rate rl;
    uv_timer_t rl_timer;
    bool rl_waiting;                /* rl_timer runs: the pump waits for tokens */
    /* --compress (primary/pump.c): ZDATA frames, when the secondary agreed. */
    bool compress;                  /* asked for */
    int compress_level;
    bool zstd_on;                   /* agreed for this session */
    struct bs_zcomp zc;
    uint8_t *zbuf[ZBUFS];           /* header, compressed payload, CRC */
    bool zbuf_busy[ZBUFS];
    size_t zbuf_cap;                /* compressed payload room of each */
    uint64_t vf_runs, vf_last_differing;
    uint64_t vf_seals_held;         /* times a seal waited for a batch's reads */
    uint64_t seal_seq;              /* counts seals started (either kind) */
    unsigned heartbeat_ms;          /* how often we send a heartbeat */
    unsigned peer_timeout_ms;       /* a secondary silent this long is lost */
    uint32_t payload_pref;

    /* Identity and pairing, persisted in primary.state. */
    uint8_t primary_id[BSR_ID_LEN];
    uint8_t replica_id[BSR_ID_LEN];
    uint64_t generation;
    uint64_t log_id;
    /* Data generations (primary/generation.c), persisted too. */
    uint64_t bitmap_generation;     /* the replica's line the bitmap is against (0: ours) */
    uint64_t gen_history[2];        /* the generations before ours, newest first */
    bool gen_shared;                /* the replica took `generation` at the last welcome */
    /* Split brain (primary/generation.c); not persisted: found again at connect. */
    bool split_brain;               /* the secondary says both sides changed */
    bool peer_promoted;             /* the secondary says it was promoted (we did not change) */
    bool resolved_discard;          /* resolve --discard-local or demote: no more connects */
    /* Demotion (primary/demote.c). */
    enum demote_state dm_state;
    struct bs_ctl_pending *dm_pending; /* the demote request to answer */
    uv_timer_t dm_timer;
    uint64_t dm_start_ms;
    uint64_t dm_seal_after;         /* seal_seq when the log was frozen */
    uint64_t dm_line;               /* the generation the recorded changes are against */
    uint64_t dm_changed_bytes;
    bool dm_checksum;               /* the bitmap was not complete: compare by checksums */
    bool demoted;                   /* primary.state says role demoted */
    bool adopted;                   /* started on a promoted replica's state */
    uint64_t role_seq;              /* counts role changes of this state directory */
    char changes_path[4096];
    uint64_t sb_peer_generation;
    uint64_t split_brains;          /* episodes found */
    struct bs_hooks *hooks;
    const char *on_split_brain;     /* hook; NULL: none */
    const char *on_out_of_sync;     /* hook: a verify found differences */
    char resource[256];
    struct bs_notify notify;        /* systemd (primary/notify.c) */
    struct bs_metrics *metrics;     /* --metrics, or NULL (primary/metrics.c) */
    struct bs_xen *xen;             /* --xen-domain, or NULL (primary/notify.c) */
    char metrics_text[BS_METRICS_MAX]; /* built on the loop, copied out */
    uint64_t sessions_up;           /* sessions that reached streaming */
    uint64_t link_downs, connect_failures;
    struct bs_events events;        /* "events" on the control socket (primary/events.c) */
    uint64_t info_at_ms;            /* when the log's info reply last came (logstatus.c) */
    const char *ev_resync;          /* the state last reported */
    bool ev_split_brain, ev_peer_promoted, ev_demoted;

    /* Write log. */
    struct log_link *log;
    uint64_t log_gen;               /* counts write-log connections */
    uv_work_t sync_req;             /* the bitmap's msync before "next" */
    uint64_t sync_log_gen;          /* the connection it was started for */
    int sync_result;
    bool sync_running;              /* sync_req is queued: no seal until it is done */
    uv_timer_t log_retry;
    bool log_connecting;            /* a connect runs in the thread pool */
    bool sealing;
    bool seal_record;               /* the seal in progress is for the record only */
    uv_timer_t drain_timer;
    uint64_t disk_sectors;
    uint32_t grain;
    uint64_t epoch;
    struct bs_dirty *dirty;
    uint64_t cursor;

    /* Replication link. */
    enum link_state ls;
    uint64_t session;               /* increments on every connect attempt */
    int connect_fd;
    uv_getaddrinfo_t resolve_req;   /* the name is resolved off the loop */
    bool resolving;
    uv_poll_t connect_poll;
    bool connect_poll_active;
    struct bs_conn *conn;
    uv_timer_t retry;
    unsigned backoff_ms;
    uint8_t hello[BSR_HELLO_LEN];
    uint8_t welcome[BSR_WELCOME_LEN];
    uint8_t rx_hdr[BSR_FRAME_HDR_LEN];
    uint8_t rx_crc[BSR_FRAME_CRC_LEN];
    uint8_t rx_payload[BSR_EXTENTS_MAX * BSR_EXTENT_LEN]; /* HASHED's bitmap, EXTENTS' entries */
    bool ext_expect;                /* the welcome said EXTENTS frames follow */
    uint64_t ext_bytes, ext_extents; /* the replica's own changes taken this session */
    struct bsr_frame rx;
    struct bsr_limits rx_limits;
    uint32_t max_payload;           /* agreed */
    uint64_t last_rx_ms;
    char last_down[128];            /* why the link last went down (or a connect failed) */
    uint64_t link_up_ms;            /* when the current session began streaming */
    uint8_t ctrl[CTRL_SLOTS][BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN];
    unsigned ctrl_next;
    char peer[96];

    /* Slots of the data area. */
    struct slot slots[MAX_SLOTS];
    unsigned nslots;
    uint64_t area_used[(AREA_PAGES + 63) / 64]; /* data-area pages held by slots */

    /* In-place epochs' FLUSH/ACK barrier (primary/flush.c). */
    bool in_place;                  /* this session's replica takes epochs in place */
    struct sent *sent;
    size_t sent_head, sent_count;
    uint64_t unacked_bytes;
    uint64_t next_seq;
    uint64_t ack_floor;             /* oldest FLUSH of this session not yet acknowledged */
    uint64_t bytes_since_flush;
    uint64_t ep_acked_bytes;        /* of the open epoch, counted at ACKs */

    /* Epochs (primary/epoch.c).  At most one is uncommitted at a time, so
     * the bitmap's inflight grains are exactly the open epoch's. */
    enum epoch_mode mode;
    unsigned epoch_ms;
    enum epoch_state ep_state;
    uint64_t ep_number;             /* the epoch being built (link numbering) */
    uint64_t ep_log_epoch;          /* the log's number for its seal */
    bool ep_broken;                 /* the log reported copy-before-write lost */
    uint64_t ep_bytes;              /* sent in it so far */
    uint64_t ep_sealed_ms;          /* when its seal was asked for */
    uint64_t ep_t_ms[3];            /* when it was sealed, read, ended (debug log) */
    uint64_t ep_adds_pos;           /* grain cursor of the adds in progress */
    uint64_t last_epoch;            /* highest number used on any link */
    uint64_t committed_epoch;       /* newest the replica has committed (persisted) */
    uint64_t committed_seal_ms;     /* seal time of the newest committed epoch */
    uint64_t epochs_committed, epochs_aborted;
    uint64_t last_commit_ms;        /* how long the last epoch took, seal to commit */
    uv_timer_t epoch_timer;         /* the next seal in async mode */
    uv_timer_t dirty_poll;          /* async: the log's dirty count, for an early seal */
    uint64_t epoch_max_dirty;       /* --epoch-max-dirty: seal early past it (0: never) */
    uint64_t log_live_bytes;        /* the log's live map, as of the last info */
    uint64_t log_pending_bytes;     /* ... and what it holds sealed, not acknowledged */
    uint64_t info_req_ms;           /* when the info in flight (or the last) was asked */
    unsigned epoch_idle_ms;         /* --epoch-idle-ms: seal an idle log this seldom (0: as
                                       any other, every epoch_ms) */
    uint64_t early_seals;
    bool info_inflight;
    uv_work_t state_req;            /* primary.state written off the loop */
    bool state_running, state_again;
    int state_result;
    /* Epoch numbers are reserved in primary.state ahead of use, so that
     * one sent by a run that died is never used again by the next. */
    uint64_t epoch_reserve_target;  /* to be written */
    uint64_t epoch_reserved_durable; /* numbers below it may be used */
    uint64_t state_reserved;        /* the reservation the write in progress carries */
    uint64_t state_seq;             /* contents taken for a write (loop thread) */
    uint64_t state_seq_async;       /* ... the one state_text holds for the pool */
    uint64_t state_seq_written;     /* the newest on disk (state_lock) */
    uv_mutex_t state_lock;
    char state_text[1024];
    struct waiter waiters[MAX_WAITERS];
    unsigned nwaiters;
    bool cow_ok;                    /* the log does copy-before-write */
    bool cowc_inflight, cowc_for_check, cowc_again;
    struct wl_cowc_reply cow;       /* its last counters */
    uint64_t start_ms;

    /* Counters. */
    uint64_t sent_bytes;
    uint64_t acked_bytes;
    uint64_t zero_bytes;
    uint64_t read_errors;
    uint64_t acked_at_last_tick;    /* sent_bytes at the last tick */
    double rate;                    /* bytes sent per second, smoothed */
    uv_timer_t tick;
    uv_timer_t heartbeat;
    uv_idle_t pump_soon;            /* one pump per loop turn, however many wake-ups */
    uv_signal_t sigterm, sigint;
    struct bs_ctl *ctl;
    bool stopping;
};

static inline uint64_t grain_bytes(const struct primary *p)
{
    return (uint64_t)p->grain * BSR_SECTOR_SIZE;
}

/* primary.c */
/* Writes primary.state (atomically, blocking); logs a failure.  Returns 0
 * or -errno.  For start-up and pairing; epoch_committed uses
 * save_state_async. */
int save_state(struct primary *p);
/* Writes primary.state in the thread pool (coalesced: one write at a
 * time, the newest contents last). */
void save_state_async(struct primary *p);
/* The text of primary.state for the current fields. */
void state_text(const struct primary *p, char *out, size_t size);

/* logstatus.c */
/* Answers "wlog info" and "wlog cowc" on the control socket: the log's
 * counters as the agent last had them. */
ssize_t log_status_reply(struct primary *p, const char *request, char *reply, size_t size);

/* events.c */
/* Records an event with the peer and the committed epoch. */
void primary_event(struct primary *p, const char *event, const char *reason);
/* Once a tick: the events the state's changes make. */
void primary_events_tick(struct primary *p);

/* metrics.c */
/* Builds the Prometheus text and hands it to the endpoint (every tick). */
void primary_metrics_publish(struct primary *p);

/* notify.c */
/* One line on what the replication does now, for systemd's STATUS=. */
void primary_status_line(const struct primary *p, char *buf, size_t size);
/* Tells systemd: READY=1 once the write log is held, then the status line
 * whenever it changes.  Called on every tick and on each change of state. */
void primary_notify(struct primary *p);
/* Writes the state into the domain's xenstore area (--xen-domain), off
 * the loop; every tick and at the stop. */
void primary_xen_publish(struct primary *p);
/* consistent, syncing or unknown: the replica as this side knows it. */
const char *primary_disk_state(const struct primary *p);

/* seal.c */
/* Drops the write log (and with it the link, whose queued frames point
 * into the log's memory); reads it had not answered go back to the bitmap.
 * Reconnects after a second. */
void log_down(struct primary *p, const char *why);
/* Timer callback: connects to the write log (in the thread pool) and then
 * takes its description. */
void on_log_retry(uv_timer_t *t);
/* Starts the seal of epoch p->ep_number (EP_SEALING). */
void seal_start(struct primary *p);
/* Starts a seal for the record (the log drained into the bitmap). */
void seal_record_start(struct primary *p);
/* Starts the timer of the seals for the record (no epoch is shipped). */
void seal_drain_start(struct primary *p);

/* pump.c */
/* Takes dirty runs into free slots and asks the log to read them. */
void pump(struct primary *p);
/* Coalesces wake-ups into one pump per loop turn. */
void schedule_pump(struct primary *p);
/* --compress: the context and the frame buffers (0 or -ENOMEM); their
 * release, which a failed setup may call too. */
int compress_setup(struct primary *p);
void compress_teardown(struct primary *p);
/* --rate-limit's timer: the bucket holds the next frame again. */
void pump_on_rate_timer(uv_timer_t *t);
void setup_slots(struct primary *p);
void slot_release(struct primary *p, struct slot *s);
/* First fit of n data-area pages; the first page, or -1 when none fit. */
int pages_alloc(struct primary *p, unsigned n);
/* bs_conn_write callback of a frame sent from a slot: frees it, pumps. */
void pump_slot_sent(struct bs_conn *c, int status, void *arg);
/* The log link's callbacks for ring responses. */
bool on_log_read(void *opaque, const log_response_t *rsp);
void on_log_kick_done(void *opaque);

/* epoch.c */
/* Starts the next epoch if it is time (async) or asked for (checkpoint),
 * the link is up and none is open; otherwise arms what will. */
void epoch_maybe_start(struct primary *p);
/* Makes sure the next epoch's number is, or is being, reserved durably in
 * primary.state (save_state_async).  At start it overlaps that write with
 * the connection and handshake, which the first epoch would otherwise wait
 * for after them. */
void epoch_reserve_ahead(struct primary *p);
/* Every chunk of the seal is in the bitmap: its grains may be shipped. */
void epoch_sealed(struct primary *p);
/* The pump found nothing left to read or being read. */
void epoch_all_read(struct primary *p);
/* The link is gone: an epoch being shipped is lost (its grains are due
 * again) and its checkpoint requests fail. */
void epoch_link_lost(struct primary *p);
/* The write log is gone, with any seal in progress. */
void epoch_log_lost(struct primary *p);
/* COMMITTED from the secondary; false (logged) when it names no epoch
 * that awaits it: a protocol error. */
bool epoch_committed(struct primary *p, uint64_t epoch);
/* Asks the log for its copy-before-write counters (once a second for the
 * status, and after an epoch's last read to check it). */
void epoch_request_cowc(struct primary *p);
/* An adds reply: the next range, or the seal. */
void epoch_on_adds(struct primary *p, const struct wl_adds_reply *rep);
/* An info reply (the dirty poll). */
void epoch_on_info(struct primary *p, const struct wl_info_reply *rep);
/* Asks the log for its counts (info) unless an answer is awaited. */
void epoch_info_refresh(struct primary *p);
/* A cowc reply. */
void epoch_on_cowc(struct primary *p, const struct wl_cowc_reply *rep);
/* A checkpoint request from the control socket. */
void epoch_checkpoint_request(struct primary *p, const char *request,
                              struct bs_ctl_pending *pending);
/* Once a second: checkpoint requests past their deadline fail. */
void epoch_tick(struct primary *p);
/* Answers every waiting checkpoint request with `why` (shutting down). */
void epoch_fail_all(struct primary *p, const char *why);
/* The status fields of epochs. */
struct bs_json_builder;
void epoch_status(struct primary *p, struct bs_json_builder *b);

/* verify.c */
/* The control socket's "verify START LENGTH RATE REPAIR". */
void verify_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
/* Starts the next batch's reads, or sends a batch whose epoch has ended;
 * called whenever no epoch is open (epoch_maybe_start). */
void verify_pump(struct primary *p);
/* True while a batch's reads are out: no seal may start. */
bool verify_holds_seal(const struct primary *p);
/* A seal ended (an epoch's, or for the record). */
void verify_seal_done(struct primary *p, bool epoch);
bool verify_on_read(struct primary *p, struct slot *s, int err);
bool verify_on_hashed(struct primary *p, uint64_t sector, uint32_t blocks, const uint8_t *bits);
void verify_link_down(struct primary *p);
/* Ends a running verify with an error answer (shutdown). */
void verify_cancel(struct primary *p, const char *why);
/* The running verify's share of its range read (0 to 1; 0 when none). */
double verify_progress(const struct primary *p);
void verify_status(struct primary *p, struct bs_json_builder *b);

/* generation.c */
/* The disk changed while no secondary had a session (`why`, a literal):
 * a new generation, if the replica shares ours (state written). */
void gen_changed_alone(struct primary *p, const char *why);
/* A welcome accepted us: the replica holds our generation now. */
void gen_accepted(struct primary *p, uint64_t peer_generation);
/* The hello's generation fields. */
void gen_fill_hello(const struct primary *p, struct bsr_hello *h);
/* A refusing welcome: a split brain or a promoted peer is recorded. */
void gen_refused(struct primary *p, const struct bsr_welcome *w);
/* "resolve discard-local" on the control socket. */
void gen_resolve_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
void gen_status(struct primary *p, struct bs_json_builder *b);
/* An EXTENTS frame (its entries in rx_payload): the replica's own changes
 * into the bitmap; the last (count 0) makes them durable and lets epochs
 * start.  Returns false on a protocol error (logged). */
bool gen_on_extents(struct primary *p);

/* demote.c */
/* The control verb "demote" (blkship demote): freeze the log, drain it,
 * record the changes and role demoted, stop. */
void demote_request(void *opaque, const char *request, struct bs_ctl_pending *pending);
/* The log's reply to frze. */
void demote_on_frozen(struct primary *p, const struct wl_frze_reply *rep);
void demote_stop_timer(uv_timer_t *t);
void demote_status(const struct primary *p, struct bs_json_builder *b);

/* csync.c */
/* The bitmap cannot say what the replica lacks (`reason`, a literal): a
 * checksum resync is due, from sector 0.  The caller saves the state. */
void csync_request(struct primary *p, const char *reason);
/* The checksum block for a grain and a payload limit: the grain, halved
 * until it fits both the payload and the protocol's bounds. */
uint32_t hash_block_sectors(uint32_t grain, uint64_t payload);
/* Writes a whole HASHES frame (header, range, the n hashes little-endian,
 * CRC) at out; returns its length.  out may hold the data hashed. */
size_t hashes_frame_pack(uint8_t *out, uint64_t sector, uint32_t block, uint32_t range_sectors,
                         const uint64_t *hashes, uint32_t n);
/* At the welcome: a due resync with a secondary of version 2 becomes a
 * full one.  False if that could not be recorded. */
bool csync_fallback(struct primary *p);
/* Reads the next ranges into free slots while a resync is due, the link
 * is up and no epoch is open. */
void csync_pump(struct primary *p);
/* A ring read of a checksum slot answered (err: 0 or the errno): hash it
 * and send HASHES.  False if the log went away meanwhile. */
bool csync_on_read(struct primary *p, struct slot *s, int err);
/* HASHED from the secondary; false (logged) for an answer to nothing. */
bool csync_on_hashed(struct primary *p, uint64_t sector, uint32_t blocks, const uint8_t *bits);
/* The link went down: unanswered ranges are asked again. */
void csync_link_down(struct primary *p);
void csync_status(struct primary *p, struct bs_json_builder *b);

/* flush.c */
/* In place, frames may be sent only while fewer than MAX_UNACKED bytes
 * await an ACK; always true otherwise. */
bool flush_may_send(const struct primary *p);
/* A frame of grains [first, first + n) was queued (in place: recorded,
 * and a FLUSH sent every FLUSH_BYTES). */
void flush_note_sent(struct primary *p, uint64_t first, uint64_t n, uint64_t bytes);
/* In place: a FLUSH now for what was sent since the last. */
void flush_now(struct primary *p);
/* An ACK; false (logged) when it names no FLUSH awaiting one. */
bool flush_handle_ack(struct primary *p, uint64_t seq);
/* The epoch committed (its frames are covered) or was aborted (their
 * grains are due again): the frames awaiting ACKs are forgotten, and a
 * late ACK clears nothing. */
void flush_forget(struct primary *p);
/* A session begins, writing in place or not. */
void flush_session_start(struct primary *p, bool in_place);

/* link.c */
/* Ends the session (if any): everything in flight is due again; retries. */
void link_down(struct primary *p, const char *why);
/* Queues a control frame on a streaming link. */
void send_ctrl(struct primary *p, uint8_t kind, uint64_t sector);
void schedule_retry(struct primary *p);
/* Timer callback: starts a connection attempt. */
void on_retry(uv_timer_t *t);
/* Checks --connect once at start (blocking).  -EAGAIN: resolver down. */
int resolve_at_start(struct primary *p);

#endif
