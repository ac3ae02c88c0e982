/* Unit tests for the dirty log (primary/writelog/wlog.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "primary/writelog/wlog.h"

#define TIB_SECTORS (1ull << 31) /* 1 TiB in 512-byte sectors */

/* What a test allocated, freed by the teardown even when an assertion
 * fails halfway (cmocka longjmps out of the test). */
#define MAX_TRACKED 8
static struct wl_log *tracked_logs[MAX_TRACKED];
static void *tracked_bufs[MAX_TRACKED];

static void *track_buf(void *p)
{
    assert_non_null(p);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!tracked_bufs[i]) {
            tracked_bufs[i] = p;
            return p;
        }
    fail_msg("too many buffers");
    return NULL;
}

static void drop_buf(void *p)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked_bufs[i] == p)
            tracked_bufs[i] = NULL;
    free(p);
}

static void drop_log(struct wl_log *log)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked_logs[i] == log)
            tracked_logs[i] = NULL;
    wl_log_destroy(log);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_TRACKED; i++) {
        wl_log_destroy(tracked_logs[i]);
        tracked_logs[i] = NULL;
        free(tracked_bufs[i]);
        tracked_bufs[i] = NULL;
    }
    return 0;
}

static struct wl_log *mk(uint64_t sectors, uint32_t grain)
{
    struct wl_log *log = NULL;
    assert_int_equal(wl_log_create(sectors, grain, &log), 0);
    assert_non_null(log);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!tracked_logs[i]) {
            tracked_logs[i] = log;
            break;
        }
    assert_int_equal(wl_log_disk_sectors(log), sectors);
    assert_int_equal(wl_log_epoch(log), 0);
    assert_int_equal(wl_log_live_grains(log), 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    return log;
}

/* An export area of `slots` entries plus the terminator, poisoned so that
 * stale entries show. */
static struct wl_disk_range *area_new(uint32_t slots)
{
    struct wl_disk_range *a = track_buf(malloc((slots + 1) * sizeof(*a)));
    memset(a, 0xa5, (slots + 1) * sizeof(*a));
    return a;
}

static void area_poison(struct wl_disk_range *a, uint32_t slots)
{
    memset(a, 0xa5, (slots + 1) * sizeof(*a));
}

struct ext {
    uint64_t sector;
    uint32_t count;
};

/* Checks the result and the area against the expected extents, the
 * terminator included. */
static void expect_export(struct wl_export_result res, const struct wl_disk_range *a,
                          const struct ext *want, uint32_t nwant, int more)
{
    assert_int_equal(res.extents, nwant);
    for (uint32_t i = 0; i < nwant; i++) {
        assert_int_equal(a[i].sector, want[i].sector);
        assert_int_equal(a[i].count, want[i].count);
    }
    assert_int_equal(a[nwant].count, 0);
    assert_int_equal(a[nwant].sector, 0);
    assert_int_equal(res.more, more);
}

/* ---- granularity ------------------------------------------------------- */

static uint64_t leaf_bytes(uint64_t sectors, uint32_t grain)
{
    uint64_t grains = (sectors + grain - 1) / grain;
    return (grains + 63) / 64 * 8; /* whole 64-bit words */
}

static void test_auto_grain(void **state)
{
    (void)state;
    assert_int_equal(WL_LOG_DEFAULT_GRAIN, 8);
    assert_int_equal(wl_log_auto_grain(1), 8);
    assert_int_equal(wl_log_auto_grain(1000), 8);
    assert_int_equal(wl_log_auto_grain(1 * TIB_SECTORS), 8);
    assert_int_equal(wl_log_auto_grain(2 * TIB_SECTORS), 8);  /* exactly 64 MiB */
    assert_int_equal(wl_log_auto_grain(4 * TIB_SECTORS), 16); /* 64 MiB at 8 KiB */
    assert_int_equal(wl_log_auto_grain(16 * TIB_SECTORS), 64);
    assert_int_equal(wl_log_auto_grain(3 * TIB_SECTORS), 16);
    assert_int_equal(wl_log_auto_grain(8 * TIB_SECTORS), 32);

    /* For exact multiples of 1 TiB: the smallest power of two at least 8
     * whose leaf bitmap fits 64 MiB. */
    for (uint64_t tib = 1; tib <= 64; tib++) {
        uint64_t s = tib * TIB_SECTORS;
        uint32_t g = wl_log_auto_grain(s);
        assert_true(g >= 8 && (g & (g - 1)) == 0);
        assert_true(leaf_bytes(s, g) <= WL_LOG_MAX_AUTO_BITMAP);
        if (g > 8)
            assert_true(leaf_bytes(s, g / 2) > WL_LOG_MAX_AUTO_BITMAP);
    }
}

