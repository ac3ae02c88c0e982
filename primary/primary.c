/* blkship-primary: drains the write log into its own persistent dirty
 * bitmap and streams the dirty extents over mutual TLS to
 * blkship-secondary, clearing a bit only when the replica has said the
 * data is durable.
 *
 * Link states:
 *   LS_IDLE        not connected; the retry timer will start a connect
 *   LS_CONNECTING  TCP connect in progress
 *   LS_TLS         TLS handshake
 *   LS_WELCOME     hello sent, waiting for the secondary's welcome
 *   LS_STREAMING   frames flow; acknowledgements clear bits
 *
 * Data path: a dirty run (at most one frame) is taken from the bitmap,
 * read by the write log through the ring into a slot of the shm data
 * area, framed in place (header before the payload, CRC after it) and
 * written to TLS straight from the slot.  Every frame sent belongs to the
 * next FLUSH sequence; the secondary's ACK of that sequence clears them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "primary/dirty.h"
#include "primary/loglink.h"
#include "proto/repl.h"

#define MOD "primary"
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

static void link_down(struct primary *p, const char *why);
static void pump(struct primary *p);
static void schedule_pump(struct primary *p);
static void schedule_retry(struct primary *p);
static void on_retry(uv_timer_t *t);
static int resolve_at_start(struct primary *p);

static uint64_t grain_bytes(const struct primary *p)
{
    return (uint64_t)p->grain * BSR_SECTOR_SIZE;
}

/* ---- State file ------------------------------------------------------- */

static int save_state(struct primary *p)
{
    char text[1024], pid[33], rid[33];
    int r;

    bs_id_to_hex(p->primary_id, pid);
    bs_id_to_hex(p->replica_id, rid);
    snprintf(text, sizeof(text),
             "format 1\nrole primary\nprimary_id %s\nreplica_id %s\ngeneration %" PRIu64
             "\nlog_id %" PRIu64 "\ndisk_sectors %" PRIu64 "\n",
             pid, rid, p->generation, p->log_id, p->disk_sectors);
    r = bs_state_write(p->state_path, text);
    if (r < 0)
        BS_ERR(MOD, "writing %s: %s", p->state_path, strerror(-r));
    return r;
}

static int load_state(struct primary *p)
{
    char text[BS_STATE_MAX], hex[64];
    uint64_t fmt;
    int r = bs_state_read(p->state_path, text, sizeof(text));

    if (r == -ENOENT) {
        r = bs_id_random(p->primary_id);
        if (r < 0)
            return r;
        p->generation = 1;
        bs_id_to_hex(p->primary_id, hex);
        BS_INFO(MOD, "new primary identity %s", hex);
        return save_state(p);
    }
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", p->state_path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 || fmt != 1 ||
        bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, p->primary_id) < 0 ||
        bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, p->replica_id) < 0 ||
        bs_state_get_u64(text, "generation", &p->generation) < 0 ||
        bs_state_get_u64(text, "log_id", &p->log_id) < 0) {
        BS_ERR(MOD, "%s is not a valid primary state file; refusing to guess", p->state_path);
        return -EINVAL;
    }
    return 0;
}

/* ---- Write log ----------------------------------------------------------- */

/* ---- Data area: slots hold runs of pages, sized to their frame ---------- */

static bool page_used(const struct primary *p, unsigned i)
{
    return (p->area_used[i / 64] >> (i % 64)) & 1;
}

static void pages_mark(struct primary *p, unsigned first, unsigned n, bool used)
{
    for (unsigned i = first; i < first + n; i++) {
        if (used)
            p->area_used[i / 64] |= 1ull << (i % 64);
        else
            p->area_used[i / 64] &= ~(1ull << (i % 64));
    }
}

/* First fit over at most AREA_PAGES (1,023) bits; -1 when no run fits. */
static int pages_alloc(struct primary *p, unsigned n)
{
    unsigned run = 0;

    for (unsigned i = 0; i < AREA_PAGES; i++) {
        run = page_used(p, i) ? 0 : run + 1;
        if (run == n) {
            pages_mark(p, i + 1 - n, n, true);
            return (int)(i + 1 - n);
        }
    }
    return -1;
}

static void slot_release(struct primary *p, struct slot *s)
{
    pages_mark(p, s->page, s->npages, false);
    s->state = SLOT_FREE;
}

static void on_log_retry(uv_timer_t *t);

static void log_down(struct primary *p, const char *why)
{
    if (!p->log)
        return;
    BS_WARN(MOD, "lost the write log (%s); reconnecting", why);
    /* Frames queued on the link point into the log's shared memory, which
     * goes away with the log link: the replication link goes first. */
    link_down(p, "the write log is gone");
    log_link_close(p->log);
    p->log = NULL;
    p->sealing = false;
    /* Reads the log had not answered will never be: their grains go back
     * to the bitmap. */
    for (unsigned i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->state == SLOT_READING) {
            bs_dirty_requeue(p->dirty, s->first, s->n);
            slot_release(p, s);
        }
    }
    uv_timer_start(&p->log_retry, on_log_retry, 1000, 0);
}

static void seal_step(struct primary *p, const char *cmd)
{
    int r = log_link_export(p->log, cmd);

    if (r < 0) {
        p->sealing = false;
        log_down(p, "cannot send a seal");
    }
}

static void bitmap_sync_work(uv_work_t *req)
{
    struct primary *p = req->data;

    p->sync_result = bs_dirty_sync(p->dirty);
}

