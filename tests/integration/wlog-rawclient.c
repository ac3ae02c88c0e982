/* wlog-rawclient: a write-log client for the integration tests that speaks
 * the control protocol byte by byte, the way the historical blktap2 log
 * client did (shmp first, then exactly the historical reply lengths), and
 * that also sends deliberately malformed input.  It links nothing of
 * blkship: only proto/writelog.h, for the layout.
 *
 * Every subcommand checks what it is documented to check and exits
 *   0  every check passed
 *   1  a check failed (a line starting "wlog-rawclient: FAIL:" says which)
 *   2  usage error
 * Extents print as "SECTOR COUNT" lines on stdout; diagnostics go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto/writelog.h"

static int reply_timeout_ms = 15000;

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;

    fputs("wlog-rawclient: FAIL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
    va_list ap;

    fputs("wlog-rawclient: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "wlog-rawclient: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static const char *errname(uint32_t e)
{
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case ERANGE: return "ERANGE";
    case EFAULT: return "EFAULT";
    case EPROTO: return "EPROTO";
    case ENOSYS: return "ENOSYS";
    case EBUSY: return "EBUSY";
    case EIO: return "EIO";
    default: return "other";
    }
}

/* ---- Socket I/O ----------------------------------------------------------- */

static int dial(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        fail("socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail("connect %s: %s", path, strerror(errno));
    return fd;
}

static void send_raw(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("send: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

/* A 20-byte control message: the 4 command bytes, 16 zero parameter bytes. */
static void send_cmd(int fd, const char *cmd)
{
    struct wl_ctlmsg m;

    memset(&m, 0, sizeof(m));
    memcpy(m.cmd, cmd, WL_CMD_LEN);
    send_raw(fd, &m, sizeof(m));
}

/* Reads exactly len bytes.  Returns 0, -ETIMEDOUT, -ECONNRESET on end of
 * file (with *got set to what did arrive) or -errno. */
static int recv_exact(int fd, void *buf, size_t len, int timeout_ms, size_t *got)
{
    char *p = buf;
    size_t have = 0;
    int64_t deadline = now_ms() + timeout_ms;
    int r = 0;

    while (have < len) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (left <= 0) {
            r = -ETIMEDOUT;
            break;
        }
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (pr == 0)
            continue;
        ssize_t n = read(fd, p + have, len - have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0) {
            r = -ECONNRESET;
            break;
        }
        have += (size_t)n;
    }
    if (got)
        *got = have;
    return r;
}

static void expect_bytes(int fd, void *buf, size_t len, const char *what)
{
    size_t got = 0;
    int r = recv_exact(fd, buf, len, reply_timeout_ms, &got);

    if (r == -ETIMEDOUT)
        fail("%s: timed out after %d ms with %zu of %zu bytes", what, reply_timeout_ms, got, len);
    if (r == -ECONNRESET)
        fail("%s: server closed the connection after %zu of %zu bytes", what, got, len);
    if (r < 0)
        fail("%s: read: %s", what, strerror(-r));
}

/* Waits for the server to close the connection; returns the milliseconds
 * it took, or -1 after timeout_ms.  Any data that arrives first fails. */
static int64_t wait_eof(int fd, int timeout_ms, const char *what)
{
    int64_t start = now_ms();
    char c;
    size_t got = 0;
    int r = recv_exact(fd, &c, 1, timeout_ms, &got);

    if (r == 0)
        fail("%s: expected the server to close the connection, got data (0x%02x)", what,
             (unsigned char)c);
    if (r == -ETIMEDOUT)
        return -1;
    if (r != -ECONNRESET && r != -EPIPE)
        note("%s: read ended with %s (taken as closed)", what, strerror(-r));
    return now_ms() - start;
}

/* Asserts that the server sends nothing more for ms milliseconds: a
 * historical client reads exact reply lengths, so an extra byte would
 * desynchronise it. */
static void expect_quiet(int fd, int ms, const char *after)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;

    do
        r = poll(&pfd, 1, ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        fail("poll: %s", strerror(errno));
    if (r == 0)
        return;
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0)
        fail("after %s: the server closed the connection", after);
    if (n > 0)
        fail("after %s: %zd unexpected extra byte(s) from the server, first \"%.4s\"", after, n,
             buf);
}

/* ---- A historical client ---------------------------------------------------- */

struct conn {
    int fd;
    uint8_t *shm;
    struct log_front_ring front;
    struct wl_shmp_reply shmp;
};

/* Connects and does what the 2009 client did first: shmp, exactly 256
 * bytes back, then maps the named shm.  Returns false, when allow_busy,
 * if the server refused the connection with "busy". */
static bool hist_try_open(struct conn *c, const char *sock, bool allow_busy)
{
    int fd;

    memset(c, 0, sizeof(*c));
    c->fd = dial(sock);
    send_cmd(c->fd, WL_CMD_SHMP);
    expect_bytes(c->fd, &c->shmp, WL_CMD_LEN, "shmp reply");
    if (memcmp(&c->shmp, WL_MSG_BUSY, WL_CMD_LEN) == 0 ||
        memcmp(&c->shmp, WL_MSG_ERRR, WL_CMD_LEN) == 0) {
        struct wl_ctlmsg_err m;
        memcpy(&m, &c->shmp, WL_CMD_LEN);
        expect_bytes(c->fd, (char *)&m + WL_CMD_LEN, sizeof(m) - WL_CMD_LEN, "refusal");
        if (allow_busy && memcmp(m.cmd, WL_MSG_BUSY, WL_CMD_LEN) == 0) {
            close(c->fd);
            c->fd = -1;
            return false;
        }
        fail("shmp answered with \"%.4s\" err %d", m.cmd, m.err);
    }
    expect_bytes(c->fd, (char *)&c->shmp + WL_CMD_LEN, sizeof(c->shmp) - WL_CMD_LEN,
                 "shmp reply");
    if (c->shmp.shm_size != WL_SHM_SIZE)
        fail("shmp: shm size %" PRIu32 ", expected %u", c->shmp.shm_size, WL_SHM_SIZE);
    if (!memchr(c->shmp.shm_name, 0, sizeof(c->shmp.shm_name)))
        fail("shmp: shm name is not NUL-terminated");
    if (c->shmp.shm_name[0] != '/')
        fail("shmp: shm name \"%s\" does not start with '/'", c->shmp.shm_name);
    fd = shm_open(c->shmp.shm_name, O_RDWR, 0);
    if (fd < 0)
        fail("shm_open %s: %s", c->shmp.shm_name, strerror(errno));
    c->shm = mmap(NULL, WL_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c->shm == MAP_FAILED)
        fail("mmap %s: %s", c->shmp.shm_name, strerror(errno));
    /* The server resets the shared ring for each client: only our private
     * indices start here. */
    FRONT_RING_INIT(&c->front, wl_shm_ring(c->shm), WL_RING_SIZE);
    return true;
}

static void hist_open(struct conn *c, const char *sock)
{
    hist_try_open(c, sock, false);
}

/* Opens a connection, retrying while the server answers "busy" (it may
 * still be closing the previous client). */
static void open_when_free(struct conn *c, const char *sock, int limit_ms)
{
    int64_t deadline = now_ms() + limit_ms;

    while (!hist_try_open(c, sock, true)) {
        if (now_ms() > deadline)
            fail("the server still answers busy after %d ms", limit_ms);
        poll(NULL, 0, 20);
    }
}

static void hist_close(struct conn *c, bool check_quiet)
{
    if (check_quiet)
        expect_quiet(c->fd, 100, "the last reply");
    munmap(c->shm, WL_SHM_SIZE);
    close(c->fd);
    c->fd = -1;
}

/* peek, getw or clrw: exactly 4 bytes, "done". */
static void hist_simple(struct conn *c, const char *cmd)
{
    char done[WL_RSPLEN_DONE];
    char what[32];

    snprintf(what, sizeof(what), "%s reply", cmd);
    send_cmd(c->fd, cmd);
    expect_bytes(c->fd, done, sizeof(done), what);
    if (memcmp(done, "done", 4) != 0)
        fail("%s: reply \"%.4s\", expected \"done\"", cmd, done);
}

/* Prints the export area up to its terminator; returns the extent count. */
static uint64_t print_export(const struct conn *c)
{
    const struct wl_disk_range *r = wl_shm_export(c->shm);
    uint64_t n;

    for (n = 0; n < WL_EXPORT_SLOTS && r[n].count; n++)
        printf("%" PRIu64 " %" PRIu32 "\n", (uint64_t)r[n].sector, r[n].count);
    if (n == WL_EXPORT_SLOTS)
        fail("export area has no terminating entry");
    if (n > WL_EXPORT_MAX)
        fail("export area holds %" PRIu64 " extents, more than %zu", n, (size_t)WL_EXPORT_MAX);
    return n;
}

/* Reads one 20-byte kick notification; returns its err field. */
static int32_t wait_kick(struct conn *c)
{
    struct wl_ctlmsg_err m;
    static const uint8_t zero[8];

    expect_bytes(c->fd, &m, sizeof(m), "kick notification");
    if (memcmp(m.cmd, WL_CMD_KICK, WL_CMD_LEN) != 0)
        fail("after kick: message \"%.4s\", expected \"kick\"", m.cmd);
    if (memcmp(m.reserved, zero, sizeof(zero)) != 0)
        fail("kick notification: reserved bytes are not zero");
    if (m.err == 0) {
        static const char z4[WL_CMD_LEN];
        if (memcmp(m.refused, z4, WL_CMD_LEN) != 0)
            fail("kick notification with err 0 has non-zero params");
    }
    return m.err;
}

static void ring_push(struct conn *c, uint64_t sector, uint32_t count, uint32_t offset)
{
    log_request_t *r = RING_GET_REQUEST(&c->front, c->front.req_prod_pvt);

    r->sector = sector;
    r->count = count;
    r->offset = offset;
    c->front.req_prod_pvt++;
}

/* Publishes the queued requests, kicks, waits for the notification (which
 * must carry no error) and collects exactly `expect` responses. */
static void kick_collect(struct conn *c, unsigned expect, log_response_t *out)
{
    RING_IDX rp;
    unsigned n = 0;
    int32_t err;

    RING_PUSH_REQUESTS(&c->front);
    send_cmd(c->fd, WL_CMD_KICK);
    err = wait_kick(c);
    if (err)
        fail("kick notification carries err %d (%s)", err, errname((uint32_t)err));
    rp = c->front.sring->rsp_prod;
    xen_rmb();
    if (rp - c->front.rsp_cons != expect)
        fail("after kick: %u responses on the ring, expected %u", rp - c->front.rsp_cons, expect);
    for (; c->front.rsp_cons != rp; c->front.rsp_cons++)
        out[n++] = *RING_GET_RESPONSE(&c->front, c->front.rsp_cons);
}

static void check_echo(const log_response_t *rsp, uint64_t sector, uint32_t count, uint32_t offset)
{
    if (rsp->sector != sector || rsp->count != count || rsp->offset != offset)
        fail("response {sector %" PRIu64 ", count %" PRIu32 ", offset %" PRIu32
             "} does not echo request {%" PRIu64 ", %" PRIu32 ", %" PRIu32 "}",
             (uint64_t)rsp->sector, rsp->count, rsp->offset, sector, count, offset);
}

/* One valid request, served and echoed: proves the ring works. */
static void ring_smoke(struct conn *c, uint64_t sector, uint32_t count, uint32_t offset)
{
    log_response_t rsp;

    ring_push(c, sector, count, offset);
    kick_collect(c, 1, &rsp);
    check_echo(&rsp, sector, count, offset);
}

/* "info", the extension, for tests that need the disk size. */
static struct wl_info_reply get_info(struct conn *c)
{
    struct wl_info_reply info;

    send_cmd(c->fd, WL_CMD_INFO);
    expect_bytes(c->fd, &info, sizeof(info), "info reply");
    if (memcmp(info.tag, WL_CMD_INFO, WL_CMD_LEN) != 0)
        fail("info: reply tag \"%.4s\"", info.tag);
    return info;
}

static void write_out(const char *path, const void *buf, size_t len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");

    if (!f)
        fail("open %s: %s", path, strerror(errno));
    if (fwrite(buf, 1, len, f) != len)
        fail("write %s: %s", path, strerror(errno));
    if (f != stdout && fclose(f) != 0)
        fail("close %s: %s", path, strerror(errno));
}

/* ---- Subcommands ------------------------------------------------------------- */

static int cmd_shmp(const char *sock)
{
    struct conn c;

    hist_open(&c, sock);
    printf("size=%" PRIu32 " name=%s\n", c.shmp.shm_size, c.shmp.shm_name);
    hist_close(&c, true);
    return 0;
}

static int cmd_hist_simple(const char *sock, const char *cmd, bool print)
{
    struct conn c;

    hist_open(&c, sock);
    hist_simple(&c, cmd);
    if (print) {
        uint64_t n = print_export(&c);
        note("%s: %" PRIu64 " extents", cmd, n);
    }
    hist_close(&c, true);
    return 0;
}

static int cmd_hist_kick_empty(const char *sock)
{
    struct conn c;
    int32_t err;

    hist_open(&c, sock);
    for (int i = 0; i < 3; i++) {
        send_cmd(c.fd, WL_CMD_KICK);
        err = wait_kick(&c);
        if (err)
            fail("empty kick: notification err %d", err);
        if (c.front.sring->rsp_prod != 0)
            fail("empty kick: rsp_prod moved to %u", c.front.sring->rsp_prod);
    }
    hist_close(&c, true);
    return 0;
}

/* One request at data-area byte `offset`; writes the data to `out`. */
static int cmd_hist_read(const char *sock, uint64_t sector, uint32_t count, const char *out,
                         uint32_t offset)
{
    struct conn c;

    hist_open(&c, sock);
    ring_smoke(&c, sector, count, offset);
    write_out(out, wl_shm_data(c.shm) + offset, (size_t)count * WL_SECTOR_SIZE);
    hist_close(&c, true);
    return 0;
}

/* Reads every extent listed in `list` ("SECTOR COUNT" lines) through the
 * ring, many requests per kick, and compares each with the image file. */
static int cmd_ring_verify(const char *sock, const char *image, const char *list)
{
    enum { PIECE = 1024 }; /* sectors per request: several requests per kick */
    struct pending { uint64_t sector; uint32_t count; uint32_t offset; bool seen; };
    static struct pending pend[WL_RING_ENTRIES];
    static log_response_t rsps[WL_RING_ENTRIES];
    FILE *lf = strcmp(list, "-") == 0 ? stdin : fopen(list, "r");
    int img = open(image, O_RDONLY | O_CLOEXEC);
    uint64_t extents = 0, sectors = 0, kicks = 0, mismatches = 0;
    uint64_t cur_sector = 0, cur_left = 0;
    unsigned char *ref = malloc(PIECE * WL_SECTOR_SIZE);
    struct conn c;
    bool eof = false;

    if (!lf)
        fail("open %s: %s", list, strerror(errno));
    if (img < 0)
        fail("open %s: %s", image, strerror(errno));
    if (!ref)
        fail("out of memory");
    hist_open(&c, sock);
    while (!eof || cur_left) {
        unsigned n = 0;
        uint32_t data_used = 0;

        /* Fill one round: up to a full ring, within the data area. */
        while (n < WL_RING_ENTRIES) {
            if (!cur_left) {
                unsigned long long s, k;
                int m = eof ? EOF : fscanf(lf, "%llu %llu", &s, &k);
                if (m == EOF) {
                    eof = true;
                    break;
                }
                if (m != 2 || k == 0)
                    fail("%s: malformed extent line", list);
                cur_sector = s;
                cur_left = k;
                extents++;
            }
            uint32_t len = cur_left < PIECE ? (uint32_t)cur_left : PIECE;
            if (data_used + (uint64_t)len * WL_SECTOR_SIZE > WL_DATA_SIZE)
                break;
            pend[n] = (struct pending){ cur_sector, len, data_used, false };
            ring_push(&c, cur_sector, len, data_used);
            data_used += len * WL_SECTOR_SIZE;
            cur_sector += len;
            cur_left -= len;
            n++;
        }
        if (n == 0)
            break;
        kick_collect(&c, n, rsps);
        kicks++;
        /* Responses come back in completion order: match them by offset,
         * which is unique within a round. */
        for (unsigned i = 0; i < n; i++) {
            const log_response_t *r = &rsps[i];
            unsigned j;
            for (j = 0; j < n; j++)
                if (!pend[j].seen && pend[j].offset == r->offset && pend[j].sector == r->sector)
                    break;
            if (r->count == 0)
                fail("ring read of sector %" PRIu64 " refused: %s (%" PRIu32 ")",
                     (uint64_t)r->sector, errname(r->offset), r->offset);
            if (j == n)
                fail("response {%" PRIu64 ", %" PRIu32 ", %" PRIu32 "} matches no request",
                     (uint64_t)r->sector, r->count, r->offset);
            check_echo(r, pend[j].sector, pend[j].count, pend[j].offset);
            pend[j].seen = true;
            size_t bytes = (size_t)r->count * WL_SECTOR_SIZE;
            memset(ref, 0, bytes);
            ssize_t got = pread(img, ref, bytes, (off_t)(r->sector * WL_SECTOR_SIZE));
            if (got < 0)
                fail("pread %s: %s", image, strerror(errno));
            if (memcmp(ref, wl_shm_data(c.shm) + r->offset, bytes) != 0) {
                if (mismatches++ < 20)
                    note("MISMATCH: sectors %" PRIu64 "+%" PRIu32 " differ from %s",
                         (uint64_t)r->sector, r->count, image);
            }
            sectors += r->count;
        }
    }
    hist_close(&c, true);
    close(img);
    if (lf != stdin)
        fclose(lf);
    free(ref);
    printf("verified %" PRIu64 " extents, %" PRIu64 " sectors, %" PRIu64 " kicks, %" PRIu64
           " mismatches\n", extents, sectors, kicks, mismatches);
    if (mismatches)
        fail("%" PRIu64 " ring reads differ from the image", mismatches);
    return 0;
}

/* One invalid request per case; the response must carry the errno, the
 * kick notification no error, and the ring must keep working. */
struct bad_case {
    const char *name;
    uint32_t expect;
};
static const struct bad_case bad_cases[] = {
    { "count0", EINVAL },       /* count 0 */
    { "toobig", EINVAL },       /* count larger than the data area */
    { "huge", EINVAL },         /* count 0xffffffff */
    { "beyond", ERANGE },       /* first sector is the disk's size */
    { "straddle", ERANGE },     /* last sector of the disk plus one */
    { "wrap", ERANGE },         /* sector + count overflows 64 bits */
    { "offset", EFAULT },       /* offset + count*512 one sector past the data area */
    { "offset-wrap", EFAULT },  /* offset + count*512 overflows 32 bits */
    { "offset-end", EFAULT },   /* offset exactly at the data area's end */
};

static void bad_request(const struct bad_case *bc, uint64_t disk, uint64_t *sector,
                        uint32_t *count, uint32_t *offset)
{
    *sector = 0;
    *count = 1;
    *offset = 0;
    if (!strcmp(bc->name, "count0")) {
        *count = 0;
    } else if (!strcmp(bc->name, "toobig")) {
        *count = WL_RING_MAX_SECTORS + 1;
    } else if (!strcmp(bc->name, "huge")) {
        *count = UINT32_MAX;
    } else if (!strcmp(bc->name, "beyond")) {
        *sector = disk;
    } else if (!strcmp(bc->name, "straddle")) {
        *sector = disk - 1;
        *count = 2;
    } else if (!strcmp(bc->name, "wrap")) {
        *sector = UINT64_MAX - 1;
        *count = 4;
    } else if (!strcmp(bc->name, "offset")) {
        *offset = WL_DATA_SIZE - WL_SECTOR_SIZE;
        *count = 2;
    } else if (!strcmp(bc->name, "offset-wrap")) {
        *offset = UINT32_MAX - 511;
        *count = 8;
    } else if (!strcmp(bc->name, "offset-end")) {
        *offset = WL_DATA_SIZE;
    }
}

static int cmd_bad_ring(const char *sock, const char *which)
{
    size_t ncases = sizeof(bad_cases) / sizeof(bad_cases[0]);
    struct conn c;
    struct wl_info_reply info;
    bool any = false;
    int failed = 0;

    hist_open(&c, sock);
    info = get_info(&c);
    for (size_t i = 0; i < ncases; i++) {
        const struct bad_case *bc = &bad_cases[i];
        uint64_t sector;
        uint32_t count, offset;
        log_response_t rsp;

        if (strcmp(which, "all") != 0 && strcmp(which, bc->name) != 0)
            continue;
        any = true;
        bad_request(bc, info.disk_sectors, &sector, &count, &offset);
        ring_push(&c, sector, count, offset);
        kick_collect(&c, 1, &rsp);
        printf("%s: sector=%" PRIu64 " count=%" PRIu32 " offset=%" PRIu32 " (%s)\n", bc->name,
               (uint64_t)rsp.sector, rsp.count, rsp.offset, errname(rsp.offset));
        if (rsp.count != 0 || rsp.offset != bc->expect || rsp.sector != sector) {
            note("%s: expected sector=%" PRIu64 " count=0 offset=%u (%s)", bc->name, sector,
                 bc->expect, errname(bc->expect));
            failed++;
        }
        /* The ring still serves a valid request afterwards. */
        ring_smoke(&c, info.disk_sectors - 8, 8, WL_DATA_SIZE - 8 * WL_SECTOR_SIZE);
    }
    if (!any) {
        fprintf(stderr, "wlog-rawclient: unknown bad-ring case '%s'\n", which);
        exit(2);
    }
    if (!strcmp(which, "all")) {
        /* Valid, invalid, valid in one kick: only the middle one is refused. */
        log_response_t rsps[3];
        unsigned refused = 0, served = 0;
        ring_push(&c, 0, 8, 0);
        ring_push(&c, info.disk_sectors, 1, 65536);
        ring_push(&c, 8, 8, 8 * WL_SECTOR_SIZE);
        kick_collect(&c, 3, rsps);
        for (int i = 0; i < 3; i++) {
            if (rsps[i].count == 0 && rsps[i].offset == ERANGE &&
                rsps[i].sector == info.disk_sectors)
                refused++;
            else if (rsps[i].count == 8 && rsps[i].offset == rsps[i].sector * WL_SECTOR_SIZE)
                served++;
        }
        printf("mixed: served=%u refused=%u\n", served, refused);
        if (served != 2 || refused != 1) {
            note("mixed batch: expected 2 served and 1 refused");
            failed++;
        }
        /* A full ring of valid requests is accepted (128 is not "past"). */
        log_response_t full[WL_RING_ENTRIES];
        for (unsigned i = 0; i < WL_RING_ENTRIES; i++)
            ring_push(&c, i, 1, i * WL_SECTOR_SIZE);
        kick_collect(&c, WL_RING_ENTRIES, full);
        for (unsigned i = 0; i < WL_RING_ENTRIES; i++)
            if (full[i].count != 1 || full[i].offset != full[i].sector * WL_SECTOR_SIZE)
                fail("full ring: response %u {%" PRIu64 ", %" PRIu32 ", %" PRIu32 "} is wrong", i,
                     (uint64_t)full[i].sector, full[i].count, full[i].offset);
        printf("full-ring: %u served\n", (unsigned)WL_RING_ENTRIES);
        /* Two kicks for one batch of reads: two notifications, sent when
         * the reads are done, then nothing more (checked at close). */
        for (unsigned i = 0; i < 64; i++)
            ring_push(&c, i * 63, 63, i * 63 * WL_SECTOR_SIZE);
        RING_PUSH_REQUESTS(&c.front);
        send_cmd(c.fd, WL_CMD_KICK);
        send_cmd(c.fd, WL_CMD_KICK);
        for (int k = 0; k < 2; k++)
            if (wait_kick(&c) != 0)
                fail("double kick: notification %d carries an error", k + 1);
        RING_IDX rp = c.front.sring->rsp_prod;
        xen_rmb();
        if (rp - c.front.rsp_cons != 64)
            fail("double kick: %u responses after both notifications, expected 64",
                 rp - c.front.rsp_cons);
        c.front.rsp_cons = rp;
        printf("double-kick: 2 notifications, 64 responses\n");
    }
    hist_close(&c, true);
    if (failed)
        fail("%d bad-ring case(s) answered wrongly", failed);
    return 0;
}

/* req_prod set DELTA past the responses: the ring is broken; every kick is
 * answered with err EPROTO until the client reconnects; other commands
 * keep working; a new connection gets a working ring. */
static int cmd_garbage_prod(const char *sock, uint64_t delta)
{
    struct conn c;
    struct wl_ctlmsg_err m;
    int32_t err;

    hist_open(&c, sock);
    ring_smoke(&c, 0, 1, 0); /* a sane start: rsp_prod is 1 */
    c.front.sring->req_prod = c.front.rsp_cons + (RING_IDX)delta;
    xen_wmb();
    for (int i = 0; i < 2; i++) {
        send_cmd(c.fd, WL_CMD_KICK);
        expect_bytes(c.fd, &m, sizeof(m), "kick notification on a broken ring");
        memcpy(&err, &m.err, sizeof(err));
        printf("kick %d: cmd=%.4s err=%d (%s) refused=%.4s\n", i + 1, m.cmd, err,
               errname((uint32_t)err), m.refused);
        if (memcmp(m.cmd, WL_CMD_KICK, 4) != 0 || err != EPROTO || memcmp(m.refused, "kick", 4))
            fail("broken ring: expected a kick notification with err EPROTO, refused \"kick\"");
    }
    if (c.front.sring->rsp_prod != c.front.rsp_cons)
        fail("broken ring: the server pushed responses (rsp_prod %u)", c.front.sring->rsp_prod);
    /* The connection itself still works. */
    hist_simple(&c, WL_CMD_PEEK);
    hist_close(&c, true);

    /* A new client gets a fresh, working ring. */
    open_when_free(&c, sock, 5000);
    ring_smoke(&c, 0, 8, 4096);
    hist_close(&c, true);
    return 0;
}

static int cmd_unknown(const char *sock)
{
    static const char cmds[][WL_CMD_LEN] = {
        { 'x', 'y', 'z', 'w' }, { 0, 0, 0, 0 }, { 'S', 'H', 'M', 'P' }, { 'k', 'i', 'c', 0 },
        { '\xff', 'p', 'e', 'e' },
    };
    struct conn c;

    hist_open(&c, sock);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct wl_ctlmsg_err m;
        send_cmd(c.fd, cmds[i]);
        expect_bytes(c.fd, &m, sizeof(m), "reply to an unknown command");
        printf("cmd %zu: reply=%.4s err=%d (%s)\n", i, m.cmd, m.err, errname((uint32_t)m.err));
        if (memcmp(m.cmd, WL_MSG_ERRR, 4) != 0 || m.err != ENOSYS ||
            memcmp(m.refused, cmds[i], 4) != 0)
            fail("unknown command %zu: expected errr ENOSYS echoing the command", i);
        /* The connection still works: a command and a ring read. */
        hist_simple(&c, WL_CMD_PEEK);
        ring_smoke(&c, i * 8, 8, (uint32_t)i * 4096);
    }
    hist_close(&c, true);
    return 0;
}

