/* blkship-primary's replication link: resolving and connecting (off the
 * loop), TLS, the hello and the welcome, control frames, and the
 * secondary's frames (acknowledgements clear bits).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <uv.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/sni.h"
#include "primary/primary.h"

#define MOD "primary"
#include "common/state.h"

static void read_frame(struct primary *p);

void send_ctrl(struct primary *p, uint8_t kind, uint64_t sector)
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
    if (le32toh(got) != crc32c(crc32c(0, p->rx_hdr, BSR_FRAME_HDR_LEN), p->rx_payload,
                               bsr_frame_payload(&p->rx))) {
        link_down(p, "bad CRC32C on a frame from the secondary");
        return;
    }
    p->last_rx_ms = uv_now(p->loop);
    switch (p->rx.kind) {
    case BSR_COMMITTED:
        if (!epoch_committed(p, p->rx.sector)) {
            link_down(p, "protocol error");
            return;
        }
        break;
    case BSR_ACK:
        if (!flush_handle_ack(p, p->rx.sector)) {
            link_down(p, "protocol error");
            return;
        }
        break;
    case BSR_HEARTBEAT:
        break;
    case BSR_EXTENTS:
        if (!gen_on_extents(p)) {
            link_down(p, "protocol error");
            return;
        }
        break;
    case BSR_HASHED:
        if (!(p->cs_active ? csync_on_hashed : verify_on_hashed)(p, p->rx.sector, p->rx.count,
                                                                p->rx_payload)) {
            link_down(p, "protocol error");
            return;
        }
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

static void on_rx_payload(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;

    (void)c;
    if (status < 0) {
        link_down(p, "connection closed in the middle of a frame");
        return;
    }
    if (bs_conn_read(p->conn, p->rx_crc, sizeof(p->rx_crc), on_rx_crc, p) < 0)
        link_down(p, "read error");
}

static void on_rx_hdr(struct bs_conn *c, int status, void *arg)
{
    struct primary *p = arg;
    const char *why = NULL;

    if (status < 0) {
        char down[96];
        if (status == -ECONNRESET && bs_conn_peer_closed_cleanly(c))
            snprintf(down, sizeof(down), "the secondary closed the connection");
        else if (status == -ECONNRESET)
            snprintf(down, sizeof(down), "the connection was reset (the secondary did not close it)");
        else
            snprintf(down, sizeof(down), "read error: %s", strerror(-status));
        link_down(p, down);
        return;
    }
    if (bsr_frame_unpack(p->rx_hdr, &p->rx_limits, false, &p->rx, &why) < 0) {
        BS_ERR(MOD, "bad frame from the secondary: %s", why);
        link_down(p, "protocol error");
        return;
    }
    if (bsr_frame_payload(&p->rx)) {
        /* HASHED's bitmap or EXTENTS' entries, both bounded by the unpack. */
        if (bs_conn_read(p->conn, p->rx_payload, bsr_frame_payload(&p->rx), on_rx_payload, p) < 0)
            link_down(p, "read error");
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
    if (w.version < PRIMARY_VERSION_MIN || w.version > PRIMARY_VERSION) {
        if (w.version >= BSR_VERSION_MIN && w.version < PRIMARY_VERSION_MIN)
            BS_ERR(MOD, "the secondary speaks protocol version %u; we speak %u: it cannot "
                        "journal epochs, so its replica could never be consistent; upgrade it",
                   w.version, PRIMARY_VERSION);
        else
            BS_ERR(MOD, "the secondary speaks protocol version %u; we speak %u", w.version,
                   PRIMARY_VERSION);
        link_down(p, "protocol version");
        return;
    }
    if (w.flags & ~(w.version >= 5   ? BSR_WF_KNOWN
                    : w.version >= 4 ? BSR_WF_KNOWN_V4
                    : w.version >= 3 ? BSR_WF_KNOWN_V3
                                     : 0u)) {
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
        if (w.status == BSR_E_SPLIT_BRAIN || w.status == BSR_E_PROMOTED) {
            gen_refused(p, &w); /* said once per episode, not at every retry */
        } else {
            BS_ERR(MOD, "the secondary refused the session: %s (%s)", bsr_status_str(w.status),
                   w.reason);
        }
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
        if (w.flags & BSR_WF_EXTENTS) {
            /* A demoted primary's disk on our line: what it lacks is our
             * bitmap and the changes it sends next. */
            BS_INFO(MOD, "the new replica shares our data generation: only our changes and "
                         "its own are sent");
        } else if (p->initial_checksum && w.version >= 3) {
            /* The operator says the replica may already hold much of the
             * disk (an old primary coming back): compare, send what differs. */
            csync_request(p, "a new pairing (--initial-sync checksum)");
        } else {
            bs_dirty_mark_all(p->dirty);
            p->full_resync_reason = "a new pairing";
        }
        if (bs_dirty_sync(p->dirty) < 0 || save_state(p) < 0) {
            link_down(p, "cannot record the pairing");
            return;
        }
        bs_id_to_hex(p->replica_id, hex);
        BS_INFO(MOD, "paired with replica %s: %s sync", hex,
                p->cs_active ? "checksum" : (w.flags & BSR_WF_EXTENTS) ? "bitmap" : "full");
    } else if (memcmp(p->replica_id, w.replica_id, BSR_ID_LEN) != 0) {
        link_down(p, "the secondary answered with another replica identity");
        return;
    }
    if (w.epoch < p->committed_epoch) {
        /* It has lost epochs it had committed (its state or journal was
         * reset or restored): bits cleared for them describe data it no
         * longer holds. */
        BS_ERR(MOD, "the replica's newest committed epoch is %" PRIu64 ", but it had committed "
                    "epoch %" PRIu64 ": it lost committed data",
               (uint64_t)w.epoch, p->committed_epoch);
        csync_request(p, "the replica lost committed epochs");
        p->committed_epoch = w.epoch;
        if (save_state(p) < 0) {
            link_down(p, "cannot record the resync");
            return;
        }
    } else if (w.epoch > p->committed_epoch) {
        /* A COMMITTED lost with a link: the epoch was shipped whole, but
         * its grains went back to the bitmap and are simply sent again. */
        BS_INFO(MOD, "the replica committed epoch %" PRIu64 " (we had heard of %" PRIu64 ")",
                (uint64_t)w.epoch, p->committed_epoch);
        p->committed_epoch = w.epoch;
        save_state_async(p);
    }
    if (p->last_epoch < p->committed_epoch)
        p->last_epoch = p->committed_epoch;
    p->peer_generation = w.generation;
    p->peer_version = w.version;
    if ((w.flags & BSR_WF_ZSTD) && !p->compress) {
        BS_ERR(MOD, "bad welcome from %s: it takes compressed frames we did not offer", p->peer);
        link_down(p, "protocol error");
        return;
    }
    p->zstd_on = p->compress && (w.flags & BSR_WF_ZSTD);
    if (p->compress && !p->zstd_on)
        BS_WARN(MOD, "the secondary does not take compressed frames (protocol version %u): "
                     "data goes uncompressed", w.version);
    else if (p->zstd_on)
        BS_INFO(MOD, "data frames compressed with zstd level %d where that pays",
                p->compress_level);
    p->ext_expect = (w.flags & BSR_WF_EXTENTS) != 0;
    p->ext_bytes = p->ext_extents = 0;
    if (w.flags & BSR_WF_CHECKSUM) {
        /* The replica changed on its own (a split brain resolved there, or
         * it is of an older line than our bitmap covers). */
        csync_request(p, "the replica changed on its own");
        if (save_state(p) < 0) {
            link_down(p, "cannot record the resync");
            return;
        }
    }
    gen_accepted(p, w.generation);
    if (!csync_fallback(p)) {
        link_down(p, "cannot mark the whole disk dirty");
        return;
    }
    p->max_payload = w.max_payload;
    p->rx_limits.version = w.version;
    p->rx_limits.disk_sectors = p->disk_sectors;
    p->rx_limits.max_payload = w.max_payload;
    /* A replica that never committed an epoch holds no image to protect:
     * it writes in place, and an ACK means the data is on it. */
    flush_session_start(p, w.epoch == 0);
    p->ls = LS_STREAMING;
    p->link_up_ms = uv_now(p->loop);
    p->sessions_up++;
    p->last_rx_ms = uv_now(p->loop);
    BS_INFO(MOD, "replicating to %s (max payload %u bytes, %" PRIu64 " bytes dirty, replica's "
                 "newest committed epoch %" PRIu64 "%s)", p->peer, p->max_payload,
            (bs_dirty_todo_grains(p->dirty) + bs_dirty_inflight_grains(p->dirty)) * grain_bytes(p),
            (uint64_t)w.epoch, p->in_place ? ": it writes in place" : "");
    read_frame(p);
    epoch_maybe_start(p);
    if (p->ls != LS_STREAMING)
        return; /* lost again at once: link_down said so */
    primary_event(p, "connected", p->in_place ? "the replica writes in place until its first commit"
                                             : "");
    primary_events_tick(p);
    primary_notify(p);
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
    h.epoch = p->committed_epoch;
    h.offers = p->compress ? BSR_HO_ZSTD : 0;
    gen_fill_hello(p, &h);
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
    /* The resource's name in the ClientHello: a blkship-listener in front
     * of many secondaries routes the connection by it (docs/resources.md);
     * a secondary of its own port ignores it. */
    if (bs_sni_name_ok(p->resource))
        (void)bs_conn_set_server_name(p->conn, p->resource);
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
void on_retry(uv_timer_t *t)
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
int resolve_at_start(struct primary *p)
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

