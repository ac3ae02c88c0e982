/* Copy-before-write for sealed epochs (docs/epochs.md, section 2.2): the
 * preserved contents of grains that were overwritten after a seal, before
 * the client read them, so that ring reads ship the disk as it was at the
 * seal.
 *
 * Memory is a pool of grain-sized buffers allocated at creation and never
 * grown: no allocation happens after wl_cow_create.  When the pool is
 * empty a write waits (bounded) for ring reads to return buffers; if none
 * does in time the epoch is broken: every copy is dropped, and until the
 * next wl_cow_open writes go on without copies (their epoch cannot be
 * committed; the caller tells the client).
 *
 * Every function is thread-safe.  wl_cow_preserve blocks (it reads the
 * disk, and may wait for space or for another write's copy of the same
 * grain); wl_cow_overlay never waits for I/O.
 */
#ifndef BLKSHIP_WRITELOG_WL_COW_H
#define BLKSHIP_WRITELOG_WL_COW_H

#include <stdbool.h>
#include <stdint.h>

struct wl_cow;

/* Reads grain `grain`'s current contents (grain_bytes, zero-padded past the
 * disk's end) into buf.  Returns 0 or -errno. */
typedef int wl_cow_read_fn(void *ctx, uint64_t grain, void *buf);

/* The owner's record of which grains of the open epoch the client has not
 * read yet.  Both are called with the store's lock held, so that a read
 * being marked and a copy being made for the same grain are ordered: a
 * write after the mark needs no copy, a copy made before it is seen by
 * the read.  They must not call back into the store. */
struct wl_cow_unread_ops {
    bool (*unread)(void *ctx, uint64_t grain);
    void (*mark_read)(void *ctx, uint64_t grain);
};

struct wl_cow_stats {
    uint64_t bytes_now;     /* held by copies now */
    uint64_t bytes_peak;    /* most ever held at once */
    uint64_t preserved;     /* copies made */
    uint64_t waits;         /* writes that waited for space */
    uint64_t wait_ms;       /* total time they waited */
    uint64_t breaks;        /* epochs broken */
    uint64_t epoch;         /* the epoch copies are made for (0: none open) */
    bool broken;            /* that epoch is broken */
};

/* max_bytes / grain_bytes buffers (at least 1).  Returns 0 or -errno. */
int wl_cow_create(uint32_t grain_bytes, uint64_t max_bytes, const struct wl_cow_unread_ops *ops,
                  void *ctx, struct wl_cow **out);
void wl_cow_destroy(struct wl_cow *c);

/* Starts taking copies for `epoch` (drops any left from the previous
 * one, which must be fully read or abandoned). */
void wl_cow_open(struct wl_cow *c, uint64_t epoch);
/* Drops every copy and takes no more until the next open. */
void wl_cow_close(struct wl_cow *c);
/* Breaks the open epoch (a client that went away, a seal that could not
 * drain): as when the pool stays full. */
void wl_cow_break(struct wl_cow *c);

/* Before a write to `grain` (which the caller saw unread): makes sure the
 * epoch keeps its current contents: a copy made now with read(), or made
 * earlier (if another write is making it, waits for it), or none needed
 * because the client has read the grain meanwhile.  Waits at most wait_ms
 * for a free buffer.  Returns 0 when the write may go on; -ECANCELED when
 * no epoch is open or it is broken (now, or earlier): the write goes on,
 * the epoch has no image to keep. */
int wl_cow_preserve(struct wl_cow *c, uint64_t grain, wl_cow_read_fn *read, void *ctx,
                    uint32_t wait_ms);

/* After a ring read of grains [first, first + n) into buf: copies the
 * preserved contents of those grains over what was read, so that buf holds
 * the epoch's image, and with `done` marks the grains read (mark_read) and
 * returns their buffers to the pool.  len is the bytes of buf (the last
 * grain may be short at the disk's end).  Each grain of an epoch is read
 * once.  `epoch` is the epoch that was open when the read was dispatched:
 * when it is not the one open now, nothing is done.  Returns the number of
 * grains that came from copies. */
uint64_t wl_cow_overlay(struct wl_cow *c, uint64_t epoch, uint64_t first, uint64_t n, void *buf,
                        uint64_t len, bool done);
/* A ring read that covers only part of grain `grain`: copies bytes
 * [skip, skip + len) of its preserved contents to buf, if it has a copy in
 * `epoch` (the open one); never marks it read.  True when it copied. */
bool wl_cow_overlay_part(struct wl_cow *c, uint64_t epoch, uint64_t grain, uint32_t skip,
                         void *buf, uint32_t len);

void wl_cow_get_stats(struct wl_cow *c, struct wl_cow_stats *out);

#endif