/* Sends the first n bytes of a command and closes at once. */
static int cmd_short_msg(const char *sock, size_t n)
{
    static const char msg[WL_CTLMSG_LEN] = "peek";
    int fd = dial(sock);

    if (n >= WL_CTLMSG_LEN)
        fail("short-msg: %zu is not short", n);
    send_raw(fd, msg, n);
    close(fd);
    return 0;
}

/* Sends n bytes and waits for the server to give up on the command;
 * prints the milliseconds that took. */
static int cmd_partial_hold(const char *sock, size_t n, int limit_ms)
{
    static const char msg[WL_CTLMSG_LEN] = "peek";
    struct conn c;
    int64_t ms;

    hist_open(&c, sock); /* prove it is the active client, not a refused one */
    send_raw(c.fd, msg, n);
    printf("ready\n");
    fflush(stdout);
    ms = wait_eof(c.fd, limit_ms, "partial command");
    if (ms < 0)
        fail("server kept a client with a partial command for more than %d ms", limit_ms);
    printf("closed after %" PRId64 " ms\n", ms);
    hist_close(&c, false);
    return 0;
}

/* Sends a peek in `pieces` parts, `gap_ms` apart: a slow client that keeps
 * sending is served, not timed out. */
static int cmd_slow_cmd(const char *sock, unsigned pieces, unsigned gap_ms)
{
    struct wl_ctlmsg m;
    struct conn c;
    char done[WL_RSPLEN_DONE];
    size_t sent = 0;

    if (pieces == 0 || pieces > WL_CTLMSG_LEN)
        fail("slow-cmd: 1 to 20 pieces");
    hist_open(&c, sock);
    memset(&m, 0, sizeof(m));
    memcpy(m.cmd, WL_CMD_PEEK, WL_CMD_LEN);
    for (unsigned i = 0; i < pieces; i++) {
        size_t end = (size_t)WL_CTLMSG_LEN * (i + 1) / pieces;
        if (i)
            poll(NULL, 0, (int)gap_ms);
        send_raw(c.fd, (char *)&m + sent, end - sent);
        sent = end;
    }
    expect_bytes(c.fd, done, sizeof(done), "reply to a slowly sent peek");
    if (memcmp(done, "done", 4) != 0)
        fail("slowly sent peek: reply \"%.4s\"", done);
    hist_close(&c, true);
    printf("slow peek served\n");
    return 0;
}

