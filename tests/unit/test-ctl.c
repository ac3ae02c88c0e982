/* Unit tests for the control socket (common/ctl.c): a reply that does not
 * fit, or that the handler could not build, reaches the client as a valid
 * error object, never as JSON cut short; a client whose buffer is too small
 * gets -EMSGSIZE rather than part of the reply.  The server runs on a libuv
 * loop in the test's thread, the blocking client in another. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ctl.h"
#include "common/json.h"

enum handler_mode {
    H_NORMAL,       /* a small reply */
    H_TOO_LARGE,    /* says it needed more than the buffer */
    H_FAILED,       /* -ENOMEM */
    H_FILL,         /* exactly fill_len bytes of a JSON string */
};

struct fixture {
    uv_loop_t loop;
    uv_async_t done;
    struct bs_ctl *ctl;
    char dir[256];
    char path[300];
    enum handler_mode mode;
    size_t fill_len;
    char last_request[BS_CTL_MAX_REQUEST];
};

static ssize_t handler(void *opaque, const char *request, char *reply, size_t size)
{
    struct fixture *fx = opaque;

    snprintf(fx->last_request, sizeof(fx->last_request), "%s", request);
    switch (fx->mode) {
    case H_NORMAL:
        return snprintf(reply, size, "{ \"schema\": 1, \"echo\": \"%s\" }\n", request);
    case H_TOO_LARGE:
        /* Some text, as a handler that ran out of room might leave. */
        memset(reply, '{', size);
        return (ssize_t)size + 100;
    case H_FAILED:
        return -ENOMEM;
    case H_FILL:
        assert_true(fx->fill_len >= 3 && fx->fill_len < size);
        reply[0] = '"';
        memset(reply + 1, 'x', fx->fill_len - 2);
        reply[fx->fill_len - 1] = '"';
        return (ssize_t)fx->fill_len;
    }
    return -EINVAL;
}

static void on_done(uv_async_t *a)
{
    uv_stop(a->loop);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    const char *base = getenv("TMPDIR");

    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "%s/test-ctl.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) < 0)
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/c.ctl", fx->dir);
    uv_async_init(&fx->loop, &fx->done, on_done);
    if (bs_ctl_start(&fx->loop, fx->path, handler, fx, &fx->ctl) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    bs_ctl_stop(fx->ctl);
    uv_close((uv_handle_t *)&fx->done, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

struct call {
    struct fixture *fx;
    const char *request;
    char *reply;
    size_t size;
    int r;
};

static void *call_thread(void *arg)
{
    struct call *c = arg;

    c->r = bs_ctl_call(c->fx->path, c->request, c->reply, c->size);
    uv_async_send(&c->fx->done);
    return NULL;
}

/* bs_ctl_call from another thread while the loop serves it. */
static int call(struct fixture *fx, const char *request, char *reply, size_t size)
{
    struct call c = { .fx = fx, .request = request, .reply = reply, .size = size };
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, call_thread, &c), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(pthread_join(t, NULL), 0);
    return c.r;
}

/* The reply must be one valid error object with the schema. */
static void expect_error_object(const char *reply, int len, const char *reason)
{
    struct json_object *v, *e;
    char err[256];

    assert_true(len > 0);
    assert_int_equal(reply[len - 1], '\n');
    if (bs_json_parse(reply, (size_t)len, &v, err, sizeof(err)) != 0)
        fail_msg("not JSON (%s): %s", err, reply);
    assert_int_equal(json_object_get_int(json_object_object_get(v, "schema")), BS_CTL_SCHEMA);
    e = json_object_object_get(v, "error");
    assert_true(json_object_is_type(e, json_type_string));
    if (!strstr(json_object_get_string(e), reason))
        fail_msg("error '%s' lacks '%s'", json_object_get_string(e), reason);
    assert_int_equal(json_object_object_length(v), 2);
    json_object_put(v);
}

static void test_normal(void **state)
{
    struct fixture *fx = *state;
    char reply[256];

    fx->mode = H_NORMAL;
    int n = call(fx, "status", reply, sizeof(reply));
    assert_string_equal(reply, "{ \"schema\": 1, \"echo\": \"status\" }\n");
    assert_int_equal(n, (int)strlen(reply));
    assert_string_equal(fx->last_request, "status");
}

static void test_reply_too_large(void **state)
{
    struct fixture *fx = *state;
    char *reply = malloc(BS_CTL_MAX_REPLY);

    assert_non_null(reply);
    fx->mode = H_TOO_LARGE;
    int n = call(fx, "status", reply, BS_CTL_MAX_REPLY);
    expect_error_object(reply, n, "exceeds the control socket's limit of 65535");
    free(reply);
}

static void test_reply_failed(void **state)
{
    struct fixture *fx = *state;
    char reply[256];

    fx->mode = H_FAILED;
    int n = call(fx, "status", reply, sizeof(reply));
    expect_error_object(reply, n, "could not be built");
}

/* The largest reply the socket sends arrives whole; one byte more is an
 * error object, not a cut reply. */
static void test_reply_at_the_limit(void **state)
{
    struct fixture *fx = *state;
    char *reply = malloc(BS_CTL_MAX_REPLY);

    assert_non_null(reply);
    fx->mode = H_FILL;
    fx->fill_len = BS_CTL_MAX_REPLY - 1;
    int n = call(fx, "status", reply, BS_CTL_MAX_REPLY);
    assert_int_equal(n, BS_CTL_MAX_REPLY - 1);
    assert_int_equal(reply[0], '"');
    assert_int_equal(reply[n - 1], '"');
    free(reply);
}

static void test_client_buffer_too_small(void **state)
{
    struct fixture *fx = *state;
    char reply[64];

    fx->mode = H_FILL;
    fx->fill_len = 100;
    assert_int_equal(call(fx, "status", reply, sizeof(reply)), -EMSGSIZE);
    /* Exactly enough room: the whole reply. */
    fx->fill_len = sizeof(reply) - 1;
    assert_int_equal(call(fx, "status", reply, sizeof(reply)), (int)sizeof(reply) - 1);
    fx->fill_len = sizeof(reply);
    assert_int_equal(call(fx, "status", reply, sizeof(reply)), -EMSGSIZE);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_normal),
        T(test_reply_too_large),
        T(test_reply_failed),
        T(test_reply_at_the_limit),
        T(test_client_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
