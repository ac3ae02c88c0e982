/* The dirty log (see wlog.h): two hierarchical bitmaps and the cursor of
 * the chunk being fetched. */
#include "primary/writelog/wlog.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/bitmap.h"

struct wl_log {
    uint64_t disk_sectors;
    uint64_t ngrains;
    uint32_t grain;        /* sectors per bit, a power of two */
    unsigned grain_shift;
    struct bs_bitmap *live[2]; /* marked by the I/O path, one per gate parity */
    struct bs_bitmap *pending; /* sealed, owned by the control thread */
    uint64_t epoch;
    /* Grains [chunk_start, chunk_end) of pending were exported by the last
     * seal/next and are waiting for the client's acknowledgement. */
    uint64_t chunk_start;
    uint64_t chunk_end;
};

uint32_t wl_log_auto_grain(uint64_t disk_sectors)
{
    uint32_t grain = WL_LOG_DEFAULT_GRAIN;

    /* Leaf bytes, rounded up to whole 64-bit words as the bitmap stores them. */
    for (;;) {
        uint64_t grains = disk_sectors / grain + (disk_sectors % grain != 0);
        uint64_t bytes = (grains / 64 + (grains % 64 != 0)) * 8;
        if (bytes <= WL_LOG_MAX_AUTO_BITMAP || grain >= (1u << 30))
            break;
        grain <<= 1;
    }
    return grain;
}

int wl_log_create(uint64_t disk_sectors, uint32_t grain_sectors, struct wl_log **out)
{
    struct wl_log *log;
    int r;

    if (disk_sectors == 0)
        return -EINVAL;
    if (grain_sectors == 0)
        grain_sectors = wl_log_auto_grain(disk_sectors);
    if (grain_sectors & (grain_sectors - 1))
        return -EINVAL;
    log = calloc(1, sizeof(*log));
    if (!log)
        return -ENOMEM;
    log->disk_sectors = disk_sectors;
    log->grain = grain_sectors;
    log->grain_shift = (unsigned)__builtin_ctz(grain_sectors);
    log->ngrains = (disk_sectors + grain_sectors - 1) >> log->grain_shift;
    /* The live map is touched by the write path: fault it in now so that
     * marking never takes a page fault.  Pending is faulted in too: seals
     * would otherwise pay a page fault per new page they reach, and the
     * map ends up resident anyway. */
    for (unsigned p = 0; p < 2; p++) {
        r = bs_bitmap_create(log->ngrains, BS_BITMAP_PREFAULT, &log->live[p]);
        if (r < 0)
            goto fail;
    }
    r = bs_bitmap_create(log->ngrains, BS_BITMAP_PREFAULT, &log->pending);
    if (r < 0)
        goto fail;
    *out = log;
    return 0;
fail:
    wl_log_destroy(log);
    return r;
}

void wl_log_destroy(struct wl_log *log)
{
    if (!log)
        return;
    bs_bitmap_destroy(log->live[0]);
    bs_bitmap_destroy(log->live[1]);
    bs_bitmap_destroy(log->pending);
    free(log);
}

uint64_t wl_log_disk_sectors(const struct wl_log *log)
{
    return log->disk_sectors;
}

uint32_t wl_log_grain(const struct wl_log *log)
{
    return log->grain;
}

uint64_t wl_log_epoch(const struct wl_log *log)
{
    return log->epoch;
}

uint64_t wl_log_mem_bytes(const struct wl_log *log)
{
    return bs_bitmap_mem_bytes(log->live[0]) + bs_bitmap_mem_bytes(log->live[1]) +
           bs_bitmap_mem_bytes(log->pending);
}

/* The grains [*first, *first + *n) that sectors [sector, sector + count)
 * touch, clipped to the disk.  False when there are none. */
static bool grain_span(const struct wl_log *log, uint64_t sector, uint64_t count,
                       uint64_t *first, uint64_t *n)
{
    if (count == 0 || sector >= log->disk_sectors)
        return false;
    if (count > log->disk_sectors - sector)
        count = log->disk_sectors - sector;
    *first = sector >> log->grain_shift;
    *n = ((sector + count - 1) >> log->grain_shift) - *first + 1;
    return true;
}

void wl_log_mark_in(struct wl_log *log, unsigned parity, uint64_t sector, uint64_t count)
{
    uint64_t first, n;

    if (grain_span(log, sector, count, &first, &n))
        bs_bitmap_set_range(log->live[parity & 1], first, n);
}

void wl_log_mark(struct wl_log *log, uint64_t sector, uint64_t count)
{
    wl_log_mark_in(log, 0, sector, count);
}

/* Set bits of map in [first, end). */
static uint64_t count_set(const struct bs_bitmap *map, uint64_t first, uint64_t end)
{
    uint64_t n = 0;

    for (uint64_t g = bs_bitmap_next_set(map, first); g < end;) {
        uint64_t e = bs_bitmap_next_clear(map, g);
        if (e > end)
            e = end;
        n += e - g;
        g = bs_bitmap_next_set(map, e);
    }
    return n;
}

uint64_t wl_log_add(struct wl_log *log, unsigned parity, uint64_t sector, uint64_t count)
{
    struct bs_bitmap *map = log->live[parity & 1];
    uint64_t first, n, had;

    if (!grain_span(log, sector, count, &first, &n))
        return 0;
    had = count_set(map, first, first + n);
    bs_bitmap_set_range(map, first, n);
    return n - had;
}

