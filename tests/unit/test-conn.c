/* common/conn.c: TLS over a non-blocking socket on a libuv loop.
 *
 * Two connections on one loop over a socketpair, a throwaway self-signed
 * certificate made in memory (conn.c does no verification of its own; that
 * is tls.c's job).  What is checked: bytes arrive whole and in order, and a
 * reader faced with far more buffered data than it can take in one go
 * still lets the loop's other handles run, in bounded turns: the timers
 * that send heartbeats and notice a dead peer must not wait until a fast
 * sender pauses.  And small writes share records: a queue of frames of a
 * few KiB goes out in full 16 KiB records, not one record per write, still
 * whole, in order, each write completed in order. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <uv.h>

#include "common/conn.h"

#define CHUNK (256u * 1024)          /* one queued write */
#define TOTAL (24u * 1024 * 1024)    /* what the sender queues before anyone reads */
#define RSIZE (64u * 1024)           /* one read */

struct pair {
    uv_loop_t loop;
    SSL_CTX *sctx, *cctx;
    struct bs_conn *rx, *tx;     /* server reads, client writes */
    int handshakes;
    unsigned writes_done;
    uint8_t *out, *in;
    size_t received;
    /* per turn of the loop */
    uv_prepare_t turn;
    size_t at_last_turn, max_turn;
    unsigned turns;
    unsigned writes_at_last_turn, max_writes_turn;
    /* a timer that falls due with the first read */
    uv_timer_t timer;
    bool timer_ran;
    size_t received_when_timer_ran;
    int closed;
};

static SSL_CTX *make_ctx(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), 1);
    if (server) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_NAME *name;

        assert_non_null(key);
        assert_non_null(x);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, key);
        name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1,
                                   -1, 0);
        X509_set_issuer_name(x, name);
        assert_true(X509_sign(x, key, EVP_sha256()) > 0);
        assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
        X509_free(x);
        EVP_PKEY_free(key);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

static void on_handshake(struct bs_conn *c, int status, void *arg)
{
    struct pair *p = arg;

    (void)c;
    assert_int_equal(status, 0);
    p->handshakes++;
}

static void on_written(struct bs_conn *c, int status, void *arg)
{
    struct pair *p = arg;

    (void)c;
    assert_int_equal(status, 0);
    p->writes_done++;
}

static void on_timer(uv_timer_t *t);

static void on_read(struct bs_conn *c, int status, void *arg)
{
    struct pair *p = arg;

    assert_int_equal(status, 0);
    p->received += RSIZE;
    if (p->received == RSIZE) /* due now, in the middle of the reading */
        uv_timer_start(&p->timer, on_timer, 0, 0);
    if (p->received < TOTAL)
        assert_int_equal(bs_conn_read(c, p->in + p->received, RSIZE, on_read, p), 0);
}

static void on_turn(uv_prepare_t *h)
{
    struct pair *p = h->data;
    size_t got = p->received - p->at_last_turn;

    if (got > p->max_turn)
        p->max_turn = got;
    if (got)
        p->turns++;
    p->at_last_turn = p->received;
    if (p->writes_done - p->writes_at_last_turn > p->max_writes_turn)
        p->max_writes_turn = p->writes_done - p->writes_at_last_turn;
    p->writes_at_last_turn = p->writes_done;
}

static void on_timer(uv_timer_t *t)
{
    struct pair *p = t->data;

    p->timer_ran = true;
    p->received_when_timer_ran = p->received;
}

static void on_closed(void *arg)
{
    struct pair *p = arg;

    p->closed++;
}

