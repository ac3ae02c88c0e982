/* Unit tests for the primary's persistent dirty bitmap (primary/dirty.c).
 *
 * The persisted bits are observed two ways: by closing and reopening the
 * file (a reopened map has todo == the persisted bits and nothing in
 * flight), and, where stated, by reading the file's words directly; and
 * whether a sync put them on the disk, by the page cache's dirty flags
 * (expect_on_disk). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "primary/dirty.h"

#define HDR 4096u /* the header page that precedes the words in the file */

/* ---- fixture: a temporary directory and every open map --------------- */

static char tmpdir[1024];
#define MAX_OPEN 8
static struct bs_dirty *opened[MAX_OPEN];
static void *bufs[MAX_OPEN];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof(tmpdir), "%s/test-dirty.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = '\0';
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_OPEN; i++) {
        bs_dirty_close(opened[i]);
        opened[i] = NULL;
        free(bufs[i]);
        bufs[i] = NULL;
    }
    if (tmpdir[0]) {
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        tmpdir[0] = '\0';
    }
    return 0;
}

static const char *tpath(const char *name)
{
    static char buf[4][PATH_MAX];
    static int n;
    char *p = buf[n++ % 4];

    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    return p;
}

static void *track_buf(void *p)
{
    assert_non_null(p);
    for (int i = 0; i < MAX_OPEN; i++)
        if (!bufs[i]) {
            bufs[i] = p;
            return p;
        }
    fail_msg("too many buffers");
    return NULL;
}

static struct bs_dirty *dopen(const char *path, uint64_t sectors, uint32_t grain, bool *fresh)
{
    struct bs_dirty *d = NULL;
    bool f = !*fresh; /* must be written */
    int r = bs_dirty_open(path, sectors, grain, &f, &d);

    if (r != 0)
        fail_msg("bs_dirty_open(%s, %llu, %u): %d", path, (unsigned long long)sectors, grain, r);
    assert_non_null(d);
    for (int i = 0; i < MAX_OPEN; i++)
        if (!opened[i]) {
            opened[i] = d;
            *fresh = f;
            assert_int_equal(bs_dirty_grain(d), grain);
            assert_int_equal(bs_dirty_ngrains(d), (sectors + grain - 1) / grain);
            assert_int_equal(bs_dirty_inflight_grains(d), 0);
            return d;
        }
    bs_dirty_close(d);
    fail_msg("too many open maps");
    return NULL;
}

static void dclose(struct bs_dirty *d)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (opened[i] == d)
            opened[i] = NULL;
    bs_dirty_close(d);
}

/* Opens and requires the given freshness. */
static struct bs_dirty *dopen_expect(const char *path, uint64_t sectors, uint32_t grain,
                                     bool want_fresh)
{
    bool fresh = !want_fresh;
    struct bs_dirty *d = dopen(path, sectors, grain, &fresh);
    if (fresh != want_fresh)
        fail_msg("%s: fresh=%d, want %d", path, fresh, want_fresh);
    return d;
}

/* Takes every todo grain (nothing must be in flight for the result to be
 * the whole todo set) into set[], which has ngrains entries. */
static void take_all(struct bs_dirty *d, bool *set)
{
    uint64_t ng = bs_dirty_ngrains(d), cursor = 0, first, n, got = 0;
    uint64_t want = bs_dirty_todo_grains(d);

    memset(set, 0, ng * sizeof(*set));
    while (bs_dirty_take(d, &cursor, UINT64_MAX, &first, &n)) {
        assert_true(n > 0);
        assert_true(first + n <= ng);
        for (uint64_t g = first; g < first + n; g++) {
            if (set[g])
                fail_msg("grain %llu taken twice", (unsigned long long)g);
            set[g] = true;
        }
        got += n;
        if (got > ng)
            fail_msg("took more grains than exist");
    }
    assert_int_equal(got, want);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
}

/* Reopens path and returns its todo set (which is the persisted set). */
static void reopened_set(const char *path, uint64_t sectors, uint32_t grain, bool *set)
{
    struct bs_dirty *d = dopen_expect(path, sectors, grain, false);
    take_all(d, set);
    dclose(d);
}

/* The persisted words as the file holds them. */
static void file_words(const char *path, uint64_t *words, uint64_t nwords)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, words, nwords * 8, HDR);
    close(fd);
    assert_int_equal(n, (ssize_t)(nwords * 8));
}

