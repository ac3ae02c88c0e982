/* A test-only nbdkit filter that behaves like a disk with a volatile write
 * cache and the worst possible luck: every write, zero and trim is held in
 * memory and reaches the plugin only when a FLUSH (or a FUA request) asks
 * for it.  Killing this nbdkit is a power cut: whatever was not flushed is
 * gone, and the plugin's file holds exactly what the client made durable.
 *
 *   nbdkit --filter=./nbdkit-volatile-filter.so file backing.img
 *
 * The overlay has one entry per 4 KiB block of the disk: a mask of its
 * eight 512-byte sectors held in memory and their data (no buffer while
 * every sector held is zero).  Reads take the plugin's data and lay the
 * overlay over it.  A FLUSH writes every held sector to the plugin,
 * flushes the plugin, and only then lets the overlay go.  A FUA write or
 * zero goes into the overlay and then through to the plugin with a flush,
 * dropping the sectors it covered.  Writes that cover part of a sector
 * read the rest of it from the plugin first.
 *
 * The overlay is one for the whole disk, shared by every connection, and
 * requests are serialised (thread model SERIALIZE_ALL_REQUESTS), so a
 * flush on one connection covers the writes of all: multi-conn is safe.
 * Memory grows up to the disk's size; this is for test disks.
 *
 * Each flush is reported with nbdkit_debug (nbdkit -v) as a counter line.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#define SECTOR 512u
#define BLOCK 4096u
#define SECTORS_PER_BLOCK (BLOCK / SECTOR)
#define STAGE_BYTES (1u << 20) /* a flush writes runs of held sectors this big */

struct vblock {
    uint8_t mask;  /* bit i: sector i of the block is held in memory */
    uint8_t *data; /* BLOCK bytes, or NULL while every held sector is zero */
};

/* Guarded by nbdkit's serialisation of all requests; the mutex only covers
 * the first connection's sizing of the overlay against a concurrent one. */
static pthread_mutex_t overlay_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vblock *overlay;
static uint64_t disk_bytes;
static uint64_t nblocks;
static uint64_t held_sectors;
static uint64_t flushes;
static uint8_t *stage;

static int volatile_thread_model(void)
{
    return NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
}

static void volatile_unload(void)
{
    for (uint64_t b = 0; overlay && b < nblocks; b++)
        free(overlay[b].data);
    free(overlay);
    free(stage);
}

/* Sizes the overlay on the first connection; later ones must agree. */
static int volatile_prepare(nbdkit_next *next, void *handle, int readonly)
{
    int64_t size = next->get_size(next);
    int r = 0;

    (void)handle;
    (void)readonly;
    if (size < 0)
        return -1;
    /* nbdkit answers a layer's flush only after its can_flush was asked. */
    if (next->can_write(next) != 1 || next->can_flush(next) != 1) {
        nbdkit_error("volatile: the plugin must be writable and able to flush");
        return -1;
    }
    pthread_mutex_lock(&overlay_lock);
    if (!overlay) {
        if (size % SECTOR) {
            nbdkit_error("volatile: the disk (%" PRIi64 " bytes) is not a whole number of sectors",
                         size);
            r = -1;
        } else {
            disk_bytes = (uint64_t)size;
            nblocks = (disk_bytes + BLOCK - 1) / BLOCK;
            overlay = calloc(nblocks ? nblocks : 1, sizeof(*overlay));
            stage = malloc(STAGE_BYTES);
            if (!overlay || !stage) {
                nbdkit_error("volatile: no memory for the overlay of %" PRIu64 " blocks",
                             nblocks);
                free(overlay);
                free(stage);
                overlay = NULL;
                stage = NULL;
                r = -1;
            }
        }
    } else if ((uint64_t)size != disk_bytes) {
        nbdkit_error("volatile: the plugin's size changed (%" PRIi64 ", was %" PRIu64 ")", size,
                     disk_bytes);
        r = -1;
    }
    pthread_mutex_unlock(&overlay_lock);
    return r;
}

/* What the filter does itself is advertised as native; extents would show
 * the plugin's holes under held data, so there are none. */
