/* blkship-primary: drains the write log into its own persistent dirty
 * bitmap and streams the dirty extents over mutual TLS to
 * blkship-secondary, clearing a bit only when the replica has said the
 * data is durable.  This file: options, the state file, the status
 * answer, signals and main; primary/primary.h lists the other modules.
 */
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
#include "common/opt.h"
#include "common/state.h"
#include "primary/primary.h"

#define MOD "primary"

/* ---- State file ------------------------------------------------------- */

void state_text(const struct primary *p, char *out, size_t size)
{
    char pid[33], rid[33];

    bs_id_to_hex(p->primary_id, pid);
    bs_id_to_hex(p->replica_id, rid);
    if (p->demoted) {
        /* Format 2: no primary starts on it; blkship-secondary takes it
         * (docs/failover.md, "Demote"). */
        snprintf(out, size,
                 "format 2\nrole demoted\nprimary_id %s\nreplica_id %s\ngeneration %" PRIu64
                 "\ndemoted_from %" PRIu64 "\ndisk_sectors %" PRIu64 "\ncommitted_epoch %" PRIu64
                 "\nchanges %s\nrole_seq %" PRIu64 "\n",
                 pid, rid, p->dm_line, p->generation, p->disk_sectors, p->committed_epoch,
                 p->dm_checksum ? "checksum" : "file", p->role_seq);
        return;
    }
    snprintf(out, size,
             "format 1\nrole primary\nprimary_id %s\nreplica_id %s\ngeneration %" PRIu64
             "\nlog_id %" PRIu64 "\ndisk_sectors %" PRIu64 "\ncommitted_epoch %" PRIu64
             "\nepoch_reserved %" PRIu64 "\nchecksum_resync %d\nchecksum_pos %" PRIu64
             "\ngeneration_bitmap %" PRIu64 "\ngeneration_history %" PRIu64 " %" PRIu64
             "\ngeneration_shared %d\nrole_seq %" PRIu64 "\n",
             pid, rid, p->generation, p->log_id, p->disk_sectors, p->committed_epoch,
             p->epoch_reserve_target, p->cs_active ? 1 : 0, p->cs_active ? p->cs_saved : 0,
             p->bitmap_generation, p->gen_history[0], p->gen_history[1], p->gen_shared ? 1 : 0,
             p->role_seq);
}

/* One writer of the file at a time: the loop (save_state) or the pool.
 * seq orders the contents as the loop took them: a pool write queued
 * before a synchronous one but run after it would put older contents back
 * (a pairing's replica identity lost, say), so it is skipped; what it
 * carried is in the newer text. */
static int write_state(struct primary *p, const char *text, uint64_t seq)
{
    int r = 0;

    uv_mutex_lock(&p->state_lock);
    if (seq > p->state_seq_written) {
        r = bs_state_write(p->state_path, text);
        if (r == 0)
            p->state_seq_written = seq;
    }
    uv_mutex_unlock(&p->state_lock);
    if (r < 0)
        BS_ERR(MOD, "writing %s: %s", p->state_path, strerror(-r));
    return r;
}

int save_state(struct primary *p)
{
    char text[sizeof(p->state_text)];
    uint64_t reserved = p->epoch_reserve_target;
    int r;

    state_text(p, text, sizeof(text));
    r = write_state(p, text, ++p->state_seq);
    if (r == 0 && reserved > p->epoch_reserved_durable)
        p->epoch_reserved_durable = reserved;
    return r;
}

static void state_work(uv_work_t *req)
{
    struct primary *p = req->data;

    p->state_result = write_state(p, p->state_text, p->state_seq_async);
}

static void state_done(uv_work_t *req, int status)
{
    struct primary *p = req->data;

    p->state_running = false;
    if (status == 0 && p->state_result == 0 && p->state_reserved > p->epoch_reserved_durable) {
        p->epoch_reserved_durable = p->state_reserved;
        epoch_maybe_start(p); /* it may have waited for the reservation */
    }
    if (p->state_again && !p->stopping) {
        p->state_again = false;
        save_state_async(p);
    }
}

void save_state_async(struct primary *p)
{
    if (p->state_running) {
        p->state_again = true;
        return;
    }
    state_text(p, p->state_text, sizeof(p->state_text));
    p->state_seq_async = ++p->state_seq;
    p->state_reserved = p->epoch_reserve_target;
    p->state_req.data = p;
    if (uv_queue_work(p->loop, &p->state_req, state_work, state_done) == 0)
        p->state_running = true;
    else
        save_state(p);
}

/* A primary started on a promoted replica's state directory takes up its
 * line: the promotion's generation is ours, and the one it was promoted
 * from is what our bitmap's changes are against (docs/failover.md, "The
 * role swap").  With `newer`, only a promotion whose role_seq is above
 * `above` (one made after this directory's demotion) counts.  Returns 1
 * when it did, 0 when there is no such state, or -errno (logged). */