/* The header promises the leaf bitmap fits 64 MiB: that must hold for disk
 * sizes just over a threshold, not only for exact multiples. */
static void test_auto_grain_fits_just_past_threshold(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {
        2 * TIB_SECTORS + 1, 2 * TIB_SECTORS + 8, 2 * TIB_SECTORS + 511,
        4 * TIB_SECTORS + 1, 4 * TIB_SECTORS + 16, 16 * TIB_SECTORS + 64,
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t g = wl_log_auto_grain(sizes[i]);
        if (leaf_bytes(sizes[i], g) > WL_LOG_MAX_AUTO_BITMAP) {
            print_message("auto_grain(%llu sectors) = %u: leaf bitmap %llu bytes > %llu\n",
                          (unsigned long long)sizes[i], g,
                          (unsigned long long)leaf_bytes(sizes[i], g),
                          (unsigned long long)WL_LOG_MAX_AUTO_BITMAP);
            bad++;
        }
        /* Never coarser than needed either. */
        if (g > 8)
            assert_true(leaf_bytes(sizes[i], g / 2) > WL_LOG_MAX_AUTO_BITMAP);
    }
    assert_int_equal(bad, 0);
}

static void test_create_errors_and_grain(void **state)
{
    (void)state;
    struct wl_log *log = (struct wl_log *)0x1;

    assert_int_equal(wl_log_create(0, 8, &log), -EINVAL);
    assert_int_equal(wl_log_create(0, 0, &log), -EINVAL);
    assert_int_equal(wl_log_create(1000, 3, &log), -EINVAL);
    assert_int_equal(wl_log_create(1000, 12, &log), -EINVAL);
    assert_int_equal(wl_log_create(1000, 24, &log), -EINVAL);
    assert_int_equal(wl_log_create(1000, 0xffffffffu, &log), -EINVAL);
    assert_ptr_equal(log, (struct wl_log *)0x1); /* untouched on failure */

    log = mk(1000, 0); /* auto */
    assert_int_equal(wl_log_grain(log), 8);
    assert_true(wl_log_mem_bytes(log) >= 2 * (1000 / 8 / 8));
    drop_log(log);
    log = mk(1000, 1);
    assert_int_equal(wl_log_grain(log), 1);
    drop_log(log);
    log = mk(1000, 128);
    assert_int_equal(wl_log_grain(log), 128);
    drop_log(log);
    log = mk(3, 1u << 31); /* grain larger than the disk */
    assert_int_equal(wl_log_grain(log), 1u << 31);
    drop_log(log);
    wl_log_destroy(NULL);
}

/* ---- mark and peek ----------------------------------------------------- */

static void test_mark_rounding_and_clipping(void **state)
{
    (void)state;
    /* 1003 sectors at grain 8: 126 grains, the last one 3 sectors long. */
    struct wl_log *log = mk(1003, 8);
    struct wl_disk_range *a = area_new(16);

    wl_log_mark(log, 9, 1); /* grain 1 */
    assert_int_equal(wl_log_live_grains(log), 1);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 8, 8 } }, 1, 0);

    wl_log_mark(log, 15, 2); /* grains 1 and 2 */
    assert_int_equal(wl_log_live_grains(log), 2);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 8, 16 } }, 1, 0);

    wl_log_mark(log, 0, 0); /* zero count: nothing */
    wl_log_mark(log, 1003, 5); /* past the end: nothing */
    wl_log_mark(log, UINT64_MAX, 1);
    assert_int_equal(wl_log_live_grains(log), 2);

    wl_log_mark(log, 1001, 100); /* clipped to the disk: last grain only */
    assert_int_equal(wl_log_live_grains(log), 3);
    area_poison(a, 16);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 8, 16 }, { 1000, 3 } }, 2, 0);

    wl_log_mark(log, 990, UINT64_MAX); /* huge count: grains 123..125 */
    area_poison(a, 16);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 8, 16 }, { 984, 19 } }, 2, 0);
    assert_int_equal(wl_log_live_grains(log), 5);

    /* The whole disk: one extent, clipped. */
    wl_log_mark(log, 0, 1003);
    assert_int_equal(wl_log_live_grains(log), 126);
    area_poison(a, 16);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 0, 1003 } }, 1, 0);

    /* Seal exports the clipped extent too. */
    area_poison(a, 16);
    expect_export(wl_log_seal(log, a, 16), a, (struct ext[]){ { 0, 1003 } }, 1, 0);
    drop_log(log);

    /* Grain 1: no rounding at all. */
    log = mk(100, 1);
    wl_log_mark(log, 7, 3);
    assert_int_equal(wl_log_live_grains(log), 3);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 7, 3 } }, 1, 0);
    drop_log(log);

    /* Grain larger than the disk: one grain, exported as the whole disk. */
    log = mk(5, 64);
    wl_log_mark(log, 4, 1);
    assert_int_equal(wl_log_live_grains(log), 1);
    expect_export(wl_log_peek(log, a, 16), a, (struct ext[]){ { 0, 5 } }, 1, 0);
    drop_log(log);
    drop_buf(a);
}

