/* Unit tests for the status view (cli/status_view.c): what is shown of a
 * good reply, and that a bad one is refused with nothing shown. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/status_view.h"

static const char primary[] =
    "{ \"schema\": 1, \"role\": \"primary\", \"connected\": false, \"state\": \"connecting\", "
    "\"peer\": \"dr:7789\", \"disk_bytes\": 1073741824, \"dirty_bytes\": 536870912, "
    "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 536870912, "
    "\"sync_percent\": 50.00, \"rate_bytes_per_sec\": 1048576, \"eta_seconds\": 512 }\n";

static const char secondary[] =
    "{ \"schema\": 1, \"role\": \"secondary\", \"connected\": true, \"peer\": \"10.0.0.1:4242\", "
    "\"device\": \"/srv/a\\\"b\\\\c\\td\", \"dirty_bytes\": null, \"inflight_bytes\": 4096, "
    "\"sent_bytes\": 0, \"acked_bytes\": 8192, \"sync_percent\": null }\n";

struct view {
    int r;
    char err[512];
    char *out;
    size_t len;
};

static void view(const char *reply, size_t len, enum bs_status_view_mode mode, struct view *v)
{
    FILE *f = open_memstream(&v->out, &v->len);

    assert_non_null(f);
    v->r = bs_status_view(reply, len, mode, f, v->err, sizeof(v->err));
    assert_int_equal(fclose(f), 0);
}

static void expect_refused(const char *reply, int want, const char *reason)
{
    struct view v;

    for (int mode = BS_STATUS_HUMAN; mode <= BS_STATUS_JSON; mode++) {
        view(reply, strlen(reply), (enum bs_status_view_mode)mode, &v);
        if (v.r != want)
            fail_msg("%s: %d, expected %d (%s)", reply, v.r, want, v.err);
        assert_int_equal(v.len, 0);         /* nothing shown */
        if (!strstr(v.err, reason))
            fail_msg("%s: reason '%s' lacks '%s'", reply, v.err, reason);
        free(v.out);
    }
}

static void test_primary_human(void **state)
{
    (void)state;
    struct view v;

    view(primary, sizeof(primary) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "role        primary\n"));
    assert_non_null(strstr(v.out, "connected   no — dr:7789\n"));
    assert_non_null(strstr(v.out, "state       connecting\n"));
    assert_non_null(strstr(v.out, "in sync     [####################....................] 50.0%\n"));
    assert_non_null(strstr(v.out, "dirty       512.0 MiB\n"));
    assert_non_null(strstr(v.out, "sent        0 B, durable on the replica 512.0 MiB, in flight 0 B\n"));
    assert_non_null(strstr(v.out, "rate        1.0 MiB/s, ETA 512 s\n"));
    assert_null(strstr(v.out, "device"));
    free(v.out);
}

/* The device is shown; the backslash and the tab escaped, the quote not. */
static void test_secondary_human(void **state)
{
    (void)state;
    struct view v;

    view(secondary, sizeof(secondary) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "device      /srv/a\"b\\\\c\\td\n"));
    assert_null(strstr(v.out, "in sync"));     /* the secondary cannot know */
    assert_null(strstr(v.out, "dirty"));
    free(v.out);
}

/* --json: one line, the same content, valid for the strict parser again. */
static void test_json_mode(void **state)
{
    (void)state;
    struct view v, again;

    view(secondary, sizeof(secondary) - 1, BS_STATUS_JSON, &v);
    assert_int_equal(v.r, 0);
    assert_string_equal(v.out, secondary);
    view(v.out, v.len, BS_STATUS_JSON, &again);
    assert_int_equal(again.r, 0);
    assert_string_equal(again.out, secondary);
    free(v.out);
    free(again.out);

    /* A reply with json-c's leniencies comes out as JSON proper. */
    static const char lenient[] =
        "{'schema': 1, \"role\": \"x\ty\", \"connected\": true, \"dirty_bytes\": 0, "
        "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": 100}";
    view(lenient, sizeof(lenient) - 1, BS_STATUS_JSON, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "\"schema\": 1"));
    assert_non_null(strstr(v.out, "\"role\": \"x\\ty\""));
    free(v.out);
}

