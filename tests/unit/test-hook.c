/* common/hook.c: operator hooks, run on a real libuv loop with /bin/sh.
 * Each test runs hooks to completion and checks what they were given and
 * what was counted: the environment, the exit status, the timeout that
 * kills the process group, output and the limit on hooks at once. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "common/hook.h"
#include "common/json.h"
#include "common/log.h"

static char dir[] = "/tmp/bs-hook-XXXXXX";

/* The status object's text, for matching. */
static void status_text(struct bs_hooks *h, char *out, size_t size)
{
    struct bs_json_builder b;

    bs_json_begin(&b);
    bs_hooks_status(h, &b);
    assert_true(bs_json_finish(&b, out, size) > 0);
}

/* Runs the loop until nothing is left in it (every hook done and closed). */
static void run_all(uv_loop_t *loop, struct bs_hooks *h)
{
    bs_hooks_close(h);
    uv_run(loop, UV_RUN_DEFAULT);
}

static char *slurp(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_environment_and_success(void **state)
{
    uv_loop_t loop;
    struct bs_hooks *h;
    char cmd[512], path[256], st[1024];
    const char *env;
    struct bs_hook_event ev = { .event = "failover", .peer = "10.0.0.1:7789", .epoch = 42,
                                .generation = 9007199254740991ull,
                                .reason = "primary silent for 600 ms" };

    (void)state;
    setenv("BLKSHIP_EVENT", "from-the-agent", 1); /* ours wins */
    uv_loop_init(&loop);
    h = bs_hooks_new(&loop, "vm-1", "secondary", 5000);
    assert_non_null(h);
    snprintf(path, sizeof(path), "%s/env", dir);
    snprintf(cmd, sizeof(cmd),
             "env | grep -E '^BLKSHIP_(EPOCH|EVENT|GENERATION|HOOK_TIMEOUT_MS|PEER|REASON|RESOURCE|ROLE)=' "
             "| sort >%s; echo to-stdout; echo to-stderr >&2",
             path);
    assert_int_equal(bs_hooks_run(h, cmd, &ev), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    status_text(h, st, sizeof(st));
    assert_non_null(strstr(st, "\"started\": 1"));
    assert_non_null(strstr(st, "\"succeeded\": 1"));
    assert_non_null(strstr(st, "\"running\": 0"));
    assert_non_null(strstr(st, "\"last_result\": \"exit status 0\""));
    run_all(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    env = slurp(path);
    assert_non_null(env);
    assert_string_equal(env, "BLKSHIP_EPOCH=42\n"
                             "BLKSHIP_EVENT=failover\n"
                             "BLKSHIP_GENERATION=9007199254740991\n"
                             "BLKSHIP_HOOK_TIMEOUT_MS=5000\n"
                             "BLKSHIP_PEER=10.0.0.1:7789\n"
                             "BLKSHIP_REASON=primary silent for 600 ms\n"
                             "BLKSHIP_RESOURCE=vm-1\n"
                             "BLKSHIP_ROLE=secondary\n");
    unsetenv("BLKSHIP_EVENT");
}

static void test_failure_is_counted(void **state)
{
    uv_loop_t loop;
    struct bs_hooks *h;
    char st[1024];
    struct bs_hook_event ev = { .event = "failover", .peer = "", .epoch = 0, .reason = "r" };

    (void)state;
    uv_loop_init(&loop);
    h = bs_hooks_new(&loop, "r", "secondary", 5000);
    assert_int_equal(bs_hooks_run(h, "exit 3", &ev), 0);
    assert_int_equal(bs_hooks_run(h, "kill -TERM $$", &ev), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    status_text(h, st, sizeof(st));
    assert_non_null(strstr(st, "\"started\": 2"));
    assert_non_null(strstr(st, "\"failed\": 2"));
    assert_non_null(strstr(st, "\"succeeded\": 0"));
    run_all(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_timeout_kills_the_group(void **state)
{
    uv_loop_t loop;
    struct bs_hooks *h;
    char cmd[512], st[1024], path[256];
    uint64_t t0;
    struct bs_hook_event ev = { .event = "failover", .peer = "", .epoch = 0, .reason = "r" };

    (void)state;
    uv_loop_init(&loop);
    h = bs_hooks_new(&loop, "r", "secondary", 300);
    snprintf(path, sizeof(path), "%s/child.pid", dir);
    /* A child of the shell that would outlive it if only the shell died. */
    snprintf(cmd, sizeof(cmd), "sleep 8 & echo $! >%s; wait", path);
    t0 = uv_hrtime();
    assert_int_equal(bs_hooks_run(h, cmd, &ev), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(uv_hrtime() - t0 < 5000000000ull);
    status_text(h, st, sizeof(st));
    assert_non_null(strstr(st, "\"timed_out\": 1"));
    assert_non_null(strstr(st, "\"last_result\": \"killed after 300 ms\""));
    run_all(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    {
        char *pid = slurp(path);
        assert_non_null(pid);
        /* The background sleep went with the group: gone, or a zombie
         * that its new parent has not reaped yet. */
        char stat_path[64];
        snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", atoi(pid));
        for (int i = 0; i < 50; i++) {
            char *text = slurp(stat_path);
            if (!text || strstr(text, ") Z "))
                return;
            usleep(20000);
        }
        fail_msg("the hook's background child (pid %s) outlived the group kill", pid);
    }
}

static void test_at_most_four_at_once(void **state)
{
    uv_loop_t loop;
    struct bs_hooks *h;
    char st[1024];
    struct bs_hook_event ev = { .event = "failover", .peer = "", .epoch = 0, .reason = "r" };

    (void)state;
    uv_loop_init(&loop);
    h = bs_hooks_new(&loop, "r", "secondary", 2000);
    for (int i = 0; i < BS_HOOKS_MAX; i++)
        assert_int_equal(bs_hooks_run(h, "sleep 0.2", &ev), 0);
    assert_int_equal(bs_hooks_run(h, "true", &ev), -EBUSY);
    status_text(h, st, sizeof(st));
    assert_non_null(strstr(st, "\"running\": 4"));
    assert_non_null(strstr(st, "\"skipped\": 1"));
    run_all(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Runs that have exited do not count against the limit, even while their
 * output is still being read: a storm of short hooks runs them all. */
static void test_exited_runs_free_their_place(void **state)
{
    uv_loop_t loop;
    struct bs_hooks *h;
    char st[1024];
    struct bs_hook_event ev = { .event = "failover", .peer = "", .epoch = 0, .reason = "r" };

    (void)state;
    uv_loop_init(&loop);
    h = bs_hooks_new(&loop, "r", "secondary", 2000);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < BS_HOOKS_MAX; i++)
            assert_int_equal(bs_hooks_run(h, "true", &ev), 0);
        for (int spins = 0; spins < 5000; spins++) {
            status_text(h, st, sizeof(st));
            if (strstr(st, "\"running\": 0"))
                break;
            uv_run(&loop, UV_RUN_ONCE);
        }
        assert_non_null(strstr(st, "\"running\": 0"));
    }
    status_text(h, st, sizeof(st));
    assert_non_null(strstr(st, "\"started\": 12"));
    assert_non_null(strstr(st, "\"succeeded\": 12"));
    assert_non_null(strstr(st, "\"skipped\": 0"));
    run_all(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_environment_and_success),
        cmocka_unit_test(test_failure_is_counted),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_at_most_four_at_once),
        cmocka_unit_test(test_exited_runs_free_their_place),
    };
    int rc;

    if (!mkdtemp(dir))
        return 1;
    bs_log_set_level(BS_LOG_ERR);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            rc = rc ? rc : 1;
    }
    return rc;
}
