/* repl-peer: a stand-in for blkship-primary, for the replication tests.
 *
 * It speaks the replication protocol to blkship-secondary with plain
 * blocking OpenSSL (TLS 1.3, mutual authentication, the secondary's name
 * verified) and the project's own encoders (proto/repl.c, common/crc32c.c),
 * and it sends one well-formed or deliberately malformed exchange per run.
 * It judges nothing: it reports what it sent and what came back, one fact a
 * line on stdout, and ends with exactly one line
 *
 *   result: acked            the FLUSH was acknowledged (case "good")
 *   result: welcome          a welcome with status 0 came and nothing else was asked
 *   result: refused N        the secondary answered the hello with status N
 *   result: error-frame N    the secondary sent an ERROR frame with count N
 *   result: closed           the secondary closed the connection (no ERROR frame)
 *   result: tls-failed       the TLS handshake (or the first read after it) failed
 *   result: timeout          nothing conclusive within --timeout seconds
 *   result: sent             "truncated" cases: the partial frame went out
 *
 * Exit status: 0 when the exchange ran (whatever its outcome), 1 when it
 * could not (no TCP connection, a local error), 2 on a usage error.
 *
 * Cases (CASE HOST:PORT, TLS options before them):
 *   plain       no TLS: sends plaintext garbage, then waits for the close
 *   silent      no TLS: connects, sends nothing, waits for the close
 *   silent-tls  TLS handshake, then nothing (no hello); waits for the close
 *   handshake   TLS and a valid hello; reports the welcome (or the failure)
 *   bad-magic   TLS and a hello whose magic is wrong
 *   size        a hello announcing --disk-bytes + 512 bytes
 *   beyond-end  after a welcome: a DATA header at the last sector, count 2
 *               (header only: the secondary must refuse before the payload)
 *   wrap        a ZERO header at sector 2^64-1, count 2 (sector + count wraps)
 *   count0      a DATA header with count 0
 *   over-limit  a DATA header one sector over the agreed max_payload
 *               (header only)
 *   bad-crc     a whole DATA frame whose CRC32C does not match
 *   truncated   a DATA header and half its payload, then close_notify
 *   truncated-abrupt  the same, then close() without close_notify
 *   unknown-kind     a header of kind BSR_KIND_MAX + 1 (14), which no version
 *                    defines (header only)
 *   wrong-direction  an ACK header, which only the secondary may send
 *   huge-count  a DATA header at sector 0 with count 2^32-1 (header only)
 *   garbage     after the welcome, 64 KiB of random bytes
 *   reset       a DATA header and half its payload, then a TCP reset
 *               (SO_LINGER 0), neither close_notify nor FIN
 *   good        a DATA frame of --pattern at --sector/--count, then FLUSH 1;
 *               waits for ACK 1
 *   zero        a ZERO frame at --sector/--count (any size up to the disk),
 *               then FLUSH 1; waits for ACK 1 and reports how long that
 *               took and how many heartbeats came meanwhile
 *
 * Version 5 (--proto-version 5), compressed frames, each a whole ZDATA
 * frame of --count sectors of --pattern (or what the name says) at
 * --sector:
 *   zdata-garbage   a payload that is no zstd frame
 *   zdata-odd       one that decompresses to 1000 bytes, not whole sectors
 *   zdata-beyond    two sectors at the last sector of the disk
 *   zdata-trailing  a valid frame with 8 bytes after it
 *   zdata-big       one that decompresses to a sector over the payload limit
 *   zdata-unagreed  a valid one in a session whose hello did not offer them
 *                   (without --compress)
 * and with --compress, the epochs case sends its DATA frames as ZDATA.
 *
 * Version 2 (--proto-version 2), epochs:
 *   epochs      --epochs N epochs numbered from --first-epoch F: epoch e is
 *               --frames K DATA frames of --count sectors each, contiguous
 *               from --sector, every byte (0x10 + e) & 0xff, then
 *               END_EPOCH e; each waits for COMMITTED e ("recv: COMMITTED
 *               e") before the next.  Ends "result: committed LAST".  Then,
 *               with --partial M: M frames of epoch F + N ("sent: partial
 *               epoch X, M frames"), and with --abort ABORT_EPOCH X and an
 *               empty END_EPOCH X + 1 waited for; without --abort the peer
 *               holds the link until --timeout ("result: partial").
 *
 * And one case without TLS that takes --count as a number of connections:
 *   hold        opens COUNT TCP connections that send nothing, prints
 *               "held: COUNT" once all are open, and keeps them until
 *               --timeout; ends with "result: held COUNT closed K", K being
 *               how many the secondary closed meanwhile
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
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
#include <zstd.h>
#include "proto/repl.h"

static const char *opt_cert, *opt_key, *opt_ca, *opt_peer_name = "secondary";
static uint64_t opt_disk_bytes;
static uint32_t opt_max_payload = BSR_DEFAULT_MAX_PAYLOAD;
static uint64_t opt_sector = 0;
static uint32_t opt_count = 8;
static int opt_pattern = 0xa5;
static bool opt_compress;          /* --compress: the hello offers ZDATA frames */
static unsigned agreed_version = 1; /* the welcome's: what a trailer's CRC covers */
static unsigned opt_version = 1; /* the protocol version the hello offers */
static unsigned opt_timeout = 10;
static uint64_t opt_epochs = 3, opt_first_epoch = 1;
static uint32_t opt_frames = 4, opt_partial = 0;
static bool opt_abort = false;
static uint8_t opt_primary_id[BSR_ID_LEN] = {
    0x72, 0x65, 0x70, 0x6c, 0x2d, 0x70, 0x65, 0x65, 0x72, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
};

