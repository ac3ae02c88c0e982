/* Unit tests for point-in-time epochs (primary/writelog/wl_epoch.c) over a
 * disk in memory: a seal waits for the writes in flight and contains them
 * wholly; after a seal, ring reads of grains overwritten before they were
 * read return the disk at the seal (whole and partial reads, reads tagged
 * with an older epoch change nothing); the historical getw keeps no
 * copies; adds ranges are checked whole, become pending and are
 * protected; and an epoch breaks, visibly, when the pool stays full, when
 * the drain times out, or when the client leaves unread grains, but never
 * once every grain was read. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/test-threads.h"

#include "primary/writelog/wl_epoch.h"
#include "primary/writelog/wl_gate.h"

#define GS 8u                      /* sectors per grain */
#define GBYTES (GS * WL_SECTOR_SIZE)
#define NGRAINS 64u
#define SECTORS (NGRAINS * GS)

/* Bytes of the disk are touched with relaxed atomics so that a copy racing
 * a write is no data race for the sanitizers. */
static _Atomic uint8_t disk[SECTORS * WL_SECTOR_SIZE];
static atomic_uint preserve_reads;

static int mem_read(void *opaque, void *buf, uint64_t sector, uint32_t count)
{
    (void)opaque;
    atomic_fetch_add(&preserve_reads, 1);
    for (size_t i = 0; i < (size_t)count * WL_SECTOR_SIZE; i++)
        ((uint8_t *)buf)[i] =
            atomic_load_explicit(&disk[sector * WL_SECTOR_SIZE + i], memory_order_relaxed);
    return 0;
}

static const struct wl_epoch_ops ops = { .preserve_read = mem_read };

static void disk_fill(uint64_t sector, uint64_t count, uint8_t v)
{
    for (size_t i = 0; i < count * WL_SECTOR_SIZE; i++)
        atomic_store_explicit(&disk[sector * WL_SECTOR_SIZE + i], v, memory_order_relaxed);
}

static struct wl_log *lg;
static struct wl_epoch *ep;
static struct wl_disk_range area[WL_EXPORT_MAX + 1];

static void mk(uint64_t cow_max, uint32_t wait_ms)
{
    assert_int_equal(wl_log_create(SECTORS, GS, &lg), 0);
    struct wl_epoch_config cfg = { .log = lg, .cow_max_bytes = cow_max, .cow_wait_ms = wait_ms,
                                   .ops = &ops };
    assert_int_equal(wl_epoch_create(&cfg, &ep), 0);
    for (uint64_t g = 0; g < NGRAINS; g++)
        disk_fill(g * GS, GS, (uint8_t)(g + 1));
    atomic_store(&preserve_reads, 0);
}

static void *pit_state; /* freed by the teardown */

static int teardown(void **state)
{
    (void)state;
    atomic_store(&stop_all, true);
    join_all();
    atomic_store(&stop_all, false);
    free(pit_state);
    pit_state = NULL;
    wl_epoch_destroy(ep);
    wl_log_destroy(lg);
    ep = NULL;
    lg = NULL;
    return 0;
}

/* A guest write of value v: through the gate, as the filter does it. */
static void guest_write(uint64_t sector, uint64_t count, uint8_t v)
{
    uint64_t t = wl_epoch_write_begin(ep, sector, count);
    disk_fill(sector, count, v);
    wl_epoch_write_end(ep, t, sector, count);
}

/* A ring read as the server does it: the disk, then read_done. */
static void ring_read(uint64_t tag, uint64_t sector, uint32_t count, uint8_t *buf)
{
    for (size_t i = 0; i < (size_t)count * WL_SECTOR_SIZE; i++)
        buf[i] = atomic_load_explicit(&disk[sector * WL_SECTOR_SIZE + i], memory_order_relaxed);
    wl_epoch_read_done(ep, tag, buf, sector, count);
}

static bool all_are(const uint8_t *buf, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != v)
            return false;
    return true;
}

static struct wl_cowc_reply cowc(void)
{
    struct wl_cowc_reply r;
    wl_epoch_cowc(ep, &r);
    assert_memory_equal(r.tag, "cowc", 4);
    return r;
}

static uint64_t seal(enum wl_seal_kind kind)
{
    wl_epoch_seal(ep, kind, area, WL_EXPORT_MAX);
    return wl_epoch_read_tag(ep);
}