/* The merged chunk is durable in the bitmap: the log may forget it. */
static void bitmap_sync_done(uv_work_t *req, int status)
{
    struct primary *p = req->data;

    p->sync_running = false;
    if (status < 0 || p->sync_result < 0 || p->stopping || !p->log ||
        p->log_gen != p->sync_log_gen) {
        /* Not acknowledging keeps the chunk in the log: nothing is lost.
         * (A log lost meanwhile exports it again to its next client.) */
        p->sealing = false;
        return;
    }
    seal_step(p, WL_CMD_NEXT);
}

/* The chunk's extents become ours, durably, before the log may forget
 * them (next acknowledges the chunk). */
static void on_log_export(void *opaque, const struct wl_export_reply *rep)
{
    struct primary *p = opaque;
    const struct wl_disk_range *area = log_link_extents(p->log);

    p->epoch = rep->epoch;
    for (uint32_t i = 0; i < rep->extents; i++) {
        if (area[i].count == 0 || area[i].sector >= p->disk_sectors ||
            area[i].count > p->disk_sectors - area[i].sector) {
            log_down(p, "the log exported an extent outside the disk");
            return;
        }
        bs_dirty_mark(p->dirty, area[i].sector, area[i].count);
    }
    if (rep->extents == 0) {
        p->sealing = false;
        pump(p);
        return;
    }
    /* The msync runs in the thread pool: the loop goes on sending (the
     * grains just marked may be taken and sent meanwhile; only the log's
     * "next" waits for the sync). */
    p->sync_req.data = p;
    p->sync_log_gen = p->log_gen;
    if (uv_queue_work(p->loop, &p->sync_req, bitmap_sync_work, bitmap_sync_done) < 0) {
        p->sealing = false;
        return;
    }
    p->sync_running = true;
    pump(p);
}

static void on_seal_timer(uv_timer_t *t)
{
    struct primary *p = t->data;

    if (!p->log || p->sealing || p->sync_running || p->stopping)
        return;
    p->sealing = true;
    seal_step(p, WL_CMD_SEAL);
}

static void send_ctrl(struct primary *p, uint8_t kind, uint64_t sector);

/* Frames the slot's data in place and queues it on the connection. */
static void on_slot_sent(struct bs_conn *c, int status, void *arg);

static bool is_zero(const uint8_t *b, size_t len)
{
    static const uint8_t zero[64];

    if (len < 64)
        return memcmp(b, zero, len) == 0;
    return memcmp(b, zero, 64) == 0 && memcmp(b, b + 64, len - 64) == 0;
}

static void send_slot(struct primary *p, struct slot *s)
{
    uint8_t *base = log_link_data(p->log) + s->offset;
    uint32_t plen = s->count * BSR_SECTOR_SIZE;
    struct bsr_frame f = { .sector = s->sector, .count = s->count, .kind = BSR_DATA };
    uint32_t crc;
    size_t len;
    uint64_t bytes = (uint64_t)s->count * BSR_SECTOR_SIZE;

    if (is_zero(base + BSR_FRAME_HDR_LEN, plen)) {
        /* Zeroes travel as a range, not as data. */
        f.kind = BSR_ZERO;
        plen = 0;
        p->zero_bytes += bytes;
    }
    bsr_frame_pack(&f, base);
    crc = htole32(crc32c(0, base, BSR_FRAME_HDR_LEN + plen));
    memcpy(base + BSR_FRAME_HDR_LEN + plen, &crc, BSR_FRAME_CRC_LEN);
    len = BSR_FRAME_HDR_LEN + plen + BSR_FRAME_CRC_LEN;

    if (bs_conn_write(p->conn, base, len, on_slot_sent, s) < 0) {
        bs_dirty_requeue(p->dirty, s->first, s->n);
        slot_release(p, s);
        link_down(p, "cannot queue a frame");
        return;
    }
    s->state = SLOT_SENDING;
    struct sent *e = &p->sent[(p->sent_head + p->sent_count) % SENT_CAP];
    *e = (struct sent){ .first = s->first, .n = s->n, .bytes = bytes, .seq = p->next_seq };
    p->sent_count++;
    p->unacked_bytes += bytes;
    p->sent_bytes += bytes;
    p->bytes_since_flush += bytes;
    if (p->bytes_since_flush >= FLUSH_BYTES) {
        send_ctrl(p, BSR_FLUSH, p->next_seq++);
        p->bytes_since_flush = 0;
    }
}

/* A ring read answered: send its frame, or requeue its grains. */
static bool on_log_read(void *opaque, const log_response_t *rsp)
{
    struct primary *p = opaque;
    struct slot *s = NULL;

    /* A response echoes its request; a failed one keeps only the sector. */
    for (unsigned i = 0; i < p->nslots && !s; i++) {
        struct slot *t = &p->slots[i];
        if (t->state == SLOT_READING && t->sector == rsp->sector &&
            (rsp->count == 0 || t->offset + BSR_FRAME_HDR_LEN == rsp->offset))
            s = &p->slots[i];
    }
    if (rsp->count == 0) {
        if (!s) {
            log_down(p, "a ring response matches no request");
            return false;
        }
        p->read_errors++;
        BS_ERR(MOD, "the write log could not read sector %" PRIu64 " count %u: %s; will retry",
               s->sector, s->count, strerror((int)rsp->offset));
        bs_dirty_requeue(p->dirty, s->first, s->n);
        slot_release(p, s);
        return true;
    }
    if (!s || rsp->count != s->count) {
        log_down(p, "a ring response matches no request");
        return false;
    }
    if (p->ls != LS_STREAMING || s->session != p->session) {
        /* The link went down while reading; the grains were requeued. */
        slot_release(p, s);
        return true;
    }
    send_slot(p, s);
    return p->log != NULL;
}

