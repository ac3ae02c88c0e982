/* A TLS connection over a non-blocking TCP socket, driven by a libuv poll
 * handle.  Data is encrypted from the caller's buffer; the records are
 * collected in a buffer of BS_CONN_OBUF_SIZE and sent with one send() per
 * buffer-full (or per loop turn), not one per 16 KiB record.  Queued
 * writes smaller than a record share records (copied together, up to
 * 16 KiB each) rather than making a small record each.  Reads come
 * straight from the socket, about two records per read().
 *
 * One read may be outstanding at a time; writes queue in order up to
 * BS_CONN_MAX_WRITES.  Callbacks run on the loop thread.  After an error a
 * connection only reports that error; the owner closes it.  A callback of
 * an operation that fails synchronously is never called, and a callback
 * never runs inside the call that started its operation.
 */
#ifndef BS_COMMON_CONN_H
#define BS_COMMON_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include <uv.h>

#define BS_CONN_MAX_WRITES 256
#define BS_CONN_OBUF_SIZE (256 * 1024)
/* Bytes one turn of the loop reads from a connection, and bytes it
 * encrypts for it, before it lets the other handles (timers above all)
 * run; see do_read in conn.c. */
#define BS_CONN_READ_BUDGET (2u * 1024 * 1024)

struct bs_conn;

/* status: 0, or a negative errno (-ECONNRESET for a clean close by the
 * peer, -EPROTO for a TLS failure whose reason has been logged). */
typedef void bs_conn_cb(struct bs_conn *c, int status, void *arg);

/* Takes ownership of fd (a connected TCP socket).  `peer` is text for the
 * logs (address:port).  Returns 0 or -errno. */
int bs_conn_new(uv_loop_t *loop, SSL_CTX *ctx, int fd, bool server, const char *peer,
                struct bs_conn **out);
/* Runs the TLS handshake; cb(status) when done.  On failure the reason
 * (verification error, protocol error) has been logged. */
void bs_conn_handshake(struct bs_conn *c, bs_conn_cb *cb, void *arg);
/* Reads exactly len bytes into buf, then cb(0). */
int bs_conn_read(struct bs_conn *c, void *buf, size_t len, bs_conn_cb *cb, void *arg);
/* Queues len bytes of buf (which must stay valid until cb); cb(0) once they
 * are all encrypted (buf may then be reused; the records may still wait in
 * the connection's buffer, and go out in order before anything later).
 * cb may be NULL.  -ENOBUFS when the queue is full. */
int bs_conn_write(struct bs_conn *c, const void *buf, size_t len, bs_conn_cb *cb, void *arg);
typedef void bs_conn_closed_cb(void *arg);

/* Ends the connection.  With `flush`, writes already queued still go out
 * first (for at most BS_CONN_LINGER_MS); nothing is read any more.  No
 * read or write callback is called after this.  closed_cb(arg), if not
 * NULL, runs once the memory is released. */
void bs_conn_close(struct bs_conn *c, bool flush, bs_conn_closed_cb *closed_cb, void *arg);
#define BS_CONN_LINGER_MS 2000

const char *bs_conn_peer(const struct bs_conn *c);
/* Client side, before the handshake: the server name (SNI) the ClientHello
 * carries, which blkship-listener routes by.  0 or -EINVAL. */
int bs_conn_set_server_name(struct bs_conn *c, const char *name);
/* Server side, once the handshake is done: the server name the client
 * asked for, or "" when it named none. */
const char *bs_conn_server_name(const struct bs_conn *c);
/* The peer certificate's subject and SHA-256 fingerprint prefix, once the
 * handshake is done ("" before). */
const char *bs_conn_peer_identity(const struct bs_conn *c);
/* Whether the peer ended TLS with a close_notify (a deliberate close),
 * rather than the connection dropping under it (a crash, a reset). */
bool bs_conn_peer_closed_cleanly(const struct bs_conn *c);

#endif
