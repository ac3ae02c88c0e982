/* Blocking write-log client (see wl_client.h). */
#include "primary/writelog/wl_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "primary/writelog/wl_proto.h"

/* Sectors per ring request: small enough that many are in flight at once. */
#define READ_CHUNK_SECTORS 512u

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(struct wl_client *c, void *buf, size_t len)
{
    char *p = buf;

    while (len) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int r = poll(&pfd, 1, c->timeout_ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(c->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends cmd with len bytes of params (the rest zero). */
static int send_msg(struct wl_client *c, const char *cmd, const void *params, size_t len)
{
    struct wl_ctlmsg m;

    memset(&m, 0, sizeof(m));
    memcpy(m.cmd, cmd, WL_CMD_LEN);
    if (len)
        memcpy(m.params, params, len);
    return write_all(c->fd, &m, sizeof(m));
}

static int send_cmd(struct wl_client *c, const char *cmd)
{
    return send_msg(c, cmd, NULL, 0);
}

/* Reads a reply whose first four bytes are `tag` and whose total length is
 * len.  An "errr" or "busy" message instead becomes its errno. */
static int read_reply(struct wl_client *c, const char *tag, void *buf, size_t len)
{
    char head[WL_CMD_LEN];
    int r;

    r = read_all(c, head, sizeof(head));
    if (r < 0)
        return r;
    if (wl_msg_is_refusal((const uint8_t *)head)) {
        struct wl_ctlmsg_err e;
        memcpy(e.cmd, head, WL_CMD_LEN);
        r = read_all(c, (char *)&e + WL_CMD_LEN, sizeof(e) - WL_CMD_LEN);
        if (r < 0)
            return r;
        return wl_msg_errno(e.err);
    }
    if (tag && memcmp(head, tag, WL_CMD_LEN) != 0)
        return -EPROTO;
    memcpy(buf, head, WL_CMD_LEN);
    return read_all(c, (char *)buf + WL_CMD_LEN, len - WL_CMD_LEN);
}

int wl_client_open(struct wl_client *c, const char *sock_path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct wl_shmp_reply shmp;
    int fd = -1, r;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = 30000;
    if (strlen(sock_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, sock_path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        goto fail;
    }
    /* A server that refuses us writes "busy" and closes, which may break
     * our first send: read the refusal before giving up. */
    r = send_cmd(c, WL_CMD_SHMP);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        goto fail;
    r = read_reply(c, NULL, &shmp, sizeof(shmp));
    if (r < 0)
        goto fail;
    r = wl_shmp_reply_check(&shmp);
    if (r < 0)
        goto fail;
    memcpy(c->shm_name, shmp.shm_name, sizeof(c->shm_name));
    fd = shm_open(c->shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    c->shm = mmap(NULL, WL_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c->shm == MAP_FAILED) {
        c->shm = NULL;
        r = -errno;
        goto fail;
    }
    /* The server resets the shared ring for each new client before it
     * answers its first command: only our private indices start here. */
    FRONT_RING_INIT(&c->front, wl_shm_ring(c->shm), WL_RING_SIZE);
    r = wl_client_info(c);
    if (r < 0)
        goto fail;
    return 0;
fail:
    wl_client_close(c);
    return r;
}

void wl_client_close(struct wl_client *c)
{
    if (c->shm) {
        munmap(c->shm, WL_SHM_SIZE);
        c->shm = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

int wl_client_info(struct wl_client *c)
{
    struct wl_info_reply info;
    int r;

    r = send_cmd(c, WL_CMD_INFO);
    if (r < 0)
        return r;
    r = read_reply(c, WL_CMD_INFO, &info, sizeof(info));
    if (r < 0)
        return r;
    r = wl_info_reply_check(&info);
    if (r < 0)
        return r;
    c->info = info;
    return 0;
}

int wl_client_simple(struct wl_client *c, const char *cmd)
{
    char done[WL_RSPLEN_DONE];
    int r;

    r = send_cmd(c, cmd);
    if (r < 0)
        return r;
    return read_reply(c, "done", done, sizeof(done));
}

int wl_client_export(struct wl_client *c, const char *cmd, struct wl_export_reply *out)
{
    int r;

    r = send_cmd(c, cmd);
    if (r < 0)
        return r;
    r = read_reply(c, cmd, out, sizeof(*out));
    if (r < 0)
        return r;
    return wl_export_reply_check(out);
}

int wl_client_cowc(struct wl_client *c, struct wl_cowc_reply *out)
{
    int r = send_cmd(c, WL_CMD_COWC);

    if (r < 0)
        return r;
    return read_reply(c, WL_CMD_COWC, out, sizeof(*out));
}

int wl_client_adds(struct wl_client *c, const struct wl_disk_range *r, uint32_t n,
                   struct wl_adds_reply *out)
{
    struct wl_adds_params p = { .n = n };
    int e;

    if (n > WL_EXPORT_MAX)
        return -EINVAL;
    memcpy(wl_shm_export(c->shm), r, (size_t)n * sizeof(*r));
    e = send_msg(c, WL_CMD_ADDS, &p, sizeof(p));
    if (e < 0)
        return e;
    return read_reply(c, WL_CMD_ADDS, out, sizeof(*out));
}

const struct wl_disk_range *wl_client_extents(const struct wl_client *c)
{
    return wl_shm_export(c->shm);
}

/* Queues the requests of one round (as many chunks as fit the ring and the
 * data area) and publishes them. */
static void queue_round(struct wl_client *c, struct wl_read_round *rr, uint64_t sector,
                        uint64_t count)
{
    uint32_t per = READ_CHUNK_SECTORS < c->info.ring_max_sectors ? READ_CHUNK_SECTORS
                                                                 : c->info.ring_max_sectors;

    wl_read_round_plan(rr, sector, count, per);
    for (unsigned i = 0; i < rr->n; i++) {
        wl_read_round_request(rr, i, RING_GET_REQUEST(&c->front, c->front.req_prod_pvt));
        c->front.req_prod_pvt++;
    }
    RING_PUSH_REQUESTS(&c->front);
}

int wl_client_read(struct wl_client *c, uint64_t sector, uint64_t count, void *buf)
{
    while (count) {
        struct wl_ctlmsg note;
        struct wl_read_round rr;
        int r;

        queue_round(c, &rr, sector, count);
        r = send_cmd(c, WL_CMD_KICK);
        if (r < 0)
            return r;
        r = read_reply(c, WL_CMD_KICK, &note, sizeof(note));
        if (r < 0)
            return r;
        {
            struct wl_ctlmsg_err e;
            memcpy(&e, &note, sizeof(e));
            if (e.err)
                return wl_msg_errno(e.err);
        }
        RING_IDX rp = c->front.sring->rsp_prod;
        xen_rmb();
        if (rp - c->front.rsp_cons != rr.n)
            return -EPROTO;
        /* Each response is checked to echo a distinct request of this
         * round: together they cover exactly the round's sectors. */
        for (; c->front.rsp_cons != rp; c->front.rsp_cons++) {
            log_response_t rsp = *RING_GET_RESPONSE(&c->front, c->front.rsp_cons);
            r = wl_read_round_response(&rr, &rsp);
            if (r < 0)
                return r;
            memcpy((char *)buf + (size_t)(rsp.sector - sector) * WL_SECTOR_SIZE,
                   wl_shm_data(c->shm) + rsp.offset, (size_t)rsp.count * WL_SECTOR_SIZE);
        }
        sector += rr.sectors;
        count -= rr.sectors;
        buf = (char *)buf + rr.sectors * WL_SECTOR_SIZE;
    }
    return 0;
}
