/* blkship-secondary: accepts the configured primary over mutual TLS,
 * validates every frame before reading what it describes, applies the
 * extents to the replica, and acknowledges a flush only once everything
 * before it is durable.
 *
 * This file is the program: options, the state file, the control socket's
 * status and the signals.  The session is secondary/session.c, the apply
 * pipeline secondary/apply.c (their interfaces: secondary/secondary.h).
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/agentopt.h"
#include "common/config.h"
#include "common/ctl.h"
#include "common/json.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/net.h"
#include "common/opt.h"
#include "common/sni.h"
#include "common/state.h"

#define MOD "secondary"
/* The journal's size when it is created (docs/man/blkship-secondary.8.md). */
#define DEFAULT_JOURNAL_MAX (256ull << 20)

/* ---- State file ------------------------------------------------------- */

/* Writes the file from the identity fields and st_*; state_lock held.
 * "applied_epoch" is the epoch whose image the replica holds (or will hold
 * once the journal's committed epochs after it are replayed) when
 * "consistent" is 1; "consistent 0" says it holds no epoch's image. */
int sec_write_state_locked(struct secondary *sec)
{
    char text[1024], rid[33], pid[33];
    int r, n;

    bs_id_to_hex(sec->replica_id, rid);
    bs_id_to_hex(sec->primary_id, pid);
    /* A promoted replica's file is format 2, which a secondary (of any
     * version) refuses: it must never take a primary again. */
    n = snprintf(text, sizeof(text),
                 "format %d\nrole %s\nreplica_id %s\nprimary_id %s\ngeneration %" PRIu64
                 "\nepoch %" PRIu64 "\ndisk_bytes %" PRIu64 "\napplied_epoch %" PRIu64
                 "\nconsistent %d\n",
                 sec->st_promoted ? 2 : 1, sec->st_promoted ? "promoted" : "secondary", rid, pid,
                 sec->generation, sec->epoch, sec->disk_bytes, sec->st_applied,
                 sec->st_consistent ? 1 : 0);
    if (sec->st_promoted)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                 "promoted_epoch %" PRIu64 "\npromoted_forced %d\ngeneration_history %" PRIu64
                 "\n",
                 sec->promoted_epoch, sec->promote_forced ? 1 : 0, sec->generation_prev);
    else if (sec->checksum_required)
        /* A split brain resolved here: the replica's own changes are to be
         * found by checksums at the next session (docs/failover.md). */
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "checksum_required 1\ngeneration_history %" PRIu64 "\n",
                      sec->generation_prev);
    if (sec->own_pending && !sec->st_promoted)
        /* A demoted primary's changes, in changes_path, still to be sent. */
        n += snprintf(text + n, sizeof(text) - (size_t)n, "own_changes 1\n");
    if (sec->role_seq)
        snprintf(text + n, sizeof(text) - (size_t)n, "role_seq %" PRIu64 "\n", sec->role_seq);
    r = bs_state_write(sec->state_path, text);
    if (r < 0)
        BS_ERR(MOD, "writing %s: %s", sec->state_path, strerror(-r));
    return r;
}

int sec_save_state(struct secondary *sec)
{
    int r;

    pthread_mutex_lock(&sec->state_lock);
    r = sec_write_state_locked(sec);
    pthread_mutex_unlock(&sec->state_lock);
    return r;
}

int sec_save_epochs(struct secondary *sec, uint64_t applied, bool consistent)
{
    uint64_t old_applied;
    bool old_consistent;
    int r;

    pthread_mutex_lock(&sec->state_lock);
    old_applied = sec->st_applied;
    old_consistent = sec->st_consistent;
    sec->st_applied = applied;
    sec->st_consistent = consistent;
    r = sec_write_state_locked(sec);
    if (r < 0) {
        sec->st_applied = old_applied;
        sec->st_consistent = old_consistent;
    }
    pthread_mutex_unlock(&sec->state_lock);
    return r;
}

int sec_save_pairing(struct secondary *sec, const uint8_t primary_id[BSR_ID_LEN],
                     uint64_t generation)
{
    int r;

    pthread_mutex_lock(&sec->state_lock);
    memcpy(sec->primary_id, primary_id, BSR_ID_LEN);
    sec->generation = generation;
    r = sec_write_state_locked(sec);
    pthread_mutex_unlock(&sec->state_lock);
    return r;
}