static void test_peek_changes_nothing(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(4), *b = area_new(4);

    /* Empty: only the terminator. */
    expect_export(wl_log_peek(log, a, 4), a, NULL, 0, 0);

    wl_log_mark(log, 0, 8);
    wl_log_mark(log, 800, 16);
    wl_log_mark(log, 4000, 1);
    uint64_t epoch = wl_log_epoch(log);
    for (int i = 0; i < 3; i++) {
        area_poison(a, 4);
        expect_export(wl_log_peek(log, a, 4), a,
                      (struct ext[]){ { 0, 8 }, { 800, 16 }, { 4000, 8 } }, 3, 0);
    }
    assert_int_equal(wl_log_live_grains(log), 4);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_epoch(log), epoch);

    /* Peek with a small area says there is more, and still changes nothing. */
    expect_export(wl_log_peek(log, a, 2), a, (struct ext[]){ { 0, 8 }, { 800, 16 } }, 2, 1);
    expect_export(wl_log_peek(log, a, 0), a, NULL, 0, 1);
    assert_int_equal(wl_log_live_grains(log), 4);

    /* Seal after peeks exports what peek showed. */
    expect_export(wl_log_seal(log, b, 4), b,
                  (struct ext[]){ { 0, 8 }, { 800, 16 }, { 4000, 8 } }, 3, 0);

    /* Peek shows the union of live and pending, merged: pending has
     * [800, 816), live gets [816, 824) and [792, 800). */
    wl_log_mark(log, 816, 8);
    wl_log_mark(log, 792, 8);
    wl_log_mark(log, 10000, 8);
    area_poison(a, 4);
    expect_export(wl_log_peek(log, a, 4), a,
                  (struct ext[]){ { 0, 8 }, { 792, 32 }, { 4000, 8 }, { 10000, 8 } }, 4, 0);
    assert_int_equal(wl_log_live_grains(log), 3);
    assert_int_equal(wl_log_pending_grains(log), 4);
    drop_buf(a);
    drop_buf(b);
    drop_log(log);
}

/* ---- seal / next ------------------------------------------------------- */

static void test_seal_moves_and_merges(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(8);

    /* Adjacent grains marked separately, and overlapping marks. */
    wl_log_mark(log, 64, 8);
    wl_log_mark(log, 72, 8);
    wl_log_mark(log, 80, 3);
    wl_log_mark(log, 70, 20); /* grains 8..11 */
    wl_log_mark(log, 4096 * 8 - 8, 16); /* across a level-1 summary boundary */
    assert_int_equal(wl_log_live_grains(log), 4 + 2);

    struct wl_export_result r = wl_log_seal(log, a, 8);
    expect_export(r, a, (struct ext[]){ { 64, 32 }, { 4096 * 8 - 8, 16 } }, 2, 0);
    assert_int_equal(wl_log_epoch(log), 1);
    assert_int_equal(wl_log_live_grains(log), 0);
    assert_int_equal(wl_log_pending_grains(log), 6); /* not yet acknowledged */

    /* next acknowledges: pending empties, nothing more to export. */
    area_poison(a, 8);
    r = wl_log_next(log, a, 8);
    expect_export(r, a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_epoch(log), 1);

    /* An empty seal still starts an epoch and exports nothing. */
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 8), a, NULL, 0, 0);
    assert_int_equal(wl_log_epoch(log), 2);
    drop_buf(a);
    drop_log(log);
}

#define NREG 10