static void copy_file(const char *from, const char *to)
{
    static char buf[1 << 16];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;

    assert_true(in >= 0);
    assert_true(out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

static void patch_file(const char *path, off_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void assert_only(const bool *set, uint64_t ng, const uint64_t *want, size_t nwant)
{
    for (uint64_t g = 0; g < ng; g++) {
        bool w = false;
        for (size_t i = 0; i < nwant; i++)
            w |= want[i] == g;
        if (set[g] != w)
            fail_msg("grain %llu: %s, want %s", (unsigned long long)g, set[g] ? "dirty" : "clean",
                     w ? "dirty" : "clean");
    }
}

/* Brings a fresh map to "nothing dirty". */
static void clean_all(struct bs_dirty *d)
{
    uint64_t cursor = 0, first, n;

    bs_dirty_requeue_all(d);
    while (bs_dirty_take(d, &cursor, UINT64_MAX, &first, &n))
        bs_dirty_acked(d, first, n);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);
}

static void expect_take(struct bs_dirty *d, uint64_t *cursor, uint64_t max, uint64_t want_first,
                        uint64_t want_n)
{
    uint64_t first = 0xdead, n = 0xbeef;

    if (!bs_dirty_take(d, cursor, max, &first, &n))
        fail_msg("take found nothing, want [%llu, +%llu)", (unsigned long long)want_first,
                 (unsigned long long)want_n);
    if (first != want_first || n != want_n)
        fail_msg("take gave [%llu, +%llu), want [%llu, +%llu)", (unsigned long long)first,
                 (unsigned long long)n, (unsigned long long)want_first,
                 (unsigned long long)want_n);
    assert_int_equal(*cursor, first + n);
}

static void expect_no_take(struct bs_dirty *d, uint64_t cursor)
{
    uint64_t first = 0, n = 0;
    if (bs_dirty_take(d, &cursor, UINT64_MAX, &first, &n))
        fail_msg("take gave [%llu, +%llu), want nothing", (unsigned long long)first,
                 (unsigned long long)n);
}

/* ---- tests ------------------------------------------------------------ */

static void test_new_file_fully_dirty(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    uint64_t cursor = 0;

    assert_int_equal(bs_dirty_ngrains(d), 125);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);
    assert_int_equal(file_size(p), HDR + 2 * 8);
    /* Durable already: the words in the file are all set for 125 grains. */
    uint64_t w[2];
    file_words(p, w, 2);
    assert_int_equal(w[0], UINT64_MAX);
    assert_int_equal(w[1], (1ull << (125 - 64)) - 1);

    expect_take(d, &cursor, UINT64_MAX, 0, 125);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    assert_int_equal(bs_dirty_inflight_grains(d), 125);
    expect_no_take(d, 0);
    expect_no_take(d, 60);

    /* A map closed straight after creation reopens as it was, not fresh. */
    dclose(d);
    bool *set = track_buf(calloc(125, sizeof(bool)));
    reopened_set(p, 1000, 8, set);
    for (int g = 0; g < 125; g++)
        assert_true(set[g]);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct bs_dirty *d = NULL;
    bool fresh;

    assert_int_equal(bs_dirty_open(tpath("g0"), 1000, 0, &fresh, &d), -EINVAL);
    assert_int_equal(bs_dirty_open(tpath("g3"), 1000, 3, &fresh, &d), -EINVAL);
    assert_int_equal(bs_dirty_open(tpath("g24"), 1000, 24, &fresh, &d), -EINVAL);
    assert_int_equal(bs_dirty_open(tpath("no/such/dir"), 1000, 8, &fresh, &d), -ENOENT);
    assert_null(d);
}

static void test_mark_rounding(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    bool *set = track_buf(calloc(125, sizeof(bool)));

    clean_all(d);
    bs_dirty_mark(d, 7, 2);             /* sectors 7..8: grains 0, 1 */
    assert_int_equal(bs_dirty_todo_grains(d), 2);
    bs_dirty_mark(d, 24, 8);            /* exactly grain 3 */
    bs_dirty_mark(d, 40, 1);            /* grain 5 */
    bs_dirty_mark(d, 47, 1);            /* grain 5 again */
    assert_int_equal(bs_dirty_todo_grains(d), 4);
    bs_dirty_mark(d, 995, 100);         /* clipped to the disk: grain 124 */
    bs_dirty_mark(d, 1000, 1);          /* past the end: nothing */
    bs_dirty_mark(d, UINT64_MAX - 1, 5);
    bs_dirty_mark(d, 500, 0);           /* empty: nothing */
    assert_int_equal(bs_dirty_todo_grains(d), 5);
    dclose(d);

    uint64_t want[] = {0, 1, 3, 5, 124};
    reopened_set(p, 1000, 8, set);
    assert_only(set, 125, want, 5);

    /* A count that would overflow sector + count is clipped, not wrapped. */
    d = dopen_expect(p, 1000, 8, false);
    clean_all(d);
    bs_dirty_mark(d, 800, UINT64_MAX);
    assert_int_equal(bs_dirty_todo_grains(d), 125 - 100);
    bs_dirty_mark(d, 0, UINT64_MAX);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    clean_all(d);
    bs_dirty_mark_all(d);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    dclose(d);
    reopened_set(p, 1000, 8, set);
    for (int g = 0; g < 125; g++)
        assert_true(set[g]);
}

static void test_acked_gone_after_reopen(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    bool *set = track_buf(calloc(125, sizeof(bool)));
    uint64_t cursor = 0;

    clean_all(d);
    dclose(d);
    d = dopen_expect(p, 1000, 8, false);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    expect_no_take(d, 0);

    bs_dirty_mark(d, 17, 1); /* grain 2 */
    bs_dirty_mark(d, 80, 16); /* grains 10, 11 */
    assert_int_equal(bs_dirty_todo_grains(d), 3);
    expect_take(d, &cursor, UINT64_MAX, 2, 1);
    expect_take(d, &cursor, UINT64_MAX, 10, 2);
    bs_dirty_acked(d, 10, 2);
    assert_int_equal(bs_dirty_inflight_grains(d), 1);
    dclose(d);

    /* Grain 2 was in flight at close: still dirty.  10 and 11: acked. */
    uint64_t want[] = {2};
    reopened_set(p, 1000, 8, set);
    assert_only(set, 125, want, 1);
}

static void test_persisted_is_todo_or_inflight(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    const uint64_t sectors = 64 * 3 * 4 + 12; /* 195 grains of 4, 4 words */
    struct bs_dirty *d = dopen_expect(p, sectors, 4, true);
    bool *set = track_buf(calloc(195, sizeof(bool)));
    uint64_t cursor = 0;

    assert_int_equal(bs_dirty_ngrains(d), 195);
    clean_all(d);
    /* Dirty: 0..9, 60..70 (across a word), 190..194. */
    bs_dirty_mark(d, 0, 40);
    bs_dirty_mark(d, 240, 44);
    bs_dirty_mark(d, 760, 20);
    assert_int_equal(bs_dirty_todo_grains(d), 10 + 11 + 5);
    /* In flight: 0..3, and 60..70. */
    expect_take(d, &cursor, 4, 0, 4);
    cursor = 55;
    expect_take(d, &cursor, UINT64_MAX, 60, 11);
    /* Acked: 62..65 only. */
    bs_dirty_acked(d, 62, 4);
    assert_int_equal(bs_dirty_inflight_grains(d), 4 + 7);
    assert_int_equal(bs_dirty_todo_grains(d), 6 + 5);

    /* The file's words say exactly todo | inflight. */
    uint64_t w[4], want_w[4] = {0, 0, 0, 0};
    for (uint64_t g = 0; g < 195; g++)
        if (g < 10 || (g >= 60 && g <= 70 && !(g >= 62 && g <= 65)) || g >= 190)
            want_w[g / 64] |= 1ull << (g % 64);
    file_words(p, w, 4);
    for (int i = 0; i < 4; i++)
        if (w[i] != want_w[i])
            fail_msg("word %d: 0x%016llx, want 0x%016llx", i, (unsigned long long)w[i],
                     (unsigned long long)want_w[i]);
    dclose(d);

    reopened_set(p, sectors, 4, set);
    for (uint64_t g = 0; g < 195; g++) {
        bool want = (want_w[g / 64] >> (g % 64)) & 1;
        if (set[g] != want)
            fail_msg("grain %llu after reopen: %d, want %d", (unsigned long long)g, set[g], want);
    }
}

static void test_requeue(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    bool *set = track_buf(calloc(125, sizeof(bool)));
    uint64_t cursor = 0;

    clean_all(d);
    bs_dirty_mark(d, 0, 80);          /* grains 0..9 */
    expect_take(d, &cursor, UINT64_MAX, 0, 10);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    assert_int_equal(bs_dirty_inflight_grains(d), 10);

    bs_dirty_requeue(d, 3, 3);        /* 3..5 back to todo */
    assert_int_equal(bs_dirty_todo_grains(d), 3);
    assert_int_equal(bs_dirty_inflight_grains(d), 7);
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 3, 3);
    expect_no_take(d, 0);

    bs_dirty_requeue_all(d);
    assert_int_equal(bs_dirty_todo_grains(d), 10);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 0, 10);

    /* requeue_all with a grain both in flight and re-marked: one grain in
     * todo, not two. */
    bs_dirty_mark(d, 16, 1);          /* grain 2, in flight */
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    bs_dirty_requeue_all(d);
    assert_int_equal(bs_dirty_todo_grains(d), 10);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);

    /* Requeued grains are still persisted. */
    cursor = 0;
    expect_take(d, &cursor, 4, 0, 4);
    bs_dirty_requeue(d, 0, 4);
    bs_dirty_requeue_all(d);
    dclose(d);
    uint64_t want[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    reopened_set(p, 1000, 8, set);
    assert_only(set, 125, want, 10);
}

