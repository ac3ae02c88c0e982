/* Point-in-time epochs (see wl_epoch.h).
 *
 * Who touches what:
 *   gate            writers (enter/leave) and the control thread (turn,
 *                   drain, settle), see wl_gate.h;
 *   unread map      set and cleared whole by the control thread while no
 *                   read may mark it (the store is closed); single grains
 *                   cleared by ring reads under the store's lock
 *                   (mark_read); tested by writers;
 *   unread_n        its population, kept by the same hands: writers look at
 *                   it first, so that a write with no open epoch costs one
 *                   load;
 *   everything else the control thread only.
 */
#include "primary/writelog/wl_epoch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "primary/writelog/wl_cow.h"
#include "primary/writelog/wl_gate.h"

#define MOD "writelog"

struct wl_epoch {
    struct wl_log *log;
    uint64_t disk_sectors;
    uint64_t ngrains;
    uint32_t grain_sectors;
    unsigned grain_shift;
    uint32_t grain_bytes;
    uint32_t cow_wait_ms;
    uint64_t cow_max;
    const struct wl_epoch_ops *ops;
    void *opaque;

    struct wl_gate gate;
    _Atomic bool frozen;          /* frze: every later write fails */
    _Atomic uint64_t refused;     /* writes refused since */
    struct wl_cow *cow;           /* NULL: copy-before-write disabled */
    struct bs_bitmap *unread;
    _Atomic uint64_t unread_n;

    /* Control thread. */
    bool straggling;              /* a drain timed out: old writes may still run */
    uint64_t seal_broken;         /* the newest epoch its own seal broke */
    uint64_t seal_breaks;         /* breaks not counted by the store */
    uint64_t drain_timeouts;
};

/* ---- The unread map, as the store sees it (under its lock) ------------------- */

static bool unread_test(void *ctx, uint64_t grain)
{
    struct wl_epoch *ep = ctx;

    return bs_bitmap_test(ep->unread, grain);
}

static void unread_mark_read(void *ctx, uint64_t grain)
{
    struct wl_epoch *ep = ctx;

    if (bs_bitmap_test(ep->unread, grain)) {
        bs_bitmap_clear_range(ep->unread, grain, 1);
        atomic_fetch_sub(&ep->unread_n, 1);
    }
}

static const struct wl_cow_unread_ops unread_ops = {
    .unread = unread_test,
    .mark_read = unread_mark_read,
};

/* Reads grain `grain` for a copy, zero-padded past the disk's end. */
static int read_grain(void *ctx, uint64_t grain, void *buf)
{
    struct wl_epoch *ep = ctx;
    uint64_t sector = grain << ep->grain_shift;
    uint64_t count = ep->disk_sectors - sector;

    if (count > ep->grain_sectors)
        count = ep->grain_sectors;
    if (count < ep->grain_sectors)
        memset((uint8_t *)buf + count * WL_SECTOR_SIZE, 0,
               ep->grain_bytes - count * WL_SECTOR_SIZE);
    return ep->ops->preserve_read(ep->opaque, buf, sector, (uint32_t)count);
}

/* ---- Life cycle --------------------------------------------------------------- */

