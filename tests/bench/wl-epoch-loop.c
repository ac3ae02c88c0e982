/* wl-epoch-loop: a sealing client of the write log for epoch-bench.sh.
 *
 *   wl-epoch-loop SOCKET PERIOD_MS SECONDS
 *
 * Every PERIOD_MS (or as soon as the previous epoch has been read, if that
 * takes longer) it sends "seal", records every chunk of the epoch's extents
 * ("next" until the log says there is no more), then reads all of them
 * through the ring, up to 128 requests in flight a kick as the primary agent
 * does, and throws the data away.
 * It stops after SECONDS.  There is no network, no TLS and no secondary:
 * with the same client on a filter with and without copy-before-write
 * (writelog-cow-max=64M vs writelog-cow-max=0) the difference in the
 * guest's IOPS is the cost of copy-before-write alone.
 *
 * Output, on stdout at the end, one line of key=value pairs: seals, epochs
 * that came back broken, bytes read, mean and max seal-to-read-done time
 * (ms), and the filter's cowc counters: the pool size, the peak since the
 * filter started, and for the others what they grew by during this run.
 * Exit status: 0 on success, 1 when a command failed, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "primary/writelog/wl_client.h"

#define READ_SECTORS 2048u /* 1 MiB a ring request at most */

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1e3);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1e3) * 1e6);
    nanosleep(&ts, NULL);
}

struct extents {
    struct wl_disk_range *v;
    size_t n, cap;
};

