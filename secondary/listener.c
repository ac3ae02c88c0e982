/* blkship-listener: one TCP port for every blkship-secondary of a host
 * (docs/resources.md).  It accepts a connection, reads nothing of it but
 * looks at its first bytes (MSG_PEEK) until the TLS ClientHello is there,
 * takes the resource name from its server_name (common/sni.c), and hands
 * the socket, untouched, to the blkship-secondary that registered that
 * name on the unix socket (common/route.h).  TLS, the peer's certificate,
 * the hello: all of it is the secondary's, as if it had accepted the
 * connection itself; the listener holds no key and copies no byte.
 *
 * A connection whose first bytes are not a ClientHello, that names no
 * resource or one nobody registered, or that does not finish its
 * ClientHello within the handshake timeout is closed with a log line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"
#include "common/net.h"
#include "common/notify.h"
#include "common/opt.h"
#include "common/route.h"
#include "common/sni.h"

#define MOD "listener"
#define MAX_PENDING 256  /* connections whose ClientHello is awaited */
#define MAX_RESOURCES 4096
#define TICK_MS 500

struct listener;

/* A blkship-secondary's registration. */
struct reg {
    struct listener *l;
    uv_poll_t poll;
    int fd;
    pid_t pid;
    char name[BS_SNI_NAME_MAX + 1]; /* "" until registered */
    uint64_t handed;                /* connections handed to it */
    struct reg *next;
};

/* A TCP connection whose ClientHello is awaited. */
struct pending {
    struct listener *l;
    uv_poll_t poll;
    int fd;
    uint64_t started_ms;
    size_t want;        /* bytes the next decision needs (SO_RCVLOWAT) */
    char peer[96];
    struct pending *next;
};

struct listener {
    uv_loop_t *loop;
    int tcp_fd, unix_fd;
    uv_poll_t tcp_poll, unix_poll;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    struct bs_notify notify;
    const char *socket_path;
    unsigned handshake_timeout_ms;
    struct reg *regs;
    unsigned nregs;
    struct pending *pending;
    unsigned npending;
    uint64_t routed, refused;
    bool accept_paused;       /* the accept loops rest (accept_failed) */
    uint8_t peek[BS_SNI_PEEK_MAX]; /* one at a time: the loop is one thread */
};

static void on_closed_free(uv_handle_t *h)
{
    free(h->data);
}

/* An accept loop ended: out of descriptors (EMFILE, ENFILE), the listening
 * socket would poll readable at once again and spin.  It rests until the
 * next tick, which starts it again. */
static void accept_failed(struct listener *l, uv_poll_t *h, const char *what)
{
    if (errno != EMFILE && errno != ENFILE)
        return;
    if (!l->accept_paused)
        BS_WARN(MOD, "out of file descriptors (%s): not accepting %s until the next tick "
                     "(%u registrations, %u connections waiting)",
                strerror(errno), what, l->nregs, l->npending);
    l->accept_paused = true;
    uv_poll_stop(h);
}

/* ---- Registrations ------------------------------------------------------ */

