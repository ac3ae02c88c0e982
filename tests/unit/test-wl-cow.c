/* Unit tests for copy-before-write (primary/writelog/wl_cow.c): ring reads
 * of grains overwritten after the seal return the contents at the seal,
 * memory stays within the pool, a full pool breaks the epoch after the
 * bounded wait instead of stalling, and writes racing with reads of the
 * same grains never leak a post-seal byte into the epoch. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "primary/writelog/wl_cow.h"

#define GB 4096u /* grain bytes */

/* ---- A disk in memory -------------------------------------------------- */

/* 8-byte words with relaxed atomic accesses: a read racing with a write
 * may see any mix of old and new words, as a real pread racing a pwrite
 * may, without being a data race for the sanitizers. */
struct disk {
    uint64_t ngrains;
    _Atomic uint64_t *w;
    atomic_uint reads; /* reads done by wl_cow_preserve */
    int fail;          /* -errno the next preserve read returns */
    useconds_t slow;   /* each preserve read takes this long */
};

static void disk_init(struct disk *d, uint64_t ngrains)
{
    d->ngrains = ngrains;
    d->w = calloc(ngrains * GB / 8, sizeof(*d->w));
    assert_non_null(d->w);
    atomic_init(&d->reads, 0);
    d->fail = 0;
    d->slow = 0;
}

static void disk_copy_out(struct disk *d, uint64_t g, void *buf)
{
    uint64_t *out = buf;
    for (size_t i = 0; i < GB / 8; i++)
        out[i] = atomic_load_explicit(&d->w[g * GB / 8 + i], memory_order_relaxed);
}

/* Fills grain g with one 64-bit value. */
static void disk_write(struct disk *d, uint64_t g, uint64_t v)
{
    for (size_t i = 0; i < GB / 8; i++)
        atomic_store_explicit(&d->w[g * GB / 8 + i], v, memory_order_relaxed);
}

static int disk_read(void *ctx, uint64_t g, void *buf)
{
    struct disk *d = ctx;

    atomic_fetch_add(&d->reads, 1);
    if (d->fail)
        return d->fail;
    /* A slow read widens the window in which other writes to the grain
     * must wait for the copy. */
    for (size_t i = 0; i < GB / 8; i++) {
        if (d->slow && i == GB / 16)
            usleep(d->slow);
        ((uint64_t *)buf)[i] = atomic_load_explicit(&d->w[g * GB / 8 + i], memory_order_relaxed);
    }
    return 0;
}

