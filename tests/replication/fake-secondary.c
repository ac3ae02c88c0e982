/* fake-secondary: a stand-in for blkship-secondary, for the replication
 * tests of blkship-primary (repl-peer is the stand-in primary that tests the
 * secondary).
 *
 * It listens, accepts the real blkship-primary over TLS 1.3 with mutual
 * authentication (the primary's name verified) and speaks the protocol with
 * the project's own encoders (proto/repl.c, common/crc32c.c).  Each STEP on
 * the command line is one session, in order: the first connection gets the
 * first step, and so on; after the last step it exits.  Every step reads
 * the hello and then answers with a welcome that is either valid or
 * malformed on purpose, and, after a valid one, reads the primary's frames
 * (checking every header and CRC) and misbehaves as the step says.  While
 * it reads it sends a HEARTBEAT every second, so that the primary never
 * drops it for silence.
 *
 * It judges nothing: it reports one fact a line on stdout, flushed at once,
 * for the test to poll and check:
 *
 *   listening: HOST:PORT
 *   accept: step K NAME at T          T: seconds since the start (monotonic)
 *   hello: disk_bytes N max_payload N
 *   epoch: E after N bytes (written|discarded)   an END_EPOCH E arrived
 *   abort: E                          an ABORT_EPOCH E arrived
 *   committed: E covering N bytes     (commit-first: what it made durable)
 *   sent: WHAT                        what the step sent that was not normal
 *   end: step K closed by the primary after T s, F frames N bytes after the welcome
 *   end: step K still open after T s, F frames N bytes after the welcome
 *   end: step K CAUSE                 the step could not run (TLS failed, ...)
 *   done
 *
 * Steps (the welcome is valid unless the step is one of welcome-*):
 *   welcome-payload-0     max_payload 0
 *   welcome-payload-huge  max_payload 16 MiB (over the 8 MiB limit)
 *   welcome-payload-odd   max_payload 4096 + 100 (not a multiple of 512)
 *   welcome-size          disk_bytes of the hello + 512
 *   welcome-magic         a magic that is not BLKSHIP\x1a
 *   welcome-version       a version one above the hello's
 *   welcome-flags         flags 0x8000 (no version defines it)
 *   welcome-zstd          flags BSR_WF_ZSTD, which a hello without offers did not ask for
 *   welcome-length        a length field of 127
 *   welcome-reason        status 0 and a reason of 48 random bytes (binary, no NUL)
 *   welcome-short         64 bytes of a valid welcome, then close_notify
 *   commit-first  writes the frames of the first epoch to --replica,
 *                 fdatasyncs it when its END_EPOCH E arrives, waits
 *                 COMMIT_DELAY_S (the test writes more meanwhile) and sends
 *                 COMMITTED E.  Later epochs are discarded and never
 *                 committed; it goes on reading and heartbeating until it is
 *                 killed or --hold seconds have passed.
 *   commit-future      at the first END_EPOCH E: COMMITTED E + 1 (never ended)
 *   commit-far-future  at the first END_EPOCH E: COMMITTED E + 2^40
 *   commit-past        at the first END_EPOCH: COMMITTED of the first epoch an
 *                      earlier step saw end (an epoch of an earlier session)
 *   commit-early       right after the welcome: COMMITTED of the epoch
 *                      the primary starts then (before its END_EPOCH): the one
 *                      after the last that an earlier step saw end, else
 *                      the one after the hello's
 *   commit-count       at the first END_EPOCH E: COMMITTED E with count 1
 *   commit-bad-crc     at the first END_EPOCH E: COMMITTED E with a spoiled CRC32C
 *   ack             at the first END_EPOCH: ACK 1 (no FLUSH was sent)
 *   kind-data       at the first END_EPOCH: a well-formed DATA frame (8 sectors)
 *   kind-zero       at the first END_EPOCH: a well-formed ZERO frame
 *   kind-flush      at the first END_EPOCH E: a FLUSH frame E
 *   kind-end        at the first END_EPOCH E: an END_EPOCH frame E
 *   truncated       at the first END_EPOCH: 8 bytes of a COMMITTED header,
 *                   then close_notify and close
 *   random          at the first END_EPOCH: 64 random bytes inside TLS
 *   raw-garbage     at the first END_EPOCH: 64 random bytes on the TCP socket,
 *                   under TLS, then close
 *   error-N         at the first END_EPOCH: an ERROR frame with count N
 * After what it sent, a step reads (and discards) frames until the primary
 * closes the connection or --wait seconds have passed.
 *
 * Exit status: 0 when every step ran (whatever the primary did), 1 on a
 * local failure, 2 on a usage error.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/crc32c.h"
#include "proto/repl.h"

#define HDR BSR_FRAME_HDR_LEN
#define CRC BSR_FRAME_CRC_LEN
#define NO_SEQ UINT64_MAX
#define COMMIT_DELAY_S 3.0

static const char *opt_cert, *opt_key, *opt_ca, *opt_peer_name = "primary";
static const char *opt_listen, *opt_replica;
static uint8_t opt_replica_id[BSR_ID_LEN];
static uint32_t opt_max_payload = BSR_DEFAULT_MAX_PAYLOAD;
static unsigned opt_wait = 5, opt_hold = 60, opt_accept_timeout = 60;
static double t_start;
static uint64_t first_seq_seen = NO_SEQ;   /* the first END_EPOCH of any session */
static uint64_t last_seq_seen = NO_SEQ;    /* the last END_EPOCH of any session */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    fputs("fake-secondary: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The reasons OpenSSL queued, "; "-separated, in buf. */
static const char *ssl_reasons(char *buf, size_t size)
{
    unsigned long e;
    size_t used = 0;

    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", one);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* xorshift64: reproducible junk. */
static void fill_random(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
}

/* ---- Listening and TLS ------------------------------------------------------ */

static int listen_on(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
    int fd, one = 1, r;

    if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
        fprintf(stderr, "fake-secondary: '%s' is not HOST:PORT\n", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r != 0)
        die("%s: %s", hostport, gai_strerror(r));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0)
        die("listen on %s: %s", hostport, strerror(errno));
    freeaddrinfo(res);
    say("listening: %s", hostport);
    return fd;
}

static SSL_CTX *make_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[512];

    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, opt_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, opt_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_load_verify_locations(ctx, opt_ca, NULL) != 1)
        goto fail;
    /* As the real secondary: the primary must present a certificate of the
     * CA carrying the configured name. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), opt_peer_name, 0) != 1)
        goto fail;
    return ctx;
fail:
    die("TLS setup: %s", ssl_reasons(why, sizeof(why)));
}

/* ---- One session ------------------------------------------------------------- */

