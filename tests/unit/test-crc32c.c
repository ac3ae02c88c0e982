/* Unit tests for CRC32C (common/crc32c.c).  The library picks the SSE4.2
 * path or the table at start-up; every test runs three times, on crc_fn()
 * as callers see it and on each path explicitly (crc32c_sw, crc32c_hw),
 * against a bitwise reference implemented here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdio.h>

#include "common/crc32c.h"

/* The implementation under test, set by each group's setup. */
static uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static int use_dispatch(void **state)
{
    (void)state;
    crc_fn = crc32c;
    return 0;
}

static int use_sw(void **state)
{
    (void)state;
    crc_fn = crc32c_sw;
    return 0;
}

static int use_hw(void **state)
{
    (void)state;
    crc_fn = crc32c_hw;
    return 0;
}

/* Bit-at-a-time CRC32C, reflected polynomial 0x82f63b78, same pre- and
 * post-inversion convention as crc_fn(). */
static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Deterministic PRNG (xorshift64*), so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 56);
}

static void *buffers[4];

static void *track(void *p)
{
    assert_non_null(p);
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
        if (!buffers[i]) {
            buffers[i] = p;
            return p;
        }
    fail_msg("too many buffers");
    return NULL;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++) {
        free(buffers[i]);
        buffers[i] = NULL;
    }
    return 0;
}

static void test_reference_self_check(void **state)
{
    (void)state;
    /* The reference must itself be right, or every comparison is moot. */
    assert_int_equal(ref_crc32c(0, (const uint8_t *)"123456789", 9), 0xe3069283u);
}

static void test_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc_fn(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc_fn(0, "", 0), 0);
    /* One byte: "a" (RFC 3720 / common test vector). */
    assert_int_equal(crc_fn(0, "a", 1), 0xc1d04330u);
    /* A longer text crossing several 8-byte words. */
    const char *fox = "The quick brown fox jumps over the lazy dog";
    assert_int_equal(crc_fn(0, fox, strlen(fox)), 0x22620404u);
}