int wl_epoch_create(const struct wl_epoch_config *cfg, struct wl_epoch **out)
{
    struct wl_epoch *ep;
    uint64_t grain_bytes;
    int r;

    *out = NULL;
    ep = calloc(1, sizeof(*ep));
    if (!ep)
        return -ENOMEM;
    ep->log = cfg->log;
    ep->disk_sectors = wl_log_disk_sectors(cfg->log);
    ep->grain_sectors = wl_log_grain(cfg->log);
    ep->grain_shift = (unsigned)__builtin_ctz(ep->grain_sectors);
    ep->ngrains = (ep->disk_sectors + ep->grain_sectors - 1) >> ep->grain_shift;
    ep->cow_wait_ms = cfg->cow_wait_ms;
    ep->cow_max = cfg->cow_max_bytes;
    ep->ops = cfg->ops;
    ep->opaque = cfg->opaque;
    grain_bytes = (uint64_t)ep->grain_sectors * WL_SECTOR_SIZE;
    r = wl_gate_init(&ep->gate);
    if (r < 0) {
        free(ep);
        return r;
    }
    if (ep->cow_max) {
        if (!cfg->ops || !cfg->ops->preserve_read || grain_bytes > ep->cow_max ||
            grain_bytes > UINT32_MAX) {
            BS_ERR(MOD, "writelog-cow-max=%" PRIu64 " cannot hold one grain of %" PRIu64
                        " bytes: raise it, or set 0 to disable copy-before-write",
                   ep->cow_max, grain_bytes);
            r = -EINVAL;
            goto fail;
        }
        ep->grain_bytes = (uint32_t)grain_bytes;
        /* Not prefaulted: writers only test it, and only while an epoch is
         * open. */
        r = bs_bitmap_create(ep->ngrains, 0, &ep->unread);
        if (r < 0)
            goto fail;
        r = wl_cow_create(ep->grain_bytes, ep->cow_max, &unread_ops, ep, &ep->cow);
        if (r < 0)
            goto fail;
    }
    *out = ep;
    return 0;
fail:
    wl_epoch_destroy(ep);
    return r;
}

void wl_epoch_destroy(struct wl_epoch *ep)
{
    if (!ep)
        return;
    wl_cow_destroy(ep->cow);
    bs_bitmap_destroy(ep->unread);
    wl_gate_destroy(&ep->gate);
    free(ep);
}

/* ---- Write path ------------------------------------------------------------------ */

/* Preserves every grain of the write that the open epoch has not shipped
 * yet.  All waits of one write share one deadline. */
static void preserve_range(struct wl_epoch *ep, uint64_t sector, uint64_t count,
                           uint64_t *deadline)
{
    uint64_t first, last;

    if (count == 0 || sector >= ep->disk_sectors)
        return;
    if (count > ep->disk_sectors - sector)
        count = ep->disk_sectors - sector;
    first = sector >> ep->grain_shift;
    last = (sector + count - 1) >> ep->grain_shift;
    for (uint64_t g = first; g <= last; g++) {
        if (!bs_bitmap_test(ep->unread, g))
            continue;
        uint64_t now = wl_gate_now_ms();
        if (!*deadline)
            *deadline = now + ep->cow_wait_ms;
        uint32_t wait = *deadline > now ? (uint32_t)(*deadline - now) : 0;
        /* -ECANCELED: no epoch to keep (closed or broken); the write goes on. */
        if (wl_cow_preserve(ep->cow, g, read_grain, ep, wait) < 0)
            return;
    }
}

uint64_t wl_epoch_write_begin(struct wl_epoch *ep, uint64_t sector, uint64_t count)
{
    uint64_t deadline = 0;
    bool forced = false;
    uint64_t e = wl_gate_enter(&ep->gate, ep->cow_wait_ms, &deadline, &forced);

    wl_log_mark_in(ep->log, (unsigned)(e & 1), sector, count);
    if (atomic_load(&ep->unread_n) != 0)
        preserve_range(ep, sector, count, &deadline);
    return e;
}

void wl_epoch_write_end(struct wl_epoch *ep, uint64_t token, uint64_t sector, uint64_t count)
{
    wl_log_mark_in(ep->log, (unsigned)(token & 1), sector, count);
    wl_gate_leave(&ep->gate, token);
}

/* ---- Ring reads ------------------------------------------------------------------- */

