/* The secondary's epochs (docs/epochs.md, section 4): the journal wired
 * between the session and the replica.
 *
 * In a version 2 session every DATA and ZERO frame belongs to the epoch
 * open on the link.  While the replica holds a consistent image, an epoch's
 * frames go, in arrival order, into the appender's queue; one thread-pool
 * job at a time appends them to the journal.  END_EPOCH appends the commit
 * record and syncs the journal; only then is COMMITTED sent.  The applier
 * (another thread-pool job, in order, up to APPLY_BATCH_MAX epochs at a
 * time) copies the committed epochs to the replica through the target,
 * flushes the replica, records the last as applied_epoch in the state file
 * and releases their journal space.  At start-up, before the secondary listens, committed epochs not
 * yet applied are applied and whatever followed them is discarded.
 *
 * Where the replica holds no image to protect (a new pairing, after a
 * version 1 session or an epoch that could not be journalled) an epoch is
 * written in place and the replica reported inconsistent until it commits:
 * by the session's own write path when nothing is queued, otherwise by the
 * appender, in order.  An epoch larger than the journal is applied in place
 * too, after what the journal holds, the replica recorded inconsistent
 * first.  The loop never waits for the disk: every journal, replica and
 * state-file access here runs in the thread pool, except at start-up.
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define MOD "secondary"

static void ap_kick(struct secondary *sec);
static void applier_kick(struct secondary *sec);

/* ---- Crash points (tests only) ------------------------------------------------ */

static const char *const crash_names[] = {
    [CRASH_BEFORE_COMMIT] = "before-commit",
    [CRASH_AFTER_COMMIT] = "after-commit",
    [CRASH_MID_APPLY] = "mid-apply",
    [CRASH_BEFORE_APPLIED_RECORD] = "before-applied-record",
    [CRASH_BEFORE_RELEASE] = "before-release",
};

int epoch_parse_crash(const char *value, enum crash_point *out)
{
    *out = CRASH_NONE;
    if (!value || !*value)
        return 0;
    for (unsigned i = CRASH_BEFORE_COMMIT; i <= CRASH_BEFORE_RELEASE; i++)
        if (strcmp(value, crash_names[i]) == 0) {
            *out = (enum crash_point)i;
            return 0;
        }
    return -EINVAL;
}

void epoch_crash_point(struct secondary *sec, enum crash_point point)
{
    if (sec->crash != point)
        return;
    if (point == CRASH_BEFORE_COMMIT)
        usleep(500 * 1000); /* whatever the loop would send first is on the wire */
    BS_ERR(MOD, "BLKSHIP_TEST_CRASH=%s: exiting here (test only)", crash_names[point]);
    _exit(99);
}

/* ---- Applying journal records to the replica --------------------------------- */

struct apply_ctx {
    struct secondary *sec;
    uint64_t bytes;
    uint64_t unhinted;   /* bytes written since writeback was last started */
    unsigned records;
};

/* Zeroes [offset, end) through the target, a chunk at a time. */
static int zero_range(struct bs_target *t, uint64_t offset, uint64_t end)
{
    while (offset < end) {
        uint64_t next = (offset / BS_TARGET_ZERO_CHUNK + 1) * BS_TARGET_ZERO_CHUNK;
        uint64_t len = (next < end ? next : end) - offset;
        int r = t->ops->zero(t, offset, len);
        if (r < 0)
            return r;
        offset += len;
    }
    return 0;
}

/* Small writes (SMALL_WRITE) go through the page cache: each caller flushes
 * the target before anything counts as done (an ACK, a commit, an applied
 * record), and that flush writes them back many at a time, where one
 * direct write after another would wait for the disk once per 4 KiB grain
 * (a loop device here: about 7,000 such writes a second, a third of what
 * a guest writing 4 KiB at random at half speed dirties). */
/* During a long apply, writeback of the cached writes is started every so
 * many bytes, so that the closing flush does not find all of them dirty. */
#define WRITEBACK_EVERY (32ull << 20)