static int load_state(struct secondary *sec, const char *state_dir)
{
    char text[BS_STATE_MAX], hex[64];
    uint64_t fmt, disk;
    int r = bs_state_read(sec->state_path, text, sizeof(text));

    if (r == -ENOENT) {
        r = own_adopt(sec, state_dir, false, 0);
        if (r < 0)
            return r;
        if (r == 1)
            return sec_save_state(sec);
        r = bs_id_random(sec->replica_id);
        if (r < 0)
            return r;
        bs_id_to_hex(sec->replica_id, hex);
        BS_INFO(MOD, "new replica identity %s", hex);
        return sec_save_state(sec);
    }
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", sec->state_path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) == 0 && fmt == 2) {
        uint64_t e = 0, seq = 0;
        /* Promoted here, then taken up by a blkship-primary: if that
         * primary was demoted since, the demotion is the newer role. */
        (void)bs_state_get_u64(text, "role_seq", &seq);
        r = own_adopt(sec, state_dir, true, seq);
        if (r == 1)
            return sec_save_state(sec);
        if (r < 0)
            return r;
        (void)bs_state_get_u64(text, "promoted_epoch", &e);
        BS_ERR(MOD, "%s: this replica was promoted (at epoch %" PRIu64 "): it is a primary's "
                    "disk now and takes no primary.  To make this host hold a replica again, "
                    "run 'blkship demote' on the blkship-primary that serves it on this state "
                    "directory, or give blkship-secondary an empty --state-dir (a new pairing)",
               sec->state_path, e);
        return -EPERM;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 || fmt != 1 ||
        bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, sec->replica_id) < 0 ||
        bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, sec->primary_id) < 0 ||
        bs_state_get_u64(text, "generation", &sec->generation) < 0 ||
        bs_state_get_u64(text, "epoch", &sec->epoch) < 0 ||
        bs_state_get_u64(text, "disk_bytes", &disk) < 0) {
        BS_ERR(MOD, "%s is not a valid secondary state file; refusing to guess", sec->state_path);
        return -EINVAL;
    }
    /* Written by a resolved split brain only. */
    {
        uint64_t cr = 0;
        int rc = bs_state_get_u64(text, "checksum_required", &cr);
        if ((rc < 0 && rc != -ENOENT) || cr > 1 ||
            (cr && bs_state_get_u64(text, "generation_history", &sec->generation_prev) < 0)) {
            BS_ERR(MOD, "%s: bad checksum_required or generation_history; refusing to guess",
                   sec->state_path);
            return -EINVAL;
        }
        sec->checksum_required = cr == 1;
    }
    if (bs_state_get_u64(text, "role_seq", &sec->role_seq) == -ENOENT)
        sec->role_seq = 0;
    {
        uint64_t oc = 0;
        int ro = bs_state_get_u64(text, "own_changes", &oc);
        if ((ro < 0 && ro != -ENOENT) || oc > 1) {
            BS_ERR(MOD, "%s: bad own_changes; refusing to guess", sec->state_path);
            return -EINVAL;
        }
        if (oc == 1 && own_load(sec) < 0)
            return -EINVAL;
    }
    /* Files from before epochs have neither: no epoch, no image. */
    {
        uint64_t applied = 0, consistent = 0;
        if ((bs_state_get_u64(text, "applied_epoch", &applied) < 0 && strstr(text, "applied_epoch")) ||
            (bs_state_get_u64(text, "consistent", &consistent) < 0 && strstr(text, "consistent")) ||
            consistent > 1) {
            BS_ERR(MOD, "%s: bad applied_epoch or consistent; refusing to guess", sec->state_path);
            return -EINVAL;
        }
        sec->st_applied = sec->applied_epoch = applied;
        sec->st_consistent = sec->consistent = consistent == 1;
    }
    if (disk == sec->disk_bytes)
        return 0;
    if (bs_id_is_zero(sec->primary_id)) {
        /* Nothing was replicated to it yet: its size is only recorded. */
        BS_INFO(MOD, "replica size changed from %" PRIu64 " to %" PRIu64 " bytes; not paired yet",
                disk, sec->disk_bytes);
        return sec_save_state(sec);
    }
    /* A replica that grew or shrank under a paired primary is not the disk
     * that was paired: what the primary believes it holds may be gone, and
     * a later hello of the matching size would be accepted as if nothing
     * had happened.  Only the operator knows which it was. */
    bs_id_to_hex(sec->primary_id, hex);
    BS_ERR(MOD, "replica %s is %" PRIu64 " bytes but was %" PRIu64 " bytes when it was paired "
                "with primary %s: refusing to start.  If it only grew by mistake, restore its "
                "size; otherwise remove %s and the primary's state for a new pairing (a full "
                "sync)",
           sec->target.path, sec->disk_bytes, disk, hex, sec->state_path);
    return -EINVAL;
}


/* ---- Status, signals --------------------------------------------------- */