void wl_epoch_read_done(struct wl_epoch *ep, uint64_t tag, void *buf, uint64_t sector,
                        uint32_t count)
{
    uint64_t off, end, disk_end, gb;
    uint64_t g, g_end, whole_first = 0, whole_n = 0;

    if (!ep->cow || count == 0)
        return;
    gb = ep->grain_bytes;
    off = sector * WL_SECTOR_SIZE;
    end = off + (uint64_t)count * WL_SECTOR_SIZE;
    disk_end = ep->disk_sectors * WL_SECTOR_SIZE;
    g_end = (end - 1) / gb + 1;
    for (g = off / gb; g < g_end; g++) {
        uint64_t gs = g * gb, ge = gs + gb < disk_end ? gs + gb : disk_end;

        if (off <= gs && end >= ge) {
            if (!whole_n)
                whole_first = g;
            whole_n++;
            continue;
        }
        /* Part of a grain: its copy, if any, over that part; the grain
         * stays unread until a read covers it whole. */
        uint64_t from = off > gs ? off : gs, to = end < ge ? end : ge;
        wl_cow_overlay_part(ep->cow, tag, g, (uint32_t)(from - gs), (uint8_t *)buf + (from - off),
                            (uint32_t)(to - from));
    }
    if (whole_n) {
        uint64_t at = whole_first * gb - off;
        wl_cow_overlay(ep->cow, tag, whole_first, whole_n, (uint8_t *)buf + at, end - off - at,
                       true);
    }
}

/* ---- Control thread ----------------------------------------------------------------- */

static void set_unread(void *ctx, uint64_t first, uint64_t n)
{
    struct wl_epoch *ep = ctx;

    bs_bitmap_set_range(ep->unread, first, n);
    atomic_fetch_add(&ep->unread_n, n);
}

/* Ends the open epoch: no copies, nothing unread.  No ring read marks the
 * map once the store is closed (their tag is no longer the open epoch). */
static void close_epoch(struct wl_epoch *ep)
{
    if (!ep->cow)
        return;
    wl_cow_close(ep->cow);
    bs_bitmap_clear_all(ep->unread);
    atomic_store(&ep->unread_n, 0);
}

struct wl_export_result wl_epoch_seal(struct wl_epoch *ep, enum wl_seal_kind kind,
                                      struct wl_disk_range *area, uint32_t slots)
{
    bool cow = ep->cow && kind == WL_SEAL_COW;
    struct wl_export_result res;
    uint64_t old, epoch, deadline;
    bool drained, forced = false;

    /* The previous epoch ends first: writes still waiting for pool space
     * for it go on at once, so the drain below does not wait for them. */
    close_epoch(ep);
    /* T: from here on new writes count under the other parity.  Without
     * copy-before-write they need not wait for the settle. */
    old = wl_gate_turn(&ep->gate, !cow);
    deadline = wl_gate_now_ms() + ep->cow_wait_ms;
    drained = wl_gate_drain(&ep->gate, (unsigned)(old & 1), deadline);
    /* Writes that outlived an earlier drain count under the new parity;
     * new writes wait for the settle uncounted, so with copy-before-write
     * that count drains too once they are done. */
    if (drained && ep->straggling && cow)
        drained = wl_gate_drain(&ep->gate, (unsigned)((old + 1) & 1), deadline);
    if (drained && cow)
        ep->straggling = false;
    if (!drained) {
        ep->drain_timeouts++;
        ep->straggling = true;
        BS_WARN(MOD, "seal of epoch %" PRIu64 ": writes in flight did not complete within "
                     "%u ms; the epoch is broken",
                old + 1, ep->cow_wait_ms);
    }
    if (kind == WL_SEAL_HISTORICAL)
        res = wl_log_getw(ep->log, area, slots);
    else
        res = wl_log_seal(ep->log, area, slots);
    epoch = wl_log_epoch(ep->log);
    if (cow) {
        if (drained)
            wl_log_pending_runs(ep->log, set_unread, ep);
        wl_cow_open(ep->cow, epoch);
        if (!drained)
            wl_cow_break(ep->cow);
        forced = wl_gate_settle(&ep->gate);
        if (forced) {
            BS_WARN(MOD, "seal of epoch %" PRIu64 ": a write waited %u ms for the seal and "
                         "went on; the epoch is broken",
                    epoch, ep->cow_wait_ms);
            wl_cow_break(ep->cow);
        }
    } else if (!drained) {
        ep->seal_breaks++;
    }
    if (!drained || forced)
        ep->seal_broken = epoch;
    return res;
}