/* Appends the export area's entries to x. */
static int collect(const struct wl_client *c, uint32_t n, struct extents *x)
{
    const struct wl_disk_range *e = wl_client_extents(c);

    for (uint32_t i = 0; i < n; i++) {
        if (x->n == x->cap) {
            size_t cap = x->cap ? x->cap * 2 : 4096;
            struct wl_disk_range *nv = realloc(x->v, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            x->v = nv;
            x->cap = cap;
        }
        x->v[x->n++] = e[i];
    }
    return 0;
}

/* The requests queued on the ring and not kicked yet. */
struct batch {
    unsigned n;     /* requests */
    uint64_t data;  /* bytes of the data area they use */
};

static int write_msg(int fd, const char *cmd)
{
    struct wl_ctlmsg m;
    size_t off = 0;

    memset(&m, 0, sizeof(m));
    memcpy(m.cmd, cmd, WL_CMD_LEN);
    while (off < sizeof(m)) {
        ssize_t k = write(fd, (const char *)&m + off, sizeof(m) - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EPIPE;
        off += (size_t)k;
    }
    return 0;
}

/* Publishes the batch, kicks, waits for the kick that says it was served
 * and checks every response. */
static int kick(struct wl_client *c, struct batch *b, uint64_t *bytes)
{
    struct wl_ctlmsg_err e;
    size_t off = 0;
    RING_IDX rp;
    int r;

    if (!b->n)
        return 0;
    RING_PUSH_REQUESTS(&c->front);
    if ((r = write_msg(c->fd, WL_CMD_KICK)) < 0)
        return r;
    while (off < sizeof(e)) {
        ssize_t k = read(c->fd, (char *)&e + off, sizeof(e) - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -ECONNRESET;
        off += (size_t)k;
    }
    if (memcmp(e.cmd, WL_CMD_KICK, WL_CMD_LEN) != 0 || e.err)
        return -EPROTO;
    rp = c->front.sring->rsp_prod;
    xen_rmb();
    if (rp - c->front.rsp_cons != b->n)
        return -EPROTO;
    for (; c->front.rsp_cons != rp; c->front.rsp_cons++) {
        log_response_t rsp = *RING_GET_RESPONSE(&c->front, c->front.rsp_cons);
        if (rsp.count == 0)
            return -EIO;
        *bytes += (uint64_t)rsp.count * WL_SECTOR_SIZE;
    }
    b->n = 0;
    b->data = 0;
    return 0;
}

/* Reads every extent of x through the ring, as many requests in flight as
 * the ring and the data area hold (the data itself is not looked at). */
static int read_all_extents(struct wl_client *c, const struct extents *x, uint64_t *bytes)
{
    uint32_t per = c->info.ring_max_sectors < READ_SECTORS ? c->info.ring_max_sectors : READ_SECTORS;
    struct batch b = { 0 };
    int r;

    for (size_t i = 0; i < x->n; i++) {
        uint64_t s = x->v[i].sector, left = x->v[i].count;
        while (left) {
            uint32_t k = left < per ? (uint32_t)left : per;
            log_request_t *req;
            if (b.n == WL_RING_ENTRIES || b.data + (uint64_t)k * WL_SECTOR_SIZE > WL_DATA_SIZE)
                if ((r = kick(c, &b, bytes)) < 0)
                    return r;
            req = RING_GET_REQUEST(&c->front, c->front.req_prod_pvt);
            req->sector = s;
            req->count = k;
            req->offset = (uint32_t)b.data;
            c->front.req_prod_pvt++;
            b.n++;
            b.data += (uint64_t)k * WL_SECTOR_SIZE;
            s += k;
            left -= k;
        }
    }
    return kick(c, &b, bytes);
}

/* One epoch: seal, every chunk, then every extent read through the ring. */
static int one_epoch(struct wl_client *c, struct extents *x, uint64_t *bytes, int *broken)
{
    struct wl_export_reply rep;
    int r = wl_client_export(c, WL_CMD_SEAL, &rep);

    x->n = 0;
    *broken = 0;
    for (;;) {
        if (r < 0)
            return r;
        if (rep.flags & WL_EF_BROKEN)
            *broken = 1;
        if ((r = collect(c, rep.extents, x)) < 0)
            return r;
        if (!rep.extents && !rep.more)
            break;
        r = wl_client_export(c, WL_CMD_NEXT, &rep);
    }
    return read_all_extents(c, x, bytes);
}

int main(int argc, char **argv)
{
    struct wl_client c;
    struct wl_cowc_reply cw0, cw;
    struct extents x = { 0 };
    uint64_t seals = 0, broken_n = 0, bytes = 0;
    double period, seconds, t0, next, sum = 0, worst = 0;
    int r;

    if (argc != 4 || (period = atof(argv[2])) <= 0 || (seconds = atof(argv[3])) <= 0) {
        fprintf(stderr, "usage: wl-epoch-loop SOCKET PERIOD_MS SECONDS\n");
        return 2;
    }
    if ((r = wl_client_open(&c, argv[1])) < 0) {
        fprintf(stderr, "wl-epoch-loop: %s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    if ((r = wl_client_cowc(&c, &cw0)) < 0) {
        fprintf(stderr, "wl-epoch-loop: cowc: %s\n", strerror(-r));
        wl_client_close(&c);
        return 1;
    }
    t0 = next = now_ms();
    while (now_ms() - t0 < seconds * 1e3) {
        double s0 = now_ms(), took;
        int broken;
        if ((r = one_epoch(&c, &x, &bytes, &broken)) < 0) {
            fprintf(stderr, "wl-epoch-loop: epoch %" PRIu64 ": %s\n", seals + 1, strerror(-r));
            wl_client_close(&c);
            return 1;
        }
        took = now_ms() - s0;
        seals++;
        broken_n += (uint64_t)broken;
        sum += took;
        if (took > worst)
            worst = took;
        next += period;
        if (next < now_ms())
            next = now_ms();
        sleep_ms(next - now_ms());
    }
    if ((r = wl_client_cowc(&c, &cw)) < 0) {
        fprintf(stderr, "wl-epoch-loop: cowc: %s\n", strerror(-r));
        wl_client_close(&c);
        return 1;
    }
    printf("seals=%" PRIu64 " broken=%" PRIu64 " read_bytes=%" PRIu64
           " epoch_ms_mean=%.2f epoch_ms_max=%.2f cow_max=%" PRIu64 " cow_peak=%" PRIu64
           " preserved=%" PRIu64 " waits=%" PRIu64 " wait_ms=%" PRIu64 " breaks=%" PRIu64
           " drain_timeouts=%" PRIu64 "\n",
           seals, broken_n, bytes, seals ? sum / (double)seals : 0.0, worst, cw.max_bytes,
           cw.bytes_peak, cw.preserved - cw0.preserved, cw.waits - cw0.waits,
           cw.wait_ms - cw0.wait_ms, cw.breaks - cw0.breaks, cw.drain_timeouts - cw0.drain_timeouts);
    wl_client_close(&c);
    free(x.v);
    return 0;
}