static void test_seal_next_continuation(void **state)
{
    (void)state;
    const uint32_t slots = 3;
    struct wl_log *log = mk(1 << 24, 8);
    struct wl_disk_range *a = area_new(slots);
    struct ext want[NREG];
    int seen[NREG] = { 0 };

    /* Ten regions of varied length, far apart, marked out of order. */
    for (int i = 0; i < NREG; i++) {
        want[i].sector = (uint64_t)i * 100000 + 16;
        want[i].count = (uint32_t)(8 * (i + 1));
    }
    for (int i = NREG - 1; i >= 0; i -= 2)
        wl_log_mark(log, want[i].sector, want[i].count);
    for (int i = 0; i < NREG; i += 2)
        wl_log_mark(log, want[i].sector, want[i].count);
    uint64_t grains = 0;
    for (int i = 0; i < NREG; i++)
        grains += want[i].count / 8;
    assert_int_equal(wl_log_live_grains(log), grains);

    struct wl_export_result r = wl_log_seal(log, a, slots);
    int k = 0, calls = 0;
    for (;;) {
        assert_true(r.extents <= slots);
        for (uint32_t i = 0; i < r.extents; i++, k++) {
            assert_true(k < NREG);
            assert_int_equal(a[i].sector, want[k].sector);
            assert_int_equal(a[i].count, want[k].count);
            seen[k]++;
        }
        assert_int_equal(a[r.extents].count, 0);
        calls++;
        /* more is set exactly while regions remain past this chunk. */
        assert_int_equal(r.more, k < NREG);
        /* The chunk just exported is still pending until acknowledged. */
        uint64_t left = 0;
        for (int i = k - (int)r.extents; i < NREG; i++)
            left += want[i].count / 8;
        assert_int_equal(wl_log_pending_grains(log), left);
        if (!r.more)
            break;
        area_poison(a, slots);
        r = wl_log_next(log, a, slots);
    }
    assert_int_equal(calls, 4); /* 3 + 3 + 3 + 1 */
    assert_int_equal(k, NREG);
    for (int i = 0; i < NREG; i++)
        assert_int_equal(seen[i], 1);
    /* The last chunk is still pending; the final next acknowledges it. */
    assert_int_equal(wl_log_pending_grains(log), want[NREG - 1].count / 8);
    area_poison(a, slots);
    r = wl_log_next(log, a, slots);
    expect_export(r, a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_live_grains(log), 0);
    /* Further nexts are harmless. */
    expect_export(wl_log_next(log, a, slots), a, NULL, 0, 0);
    assert_int_equal(wl_log_epoch(log), 1);
    drop_buf(a);
    drop_log(log);
}

/* A run longer than one extent can describe is split on grain boundaries,
 * and the chunk may end between the pieces. */
static void test_run_split_by_extent_size(void **state)
{
    (void)state;
    /* Grain 2^20 sectors: one extent holds at most UINT32_MAX >> 20 = 4095
     * grains, i.e. 4095 * 2^20 sectors. */
    const uint32_t g = 1u << 20;
    const uint64_t maxs = 4095ull << 20;
    const uint64_t disk = 3 * maxs + 5 * (uint64_t)g + 77; /* last grain partial */
    const uint64_t ngrains = 3 * 4095 + 6;
    struct wl_log *log = mk(disk, g);
    struct wl_disk_range *a = area_new(8);

    wl_log_mark(log, 0, disk);
    assert_int_equal(wl_log_live_grains(log), ngrains);

    expect_export(wl_log_peek(log, a, 8), a,
                  (struct ext[]){ { 0, (uint32_t)maxs },
                                  { maxs, (uint32_t)maxs },
                                  { 2 * maxs, (uint32_t)maxs },
                                  { 3 * maxs, (uint32_t)(5 * (uint64_t)g + 77) } },
                  4, 0);
    area_poison(a, 8);
    expect_export(wl_log_peek(log, a, 2), a,
                  (struct ext[]){ { 0, (uint32_t)maxs }, { maxs, (uint32_t)maxs } }, 2, 1);

    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 2), a,
                  (struct ext[]){ { 0, (uint32_t)maxs }, { maxs, (uint32_t)maxs } }, 2, 1);
    assert_int_equal(wl_log_pending_grains(log), ngrains);
    area_poison(a, 8);
    expect_export(wl_log_next(log, a, 2), a,
                  (struct ext[]){ { 2 * maxs, (uint32_t)maxs },
                                  { 3 * maxs, (uint32_t)(5 * (uint64_t)g + 77) } },
                  2, 0);
    assert_int_equal(wl_log_pending_grains(log), ngrains - 2 * 4095);
    area_poison(a, 8);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);

    /* Slots of 1: every piece is its own chunk, with more until the last. */
    wl_log_mark(log, 0, disk);
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 1), a, (struct ext[]){ { 0, (uint32_t)maxs } }, 1, 1);
    expect_export(wl_log_next(log, a, 1), a, (struct ext[]){ { maxs, (uint32_t)maxs } }, 1, 1);
    assert_int_equal(wl_log_pending_grains(log), ngrains - 4095);
    expect_export(wl_log_next(log, a, 1), a, (struct ext[]){ { 2 * maxs, (uint32_t)maxs } },
                  1, 1);
    expect_export(wl_log_next(log, a, 1), a,
                  (struct ext[]){ { 3 * maxs, (uint32_t)(5 * (uint64_t)g + 77) } }, 1, 0);
    expect_export(wl_log_next(log, a, 1), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    drop_buf(a);
    drop_log(log);
}

