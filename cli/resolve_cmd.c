/* `blkship resolve`: ends a split brain (docs/failover.md) on the side
 * whose changes are to go.  On a promoted blkship-secondary it gives up
 * the replica's own changes and takes the old primary's line again (by a
 * checksum resync); on a blkship-primary it stops the link and prints the
 * steps that turn its disk into the other side's replica. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/blkship.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/opt.h"

static void resolve_usage(FILE *f)
{
    fputs("Usage: blkship resolve --control SOCK --discard-local [--json]\n"
          "\n"
          "Ends a split brain on this side, giving up what changed here since the two\n"
          "sides parted (nothing is discarded without this command).  On a promoted\n"
          "blkship-secondary: once nothing else holds its device, it takes the old\n"
          "primary's data line again, and that primary's next session compares checksums\n"
          "and overwrites what changed here.  On a blkship-primary in split brain: it\n"
          "stops connecting and prints the steps that make its disk the other side's\n"
          "replica.  Exit status 0 when resolved, 1 when refused (with the reason).\n",
          f);
}

int cmd_resolve(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "discard-local", no_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool json = false, discard = false;
    struct json_object *obj = NULL, *v;
    char reply[8192], err[256], key[16];
    int opt, len;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 'd': discard = true; break;
        case 'j': json = true; break;
        case 'h': resolve_usage(stdout); return BS_EXIT_OK;
        default: resolve_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || !discard || optind != argc) {
        if (control && !discard && optind == argc)
            fprintf(stderr, "blkship resolve: say which changes go: --discard-local, on the "
                            "side whose changes are to be given up\n");
        resolve_usage(stderr);
        return BS_EXIT_USAGE;
    }
    len = bs_ctl_call_timeout(control, "resolve discard-local", reply, sizeof(reply), 30000);
    if (len < 0) {
        fprintf(stderr, "blkship resolve: %s: %s\n", control,
                len == -ETIMEDOUT ? "no answer within the timeout" : strerror(-len));
        return BS_EXIT_FAILURE;
    }
    if (bs_json_parse(reply, (size_t)len, &obj, err, sizeof(err)) < 0 ||
        !json_object_is_type(obj, json_type_object)) {
        fprintf(stderr, "blkship resolve: %s: the reply is not a JSON object: %s\n", control, err);
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (json_object_object_get_ex(obj, "error", &v)) {
        fprintf(stderr, "blkship resolve: %s\n", json_object_get_string(v));
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (json) {
        fputs(reply, stdout);
    } else {
        printf("resolved: the changes made here are discarded (this side now holds generation "
               "%s)\n",
               json_object_object_get_ex(obj, "generation", &v) ? json_object_get_string(v) : "?");
        printf("next steps:\n");
        for (int i = 1; i <= 9; i++) {
            snprintf(key, sizeof(key), "next_%d", i);
            if (!json_object_object_get_ex(obj, key, &v))
                break;
            printf("  %d. %s\n", i, json_object_get_string(v));
        }
    }
    json_object_put(obj);
    return BS_EXIT_OK;
}