struct session {
    unsigned step;
    int fd;
    SSL *ssl;
    struct bsr_limits limits;   /* what the primary may send */
    uint8_t *buf;               /* one frame: header, payload, CRC */
    size_t len;                 /* bytes of it received */
    bool have_hdr;
    struct bsr_frame f;
    double next_hb;
    uint64_t frames, bytes;     /* DATA and ZERO after the welcome */
    const char *end;            /* why next_frame returned -1 */
    char end_buf[600];
};

/* After an SSL call returned ret: was it only the 200 ms receive timeout
 * (or a write that may be retried)? */
static bool retryable(struct session *s, int ret)
{
    int e = SSL_get_error(s->ssl, ret);

    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
           (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Writes all of buf; false when the connection is gone. */
static bool send_all(struct session *s, const void *buf, size_t len)
{
    double deadline = now_s() + opt_wait;
    size_t done = 0;

    while (done < len) {
        size_t put = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_write_ex(s->ssl, (const char *)buf + done, len - done, &put) != 1) {
            if (retryable(s, 0) && now_s() < deadline)
                continue;
            return false;
        }
        done += put;
    }
    return true;
}

static size_t build_frame(uint8_t *b, uint64_t sector, uint32_t count, uint8_t kind,
                          uint32_t plen, uint32_t crc_xor)
{
    struct bsr_frame f = { .sector = sector, .count = count, .kind = kind };
    uint32_t crc;

    bsr_frame_pack(&f, b);
    memset(b + HDR, 0x5a, plen);
    crc = htole32(crc32c(0, b, HDR + plen) ^ crc_xor);
    memcpy(b + HDR + plen, &crc, CRC);
    return HDR + plen + CRC;
}

static bool send_ctrl(struct session *s, uint8_t kind, uint64_t sector, uint32_t count,
                      uint32_t crc_xor)
{
    uint8_t b[HDR + CRC];

    build_frame(b, sector, count, kind, 0, crc_xor);
    return send_all(s, b, sizeof(b));
}

static void heartbeat_if_due(struct session *s)
{
    double t = now_s();

    if (t < s->next_hb)
        return;
    s->next_hb = t + 1.0;
    send_ctrl(s, BSR_HEARTBEAT, (uint64_t)((t - t_start) * 1000), 0, 0);
}

/* Reads one frame of the primary into s->buf, sending heartbeats
 * meanwhile.  1: a whole, checked frame (s->f); 0: the deadline passed;
 * -1: the connection ended or the primary sent something invalid (s->end
 * says which). */
static int next_frame(struct session *s, double deadline)
{
    for (;;) {
        size_t want = s->have_hdr ? HDR + bsr_frame_payload(&s->f) + CRC : HDR;
        size_t got = 0;
        const char *why = NULL;
        char reasons[512];

        if (!s->have_hdr && s->len == HDR) {
            if (bsr_frame_unpack(s->buf, &s->limits, true, &s->f, &why) < 0) {
                snprintf(s->end_buf, sizeof(s->end_buf), "invalid frame from the primary: %s", why);
                s->end = s->end_buf;
                return -1;
            }
            s->have_hdr = true;
            continue;
        }
        if (s->have_hdr && s->len == want) {
            uint32_t crc;
            memcpy(&crc, s->buf + want - CRC, CRC);
            s->len = 0;
            s->have_hdr = false;
            /* From version 5 a data frame's trailer covers its header only. */
            if (le32toh(crc) != crc32c(0, s->buf, bsr_crc_covers_payload(s->limits.version, s->f.kind)
                                                      ? want - CRC
                                                      : HDR)) {
                s->end = "a frame from the primary with a bad CRC32C";
                return -1;
            }
            return 1;
        }
        heartbeat_if_due(s);
        if (now_s() >= deadline)
            return 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(s->ssl, s->buf + s->len, want - s->len, &got) == 1) {
            s->len += got;
            continue;
        }
        if (retryable(s, 0))
            continue; /* the receive timeout: heartbeat, check the deadline */
        ssl_reasons(reasons, sizeof(reasons));
        snprintf(s->end_buf, sizeof(s->end_buf), "closed by the primary%s%s",
                 reasons[0] ? " (" : "", reasons);
        if (reasons[0])
            strncat(s->end_buf, ")", sizeof(s->end_buf) - strlen(s->end_buf) - 1);
        s->end = s->end_buf;
        return -1;
    }
}