static void on_log_kick_done(void *opaque)
{
    pump(opaque);
}

static void on_log_error(void *opaque, int err)
{
    struct primary *p = opaque;

    (void)err;
    log_down(p, "link error");
}

static const struct log_link_ops log_ops = {
    .on_export = on_log_export,
    .on_read = on_log_read,
    .on_kick_done = on_log_kick_done,
    .on_error = on_log_error,
};

static void setup_slots(struct primary *p)
{
    p->nslots = MAX_SLOTS;
    for (unsigned i = 0; i < p->nslots; i++)
        p->slots[i] = (struct slot){ .owner = p, .state = SLOT_FREE };
    memset(p->area_used, 0, sizeof(p->area_used));
}

static void on_log_retry(uv_timer_t *t)
{
    struct primary *p = t->data;
    const struct wl_info_reply *info;
    bool fresh = false;
    int r;

    if (p->log || p->stopping)
        return;
    r = log_link_open(p->loop, p->writelog_path, &log_ops, p, &p->log);
    if (r == 0)
        p->log_gen++;
    if (r < 0) {
        static unsigned attempts;
        if (attempts++ % 10 == 0)
            BS_WARN(MOD, "write log %s not available: %s; retrying", p->writelog_path,
                    strerror(-r));
        uv_timer_start(&p->log_retry, on_log_retry, 1000, 0);
        return;
    }
    info = log_link_info(p->log);
    if (p->dirty && (info->disk_sectors != p->disk_sectors || info->grain_sectors != p->grain)) {
        BS_ERR(MOD, "the write log now describes another disk (%" PRIu64 " sectors, grain %u); "
                    "restart the agent", (uint64_t)info->disk_sectors, info->grain_sectors);
        log_link_close(p->log);
        p->log = NULL;
        uv_timer_start(&p->log_retry, on_log_retry, 10000, 0);
        return;
    }
    if (!p->dirty) {
        p->disk_sectors = info->disk_sectors;
        p->grain = info->grain_sectors;
        r = bs_dirty_open(p->dirty_path, p->disk_sectors, p->grain, &fresh, &p->dirty);
        if (r < 0) {
            BS_ERR(MOD, "cannot open the dirty bitmap %s: %s", p->dirty_path, strerror(-r));
            uv_stop(p->loop);
            return;
        }
        if (fresh)
            BS_INFO(MOD, "no usable dirty bitmap: the whole disk will be sent");
    }
    if (p->log_id != info->log_id) {
        if (p->log_id != 0 && !fresh) {
            BS_WARN(MOD, "the write log restarted (log id %016" PRIx64 " -> %016" PRIx64
                         "): writes may have gone unlogged, resending the whole disk",
                    p->log_id, (uint64_t)info->log_id);
            bs_dirty_mark_all(p->dirty);
        }
        if (bs_dirty_sync(p->dirty) < 0) {
            uv_stop(p->loop);
            return;
        }
        p->log_id = info->log_id;
        save_state(p);
    }
    BS_INFO(MOD, "write log %s: %" PRIu64 " sectors, grain %u, log id %016" PRIx64,
            p->writelog_path, p->disk_sectors, p->grain, p->log_id);
    /* Frames are built in the data area: its slots must fit our payload. */
    if (p->nslots == 0)
        setup_slots(p);
    if (p->ls == LS_IDLE && !uv_is_active((uv_handle_t *)&p->retry))
        uv_timer_start(&p->retry, on_retry, 0, 0);
    on_seal_timer(&p->seal_timer);
}

/* ---- Replication link --------------------------------------------------- */

static void send_ctrl(struct primary *p, uint8_t kind, uint64_t sector)
{
    uint8_t *b = p->ctrl[p->ctrl_next];
    struct bsr_frame f = { .sector = sector, .kind = kind };
    uint32_t crc;

    if (p->ls != LS_STREAMING)
        return;
    p->ctrl_next = (p->ctrl_next + 1) % CTRL_SLOTS;
    bsr_frame_pack(&f, b);
    crc = htole32(crc32c(0, b, BSR_FRAME_HDR_LEN));
    memcpy(b + BSR_FRAME_HDR_LEN, &crc, BSR_FRAME_CRC_LEN);
    if (bs_conn_write(p->conn, b, sizeof(p->ctrl[0]), NULL, NULL) < 0)
        link_down(p, "cannot queue a control frame");
}

static void on_slot_sent(struct bs_conn *c, int status, void *arg)
{
    struct slot *s = arg;

    (void)c;
    slot_release(s->owner, s);
    if (status == 0)
        schedule_pump(s->owner);
}

/* Tells the log that requests wait in the ring; false if the log is gone. */
static bool kick_log(struct primary *p)
{
    if (log_link_kick(p->log) < 0) {
        log_down(p, "cannot kick");
        return false;
    }
    return true;
}

