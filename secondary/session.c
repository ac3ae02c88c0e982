/* The secondary's session with the primary: accepting connections, the
 * TLS handshake, the hello and the welcome, reading every frame and
 * checking it (header bounds before a payload byte is read, CRC32C before
 * it has any effect), control frames (ACK, HEARTBEAT, ERROR) and the
 * heartbeat and handshake timeouts.  The frames' effects on the replica
 * are the apply pipeline's (secondary/apply.c).  The states are listed in
 * secondary/secondary.h.
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

#include "common/crc32c.h"
#include "common/log.h"
#include "common/net.h"
#include "common/state.h"

#define MOD "secondary"

/* ---- Session ------------------------------------------------------------ */


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
    free(s->own_buf);
    free(s->zbuf);
    bs_zdec_free(&s->zd);
    free(s);
}

/* Sends a control frame (ACK, HEARTBEAT, ERROR) from the slot ring. */
void session_send_control(struct session *s, uint8_t kind, uint64_t sector, uint32_t count)
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

void session_reject_frame(struct session *s, const char *why)
{
    s->sec->bad_frames++;
    BS_ERR(MOD, "bad frame from %s (sector %" PRIu64 " count %u kind %u): %s; nothing applied",
           bs_conn_peer(s->conn), s->frame.sector, s->frame.count, s->frame.kind, why);
    session_send_control(s, BSR_ERROR, 0, BSR_E_PROTOCOL);
    session_end(s, "protocol error");
}

static void read_payload(struct session *s);

/* A ZDATA frame becomes the DATA frame it stands for: its payload
 * decompressed into the session's buffer, checked against the disk.
 * False if it was refused (the session ends). */
