/* One logging path for all of blkship: levels, a per-module prefix, stderr
 * by default or a sink the host program installs (nbdkit's log in the
 * filter).  Logging never changes errno.
 */
#ifndef BLKSHIP_COMMON_LOG_H
#define BLKSHIP_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum bs_log_level {
    BS_LOG_ERR = 0,
    BS_LOG_WARN,
    BS_LOG_INFO,
    BS_LOG_DEBUG,
};

/* A sink receives one formatted line without a trailing newline. */
typedef void bs_log_sink_fn(enum bs_log_level level, const char *line, void *opaque);

/* Not thread-safe against concurrent logging: call at start-up. */
void bs_log_set_sink(bs_log_sink_fn *sink, void *opaque);
void bs_log_set_level(enum bs_log_level max_level);
/* Parses "err", "warn", "info" or "debug"; returns -EINVAL otherwise. */
int bs_log_parse_level(const char *s, enum bs_log_level *out);

void bs_log(enum bs_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bs_vlog(enum bs_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define BS_ERR(mod, ...) bs_log(BS_LOG_ERR, (mod), __VA_ARGS__)
#define BS_WARN(mod, ...) bs_log(BS_LOG_WARN, (mod), __VA_ARGS__)
#define BS_INFO(mod, ...) bs_log(BS_LOG_INFO, (mod), __VA_ARGS__)
#define BS_DEBUG(mod, ...) bs_log(BS_LOG_DEBUG, (mod), __VA_ARGS__)

/* Rate limit for messages on the I/O path: at most `burst` messages per
 * `interval_ms`; the first message after a suppressed stretch reports how
 * many were dropped.  Uses the vDSO clock: no system call. */
struct bs_ratelimit {
    uint32_t interval_ms;
    uint32_t burst;
    uint64_t window_start_ms;
    uint32_t printed;
    uint32_t suppressed;
};
#define BS_RATELIMIT_INIT(ms, n) { .interval_ms = (ms), .burst = (n) }

/* Returns true when the caller may log; *suppressed gets the count of
 * messages dropped since the last one that was allowed.  Not thread-safe:
 * one limiter per thread or under the caller's lock. */
bool bs_ratelimit_ok(struct bs_ratelimit *rl, uint32_t *suppressed);

#endif