static void usage(FILE *f)
{
    fputs("Usage: repl-peer plain|silent HOST:PORT\n"
          "       repl-peer --cert F --key F --ca F [--peer-name NAME] [--no-cert]\n"
          "                 [--disk-bytes N] [--max-payload N] [--primary-id HEX32]\n"
          "                 [--sector S] [--count C] [--pattern BYTE] [--timeout SEC] [--proto-version N]\n"
          "                 CASE HOST:PORT\n"
          "CASE: handshake silent-tls bad-magic size beyond-end wrap count0 over-limit\n"
          "      unknown-kind wrong-direction huge-count garbage reset bad-crc truncated\n"
          "      truncated-abrupt good zero\n"
          "      zdata-garbage zdata-odd zdata-beyond zdata-trailing zdata-big zdata-unagreed\n"
          "                 (version 5; --compress offers compressed frames)\n"
          "       epochs [--epochs N] [--first-epoch F] [--frames K] [--partial M] [--abort]\n"
          "       repl-peer [--count N] [--timeout SEC] hold HOST:PORT\n",
          f);
}

static void result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void result(const char *fmt, ...)
{
    va_list ap;

    fputs("result: ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

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

/* The reasons OpenSSL queued, "; "-separated, in buf. */
static const char *ssl_reasons(char *buf, size_t size)
{
    unsigned long e;
    size_t used = 0;

    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        const char *r = strrchr(one, ':');
        int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", r ? r + 1 : one);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

static int tcp_connect(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    struct timeval tv = { .tv_sec = opt_timeout };
    int fd, r;

    if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
        fprintf(stderr, "repl-peer: '%s' is not HOST:PORT\n", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "repl-peer: %s: %s\n", hostport, gai_strerror(r));
        exit(1);
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        fprintf(stderr, "repl-peer: connect %s: %s\n", hostport, strerror(errno));
        exit(1);
    }
    freeaddrinfo(res);
    /* Every read is bounded: a silent secondary ends in "result: timeout". */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    say("tcp: connected to %s", hostport);
    return fd;
}

/* ---- plain ------------------------------------------------------------------ */

static int run_plain(const char *hostport)
{
    static const char garbage[] = "GET / HTTP/1.0\r\nthis is not TLS\r\n\r\n";
    char buf[4096];
    int fd = tcp_connect(hostport);
    ssize_t n;
    size_t total = 0;

    if (write(fd, garbage, sizeof(garbage) - 1) < 0)
        say("write: %s", strerror(errno));
    else
        say("sent: %zu bytes of plaintext", sizeof(garbage) - 1);
    /* Whatever the secondary answers (a TLS alert, nothing), it must close. */
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    say("received: %zu bytes before the end", total);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        result("timeout");
    else
        result("closed");
    close(fd);
    return 0;
}

/* ---- silent -------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Connects and sends nothing: how long until the secondary lets go? */
static int run_silent(const char *hostport)
{
    char buf[4096];
    double t0;
    int fd = tcp_connect(hostport);
    ssize_t n;

    t0 = now_s();
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        say("silent: still connected after %.1f s", now_s() - t0);
        result("timeout");
    } else {
        say("silent: the secondary closed the connection after %.1f s", now_s() - t0);
        result("closed");
    }
    close(fd);
    return 0;
}

/* Opens opt_count silent connections and counts how many the secondary
 * closes before the timeout. */
static int run_hold(const char *hostport)
{
    unsigned n = opt_count, closed = 0;
    struct pollfd *fds = calloc(n ? n : 1, sizeof(*fds));
    double end;

    if (!fds)
        return 1;
    for (unsigned i = 0; i < n; i++) {
        fds[i].fd = tcp_connect(hostport);
        fds[i].events = POLLIN;
    }
    say("held: %u", n);
    end = now_s() + opt_timeout;
    while (closed < n && now_s() < end) {
        int r = poll(fds, n, (int)((end - now_s()) * 1000) + 1);
        if (r <= 0)
            continue;
        for (unsigned i = 0; i < n; i++) {
            char buf[512];
            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            if (read(fds[i].fd, buf, sizeof(buf)) <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                closed++;
            }
        }
    }
    for (unsigned i = 0; i < n; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    free(fds);
    result("held %u closed %u", n, closed);
    return 0;
}

/* ---- TLS ------------------------------------------------------------------- */

struct peer {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct bsr_limits limits;   /* what the secondary accepted */
    unsigned heartbeats;        /* HEARTBEAT frames received */
};

static SSL_CTX *make_ctx(bool with_cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[512];

    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (with_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, opt_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, opt_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, opt_ca, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), opt_peer_name, 0) != 1)
        goto fail;
    return ctx;
fail:
    fprintf(stderr, "repl-peer: TLS setup: %s\n", ssl_reasons(why, sizeof(why)));
    exit(1);
}