/* One record (or frame) to the replica; worker threads only. */
static int write_in_place(struct secondary *sec, enum bs_journal_kind kind, uint64_t sector,
                          uint32_t count, const void *data)
{
    struct bs_target *t = &sec->target;
    uint64_t off = sector * BSR_SECTOR_SIZE, len = (uint64_t)count * BSR_SECTOR_SIZE;
    int r;

    if (kind == BS_JOURNAL_DATA)
        r = t->ops->write(t, data, (size_t)len, off, len <= SMALL_WRITE ? BS_TARGET_CACHED : 0);
    else
        r = zero_range(t, off, off + len);
    if (r < 0)
        BS_ERR(MOD, "%s %" PRIu64 " bytes at offset %" PRIu64 " of %s: %s",
               kind == BS_JOURNAL_DATA ? "writing" : "zeroing", len, off, t->path, strerror(-r));
    return r;
}

static int apply_record(void *opaque, const struct bs_journal_record *rec)
{
    struct apply_ctx *c = opaque;
    int r = write_in_place(c->sec, rec->kind, rec->sector, rec->count, rec->data);

    if (r < 0)
        return r;
    c->bytes += (uint64_t)rec->count * BSR_SECTOR_SIZE;
    c->unhinted += (uint64_t)rec->count * BSR_SECTOR_SIZE;
    if (c->unhinted >= WRITEBACK_EVERY && c->sec->target.ops->writeback) {
        c->sec->target.ops->writeback(&c->sec->target);
        c->unhinted = 0;
    }
    if (++c->records == 1)
        epoch_crash_point(c->sec, CRASH_MID_APPLY);
    return 0;
}

/* Copies the n committed epochs of list (consecutive, oldest first) to the
 * replica, makes them durable, records the last and frees their journal
 * space: the applier's whole job, in this order.  One flush and one state
 * record for all of them: an epoch a flush (an RBD round trip, a disk's
 * cache flush) would cost more than its writes is not applied alone when
 * others wait behind it.  Until the record the journal keeps them all, and
 * a crash applies them again.  Blocks. */
static int apply_epochs(struct secondary *sec, const uint64_t *list, size_t n, uint64_t *bytes)
{
    struct apply_ctx c = { .sec = sec };
    uint64_t e = list[n - 1];
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        r = bs_journal_replay(sec->journal, list[i], apply_record, &c);
        if (r < 0)
            BS_ERR(MOD, "applying epoch %" PRIu64 " to %s: %s", list[i], sec->target.path,
                   strerror(-r));
    }
    *bytes = c.bytes;
    if (r < 0)
        return r;
    r = sec->target.ops->flush(&sec->target);
    if (r < 0) {
        BS_ERR(MOD, "flushing %s after epoch %" PRIu64 ": %s", sec->target.path, e, strerror(-r));
        return r;
    }
    epoch_crash_point(sec, CRASH_BEFORE_APPLIED_RECORD);
    r = sec_save_epochs(sec, e, true);
    if (r < 0)
        return r;
    epoch_crash_point(sec, CRASH_BEFORE_RELEASE);
    return bs_journal_release(sec->journal, e);
}

/* ---- Start-up ------------------------------------------------------------------ */