static struct reg *find_reg(struct listener *l, const char *name)
{
    for (struct reg *r = l->regs; r; r = r->next)
        if (r->name[0] && strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static void reg_close(struct reg *r, const char *why)
{
    struct listener *l = r->l;

    for (struct reg **p = &l->regs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    l->nregs--;
    if (r->name[0])
        BS_INFO(MOD, "resource %s (pid %d) unregistered: %s", r->name, (int)r->pid, why);
    uv_poll_stop(&r->poll);
    close(r->fd);
    r->poll.data = r;
    uv_close((uv_handle_t *)&r->poll, on_closed_free);
}

static void reply(struct reg *r, const char *text)
{
    if (send(r->fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        BS_WARN(MOD, "answering pid %d: %s", (int)r->pid, strerror(errno));
}

static void on_reg_readable(uv_poll_t *h, int status, int events)
{
    struct reg *r = h->data;
    char msg[BS_ROUTE_MSG_MAX], name[BS_SNI_NAME_MAX + 1], text[BS_ROUTE_MSG_MAX];
    ssize_t n;

    (void)events;
    if (status < 0) {
        reg_close(r, uv_strerror(status));
        return;
    }
    n = recv(r->fd, msg, sizeof(msg), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        reg_close(r, n == 0 ? "its connection closed" : strerror(errno));
        return;
    }
    if (r->name[0] || bs_route_parse_register(msg, (size_t)n, name, sizeof(name)) < 0) {
        BS_WARN(MOD, "pid %d sent a message that is not a registration: closing it", (int)r->pid);
        reply(r, "error not a registration (register 1 NAME, NAME of [A-Za-z0-9._-])");
        reg_close(r, "protocol error");
        return;
    }
    struct reg *other = find_reg(r->l, name);
    if (other) {
        BS_WARN(MOD, "pid %d asks for resource %s, which pid %d has: refused", (int)r->pid, name,
                (int)other->pid);
        snprintf(text, sizeof(text), "error resource %s is already registered by pid %d", name,
                 (int)other->pid);
        reply(r, text);
        reg_close(r, "name taken");
        return;
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    reply(r, "ok");
    BS_INFO(MOD, "resource %s registered by pid %d (%u resources)", name, (int)r->pid,
            r->l->nregs);
}

static void on_unix_readable(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    int fd;

    (void)events;
    if (status < 0)
        return;
    while ((fd = accept4(l->unix_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct ucred cred = { 0 };
        socklen_t len = sizeof(cred);
        struct reg *r;
        if (l->nregs >= MAX_RESOURCES || !(r = calloc(1, sizeof(*r)))) {
            BS_WARN(MOD, "%u registrations: refusing another", l->nregs);
            close(fd);
            continue;
        }
        (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        r->l = l;
        r->fd = fd;
        r->pid = cred.pid;
        uv_poll_init(l->loop, &r->poll, fd);
        r->poll.data = r;
        uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, on_reg_readable);
        r->next = l->regs;
        l->regs = r;
        l->nregs++;
        /* A secondary that stops reading holds few connections in its
         * queue: past them the hand-over fails (EAGAIN) and the connection
         * is closed, rather than sockets piling up in flight. */
        int sndbuf = 16384;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    accept_failed(l, &l->unix_poll, "registrations");
}

/* ---- Connections ------------------------------------------------------------ */

static void pending_close(struct pending *p, bool close_fd)
{
    struct listener *l = p->l;

    for (struct pending **q = &l->pending; *q; q = &(*q)->next)
        if (*q == p) {
            *q = p->next;
            break;
        }
    l->npending--;
    uv_poll_stop(&p->poll);
    if (close_fd)
        close(p->fd);
    p->poll.data = p;
    uv_close((uv_handle_t *)&p->poll, on_closed_free);
}

static void refuse(struct pending *p, const char *why)
{
    BS_WARN(MOD, "connection from %s: %s; closed", p->peer, why);
    p->l->refused++;
    pending_close(p, true);
}

/* The ClientHello is there: hands the socket over. */
static void route(struct pending *p, const char *name)
{
    struct reg *r = find_reg(p->l, name);
    int one = 1, err;

    if (!r) {
        char why[200];
        snprintf(why, sizeof(why), "resource %s is not registered here (no blkship-secondary "
                 "of that --resource runs with --listener)", name);
        refuse(p, why);
        return;
    }
    /* Back to the default: the secondary polls it like any socket. */
    (void)setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    err = bs_route_send(r->fd, p->fd, p->peer);
    if (err < 0) {
        BS_WARN(MOD, "handing %s to resource %s (pid %d): %s", p->peer, name, (int)r->pid,
                strerror(-err));
        p->l->refused++;
        pending_close(p, true);
        return;
    }
    r->handed++;
    p->l->routed++;
    BS_DEBUG(MOD, "connection from %s handed to resource %s (pid %d)", p->peer, name, (int)r->pid);
    pending_close(p, true); /* the secondary has its own copy */
}

static void on_conn_readable(uv_poll_t *h, int status, int events)
{
    struct pending *p = h->data;
    struct listener *l = p->l;
    char name[BS_SNI_NAME_MAX + 1];
    const char *why;
    ssize_t n;
    int r;

    if (status < 0) {
        refuse(p, uv_strerror(status));
        return;
    }
    n = recv(p->fd, l->peek, sizeof(l->peek), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        refuse(p, n == 0 ? "closed before its ClientHello" : strerror(errno));
        return;
    }
    r = bs_sni_parse(l->peek, (size_t)n, name, sizeof(name), &why);
    switch (r) {
    case 1: route(p, name); return;
    case 0: refuse(p, "its ClientHello names no resource (server_name)"); return;
    case -EPROTO: refuse(p, why); return;
    case -EINVAL:
    case -ENAMETOOLONG: refuse(p, "its ClientHello's server_name is not a resource name"); return;
    default: break; /* -EAGAIN */
    }
    if ((size_t)n >= sizeof(l->peek)) {
        refuse(p, "no ClientHello in the first record's room");
        return;
    }
    /* A peer that shut its side, or a wake-up that brought nothing new
     * (a hang-up polls readable whatever SO_RCVLOWAT says): the
     * ClientHello will never be whole.  Level-triggered, waiting on would
     * spin. */
    if ((events & UV_DISCONNECT) || (size_t)n < p->want) {
        refuse(p, "closed before its ClientHello was whole");
        return;
    }
    /* The bytes stay queued (peeked): be woken only when the whole record
     * is there (its header says how long it is), or one more byte until
     * the header is. */
    size_t want = (size_t)n + 1;
    if (n >= 5) {
        size_t whole = 5 + ((size_t)l->peek[3] << 8 | l->peek[4]);
        if (whole > want)
            want = whole;
    }
    int lowat = (int)want;
    (void)setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
    p->want = want;
}

static void on_tcp_readable(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd;

    (void)events;
    if (status < 0)
        return;
    while ((fd = accept4(l->tcp_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct pending *p = calloc(1, sizeof(*p));
        len = sizeof(ss);
        if (!p) {
            close(fd);
            continue;
        }
        if (l->npending >= MAX_PENDING) {
            /* The oldest yields: a flood of silent peers cannot keep a
             * primary out for longer than its own handshake. */
            struct pending *old = l->pending;
            while (old->next)
                old = old->next;
            refuse(old, "evicted: too many connections without a ClientHello");
        }
        p->l = l;
        p->fd = fd;
        p->started_ms = uv_now(l->loop);
        bs_sockaddr_str((struct sockaddr *)&ss, p->peer, sizeof(p->peer));
        bs_tcp_tune(fd);
        uv_poll_init(l->loop, &p->poll, fd);
        p->poll.data = p;
        uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, on_conn_readable);
        p->next = l->pending;
        l->pending = p;
        l->npending++;
    }
    accept_failed(l, &l->tcp_poll, "connections");
}

static void on_tick(uv_timer_t *t)
{
    struct listener *l = t->data;
    uint64_t now = uv_now(l->loop);
    struct pending *p = l->pending, *next;
    char line[200];

    for (; p; p = next) {
        next = p->next;
        if (now - p->started_ms >= l->handshake_timeout_ms)
            refuse(p, "no ClientHello within the handshake timeout");
    }
    if (l->accept_paused) {
        l->accept_paused = false;
        uv_poll_start(&l->tcp_poll, UV_READABLE, on_tcp_readable);
        uv_poll_start(&l->unix_poll, UV_READABLE, on_unix_readable);
    }
    snprintf(line, sizeof(line), "%u resources registered; %" PRIu64 " connections handed over, %" PRIu64
             " refused", l->nregs, l->routed, l->refused);
    bs_notify_status(&l->notify, line);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct listener *l = h->data;

    BS_INFO(MOD, "signal %d: shutting down", signum);
    bs_notify_stopping(&l->notify, "shutting down");
    uv_stop(l->loop);
}

/* ---- Main --------------------------------------------------------------------- */

static int unix_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        BS_ERR(MOD, "--socket %s: longer than a unix socket path may be", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A socket file left by a listener that died: nothing listens on it. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        BS_ERR(MOD, "%s: another blkship-listener answers there", path);
        close(fd);
        return -EADDRINUSE;
    }
    close(fd);
    (void)unlink(path);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Only its owner and group may register: whoever registers a name is
     * handed that resource's connections (TLS still authenticates them). */
    mode_t old = umask(0117);
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(fd, 128) < 0) {
        r = -errno;
        BS_ERR(MOD, "%s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    return fd;
}

static void usage(FILE *f)
{
    fputs("Usage: blkship-listener --listen HOST:PORT [--socket PATH] [options]\n"
          "\n"
          "One TCP port for every blkship-secondary of this host: each connection goes,\n"
          "untouched, to the secondary whose --resource its TLS ClientHello names\n"
          "(docs/resources.md).  Secondaries register with --listener PATH.\n"
          "\n"
          "  --listen HOST:PORT        where primaries connect\n"
          "  --socket PATH             where secondaries register (default\n"
          "                            " BS_ROUTE_SOCKET_DEFAULT ")\n"
          "  --handshake-timeout DUR   a connection's ClientHello must arrive within\n"
          "                            this (default 5s)\n"
          "  --log-level LEVEL         err, warn, info (default) or debug\n"
          "  --version, --help\n"
          "\n"
          "Exit status: 0 stopped by a signal, 1 runtime failure, 2 usage error.\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "socket", required_argument, NULL, 's' },
        { "handshake-timeout", required_argument, NULL, 'H' },
        { "log-level", required_argument, NULL, 'L' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static struct listener ls; /* its peek buffer is 16 KiB: not on the stack */
    struct listener *l = &ls;
    const char *listen_addr = NULL;
    uint64_t v;
    int opt, r;

    l->socket_path = BS_ROUTE_SOCKET_DEFAULT;
    l->handshake_timeout_ms = 5000;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen_addr = optarg; break;
        case 's':
            if (bs_opt_nonempty("--socket", optarg) < 0)
                return BS_EXIT_USAGE;
            l->socket_path = optarg;
            break;
        case 'H':
            if (bs_opt_duration_ms("--handshake-timeout", optarg, 1000, 100, 600000, &v) < 0)
                return BS_EXIT_USAGE;
            l->handshake_timeout_ms = (unsigned)v;
            break;
        case 'L':
            if (bs_opt_log_level("--log-level", optarg) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'V': puts("blkship-listener " BLKSHIP_VERSION); return BS_EXIT_OK;
        case 'h': usage(stdout); return BS_EXIT_OK;
        default: usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (bs_opt_no_arguments(optind, argc, argv) < 0)
        return BS_EXIT_USAGE;
    if (!listen_addr) {
        bs_usage_error("--listen HOST:PORT is required");
        return BS_EXIT_USAGE;
    }
    if (bs_opt_hostport("--listen", listen_addr) < 0)
        return BS_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    l->loop = uv_default_loop();
    l->unix_fd = unix_listen(l->socket_path);
    if (l->unix_fd < 0)
        return BS_EXIT_FAILURE;
    l->tcp_fd = bs_tcp_listen(listen_addr);
    if (l->tcp_fd < 0) {
        close(l->unix_fd);
        unlink(l->socket_path);
        return BS_EXIT_FAILURE;
    }
    uv_poll_init(l->loop, &l->unix_poll, l->unix_fd);
    l->unix_poll.data = l;
    uv_poll_start(&l->unix_poll, UV_READABLE, on_unix_readable);
    uv_poll_init(l->loop, &l->tcp_poll, l->tcp_fd);
    l->tcp_poll.data = l;
    uv_poll_start(&l->tcp_poll, UV_READABLE, on_tcp_readable);
    uv_timer_init(l->loop, &l->tick);
    l->tick.data = l;
    uv_timer_start(&l->tick, on_tick, TICK_MS, TICK_MS);
    uv_signal_init(l->loop, &l->sigterm);
    uv_signal_init(l->loop, &l->sigint);
    l->sigterm.data = l->sigint.data = l;
    uv_signal_start(&l->sigterm, on_signal, SIGTERM);
    uv_signal_start(&l->sigint, on_signal, SIGINT);
    r = bs_notify_start(&l->notify, l->loop);
    if (r < 0) {
        BS_ERR(MOD, "systemd watchdog timer: %s", uv_strerror(r));
        return BS_EXIT_FAILURE;
    }
    BS_INFO(MOD, "listening on %s for the secondaries registered at %s", listen_addr,
            l->socket_path);
    bs_notify_ready(&l->notify, "listening; no resource registered yet");
    uv_run(l->loop, UV_RUN_DEFAULT);

    while (l->pending)
        pending_close(l->pending, true);
    while (l->regs)
        reg_close(l->regs, "shutting down");
    uv_close((uv_handle_t *)&l->unix_poll, NULL);
    uv_close((uv_handle_t *)&l->tcp_poll, NULL);
    uv_close((uv_handle_t *)&l->tick, NULL);
    uv_close((uv_handle_t *)&l->sigterm, NULL);
    uv_close((uv_handle_t *)&l->sigint, NULL);
    bs_notify_close(&l->notify);
    uv_run(l->loop, UV_RUN_DEFAULT);
    close(l->unix_fd);
    close(l->tcp_fd);
    unlink(l->socket_path);
    uv_loop_close(l->loop);
    BS_INFO(MOD, "stopped: %" PRIu64 " connections handed over, %" PRIu64 " refused", l->routed,
            l->refused);
    return BS_EXIT_OK;
}
