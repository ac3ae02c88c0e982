/* Replica target backend: an RBD image in a Ceph cluster, through
 * librbd's asynchronous API (docs/rbd.md).
 *
 * A write is copied into one of RBD_SLOTS buffers and submitted with
 * rbd_aio_write; it returns once submitted.  flush waits for every
 * submitted operation and then for rbd_aio_flush, and returns the first
 * error any of them had: a write is durable in the cluster only once a
 * flush after it returned 0, which is what every acknowledgement of the
 * secondary already waits for.  An error is sticky: once an operation
 * failed, every later call fails too, so that no flush can vouch for a
 * write that never happened; the replica is opened again on restart.
 *
 * Two operations on overlapping ranges are never in flight at once (the
 * later one waits for the earlier), so the cluster applies them in the
 * order they were made whatever librbd does with concurrent I/O; a read
 * waits for the writes it overlaps, so it sees them.
 *
 * When the cluster stops answering, librados resends on its own; the
 * operations just stay in flight.  bs_target_rbd_stalled_ms says for how
 * long the oldest has been waiting, for the status and the logs.  The
 * target is remote: its operations may block for that long, so the
 * secondary never calls them on its event loop. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/log.h"
#include "secondary/target.h"

#define MOD "target"

/* Operations in flight at once, and the bytes one write buffer holds (a
 * longer write is submitted in pieces of this size). */
#define RBD_SLOTS 32u
#define RBD_SLOT_BYTES (1u << 20)
/* librados gives up connecting after this long (it would wait forever). */
#define RBD_CONNECT_TIMEOUT "30"

struct rbd_slot {
    struct rbd_target *rt;
    bool busy;
    uint64_t offset, len;
    uint64_t started_ms;
    char *buf; /* RBD_SLOT_BYTES */
};

