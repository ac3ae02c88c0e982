/* Unit tests for the hierarchical atomic bitmap (common/bitmap.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/bitmap.h"

/* Leaf word, level-1 word and level-2 word spans, in bits. */
#define W 64ull
#define L1 4096ull
#define L2 262144ull

/* Maps and buffers a test made, freed by the teardown even when an
 * assertion fails halfway (cmocka longjmps out of the test). */
#define MAX_TRACKED 8
static struct bs_bitmap *tracked_maps[MAX_TRACKED];
static void *tracked_buf;

static void track_map(struct bs_bitmap *m)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!tracked_maps[i]) {
            tracked_maps[i] = m;
            return;
        }
    fail_msg("too many maps");
}

static void drop_map(struct bs_bitmap *m)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked_maps[i] == m)
            tracked_maps[i] = NULL;
    bs_bitmap_destroy(m);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_TRACKED; i++) {
        bs_bitmap_destroy(tracked_maps[i]);
        tracked_maps[i] = NULL;
    }
    free(tracked_buf);
    tracked_buf = NULL;
    return 0;
}

static struct bs_bitmap *mk(uint64_t nbits, unsigned flags)
{
    struct bs_bitmap *m = NULL;
    int r = bs_bitmap_create(nbits, flags, &m);
    assert_int_equal(r, 0);
    assert_non_null(m);
    track_map(m);
    assert_int_equal(bs_bitmap_nbits(m), nbits);
    return m;
}

/* Checks that exactly bits [first, first + count) are set, by test(),
 * next_set(), next_clear() and count(). */
static void expect_only_range(struct bs_bitmap *m, uint64_t first, uint64_t count)
{
    uint64_t n = bs_bitmap_nbits(m);

    assert_int_equal(bs_bitmap_count(m), count);
    assert_int_equal(bs_bitmap_next_set(m, 0), count ? first : n);
    if (count) {
        assert_int_equal(bs_bitmap_next_clear(m, first), first + count);
        assert_int_equal(bs_bitmap_next_set(m, first + count), n);
        if (first > 0) {
            assert_false(bs_bitmap_test(m, first - 1));
            assert_int_equal(bs_bitmap_next_clear(m, 0), 0);
        }
        assert_true(bs_bitmap_test(m, first));
        assert_true(bs_bitmap_test(m, first + count - 1));
        if (first + count < n)
            assert_false(bs_bitmap_test(m, first + count));
    }
}

/* ---- creation ---------------------------------------------------------- */

static void test_create_sizes(void **state)
{
    (void)state;
    static const uint64_t sizes[] = { 0, 1, 63, 64, 65, 4095, 4096, 4097, 262143, 262144,
                                      262145, 1000003 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct bs_bitmap *m = mk(sizes[i], i % 2 ? BS_BITMAP_PREFAULT : 0);
        /* At least the leaf words. */
        assert_true(bs_bitmap_mem_bytes(m) >= (sizes[i] + 63) / 64 * 8);
        assert_int_equal(bs_bitmap_count(m), 0);
        assert_int_equal(bs_bitmap_next_set(m, 0), sizes[i]);
        assert_int_equal(bs_bitmap_next_clear(m, 0), 0); /* 0 == nbits when empty */
        drop_map(m);
    }
    bs_bitmap_destroy(NULL); /* must be a no-op */
}

static void test_empty_map(void **state)
{
    (void)state;
    struct bs_bitmap *m = mk(0, 0);
    bs_bitmap_set_range(m, 0, 10);
    assert_false(bs_bitmap_test(m, 0));
    assert_int_equal(bs_bitmap_count(m), 0);
    assert_int_equal(bs_bitmap_next_set(m, 0), 0);
    assert_int_equal(bs_bitmap_next_clear(m, 0), 0);
    bs_bitmap_clear_all(m);
    drop_map(m);
}

/* ---- single bits ------------------------------------------------------- */