/* Counts a DATA or ZERO frame; for commit-first's first epoch, applies it
 * to the replica. */
static void take_extent(struct session *s, int replica)
{
    static const uint8_t zero[64 << 10];
    uint64_t off = s->f.sector * BSR_SECTOR_SIZE;
    uint64_t len = (uint64_t)s->f.count * BSR_SECTOR_SIZE;

    s->frames++;
    s->bytes += len;
    if (replica < 0)
        return;
    if (s->f.kind == BSR_DATA) {
        if (pwrite(replica, s->buf + HDR, len, (off_t)off) != (ssize_t)len)
            die("writing the replica: %s", strerror(errno));
        return;
    }
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < sizeof(zero) ? (size_t)(len - done) : sizeof(zero);
        if (pwrite(replica, zero, n, (off_t)(off + done)) != (ssize_t)n)
            die("zeroing the replica: %s", strerror(errno));
        done += n;
    }
}

/* Reads frames until the first END_EPOCH; its epoch, or NO_SEQ when the
 * session ended first (reported). */
static uint64_t until_end_epoch(struct session *s, int replica, double deadline)
{
    for (;;) {
        int r = next_frame(s, deadline);
        if (r <= 0)
            return NO_SEQ;
        if (s->f.kind == BSR_DATA || s->f.kind == BSR_ZERO) {
            take_extent(s, replica);
        } else if (s->f.kind == BSR_END_EPOCH) {
            return s->f.sector;
        } else if (s->f.kind == BSR_ABORT_EPOCH) {
            say("abort: %" PRIu64, s->f.sector);
        }
    }
}

