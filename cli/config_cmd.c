/* `blkship config check RESOURCE | --config FILE`: validates a resource's
 * configuration file (docs/config.md) without starting anything.  The
 * file's syntax and sections are checked here; each agent section is
 * checked by that agent itself (blkship-primary / blkship-secondary
 * --check-config: the same parsing as at start, certificates loaded), and
 * [writelog] against the filter's parameters. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/blkship.h"
#include "cli/writelog_conf.h"
#include "common/config.h"
#include "common/opt.h"

static void config_usage(FILE *f)
{
    fputs("Usage: blkship config check RESOURCE\n"
          "       blkship config check --config FILE\n"
          "\n"
          "Validates a resource's configuration (RESOURCE.conf in /etc/blkship, or\n"
          "BLKSHIP_CONFIG_DIR) without starting anything: its syntax and sections, every\n"
          "key and value of [primary] and [secondary] (each checked by that agent, which\n"
          "also loads the certificates), and [writelog].  Errors are FILE:LINE: key:\n"
          "reason.  Exit status 0 when valid, 2 when not.\n",
          f);
}

static int check_writelog(const char *path)
{
    struct wl_conf wc;

    if (wl_conf_load(path, &wc) < 0)
        return -1;
    wl_conf_free(&wc);
    return 0;
}

/* The agent next to this program: BLKSHIP_PRIMARY / BLKSHIP_SECONDARY, or
 * the installed (../sbin) or built (../primary) layout. */
static int find_agent(const char *name, const char *env, char *out, size_t size)
{
    char self[PATH_MAX], *dir;
    ssize_t n;

    if (getenv(env) && *getenv(env)) {
        snprintf(out, size, "%s", getenv(env));
        return 0;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return -errno;
    self[n] = '\0';
    dir = dirname(self);
    for (int i = 0; i < 3; i++) {
        int w;
        if (i == 0)
            w = snprintf(out, size, "%s/%s", dir, name);
        else if (i == 1)
            w = snprintf(out, size, "%s/../sbin/%s", dir, name);
        else
            w = snprintf(out, size, "%s/../%s/%s", dir, name + strlen("blkship-"), name);
        if (w > 0 && (size_t)w < size && access(out, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

static int run_agent_check(const char *name, const char *env, const char *path)
{
    char exe[PATH_MAX];
    int status;
    pid_t pid;

    if (find_agent(name, env, exe, sizeof(exe)) < 0) {
        fprintf(stderr, "blkship config: %s not found (set %s)\n", name, env);
        return -1;
    }
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl(exe, name, "--config", path, "--check-config", (char *)NULL);
        fprintf(stderr, "blkship config: %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int cmd_config(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *file = NULL;
    char path[4096];
    struct bs_config cfg;
    int opt, bad = 0;

    if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
        config_usage(stdout);
        return BS_EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "check") != 0) {
        config_usage(stderr);
        return BS_EXIT_USAGE;
    }
    argc--;
    argv++;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 'h': config_usage(stdout); return BS_EXIT_OK;
        default: config_usage(stderr); return BS_EXIT_USAGE;
        }
    }
    if (file && optind == argc) {
        snprintf(path, sizeof(path), "%s", file);
    } else if (file || optind != argc - 1 ||
               !bs_config_resource_path(argv[optind], path, sizeof(path))) {
        config_usage(stderr);
        return BS_EXIT_USAGE;
    }
    if (bs_config_read(path, NULL, opts, &cfg) < 0)
        return BS_EXIT_USAGE;
    if (!(cfg.sections & (BS_CONFIG_PRIMARY | BS_CONFIG_SECONDARY | BS_CONFIG_WRITELOG))) {
        fprintf(stderr, "blkship config: %s has none of [primary], [secondary] and [writelog]: "
                        "nothing would use it\n", path);
        bs_config_free(&cfg);
        return BS_EXIT_USAGE;
    }
    if (cfg.sections & BS_CONFIG_PRIMARY)
        bad |= run_agent_check("blkship-primary", "BLKSHIP_PRIMARY", path) < 0;
    if (cfg.sections & BS_CONFIG_SECONDARY)
        bad |= run_agent_check("blkship-secondary", "BLKSHIP_SECONDARY", path) < 0;
    if (cfg.sections & BS_CONFIG_WRITELOG) {
        if (check_writelog(path) < 0)
            bad = 1;
        else
            printf("writelog: configuration OK (%s)\n", path);
    }
    bs_config_free(&cfg);
    return bad ? BS_EXIT_USAGE : BS_EXIT_OK;
}
