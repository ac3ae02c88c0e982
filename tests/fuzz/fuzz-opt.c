/* libFuzzer harness for the option values every program parses
 * (common/opt.c): whole numbers, sizes with units, durations with units,
 * HOST:PORT.  The input is one option value: its bytes up to the first NUL
 * (a command line cannot carry a NUL), at most 255 of them.
 *
 * Properties, beyond "no crash, no overread":
 *   - a decimal number that parses formats back to the same digits, less
 *     leading zeros; every accepted number is made of digits (after 0x);
 *   - a size without a unit is the same number; a size with a unit is the
 *     number times a power of 1024, never wrapped;
 *   - a bare duration is the number times the bare unit; s/ms agree;
 *   - an accepted HOST:PORT has a port of 1-65535 and a non-empty host
 *     without spaces, and writing it back (brackets for IPv6) parses to
 *     the same host and port.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/opt.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_u64(const char *s)
{
    uint64_t v;
    char back[32];
    const char *digits = s;

    if (bs_parse_u64(s, &v) < 0)
        return;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (const char *p = s + 2; *p; p++)
            FUZZ_CHECK(isxdigit((unsigned char)*p));
        return;
    }
    for (const char *p = s; *p; p++)
        FUZZ_CHECK(isdigit((unsigned char)*p));
    while (digits[0] == '0' && digits[1])
        digits++;
    snprintf(back, sizeof(back), "%" PRIu64, v);
    FUZZ_CHECK(strcmp(back, digits) == 0);
}

static void check_size(const char *s)
{
    uint64_t v, n;

    if (bs_parse_size(s, &v) < 0)
        return;
    if (bs_parse_u64(s, &n) == 0) {
        FUZZ_CHECK(v == n); /* no unit: bytes */
        return;
    }
    /* A unit: v is the leading number times 2^(10k), exactly. */
    size_t len = strlen(s);
    char *num = malloc(len + 1);
    FUZZ_CHECK(num);
    size_t i = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2])) {
        memcpy(num, s, 2);
        i = 2;
        while (isxdigit((unsigned char)s[i])) {
            num[i] = s[i];
            i++;
        }
    } else {
        while (isdigit((unsigned char)s[i])) {
            num[i] = s[i];
            i++;
        }
    }
    num[i] = '\0';
    FUZZ_CHECK(bs_parse_u64(num, &n) == 0);
    free(num);
    if (n == 0) {
        FUZZ_CHECK(v == 0);
        return;
    }
    FUZZ_CHECK(v % n == 0);
    uint64_t m = v / n;
    FUZZ_CHECK(m && (m & (m - 1)) == 0 && __builtin_ctzll(m) % 10 == 0);
}

static void check_duration(const char *s)
{
    uint64_t ms, sec, n;

    if (bs_parse_duration_ms(s, 1, &ms) < 0) {
        /* The bare unit only matters for bare numbers. */
        if (bs_parse_u64(s, &n) < 0)
            FUZZ_CHECK(bs_parse_duration_ms(s, 1000, &sec) < 0);
        return;
    }
    if (bs_parse_u64(s, &n) == 0) {
        FUZZ_CHECK(ms == n);
        int r = bs_parse_duration_ms(s, 1000, &sec);
        if (n <= UINT64_MAX / 1000)
            FUZZ_CHECK(r == 0 && sec == n * 1000);
        else
            FUZZ_CHECK(r == -ERANGE);
        return;
    }
    /* With a unit, the bare unit changes nothing. */
    FUZZ_CHECK(bs_parse_duration_ms(s, 1000, &sec) == 0 && sec == ms);
}

static void check_hostport(const char *s)
{
    char host[BS_HOST_MAX], host2[BS_HOST_MAX], back[BS_HOST_MAX + 16];
    uint16_t port, port2;

    if (bs_parse_hostport(s, host, &port) < 0)
        return;
    FUZZ_CHECK(port >= 1);
    FUZZ_CHECK(host[0] != '\0');
    for (const char *p = host; *p; p++)
        FUZZ_CHECK(isgraph((unsigned char)*p));
    snprintf(back, sizeof(back), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    FUZZ_CHECK(bs_parse_hostport(back, host2, &port2) == 0);
    FUZZ_CHECK(strcmp(host, host2) == 0 && port == port2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size < 255 ? size : 255;
    const uint8_t *nul = memchr(data, 0, n);
    char *s;

    if (nul)
        n = (size_t)(nul - data);
    /* Exactly n + 1 bytes, so that ASan sees a read past the value. */
    s = malloc(n + 1);
    FUZZ_CHECK(s);
    memcpy(s, data, n);
    s[n] = '\0';
    check_u64(s);
    check_size(s);
    check_duration(s);
    check_hostport(s);
    free(s);
    return 0;
}
