/* nbdkit-writelog-filter: records every write, zero and trim of the disk
 * in a write log and serves the log over the tapdisk write-log protocol
 * (docs/writelog-protocol.md).  All protocol work is in wl_server; this
 * file only adapts nbdkit to it.
 *
 *   nbdkit --filter=writelog PLUGIN ... writelog-name=NAME [writelog-dir=DIR]
 *          [writelog-grain=SIZE] [writelog-readers=N]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "common/log.h"
#include "primary/writelog/wl_server.h"

static const char *wl_name;
static const char *wl_dir = WL_DEFAULT_DIR;
static uint32_t wl_grain;        /* sectors; 0 = automatic */
static unsigned wl_readers = WL_DEFAULT_READERS;
static int plugin_thread_model = NBDKIT_THREAD_MODEL_PARALLEL;

static struct wl_server *server;
static struct wl_log *wlog;      /* set once in after_fork, read on the I/O path */
static nbdkit_next *reader_ctx[WL_MAX_READERS];
static unsigned reader_ctx_count;
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
    return next(nxdata, key, value);
}

static int writelog_config_complete(nbdkit_next_config_complete *next, nbdkit_backend *nxdata)
{
    if (!wl_name) {
        nbdkit_error("writelog-name=NAME is required");
        return -1;
    }
    return next(nxdata);
}

#define writelog_config_help                                                  \
    "writelog-name=NAME     (required) Log name: socket DIR/log_NAME.ctl.\n"  \
    "writelog-dir=DIR       Control socket directory (default " WL_DEFAULT_DIR ").\n" \
    "writelog-grain=SIZE    Bytes per dirty bit (default: 4K, coarser past 2T).\n" \
    "writelog-readers=N     Threads serving ring reads (default 32)."

static int writelog_get_ready(int thread_model)
{
    plugin_thread_model = thread_model;
    return 0;
}

/* Reads for the ring through our own backend contexts.  The last sector of
 * a disk whose size is not a multiple of 512 is padded with zeroes. */
static int reader_read(void *opaque, unsigned reader, void *buf, uint64_t sector, uint32_t count)
{
    nbdkit_next *next = reader_ctx[reader];
    uint64_t off = sector * WL_SECTOR_SIZE;
    uint64_t len = (uint64_t)count * WL_SECTOR_SIZE;
    int err = 0;

    (void)opaque;
    if (off + len > (uint64_t)disk_bytes) {
        memset((char *)buf + ((uint64_t)disk_bytes - off), 0, off + len - (uint64_t)disk_bytes);
        len = (uint64_t)disk_bytes - off;
    }
    if (next->pread(next, buf, (uint32_t)len, off, 0, &err) < 0)
        return -(err ? err : EIO);
    return 0;
}

static const struct wl_reader_ops reader_ops = {
    .read = reader_read,
};

static void close_readers(void)
{
    for (unsigned i = 0; i < reader_ctx_count; i++) {
        reader_ctx[i]->finalize(reader_ctx[i]);
        nbdkit_next_context_close(reader_ctx[i]);
        reader_ctx[i] = NULL;
    }
    reader_ctx_count = 0;
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
    for (unsigned i = 0; i < readers; i++) {
        nbdkit_next *next = nbdkit_next_context_open(backend, 1, "", 1);
        if (!next) {
            nbdkit_error("writelog: cannot open a backend context for ring reads");
            goto fail;
        }
        if (next->prepare(next) < 0) {
            nbdkit_next_context_close(next);
            nbdkit_error("writelog: cannot prepare a backend context for ring reads");
            goto fail;
        }
        reader_ctx[reader_ctx_count++] = next;
        /* nbdkit checks each request against the size a context has
         * learned, so every context must ask for it once. */
        int64_t size = next->get_size(next);
        if (size <= 0 || (i > 0 && size != disk_bytes)) {
            nbdkit_error("writelog: the disk has no usable size (%" PRIi64 ")", size);
            goto fail;
        }
        disk_bytes = size;
    }
    cfg = (struct wl_server_config){
        .name = wl_name,
        .dir = wl_dir,
        .disk_sectors = ((uint64_t)disk_bytes + WL_SECTOR_SIZE - 1) / WL_SECTOR_SIZE,
        .grain_sectors = wl_grain,
        .readers = readers,
        .ops = &reader_ops,
    };
    r = wl_server_start(&cfg, &server);
    if (r < 0) {
        nbdkit_error("writelog: cannot start the write log %s: %s", wl_name, strerror(-r));
        goto fail;
    }
    wlog = wl_server_log(server);
    return 0;
fail:
    close_readers();
    return -1;
}

static void writelog_cleanup(nbdkit_backend *backend)
{
    (void)backend;
    wl_server_stop(server);
    server = NULL;
    wlog = NULL;
    close_readers();
}

/* Marks [offset, offset + count) in sectors, rounded outwards. */
static inline void mark(uint64_t offset, uint32_t count)
{
    uint64_t first = offset / WL_SECTOR_SIZE;
    uint64_t end = (offset + count + WL_SECTOR_SIZE - 1) / WL_SECTOR_SIZE;

    if (count)
        wl_log_mark(wlog, first, end - first);
}

/* Every change is marked before it is passed on (so a crash between the two
 * never hides it) and again once it has completed (so a getw that raced
 * with it cannot leave newer data unshipped).  Failed writes are marked
 * too: part of them may have reached the disk. */
static int writelog_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags, int *err)
{
    int r;

    (void)handle;
    mark(offset, count);
    r = next->pwrite(next, buf, count, offset, flags, err);
    mark(offset, count);
    return r;
}

static int writelog_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    int r;

    (void)handle;
    mark(offset, count);
    r = next->zero(next, count, offset, flags, err);
    mark(offset, count);
    return r;
}

static int writelog_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    int r;

    (void)handle;
    mark(offset, count);
    r = next->trim(next, count, offset, flags, err);
    mark(offset, count);
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
