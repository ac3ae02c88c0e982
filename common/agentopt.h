/* The options both agents take (blkship-primary and blkship-secondary):
 * TLS, state and control paths, failure detection, the split-brain hook,
 * hooks' time bound, the resource and its configuration file, the log
 * level, the metrics endpoint.  They are the keys a configuration file may put in [common]
 * (common/config.h).  Each program lists BS_AGENT_OPTIONS in its option
 * table and hands every option to bs_agent_opt first.
 */
#ifndef BLKSHIP_COMMON_AGENTOPT_H
#define BLKSHIP_COMMON_AGENTOPT_H

#include <getopt.h>
#include <stdbool.h>

#include "common/tls.h"

/* Codes above any character, so they never meet a program's own. */
enum {
    BS_AO_CERT = 0x100,
    BS_AO_KEY,
    BS_AO_CA,
    BS_AO_CRL,
    BS_AO_PEER_NAME,
    BS_AO_STATE_DIR,
    BS_AO_CONTROL,
    BS_AO_HEARTBEAT_MS,
    BS_AO_PEER_TIMEOUT_MS,
    BS_AO_HEARTBEAT_TIMEOUT,
    BS_AO_ON_SPLIT_BRAIN,
    BS_AO_HOOK_TIMEOUT,
    BS_AO_RESOURCE,
    BS_AO_CONFIG,
    BS_AO_CHECK_CONFIG,
    BS_AO_LOG_LEVEL,
    BS_AO_METRICS,
    BS_AO_XEN_DOMAIN,
};

#define BS_AGENT_OPTIONS                                                     \
    { "cert", required_argument, NULL, BS_AO_CERT },                         \
    { "key", required_argument, NULL, BS_AO_KEY },                           \
    { "ca", required_argument, NULL, BS_AO_CA },                             \
    { "crl", required_argument, NULL, BS_AO_CRL },                           \
    { "peer-name", required_argument, NULL, BS_AO_PEER_NAME },               \
    { "state-dir", required_argument, NULL, BS_AO_STATE_DIR },               \
    { "control", required_argument, NULL, BS_AO_CONTROL },                   \
    { "heartbeat-ms", required_argument, NULL, BS_AO_HEARTBEAT_MS },         \
    { "peer-timeout-ms", required_argument, NULL, BS_AO_PEER_TIMEOUT_MS },   \
    { "heartbeat-timeout", required_argument, NULL, BS_AO_HEARTBEAT_TIMEOUT }, \
    { "on-split-brain", required_argument, NULL, BS_AO_ON_SPLIT_BRAIN },     \
    { "hook-timeout", required_argument, NULL, BS_AO_HOOK_TIMEOUT },         \
    { "resource", required_argument, NULL, BS_AO_RESOURCE },                 \
    { "config", required_argument, NULL, BS_AO_CONFIG },                     \
    { "check-config", no_argument, NULL, BS_AO_CHECK_CONFIG },               \
    { "log-level", required_argument, NULL, BS_AO_LOG_LEVEL },                 \
    { "metrics", required_argument, NULL, BS_AO_METRICS },                   \
    { "xen-domain", required_argument, NULL, BS_AO_XEN_DOMAIN }

/* Where a resource's agent keeps its state and its control socket when
 * neither the command line nor the file says: DIR/RESOURCE and
 * DIR/RESOURCE-ROLE.ctl (the units' StateDirectory= and RuntimeDirectory=). */
#define BS_STATE_DIR_DEFAULT "/var/lib/blkship"
#define BS_RUN_DIR_DEFAULT "/run/blkship"

struct bs_agent_opts {
    struct bs_tls_config tls;
    const char *state_dir, *control, *resource, *on_split_brain;
    const char *metrics;    /* --metrics HOST:PORT, or NULL */
    const char *xen_domain; /* --xen-domain ID|NAME, or NULL */
    unsigned heartbeat_ms, peer_timeout_ms, hook_timeout_ms;
    bool check;             /* --check-config */
    char state_dir_buf[4096], control_buf[4096]; /* the defaults from --resource */
};

/* The defaults (docs/hooks.md, docs/config.md). */
void bs_agent_opts_init(struct bs_agent_opts *o);
/* Applies option `code` with `arg`, named `name` in messages.  Returns 1
 * when it was one of these, 0 when it is the program's own, -1 for a bad
 * value (printed). */
int bs_agent_opt(struct bs_agent_opts *o, int code, const char *arg, const char *name);
/* The checks after every option: with --resource, the state directory
 * and control socket default to BS_STATE_DIR_DEFAULT/RESOURCE and
 * BS_RUN_DIR_DEFAULT/RESOURCE-ROLE.ctl; then the required ones (named
 * with the configuration file, if any, where they may go), the peer
 * timing.  0 or -1 (printed). */
int bs_agent_opts_check(struct bs_agent_opts *o, const char *role, const char *config_path);

#endif
