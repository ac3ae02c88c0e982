/* blkship-listener's hand-over protocol (common/route.h). */
#include "common/route.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sni.h"


int bs_route_register(const char *path, const char *name, int wait_ms, char *why, size_t size)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char msg[BS_ROUTE_MSG_MAX];
    struct pollfd pfd;
    ssize_t n;
    int fd, r;

    snprintf(why, size, "%s", "");
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(why, size, "socket path too long");
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* Non-blocking: a listener whose backlog is full refuses (EAGAIN) at
     * once rather than keeping the caller waiting. */
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        snprintf(why, size, "connecting to %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    n = snprintf(msg, sizeof(msg), "register %d %s", BS_ROUTE_VERSION, name);
    if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
        r = -errno;
        snprintf(why, size, "registering with %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
    r = poll(&pfd, 1, wait_ms);
    n = r > 0 ? recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT) : -1;
    if (n <= 0) {
        snprintf(why, size, "%s did not answer the registration", path);
        close(fd);
        return -ETIMEDOUT;
    }
    msg[n] = 0;
    if (strcmp(msg, "ok") != 0) {
        snprintf(why, size, "%s", strncmp(msg, "error ", 6) == 0 ? msg + 6 : "a reply that makes no sense");
        close(fd);
        return strstr(msg, "already registered") ? -EEXIST : -EPROTO;
    }
    return fd;
}

int bs_route_recv(int fd, char *peer, size_t size)
{
    char msg[BS_ROUTE_MSG_MAX], ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { msg, sizeof(msg) - 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof(ctl) };
    struct cmsghdr *c;
    int conn = -1;
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    /* Any socket attached is ours to close, whatever the message. */
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&conn, CMSG_DATA(c), sizeof(int));
    if (n == 0 && conn < 0)
        return -ECONNRESET;
    msg[n] = 0;
    if (conn < 0 || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || strncmp(msg, "conn ", 5) != 0) {
        if (conn >= 0)
            close(conn);
        return -EPROTO;
    }
    snprintf(peer, size, "%s", msg + 5);
    return conn;
}

int bs_route_send(int fd, int conn, const char *peer)
{
    char msg[BS_ROUTE_MSG_MAX], ctl[CMSG_SPACE(sizeof(int))];
    int n = snprintf(msg, sizeof(msg), "conn %s", peer);
    struct iovec iov = { msg, (size_t)n };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof(ctl) };
    struct cmsghdr *c;

    memset(ctl, 0, sizeof(ctl));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &conn, sizeof(int));
    if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return 0;
}

int bs_route_parse_register(const char *msg, size_t len, char *out, size_t size)
{
    char buf[BS_ROUTE_MSG_MAX];
    int version, used = 0;

    if (len >= sizeof(buf) || memchr(msg, 0, len))
        return -EPROTO;
    memcpy(buf, msg, len);
    buf[len] = 0;
    if (sscanf(buf, "register %d %n", &version, &used) != 1 || used == 0 ||
        version != BS_ROUTE_VERSION || !bs_sni_name_ok(buf + used) ||
        strlen(buf + used) >= size)
        return -EPROTO;
    snprintf(out, size, "%s", buf + used);
    return 0;
}