int epoch_open(struct secondary *sec, const char *path, uint64_t max_bytes)
{
    uint64_t list[APPLY_BATCH_MAX], started = uv_hrtime(), replayed = 0, replayed_bytes = 0;
    size_t n;
    int r;

    sec->journal_max = max_bytes;
    r = bs_journal_open(path, max_bytes, sec->max_payload, &sec->journal);
    if (r < 0)
        return r;
    sec->journal_max = bs_journal_size(sec->journal);
    /* Committed epochs first, oldest first, before anything else happens:
     * the state file may already record some (a crash before their
     * release), which only need releasing. */
    while ((n = bs_journal_committed(sec->journal, list, APPLY_BATCH_MAX)) > 0) {
        uint64_t e = list[0], bytes = 0;
        if (n > APPLY_BATCH_MAX)
            n = APPLY_BATCH_MAX;
        if (e <= sec->applied_epoch) {
            BS_INFO(MOD, "epoch %" PRIu64 " is already on the replica; releasing its journal space",
                    e);
            r = bs_journal_release(sec->journal, e);
        } else {
            if (n == 1)
                BS_INFO(MOD, "replaying committed epoch %" PRIu64 " from %s to the replica", e,
                        path);
            else
                BS_INFO(MOD, "replaying committed epochs %" PRIu64 " to %" PRIu64 " from %s to "
                             "the replica",
                        e, list[n - 1], path);
            r = apply_epochs(sec, list, n, &bytes);
            replayed += n;
            replayed_bytes += bytes;
            if (r == 0) {
                sec->applied_epoch = list[n - 1];
                sec->consistent = sec->st_consistent;
            }
        }
        if (r < 0) {
            BS_ERR(MOD, "cannot bring the replica up to the journal's committed epochs: %s",
                   strerror(-r));
            return r;
        }
    }
    sec->committed_epoch = sec->applied_epoch;
    if (!sec->consistent)
        snprintf(sec->note, sizeof(sec->note), "%s",
                 sec->applied_epoch ? "written in place since its last committed epoch"
                                    : "no epoch committed yet (new pairing or version 1 only)");
    if (replayed)
        BS_INFO(MOD, "replayed %" PRIu64 " epochs (%" PRIu64 " bytes) in %" PRIu64 " ms", replayed,
                replayed_bytes, (uv_hrtime() - started) / 1000000);
    BS_INFO(MOD, "replica at epoch %" PRIu64 ", %s; journal %s (%" PRIu64 " bytes)",
            sec->applied_epoch, sec->consistent ? "consistent" : "NOT consistent", path,
            sec->journal_max);
    return 0;
}

void epoch_close(struct secondary *sec)
{
    bs_journal_close(sec->journal);
    sec->journal = NULL;
}

bool epoch_replica_consistent(struct secondary *sec)
{
    /* After a failed apply the target may have failed under writes that
     * came before it: it vouches for nothing until a restart. */
    return sec->consistent && !sec->applying && !sec->ap_inplace && !sec->ap_try_oversize &&
           !sec->apply_failed;
}

bool epoch_quiet(struct secondary *sec)
{
    return !sec->ap_running && sec->jq_len == 0 && !sec->sj.running;
}

void epoch_apply_again(struct secondary *sec)
{
    sec->apply_failed = false;
    sec->note[0] = 0;
    applier_kick(sec);
}

/* Everything committed is on the replica and nothing applies. */
static bool applier_caught_up(struct secondary *sec)
{
    uint64_t list[1];

    return !sec->apl_running && !sec->apply_failed &&
           bs_journal_committed(sec->journal, list, 1) == 0;
}

bool epoch_settled(struct secondary *sec)
{
    return applier_caught_up(sec) && epoch_quiet(sec);
}

/* ---- State jobs: the v1 record and in-place commits ------------------------------- */

static void sj_work(uv_work_t *req)
{
    struct secondary *sec = req->data;
    struct state_job *j = &sec->sj;

    j->result = 0;
    if (j->flush) {
        j->result = sec->target.ops->flush(&sec->target);
        if (j->result < 0)
            BS_ERR(MOD, "flushing %s: %s", sec->target.path, strerror(-j->result));
        else
            epoch_crash_point(sec, CRASH_BEFORE_APPLIED_RECORD);
    }
    if (j->result == 0)
        j->result = sec_save_epochs(sec, j->applied, j->consistent);
}

static void sj_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    struct state_job *j = &sec->sj;
    struct session *s = sec->session;
    int r = status < 0 ? status : j->result;
    bool ours = s && s->id == j->session_id;

    j->running = false;
    if (r < 0) {
        if (ours) {
            session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, j->flush ? "cannot commit an epoch written in place"
                                    : "cannot record the replica inconsistent");
        }
        return;
    }
    if (j->flush) {
        /* An epoch written in place is committed: the replica holds it. */
        sec->applied_epoch = sec->committed_epoch = j->applied;
        sec->consistent = true;
        sec->note[0] = '\0';
        BS_INFO(MOD, "epoch %" PRIu64 " (written in place) committed: the replica is consistent",
                j->applied);
        if (ours) {
            sgen_committed(s);
            session_send_control(s, BSR_COMMITTED, j->applied, 0);
            s->ep_mode = EPM_NONE;
            s->ep_hold = false;
            session_read_header(s);
        }
        return;
    }
    sec->consistent = false;
    snprintf(sec->note, sizeof(sec->note), "a version 1 session writes in place");
    if (ours) {
        s->ep_v1_prepare = false;
        s->ep_hold = false;
        session_read_header(s);
    }
}