static ssize_t status_handler(void *opaque, const char *request, char *reply, size_t size)
{
    struct secondary *sec = opaque;
    struct bs_json_builder b;
    char rid[33], pid[33];

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (strcmp(request, "status") != 0) {
        bs_json_add_str(&b, "error", "unknown request");
        return bs_json_finish(&b, reply, size);
    }
    bs_id_to_hex(sec->replica_id, rid);
    bs_id_to_hex(sec->primary_id, pid);
    bs_json_add_str(&b, "role", "secondary");
    bs_json_add_bool(&b, "connected", sec->session != NULL);
    bs_json_add_str(&b, "peer", sec->session ? sec->peer : "");
    bs_json_add_str(&b, "last_disconnect", sec->last_lost);
    /* blkship-listener (docs/resources.md): fields added. */
    bs_json_add_str(&b, "listener", sec->listener_path ? sec->listener_path : "");
    bs_json_add_bool(&b, "listener_registered", sec->listener_path && sec->reg_fd >= 0);
    bs_json_add_u64(&b, "listener_registrations", sec->registrations);
    bs_json_add_str(&b, "peer_certificate",
                    sec->session && sec->session->accepted ? bs_conn_peer_identity(sec->session->conn)
                                                           : "");
    bs_json_add_u64(&b, "reconnects", sec->sessions_accepted ? sec->sessions_accepted - 1 : 0);
    bs_json_add_str(&b, "disk_state", sec_disk_state(sec));
    bs_json_add_str(&b, "device", sec->rc_running ? sec->rc_path : sec->target.path);
    /* Target kinds (docs/rbd.md): fields added. */
    /* Not read while a worker reopens it (secondary/recover.c). */
    bs_json_add_str(&b, "device_kind", !sec->rc_running && !sec->promoted && sec->target.ops
                                           ? sec->target.ops->name
                                           : "");
    bs_json_add_u64(&b, "device_stalled_ms", sec->rc_running || sec->promoted || !sec->target.ops
                                                 ? 0
                                                 : bs_target_rbd_stalled_ms(&sec->target));
    bs_json_add_bool(&b, "device_failed", sec->apply_failed);
    bs_json_add_u64(&b, "device_reopens", sec->reopens);
    bs_json_add_u64(&b, "disk_bytes", sec->disk_bytes);
    bs_json_add_str(&b, "replica_id", rid);
    bs_json_add_str(&b, "primary_id", pid);
    bs_json_add_u64(&b, "generation", sec->generation);
    /* Only the primary knows what the replica lacks. */
    bs_json_add_null(&b, "dirty_bytes");
    bs_json_add_u64(&b, "inflight_bytes", sec->unflushed_bytes);
    bs_json_add_u64(&b, "sent_bytes", 0);
    bs_json_add_u64(&b, "received_bytes", sec->received_bytes);
    bs_json_add_u64(&b, "compressed_frames", sec->zdata_frames);
    bs_json_add_u64(&b, "compressed_wire_bytes", sec->zdata_wire_bytes);
    bs_json_add_u64(&b, "compressed_raw_bytes", sec->zdata_raw_bytes);
    bs_json_add_u64(&b, "checksum_compared_bytes", sec->hashed_bytes);
    bs_json_add_u64(&b, "checksum_differing_blocks", sec->hash_differ_blocks);
    bs_json_add_u64(&b, "written_bytes", sec->written_bytes);
    bs_json_add_u64(&b, "acked_bytes", sec->durable_bytes);
    bs_json_add_u64(&b, "bad_frames", sec->bad_frames);
    bs_json_add_null(&b, "sync_percent");
    /* Epochs (docs/epochs.md §6): fields added, schema unchanged. */
    bs_json_add_bool(&b, "replica_consistent", epoch_replica_consistent(sec));
    bs_json_add_u64(&b, "applied_epoch", sec->applied_epoch);
    bs_json_add_u64(&b, "committed_epoch", sec->committed_epoch);
    bs_json_add_u64(&b, "journal_bytes", bs_journal_used(sec->journal));
    bs_json_add_u64(&b, "journal_max_bytes", sec->journal_max);
    bs_json_add_u64(&b, "protocol_version", sec->proto_version);
    bs_json_add_u64(&b, "oversize_epochs", sec->oversize_epochs);
    bs_json_add_str(&b, "consistency_note",
                    epoch_replica_consistent(sec) ? ""
                    : sec->note[0]                ? sec->note
                    : sec->applying               ? "an epoch is being applied"
                                                  : "no consistent image");
    /* Failure detection and hooks (docs/hooks.md): fields added. */
    bs_json_add_str(&b, "resource", sec->resource);
    bs_json_add_u64(&b, "heartbeat_ms", sec->heartbeat_ms);
    bs_json_add_u64(&b, "peer_timeout_ms", sec->peer_timeout_ms);
    bs_json_add_u64(&b, "primaries_lost", sec->primaries_lost);
    bs_json_add_bool(&b, "promoted", sec->promoted);
    sgen_status(sec, &b);
    own_status(sec, &b);
    bs_json_add_bool(&b, "promoting", sec->promoting);
    {
        struct bs_json_builder hk;
        bs_json_begin(&hk);
        if (sec->hooks)
            bs_hooks_status(sec->hooks, &hk);
        bs_json_add_builder(&b, "hooks", &hk);
    }
    return bs_json_finish(&b, reply, size);
}