/* Runs the loop a turn at a time until *flag reaches want (bounded). */
static void run_until(struct pair *p, const unsigned *flag, unsigned want)
{
    for (int i = 0; i < 1000000 && *flag < want; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_true(*flag >= want);
}

/* Closes both ends, runs the loop dry and frees what the pair holds. */
static void pair_close(struct pair *p)
{
    bs_conn_close(p->rx, false, on_closed, p);
    bs_conn_close(p->tx, false, on_closed, p);
    for (int i = 0; i < 100000 && p->closed < 2; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_int_equal(p->closed, 2);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    free(p->out);
    free(p->in);
}

static void test_reader_yields_to_the_loop(void **state)
{
    struct pair p = { 0 };
    int sv[2];
    int big = 64 << 20;
    unsigned n;

    (void)state;
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.sctx = make_ctx(true);
    p.cctx = make_ctx(false);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    /* Room in the socket for everything the sender queues, so that the
     * reader finds all of it waiting: far more than one turn's budget.
     * The forced size needs CAP_NET_ADMIN; the CI runs as root. */
    if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0) {
        fprintf(stderr, "test-conn: SO_SNDBUFFORCE: %s: a socket buffer larger than the "
                        "read budget needs CAP_NET_ADMIN (run as root)\n", strerror(errno));
        exit(77);
    }
    assert_int_equal(bs_conn_new(&p.loop, p.sctx, sv[0], true, "reader", &p.rx), 0);
    assert_int_equal(bs_conn_new(&p.loop, p.cctx, sv[1], false, "writer", &p.tx), 0);
    bs_conn_handshake(p.rx, on_handshake, &p);
    bs_conn_handshake(p.tx, on_handshake, &p);
    run_until(&p, (const unsigned *)&p.handshakes, 2);

    p.out = malloc(TOTAL);
    p.in = malloc(TOTAL);
    assert_non_null(p.out);
    assert_non_null(p.in);
    for (size_t i = 0; i < TOTAL; i++)
        p.out[i] = (uint8_t)(i * 2654435761u >> 13);
    memset(p.in, 0, TOTAL);

    /* Everything goes into the socket before the reader starts.  The
     * queue is encrypted in bounded turns too. */
    uv_prepare_init(&p.loop, &p.turn);
    p.turn.data = &p;
    uv_prepare_start(&p.turn, on_turn);
    n = TOTAL / CHUNK;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(bs_conn_write(p.tx, p.out + (size_t)i * CHUNK, CHUNK, on_written, &p), 0);
    run_until(&p, &p.writes_done, n);
    on_turn(&p.turn);
    fprintf(stderr, "test-conn: at most %u writes of %u KiB encrypted in one turn\n",
            p.max_writes_turn, CHUNK / 1024);
    assert_true(p.max_writes_turn <= 2 * (BS_CONN_READ_BUDGET / CHUNK + 1));
    for (int i = 0; i < 100; i++)
        uv_run(&p.loop, UV_RUN_NOWAIT); /* the last records out of the buffer */
    uv_timer_init(&p.loop, &p.timer);
    p.timer.data = &p;
    assert_int_equal(bs_conn_read(p.rx, p.in, RSIZE, on_read, &p), 0);
    for (int i = 0; i < 1000000 && p.received < TOTAL; i++)
        uv_run(&p.loop, UV_RUN_NOWAIT);
    on_turn(&p.turn);

    assert_int_equal(p.received, TOTAL);
    assert_memory_equal(p.in, p.out, TOTAL);
    /* The timer fell due with the first read: it ran within the turn's
     * budgets, not after the sender's whole backlog. */
    assert_true(p.timer_ran);
    assert_true(p.received_when_timer_ran <= 2 * (BS_CONN_READ_BUDGET + RSIZE));
    /* A turn of the loop reads at most two budgets (and the read that
     * crosses each): one from the idle handle that carries on where the
     * last turn stopped, one from the poll handle seeing the socket still
     * readable. */
    fprintf(stderr, "test-conn: %u turns, at most %zu bytes in one\n", p.turns, p.max_turn);
    assert_true(p.max_turn <= 2 * (BS_CONN_READ_BUDGET + RSIZE));
    assert_true(p.turns >= TOTAL / (2 * (BS_CONN_READ_BUDGET + RSIZE)));

    uv_prepare_stop(&p.turn);
    uv_close((uv_handle_t *)&p.turn, NULL);
    uv_close((uv_handle_t *)&p.timer, NULL);
    pair_close(&p);
}

/* ---- Small writes share records ---------------------------------------- */

#define NSMALL 240u

struct small {
    unsigned next_done;      /* the write whose completion is due next */
    unsigned records;        /* application data records the writer sent */
    bool counting;
};

static struct small small_state;

/* The writer's records, as OpenSSL reports each header it writes. */
static void on_msg(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
                   void *arg)
{
    (void)version;
    (void)len;
    (void)ssl;
    (void)arg;
    if (write_p && type == SSL3_RT_HEADER && small_state.counting &&
        ((const uint8_t *)buf)[0] == SSL3_RT_APPLICATION_DATA)
        small_state.records++;
}

static void on_small_written(struct bs_conn *c, int status, void *arg)
{
    (void)c;
    assert_int_equal(status, 0);
    assert_int_equal((unsigned)(uintptr_t)arg, small_state.next_done);
    small_state.next_done++;
}

static void on_small_read(struct bs_conn *c, int status, void *arg)
{
    (void)c;
    assert_int_equal(status, 0);
    *(bool *)arg = true;
}

/* Write i's size: mostly frames of 4,116 bytes (a 4 KiB payload framed);
 * some empty, some of 40,000 bytes, one of 1 byte. */
static size_t small_size(unsigned i)
{
    if (i % 37 == 5)
        return 0;
    if (i % 53 == 7)
        return 40000;
    if (i == 100)
        return 1;
    return 4116;
}

static void test_small_writes_share_records(void **state)
{
    struct pair p = { 0 };
    int sv[2];
    size_t total = 0, off = 0, frames = 0, large = 0;
    bool got = false;

    (void)state;
    small_state = (struct small){ 0 };
    assert_int_equal(uv_loop_init(&p.loop), 0);
    p.sctx = make_ctx(true);
    p.cctx = make_ctx(false);
    SSL_CTX_set_msg_callback(p.cctx, on_msg);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(bs_conn_new(&p.loop, p.sctx, sv[0], true, "reader", &p.rx), 0);
    assert_int_equal(bs_conn_new(&p.loop, p.cctx, sv[1], false, "writer", &p.tx), 0);
    bs_conn_handshake(p.rx, on_handshake, &p);
    bs_conn_handshake(p.tx, on_handshake, &p);
    run_until(&p, (const unsigned *)&p.handshakes, 2);

    for (unsigned i = 0; i < NSMALL; i++) {
        total += small_size(i);
        large += small_size(i) >= 16384;
        frames += small_size(i) > 0;
    }
    p.out = malloc(total);
    p.in = calloc(1, total);
    assert_non_null(p.out);
    assert_non_null(p.in);
    for (size_t i = 0; i < total; i++)
        p.out[i] = (uint8_t)(i * 2654435761u >> 11);
    small_state.counting = true;
    for (unsigned i = 0; i < NSMALL; i++) {
        assert_int_equal(bs_conn_write(p.tx, p.out + off, small_size(i), on_small_written,
                                       (void *)(uintptr_t)i), 0);
        off += small_size(i);
    }
    assert_int_equal(bs_conn_read(p.rx, p.in, total, on_small_read, &got), 0);
    for (int i = 0; i < 1000000 && !got; i++)
        uv_run(&p.loop, UV_RUN_NOWAIT);
    assert_true(got);
    assert_int_equal(small_state.next_done, NSMALL);
    assert_memory_equal(p.in, p.out, total);
    /* Full records, but for a large write's own last one and the end of
     * the queue; one record per write would have been `frames`. */
    fprintf(stderr, "test-conn: %u writes (%zu non-empty, %zu KiB) in %u records\n", NSMALL,
            frames, total / 1024, small_state.records);
    assert_true(small_state.records <= total / 16384 + 2 * large + 2);
    assert_true(small_state.records < frames / 3);

    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_yields_to_the_loop),
        cmocka_unit_test(test_small_writes_share_records),
    };
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
