/* TLS over a non-blocking socket, driven by uv_poll (see conn.h). */
#include "common/conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>

#include "common/log.h"
#include "common/tls.h"

#define MOD "tls"

enum conn_state {
    CS_HANDSHAKE,   /* handshake requested or running */
    CS_OPEN,        /* data may flow */
    CS_FAILED,      /* an error was reported; waiting for close */
};

struct write_op {
    const char *buf;
    size_t len;
    size_t done;
    bs_conn_cb *cb;
    void *arg;
};

struct bs_conn {
    uv_poll_t poll;
    uv_idle_t soon;             /* runs new reads and writes from a clean stack */
    uv_timer_t linger;
    int open_handles;
    bool lingering;             /* closing once the write queue drains */
    bool draining;              /* write side shut; discarding input until EOF */
    bs_conn_closed_cb *closed_cb;
    void *closed_arg;
    int fd;
    SSL *ssl;
    enum conn_state state;
    int error;
    char peer[96];
    char identity[256];       /* the peer certificate's subject and fingerprint */
    int events;               /* what the poll handle is watching */

    bs_conn_cb *hs_cb;
    void *hs_arg;

    char *rbuf;
    size_t rlen, rdone;
    bs_conn_cb *rcb;
    void *rarg;

    /* TLS records bound for the socket.  OpenSSL writes one record of at
     * most 16 KiB per BIO call; collecting them here turns a megabyte of
     * frames into a few large send()s instead of 64 small ones, on this
     * side and on the receiver's. */
    char *obuf;
    size_t ohead, otail;        /* sent up to ohead, filled up to otail */

    struct write_op wq[BS_CONN_MAX_WRITES];
    unsigned wq_head, wq_count;
    /* Small writes gathered into one record (see stage_small).  While
     * stage_len > 0 the stage holds the next bytes of the queued writes,
     * from the head on, and is what the next SSL_write gets: OpenSSL
     * retries a record with the same bytes. */
    char *stage;
    size_t stage_len;
    /* Set while a read or write waits for the opposite readiness (TLS may
     * need to write to read, or read to write). */
    bool read_wants_write, write_wants_read;
    bool in_callback;
    bool closed;
};

/* The most plaintext one TLS record carries. */
#define STAGE_SIZE 16384u

static void on_poll(uv_poll_t *h, int status, int events);
static void on_soon(uv_idle_t *h);
static void finish_close(struct bs_conn *c);
static void start_drain(struct bs_conn *c);

/* ---- The write BIO: appends records to c->obuf ------------------------ */

static BIO_METHOD *obuf_method;
static pthread_once_t obuf_method_once = PTHREAD_ONCE_INIT;

static int obuf_write(BIO *b, const char *data, size_t len, size_t *written)
{
    struct bs_conn *c = BIO_get_data(b);
    size_t room = BS_CONN_OBUF_SIZE - c->otail;

    BIO_clear_retry_flags(b);
    if (room == 0) {
        /* Full: the caller flushes and OpenSSL retries the same record. */
        BIO_set_retry_write(b);
        *written = 0;
        return 0;
    }
    if (len > room)
        len = room;
    memcpy(c->obuf + c->otail, data, len);
    c->otail += len;
    *written = len;
    return 1;
}

static long obuf_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct bs_conn *c = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        /* Every SSL call is followed by flush_out(). */
        return 1;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return c ? (long)(c->otail - c->ohead) : 0;
    default:
        return 0;
    }
}

