/* Point-in-time epochs of the write log (docs/epochs.md, section 2): the
 * write gate, the unread map and the copy-before-write store, tied to the
 * dirty log.  The frontend's write path calls write_begin/write_end around
 * every change; the control thread seals; ring reads report what they
 * read.  Nothing here knows nbdkit or the control socket.
 *
 * An epoch sealed with wl_epoch_seal(..., WL_SEAL_COW) is "open" until the
 * next seal, a clear, or its break: until then the first write to a grain
 * the client has not read yet (the unread map) preserves the grain first,
 * and ring reads of it get the preserved copy.  An epoch is broken when a
 * copy cannot be kept (pool full past the wait, a failed read), when its
 * seal could not drain the writes in flight, or when the client goes away
 * with unread grains left; a broken epoch keeps every grain in the log.
 */
#ifndef BLKSHIP_WRITELOG_WL_EPOCH_H
#define BLKSHIP_WRITELOG_WL_EPOCH_H

#include <stdbool.h>
#include <stdint.h>

#include "primary/writelog/wlog.h"
#include "proto/writelog.h"

#define WL_EPOCH_DEFAULT_COW_MAX (64ull << 20)
#define WL_EPOCH_DEFAULT_COW_WAIT_MS 100u

struct wl_epoch_ops {
    /* Reads count sectors at sector (inside the disk) into buf, for a
     * copy: the disk as it is now, below the log.  Called on a writer's
     * thread, possibly by many writers at once.  Returns 0 or -errno. */
    int (*preserve_read)(void *opaque, void *buf, uint64_t sector, uint32_t count);
};

struct wl_epoch_config {
    struct wl_log *log;      /* borrowed; outlives the epoch object */
    uint64_t cow_max_bytes;  /* pool for copies; 0 disables copy-before-write */
    uint32_t cow_wait_ms;    /* longest a write waits, for a drain or for pool space */
    const struct wl_epoch_ops *ops; /* may be NULL when cow_max_bytes is 0 */
    void *opaque;
};

struct wl_epoch;

/* Returns 0 or -errno: -EINVAL when the pool cannot hold one grain (the
 * message is logged).  Allocates the whole pool now. */
int wl_epoch_create(const struct wl_epoch_config *cfg, struct wl_epoch **out);
/* No write or read may be in progress.  NULL is a no-op. */
void wl_epoch_destroy(struct wl_epoch *ep);

/* ---- Write path: any thread, concurrently ---------------------------------- */

/* Before a write (write, zero, trim) of sectors [sector, sector + count)
 * is passed on: enters the gate, marks the grains, preserves those the
 * open epoch still needs.  Waits at most cow_wait_ms in all, and only
 * while a seal is in progress or an epoch is open; otherwise a few atomic
 * operations and the mark.  Returns the token for wl_epoch_write_end. */
uint64_t wl_epoch_write_begin(struct wl_epoch *ep, uint64_t sector, uint64_t count);
/* After the write completed (or failed): marks the grains again and
 * leaves the gate.  Never blocks. */
void wl_epoch_write_end(struct wl_epoch *ep, uint64_t token, uint64_t sector, uint64_t count);

/* frze (docs/writelog-protocol.md): from now on wl_epoch_refuses is true.
 * A writer asks it after wl_epoch_write_begin has marked its sectors and
 * before it passes the write on; so every write that reaches the disk was
 * marked before the freeze, and the first seal after it exports them all.
 * Any thread. */
void wl_epoch_freeze(struct wl_epoch *ep);
/* Whether the write that just began must fail (it is counted if so). */
bool wl_epoch_refuses(struct wl_epoch *ep);
/* Whether frze happened, and how many writes were refused since. */
bool wl_epoch_frozen(struct wl_epoch *ep, uint64_t *refused);

/* ---- Ring reads: reader threads, concurrently -------------------------------- */

/* After a ring read of sectors [sector, sector + count) into buf, read
 * for epoch `tag` (wl_epoch_read_tag when the read was dispatched):
 * copies preserved contents over what was read, and takes the grains the
 * read covered wholly (up to the disk's end) out of the unread map. */
void wl_epoch_read_done(struct wl_epoch *ep, uint64_t tag, void *buf, uint64_t sector,
                        uint32_t count);

/* ---- Control thread -------------------------------------------------------- */

enum wl_seal_kind {
    WL_SEAL_HISTORICAL, /* getw: drained, no copy-before-write, first chunk acknowledged */
    WL_SEAL_COW,        /* seal: copy-before-write for the new epoch when enabled */
    WL_SEAL_ONLY_RECORD, /* seal with WL_SEAL_RECORD: no copy-before-write, nothing acknowledged */
};

/* Seals a new epoch: ends the open one (its copies dropped), turns the
 * gate, drains the writes in flight (bounded by cow_wait_ms; a timeout
 * breaks the new epoch), moves the live maps into pending and exports the
 * first chunk; with WL_SEAL_COW and a pool, the unread map becomes
 * pending and the epoch is opened.  Blocks at most about cow_wait_ms. */
struct wl_export_result wl_epoch_seal(struct wl_epoch *ep, enum wl_seal_kind kind,
                                      struct wl_disk_range *area, uint32_t slots);
/* The "adds" command: checks all n ranges (inside the disk, count > 0)
 * and only then marks them live, so that the next seal makes them pending
 * and unread.  Returns 0 with *grains the grains newly marked, or -EINVAL
 * with nothing marked. */
int wl_epoch_adds(struct wl_epoch *ep, const struct wl_disk_range *r, uint32_t n,
                  uint64_t *grains);
/* The client went away: an open epoch with unread grains left is broken. */
void wl_epoch_client_gone(struct wl_epoch *ep);
/* The "clrw" command: the open epoch ends (copies dropped, unread map
 * cleared) and the log forgets every grain. */
void wl_epoch_clear(struct wl_epoch *ep);
/* The tag of ring reads dispatched now. */
uint64_t wl_epoch_read_tag(struct wl_epoch *ep);
/* WL_EF_BROKEN when `epoch` was broken. */
uint32_t wl_epoch_flags(struct wl_epoch *ep, uint64_t epoch);
/* True when copy-before-write is enabled (a pool exists). */
bool wl_epoch_cow_enabled(const struct wl_epoch *ep);
/* Fills a "cowc" reply (tag included). */
void wl_epoch_cowc(struct wl_epoch *ep, struct wl_cowc_reply *out);
/* Grains of the open epoch not read yet. */
uint64_t wl_epoch_unread_grains(struct wl_epoch *ep);

#endif
