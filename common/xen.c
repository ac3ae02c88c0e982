/* The resource's state in xenstore (see xen.h). */
#include "common/xen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

#define MOD "xen"

#ifndef HAVE_XENSTORE

int bs_xen_open(uv_loop_t *loop, const char *domain, const char *resource, struct bs_xen **out)
{
    (void)loop;
    (void)domain;
    (void)resource;
    (void)out;
    return -ENOTSUP;
}

void bs_xen_publish(struct bs_xen *x, const struct bs_xen_state *st)
{
    (void)x;
    (void)st;
}

void bs_xen_close(struct bs_xen *x)
{
    (void)x;
}

#else

#include <xenstore.h>

struct bs_xen {
    uv_loop_t *loop;
    uv_work_t req;
    bool running;           /* req is queued or running */
    bool closing;           /* bs_xen_close was called: freed once idle */
    bool dirty;             /* pending differs from what was written */
    bool failing;           /* the last write failed (logged once) */
    char domain[64];
    char resource[256];
    struct bs_xen_state pending; /* the loop's: the newest state */
    struct bs_xen_state work;    /* the worker's copy */
    struct bs_xen_state written;
    int result;                  /* of the last write: 0 or -errno */
    char why[600];
    struct xs_handle *xs;        /* the worker's */
    unsigned domid;
    bool have_domid;
    bool by_name;                /* x->domain is a name, not an id */
};

/* The domain's id: a number, or the domain whose name it is. */
static int resolve(struct bs_xen *x)
{
    char *end, **ids;
    unsigned n;

    if (x->have_domid)
        return 0;
    x->domid = (unsigned)strtoul(x->domain, &end, 10);
    if (*x->domain && !*end) {
        x->have_domid = true;
        return 0;
    }
    x->by_name = true;
    ids = xs_directory(x->xs, XBT_NULL, "/local/domain", &n);
    if (!ids)
        return -errno;
    for (unsigned i = 0; i < n && !x->have_domid; i++) {
        char p[64], *name;
        unsigned len;
        snprintf(p, sizeof(p), "/local/domain/%s/name", ids[i]);
        name = xs_read(x->xs, XBT_NULL, p, &len);
        if (name && strcmp(name, x->domain) == 0) {
            x->domid = (unsigned)strtoul(ids[i], NULL, 10);
            x->have_domid = true;
        }
        free(name);
    }
    free(ids);
    return x->have_domid ? 0 : -ENOENT;
}

static bool put(struct bs_xen *x, xs_transaction_t t, const char *key, const char *value)
{
    char p[512];

    snprintf(p, sizeof(p), "/local/domain/%u/blkship/%s/%s", x->domid, x->resource, key);
    return xs_write(x->xs, t, p, value, (unsigned)strlen(value));
}

static int write_state(struct bs_xen *x)
{
    const struct bs_xen_state *s = &x->work;
    struct xs_permissions perms[2];
    char base[400], num[32];
    xs_transaction_t t;
    bool ok;
    int r;

    if (!x->xs && !(x->xs = xs_open(0))) {
        snprintf(x->why, sizeof(x->why), "cannot connect to xenstore");
        return -errno ? -errno : -EIO;
    }
    if (x->have_domid && x->by_name) {
        /* A domain named, not numbered, gets a new id when it restarts. */
        char p[64], *name;
        unsigned len;
        snprintf(p, sizeof(p), "/local/domain/%u/name", x->domid);
        name = xs_read(x->xs, XBT_NULL, p, &len);
        if (!name || strcmp(name, x->domain) != 0)
            x->have_domid = false;
        free(name);
    }
    r = resolve(x);
    if (r < 0) {
        if (r == -ENOENT) {
            snprintf(x->why, sizeof(x->why), "no domain %s in xenstore", x->domain);
            return r;
        }
        snprintf(x->why, sizeof(x->why), "cannot list the domains: %s", strerror(-r));
        xs_close(x->xs);
        x->xs = NULL;
        return r;
    }
    snprintf(base, sizeof(base), "/local/domain/%u/blkship/%s", x->domid, x->resource);
    for (int attempt = 0; attempt < 3; attempt++) {
        t = xs_transaction_start(x->xs);
        if (t == XBT_NULL)
            break;
        ok = put(x, t, "role", s->role) && put(x, t, "state", s->state) &&
             put(x, t, "disk-state", s->disk_state) && put(x, t, "peer", s->peer) &&
             put(x, t, "connected", s->connected ? "1" : "0");
        snprintf(num, sizeof(num), "%" PRIu64, s->committed_epoch);
        ok = ok && put(x, t, "committed-epoch", num);
        snprintf(num, sizeof(num), "%" PRIu64, s->rpo_ms);
        ok = ok && put(x, t, "rpo-ms", num);
        snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
        ok = ok && put(x, t, "updated", num);
        /* dom0 owns it; the domain may read it, not write it. */
        perms[0] = (struct xs_permissions){ .id = 0, .perms = XS_PERM_NONE };
        perms[1] = (struct xs_permissions){ .id = x->domid, .perms = XS_PERM_READ };
        ok = ok && xs_set_permissions(x->xs, t, base, perms, 2);
        if (!ok) {
            int e = errno;
            xs_transaction_end(x->xs, t, true);
            snprintf(x->why, sizeof(x->why), "writing %s: %s", base, strerror(e));
            break;
        }
        if (xs_transaction_end(x->xs, t, false))
            return 0;
        if (errno != EAGAIN) {
            snprintf(x->why, sizeof(x->why), "committing %s: %s", base, strerror(errno));
            break;
        }
    }
    /* The connection may be gone (xenstored restarted): a new one next time. */
    xs_close(x->xs);
    x->xs = NULL;
    x->have_domid = false;
    if (!x->why[0])
        snprintf(x->why, sizeof(x->why), "xenstore refused the transaction");
    return -EIO;
}