static int obuf_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void obuf_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "blkship output buffer");

    if (m && BIO_meth_set_write_ex(m, obuf_write) == 1 && BIO_meth_set_ctrl(m, obuf_ctrl) == 1 &&
        BIO_meth_set_create(m, obuf_create) == 1) {
        obuf_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* Sends what c->obuf holds.  Returns 0 when it is empty, 1 when the socket
 * is full (wait for UV_WRITABLE), or -errno. */
static int flush_out(struct bs_conn *c)
{
    while (c->ohead < c->otail) {
        ssize_t n = send(c->fd, c->obuf + c->ohead, c->otail - c->ohead, MSG_NOSIGNAL);
        if (n > 0) {
            c->ohead += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        return n < 0 ? -errno : -EPIPE;
    }
    c->ohead = c->otail = 0;
    return 0;
}

static bool out_pending(const struct bs_conn *c)
{
    return c->ohead < c->otail;
}

int bs_conn_new(uv_loop_t *loop, SSL_CTX *ctx, int fd, bool server, const char *peer,
                struct bs_conn **out)
{
    struct bs_conn *c = calloc(1, sizeof(*c));
    BIO *rbio, *wbio;
    int r;

    pthread_once(&obuf_method_once, obuf_method_init);
    if (c) {
        c->obuf = malloc(BS_CONN_OBUF_SIZE);
        c->stage = malloc(STAGE_SIZE);
    }
    if (!c || !c->obuf || !c->stage || !obuf_method) {
        if (c) {
            free(c->obuf);
            free(c->stage);
        }
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->ssl = SSL_new(ctx);
    rbio = BIO_new_socket(fd, BIO_NOCLOSE);
    wbio = BIO_new(obuf_method);
    if (!c->ssl || !rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(c->ssl);
        close(fd);
        free(c->obuf);
        free(c->stage);
        free(c);
        return -ENOMEM;
    }
    BIO_set_data(wbio, c);
    SSL_set_bio(c->ssl, rbio, wbio); /* the SSL owns both from here */
    if (server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    r = uv_poll_init(loop, &c->poll, fd);
    if (r < 0) {
        SSL_free(c->ssl);
        close(fd);
        free(c->obuf);
        free(c->stage);
        free(c);
        return r;
    }
    uv_timer_init(loop, &c->linger);
    uv_idle_init(loop, &c->soon);
    c->poll.data = c;
    c->linger.data = c;
    c->soon.data = c;
    c->open_handles = 3;
    c->state = CS_HANDSHAKE;
    *out = c;
    return 0;
}

const char *bs_conn_peer_identity(const struct bs_conn *c)
{
    return c->identity;
}

int bs_conn_set_server_name(struct bs_conn *c, const char *name)
{
    return SSL_set_tlsext_host_name(c->ssl, name) == 1 ? 0 : -EINVAL;
}

const char *bs_conn_server_name(const struct bs_conn *c)
{
    const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);

    return name ? name : "";
}

const char *bs_conn_peer(const struct bs_conn *c)
{
    return c->peer;
}

bool bs_conn_peer_closed_cleanly(const struct bs_conn *c)
{
    return c->ssl && (SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN);
}

static void update_poll(struct bs_conn *c)
{
    int ev = 0;

    if (c->draining)
        return;
    if (c->closed || c->state == CS_FAILED) {
        if (c->events) {
            uv_poll_stop(&c->poll);
            c->events = 0;
        }
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        /* The handshake's own writes all fit in obuf: it only ever waits
         * for the peer, or for obuf to drain. */
        ev = c->hs_cb ? UV_READABLE : 0;
    } else {
        if ((c->rcb && !c->read_wants_write) || (c->wq_count && c->write_wants_read))
            ev |= UV_READABLE;
        if ((c->wq_count && !c->write_wants_read) || (c->rcb && c->read_wants_write))
            ev |= UV_WRITABLE;
    }
    if (out_pending(c))
        ev |= UV_WRITABLE;
    if (ev != c->events) {
        if (ev)
            uv_poll_start(&c->poll, ev, on_poll);
        else
            uv_poll_stop(&c->poll);
        c->events = ev;
    }
}

/* Turns an SSL failure into a status, logging TLS-level reasons. */
static int ssl_failure(struct bs_conn *c, int ret, const char *during)
{
    int err = SSL_get_error(c->ssl, ret);
    char why[512] = "";

    switch (err) {
    case SSL_ERROR_ZERO_RETURN:
        return -ECONNRESET;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0)
            return errno ? -errno : -ECONNRESET;
        break;
    default:
        break;
    }
    bs_tls_errors(why, sizeof(why));
    if (c->state == CS_HANDSHAKE) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK)
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s",
                     why[0] ? ": " : "", X509_verify_cert_error_string(v));
    }
    if (!why[0] && err == SSL_ERROR_SYSCALL)
        return -ECONNRESET;
    BS_ERR(MOD, "%s with %s failed: %s", during, c->peer, why[0] ? why : "TLS error");
    return -EPROTO;
}

