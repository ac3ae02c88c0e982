/* The Prometheus endpoint over libmicrohttpd (see metrics.h).
 *
 * The library is opened (dlopen) when an endpoint starts, not linked: it
 * brings GnuTLS and eight more libraries whose loading and constructors
 * took about 6 ms of every agent start here (measured: 9.6 ms to run a
 * program linked with the agents' libraries and it, 3.9 ms without), and a
 * primary restarted for a catch-up spends those before its first read.
 * Agents started without --metrics never load it. */
#include "common/metrics.h"

#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/net.h"
#include "common/promtext.h"

#define MOD "metrics"

#ifndef BS_MHD_SONAME
#error "BS_MHD_SONAME (libmicrohttpd's soname) comes from common/CMakeLists.txt"
#endif

/* The entry points used, resolved from the opened library. */
struct mhd_api {
    void *lib;
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
    __typeof__(&MHD_create_response_from_buffer) create_response;
    __typeof__(&MHD_add_response_header) add_header;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_destroy_response) destroy_response;
};

struct bs_metrics {
    struct mhd_api api;
    struct MHD_Daemon *d;
    int fd;
    pthread_mutex_t lock;
    size_t len;
    char text[BS_METRICS_MAX];
};

/* Opens the library and resolves every entry point, or logs why not. */
static int mhd_open(struct mhd_api *api)
{
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        { "MHD_start_daemon", (void **)&api->start_daemon },
        { "MHD_stop_daemon", (void **)&api->stop_daemon },
        { "MHD_create_response_from_buffer", (void **)&api->create_response },
        { "MHD_add_response_header", (void **)&api->add_header },
        { "MHD_queue_response", (void **)&api->queue_response },
        { "MHD_destroy_response", (void **)&api->destroy_response },
    };

    /* Never unloaded (RTLD_NODELETE): GnuTLS and the rest keep their
     * destructors for the process' exit, whatever threads still run. */
    api->lib = dlopen(BS_MHD_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!api->lib) {
        BS_ERR(MOD, "--metrics needs libmicrohttpd: %s", dlerror());
        return -ENOENT;
    }
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].slot = dlsym(api->lib, syms[i].name);
        if (!*syms[i].slot) {
            BS_ERR(MOD, "%s has no %s: %s", BS_MHD_SONAME, syms[i].name, dlerror());
            dlclose(api->lib);
            api->lib = NULL;
            return -ENOENT;
        }
    }
    return 0;
}

static enum MHD_Result answer(const struct mhd_api *api, struct MHD_Connection *c,
                              unsigned status, const char *body, size_t len, const char *type)
{
    struct MHD_Response *r =
        api->create_response(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (!r)
        return MHD_NO;
    api->add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ret = api->queue_response(c, status, r);
    api->destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **req)
{
    struct bs_metrics *m = cls;
    enum MHD_Result ret;
    static const char not_found[] = "blkship: only /metrics is served here\n";
    static const char bad_method[] = "blkship: GET /metrics\n";

    (void)version;
    (void)upload_data;
    (void)req;
    if (*upload_size)
        return MHD_NO; /* a body: nothing here takes one */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer(&m->api, c, MHD_HTTP_METHOD_NOT_ALLOWED, bad_method, sizeof(bad_method) - 1,
                      "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return answer(&m->api, c, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
                      "text/plain");
    pthread_mutex_lock(&m->lock);
    ret = answer(&m->api, c, MHD_HTTP_OK, m->text, m->len,
                 "text/plain; version=0.0.4; charset=utf-8");
    pthread_mutex_unlock(&m->lock);
    return ret;
}

int bs_metrics_start(const char *hostport, struct bs_metrics **out)
{
    struct bs_metrics *m = calloc(1, sizeof(*m));
    int fd;

    if (!m)
        return -ENOMEM;
    if (mhd_open(&m->api) < 0) {
        free(m);
        return -ENOENT;
    }
    fd = bs_tcp_listen(hostport);
    if (fd < 0) {
        BS_ERR(MOD, "cannot listen on %s: %s", hostport, strerror(-fd));
        dlclose(m->api.lib);
        free(m);
        return fd;
    }
    m->fd = fd;
    pthread_mutex_init(&m->lock, NULL);
    /* One thread polls every connection; a handful of scrapers at once,
     * each with 10 s to send its request. */
    m->d = m->api.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                               on_request, m, MHD_OPTION_LISTEN_SOCKET, fd,
                               MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
                               10u, MHD_OPTION_END);
    if (!m->d) {
        BS_ERR(MOD, "cannot start the HTTP server on %s", hostport);
        close(fd);
        pthread_mutex_destroy(&m->lock);
        dlclose(m->api.lib);
        free(m);
        return -EIO;
    }
    BS_INFO(MOD, "Prometheus metrics on http://%s/metrics", hostport);
    *out = m;
    return 0;
}

void bs_metrics_publish(struct bs_metrics *m, const char *text, size_t len)
{
    if (!m)
        return;
    if (len > sizeof(m->text))
        len = sizeof(m->text);
    pthread_mutex_lock(&m->lock);
    memcpy(m->text, text, len);
    m->len = len;
    pthread_mutex_unlock(&m->lock);
}

void bs_metrics_publish_prom(struct bs_metrics *m, struct bs_prom *b)
{
    long len = bs_prom_finish(b);

    if (len < 0) {
        BS_WARN(MOD, "the metrics do not fit in %zu bytes; the last snapshot is kept", b->size);
        return;
    }
    bs_metrics_publish(m, b->buf, (size_t)len);
}

void bs_metrics_stop(struct bs_metrics *m)
{
    if (!m)
        return;
    m->api.stop_daemon(m->d); /* closes the listening socket it was given too */
    pthread_mutex_destroy(&m->lock);
    dlclose(m->api.lib);
    free(m);
}