/* Takes dirty runs into free slots and asks the log to read them. */
static void pump(struct primary *p)
{
    unsigned queued = 0;
    bool reading = false, exhausted = false;

    if (p->ls != LS_STREAMING || !p->log || p->stopping)
        return;
    uint64_t max_grains = p->max_payload / grain_bytes(p);
    for (unsigned i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        uint64_t first, n;

        if (s->state == SLOT_READING)
            reading = true;
        if (s->state != SLOT_FREE)
            continue;
        if (p->unacked_bytes >= MAX_UNACKED || p->sent_count + p->nslots >= SENT_CAP)
            break;
        if (!bs_dirty_take(p->dirty, &p->cursor, max_grains, &first, &n)) {
            exhausted = true;
            break;
        }
        uint64_t sector = first * p->grain;
        uint64_t end = (first + n) * p->grain;
        if (end > p->disk_sectors)
            end = p->disk_sectors;
        uint32_t count = (uint32_t)(end - sector);
        /* The frame is built around the data: header before, CRC after. */
        unsigned npages = (BSR_FRAME_HDR_LEN + count * BSR_SECTOR_SIZE + BSR_FRAME_CRC_LEN +
                           AREA_PAGE - 1) / AREA_PAGE;
        int page = pages_alloc(p, npages);
        if (page < 0) {
            /* The area is full of frames on their way: try again when one
             * has been sent. */
            bs_dirty_requeue(p->dirty, first, n);
            p->cursor = first;
            break;
        }
        *s = (struct slot){ .owner = p, .state = SLOT_READING,
                            .offset = (uint32_t)page * AREA_PAGE, .page = (uint32_t)page,
                            .npages = npages, .first = first, .n = n, .sector = sector,
                            .count = count, .session = p->session };
        if (log_link_read(p->log, sector, count, s->offset + BSR_FRAME_HDR_LEN) < 0) {
            /* No ring entry free (there is one per slot, so only if the
             * log holds on to responses): try again after the next kick. */
            slot_release(p, s);
            bs_dirty_requeue(p->dirty, first, n);
            p->cursor = first;
            break;
        }
        queued++;
        reading = true;
        /* The log notifies a kick once all of its reads are done.  Smaller
         * kicks let the first reads' frames go out while the later ones are
         * still being read, instead of the ring alternating between
         * reading everything and sending everything. */
        if (queued == KICK_BATCH) {
            if (!kick_log(p))
                return;
            queued = 0;
        }
    }
    if (queued && !kick_log(p))
        return;
    /* Nothing left to send and nothing being read: make what was sent
     * durable now rather than at the next FLUSH_BYTES.  (A full data area
     * is not "nothing left": flushing then would fdatasync every few MiB.) */
    if (exhausted && !reading && p->bytes_since_flush) {
        send_ctrl(p, BSR_FLUSH, p->next_seq++);
        p->bytes_since_flush = 0;
    }
}

static void on_pump_soon(uv_idle_t *h)
{
    uv_idle_stop(h);
    pump(h->data);
}

/* Coalesces wake-ups (sent frames, acks) into one pump, so that the reads
 * they free up go out in one kick. */
static void schedule_pump(struct primary *p)
{
    uv_idle_start(&p->pump_soon, on_pump_soon);
}

static void handle_ack(struct primary *p, uint64_t seq)
{
    bool any = false;

    /* The secondary acknowledges FLUSHes of this session in order, possibly
     * skipping some (one fdatasync may cover several).  Anything else, a
     * FLUSH not sent yet, one of an earlier session or one acknowledged
     * already, is a peer that does not know what it made durable: nothing
     * it says can clear a bit. */
    if (seq < p->ack_floor || seq >= p->next_seq) {
        if (p->ack_floor == p->next_seq)
            BS_ERR(MOD, "the secondary acknowledged FLUSH %" PRIu64 ", which was not sent in this "
                        "session (no FLUSH awaits an acknowledgement)", seq);
        else
            BS_ERR(MOD, "the secondary acknowledged FLUSH %" PRIu64 ", which was not sent in this "
                        "session or was acknowledged already (FLUSH %" PRIu64 "..%" PRIu64
                        " await one)", seq, p->ack_floor, p->next_seq - 1);
        link_down(p, "protocol error");
        return;
    }
    p->ack_floor = seq + 1;
    /* Only a session that makes data durable resets the back-off: one that
     * is accepted and then fails must not turn into a reconnect storm. */
    p->backoff_ms = 0;

    while (p->sent_count && p->sent[p->sent_head].seq <= seq) {
        struct sent *e = &p->sent[p->sent_head];
        bs_dirty_acked(p->dirty, e->first, e->n);
        p->acked_bytes += e->bytes;
        p->unacked_bytes -= e->bytes;
        p->sent_head = (p->sent_head + 1) % SENT_CAP;
        p->sent_count--;
        any = true;
    }
    if (any)
        schedule_pump(p);
}

static void read_frame(struct primary *p);

static void on_rx_crc(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;
    uint32_t got;

    (void)c;
    if (status < 0) {
        link_down(p, "connection closed in the middle of a frame");
        return;
    }
    memcpy(&got, p->rx_crc, 4);
    if (le32toh(got) != crc32c(0, p->rx_hdr, BSR_FRAME_HDR_LEN)) {
        link_down(p, "bad CRC32C on a frame from the secondary");
        return;
    }
    p->last_rx_ms = uv_now(p->loop);
    switch (p->rx.kind) {
    case BSR_ACK:
        handle_ack(p, p->rx.sector);
        break;
    case BSR_HEARTBEAT:
        break;
    case BSR_ERROR:
        BS_ERR(MOD, "the secondary ended the session: %s (%u)", bsr_status_str((int)p->rx.count),
               p->rx.count);
        link_down(p, "error from the secondary");
        return;
    }
    if (p->ls == LS_STREAMING)
        read_frame(p);
}

static void on_rx_hdr(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;
    const char *why = NULL;

    (void)c;
    if (status < 0) {
        link_down(p, status == -ECONNRESET ? "the secondary closed the connection" : "read error");
        return;
    }
    if (bsr_frame_unpack(p->rx_hdr, &p->rx_limits, false, &p->rx, &why) < 0) {
        BS_ERR(MOD, "bad frame from the secondary: %s", why);
        link_down(p, "protocol error");
        return;
    }
    if (bs_conn_read(p->conn, p->rx_crc, sizeof(p->rx_crc), on_rx_crc, p) < 0)
        link_down(p, "read error");
}

