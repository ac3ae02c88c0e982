/* Unit tests for strict option values (common/opt.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/opt.h"

static void test_u64_whole(void **state)
{
    uint64_t v = 7;

    (void)state;
    assert_int_equal(bs_parse_u64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bs_parse_u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(bs_parse_u64("0x10", &v), 0);
    assert_int_equal(v, 16);
    /* One past the largest value overflows; it never wraps. */
    assert_int_equal(bs_parse_u64("18446744073709551616", &v), -ERANGE);
    assert_int_equal(bs_parse_u64("0x10000000000000000", &v), -ERANGE);
    /* Nothing but digits: no sign, no space, no junk, no empty string. */
    v = 7;
    static const char *const bad[] = { "", " 1", "1 ", "+1", "-1", "1x", "abc", "0x", "1.5", "1e3" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bs_parse_u64(bad[i], &v), -EINVAL);
        assert_int_equal(v, 7); /* untouched on failure */
    }
    assert_int_equal(bs_parse_u64(NULL, &v), -EINVAL);
}

static void test_size_units(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        { "4096", 4096 },       { "64K", 65536 },          { "64k", 65536 },
        { "64KiB", 65536 },     { "1M", 1 << 20 },         { "1mib", 1 << 20 },
        { "2G", 2ull << 30 },   { "1T", 1ull << 40 },      { "1P", 1ull << 50 },
        { "512B", 512 },        { "0x1000", 4096 },
    };
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(bs_parse_size(ok[i].s, &v), 0);
        assert_true(v == ok[i].v);
    }
    static const char *const bad[] = { "", "K", "64KB", "64 K", "1.5G", "-1G", "1X", "1Gi" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bs_parse_size(bad[i], &v), -EINVAL);
    /* 16384P is 2^64: overflow, not zero. */
    assert_int_equal(bs_parse_size("16384P", &v), -ERANGE);
    assert_int_equal(bs_parse_size("16383P", &v), 0);
}

