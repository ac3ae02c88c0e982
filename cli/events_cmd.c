/* `blkship events --control SOCK [--json] [--since SEQ] [--count N]`:
 * follows an agent's event stream (common/events.h) on one control
 * session, one line per event, until the agent stops, --count events
 * have been shown, or the session is lost. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/opt.h"

static void events_usage(FILE *f)
{
    fputs("Usage: blkship events --control SOCK [--json] [--since SEQ] [--count N]\n"
          "\n"
          "Follows the events of blkship-primary or blkship-secondary: sessions begun\n"
          "and lost (with the reason), resyncs begun and done, the replica consistent\n"
          "or not, split brains, promotions, the write log held or lost.  One line\n"
          "each: the time, the sequence number, resource, role, event, peer, the\n"
          "committed epoch and the reason; --json prints the agent's objects.\n"
          "--since SEQ starts after event SEQ (0: every event the agent still keeps,\n"
          "the last 256); by default only new events are shown.  Ends when the agent\n"
          "stops (exit status 0), after --count events (0), or when the session is\n"
          "lost (1).\n",
          f);
}

static const char *str(struct json_object *o, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static uint64_t u64(struct json_object *o, const char *key)
{
    struct json_object *v;

    return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static void print_human(struct json_object *o)
{
    uint64_t ms = u64(o, "time_ms");
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char when[32];
    const char *peer = str(o, "peer"), *reason = str(o, "reason");

    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03" PRIu64 "Z #%" PRIu64 " %s %s %s%s%s epoch=%" PRIu64 "%s%s", when, ms % 1000,
           u64(o, "seq"), str(o, "resource"), str(o, "role"), str(o, "event"),
           *peer ? " peer=" : "", peer, u64(o, "committed_epoch"), *reason ? ": " : "", reason);
    if (u64(o, "missed"))
        printf(" (%" PRIu64 " earlier events were no longer kept)", u64(o, "missed"));
    putchar('\n');
}

int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "since", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool json = false, have_since = false;
    uint64_t since = 0, count = 0, shown = 0;
    char *reply;
    int opt, fd, rc = BS_EXIT_FAILURE;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 'j': json = true; break;
        case 's':
            if (bs_opt_u64("--since", optarg, 0, UINT64_MAX, &since) < 0)
                return BS_EXIT_USAGE;
            have_since = true;
            break;
        case 'n':
            if (bs_opt_u64("--count", optarg, 1, UINT64_MAX, &count) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'h': events_usage(stdout); return BS_EXIT_OK;
        default: events_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || optind != argc) {
        events_usage(stderr);
        return BS_EXIT_USAGE;
    }
    fd = bs_ctl_connect(control);
    if (fd < 0) {
        fprintf(stderr, "blkship events: %s: %s\n", control, strerror(-fd));
        return BS_EXIT_FAILURE;
    }
    reply = malloc(BS_CTL_MAX_REPLY);
    if (!reply) {
        close(fd);
        fprintf(stderr, "blkship events: %s\n", strerror(ENOMEM));
        return BS_EXIT_FAILURE;
    }
    for (;;) {
        char req[64], err[256];
        struct json_object *o = NULL, *v;
        int n;

        if (have_since)
            snprintf(req, sizeof(req), "events %" PRIu64, since);
        else
            snprintf(req, sizeof(req), "events");
        n = bs_ctl_request(fd, req, reply, BS_CTL_MAX_REPLY, -1);
        if (n < 0) {
            fprintf(stderr, "blkship events: %s: %s\n", control,
                    n == -ECONNRESET ? "the agent closed the session" : strerror(-n));
            break;
        }
        if (bs_json_parse(reply, (size_t)n, &o, err, sizeof(err)) < 0 ||
            !json_object_is_type(o, json_type_object)) {
            fprintf(stderr, "blkship events: %s: not an event: %s\n", control, err);
            json_object_put(o);
            break;
        }
        if (json_object_object_get_ex(o, "error", &v)) {
            fprintf(stderr, "blkship events: %s: %s\n", control, json_object_get_string(v));
            json_object_put(o);
            break;
        }
        if (json)
            fputs(reply, stdout);
        else
            print_human(o);
        fflush(stdout);
        since = u64(o, "seq");
        have_since = true;
        shown++;
        if (strcmp(str(o, "event"), "stopping") == 0 || (count && shown == count)) {
            rc = BS_EXIT_OK;
            json_object_put(o);
            break;
        }
        json_object_put(o);
    }
    free(reply);
    close(fd);
    return rc;
}