void schedule_retry(struct primary *p)
{
    /* A split brain or a promoted peer waits for an operator: asking
     * again is only to notice that one acted, so at most once a minute. */
    unsigned cap = p->split_brain || p->peer_promoted ? RETRY_REFUSED_MAX_MS : RETRY_MAX_MS;

    if (p->stopping || p->resolved_discard)
        return;
    uv_timer_start(&p->retry, on_retry, p->backoff_ms, 0);
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 250;
    if (p->backoff_ms > cap)
        p->backoff_ms = cap;
}

void link_down(struct primary *p, const char *why)
{
    if (p->ls == LS_IDLE)
        return;
    if (p->ls == LS_STREAMING)
        BS_WARN(MOD, "replication link to %s down: %s", p->peer, why);
    else
        BS_WARN(MOD, "connecting to %s failed: %s", p->connect_addr, why);
    snprintf(p->last_down, sizeof(p->last_down), "%s", why);
    if (p->ls == LS_STREAMING) {
        p->link_downs++;
        primary_event(p, "disconnected", why);
    } else
        p->connect_failures++;
    if (p->conn) {
        bs_conn_close(p->conn, false, NULL, NULL);
        p->conn = NULL;
    }
    /* Nothing unacknowledged is lost: every grain in flight is due again. */
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].state == SLOT_SENDING)
            slot_release(p, &p->slots[i]);
    bs_dirty_requeue_all(p->dirty);
    flush_session_start(p, false);
    csync_link_down(p);
    verify_link_down(p);
    p->ls = LS_IDLE;
    epoch_link_lost(p);
    p->session++;
    schedule_retry(p);
    primary_notify(p);
}