static int cmd_second_client(const char *sock)
{
    struct conn a, c;
    struct wl_ctlmsg_err m;
    int b;
    int64_t ms;

    hist_open(&a, sock);
    b = dial(sock);
    expect_bytes(b, &m, sizeof(m), "second client's message");
    printf("second client: msg=%.4s err=%d (%s)\n", m.cmd, m.err, errname((uint32_t)m.err));
    if (memcmp(m.cmd, WL_MSG_BUSY, 4) != 0 || m.err != EBUSY)
        fail("second client: expected \"busy\" with err EBUSY");
    ms = wait_eof(b, 5000, "second client");
    if (ms < 0)
        fail("second client: the server did not close the refused connection");
    close(b);
    /* The first client was not disturbed. */
    hist_simple(&a, WL_CMD_PEEK);
    ring_smoke(&a, 0, 8, 0);
    hist_close(&a, true);
    /* Once the first is gone, a new client is served. */
    open_when_free(&c, sock, 5000);
    ring_smoke(&c, 8, 8, 0);
    hist_close(&c, true);
    printf("first client kept working; a later client was served\n");
    return 0;
}

/* Each round: a full ring of large reads, kick, close without reading the
 * notification.  The next round connects while those reads may still be in
 * flight.  Finally a client must get a working ring. */
