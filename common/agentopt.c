/* The options both agents take (see agentopt.h). */
#include "common/agentopt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/hook.h"
#include "common/opt.h"

void bs_agent_opts_init(struct bs_agent_opts *o)
{
    *o = (struct bs_agent_opts){
        .heartbeat_ms = BS_HEARTBEAT_MS_DEFAULT,
        .peer_timeout_ms = BS_PEER_TIMEOUT_MS_DEFAULT,
        .hook_timeout_ms = BS_HOOK_DEFAULT_TIMEOUT_MS,
    };
}

int bs_agent_opt(struct bs_agent_opts *o, int code, const char *arg, const char *name)
{
    uint64_t v;

    switch (code) {
    case BS_AO_CERT: o->tls.cert = arg; return 1;
    case BS_AO_KEY: o->tls.key = arg; return 1;
    case BS_AO_CA: o->tls.ca = arg; return 1;
    case BS_AO_CRL: o->tls.crl = arg; return 1;
    case BS_AO_PEER_NAME: o->tls.peer_name = arg; return 1;
    case BS_AO_STATE_DIR: o->state_dir = arg; return 1;
    case BS_AO_CONTROL: o->control = arg; return 1;
    case BS_AO_HEARTBEAT_MS:
        return bs_opt_heartbeat_ms(name, arg, &o->heartbeat_ms) < 0 ? -1 : 1;
    case BS_AO_PEER_TIMEOUT_MS:
        return bs_opt_peer_timeout_ms(name, arg, 1, &o->peer_timeout_ms) < 0 ? -1 : 1;
    case BS_AO_HEARTBEAT_TIMEOUT: /* the old name: a bare number is seconds */
        return bs_opt_peer_timeout_ms(name, arg, 1000, &o->peer_timeout_ms) < 0 ? -1 : 1;
    case BS_AO_ON_SPLIT_BRAIN:
        if (bs_opt_nonempty(name, arg) < 0)
            return -1;
        o->on_split_brain = arg;
        return 1;
    case BS_AO_HOOK_TIMEOUT:
        if (bs_opt_duration_ms(name, arg, 1000, 100, 3600000, &v) < 0)
            return -1;
        o->hook_timeout_ms = (unsigned)v;
        return 1;
    case BS_AO_RESOURCE:
        if (bs_opt_nonempty(name, arg) < 0)
            return -1;
        if (strchr(arg, '/') || arg[0] == '.') {
            fprintf(stderr, "%s: %s '%s': a resource name has no '/' and does not begin "
                            "with '.'\n",
                    program_invocation_short_name, name, arg);
            return -1;
        }
        o->resource = arg;
        return 1;
    case BS_AO_CONFIG: return 1; /* read before any other option */
    case BS_AO_CHECK_CONFIG: o->check = true; return 1;
    case BS_AO_LOG_LEVEL: return bs_opt_log_level(name, arg) < 0 ? -1 : 1;
    case BS_AO_XEN_DOMAIN:
        if (bs_opt_nonempty(name, arg) < 0)
            return -1;
        o->xen_domain = arg;
        return 1;
    case BS_AO_METRICS:
        if (bs_opt_hostport(name, arg) < 0)
            return -1;
        o->metrics = arg;
        return 1;
    default: return 0;
    }
}

int bs_agent_opts_check(struct bs_agent_opts *o, const char *role, const char *config_path)
{
    if (o->resource && !o->state_dir) {
        snprintf(o->state_dir_buf, sizeof(o->state_dir_buf), "%s/%s", BS_STATE_DIR_DEFAULT,
                 o->resource);
        o->state_dir = o->state_dir_buf;
    }
    if (o->resource && !o->control) {
        snprintf(o->control_buf, sizeof(o->control_buf), "%s/%s-%s.ctl", BS_RUN_DIR_DEFAULT,
                 o->resource, role);
        o->control = o->control_buf;
    }
    const struct bs_opt_required required[] = {
        { "--state-dir", o->state_dir, false }, { "--control", o->control, false },
        { "--cert", o->tls.cert, false },       { "--key", o->tls.key, false },
        { "--ca", o->tls.ca, false },           { "--peer-name", o->tls.peer_name, false },
        { "--crl", o->tls.crl, true },
    };

    if (bs_opt_check_required(required, sizeof(required) / sizeof(required[0])) < 0) {
        if (config_path && *config_path)
            fprintf(stderr, "(or set it in [%s] or [common] of %s)\n", role, config_path);
        return -1;
    }
    return bs_opt_check_peer_timing(o->heartbeat_ms, o->peer_timeout_ms) < 0 ? -1 : 0;
}