static void test_single_bits(void **state)
{
    (void)state;
    const uint64_t n = 3 * L2 + 77;
    struct bs_bitmap *m = mk(n, BS_BITMAP_PREFAULT);
    static const uint64_t bits[] = { 0,      1,      63,     64,     65,     127,    128,
                                     4095,   4096,   4097,   8191,   262143, 262144, 262145,
                                     524287, 524288, 3 * 262144 + 76 };
    const size_t nb = sizeof(bits) / sizeof(bits[0]);

    for (size_t i = 0; i < nb; i++) {
        uint64_t b = bits[i];
        bs_bitmap_set_range(m, b, 1);
        assert_true(bs_bitmap_test(m, b));
        if (b > 0)
            assert_false(bs_bitmap_test(m, b - 1));
        if (b + 1 < n)
            assert_false(bs_bitmap_test(m, b + 1));
        expect_only_range(m, b, 1);
        assert_int_equal(bs_bitmap_next_clear(m, b), b + 1 < n ? b + 1 : n);
        bs_bitmap_clear_range(m, b, 1);
        assert_false(bs_bitmap_test(m, b));
        expect_only_range(m, 0, 0);
    }

    /* All of them together, then walk them with next_set. */
    for (size_t i = 0; i < nb; i++)
        bs_bitmap_set_range(m, bits[i], 1);
    assert_int_equal(bs_bitmap_count(m), nb);
    uint64_t pos = 0;
    for (size_t i = 0; i < nb; i++) {
        pos = bs_bitmap_next_set(m, pos);
        assert_int_equal(pos, bits[i]);
        pos++;
    }
    assert_int_equal(bs_bitmap_next_set(m, pos), n);
    /* Setting a bit twice changes nothing. */
    bs_bitmap_set_range(m, 4096, 1);
    assert_int_equal(bs_bitmap_count(m), nb);
    /* Clear them one by one from the middle out; the others stay. */
    for (size_t i = nb / 2, k = 0; k < nb; k++, i = (i + 7) % nb) {
        bs_bitmap_clear_range(m, bits[i], 1);
        assert_false(bs_bitmap_test(m, bits[i]));
    }
    assert_int_equal(bs_bitmap_count(m), 0);
    assert_int_equal(bs_bitmap_next_set(m, 0), n);

    /* Out of range bits are ignored. */
    bs_bitmap_set_range(m, n, 1);
    bs_bitmap_set_range(m, n + 100, 5);
    bs_bitmap_set_range(m, UINT64_MAX, 1);
    assert_false(bs_bitmap_test(m, n));
    assert_false(bs_bitmap_test(m, UINT64_MAX));
    assert_int_equal(bs_bitmap_count(m), 0);
    /* A zero count is a no-op. */
    bs_bitmap_set_range(m, 5, 0);
    assert_int_equal(bs_bitmap_count(m), 0);
    drop_map(m);
}

/* ---- ranges ------------------------------------------------------------ */