static int cmd_kick_disconnect(const char *sock, unsigned rounds)
{
    const uint32_t per = (WL_DATA_SIZE / WL_SECTOR_SIZE) / WL_RING_ENTRIES; /* 63 */
    struct conn c;

    for (unsigned r = 0; r < rounds; r++) {
        open_when_free(&c, sock, 10000);
        for (unsigned i = 0; i < WL_RING_ENTRIES; i++)
            ring_push(&c, (uint64_t)i * per, per, i * per * WL_SECTOR_SIZE);
        RING_PUSH_REQUESTS(&c.front);
        send_cmd(c.fd, WL_CMD_KICK);
        hist_close(&c, false);
    }
    open_when_free(&c, sock, 10000);
    if (c.front.sring->req_prod != 0 || c.front.sring->rsp_prod != 0)
        fail("new client's ring was not reset (req_prod %u rsp_prod %u)",
             c.front.sring->req_prod, c.front.sring->rsp_prod);
    log_response_t rsps[4];
    for (unsigned i = 0; i < 4; i++)
        ring_push(&c, i * 16, 16, i * 16 * WL_SECTOR_SIZE);
    kick_collect(&c, 4, rsps);
    for (unsigned i = 0; i < 4; i++)
        if (rsps[i].count != 16 || rsps[i].offset != rsps[i].sector * WL_SECTOR_SIZE)
            fail("after reconnect: bad response %u", i);
    hist_simple(&c, WL_CMD_PEEK);
    hist_close(&c, true);
    printf("%u disconnected kicks; reconnect served\n", rounds);
    return 0;
}

