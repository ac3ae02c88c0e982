/* The agents' local control socket: a unix stream socket that takes one
 * request line ("status", later "checkpoint", "promote") per connection
 * and answers with one reply (JSON), then closes. */
#ifndef BLKSHIP_COMMON_CTL_H
#define BLKSHIP_COMMON_CTL_H

#include <stddef.h>
#include <uv.h>

#define BS_CTL_MAX_REQUEST 256
#define BS_CTL_MAX_REPLY 8192

/* Writes the reply to `request` (without its newline) into reply and
 * returns its length. */
typedef size_t bs_ctl_handler(void *opaque, const char *request, char *reply, size_t size);

struct bs_ctl;

/* Binds path (replacing a stale socket; refusing one a live process
 * serves), mode 0600.  Returns 0 or -errno. */
int bs_ctl_start(uv_loop_t *loop, const char *path, bs_ctl_handler *handler, void *opaque,
                 struct bs_ctl **out);
/* Closes the socket and removes it; freed once libuv is done. */
void bs_ctl_stop(struct bs_ctl *ctl);

/* Client side, blocking: sends request, reads the reply to EOF.
 * Returns its length or -errno. */
int bs_ctl_call(const char *path, const char *request, char *reply, size_t size);

#endif