static void read_frame(struct primary *p)
{
    if (bs_conn_read(p->conn, p->rx_hdr, sizeof(p->rx_hdr), on_rx_hdr, p) < 0)
        link_down(p, "read error");
}

static void on_welcome(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;
    struct bsr_welcome w;
    const char *why = NULL;
    char hex[33];

    (void)c;
    if (status < 0) {
        link_down(p, "closed before the welcome (the secondary refused us; see its log)");
        return;
    }
    if (bsr_welcome_unpack(p->welcome, &w, &why) < 0) {
        BS_ERR(MOD, "bad welcome from %s: %s", p->peer, why);
        link_down(p, "protocol error");
        return;
    }
    /* Another version may lay the welcome out differently, and a flag we do
     * not know may change what the rest means: neither can be read. */
    if (w.version != PRIMARY_VERSION) {
        BS_ERR(MOD, "the secondary speaks protocol version %u; we speak %u", w.version,
               PRIMARY_VERSION);
        link_down(p, "protocol version");
        return;
    }
    if (w.flags != 0) {
        BS_ERR(MOD, "bad welcome from %s: unknown flags 0x%x", p->peer, w.flags);
        link_down(p, "protocol error");
        return;
    }
    /* The reason is the one text field, written into our log: a peer that
     * fills it with control bytes or binary is not a blkship secondary. */
    for (const char *ch = w.reason; *ch; ch++) {
        if (*ch < 0x20 || *ch > 0x7e) {
            BS_ERR(MOD, "bad welcome from %s: the reason is not text (byte 0x%02x at %td)", p->peer,
                   (unsigned char)*ch, ch - w.reason);
            link_down(p, "protocol error");
            return;
        }
    }
    if (w.status != BSR_OK) {
        BS_ERR(MOD, "the secondary refused the session: %s (%s)", bsr_status_str(w.status),
               w.reason);
        link_down(p, "refused");
        return;
    }
    if (w.max_payload < grain_bytes(p) || w.max_payload > p->payload_pref ||
        w.max_payload % BSR_SECTOR_SIZE || w.disk_bytes != p->disk_sectors * BSR_SECTOR_SIZE) {
        BS_ERR(MOD, "the secondary's welcome has limits we cannot use (payload %u, disk %" PRIu64 ")",
               w.max_payload, w.disk_bytes);
        link_down(p, "protocol error");
        return;
    }
    if (bs_id_is_zero(p->replica_id)) {
        /* First pairing: the replica has none of our data yet. */
        memcpy(p->replica_id, w.replica_id, BSR_ID_LEN);
        bs_dirty_mark_all(p->dirty);
        if (bs_dirty_sync(p->dirty) < 0 || save_state(p) < 0) {
            link_down(p, "cannot record the pairing");
            return;
        }
        bs_id_to_hex(p->replica_id, hex);
        BS_INFO(MOD, "paired with replica %s: full sync", hex);
    } else if (memcmp(p->replica_id, w.replica_id, BSR_ID_LEN) != 0) {
        link_down(p, "the secondary answered with another replica identity");
        return;
    }
    p->max_payload = w.max_payload;
    p->ack_floor = p->next_seq;
    p->ls = LS_STREAMING;
    p->last_rx_ms = uv_now(p->loop);
    BS_INFO(MOD, "replicating to %s (max payload %u bytes, %" PRIu64 " bytes dirty)", p->peer,
            p->max_payload, (bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty)) *
                                grain_bytes(p));
    read_frame(p);
    pump(p);
}

static void on_handshake(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;
    struct bsr_hello h;

    (void)c;
    if (status < 0) {
        link_down(p, "TLS handshake failed");
        return;
    }
    memset(&h, 0, sizeof(h));
    h.version = PRIMARY_VERSION;
    h.disk_bytes = p->disk_sectors * BSR_SECTOR_SIZE;
    h.sector_size = BSR_SECTOR_SIZE;
    h.max_payload = p->payload_pref;
    memcpy(h.primary_id, p->primary_id, BSR_ID_LEN);
    memcpy(h.replica_id, p->replica_id, BSR_ID_LEN);
    h.generation = p->generation;
    h.epoch = p->epoch;
    bsr_hello_pack(&h, p->hello);
    p->ls = LS_WELCOME;
    if (bs_conn_write(p->conn, p->hello, sizeof(p->hello), NULL, NULL) < 0 ||
        bs_conn_read(p->conn, p->welcome, sizeof(p->welcome), on_welcome, p) < 0)
        link_down(p, "cannot send the hello");
}

static void on_connect_poll(uv_poll_t *h, int status, int events)
{
    struct primary *p = h->data;
    int r, fd = p->connect_fd;

    (void)events;
    uv_poll_stop(h);
    uv_close((uv_handle_t *)h, NULL);
    p->connect_poll_active = false;
    uv_timer_stop(&p->retry); /* the connect timeout */
    /* POLLERR gives libuv's EBADF; the socket itself knows what happened. */
    r = bs_tcp_connect_result(fd);
    if (r == 0 && status < 0)
        r = status;
    if (r < 0) {
        close(fd);
        p->connect_fd = -1;
        static uint64_t failures;
        if (failures++ % 10 == 0)
            BS_WARN(MOD, "cannot connect to %s: %s", p->connect_addr, strerror(-r));
        p->ls = LS_IDLE;
        schedule_retry(p);
        return;
    }
    p->connect_fd = -1;
    SSL_CTX *ctx = bs_tls_ctx(p->tls);
    r = ctx ? bs_conn_new(p->loop, ctx, fd, false, p->connect_addr, &p->conn) : -EINVAL;
    if (r < 0) {
        if (!ctx)
            close(fd);
        p->ls = LS_IDLE;
        schedule_retry(p);
        return;
    }
    snprintf(p->peer, sizeof(p->peer), "%s", p->connect_addr);
    p->ls = LS_TLS;
    bs_conn_handshake(p->conn, on_handshake, p);
}

