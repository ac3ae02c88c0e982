/* nbdkit-writelog-filter: records every write, zero and trim of the disk
 * in a write log and serves the log over the tapdisk write-log protocol
 * (docs/writelog-protocol.md).  All protocol work is in wl_server; this
 * file only adapts nbdkit to it.
 *
 *   nbdkit --filter=writelog PLUGIN ... writelog-name=NAME [writelog-dir=DIR]
 *          [writelog-grain=SIZE] [writelog-readers=N]
 *          [writelog-cow-max=SIZE] [writelog-cow-wait=DURATION]
 *
 * Copies for copy-before-write are read through a small pool of backend
 * contexts of their own (COW_CONTEXTS, each behind a mutex), not through
 * the writer's connection: a writer takes a free one, or waits for one.
 * They are used only while a sealed epoch has unread grains.
 *
 * Under systemd (nbdkit -f in a Type=notify unit) the filter says READY=1
 * once the write log serves: nbdkit 1.32 has bound and is listening on
 * its NBD sockets before it calls after_fork, and the log's control
 * socket is listening when wl_server_start returns, so both a guest and
 * the agent can connect from then on.  nbdkit itself never notifies.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"
#include "common/opt.h"
#include "primary/writelog/wl_server.h"

#define COW_CONTEXTS 4u
#define COW_MAX_LIMIT (64ull << 30)
#define COW_WAIT_LIMIT_MS 60000u

static const char *wl_name;
static const char *wl_dir = WL_DEFAULT_DIR;
static uint32_t wl_grain;        /* sectors; 0 = automatic */
static unsigned wl_readers = WL_DEFAULT_READERS;
static uint64_t wl_cow_max = WL_EPOCH_DEFAULT_COW_MAX;
static uint32_t wl_cow_wait_ms = WL_EPOCH_DEFAULT_COW_WAIT_MS;
static int plugin_thread_model = NBDKIT_THREAD_MODEL_PARALLEL;

static struct wl_server *server;
static struct wl_epoch *epochs;  /* set once in after_fork, read on the I/O path */
static nbdkit_next *reader_ctx[WL_MAX_READERS];
static unsigned reader_ctx_count;
static nbdkit_next *cow_ctx[COW_CONTEXTS];
static pthread_mutex_t cow_lock[COW_CONTEXTS] = { PTHREAD_MUTEX_INITIALIZER,
                                                   PTHREAD_MUTEX_INITIALIZER,
                                                   PTHREAD_MUTEX_INITIALIZER,
                                                   PTHREAD_MUTEX_INITIALIZER };
static unsigned cow_ctx_count;
static atomic_uint cow_next;
static int64_t disk_bytes;

static void nbdkit_sink(enum bs_log_level level, const char *line, void *opaque)
{
    (void)opaque;
    if (level == BS_LOG_ERR)
        nbdkit_error("%s", line);
    else if (level == BS_LOG_WARN)
        nbdkit_error("warning: %s", line);
    else
        nbdkit_debug("%s", line);
}

static void writelog_load(void)
{
    bs_log_set_sink(nbdkit_sink, NULL);
    bs_log_set_level(BS_LOG_DEBUG); /* nbdkit_debug only prints with -v */
}