static void sj_start(struct session *s, bool flush, uint64_t applied, bool consistent)
{
    struct secondary *sec = s->sec;
    struct state_job *j = &sec->sj;
    int r;

    j->flush = flush;
    j->applied = applied;
    j->consistent = consistent;
    j->session_id = s->id;
    j->req.data = sec;
    r = uv_queue_work(sec->loop, &j->req, sj_work, sj_done);
    if (r < 0) {
        BS_ERR(MOD, "cannot queue a state record: %s", uv_strerror(r));
        session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
        session_end(s, "cannot record the replica's state");
        return;
    }
    j->running = true;
}

/* ---- Sessions ------------------------------------------------------------------ */

/* Forgets the epoch the appender had open (nothing of it is queued or
 * running): what the journal holds of it is dropped. */
static void appender_reset(struct secondary *sec)
{
    bs_journal_abort(sec->journal);
    sec->ap_epoch_open = sec->ap_inplace = sec->ap_oversize = false;
    sec->ap_space_wait = sec->ap_try_oversize = false;
    sec->ap_drop_open = false;
}

bool epoch_session_begin(struct session *s)
{
    struct secondary *sec = s->sec;

    /* Nothing of an earlier session is queued or running (epoch_quiet):
     * what it journalled of an epoch it did not end is dropped. */
    appender_reset(sec);
    s->ep_mode = EPM_NONE;
    s->ep_last = sec->committed_epoch;
    sec->proto_version = s->limits.version;
    if (s->limits.version >= 2)
        return true;
    /* A version 1 session writes in place: the replica is no image of an
     * epoch from its first write on, and a crash must not let it claim to
     * be.  Its writes also wait for the journal's epochs to be applied. */
    if (!sec->consistent && applier_caught_up(sec)) {
        snprintf(sec->note, sizeof(sec->note), "a version 1 session writes in place");
        return true;
    }
    s->ep_v1_prepare = true;
    s->ep_hold = true;
    s->state = ST_STALLED;
    epoch_resume(s);
    return false;
}

/* Drops the journal's open epoch, if the appender holds nothing. */
static void drop_open_epoch(struct secondary *sec)
{
    uint64_t used;

    if (sec->ap_running || sec->jq_len)
        return;
    used = bs_journal_used(sec->journal);
    if (sec->ap_epoch_open && !sec->ap_inplace)
        BS_WARN(MOD, "the uncommitted epoch after %" PRIu64 " is discarded (journal %" PRIu64
                     " bytes in use before)", sec->committed_epoch, used);
    appender_reset(sec);
}

void epoch_session_lost(struct secondary *sec)
{
    sec->ap_drop_open = true;
    drop_open_epoch(sec);
}

/* Queues a checked frame for the appender; false when the queue is full. */
static bool jq_push(struct session *s)
{
    struct secondary *sec = s->sec;
    struct jq_entry *e;

    if (sec->jq_len == JQ_LEN)
        return false;
    e = &sec->jq[(sec->jq_head + sec->jq_len) % JQ_LEN];
    memset(e, 0, sizeof(*e));
    e->sector = s->frame.sector;
    e->count = s->frame.count;
    e->session_id = s->id;
    e->prov_epoch = s->ep_last + 1;
    switch (s->frame.kind) {
    case BSR_DATA:
        e->kind = JQ_DATA;
        e->buf = s->buf;
        s->buf = NULL;
        break;
    case BSR_ZERO: e->kind = JQ_ZERO; break;
    case BSR_FLUSH: e->kind = JQ_SYNC; break;
    case BSR_END_EPOCH: e->kind = JQ_COMMIT; break;
    default: e->kind = JQ_ABORT; break;
    }
    sec->jq_len++;
    ap_kick(sec);
    return true;
}

/* Hands the frame to the queue, or stalls until there is room. */
static void queue_frame(struct session *s)
{
    if (jq_push(s)) {
        session_read_header(s);
        return;
    }
    s->ep_frame_waiting = true;
    s->ep_hold = true;
    s->state = ST_STALLED;
}