int wl_epoch_adds(struct wl_epoch *ep, const struct wl_disk_range *r, uint32_t n,
                  uint64_t *grains)
{
    unsigned parity = (unsigned)(wl_gate_value(&ep->gate) & 1);
    uint64_t added = 0;

    if (n > WL_EXPORT_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        struct wl_disk_range d = r[i]; /* a copy: the client may change it */
        if (d.count == 0 || d.sector >= ep->disk_sectors ||
            d.count > ep->disk_sectors - d.sector)
            return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct wl_disk_range d = r[i];
        /* Checked above; a client that changed it since only marks what
         * the log clips to the disk. */
        added += wl_log_add(ep->log, parity, d.sector, d.count);
    }
    *grains = added;
    return 0;
}

void wl_epoch_client_gone(struct wl_epoch *ep)
{
    uint64_t left;

    if (!ep->cow)
        return;
    left = atomic_load(&ep->unread_n);
    if (left == 0)
        return;
    BS_WARN(MOD, "control client gone with %" PRIu64 " grains of epoch %" PRIu64
                 " unread: the epoch is broken",
            left, wl_log_epoch(ep->log));
    wl_cow_break(ep->cow);
}

void wl_epoch_clear(struct wl_epoch *ep)
{
    close_epoch(ep);
    wl_log_clear(ep->log);
}

uint64_t wl_epoch_read_tag(struct wl_epoch *ep)
{
    return wl_log_epoch(ep->log);
}

uint32_t wl_epoch_flags(struct wl_epoch *ep, uint64_t epoch)
{
    struct wl_cow_stats st;

    if (epoch == 0)
        return 0;
    if (ep->seal_broken == epoch)
        return WL_EF_BROKEN;
    if (ep->cow) {
        wl_cow_get_stats(ep->cow, &st);
        if (st.epoch == epoch && st.broken)
            return WL_EF_BROKEN;
    }
    return 0;
}

bool wl_epoch_cow_enabled(const struct wl_epoch *ep)
{
    return ep->cow != NULL;
}

void wl_epoch_cowc(struct wl_epoch *ep, struct wl_cowc_reply *out)
{
    struct wl_cow_stats st;

    memset(out, 0, sizeof(*out));
    memcpy(out->tag, WL_CMD_COWC, WL_CMD_LEN);
    memset(&st, 0, sizeof(st));
    if (ep->cow)
        wl_cow_get_stats(ep->cow, &st);
    out->epoch = st.epoch;
    out->flags = wl_epoch_flags(ep, st.epoch);
    out->bytes_now = st.bytes_now;
    out->bytes_peak = st.bytes_peak;
    out->max_bytes = ep->cow_max;
    out->preserved = st.preserved;
    out->waits = st.waits;
    out->wait_ms = st.wait_ms;
    out->breaks = st.breaks + ep->seal_breaks;
    out->drain_timeouts = ep->drain_timeouts;
}

uint64_t wl_epoch_unread_grains(struct wl_epoch *ep)
{
    return atomic_load(&ep->unread_n);
}

void wl_epoch_freeze(struct wl_epoch *ep)
{
    atomic_store(&ep->frozen, true);
}

bool wl_epoch_refuses(struct wl_epoch *ep)
{
    if (!atomic_load(&ep->frozen))
        return false;
    atomic_fetch_add_explicit(&ep->refused, 1, memory_order_relaxed);
    return true;
}

bool wl_epoch_frozen(struct wl_epoch *ep, uint64_t *refused)
{
    *refused = atomic_load_explicit(&ep->refused, memory_order_relaxed);
    return atomic_load(&ep->frozen);
}