static void test_ranges_across_boundaries(void **state)
{
    (void)state;
    const uint64_t n = 4 * L2 + 1000;
    struct bs_bitmap *m = mk(n, 0);
    static const struct {
        uint64_t first, count;
    } cases[] = {
        { 0, 1 },          { 0, 64 },          { 0, 65 },           { 1, 63 },
        { 1, 64 },         { 60, 8 },          { 63, 2 },           { 64, 64 },
        { 100, 300 },      { 4090, 12 },       { 4095, 2 },         { 4096, 4096 },
        { 4000, 200 },     { 8000, 10000 },    { L2 - 1, 2 },       { L2 - 100, 200 },
        { L2 - 5000, 10000 }, { 1, 2 * L2 },   { L2, L2 },          { 0, 4 * L2 + 1000 },
        { 4 * L2 + 999, 1 }, { 4 * L2 + 900, 100 }, { 3 * L2 + 17, L2 + 983 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t f = cases[i].first, c = cases[i].count;
        assert_true(f + c <= n);
        bs_bitmap_set_range(m, f, c);
        expect_only_range(m, f, c);
        /* Punch a hole in the middle, then refill it. */
        if (c >= 3) {
            uint64_t hf = f + c / 3, hc = c / 3;
            bs_bitmap_clear_range(m, hf, hc);
            assert_int_equal(bs_bitmap_count(m), c - hc);
            assert_int_equal(bs_bitmap_next_clear(m, f), hf);
            assert_int_equal(bs_bitmap_next_set(m, hf), hf + hc);
            assert_false(bs_bitmap_test(m, hf));
            assert_false(bs_bitmap_test(m, hf + hc - 1));
            assert_true(bs_bitmap_test(m, hf - 1));
            assert_true(bs_bitmap_test(m, hf + hc));
            bs_bitmap_set_range(m, hf, hc);
            expect_only_range(m, f, c);
        }
        bs_bitmap_clear_range(m, f, c);
        expect_only_range(m, 0, 0);
    }
    drop_map(m);
}

static void test_range_clipping(void **state)
{
    (void)state;
    const uint64_t n = 4100; /* not a multiple of 64 */
    struct bs_bitmap *m = mk(n, 0);

    bs_bitmap_set_range(m, 4000, 1000); /* clipped to [4000, 4100) */
    expect_only_range(m, 4000, 100);
    bs_bitmap_set_range(m, 4090, UINT64_MAX); /* huge count: no overflow */
    expect_only_range(m, 4000, 100);
    bs_bitmap_clear_range(m, 4050, UINT64_MAX);
    expect_only_range(m, 4000, 50);
    bs_bitmap_clear_range(m, n, 10); /* past the end: no-op */
    bs_bitmap_clear_range(m, 4000, 0);
    expect_only_range(m, 4000, 50);
    bs_bitmap_set_range(m, 0, UINT64_MAX);
    expect_only_range(m, 0, n);
    bs_bitmap_clear_range(m, 0, UINT64_MAX);
    expect_only_range(m, 0, 0);
    drop_map(m);
}

/* ---- next_set / next_clear at the end of the map ----------------------- */

static void test_next_at_end(void **state)
{
    (void)state;
    static const uint64_t sizes[] = { 1, 63, 64, 65, 100, 127, 128, 4095, 4097, 262145 };

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t n = sizes[i];
        struct bs_bitmap *m = mk(n, 0);

        /* Past the end. */
        assert_int_equal(bs_bitmap_next_set(m, n), n);
        assert_int_equal(bs_bitmap_next_clear(m, n), n);
        assert_int_equal(bs_bitmap_next_set(m, n + 1000), n);
        assert_int_equal(bs_bitmap_next_clear(m, n + 1000), n);
        assert_int_equal(bs_bitmap_next_set(m, UINT64_MAX), n);
        assert_int_equal(bs_bitmap_next_clear(m, UINT64_MAX), n);

        /* Only the last bit set. */
        bs_bitmap_set_range(m, n - 1, 1);
        assert_int_equal(bs_bitmap_next_set(m, 0), n - 1);
        assert_int_equal(bs_bitmap_next_set(m, n - 1), n - 1);
        assert_int_equal(bs_bitmap_next_clear(m, n - 1), n);
        assert_int_equal(bs_bitmap_count(m), 1);

        /* Full map: no clear bit at all, even in the padding of the
         * last word. */
        bs_bitmap_set_range(m, 0, n);
        assert_int_equal(bs_bitmap_count(m), n);
        assert_int_equal(bs_bitmap_next_clear(m, 0), n);
        assert_int_equal(bs_bitmap_next_clear(m, n / 2), n);
        assert_int_equal(bs_bitmap_next_set(m, n / 2), n / 2);

        /* Full but the first bit. */
        bs_bitmap_clear_range(m, 0, 1);
        assert_int_equal(bs_bitmap_next_clear(m, 0), 0);
        assert_int_equal(bs_bitmap_next_set(m, 0), n > 1 ? 1 : n);
        assert_int_equal(bs_bitmap_next_clear(m, 1), n);

        /* Empty: next_set from anywhere is the end. */
        bs_bitmap_clear_all(m);
        assert_int_equal(bs_bitmap_count(m), 0);
        assert_int_equal(bs_bitmap_next_set(m, 0), n);
        assert_int_equal(bs_bitmap_next_set(m, n - 1), n);
        assert_int_equal(bs_bitmap_next_clear(m, n - 1), n - 1);
        drop_map(m);
    }
}

/* ---- count and clear_all ----------------------------------------------- */