/* Reads and discards frames until the primary closes or the deadline. */
static void until_end(struct session *s, double t0, double deadline)
{
    int r;

    while ((r = next_frame(s, deadline)) > 0) {
        if (s->f.kind == BSR_DATA || s->f.kind == BSR_ZERO)
            take_extent(s, -1);
        else if (s->f.kind == BSR_END_EPOCH)
            say("epoch: %" PRIu64 " after %" PRIu64 " bytes (discarded)", s->f.sector, s->bytes);
        else if (s->f.kind == BSR_ABORT_EPOCH)
            say("abort: %" PRIu64, s->f.sector);
    }
    if (r == 0)
        say("end: step %u still open after %.1f s, %" PRIu64 " frames %" PRIu64
            " bytes after the welcome", s->step, now_s() - t0, s->frames, s->bytes);
    else
        say("end: step %u %s after %.1f s, %" PRIu64 " frames %" PRIu64
            " bytes after the welcome", s->step, s->end, now_s() - t0, s->frames, s->bytes);
}

/* The test stops a step that holds the link (commit-first) with SIGTERM: that
 * is the end of the run, not a failure.  The kernel closes the connection
 * without close_notify, as a crashed secondary's would be. */
static void on_sigterm(int sig)
{
    (void)sig;
    _exit(0);
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Sends the welcome the step asks for, valid or malformed, and sets the
 * limits the primary's frames are checked against. */
static void send_welcome(struct session *s, const char *step, const struct bsr_hello *h)
{
    struct bsr_welcome w = { 0 };
    uint8_t b[BSR_WELCOME_LEN];
    size_t len = sizeof(b);

    /* A secondary answers with the version it chose: the primary's, when
     * it speaks that one. */
    w.version = h->version;
    w.status = BSR_OK;
    w.disk_bytes = h->disk_bytes;
    w.max_payload = h->max_payload < opt_max_payload ? h->max_payload : opt_max_payload;
    memcpy(w.replica_id, opt_replica_id, BSR_ID_LEN);
    memcpy(w.primary_id, h->primary_id, BSR_ID_LEN);
    w.generation = h->generation;
    w.epoch = h->epoch;
    if (strcmp(step, "welcome-payload-0") == 0)
        w.max_payload = 0;
    else if (strcmp(step, "welcome-payload-huge") == 0)
        w.max_payload = 2 * BSR_MAX_PAYLOAD_LIMIT;
    else if (strcmp(step, "welcome-payload-odd") == 0)
        w.max_payload = 4096 + 100;
    else if (strcmp(step, "welcome-size") == 0)
        w.disk_bytes += BSR_SECTOR_SIZE;
    else if (strcmp(step, "welcome-version") == 0)
        w.version = (uint16_t)(h->version + 1); /* one the primary did not offer */
    else if (strcmp(step, "welcome-flags") == 0)
        w.flags = 0x8000;
    else if (strcmp(step, "welcome-zstd") == 0)
        w.flags = BSR_WF_ZSTD; /* compressed frames the hello did not offer */
    bsr_welcome_pack(&w, b);
    if (strcmp(step, "welcome-magic") == 0) {
        memcpy(b, "NOTBLKSH", 8);
    } else if (strcmp(step, "welcome-length") == 0) {
        uint32_t bad = htole32(BSR_WELCOME_LEN - 1);
        memcpy(b + 12, &bad, 4);
    } else if (strcmp(step, "welcome-reason") == 0) {
        /* The pack NUL-terminates the reason: spoil it on the wire. */
        fill_random(b + BSR_WELCOME_LEN - BSR_REASON_LEN, BSR_REASON_LEN, 0x7265617330ull);
        b[BSR_WELCOME_LEN - 1] = 0xff;
    } else if (strcmp(step, "welcome-short") == 0) {
        len = 64;
    }
    s->limits.disk_sectors = w.disk_bytes / BSR_SECTOR_SIZE;
    s->limits.max_payload = w.max_payload;
    s->limits.version = h->version;
    if (!send_all(s, b, len))
        say("sent: the welcome failed");
    else if (starts(step, "welcome-"))
        say("sent: %s (status %d, max_payload %u, disk_bytes %" PRIu64 ", %zu bytes)", step,
            w.status, w.max_payload, w.disk_bytes, len);
}

/* commit-first: see the file's comment. */
static void run_commit_first(struct session *s, double t0)
{
    double deadline = t0 + opt_hold;
    uint64_t epoch, durable;
    int replica;

    if (!opt_replica)
        die("commit-first needs --replica");
    replica = open(opt_replica, O_WRONLY | O_CLOEXEC);
    if (replica < 0)
        die("%s: %s", opt_replica, strerror(errno));
    epoch = until_end_epoch(s, replica, deadline);
    if (epoch == NO_SEQ)
        goto out;
    if (fdatasync(replica) < 0)
        die("fdatasync %s: %s", opt_replica, strerror(errno));
    durable = s->bytes;
    say("epoch: %" PRIu64 " after %" PRIu64 " bytes (written)", epoch, durable);
    /* The test writes more now: it goes into the next epoch, which the
     * primary seals only after this one's commit. */
    for (double until = now_s() + COMMIT_DELAY_S; now_s() < until;) {
        heartbeat_if_due(s);
        usleep(50000);
    }
    if (!send_ctrl(s, BSR_COMMITTED, epoch, 0, 0))
        goto out;
    say("committed: %" PRIu64 " covering %" PRIu64 " bytes", epoch, durable);
out:
    close(replica);
    until_end(s, t0, deadline);
}

static void run_step(struct session *s, const char *step)
{
    double t0 = now_s();
    uint8_t hb[BSR_HELLO_LEN], junk[64];
    struct bsr_hello h;
    const char *why = NULL;
    size_t got = 0, done = 0;
    uint64_t seq;
    char reasons[512];

    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_accept(s->ssl);
        if (r == 1)
            break;
        if (retryable(s, r) && now_s() < t0 + opt_wait)
            continue;
        say("end: step %u TLS handshake failed: %s", s->step, ssl_reasons(reasons, sizeof(reasons)));
        return;
    }
    while (done < sizeof(hb)) {
        ERR_clear_error();
        if (SSL_read_ex(s->ssl, hb + done, sizeof(hb) - done, &got) != 1) {
            if (retryable(s, 0) && now_s() < t0 + opt_wait)
                continue;
            say("end: step %u no hello: %s", s->step, ssl_reasons(reasons, sizeof(reasons)));
            return;
        }
        done += got;
    }
    if (bsr_hello_unpack(hb, &h, &why) < 0) {
        say("end: step %u bad hello: %s", s->step, why);
        return;
    }
    say("hello: disk_bytes %" PRIu64 " max_payload %u", h.disk_bytes, h.max_payload);
    send_welcome(s, step, &h);
    if (strcmp(step, "welcome-short") == 0) {
        SSL_shutdown(s->ssl);
        say("end: step %u sent 64 bytes of the welcome and closed", s->step);
        return;
    }
    if (starts(step, "welcome-")) {
        until_end(s, t0, t0 + opt_wait);
        return;
    }
    if (strcmp(step, "commit-first") == 0) {
        run_commit_first(s, t0);
        return;
    }
    if (strcmp(step, "commit-early") == 0) {
        /* Right behind the welcome: the primary reads it while the epoch it
         * starts at the welcome is still being sealed, long before it can
         * have ended it. */
        uint64_t e = last_seq_seen != NO_SEQ ? last_seq_seen + 1 : h.epoch + 1;
        if (!send_ctrl(s, BSR_COMMITTED, e, 0, 0))
            say("sent: the write failed");
        say("sent: COMMITTED %" PRIu64 " after %" PRIu64 " bytes, before any END_EPOCH", e,
            s->bytes);
        until_end(s, t0, t0 + opt_wait);
        return;
    }

    /* Everything else misbehaves at the first END_EPOCH, with the epoch's
     * data received. */
    seq = until_end_epoch(s, -1, t0 + opt_hold);
    if (seq == NO_SEQ) {
        until_end(s, t0, t0 + opt_wait);
        return;
    }
    say("epoch: %" PRIu64 " after %" PRIu64 " bytes (discarded)", seq, s->bytes);
    if (first_seq_seen == NO_SEQ)
        first_seq_seen = seq;
    last_seq_seen = seq;
    bool ok = true;
    if (strcmp(step, "commit-future") == 0) {
        ok = send_ctrl(s, BSR_COMMITTED, seq + 1, 0, 0);
        say("sent: COMMITTED %" PRIu64 " (the epoch ended was %" PRIu64 ")", seq + 1, seq);
    } else if (strcmp(step, "commit-far-future") == 0) {
        ok = send_ctrl(s, BSR_COMMITTED, seq + ((uint64_t)1 << 40), 0, 0);
        say("sent: COMMITTED %" PRIu64 " (the epoch ended was %" PRIu64 ")",
            seq + ((uint64_t)1 << 40), seq);
    } else if (strcmp(step, "commit-past") == 0) {
        if (first_seq_seen == seq)
            die("commit-past needs an earlier step that saw an epoch end");
        ok = send_ctrl(s, BSR_COMMITTED, first_seq_seen, 0, 0);
        say("sent: COMMITTED %" PRIu64 " (the epoch ended was %" PRIu64 ")", first_seq_seen, seq);
    } else if (strcmp(step, "commit-count") == 0) {
        ok = send_ctrl(s, BSR_COMMITTED, seq, 1, 0);
        say("sent: COMMITTED %" PRIu64 " with count 1", seq);
    } else if (strcmp(step, "commit-bad-crc") == 0) {
        ok = send_ctrl(s, BSR_COMMITTED, seq, 0, 0x1);
        say("sent: COMMITTED %" PRIu64 " with a spoiled CRC32C", seq);
    } else if (strcmp(step, "ack") == 0) {
        ok = send_ctrl(s, BSR_ACK, 1, 0, 0);
        say("sent: ACK 1 (no FLUSH was sent)");
    } else if (strcmp(step, "kind-end") == 0) {
        ok = send_ctrl(s, BSR_END_EPOCH, seq, 0, 0);
        say("sent: END_EPOCH %" PRIu64, seq);
    } else if (strcmp(step, "kind-data") == 0) {
        uint8_t b[HDR + 8 * BSR_SECTOR_SIZE + CRC];
        ok = send_all(s, b, build_frame(b, 0, 8, BSR_DATA, 8 * BSR_SECTOR_SIZE, 0));
        say("sent: DATA sector 0 count 8");
    } else if (strcmp(step, "kind-zero") == 0) {
        ok = send_ctrl(s, BSR_ZERO, 0, 8, 0);
        say("sent: ZERO sector 0 count 8");
    } else if (strcmp(step, "kind-flush") == 0) {
        ok = send_ctrl(s, BSR_FLUSH, seq, 0, 0);
        say("sent: FLUSH %" PRIu64, seq);
    } else if (strcmp(step, "truncated") == 0) {
        uint8_t b[HDR + CRC];
        build_frame(b, seq, 0, BSR_COMMITTED, 0, 0);
        ok = send_all(s, b, 8);
        SSL_shutdown(s->ssl);
        say("sent: 8 bytes of a COMMITTED header, then close_notify");
        until_end(s, t0, t0 + opt_wait);
        return;
    } else if (strcmp(step, "random") == 0) {
        fill_random(junk, sizeof(junk), 0x72616e646f6dull);
        ok = send_all(s, junk, sizeof(junk));
        say("sent: %zu random bytes inside TLS", sizeof(junk));
    } else if (strcmp(step, "raw-garbage") == 0) {
        fill_random(junk, sizeof(junk), 0x726177ull);
        ok = write(s->fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk);
        say("sent: %zu random bytes on the TCP socket, under TLS", sizeof(junk));
        /* TLS is broken from here: only the close can be seen. */
        for (double end = t0 + opt_wait; now_s() < end;) {
            struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
            char sink[4096];
            if (poll(&pfd, 1, 200) > 0 && read(s->fd, sink, sizeof(sink)) <= 0) {
                say("end: step %u closed by the primary after %.1f s, %" PRIu64 " frames %" PRIu64
                    " bytes after the welcome", s->step, now_s() - t0, s->frames, s->bytes);
                return;
            }
        }
        say("end: step %u still open after %.1f s", s->step, now_s() - t0);
        return;
    } else if (starts(step, "error-")) {
        uint32_t code = (uint32_t)strtoul(step + 6, NULL, 10);
        ok = send_ctrl(s, BSR_ERROR, 0, code, 0);
        say("sent: ERROR count %u", code);
    } else {
        die("unknown step %s", step);
    }
    if (!ok)
        say("sent: the write failed");
    until_end(s, t0, t0 + opt_wait);
}

