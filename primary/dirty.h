/* The primary's dirty state: what the replica lacks, in grains.
 *
 *   persisted  a file in the state directory, one bit per grain, mapped
 *              shared: the source of truth.  A bit is set here before the
 *              write log may forget it, and cleared only when the replica
 *              has said the data is durable.
 *   todo       in memory: dirty grains not being sent right now.
 *   inflight   in memory: grains read or sent in the epoch not yet
 *              committed (primary/epoch.c: one at a time).
 * Invariant: persisted == todo | inflight, word for word, after every
 * function returns.  All functions run on the agent's loop thread.
 */
#ifndef BLKSHIP_PRIMARY_DIRTY_H
#define BLKSHIP_PRIMARY_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

struct bs_dirty;

/* Opens (or creates) path for a disk of disk_sectors with grain sectors
 * per bit.  A missing file, or one made for another disk size or grain,
 * starts with every bit set: a full sync.  *fresh says whether that
 * happened.  Returns 0 or -errno. */
int bs_dirty_open(const char *path, uint64_t disk_sectors, uint32_t grain, bool *fresh,
                  struct bs_dirty **out);
void bs_dirty_close(struct bs_dirty *d);

uint32_t bs_dirty_grain(const struct bs_dirty *d);
uint64_t bs_dirty_ngrains(const struct bs_dirty *d);

/* Marks sectors [sector, sector + count) dirty (rounded out to grains). */
void bs_dirty_mark(struct bs_dirty *d, uint64_t sector, uint64_t count);
/* Marks the whole disk dirty. */
void bs_dirty_mark_all(struct bs_dirty *d);
/* Forgets every todo grain (none may be inflight): a checksum resync is
 * about to find every grain that differs, these included. */
void bs_dirty_clear_todo(struct bs_dirty *d);
/* Makes the persisted bits durable (msync).  May run on a thread of its
 * own while the owner goes on changing the map (one sync at a time):
 * what changed after it began stays to be synced by the next.  Returns 0
 * or -errno. */
int bs_dirty_sync(struct bs_dirty *d);

/* Takes the next run of todo grains at or after *cursor (wrapping once),
 * at most max_grains long (grains already inflight included: they are
 * sent again in the same epoch), moves it to inflight and returns true with
 * [*first, *first + *n). */
bool bs_dirty_take(struct bs_dirty *d, uint64_t *cursor, uint64_t max_grains, uint64_t *first,
                   uint64_t *n);
/* The replica has [first, first + n) durably: drop them from inflight
 * (a grain also todo stays dirty). */
void bs_dirty_acked(struct bs_dirty *d, uint64_t first, uint64_t n);
/* The epoch that carried every inflight grain is committed: they leave
 * inflight (a grain also todo stays dirty). */
void bs_dirty_acked_all(struct bs_dirty *d);
/* Read-only: the next run of todo grains at or after *pos, without
 * wrapping: true with [*first, *first + *n), *pos moved past it. */
bool bs_dirty_next_todo(const struct bs_dirty *d, uint64_t *pos, uint64_t *first, uint64_t *n);
/* Sending [first, first + n) failed or was abandoned: back to todo. */
void bs_dirty_requeue(struct bs_dirty *d, uint64_t first, uint64_t n);
/* Every inflight grain back to todo (the connection was lost). */
void bs_dirty_requeue_all(struct bs_dirty *d);

/* Whether any grain of sectors [sector, sector + count) is dirty (todo or
 * inflight). */
bool bs_dirty_any(const struct bs_dirty *d, uint64_t sector, uint64_t count);
uint64_t bs_dirty_todo_grains(const struct bs_dirty *d);
uint64_t bs_dirty_inflight_grains(const struct bs_dirty *d);

#endif