static void test_count_and_clear_all(void **state)
{
    (void)state;
    const uint64_t n = 2 * L2 + 12345;
    struct bs_bitmap *m = mk(n, BS_BITMAP_PREFAULT);
    uint64_t expect = 0;

    /* Every 3rd bit of a few windows, every bit of another. */
    for (uint64_t b = 0; b < 5000; b += 3, expect++)
        bs_bitmap_set_range(m, b, 1);
    for (uint64_t b = L2 - 2000; b < L2 + 2000; b += 3, expect++)
        bs_bitmap_set_range(m, b, 1);
    bs_bitmap_set_range(m, 2 * L2, 12345);
    expect += 12345;
    assert_int_equal(bs_bitmap_count(m), expect);
    assert_int_equal(bs_bitmap_next_clear(m, 2 * L2), n);

    bs_bitmap_clear_all(m);
    assert_int_equal(bs_bitmap_count(m), 0);
    assert_int_equal(bs_bitmap_next_set(m, 0), n);
    assert_false(bs_bitmap_test(m, 0));
    assert_false(bs_bitmap_test(m, n - 1));
    /* The summaries are consistent after clear_all: new bits are found. */
    bs_bitmap_set_range(m, L2 + 5, 1);
    assert_int_equal(bs_bitmap_next_set(m, 0), L2 + 5);
    assert_int_equal(bs_bitmap_count(m), 1);
    bs_bitmap_clear_all(m);
    bs_bitmap_clear_all(m); /* twice: harmless */
    assert_int_equal(bs_bitmap_count(m), 0);
    drop_map(m);
}

/* ---- move -------------------------------------------------------------- */

static void test_move(void **state)
{
    (void)state;
    const uint64_t n = 3 * L2 + 5;
    struct bs_bitmap *dst = mk(n, 0), *src = mk(n, BS_BITMAP_PREFAULT);

    /* Empty into empty. */
    assert_int_equal(bs_bitmap_move(dst, src), 0);
    assert_int_equal(bs_bitmap_count(dst), 0);

    bs_bitmap_set_range(src, 10, 100);     /* [10, 110) */
    bs_bitmap_set_range(src, L2 - 1, 2);   /* crosses level-2 word */
    bs_bitmap_set_range(src, n - 1, 1);    /* last bit */
    bs_bitmap_set_range(dst, 50, 100);     /* [50, 150): overlaps [50, 110) */
    bs_bitmap_set_range(dst, 5000, 1);

    uint64_t moved = bs_bitmap_move(dst, src);
    /* Newly set in dst: [10, 50) = 40, L2-1, L2, n-1 = 3. */
    assert_int_equal(moved, 43);
    assert_int_equal(bs_bitmap_count(src), 0);
    assert_int_equal(bs_bitmap_next_set(src, 0), n);
    for (uint64_t b = 0; b < 200; b++)
        assert_int_equal(bs_bitmap_test(dst, b), b >= 10 && b < 150);
    assert_true(bs_bitmap_test(dst, 5000));
    assert_true(bs_bitmap_test(dst, L2 - 1));
    assert_true(bs_bitmap_test(dst, L2));
    assert_true(bs_bitmap_test(dst, n - 1));
    assert_int_equal(bs_bitmap_count(dst), 140 + 1 + 2 + 1);
    /* dst's summaries were updated: scans find the moved bits. */
    assert_int_equal(bs_bitmap_next_set(dst, 151), 5000);
    assert_int_equal(bs_bitmap_next_set(dst, 5001), L2 - 1);
    assert_int_equal(bs_bitmap_next_set(dst, L2 + 1), n - 1);

    /* Moving again moves nothing. */
    assert_int_equal(bs_bitmap_move(dst, src), 0);
    assert_int_equal(bs_bitmap_count(dst), 144);

    /* src is reusable after a move (summaries were fixed). */
    bs_bitmap_set_range(src, 2 * L2 + 3, 1);
    assert_int_equal(bs_bitmap_next_set(src, 0), 2 * L2 + 3);
    assert_int_equal(bs_bitmap_move(dst, src), 1);
    assert_int_equal(bs_bitmap_count(dst), 145);
    assert_int_equal(bs_bitmap_count(src), 0);

    /* Bits all already in dst: returns 0 but still empties src. */
    bs_bitmap_set_range(src, 60, 40);
    assert_int_equal(bs_bitmap_move(dst, src), 0);
    assert_int_equal(bs_bitmap_count(src), 0);
    assert_int_equal(bs_bitmap_count(dst), 145);

    drop_map(dst);
    drop_map(src);
}