static int writelog_config(nbdkit_next_config *next, nbdkit_backend *nxdata, const char *key,
                           const char *value)
{
    if (strcmp(key, "writelog-name") == 0) {
        if (!*value) {
            nbdkit_error("writelog-name must not be empty");
            return -1;
        }
        wl_name = value;
        return 0;
    }
    if (strcmp(key, "writelog-dir") == 0) {
        if (!*value) {
            nbdkit_error("writelog-dir must not be empty");
            return -1;
        }
        wl_dir = value;
        return 0;
    }
    if (strcmp(key, "writelog-grain") == 0) {
        int64_t bytes = nbdkit_parse_size(value);
        if (bytes < 0)
            return -1;
        if (bytes < WL_SECTOR_SIZE || (bytes & (bytes - 1)) || bytes > (INT64_C(1) << 39)) {
            nbdkit_error("writelog-grain=%s: must be a power of two from 512 bytes to 512 GiB",
                         value);
            return -1;
        }
        wl_grain = (uint32_t)(bytes / WL_SECTOR_SIZE);
        return 0;
    }
    if (strcmp(key, "writelog-readers") == 0) {
        unsigned n;
        if (nbdkit_parse_unsigned("writelog-readers", value, &n) < 0)
            return -1;
        if (n < 1 || n > WL_MAX_READERS) {
            nbdkit_error("writelog-readers=%s: must be 1 to %u", value, WL_MAX_READERS);
            return -1;
        }
        wl_readers = n;
        return 0;
    }
    if (strcmp(key, "writelog-cow-max") == 0) {
        uint64_t bytes;
        if (bs_parse_size(value, &bytes) < 0 || bytes > COW_MAX_LIMIT) {
            nbdkit_error("writelog-cow-max=%s: must be a size (bytes, or with a unit: 64K, "
                         "64M, 1G) of at most 64G; 0 disables copy-before-write",
                         value);
            return -1;
        }
        wl_cow_max = bytes;
        return 0;
    }
    if (strcmp(key, "writelog-cow-wait") == 0) {
        uint64_t ms;
        if (bs_parse_duration_ms(value, 1, &ms) < 0 || ms < 1 || ms > COW_WAIT_LIMIT_MS) {
            nbdkit_error("writelog-cow-wait=%s: must be a duration from 1ms to 60s "
                         "(milliseconds, or with a unit: 100ms, 2s)",
                         value);
            return -1;
        }
        wl_cow_wait_ms = (uint32_t)ms;
        return 0;
    }
    return next(nxdata, key, value);
}

static int writelog_config_complete(nbdkit_next_config_complete *next, nbdkit_backend *nxdata)
{
    uint64_t grain_bytes = (uint64_t)(wl_grain ? wl_grain : WL_LOG_DEFAULT_GRAIN) * WL_SECTOR_SIZE;

    if (!wl_name) {
        nbdkit_error("writelog-name=NAME is required");
        return -1;
    }
    /* The automatic grain is known only once the disk's size is; it is
     * never smaller than the default, so this catches a pool too small for
     * any disk now, and wl_epoch_create the rest at start. */
    if (wl_cow_max && wl_cow_max < grain_bytes) {
        nbdkit_error("writelog-cow-max=%" PRIu64 " cannot hold one grain of %" PRIu64
                     " bytes: raise it, or set 0 to disable copy-before-write",
                     wl_cow_max, grain_bytes);
        return -1;
    }
    return next(nxdata);
}

#define writelog_config_help                                                  \
    "writelog-name=NAME     (required) Log name: socket DIR/log_NAME.ctl.\n"  \
    "writelog-dir=DIR       Control socket directory (default " WL_DEFAULT_DIR ").\n" \
    "writelog-grain=SIZE    Bytes per dirty bit (default: 4K, coarser past 2T).\n" \
    "writelog-readers=N     Threads serving ring reads (default 32).\n" \
    "writelog-cow-max=SIZE  Copy-before-write pool (default 64M; 0 disables it).\n" \
    "writelog-cow-wait=DURATION  Longest a write waits for a seal or the pool (default 100ms)."

static int writelog_get_ready(int thread_model)
{
    plugin_thread_model = thread_model;
    return 0;
}

/* Reads for the ring through our own backend contexts.  The last sector of
 * a disk whose size is not a multiple of 512 is padded with zeroes. */
static int read_sectors(nbdkit_next *next, void *buf, uint64_t sector, uint32_t count)
{
    uint64_t off = sector * WL_SECTOR_SIZE;
    uint64_t len = (uint64_t)count * WL_SECTOR_SIZE;
    int err = 0;

    if (off + len > (uint64_t)disk_bytes) {
        memset((char *)buf + ((uint64_t)disk_bytes - off), 0, off + len - (uint64_t)disk_bytes);
        len = (uint64_t)disk_bytes - off;
    }
    if (next->pread(next, buf, (uint32_t)len, off, 0, &err) < 0)
        return -(err ? err : EIO);
    return 0;
}