static int adopt_promoted(struct primary *p, const char *sec_path, bool newer, uint64_t above)
{
    char text[BS_STATE_MAX], role[32];
    uint64_t fmt, gen, prev, epoch = 0, seq = 0;
    int r = bs_state_read(sec_path, text, sizeof(text));

    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", sec_path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 || bs_state_get(text, "role", role,
                                                                    sizeof(role)) < 0) {
        BS_ERR(MOD, "%s is not a valid secondary state file; refusing to guess", sec_path);
        return -EINVAL;
    }
    (void)bs_state_get_u64(text, "role_seq", &seq);
    if (newer && (fmt != 2 || strcmp(role, "promoted") != 0 || seq <= above))
        return 0; /* the demotion here is the newer role */
    if (fmt != 2 || strcmp(role, "promoted") != 0) {
        BS_ERR(MOD, "%s holds a replica that was not promoted: its disk belongs to its primary. "
                    "Promote it first (blkship promote), or give blkship-primary another "
                    "--state-dir", sec_path);
        return -EPERM;
    }
    if (bs_state_get_u64(text, "generation", &gen) < 0 ||
        bs_state_get_u64(text, "generation_history", &prev) < 0 || gen == 0) {
        BS_ERR(MOD, "%s: a promoted replica without its generations; refusing to guess",
               sec_path);
        return -EINVAL;
    }
    (void)bs_state_get_u64(text, "promoted_epoch", &epoch);
    r = bs_id_random(p->primary_id);
    if (r < 0)
        return r;
    /* What an earlier role left here describes another line. */
    if ((unlink(p->dirty_path) < 0 && errno != ENOENT) ||
        (unlink(p->changes_path) < 0 && errno != ENOENT)) {
        r = -errno;
        BS_ERR(MOD, "removing an earlier role's bitmap or changes: %s", strerror(-r));
        return r;
    }
    memset(p->replica_id, 0, sizeof(p->replica_id));
    p->committed_epoch = p->epoch_reserve_target = 0;
    p->cs_active = false;
    p->log_id = 0;
    p->role_seq = seq + 1;
    p->generation = gen;
    p->bitmap_generation = prev;
    p->gen_history[0] = prev;
    p->gen_shared = false;
    p->adopted = true;
    BS_INFO(MOD, "taking up the promoted replica in this state directory (epoch %" PRIu64
                 ", generation %016" PRIx64 ", promoted from %016" PRIx64 "): the bitmap "
                 "records what changes from here", epoch, gen, prev);
    return 1;
}

