/* The primary's dirty state (see dirty.h). */
#include "primary/dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"

#define MOD "dirty"
#define DIRTY_MAGIC "BSDIRTY1"
#define DIRTY_HDR 4096u /* header page; the words follow, page aligned */

/* On-disk header, little-endian host layout (the file never leaves the host). */
struct dirty_hdr {
    char magic[8];
    uint32_t version;
    uint32_t grain;
    uint64_t disk_sectors;
    uint64_t ngrains;
};

struct bs_dirty {
    int fd;
    uint8_t *map;           /* header page + words */
    size_t map_len;
    uint64_t *words;        /* persisted bits */
    uint64_t nwords;
    uint64_t ngrains;
    uint64_t disk_sectors;
    uint32_t grain;
    unsigned grain_shift;
    struct bs_bitmap *todo;
    struct bs_bitmap *inflight;
    /* Changes to the persisted words, and how many of them the last
     * finished sync covered.  The sync may run on another thread while the
     * owner goes on changing the map: a change made during an msync is
     * counted after the sync read `changes`, so it stays unsynced. */
    _Atomic uint64_t changes;
    _Atomic uint64_t synced;
};

static void persist_words(struct bs_dirty *d, uint64_t first, uint64_t n)
{
    if (n == 0)
        return;
    for (uint64_t w = first / 64; w <= (first + n - 1) / 64; w++)
        d->words[w] = bs_bitmap_word(d->todo, w) | bs_bitmap_word(d->inflight, w);
    atomic_fetch_add_explicit(&d->changes, 1, memory_order_release);
}

int bs_dirty_open(const char *path, uint64_t disk_sectors, uint32_t grain, bool *fresh,
                  struct bs_dirty **out)
{
    struct bs_dirty *d = calloc(1, sizeof(*d));
    struct dirty_hdr *h;
    struct stat st;
    int r;

    if (!d)
        return -ENOMEM;
    if (grain == 0 || (grain & (grain - 1))) {
        free(d);
        return -EINVAL;
    }
    d->grain = grain;
    d->grain_shift = (unsigned)__builtin_ctz(grain);
    d->disk_sectors = disk_sectors;
    d->ngrains = (disk_sectors + grain - 1) >> d->grain_shift;
    d->nwords = (d->ngrains + 63) / 64;
    d->map_len = DIRTY_HDR + d->nwords * 8;
    d->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->fd < 0) {
        r = -errno;
        BS_ERR(MOD, "opening %s: %s", path, strerror(-r));
        free(d);
        return r;
    }
    if (fstat(d->fd, &st) < 0) {
        r = -errno;
        goto fail;
    }
    *fresh = (uint64_t)st.st_size != d->map_len;
    if (*fresh && ftruncate(d->fd, 0) < 0) {
        r = -errno;
        goto fail;
    }
    if (ftruncate(d->fd, (off_t)d->map_len) < 0) {
        r = -errno;
        BS_ERR(MOD, "sizing %s: %s", path, strerror(-r));
        goto fail;
    }
    d->map = mmap(NULL, d->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
    if (d->map == MAP_FAILED) {
        r = -errno;
        d->map = NULL;
        goto fail;
    }
    d->words = (uint64_t *)(d->map + DIRTY_HDR);
    h = (struct dirty_hdr *)d->map;
    if (!*fresh && (memcmp(h->magic, DIRTY_MAGIC, 8) != 0 || h->version != 1 ||
                    h->grain != grain || h->disk_sectors != disk_sectors ||
                    h->ngrains != d->ngrains)) {
        BS_WARN(MOD, "%s was made for another disk or grain: starting a full sync", path);
        *fresh = true;
    }
    r = bs_bitmap_create(d->ngrains, 0, &d->todo);
    if (r < 0)
        goto fail;
    r = bs_bitmap_create(d->ngrains, 0, &d->inflight);
    if (r < 0)
        goto fail;
    if (*fresh) {
        memcpy(h->magic, DIRTY_MAGIC, 8);
        h->version = 1;
        h->grain = grain;
        h->disk_sectors = disk_sectors;
        h->ngrains = d->ngrains;
        bs_dirty_mark_all(d);
        r = bs_dirty_sync(d);
        if (r < 0)
            goto fail;
    } else {
        /* Load: every persisted bit is still to do. */
        for (uint64_t w = 0; w < d->nwords; w++) {
            uint64_t v = d->words[w];
            while (v) {
                unsigned b = (unsigned)__builtin_ctzll(v);
                uint64_t start = w * 64 + b;
                unsigned len = 0;
                while (b + len < 64 && (v >> (b + len)) & 1)
                    len++;
                bs_bitmap_set_range(d->todo, start, len);
                v &= len == 64 ? 0 : ~(((1ull << len) - 1) << b);
            }
        }
    }
    *out = d;
    return 0;
fail:
    bs_dirty_close(d);
    return r;
}

void bs_dirty_close(struct bs_dirty *d)
{
    if (!d)
        return;
    if (d->map) {
        msync(d->map, d->map_len, MS_SYNC);
        munmap(d->map, d->map_len);
    }
    if (d->fd >= 0)
        close(d->fd);
    bs_bitmap_destroy(d->todo);
    bs_bitmap_destroy(d->inflight);
    free(d);
}