/* Epochs (primary/epoch.c) ship a grain again when it was dirtied again
 * while in flight: both copies belong to the one uncommitted epoch, whose
 * commit (bs_dirty_acked_all) covers them. */
static void test_take_includes_inflight(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    bool *set = track_buf(calloc(125, sizeof(bool)));
    uint64_t cursor;

    clean_all(d);
    bs_dirty_mark(d, 40, 1);          /* grain 5 */
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 5, 1);
    bs_dirty_mark(d, 41, 1);          /* grain 5 written again while in flight */
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    assert_int_equal(bs_dirty_inflight_grains(d), 1);
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 5, 1);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    assert_int_equal(bs_dirty_inflight_grains(d), 1);
    expect_no_take(d, 0);

    /* A run across in-flight grains is taken whole. */
    bs_dirty_mark(d, 24, 40);         /* 3..7, 5 in flight */
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 3, 5);
    assert_int_equal(bs_dirty_inflight_grains(d), 5);

    /* The commit cleans every inflight grain, but not one dirtied again. */
    bs_dirty_mark(d, 48, 1);          /* 6 */
    bs_dirty_acked_all(d);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    dclose(d);
    uint64_t want6[] = {6};
    reopened_set(p, 1000, 8, set);
    assert_only(set, 125, want6, 1);
}

