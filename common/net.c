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

#define MOD "net"

int bs_split_hostport(const char *s, char *host, size_t hsize, char *port, size_t psize)
{
    const char *colon;
    size_t hlen;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        hlen = (size_t)(end - s - 1);
        s++;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hsize || strlen(colon + 1) == 0 || strlen(colon + 1) >= psize)
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int resolve(const char *hostport, bool passive, struct addrinfo **res)
{
    char host[256], port[16];
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
    int r;

    if (bs_split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
        BS_ERR(MOD, "'%s' is not HOST:PORT", hostport);
        return -EINVAL;
    }
    if (passive)
        hints.ai_flags = AI_PASSIVE;
    r = getaddrinfo(host, port, &hints, res);
    if (r != 0) {
        BS_ERR(MOD, "cannot resolve %s: %s", hostport, gai_strerror(r));
        return -EHOSTUNREACH;
    }
    return 0;
}

int bs_tcp_listen(const char *hostport)
{
    struct addrinfo *res;
    int fd, one = 1, r;

    r = resolve(hostport, true, &res);
    if (r < 0)
        return r;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
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

int bs_tcp_connect_start(const char *hostport)
{
    struct addrinfo *res;
    int fd, r;

    r = resolve(hostport, false, &res);
    if (r < 0)
        return r;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    bs_tcp_tune(fd);
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        goto out;
    }
    r = fd;
out:
    freeaddrinfo(res);
    return r;
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
