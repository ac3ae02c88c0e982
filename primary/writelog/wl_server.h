/* The write-log server: the dirty log, its epochs, its shared-memory
 * export, the control socket and the ring service, for any I/O frontend.
 * The frontend brackets every write with wl_epoch_write_begin/end on
 * wl_server_epoch(srv) and supplies read functions; the server runs its
 * own thread and reader threads.
 */
#ifndef BLKSHIP_WRITELOG_WL_SERVER_H
#define BLKSHIP_WRITELOG_WL_SERVER_H

#include <stdint.h>

#include "primary/writelog/wl_epoch.h"
#include "primary/writelog/wlog.h"

#define WL_DEFAULT_DIR "/run/blkship"
#define WL_DEFAULT_READERS 32u
#define WL_MAX_READERS 64u
/* A client that sends part of a command and then nothing for this long is
 * disconnected. */
#define WL_PARTIAL_TIMEOUT_MS 10000u

struct wl_reader_ops {
    /* Reads count sectors at sector into buf (count * 512 bytes; the range
     * is inside the disk).  Runs on reader thread `reader`, one call at a
     * time per reader, possibly in parallel with other readers and with the
     * frontend's I/O.  Returns 0 or -errno. */
    int (*read)(void *opaque, unsigned reader, void *buf, uint64_t sector, uint32_t count);
    /* Reads for a copy-before-write (wl_epoch_ops.preserve_read): on a
     * writer's thread, many at once.  Needed when cow_max_bytes > 0. */
    int (*preserve_read)(void *opaque, void *buf, uint64_t sector, uint32_t count);
};

struct wl_server_config {
    const char *name;          /* log name; ':' and '/' become '_' in paths */
    const char *dir;           /* control socket directory, NULL for WL_DEFAULT_DIR */
    uint64_t disk_sectors;
    uint32_t grain_sectors;    /* 0: wl_log_auto_grain() */
    unsigned readers;          /* reader threads, 1..WL_MAX_READERS */
    uint64_t cow_max_bytes;    /* copy-before-write pool; 0 disables it */
    uint32_t cow_wait_ms;      /* longest a write waits for a seal or pool space */
    const struct wl_reader_ops *ops;
    void *opaque;
};

struct wl_server;

/* Creates the log, the shm region and the listening control socket (all
 * exist when this returns), then starts the threads.  Fails with -EADDRINUSE
 * when another live server owns the socket.  Returns 0 or -errno; on error
 * nothing is left behind. */
int wl_server_start(const struct wl_server_config *cfg, struct wl_server **out);
/* Stops the threads (waiting for reads in progress), removes the socket and
 * the shm region and frees everything.  NULL is a no-op. */
void wl_server_stop(struct wl_server *srv);

struct wl_log *wl_server_log(struct wl_server *srv);
/* The epochs, for the frontend's write path (valid until wl_server_stop). */
struct wl_epoch *wl_server_epoch(struct wl_server *srv);

#endif