static void test_move_size_mismatch(void **state)
{
    (void)state;
    struct bs_bitmap *a = mk(1000, 0), *b = mk(1001, 0);
    bs_bitmap_set_range(b, 0, 10);
    /* The maps must be the same size: nothing moves. */
    assert_int_equal(bs_bitmap_move(a, b), 0);
    assert_int_equal(bs_bitmap_count(a), 0);
    assert_int_equal(bs_bitmap_count(b), 10);
    drop_map(a);
    drop_map(b);
}

/* ---- a big sparse map -------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_big_sparse(void **state)
{
    (void)state;
    const uint64_t n = 1ull << 36;
    struct bs_bitmap *m = NULL, *m2 = NULL;
    int r = bs_bitmap_create(n, 0, &m);
    if (r == -ENOMEM) {
        skip(); /* no address space for 8 GiB of reservation here */
    }
    assert_int_equal(r, 0);
    track_map(m);
    assert_true(bs_bitmap_mem_bytes(m) >= n / 8);

    static const uint64_t bits[] = { 5, 1ull << 20, (1ull << 32) + 7, (1ull << 35) - 1,
                                     1ull << 35, n - 64, n - 1 };
    const size_t nb = sizeof(bits) / sizeof(bits[0]);
    double t0 = now();

    assert_int_equal(bs_bitmap_next_set(m, 0), n); /* empty: must not scan 1 GiB */
    for (size_t i = 0; i < nb; i++)
        bs_bitmap_set_range(m, bits[i], 1);
    bs_bitmap_set_range(m, (1ull << 33) - 3, 6); /* across every level's boundary */
    assert_int_equal(bs_bitmap_count(m), nb + 6);

    uint64_t pos = 0, found[16];
    size_t k = 0;
    for (pos = bs_bitmap_next_set(m, 0); pos < n; pos = bs_bitmap_next_set(m, pos + 1)) {
        assert_true(k < 16);
        found[k++] = pos;
    }
    assert_int_equal(k, nb + 6);
    assert_int_equal(found[0], 5);
    assert_int_equal(found[1], 1ull << 20);
    assert_int_equal(found[2], (1ull << 32) + 7);
    for (int j = 0; j < 6; j++)
        assert_int_equal(found[3 + j], (1ull << 33) - 3 + j);
    assert_int_equal(found[9], (1ull << 35) - 1);
    assert_int_equal(found[10], 1ull << 35);
    assert_int_equal(found[11], n - 64);
    assert_int_equal(found[12], n - 1);
    assert_int_equal(bs_bitmap_next_set(m, (1ull << 20) + 1), (1ull << 32) + 7);
    assert_int_equal(bs_bitmap_next_clear(m, (1ull << 33) - 3), (1ull << 33) + 3);
    assert_int_equal(bs_bitmap_next_clear(m, n - 1), n);

    /* Move into another big map and clear: proportional to what is set. */
    r = bs_bitmap_create(n, 0, &m2);
    assert_int_equal(r, 0);
    track_map(m2);
    assert_int_equal(bs_bitmap_move(m2, m), nb + 6);
    assert_int_equal(bs_bitmap_next_set(m, 0), n);
    assert_int_equal(bs_bitmap_next_set(m2, 0), 5);
    assert_int_equal(bs_bitmap_next_set(m2, 6), 1ull << 20);
    bs_bitmap_clear_range(m2, 0, (1ull << 34));
    assert_int_equal(bs_bitmap_count(m2), 4);
    assert_int_equal(bs_bitmap_next_set(m2, 0), (1ull << 35) - 1);
    bs_bitmap_clear_all(m2);
    assert_int_equal(bs_bitmap_count(m2), 0);
    assert_int_equal(bs_bitmap_next_set(m2, 0), n);

    /* All of this touches a few pages; a full scan of the 8 GiB leaf
     * would take far longer than this. */
    assert_true(now() - t0 < 2.0);
    drop_map(m);
    drop_map(m2);
}

