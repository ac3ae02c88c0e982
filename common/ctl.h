/* The agents' local control socket: a unix stream socket that takes
 * request lines ("status", "checkpoint", later "promote") and answers each
 * with one reply line, in order.  A connection is closed after its reply
 * unless it has made a request of an asynchronous verb (bs_ctl_add_async,
 * e.g. "checkpoint"): such a connection is a session and stays open for
 * more requests until the client closes it, so that a toolstack can ask
 * for checkpoint after checkpoint without a connection each.
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
/* A request whose reply comes later, through bs_ctl_answer. */
struct bs_ctl_pending;

/* Handles a request of an asynchronous verb: keeps `pending` and answers
 * it exactly once with bs_ctl_answer, on the loop thread, even if the
 * client has gone away meanwhile (the answer is then dropped). */
typedef void bs_ctl_async_handler(void *opaque, const char *request,
                                  struct bs_ctl_pending *pending);

/* Binds path (replacing a stale socket; refusing one a live process
 * serves), mode 0600.  Returns 0 or -errno. */
int bs_ctl_start(uv_loop_t *loop, const char *path, bs_ctl_handler *handler, void *opaque,
                 struct bs_ctl **out);
/* Closes the socket and removes it; freed once libuv is done.  Every
 * pending request must have been answered. */
void bs_ctl_stop(struct bs_ctl *ctl);
/* Requests whose first word is verb go to handler instead of the
 * synchronous handler.  At most 8 verbs; returns 0 or -ENOSPC. */
int bs_ctl_add_async(struct bs_ctl *ctl, const char *verb, bs_ctl_async_handler *handler);
/* The reply (len bytes, one JSON object ending in a newline) to a pending
 * request.  A len of BS_CTL_MAX_REPLY or more sends an error object. */
void bs_ctl_answer(struct bs_ctl_pending *pending, const char *reply, size_t len);

/* Client side, blocking: sends request, reads the reply to EOF into reply
 * (NUL-terminated).  Returns its length or -errno: -EMSGSIZE if it does
 * not fit in size - 1 bytes, -ETIMEDOUT after 10 s of silence. */
int bs_ctl_call(const char *path, const char *request, char *reply, size_t size);
/* The same with another limit on the silence, in milliseconds. */
int bs_ctl_call_timeout(const char *path, const char *request, char *reply, size_t size,
                        int timeout_ms);

/* Client side of a session (several requests on one connection): a
 * connected socket, or -errno. */
int bs_ctl_connect(const char *path);
/* Sends request and reads its one-line reply (NUL-terminated, newline
 * kept) into reply.  Returns its length or -errno: -ETIMEDOUT after
 * timeout_ms of silence, -ECONNRESET if the agent closed, -EMSGSIZE. */
int bs_ctl_request(int fd, const char *request, char *reply, size_t size, int timeout_ms);

#endif
