/* The agents' Prometheus endpoint (--metrics HOST:PORT): an HTTP server
 * (libmicrohttpd) on a thread of its own, so that a scrape, a slow client
 * or a flood of connections never runs on, or waits for, the replication
 * loop.  The loop publishes a snapshot of the metrics text once a tick;
 * GET /metrics answers the latest one.  Anything else is 404 (or 405 for a
 * method other than GET and HEAD). */
#ifndef BLKSHIP_COMMON_METRICS_H
#define BLKSHIP_COMMON_METRICS_H

#include <stddef.h>

#define BS_METRICS_MAX (64 * 1024)

struct bs_metrics;

/* Listens on hostport and starts the server thread.  Returns 0, or -errno
 * after logging why (an address in use, a bad address). */
int bs_metrics_start(const char *hostport, struct bs_metrics **out);
/* Replaces the snapshot with text[0..len) (copied; len <= BS_METRICS_MAX). */
void bs_metrics_publish(struct bs_metrics *m, const char *text, size_t len);
struct bs_prom;
/* Publishes a finished builder's text; one that overflowed is logged and
 * the previous snapshot kept. */
void bs_metrics_publish_prom(struct bs_metrics *m, struct bs_prom *b);
/* Stops the thread and closes the socket; NULL is ignored. */
void bs_metrics_stop(struct bs_metrics *m);

#endif