/* Classifies a failed SSL call: prints the reason and the result line. */
static void report_ssl_failure(struct peer *p, int ret, const char *during)
{
    int e = SSL_get_error(p->ssl, ret);
    char why[512];

    ssl_reasons(why, sizeof(why));
    if (e == SSL_ERROR_ZERO_RETURN) {
        say("%s: the secondary sent close_notify", during);
        result("closed");
    } else if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
                (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) &&
               !why[0]) {
        say("%s: nothing within %u s", during, opt_timeout);
        result("timeout");
    } else if (why[0] && (strstr(why, "alert") || strstr(why, "certificate") ||
                          SSL_is_init_finished(p->ssl) == 0)) {
        /* A TLS alert: with TLS 1.3 the client finishes its side of the
         * handshake before the server has judged the client's certificate,
         * so a rejection shows up on the first read. */
        say("%s: TLS failure: %s", during, why);
        result("tls-failed");
    } else if (e == SSL_ERROR_SYSCALL || (why[0] && strstr(why, "unexpected eof"))) {
        say("%s: connection ended without close_notify%s%s", during, why[0] ? ": " : "", why);
        result("closed");
    } else {
        say("%s: SSL error %d: %s", during, e, why[0] ? why : "(none queued)");
        result("closed");
    }
}

static bool tls_start(struct peer *p, const char *hostport, bool with_cert)
{
    int r;

    p->fd = tcp_connect(hostport);
    p->ctx = make_ctx(with_cert);
    p->ssl = SSL_new(p->ctx);
    if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1) {
        fprintf(stderr, "repl-peer: SSL_new failed\n");
        exit(1);
    }
    SSL_set_tlsext_host_name(p->ssl, opt_peer_name);
    r = SSL_connect(p->ssl);
    if (r != 1) {
        long v = SSL_get_verify_result(p->ssl);
        if (v != X509_V_OK)
            say("tls: our verification of the secondary failed: %s",
                X509_verify_cert_error_string(v));
        report_ssl_failure(p, r, "tls handshake");
        return false;
    }
    say("tls: handshake done (%s), secondary verified as %s", SSL_get_version(p->ssl),
        opt_peer_name);
    return true;
}

static void tls_end(struct peer *p, bool notify)
{
    if (notify)
        SSL_shutdown(p->ssl);
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    close(p->fd);
}

/* Writes all of buf; false on failure, with the result line printed
 * unless `quiet` (the caller then reads, to learn why: a rejected
 * certificate shows as an alert waiting to be read). */
static bool send_some(struct peer *p, const void *buf, size_t len, const char *what, bool quiet)
{
    size_t done = 0;

    while (done < len) {
        size_t put = 0;
        int r = SSL_write_ex(p->ssl, (const char *)buf + done, len - done, &put);
        if (r != 1) {
            if (quiet) {
                char why[512];
                say("%s: failed (SSL error %d%s%s)", what, SSL_get_error(p->ssl, r),
                    ssl_reasons(why, sizeof(why))[0] ? ": " : "", why);
            } else {
                report_ssl_failure(p, r, what);
            }
            return false;
        }
        done += put;
    }
    return true;
}

static bool send_all(struct peer *p, const void *buf, size_t len, const char *what)
{
    return send_some(p, buf, len, what, false);
}

