/* blkship-primary's internals, shared by its modules:
 *   primary.c  options, the state file, status, signals, main
 *   seal.c     the write log: connecting, sealing, taking its chunks into
 *              the dirty bitmap (durably) before it may forget them
 *   pump.c     the data area's slots: dirty runs read through the ring and
 *              framed in place
 *   link.c     the replication link: connecting, the handshake, control
 *              frames, acknowledgements
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

#include "common/conn.h"
#include "common/net.h"
#include "common/opt.h"
#include "common/tls.h"
#include "primary/dirty.h"
#include "primary/loglink.h"
#include "proto/repl.h"

/* The protocol version this agent speaks: 1 until its epochs are built. */
#define PRIMARY_VERSION 1u
#define TICK_MS 1000
#define MAX_SLOTS WL_RING_ENTRIES   /* one ring request per slot */
#define KICK_BATCH 32              /* ring requests per kick, at most */
#define AREA_PAGE 4096u
#define AREA_PAGES (WL_DATA_SIZE / AREA_PAGE)
/* One more buffer than the connection can queue: round-robin reuse then
 * never overwrites a frame still waiting in the queue. */
#define CTRL_SLOTS (BS_CONN_MAX_WRITES + 1)
#define SENT_CAP 65536
#define DEFAULT_PAYLOAD (512u << 10)
#define FLUSH_BYTES (64ull << 20)      /* ask for durability at least this often */
#define MAX_UNACKED (256ull << 20)     /* sent, not yet durable */
#define CONNECT_TIMEOUT_MS 5000

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

struct primary;

struct slot {
    struct primary *owner;
    enum slot_state state;
    uint32_t offset;        /* of the frame header in the data area */
    uint32_t page, npages;  /* the data-area pages it holds */
    uint64_t first, n;      /* grains */
    uint64_t sector;
    uint32_t count;
    uint64_t session;       /* link session that issued the read */
};

struct sent {
    uint64_t first, n;      /* grains */
    uint64_t bytes;
    uint64_t seq;           /* the FLUSH that covers it */
};

struct primary {
    uv_loop_t *loop;
    struct bs_tls *tls;
    const char *writelog_path;
    const char *connect_addr;
    char connect_host[BS_HOST_MAX]; /* connect_addr split, for the resolver */
    char connect_port[8];
    char state_path[4096];
    char dirty_path[4096];
    unsigned interval_ms;
    unsigned heartbeat_timeout_ms;
    uint32_t payload_pref;

    /* Identity and pairing, persisted in primary.state. */
    uint8_t primary_id[BSR_ID_LEN];
    uint8_t replica_id[BSR_ID_LEN];
    uint64_t generation;
    uint64_t log_id;

    /* Write log. */
    struct log_link *log;
    uint64_t log_gen;               /* counts write-log connections */
    uv_work_t sync_req;             /* the bitmap's msync before "next" */
    uint64_t sync_log_gen;          /* the connection it was started for */
    int sync_result;
    bool sync_running;              /* sync_req is queued: no seal until it is done */
    uv_timer_t log_retry;
    bool sealing;
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
    struct bsr_frame rx;
    struct bsr_limits rx_limits;
    uint32_t max_payload;           /* agreed */
    uint64_t last_rx_ms;
    uint8_t ctrl[CTRL_SLOTS][BSR_FRAME_HDR_LEN + BSR_FRAME_CRC_LEN];
    unsigned ctrl_next;
    char peer[96];

    /* Slots of the data area. */
    struct slot slots[MAX_SLOTS];
    unsigned nslots;
    uint64_t area_used[(AREA_PAGES + 63) / 64]; /* data-area pages held by slots */

    /* Sent, not yet acknowledged. */
    struct sent *sent;
    size_t sent_head, sent_count;
    uint64_t unacked_bytes;
    uint64_t next_seq;
    uint64_t ack_floor;             /* oldest FLUSH of this session not yet acknowledged */
    uint64_t bytes_since_flush;

    /* Counters. */
    uint64_t sent_bytes;
    uint64_t acked_bytes;
    uint64_t zero_bytes;
    uint64_t read_errors;
    uint64_t acked_at_last_tick;
    double rate;                    /* acknowledged bytes per second, smoothed */
    uv_timer_t tick;
    uv_timer_t seal_timer;
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
/* Writes primary.state (atomically); logs a failure.  Returns 0 or -errno. */
int save_state(struct primary *p);

/* seal.c */
/* Drops the write log (and with it the link, whose queued frames point
 * into the log's memory); reads it had not answered go back to the bitmap.
 * Reconnects after a second. */
void log_down(struct primary *p, const char *why);
/* Timer callback: connects to the write log and takes its description. */
void on_log_retry(uv_timer_t *t);
/* Timer callback: seals the log, unless a seal or a bitmap sync runs. */
void on_seal_timer(uv_timer_t *t);

/* pump.c */
/* Takes dirty runs into free slots and asks the log to read them. */
void pump(struct primary *p);
/* Coalesces wake-ups into one pump per loop turn. */
void schedule_pump(struct primary *p);
void setup_slots(struct primary *p);
void slot_release(struct primary *p, struct slot *s);
/* The log link's callbacks for ring responses. */
bool on_log_read(void *opaque, const log_response_t *rsp);
void on_log_kick_done(void *opaque);

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