static void on_events(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct secondary *sec = opaque;

    bs_events_request(&sec->events, request, pending);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct secondary *sec = h->data;

    BS_INFO(MOD, "signal %d: shutting down", signum);
    bs_notify_stopping(&sec->notify, "shutting down");
    sec->stopping = true;
    if (sec->session)
        session_end(sec->session, "shutting down");
    if (!sec->fsync_running)
        uv_stop(sec->loop);
}

/* ---- Main ------------------------------------------------------------------ */

/* Releases what main set up before a start-up step failed (the TLS
 * context, the target's claim, the buffers); returns main's exit status. */
static int start_failed(struct secondary *sec)
{
    bs_metrics_stop(sec->metrics);
    sec->metrics = NULL;
    bs_xen_close(sec->xen);
    sec->xen = NULL;
    epoch_close(sec);
    if (sec->target.ops)
        sec->target.ops->close(&sec->target);
    for (unsigned i = 0; i < NBUF; i++)
        free(sec->bufs[i].data);
    bs_tls_free(sec->tls);
    return BS_EXIT_FAILURE;
}

static void usage(FILE *f)
{
    fputs("Usage: blkship-secondary --listen HOST:PORT --device PATH --state-dir DIR\n"
          "                         --control SOCK --cert FILE --key FILE --ca FILE\n"
          "                         --peer-name NAME [options]\n"
          "\n"
          "Receives a replicated disk from blkship-primary over mutual TLS and writes it\n"
          "to PATH (a block device, a regular file, or an RBD image rbd:POOL/IMAGE, of\n"
          "the same size as the primary's disk).\n"
          "\n"
          "  --listen HOST:PORT       address to accept the primary on ([IPv6]:PORT)\n"
          "  --listener PATH          instead of --listen: take the connections for\n"
          "                           --resource from the blkship-listener whose socket\n"
          "                           is PATH (one port for many secondaries,\n"
          "                           docs/resources.md)\n"
          "  --device PATH            replica block device or file, or rbd:POOL/IMAGE\n"
          "  --ceph-conf FILE         the Ceph cluster of an rbd: device (default\n"
          "                           /etc/ceph/ceph.conf; docs/rbd.md)\n"
          "  --ceph-id NAME           its client name, without client. (default admin)\n"
          "  --state-dir DIR          replica identity and pairing (created 0700)\n"
          "  --control SOCK           local control socket for 'blkship status'\n"
          "  --cert, --key FILE       this host's certificate and key (PEM; key mode 0600)\n"
          "  --ca FILE                CA the primary's certificate must chain to\n"
          "  --crl FILE               revocation list of that CA (PEM), checked every handshake\n"
          "  --peer-name NAME         DNS name (or IP address) the primary's certificate\n"
          "                           must carry as a subject alternative name\n"
          "  --max-payload SIZE       largest data frame accepted (default 1M; 512-8M,\n"
          "                           a multiple of 512)\n"
          "  --heartbeat-ms DUR       send a heartbeat every DUR (default 1s;\n"
          "                           100ms-60s; a bare number is milliseconds)\n"
          "  --peer-timeout-ms DUR    a primary silent for DUR is lost (default 5s;\n"
          "                           500ms-1h, at least twice --heartbeat-ms;\n"
          "                           --heartbeat-timeout is the old name)\n"
          "  --on-failover CMD        run CMD (with /bin/sh -c) when the primary is lost:\n"
          "                           it went silent or its connection dropped without\n"
          "                           a TLS close (docs/hooks.md)\n"
          "  --on-split-brain CMD     run CMD when a primary that changed too comes back\n"
          "                           to this promoted replica (docs/failover.md)\n"
          "  --hook-timeout DUR       a hook still running after DUR is killed\n"
          "                           (default 30s; 100ms-1h)\n"
          "  --resource NAME          the name hooks and status give this replica\n"
          "                           (default: the last component of --state-dir); its\n"
          "                           configuration is /etc/blkship/NAME.conf if it exists\n"
          "  --config FILE            the resource's configuration ([common] and\n"
          "                           [secondary]: keys are these options' names; the\n"
          "                           command line overrides them; docs/config.md)\n"
          "  --check-config           check the options and the file, load the\n"
          "                           certificates, and exit (0: OK)\n"
          "  --handshake-timeout DUR  a connection must finish TLS and its hello within\n"
          "                           DUR (default 5s; 1s-1h)\n"
          "  --journal PATH           the epoch journal (default: DIR/journal)\n"
          "  --journal-max SIZE       its size when it is created (default 256M; at\n"
          "                           least 1M and twice --max-payload)\n"
          "  --metrics HOST:PORT      serve Prometheus metrics on http://HOST:PORT/metrics\n"
          "                           (docs/metrics.md)\n"
          "  --xen-domain ID|NAME     publish the state in that domain's xenstore area\n"
          "                           (docs/xen.md)\n"
          "  --log-level LEVEL        err, warn, info (default) or debug\n"
          "  --version, --help\n"
          "\n"
          "Exit status: 0 stopped by a signal, 1 runtime failure, 2 usage or\n"
          "configuration error.\n",
          f);
}