bool epoch_frame(struct session *s)
{
    struct secondary *sec = s->sec;
    uint8_t kind = s->frame.kind;

    if (kind == BSR_END_EPOCH || kind == BSR_ABORT_EPOCH) {
        uint64_t e = s->frame.sector;
        if (e <= s->ep_last) {
            session_reject_frame(s, "epoch number not above the last one closed or committed");
            return false;
        }
        if (s->ep_mode == EPM_NONE && kind == BSR_END_EPOCH && !sec->consistent &&
            epoch_quiet(sec) && applier_caught_up(sec))
            s->ep_mode = EPM_INPLACE; /* an empty epoch, in place */
        s->ep_last = e;
        if (s->ep_mode == EPM_INPLACE) {
            s->ep_mode = EPM_NONE;
            if (kind == BSR_ABORT_EPOCH) {
                /* What it wrote in place stays: the replica was no image
                 * before it and is none now. */
                BS_WARN(MOD, "epoch %" PRIu64 " aborted by the primary; the replica, written in "
                             "place, stays inconsistent",
                        e);
                session_read_header(s);
                return false;
            }
            s->ep_mode = EPM_INPLACE;
            s->ep_end_waiting = true;
            s->ep_end_epoch = e;
            s->ep_hold = true;
            s->state = ST_STALLED;
            epoch_resume(s);
            return false;
        }
        s->ep_mode = EPM_NONE;
        queue_frame(s);
        return false;
    }
    if (kind == BSR_FLUSH) {
        if (s->ep_mode == EPM_INPLACE)
            return true;
        queue_frame(s);
        return false;
    }
    /* DATA or ZERO: the first frame of an epoch chooses how it is written. */
    if (s->ep_mode == EPM_NONE)
        s->ep_mode = !sec->consistent && epoch_quiet(sec) && applier_caught_up(sec)
                         ? EPM_INPLACE
                         : EPM_JOURNAL;
    if (s->ep_mode == EPM_INPLACE)
        return true;
    queue_frame(s);
    return false;
}

void epoch_resume(struct session *s)
{
    struct secondary *sec = s->sec;

    if (s->ep_v1_prepare) {
        if (sec->sj.running || !epoch_quiet(sec) || !applier_caught_up(sec))
            return;
        sj_start(s, false, sec->applied_epoch, false);
        return;
    }
    if (s->ep_end_waiting) {
        if (sec->writes_inflight || sec->sj.running)
            return;
        s->ep_end_waiting = false;
        sj_start(s, true, s->ep_end_epoch, true);
        return;
    }
    if (s->ep_frame_waiting) {
        if (!jq_push(s))
            return;
        s->ep_frame_waiting = false;
        s->ep_hold = false;
        session_read_header(s);
    }
}

/* ---- The appender ----------------------------------------------------------------- */

/* DATA and ZERO entries: ap_batch of them, of one epoch, from the head,
 * journalled (or written in place) in order; stops at the first failure,
 * which ap_done then handles as that entry's own result. */
static void ap_work_batch(struct secondary *sec)
{
    struct bs_journal_entry in[AP_BATCH_MAX];
    int r = 0;
    unsigned i;

    if (!sec->ap_inplace) {
        /* Journalled: runs of one provisional epoch number, each in as
         * few writes as the journal can take them. */
        for (i = 0; i < sec->ap_batch && r == 0;) {
            const struct jq_entry *first = &sec->jq[(sec->jq_head + i) % JQ_LEN];
            size_t n = 0, done;

            while (i + n < sec->ap_batch) {
                const struct jq_entry *e = &sec->jq[(sec->jq_head + i + n) % JQ_LEN];
                if (e->prov_epoch != first->prov_epoch)
                    break;
                in[n++] = (struct bs_journal_entry){
                    .kind = e->kind == JQ_DATA ? BS_JOURNAL_DATA : BS_JOURNAL_ZERO,
                    .sector = e->sector, .count = e->count,
                    .data = e->kind == JQ_DATA ? e->buf->data : NULL };
            }
            r = bs_journal_append_many(sec->journal, first->prov_epoch, in, n, &done);
            i += (unsigned)done;
        }
        sec->ap_ok = i;
        sec->ap_result = r;
        return;
    }
    for (i = 0; i < sec->ap_batch; i++) {
        struct jq_entry *e = &sec->jq[(sec->jq_head + i) % JQ_LEN];
        enum bs_journal_kind jk = e->kind == JQ_DATA ? BS_JOURNAL_DATA : BS_JOURNAL_ZERO;
        const void *data = e->kind == JQ_DATA ? e->buf->data : NULL;
        r = write_in_place(sec, jk, e->sector, e->count, data);
        if (r < 0)
            break;
        sec->ap_written += (uint64_t)e->count * BSR_SECTOR_SIZE;
    }
    sec->ap_ok = i;
    sec->ap_result = r;
}