static int load_state(struct primary *p, const char *state_dir)
{
    char text[BS_STATE_MAX], hex[64], sec_path[4096];
    uint64_t fmt;
    int r = bs_state_read(p->state_path, text, sizeof(text));

    if (r == -ENOENT) {
        snprintf(sec_path, sizeof(sec_path), "%s/secondary.state", state_dir);
        r = adopt_promoted(p, sec_path, false, 0);
        if (r < 0)
            return r;
        if (r == 1)
            return save_state(p);
        r = bs_id_random(p->primary_id);
        if (r < 0)
            return r;
        r = bs_generation_random(&p->generation);
        if (r < 0)
            return r;
        bs_id_to_hex(p->primary_id, hex);
        BS_INFO(MOD, "new primary identity %s", hex);
        return save_state(p);
    }
    if (r < 0) {
        BS_ERR(MOD, "reading %s: %s", p->state_path, strerror(-r));
        return r;
    }
    if (bs_state_get_u64(text, "format", &fmt) == 0 && fmt == 2 &&
        bs_state_get(text, "role", hex, sizeof(hex)) == 0 && strcmp(hex, "demoted") == 0) {
        /* Demoted here, then taken up by a blkship-secondary: if that
         * replica was promoted since, the promotion is the newer role. */
        uint64_t seq = 0;
        (void)bs_state_get_u64(text, "role_seq", &seq);
        snprintf(sec_path, sizeof(sec_path), "%s/secondary.state", state_dir);
        r = adopt_promoted(p, sec_path, true, seq);
        if (r == 1)
            return save_state(p);
        if (r < 0)
            return r;
        BS_ERR(MOD, "%s: this disk was demoted (blkship demote): it is to become a replica, "
                    "and no primary starts on it.  Start blkship-secondary on this state "
                    "directory", p->state_path);
        return -EPERM;
    }
    if (bs_state_get_u64(text, "format", &fmt) < 0 || fmt != 1 ||
        bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, p->primary_id) < 0 ||
        bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
        bs_id_from_hex(hex, p->replica_id) < 0 ||
        bs_state_get_u64(text, "generation", &p->generation) < 0 ||
        bs_state_get_u64(text, "log_id", &p->log_id) < 0) {
        BS_ERR(MOD, "%s is not a valid primary state file; refusing to guess", p->state_path);
        return -EINVAL;
    }
    /* Written since epochs; a file from before has committed none. */
    if (bs_state_get_u64(text, "committed_epoch", &p->committed_epoch) == -ENOENT)
        p->committed_epoch = 0;
    else if (bs_state_get_u64(text, "committed_epoch", &p->committed_epoch) < 0) {
        BS_ERR(MOD, "%s: committed_epoch is not a number; refusing to guess", p->state_path);
        return -EINVAL;
    }
    /* Every epoch number an earlier run used is below the reservation it
     * had made durable. */
    if (bs_state_get_u64(text, "epoch_reserved", &p->epoch_reserve_target) == -ENOENT)
        p->epoch_reserve_target = p->committed_epoch;
    else if (bs_state_get_u64(text, "epoch_reserved", &p->epoch_reserve_target) < 0) {
        BS_ERR(MOD, "%s: epoch_reserved is not a number; refusing to guess", p->state_path);
        return -EINVAL;
    }
    /* Written since checksum resyncs: one that was due, and how far it had
     * compared (every mark below checksum_pos was synced first). */
    {
        uint64_t cs = 0, pos = 0;
        int r1 = bs_state_get_u64(text, "checksum_resync", &cs);
        int r2 = bs_state_get_u64(text, "checksum_pos", &pos);
        if ((r1 < 0 && r1 != -ENOENT) || (r2 < 0 && r2 != -ENOENT) || cs > 1) {
            BS_ERR(MOD, "%s: bad checksum_resync or checksum_pos; refusing to guess",
                   p->state_path);
            return -EINVAL;
        }
        if (cs) {
            p->cs_active = true;
            p->cs_reason = "a checksum resync that had not finished";
            p->cs_pos = p->cs_done = p->cs_saved = pos;
            p->cs_clear = pos == 0; /* a resync from 0: the bitmap may go again */
            BS_INFO(MOD, "a checksum resync had compared up to sector %" PRIu64 "; it goes on "
                         "from there", pos);
        }
    }
    /* Written since generations are compared at connect; a file from
     * before has none (and its generation is not known to be shared). */
    {
        char hist[64];
        uint64_t shared = 0;
        int rb = bs_state_get_u64(text, "generation_bitmap", &p->bitmap_generation);
        int rs = bs_state_get_u64(text, "generation_shared", &shared);
        int rh = bs_state_get(text, "generation_history", hist, sizeof(hist));
        if ((rb < 0 && rb != -ENOENT) || (rs < 0 && rs != -ENOENT) || shared > 1 ||
            (rh == 0 && sscanf(hist, "%" SCNu64 " %" SCNu64, &p->gen_history[0],
                               &p->gen_history[1]) != 2)) {
            BS_ERR(MOD, "%s: bad generation_bitmap, generation_history or generation_shared; "
                        "refusing to guess", p->state_path);
            return -EINVAL;
        }
        if (rb == -ENOENT)
            p->bitmap_generation = 0;
        p->gen_shared = shared == 1;
    }
    if (bs_state_get_u64(text, "role_seq", &p->role_seq) == -ENOENT)
        p->role_seq = 0;
    p->epoch_reserved_durable = p->epoch_reserve_target;
    p->last_epoch = p->epoch_reserve_target > p->committed_epoch ? p->epoch_reserve_target
                                                                 : p->committed_epoch;
    return 0;
}

/* ---- Tick, status, signals ------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    struct primary *p = t->data;
    double delta = (double)(p->sent_bytes - p->acked_at_last_tick);

    p->acked_at_last_tick = p->sent_bytes;
    p->rate = p->rate == 0 ? delta : 0.7 * p->rate + 0.3 * delta;
    epoch_tick(p);
    if (p->log && p->cow_ok)
        epoch_request_cowc(p); /* fresh counters for the status */
    if (p->log)
        epoch_info_refresh(p); /* fresh counts for `blkship wlog info --control` */
    primary_notify(p);
    primary_metrics_publish(p);
    primary_events_tick(p);
    primary_xen_publish(p);
}

/* Every heartbeat_ms: the peer timeout, our heartbeat. */
static void on_heartbeat(uv_timer_t *t)
{
    struct primary *p = t->data;
    char why[96];

    if (p->ls != LS_STREAMING)
        return;
    if (uv_now(p->loop) - p->last_rx_ms > p->peer_timeout_ms) {
        snprintf(why, sizeof(why), "secondary silent for %" PRIu64 " ms (peer timeout %u ms)",
                 uv_now(p->loop) - p->last_rx_ms, p->peer_timeout_ms);
        link_down(p, why);
        return;
    }
    send_ctrl(p, BSR_HEARTBEAT, uv_now(p->loop));
}

/* Answers "status" with the agent's state as one JSON object (see
 * docs/man/blkship.8.md for the fields); a change that is not an addition
 * needs BS_CTL_SCHEMA incremented. */