static void fail(struct bs_conn *c, int status)
{
    bs_conn_cb *cb;
    void *arg;

    if (c->state == CS_FAILED)
        return;
    c->state = CS_FAILED;
    c->error = status;
    update_poll(c);
    if (c->lingering || c->draining) {
        finish_close(c);
        return;
    }
    /* Report once, to whoever is waiting: handshake, read, else a write. */
    if (c->hs_cb) {
        cb = c->hs_cb;
        arg = c->hs_arg;
        c->hs_cb = NULL;
    } else if (c->rcb) {
        cb = c->rcb;
        arg = c->rarg;
        c->rcb = NULL;
    } else if (c->wq_count && c->wq[c->wq_head].cb) {
        cb = c->wq[c->wq_head].cb;
        arg = c->wq[c->wq_head].arg;
    } else {
        return;
    }
    cb(c, status, arg);
}

/* Who the peer's certificate says it is: its subject and the start of its
 * SHA-256 fingerprint, for the status and the logs. */
static void note_identity(struct bs_conn *c)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char subject[160] = "";

    if (!x)
        return;
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen >= 8)
        snprintf(c->identity, sizeof(c->identity),
                 "%s (sha256 %02x%02x%02x%02x%02x%02x%02x%02x...)", subject, md[0], md[1], md[2],
                 md[3], md[4], md[5], md[6], md[7]);
    else
        snprintf(c->identity, sizeof(c->identity), "%s", subject);
    X509_free(x);
}

static void do_handshake(struct bs_conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    int saved_errno = errno;
    /* Whatever happened, send what TLS wrote: the next flight, or the
     * alert that tells the peer why it is refused. */
    int f = flush_out(c);

    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        errno = saved_errno;
        fail(c, ssl_failure(c, r, "TLS handshake"));
        return;
    }
    if (f < 0) {
        /* The peer may have said why before it went: read its alert. */
        r = SSL_do_handshake(c->ssl);
        e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE &&
            e != SSL_ERROR_SYSCALL)
            fail(c, ssl_failure(c, r, "TLS handshake"));
        else
            fail(c, f);
        return;
    }
    if (r == 1) {
        bs_conn_cb *cb = c->hs_cb;
        c->hs_cb = NULL;
        c->state = CS_OPEN;
        note_identity(c);
        update_poll(c);
        cb(c, 0, c->hs_arg);
        return;
    }
    update_poll(c);
}

void bs_conn_handshake(struct bs_conn *c, bs_conn_cb *cb, void *arg)
{
    c->hs_cb = cb;
    c->hs_arg = arg;
    do_handshake(c);
}

/* Makes progress on the outstanding read.  Returns false if the connection
 * failed (or was closed by a callback).
 *
 * A read callback usually asks for the next read at once, so against a
 * sender faster than us this loop could go on for as long as the socket
 * has data, and nothing else on the loop would run: no timer, no
 * heartbeat, no acknowledgement of what was applied, and the peer would
 * time us out while we worked.  After BS_CONN_READ_BUDGET bytes in one
 * turn the rest waits for the next turn of the loop. */