static void ap_work(uv_work_t *req)
{
    struct secondary *sec = req->data;
    struct jq_entry *e = &sec->jq[sec->jq_head];
    struct bs_journal *j = sec->journal;
    enum bs_journal_kind jk = e->kind == JQ_DATA ? BS_JOURNAL_DATA : BS_JOURNAL_ZERO;
    const void *data = e->kind == JQ_DATA ? e->buf->data : NULL;
    int r = 0;

    sec->ap_went_oversize = false;
    sec->ap_written = 0;
    if (sec->ap_batch) {
        ap_work_batch(sec);
        return;
    }
    switch (e->kind) {
    case JQ_DATA:
    case JQ_ZERO:
        /* Only the retry that may find the epoch oversize comes here
         * (ap_kick); a journalled epoch's, never one written in place. */
        r = bs_journal_append(j, e->prov_epoch, jk, e->sector, e->count, data);
        if (r != -ENOSPC)
            break;
        /* Too large for the journal even with nothing else in it: in
         * place from here, recorded inconsistent before the first write,
         * what was journalled of it first. */
        sec->ap_journalled = bs_journal_used(j);
        r = sec_save_epochs(sec, sec->applied_epoch, false);
        if (r < 0)
            break;
        {
            struct apply_ctx c = { .sec = sec };
            r = bs_journal_replay_open(j, apply_record, &c);
            if (r < 0)
                break;
            sec->ap_written = c.bytes;
        }
        bs_journal_abort(j);
        sec->ap_went_oversize = true;
        r = write_in_place(sec, jk, e->sector, e->count, data);
        sec->ap_written += (uint64_t)e->count * BSR_SECTOR_SIZE;
        break;
    case JQ_SYNC:
        r = bs_journal_sync(j);
        if (r == 0)
            r = sec->target.ops->flush(&sec->target);
        break;
    case JQ_COMMIT:
        if (sec->ap_inplace) {
            r = sec->target.ops->flush(&sec->target);
            if (r == 0) {
                epoch_crash_point(sec, CRASH_BEFORE_APPLIED_RECORD);
                r = sec_save_epochs(sec, e->sector, true);
            }
            break;
        }
        epoch_crash_point(sec, CRASH_BEFORE_COMMIT);
        sec->ap_commit_ns = uv_hrtime();
        r = bs_journal_commit(j, e->sector);
        sec->ap_commit_ns = uv_hrtime() - sec->ap_commit_ns;
        if (r == 0)
            epoch_crash_point(sec, CRASH_AFTER_COMMIT);
        break;
    case JQ_ABORT:
        if (!sec->ap_inplace)
            bs_journal_abort(j);
        break;
    }
    sec->ap_result = r;
}

static void jq_pop(struct secondary *sec)
{
    struct jq_entry *e = &sec->jq[sec->jq_head];

    if (e->buf) {
        e->buf->busy = false;
        e->buf = NULL;
    }
    sec->jq_head = (sec->jq_head + 1) % JQ_LEN;
    sec->jq_len--;
}