static void test_reads_get_the_disk_at_the_seal(void **state)
{
    static uint8_t buf[4 * GBYTES];

    (void)state;
    mk(16 * GBYTES, 100);
    assert_true(wl_epoch_cow_enabled(ep));
    guest_write(3 * GS, 2 * GS, 0xa0); /* grains 3, 4 */
    uint64_t e = seal(WL_SEAL_COW);
    assert_int_equal(e, 1);
    assert_int_equal(area[0].sector, 3 * GS);
    assert_int_equal(area[0].count, 2 * GS);
    assert_int_equal(area[1].count, 0);
    assert_int_equal(wl_epoch_unread_grains(ep), 2);
    assert_int_equal(wl_epoch_flags(ep, e), 0);
    /* Overwritten before the client reads it: the copy is what it gets. */
    guest_write(3 * GS, 2 * GS, 0xb0);
    assert_int_equal(atomic_load(&preserve_reads), 2);
    guest_write(3 * GS, 1, 0xc0); /* preserved already: no second copy */
    assert_int_equal(atomic_load(&preserve_reads), 2);
    ring_read(e, 3 * GS, 2 * GS, buf);
    assert_true(all_are(buf, 2 * GBYTES, 0xa0));
    assert_int_equal(wl_epoch_unread_grains(ep), 0);
    struct wl_cowc_reply r = cowc();
    assert_int_equal(r.preserved, 2);
    assert_int_equal(r.bytes_now, 0);
    assert_int_equal(r.bytes_peak, 2 * GBYTES);
    assert_int_equal(r.epoch, 1);
    assert_int_equal(r.max_bytes, 16 * GBYTES);
    /* Read: later writes need no copy, and a grain outside the epoch never
     * did. */
    guest_write(3 * GS, 2 * GS, 0xd0);
    guest_write(10 * GS, GS, 0xd0);
    assert_int_equal(atomic_load(&preserve_reads), 2);
}

static void test_partial_and_stale_reads(void **state)
{
    static uint8_t buf[2 * GBYTES];

    (void)state;
    mk(16 * GBYTES, 100);
    guest_write(5 * GS, GS, 0x11);
    uint64_t e = seal(WL_SEAL_COW);
    guest_write(5 * GS, GS, 0x22);
    /* Half the grain: its copy, but the grain stays unread. */
    ring_read(e, 5 * GS + 2, 4, buf);
    assert_true(all_are(buf, 4 * WL_SECTOR_SIZE, 0x11));
    assert_int_equal(wl_epoch_unread_grains(ep), 1);
    /* A read dispatched for an older epoch neither ships nor marks. */
    ring_read(e - 1, 5 * GS, GS, buf);
    assert_true(all_are(buf, GBYTES, 0x22));
    assert_int_equal(wl_epoch_unread_grains(ep), 1);
    /* A read that starts mid-grain and covers the next one whole. */
    guest_write(6 * GS, GS, 0x33);
    ring_read(e, 5 * GS + 4, GS + 4, buf);
    assert_true(all_are(buf, 4 * WL_SECTOR_SIZE, 0x11));
    assert_int_equal(wl_epoch_unread_grains(ep), 1); /* 6 was never in the epoch */
    ring_read(e, 5 * GS, GS, buf);
    assert_true(all_are(buf, GBYTES, 0x11));
    assert_int_equal(wl_epoch_unread_grains(ep), 0);
}

static void test_getw_keeps_no_copies(void **state)
{
    static uint8_t buf[GBYTES];

    (void)state;
    mk(16 * GBYTES, 100);
    guest_write(2 * GS, GS, 0x44);
    uint64_t e = seal(WL_SEAL_HISTORICAL);
    assert_int_equal(area[0].sector, 2 * GS);
    assert_int_equal(wl_log_pending_grains(lg), 0); /* acknowledged at once */
    assert_int_equal(wl_epoch_unread_grains(ep), 0);
    guest_write(2 * GS, GS, 0x55);
    ring_read(e, 2 * GS, GS, buf);
    assert_true(all_are(buf, GBYTES, 0x55));
    assert_int_equal(cowc().preserved, 0);
    assert_int_equal(atomic_load(&preserve_reads), 0);
}