/* A SYN into a black hole would wait for the kernel's retries: give up
 * sooner and try again. */
static void on_connect_timeout(uv_timer_t *t)
{
    struct primary *p = t->data;

    if (p->ls != LS_CONNECTING || !p->connect_poll_active)
        return;
    uv_poll_stop(&p->connect_poll);
    uv_close((uv_handle_t *)&p->connect_poll, NULL);
    p->connect_poll_active = false;
    close(p->connect_fd);
    p->connect_fd = -1;
    BS_WARN(MOD, "connecting to %s timed out", p->connect_addr);
    p->ls = LS_IDLE;
    schedule_retry(p);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct primary *p = req->data;
    static struct bs_ratelimit rl = BS_RATELIMIT_INIT(60000, 3);
    uint32_t dropped;
    int fd;

    p->resolving = false;
    if (status < 0 || p->stopping) {
        if (status < 0 && status != UV_ECANCELED && bs_ratelimit_ok(&rl, &dropped))
            BS_WARN(MOD, "cannot resolve %s: %s", p->connect_addr, uv_strerror(status));
        uv_freeaddrinfo(res);
        p->ls = LS_IDLE;
        schedule_retry(p);
        return;
    }
    /* The first address; every attempt resolves again, so a changed DNS
     * record is followed. */
    fd = bs_tcp_connect_start(res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    if (fd < 0) {
        if (bs_ratelimit_ok(&rl, &dropped))
            BS_WARN(MOD, "cannot connect to %s: %s", p->connect_addr, strerror(-fd));
        p->ls = LS_IDLE;
        schedule_retry(p);
        return;
    }
    p->connect_fd = fd;
    uv_poll_init(p->loop, &p->connect_poll, fd);
    p->connect_poll.data = p;
    p->connect_poll_active = true;
    uv_poll_start(&p->connect_poll, UV_WRITABLE, on_connect_poll);
    uv_timer_start(&p->retry, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
}

/* Starts a connection attempt: the name is resolved in libuv's thread
 * pool, never on the loop. */
static void on_retry(uv_timer_t *t)
{
    struct primary *p = t->data;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    int r;

    if (p->ls != LS_IDLE || p->stopping || !p->dirty)
        return;
    p->session++;
    p->resolve_req.data = p;
    r = uv_getaddrinfo(p->loop, &p->resolve_req, on_resolved, p->connect_host, p->connect_port,
                       &hints);
    if (r < 0) {
        BS_WARN(MOD, "cannot start resolving %s: %s", p->connect_addr, uv_strerror(r));
        schedule_retry(p);
        return;
    }
    p->resolving = true;
    p->ls = LS_CONNECTING;
}

/* Checks --connect once before anything starts, blocking: a name that
 * does not exist is reported at once.  -EAGAIN: the resolver is down for
 * now (connecting will retry). */
static int resolve_at_start(struct primary *p)
{
    struct addrinfo *res;
    uint16_t port;
    int r;

    if (bs_parse_hostport(p->connect_addr, p->connect_host, &port) < 0)
        return -EINVAL;
    snprintf(p->connect_port, sizeof(p->connect_port), "%u", port);
    r = bs_resolve(p->connect_addr, false, &res);
    if (r < 0)
        return r;
    freeaddrinfo(res);
    return 0;
}

static void schedule_retry(struct primary *p)
{
    if (p->stopping)
        return;
    uv_timer_start(&p->retry, on_retry, p->backoff_ms, 0);
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 250;
    if (p->backoff_ms > 5000)
        p->backoff_ms = 5000;
}

static void link_down(struct primary *p, const char *why)
{
    if (p->ls == LS_IDLE)
        return;
    if (p->ls == LS_STREAMING)
        BS_WARN(MOD, "replication link to %s down: %s", p->peer, why);
    else
        BS_WARN(MOD, "connecting to %s failed: %s", p->connect_addr, why);
    if (p->conn) {
        bs_conn_close(p->conn, false, NULL, NULL);
        p->conn = NULL;
    }
    /* Nothing unacknowledged is lost: every grain in flight is due again. */
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].state == SLOT_SENDING)
            slot_release(p, &p->slots[i]);
    bs_dirty_requeue_all(p->dirty);
    p->sent_head = p->sent_count = 0;
    p->unacked_bytes = 0;
    p->bytes_since_flush = 0;
    p->ls = LS_IDLE;
    p->session++;
    schedule_retry(p);
}

/* ---- Tick, status, signals ------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    struct primary *p = t->data;
    double delta = (double)(p->acked_bytes - p->acked_at_last_tick);

    p->acked_at_last_tick = p->acked_bytes;
    p->rate = p->rate == 0 ? delta : 0.7 * p->rate + 0.3 * delta;
    if (p->ls != LS_STREAMING)
        return;
    if (uv_now(p->loop) - p->last_rx_ms > p->heartbeat_timeout_ms) {
        link_down(p, "secondary silent past the heartbeat timeout");
        return;
    }
    send_ctrl(p, BSR_HEARTBEAT, uv_now(p->loop));
}

/* Answers "status" with the agent's state as one JSON object (see
 * docs/man/blkship.8.md for the fields); a change that is not an addition
 * needs BS_CTL_SCHEMA incremented. */