/* The appender's result for the head entry, on the loop. */
static void ap_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    struct jq_entry *e = &sec->jq[sec->jq_head];
    struct session *s = sec->session;
    bool ours = s && s->id == e->session_id;
    int r = status < 0 ? status : sec->ap_result;

    sec->ap_running = false;
    sec->written_bytes += sec->ap_written;
    if (sec->ap_batch) {
        /* The entries before the one that failed (if one did) are done. */
        for (unsigned i = 0; i < (status < 0 ? 0 : sec->ap_ok); i++) {
            sec->ap_epoch_open = true;
            jq_pop(sec);
        }
        if (r == 0) {
            ap_kick(sec);
            session_kick(sec);
            return;
        }
        e = &sec->jq[sec->jq_head];
        ours = s && s->id == e->session_id;
    }
    if (sec->ap_went_oversize) {
        sec->ap_inplace = sec->ap_oversize = true;
        sec->consistent = false;
        sec->oversize_epochs++;
        snprintf(sec->note, sizeof(sec->note),
                 "the epoch after %" PRIu64 " is larger than the journal (%" PRIu64
                 " bytes): written in place",
                 sec->committed_epoch, sec->journal_max);
        BS_ERR(MOD, "OVERSIZE EPOCH: the epoch after %" PRIu64 " does not fit in the journal "
                    "(%" PRIu64 " bytes, %" PRIu64 " journalled when it ran out): applying it "
                    "in place; the replica is NOT consistent until it commits",
               sec->committed_epoch, sec->journal_max, sec->ap_journalled);
    }
    sec->ap_try_oversize = false;
    if (r == -ENOSPC && (e->kind == JQ_DATA || e->kind == JQ_ZERO)) {
        /* Room may come as the applier releases epochs; once nothing else
         * is in the journal, the retry decides that it is oversize. */
        sec->ap_space_wait = true;
        ap_kick(sec);
        return;
    }
    sec->ap_space_wait = false;
    if (r < 0) {
        BS_ERR(MOD, "%s failed: %s; ending the session",
               sec->ap_inplace ? "writing an epoch in place" : "journalling an epoch",
               strerror(-r));
        jq_pop(sec);
        if (ours) {
            session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, "journal or replica I/O failed");
        }
        ap_kick(sec);
        session_kick(sec);
        return;
    }
    switch (e->kind) {
    case JQ_DATA:
    case JQ_ZERO:
        sec->ap_epoch_open = true;
        break;
    case JQ_SYNC:
        if (ours)
            session_send_control(s, BSR_ACK, e->sector, 0);
        break;
    case JQ_COMMIT:
        sec->committed_epoch = e->sector;
        if (sec->ap_inplace) {
            sec->applied_epoch = e->sector;
            sec->consistent = true;
            sec->note[0] = '\0';
            if (sec->ap_oversize)
                BS_WARN(MOD, "oversize epoch %" PRIu64 " committed in place: the replica is "
                             "consistent again",
                        e->sector);
        }
        if (!sec->ap_inplace)
            BS_DEBUG(MOD, "epoch %" PRIu64 " committed: its journal commit took %.1f ms",
                     e->sector, (double)sec->ap_commit_ns / 1e6);
        sec->ap_epoch_open = sec->ap_inplace = sec->ap_oversize = false;
        if (ours) {
            sgen_committed(s);
            session_send_control(s, BSR_COMMITTED, e->sector, 0);
        }
        applier_kick(sec);
        break;
    case JQ_ABORT:
        if (sec->ap_oversize)
            snprintf(sec->note, sizeof(sec->note),
                     "oversize epoch %" PRIu64 " aborted after in-place writes", e->sector);
        sec->ap_epoch_open = sec->ap_inplace = sec->ap_oversize = false;
        break;
    }
    jq_pop(sec);
    ap_kick(sec);
    session_kick(sec);
}

