/* `blkship resolve` and `blkship demote`, the commands that give up this
 * side's role.  `blkship resolve` ends a split brain (docs/failover.md) on the side
 * whose changes are to go.  On a promoted blkship-secondary it gives up
 * the replica's own changes and takes the old primary's line again (by a
 * checksum resync); on a blkship-primary it stops the link and prints the
 * steps that turn its disk into the other side's replica.  `blkship
 * demote` makes a primary's disk a replica-to-be that keeps its bitmap
 * (docs/failover.md, "Demote"). */
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

/* Sends verb, prints the reply's headline and its next_N steps (or the
 * JSON).  The exit status of both commands. */
static int call_and_print(const char *cmd, const char *control, const char *verb, bool json)
{
    struct json_object *obj = NULL, *v;
    char reply[8192], err[256], key[16];
    int len;

    len = bs_ctl_call_timeout(control, verb, reply, sizeof(reply), 60000);
    if (len < 0) {
        fprintf(stderr, "blkship %s: %s: %s\n", cmd, control,
                len == -ETIMEDOUT ? "no answer within the timeout" : strerror(-len));
        return BS_EXIT_FAILURE;
    }
    if (bs_json_parse(reply, (size_t)len, &obj, err, sizeof(err)) < 0 ||
        !json_object_is_type(obj, json_type_object)) {
        fprintf(stderr, "blkship %s: %s: the reply is not a JSON object: %s\n", cmd, control, err);
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (json_object_object_get_ex(obj, "error", &v)) {
        fprintf(stderr, "blkship %s: %s\n", cmd, json_object_get_string(v));
        json_object_put(obj);
        return BS_EXIT_FAILURE;
    }
    if (json) {
        fputs(reply, stdout);
    } else {
        const char *gen = json_object_object_get_ex(obj, "generation", &v)
                              ? json_object_get_string(v) : "?";
        if (strcmp(cmd, "demote") == 0) {
            struct json_object *c, *b;
            printf("demoted: this disk is to become a replica (its changes against generation "
                   "%s: %s, %s bytes)\n", gen,
                   json_object_object_get_ex(obj, "changes", &c) ? json_object_get_string(c) : "?",
                   json_object_object_get_ex(obj, "changed_bytes", &b) ? json_object_get_string(b)
                                                                      : "?");
        } else {
            printf("resolved: the changes made here are discarded (this side now holds "
                   "generation %s)\n", gen);
        }
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
    int opt;

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
    return call_and_print("resolve", control, "resolve discard-local", json);
}

static void demote_usage(FILE *f)
{
    fputs("Usage: blkship demote --control SOCK [--json]\n"
          "\n"
          "Turns a blkship-primary's disk into the replica of the side that was promoted,\n"
          "keeping what its dirty bitmap knows: the write log is frozen (every later write\n"
          "fails), drained into the bitmap, and the bitmap's extents recorded in the state\n"
          "directory; then the agent stops.  blkship-secondary started on that state\n"
          "directory sends them to the new primary, which resends only those and what it\n"
          "wrote since the promotion.  Refused while a secondary has a session.  Stop the\n"
          "guest first.  Exit status 0 when demoted, 1 when refused (with the reason).\n",
          f);
}

int cmd_demote(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool json = false;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 'j': json = true; break;
        case 'h': demote_usage(stdout); return BS_EXIT_OK;
        default: demote_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || optind != argc) {
        demote_usage(stderr);
        return BS_EXIT_USAGE;
    }
    return call_and_print("demote", control, "demote", json);
}