/* bs_dirty_next_todo lists todo runs in order, changing nothing. */
static void test_next_todo(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    uint64_t pos = 0, first = 99, n = 99, cursor = 0;

    clean_all(d);
    assert_false(bs_dirty_next_todo(d, &pos, &first, &n));
    bs_dirty_mark(d, 8, 16);          /* 1..2 */
    bs_dirty_mark(d, 63 * 8, 3 * 8);  /* 63..65, across a word */
    bs_dirty_mark(d, 124 * 8, 8);     /* 124, the last */
    expect_take(d, &cursor, 1, 1, 1); /* 1 in flight: no longer todo */
    pos = 0;
    assert_true(bs_dirty_next_todo(d, &pos, &first, &n));
    assert_int_equal(first, 2);
    assert_int_equal(n, 1);
    assert_true(bs_dirty_next_todo(d, &pos, &first, &n));
    assert_int_equal(first, 63);
    assert_int_equal(n, 3);
    assert_int_equal(pos, 66);
    assert_true(bs_dirty_next_todo(d, &pos, &first, &n));
    assert_int_equal(first, 124);
    assert_int_equal(n, 1);
    assert_false(bs_dirty_next_todo(d, &pos, &first, &n));
    pos = 1000;
    assert_false(bs_dirty_next_todo(d, &pos, &first, &n));
    assert_int_equal(bs_dirty_todo_grains(d), 5);
    assert_int_equal(bs_dirty_inflight_grains(d), 1);
    dclose(d);
}

static void test_take_wraps(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    uint64_t cursor;

    clean_all(d);
    bs_dirty_mark(d, 16, 1);          /* grain 2 */
    bs_dirty_mark(d, 80, 1);          /* grain 10 */
    bs_dirty_mark(d, 992, 8);         /* grain 124 */
    cursor = 5;
    expect_take(d, &cursor, UINT64_MAX, 10, 1);
    assert_int_equal(cursor, 11);
    expect_take(d, &cursor, UINT64_MAX, 124, 1);
    assert_int_equal(cursor, 125);
    expect_take(d, &cursor, UINT64_MAX, 2, 1);  /* cursor at the end: from 0 */
    assert_int_equal(cursor, 3);
    expect_no_take(d, cursor);

    /* The cursor exactly on a dirty grain takes it first. */
    bs_dirty_requeue_all(d);
    cursor = 10;
    expect_take(d, &cursor, UINT64_MAX, 10, 1);
    /* Wrap from past 124 to 2 once, then nothing. */
    cursor = 11;
    expect_take(d, &cursor, UINT64_MAX, 124, 1);
    expect_take(d, &cursor, UINT64_MAX, 2, 1);
    expect_no_take(d, cursor);

    /* A cursor beyond the map starts from 0. */
    bs_dirty_requeue_all(d);
    cursor = 1000000;
    expect_take(d, &cursor, UINT64_MAX, 2, 1);
    cursor = UINT64_MAX;
    expect_take(d, &cursor, UINT64_MAX, 10, 1);

    /* A run that straddles the cursor: the part after it first, then the
     * part before it. */
    clean_all(d);
    bs_dirty_mark(d, 0, 160);         /* 0..19 */
    cursor = 12;
    expect_take(d, &cursor, UINT64_MAX, 12, 8);
    expect_take(d, &cursor, UINT64_MAX, 0, 12);
    expect_no_take(d, cursor);
    /* Only grains before the cursor: found by wrapping. */
    bs_dirty_requeue_all(d);
    clean_all(d);
    bs_dirty_mark(d, 0, 8);
    cursor = 124;
    expect_take(d, &cursor, UINT64_MAX, 0, 1);
}