static bool unpack_zdata(struct session *s, uint32_t *plen)
{
    const char *why = NULL;
    long n = bs_zdec_payload(&s->zd, s->buf->data, s->limits.max_payload, BSR_SECTOR_SIZE,
                             s->zbuf, s->frame.count, &why);
    uint64_t sectors;

    if (n < 0) {
        session_reject_frame(s, why);
        return false;
    }
    sectors = (uint64_t)n / BSR_SECTOR_SIZE;
    if (sectors > s->limits.disk_sectors - s->frame.sector) {
        session_reject_frame(s, "compressed data beyond the end of the disk");
        return false;
    }
    s->sec->zdata_frames++;
    s->sec->zdata_wire_bytes += s->frame.count;
    s->sec->zdata_raw_bytes += (uint64_t)n;
    s->frame.kind = BSR_DATA;
    s->frame.count = (uint32_t)sectors;
    *plen = (uint32_t)n;
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
    if (plen && bsr_crc_covers_payload(s->limits.version, s->frame.kind))
        want = crc32c(want, s->frame.kind == BSR_ZDATA ? s->zbuf : s->buf->data, plen);
    if (want != got) {
        session_reject_frame(s, "CRC32C of the payload does not match");
        return;
    }
    if (s->frame.kind == BSR_ZDATA && !unpack_zdata(s, &plen))
        return;
    s->last_rx_ms = sec_now_ms(sec);
    if (s->frame.kind == BSR_HASHES) {
        hashcheck_frame(s);
        return;
    }
    if (s->limits.version >= 2 && s->frame.kind != BSR_HEARTBEAT) {
        /* Version 2: the epoch logic takes the frame, or hands it back for
         * today's in-place path below. */
        uint64_t bytes = s->frame.kind == BSR_DATA   ? plen
                         : s->frame.kind == BSR_ZERO ? (uint64_t)s->frame.count * BSR_SECTOR_SIZE
                                                     : 0;
        if (!epoch_frame(s)) {
            sec->received_bytes += bytes;
            return;
        }
    }
    switch (s->frame.kind) {
    case BSR_DATA: {
        struct wbuf *b = s->buf;
        uint64_t offset = s->frame.sector * BSR_SECTOR_SIZE;
        s->buf = NULL;
        sec->received_bytes += plen;
        if (plen <= SMALL_WRITE && !sec->target.remote &&
            bs_target_block_aligned(&sec->target, plen, offset)) {
            /* A small frame costs less as a copy into the page cache here
             * than as a thread-pool round trip; the target's flush covers
             * both kinds.  One that is not made of whole blocks goes to
             * the thread pool instead: the page cache would first read the
             * partial blocks from the disk, and the loop must not wait;
             * nor does a remote target's (RBD) write ever run here. */
            r = sec->target.ops->write(&sec->target, b->data, plen, offset, BS_TARGET_CACHED);
            b->busy = false;
            if (r < 0) {
                BS_ERR(MOD, "writing %u bytes at sector %" PRIu64 " of %s: %s", plen,
                       s->frame.sector, sec->target.path, strerror(-r));
                session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
                session_end(s, "replica write failed");
                return;
            }
            apply_account_written(sec, plen);
            apply_note_cached_write(sec, plen);
            break;
        }
        apply_submit_write(s, b, plen, offset);
        if (s->state == ST_CLOSED)
            return;
        break;
    }
    case BSR_ZERO:
        sec->received_bytes += (uint64_t)s->frame.count * BSR_SECTOR_SIZE;
        if (!apply_start_zero(s)) {
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
        session_resume(s);
        return;
    case BSR_HEARTBEAT:
        break;
    default:
        session_reject_frame(s, "unexpected frame kind");
        return;
    }
    session_read_header(s);
}

/* Continues a stalled session when what it waits for is there. */
void session_resume(struct session *s)
{
    if (s->drain_first) {
        if (s->sec->writes_inflight || !epoch_quiet(s->sec))
            return;
        s->drain_first = false;
        if (!epoch_session_begin(s))
            return;
    }
    if (s->ep_hold) {
        epoch_resume(s);
        return;
    }
    if (s->hc_waiting) {
        if (hashcheck_resume(s) && s->state != ST_CLOSED)
            session_read_header(s);
        return;
    }
    if (s->zero_waiting) {
        if (!apply_start_zero(s))
            return;
        s->zero_waiting = false;
        session_read_header(s);
        return;
    }
    if (s->flush_pending) {
        if (s->sec->writes_inflight)
            return;
        s->flush_pending = false;
        apply_request_flush(s, s->flush_pending_seq);
        session_read_header(s);
        return;
    }
    if ((s->frame.kind == BSR_DATA || s->frame.kind == BSR_ZDATA || s->frame.kind == BSR_HASHES) &&
        !s->buf) {
        read_payload(s);
        return;
    }
    session_read_header(s);
}

/* The accepted session's primary is gone (not a deliberate close, not a
 * refusal of ours): the open epoch is dropped, the replica stays at the
 * newest committed epoch, and the failover hook runs. */
static void session_peer_lost(struct session *s, const char *why)
{
    struct secondary *sec = s->sec;
    char peer[96];

    if (s->state == ST_CLOSED)
        return;
    if (sec->session != s || !s->accepted || sec->stopping) {
        session_end(s, why);
        return;
    }
    snprintf(peer, sizeof(peer), "%s", bs_conn_peer(s->conn));
    session_end(s, why);
    sec->primaries_lost++;
    BS_ERR(MOD, "PRIMARY LOST: %s (%s); the replica stays at committed epoch %" PRIu64 "%s", peer,
           why, sec->committed_epoch,
           sec->consistent ? "" : " (and is NOT consistent: it was being written in place)");
    epoch_session_lost(sec);
    sec_event(sec, "primary-lost", peer, why);
    if (sec->on_failover && sec->hooks) {
        struct bs_hook_event ev = { .event = "failover", .peer = peer,
                                    .epoch = sec->committed_epoch,
                                    .generation = sec->generation, .reason = why };
        (void)bs_hooks_run(sec->hooks, sec->on_failover, &ev);
    }
}

/* A read failed: a deliberate close by the primary, or its loss. */
static void read_failure(struct session *s, int status, bool mid_frame)
{
    if (status == -ECONNRESET && bs_conn_peer_closed_cleanly(s->conn)) {
        session_end(s, mid_frame ? "closed by the primary in the middle of a frame"
                                 : "closed by the primary");
        return;
    }
    session_peer_lost(s, mid_frame ? "connection lost in the middle of a frame (truncated frame)"
                      : status == -ECONNRESET ? "connection lost (closed without a TLS close_notify)"
                                              : "connection lost (read error)");
}

static void mid_frame_failure(struct session *s, int status)
{
    read_failure(s, status, true);
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
        session_peer_lost(s, "connection lost (read error)");
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
    s->buf = apply_get_buffer(s->sec);
    if (!s->buf) {
        s->state = ST_STALLED; /* on_write_done resumes us */
        return;
    }
    s->state = ST_PAYLOAD;
    if (bs_conn_read(s->conn, s->frame.kind == BSR_ZDATA ? s->zbuf : s->buf->data,
                     bsr_frame_payload(&s->frame), on_payload, s) < 0)
        session_peer_lost(s, "connection lost (read error)");
}

static void on_header(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;
    const char *why = NULL;

    (void)c;
    if (status < 0) {
        read_failure(s, status, false);
        return;
    }
    /* Validate before reading a single payload byte. */
    if (bsr_frame_unpack(s->hdr, &s->limits, true, &s->frame, &why) < 0) {
        session_reject_frame(s, why);
        return;
    }
    if (bsr_frame_payload(&s->frame))
        read_payload(s);
    else
        read_trailer(s);
}

void session_read_header(struct session *s)
{
    if (s->state == ST_CLOSED)
        return;
    s->state = ST_HEADER;
    if (bs_conn_read(s->conn, s->hdr, sizeof(s->hdr), on_header, s) < 0)
        session_peer_lost(s, "connection lost (read error)");
}

static void send_welcome(struct session *s, int status, const char *reason)
{
    struct secondary *sec = s->sec;
    struct bsr_welcome w;

    memset(&w, 0, sizeof(w));
    /* The version chosen, once the hello's has been judged. */
    w.version = s->limits.version ? s->limits.version : SECONDARY_VERSION;
    w.status = status;
    w.flags = status == BSR_OK ? s->welcome_flags : 0;
    w.disk_bytes = sec->disk_bytes;
    w.max_payload = s->limits.max_payload;
    memcpy(w.replica_id, sec->replica_id, BSR_ID_LEN);
    memcpy(w.primary_id, sec->primary_id, BSR_ID_LEN);
    w.generation = sec->generation;
    /* Version 2: the newest committed epoch, so that a primary that lost
     * a COMMITTED with its link learns of it here. */
    w.epoch = s->limits.version >= 2 ? sec->committed_epoch : sec->epoch;
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
    if (h.version < BSR_VERSION_MIN) {
        snprintf(detail, sizeof(detail), "version %u, we speak %u to %u", h.version,
                 BSR_VERSION_MIN, SECONDARY_VERSION);
        refuse(s, BSR_E_VERSION, detail);
        return;
    }
    s->limits.version = h.version < SECONDARY_VERSION ? h.version : SECONDARY_VERSION;
    if (h.disk_bytes != sec->disk_bytes || h.sector_size != BSR_SECTOR_SIZE) {
        snprintf(detail, sizeof(detail), "primary disk %" PRIu64 " bytes, replica %" PRIu64,
                 h.disk_bytes, sec->disk_bytes);
        refuse(s, BSR_E_SIZE, detail);
        return;
    }
    if (h.max_payload < BSR_SECTOR_SIZE || h.max_payload > BSR_MAX_PAYLOAD_LIMIT ||
        h.max_payload % BSR_SECTOR_SIZE || (h.flags != 0 && h.version <= SECONDARY_VERSION)) {
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
    {
        int st = sgen_judge(s, &h, &s->welcome_flags, detail, sizeof(detail));
        if (st != BSR_OK) {
            refuse(s, st, detail);
            return;
        }
        s->checksum_asked = (s->welcome_flags & BSR_WF_CHECKSUM) != 0;
    }
    /* Accepted: a previous session of this primary (a half-open link) yields. */
    if (sec->session && sec->session != s) {
        BS_WARN(MOD, "a new session from the primary replaces the old one");
        session_end(sec->session, "replaced by a new session");
    }
    pending_remove(s);
    sec->session = s;
    s->accepted = true;
    sec->sessions_accepted++;
    snprintf(sec->peer, sizeof(sec->peer), "%s", bs_conn_peer(s->conn));
    if (bs_id_is_zero(sec->primary_id) || sec->generation != h.generation) {
        if (sec_save_pairing(sec, h.primary_id, h.generation) < 0) {
            refuse(s, BSR_E_IO, "cannot record the pairing");
            return;
        }
    }
    s->limits.disk_sectors = sec->disk_bytes / BSR_SECTOR_SIZE;
    s->limits.max_payload = h.max_payload < sec->max_payload ? h.max_payload : sec->max_payload;
    if (s->limits.version >= 5 && (h.offers & BSR_HO_ZSTD)) {
        /* Compressed frames: taken unless memory is short (then the
         * primary sends them as they are). */
        s->zbuf = malloc(s->limits.max_payload);
        if (s->zbuf && bs_zdec_init(&s->zd) == 0) {
            s->welcome_flags |= BSR_WF_ZSTD;
            s->limits.zstd = true;
        } else {
            BS_WARN(MOD, "no memory for compressed frames: the primary sends them as they are");
        }
    }
    sec_notify(sec);
    sec_event(sec, "connected", sec->peer, "");
    BS_INFO(MOD, "primary %s connected (protocol version %u, max payload %u bytes)", sec->peer,
            s->limits.version, s->limits.max_payload);
    send_welcome(s, BSR_OK, NULL);
    if ((s->welcome_flags & BSR_WF_EXTENTS) && !own_send(s)) {
        session_end(s, "cannot send the replica's own changes");
        return;
    }
    s->last_rx_ms = sec_now_ms(sec);
    if (sec->writes_inflight || !epoch_quiet(sec)) {
        /* Writes, zeroes or journal appends of the session before may
         * still be running: a frame of this one over the same grain must
         * land after them. */
        s->drain_first = true;
        s->state = ST_STALLED;
        return;
    }
    if (!epoch_session_begin(s))
        return;
    session_read_header(s);
}

static void on_handshake(struct bs_conn *c, int status, void *arg)
{
    struct session *s = arg;

    (void)c;
    if (status < 0) {
        session_end(s, status == -EPROTO ? "TLS handshake failed" : "closed during the TLS handshake");
        return;
    }
    if (s->sec->listener_path && strcmp(bs_conn_server_name(s->conn), s->sec->resource) != 0) {
        /* blkship-listener routed it by that name: a mismatch is a bug or
         * a forged hand-over, never a session. */
        BS_WARN(MOD, "connection from %s asked for resource '%s', this is %s: refused",
                bs_conn_peer(s->conn), bs_conn_server_name(s->conn), s->sec->resource);
        session_end(s, "another resource's connection");
        return;
    }
    s->state = ST_HELLO;
    if (bs_conn_read(s->conn, s->hello, sizeof(s->hello), on_hello, s) < 0)
        session_peer_lost(s, "connection lost (read error)");
}

void session_kick(struct secondary *sec)
{
    struct session *s = sec->session;

    if (s && s->state == ST_STALLED)
        session_resume(s);
}

void session_end(struct session *s, const char *why)
{
    struct secondary *sec = s->sec;

    if (s->state == ST_CLOSED)
        return;
    if (s->accepted) {
        BS_WARN(MOD, "session with %s ended: %s", bs_conn_peer(s->conn), why);
        if (sec->session == s) {
            snprintf(sec->last_lost, sizeof(sec->last_lost), "%s: %s", bs_conn_peer(s->conn), why);
            sec_event(sec, "disconnected", bs_conn_peer(s->conn), why);
        }
    } else
        BS_WARN(MOD, "connection from %s dropped: %s", bs_conn_peer(s->conn), why);
    s->state = ST_CLOSED;
    if (sec->session == s)
        sec->session = NULL;
    pending_remove(s);
    /* Queued control frames (an ERROR, a refusing welcome) still go out;
     * the session memory they live in is freed with the connection. */
    bs_conn_close(s->conn, true, on_session_conn_closed, s);
    sec_notify(sec);
}

void session_on_listen_readable(uv_poll_t *h, int status, int events)
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
        bs_sockaddr_str((struct sockaddr *)&ss, peer, sizeof(peer));
        len = sizeof(ss);
        session_accept(sec, fd, peer);
    }
}

