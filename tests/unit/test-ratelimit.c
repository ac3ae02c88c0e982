/* common/ratelimit.c: the token bucket behind --rate-limit, on a clock the
 * test moves by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

#define MS 1000000ull

static void test_unlimited(void **state)
{
    struct bs_rate r;
    uint64_t w = 0;

    (void)state;
    bs_rate_init(&r, 0, 4096, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(bs_rate_take(&r, 1u << 30, 0, &w));
    assert_int_equal(r.waits, 0);
}

static void test_burst_then_wait(void **state)
{
    struct bs_rate r;
    uint64_t w = 0;

    (void)state;
    /* 1 MB/s: 50 ms of it is 50,000 bytes, below the 64 KiB frame. */
    bs_rate_init(&r, 1000000, 65536, 0);
    assert_int_equal(r.burst, 65536);
    assert_true(bs_rate_take(&r, 65536, 0, &w));
    assert_false(bs_rate_take(&r, 1000, 0, &w));
    assert_int_equal(w, 1); /* 1 ms of refill */
    assert_int_equal(r.waits, 1);
    /* 10 ms later: 10,000 bytes back. */
    assert_true(bs_rate_take(&r, 10000, 10 * MS, &w));
    assert_false(bs_rate_take(&r, 10000, 10 * MS, &w));
    /* A long pause fills the bucket to its burst, no more. */
    assert_true(bs_rate_take(&r, 65536, 10000 * MS, &w));
    assert_false(bs_rate_take(&r, 1, 10000 * MS, &w));
    /* A refund gives back what did not go. */
    bs_rate_refund(&r, 4096);
    assert_true(bs_rate_take(&r, 4096, 10000 * MS, &w));
    /* A larger burst from the rate: 20 MB/s holds 1 MB. */
    bs_rate_init(&r, 20000000, 65536, 0);
    assert_int_equal(r.burst, 1000000);
}

/* A sender that takes 512 KiB frames whenever it may, sleeping as told,
 * moves rate * T + burst over T: not more (within a frame), and less only
 * by the waits' rounding up to whole milliseconds (under 1 ms per frame,
 * 1.6% here). */
static void test_long_run_rate(void **state)
{
    const uint64_t rate = 8u << 20, frame = 512u << 10, T = 20000 * MS;
    struct bs_rate r;
    uint64_t now = 0, sent = 0, w = 0;

    (void)state;
    bs_rate_init(&r, rate, frame + 64, 0);
    while (now < T) {
        if (bs_rate_take(&r, frame, now, &w))
            sent += frame;
        else
            now += w * MS;
    }
    double expect = (double)rate * 20 + (double)r.burst;
    assert_true((double)sent <= expect + (double)frame);
    assert_true((double)sent >= 0.98 * expect);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_burst_then_wait),
        cmocka_unit_test(test_long_run_rate),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
