/* `blkship status`: asks an agent's control socket for its state and
 * shows it through status_view.c, as a person would want it or as JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "cli/status_health.h"
#include "cli/status_view.h"
#include "common/ctl.h"

static void status_usage(FILE *f)
{
    fputs("Usage: blkship status --control SOCK [--json] [--watch]\n"
          "\n"
          "Shows the state of blkship-primary or blkship-secondary through its control\n"
          "socket.  --json prints the agent's JSON (checked, on one line); --watch\n"
          "refreshes every second.  A reply that is not a valid status is an error\n"
          "(exit status 1).  Without --watch the exit status tells the resource's\n"
          "health: 0 replicating, 3 degraded (no peer, no write log, promoted), 4 syncing\n"
          "(the replica is not yet a copy), 5 split brain or a promoted peer (an\n"
          "operator decides); --quiet prints nothing else.\n",
          f);
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "watch", no_argument, NULL, 'w' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool json = false, watch = false, quiet = false;
    int health = 0;
    char err[1024];
    char *reply;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "c:jwqh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
        case 'q': quiet = true; break;
        case 'j': json = true; break;
        case 'w': watch = true; break;
        case 'h': status_usage(stdout); return 0;
        default: status_usage(stderr); return 2;
        }
    }
    if (!control || optind != argc) {
        status_usage(stderr);
        return 2;
    }
    reply = malloc(BS_CTL_MAX_REPLY);
    if (!reply) {
        fprintf(stderr, "blkship status: %s\n", strerror(ENOMEM));
        return 1;
    }
    for (;;) {
        r = bs_ctl_call(control, "status", reply, BS_CTL_MAX_REPLY);
        if (r < 0) {
            fprintf(stderr, "blkship status: %s: %s\n", control,
                    r == -EMSGSIZE ? "the reply is longer than a status can be" : strerror(-r));
            break;
        }
        size_t len = (size_t)r;
        r = bs_status_view(reply, len, json ? BS_STATUS_JSON : BS_STATUS_HUMAN,
                           quiet ? NULL : stdout, err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "blkship status: %s: %s\n", control, err);
            break;
        }
        health = bs_status_health(reply, len, err, sizeof(err));
        if (health < 0) {
            r = health;
            fprintf(stderr, "blkship status: %s: not a status\n", control);
            break;
        }
        if (!watch)
            break;
        fflush(stdout);
        sleep(1);
        if (!json)
            printf("\n");
    }
    free(reply);
    if (fflush(stdout) == EOF && r == 0) {
        fprintf(stderr, "blkship status: writing the output: %s\n", strerror(errno));
        r = -EIO;
    }
    if (r < 0)
        return 1;
    if (quiet && health)
        fprintf(stderr, "blkship status: %s\n", err);
    return watch ? 0 : health;
}