void session_accept(struct secondary *sec, int fd, const char *peer)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return;
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
                (double)(sec_now_ms(sec) - old->started_ms) / 1000.0, peer);
        session_end(old, "evicted for a newer connection");
    }
    bs_tcp_tune(fd);
    s->sec = sec;
    s->started_ms = sec_now_ms(sec);
    s->id = ++sec->next_session_id;
    s->state = ST_TLS;
    s->limits.max_payload = sec->max_payload;
    SSL_CTX *ctx = bs_tls_ctx(sec->tls);
    if (!ctx || bs_conn_new(sec->loop, ctx, fd, true, peer, &s->conn) < 0) {
        if (!ctx)
            close(fd);
        free(s);
        return;
    }
    s->next_pending = sec->pending;
    sec->pending = s;
    sec->npending++;
    BS_INFO(MOD, "connection from %s", peer);
    bs_conn_handshake(s->conn, on_handshake, s);
}

/* ---- Timers, status, signals --------------------------------------------- */

void session_on_tick(uv_timer_t *t)
{
    struct secondary *sec = t->data;

    sec_notify(sec);
    sec_metrics_publish(sec);
    sec_events_tick(sec);
    sec_xen_publish(sec);
    /* A connection has the handshake timeout to authenticate and say hello. */
    for (struct session *p = sec->pending, *next; p; p = next) {
        next = p->next_pending;
        if (sec_now_ms(sec) - p->started_ms > sec->handshake_timeout_ms)
            session_end(p, "no TLS handshake and hello within the handshake timeout");
    }
}

void session_on_heartbeat(uv_timer_t *t)
{
    struct secondary *sec = t->data;
    struct session *s = sec->session;
    char why[96];

    if (!s || s->state == ST_CLOSED)
        return;
    /* While the session waits for the replica it reads nothing, so the
     * primary's heartbeats wait in the socket: silence is counted only
     * while we listen. */
    if (s->state == ST_STALLED)
        s->last_rx_ms = sec_now_ms(sec);
    if (sec_now_ms(sec) - s->last_rx_ms > sec->peer_timeout_ms) {
        snprintf(why, sizeof(why), "primary silent for %" PRIu64 " ms (peer timeout %u ms)",
                 sec_now_ms(sec) - s->last_rx_ms, sec->peer_timeout_ms);
        session_peer_lost(s, why);
        return;
    }
    session_send_control(s, BSR_HEARTBEAT, sec_now_ms(sec), 0);
}

/* Answers "status" with the replica's state as one JSON object (see
 * docs/man/blkship.8.md for the fields); a change that is not an addition
 * needs BS_CTL_SCHEMA incremented. */