struct rbd_target {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    bool locked;
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t changed;
    unsigned busy;
    unsigned waiting;          /* reads and flushes waited for */
    uint64_t wait_started_ms;  /* when the oldest of them began */
    int error; /* the first error of any operation; 0 while none failed */
    struct rbd_slot slot[RBD_SLOTS];
    char *bufs;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int bs_target_rbd_parse(const char *path, char *pool, size_t pool_len, char *image,
                        size_t image_len)
{
    const char *spec, *slash;

    if (strncmp(path, "rbd:", 4) != 0)
        return -EINVAL;
    spec = path + 4;
    slash = strchr(spec, '/');
    if (!slash || slash == spec || !slash[1] || strchr(slash + 1, '/') || strchr(spec, '@'))
        return -EINVAL;
    if ((size_t)(slash - spec) >= pool_len || strlen(slash + 1) >= image_len)
        return -ENAMETOOLONG;
    memcpy(pool, spec, (size_t)(slash - spec));
    pool[slash - spec] = '\0';
    snprintf(image, image_len, "%s", slash + 1);
    return 0;
}

static void on_complete(rbd_completion_t c, void *arg)
{
    struct rbd_slot *s = arg;
    struct rbd_target *rt = s->rt;
    ssize_t r = rbd_aio_get_return_value(c);

    rbd_aio_release(c);
    pthread_mutex_lock(&rt->lock);
    if (r < 0 && !rt->error) {
        rt->error = (int)r;
        BS_ERR(MOD, "RBD operation on bytes %" PRIu64 "+%" PRIu64 " failed: %s; the replica "
                    "target fails from now on (restart the secondary)",
               s->offset, s->len, strerror((int)-r));
    }
    s->busy = false;
    rt->busy--;
    pthread_cond_broadcast(&rt->changed);
    pthread_mutex_unlock(&rt->lock);
}

static bool overlaps_busy(const struct rbd_target *rt, uint64_t offset, uint64_t len)
{
    for (unsigned i = 0; i < RBD_SLOTS; i++) {
        const struct rbd_slot *s = &rt->slot[i];
        if (s->busy && offset < s->offset + s->len && s->offset < offset + len)
            return true;
    }
    return false;
}

/* Waits (lock held) for a free slot and for no operation in flight on
 * [offset, offset + len); returns the slot, marked busy, or NULL with
 * *err set once an operation has failed. */
static struct rbd_slot *take_slot(struct rbd_target *rt, uint64_t offset, uint64_t len, int *err)
{
    for (;;) {
        if (rt->error) {
            *err = rt->error;
            return NULL;
        }
        if (rt->busy < RBD_SLOTS && !overlaps_busy(rt, offset, len))
            break;
        pthread_cond_wait(&rt->changed, &rt->lock);
    }
    for (unsigned i = 0; i < RBD_SLOTS; i++) {
        struct rbd_slot *s = &rt->slot[i];
        if (!s->busy) {
            s->busy = true;
            s->offset = offset;
            s->len = len;
            s->started_ms = now_ms();
            rt->busy++;
            return s;
        }
    }
    *err = -EIO; /* unreachable: busy < RBD_SLOTS */
    return NULL;
}

static void give_back(struct rbd_target *rt, struct rbd_slot *s)
{
    pthread_mutex_lock(&rt->lock);
    s->busy = false;
    rt->busy--;
    pthread_cond_broadcast(&rt->changed);
    pthread_mutex_unlock(&rt->lock);
}

enum rbd_op { OP_WRITE, OP_ZERO };

/* Submits one operation on [offset, offset + len) (len at most
 * RBD_SLOT_BYTES for a write). */
static int submit(struct rbd_target *rt, enum rbd_op op, const void *buf, uint64_t len,
                  uint64_t offset)
{
    struct rbd_slot *s;
    rbd_completion_t c;
    int r = 0;

    pthread_mutex_lock(&rt->lock);
    s = take_slot(rt, offset, len, &r);
    pthread_mutex_unlock(&rt->lock);
    if (!s)
        return r;
    if (op == OP_WRITE)
        memcpy(s->buf, buf, (size_t)len);
    r = rbd_aio_create_completion(s, on_complete, &c);
    if (r < 0) {
        give_back(rt, s);
        return r;
    }
    r = op == OP_WRITE ? rbd_aio_write(rt->image, offset, (size_t)len, s->buf, c)
                       : rbd_aio_write_zeroes(rt->image, offset, (size_t)len, c, 0, 0);
    if (r < 0) {
        rbd_aio_release(c);
        give_back(rt, s);
    }
    return r;
}

static int rbd_write_op(struct bs_target *t, const void *buf, size_t len, uint64_t offset,
                        unsigned flags)
{
    struct rbd_target *rt = t->priv;
    const char *p = buf;

    (void)flags; /* librbd has its own cache; there is no direct path */
    atomic_fetch_add_explicit(&t->direct_writes, 1, memory_order_relaxed);
    while (len) {
        size_t n = len < RBD_SLOT_BYTES ? len : RBD_SLOT_BYTES;
        int r = submit(rt, OP_WRITE, p, n, offset);
        if (r < 0)
            return r;
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

static int rbd_zero_op(struct bs_target *t, uint64_t offset, uint64_t len)
{
    return submit(t->priv, OP_ZERO, NULL, len, offset);
}

/* Waits (lock held) until nothing overlapping [offset, offset + len) is
 * in flight (len 0: nothing at all). */
static int drain(struct rbd_target *rt, uint64_t offset, uint64_t len)
{
    while (!rt->error && (len ? overlaps_busy(rt, offset, len) : rt->busy > 0))
        pthread_cond_wait(&rt->changed, &rt->lock);
    return rt->error;
}

/* Runs one operation that is waited for: a read or a flush. */
static int wait_op(struct rbd_target *rt, bool is_read, void *buf, size_t len, uint64_t offset)
{
    rbd_completion_t c;
    int r = rbd_aio_create_completion(NULL, NULL, &c);

    if (r < 0)
        return r;
    pthread_mutex_lock(&rt->lock);
    if (rt->waiting++ == 0)
        rt->wait_started_ms = now_ms();
    pthread_mutex_unlock(&rt->lock);
    r = is_read ? rbd_aio_read(rt->image, offset, len, buf, c) : rbd_aio_flush(rt->image, c);
    if (r == 0) {
        rbd_aio_wait_for_complete(c);
        ssize_t v = rbd_aio_get_return_value(c);
        r = v < 0 ? (int)v : (is_read && (size_t)v != len ? -EIO : 0);
    }
    rbd_aio_release(c);
    pthread_mutex_lock(&rt->lock);
    rt->waiting--;
    pthread_mutex_unlock(&rt->lock);
    return r;
}

static int rbd_read_op(struct bs_target *t, void *buf, size_t len, uint64_t offset)
{
    struct rbd_target *rt = t->priv;
    int r;

    pthread_mutex_lock(&rt->lock);
    r = drain(rt, offset, len);
    pthread_mutex_unlock(&rt->lock);
    return r < 0 ? r : wait_op(rt, true, buf, len, offset);
}

static int rbd_flush_op(struct bs_target *t)
{
    struct rbd_target *rt = t->priv;
    int r;

    pthread_mutex_lock(&rt->lock);
    r = drain(rt, 0, 0);
    pthread_mutex_unlock(&rt->lock);
    if (r < 0)
        return r;
    r = wait_op(rt, false, NULL, 0, 0);
    if (r < 0) {
        pthread_mutex_lock(&rt->lock);
        if (!rt->error)
            rt->error = r;
        pthread_mutex_unlock(&rt->lock);
        BS_ERR(MOD, "flushing %s: %s", t->path, strerror(-r));
    }
    return r;
}

uint64_t bs_target_rbd_stalled_ms(struct bs_target *t)
{
    struct rbd_target *rt = t->priv;
    uint64_t oldest = 0, now = now_ms();

    if (t->ops != &bs_target_rbd_ops || !rt)
        return 0;
    pthread_mutex_lock(&rt->lock);
    for (unsigned i = 0; i < RBD_SLOTS; i++)
        if (rt->slot[i].busy && (!oldest || rt->slot[i].started_ms < oldest))
            oldest = rt->slot[i].started_ms;
    /* Concurrent waits (a read and a flush) share one start: the first
     * one's, an over-estimate only while the first has just ended. */
    if (rt->waiting && (!oldest || rt->wait_started_ms < oldest))
        oldest = rt->wait_started_ms;
    pthread_mutex_unlock(&rt->lock);
    return oldest ? now - oldest : 0;
}

static void rbd_close_op(struct bs_target *t)
{
    struct rbd_target *rt = t->priv;

    if (!rt)
        return;
    if (rt->image) {
        pthread_mutex_lock(&rt->lock);
        rt->error = rt->error ? rt->error : -ESHUTDOWN; /* waiters give up */
        while (rt->busy)
            pthread_cond_wait(&rt->changed, &rt->lock);
        pthread_mutex_unlock(&rt->lock);
        if (rt->locked)
            rbd_lock_release(rt->image);
        rbd_close(rt->image);
    }
    if (rt->io)
        rados_ioctx_destroy(rt->io);
    if (rt->cluster)
        rados_shutdown(rt->cluster);
    pthread_cond_destroy(&rt->changed);
    pthread_mutex_destroy(&rt->lock);
    free(rt->bufs);
    free(rt);
    t->priv = NULL;
}

/* Names the lock's owners ("client at ADDR"), or says none is known. */
static void lock_owner(rbd_image_t image, char *buf, size_t size)
{
    rbd_lock_mode_t mode;
    char *owners[4];
    size_t n = 4;

    snprintf(buf, size, "owner unknown");
    if (rbd_lock_get_owners(image, &mode, owners, &n) < 0 || n == 0)
        return;
    snprintf(buf, size, "owner %s", owners[0]);
    rbd_lock_get_owners_cleanup(owners, n);
}

static int rbd_open_op(struct bs_target *t)
{
    char pool[256], name[512];
    struct rbd_target *rt;
    uint64_t size, started;
    int r;

    r = bs_target_rbd_parse(t->path, pool, sizeof(pool), name, sizeof(name));
    if (r < 0) {
        BS_ERR(MOD, "replica %s: not rbd:POOL/IMAGE", t->path);
        return r;
    }
    rt = calloc(1, sizeof(*rt));
    if (!rt || !(rt->bufs = malloc((size_t)RBD_SLOTS * RBD_SLOT_BYTES))) {
        free(rt);
        BS_ERR(MOD, "out of memory for %s", t->path);
        return -ENOMEM;
    }
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->changed, NULL);
    for (unsigned i = 0; i < RBD_SLOTS; i++) {
        rt->slot[i].rt = rt;
        rt->slot[i].buf = rt->bufs + (size_t)i * RBD_SLOT_BYTES;
    }
    t->priv = rt;
    r = rados_create(&rt->cluster, t->ceph_id);
    if (r < 0) {
        rt->cluster = NULL;
        BS_ERR(MOD, "replica %s: Ceph client %s: %s", t->path, t->ceph_id, strerror(-r));
        return r;
    }
    r = rados_conf_read_file(rt->cluster, t->ceph_conf);
    if (r < 0) {
        BS_ERR(MOD, "replica %s: cannot read the Ceph configuration %s: %s", t->path,
               t->ceph_conf, strerror(-r));
        return r;
    }
    rados_conf_set(rt->cluster, "client_mount_timeout", RBD_CONNECT_TIMEOUT);
    r = rados_connect(rt->cluster);
    if (r < 0) {
        BS_ERR(MOD, "replica %s: cannot connect to the Ceph cluster of %s as client.%s: %s",
               t->path, t->ceph_conf, t->ceph_id, strerror(-r));
        return r;
    }
    r = rados_ioctx_create(rt->cluster, pool, &rt->io);
    if (r < 0) {
        rt->io = NULL;
        BS_ERR(MOD, "replica %s: pool %s: %s", t->path, pool, strerror(-r));
        return r;
    }
    r = rbd_open(rt->io, name, &rt->image, NULL);
    if (r < 0) {
        rt->image = NULL;
        BS_ERR(MOD, "replica %s: cannot open image %s in pool %s: %s", t->path, name, pool,
               strerror(-r));
        return r;
    }
    /* The exclusive lock, held (not handed over on request) while this
     * process writes: a second writer of the same image is refused. */
    started = now_ms();
    r = rbd_lock_acquire(rt->image, RBD_LOCK_MODE_EXCLUSIVE);
    if (r == 0) {
        rt->locked = true;
        /* librbd breaks the lock of an owner whose watch is gone: one that
         * died holding it is waited for until its watch times out. */
        if (now_ms() - started > 2000)
            BS_INFO(MOD, "replica %s: took the image's exclusive lock after %" PRIu64 " ms (its "
                         "previous owner had to time out: osd_client_watch_timeout)",
                    t->path, now_ms() - started);
    } else if (r == -EINVAL || r == -EOPNOTSUPP) {
        BS_WARN(MOD, "replica %s: the image has no exclusive-lock feature: nothing keeps "
                     "another client from writing it meanwhile",
                t->path);
    } else {
        char owner[160];
        lock_owner(rt->image, owner, sizeof(owner));
        BS_ERR(MOD, "replica %s: the image's exclusive lock is held by another client (%s): %s",
               t->path, owner, strerror(-r));
        return -EBUSY;
    }
    r = rbd_get_size(rt->image, &size);
    if (r < 0) {
        BS_ERR(MOD, "replica %s: size: %s", t->path, strerror(-r));
        return r;
    }
    t->size_bytes = size;
    t->logical_block = 512;
    t->physical_block = 4096;
    t->remote = true;
    return 0;
}

const struct bs_target_ops bs_target_rbd_ops = {
    .name = "rbd",
    .open = rbd_open_op,
    .write = rbd_write_op,
    .read = rbd_read_op,
    .zero = rbd_zero_op,
    .flush = rbd_flush_op,
    .close = rbd_close_op,
};
