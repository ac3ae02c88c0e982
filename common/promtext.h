/* Prometheus text exposition format (version 0.0.4): a builder for one
 * scrape's worth of metrics.  Each metric is written once, with its HELP
 * and TYPE lines, under the name given; names follow the conventions
 * (`_total` for counters, units `_bytes`, `_seconds`).  The text is cut
 * short (and bs_prom_finish fails) rather than overflowing the buffer. */
#ifndef BLKSHIP_COMMON_PROMTEXT_H
#define BLKSHIP_COMMON_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bs_prom {
    char *buf;
    size_t size, len;
    bool overflow;
    const char *labels;     /* "resource=\"vm1\",role=\"primary\"": on every sample */
    char agent_labels[600];
};

/* labels: the constant labels, already escaped (bs_prom_label_value). */
void bs_prom_begin(struct bs_prom *b, char *buf, size_t size, const char *labels);
/* An agent's scrape: the labels resource (escaped here) and role on every
 * sample, then blkship_up and blkship_build_info. */
void bs_prom_begin_agent(struct bs_prom *b, char *buf, size_t size, const char *resource,
                         const char *role);
void bs_prom_gauge(struct bs_prom *b, const char *name, const char *help, double value);
void bs_prom_counter(struct bs_prom *b, const char *name, const char *help, uint64_t value);
/* An info metric: gauge 1 with one more label (a version). */
void bs_prom_head_info(struct bs_prom *b, const char *name, const char *help, const char *label,
                       const char *value_of_label);
/* A counter with one more label, several samples: call _head once, then
 * _sample for each value of the label. */
void bs_prom_counter_head(struct bs_prom *b, const char *name, const char *help);
void bs_prom_counter_sample(struct bs_prom *b, const char *name, const char *label,
                            const char *value_of_label, uint64_t value);
/* Escapes a label value (\\, \", \n) into out; false if it does not fit. */
bool bs_prom_label_value(const char *in, char *out, size_t size);
/* The length of the text, or -1 if it did not fit. */
long bs_prom_finish(struct bs_prom *b);

#endif
