/* common/compress.c: what --compress sends and what the secondary takes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zstd.h>

#include "common/compress.h"

#define LEN (64 * 1024)

static uint8_t src[LEN], z[LEN + 1024], out[LEN + 512];

static void fill_random(uint8_t *b, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
}

static void test_parse(void **state)
{
    int level = 99;
    bool on = true;

    (void)state;
    assert_int_equal(bs_compress_parse("--compress", "none", &level, &on), 0);
    assert_false(on);
    assert_int_equal(bs_compress_parse("--compress", "zstd", &level, &on), 0);
    assert_true(on);
    assert_int_equal(level, BS_COMPRESS_LEVEL_DEFAULT);
    assert_int_equal(bs_compress_parse("--compress", "zstd:19", &level, &on), 0);
    assert_int_equal(level, 19);
    assert_int_equal(bs_compress_parse("--compress", "zstd:-7", &level, &on), 0);
    assert_int_equal(level, -7);
    static const char *bad[] = { "zstd:", "zstd:0", "zstd:20", "zstd:-8", "zstd:3x", "lz4",
                                 "ZSTD", "zstd3", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bs_compress_parse("--compress", bad[i], &level, &on), -1);
}

/* Compressible data round-trips; the counters add up. */
static void test_round_trip(void **state)
{
    struct bs_zcomp c;
    struct bs_zdec d;
    const char *why = NULL;
    size_t n;

    (void)state;
    fill_random(src, LEN / 2, 1);
    memset(src + LEN / 2, 0x5a, LEN / 2);
    assert_int_equal(bs_zcomp_init(&c, 3), 0);
    assert_int_equal(bs_zdec_init(&d), 0);
    assert_true(bs_zcomp_bound(LEN) <= sizeof(z));
    n = bs_zcomp_payload(&c, z, sizeof(z), src, LEN);
    assert_true(n > 0 && n < LEN * 3 / 4);
    assert_int_equal(c.compressed, 1);
    assert_int_equal(c.raw_bytes, LEN);
    assert_int_equal(c.wire_bytes, n);
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n, &why), LEN);
    assert_memory_equal(out, src, LEN);
    bs_zcomp_free(&c);
    bs_zdec_free(&d);
}

/* Random data is sent as it is, and the tries back off: after a miss
 * 1, 2, 4 ... payloads go without a try, up to BS_COMPRESS_BACKOFF_MAX;
 * a payload that pays resets it. */
static void test_backoff(void **state)
{
    struct bs_zcomp c;
    uint64_t tries = 0;

    (void)state;
    fill_random(src, LEN, 7);
    assert_int_equal(bs_zcomp_init(&c, 1), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bs_zcomp_payload(&c, z, sizeof(z), src, LEN), 0);
    tries = c.not_paid;
    assert_int_equal(c.not_paid + c.skipped, 1000);
    assert_int_equal(c.raw_bytes, 1000ull * LEN);
    assert_int_equal(c.wire_bytes, 1000ull * LEN);
    /* 1 + 1, 2, 4, 8, 16, 32, 64 then one try in 65: about 21 tries. */
    assert_true(tries >= 15 && tries <= 25);
    /* Compressible again: the first try after the skip pays, and the next
     * payload is tried at once. */
    memset(src, 0, LEN);
    while (c.skip)
        assert_int_equal(bs_zcomp_payload(&c, z, sizeof(z), src, LEN), 0);
    assert_true(bs_zcomp_payload(&c, z, sizeof(z), src, LEN) > 0);
    assert_true(bs_zcomp_payload(&c, z, sizeof(z), src, LEN) > 0);
    assert_int_equal(c.compressed, 2);
    bs_zcomp_free(&c);
}

/* The secondary takes exactly one frame that names its size, whole units,
 * at most cap. */
static void test_decompress_refuses(void **state)
{
    struct bs_zdec d;
    const char *why;
    size_t n;
    ZSTD_CCtx *cc = ZSTD_createCCtx();

    (void)state;
    memset(src, 0x11, LEN);
    assert_int_equal(bs_zdec_init(&d), 0);
    /* A skippable frame (and anything else not starting with zstd's magic),
     * which the library would skip over. */
    static const uint8_t skippable[12] = { 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4 };
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, skippable, sizeof(skippable), &why),
                     -EPROTO);
    assert_string_equal(why, "compressed payload is not a zstd frame");
    /* Not zstd. */
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, src, 64, &why), -EPROTO);
    assert_non_null(why);
    /* 1000 bytes: not whole sectors. */
    n = ZSTD_compress(z, sizeof(z), src, 1000, 3);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n, &why), -EPROTO);
    assert_non_null(why);
    /* Over the cap. */
    n = ZSTD_compress(z, sizeof(z), src, LEN, 3);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN - 512, 512, z, n, &why), -EPROTO);
    assert_non_null(why);
    /* Bytes after the frame, and a frame cut short. */
    memset(z + n, 0, 8);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n + 8, &why), -EPROTO);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n - 1, &why), -EPROTO);
    assert_non_null(why);
    /* A frame that does not name its size. */
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_inBuffer in = { src, 4096, 0 };
    ZSTD_outBuffer o = { z, sizeof(z), 0 };
    assert_int_equal(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end), 0);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, o.pos, &why), -EPROTO);
    assert_string_equal(why, "compressed payload does not name its size");
    /* Empty content. */
    n = ZSTD_compress(z, sizeof(z), src, 0, 3);
    why = NULL;
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n, &why), -EPROTO);
    /* The control: the same frame is taken whole. */
    n = ZSTD_compress(z, sizeof(z), src, 4096, 3);
    assert_int_equal(bs_zdec_payload(&d, out, LEN, 512, z, n, &why), 4096);
    ZSTD_freeCCtx(cc);
    bs_zdec_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_decompress_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