/* Reads exactly len bytes; false (with the result line printed) on failure. */
static bool recv_all(struct peer *p, void *buf, size_t len, const char *what)
{
    size_t done = 0;

    while (done < len) {
        size_t got = 0;
        int r;
        errno = 0;
        r = SSL_read_ex(p->ssl, (char *)buf + done, len - done, &got);
        if (r != 1) {
            if (done)
                say("%s: %zu of %zu bytes before the end", what, done, len);
            report_ssl_failure(p, r, what);
            return false;
        }
        done += got;
    }
    return true;
}

static void send_hello(struct peer *p, uint64_t disk_bytes, bool bad_magic)
{
    struct bsr_hello h = { 0 };
    uint8_t buf[BSR_HELLO_LEN];

    h.version = (uint16_t)opt_version;
    h.disk_bytes = disk_bytes;
    h.sector_size = BSR_SECTOR_SIZE;
    h.max_payload = opt_max_payload;
    memcpy(h.primary_id, opt_primary_id, BSR_ID_LEN);
    h.generation = 1;
    h.offers = opt_compress ? BSR_HO_ZSTD : 0;
    bsr_hello_pack(&h, buf);
    if (bad_magic)
        memcpy(buf, "NOTBLKSH", 8);
    if (send_some(p, buf, sizeof(buf), "sending the hello", true))
        say("sent: hello (disk_bytes %" PRIu64 ", max_payload %u%s)", disk_bytes,
            opt_max_payload, bad_magic ? ", bad magic" : "");
}

/* Reads the welcome.  Returns true when it accepted the session. */
static bool read_welcome(struct peer *p)
{
    uint8_t buf[BSR_WELCOME_LEN];
    struct bsr_welcome w;
    const char *why = NULL;

    if (!recv_all(p, buf, sizeof(buf), "reading the welcome"))
        return false;
    if (bsr_welcome_unpack(buf, &w, &why) < 0) {
        say("welcome: malformed: %s", why);
        result("closed");
        return false;
    }
    say("welcome: status %d (%s) disk_bytes %" PRIu64 " max_payload %u reason \"%s\"", w.status,
        bsr_status_str(w.status), w.disk_bytes, w.max_payload, w.reason);
    say("welcome: version %u epoch %" PRIu64, w.version, w.epoch);
    say("welcome: flags 0x%x", w.flags);
    agreed_version = w.version;
    if (w.status != BSR_OK) {
        result("refused %d", w.status);
        return false;
    }
    p->limits.disk_sectors = w.disk_bytes / BSR_SECTOR_SIZE;
    p->limits.max_payload = w.max_payload;
    p->limits.version = w.version;
    return true;
}

/* Reads frames from the secondary until an ERROR, the wanted ACK, the end
 * of the connection or the timeout; heartbeats are reported and skipped. */
static void read_answers2(struct peer *p, bool want_ack, uint64_t ack_seq, uint64_t want_committed,
                          bool *got_committed);

static void read_answers(struct peer *p, bool want_ack, uint64_t ack_seq)
{
    read_answers2(p, want_ack, ack_seq, 0, NULL);
}

/* The same, also ending at COMMITTED want_committed (sets *got_committed;
 * no result line then). */
static void read_answers2(struct peer *p, bool want_ack, uint64_t ack_seq, uint64_t want_committed,
                          bool *got_committed)
{
    for (;;) {
        uint8_t hdr[BSR_FRAME_HDR_LEN], trailer[BSR_FRAME_CRC_LEN];
        struct bsr_frame f;
        const char *why = NULL;
        uint32_t crc;

        if (!recv_all(p, hdr, sizeof(hdr), "reading a frame"))
            return;
        if (bsr_frame_unpack(hdr, &p->limits, false, &f, &why) < 0) {
            say("recv: invalid frame from the secondary: %s", why);
            result("closed");
            return;
        }
        if (!recv_all(p, trailer, sizeof(trailer), "reading a frame's CRC"))
            return;
        memcpy(&crc, trailer, 4);
        if (le32toh(crc) != crc32c(0, hdr, sizeof(hdr))) {
            say("recv: frame kind %u with a bad CRC32C", f.kind);
            result("closed");
            return;
        }
        switch (f.kind) {
        case BSR_HEARTBEAT:
            say("recv: HEARTBEAT");
            p->heartbeats++;
            continue;
        case BSR_ACK:
            say("recv: ACK %" PRIu64, f.sector);
            if (want_ack && f.sector == ack_seq) {
                result("acked");
                return;
            }
            continue;
        case BSR_COMMITTED:
            say("recv: COMMITTED %" PRIu64, f.sector);
            if (got_committed && f.sector == want_committed) {
                *got_committed = true;
                return;
            }
            continue;
        case BSR_ERROR:
            /* count is "enum bsr_status or errno": print both readings. */
            say("recv: ERROR count %u (as a status: %s; as an errno: %s)", f.count,
                bsr_status_str((int)f.count), strerror((int)f.count));
            result("error-frame %u", f.count);
            return;
        default:
            say("recv: unexpected kind %u", f.kind);
            continue;
        }
    }
}