static void test_terminal_escapes(void **state)
{
    (void)state;
    static const char reply[] =
        "{ \"schema\": 1, \"role\": \"r\\u001b]0;owned\\u0007\\u009b\\r\\n\\u0000z\", "
        "\"connected\": false, \"dirty_bytes\": null, \"inflight_bytes\": 0, "
        "\"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": null }";
    struct view v;

    view(reply, sizeof(reply) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "role        r\\x1b]0;owned\\x07\\u009b\\r\\n\\x00z\n"));
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.out[i] < 0x20 && v.out[i] != '\n')
            fail_msg("control character 0x%02x at %zu", v.out[i], i);
    free(v.out);
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("", -EBADMSG, "empty");
    expect_refused("garbage", -EBADMSG, "not JSON");
    expect_refused("{ \"schema\": 1, \"role\": \"pri", -EBADMSG, "truncated");
    expect_refused("\"a string\"", -EBADMSG, "a string, not a JSON object");
    expect_refused("{ \"schema\": 1, \"error\": \"unknown request\" }", -EREMOTEIO,
                   "the agent answered with an error: unknown request");
    expect_refused("{ \"error\": 5 }", -EREMOTEIO, "an error (a number)");
    expect_refused("{ \"role\": \"primary\" }", -EBADMSG, "no \"schema\" field");
    expect_refused("{ \"schema\": \"1\" }", -EBADMSG, "\"schema\" is a string, not an integer");
    expect_refused("{ \"schema\": 1.5 }", -EBADMSG, "\"schema\" is a number, not an integer");
    expect_refused("{ \"schema\": 0 }", -EBADMSG, "schema 0 is not a schema");
    expect_refused("{ \"schema\": 2, \"role\": \"primary\" }", -EPROTONOSUPPORT,
                   "schema 2, newer than this blkship reads (1)");
    expect_refused("{ \"schema\": 1, \"role\": \"primary\" }", -EBADMSG,
                   "no \"connected\" field");
    expect_refused("{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, "
                   "\"dirty_bytes\": 0, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": 100, \"eta_seconds\": \"soon\" }",
                   -EBADMSG, "\"eta_seconds\" is a string, not a number");
    expect_refused("{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, "
                   "\"dirty_bytes\": 0, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": 1e300 }",
                   -EBADMSG, "\"sync_percent\" is 1e+300, outside [0, 100]");
    expect_refused("{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, "
                   "\"dirty_bytes\": 0, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": 100, \"device\": [] }",
                   -EBADMSG, "\"device\" is an array, not a string");
}

/* An error message from the agent is escaped like any string. */
static void test_error_escaped(void **state)
{
    (void)state;
    expect_refused("{ \"schema\": 1, \"error\": \"bad\\u001b[2Jthing\" }", -EREMOTEIO,
                   "error: bad\\x1b[2Jthing");
}

static const char secondary_epochs[] =
    "{ \"schema\": 1, \"role\": \"secondary\", \"connected\": true, \"dirty_bytes\": null, "
    "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": null, "
    "\"replica_consistent\": %s, \"applied_epoch\": 41, \"committed_epoch\": 42, "
    "\"journal_bytes\": 1048576, \"journal_max_bytes\": 268435456, \"protocol_version\": 2, "
    "\"oversize_epochs\": %d, \"consistency_note\": \"%s\" }";

/* The replica's state comes first, in capitals, with its reason. */
static void test_secondary_epochs(void **state)
{
    (void)state;
    char reply[1024];
    struct view v;

    snprintf(reply, sizeof(reply), secondary_epochs, "true", 0, "");
    view(reply, strlen(reply), BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "role        secondary\nreplica     CONSISTENT at epoch 41\n"));
    assert_non_null(strstr(v.out, "epochs      applied 41, committed 42\n"));
    assert_non_null(strstr(v.out, "journal     1.0 MiB of 256.0 MiB\n"));
    assert_non_null(strstr(v.out, "protocol    version 2\n"));
    assert_null(strstr(v.out, "INCONSISTENT"));
    assert_null(strstr(v.out, "oversize"));
    free(v.out);

    snprintf(reply, sizeof(reply), secondary_epochs, "false", 3, "oversize \\u001b[2J");
    view(reply, strlen(reply), BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "replica     INCONSISTENT — oversize \\x1b[2J\n"));
    assert_null(strstr(v.out, " CONSISTENT"));
    assert_non_null(strstr(v.out, "oversize    3 epoch(s) larger than the journal"));
    free(v.out);

    /* Without the fields (an older secondary): no claim either way. */
    view(secondary, sizeof(secondary) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_null(strstr(v.out, "CONSISTENT"));
    assert_null(strstr(v.out, "epochs"));
    free(v.out);

    expect_refused("{ \"schema\": 1, \"role\": \"secondary\", \"connected\": true, "
                   "\"dirty_bytes\": null, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": null, \"replica_consistent\": \"yes\" }",
                   -EBADMSG, "\"replica_consistent\" is a string, not a boolean");
}