static const struct option opts[] = {
    { "listen", required_argument, NULL, 'l' },
    { "listener", required_argument, NULL, 'R' },
    { "device", required_argument, NULL, 'd' },
    { "ceph-conf", required_argument, NULL, 'C' },
    { "ceph-id", required_argument, NULL, 'I' },
    { "max-payload", required_argument, NULL, 'm' },
    { "on-failover", required_argument, NULL, 'F' },
    { "handshake-timeout", required_argument, NULL, 'H' },
    { "journal", required_argument, NULL, 'j' },
    { "journal-max", required_argument, NULL, 'J' },
    BS_AGENT_OPTIONS,
    { "version", no_argument, NULL, 'V' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* What the options set besides the agent's own fields. */
struct start_opts {
    struct bs_agent_opts agent;
    const char *listen_addr, *listener, *device, *journal;
    uint64_t journal_max;
};

/* Applies one option, from the command line or from the configuration
 * file (common/config.h); `name` is how a message names it.  Returns -1 to
 * go on, or the exit status. */
static int apply_option(struct secondary *sec, struct start_opts *so, int opt, const char *arg,
                        const char *name)
{
    uint64_t v;
    int r = bs_agent_opt(&so->agent, opt, arg, name);

    if (r)
        return r < 0 ? BS_EXIT_USAGE : -1;
    switch (opt) {
    case 'l': so->listen_addr = arg; break;
    case 'R':
        if (bs_opt_nonempty(name, arg) < 0)
            return BS_EXIT_USAGE;
        so->listener = arg;
        break;
    case 'd': so->device = arg; break;
    case 'C':
        if (bs_opt_nonempty(name, arg) < 0)
            return BS_EXIT_USAGE;
        sec->target_cfg.ceph_conf = arg;
        break;
    case 'I':
        if (bs_opt_nonempty(name, arg) < 0)
            return BS_EXIT_USAGE;
        if (strncmp(arg, "client.", 7) == 0) {
            bs_usage_error("%s %s: the name without 'client.' (%s)", name, arg, arg + 7);
            return BS_EXIT_USAGE;
        }
        sec->target_cfg.ceph_id = arg;
        break;
    case 'm':
        if (bs_opt_size(name, arg, BSR_SECTOR_SIZE, BSR_MAX_PAYLOAD_LIMIT, &v) < 0)
            return BS_EXIT_USAGE;
        if (v % BSR_SECTOR_SIZE) {
            bs_usage_error("%s %s: not a multiple of 512", name, arg);
            return BS_EXIT_USAGE;
        }
        sec->max_payload = (uint32_t)v;
        break;
    case 'F':
        if (bs_opt_nonempty(name, arg) < 0)
            return BS_EXIT_USAGE;
        sec->on_failover = arg;
        break;
    case 'H':
        if (bs_opt_duration_ms(name, arg, 1000, 1000, 3600000, &v) < 0)
            return BS_EXIT_USAGE;
        sec->handshake_timeout_ms = (unsigned)v;
        break;
    case 'j': so->journal = arg; break;
    case 'J':
        if (bs_opt_size(name, arg, BS_JOURNAL_MIN_BYTES, 1ull << 50,
                        &so->journal_max) < 0)
            return BS_EXIT_USAGE;
        break;
    case 'V': puts("blkship-secondary " BLKSHIP_VERSION); return BS_EXIT_OK;
    case 'h': usage(stdout); return BS_EXIT_OK;
    default: usage(stderr); return BS_EXIT_USAGE;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct secondary sec_s = { 0 }, *sec = &sec_s;
    struct start_opts so = { .journal_max = DEFAULT_JOURNAL_MAX };
    static struct bs_config cfg; /* its values are the options' strings: kept */
    char journal_path[4096];
    static char listen_text[4200]; /* where primaries reach it, for the logs and status */
    int opt, r;

    sec->max_payload = BSR_DEFAULT_MAX_PAYLOAD;
    bs_agent_opts_init(&so.agent);
    sec->handshake_timeout_ms = 5000;
    if (bs_config_load(argc, argv, "secondary", opts, &cfg) < 0)
        return BS_EXIT_USAGE;
    for (size_t i = 0; i < cfg.n; i++) {
        char where[4200];
        bs_config_where(&cfg, i, where, sizeof(where));
        if (!cfg.e[i].value)
            continue; /* a flag set to no */
        r = apply_option(sec, &so, cfg.e[i].opt->val, cfg.e[i].value, where);
        if (r >= 0)
            return r;
    }
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char name[64];
        r = apply_option(sec, &so, opt, optarg, bs_config_opt_name(opts, opt, name, sizeof(name)));
        if (r >= 0)
            return r;
    }
    {
        const struct bs_opt_required required[] = {
            { "--listen", so.listen_addr, so.listener != NULL },
            { "--device", so.device, false },
            { "--journal", so.journal, true },
        };
        if (bs_opt_check_required(required, sizeof(required) / sizeof(required[0])) < 0) {
            if (cfg.path[0])
                fprintf(stderr, "(or set it in [secondary] of %s)\n", cfg.path);
            return BS_EXIT_USAGE;
        }
    }
    if (bs_agent_opts_check(&so.agent, "secondary", cfg.path) < 0)
        return BS_EXIT_USAGE;
    sec->heartbeat_ms = so.agent.heartbeat_ms;
    sec->peer_timeout_ms = so.agent.peer_timeout_ms;
    sec->on_split_brain = so.agent.on_split_brain;
    if (bs_opt_no_arguments(optind, argc, argv) < 0)
        return BS_EXIT_USAGE;
    if (so.listen_addr && so.listener) {
        bs_usage_error("--listen and --listener: one or the other (a port of its own, or the "
                       "one blkship-listener shares)");
        return BS_EXIT_USAGE;
    }
    if (so.listen_addr && bs_opt_hostport("--listen", so.listen_addr) < 0)
        return BS_EXIT_USAGE;
    if (strncmp(so.device, "rbd:", 4) == 0) {
        char pool[256], image[512];
        if (bs_target_rbd_parse(so.device, pool, sizeof(pool), image, sizeof(image)) < 0) {
            bs_usage_error("--device %s: an RBD image is rbd:POOL/IMAGE", so.device);
            return BS_EXIT_USAGE;
        }
    } else if (sec->target_cfg.ceph_conf || sec->target_cfg.ceph_id) {
        bs_usage_error("--ceph-conf and --ceph-id are for an rbd: --device, not %s", so.device);
        return BS_EXIT_USAGE;
    }
    {
        /* A configuration file names its resource. */
        char from_file[256];
        if (!so.agent.resource && bs_config_resource(&cfg, from_file, sizeof(from_file)))
            bs_resource_name(from_file, so.agent.state_dir, sec->resource, sizeof(sec->resource));
        else
            bs_resource_name(so.agent.resource, so.agent.state_dir, sec->resource, sizeof(sec->resource));
    }
    if (so.listener && !bs_sni_name_ok(sec->resource)) {
        bs_usage_error("--listener: the resource name '%s' (--resource) must be 1 to %d letters, "
                       "digits, '.', '-' or '_', as primaries name it in their TLS ClientHello",
                       sec->resource, BS_SNI_NAME_MAX);
        return BS_EXIT_USAGE;
    }
    sec->listener_path = so.listener;
    sec->listen_fd = -1;
    if (so.journal_max < 2 * ((uint64_t)sec->max_payload + 4096) + 4096) {
        bs_usage_error("--journal-max %" PRIu64 ": must hold two records of --max-payload %u",
                       so.journal_max, sec->max_payload);
        return BS_EXIT_USAGE;
    }
    if (epoch_parse_crash(getenv("BLKSHIP_TEST_CRASH"), &sec->crash) < 0) {
        bs_usage_error("BLKSHIP_TEST_CRASH=%s: not a crash point (before-commit, after-commit, "
                       "mid-apply, before-applied-record, before-release)",
                       getenv("BLKSHIP_TEST_CRASH"));
        return BS_EXIT_USAGE;
    }
    if (sec->crash != CRASH_NONE)
        BS_WARN(MOD, "BLKSHIP_TEST_CRASH is set: this secondary exits at a test crash point");
    if (getenv("BLKSHIP_TEST_APPLY_DELAY_MS")) {
        uint64_t v;
        if (bs_opt_duration_ms("BLKSHIP_TEST_APPLY_DELAY_MS", getenv("BLKSHIP_TEST_APPLY_DELAY_MS"),
                               1, 0, 60000, &v) < 0)
            return BS_EXIT_USAGE;
        sec->test_apply_delay_ms = (unsigned)v;
        BS_WARN(MOD, "BLKSHIP_TEST_APPLY_DELAY_MS is set: every epoch waits %u ms before it is "
                     "applied (test only)", sec->test_apply_delay_ms);
    }
    pthread_mutex_init(&sec->state_lock, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (bs_tls_new(&so.agent.tls, true, &sec->tls) < 0)
        return BS_EXIT_USAGE;
    if (so.agent.check) {
        /* --check-config: every value parsed, the certificates loaded;
         * the device is not claimed. */
        if (cfg.path[0])
            printf("blkship-secondary: configuration OK (%s)\n", cfg.path);
        else
            printf("blkship-secondary: configuration OK\n");
        bs_tls_free(sec->tls);
        return BS_EXIT_OK;
    }
    if (bs_target_open(&sec->target, so.device, &sec->target_cfg) < 0)
        return start_failed(sec);
    if (sec->target.size_bytes == 0 || sec->target.size_bytes % BSR_SECTOR_SIZE) {
        BS_ERR(MOD, "replica %s has size %" PRIu64 ": must be a positive multiple of 512", so.device,
               sec->target.size_bytes);
        return start_failed(sec);
    }
    sec->disk_bytes = sec->target.size_bytes;
    /* Page-aligned buffers: a write's buffer never keeps it from going
     * direct (bs_target_direct_ok). */
    for (unsigned i = 0; i < NBUF; i++) {
        sec->bufs[i].sec = sec;
        if (posix_memalign((void **)&sec->bufs[i].data, 4096, sec->max_payload) != 0) {
            BS_ERR(MOD, "out of memory for write buffers");
            return start_failed(sec);
        }
    }
    r = bs_mkdir(so.agent.state_dir);
    if (r < 0) {
        BS_ERR(MOD, "state directory %s: %s", so.agent.state_dir, strerror(-r));
        return start_failed(sec);
    }
    snprintf(sec->state_path, sizeof(sec->state_path), "%s/secondary.state", so.agent.state_dir);
    snprintf(sec->changes_path, sizeof(sec->changes_path), "%s/demoted.changes", so.agent.state_dir);
    r = load_state(sec, so.agent.state_dir);
    if (r < 0) {
        start_failed(sec);
        return r == -EPERM ? BS_EXIT_USAGE : BS_EXIT_FAILURE;
    }
    if (so.journal)
        snprintf(journal_path, sizeof(journal_path), "%s", so.journal);
    else
        snprintf(journal_path, sizeof(journal_path), "%s/journal", so.agent.state_dir);
    /* Before listening: committed epochs reach the replica first. */
    if (epoch_open(sec, journal_path, so.journal_max) < 0)
        return start_failed(sec);

    sec->loop = uv_default_loop();
    if (sec->listener_path) {
        r = registrar_start(sec);
        if (r < 0) {
            start_failed(sec);
            /* A name another secondary holds: a restart cannot mend it. */
            return r == -EEXIST ? BS_EXIT_USAGE : BS_EXIT_FAILURE;
        }
        snprintf(listen_text, sizeof(listen_text), "blkship-listener %.*s as %.64s", 4000,
                 sec->listener_path, sec->resource);
    } else {
        sec->listen_fd = bs_tcp_listen(so.listen_addr);
        if (sec->listen_fd < 0)
            return start_failed(sec);
        uv_poll_init(sec->loop, &sec->listen_poll, sec->listen_fd);
        sec->listen_poll.data = sec;
        uv_poll_start(&sec->listen_poll, UV_READABLE, session_on_listen_readable);
        snprintf(listen_text, sizeof(listen_text), "%s", so.listen_addr);
    }
    /* Before anything the failure paths would have to undo. */
    if (so.agent.xen_domain) {
        r = bs_xen_open(sec->loop, so.agent.xen_domain, sec->resource, &sec->xen);
        if (r == -ENOTSUP)
            BS_ERR(MOD, "--xen-domain: this blkship was built without libxenstore");
        if (r == -ENOTSUP || r == -EINVAL) {
            start_failed(sec);
            return BS_EXIT_USAGE;
        }
        if (r < 0)
            return start_failed(sec);
    }
    if (so.agent.metrics) {
        r = bs_metrics_start(so.agent.metrics, &sec->metrics);
        if (r < 0)
            return start_failed(sec);
    }
    bs_events_init(&sec->events, sec->resource, "secondary");
    sec->ev_consistent = epoch_replica_consistent(sec);
    r = bs_ctl_start(sec->loop, so.agent.control, status_handler, sec, &sec->ctl);
    if (r < 0) {
        BS_ERR(MOD, "control socket %s: %s", so.agent.control, uv_strerror(r));
        return start_failed(sec);
    }
    promote_init(sec);
    recover_init(sec);
    bs_ctl_add_async(sec->ctl, "promote", promote_request);
    bs_ctl_add_async(sec->ctl, "resolve", sgen_resolve_request);
    bs_ctl_add_async(sec->ctl, "events", on_events);
    sec->hooks = bs_hooks_new(sec->loop, sec->resource, "secondary", so.agent.hook_timeout_ms);
    if (!sec->hooks) {
        BS_ERR(MOD, "out of memory for the hooks");
        return start_failed(sec);
    }
    uv_timer_init(sec->loop, &sec->tick);
    sec->tick.data = sec;
    uv_timer_start(&sec->tick, session_on_tick, TICK_MS, TICK_MS);
    uv_timer_init(sec->loop, &sec->heartbeat);
    sec->heartbeat.data = sec;
    uv_timer_start(&sec->heartbeat, session_on_heartbeat, sec->heartbeat_ms, sec->heartbeat_ms);
    uv_signal_init(sec->loop, &sec->sigterm);
    uv_signal_init(sec->loop, &sec->sigint);
    sec->sigterm.data = sec->sigint.data = sec;
    uv_signal_start(&sec->sigterm, on_signal, SIGTERM);
    uv_signal_start(&sec->sigint, on_signal, SIGINT);

    {
        char rid[33];
        bs_id_to_hex(sec->replica_id, rid);
        BS_INFO(MOD, "replica %s (%s, %" PRIu64 " bytes, id %s) listening on %s", so.device,
                sec->target.ops->name, sec->disk_bytes, rid, listen_text);
        if (sec->target.remote)
            BS_INFO(MOD, "replica %s: %u-byte logical blocks; writes submitted asynchronously, "
                         "durable at each flush",
                    so.device, sec->target.logical_block);
        else if (sec->target.dio_align)
            BS_INFO(MOD, "replica %s: %u-byte logical, %u-byte physical blocks; writes aligned to "
                         "%u bytes go direct, others through the page cache",
                    so.device, sec->target.logical_block, sec->target.physical_block,
                    sec->target.dio_align);
        else
            BS_INFO(MOD, "replica %s: %u-byte logical, %u-byte physical blocks; no direct I/O, "
                         "every write through the page cache",
                    so.device, sec->target.logical_block, sec->target.physical_block);
    }
    sec->listen_addr = listen_text;
    sec_metrics_publish(sec);
    r = bs_notify_start(&sec->notify, sec->loop);
    if (r < 0) {
        BS_ERR(MOD, "systemd watchdog timer: %s", uv_strerror(r));
        return start_failed(sec);
    }
    {
        /* Listening, with the replica open: primaries can connect. */
        char line[BS_NOTIFY_STATUS_MAX];
        sec_status_line(sec, line, sizeof(line));
        bs_notify_ready(&sec->notify, line);
    }
    uv_run(sec->loop, UV_RUN_DEFAULT);

    bs_events_close(&sec->events, sec->committed_epoch);
    sec_xen_publish(sec); /* "stopped" */
    bs_xen_close(sec->xen);
    sec->xen = NULL;
    bs_ctl_stop(sec->ctl);
    bs_notify_close(&sec->notify);
    bs_metrics_stop(sec->metrics);
    sec->metrics = NULL;
    if (sec->listen_fd >= 0)
        uv_close((uv_handle_t *)&sec->listen_poll, NULL);
    registrar_close(sec);
    uv_close((uv_handle_t *)&sec->tick, NULL);
    uv_close((uv_handle_t *)&sec->heartbeat, NULL);
    bs_hooks_close(sec->hooks);
    sec->hooks = NULL;
    promote_close(sec);
    recover_close(sec);
    uv_close((uv_handle_t *)&sec->sigterm, NULL);
    uv_close((uv_handle_t *)&sec->sigint, NULL);
    uv_run(sec->loop, UV_RUN_DEFAULT);
    if (sec->listen_fd >= 0)
        close(sec->listen_fd);
    r = sec->promoted || !sec->target.ops ? 0 : sec->target.ops->flush(&sec->target);
    if (r < 0)
        BS_ERR(MOD, "final flush of %s: %s", so.device, strerror(-r));
    BS_INFO(MOD, "replica writes: %" PRIu64 " direct, %" PRIu64 " through the page cache",
            (uint64_t)sec->target.direct_writes, (uint64_t)sec->target.cached_writes);
    if (sec->target.ops)
        sec->target.ops->close(&sec->target);
    epoch_close(sec);
    for (unsigned i = 0; i < NBUF; i++)
        free(sec->bufs[i].data);
    bs_tls_free(sec->tls);
    uv_loop_close(sec->loop);
    BS_INFO(MOD, "stopped");
    return BS_EXIT_OK;
}

