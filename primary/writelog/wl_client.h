/* A blocking client of the write-log protocol, for tools and tests: one
 * connection, the mapped shm region and the front end of the ring.
 * Functions return 0 (or a count) on success and -errno on failure; a
 * malformed or unexpected reply is -EPROTO, a refused command the errno
 * the server sent.  Not thread-safe: one thread per client.
 */
#ifndef BLKSHIP_WRITELOG_WL_CLIENT_H
#define BLKSHIP_WRITELOG_WL_CLIENT_H

#include <stdint.h>

#include "proto/writelog.h"

struct wl_client {
    int fd;
    void *shm;
    char shm_name[WL_RSPLEN_SHMP - sizeof(uint32_t)];
    struct log_front_ring front;
    struct wl_info_reply info;
    int timeout_ms;          /* for each reply; default 30 s */
};

/* Connects to a control socket, maps the shm region (shmp) and reads the
 * log's parameters (info).  On failure nothing is left open. */
int wl_client_open(struct wl_client *c, const char *sock_path);
void wl_client_close(struct wl_client *c);

/* Refreshes c->info. */
int wl_client_info(struct wl_client *c);
/* "peek", "clrw" or "getw": sends the command and expects "done". */
int wl_client_simple(struct wl_client *c, const char *cmd);
/* "seal" or "next"; the extents are in wl_client_extents() afterwards. */
int wl_client_export(struct wl_client *c, const char *cmd, struct wl_export_reply *out);
/* The export area, terminated by an entry with count 0. */
const struct wl_disk_range *wl_client_extents(const struct wl_client *c);

/* "cowc": the copy-before-write counters. */
int wl_client_cowc(struct wl_client *c, struct wl_cowc_reply *out);
/* "adds": writes the n ranges (n <= WL_EXPORT_MAX) to the export area and
 * asks the server to mark them for the next seal.  -EINVAL when n is too
 * large or the server refused a range (nothing was added then). */
int wl_client_adds(struct wl_client *c, const struct wl_disk_range *r, uint32_t n,
                   struct wl_adds_reply *out);

/* Reads count sectors at sector into buf through the ring, in as many
 * requests and kicks as needed. */
int wl_client_read(struct wl_client *c, uint64_t sector, uint64_t count, void *buf);

#endif