static bool known_step(const char *step)
{
    static const char *const names[] = {
        "welcome-payload-0", "welcome-payload-huge", "welcome-payload-odd", "welcome-size",
        "welcome-magic", "welcome-version", "welcome-flags", "welcome-zstd", "welcome-length",
        "welcome-reason",
        "welcome-short", "commit-first", "commit-future", "commit-far-future", "commit-past",
        "commit-early", "commit-count", "commit-bad-crc", "ack", "kind-data", "kind-zero",
        "kind-flush", "kind-end", "truncated", "random", "raw-garbage",
    };
    char *end;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(step, names[i]) == 0)
            return true;
    if (starts(step, "error-") && step[6]) {
        strtoul(step + 6, &end, 10);
        return *end == '\0';
    }
    return false;
}

static unsigned parse_uint(const char *s, const char *what)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || v > 1u << 30) {
        fprintf(stderr, "fake-secondary: bad %s '%s'\n", what, s);
        exit(2);
    }
    return (unsigned)v;
}

static void usage(FILE *f)
{
    fputs("Usage: fake-secondary --listen HOST:PORT --cert F --key F --ca F\n"
          "                      [--peer-name NAME] [--replica-id HEX32] [--replica FILE]\n"
          "                      [--max-payload N] [--wait SEC] [--hold SEC]\n"
          "                      [--accept-timeout SEC] STEP...\n"
          "STEP: welcome-payload-0 welcome-payload-huge welcome-payload-odd welcome-size\n"
          "      welcome-magic welcome-version welcome-flags welcome-zstd welcome-length welcome-reason\n"
          "      welcome-short commit-first commit-future commit-far-future commit-past\n"
          "      commit-early commit-count commit-bad-crc ack kind-data kind-zero kind-flush\n"
          "      kind-end truncated random raw-garbage error-N\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "cert", required_argument, NULL, 'C' },
        { "key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "peer-name", required_argument, NULL, 'P' },
        { "replica-id", required_argument, NULL, 'i' },
        { "replica", required_argument, NULL, 'r' },
        { "max-payload", required_argument, NULL, 'm' },
        { "wait", required_argument, NULL, 'w' },
        { "hold", required_argument, NULL, 'H' },
        { "accept-timeout", required_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt, lfd;
    SSL_CTX *ctx;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l': opt_listen = optarg; break;
        case 'C': opt_cert = optarg; break;
        case 'K': opt_key = optarg; break;
        case 'A': opt_ca = optarg; break;
        case 'P': opt_peer_name = optarg; break;
        case 'r': opt_replica = optarg; break;
        case 'i':
            if (strlen(optarg) != 2 * BSR_ID_LEN ||
                strspn(optarg, "0123456789abcdefABCDEF") != 2 * BSR_ID_LEN) {
                fprintf(stderr, "fake-secondary: --replica-id takes 32 hex digits\n");
                return 2;
            }
            for (int i = 0; i < BSR_ID_LEN; i++) {
                char two[3] = { optarg[2 * i], optarg[2 * i + 1], 0 };
                opt_replica_id[i] = (uint8_t)strtoul(two, NULL, 16);
            }
            break;
        case 'm': opt_max_payload = parse_uint(optarg, "--max-payload"); break;
        case 'w': opt_wait = parse_uint(optarg, "--wait"); break;
        case 'H': opt_hold = parse_uint(optarg, "--hold"); break;
        case 'a': opt_accept_timeout = parse_uint(optarg, "--accept-timeout"); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!opt_listen || !opt_cert || !opt_key || !opt_ca || optind == argc) {
        usage(stderr);
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        if (!known_step(argv[i])) {
            fprintf(stderr, "fake-secondary: unknown step %s\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_sigterm);
    t_start = now_s();
    ctx = make_ctx();
    lfd = listen_on(opt_listen);
    for (int i = optind; i < argc; i++) {
        struct session s = { .step = (unsigned)(i - optind + 1) };
        struct pollfd pfd = { .fd = lfd, .events = POLLIN };
        /* Reads and writes wake every 200 ms to send heartbeats and check
         * deadlines. */
        struct timeval tv = { .tv_usec = 200000 };

        if (poll(&pfd, 1, (int)opt_accept_timeout * 1000) <= 0)
            die("step %u: no connection within %u s", s.step, opt_accept_timeout);
        s.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (s.fd < 0)
            die("accept: %s", strerror(errno));
        say("accept: step %u %s at %.3f", s.step, argv[i], now_s() - t_start);
        setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        s.buf = malloc(HDR + BSR_MAX_PAYLOAD_LIMIT + CRC);
        s.ssl = SSL_new(ctx);
        if (!s.buf || !s.ssl || SSL_set_fd(s.ssl, s.fd) != 1)
            die("out of memory");
        run_step(&s, argv[i]);
        SSL_free(s.ssl);
        close(s.fd);
        free(s.buf);
    }
    close(lfd);
    SSL_CTX_free(ctx);
    say("done");
    return 0;
}