/* A frame: header, payload (DATA), CRC32C; crc_xor spoils the CRC. */
static size_t build_frame(uint8_t *buf, uint64_t sector, uint32_t count, uint8_t kind,
                          const uint8_t *payload, uint32_t plen, uint32_t crc_xor)
{
    struct bsr_frame f = { .sector = sector, .count = count, .kind = kind };
    uint32_t crc;

    bsr_frame_pack(&f, buf);
    if (plen)
        memcpy(buf + BSR_FRAME_HDR_LEN, payload, plen);
    crc = htole32(crc32c(0, buf, BSR_FRAME_HDR_LEN +
                                     (bsr_crc_covers_payload((uint16_t)agreed_version, kind) ? plen
                                                                                              : 0)) ^
                  crc_xor);
    memcpy(buf + BSR_FRAME_HDR_LEN + plen, &crc, BSR_FRAME_CRC_LEN);
    return BSR_FRAME_HDR_LEN + plen + BSR_FRAME_CRC_LEN;
}

static uint8_t epoch_pattern(uint64_t e)
{
    return (uint8_t)((0x10 + e) & 0xff);
}

/* Sends frames DATA frames of epoch e (its pattern); false on failure. */
static bool send_epoch_frames(struct peer *p, uint64_t e, uint32_t frames, uint8_t *frame,
                              uint8_t *payload)
{
    uint32_t plen = opt_count * BSR_SECTOR_SIZE;

    memset(payload, epoch_pattern(e), plen);
    for (uint32_t i = 0; i < frames; i++) {
        size_t len;
        if (opt_compress) {
            /* ZDATA: the same payload as one zstd frame. */
            static uint8_t z[BSR_MAX_PAYLOAD_LIMIT + 4096];
            size_t n = ZSTD_compress(z, sizeof(z), payload, plen, 3);
            if (ZSTD_isError(n))
                exit(1);
            len = build_frame(frame, opt_sector + (uint64_t)i * opt_count, (uint32_t)n, BSR_ZDATA,
                              z, (uint32_t)n, 0);
        } else {
            len = build_frame(frame, opt_sector + (uint64_t)i * opt_count, opt_count, BSR_DATA,
                              payload, plen, 0);
        }
        if (!send_all(p, frame, len, "sending a DATA frame"))
            return false;
    }
    return true;
}

/* Sends a control frame of kind for epoch e; false on failure. */
static bool send_epoch_control(struct peer *p, uint8_t kind, uint64_t e, uint8_t *frame)
{
    size_t len = build_frame(frame, e, 0, kind, NULL, 0, 0);

    if (!send_all(p, frame, len, kind == BSR_END_EPOCH ? "sending END_EPOCH" : "sending ABORT_EPOCH"))
        return false;
    say("sent: %s %" PRIu64, kind == BSR_END_EPOCH ? "END_EPOCH" : "ABORT_EPOCH", e);
    return true;
}

/* END_EPOCH e and the wait for its COMMITTED; false (result printed) if
 * it did not come. */
static bool commit_epoch(struct peer *p, uint64_t e, uint8_t *frame)
{
    bool got = false;

    if (!send_epoch_control(p, BSR_END_EPOCH, e, frame))
        return false;
    read_answers2(p, false, 0, e, &got);
    return got;
}