/* ---- randomized comparison against a bool array ------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic across platforms. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t ref_next(const bool *ref, uint64_t n, uint64_t pos, bool val)
{
    for (; pos < n; pos++)
        if (ref[pos] == val)
            return pos;
    return n;
}

static void random_compare(uint64_t n, uint64_t seed, int iters)
{
    struct bs_bitmap *m = mk(n, BS_BITMAP_PREFAULT);
    bool *ref = calloc(n ? n : 1, sizeof(bool));
    uint64_t refcount = 0;

    assert_non_null(ref);
    tracked_buf = ref;
    rng_state = seed;
    for (int it = 0; it < iters; it++) {
        uint64_t op = rnd() % 10;
        uint64_t first = rnd() % (n + 10); /* sometimes past the end */
        uint64_t count;
        switch (rnd() % 4) {
        case 0: count = rnd() % 4; break;
        case 1: count = rnd() % 130; break;
        case 2: count = rnd() % 9000; break;
        default: count = rnd() % (n + 1); break;
        }
        uint64_t end = first >= n ? first : (count > n - first ? n : first + count);

        if (op < 4) {
            bs_bitmap_set_range(m, first, count);
            for (uint64_t b = first; b < end; b++) {
                refcount += !ref[b];
                ref[b] = true;
            }
        } else if (op < 8) {
            bs_bitmap_clear_range(m, first, count);
            for (uint64_t b = first; b < end; b++) {
                refcount -= ref[b];
                ref[b] = false;
            }
        } else if (op == 8) {
            bs_bitmap_clear_all(m);
            memset(ref, 0, n);
            refcount = 0;
        }
        /* op 9: checks only. */

        assert_int_equal(bs_bitmap_count(m), refcount);
        for (int q = 0; q < 8; q++) {
            uint64_t p = rnd() % (n + 2);
            assert_int_equal(bs_bitmap_next_set(m, p), ref_next(ref, n, p, true));
            assert_int_equal(bs_bitmap_next_clear(m, p), ref_next(ref, n, p, false));
            if (p < n)
                assert_int_equal(bs_bitmap_test(m, p), ref[p]);
        }
        /* Around the edited range's ends. */
        if (first < n) {
            assert_int_equal(bs_bitmap_test(m, first), ref[first]);
            assert_int_equal(bs_bitmap_next_set(m, first), ref_next(ref, n, first, true));
            assert_int_equal(bs_bitmap_next_clear(m, first), ref_next(ref, n, first, false));
        }
        if (end > 0 && end - 1 < n) {
            assert_int_equal(bs_bitmap_test(m, end - 1), ref[end - 1]);
            assert_int_equal(bs_bitmap_next_set(m, end - 1), ref_next(ref, n, end - 1, true));
        }
    }
    /* Full walk of the set bits and of the clear runs. */
    uint64_t k = 0;
    for (uint64_t p = bs_bitmap_next_set(m, 0); p < n; p = bs_bitmap_next_set(m, p + 1)) {
        assert_true(ref[p]);
        k++;
    }
    assert_int_equal(k, refcount);
    for (uint64_t b = 0; b < n; b++)
        assert_int_equal(bs_bitmap_test(m, b), ref[b]);
    tracked_buf = NULL;
    free(ref);
    drop_map(m);
}

static void test_random_vs_reference(void **state)
{
    (void)state;
    /* Sizes: one level, two levels, three levels; multiples of 64 or not. */
    random_compare(100, 0x1234567ull, 3000);
    random_compare(4097, 0xdeadbeefull, 3000);
    random_compare(300001, 0xc0ffee11ull, 1500);
}

/* ---- concurrency ------------------------------------------------------- */

#define CONC_THREADS 4
#define CONC_BITS (3 * L2 + 101)
#define CONC_STRIDE 5 /* thread t owns runs starting at b with (b / 5) % T == t */

struct conc_arg {
    struct bs_bitmap *map;
    unsigned id;
    uint64_t set; /* bits this thread set */
};