static ssize_t status_handler(void *opaque, const char *request, char *reply, size_t size)
{
    struct primary *p = opaque;
    static const char *const names[] = { "disconnected", "connecting", "tls", "handshake",
                                         "replicating" };
    uint64_t total = p->disk_sectors * BSR_SECTOR_SIZE;
    uint64_t todo = p->dirty ? bs_dirty_todo_grains(p->dirty) : 0;
    uint64_t infl = p->dirty ? bs_dirty_inflight_grains(p->dirty) : 0;
    uint64_t dirty = (todo + infl) * (p->grain ? grain_bytes(p) : 0);
    uint64_t inflight = infl * (p->grain ? grain_bytes(p) : 0);
    struct bs_json_builder b;
    char rid[33];

    if (strcmp(request, "wlog info") == 0 || strcmp(request, "wlog cowc") == 0)
        return log_status_reply(p, request, reply, size);
    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", BS_CTL_SCHEMA);
    if (strcmp(request, "status") != 0) {
        bs_json_add_str(&b, "error", "unknown request");
        return bs_json_finish(&b, reply, size);
    }
    if (dirty > total)
        dirty = total;
    if (inflight > dirty)
        inflight = dirty;
    /* Progress is what is left to send: the grains sent and awaiting
     * their epoch's commit count as done here (they are in dirty_bytes). */
    uint64_t left = todo * (p->grain ? grain_bytes(p) : 0);
    if (left > total)
        left = total;
    double pct = total ? 100.0 * (double)(total - left) / (double)total : 0.0;
    double eta = p->rate > 0 ? (double)left / p->rate : -1;
    bs_id_to_hex(p->replica_id, rid);
    bs_json_add_str(&b, "role", "primary");
    bs_json_add_bool(&b, "connected", p->ls == LS_STREAMING);
    bs_json_add_str(&b, "state", names[p->ls]);
    bs_json_add_str(&b, "peer", p->connect_addr);
    bs_json_add_str(&b, "last_disconnect", p->last_down);
    bs_json_add_str(&b, "peer_certificate",
                    p->ls == LS_STREAMING && p->conn ? bs_conn_peer_identity(p->conn) : "");
    bs_json_add_u64(&b, "reconnects", p->sessions_up ? p->sessions_up - 1 : 0);
    bs_json_add_str(&b, "disk_state", primary_disk_state(p));
    bs_json_add_u64(&b, "connected_ms", p->ls == LS_STREAMING ? uv_now(p->loop) - p->link_up_ms : 0);
    bs_json_add_u64(&b, "disk_bytes", total);
    bs_json_add_u64(&b, "grain_bytes", p->grain ? grain_bytes(p) : 0);
    bs_json_add_u64(&b, "dirty_bytes", dirty);
    bs_json_add_u64(&b, "inflight_bytes", inflight);
    bs_json_add_u64(&b, "sent_bytes", p->sent_bytes);
    bs_json_add_u64(&b, "acked_bytes", p->acked_bytes);
    bs_json_add_u64(&b, "zero_bytes", p->zero_bytes);
    bs_json_add_fixed(&b, "sync_percent", pct, 2);
    bs_json_add_fixed(&b, "rate_bytes_per_sec", p->rate, 0);
    bs_json_add_fixed(&b, "eta_seconds", eta, 0);
    bs_json_add_u64(&b, "rate_limit_bytes_per_sec", p->rate_limit);
    bs_json_add_u64(&b, "rate_limit_waits", p->rl.waits);
    {
        char zname[16] = "none";
        if (p->compress)
            snprintf(zname, sizeof(zname), "zstd:%d", p->compress_level);
        bs_json_add_str(&b, "compression", zname);
        bs_json_add_bool(&b, "compression_active", p->zstd_on && p->ls == LS_STREAMING);
        bs_json_add_u64(&b, "compress_raw_bytes", p->zc.raw_bytes);
        bs_json_add_u64(&b, "compress_wire_bytes", p->zc.wire_bytes);
        /* raw / wire: 2.0 is half the bytes on the link; 1 before any data. */
        bs_json_add_fixed(&b, "compress_ratio",
                          p->zc.wire_bytes ? (double)p->zc.raw_bytes / (double)p->zc.wire_bytes : 1.0,
                          3);
        bs_json_add_u64(&b, "compressed_frames", p->zc.compressed);
        bs_json_add_u64(&b, "compress_not_paid", p->zc.not_paid);
        bs_json_add_u64(&b, "compress_skipped", p->zc.skipped);
        bs_json_add_u64(&b, "compress_no_buffer", p->zc.no_buffer);
    }
    epoch_status(p, &b);
    csync_status(p, &b);
    gen_status(p, &b);
    verify_status(p, &b);
    demote_status(p, &b);
    bs_json_add_u64(&b, "generation", p->generation);
    bs_json_add_u64(&b, "heartbeat_ms", p->heartbeat_ms);
    bs_json_add_u64(&b, "peer_timeout_ms", p->peer_timeout_ms);
    bs_json_add_str(&b, "resource", p->resource);
    bs_json_add_u64(&b, "log_epoch", p->ep_log_epoch);
    bs_json_add_bool(&b, "in_place", p->in_place);
    bs_json_add_bool(&b, "log_connected", p->log != NULL);
    {
        char lid[17];
        snprintf(lid, sizeof(lid), "%016" PRIx64, p->log_id);
        bs_json_add_str(&b, "log_id", lid);
    }
    bs_json_add_u64(&b, "read_errors", p->read_errors);
    bs_json_add_str(&b, "replica_id", rid);
    return bs_json_finish(&b, reply, size);
}