static bool grain_is(const void *buf, uint64_t v)
{
    const uint64_t *p = buf;
    for (size_t i = 0; i < GB / 8; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* The client's unread map, as the store sees it. */
#define MAXG 256
static atomic_bool unread_map[MAXG];

static bool is_unread(void *ctx, uint64_t g)
{
    (void)ctx;
    return atomic_load(&unread_map[g]);
}

static void mark_read(void *ctx, uint64_t g)
{
    (void)ctx;
    atomic_store(&unread_map[g], false);
}

static const struct wl_cow_unread_ops unread_ops = { is_unread, mark_read };

static void all_unread(void)
{
    for (unsigned g = 0; g < MAXG; g++)
        atomic_store(&unread_map[g], true);
}

/* The epoch open now: what a read dispatched now is tagged with. */
static uint64_t open_epoch(struct wl_cow *c)
{
    struct wl_cow_stats st;

    wl_cow_get_stats(c, &st);
    return st.epoch;
}

/* ---- Single-threaded behaviour ------------------------------------------- */

static void test_reads_see_the_seal(void **state)
{
    struct wl_cow *c;
    struct disk d;
    static uint8_t buf[4 * GB];
    struct wl_cow_stats st;

    (void)state;
    disk_init(&d, 16);
    for (uint64_t g = 0; g < 16; g++)
        disk_write(&d, g, 100 + g);
    assert_int_equal(wl_cow_create(GB, 8 * GB, &unread_ops, NULL, &c), 0);
    /* No epoch open: nothing is preserved. */
    assert_int_equal(wl_cow_preserve(c, 5, disk_read, &d, 10), -ECANCELED);
    all_unread();
    wl_cow_open(c, 7);
    assert_int_equal(wl_cow_preserve(c, 5, disk_read, &d, 10), 0);
    disk_write(&d, 5, 999);
    assert_int_equal(wl_cow_preserve(c, 5, disk_read, &d, 10), 0); /* already there */
    assert_int_equal(atomic_load(&d.reads), 1);
    /* A ring read of grains 4..7 after the write. */
    for (uint64_t g = 4; g < 8; g++)
        disk_copy_out(&d, g, buf + (g - 4) * GB);
    assert_int_equal(wl_cow_overlay(c, 7, 4, 4, buf, sizeof(buf), false), 1);
    assert_true(grain_is(buf + GB, 105));
    assert_true(grain_is(buf, 104) && grain_is(buf + 2 * GB, 106));
    wl_cow_get_stats(c, &st);
    assert_int_equal(st.bytes_now, GB);
    assert_int_equal(st.preserved, 1);
    assert_int_equal(st.epoch, 7);
    /* Released by the read: a second read sees the disk. */
    assert_int_equal(wl_cow_overlay(c, 7, 4, 4, buf, sizeof(buf), true), 1);
    assert_int_equal(wl_cow_overlay(c, 7, 4, 4, buf, sizeof(buf), true), 0);
    wl_cow_get_stats(c, &st);
    assert_int_equal(st.bytes_now, 0);
    assert_int_equal(st.bytes_peak, GB);
    /* Read: the grains are marked so, and a write to them needs no copy. */
    assert_false(atomic_load(&unread_map[4]) || atomic_load(&unread_map[7]));
    assert_int_equal(wl_cow_preserve(c, 6, disk_read, &d, 10), 0);
    assert_int_equal(atomic_load(&d.reads), 1);
    /* A short last grain (the disk's end) is copied only as far as len. */
    assert_int_equal(wl_cow_preserve(c, 9, disk_read, &d, 10), 0);
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(wl_cow_overlay(c, 7, 9, 1, buf, 512, true), 1);
    assert_true(((uint64_t *)buf)[63] == 109 && buf[512] == 0xee);
    /* Closing drops everything and takes no more copies. */
    assert_int_equal(wl_cow_preserve(c, 3, disk_read, &d, 10), 0);
    wl_cow_close(c);
    wl_cow_get_stats(c, &st);
    assert_int_equal(st.bytes_now, 0);
    assert_int_equal(wl_cow_preserve(c, 3, disk_read, &d, 10), -ECANCELED);
    wl_cow_destroy(c);
    free(d.w);
}

static void test_full_pool_breaks_the_epoch(void **state)
{
    struct wl_cow *c;
    struct disk d;
    struct wl_cow_stats st;
    struct timespec t0, t1;

    (void)state;
    disk_init(&d, 16);
    assert_int_equal(wl_cow_create(GB, 2 * GB, &unread_ops, NULL, &c), 0);
    all_unread();
    wl_cow_open(c, 1);
    assert_int_equal(wl_cow_preserve(c, 1, disk_read, &d, 50), 0);
    assert_int_equal(wl_cow_preserve(c, 2, disk_read, &d, 50), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(wl_cow_preserve(c, 3, disk_read, &d, 50), -ECANCELED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 45 && ms < 2000); /* it waited the bound, not forever */
    wl_cow_get_stats(c, &st);
    assert_true(st.broken);
    assert_int_equal(st.breaks, 1);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.bytes_now, 0); /* every copy dropped */
    /* Broken: writes go on at once without copies, reads get nothing. */
    assert_int_equal(wl_cow_preserve(c, 4, disk_read, &d, 1000), -ECANCELED);
    static uint8_t buf[GB];
    assert_int_equal(wl_cow_overlay(c, 1, 1, 1, buf, GB, true), 0);
    /* A new epoch starts clean. */
    wl_cow_open(c, 2);
    assert_int_equal(wl_cow_preserve(c, 4, disk_read, &d, 10), 0);
    wl_cow_get_stats(c, &st);
    assert_false(st.broken);
    assert_int_equal(st.breaks, 1);
    /* A read that fails breaks the epoch too: no copy, no promise. */
    d.fail = -EIO;
    assert_int_equal(wl_cow_preserve(c, 5, disk_read, &d, 10), -ECANCELED);
    wl_cow_get_stats(c, &st);
    assert_true(st.broken);
    assert_int_equal(st.breaks, 2);
    wl_cow_destroy(c);
    free(d.w);
}

/* A copy read that fails after the client has read the grain (the read
 * runs outside the store's lock, so a ring read completes meanwhile). */
struct late_fail {
    struct wl_cow *c;
    uint64_t epoch;
};

static int read_then_fail(void *ctx, uint64_t g, void *buf)
{
    struct late_fail *lf = ctx;
    static uint8_t ring[GB];

    (void)buf;
    wl_cow_overlay(lf->c, lf->epoch, g, 1, ring, GB, true);
    return -EIO;
}

static void test_no_break_once_read(void **state)
{
    struct late_fail lf;
    struct wl_cow_stats st;

    (void)state;
    assert_int_equal(wl_cow_create(GB, 4 * GB, &unread_ops, NULL, &lf.c), 0);
    lf.epoch = 3;
    all_unread();
    wl_cow_open(lf.c, 3);
    /* The client read the grain before this write reached the disk: the
     * failed copy is not needed, and the epoch must not break (the client
     * may already have checked it after its last read). */
    assert_int_equal(wl_cow_preserve(lf.c, 2, read_then_fail, &lf, 10), -ECANCELED);
    wl_cow_get_stats(lf.c, &st);
    assert_false(st.broken);
    assert_int_equal(st.breaks, 0);
    assert_int_equal(st.bytes_now, 0);
    wl_cow_destroy(lf.c);
}

struct releaser {
    struct wl_cow *c;
    uint64_t grain;
    useconds_t after_us;
};

static void *release_later(void *arg)
{
    struct releaser *r = arg;
    static uint8_t buf[GB];

    usleep(r->after_us);
    wl_cow_overlay(r->c, open_epoch(r->c), r->grain, 1, buf, GB, true);
    return NULL;
}

static void test_wait_ends_when_a_read_frees_space(void **state)
{
    struct wl_cow *c;
    struct disk d;
    struct wl_cow_stats st;
    pthread_t t;

    (void)state;
    disk_init(&d, 16);
    assert_int_equal(wl_cow_create(GB, GB, &unread_ops, NULL, &c), 0);
    all_unread();
    wl_cow_open(c, 1);
    assert_int_equal(wl_cow_preserve(c, 1, disk_read, &d, 10), 0);
    struct releaser r = { c, 1, 20000 };
    assert_int_equal(pthread_create(&t, NULL, release_later, &r), 0);
    assert_int_equal(wl_cow_preserve(c, 2, disk_read, &d, 5000), 0);
    pthread_join(t, NULL);
    wl_cow_get_stats(c, &st);
    assert_false(st.broken);
    assert_int_equal(st.waits, 1);
    assert_true(st.wait_ms < 5000);
    assert_int_equal(st.preserved, 2);
    wl_cow_destroy(c);
    free(d.w);
}

/* ---- Writes racing with reads ----------------------------------------------- */

#define RG 128          /* grains of the racing disk */
#define ROUNDS 20       /* epochs */

/* The filter's write gate, as a read-write lock: writes hold it shared
 * from their check to the end of their write, and a seal takes it alone,
 * so that the seal's instant has no write in flight (docs/epochs.md 2.1). */
struct race {
    struct wl_cow *c;
    struct disk d;
    pthread_rwlock_t gate;
    /* Each grain at the seal, whole: writes to one grain from several
     * threads may interleave, so a grain need not hold one value. */
    uint8_t image[RG][GB];
    atomic_uint left;            /* grains still to read in this epoch */
    atomic_bool stop;
    atomic_uint writes, preserved_writes, bad;
    atomic_uint_fast64_t next_value;
};

static void *writer(void *arg)
{
    struct race *r = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();

    while (!atomic_load(&r->stop)) {
        uint64_t g = (uint64_t)rand_r(&seed) % RG;
        pthread_rwlock_rdlock(&r->gate);
        /* The filter's order: preserve (if the client has not read the
         * grain yet), then write. */
        if (atomic_load(&unread_map[g]) &&
            wl_cow_preserve(r->c, g, disk_read, &r->d, 5000) == 0)
            atomic_fetch_add(&r->preserved_writes, 1);
        disk_write(&r->d, g, atomic_fetch_add(&r->next_value, 1));
        pthread_rwlock_unlock(&r->gate);
        atomic_fetch_add(&r->writes, 1);
    }
    return NULL;
}

static _Thread_local unsigned reader_index;

static unsigned r_index(struct race *r)
{
    (void)r;
    return reader_index;
}

struct reader_arg {
    struct race *r;
    unsigned index;
};

static void *reader(void *arg)
{
    struct race *r = ((struct reader_arg *)arg)->r;
    static _Thread_local uint8_t buf[2 * GB];
    unsigned seed = (unsigned)(uintptr_t)pthread_self() ^ 0x5bd1e995u;

    reader_index = ((struct reader_arg *)arg)->index;

    while (!atomic_load(&r->stop)) {
        if (atomic_load(&r->left) == 0) {
            usleep(100);
            continue;
        }
        /* A ring read of an aligned pair of grains, each pair read by one
         * reader only (the client reads a grain once per epoch): the disk,
         * then the copies over it, which marks the pair read. */
        uint64_t g = ((uint64_t)rand_r(&seed) % (RG / 4)) * 4 + r_index(r) * 2;
        bool a = atomic_load(&unread_map[g]), b = atomic_load(&unread_map[g + 1]);
        if (!a && !b)
            continue;
        disk_copy_out(&r->d, g, buf);
        disk_copy_out(&r->d, g + 1, buf + GB);
        wl_cow_overlay(r->c, open_epoch(r->c), g, 2, buf, sizeof(buf), true);
        if (a && memcmp(buf, r->image[g], GB) != 0)
            atomic_fetch_add(&r->bad, 1);
        if (b && memcmp(buf + GB, r->image[g + 1], GB) != 0)
            atomic_fetch_add(&r->bad, 1);
        atomic_fetch_sub(&r->left, (unsigned)a + (unsigned)b);
        usleep(200); /* a client slower than the guest: copies pile up */
    }
    return NULL;
}

static void test_writes_racing_reads(void **state)
{
    struct race *r = calloc(1, sizeof(*r));
    pthread_t w[3], rd[2];

    (void)state;
    assert_non_null(r);
    disk_init(&r->d, RG);
    r->d.slow = 20;
    pthread_rwlock_init(&r->gate, NULL);
    atomic_init(&r->next_value, 1);
    for (uint64_t g = 0; g < RG; g++)
        disk_write(&r->d, g, atomic_fetch_add(&r->next_value, 1));
    /* Room for a quarter of the disk: writes wait for reads at times. */
    assert_int_equal(wl_cow_create(GB, RG / 4 * GB, &unread_ops, NULL, &r->c), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer, r), 0);
    struct reader_arg ra[2] = { { r, 0 }, { r, 1 } };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, reader, &ra[i]), 0);
    for (int round = 1; round <= ROUNDS; round++) {
        /* The seal: no write in flight; the image is the disk now. */
        pthread_rwlock_wrlock(&r->gate);
        for (uint64_t g = 0; g < RG; g++) {
            disk_copy_out(&r->d, g, r->image[g]);
            atomic_store(&unread_map[g], true);
        }
        atomic_store(&r->left, RG);
        wl_cow_open(r->c, (uint64_t)round);
        pthread_rwlock_unlock(&r->gate);
        /* The readers pick grains at random: under ThreadSanitizer on a
         * busy host the last ones can take many seconds to be picked. */
        for (int i = 0; i < 600000 && atomic_load(&r->left); i++)
            usleep(100);
        assert_int_equal(atomic_load(&r->left), 0);
        pthread_rwlock_wrlock(&r->gate);
        wl_cow_close(r->c);
        pthread_rwlock_unlock(&r->gate);
    }
    atomic_store(&r->stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    struct wl_cow_stats st;
    wl_cow_get_stats(r->c, &st);
    print_message("    %u writes, %u preserved first, %llu copies, %llu waits, %llu breaks, "
                  "peak %llu KiB\n",
                  atomic_load(&r->writes), atomic_load(&r->preserved_writes),
                  (unsigned long long)st.preserved, (unsigned long long)st.waits,
                  (unsigned long long)st.breaks, (unsigned long long)(st.bytes_peak >> 10));
    assert_int_equal(atomic_load(&r->bad), 0);
    assert_int_equal(st.breaks, 0);
    assert_true(st.preserved > 0);
    assert_true(st.bytes_peak <= RG / 4 * GB);
    pthread_rwlock_destroy(&r->gate);
    wl_cow_destroy(r->c);
    free(r->d.w);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_see_the_seal),
        cmocka_unit_test(test_full_pool_breaks_the_epoch),
        cmocka_unit_test(test_no_break_once_read),
        cmocka_unit_test(test_wait_ends_when_a_read_frees_space),
        cmocka_unit_test(test_writes_racing_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