/* A seal without acknowledging the previous chunk re-exports it. */
static void test_reseal_without_ack(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(8);

    wl_log_mark(log, 100, 10); /* grains 12..13: [96, 112) */
    wl_log_mark(log, 5000, 9); /* grains 625..626: [5000, 5016) */
    expect_export(wl_log_seal(log, a, 8), a, (struct ext[]){ { 96, 16 }, { 5000, 16 } }, 2, 0);
    assert_int_equal(wl_log_epoch(log), 1);

    /* Client lost the reply: no next.  New writes, then seal again. */
    wl_log_mark(log, 2000, 8);
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 8), a,
                  (struct ext[]){ { 96, 16 }, { 2000, 8 }, { 5000, 16 } }, 3, 0);
    assert_int_equal(wl_log_epoch(log), 2);
    assert_int_equal(wl_log_pending_grains(log), 5);
    assert_int_equal(wl_log_live_grains(log), 0);

    /* And again with nothing new: the same extents. */
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 8), a,
                  (struct ext[]){ { 96, 16 }, { 2000, 8 }, { 5000, 16 } }, 3, 0);
    assert_int_equal(wl_log_epoch(log), 3);
    expect_export(wl_log_next(log, a, 8), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);

    /* Partly acknowledged epoch: the unacknowledged rest comes back at the
     * next seal, ahead of or merged with new writes, in sector order. */
    wl_log_mark(log, 0, 8);
    wl_log_mark(log, 800, 8);
    wl_log_mark(log, 1600, 8);
    wl_log_mark(log, 2400, 8);
    expect_export(wl_log_seal(log, a, 2), a, (struct ext[]){ { 0, 8 }, { 800, 8 } }, 2, 1);
    expect_export(wl_log_next(log, a, 2), a, (struct ext[]){ { 1600, 8 }, { 2400, 8 } }, 2, 0);
    assert_int_equal(wl_log_pending_grains(log), 2); /* 0 and 800 acknowledged */
    wl_log_mark(log, 8, 8);    /* new, before the unacknowledged ones */
    wl_log_mark(log, 2408, 8); /* adjacent to pending 2400 */
    expect_export(wl_log_seal(log, a, 8), a,
                  (struct ext[]){ { 8, 8 }, { 1600, 8 }, { 2400, 16 } }, 3, 0);
    assert_int_equal(wl_log_pending_grains(log), 4);
    expect_export(wl_log_next(log, a, 8), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    drop_buf(a);
    drop_log(log);
}

/* Marks after a seal go to live, not into the chunk being fetched. */
static void test_marks_after_seal_go_live(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(2);

    wl_log_mark(log, 0, 8);
    wl_log_mark(log, 80, 8);
    wl_log_mark(log, 160, 8);
    expect_export(wl_log_seal(log, a, 2), a, (struct ext[]){ { 0, 8 }, { 80, 8 } }, 2, 1);

    /* Writes during the fetch: a new grain inside the sealed range, a grain
     * already pending (rewritten), and one past it. */
    wl_log_mark(log, 40, 8);
    wl_log_mark(log, 80, 1);
    wl_log_mark(log, 240, 8);
    assert_int_equal(wl_log_live_grains(log), 3);
    assert_int_equal(wl_log_pending_grains(log), 3);

    /* next exports only the sealed epoch. */
    expect_export(wl_log_next(log, a, 2), a, (struct ext[]){ { 160, 8 } }, 1, 0);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_live_grains(log), 3);

    /* The rewritten grain 80 is not lost with the acknowledgement. */
    expect_export(wl_log_seal(log, a, 2), a, (struct ext[]){ { 40, 8 }, { 80, 8 } }, 2, 1);
    expect_export(wl_log_next(log, a, 2), a, (struct ext[]){ { 240, 8 } }, 1, 0);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_live_grains(log), 0);
    drop_buf(a);
    drop_log(log);
}