static ssize_t status_handler(void *opaque, const char *request, char *reply, size_t size)
{
    struct primary *p = opaque;
    static const char *const names[] = { "disconnected", "connecting", "tls", "handshake",
                                         "replicating" };
    uint64_t total = p->disk_sectors * BSR_SECTOR_SIZE;
    uint64_t todo = p->dirty ? bs_dirty_todo_grains(p->dirty) : 0;
    uint64_t infl = p->dirty ? bs_dirty_inflight_grains(p->dirty) : 0;
    uint64_t dirty = (todo + infl) * (p->grain ? grain_bytes(p) : 0);
    uint64_t inflight = infl * (p->grain ? grain_bytes(p) : 0);
    struct bs_json_builder b;
    char rid[33];

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (strcmp(request, "status") != 0) {
        bs_json_add_str(&b, "error", "unknown request");
        return bs_json_finish(&b, reply, size);
    }
    if (dirty > total)
        dirty = total;
    if (inflight > dirty)
        inflight = dirty;
    double pct = total ? 100.0 * (double)(total - dirty) / (double)total : 0.0;
    double eta = p->rate > 0 ? (double)dirty / p->rate : -1;
    bs_id_to_hex(p->replica_id, rid);
    bs_json_add_str(&b, "role", "primary");
    bs_json_add_bool(&b, "connected", p->ls == LS_STREAMING);
    bs_json_add_str(&b, "state", names[p->ls]);
    bs_json_add_str(&b, "peer", p->connect_addr);
    bs_json_add_u64(&b, "disk_bytes", total);
    bs_json_add_u64(&b, "grain_bytes", p->grain ? grain_bytes(p) : 0);
    bs_json_add_u64(&b, "dirty_bytes", dirty);
    bs_json_add_u64(&b, "inflight_bytes", inflight);
    bs_json_add_u64(&b, "sent_bytes", p->sent_bytes);
    bs_json_add_u64(&b, "acked_bytes", p->acked_bytes);
    bs_json_add_u64(&b, "zero_bytes", p->zero_bytes);
    bs_json_add_fixed(&b, "sync_percent", pct, 2);
    bs_json_add_fixed(&b, "rate_bytes_per_sec", p->rate, 0);
    bs_json_add_fixed(&b, "eta_seconds", eta, 0);
    bs_json_add_u64(&b, "epoch", p->epoch);
    bs_json_add_bool(&b, "log_connected", p->log != NULL);
    bs_json_add_u64(&b, "read_errors", p->read_errors);
    bs_json_add_str(&b, "replica_id", rid);
    return bs_json_finish(&b, reply, size);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct primary *p = h->data;

    BS_INFO(MOD, "signal %d: shutting down", signum);
    bs_notify("STOPPING=1");
    p->stopping = true;
    uv_stop(p->loop);
}