uint32_t bs_dirty_grain(const struct bs_dirty *d)
{
    return d->grain;
}

uint64_t bs_dirty_ngrains(const struct bs_dirty *d)
{
    return d->ngrains;
}

void bs_dirty_mark(struct bs_dirty *d, uint64_t sector, uint64_t count)
{
    uint64_t first, last;

    if (count == 0 || sector >= d->disk_sectors)
        return;
    if (count > d->disk_sectors - sector)
        count = d->disk_sectors - sector;
    first = sector >> d->grain_shift;
    last = (sector + count - 1) >> d->grain_shift;
    /* A grain already inflight stays there and is also due again: todo. */
    bs_bitmap_set_range(d->todo, first, last - first + 1);
    persist_words(d, first, last - first + 1);
}

void bs_dirty_mark_all(struct bs_dirty *d)
{
    bs_bitmap_set_range(d->todo, 0, d->ngrains);
    persist_words(d, 0, d->ngrains);
}

bool bs_dirty_any(const struct bs_dirty *d, uint64_t sector, uint64_t count)
{
    uint64_t g = sector >> d->grain_shift;
    uint64_t end = (sector + count + d->grain - 1) >> d->grain_shift;

    if (count == 0 || g >= d->ngrains)
        return false;
    if (end > d->ngrains)
        end = d->ngrains;
    return bs_bitmap_next_set(d->todo, g) < end || bs_bitmap_next_set(d->inflight, g) < end;
}

void bs_dirty_clear_todo(struct bs_dirty *d)
{
    bs_bitmap_clear_range(d->todo, 0, d->ngrains);
    persist_words(d, 0, d->ngrains);
}

int bs_dirty_sync(struct bs_dirty *d)
{
    uint64_t c = atomic_load_explicit(&d->changes, memory_order_acquire);

    if (c == atomic_load_explicit(&d->synced, memory_order_relaxed))
        return 0;
    if (msync(d->map, d->map_len, MS_SYNC) < 0) {
        int r = -errno;
        BS_ERR(MOD, "msync of the dirty bitmap: %s", strerror(-r));
        return r;
    }
    atomic_store_explicit(&d->synced, c, memory_order_release);
    return 0;
}

bool bs_dirty_take(struct bs_dirty *d, uint64_t *cursor, uint64_t max_grains, uint64_t *first,
                   uint64_t *n)
{
    uint64_t start = *cursor < d->ngrains ? *cursor : 0;
    uint64_t pos = start;
    bool wrapped = false;

    if (max_grains == 0)
        return false;
    for (;;) {
        uint64_t g = bs_bitmap_next_set(d->todo, pos);

        if (wrapped && g >= start)
            return false;
        if (g >= d->ngrains) {
            if (wrapped || start == 0)
                return false;
            wrapped = true;
            pos = 0;
            continue;
        }
        /* A grain already inflight is taken again: every inflight grain
         * belongs to the one epoch not yet committed, and its commit, after
         * everything was sent, covers both copies. */
        uint64_t end = bs_bitmap_next_clear(d->todo, g);
        if (end - g > max_grains)
            end = g + max_grains;
        bs_bitmap_clear_range(d->todo, g, end - g);
        bs_bitmap_set_range(d->inflight, g, end - g);
        *first = g;
        *n = end - g;
        *cursor = end;
        return true;
    }
}

void bs_dirty_acked(struct bs_dirty *d, uint64_t first, uint64_t n)
{
    bs_bitmap_clear_range(d->inflight, first, n);
    persist_words(d, first, n);
}

void bs_dirty_acked_all(struct bs_dirty *d)
{
    uint64_t g = bs_bitmap_next_set(d->inflight, 0);

    while (g < d->ngrains) {
        uint64_t end = bs_bitmap_next_clear(d->inflight, g);
        bs_dirty_acked(d, g, end - g);
        g = bs_bitmap_next_set(d->inflight, end);
    }
}

bool bs_dirty_next_todo(const struct bs_dirty *d, uint64_t *pos, uint64_t *first, uint64_t *n)
{
    uint64_t g = *pos < d->ngrains ? bs_bitmap_next_set(d->todo, *pos) : d->ngrains;

    if (g >= d->ngrains)
        return false;
    *first = g;
    *n = bs_bitmap_next_clear(d->todo, g) - g;
    *pos = g + *n;
    return true;
}

void bs_dirty_requeue(struct bs_dirty *d, uint64_t first, uint64_t n)
{
    bs_bitmap_clear_range(d->inflight, first, n);
    bs_bitmap_set_range(d->todo, first, n);
    persist_words(d, first, n); /* unchanged for inflight grains; keeps the invariant for any */
}

void bs_dirty_requeue_all(struct bs_dirty *d)
{
    bs_bitmap_move(d->todo, d->inflight);
}

uint64_t bs_dirty_todo_grains(const struct bs_dirty *d)
{
    return bs_bitmap_count(d->todo);
}

uint64_t bs_dirty_inflight_grains(const struct bs_dirty *d)
{
    return bs_bitmap_count(d->inflight);
}