static void test_max_grains(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    uint64_t cursor = 0, first, n, calls = 0, total = 0;

    /* Fresh: 125 grains in runs of at most 10. */
    while (bs_dirty_take(d, &cursor, 10, &first, &n)) {
        assert_int_equal(first, calls * 10);
        assert_int_equal(n, calls < 12 ? 10 : 5);
        total += n;
        calls++;
        assert_true(calls <= 13);
    }
    assert_int_equal(calls, 13);
    assert_int_equal(total, 125);

    /* One at a time. */
    bs_dirty_requeue_all(d);
    cursor = 0;
    for (uint64_t g = 0; g < 125; g++)
        expect_take(d, &cursor, 1, g, 1);
    expect_no_take(d, cursor);
    assert_int_equal(bs_dirty_inflight_grains(d), 125);

    /* The bound also holds in the wrapped part. */
    bs_dirty_requeue_all(d);
    cursor = 120;
    expect_take(d, &cursor, 64, 120, 5);
    expect_take(d, &cursor, 64, 0, 64);
    expect_take(d, &cursor, 64, 64, 56);
    expect_no_take(d, cursor);
}

static void test_unaligned_disk_size(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    const uint64_t sectors = 64 * 64 * 2 + 1; /* grain 64: 128 full grains + 1 sector */
    struct bs_dirty *d = dopen_expect(p, sectors, 64, true);
    bool *set = track_buf(calloc(129, sizeof(bool)));
    uint64_t cursor = 0;

    assert_int_equal(bs_dirty_ngrains(d), 129);
    assert_int_equal(bs_dirty_todo_grains(d), 129);
    assert_int_equal(file_size(p), HDR + 3 * 8);
    expect_take(d, &cursor, UINT64_MAX, 0, 129);
    bs_dirty_acked(d, 0, 129);
    bs_dirty_mark(d, sectors - 1, 1); /* the last, partial grain */
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    bs_dirty_mark(d, sectors, 1);     /* just past the end: nothing */
    bs_dirty_mark(d, sectors - 2, 2); /* grains 127 and 128 */
    assert_int_equal(bs_dirty_todo_grains(d), 2);
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 127, 2);
    bs_dirty_requeue_all(d);
    dclose(d);
    uint64_t want[] = {127, 128};
    reopened_set(p, sectors, 64, set);
    assert_only(set, 129, want, 2);

    /* A disk smaller than one grain: one grain. */
    d = dopen_expect(tpath("tiny"), 3, 8, true);
    assert_int_equal(bs_dirty_ngrains(d), 1);
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    cursor = 0;
    expect_take(d, &cursor, UINT64_MAX, 0, 1);
}