static bool do_read(struct bs_conn *c)
{
    size_t budget = BS_CONN_READ_BUDGET;

    while (c->rcb && c->state == CS_OPEN) {
        size_t got = 0;
        if (budget == 0) {
            uv_idle_start(&c->soon, on_soon); /* what is buffered: next turn */
            break;
        }
        int r = SSL_read_ex(c->ssl, c->rbuf + c->rdone, c->rlen - c->rdone, &got);
        if (r == 1) {
            c->rdone += got;
            budget = got < budget ? budget - got : 0;
            if (c->rdone == c->rlen) {
                bs_conn_cb *cb = c->rcb;
                c->rcb = NULL;
                c->read_wants_write = false;
                cb(c, 0, c->rarg);
                if (c->closed)
                    return false;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ) {
            c->read_wants_write = false;
            break;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->read_wants_write = true;
            break;
        }
        fail(c, ssl_failure(c, 0, "TLS read"));
        return false;
    }
    return c->state == CS_OPEN && !c->closed;
}

/* Gathers the queued writes' next bytes into c->stage, up to one record,
 * when the head write has less than a record left and another waits behind
 * it.  Written as they are, frames of a few KiB would each be a record of
 * their own, and each record costs both sides a cipher set-up (about
 * 2.7 us here) and 22 bytes besides its data: fio's 4 KiB writes made
 * 4,116-byte records.  Copying them costs less (0.2 us per 4 KiB), and a
 * large write still goes to OpenSSL from the caller's buffer. */
static void stage_small(struct bs_conn *c)
{
    const struct write_op *head = &c->wq[c->wq_head];
    size_t len = 0;

    if (c->stage_len || c->wq_count < 2 || head->len - head->done >= STAGE_SIZE)
        return;
    for (unsigned i = 0; i < c->wq_count && len < STAGE_SIZE; i++) {
        const struct write_op *w = &c->wq[(c->wq_head + i) % BS_CONN_MAX_WRITES];
        size_t take = w->len - w->done;
        if (take > STAGE_SIZE - len)
            take = STAGE_SIZE - len;
        memcpy(c->stage + len, w->buf + w->done, take);
        len += take;
    }
    c->stage_len = len;
}

/* `put` more bytes of the queued writes are in TLS records: advances the
 * writes from the head, completing each one that is done (a write of no
 * bytes completes when it reaches the head).  Returns false if a callback
 * closed the connection. */
static bool consume(struct bs_conn *c, size_t put)
{
    while (c->wq_count) {
        struct write_op *w = &c->wq[c->wq_head];
        size_t k = w->len - w->done;
        if (k > put)
            k = put;
        w->done += k;
        put -= k;
        if (w->done < w->len)
            break;
        bs_conn_cb *cb = w->cb;
        void *arg = w->arg;
        c->wq_head = (c->wq_head + 1) % BS_CONN_MAX_WRITES;
        c->wq_count--;
        if (c->lingering)
            continue; /* pump() starts the drain once all is sent */
        if (cb) {
            cb(c, 0, arg);
            if (c->closed)
                return false;
        }
    }
    return true;
}

/* Makes progress on the queued writes; like do_read, at most
 * BS_CONN_READ_BUDGET bytes in one turn of the loop (a socket that never
 * fills, a queue refilled from the callbacks). */
static bool do_write(struct bs_conn *c)
{
    size_t budget = BS_CONN_READ_BUDGET;

    while (c->wq_count && c->state == CS_OPEN) {
        struct write_op *w = &c->wq[c->wq_head];
        size_t put = 0;
        int r;

        if (budget == 0) {
            uv_idle_start(&c->soon, on_soon); /* the rest: next turn */
            break;
        }
        stage_small(c);
        if (c->stage_len)
            r = SSL_write_ex(c->ssl, c->stage, c->stage_len, &put);
        else
            r = w->len > w->done ? SSL_write_ex(c->ssl, w->buf + w->done, w->len - w->done, &put)
                                 : 1;
        if (r == 1) {
            /* A partial write leaves nothing to retry: the rest of the
             * stage is gathered again from the writes. */
            c->stage_len = 0;
            c->write_wants_read = false;
            budget = put < budget ? budget - put : 0;
            if (!consume(c, put))
                return false;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_WRITE) {
            /* obuf is full: send it, and OpenSSL goes on with the same
             * record. */
            int f = flush_out(c);
            c->write_wants_read = false;
            if (f == 0)
                continue;
            if (f > 0)
                break;
            fail(c, f);
            return false;
        }
        if (e == SSL_ERROR_WANT_READ) {
            c->write_wants_read = true;
            break;
        }
        fail(c, ssl_failure(c, 0, "TLS write"));
        return false;
    }
    return c->state == CS_OPEN && !c->closed;
}

/* Reads, writes, then sends what they produced. */
static void pump(struct bs_conn *c)
{
    int f;

    if (!do_read(c) || !do_write(c))
        return;
    f = flush_out(c);
    if (f < 0) {
        fail(c, f);
        return;
    }
    if (c->lingering && c->wq_count == 0 && f == 0) {
        start_drain(c);
        return;
    }
    update_poll(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct bs_conn *c = h->data;

    if (c->closed)
        return;
    if (c->draining) {
        /* Discard what the peer still sends until it closes too. */
        char sink[16384];
        ssize_t n;
        while ((n = read(c->fd, sink, sizeof(sink))) > 0)
            ;
        if (n == 0 || (errno != EAGAIN && errno != EINTR) || status < 0)
            finish_close(c);
        return;
    }
    if (status < 0) {
        /* libuv reports a socket error (POLLERR) as EBADF; the socket
         * knows what it was (a reset, a refusal). */
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
            err = ECONNRESET;
        fail(c, -err);
        return;
    }
    (void)events;
    if (c->state == CS_HANDSHAKE) {
        do_handshake(c);
        return;
    }
    /* Either direction may unblock the other, so try both. */
    pump(c);
}

/* New reads and writes are not attempted inside the call that asks for
 * them: a completion callback never runs on the caller's stack, and a
 * long run of buffered frames is processed iteratively. */
static void on_soon(uv_idle_t *h)
{
    struct bs_conn *c = h->data;

    uv_idle_stop(h);
    if (c->closed || c->state != CS_OPEN)
        return;
    pump(c);
}

int bs_conn_read(struct bs_conn *c, void *buf, size_t len, bs_conn_cb *cb, void *arg)
{
    if (c->state == CS_FAILED)
        return c->error ? c->error : -EPIPE;
    if (c->rcb || c->state != CS_OPEN)
        return -EBUSY;
    c->rbuf = buf;
    c->rlen = len;
    c->rdone = 0;
    c->rcb = cb;
    c->rarg = arg;
    /* Data may already sit decrypted in OpenSSL's buffer, where poll cannot
     * see it: try on the next loop turn. */
    uv_idle_start(&c->soon, on_soon);
    return 0;
}

int bs_conn_write(struct bs_conn *c, const void *buf, size_t len, bs_conn_cb *cb, void *arg)
{
    if (c->state == CS_FAILED)
        return c->error ? c->error : -EPIPE;
    if (c->state != CS_OPEN)
        return -EBUSY;
    if (c->wq_count == BS_CONN_MAX_WRITES)
        return -ENOBUFS;
    c->wq[(c->wq_head + c->wq_count) % BS_CONN_MAX_WRITES] =
        (struct write_op){ .buf = buf, .len = len, .cb = cb, .arg = arg };
    c->wq_count++;
    if (c->wq_count == 1)
        uv_idle_start(&c->soon, on_soon);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct bs_conn *c = h->data;
    bs_conn_closed_cb *cb;
    void *arg;

    if (--c->open_handles > 0)
        return;
    cb = c->closed_cb;
    arg = c->closed_arg;
    SSL_free(c->ssl);
    close(c->fd);
    free(c->obuf);
    free(c->stage);
    free(c);
    if (cb)
        cb(arg);
}

/* Closing a socket with unread input makes the kernel send a reset, which
 * can destroy what we wrote last (an ERROR frame, a refusing welcome)
 * before the peer reads it.  So: close_notify, shut the write side, and
 * read until the peer closes (bounded by the linger timer). */
static void start_drain(struct bs_conn *c)
{
    c->lingering = false;
    c->draining = true;
    if (c->state == CS_OPEN) {
        SSL_shutdown(c->ssl);
        (void)flush_out(c); /* close_notify: a few bytes into an empty socket buffer */
    }
    shutdown(c->fd, SHUT_WR);
    uv_poll_start(&c->poll, UV_READABLE, on_poll);
    c->events = UV_READABLE;
}

static void finish_close(struct bs_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    c->lingering = false;
    if (c->state == CS_OPEN && !c->draining) {
        SSL_shutdown(c->ssl); /* best effort close_notify; never waits */
        (void)flush_out(c);
    }
    uv_close((uv_handle_t *)&c->poll, on_closed);
    uv_close((uv_handle_t *)&c->linger, on_closed);
    uv_close((uv_handle_t *)&c->soon, on_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    finish_close(t->data);
}

void bs_conn_close(struct bs_conn *c, bool flush, bs_conn_closed_cb *closed_cb, void *arg)
{
    if (!c || c->closed || c->lingering || c->draining)
        return;
    c->closed_cb = closed_cb;
    c->closed_arg = arg;
    c->rcb = NULL;
    c->hs_cb = NULL;
    if (flush && c->state == CS_OPEN) {
        uv_timer_start(&c->linger, on_linger_timeout, BS_CONN_LINGER_MS, 0);
        if (c->wq_count || out_pending(c)) {
            c->lingering = true;
            update_poll(c);
        } else {
            start_drain(c);
        }
        return;
    }
    finish_close(c);
}