static int volatile_can_flush(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return 1;
}

static int volatile_can_fua(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return NBDKIT_FUA_NATIVE;
}

static int volatile_can_zero(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return NBDKIT_ZERO_NATIVE;
}

static int volatile_can_fast_zero(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return 1;
}

static int volatile_can_trim(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return 1;
}

static int volatile_can_extents(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return 0;
}

static int volatile_can_cache(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return NBDKIT_CACHE_NONE;
}

static int volatile_can_multi_conn(nbdkit_next *next, void *handle)
{
    (void)next;
    (void)handle;
    return 1;
}

static bool held(uint64_t sector)
{
    return overlay[sector / SECTORS_PER_BLOCK].mask & (1u << (sector % SECTORS_PER_BLOCK));
}

/* Copies held sector `sector` (512 bytes) to dst. */
static void copy_held(uint64_t sector, uint8_t *dst)
{
    const struct vblock *b = &overlay[sector / SECTORS_PER_BLOCK];

    if (b->data)
        memcpy(dst, b->data + (sector % SECTORS_PER_BLOCK) * SECTOR, SECTOR);
    else
        memset(dst, 0, SECTOR);
}

static int volatile_pread(nbdkit_next *next, void *handle, void *buf, uint32_t count,
                          uint64_t offset, uint32_t flags, int *err)
{
    uint8_t sec[SECTOR];

    (void)handle;
    if (next->pread(next, buf, count, offset, flags, err) < 0)
        return -1;
    for (uint64_t s = offset / SECTOR; s * SECTOR < offset + count; s++) {
        if (!held(s))
            continue;
        uint64_t lo = s * SECTOR > offset ? s * SECTOR : offset;
        uint64_t hi = (s + 1) * SECTOR < offset + count ? (s + 1) * SECTOR : offset + count;
        copy_held(s, sec);
        memcpy((uint8_t *)buf + (lo - offset), sec + (lo - s * SECTOR), hi - lo);
    }
    return 0;
}

/* Puts [offset, offset + count) into the overlay: buf's bytes, or zeroes
 * when buf is NULL. */
static int hold(nbdkit_next *next, const void *buf, uint32_t count, uint64_t offset, int *err)
{
    for (uint64_t s = offset / SECTOR; s * SECTOR < offset + count; s++) {
        struct vblock *b = &overlay[s / SECTORS_PER_BLOCK];
        uint8_t bit = (uint8_t)(1u << (s % SECTORS_PER_BLOCK));
        uint64_t lo = s * SECTOR > offset ? s * SECTOR : offset;
        uint64_t hi = (s + 1) * SECTOR < offset + count ? (s + 1) * SECTOR : offset + count;
        bool whole = hi - lo == SECTOR;

        if (!buf && (whole || (b->mask & bit)) && !b->data) {
            /* Zeroes over zeroes (or over nothing, for a whole sector):
             * no buffer needed. */
            if (!(b->mask & bit))
                held_sectors++;
            b->mask |= bit;
            continue;
        }
        if (!b->data) {
            b->data = calloc(1, BLOCK); /* held sectors without data are zeroes */
            if (!b->data) {
                *err = ENOMEM;
                nbdkit_error("volatile: out of memory for the overlay");
                return -1;
            }
        }
        uint8_t *sec = b->data + (s % SECTORS_PER_BLOCK) * SECTOR;
        if (!whole && !(b->mask & bit) &&
            next->pread(next, sec, SECTOR, s * SECTOR, 0, err) < 0)
            return -1;
        if (buf)
            memcpy(sec + (lo - s * SECTOR), (const uint8_t *)buf + (lo - offset), hi - lo);
        else
            memset(sec + (lo - s * SECTOR), 0, hi - lo);
        if (!(b->mask & bit))
            held_sectors++;
        b->mask |= bit;
    }
    return 0;
}

