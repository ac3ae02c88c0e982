/* Address parsing and non-blocking TCP sockets for the agents. */
#ifndef BLKSHIP_COMMON_NET_H
#define BLKSHIP_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct addrinfo;

/* Resolves HOST:PORT or [V6]:PORT (checked with bs_parse_hostport) with a
 * blocking getaddrinfo: for start-up, never on an event loop.  Returns 0
 * with *res to free with freeaddrinfo, -EINVAL for a malformed address,
 * -EAGAIN for a temporary resolver failure, -EHOSTUNREACH for a name that
 * does not resolve; logs the reason. */
int bs_resolve(const char *hostport, bool passive, struct addrinfo **res);
/* Listening socket (non-blocking, SO_REUSEADDR).  Returns fd or -errno. */
int bs_tcp_listen(const char *hostport);
/* Starts a non-blocking connect to sa; the caller waits for writability
 * and calls bs_tcp_connect_result().  Returns the fd or -errno. */
int bs_tcp_connect_start(const struct sockaddr *sa, socklen_t len);
/* 0 when the connect succeeded, else -errno. */
int bs_tcp_connect_result(int fd);
/* Text "addr:port" of a socket address. */
void bs_sockaddr_str(const struct sockaddr *sa, char *buf, size_t size);
/* Sets TCP_NODELAY and bigger socket buffers for a bulk link. */
void bs_tcp_tune(int fd);

#endif