static void test_getw(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(2);

    for (int i = 0; i < 5; i++)
        wl_log_mark(log, (uint64_t)i * 1000, 8); /* grains 0, 125, 250, 375, 500 */

    /* getw: seal + acknowledge the first chunk at once. */
    struct wl_export_result r = wl_log_getw(log, a, 2);
    expect_export(r, a, (struct ext[]){ { 0, 8 }, { 1000, 8 } }, 2, 1);
    assert_int_equal(wl_log_epoch(log), 1);
    assert_int_equal(wl_log_live_grains(log), 0);
    assert_int_equal(wl_log_pending_grains(log), 3); /* the first two are gone */

    /* The rest stays pending for next. */
    expect_export(wl_log_next(log, a, 2), a, (struct ext[]){ { 2000, 8 }, { 3000, 8 } }, 2, 1);
    assert_int_equal(wl_log_pending_grains(log), 3);
    expect_export(wl_log_next(log, a, 2), a, (struct ext[]){ { 4000, 8 } }, 1, 0);
    assert_int_equal(wl_log_pending_grains(log), 1);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_epoch(log), 1);

    /* A getw that fits leaves nothing behind. */
    wl_log_mark(log, 64, 16);
    r = wl_log_getw(log, a, 2);
    expect_export(r, a, (struct ext[]){ { 64, 16 } }, 1, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    assert_int_equal(wl_log_epoch(log), 2);

    /* Empty getw: still an epoch. */
    expect_export(wl_log_getw(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_epoch(log), 3);
    drop_buf(a);
    drop_log(log);
}

static void test_clear(void **state)
{
    (void)state;
    struct wl_log *log = mk(1 << 20, 8);
    struct wl_disk_range *a = area_new(2);

    wl_log_mark(log, 0, 8);
    wl_log_mark(log, 800, 8);
    wl_log_mark(log, 1600, 8);
    expect_export(wl_log_seal(log, a, 2), a, (struct ext[]){ { 0, 8 }, { 800, 8 } }, 2, 1);
    wl_log_mark(log, 4000, 8);
    assert_int_equal(wl_log_live_grains(log), 1);
    assert_int_equal(wl_log_pending_grains(log), 3);

    wl_log_clear(log);
    assert_int_equal(wl_log_live_grains(log), 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    expect_export(wl_log_peek(log, a, 2), a, NULL, 0, 0);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_epoch(log), 1); /* clear is not a seal */

    /* The log works normally after a clear. */
    wl_log_mark(log, 808, 8);
    expect_export(wl_log_seal(log, a, 2), a, (struct ext[]){ { 808, 8 } }, 1, 0);
    expect_export(wl_log_next(log, a, 2), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    drop_buf(a);
    drop_log(log);
}

/* Sector numbers and counts beyond 32 bits. */
static void test_sectors_past_4g(void **state)
{
    (void)state;
    const uint64_t G4 = 1ull << 32, G8 = 1ull << 33;
    const uint64_t disk = G8 + 1000;
    struct wl_log *log = mk(disk, 8);
    struct wl_disk_range *a = area_new(8);

    assert_int_equal(wl_log_grain(log), 8);
    wl_log_mark(log, G4 - 4, 8);      /* grains straddling 2^32: [G4-8, G4+8) */
    wl_log_mark(log, G4 + 100, 1);    /* [G4+96, G4+104) */
    wl_log_mark(log, G8 - 8, 8);      /* [G8-8, G8) */
    wl_log_mark(log, G8, 3);          /* [G8, G8+8), merges with the previous */
    wl_log_mark(log, disk - 5, 100);  /* last grain, clipped: [G8+992, G8+1000) */
    assert_int_equal(wl_log_live_grains(log), 2 + 1 + 2 + 1);

    const struct ext want[] = {
        { G4 - 8, 16 }, { G4 + 96, 8 }, { G8 - 8, 16 }, { G8 + 992, 8 },
    };
    expect_export(wl_log_peek(log, a, 8), a, want, 4, 0);
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 3), a, want, 3, 1);
    assert_int_equal(wl_log_pending_grains(log), 6);
    area_poison(a, 8);
    expect_export(wl_log_next(log, a, 3), a, &want[3], 1, 0);
    assert_int_equal(wl_log_pending_grains(log), 1);
    expect_export(wl_log_next(log, a, 3), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);

    /* The whole disk: extents are capped below 2^32 sectors, on grains. */
    const uint32_t cap = UINT32_MAX & ~7u; /* 4294967288 */
    wl_log_mark(log, 0, UINT64_MAX);
    assert_int_equal(wl_log_live_grains(log), (disk + 7) / 8);
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 8), a,
                  (struct ext[]){ { 0, cap },
                                  { cap, cap },
                                  { 2 * (uint64_t)cap, (uint32_t)(disk - 2 * (uint64_t)cap) } },
                  3, 0);
    assert_int_equal(disk - 2 * (uint64_t)cap, 1016);
    expect_export(wl_log_next(log, a, 8), a, NULL, 0, 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    drop_log(log);

    /* A disk past 2^33 whose size is not a multiple of the grain. */
    log = mk(G8 + 1003, 8);
    wl_log_mark(log, G8 + 1002, 1);
    wl_log_mark(log, G4, 1);
    area_poison(a, 8);
    expect_export(wl_log_seal(log, a, 8), a,
                  (struct ext[]){ { G4, 8 }, { G8 + 1000, 3 } }, 2, 0);
    drop_buf(a);
    drop_log(log);
}