static void test_cow_disabled(void **state)
{
    static uint8_t buf[GBYTES];

    (void)state;
    mk(0, 100);
    assert_false(wl_epoch_cow_enabled(ep));
    guest_write(2 * GS, GS, 0x44);
    uint64_t e = seal(WL_SEAL_COW);
    guest_write(2 * GS, GS, 0x55);
    ring_read(e, 2 * GS, GS, buf);
    assert_true(all_are(buf, GBYTES, 0x55));
    assert_int_equal(cowc().max_bytes, 0);
    assert_int_equal(wl_epoch_flags(ep, e), 0);
}

static void test_pool_smaller_than_a_grain_is_refused(void **state)
{
    (void)state;
    assert_int_equal(wl_log_create(SECTORS, GS, &lg), 0);
    struct wl_epoch_config cfg = { .log = lg, .cow_max_bytes = GBYTES - 1, .cow_wait_ms = 10,
                                   .ops = &ops };
    assert_int_equal(wl_epoch_create(&cfg, &ep), -EINVAL);
    assert_null(ep);
}

struct held {
    uint64_t sector;
    useconds_t hold;
    uint8_t v;
    atomic_bool begun, done;
};

static void *held_write(void *arg)
{
    struct held *h = arg;
    uint64_t t = wl_epoch_write_begin(ep, h->sector, GS);

    atomic_store(&h->begun, true);
    usleep(h->hold);
    disk_fill(h->sector, GS, h->v);
    atomic_store(&h->done, true);
    wl_epoch_write_end(ep, t, h->sector, GS);
    return NULL;
}

static void test_seal_waits_for_writes_in_flight(void **state)
{
    static struct held h;
    static uint8_t buf[GBYTES];

    (void)state;
    h = (struct held){ .sector = 7 * GS, .hold = 80000, .v = 0x66 };
    mk(16 * GBYTES, 2000);
    spawn(held_write, &h);
    while (!atomic_load(&h.begun))
        usleep(100);
    uint64_t t0 = wl_gate_now_ms();
    uint64_t e = seal(WL_SEAL_COW);
    /* The write in flight at the seal is wholly in the epoch. */
    assert_true(atomic_load(&h.done));
    assert_true(wl_gate_now_ms() - t0 >= 60);
    assert_int_equal(area[0].sector, 7 * GS);
    assert_int_equal(wl_epoch_flags(ep, e), 0);
    join_all();
    /* And its data is the epoch's image, whatever comes after. */
    guest_write(7 * GS, GS, 0x67);
    ring_read(e, 7 * GS, GS, buf);
    assert_true(all_are(buf, GBYTES, 0x66));
    assert_int_equal(cowc().drain_timeouts, 0);
}

struct late {
    useconds_t after;
    uint64_t took_ms;
};

/* A write of grain 8 that starts while the seal drains. */
static void *late_write(void *arg)
{
    struct late *l = arg;

    usleep(l->after);
    uint64_t t0 = wl_gate_now_ms();
    guest_write(8 * GS, GS, 0x6f);
    l->took_ms = wl_gate_now_ms() - t0;
    return NULL;
}

static void test_writes_during_the_drain_wait_and_are_protected(void **state)
{
    static struct held h;
    static struct late l;
    static uint8_t buf[2 * GBYTES];

    (void)state;
    h = (struct held){ .sector = 7 * GS, .hold = 100000, .v = 0x66 };
    l = (struct late){ .after = 30000 };
    mk(16 * GBYTES, 2000);
    guest_write(8 * GS, GS, 0x60); /* grain 8 is in the epoch too */
    spawn(held_write, &h);
    while (!atomic_load(&h.begun))
        usleep(100);
    spawn(late_write, &l);
    uint64_t e = seal(WL_SEAL_COW);
    join_all();
    /* The late write preserved grain 8 before it reached the disk... */
    ring_read(e, 7 * GS, 2 * GS, buf);
    assert_true(all_are(buf, GBYTES, 0x66));
    assert_true(all_are(buf + GBYTES, GBYTES, 0x60));
    /* ...because it waited for the seal to settle. */
    assert_true(l.took_ms >= 40);
    assert_int_equal(wl_epoch_flags(ep, e), 0);
}

