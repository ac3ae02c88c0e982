/* `blkship writelog-exec RESOURCE | --config FILE [--print]`: becomes
 * nbdkit serving the resource's disk through the writelog filter, as
 * [writelog] of its configuration says (docs/config.md).  It is the
 * ExecStart= of blkship-writelog@.service: it execs, so nbdkit is the
 * unit's main process, and the filter's READY=1 is nbdkit's.
 *
 * The command is
 *   nbdkit -f --filter=FILTER PLUGIN DISK writelog-name=NAME
 *          writelog-dir=DIR [writelog-grain=... ...] -U SOCKET
 * with nbdkit from $NBDKIT (default: nbdkit on the PATH) and FILTER from
 * $BLKSHIP_WRITELOG_FILTER (default "writelog": the filter installed in
 * nbdkit's filter directory). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "cli/writelog_conf.h"
#include "common/agentopt.h"
#include "common/opt.h"

#define MAX_ARGS 24 /* with the terminating NULL */

static void exec_usage(FILE *f)
{
    fputs("Usage: blkship writelog-exec RESOURCE [--print]\n"
          "       blkship writelog-exec --config FILE [--print]\n"
          "\n"
          "Runs nbdkit in the foreground, serving the disk of the resource's [writelog]\n"
          "section with the writelog filter (RESOURCE.conf in /etc/blkship, or\n"
          "BLKSHIP_CONFIG_DIR).  --print shows the command instead of running it.\n"
          "Environment: NBDKIT (the nbdkit program), BLKSHIP_WRITELOG_FILTER (the\n"
          "filter's name or path; default writelog).  Exit status 2 for a bad\n"
          "configuration; otherwise nbdkit's.\n",
          f);
}

struct argv_builder {
    char *args[MAX_ARGS];
    bool owned[MAX_ARGS];
    int n;
    bool oom;
};

static void add(struct argv_builder *a, const char *s)
{
    a->owned[a->n] = false;
    a->args[a->n++] = (char *)s;
}

/* Adds "key=val" (allocated). */
static void add_param(struct argv_builder *a, const char *key, const char *val)
{
    size_t len = strlen(key) + strlen(val) + 2;
    char *s = malloc(len);

    if (!s) {
        a->oom = true;
        return;
    }
    snprintf(s, len, "%s=%s", key, val);
    a->owned[a->n] = true;
    a->args[a->n++] = s;
}

static void free_args(struct argv_builder *a)
{
    for (int i = 0; i < a->n; i++)
        if (a->owned[i])
            free(a->args[i]);
}

int cmd_writelog_exec(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "print", no_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *file = NULL;
    const char *nbdkit = getenv("NBDKIT"), *filter = getenv("BLKSHIP_WRITELOG_FILTER");
    char path[4096];
    struct argv_builder a = { .n = 0 };
    struct wl_conf wc;
    bool print = false;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 'P': print = true; break;
        case 'h': exec_usage(stdout); return BS_EXIT_OK;
        default: exec_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (file && optind == argc) {
        snprintf(path, sizeof(path), "%s", file);
    } else if (file || optind != argc - 1 ||
               !bs_config_resource_path(argv[optind], path, sizeof(path))) {
        exec_usage(stderr);
        return BS_EXIT_USAGE;
    }
    if (wl_conf_load(path, &wc) < 0)
        return BS_EXIT_USAGE;
    if (!nbdkit || !*nbdkit)
        nbdkit = "nbdkit";
    if (!filter || !*filter)
        filter = "writelog";
    add(&a, nbdkit);
    add(&a, "-f");
    add_param(&a, "--filter", filter);
    add(&a, wc.plugin);
    add(&a, wc.disk);
    add_param(&a, "writelog-name", wc.name);
    add_param(&a, "writelog-dir", wc.dir);
    if (wc.grain)
        add_param(&a, "writelog-grain", wc.grain);
    if (wc.readers)
        add_param(&a, "writelog-readers", wc.readers);
    if (wc.cow_max)
        add_param(&a, "writelog-cow-max", wc.cow_max);
    if (wc.cow_wait)
        add_param(&a, "writelog-cow-wait", wc.cow_wait);
    add(&a, "-U");
    add(&a, wc.socket);
    a.args[a.n] = NULL;
    if (a.oom) {
        fprintf(stderr, "blkship writelog-exec: out of memory\n");
    } else if (print) {
        for (int i = 0; i < a.n; i++)
            printf("%s%s", i ? " " : "", a.args[i]);
        putchar('\n');
    } else {
        fflush(stdout);
        execvp(nbdkit, a.args);
        fprintf(stderr, "blkship writelog-exec: cannot run %s: %s\n", nbdkit, strerror(errno));
    }
    free_args(&a);
    wl_conf_free(&wc);
    return print && !a.oom ? BS_EXIT_OK : BS_EXIT_FAILURE;
}