static void test_epoch(void **state)
{
    (void)state;
    struct wl_log *log = mk(4096, 8);
    struct wl_disk_range *a = area_new(4);

    wl_log_mark(log, 0, 1);
    wl_log_peek(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 0);
    wl_log_seal(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 1);
    wl_log_next(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 1);
    wl_log_getw(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 2);
    wl_log_clear(log);
    wl_log_peek(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 2);
    for (int i = 0; i < 10; i++)
        wl_log_seal(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 12);
    wl_log_getw(log, a, 4);
    assert_int_equal(wl_log_epoch(log), 13);
    drop_buf(a);
    drop_log(log);
}

/* Randomized: marks and seal/next/getw rounds, checked against a reference
 * of which grains were written since they were last acknowledged. */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void test_random_rounds(void **state)
{
    (void)state;
    const uint64_t disk = 20003; /* 2501 grains of 8, the last one 3 sectors */
    const uint64_t ng = (disk + 7) / 8;
    struct wl_log *log = mk(disk, 8);
    const uint32_t slots = 5;
    struct wl_disk_range *a = area_new(slots);
    /* dirty: written and not acknowledged; got: exported in this round. */
    bool *dirty = track_buf(calloc(ng, 1)), *got = track_buf(calloc(ng, 1));
    assert_non_null(dirty);
    assert_non_null(got);

    rng_state = 0x5eed1234abcdull;
    for (int round = 0; round < 200; round++) {
        int nmarks = (int)(rnd() % 12);
        for (int i = 0; i < nmarks; i++) {
            uint64_t s = rnd() % (disk + 20), c = 1 + rnd() % 40;
            wl_log_mark(log, s, c);
            if (s < disk) {
                uint64_t e = s + c > disk ? disk : s + c;
                for (uint64_t g = s / 8; g <= (e - 1) / 8; g++)
                    dirty[g] = true;
            }
        }
        /* peek shows every dirty grain's first chunk. */
        memset(got, 0, ng);
        struct wl_export_result r = wl_log_peek(log, a, slots);
        uint64_t first_dirty = ng;
        for (uint64_t g = 0; g < ng; g++)
            if (dirty[g]) {
                first_dirty = g;
                break;
            }
        if (first_dirty < ng) {
            assert_true(r.extents > 0);
            assert_int_equal(a[0].sector, first_dirty * 8);
        } else {
            assert_int_equal(r.extents, 0);
        }

        bool use_getw = rnd() % 4 == 0;
        r = use_getw ? wl_log_getw(log, a, slots) : wl_log_seal(log, a, slots);
        uint64_t prev_end = 0;
        for (;;) {
            for (uint32_t i = 0; i < r.extents; i++) {
                uint64_t s = a[i].sector, c = a[i].count;
                assert_true(c > 0);
                assert_true(s >= prev_end); /* ascending, not overlapping */
                assert_true(s % 8 == 0);
                assert_true(s + c <= disk);
                assert_true(c % 8 == 0 || s + c == disk);
                for (uint64_t g = s / 8; g <= (s + c - 1) / 8; g++) {
                    assert_true(dirty[g]);
                    assert_false(got[g]);
                    got[g] = true;
                }
                prev_end = s + c;
            }
            assert_int_equal(a[r.extents].count, 0);
            if (!r.more)
                break;
            r = wl_log_next(log, a, slots);
        }
        /* Acknowledges the last chunk (after a one-chunk getw: a no-op). */
        expect_export(wl_log_next(log, a, slots), a, NULL, 0, 0);
        /* Every dirty grain was exported exactly once, and now is clean. */
        for (uint64_t g = 0; g < ng; g++) {
            assert_int_equal(got[g], dirty[g]);
            dirty[g] = false;
        }
        assert_int_equal(wl_log_pending_grains(log), 0);
        assert_int_equal(wl_log_live_grains(log), 0);
        assert_int_equal(wl_log_epoch(log), (uint64_t)round + 1);
    }
    drop_buf(dirty);
    drop_buf(got);
    drop_buf(a);
    drop_log(log);
}

