/* Address parsing and non-blocking TCP sockets for the agents. */
#ifndef BLKSHIP_COMMON_NET_H
#define BLKSHIP_COMMON_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. */
int bs_split_hostport(const char *s, char *host, size_t hsize, char *port, size_t psize);
/* Listening socket (non-blocking, SO_REUSEADDR).  Returns fd or -errno. */
int bs_tcp_listen(const char *hostport);
/* Starts a non-blocking connect to the first address of hostport; the
 * caller waits for writability and calls bs_tcp_connect_result(). */
int bs_tcp_connect_start(const char *hostport);
/* 0 when the connect succeeded, else -errno. */
int bs_tcp_connect_result(int fd);
/* Text "addr:port" of a socket address. */
void bs_sockaddr_str(const struct sockaddr *sa, char *buf, size_t size);
/* Sets TCP_NODELAY and bigger socket buffers for a bulk link. */
void bs_tcp_tune(int fd);

#endif