static void *conc_setter(void *p)
{
    struct conc_arg *a = p;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (a->id + 1), s = seed;

    /* Each thread owns the 5-bit runs [5k, 5k + 5) with k % T == id, walks
     * them in a scrambled order and sets each run with one or two calls. */
    uint64_t nruns = CONC_BITS / CONC_STRIDE;
    uint64_t mine = (nruns - a->id + CONC_THREADS - 1) / CONC_THREADS;
    uint64_t step = 7919; /* prime, coprime with mine unless mine is a multiple */
    if (mine % step == 0)
        step = 1;
    for (uint64_t i = 0, j = s % (mine ? mine : 1); i < mine; i++, j = (j + step) % mine) {
        uint64_t run = j * CONC_THREADS + a->id;
        uint64_t b = run * CONC_STRIDE;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if (s & 1) {
            bs_bitmap_set_range(a->map, b, CONC_STRIDE);
        } else {
            bs_bitmap_set_range(a->map, b, 2);
            bs_bitmap_set_range(a->map, b + 2, CONC_STRIDE - 2);
        }
        a->set += CONC_STRIDE;
    }
    return NULL;
}

/* Every thread sets single bits id, id + T, id + 2T, ... in order, so that
 * all of them work in the same leaf word at once, the one the owner is
 * emptying: the worst case for the summary-clear/recheck race. */