static int reader_read(void *opaque, unsigned reader, void *buf, uint64_t sector, uint32_t count)
{
    (void)opaque;
    return read_sectors(reader_ctx[reader], buf, sector, count);
}

/* A copy-before-write read: through a free context of the pool, or the
 * next one in turn when all are busy. */
static int preserve_read(void *opaque, void *buf, uint64_t sector, uint32_t count)
{
    unsigned start = atomic_fetch_add(&cow_next, 1), i;
    int r;

    (void)opaque;
    for (i = 0; i < cow_ctx_count; i++)
        if (pthread_mutex_trylock(&cow_lock[(start + i) % cow_ctx_count]) == 0)
            break;
    if (i == cow_ctx_count) {
        i = 0;
        pthread_mutex_lock(&cow_lock[start % cow_ctx_count]);
    }
    i = (start + i) % cow_ctx_count;
    r = read_sectors(cow_ctx[i], buf, sector, count);
    pthread_mutex_unlock(&cow_lock[i]);
    return r;
}

static const struct wl_reader_ops reader_ops = {
    .read = reader_read,
    .preserve_read = preserve_read,
};

static void close_contexts(nbdkit_next **ctx, unsigned *count)
{
    for (unsigned i = 0; i < *count; i++) {
        ctx[i]->finalize(ctx[i]);
        nbdkit_next_context_close(ctx[i]);
        ctx[i] = NULL;
    }
    *count = 0;
}

static void close_readers(void)
{
    close_contexts(reader_ctx, &reader_ctx_count);
    close_contexts(cow_ctx, &cow_ctx_count);
}

/* Opens n backend contexts of our own into ctx; every one learns the
 * disk's size (nbdkit checks each request against what a context has
 * learned).  Returns 0 or -1 (logged). */
static int open_contexts(nbdkit_backend *backend, nbdkit_next **ctx, unsigned *count,
                         unsigned n, const char *what)
{
    for (unsigned i = 0; i < n; i++) {
        nbdkit_next *next = nbdkit_next_context_open(backend, 1, "", 1);
        if (!next) {
            nbdkit_error("writelog: cannot open a backend context for %s", what);
            return -1;
        }
        if (next->prepare(next) < 0) {
            nbdkit_next_context_close(next);
            nbdkit_error("writelog: cannot prepare a backend context for %s", what);
            return -1;
        }
        ctx[(*count)++] = next;
        int64_t size = next->get_size(next);
        if (size <= 0 || (disk_bytes && size != disk_bytes)) {
            nbdkit_error("writelog: the disk has no usable size (%" PRIi64 ")", size);
            return -1;
        }
        disk_bytes = size;
    }
    return 0;
}

static int writelog_after_fork(nbdkit_backend *backend)
{
    struct wl_server_config cfg;
    unsigned readers = wl_readers;
    int r;

    /* A plugin that serialises requests must not see our reads in parallel
     * with each other. */
    if (plugin_thread_model < NBDKIT_THREAD_MODEL_PARALLEL && readers > 1) {
        nbdkit_debug("writelog: plugin is not parallel; using one ring reader");
        readers = 1;
    }
    if (open_contexts(backend, reader_ctx, &reader_ctx_count, readers, "ring reads") < 0)
        goto fail;
    if (wl_cow_max &&
        open_contexts(backend, cow_ctx, &cow_ctx_count,
                      plugin_thread_model < NBDKIT_THREAD_MODEL_PARALLEL ? 1 : COW_CONTEXTS,
                      "copy-before-write reads") < 0)
        goto fail;
    cfg = (struct wl_server_config){
        .name = wl_name,
        .dir = wl_dir,
        .disk_sectors = ((uint64_t)disk_bytes + WL_SECTOR_SIZE - 1) / WL_SECTOR_SIZE,
        .grain_sectors = wl_grain,
        .readers = readers,
        .cow_max_bytes = wl_cow_max,
        .cow_wait_ms = wl_cow_wait_ms,
        .ops = &reader_ops,
    };
    r = wl_server_start(&cfg, &server);
    if (r < 0) {
        nbdkit_error("writelog: cannot start the write log %s: %s", wl_name, strerror(-r));
        goto fail;
    }
    epochs = wl_server_epoch(server);
    r = sd_notifyf(0, "READY=1\nSTATUS=serving; write log %s in %s", wl_name, wl_dir);
    if (r < 0)
        nbdkit_error("writelog: cannot notify systemd ($NOTIFY_SOCKET): %s", strerror(-r));
    return 0;
fail:
    close_readers();
    return -1;
}

