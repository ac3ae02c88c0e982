/* The dirty log of one disk: which grains were written and not yet handed
 * to the log client.  Three maps: two "live" ones, marked by the I/O path
 * (one per parity of the write gate, wl_gate.h: a write marks the map of
 * the gate value it entered under), and "pending", the sealed epoch the
 * client is fetching in export-area sized chunks.  A grain leaves the log only when the client has acknowledged
 * the chunk that carried it (or, for the historical getw, when exported).
 *
 * wl_log_mark() may be called from any thread, concurrently, and never
 * allocates, locks or makes a system call.  Every other function belongs
 * to the control thread: one caller at a time.
 */
#ifndef BLKSHIP_WRITELOG_WLOG_H
#define BLKSHIP_WRITELOG_WLOG_H

#include <stdint.h>

#include "proto/writelog.h"

struct wl_log;

/* Largest leaf bitmap the automatic granularity allows: 64 MiB, i.e. a
 * 2 TiB disk at 4 KiB per bit.  Larger disks get a coarser grain. */
#define WL_LOG_MAX_AUTO_BITMAP (64ull << 20)
#define WL_LOG_DEFAULT_GRAIN 8u /* sectors: 4 KiB */

/* The grain used for a disk when none is asked for: 4 KiB, doubled until
 * the leaf bitmap fits WL_LOG_MAX_AUTO_BITMAP. */
uint32_t wl_log_auto_grain(uint64_t disk_sectors);

/* grain_sectors: a power of two, or 0 for wl_log_auto_grain().
 * Returns 0 or -errno (-EINVAL for a bad grain or an empty disk). */
int wl_log_create(uint64_t disk_sectors, uint32_t grain_sectors, struct wl_log **out);
void wl_log_destroy(struct wl_log *log);

uint64_t wl_log_disk_sectors(const struct wl_log *log);
uint32_t wl_log_grain(const struct wl_log *log);
uint64_t wl_log_epoch(const struct wl_log *log);
uint64_t wl_log_mem_bytes(const struct wl_log *log);

/* Any thread.  Marks sectors [sector, sector + count) dirty in live map
 * `parity` (0 or 1), rounded out to whole grains and clipped to the disk. */
void wl_log_mark_in(struct wl_log *log, unsigned parity, uint64_t sector, uint64_t count);
/* Any thread.  wl_log_mark_in() of live map 0, for callers without a gate. */
void wl_log_mark(struct wl_log *log, uint64_t sector, uint64_t count);
/* Control thread.  Marks the sectors in live map `parity` as
 * wl_log_mark_in() does and returns how many grains were not marked in
 * that map before (the "adds" command). */
uint64_t wl_log_add(struct wl_log *log, unsigned parity, uint64_t sector, uint64_t count);
/* Control thread.  Calls fn for each run [first, first + n) of pending
 * grains, in ascending order. */
void wl_log_pending_runs(const struct wl_log *log,
                         void (*fn)(void *ctx, uint64_t first, uint64_t n), void *ctx);

/* The result of one export into the area. */
struct wl_export_result {
    uint32_t extents;        /* entries written before the terminator */
    int more;                /* 1 when dirty grains remain past this chunk */
};

/* peek: exports the first chunk of everything not yet acknowledged (live
 * and pending), changing nothing. */
struct wl_export_result wl_log_peek(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots);
/* seal: starts a new epoch: moves both live maps into pending
 * (unacknowledged grains of earlier epochs stay pending) and exports its
 * first chunk.  The caller has drained the writes of the epoch (wl_gate). 
 * Nothing leaves the log until wl_log_next() acknowledges the chunk. */
struct wl_export_result wl_log_seal(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots);
/* next: acknowledges the chunk exported last (its grains leave the log)
 * and exports the following chunk of the sealed epoch. */
struct wl_export_result wl_log_next(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots);
/* getw, the historical command: seal and acknowledge the first chunk at
 * once.  What did not fit stays pending for wl_log_next(). */
struct wl_export_result wl_log_getw(struct wl_log *log, struct wl_disk_range *area,
                                    uint32_t slots);
/* clrw: forgets every dirty grain, live and pending. */
void wl_log_clear(struct wl_log *log);

uint64_t wl_log_live_grains(const struct wl_log *log);
uint64_t wl_log_pending_grains(const struct wl_log *log);

#endif