static void test_duration_units(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(bs_parse_duration_ms("100", 1, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(bs_parse_duration_ms("10", 1000, &v), 0); /* a count of seconds */
    assert_int_equal(v, 10000);
    assert_int_equal(bs_parse_duration_ms("100ms", 1000, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(bs_parse_duration_ms("5s", 1, &v), 0);
    assert_int_equal(v, 5000);
    assert_int_equal(bs_parse_duration_ms("2m", 1, &v), 0);
    assert_int_equal(v, 120000);
    assert_int_equal(bs_parse_duration_ms("2min", 1, &v), 0);
    assert_int_equal(v, 120000);
    assert_int_equal(bs_parse_duration_ms("1h", 1, &v), 0);
    assert_int_equal(v, 3600000);
    static const char *const bad[] = { "", "abc", "5 s", "5S", "1.5s", "-1s", "5sec", "ms" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bs_parse_duration_ms(bad[i], 1, &v), -EINVAL);
    assert_int_equal(bs_parse_duration_ms("18446744073709551615s", 1, &v), -ERANGE);
}

static void test_hostport(void **state)
{
    char host[BS_HOST_MAX];
    uint16_t port;

    (void)state;
    assert_int_equal(bs_parse_hostport("127.0.0.1:7789", host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7789);
    assert_int_equal(bs_parse_hostport("dr.example:1", host, &port), 0);
    assert_string_equal(host, "dr.example");
    assert_int_equal(port, 1);
    assert_int_equal(bs_parse_hostport("[::1]:65535", host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    static const char *const bad[] = {
        "127.0.0.1:99999", /* the port a loose parser truncated */
        "127.0.0.1:0",     "127.0.0.1:65536", "127.0.0.1:",  ":7789", "127.0.0.1",
        "127.0.0.1:77x",   "127.0.0.1:+77",   "127.0.0.1:0x50", "::1:7789", "[::1]7789",
        "[::1:7789",       "[]:7789",         "[host]:7789", "a b:7789", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bs_parse_hostport(bad[i], host, &port) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    }
    char longname[BS_HOST_MAX + 8];
    memset(longname, 'a', BS_HOST_MAX);
    strcpy(longname + BS_HOST_MAX, ":80");
    assert_int_equal(bs_parse_hostport(longname, host, &port), -EINVAL);
}

static void test_checked_forms(void **state)
{
    uint64_t v = 1;

    (void)state;
    /* In range passes; out of range is refused, never clamped. */
    assert_int_equal(bs_opt_size("--max-payload", "64K", 4096, 8 << 20, &v), 0);
    assert_int_equal(v, 65536);
    v = 1;
    assert_int_equal(bs_opt_size("--max-payload", "16M", 4096, 8 << 20, &v), -EINVAL);
    assert_int_equal(v, 1);
    assert_int_equal(bs_opt_duration_ms("--heartbeat-timeout", "1", 1000, 2000, 3600000, &v),
                     -EINVAL);
    assert_int_equal(bs_opt_duration_ms("--heartbeat-timeout", "2", 1000, 2000, 3600000, &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(bs_opt_u64("--n", "11", 1, 10, &v), -EINVAL);
    assert_int_equal(bs_opt_nonempty("--peer-name", ""), -EINVAL);
    assert_int_equal(bs_opt_nonempty("--peer-name", "x"), 0);
    assert_int_equal(bs_opt_hostport("--listen", "127.0.0.1:99999"), -EINVAL);

    const struct bs_opt_required req[] = {
        { "--a", "x", false },
        { "--crl", NULL, true },
    };
    assert_int_equal(bs_opt_check_required(req, 2), 0);
    const struct bs_opt_required missing[] = { { "--a", NULL, false } };
    assert_int_equal(bs_opt_check_required(missing, 1), -EINVAL);
    const struct bs_opt_required empty_optional[] = { { "--crl", "", true } };
    assert_int_equal(bs_opt_check_required(empty_optional, 1), -EINVAL);
}

static void test_resource_name(void **state)
{
    char out[64];

    (void)state;
    bs_resource_name("vm-1", "/var/lib/blkship/x", out, sizeof(out));
    assert_string_equal(out, "vm-1");
    bs_resource_name(NULL, "/var/lib/blkship/vm1", out, sizeof(out));
    assert_string_equal(out, "vm1");
    bs_resource_name(NULL, "/var/lib/blkship/vm1//", out, sizeof(out));
    assert_string_equal(out, "vm1");
    bs_resource_name(NULL, "state", out, sizeof(out));
    assert_string_equal(out, "state");
    bs_resource_name(NULL, "/", out, sizeof(out));
    assert_string_equal(out, "disk");
    bs_resource_name(NULL, "", out, sizeof(out));
    assert_string_equal(out, "disk");
}

static void test_peer_timing(void **state)
{
    unsigned v = 0;

    (void)state;
    assert_int_equal(bs_opt_heartbeat_ms("--heartbeat-ms", "100", &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(bs_opt_heartbeat_ms("--heartbeat-ms", "1s", &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(bs_opt_heartbeat_ms("--heartbeat-ms", "99ms", &v), -EINVAL);
    assert_int_equal(bs_opt_heartbeat_ms("--heartbeat-ms", "61s", &v), -EINVAL);
    /* The new name counts bare numbers in milliseconds, the old in seconds. */
    assert_int_equal(bs_opt_peer_timeout_ms("--peer-timeout-ms", "500", 1, &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(bs_opt_peer_timeout_ms("--peer-timeout-ms", "3", 1, &v), -EINVAL);
    assert_int_equal(bs_opt_peer_timeout_ms("--heartbeat-timeout", "3", 1000, &v), 0);
    assert_int_equal(v, 3000);
    assert_int_equal(bs_opt_peer_timeout_ms("--heartbeat-timeout", "400ms", 1000, &v), -EINVAL);
    assert_int_equal(bs_opt_peer_timeout_ms("--peer-timeout-ms", "2h", 1, &v), -EINVAL);
    assert_int_equal(bs_opt_check_peer_timing(1000, 2000), 0);
    assert_int_equal(bs_opt_check_peer_timing(1000, 1999), -EINVAL);
    assert_int_equal(bs_opt_check_peer_timing(100, 500), 0);
    assert_int_equal(BS_HEARTBEAT_MS_DEFAULT, 1000);
    assert_int_equal(BS_PEER_TIMEOUT_MS_DEFAULT, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64_whole),     cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_duration_units), cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_checked_forms),  cmocka_unit_test(test_resource_name),
        cmocka_unit_test(test_peer_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