/* ---- Main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs("Usage: blkship-primary --writelog CTLSOCK --connect HOST:PORT --state-dir DIR\n"
          "                       --control SOCK --cert FILE --key FILE --ca FILE\n"
          "                       --peer-name NAME [options]\n"
          "\n"
          "Drains the write log of a disk served by nbdkit's writelog filter and\n"
          "replicates it over mutual TLS to blkship-secondary.\n"
          "\n"
          "  --writelog CTLSOCK       the log's control socket (/run/blkship/log_NAME.ctl)\n"
          "  --connect HOST:PORT      the secondary ([IPv6]:PORT for an address)\n"
          "  --state-dir DIR          identity, pairing and the dirty bitmap (created 0700)\n"
          "  --control SOCK           local control socket for 'blkship status'\n"
          "  --cert, --key FILE       this host's certificate and key (PEM; key mode 0600)\n"
          "  --ca FILE                CA the secondary's certificate must chain to\n"
          "  --crl FILE               revocation list of that CA (PEM), checked every handshake\n"
          "  --peer-name NAME         DNS name (or IP address) the secondary's certificate\n"
          "                           must carry as a subject alternative name\n"
          "  --interval DURATION      how often the log is sealed (default 100ms; 1ms-1h)\n"
          "  --max-payload SIZE       largest data frame (default 512K; 4K-8M, 4K multiple)\n"
          "  --heartbeat-timeout DUR  drop a silent link after DUR (default 10s; 2s-1h;\n"
          "                           a bare number is seconds)\n"
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
        { "writelog", required_argument, NULL, 'w' },
        { "connect", required_argument, NULL, 'c' },
        { "state-dir", required_argument, NULL, 's' },
        { "control", required_argument, NULL, 'o' },
        { "cert", required_argument, NULL, 'C' },
        { "key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "crl", required_argument, NULL, 'R' },
        { "peer-name", required_argument, NULL, 'P' },
        { "interval", required_argument, NULL, 'i' },
        { "max-payload", required_argument, NULL, 'm' },
        { "heartbeat-timeout", required_argument, NULL, 't' },
        { "log-level", required_argument, NULL, 'L' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static struct primary prim;
    struct primary *p = &prim;
    struct bs_tls_config tls = { 0 };
    const char *state_dir = NULL, *control = NULL;
    uint64_t v;
    int opt, r;

    p->interval_ms = 100;
    p->heartbeat_timeout_ms = 10000;
    p->payload_pref = DEFAULT_PAYLOAD;
    p->connect_fd = -1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'w': p->writelog_path = optarg; break;
        case 'c': p->connect_addr = optarg; break;
        case 's': state_dir = optarg; break;
        case 'o': control = optarg; break;
        case 'C': tls.cert = optarg; break;
        case 'K': tls.key = optarg; break;
        case 'A': tls.ca = optarg; break;
        case 'R': tls.crl = optarg; break;
        case 'P': tls.peer_name = optarg; break;
        case 'i':
            if (bs_opt_duration_ms("--interval", optarg, 1, 1, 3600000, &v) < 0)
                return BS_EXIT_USAGE;
            p->interval_ms = (unsigned)v;
            break;
        case 'm':
            if (bs_opt_size("--max-payload", optarg, 4096, BSR_MAX_PAYLOAD_LIMIT, &v) < 0)
                return BS_EXIT_USAGE;
            if (v % 4096) {
                bs_usage_error("--max-payload %s: not a multiple of 4096", optarg);
                return BS_EXIT_USAGE;
            }
            p->payload_pref = (uint32_t)v;
            break;
        case 't':
            if (bs_opt_duration_ms("--heartbeat-timeout", optarg, 1000, 2000, 3600000, &v) < 0)
                return BS_EXIT_USAGE;
            p->heartbeat_timeout_ms = (unsigned)v;
            break;
        case 'L':
            if (bs_opt_log_level(optarg) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'V': puts("blkship-primary " BLKSHIP_VERSION); return BS_EXIT_OK;
        case 'h': usage(stdout); return BS_EXIT_OK;
        default: usage(stderr); return BS_EXIT_USAGE;
        }
    }
    {
        const struct bs_opt_required required[] = {
            { "--writelog", p->writelog_path, false }, { "--connect", p->connect_addr, false },
            { "--state-dir", state_dir, false },       { "--control", control, false },
            { "--cert", tls.cert, false },             { "--key", tls.key, false },
            { "--ca", tls.ca, false },                 { "--peer-name", tls.peer_name, false },
            { "--crl", tls.crl, true },
        };
        if (bs_opt_check_required(required, sizeof(required) / sizeof(required[0])) < 0)
            return BS_EXIT_USAGE;
    }
    if (bs_opt_no_arguments(optind, argc, argv) < 0)
        return BS_EXIT_USAGE;
    if (bs_opt_hostport("--connect", p->connect_addr) < 0)
        return BS_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);

    if (bs_tls_new(&tls, false, &p->tls) < 0)
        return BS_EXIT_USAGE;
    /* A name that cannot resolve is a mistake to report now; a resolver
     * that is down for the moment is retried with the connection. */
    r = resolve_at_start(p);
    if (r < 0 && r != -EAGAIN)
        return BS_EXIT_FAILURE;
    r = bs_mkdir(state_dir);
    if (r < 0) {
        BS_ERR(MOD, "state directory %s: %s", state_dir, strerror(-r));
        return BS_EXIT_FAILURE;
    }
    snprintf(p->state_path, sizeof(p->state_path), "%s/primary.state", state_dir);
    snprintf(p->dirty_path, sizeof(p->dirty_path), "%s/dirty.bitmap", state_dir);
    if (load_state(p) < 0)
        return BS_EXIT_FAILURE;
    p->sent = calloc(SENT_CAP, sizeof(*p->sent));
    if (!p->sent)
        return BS_EXIT_FAILURE;

    p->loop = uv_default_loop();
    uv_timer_init(p->loop, &p->retry);
    uv_timer_init(p->loop, &p->log_retry);
    uv_timer_init(p->loop, &p->tick);
    uv_timer_init(p->loop, &p->seal_timer);
    uv_idle_init(p->loop, &p->pump_soon);
    p->retry.data = p->log_retry.data = p->tick.data = p->seal_timer.data = p;
    p->pump_soon.data = p;
    r = bs_ctl_start(p->loop, control, status_handler, p, &p->ctl);
    if (r < 0) {
        BS_ERR(MOD, "control socket %s: %s", control, uv_strerror(r));
        return BS_EXIT_FAILURE;
    }
    uv_signal_init(p->loop, &p->sigterm);
    uv_signal_init(p->loop, &p->sigint);
    p->sigterm.data = p->sigint.data = p;
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&p->seal_timer, on_seal_timer, p->interval_ms, p->interval_ms);
    uv_timer_start(&p->log_retry, on_log_retry, 0, 0);
    bs_notify("READY=1\nSTATUS=waiting for the write log and the secondary");

    uv_run(p->loop, UV_RUN_DEFAULT);

    if (p->conn)
        bs_conn_close(p->conn, false, NULL, NULL);
    if (p->log)
        log_link_close(p->log);
    p->log = NULL;
    if (p->connect_poll_active) {
        uv_close((uv_handle_t *)&p->connect_poll, NULL);
        close(p->connect_fd);
    }
    if (p->resolving)
        uv_cancel((uv_req_t *)&p->resolve_req);
    bs_ctl_stop(p->ctl);
    uv_close((uv_handle_t *)&p->retry, NULL);
    uv_close((uv_handle_t *)&p->log_retry, NULL);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_close((uv_handle_t *)&p->seal_timer, NULL);
    uv_close((uv_handle_t *)&p->pump_soon, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_run(p->loop, UV_RUN_DEFAULT);
    bs_dirty_close(p->dirty);
    bs_tls_free(p->tls);
    free(p->sent);
    uv_loop_close(p->loop);
    BS_INFO(MOD, "stopped");
    return BS_EXIT_OK;
}
