/* The Prometheus endpoint over libmicrohttpd (see metrics.h). */
#include "common/metrics.h"

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

struct bs_metrics {
    struct MHD_Daemon *d;
    int fd;
    pthread_mutex_t lock;
    size_t len;
    char text[BS_METRICS_MAX];
};

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *body,
                              size_t len, const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
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
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, bad_method, sizeof(bad_method) - 1,
                      "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1, "text/plain");
    pthread_mutex_lock(&m->lock);
    ret = answer(c, MHD_HTTP_OK, m->text, m->len, "text/plain; version=0.0.4; charset=utf-8");
    pthread_mutex_unlock(&m->lock);
    return ret;
}

int bs_metrics_start(const char *hostport, struct bs_metrics **out)
{
    struct bs_metrics *m = calloc(1, sizeof(*m));
    int fd;

    if (!m)
        return -ENOMEM;
    fd = bs_tcp_listen(hostport);
    if (fd < 0) {
        BS_ERR(MOD, "cannot listen on %s: %s", hostport, strerror(-fd));
        free(m);
        return fd;
    }
    m->fd = fd;
    pthread_mutex_init(&m->lock, NULL);
    /* One thread polls every connection; a handful of scrapers at once,
     * each with 10 s to send its request. */
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                            on_request, m, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
                            10u, MHD_OPTION_END);
    if (!m->d) {
        BS_ERR(MOD, "cannot start the HTTP server on %s", hostport);
        close(fd);
        pthread_mutex_destroy(&m->lock);
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
    MHD_stop_daemon(m->d); /* closes the listening socket it was given too */
    pthread_mutex_destroy(&m->lock);
    free(m);
}