void wl_log_pending_runs(const struct wl_log *log,
                         void (*fn)(void *ctx, uint64_t first, uint64_t n), void *ctx)
{
    for (uint64_t g = bs_bitmap_next_set(log->pending, 0); g < log->ngrains;) {
        uint64_t e = bs_bitmap_next_clear(log->pending, g);
        fn(ctx, g, e - g);
        g = bs_bitmap_next_set(log->pending, e);
    }
}

/* Largest extent one entry may describe: count is 32 bits, and extents
 * stay whole grains so that a chunk ends on a grain boundary. */
static uint64_t max_extent_grains(const struct wl_log *log)
{
    return (UINT32_MAX >> log->grain_shift);
}

/* Appends grains [g, g_end) to the area as extents.  Returns the grain
 * where it stopped: g_end, or earlier when the area filled. */
static uint64_t emit_run(const struct wl_log *log, struct wl_disk_range *area, uint32_t slots,
                         uint32_t *n, uint64_t g, uint64_t g_end)
{
    while (g < g_end && *n < slots) {
        uint64_t len = g_end - g;
        if (len > max_extent_grains(log))
            len = max_extent_grains(log);
        uint64_t sector = g << log->grain_shift;
        uint64_t end = (g + len) << log->grain_shift;
        if (end > log->disk_sectors)
            end = log->disk_sectors;
        area[*n] = (struct wl_disk_range){ .sector = sector, .count = (uint32_t)(end - sector) };
        (*n)++;
        g += len;
    }
    return g;
}

/* Exports the runs of `map` starting at grain `from` into the area (slots
 * entries plus one terminator).  Sets *stop to the grain after the last
 * exported one. */
static struct wl_export_result export_map(const struct wl_log *log, const struct bs_bitmap *map,
                                          uint64_t from, struct wl_disk_range *area,
                                          uint32_t slots, uint64_t *stop)
{
    struct wl_export_result res = { 0, 0 };
    uint64_t g = bs_bitmap_next_set(map, from);

    while (g < log->ngrains && res.extents < slots) {
        uint64_t end = bs_bitmap_next_clear(map, g);
        g = emit_run(log, area, slots, &res.extents, g, end);
        if (g < end)
            break;
        g = bs_bitmap_next_set(map, end);
    }
    *stop = g < log->ngrains ? g : log->ngrains;
    res.more = bs_bitmap_next_set(map, *stop) < log->ngrains;
    area[res.extents] = (struct wl_disk_range){ 0, 0, 0 };
    return res;
}

struct wl_export_result wl_log_peek(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots)
{
    struct wl_export_result res = { 0, 0 };
    uint64_t g = 0;

    /* Union of the three maps without changing any: alternate between
     * them until a grain is clear in all. */
    for (;;) {
        uint64_t a = bs_bitmap_next_set(log->live[0], g);
        uint64_t a1 = bs_bitmap_next_set(log->live[1], g);
        uint64_t b = bs_bitmap_next_set(log->pending, g);
        uint64_t start = a < b ? a : b, end;

        if (a1 < start)
            start = a1;

        if (start >= log->ngrains)
            break;
        if (res.extents == slots) {
            res.more = 1;
            break;
        }
        end = start;
        for (;;) {
            uint64_t ea = bs_bitmap_next_clear(log->live[0], end);
            uint64_t ea1 = bs_bitmap_next_clear(log->live[1], end);
            uint64_t eb = bs_bitmap_next_clear(log->pending, end);
            uint64_t e = ea > eb ? ea : eb;

            if (ea1 > e)
                e = ea1;
            if (e == end)
                break;
            end = e;
        }
        g = emit_run(log, area, slots, &res.extents, start, end);
        if (g < end) {
            res.more = 1;
            break;
        }
    }
    area[res.extents] = (struct wl_disk_range){ 0, 0, 0 };
    return res;
}

struct wl_export_result wl_log_seal(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots)
{
    log->epoch++;
    bs_bitmap_move(log->pending, log->live[0]);
    bs_bitmap_move(log->pending, log->live[1]);
    log->chunk_start = 0;
    return export_map(log, log->pending, 0, area, slots, &log->chunk_end);
}

static void ack_chunk(struct wl_log *log)
{
    bs_bitmap_clear_range(log->pending, log->chunk_start, log->chunk_end - log->chunk_start);
    log->chunk_start = log->chunk_end;
}

struct wl_export_result wl_log_next(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots)
{
    ack_chunk(log);
    return export_map(log, log->pending, log->chunk_start, area, slots, &log->chunk_end);
}

struct wl_export_result wl_log_getw(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots)
{
    struct wl_export_result res = wl_log_seal(log, area, slots);

    ack_chunk(log);
    return res;
}

void wl_log_clear(struct wl_log *log)
{
    bs_bitmap_clear_all(log->live[0]);
    bs_bitmap_clear_all(log->live[1]);
    bs_bitmap_clear_all(log->pending);
    log->chunk_start = log->chunk_end = 0;
}

uint64_t wl_log_live_grains(const struct wl_log *log)
{
    return bs_bitmap_count(log->live[0]) + bs_bitmap_count(log->live[1]);
}

uint64_t wl_log_pending_grains(const struct wl_log *log)
{
    return bs_bitmap_count(log->pending);
}
