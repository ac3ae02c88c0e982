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
#include "common/config.h"
#include "common/opt.h"

/* The [writelog] keys: nbdkit's command line (blkship-writelog@.service)
 * and the filter's parameters without their "writelog-" prefix. */
static const struct option writelog_keys[] = {
    { "disk", required_argument, NULL, 'd' },     { "plugin", required_argument, NULL, 'p' },
    { "socket", required_argument, NULL, 'u' },   { "name", required_argument, NULL, 'n' },
    { "dir", required_argument, NULL, 'D' },      { "grain", required_argument, NULL, 'g' },
    { "readers", required_argument, NULL, 'r' },  { "cow-max", required_argument, NULL, 'c' },
    { "cow-wait", required_argument, NULL, 'w' }, { "config", required_argument, NULL, 'F' },
    { "resource", required_argument, NULL, 'N' }, { NULL, 0, NULL, 0 },
};

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
    struct bs_config cfg;
    uint64_t v;
    int bad = 0;

    if (bs_config_read(path, "writelog", writelog_keys, &cfg) < 0)
        return -1;
    for (size_t i = 0; i < cfg.n; i++) {
        char where[4200];
        const char *val = cfg.e[i].value;
        bs_config_where(&cfg, i, where, sizeof(where));
        switch (cfg.e[i].opt->val) {
        case 'g':
            bad |= bs_opt_size(where, val, 512, 1ull << 30, &v) < 0;
            break;
        case 'r':
            bad |= bs_opt_u64(where, val, 1, 64, &v) < 0;
            break;
        case 'c':
            bad |= bs_opt_size(where, val, 0, 64ull << 30, &v) < 0;
            break;
        case 'w':
            bad |= bs_opt_duration_ms(where, val, 1, 0, 3600000, &v) < 0;
            break;
        default:
            bad |= bs_opt_nonempty(where, val) < 0;
        }
    }
    bs_config_free(&cfg);
    return bad ? -1 : 0;
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
    const char *file = NULL, *dir = getenv("BLKSHIP_CONFIG_DIR");
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
    } else if (!file && optind == argc - 1 && *argv[optind] && !strchr(argv[optind], '/')) {
        snprintf(path, sizeof(path), "%s/%s.conf", dir && *dir ? dir : BS_CONFIG_DIR_DEFAULT,
                 argv[optind]);
    } else {
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
