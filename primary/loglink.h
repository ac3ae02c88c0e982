/* The primary agent's asynchronous link to the write log: the control
 * socket on the agent's libuv loop, the mapped shm region, and the front
 * end of the ring, which this module alone touches (requests queued with
 * log_link_read, responses delivered through on_read).  Replies are
 * demultiplexed by their tag, so kicks may be outstanding while seal/next
 * run.
 */
#ifndef BLKSHIP_PRIMARY_LOGLINK_H
#define BLKSHIP_PRIMARY_LOGLINK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "primary/writelog/wl_client.h"

struct log_link_ops {
    /* Reply to seal or next; the extents are in the export area. */
    void (*on_export)(void *opaque, const struct wl_export_reply *rep);
    /* Reply to adds: the ranges are in the log's next seal. */
    void (*on_adds)(void *opaque, const struct wl_adds_reply *rep);
    /* Reply to info (log_link_info_refresh): the log's counts now; the
     * disk, grain and log id are checked unchanged. */
    void (*on_info)(void *opaque, const struct wl_info_reply *rep);
    /* Reply to cowc: copy-before-write counters and the sealed epoch's
     * state (WL_EF_BROKEN). */
    void (*on_cowc)(void *opaque, const struct wl_cowc_reply *rep);
    /* Reply to frze: the log takes no more writes. */
    void (*on_frozen)(void *opaque, const struct wl_frze_reply *rep);
    /* One ring response, in ring order.  It echoes its request; a failed
     * read has count 0 and offset set to a positive errno.  Returns false
     * when the owner closed the link meanwhile: nothing more is delivered. */
    bool (*on_read)(void *opaque, const log_response_t *rsp);
    /* Every response of a kick notification has been delivered. */
    void (*on_kick_done)(void *opaque);
    /* The link failed (reason logged); the owner closes it. */
    void (*on_error)(void *opaque, int err);
};

struct log_link;

/* The outcome of log_link_connect: 0 and the link, or -errno and NULL. */
typedef void log_link_connected_fn(void *opaque, int status, struct log_link *l);

/* Connects in the thread pool (the connect, shmp and info may block for
 * their timeouts), then serves the socket on loop; done runs on the loop.
 * Returns 0, or -errno when the attempt could not even start (done is
 * then not called). */
int log_link_connect(uv_loop_t *loop, const char *sock, const struct log_link_ops *ops,
                     void *opaque, log_link_connected_fn *done);
/* Closes the socket and unmaps; freed once libuv is done. */
void log_link_close(struct log_link *l);

/* What the log said of itself at open (disk size, grain, log id, ...). */
const struct wl_info_reply *log_link_info(const struct log_link *l);
/* The export area: the extents of the last seal/next reply. */
const struct wl_disk_range *log_link_extents(const struct log_link *l);
/* The shm data area (WL_DATA_SIZE bytes), where ring reads land. */
uint8_t *log_link_data(const struct log_link *l);

/* One of seal/next/adds at a time (they share the export area); returns
 * -EBUSY if one is outstanding. */
int log_link_export(struct log_link *l, const char *cmd);
/* "seal" with flags (WL_SEAL_RECORD or 0); like log_link_export. */
int log_link_seal(struct log_link *l, uint32_t flags);
/* The export area to fill with ranges for log_link_adds; NULL while a
 * seal, next or adds is outstanding. */
struct wl_disk_range *log_link_area(struct log_link *l);
/* Asks the log to put the first n ranges of the export area into its next
 * seal (copy-before-write then protects them).  -EBUSY, -EINVAL (n is 0
 * or over WL_EXPORT_MAX). */
int log_link_adds(struct log_link *l, uint32_t n);
/* Asks for "info" again (live and pending grains now); one at a time
 * (-EBUSY). */
int log_link_info_refresh(struct log_link *l);
/* Asks for the copy-before-write counters; one at a time (-EBUSY). */
int log_link_cowc(struct log_link *l);
/* Freezes the log (frze): every later write fails.  -ENOTSUP when the
 * log is older than version 3; one at a time (-EBUSY). */
int log_link_freeze(struct log_link *l);
/* Queues a request to read count sectors at sector into the data area at
 * byte offset; it goes to the log with the next log_link_kick.  -ENOSPC
 * when the ring has no free entry. */
int log_link_read(struct log_link *l, uint64_t sector, uint32_t count, uint32_t offset);
/* Publishes queued ring requests and kicks. */
int log_link_kick(struct log_link *l);

#endif
