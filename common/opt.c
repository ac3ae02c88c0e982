/* Strict option values (see opt.h). */
#include "common/opt.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

/* Reads the digits at *s into *out, advancing *s.  Decimal, or hex after
 * 0x.  Fails on no digits and on overflow. */
static int take_number(const char **s, uint64_t *out)
{
    const char *p = *s;
    unsigned base = 10;
    uint64_t v = 0;
    bool any = false;

    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
        base = 16;
        p += 2;
    }
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && isxdigit((unsigned char)*p))
            d = (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / base)
            return -ERANGE;
        v = v * base + d;
        any = true;
    }
    if (!any)
        return -EINVAL;
    *s = p;
    *out = v;
    return 0;
}

static int scale(uint64_t v, uint64_t mult, uint64_t *out)
{
    if (mult && v > UINT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

int bs_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    r = take_number(&s, &v);
    if (r < 0)
        return r;
    if (*s)
        return -EINVAL;
    *out = v;
    return 0;
}

int bs_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {
        { "", 0 },    { "b", 0 },    { "k", 10 },   { "kib", 10 }, { "m", 20 },
        { "mib", 20 }, { "g", 30 },  { "gib", 30 }, { "t", 40 },   { "tib", 40 },
        { "p", 50 },  { "pib", 50 },
    };
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    r = take_number(&s, &v);
    if (r < 0)
        return r;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(s, units[i].unit) == 0)
            return scale(v, UINT64_C(1) << units[i].shift, out);
    return -EINVAL;
}

int bs_parse_duration_ms(const char *s, uint64_t bare_unit_ms, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "min", 60000 }, { "h", 3600000 },
    };
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    r = take_number(&s, &v);
    if (r < 0)
        return r;
    if (*s == '\0')
        return scale(v, bare_unit_ms, out);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(s, units[i].unit) == 0)
            return scale(v, units[i].ms, out);
    return -EINVAL;
}

