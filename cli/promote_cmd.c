/* `blkship promote`: asks blkship-secondary to hand its replica over as a
 * primary's disk (docs/failover.md) and prints what it holds and what to
 * do next. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/opt.h"

static void promote_usage(FILE *f)
{
    fputs("Usage: blkship promote --control SOCK [--force] [--timeout DURATION] [--json]\n"
          "\n"
          "Promotes the replica of blkship-secondary: once no primary session is alive,\n"
          "the secondary refuses primaries, applies every committed epoch its journal\n"
          "holds, records a new generation and releases the device.  Prints the\n"
          "committed epoch the device holds and the next steps (exit status 0), or why\n"
          "it did not (exit status 1): a primary session is alive, or the replica is\n"
          "not consistent.  --force promotes an inconsistent replica anyway: the disk\n"
          "is then no point in time of the primary's (a full sync, an oversize epoch or\n"
          "an apply was interrupted), and file systems on it may need repair.\n"
          "--timeout bounds the wait (default 2m).\n",
          f);
}

static const char *get_str(struct json_object *obj, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

int cmd_promote(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "force", no_argument, NULL, 'f' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL, *e;
    uint64_t timeout_ms = 120000;
    bool json = false, force = false;
    struct json_object *obj = NULL, *v;
    char reply[16384], err[256], key[16];
    int opt, len;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 'f': force = true; break;
        case 't':
            if (bs_opt_duration_ms("--timeout", optarg, 1000, 1, 3600000, &timeout_ms) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'j': json = true; break;
        case 'h': promote_usage(stdout); return BS_EXIT_OK;
        default: promote_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || optind != argc) {
        promote_usage(stderr);
        return BS_EXIT_USAGE;
    }
    len = bs_ctl_call_timeout(control, force ? "promote force" : "promote", reply, sizeof(reply),
                              (int)timeout_ms);
    if (len < 0) {
        fprintf(stderr, "blkship promote: %s: %s\n", control,
                len == -ETIMEDOUT ? "no answer within the timeout" : strerror(-len));
        return BS_EXIT_FAILURE;
    }
    if (bs_json_parse(reply, (size_t)len, &obj, err, sizeof(err)) < 0 ||
        !json_object_is_type(obj, json_type_object)) {
        fprintf(stderr, "blkship promote: %s: the reply is not a JSON object: %s\n", control, err);
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if ((e = get_str(obj, "error"))) {
        fprintf(stderr, "blkship promote: %s\n", e);
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (!json_object_object_get_ex(obj, "epoch", &v) || !json_object_is_type(v, json_type_int)) {
        fprintf(stderr, "blkship promote: %s: the reply names no epoch\n", control);
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (json) {
        fputs(reply, stdout);
    } else {
        printf("promoted: %s holds committed epoch %llu (generation %s)\n",
               get_str(obj, "device") ? get_str(obj, "device") : "?",
               (unsigned long long)json_object_get_uint64(v),
               get_str(obj, "generation") ? get_str(obj, "generation") : "?");
        if (json_object_object_get_ex(obj, "forced", &v) && json_object_get_boolean(v))
            printf("FORCED: the replica was not consistent; it is no point in time of the "
                   "primary's disk\n");
        printf("next steps:\n");
        for (int i = 1; i <= 9; i++) {
            snprintf(key, sizeof(key), "next_%d", i);
            if (!(e = get_str(obj, key)))
                break;
            printf("  %d. %s\n", i, e);
        }
    }
    json_object_put(obj);
    return BS_EXIT_OK;
}
