/* `blkship status`: asks an agent's control socket for its state and
 * shows it as a person would want it (or passes the JSON through). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "common/ctl.h"

static void status_usage(FILE *f)
{
    fputs("Usage: blkship status --control SOCK [--json] [--watch]\n"
          "\n"
          "Shows the state of blkship-primary or blkship-secondary through its control\n"
          "socket.  --json prints the agent's JSON as is; --watch refreshes every second.\n",
          f);
}

/* Finds "key": in a flat JSON object and returns a pointer to its value. */
static const char *json_value(const char *json, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    return p;
}

static double json_num(const char *json, const char *key)
{
    const char *v = json_value(json, key);

    return v && strncmp(v, "null", 4) != 0 ? strtod(v, NULL) : -1;
}

static bool json_true(const char *json, const char *key)
{
    const char *v = json_value(json, key);

    return v && strncmp(v, "true", 4) == 0;
}

static void json_str(const char *json, const char *key, char *out, size_t size)
{
    const char *v = json_value(json, key);
    size_t n = 0;

    out[0] = '\0';
    if (!v || *v != '"')
        return;
    v++;
    while (v[n] && v[n] != '"' && n + 1 < size)
        n++;
    memcpy(out, v, n);
    out[n] = '\0';
}

static void human_bytes(double b, char *out, size_t size)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    int u = 0;

    while (b >= 1024 && u < 5) {
        b /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void print_human(const char *json)
{
    char role[32], state[32], peer[128], a[32], b[32], c[32];
    double pct = json_num(json, "sync_percent");
    double dirty = json_num(json, "dirty_bytes");
    double rate = json_num(json, "rate_bytes_per_sec");
    double eta = json_num(json, "eta_seconds");

    json_str(json, "role", role, sizeof(role));
    json_str(json, "state", state, sizeof(state));
    json_str(json, "peer", peer, sizeof(peer));
    printf("role        %s\n", role);
    printf("connected   %s%s%s\n", json_true(json, "connected") ? "yes" : "no",
           peer[0] ? " — " : "", peer);
    if (state[0])
        printf("state       %s\n", state);
    if (pct >= 0) {
        int width = 40, fill = (int)(pct / 100.0 * width + 0.5);
        printf("in sync     [");
        for (int i = 0; i < width; i++)
            putchar(i < fill ? '#' : '.');
        printf("] %.1f%%\n", pct);
    }
    if (dirty >= 0) {
        human_bytes(dirty, a, sizeof(a));
        printf("dirty       %s\n", a);
    }
    human_bytes(json_num(json, "sent_bytes"), a, sizeof(a));
    human_bytes(json_num(json, "acked_bytes"), b, sizeof(b));
    human_bytes(json_num(json, "inflight_bytes"), c, sizeof(c));
    printf("sent        %s, durable on the replica %s, in flight %s\n", a, b, c);
    if (rate >= 0) {
        human_bytes(rate, a, sizeof(a));
        if (eta >= 0 && dirty > 0)
            printf("rate        %s/s, ETA %.0f s\n", a, eta);
        else
            printf("rate        %s/s\n", a);
    }
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "watch", no_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *control = NULL;
    bool json = false, watch = false;
    char reply[BS_CTL_MAX_REPLY];
    int opt, r;

    while ((opt = getopt_long(argc, argv, "c:jwh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': control = optarg; break;
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
    for (;;) {
        r = bs_ctl_call(control, "status", reply, sizeof(reply));
        if (r < 0) {
            fprintf(stderr, "blkship status: %s: %s\n", control, strerror(-r));
            return 1;
        }
        if (json)
            fputs(reply, stdout);
        else
            print_human(reply);
        if (!watch)
            return 0;
        fflush(stdout);
        sleep(1);
        if (!json)
            printf("\n");
    }
}