static void ap_kick(struct secondary *sec)
{
    struct session *s = sec->session;
    int r;

    while (!sec->ap_running && sec->jq_len) {
        struct jq_entry *e = &sec->jq[sec->jq_head];
        if (!s || s->id != e->session_id) {
            /* Its session ended: nothing of it is acknowledged, and the
             * primary sends it again. */
            jq_pop(sec);
            continue;
        }
        if (!sec->ap_epoch_open && e->kind != JQ_SYNC) {
            /* An epoch's first entry: no image to protect, in place. */
            sec->ap_inplace = !sec->consistent;
            sec->ap_oversize = false;
        }
        if (sec->ap_space_wait) {
            if (!applier_caught_up(sec))
                return; /* applier_kick calls again */
            sec->ap_try_oversize = true;
        }
        /* DATA and ZERO entries go in batches with those that follow: one
         * thread-pool round trip per frame would cost more than the
         * appends themselves.  Not a retry that may switch the epoch to
         * in place (that is decided one entry at a time). */
        sec->ap_batch = 0;
        if (!sec->ap_try_oversize && (e->kind == JQ_DATA || e->kind == JQ_ZERO)) {
            sec->ap_batch = 1;
            while (sec->ap_batch < sec->jq_len && sec->ap_batch < AP_BATCH_MAX) {
                const struct jq_entry *n = &sec->jq[(sec->jq_head + sec->ap_batch) % JQ_LEN];
                if ((n->kind != JQ_DATA && n->kind != JQ_ZERO) || n->session_id != e->session_id)
                    break;
                sec->ap_batch++;
            }
        }
        sec->ap_req.data = sec;
        r = uv_queue_work(sec->loop, &sec->ap_req, ap_work, ap_done);
        if (r < 0) {
            BS_ERR(MOD, "cannot queue a journal append: %s", uv_strerror(r));
            jq_pop(sec);
            session_send_control(s, BSR_ERROR, 0, BSR_E_IO);
            session_end(s, "cannot journal a frame");
            continue;
        }
        sec->ap_running = true;
    }
    if (sec->ap_drop_open)
        drop_open_epoch(sec);
}

/* ---- The applier ------------------------------------------------------------------- */

static void applier_work(uv_work_t *req)
{
    struct secondary *sec = req->data;

    if (sec->test_apply_delay_ms)
        usleep(sec->test_apply_delay_ms * 1000u);
    sec->apl_result = apply_epochs(sec, sec->apl_list, sec->apl_n, &sec->apl_bytes);
}

static void applier_done(uv_work_t *req, int status)
{
    struct secondary *sec = req->data;
    int r = status < 0 ? status : sec->apl_result;

    sec->apl_running = false;
    sec->written_bytes += sec->apl_bytes;
    if (r < 0) {
        /* The replica is between two images: it stays reported so, and
         * the journal keeps the epoch for a restart to apply again. */
        sec->apply_failed = true;
        snprintf(sec->note, sizeof(sec->note),
                 "applying epoch %" PRIu64 " failed (%s): reopening the replica to retry",
                 sec->apl_list[sec->apl_n - 1], strerror(-r));
        BS_ERR(MOD, "applying committed epochs %" PRIu64 " to %" PRIu64 " failed: %s; the "
                    "replica is NOT consistent; the journal keeps them and they are applied "
                    "again once the replica is reopened",
               sec->apl_list[0], sec->apl_list[sec->apl_n - 1], strerror(-r));
        recover_start(sec);
        return;
    }
    recover_applied(sec);
    sec->applied_epoch = sec->apl_list[sec->apl_n - 1];
    sec->applying = false;
    applier_kick(sec);
    ap_kick(sec);
    session_kick(sec);
}

static void applier_kick(struct secondary *sec)
{
    size_t n;
    int r;

    if (sec->apl_running || sec->apply_failed || sec->stopping || sec->promoted)
        return;
    n = bs_journal_committed(sec->journal, sec->apl_list, APPLY_BATCH_MAX);
    if (n == 0)
        return;
    sec->apl_n = n < APPLY_BATCH_MAX ? n : APPLY_BATCH_MAX;
    sec->apl_bytes = 0;
    sec->apl_req.data = sec;
    r = uv_queue_work(sec->loop, &sec->apl_req, applier_work, applier_done);
    if (r < 0) {
        BS_ERR(MOD, "cannot queue the applier: %s", uv_strerror(r));
        return;
    }
    sec->apl_running = true;
    /* Applying an empty epoch (async mode seals one every --epoch-ms, with
     * or without writes) leaves the replica the image it was: it stays
     * reported consistent meanwhile. */
    sec->applying = false;
    for (size_t i = 0; i < sec->apl_n; i++)
        sec->applying |= !bs_journal_empty_epoch(sec->journal, sec->apl_list[i]);
}