static void on_events(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    struct primary *p = opaque;

    bs_events_request(&p->events, request, pending);
}

static void on_checkpoint(void *opaque, const char *request, struct bs_ctl_pending *pending)
{
    epoch_checkpoint_request(opaque, request, pending);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct primary *p = h->data;

    BS_INFO(MOD, "signal %d: shutting down", signum);
    bs_notify_stopping(&p->notify, "shutting down");
    p->stopping = true;
    uv_stop(p->loop);
}

/* ---- Main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs("Usage: blkship-primary --writelog CTLSOCK --connect HOST:PORT --state-dir DIR\n"
          "                       --control SOCK --cert FILE --key FILE --ca FILE\n"
          "                       --peer-name NAME [options]\n"
          "\n"
          "Drains the write log of a disk served by nbdkit's writelog filter and\n"
          "replicates it over mutual TLS to blkship-secondary.\n"
          "\n"
          "  --writelog CTLSOCK       the log's control socket (/run/blkship/log_NAME.ctl)\n"
          "  --connect HOST:PORT      the secondary ([IPv6]:PORT for an address)\n"
          "  --state-dir DIR          identity, pairing and the dirty bitmap (created 0700)\n"
          "  --control SOCK           local control socket for 'blkship status'\n"
          "  --cert, --key FILE       this host's certificate and key (PEM; key mode 0600)\n"
          "  --ca FILE                CA the secondary's certificate must chain to\n"
          "  --crl FILE               revocation list of that CA (PEM), checked every handshake\n"
          "  --peer-name NAME         DNS name (or IP address) the secondary's certificate\n"
          "                           must carry as a subject alternative name\n"
          "  --mode async|checkpoint  async (default): an epoch every --epoch-ms;\n"
          "                           checkpoint: an epoch when 'blkship checkpoint' asks\n"
          "  --epoch-ms DURATION      async mode: at most one seal per DURATION (default\n"
          "                           100ms; 1ms-1h; a bare number is milliseconds);\n"
          "                           --interval is the same option's older name\n"
          "  --epoch-idle-ms DURATION async mode: while nothing is written, seal only this\n"
          "                           often (default: every --epoch-ms); the log is asked\n"
          "                           meanwhile, and the first write is sealed at once\n"
          "  --epoch-max-dirty SIZE   async mode: seal before --epoch-ms once the log holds\n"
          "                           more than SIZE dirty (default 64M; 0: never)\n"
          "  --max-payload SIZE       largest data frame (default 512K; 4K-8M, 4K multiple)\n"
          "  --initial-sync full|checksum\n"
          "                           a new pairing sends the whole disk (full, default), or\n"
          "                           compares checksums and sends what differs (checksum:\n"
          "                           for a replica that already holds most of the disk,\n"
          "                           such as an old primary coming back as the secondary)\n"
          "  --heartbeat-ms DUR       send a heartbeat every DUR (default 1s;\n"
          "                           100ms-60s; a bare number is milliseconds)\n"
          "  --peer-timeout-ms DUR    drop a link silent for DUR (default 5s; 500ms-1h,\n"
          "                           at least twice --heartbeat-ms; --heartbeat-timeout\n"
          "                           is the old name, a bare number there is seconds)\n"
          "  --on-split-brain CMD     run CMD (with /bin/sh -c) when the secondary says\n"
          "                           both disks changed since they parted (docs/hooks.md)\n"
          "  --on-out-of-sync CMD     run CMD when a verify finds the replica differs\n"
          "  --rate-limit SIZE        send at most SIZE bytes of data per second (a WAN\n"
          "                           link: 10M is 10 MiB/s; at least 64K; default 0, no\n"
          "                           limit)\n"
          "  --compress zstd[:LEVEL]  compress data frames where that pays (a slow link;\n"
          "                           LEVEL -7 to 19, default 3; none: off, the default)\n"
          "  --hook-timeout DUR       a hook still running after DUR is killed\n"
          "                           (default 30s; 100ms-1h)\n"
          "  --resource NAME          the name hooks and status give this disk\n"
          "                           (default: the last component of --state-dir); its\n"
          "                           configuration is /etc/blkship/NAME.conf if it exists\n"
          "  --config FILE            the resource's configuration ([common] and [primary]:\n"
          "                           keys are these options' names; the command line\n"
          "                           overrides them; docs/config.md)\n"
          "  --check-config           check the options and the file, load the\n"
          "                           certificates, and exit (0: OK)\n"
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
    { "writelog", required_argument, NULL, 'w' },
    { "connect", required_argument, NULL, 'c' },
    { "interval", required_argument, NULL, 'i' },
    { "epoch-ms", required_argument, NULL, 'e' },
    { "epoch-max-dirty", required_argument, NULL, 'D' },
    { "epoch-idle-ms", required_argument, NULL, 'E' },
    { "mode", required_argument, NULL, 'M' },
    { "max-payload", required_argument, NULL, 'm' },
    { "initial-sync", required_argument, NULL, 'I' },
    { "on-out-of-sync", required_argument, NULL, 'O' },
    { "rate-limit", required_argument, NULL, 'R' },
    { "compress", required_argument, NULL, 'Z' },
    BS_AGENT_OPTIONS,
    { "version", no_argument, NULL, 'V' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* What the options set besides the agent's own fields. */