static void run_epochs(struct peer *p)
{
    uint32_t plen = opt_count * BSR_SECTOR_SIZE;
    uint8_t *frame = malloc(BSR_FRAME_HDR_LEN + (size_t)plen + BSR_FRAME_CRC_LEN);
    uint8_t *payload = malloc(plen);
    uint64_t e = opt_first_epoch, last = opt_first_epoch + opt_epochs;

    if (!frame || !payload)
        exit(1);
    for (; e < last; e++) {
        if (!send_epoch_frames(p, e, opt_frames, frame, payload))
            goto out;
        say("sent: epoch %" PRIu64 ", %u frames of byte 0x%02x", e, opt_frames, epoch_pattern(e));
        if (!commit_epoch(p, e, frame))
            goto out;
    }
    if (opt_epochs)
        say("committed: %" PRIu64, last - 1);
    if (!opt_partial && !opt_abort) {
        result("committed %" PRIu64, last - 1);
        goto out;
    }
    if (!send_epoch_frames(p, e, opt_partial, frame, payload))
        goto out;
    say("sent: partial epoch %" PRIu64 ", %u frames", e, opt_partial);
    if (!opt_abort) {
        /* Held open: the test kills the secondary meanwhile. */
        read_answers(p, false, 0);
        goto out;
    }
    if (!send_epoch_control(p, BSR_ABORT_EPOCH, e, frame) || !commit_epoch(p, e + 1, frame))
        goto out;
    result("committed %" PRIu64, e + 1);
out:
    free(frame);
    free(payload);
}

