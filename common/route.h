/* The local protocol between blkship-listener and the blkship-secondary
 * processes behind it (docs/resources.md): one listening port for many
 * resources.  A secondary registers its resource name over a unix
 * SOCK_SEQPACKET socket and keeps the connection open; the listener hands
 * it each TCP connection whose TLS ClientHello names that resource, the
 * socket itself (SCM_RIGHTS), before a byte of it is read.  The
 * registration ends when the connection does.
 *
 * Messages, one per packet, text:
 *   secondary -> listener   "register 1 NAME"   (1: this protocol's version)
 *   listener -> secondary   "ok" | "error WHY"
 *   listener -> secondary   "conn PEER"         with the socket attached
 */
#ifndef BS_COMMON_ROUTE_H
#define BS_COMMON_ROUTE_H

#include <stddef.h>

#define BS_ROUTE_SOCKET_DEFAULT "/run/blkship/listener.sock"
#define BS_ROUTE_MSG_MAX 256
#define BS_ROUTE_VERSION 1

/* Connects to the listener at path and registers name; waits at most
 * wait_ms for the answer (the connect itself never waits: a full backlog
 * is -EAGAIN).  Returns the connection's fd (non-blocking, close-on-exec)
 * or -errno with the reason in why: -ECONNREFUSED or -ENOENT when no
 * listener runs there, -EEXIST when the name is taken, -EPROTO for a
 * reply that makes no sense. */
int bs_route_register(const char *path, const char *name, int wait_ms, char *why, size_t size);

/* Takes one handed-over connection from a registration fd.  Returns the
 * socket (close-on-exec) with its peer's text in peer, -EAGAIN when none
 * waits, -ECONNRESET when the listener closed the registration, -EPROTO
 * for a message that is not a connection. */
int bs_route_recv(int fd, char *peer, size_t size);

/* The listener's side: hands conn (not closed here) to the registration
 * fd.  0 or -errno (-EAGAIN: the secondary's queue is full). */
int bs_route_send(int fd, int conn, const char *peer);

/* Reads a registration message: 0 with the name in out, or -EPROTO. */
int bs_route_parse_register(const char *msg, size_t len, char *out, size_t size);

#endif
