/* Logging: formats a line with level and module and hands it to the sink. */
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bs_log_sink_fn *log_sink;
static void *log_sink_opaque;
static enum bs_log_level log_max = BS_LOG_INFO;

static const char *const level_names[] = {
    [BS_LOG_ERR] = "error",
    [BS_LOG_WARN] = "warning",
    [BS_LOG_INFO] = "info",
    [BS_LOG_DEBUG] = "debug",
};

void bs_log_set_sink(bs_log_sink_fn *sink, void *opaque)
{
    log_sink = sink;
    log_sink_opaque = opaque;
}

void bs_log_set_level(enum bs_log_level max_level)
{
    log_max = max_level;
}

int bs_log_parse_level(const char *s, enum bs_log_level *out)
{
    static const struct { const char *name; enum bs_log_level level; } names[] = {
        { "err", BS_LOG_ERR },   { "error", BS_LOG_ERR }, { "warn", BS_LOG_WARN },
        { "warning", BS_LOG_WARN }, { "info", BS_LOG_INFO }, { "debug", BS_LOG_DEBUG },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

/* systemd sets JOURNAL_STREAM when stderr is connected to the journal. */
static bool stderr_is_journal(void)
{
    static int cached = -1;

    if (cached < 0)
        cached = getenv("JOURNAL_STREAM") != NULL;
    return cached;
}

void bs_vlog(enum bs_log_level level, const char *module, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    char line[1024];
    int n;

    if (level > log_max)
        goto out;
    n = snprintf(line, sizeof(line), "%s: ", module);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (log_sink) {
        log_sink(level, line, log_sink_opaque);
    } else {
        /* systemd's journal reads the <N> prefix as the priority; without
         * it a terminal user gets a readable level word instead. */
        static const int syslog_prio[] = { 3, 4, 6, 7 };
        if (stderr_is_journal())
            fprintf(stderr, "<%d>%s\n", syslog_prio[level], line);
        else
            fprintf(stderr, "%s: %s\n", level_names[level], line);
    }
out:
    errno = saved_errno;
}

void bs_log(enum bs_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    bs_vlog(level, module, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool bs_ratelimit_ok(struct bs_ratelimit *rl, uint32_t *suppressed)
{
    uint64_t now = now_ms();

    if (now - rl->window_start_ms >= rl->interval_ms) {
        rl->window_start_ms = now;
        rl->printed = 0;
    }
    if (rl->printed >= rl->burst) {
        rl->suppressed++;
        return false;
    }
    rl->printed++;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}