int bs_parse_hostport(const char *s, char host[BS_HOST_MAX], uint16_t *port)
{
    const char *colon, *h = s;
    size_t hlen;
    uint64_t p;

    if (!s)
        return -EINVAL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
        if (memchr(h, ':', hlen) == NULL)
            return -EINVAL; /* brackets are for IPv6 addresses */
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return -EINVAL; /* an IPv6 address needs brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= BS_HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (!isgraph((unsigned char)h[i]))
            return -EINVAL;
    /* The port: decimal only, 1-65535. */
    for (const char *d = colon + 1; *d; d++)
        if (!isdigit((unsigned char)*d))
            return -EINVAL;
    if (bs_parse_u64(colon + 1, &p) < 0 || p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* ---- Checked forms ---------------------------------------------------------- */

void bs_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", program_invocation_short_name);
}

/* Writes bytes with the largest binary unit that divides them: "8M". */
static void fmt_size(uint64_t v, char *buf, size_t size)
{
    static const char units[] = "KMGTP";
    int u = -1;
    uint64_t x = v;

    while (x && x % 1024 == 0 && u < 4) {
        x /= 1024;
        u++;
    }
    if (u >= 0)
        snprintf(buf, size, "%" PRIu64 "%c", x, units[u]);
    else
        snprintf(buf, size, "%" PRIu64, v);
}

static void fmt_ms(uint64_t v, char *buf, size_t size)
{
    if (v && v % 3600000 == 0)
        snprintf(buf, size, "%" PRIu64 "h", v / 3600000);
    else if (v && v % 60000 == 0)
        snprintf(buf, size, "%" PRIu64 "m", v / 60000);
    else if (v && v % 1000 == 0)
        snprintf(buf, size, "%" PRIu64 "s", v / 1000);
    else
        snprintf(buf, size, "%" PRIu64 "ms", v);
}

int bs_opt_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;

    if (bs_parse_u64(s, &v) < 0) {
        bs_usage_error("%s '%s': not a whole number", opt, s);
        return -EINVAL;
    }
    if (v < min || v > max) {
        bs_usage_error("%s %s: out of range (%" PRIu64 " to %" PRIu64 ")", opt, s, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int bs_opt_size(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char lo[48], hi[48];
    uint64_t v;

    if (bs_parse_size(s, &v) < 0) {
        bs_usage_error("%s '%s': not a size (bytes, or with a unit: 64K, 1M, 2G)", opt, s);
        return -EINVAL;
    }
    if (v < min || v > max) {
        fmt_size(min, lo, sizeof(lo));
        fmt_size(max, hi, sizeof(hi));
        bs_usage_error("%s %s: out of range (%s to %s bytes)", opt, s, lo, hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int bs_opt_duration_ms(const char *opt, const char *s, uint64_t bare_unit_ms, uint64_t min_ms,
                       uint64_t max_ms, uint64_t *out)
{
    char lo[32], hi[32];
    uint64_t v;

    if (bs_parse_duration_ms(s, bare_unit_ms, &v) < 0) {
        bs_usage_error("%s '%s': not a duration (a number%s, or with a unit: 100ms, 5s, 2m)",
                       opt, s, bare_unit_ms == 1000 ? " of seconds" : " of milliseconds");
        return -EINVAL;
    }
    if (v < min_ms || v > max_ms) {
        fmt_ms(min_ms, lo, sizeof(lo));
        fmt_ms(max_ms, hi, sizeof(hi));
        bs_usage_error("%s %s: out of range (%s to %s)", opt, s, lo, hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int bs_opt_hostport(const char *opt, const char *s)
{
    char host[BS_HOST_MAX];
    uint16_t port;

    if (bs_parse_hostport(s, host, &port) < 0) {
        bs_usage_error("%s '%s': not HOST:PORT or [IPv6]:PORT with a port from 1 to 65535", opt,
                       s);
        return -EINVAL;
    }
    return 0;
}

int bs_opt_nonempty(const char *opt, const char *s)
{
    if (!s || !*s) {
        bs_usage_error("%s is empty (an unset variable in a unit or configuration file?)", opt);
        return -EINVAL;
    }
    return 0;
}

void bs_opt_missing(const char *opt)
{
    bs_usage_error("%s is required", opt);
}

int bs_opt_check_required(const struct bs_opt_required *req, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!req[i].val) {
            if (req[i].optional)
                continue;
            bs_opt_missing(req[i].opt);
            return -EINVAL;
        }
        if (bs_opt_nonempty(req[i].opt, req[i].val) < 0)
            return -EINVAL;
    }
    return 0;
}

int bs_opt_log_level(const char *opt, const char *s)
{
    enum bs_log_level level;

    if (bs_log_parse_level(s, &level) < 0) {
        bs_usage_error("%s '%s': not err, warn, info or debug", opt, s);
        return -EINVAL;
    }
    bs_log_set_level(level);
    return 0;
}

int bs_opt_no_arguments(int first, int argc, char **argv)
{
    if (first < argc) {
        bs_usage_error("unexpected argument '%s'", argv[first]);
        return -EINVAL;
    }
    return 0;
}

void bs_resource_name(const char *name, const char *state_dir, char *out, size_t size)
{
    size_t len;
    const char *base;

    if (name) {
        snprintf(out, size, "%s", name);
        return;
    }
    len = strlen(state_dir);
    while (len > 1 && state_dir[len - 1] == '/')
        len--;
    base = state_dir + len;
    while (base > state_dir && base[-1] != '/')
        base--;
    len -= (size_t)(base - state_dir);
    if (len == 0 || (len == 1 && *base == '/'))
        snprintf(out, size, "disk");
    else
        snprintf(out, size, "%.*s", (int)len, base);
}

int bs_opt_heartbeat_ms(const char *opt, const char *s, unsigned *out)
{
    uint64_t v;

    if (bs_opt_duration_ms(opt, s, 1, 100, 60000, &v) < 0)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

int bs_opt_peer_timeout_ms(const char *opt, const char *s, uint64_t bare_unit_ms, unsigned *out)
{
    uint64_t v;

    if (bs_opt_duration_ms(opt, s, bare_unit_ms, 500, 3600000, &v) < 0)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

int bs_opt_check_peer_timing(unsigned heartbeat_ms, unsigned peer_timeout_ms)
{
    if (peer_timeout_ms >= 2 * heartbeat_ms)
        return 0;
    bs_usage_error("--peer-timeout-ms %u ms: must be at least twice --heartbeat-ms (%u ms)",
                   peer_timeout_ms, heartbeat_ms);
    return -EINVAL;
}
