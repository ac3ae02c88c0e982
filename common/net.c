/* TCP helpers (see net.h). */
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/opt.h"

#define MOD "net"

int bs_resolve(const char *hostport, bool passive, struct addrinfo **res)
{
    char host[BS_HOST_MAX], port[8];
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
    uint16_t portnum;
    int r;

    if (bs_parse_hostport(hostport, host, &portnum) < 0) {
        BS_ERR(MOD, "'%s' is not HOST:PORT", hostport);
        return -EINVAL;
    }
    snprintf(port, sizeof(port), "%u", portnum);
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    r = getaddrinfo(host, port, &hints, res);
    if (r != 0) {
        BS_ERR(MOD, "cannot resolve %s: %s", hostport, gai_strerror(r));
        return r == EAI_AGAIN ? -EAGAIN : -EHOSTUNREACH;
    }
    return 0;
}

int bs_tcp_listen(const char *hostport)
{
    struct addrinfo *res;
    int fd, one = 1, r;

    r = bs_resolve(hostport, true, &res);
    if (r < 0)
        return r;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        BS_ERR(MOD, "cannot listen on %s: %s", hostport, strerror(-r));
        close(fd);
        goto out;
    }
    r = fd;
out:
    freeaddrinfo(res);
    return r;
}

int bs_tcp_connect_start(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    bs_tcp_tune(fd);
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int bs_tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

void bs_sockaddr_str(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(buf, size, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(buf, size, "[%s]:%u", host, port);
    } else {
        snprintf(buf, size, "unknown");
    }
}

void bs_tcp_tune(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