static void test_drain_timeout_breaks_the_epoch(void **state)
{
    static struct held h;

    (void)state;
    h = (struct held){ .sector = 9 * GS, .hold = 300000, .v = 0x77 };
    mk(16 * GBYTES, 30);
    spawn(held_write, &h);
    while (!atomic_load(&h.begun))
        usleep(100);
    uint64_t t0 = wl_gate_now_ms();
    uint64_t e = seal(WL_SEAL_COW);
    assert_true(wl_gate_now_ms() - t0 < 250);
    assert_false(atomic_load(&h.done));
    assert_int_equal(wl_epoch_flags(ep, e), WL_EF_BROKEN);
    struct wl_cowc_reply r = cowc();
    assert_int_equal(r.drain_timeouts, 1);
    assert_int_equal(r.breaks, 1);
    assert_int_equal(r.flags, WL_EF_BROKEN);
    /* The grain stays in the log. */
    assert_int_equal(area[0].sector, 9 * GS);
    join_all();
    /* The straggler is done: the next seal is clean and holds its grain. */
    uint64_t e2 = seal(WL_SEAL_COW);
    assert_int_equal(wl_epoch_flags(ep, e2), 0);
    assert_int_equal(area[0].sector, 9 * GS);
}

static void test_full_pool_breaks_within_the_wait(void **state)
{
    static uint8_t buf[2 * GBYTES];

    (void)state;
    mk(GBYTES, 30); /* one copy at a time */
    guest_write(0, 2 * GS, 0x81);
    uint64_t e = seal(WL_SEAL_COW);
    uint64_t t0 = wl_gate_now_ms();
    guest_write(0, 2 * GS, 0x82); /* needs two copies */
    uint64_t took = wl_gate_now_ms() - t0;
    assert_true(took >= 25 && took < 1000);
    assert_int_equal(wl_epoch_flags(ep, e), WL_EF_BROKEN);
    struct wl_cowc_reply r = cowc();
    assert_int_equal(r.breaks, 1);
    assert_int_equal(r.waits, 1);
    assert_int_equal(r.bytes_now, 0);
    /* Reads still answer (the disk as it is), and the grains stay. */
    ring_read(e, 0, 2 * GS, buf);
    assert_true(all_are(buf, 2 * GBYTES, 0x82));
    assert_int_equal(wl_log_pending_grains(lg), 2);
    /* Broken: further writes go on without waiting. */
    t0 = wl_gate_now_ms();
    guest_write(0, 2 * GS, 0x83);
    assert_true(wl_gate_now_ms() - t0 < 20);
    /* The reseal holds everything and is clean. */
    uint64_t e2 = seal(WL_SEAL_COW);
    assert_int_equal(wl_epoch_flags(ep, e2), 0);
    assert_int_equal(wl_epoch_unread_grains(ep), 2);
}

static void test_client_gone(void **state)
{
    static uint8_t buf[GBYTES];

    (void)state;
    mk(16 * GBYTES, 100);
    guest_write(4 * GS, GS, 0x91);
    uint64_t e = seal(WL_SEAL_COW);
    wl_epoch_client_gone(ep);
    assert_int_equal(wl_epoch_flags(ep, e), WL_EF_BROKEN);
    assert_int_equal(cowc().breaks, 1);
    /* Once every grain was read, nothing breaks the epoch any more. */
    e = seal(WL_SEAL_COW);
    assert_int_equal(wl_epoch_unread_grains(ep), 1);
    ring_read(e, 4 * GS, GS, buf);
    wl_epoch_client_gone(ep);
    guest_write(4 * GS, GS, 0x92);
    assert_int_equal(wl_epoch_flags(ep, e), 0);
    assert_int_equal(cowc().breaks, 1);
}