struct start_opts {
    struct bs_agent_opts agent;
};

/* Applies one option, from the command line or from the configuration
 * file (common/config.h); `name` is how a message names it ("--mode", or
 * "FILE:LINE: mode").  Returns -1 to go on, or the exit status. */
static int apply_option(struct primary *p, struct start_opts *so, int opt, const char *arg,
                        const char *name)
{
    uint64_t v;
    int r = bs_agent_opt(&so->agent, opt, arg, name);

    if (r)
        return r < 0 ? BS_EXIT_USAGE : -1;
    switch (opt) {
    case 'w': p->writelog_path = arg; break;
    case 'c': p->connect_addr = arg; break;
    case 'i':
    case 'e':
        if (bs_opt_duration_ms(name, arg, 1, 1, 3600000, &v) < 0)
            return BS_EXIT_USAGE;
        p->epoch_ms = (unsigned)v;
        break;
    case 'E':
        if (bs_opt_duration_ms(name, arg, 1, 1, 3600000, &v) < 0)
            return BS_EXIT_USAGE;
        p->epoch_idle_ms = (unsigned)v;
        break;
    case 'D':
        if (bs_opt_size(name, arg, 0, 1ull << 40, &v) < 0)
            return BS_EXIT_USAGE;
        p->epoch_max_dirty = v;
        break;
    case 'M':
        if (strcmp(arg, "async") == 0) {
            p->mode = MODE_ASYNC;
        } else if (strcmp(arg, "checkpoint") == 0) {
            p->mode = MODE_CHECKPOINT;
        } else {
            bs_usage_error("%s %s: async or checkpoint", name, arg);
            return BS_EXIT_USAGE;
        }
        break;
    case 'm':
        if (bs_opt_size(name, arg, 4096, BSR_MAX_PAYLOAD_LIMIT, &v) < 0)
            return BS_EXIT_USAGE;
        if (v % 4096) {
            bs_usage_error("%s %s: not a multiple of 4096", name, arg);
            return BS_EXIT_USAGE;
        }
        p->payload_pref = (uint32_t)v;
        break;
    case 'I':
        if (strcmp(arg, "full") == 0) {
            p->initial_checksum = false;
        } else if (strcmp(arg, "checksum") == 0) {
            p->initial_checksum = true;
        } else {
            bs_usage_error("%s %s: full or checksum", name, arg);
            return BS_EXIT_USAGE;
        }
        break;
    case 'O':
        if (bs_opt_nonempty(name, arg) < 0)
            return BS_EXIT_USAGE;
        p->on_out_of_sync = arg;
        break;
    case 'R':
        if (bs_opt_size(name, arg, 0, 1ull << 40, &v) < 0)
            return BS_EXIT_USAGE;
        if (v && v < 64 * 1024) {
            bs_usage_error("%s %s: at least 64K (bytes per second), or 0 for no limit", name,
                           arg);
            return BS_EXIT_USAGE;
        }
        p->rate_limit = v;
        break;
    case 'Z':
        if (bs_compress_parse(name, arg, &p->compress_level, &p->compress) < 0)
            return BS_EXIT_USAGE;
        break;
    case 'V': puts("blkship-primary " BLKSHIP_VERSION); return BS_EXIT_OK;
    case 'h': usage(stdout); return BS_EXIT_OK;
    default: usage(stderr); return BS_EXIT_USAGE;
    }
    return -1;
}