/* Connects, says "ready" on stdout, then waits for the server to close. */
static int cmd_hold(const char *sock, unsigned seconds)
{
    struct conn c;
    int64_t ms;

    hist_open(&c, sock);
    printf("ready\n");
    fflush(stdout);
    ms = wait_eof(c.fd, (int)seconds * 1000, "hold");
    if (ms < 0)
        fail("the server did not close the connection within %u s", seconds);
    printf("closed after %" PRId64 " ms\n", ms);
    hist_close(&c, false);
    return 0;
}

static int cmd_info(const char *sock)
{
    struct conn c;
    struct wl_info_reply i;

    hist_open(&c, sock);
    i = get_info(&c);
    printf("version=%" PRIu32 "\ndisk_sectors=%" PRIu64 "\nsector_size=%" PRIu32
           "\ngrain_sectors=%" PRIu32 "\nexport_max=%" PRIu32 "\nring_max_sectors=%" PRIu32
           "\nlog_id=%016" PRIx64 "\nepoch=%" PRIu64 "\nlive_grains=%" PRIu64
           "\npending_grains=%" PRIu64 "\n",
           i.version, (uint64_t)i.disk_sectors, i.sector_size, i.grain_sectors, i.export_max,
           i.ring_max_sectors, (uint64_t)i.log_id, (uint64_t)i.epoch, (uint64_t)i.live_grains,
           (uint64_t)i.pending_grains);
    hist_close(&c, true);
    return 0;
}

