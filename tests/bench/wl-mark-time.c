/* wl-mark-time: the CPU cost of marking writes in the dirty log, without
 * nbdkit, the network or the disk, for writelog-bench.sh.
 *
 *   wl-mark-time DISK_BYTES BLOCK_BYTES WRITES THREADS
 *
 * Creates a log for a disk of DISK_BYTES (automatic grain, as the filter
 * does), then each of THREADS threads "writes" WRITES blocks of BLOCK_BYTES
 * at pseudo-random aligned offsets, calling wl_log_mark() twice per write
 * as the filter does (before and after the write).  Two passes:
 *   cold  on the empty log: each mark sets new bits (atomic OR, summary
 *         levels), with the cache misses of a large map;
 *   hot   the same offsets again: every bit is already set (loads only),
 *         the steady state of a disk rewriting the same blocks.
 * Prints one line of key=value pairs: nanoseconds per write (both marks),
 * per thread, wall time divided by the writes of one thread.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primary/writelog/wlog.h"

#define MAX_THREADS 64

struct worker {
    pthread_t th;
    struct wl_log *log;
    uint64_t seed;
    uint64_t writes;
    uint64_t blocks;        /* disk size in blocks */
    uint32_t block_sectors;
};

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t x = w->seed;

    for (uint64_t i = 0; i < w->writes; i++) {
        /* splitmix64: cheap next to a mark, and well spread. */
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        uint64_t sector = (z % w->blocks) * w->block_sectors;
        wl_log_mark(w->log, sector, w->block_sectors);
        wl_log_mark(w->log, sector, w->block_sectors);
    }
    return NULL;
}

/* Runs one pass with every thread; returns ns per write per thread. */
static double pass(struct worker *ws, unsigned n)
{
    double t0 = now_ns();

    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "wl-mark-time: pthread_create failed\n");
            exit(1);
        }
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(ws[i].th, NULL);
    return (now_ns() - t0) / (double)ws[0].writes;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    *out = strtoull(s, &end, 0);
    return *end || end == s || s[0] == '-' ? -1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t disk_bytes, block_bytes, writes, threads;
    struct worker ws[MAX_THREADS];
    struct wl_log *log;
    double cold, hot;
    int r;

    if (argc != 5 || parse_u64(argv[1], &disk_bytes) < 0 || parse_u64(argv[2], &block_bytes) < 0 ||
        parse_u64(argv[3], &writes) < 0 || parse_u64(argv[4], &threads) < 0 ||
        block_bytes == 0 || block_bytes % WL_SECTOR_SIZE || disk_bytes < block_bytes ||
        writes == 0 || threads == 0 || threads > MAX_THREADS) {
        fputs("Usage: wl-mark-time DISK_BYTES BLOCK_BYTES WRITES THREADS (1-64)\n", stderr);
        return 2;
    }
    r = wl_log_create(disk_bytes / WL_SECTOR_SIZE, 0, &log);
    if (r < 0) {
        fprintf(stderr, "wl-mark-time: wl_log_create: %s\n", strerror(-r));
        return 1;
    }
    for (unsigned i = 0; i < threads; i++) {
        ws[i] = (struct worker){
            .log = log,
            .seed = 0x5eed0000u + i,
            .writes = writes,
            .blocks = disk_bytes / block_bytes,
            .block_sectors = (uint32_t)(block_bytes / WL_SECTOR_SIZE),
        };
    }
    cold = pass(ws, (unsigned)threads);
    uint64_t live = wl_log_live_grains(log);
    hot = pass(ws, (unsigned)threads);
    if (wl_log_live_grains(log) != live || live == 0) {
        fprintf(stderr, "wl-mark-time: the hot pass changed the log (%" PRIu64 " -> %" PRIu64
                        " grains)\n",
                live, wl_log_live_grains(log));
        return 1;
    }
    printf("threads=%" PRIu64 " writes=%" PRIu64 " grain_bytes=%u live_grains=%" PRIu64
           " cold_ns=%.1f hot_ns=%.1f\n",
           threads, writes, wl_log_grain(log) * WL_SECTOR_SIZE, live, cold, hot);
    wl_log_destroy(log);
    return 0;
}