static void test_reopen_other_geometry(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d;

    /* 512 sectors: grain 8 gives 64 grains, grain 16 gives 32; both one
     * word, so the file has the same size either way and only the header
     * can tell. */
    d = dopen_expect(p, 512, 8, true);
    clean_all(d);
    dclose(d);
    d = dopen_expect(p, 512, 8, false);
    assert_int_equal(bs_dirty_todo_grains(d), 0);
    dclose(d);
    d = dopen_expect(p, 512, 16, true);
    assert_int_equal(bs_dirty_todo_grains(d), 32);
    clean_all(d);
    dclose(d);

    /* Another disk size with the same number of grains (1000 and 999
     * sectors both make 125 grains of 8). */
    d = dopen_expect(p, 1000, 8, true);
    clean_all(d);
    dclose(d);
    d = dopen_expect(p, 999, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    clean_all(d);
    dclose(d);

    /* Another size in grains: the file is resized and fully dirty. */
    d = dopen_expect(p, 100000, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 12500);
    clean_all(d);
    dclose(d);
    d = dopen_expect(p, 1000, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    assert_int_equal(file_size(p), HDR + 2 * 8);
    dclose(d);
    /* And then it sticks. */
    d = dopen_expect(p, 1000, 8, false);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    dclose(d);

    /* Another grain on a larger disk. */
    d = dopen_expect(p, 1 << 20, 128, true);
    clean_all(d);
    dclose(d);
    d = dopen_expect(p, 1 << 20, 256, true);
    assert_int_equal(bs_dirty_todo_grains(d), (1 << 20) / 256);
}

static void test_corrupt_header(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct {
        off_t off;
        uint8_t val;
        const char *what;
    } corruptions[] = {
        {0, 'X', "magic"},       {7, '2', "magic"},       {8, 2, "version"},
        {11, 1, "version"},      {12, 16, "grain"},       {16, 0xe7, "disk_sectors"},
        {23, 1, "disk_sectors"}, {24, 0x7c, "ngrains"},   {31, 1, "ngrains"},
    };

    for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
        struct bs_dirty *d = dopen(p, 1000, 8, &(bool){false});
        clean_all(d);
        dclose(d);
        d = dopen_expect(p, 1000, 8, false);
        assert_int_equal(bs_dirty_todo_grains(d), 0);
        dclose(d);

        patch_file(p, corruptions[i].off, &corruptions[i].val, 1);
        bool fresh = false;
        d = dopen(p, 1000, 8, &fresh);
        if (!fresh)
            fail_msg("byte %lld (%s) corrupted: fresh=false", (long long)corruptions[i].off,
                     corruptions[i].what);
        assert_int_equal(bs_dirty_todo_grains(d), 125);
        dclose(d);
        /* The header was rewritten: the next open is not fresh, and the
         * full sync is still pending. */
        d = dopen_expect(p, 1000, 8, false);
        assert_int_equal(bs_dirty_todo_grains(d), 125);
        dclose(d);
    }

    /* A truncated file, and one with trailing garbage. */
    assert_int_equal(truncate(p, HDR + 8), 0);
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    clean_all(d);
    dclose(d);
    assert_int_equal(truncate(p, HDR + 3 * 8), 0);
    d = dopen_expect(p, 1000, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
    assert_int_equal(file_size(p), HDR + 2 * 8);
    clean_all(d);
    dclose(d);
    /* An empty file. */
    assert_int_equal(truncate(p, 0), 0);
    d = dopen_expect(p, 1000, 8, true);
    assert_int_equal(bs_dirty_todo_grains(d), 125);
}

static void test_stray_bits_past_end(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    struct bs_dirty *d = dopen_expect(p, 1000, 8, true);
    bool *set = track_buf(calloc(125, sizeof(bool)));

    clean_all(d);
    bs_dirty_mark(d, 8 * 70, 1);      /* grain 70 */
    dclose(d);
    /* Bits 125..127 of the last word do not exist; set them in the file. */
    uint64_t w[2];
    file_words(p, w, 2);
    assert_int_equal(w[1], 1ull << (70 - 64));
    w[1] |= 7ull << (125 - 64);
    patch_file(p, HDR + 8, &w[1], 8);

    d = dopen_expect(p, 1000, 8, false);
    assert_int_equal(bs_dirty_todo_grains(d), 1);
    dclose(d);
    uint64_t want[] = {70};
    reopened_set(p, 1000, 8, set);
    assert_only(set, 125, want, 1);
}

/* ---- what reached the disk ------------------------------------------ */

/* A crash copy (copy_file) reads the page cache, which holds every store to
 * the shared mapping whether or not it was msync'ed, so it cannot tell a
 * synced bitmap from an unsynced one.  Reading the file with O_DIRECT cannot
 * either: Linux writes the range's dirty cached pages back before a direct
 * read.  What can is the page cache's own dirty flag: map the file (sharing
 * the cache's pages), find each page's frame in /proc/self/pagemap and its
 * flags in /proc/kpageflags (KPF_DIRTY).  A page still dirty after
 * bs_dirty_sync() is not on the disk.  This needs root (frame numbers are
 * hidden otherwise) and a file system with a disk behind it (not tmpfs).
 * It can miss a missing msync when the kernel's flusher happened to write
 * the pages back first, never the other way round; the power-loss tests
 * check the same end to end.
 *
 * Returns the number of dirty pages of PATH, or -1 when this cannot be
 * observed here (WHY says why). */
#define KPF_DIRTY_BIT 4
#define TMPFS_MAGIC_NR 0x01021994

static long dirty_cached_pages(const char *path, const char **why)
{
    long page = sysconf(_SC_PAGESIZE), dirty = 0;
    struct statfs sfs;
    struct stat st;
    int fd = open(path, O_RDONLY), pm = -1, kf = -1;
    unsigned char *m = MAP_FAILED;
    volatile unsigned char sink = 0;

    *why = NULL;
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(fstatfs(fd, &sfs), 0);
    if (sfs.f_type == TMPFS_MAGIC_NR) {
        *why = "the file is on tmpfs, which has no disk to sync to";
        goto out;
    }
    pm = open("/proc/self/pagemap", O_RDONLY);
    kf = open("/proc/kpageflags", O_RDONLY);
    if (pm < 0 || kf < 0) {
        *why = "/proc/self/pagemap or /proc/kpageflags cannot be read (not root?)";
        goto out;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    for (off_t off = 0; off < st.st_size; off += page) {
        uint64_t e = 0, flags = 0;
        uintptr_t va = (uintptr_t)(m + off);

        sink += m[off]; /* fault the cache's page into our mapping */
        assert_int_equal(pread(pm, &e, 8, (off_t)(va / (uintptr_t)page * 8)), 8);
        uint64_t pfn = e & ((1ull << 55) - 1);
        if (!(e >> 63) || pfn == 0) {
            *why = "page frame numbers are hidden (needs CAP_SYS_ADMIN)";
            goto out;
        }
        assert_int_equal(pread(kf, &flags, 8, (off_t)(pfn * 8)), 8);
        dirty += (flags >> KPF_DIRTY_BIT) & 1;
    }
out:
    (void)sink;
    if (m != MAP_FAILED)
        munmap(m, (size_t)st.st_size);
    if (kf >= 0)
        close(kf);
    if (pm >= 0)
        close(pm);
    close(fd);
    return *why ? -1 : dirty;
}

/* After a sync, nothing of the file may be only in the page cache.  Where
 * that cannot be observed the test says so, and in CI (BLKSHIP_CI=1, root
 * on a disk-backed TMPDIR) that fails. */
static void expect_on_disk(const char *path, const char *when)
{
    const char *why;
    long n = dirty_cached_pages(path, &why);

    if (n < 0) {
        const char *ci = getenv("BLKSHIP_CI");

        if (ci && strcmp(ci, "1") == 0)
            fail_msg("cannot check what reached the disk %s: %s", when, why);
        print_message("not checked what reached the disk %s: %s\n", when, why);
        return;
    }
    if (n > 0)
        fail_msg("%ld page(s) of %s still dirty in the page cache %s: not msync'ed", n, path,
                 when);
}

static void test_crash_copy(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    const char *copy = tpath("crash");
    struct bs_dirty *d = dopen_expect(p, 4096, 8, true);  /* 512 grains */
    bool *set = track_buf(calloc(512, sizeof(bool)));
    uint64_t cursor;

    clean_all(d);
    assert_int_equal(bs_dirty_sync(d), 0);
    expect_on_disk(p, "after the first sync");
    /* A crash now: nothing dirty. */
    copy_file(p, copy);
    {
        uint64_t none[1] = {0};
        reopened_set(copy, 4096, 8, set);
        assert_only(set, 512, none, 0);
    }

    /* Marked: 1, 64..66, 300, 511.  In flight: 64..66 (taken), 300 (taken,
     * then re-marked).  Acked: nothing. */
    bs_dirty_mark(d, 8, 1);
    bs_dirty_mark(d, 64 * 8, 24);
    bs_dirty_mark(d, 300 * 8 + 3, 1);
    bs_dirty_mark(d, 4095, 1);
    cursor = 64;
    expect_take(d, &cursor, UINT64_MAX, 64, 3);
    cursor = 300;
    expect_take(d, &cursor, UINT64_MAX, 300, 1);
    bs_dirty_mark(d, 300 * 8, 8);
    assert_int_equal(bs_dirty_sync(d), 0);
    expect_on_disk(p, "after the sync of the marks");
    assert_int_equal(bs_dirty_sync(d), 0); /* nothing new: still fine */
    copy_file(p, copy);
    uint64_t want1[] = {1, 64, 65, 66, 300, 511};
    reopened_set(copy, 4096, 8, set);
    assert_only(set, 512, want1, 6);

    /* Acks of 64..66 and 300: 300 was written again, so it stays. */
    bs_dirty_acked(d, 64, 3);
    bs_dirty_acked(d, 300, 1);
    assert_int_equal(bs_dirty_sync(d), 0);
    expect_on_disk(p, "after the sync of the acks");
    copy_file(p, copy);
    uint64_t want2[] = {1, 300, 511};
    reopened_set(copy, 4096, 8, set);
    assert_only(set, 512, want2, 3);

    /* The original is untouched by all this and still open. */
    assert_int_equal(bs_dirty_todo_grains(d), 3);
    assert_int_equal(bs_dirty_inflight_grains(d), 0);
}

/* ---- randomized, against a model ----------------------------------- */

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

struct run {
    uint64_t first, n;
};

static void test_random_against_model(void **state)
{
    (void)state;
    const char *p = tpath("dirty");
    const uint32_t grain = 4;
    const uint64_t sectors = 777 * grain - 2; /* 777 grains, the last partial */
    const uint64_t ng = 777, nw = (ng + 63) / 64;
    struct bs_dirty *d = dopen_expect(p, sectors, grain, true);
    bool *todo = track_buf(calloc(ng, sizeof(bool)));
    bool *infl = track_buf(calloc(ng, sizeof(bool)));
    struct run *runs = track_buf(calloc(ng, sizeof(struct run)));
    uint64_t *words = track_buf(calloc(nw, sizeof(uint64_t)));
    size_t nruns = 0;
    uint64_t cursor = 0;

    for (uint64_t g = 0; g < ng; g++)
        todo[g] = true;

    for (int step = 0; step < 4000; step++) {
        unsigned op = (unsigned)(rnd() % 100);

        if (op < 35) {
            uint64_t s = rnd() % (sectors + 20), c = 1 + rnd() % (grain * 12);
            bs_dirty_mark(d, s, c);
            if (s < sectors) {
                uint64_t e = s + c < sectors ? s + c : sectors;
                for (uint64_t g = s / grain; g <= (e - 1) / grain; g++)
                    todo[g] = true;
            }
        } else if (op < 65) {
            uint64_t max = 1 + rnd() % 40, first, n;
            uint64_t start = cursor < ng ? cursor : 0;
            /* The model's answer: the first takeable grain from start,
             * wrapping once. */
            uint64_t want = UINT64_MAX;
            for (uint64_t i = 0; i < ng; i++) {
                uint64_t g = (start + i) % ng;
                if (todo[g]) {
                    want = g;
                    break;
                }
            }
            bool got = bs_dirty_take(d, &cursor, max, &first, &n);
            if (want == UINT64_MAX) {
                if (got)
                    fail_msg("step %d: took [%llu,+%llu), model has nothing", step,
                             (unsigned long long)first, (unsigned long long)n);
                continue;
            }
            if (!got)
                fail_msg("step %d: took nothing, model has grain %llu", step,
                         (unsigned long long)want);
            uint64_t want_n = 0;
            while (want + want_n < ng && want_n < max && todo[want + want_n])
                want_n++;
            if (first != want || n != want_n)
                fail_msg("step %d: took [%llu,+%llu), model [%llu,+%llu)", step,
                         (unsigned long long)first, (unsigned long long)n,
                         (unsigned long long)want, (unsigned long long)want_n);
            assert_int_equal(cursor, first + n);
            for (uint64_t g = first; g < first + n; g++) {
                todo[g] = false;
                infl[g] = true;
            }
            runs[nruns++] = (struct run){first, n};
        } else if (op < 85) {
            if (!nruns)
                continue;
            size_t i = (size_t)(rnd() % nruns);
            bs_dirty_acked(d, runs[i].first, runs[i].n);
            for (uint64_t g = runs[i].first; g < runs[i].first + runs[i].n; g++)
                infl[g] = false;
            runs[i] = runs[--nruns];
        } else if (op < 95) {
            if (!nruns)
                continue;
            size_t i = (size_t)(rnd() % nruns);
            bs_dirty_requeue(d, runs[i].first, runs[i].n);
            for (uint64_t g = runs[i].first; g < runs[i].first + runs[i].n; g++) {
                infl[g] = false;
                todo[g] = true;
            }
            runs[i] = runs[--nruns];
        } else if (op < 98) {
            bs_dirty_requeue_all(d);
            for (uint64_t g = 0; g < ng; g++)
                if (infl[g]) {
                    infl[g] = false;
                    todo[g] = true;
                }
            nruns = 0;
        } else {
            cursor = rnd() % (ng + 5);
        }

        uint64_t nt = 0, ni = 0;
        for (uint64_t g = 0; g < ng; g++) {
            nt += todo[g];
            ni += infl[g];
        }
        if (bs_dirty_todo_grains(d) != nt || bs_dirty_inflight_grains(d) != ni)
            fail_msg("step %d (op %u): todo %llu inflight %llu, model %llu %llu", step, op,
                     (unsigned long long)bs_dirty_todo_grains(d),
                     (unsigned long long)bs_dirty_inflight_grains(d), (unsigned long long)nt,
                     (unsigned long long)ni);

        /* The invariant, in the file itself: persisted == todo | inflight. */
        if (step % 16 == 0) {
            file_words(p, words, nw);
            for (uint64_t g = 0; g < ng; g++) {
                bool bit = (words[g / 64] >> (g % 64)) & 1;
                if (bit != (todo[g] || infl[g]))
                    fail_msg("step %d: persisted grain %llu is %d, todo %d inflight %d", step,
                             (unsigned long long)g, bit, todo[g], infl[g]);
            }
        }
    }

    dclose(d);
    bool *set = track_buf(calloc(ng, sizeof(bool)));
    reopened_set(p, sectors, grain, set);
    for (uint64_t g = 0; g < ng; g++)
        if (set[g] != (todo[g] || infl[g]))
            fail_msg("after reopen grain %llu: %d, model todo %d inflight %d",
                     (unsigned long long)g, set[g], todo[g], infl[g]);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_new_file_fully_dirty),
        T(test_open_errors),
        T(test_mark_rounding),
        T(test_acked_gone_after_reopen),
        T(test_persisted_is_todo_or_inflight),
        T(test_requeue),
        T(test_take_includes_inflight),
        T(test_next_todo),
        T(test_take_wraps),
        T(test_max_grains),
        T(test_unaligned_disk_size),
        T(test_reopen_other_geometry),
        T(test_corrupt_header),
        T(test_stray_bits_past_end),
        T(test_crash_copy),
        T(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