static void work(uv_work_t *req)
{
    struct bs_xen *x = req->data;

    x->why[0] = '\0';
    x->result = write_state(x);
}

static void start(struct bs_xen *x);
static void release(struct bs_xen *x);

static void done(uv_work_t *req, int status)
{
    struct bs_xen *x = req->data;

    x->running = false;
    if (x->closing && (x->failing || !x->dirty || status < 0 || x->result < 0)) {
        /* Closing: the last state is written, or cannot be. */
        release(x);
        return;
    }
    if (status == 0 && x->result == 0) {
        if (x->failing)
            BS_INFO(MOD, "xenstore: publishing again under /local/domain/%u/blkship/%s",
                    x->domid, x->resource);
        x->failing = false;
        x->written = x->work;
    } else {
        if (!x->failing)
            BS_WARN(MOD, "xenstore: %s; replication goes on, and the state is written again "
                         "once it can be", x->why[0] ? x->why : "cancelled");
        x->failing = true;
        x->dirty = true; /* tried again at the next publish */
        return;
    }
    if (x->dirty)
        start(x);
}

static void start(struct bs_xen *x)
{
    if (x->running || !x->dirty)
        return;
    x->work = x->pending;
    x->dirty = false;
    x->req.data = x;
    if (uv_queue_work(x->loop, &x->req, work, done) == 0)
        x->running = true;
    else
        x->dirty = true;
}

int bs_xen_open(uv_loop_t *loop, const char *domain, const char *resource, struct bs_xen **out)
{
    struct bs_xen *x;

    /* xenstore takes letters, digits, "_", "@" and "-" in a node's name. */
    if (!*resource || strspn(resource, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_@-") != strlen(resource)) {
        BS_ERR(MOD, "--xen-domain: the resource name '%s' cannot be a xenstore node (letters, "
                    "digits, '_', '@' and '-' only): give --resource another",
               resource);
        return -EINVAL;
    }
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->loop = loop;
    snprintf(x->domain, sizeof(x->domain), "%s", domain);
    snprintf(x->resource, sizeof(x->resource), "%s", resource);
    *out = x;
    return 0;
}

void bs_xen_publish(struct bs_xen *x, const struct bs_xen_state *st)
{
    if (!x || x->closing)
        return;
    if (x->running || x->dirty) {
        /* A write is under way or waiting: the newest state goes next,
         * even if it is the one written last (A, B, then A again). */
        x->pending = *st;
        x->dirty = memcmp(st, &x->written, sizeof(*st)) != 0 || x->running;
    } else if (memcmp(st, &x->written, sizeof(*st)) != 0 || x->failing) {
        x->pending = *st;
        x->dirty = true;
    }
    start(x);
}

static void release(struct bs_xen *x)
{
    if (x->xs)
        xs_close(x->xs);
    free(x);
}

void bs_xen_close(struct bs_xen *x)
{
    if (!x)
        return;
    /* The last state ("stopped") still goes out: the write in flight, and
     * the one after it, finish in the loop's last run (after every other
     * handle is closed), and the last of them frees x.  The loop is not
     * run here: the agent's timers and connections are still live. */
    x->closing = true;
    if (x->running)
        return;
    if (x->dirty && !x->failing) {
        start(x);
        if (x->running)
            return;
    }
    release(x);
}

#endif
