/* The primary agent's asynchronous link to the write log: the control
 * socket on the agent's libuv loop, plus the mapped shm region and the
 * front end of the ring (from wl_client).  Replies are demultiplexed by
 * their tag, so kicks may be outstanding while seal/next run.
 */
#ifndef BLKSHIP_PRIMARY_LOGLINK_H
#define BLKSHIP_PRIMARY_LOGLINK_H

#include <uv.h>

#include "primary/writelog/wl_client.h"

struct log_link_ops {
    /* Reply to seal or next; the extents are in the export area. */
    void (*on_export)(void *opaque, const struct wl_export_reply *rep);
    /* A kick notification: responses may be on the ring. */
    void (*on_kick)(void *opaque);
    /* The link failed (reason logged); the owner closes it. */
    void (*on_error)(void *opaque, int err);
};

struct log_link;

/* Connects (blocking: shmp and info), then serves the socket on loop.
 * Returns 0 or -errno. */
int log_link_open(uv_loop_t *loop, const char *sock, const struct log_link_ops *ops,
                  void *opaque, struct log_link **out);
/* Closes the socket and unmaps; freed once libuv is done. */
void log_link_close(struct log_link *l);

struct wl_client *log_link_client(struct log_link *l);

/* One of seal/next at a time; returns -EBUSY if one is outstanding. */
int log_link_export(struct log_link *l, const char *cmd);
/* Publishes queued ring requests and kicks. */
int log_link_kick(struct log_link *l);

#endif
