/* Listening unix sockets that appear only when they accept connections. */
#ifndef BLKSHIP_COMMON_UDS_H
#define BLKSHIP_COMMON_UDS_H

#include <uv.h>

/* Binds pipe to a temporary name beside path (mode 0600), listens, then
 * renames it to path: whoever sees path can connect at once, with no
 * window between bind() and listen().  Returns 0 or a libuv error. */
int bs_uds_listen(uv_pipe_t *pipe, const char *path, int backlog, uv_connection_cb cb);

#endif
