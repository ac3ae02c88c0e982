/* [writelog] of a resource's configuration (see writelog_conf.h). */
#include "cli/writelog_conf.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/agentopt.h"
#include "common/opt.h"

/* The keys: nbdkit's command line, and the filter's parameters without
 * their "writelog-" prefix. */
static const struct option writelog_keys[] = {
    { "disk", required_argument, NULL, 'd' },     { "plugin", required_argument, NULL, 'p' },
    { "socket", required_argument, NULL, 'u' },   { "name", required_argument, NULL, 'n' },
    { "dir", required_argument, NULL, 'D' },      { "grain", required_argument, NULL, 'g' },
    { "readers", required_argument, NULL, 'r' },  { "cow-max", required_argument, NULL, 'c' },
    { "cow-wait", required_argument, NULL, 'w' }, { "config", required_argument, NULL, 'F' },
    { "resource", required_argument, NULL, 'N' }, { NULL, 0, NULL, 0 },
};

int wl_conf_load(const char *path, struct wl_conf *wc)
{
    const char *sock = NULL;
    uint64_t v;
    int bad = 0;

    memset(wc, 0, sizeof(*wc));
    if (bs_config_read(path, "writelog", writelog_keys, &wc->cfg) < 0)
        return -1;
    if (!bs_config_resource(&wc->cfg, wc->resource, sizeof(wc->resource)))
        snprintf(wc->resource, sizeof(wc->resource), "disk");
    wc->plugin = "file";
    wc->dir = BS_RUN_DIR_DEFAULT;
    wc->name = wc->resource;
    for (size_t i = 0; i < wc->cfg.n; i++) {
        char where[4200];
        const char *val = wc->cfg.e[i].value;
        bs_config_where(&wc->cfg, i, where, sizeof(where));
        switch (wc->cfg.e[i].opt->val) {
        case 'g':
            if (bs_opt_size(where, val, 512, 1ull << 30, &v) < 0) {
                bad = 1;
            } else if (v & (v - 1)) {
                fprintf(stderr, "%s: '%s': not a power of two\n", where, val);
                bad = 1;
            }
            wc->grain = val;
            break;
        case 'r':
            bad |= bs_opt_u64(where, val, 1, 64, &v) < 0;
            wc->readers = val;
            break;
        case 'c':
            bad |= bs_opt_size(where, val, 0, 64ull << 30, &v) < 0;
            wc->cow_max = val;
            break;
        case 'w':
            bad |= bs_opt_duration_ms(where, val, 1, 0, 3600000, &v) < 0;
            wc->cow_wait = val;
            break;
        default:
            if (bs_opt_nonempty(where, val) < 0) {
                bad = 1;
                break;
            }
            switch (wc->cfg.e[i].opt->val) {
            case 'd': wc->disk = val; break;
            case 'p': wc->plugin = val; break;
            case 'u': sock = val; break;
            case 'n': wc->name = val; break;
            case 'D': wc->dir = val; break;
            default: break;
            }
        }
    }
    if (!bad && !wc->disk) {
        fprintf(stderr, "%s: [writelog] has no disk: the file or block device nbdkit serves\n",
                path);
        bad = 1;
    }
    if (sock)
        snprintf(wc->socket, sizeof(wc->socket), "%s", sock);
    else
        snprintf(wc->socket, sizeof(wc->socket), "%s/%s.nbd", wc->dir, wc->resource);
    if (bad) {
        wl_conf_free(wc);
        return -1;
    }
    return 0;
}

void wl_conf_free(struct wl_conf *wc)
{
    bs_config_free(&wc->cfg);
}