static void writelog_cleanup(nbdkit_backend *backend)
{
    (void)backend;
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    wl_server_stop(server);
    server = NULL;
    epochs = NULL;
    close_readers();
}

/* The sectors [*sector, *sector + *n) that bytes [offset, offset + count)
 * touch, rounded outwards. */
static inline void sectors_of(uint64_t offset, uint32_t count, uint64_t *sector, uint64_t *n)
{
    uint64_t end = (offset + count + WL_SECTOR_SIZE - 1) / WL_SECTOR_SIZE;

    *sector = offset / WL_SECTOR_SIZE;
    *n = count ? end - *sector : 0;
}

/* A frozen log (frze: the agent demoted this disk) takes no more writes. */
static int refuse_frozen(int *err)
{
    static _Atomic bool said;

    if (!atomic_exchange(&said, true))
        nbdkit_error("writelog: the write log is frozen (this disk was demoted to a replica): "
                     "writes fail with EROFS");
    *err = EROFS;
    return -1;
}

/* Every change enters the write gate and is marked before it is passed on
 * (so a crash between the two never hides it), after the grains a sealed
 * epoch still needs were preserved; it is marked again once it has
 * completed (so a seal that raced with it cannot leave newer data
 * unshipped).  Failed writes are marked too: part of them may have
 * reached the disk.  After a freeze a write is refused between its mark
 * and the disk, never before the mark. */
static int writelog_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags, int *err)
{
    uint64_t s, n, t;
    int r;

    (void)handle;
    sectors_of(offset, count, &s, &n);
    t = wl_epoch_write_begin(epochs, s, n);
    if (wl_epoch_refuses(epochs))
        r = refuse_frozen(err);
    else
        r = next->pwrite(next, buf, count, offset, flags, err);
    wl_epoch_write_end(epochs, t, s, n);
    return r;
}

static int writelog_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    uint64_t s, n, t;
    int r;

    (void)handle;
    sectors_of(offset, count, &s, &n);
    t = wl_epoch_write_begin(epochs, s, n);
    if (wl_epoch_refuses(epochs))
        r = refuse_frozen(err);
    else
        r = next->zero(next, count, offset, flags, err);
    wl_epoch_write_end(epochs, t, s, n);
    return r;
}

static int writelog_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    uint64_t s, n, t;
    int r;

    (void)handle;
    sectors_of(offset, count, &s, &n);
    t = wl_epoch_write_begin(epochs, s, n);
    if (wl_epoch_refuses(epochs))
        r = refuse_frozen(err);
    else
        r = next->trim(next, count, offset, flags, err);
    wl_epoch_write_end(epochs, t, s, n);
    return r;
}

static struct nbdkit_filter filter = {
    .name = "writelog",
    .longname = "blkship write-log filter",
    .load = writelog_load,
    .config = writelog_config,
    .config_complete = writelog_config_complete,
    .config_help = writelog_config_help,
    .get_ready = writelog_get_ready,
    .after_fork = writelog_after_fork,
    .cleanup = writelog_cleanup,
    .pwrite = writelog_pwrite,
    .zero = writelog_zero,
    .trim = writelog_trim,
};

NBDKIT_REGISTER_FILTER(filter)
