/* `blkship checkpoint`: asks blkship-primary to seal an epoch now and
 * waits until the secondary has committed it.  With --count, asks for
 * checkpoint after checkpoint on one connection, as a toolstack would. */
#include <errno.h>
#include <getopt.h>
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

static void checkpoint_usage(FILE *f)
{
    fputs("Usage: blkship checkpoint --control SOCK [--timeout DURATION] [--json]\n"
          "                          [--count N [--every DURATION]]\n"
          "\n"
          "Seals an epoch on blkship-primary and returns once the secondary has\n"
          "committed it: prints the epoch (exit status 0), or the reason it could not\n"
          "be (no link, a broken epoch, the timeout; exit status 1).  --timeout is\n"
          "the agent's limit for each checkpoint (default 10s).  --count N asks for N\n"
          "checkpoints on one connection, one every --every (default 0: back to\n"
          "back), and prints one line per checkpoint: the epoch and the milliseconds\n"
          "from request to commit.  --json prints the agent's replies as they are.\n",
          f);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One reply: 0 with *epoch set, or 1 after printing the reason. */
static int judge(const char *control, const char *reply, int len, uint64_t *epoch)
{
    struct json_object *obj = NULL, *v;
    char err[256];

    if (bs_json_parse(reply, (size_t)len, &obj, err, sizeof(err)) < 0 ||
        !json_object_is_type(obj, json_type_object)) {
        fprintf(stderr, "blkship checkpoint: %s: the reply is not a JSON object: %s\n", control,
                err);
        json_object_put(obj);
        return 1;
    }
    if (json_object_object_get_ex(obj, "error", &v)) {
        fprintf(stderr, "blkship checkpoint: %s\n", json_object_get_string(v));
        json_object_put(obj);
        return 1;
    }
    if (!json_object_object_get_ex(obj, "epoch", &v) || !json_object_is_type(v, json_type_int)) {
        fprintf(stderr, "blkship checkpoint: %s: the reply names no epoch\n", control);
        json_object_put(obj);
        return 1;
    }
    *epoch = json_object_get_uint64(v);
    json_object_put(obj);
    return 0;
}

int cmd_checkpoint(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "timeout", required_argument, NULL, 't' },
        { "count", required_argument, NULL, 'n' },
        { "every", required_argument, NULL, 'e' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    uint64_t timeout_ms = 10000, count = 1, every_ms = 0;
    bool json = false, many = false;
    char request[64], reply[1024];
    int opt, fd, rc = 0;

    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 't':
            if (bs_opt_duration_ms("--timeout", optarg, 1000, 1, 3600000, &timeout_ms) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'n':
            if (bs_opt_u64("--count", optarg, 1, 10000000, &count) < 0)
                return BS_EXIT_USAGE;
            many = true;
            break;
        case 'e':
            if (bs_opt_duration_ms("--every", optarg, 1, 0, 3600000, &every_ms) < 0)
                return BS_EXIT_USAGE;
            break;
        case 'j': json = true; break;
        case 'h': checkpoint_usage(stdout); return BS_EXIT_OK;
        default: checkpoint_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (!control || optind != argc) {
        checkpoint_usage(stderr);
        return BS_EXIT_USAGE;
    }
    fd = bs_ctl_connect(control);
    if (fd < 0) {
        fprintf(stderr, "blkship checkpoint: %s: %s\n", control, strerror(-fd));
        return BS_EXIT_FAILURE;
    }
    snprintf(request, sizeof(request), "checkpoint %llu", (unsigned long long)timeout_ms);
    double next = now_ms();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t epoch = 0;
        double t0 = now_ms();
        /* The agent answers within its timeout; a second more for the way. */
        int len = bs_ctl_request(fd, request, reply, sizeof(reply), (int)timeout_ms + 1000);

        if (len < 0) {
            fprintf(stderr, "blkship checkpoint: %s: %s\n", control,
                    len == -ECONNRESET ? "the agent closed the connection" : strerror(-len));
            rc = 1;
            break;
        }
        if (json)
            fputs(reply, stdout);
        if (judge(control, reply, len, &epoch) != 0) {
            rc = 1;
            if (!many)
                break;
            continue;
        }
        if (!json) {
            if (many)
                printf("%llu %.3f\n", (unsigned long long)epoch, now_ms() - t0);
            else
                printf("%llu\n", (unsigned long long)epoch);
        }
        next += (double)every_ms;
        double wait = next - now_ms();
        if (every_ms && wait > 0 && i + 1 < count)
            usleep((useconds_t)(wait * 1000));
    }
    close(fd);
    if (fflush(stdout) == EOF) {
        fprintf(stderr, "blkship checkpoint: writing the output: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}
