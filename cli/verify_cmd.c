/* `blkship verify`: asks blkship-primary to compare the replica with its
 * disk by block checksums while replication goes on (docs/verify.md), and
 * prints the ranges that differ. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/blkship.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/opt.h"

#define VERIFY_EXIT_DIFFER 1
#define VERIFY_EXIT_ERROR 3

static void verify_usage(FILE *f)
{
    fputs("Usage: blkship verify --control SOCK [--start OFFSET] [--length LENGTH]\n"
          "                      [--rate BYTES/S] [--repair] [--timeout DURATION] [--json]\n"
          "\n"
          "Compares the replica with the primary's disk by block checksums while\n"
          "replication goes on (SOCK is blkship-primary's control socket).  A block\n"
          "written while it is being compared is checked again once that write has\n"
          "reached the replica, so concurrent writes are never reported.  Prints the\n"
          "merged ranges that differ; --repair marks them dirty, so that they are sent\n"
          "again.  OFFSET and LENGTH are bytes (512 multiples; K, M, G, T units);\n"
          "--rate bounds the read rate (default: none); --timeout bounds the wait\n"
          "(default: none).\n"
          "\n"
          "Exit status: 0 the range is identical, 1 it differs, 2 usage error, 3 the\n"
          "verify could not run or finish.\n",
          f);
}

static uint64_t get_u64(struct json_object *obj, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(obj, key, &v) ? json_object_get_uint64(v) : 0;
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "start", required_argument, NULL, 's' },
        { "length", required_argument, NULL, 'l' },
        { "rate", required_argument, NULL, 'r' },
        { "repair", no_argument, NULL, 'R' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    uint64_t start = 0, length = 0, rate = 0, timeout_ms = 0;
    bool json = false, repair = false;
    struct json_object *obj = NULL, *v, *ranges;
    static char reply[1 << 20];
    char req[128], err[256];
    int opt, len;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 's':
            if (bs_opt_size("--start", optarg, 0, UINT64_MAX / 2, &start) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'l':
            if (bs_opt_size("--length", optarg, 1, UINT64_MAX / 2, &length) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'r':
            if (bs_opt_size("--rate", optarg, 1 << 20, UINT64_MAX / 2, &rate) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'R': repair = true; break;
        case 't':
            if (bs_opt_duration_ms("--timeout", optarg, 1000, 1000, 7 * 24 * 3600000ull,
                                   &timeout_ms) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'j': json = true; break;
        case 'h': verify_usage(stdout); return BS_EXIT_OK;
        default: verify_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || optind != argc) {
        verify_usage(stderr);
        return BS_EXIT_USAGE;
    }
    snprintf(req, sizeof(req), "verify %" PRIu64 " %" PRIu64 " %" PRIu64 " %d", start, length,
             rate, repair ? 1 : 0);
    len = bs_ctl_call_timeout(control, req, reply, sizeof(reply), timeout_ms ? (int)timeout_ms : -1);
    if (len < 0) {
        fprintf(stderr, "blkship verify: %s: %s\n", control,
                len == -ETIMEDOUT ? "no answer within the timeout" : strerror(-len));
        return VERIFY_EXIT_ERROR;
    }
    if (bs_json_parse(reply, (size_t)len, &obj, err, sizeof(err)) < 0 ||
        !json_object_is_type(obj, json_type_object)) {
        fprintf(stderr, "blkship verify: %s: the reply is not a JSON object: %s\n", control, err);
        json_object_put(obj);
        return VERIFY_EXIT_ERROR;
    }
    if (json_object_object_get_ex(obj, "error", &v)) {
        if (json)
            fputs(reply, stdout);
        fprintf(stderr, "blkship verify: %s\n", json_object_get_string(v));
        json_object_put(obj);
        return VERIFY_EXIT_ERROR;
    }
    bool identical = json_object_object_get_ex(obj, "identical", &v) && json_object_get_boolean(v);
    if (json) {
        fputs(reply, stdout);
    } else {
        uint64_t ms = get_u64(obj, "elapsed_ms"), cmp = get_u64(obj, "compared_bytes");
        printf("verify: %s: %" PRIu64 " bytes compared in %.1f s (%.0f MB/s)", identical ? "identical" : "DIFFERENT",
               cmp, (double)ms / 1000.0, ms ? (double)cmp / 1000.0 / (double)ms : 0.0);
        if (!identical)
            printf(", %" PRIu64 " bytes differ", get_u64(obj, "differing_bytes"));
        putchar('\n');
        if (get_u64(obj, "unverified_bytes"))
            printf("not checked: %" PRIu64 " bytes were written at every try\n",
                   get_u64(obj, "unverified_bytes"));
        if (json_object_object_get_ex(obj, "ranges", &ranges) &&
            json_object_is_type(ranges, json_type_array)) {
            size_t n = json_object_array_length(ranges);
            for (size_t i = 0; i < n; i++) {
                struct json_object *r = json_object_array_get_idx(ranges, i);
                printf("  differs: offset %" PRIu64 " length %" PRIu64 "\n", get_u64(r, "offset"),
                       get_u64(r, "length"));
            }
        }
        if (json_object_object_get_ex(obj, "repaired", &v) && json_object_get_boolean(v))
            printf("repair: the differing ranges are marked dirty and will be sent again\n");
    }
    json_object_put(obj);
    return identical ? BS_EXIT_OK : VERIFY_EXIT_DIFFER;
}