int main(int argc, char **argv)
{
    static struct primary prim;
    struct primary *p = &prim;
    struct start_opts so;
    static struct bs_config cfg; /* its values are the options' strings: kept */
    int opt, r;

    p->epoch_ms = DEFAULT_EPOCH_MS;
    p->epoch_max_dirty = DEFAULT_EPOCH_MAX_DIRTY;
    p->mode = MODE_ASYNC;
    bs_agent_opts_init(&so.agent);
    p->payload_pref = DEFAULT_PAYLOAD;
    p->connect_fd = -1;
    if (bs_config_load(argc, argv, "primary", opts, &cfg) < 0)
        return BS_EXIT_USAGE;
    for (size_t i = 0; i < cfg.n; i++) {
        char where[4200];
        bs_config_where(&cfg, i, where, sizeof(where));
        if (!cfg.e[i].value)
            continue; /* a flag set to no */
        r = apply_option(p, &so, cfg.e[i].opt->val, cfg.e[i].value, where);
        if (r >= 0)
            return r;
    }
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char name[64];
        r = apply_option(p, &so, opt, optarg, bs_config_opt_name(opts, opt, name, sizeof(name)));
        if (r >= 0)
            return r;
    }
    {
        const struct bs_opt_required required[] = {
            { "--writelog", p->writelog_path, false }, { "--connect", p->connect_addr, false },
        };
        if (bs_opt_check_required(required, sizeof(required) / sizeof(required[0])) < 0) {
            if (cfg.path[0])
                fprintf(stderr, "(or set it in [primary] of %s)\n", cfg.path);
            return BS_EXIT_USAGE;
        }
    }
    if (bs_agent_opts_check(&so.agent, "primary", cfg.path) < 0)
        return BS_EXIT_USAGE;
    p->heartbeat_ms = so.agent.heartbeat_ms;
    p->peer_timeout_ms = so.agent.peer_timeout_ms;
    p->on_split_brain = so.agent.on_split_brain;
    if (bs_opt_no_arguments(optind, argc, argv) < 0)
        return BS_EXIT_USAGE;
    if (bs_opt_hostport("--connect", p->connect_addr) < 0)
        return BS_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);

    if (bs_tls_new(&so.agent.tls, false, &p->tls) < 0)
        return BS_EXIT_USAGE;
    if (so.agent.check) {
        /* --check-config: every value parsed, the certificates loaded. */
        if (cfg.path[0])
            printf("blkship-primary: configuration OK (%s)\n", cfg.path);
        else
            printf("blkship-primary: configuration OK\n");
        bs_tls_free(p->tls);
        return BS_EXIT_OK;
    }
    /* A name that cannot resolve is a mistake to report now; a resolver
     * that is down for the moment is retried with the connection. */
    r = resolve_at_start(p);
    if (r < 0 && r != -EAGAIN)
        return BS_EXIT_FAILURE;
    r = bs_mkdir(so.agent.state_dir);
    if (r < 0) {
        BS_ERR(MOD, "state directory %s: %s", so.agent.state_dir, strerror(-r));
        return BS_EXIT_FAILURE;
    }
    {
        /* A configuration file names its resource. */
        char from_file[256];
        if (!so.agent.resource && bs_config_resource(&cfg, from_file, sizeof(from_file)))
            bs_resource_name(from_file, so.agent.state_dir, p->resource, sizeof(p->resource));
        else
            bs_resource_name(so.agent.resource, so.agent.state_dir, p->resource, sizeof(p->resource));
    }
    snprintf(p->state_path, sizeof(p->state_path), "%s/primary.state", so.agent.state_dir);
    snprintf(p->dirty_path, sizeof(p->dirty_path), "%s/dirty.bitmap", so.agent.state_dir);
    snprintf(p->changes_path, sizeof(p->changes_path), "%s/demoted.changes", so.agent.state_dir);
    /* load_state may write the state already (a new identity, a promoted
     * replica's line taken up). */
    if (uv_mutex_init(&p->state_lock) < 0)
        return BS_EXIT_FAILURE;
    if (load_state(p, so.agent.state_dir) < 0)
        return BS_EXIT_FAILURE;
    p->sent = calloc(SENT_CAP, sizeof(*p->sent));
    if (!p->sent)
        return BS_EXIT_FAILURE;

    p->loop = uv_default_loop();
    uv_timer_init(p->loop, &p->retry);
    uv_timer_init(p->loop, &p->log_retry);
    uv_timer_init(p->loop, &p->tick);
    uv_timer_init(p->loop, &p->heartbeat);
    p->heartbeat.data = p;
    uv_timer_init(p->loop, &p->epoch_timer);
    uv_timer_init(p->loop, &p->drain_timer);
    uv_timer_init(p->loop, &p->dirty_poll);
    uv_timer_init(p->loop, &p->vf_timer);
    p->vf_timer.data = p;
    uv_timer_init(p->loop, &p->dm_timer);
    uv_timer_init(p->loop, &p->rl_timer);
    p->rl_timer.data = p;
    /* The bucket holds at least one whole frame of the largest payload. */
    bs_rate_init(&p->rl, p->rate_limit,
                 BSR_FRAME_HDR_LEN + (uint64_t)p->payload_pref + BSR_FRAME_CRC_LEN, uv_hrtime());
    if (p->rate_limit)
        BS_INFO(MOD, "data sent at most %" PRIu64 " bytes per second (bursts of %" PRIu64 ")",
                p->rate_limit, p->rl.burst);
    if (p->compress && compress_setup(p) < 0) {
        BS_ERR(MOD, "--compress: out of memory");
        return BS_EXIT_FAILURE;
    }
    p->dm_timer.data = p;
    p->drain_timer.data = p->dirty_poll.data = p;
    uv_idle_init(p->loop, &p->pump_soon);
    p->retry.data = p->log_retry.data = p->tick.data = p->epoch_timer.data = p;
    p->start_ms = uv_now(p->loop);
    p->pump_soon.data = p;
    /* Before anything a failed start would have to undo. */
    if (so.agent.xen_domain) {
        r = bs_xen_open(p->loop, so.agent.xen_domain, p->resource, &p->xen);
        if (r == -ENOTSUP)
            BS_ERR(MOD, "--xen-domain: this blkship was built without libxenstore");
        if (r == -ENOTSUP || r == -EINVAL)
            return BS_EXIT_USAGE;
        if (r < 0)
            return BS_EXIT_FAILURE;
    }
    if (so.agent.metrics) {
        r = bs_metrics_start(so.agent.metrics, &p->metrics);
        if (r < 0) {
            bs_xen_close(p->xen);
            return BS_EXIT_FAILURE;
        }
    }
    bs_events_init(&p->events, p->resource, "primary");
    p->hooks = bs_hooks_new(p->loop, p->resource, "primary", so.agent.hook_timeout_ms);
    if (!p->hooks) {
        BS_ERR(MOD, "out of memory for the hooks");
        return BS_EXIT_FAILURE;
    }
    primary_metrics_publish(p);
    r = bs_ctl_start(p->loop, so.agent.control, status_handler, p, &p->ctl);
    if (r < 0) {
        BS_ERR(MOD, "control socket %s: %s", so.agent.control, uv_strerror(r));
        return BS_EXIT_FAILURE;
    }
    bs_ctl_add_async(p->ctl, "checkpoint", on_checkpoint);
    bs_ctl_add_async(p->ctl, "resolve", gen_resolve_request);
    bs_ctl_add_async(p->ctl, "verify", verify_request);
    bs_ctl_add_async(p->ctl, "demote", demote_request);
    bs_ctl_add_async(p->ctl, "events", on_events);
    uv_signal_init(p->loop, &p->sigterm);
    uv_signal_init(p->loop, &p->sigint);
    p->sigterm.data = p->sigint.data = p;
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&p->heartbeat, on_heartbeat, p->heartbeat_ms, p->heartbeat_ms);
    uv_timer_start(&p->log_retry, on_log_retry, 0, 0);
    seal_drain_start(p);
    /* READY=1 waits for the write log (primary_notify). */
    r = bs_notify_start(&p->notify, p->loop);
    if (r < 0) {
        BS_ERR(MOD, "systemd watchdog timer: %s", uv_strerror(r));
        return BS_EXIT_FAILURE;
    }
    /* The first epoch's number, on disk while the link comes up. */
    epoch_reserve_ahead(p);

    uv_run(p->loop, UV_RUN_DEFAULT);

    if (p->conn)
        bs_conn_close(p->conn, false, NULL, NULL);
    if (p->log)
        log_link_close(p->log);
    p->log = NULL;
    if (p->connect_poll_active) {
        uv_close((uv_handle_t *)&p->connect_poll, NULL);
        close(p->connect_fd);
    }
    if (p->resolving)
        uv_cancel((uv_req_t *)&p->resolve_req);
    epoch_fail_all(p, "the primary is shutting down");
    verify_cancel(p, "the primary is shutting down");
    bs_events_close(&p->events, p->committed_epoch);
    primary_xen_publish(p); /* "stopped" */
    bs_xen_close(p->xen);
    p->xen = NULL;
    bs_ctl_stop(p->ctl);
    bs_notify_close(&p->notify);
    bs_metrics_stop(p->metrics);
    p->metrics = NULL;
    bs_hooks_close(p->hooks);
    p->hooks = NULL;
    uv_close((uv_handle_t *)&p->retry, NULL);
    uv_close((uv_handle_t *)&p->log_retry, NULL);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_close((uv_handle_t *)&p->heartbeat, NULL);
    uv_close((uv_handle_t *)&p->epoch_timer, NULL);
    uv_close((uv_handle_t *)&p->drain_timer, NULL);
    uv_close((uv_handle_t *)&p->dirty_poll, NULL);
    uv_close((uv_handle_t *)&p->vf_timer, NULL);
    uv_close((uv_handle_t *)&p->dm_timer, NULL);
    uv_close((uv_handle_t *)&p->rl_timer, NULL);
    uv_close((uv_handle_t *)&p->pump_soon, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_run(p->loop, UV_RUN_DEFAULT);
    bs_dirty_close(p->dirty);
    bs_tls_free(p->tls);
    free(p->sent);
    compress_teardown(p);
    uv_loop_close(p->loop);
    BS_INFO(MOD, "stopped");
    return BS_EXIT_OK;
}