static int run_tls(const char *c, const char *hostport, bool with_cert)
{
    struct peer p = { 0 };
    uint8_t hdr[BSR_FRAME_HDR_LEN];
    uint64_t disk = opt_disk_bytes;

    if (!tls_start(&p, hostport, with_cert))
        return 0;
    if (strcmp(c, "silent-tls") == 0) {
        /* Authenticated, then silent: no hello. */
        char buf[1];
        double t0 = now_s();
        if (recv_all(&p, buf, 1, "waiting after the handshake"))
            result("closed");
        say("silent-tls: ended after %.1f s", now_s() - t0);
        tls_end(&p, false);
        return 0;
    }
    if (strcmp(c, "bad-magic") == 0) {
        send_hello(&p, disk, true);
        read_welcome(&p);
        tls_end(&p, true);
        return 0;
    }
    if (strcmp(c, "size") == 0)
        disk += BSR_SECTOR_SIZE;
    send_hello(&p, disk, false);
    if (!read_welcome(&p)) {
        tls_end(&p, true);
        return 0;
    }
    if (strcmp(c, "handshake") == 0 || strcmp(c, "size") == 0) {
        result("welcome");
        tls_end(&p, true);
        return 0;
    }
    if (strcmp(c, "epochs") == 0) {
        run_epochs(&p);
        tls_end(&p, true);
        return 0;
    }

    uint64_t last = p.limits.disk_sectors;
    struct bsr_frame f = { 0 };
    if (strcmp(c, "beyond-end") == 0) {
        f = (struct bsr_frame){ .sector = last - 1, .count = 2, .kind = BSR_DATA };
    } else if (strcmp(c, "wrap") == 0) {
        f = (struct bsr_frame){ .sector = UINT64_MAX, .count = 2, .kind = BSR_ZERO };
    } else if (strcmp(c, "count0") == 0) {
        f = (struct bsr_frame){ .sector = 8, .count = 0, .kind = BSR_DATA };
    } else if (strcmp(c, "over-limit") == 0) {
        f = (struct bsr_frame){ .sector = 0, .count = p.limits.max_payload / BSR_SECTOR_SIZE + 1,
                                .kind = BSR_DATA };
    } else if (strcmp(c, "unknown-kind") == 0) {
        f = (struct bsr_frame){ .sector = 0, .count = 0, .kind = BSR_KIND_MAX + 1 };
    } else if (strcmp(c, "wrong-direction") == 0) {
        f = (struct bsr_frame){ .sector = 1, .count = 0, .kind = BSR_ACK };
    } else if (strcmp(c, "huge-count") == 0) {
        f = (struct bsr_frame){ .sector = 0, .count = UINT32_MAX, .kind = BSR_DATA };
    }
    if (f.kind) {
        /* The header alone: the secondary must judge it before reading on. */
        bsr_frame_pack(&f, hdr);
        if (!send_all(&p, hdr, sizeof(hdr), "sending the header"))
            goto out;
        say("sent: header sector %" PRIu64 " count %u kind %u", f.sector, f.count, f.kind);
        read_answers(&p, false, 0);
        goto out;
    }

    /* A ZERO frame has no payload, whatever its count. */
    uint32_t plen = strcmp(c, "zero") == 0 ? 0 : opt_count * BSR_SECTOR_SIZE;
    uint8_t *frame = malloc(BSR_FRAME_HDR_LEN + (size_t)plen + BSR_FRAME_CRC_LEN);
    uint8_t *payload = malloc(plen ? plen : 1);
    if (!frame || !payload)
        exit(1);
    memset(payload, opt_pattern, plen);
    if (strncmp(c, "zdata-", 6) == 0) {
        /* Malformed compressed frames (or one the session did not agree to). */
        static uint8_t src[BSR_MAX_PAYLOAD_LIMIT], z[BSR_MAX_PAYLOAD_LIMIT + 4096];
        static uint8_t zf[BSR_FRAME_HDR_LEN + sizeof(z) + BSR_FRAME_CRC_LEN];
        uint64_t sector = opt_sector;
        size_t slen = plen, n;
        memset(src, opt_pattern, sizeof(src));
        if (strcmp(c, "zdata-odd") == 0)
            slen = 1000; /* not whole sectors */
        if (strcmp(c, "zdata-beyond") == 0) {
            sector = last - 1;
            slen = 2 * BSR_SECTOR_SIZE;
        }
        n = ZSTD_compress(z, sizeof(z), src, slen, 3);
        if (ZSTD_isError(n))
            exit(1);
        if (strcmp(c, "zdata-garbage") == 0) {
            memset(z, opt_pattern, 64);
            n = 64;
        } else if (strcmp(c, "zdata-trailing") == 0) {
            memset(z + n, 0, 8);
            n += 8;
        } else if (strcmp(c, "zdata-big") == 0) {
            /* Decompresses to one sector more than the payload limit. */
            n = ZSTD_compress(z, sizeof(z), src, p.limits.max_payload + BSR_SECTOR_SIZE, 3);
        }
        size_t len = build_frame(zf, sector, (uint32_t)n, BSR_ZDATA, z, (uint32_t)n, 0);
        if (send_all(&p, zf, len, "sending the frame")) {
            say("sent: ZDATA sector %" PRIu64 ", %zu bytes for %zu", sector, n, slen);
            read_answers(&p, false, 0);
        }
    } else if (strcmp(c, "bad-crc") == 0) {
        size_t len = build_frame(frame, opt_sector, opt_count, BSR_DATA, payload, plen, 0x1);
        if (send_all(&p, frame, len, "sending the frame")) {
            say("sent: DATA sector %" PRIu64 " count %u with a spoiled CRC32C", opt_sector,
                opt_count);
            read_answers(&p, false, 0);
        }
    } else if (strcmp(c, "truncated") == 0 || strcmp(c, "truncated-abrupt") == 0) {
        bool notify = strcmp(c, "truncated") == 0;
        size_t len = build_frame(frame, opt_sector, opt_count, BSR_DATA, payload, plen, 0);
        size_t part = BSR_FRAME_HDR_LEN + plen / 2;
        if (send_all(&p, frame, part, "sending part of a frame")) {
            (void)len;
            say("sent: DATA sector %" PRIu64 " count %u: header and %u of %u payload bytes, then %s",
                opt_sector, opt_count, plen / 2, plen,
                notify ? "close_notify and close" : "close without close_notify");
            result("sent");
        }
        free(frame);
        free(payload);
        tls_end(&p, notify);
        return 0;
    } else if (strcmp(c, "garbage") == 0) {
        static uint8_t junk[64 << 10];
        uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            junk[i] = (uint8_t)x;
        }
        /* The secondary may stop reading at the first bad header, so a
         * failed send is expected: what it answers is the result. */
        if (send_some(&p, junk, sizeof(junk), "sending random bytes", true))
            say("sent: %zu random bytes", sizeof(junk));
        read_answers(&p, false, 0);
    } else if (strcmp(c, "reset") == 0) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        build_frame(frame, opt_sector, opt_count, BSR_DATA, payload, plen, 0);
        if (send_all(&p, frame, BSR_FRAME_HDR_LEN + plen / 2, "sending part of a frame")) {
            say("sent: DATA sector %" PRIu64 " count %u: header and %u of %u payload bytes, "
                "then a TCP reset", opt_sector, opt_count, plen / 2, plen);
            result("sent");
        }
        setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        free(frame);
        free(payload);
        tls_end(&p, false);
        return 0;
    } else if (strcmp(c, "good") == 0) {
        size_t len = build_frame(frame, opt_sector, opt_count, BSR_DATA, payload, plen, 0);
        if (send_all(&p, frame, len, "sending the frame")) {
            say("sent: DATA sector %" PRIu64 " count %u of byte 0x%02x", opt_sector, opt_count,
                opt_pattern);
            len = build_frame(frame, 1, 0, BSR_FLUSH, NULL, 0, 0);
            if (send_all(&p, frame, len, "sending FLUSH")) {
                say("sent: FLUSH 1");
                read_answers(&p, true, 1);
            }
        }
    } else if (strcmp(c, "zero") == 0) {
        size_t len = build_frame(frame, opt_sector, opt_count, BSR_ZERO, NULL, 0, 0);
        double t0 = now_s();
        if (send_all(&p, frame, len, "sending the frame")) {
            say("sent: ZERO sector %" PRIu64 " count %u", opt_sector, opt_count);
            len = build_frame(frame, 1, 0, BSR_FLUSH, NULL, 0, 0);
            if (send_all(&p, frame, len, "sending FLUSH")) {
                say("sent: FLUSH 1");
                p.heartbeats = 0;
                read_answers(&p, true, 1);
                say("zero: answered after %.2f s, %u heartbeats meanwhile", now_s() - t0,
                    p.heartbeats);
            }
        }
    } else {
        fprintf(stderr, "repl-peer: unknown case %s\n", c);
        exit(2);
    }
    free(frame);
    free(payload);