static void usage(void)
{
    fputs("Usage: wlog-rawclient SUBCOMMAND SOCKET [ARGS]\n"
          "  shmp SOCK                      print the shm size and name\n"
          "  info SOCK                      print the info reply as key=value\n"
          "  hist-peek|hist-getw SOCK       historical command; print the export area\n"
          "  hist-clrw SOCK                 historical clrw\n"
          "  hist-kick-empty SOCK           kick with an empty ring: one notification each\n"
          "  hist-read SOCK SECTOR COUNT OUT [OFFSET]\n"
          "                                 one ring request; data to OUT ('-' = stdout)\n"
          "  ring-verify SOCK IMAGE LIST    read LIST's extents through the ring and\n"
          "                                 compare with IMAGE ('-' = stdin)\n"
          "  bad-ring SOCK CASE|all         invalid requests; print count and offset\n"
          "  garbage-prod SOCK DELTA        req_prod DELTA past the responses\n"
          "  unknown-cmd SOCK               unknown commands get errr; connection lives\n"
          "  short-msg SOCK N               send N bytes of a command, close\n"
          "  partial-hold SOCK N LIMIT_MS   send N bytes, wait for the server to close\n"
          "  slow-cmd SOCK PIECES GAP_MS    a peek sent in pieces, GAP_MS apart\n"
          "  second-client SOCK             a second client gets busy; first unharmed\n"
          "  kick-disconnect SOCK ROUNDS    full ring of reads, kick, close; repeat\n"
          "  hold SOCK SECONDS              connect, print ready, wait for close\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *env = getenv("WLOG_RAW_TIMEOUT_MS");

    if (env)
        reply_timeout_ms = (int)parse_u64(env, "WLOG_RAW_TIMEOUT_MS");
    signal(SIGPIPE, SIG_IGN);
    if (argc < 3)
        usage();
    const char *sub = argv[1], *sock = argv[2];
    int extra = argc - 3;
    char **a = argv + 3;

    if (!strcmp(sub, "shmp") && extra == 0)
        return cmd_shmp(sock);
    if (!strcmp(sub, "info") && extra == 0)
        return cmd_info(sock);
    if (!strcmp(sub, "hist-peek") && extra == 0)
        return cmd_hist_simple(sock, WL_CMD_PEEK, true);
    if (!strcmp(sub, "hist-getw") && extra == 0)
        return cmd_hist_simple(sock, WL_CMD_GETW, true);
    if (!strcmp(sub, "hist-clrw") && extra == 0)
        return cmd_hist_simple(sock, WL_CMD_CLRW, false);
    if (!strcmp(sub, "hist-kick-empty") && extra == 0)
        return cmd_hist_kick_empty(sock);
    if (!strcmp(sub, "hist-read") && (extra == 3 || extra == 4)) {
        uint64_t count = parse_u64(a[1], "COUNT");
        uint64_t offset = extra == 4 ? parse_u64(a[3], "OFFSET") : 0;
        if (count == 0 || count > WL_RING_MAX_SECTORS ||
            offset + count * WL_SECTOR_SIZE > WL_DATA_SIZE) {
            fprintf(stderr, "wlog-rawclient: COUNT/OFFSET do not fit the data area\n");
            return 2;
        }
        return cmd_hist_read(sock, parse_u64(a[0], "SECTOR"), (uint32_t)count, a[2],
                             (uint32_t)offset);
    }
    if (!strcmp(sub, "ring-verify") && extra == 2)
        return cmd_ring_verify(sock, a[0], a[1]);
    if (!strcmp(sub, "bad-ring") && extra == 1)
        return cmd_bad_ring(sock, a[0]);
    if (!strcmp(sub, "garbage-prod") && extra == 1)
        return cmd_garbage_prod(sock, parse_u64(a[0], "DELTA"));
    if (!strcmp(sub, "unknown-cmd") && extra == 0)
        return cmd_unknown(sock);
    if (!strcmp(sub, "short-msg") && extra == 1)
        return cmd_short_msg(sock, (size_t)parse_u64(a[0], "N"));
    if (!strcmp(sub, "partial-hold") && extra == 2)
        return cmd_partial_hold(sock, (size_t)parse_u64(a[0], "N"),
                                (int)parse_u64(a[1], "LIMIT_MS"));
    if (!strcmp(sub, "slow-cmd") && extra == 2)
        return cmd_slow_cmd(sock, (unsigned)parse_u64(a[0], "PIECES"),
                            (unsigned)parse_u64(a[1], "GAP_MS"));
    if (!strcmp(sub, "second-client") && extra == 0)
        return cmd_second_client(sock);
    if (!strcmp(sub, "kick-disconnect") && extra == 1)
        return cmd_kick_disconnect(sock, (unsigned)parse_u64(a[0], "ROUNDS"));
    if (!strcmp(sub, "hold") && extra == 1)
        return cmd_hold(sock, (unsigned)parse_u64(a[0], "SECONDS"));
    usage();
}