static void test_rfc3720_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];

    memset(buf, 0, sizeof(buf));
    assert_int_equal(crc_fn(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(crc_fn(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc_fn(0, buf, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(crc_fn(0, buf, 32), 0x113fdb5cu);
}

static void test_zero_length_keeps_crc(void **state)
{
    (void)state;
    static const uint32_t vals[] = {0, 1, 0xe3069283u, 0xffffffffu, 0x80000000u};
    uint8_t b = 0x5a;

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        assert_int_equal(crc_fn(vals[i], &b, 0), vals[i]);
}

static void test_incremental_all_splits(void **state)
{
    (void)state;
    enum { N = 300 };
    uint8_t *buf = track(malloc(N));

    fill_random(buf, N);
    uint32_t whole = crc_fn(0, buf, N);
    assert_int_equal(whole, ref_crc32c(0, buf, N));

    for (size_t split = 0; split <= N; split++) {
        uint32_t c = crc_fn(0, buf, split);
        c = crc_fn(c, buf + split, N - split);
        if (c != whole)
            fail_msg("split at %zu: 0x%08x, one shot 0x%08x", split, c, whole);
    }
    /* Three pieces, at every pair of split points in a shorter prefix. */
    for (size_t a = 0; a <= 40; a++)
        for (size_t b = a; b <= 40; b++) {
            uint32_t c = crc_fn(0, buf, a);
            c = crc_fn(c, buf + a, b - a);
            c = crc_fn(c, buf + b, 40 - b);
            if (c != ref_crc32c(0, buf, 40))
                fail_msg("splits %zu,%zu: 0x%08x", a, b, c);
        }
    /* Byte by byte. */
    uint32_t c = 0;
    for (size_t i = 0; i < N; i++)
        c = crc_fn(c, buf + i, 1);
    assert_int_equal(c, whole);
}

static void test_unaligned(void **state)
{
    (void)state;
    enum { N = 1024 };
    uint8_t *base = track(aligned_alloc(64, N + 64));
    uint8_t *aligned = track(aligned_alloc(64, N + 64));
    static const size_t lens[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 100, 511,
                                  512, 513, 1000, N};

    fill_random(base, N + 64);
    for (size_t off = 0; off <= 7; off++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            size_t len = lens[i];
            /* The same bytes at an 8-aligned address. */
            memcpy(aligned, base + off, len);
            uint32_t u = crc_fn(0, base + off, len);
            uint32_t a = crc_fn(0, aligned, len);
            uint32_t r = ref_crc32c(0, base + off, len);
            if (u != r || a != r)
                fail_msg("offset %zu len %zu: unaligned 0x%08x aligned 0x%08x ref 0x%08x", off,
                         len, u, a, r);
        }
        /* The check value from an odd address. */
        memcpy(base + off, "123456789", 9);
        assert_int_equal(crc_fn(0, base + off, 9), 0xe3069283u);
        fill_random(base, N + 64);
    }
}

static void test_against_reference_random(void **state)
{
    (void)state;
    enum { MAXLEN = 4096 };
    uint8_t *buf = track(malloc(MAXLEN + 8));

    for (int iter = 0; iter < 600; iter++) {
        size_t len = iter < 64 ? (size_t)iter : (size_t)(rnd() % (MAXLEN + 1));
        size_t off = (size_t)(rnd() % 8);
        uint32_t seed = iter & 1 ? (uint32_t)rnd() : 0;

        fill_random(buf, MAXLEN + 8);
        uint32_t got = crc_fn(seed, buf + off, len);
        uint32_t want = ref_crc32c(seed, buf + off, len);
        if (got != want)
            fail_msg("iter %d len %zu off %zu seed 0x%08x: 0x%08x, reference 0x%08x", iter, len,
                     off, seed, got, want);
    }
    /* The full length, all-ones and all-zeroes. */
    memset(buf, 0xff, MAXLEN);
    assert_int_equal(crc_fn(0, buf, MAXLEN), ref_crc32c(0, buf, MAXLEN));
    memset(buf, 0, MAXLEN);
    assert_int_equal(crc_fn(0, buf, MAXLEN), ref_crc32c(0, buf, MAXLEN));
}

/* Lengths at the edges of the interleaved chunks (3 x 256 and 3 x 8192
 * bytes) and sums of them, at every offset modulo 8. */
static void test_chunk_edges(void **state)
{
    (void)state;
    enum { MAXLEN = 3 * 3 * 8192 + 3 * 256 + 64 };
    static const size_t bases[] = {3 * 256, 2 * 3 * 256, 3 * 8192, 2 * 3 * 8192,
                                   3 * 8192 + 3 * 256, 3 * 8192 + 7 * 256};
    uint8_t *buf = track(malloc(MAXLEN + 8));

    fill_random(buf, MAXLEN + 8);
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
        for (long d = -9; d <= 9; d++)
            for (size_t off = 0; off < 8; off += 3) {
                size_t len = (size_t)((long)bases[i] + d);
                uint32_t seed = (uint32_t)(i * 77 + off);
                uint32_t got = crc_fn(seed, buf + off, len);
                uint32_t want = ref_crc32c(seed, buf + off, len);
                if (got != want)
                    fail_msg("len %zu off %zu: 0x%08x, reference 0x%08x", len, off, got, want);
            }
}

static void test_large_buffer(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    uint8_t *buf = track(malloc(N));

    fill_random(buf, N);
    uint32_t whole = crc_fn(0, buf, N);
    assert_int_equal(whole, ref_crc32c(0, buf, N));
    /* In uneven chunks, as a receiver would see a payload. */
    uint32_t c = 0;
    size_t done = 0;
    while (done < N) {
        size_t n = 1 + (size_t)(rnd() % 70000);
        if (n > N - done)
            n = N - done;
        c = crc_fn(c, buf + done, n);
        done += n;
    }
    assert_int_equal(c, whole);
    /* A single flipped bit changes the CRC. */
    buf[N / 2] ^= 0x10;
    assert_int_not_equal(crc_fn(0, buf, N), whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_self_check),
        cmocka_unit_test(test_check_value),
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_zero_length_keeps_crc),
        cmocka_unit_test_teardown(test_incremental_all_splits, teardown),
        cmocka_unit_test_teardown(test_unaligned, teardown),
        cmocka_unit_test_teardown(test_against_reference_random, teardown),
        cmocka_unit_test_teardown(test_chunk_edges, teardown),
        cmocka_unit_test_teardown(test_large_buffer, teardown),
    };
    int failed = cmocka_run_group_tests_name("crc32c (as dispatched)", tests, use_dispatch, NULL);

    failed += cmocka_run_group_tests_name("crc32c_sw (table)", tests, use_sw, NULL);
#if defined(__x86_64__)
    /* Every x86-64 CPU this project runs on has SSE4.2; one without it
     * would make the dispatched path the table, tested above. */
    if (!__builtin_cpu_supports("sse4.2")) {
        printf("no SSE4.2 on this CPU: crc32c_hw cannot run here\n");
        return failed;
    }
    if (!crc32c_hw_available()) {
        printf("the CPU has SSE4.2 but crc32c() did not select the hardware path\n");
        return failed + 1;
    }
    failed += cmocka_run_group_tests_name("crc32c_hw (SSE4.2)", tests, use_hw, NULL);
#endif
    return failed;
}