static void drop(uint64_t first_sector, uint64_t end_sector)
{
    for (uint64_t s = first_sector; s < end_sector; s++) {
        struct vblock *b = &overlay[s / SECTORS_PER_BLOCK];
        uint8_t bit = (uint8_t)(1u << (s % SECTORS_PER_BLOCK));

        if (!b->mask && s % SECTORS_PER_BLOCK == 0 && s + SECTORS_PER_BLOCK <= end_sector) {
            s += SECTORS_PER_BLOCK - 1;
            continue;
        }
        if (b->mask & bit) {
            b->mask &= (uint8_t)~bit;
            held_sectors--;
        }
        if (!b->mask) {
            free(b->data);
            b->data = NULL;
        }
    }
}

/* Writes the held sectors of [first, end) to the plugin in runs; the
 * overlay is unchanged. */
static int write_back(nbdkit_next *next, uint64_t first, uint64_t end, uint64_t *bytes, int *err)
{
    uint64_t run = 0, run_start = 0;

    for (uint64_t s = first; s <= end; s++) {
        /* Whole blocks with nothing held are skipped at once. */
        if (!run && s % SECTORS_PER_BLOCK == 0 && s + SECTORS_PER_BLOCK <= end &&
            !overlay[s / SECTORS_PER_BLOCK].mask) {
            s += SECTORS_PER_BLOCK - 1;
            continue;
        }
        bool h = s < end && held(s);

        if (run && (!h || run * SECTOR == STAGE_BYTES)) {
            if (next->pwrite(next, stage, (uint32_t)(run * SECTOR), run_start * SECTOR, 0,
                             err) < 0)
                return -1;
            *bytes += run * SECTOR;
            run = 0;
        }
        if (h) {
            if (!run)
                run_start = s;
            copy_held(s, stage + run * SECTOR);
            run++;
        }
    }
    return 0;
}

/* Makes [offset, offset + count) durable on the plugin at once (FUA). */
static int write_through(nbdkit_next *next, uint32_t count, uint64_t offset, int *err)
{
    uint64_t first = offset / SECTOR, end = (offset + count + SECTOR - 1) / SECTOR, bytes = 0;

    if (write_back(next, first, end, &bytes, err) < 0 || next->flush(next, 0, err) < 0)
        return -1;
    drop(first, end);
    return 0;
}

static int volatile_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags, int *err)
{
    (void)handle;
    if (hold(next, buf, count, offset, err) < 0)
        return -1;
    if (flags & NBDKIT_FLAG_FUA)
        return write_through(next, count, offset, err);
    return 0;
}

static int volatile_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    (void)handle;
    if (hold(next, NULL, count, offset, err) < 0)
        return -1;
    if (flags & NBDKIT_FLAG_FUA)
        return write_through(next, count, offset, err);
    return 0;
}

/* A trimmed range reads back as zeroes (as the file plugin's does). */
static int volatile_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
    return volatile_zero(next, handle, count, offset, flags, err);
}

static int volatile_flush(nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
    uint64_t bytes = 0;

    (void)handle;
    if (held_sectors && write_back(next, 0, disk_bytes / SECTOR, &bytes, err) < 0)
        return -1;
    if (next->flush(next, flags, err) < 0)
        return -1;
    /* Only now is it durable: a failure above keeps everything held. */
    drop(0, disk_bytes / SECTOR);
    flushes++;
    nbdkit_debug("volatile: flush %" PRIu64 ": %" PRIu64 " bytes made durable", flushes, bytes);
    return 0;
}

static struct nbdkit_filter filter = {
    .name = "volatile",
    .longname = "blkship test filter: a write cache lost on power cut",
    .thread_model = volatile_thread_model,
    .unload = volatile_unload,
    .prepare = volatile_prepare,
    .can_flush = volatile_can_flush,
    .can_fua = volatile_can_fua,
    .can_zero = volatile_can_zero,
    .can_fast_zero = volatile_can_fast_zero,
    .can_trim = volatile_can_trim,
    .can_extents = volatile_can_extents,
    .can_cache = volatile_can_cache,
    .can_multi_conn = volatile_can_multi_conn,
    .pread = volatile_pread,
    .pwrite = volatile_pwrite,
    .zero = volatile_zero,
    .trim = volatile_trim,
    .flush = volatile_flush,
};

NBDKIT_REGISTER_FILTER(filter)