/* wl_log_mark from several threads while the control thread seals and
 * fetches: every grain marked once is exported exactly once. */
#define CM_THREADS 3
#define CM_GRAINS 60000u

struct cm_arg {
    struct wl_log *log;
    unsigned id;
};

static void *cm_marker(void *p)
{
    struct cm_arg *c = p;
    /* Grain g belongs to thread g % CM_THREADS; walk them in a scrambled
     * order, marking one sector inside the grain. */
    for (uint64_t i = 0; i < CM_GRAINS; i++) {
        uint64_t g = (i * 7919) % CM_GRAINS;
        if (g % CM_THREADS != c->id)
            continue;
        wl_log_mark(c->log, g * 8 + (g % 8), 1);
    }
    return NULL;
}

static void test_concurrent_marks(void **state)
{
    (void)state;
    struct wl_log *log = mk((uint64_t)CM_GRAINS * 8, 8);
    const uint32_t slots = 64;
    struct wl_disk_range *a = area_new(slots);
    uint8_t *seen = track_buf(calloc(CM_GRAINS, 1));
    pthread_t th[CM_THREADS];
    struct cm_arg args[CM_THREADS];
    assert_non_null(seen);

    for (unsigned t = 0; t < CM_THREADS; t++) {
        args[t] = (struct cm_arg){ log, t };
        assert_int_equal(pthread_create(&th[t], NULL, cm_marker, &args[t]), 0);
    }
    int joined = 0;
    uint64_t bad = 0;
    for (int round = 0; round < 100000; round++) {
        if (round == 300) {
            for (unsigned t = 0; t < CM_THREADS; t++)
                pthread_join(th[t], NULL);
            joined = 1;
        }
        struct wl_export_result r = wl_log_seal(log, a, slots);
        for (;;) {
            for (uint32_t i = 0; i < r.extents; i++) {
                /* No assert while the markers run: count, check later. */
                if (a[i].sector % 8 || a[i].count % 8 || a[i].count == 0)
                    bad++;
                for (uint64_t g = a[i].sector / 8; g < (a[i].sector + a[i].count) / 8; g++) {
                    if (g < CM_GRAINS && seen[g] < 255)
                        seen[g]++;
                    else
                        bad++;
                }
            }
            if (!r.more)
                break;
            r = wl_log_next(log, a, slots);
        }
        wl_log_next(log, a, slots); /* acknowledge the last chunk */
        if (joined && wl_log_live_grains(log) == 0)
            break;
    }
    assert_true(joined);
    assert_int_equal(bad, 0);
    assert_int_equal(wl_log_live_grains(log), 0);
    assert_int_equal(wl_log_pending_grains(log), 0);
    for (uint64_t g = 0; g < CM_GRAINS; g++)
        assert_int_equal(seen[g], 1);
    drop_buf(seen);
    drop_buf(a);
    drop_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_auto_grain, teardown),
        cmocka_unit_test_teardown(test_auto_grain_fits_just_past_threshold, teardown),
        cmocka_unit_test_teardown(test_create_errors_and_grain, teardown),
        cmocka_unit_test_teardown(test_mark_rounding_and_clipping, teardown),
        cmocka_unit_test_teardown(test_peek_changes_nothing, teardown),
        cmocka_unit_test_teardown(test_seal_moves_and_merges, teardown),
        cmocka_unit_test_teardown(test_seal_next_continuation, teardown),
        cmocka_unit_test_teardown(test_run_split_by_extent_size, teardown),
        cmocka_unit_test_teardown(test_reseal_without_ack, teardown),
        cmocka_unit_test_teardown(test_marks_after_seal_go_live, teardown),
        cmocka_unit_test_teardown(test_getw, teardown),
        cmocka_unit_test_teardown(test_clear, teardown),
        cmocka_unit_test_teardown(test_sectors_past_4g, teardown),
        cmocka_unit_test_teardown(test_epoch, teardown),
        cmocka_unit_test_teardown(test_random_rounds, teardown),
        cmocka_unit_test_teardown(test_concurrent_marks, teardown),
    };
    return cmocka_run_group_tests_name("wlog", tests, NULL, NULL);
}