static void test_adds(void **state)
{
    static uint8_t buf[4 * GBYTES];
    uint64_t grains = 99;

    (void)state;
    mk(16 * GBYTES, 100);
    guest_write(20 * GS, GS, 0xa1);
    struct wl_disk_range bad[2] = { { .sector = 40 * GS, .count = 8 },
                                    { .sector = SECTORS - 4, .count = 8 } };
    assert_int_equal(wl_epoch_adds(ep, bad, 2, &grains), -EINVAL);
    assert_int_equal(grains, 99);
    assert_int_equal(wl_log_live_grains(lg), 1); /* nothing of the good range either */
    bad[1] = (struct wl_disk_range){ .sector = 0, .count = 0 };
    assert_int_equal(wl_epoch_adds(ep, bad, 2, &grains), -EINVAL);
    assert_int_equal(wl_epoch_adds(ep, bad, WL_EXPORT_MAX + 1, &grains), -EINVAL);
    /* Grains 20 (already live) to 23, and 40 to 41. */
    struct wl_disk_range good[2] = { { .sector = 20 * GS, .count = 4 * GS },
                                     { .sector = 40 * GS + 1, .count = GS } };
    assert_int_equal(wl_epoch_adds(ep, good, 2, &grains), 0);
    assert_int_equal(grains, 3 + 2);
    uint64_t e = seal(WL_SEAL_COW);
    assert_int_equal(area[0].sector, 20 * GS);
    assert_int_equal(area[0].count, 4 * GS);
    assert_int_equal(area[1].sector, 40 * GS);
    assert_int_equal(area[1].count, 2 * GS);
    assert_int_equal(wl_epoch_unread_grains(ep), 6);
    /* Protected like any other grain of the epoch. */
    guest_write(21 * GS, 2 * GS, 0xa2);
    ring_read(e, 20 * GS, 4 * GS, buf);
    assert_true(all_are(buf, GBYTES, 0xa1));
    assert_true(all_are(buf + GBYTES, GBYTES, 22));
    assert_true(all_are(buf + 2 * GBYTES, GBYTES, 23));
    assert_true(all_are(buf + 3 * GBYTES, GBYTES, 24));
}

static void test_next_seal_ends_the_epoch(void **state)
{
    (void)state;
    mk(16 * GBYTES, 100);
    guest_write(1 * GS, GS, 0xb1);
    seal(WL_SEAL_COW);
    guest_write(1 * GS, GS, 0xb2);
    assert_int_equal(cowc().bytes_now, GBYTES);
    /* Resealed without reading: the copies go, pending grains become the
     * new epoch's unread set. */
    seal(WL_SEAL_COW);
    assert_int_equal(cowc().bytes_now, 0);
    assert_int_equal(wl_epoch_unread_grains(ep), 1);
    wl_epoch_clear(ep);
    assert_int_equal(wl_epoch_unread_grains(ep), 0);
    assert_int_equal(wl_log_pending_grains(lg), 0);
}

/* ---- Points in time under load -------------------------------------------- */

/* Two writers stamp whole grains they own (grain % 2) with (gate << 40 |
 * sequence); before leaving the gate each appends the stamp to the grain's
 * history.  The main thread seals and reads every pending grain while they
 * write.  A grain read in epoch e must carry the stamp of the last write
 * that entered the gate before e's seal (gate <= e - 1): never a later
 * one, never an earlier one, never a mix. */
#define PIT_WRITERS 2
#define PIT_HIST 8192
#define PIT_ROUNDS 40

struct pit {
    atomic_bool stop;
    _Atomic uint64_t hist[NGRAINS][PIT_HIST];
    atomic_uint nhist[NGRAINS];
    atomic_uint writes;
};

static void stamp(uint64_t g, uint64_t v)
{
    for (size_t i = 0; i < GBYTES; i += 8)
        for (unsigned b = 0; b < 8; b++)
            atomic_store_explicit(&disk[g * GBYTES + i + b], (uint8_t)(v >> (8 * b)),
                                  memory_order_relaxed);
}

/* The stamp of a grain read into buf, or UINT64_MAX if it is torn. */
static uint64_t stamp_of(const uint8_t *buf)
{
    uint64_t v;

    memcpy(&v, buf, 8);
    for (size_t i = 8; i < GBYTES; i += 8)
        if (memcmp(buf + i, &v, 8) != 0)
            return UINT64_MAX;
    return v;
}

struct pit_arg {
    struct pit *p;
    unsigned id;
};