static void *conc_setter_dense(void *p)
{
    struct conc_arg *a = p;
    for (uint64_t b = a->id; b < CONC_BITS; b += CONC_THREADS) {
        bs_bitmap_set_range(a->map, b, 1);
        __atomic_fetch_add(&a->set, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Leaf-level check that does not rely on the summaries: a bit whose
 * summary was lost is still seen by test(). */
static uint64_t count_by_test(const struct bs_bitmap *m)
{
    uint64_t n = 0;
    for (uint64_t b = 0; b < bs_bitmap_nbits(m); b++)
        n += bs_bitmap_test(m, b);
    return n;
}

static void test_concurrent_dense(void **state)
{
    (void)state;
    struct bs_bitmap *live = mk(CONC_BITS, BS_BITMAP_PREFAULT), *dst = mk(CONC_BITS, 0);
    pthread_t th[CONC_THREADS];
    struct conc_arg args[CONC_THREADS];

    for (int rep = 0; rep < 3; rep++) {
        uint64_t moved = 0, total = 0;
        volatile int done = 0;
        bs_bitmap_clear_all(dst);
        for (unsigned t = 0; t < CONC_THREADS; t++) {
            args[t] = (struct conc_arg){ .map = live, .id = t, .set = 0 };
            assert_int_equal(pthread_create(&th[t], NULL, conc_setter_dense, &args[t]), 0);
        }
        /* Move as fast as possible until every setter is done. */
        while (!done) {
            moved += bs_bitmap_move(dst, live);
            uint64_t s = 0;
            for (unsigned t = 0; t < CONC_THREADS; t++)
                s += __atomic_load_n(&args[t].set, __ATOMIC_RELAXED);
            done = s == CONC_BITS;
        }
        for (unsigned t = 0; t < CONC_THREADS; t++) {
            assert_int_equal(pthread_join(th[t], NULL), 0);
            total += args[t].set;
        }
        assert_int_equal(total, CONC_BITS);
        moved += bs_bitmap_move(dst, live);
        /* No bit is stranded in live with a cleared summary. */
        assert_int_equal(count_by_test(live), 0);
        assert_int_equal(moved, CONC_BITS);
        assert_int_equal(bs_bitmap_count(dst), CONC_BITS);
        assert_int_equal(count_by_test(dst), CONC_BITS);
        assert_int_equal(bs_bitmap_next_clear(dst, 0), CONC_BITS);
    }
    drop_map(live);
    drop_map(dst);
}

static void test_concurrent_set_and_move(void **state)
{
    (void)state;
    struct bs_bitmap *live = mk(CONC_BITS, BS_BITMAP_PREFAULT), *dst = mk(CONC_BITS, 0);
    pthread_t th[CONC_THREADS];
    struct conc_arg args[CONC_THREADS];
    uint64_t moved = 0, rounds = 0, total = 0;

    for (unsigned t = 0; t < CONC_THREADS; t++) {
        args[t] = (struct conc_arg){ .map = live, .id = t, .set = 0 };
        assert_int_equal(pthread_create(&th[t], NULL, conc_setter, &args[t]), 0);
    }
    /* Move while the setters run; clear dst now and then into a checked
     * tally so that the owner also exercises clear paths. */
    uint64_t tally = 0;
    for (rounds = 0; rounds < 2000; rounds++) {
        moved += bs_bitmap_move(dst, live);
        if (rounds % 64 == 63) {
            /* Harvest dst's set bits into the tally, then clear them. */
            uint64_t c = bs_bitmap_count(dst);
            tally += c;
            bs_bitmap_clear_all(dst);
        }
    }
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        total += args[t].set;
    }
    moved += bs_bitmap_move(dst, live); /* everything left */

    const uint64_t expect = CONC_BITS / CONC_STRIDE * CONC_STRIDE;
    assert_int_equal(total, expect);
    /* Each bit was set once, so each was moved once: none lost, none twice. */
    assert_int_equal(moved, expect);
    assert_int_equal(bs_bitmap_count(live), 0);
    assert_int_equal(count_by_test(live), 0);
    assert_int_equal(bs_bitmap_next_set(live, 0), CONC_BITS);
    assert_int_equal(tally + bs_bitmap_count(dst), expect);

    /* Now without intermediate clears: the union must be exact bit by bit. */
    bs_bitmap_clear_all(dst);
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        args[t] = (struct conc_arg){ .map = live, .id = t, .set = 0 };
        assert_int_equal(pthread_create(&th[t], NULL, conc_setter, &args[t]), 0);
    }
    moved = 0;
    for (int i = 0; i < 3000; i++)
        moved += bs_bitmap_move(dst, live);
    for (unsigned t = 0; t < CONC_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    /* Before the final move the bits are split between the two maps, each
     * in exactly one. */
    for (uint64_t b = 0; b < CONC_BITS; b++) {
        bool in_live = bs_bitmap_test(live, b), in_dst = bs_bitmap_test(dst, b);
        bool want = b < expect;
        assert_int_equal(in_live || in_dst, want);
        assert_false(in_live && in_dst);
    }
    assert_int_equal(bs_bitmap_count(live) + bs_bitmap_count(dst), expect);
    /* live's summaries are consistent: a scan finds exactly its bits. */
    uint64_t k = 0;
    for (uint64_t p = bs_bitmap_next_set(live, 0); p < CONC_BITS;
         p = bs_bitmap_next_set(live, p + 1)) {
        assert_true(bs_bitmap_test(live, p));
        k++;
    }
    assert_int_equal(k, bs_bitmap_count(live));
    moved += bs_bitmap_move(dst, live);
    assert_int_equal(moved, expect);
    assert_int_equal(bs_bitmap_count(dst), expect);
    assert_int_equal(bs_bitmap_next_clear(dst, 0), expect);
    assert_int_equal(bs_bitmap_count(live), 0);

    drop_map(live);
    drop_map(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_create_sizes, teardown),
        cmocka_unit_test_teardown(test_empty_map, teardown),
        cmocka_unit_test_teardown(test_single_bits, teardown),
        cmocka_unit_test_teardown(test_ranges_across_boundaries, teardown),
        cmocka_unit_test_teardown(test_range_clipping, teardown),
        cmocka_unit_test_teardown(test_next_at_end, teardown),
        cmocka_unit_test_teardown(test_count_and_clear_all, teardown),
        cmocka_unit_test_teardown(test_move, teardown),
        cmocka_unit_test_teardown(test_move_size_mismatch, teardown),
        cmocka_unit_test_teardown(test_big_sparse, teardown),
        cmocka_unit_test_teardown(test_random_vs_reference, teardown),
        cmocka_unit_test_teardown(test_concurrent_set_and_move, teardown),
        cmocka_unit_test_teardown(test_concurrent_dense, teardown),
    };
    return cmocka_run_group_tests_name("bitmap", tests, NULL, NULL);
}