out:
    tls_end(&p, true);
    return 0;
}

static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "repl-peer: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "cert", required_argument, NULL, 'C' },
        { "key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "peer-name", required_argument, NULL, 'P' },
        { "no-cert", no_argument, NULL, 'N' },
        { "disk-bytes", required_argument, NULL, 'd' },
        { "max-payload", required_argument, NULL, 'm' },
        { "primary-id", required_argument, NULL, 'i' },
        { "sector", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'c' },
        { "pattern", required_argument, NULL, 'p' },
        { "proto-version", required_argument, NULL, 'V' },
        { "compress", no_argument, NULL, 'z' },
        { "timeout", required_argument, NULL, 't' },
        { "epochs", required_argument, NULL, 'E' },
        { "first-epoch", required_argument, NULL, 'F' },
        { "frames", required_argument, NULL, 'k' },
        { "partial", required_argument, NULL, 'M' },
        { "abort", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool with_cert = true;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'C': opt_cert = optarg; break;
        case 'K': opt_key = optarg; break;
        case 'A': opt_ca = optarg; break;
        case 'P': opt_peer_name = optarg; break;
        case 'N': with_cert = false; break;
        case 'd': opt_disk_bytes = parse_u64(optarg, "--disk-bytes"); break;
        case 'm': opt_max_payload = (uint32_t)parse_u64(optarg, "--max-payload"); break;
        case 'i':
            if (strlen(optarg) != 2 * BSR_ID_LEN) {
                fprintf(stderr, "repl-peer: --primary-id takes 32 hex digits\n");
                return 2;
            }
            for (int i = 0; i < BSR_ID_LEN; i++) {
                char two[3] = { optarg[2 * i], optarg[2 * i + 1], 0 };
                opt_primary_id[i] = (uint8_t)strtoul(two, NULL, 16);
            }
            break;
        case 's': opt_sector = parse_u64(optarg, "--sector"); break;
        case 'c': opt_count = (uint32_t)parse_u64(optarg, "--count"); break;
        case 'p': opt_pattern = (int)parse_u64(optarg, "--pattern") & 0xff; break;
        case 'z': opt_compress = true; break;
        case 'V': opt_version = (unsigned)parse_u64(optarg, "--proto-version"); break;
        case 't': opt_timeout = (unsigned)parse_u64(optarg, "--timeout"); break;
        case 'E': opt_epochs = parse_u64(optarg, "--epochs"); break;
        case 'F': opt_first_epoch = parse_u64(optarg, "--first-epoch"); break;
        case 'k': opt_frames = (uint32_t)parse_u64(optarg, "--frames"); break;
        case 'M': opt_partial = (uint32_t)parse_u64(optarg, "--partial"); break;
        case 'a': opt_abort = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[optind], "plain") == 0)
        return run_plain(argv[optind + 1]);
    if (strcmp(argv[optind], "silent") == 0)
        return run_silent(argv[optind + 1]);
    if (strcmp(argv[optind], "hold") == 0)
        return run_hold(argv[optind + 1]);
    if (!opt_ca || (with_cert && (!opt_cert || !opt_key))) {
        fprintf(stderr, "repl-peer: --ca, and --cert and --key unless --no-cert, are required\n");
        return 2;
    }
    if (opt_disk_bytes == 0 || opt_disk_bytes % BSR_SECTOR_SIZE) {
        fprintf(stderr, "repl-peer: --disk-bytes (the replica's size, a multiple of 512) is required\n");
        return 2;
    }
    /* A DATA payload is built in memory; a ZERO frame's count is not. */
    if (opt_count > BSR_MAX_PAYLOAD_LIMIT / BSR_SECTOR_SIZE && strcmp(argv[optind], "zero") != 0) {
        fprintf(stderr, "repl-peer: --count too large\n");
        return 2;
    }
    return run_tls(argv[optind], argv[optind + 1], with_cert);
}
