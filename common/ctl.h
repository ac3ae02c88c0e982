/* The agents' local control socket: a unix stream socket that takes one
 * request line ("status", later "checkpoint", "promote") per connection
 * and answers with one reply, then closes.
 *
 * Every reply is one JSON object on one line, with "schema":
 * BS_CTL_SCHEMA.  A failed request is answered with an object that has
 * "schema" and "error" (a sentence) and nothing else.  Within a schema,
 * fields are only ever added; removing or renaming a field, or changing
 * its type or meaning, increments BS_CTL_SCHEMA, so that a reader that
 * finds a schema newer than its own knows it may misread the reply. */
#ifndef BLKSHIP_COMMON_CTL_H
#define BLKSHIP_COMMON_CTL_H

#include <stddef.h>
#include <uv.h>

#include <sys/types.h>

#define BS_CTL_SCHEMA 1
#define BS_CTL_MAX_REQUEST 256
/* Large enough for a status whose every string is as long as a path can
 * be and escaped at six bytes per byte. */
#define BS_CTL_MAX_REPLY 65536

/* Writes the reply to `request` (without its newline) into reply (size
 * bytes) and returns its length.  A length >= size (the reply did not
 * fit) or a negative errno makes the socket send an error object instead,
 * so that a client never receives JSON cut short. */
typedef ssize_t bs_ctl_handler(void *opaque, const char *request, char *reply, size_t size);

struct bs_ctl;

/* Binds path (replacing a stale socket; refusing one a live process
 * serves), mode 0600.  Returns 0 or -errno. */
int bs_ctl_start(uv_loop_t *loop, const char *path, bs_ctl_handler *handler, void *opaque,
                 struct bs_ctl **out);
/* Closes the socket and removes it; freed once libuv is done. */
void bs_ctl_stop(struct bs_ctl *ctl);

/* Client side, blocking: sends request, reads the reply to EOF into reply
 * (NUL-terminated).  Returns its length or -errno: -EMSGSIZE if it does
 * not fit in size - 1 bytes, -ETIMEDOUT after 10 s of silence. */
int bs_ctl_call(const char *path, const char *request, char *reply, size_t size);

#endif