static const char primary_epochs[] =
    "{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, \"dirty_bytes\": 0, "
    "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": 100, "
    "\"epoch\": 12, \"committed_epoch\": 11, \"lag_ms\": 140, \"mode\": \"async\", "
    "\"cow\": { \"bytes_now\": 65536, \"bytes_peak\": 1048576, \"max_bytes\": 67108864, "
    "\"preserved\": 16, \"waits\": 2, \"wait_ms\": 7, \"breaks\": 1, \"broken\": true } }";

static void test_primary_epochs(void **state)
{
    (void)state;
    struct view v;

    view(primary_epochs, sizeof(primary_epochs) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "mode        async\n"));
    assert_non_null(strstr(v.out, "epoch       12, committed 11, lag 140 ms\n"));
    assert_non_null(strstr(v.out, "cow         bytes_now 64.0 KiB, bytes_peak 1.0 MiB, max_bytes "
                                  "64.0 MiB, preserved 16, waits 2, wait_ms 7, breaks 1, broken "
                                  "yes\n"));
    assert_null(strstr(v.out, "CONSISTENT"));
    free(v.out);

    /* Absent members are simply not shown. */
    static const char some[] =
        "{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, \"dirty_bytes\": 0, "
        "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": 100, "
        "\"lag_ms\": 5, \"cow\": { \"breaks\": 0 } }";
    view(some, sizeof(some) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "epoch       lag 5 ms\n"));
    assert_non_null(strstr(v.out, "cow         breaks 0\n"));
    assert_null(strstr(v.out, "mode"));
    free(v.out);

    expect_refused("{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, "
                   "\"dirty_bytes\": 0, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": 100, \"cow\": { \"waits\": -1 } }",
                   -EBADMSG, "\"waits\" is -1, outside");
    expect_refused("{ \"schema\": 1, \"role\": \"primary\", \"connected\": true, "
                   "\"dirty_bytes\": 0, \"inflight_bytes\": 0, \"sent_bytes\": 0, "
                   "\"acked_bytes\": 0, \"sync_percent\": 100, \"cow\": 3 }",
                   -EBADMSG, "\"cow\" is a number, not an object");
}

/* A checksum resync and a split brain are said in words; their absence
 * says nothing. */
static void test_resync_and_split_brain(void **state)
{
    (void)state;
    static const char busy[] =
        "{ \"schema\": 1, \"role\": \"primary\", \"connected\": false, \"dirty_bytes\": 0, "
        "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": 0, "
        "\"resync\": \"checksum\", \"resync_reason\": \"the write log restarted\", "
        "\"checksum_percent\": 12.50, \"checksum_differing_bytes\": 65536, "
        "\"split_brain\": true, \"split_brain_peer_generation\": 4711 }\n";
    static const char quiet[] =
        "{ \"schema\": 1, \"role\": \"secondary\", \"connected\": false, \"dirty_bytes\": null, "
        "\"inflight_bytes\": 0, \"sent_bytes\": 0, \"acked_bytes\": 0, \"sync_percent\": null, "
        "\"split_brain\": false, \"checksum_required\": true }\n";
    struct view v;

    view(busy, sizeof(busy) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_non_null(strstr(v.out, "resync      CHECKSUM: 12.50% of the disk compared, 65536 bytes "
                                  "differ (the write log restarted)\n"));
    assert_non_null(strstr(v.out, "SPLIT BRAIN both disks changed since they parted; the other "
                                  "side holds generation 4711"));
    free(v.out);
    view(quiet, sizeof(quiet) - 1, BS_STATUS_HUMAN, &v);
    assert_int_equal(v.r, 0);
    assert_null(strstr(v.out, "SPLIT BRAIN"));
    assert_null(strstr(v.out, "CHECKSUM"));
    assert_non_null(strstr(v.out, "resolved    split brain resolved here"));
    free(v.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_human),
        cmocka_unit_test(test_secondary_human),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_terminal_escapes),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_error_escaped),
        cmocka_unit_test(test_secondary_epochs),
        cmocka_unit_test(test_primary_epochs),
        cmocka_unit_test(test_resync_and_split_brain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
