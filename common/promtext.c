/* The Prometheus text format (see promtext.h). */
#include "common/promtext.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 2, 3))) static void put(struct bs_prom *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->buf + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->size - b->len) {
        b->overflow = true;
        b->buf[b->len] = '\0';
        return;
    }
    b->len += (size_t)n;
}

void bs_prom_begin(struct bs_prom *b, char *buf, size_t size, const char *labels)
{
    *b = (struct bs_prom){ .buf = buf, .size = size, .labels = labels };
    if (size)
        buf[0] = '\0';
    else
        b->overflow = true;
}

void bs_prom_begin_agent(struct bs_prom *b, char *buf, size_t size, const char *resource,
                         const char *role)
{
    char res[300];

    if (!bs_prom_label_value(resource, res, sizeof(res)))
        snprintf(res, sizeof(res), "?");
    bs_prom_begin(b, buf, size, NULL);
    snprintf(b->agent_labels, sizeof(b->agent_labels), "resource=\"%s\",role=\"%s\"", res,
             role);
    b->labels = b->agent_labels;
    bs_prom_gauge(b, "blkship_up", "1 while the agent runs (its version in blkship_build_info)", 1);
    bs_prom_head_info(b, "blkship_build_info", "the agent's version", "version", BLKSHIP_VERSION);
}

static void head(struct bs_prom *b, const char *name, const char *help, const char *type)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void bs_prom_gauge(struct bs_prom *b, const char *name, const char *help, double value)
{
    head(b, name, help, "gauge");
    if (isfinite(value))
        put(b, "%s{%s} %.17g\n", name, b->labels, value);
    else
        put(b, "%s{%s} NaN\n", name, b->labels);
}

void bs_prom_counter(struct bs_prom *b, const char *name, const char *help, uint64_t value)
{
    head(b, name, help, "counter");
    put(b, "%s{%s} %" PRIu64 "\n", name, b->labels, value);
}

void bs_prom_head_info(struct bs_prom *b, const char *name, const char *help, const char *label,
                       const char *value_of_label)
{
    head(b, name, help, "gauge");
    put(b, "%s{%s,%s=\"%s\"} 1\n", name, b->labels, label, value_of_label);
}

void bs_prom_counter_head(struct bs_prom *b, const char *name, const char *help)
{
    head(b, name, help, "counter");
}

void bs_prom_counter_sample(struct bs_prom *b, const char *name, const char *label,
                            const char *value_of_label, uint64_t value)
{
    put(b, "%s{%s,%s=\"%s\"} %" PRIu64 "\n", name, b->labels, label, value_of_label, value);
}

bool bs_prom_label_value(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in; in++) {
        const char *rep = *in == '\\' ? "\\\\" : *in == '"' ? "\\\"" : *in == '\n' ? "\\n" : NULL;
        size_t need = rep ? 2 : 1;
        if (o + need >= size)
            return false;
        if (rep) {
            out[o++] = rep[0];
            out[o++] = rep[1];
        } else {
            out[o++] = *in;
        }
    }
    if (o >= size)
        return false;
    out[o] = '\0';
    return true;
}

long bs_prom_finish(struct bs_prom *b)
{
    return b->overflow ? -1 : (long)b->len;
}