static void *pit_writer(void *arg)
{
    struct pit *p = ((struct pit_arg *)arg)->p;
    unsigned id = ((struct pit_arg *)arg)->id;
    unsigned seed = id * 7919u + 1;

    while (!atomic_load(&p->stop) && !atomic_load(&stop_all)) {
        uint64_t g = ((uint64_t)rand_r(&seed) % (NGRAINS / PIT_WRITERS)) * PIT_WRITERS + id;
        unsigned n = atomic_load(&p->nhist[g]);
        if (n == PIT_HIST)
            break;
        uint64_t t = wl_epoch_write_begin(ep, g * GS, GS);
        uint64_t v = (t << 40) | (n + 1);
        stamp(g, v);
        atomic_store(&p->hist[g][n], v);
        atomic_store(&p->nhist[g], n + 1);
        wl_epoch_write_end(ep, t, g * GS, GS);
        atomic_fetch_add(&p->writes, 1);
        usleep(20);
    }
    return NULL;
}

/* Checks one grain read in epoch e against its history. */
static void pit_check(struct pit *p, uint64_t g, uint64_t v, uint64_t e)
{
    unsigned n = atomic_load(&p->nhist[g]), i;

    assert_true(v != UINT64_MAX); /* torn */
    if ((v & ((1ull << 40) - 1)) == 0)
        return; /* never written: the grain's initial contents, not a stamp */
    assert_true((v >> 40) <= e - 1); /* no write that started after the seal */
    for (i = 0; i < n && atomic_load(&p->hist[g][i]) != v; i++)
        ;
    assert_true(i < n);
    /* Every later write to the grain entered after the seal. */
    for (i++; i < n; i++)
        assert_true((atomic_load(&p->hist[g][i]) >> 40) > e - 1);
}

static void test_points_in_time_under_load(void **state)
{
    struct pit *p = pit_state = calloc(1, sizeof(*p));
    static struct pit_arg args[PIT_WRITERS];
    static uint8_t buf[GBYTES];
    uint64_t checked = 0;

    (void)state;
    assert_non_null(p);
    mk(NGRAINS * GBYTES, 2000);
    for (uint64_t g = 0; g < NGRAINS; g++)
        stamp(g, 0);
    for (unsigned i = 0; i < PIT_WRITERS; i++) {
        args[i] = (struct pit_arg){ p, i };
        spawn(pit_writer, &args[i]);
    }
    for (int round = 0; round < PIT_ROUNDS; round++) {
        usleep(2000);
        uint64_t e = seal(WL_SEAL_COW);
        usleep(1000); /* the writers overwrite sealed grains before any is read */
        for (unsigned x = 0; area[x].count; x++)
            for (uint64_t s = area[x].sector; s < area[x].sector + area[x].count; s += GS) {
                ring_read(e, s, GS, buf);
                pit_check(p, s / GS, stamp_of(buf), e);
                checked++;
                usleep(50); /* let the writers overwrite what is still unread */
            }
        assert_int_equal(wl_epoch_flags(ep, e), 0);
        assert_int_equal(wl_epoch_unread_grains(ep), 0);
        wl_log_next(lg, area, WL_EXPORT_MAX);
    }
    atomic_store(&p->stop, true);
    join_all();
    struct wl_cowc_reply r = cowc();
    print_message("    %u writes, %" PRIu64 " grains checked, %" PRIu64 " copies\n",
                  atomic_load(&p->writes), checked, (uint64_t)r.preserved);
    assert_true(checked > PIT_ROUNDS);
    assert_true(r.preserved > 0); /* the writers did race the reads */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reads_get_the_disk_at_the_seal, teardown),
        cmocka_unit_test_teardown(test_partial_and_stale_reads, teardown),
        cmocka_unit_test_teardown(test_getw_keeps_no_copies, teardown),
        cmocka_unit_test_teardown(test_cow_disabled, teardown),
        cmocka_unit_test_teardown(test_pool_smaller_than_a_grain_is_refused, teardown),
        cmocka_unit_test_teardown(test_seal_waits_for_writes_in_flight, teardown),
        cmocka_unit_test_teardown(test_writes_during_the_drain_wait_and_are_protected,
                                  teardown),
        cmocka_unit_test_teardown(test_drain_timeout_breaks_the_epoch, teardown),
        cmocka_unit_test_teardown(test_full_pool_breaks_within_the_wait, teardown),
        cmocka_unit_test_teardown(test_client_gone, teardown),
        cmocka_unit_test_teardown(test_adds, teardown),
        cmocka_unit_test_teardown(test_next_seal_ends_the_epoch, teardown),
        cmocka_unit_test_teardown(test_points_in_time_under_load, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
