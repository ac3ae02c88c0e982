/* Unit tests for the secondary's epoch journal (secondary/journal.c): what
 * is committed survives a reopen exactly, what is not is gone, damage is
 * never taken for data, and the circular region wraps without losing an
 * unreleased epoch. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "secondary/journal.h"

#define MiB (1ull << 20)
#define MAXREC (64u << 10)

static char dir[256], path[300];

static int setup(void **state)
{
    const char *base = getenv("TMPDIR");

    (void)state;
    snprintf(dir, sizeof(dir), "%s/test-journal.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/journal", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

/* A record's payload: every byte derived from epoch, sector and index. */
static void fill(uint8_t *buf, uint32_t count, uint64_t epoch, uint64_t sector)
{
    for (size_t i = 0; i < (size_t)count * 512; i++)
        buf[i] = (uint8_t)(epoch * 31 + sector * 7 + i / 512 * 3 + i);
}

static void append_data(struct bs_journal *j, uint64_t epoch, uint64_t sector, uint32_t count)
{
    static uint8_t buf[MAXREC];

    fill(buf, count, epoch, sector);
    assert_int_equal(bs_journal_append(j, epoch, BS_JOURNAL_DATA, sector, count, buf), 0);
}

/* What a replay saw, checked against what was appended. */
struct seen {
    unsigned records;
    uint64_t sectors[64];
    uint32_t counts[64];
    int kinds[64];
    bool bad_payload;
};

static int collect(void *opaque, const struct bs_journal_record *r)
{
    struct seen *s = opaque;
    static uint8_t want[MAXREC];

    if (s->records < 64) {
        s->sectors[s->records] = r->sector;
        s->counts[s->records] = r->count;
        s->kinds[s->records] = r->kind;
    }
    s->records++;
    if (r->kind == BS_JOURNAL_DATA) {
        fill(want, r->count, r->epoch, r->sector);
        if (memcmp(want, r->data, (size_t)r->count * 512) != 0)
            s->bad_payload = true;
    }
    return 0;
}

static struct seen replay(struct bs_journal *j, uint64_t epoch, int expect)
{
    struct seen s = { 0 };

    assert_int_equal(bs_journal_replay(j, epoch, collect, &s), expect);
    assert_false(s.bad_payload);
    return s;
}

static size_t committed(struct bs_journal *j, uint64_t *out)
{
    return bs_journal_committed(j, out, 64);
}

static void test_commit_survives_uncommitted_does_not(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];
    struct seen s;

    (void)state;
    assert_int_equal(bs_journal_open(path, 4 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 100, 8);
    append_data(j, 1, 4000, 128);
    assert_int_equal(bs_journal_append(j, 1, BS_JOURNAL_ZERO, 9000, 1u << 20, NULL), 0);
    append_data(j, 1, 7, 1);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    append_data(j, 2, 50, 16); /* never committed: a crash now */
    bs_journal_close(j);

    assert_int_equal(bs_journal_open(path, 4 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 1);
    s = replay(j, 1, 0);
    assert_int_equal(s.records, 4);
    assert_int_equal(s.sectors[0], 100);
    assert_int_equal(s.counts[1], 128);
    assert_int_equal(s.kinds[2], BS_JOURNAL_ZERO);
    assert_int_equal(s.counts[2], 1u << 20);
    assert_int_equal(s.sectors[3], 7);
    replay(j, 2, -ENOENT);
    /* The uncommitted tail's space is free again: used is epoch 1 only. */
    uint64_t used1 = bs_journal_used(j);
    assert_true(used1 > (8 + 128 + 1) * 512u && used1 < (8 + 128 + 1) * 512u + 6 * 64);
    /* Appends go on after epoch 1; an older or equal epoch is refused. */
    assert_int_equal(bs_journal_append(j, 1, BS_JOURNAL_DATA, 0, 1, e), -EINVAL);
    append_data(j, 3, 60, 2);
    assert_int_equal(bs_journal_commit(j, 3), 0);
    /* An epoch of no record: a commit alone. */
    assert_int_equal(bs_journal_commit(j, 4), 0);
    assert_true(bs_journal_empty_epoch(j, 4));
    assert_false(bs_journal_empty_epoch(j, 3));
    assert_false(bs_journal_empty_epoch(j, 2)); /* not in the journal */
    bs_journal_close(j);

    assert_int_equal(bs_journal_open(path, 4 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 3);
    assert_int_equal(e[1], 3);
    s = replay(j, 3, 0);
    assert_int_equal(s.records, 1);
    assert_int_equal(s.sectors[0], 60);
    /* The scan at open counts records too. */
    assert_true(bs_journal_empty_epoch(j, 4));
    assert_false(bs_journal_empty_epoch(j, 1));
    assert_false(bs_journal_empty_epoch(j, 3));
    s = replay(j, 4, 0);
    assert_int_equal(s.records, 0);
    bs_journal_close(j);
}

/* Flips one byte of the file at off. */
static void flip(uint64_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void test_damage_is_not_data(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];

    (void)state;
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    append_data(j, 2, 20, 8);
    assert_int_equal(bs_journal_commit(j, 2), 0);
    bs_journal_close(j);
    /* Epoch 2's payload, past epoch 1 (48 + 4096 + 48) and its header. */
    uint64_t e2_payload = 4096 + 48 + 4096 + 48 + 48 + 100;
    flip(e2_payload);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1); /* epoch 2 no longer reads back: not committed */
    assert_int_equal(e[0], 1);
    replay(j, 1, 0);
    bs_journal_close(j);

    /* Damage after the journal was opened is found by the replay. */
    teardown(state);
    setup(state);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    flip(4096 + 48 + 5);
    struct seen s = { 0 };
    assert_int_equal(bs_journal_replay(j, 1, collect, &s), -EUCLEAN);
    assert_int_equal(s.records, 0);
    bs_journal_close(j);
}

static void test_superblocks(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];

    (void)state;
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    append_data(j, 2, 20, 8);
    assert_int_equal(bs_journal_commit(j, 2), 0);
    assert_int_equal(bs_journal_release(j, 1), 0); /* superblock generation 2, slot 0 */
    bs_journal_close(j);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 2);
    bs_journal_close(j);

    /* The newer superblock torn: the older one still opens the journal,
     * with epoch 1 back (applying it again is harmless). */
    flip(20);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 2);
    assert_int_equal(e[0], 1);
    assert_int_equal(e[1], 2);
    bs_journal_close(j);

    /* Both gone: refused, not guessed at. */
    flip(512 + 20);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), -EUCLEAN);
    assert_null(j);
}

static void test_abort_and_stale_records(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];
    struct seen s;

    (void)state;
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    /* Epoch 2 is broken after three records of the same size... */
    append_data(j, 2, 100, 8);
    append_data(j, 2, 200, 8);
    append_data(j, 2, 300, 8);
    bs_journal_abort(j);
    /* ...and epoch 3 reuses the space with one record of that size: the
     * stale records of epoch 2 that follow must not join it. */
    append_data(j, 3, 400, 8);
    assert_int_equal(bs_journal_commit(j, 3), 0);
    bs_journal_close(j);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 2);
    assert_int_equal(e[1], 3);
    s = replay(j, 3, 0);
    assert_int_equal(s.records, 1);
    assert_int_equal(s.sectors[0], 400);
    /* A crash while epoch 4 is open: nothing of it is committed. */
    append_data(j, 4, 500, 8);
    bs_journal_close(j);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 2);
    bs_journal_close(j);
}

/* Writes epoch 1 (one record at sector 10) and epoch 2 (one record at
 * `sector`) into a new journal at p. */
static void two_epochs(const char *p, uint64_t sector)
{
    struct bs_journal *j;

    assert_int_equal(bs_journal_open(p, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    append_data(j, 2, sector, 8);
    assert_int_equal(bs_journal_commit(j, 2), 0);
    bs_journal_close(j);
}

/* A commit vouches for exactly the records it followed: a valid record
 * of the right size, sequence number and epoch that is not the one
 * written (a misdirected write from another journal, say) makes the
 * epoch uncommitted rather than applied with the wrong data. */
static void test_commit_vouches_for_its_records(void **state)
{
    char other[320];
    uint8_t rec[48 + 4096];
    struct bs_journal *j;
    uint64_t e[64];
    int a, b;

    (void)state;
    snprintf(other, sizeof(other), "%s/other", dir);
    two_epochs(path, 400);
    two_epochs(other, 401);
    /* Epoch 2's record sits after epoch 1's record and commit. */
    uint64_t off = 4096 + 48 + 4096 + 48;
    b = open(other, O_RDONLY);
    a = open(path, O_RDWR);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(pread(b, rec, sizeof(rec), (off_t)off), (ssize_t)sizeof(rec));
    assert_int_equal(pwrite(a, rec, sizeof(rec), (off_t)off), (ssize_t)sizeof(rec));
    close(a);
    close(b);
    unlink(other);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 1);
    bs_journal_close(j);
}

/* Old epochs left whole in the region from an earlier lap are not read as
 * new.  Every epoch here is 31 records (20 of 3 sectors, 11 of 2) and a
 * commit, 85 * 512 bytes: the region (1 MiB - 4 KiB) holds exactly 24 of
 * them, so after 25 epochs (each released once the next commits) the
 * 25th sits where the 1st was, and right after it lies the 2nd, intact
 * and with valid CRCs.  Only its older sequence numbers and epoch say it
 * is not part of the journal any more. */
static void test_earlier_lap_is_not_read(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];

    (void)state;
    assert_int_equal(bs_journal_open(path, BS_JOURNAL_MIN_BYTES, MAXREC, &j), 0);
    for (uint64_t epoch = 1; epoch <= 25; epoch++) {
        for (unsigned i = 0; i < 31; i++)
            append_data(j, epoch, epoch * 100 + i * 4, i < 20 ? 3 : 2);
        assert_int_equal(bs_journal_commit(j, epoch), 0);
        if (epoch > 1)
            assert_int_equal(bs_journal_release(j, epoch - 1), 0);
    }
    assert_int_equal(bs_journal_used(j), 85 * 512);
    bs_journal_close(j);
    assert_int_equal(bs_journal_open(path, BS_JOURNAL_MIN_BYTES, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 25);
    struct seen s = replay(j, 25, 0);
    assert_int_equal(s.records, 31);
    assert_int_equal(s.sectors[0], 2500);
    bs_journal_close(j);
}

static void test_too_large_and_wrap(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];

    (void)state;
    assert_int_equal(bs_journal_open(path, BS_JOURNAL_MIN_BYTES, MAXREC, &j), 0);
    /* An epoch larger than the journal: -ENOSPC, then aborted. */
    int r = 0;
    unsigned n;
    for (n = 0; n < 100 && r == 0; n++) {
        static uint8_t buf[MAXREC];
        r = bs_journal_append(j, 1, BS_JOURNAL_DATA, n * 128, 128, buf);
    }
    assert_int_equal(r, -ENOSPC);
    assert_true(n > 10);
    bs_journal_abort(j);
    assert_int_equal(bs_journal_used(j), 0);

    /* Many epochs of 3 x 40 KiB, each released after the next commits:
     * the region (1 MiB - 4 KiB) wraps many times, with PAD records. */
    uint64_t epoch;
    for (epoch = 2; epoch < 200; epoch++) {
        append_data(j, epoch, epoch * 1000, 80);
        append_data(j, epoch, epoch * 1000 + 80, 80);
        append_data(j, epoch, epoch * 1000 + 160, 80);
        assert_int_equal(bs_journal_commit(j, epoch), 0);
        if (epoch > 3)
            assert_int_equal(bs_journal_release(j, epoch - 2), 0);
        if (epoch % 37 == 0) {
            /* A reopen anywhere finds exactly the two unreleased epochs. */
            bs_journal_close(j);
            assert_int_equal(bs_journal_open(path, BS_JOURNAL_MIN_BYTES, MAXREC, &j), 0);
            assert_int_equal(committed(j, e), 2);
            assert_int_equal(e[0], epoch - 1);
            assert_int_equal(e[1], epoch);
            struct seen s = replay(j, epoch - 1, 0);
            assert_int_equal(s.records, 3);
            assert_int_equal(s.sectors[2], (epoch - 1) * 1000 + 160);
        }
    }
    assert_true(bs_journal_used(j) < BS_JOURNAL_MIN_BYTES);
    bs_journal_close(j);
}

static void test_bad_arguments(void **state)
{
    struct bs_journal *j;

    (void)state;
    assert_int_equal(bs_journal_open(path, 4096, MAXREC, &j), -EINVAL);
    assert_int_equal(bs_journal_open(path, BS_JOURNAL_MIN_BYTES, 1u << 20, &j), -EINVAL);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(bs_journal_append(j, 1, BS_JOURNAL_COMMIT, 0, 1, NULL), -EINVAL);
    assert_int_equal(bs_journal_append(j, 1, BS_JOURNAL_DATA, 0, 0, NULL), -EINVAL);
    assert_int_equal(bs_journal_append(j, 1, BS_JOURNAL_DATA, 0, MAXREC / 512 + 1, NULL),
                     -EINVAL);
    append_data(j, 5, 0, 1);
    /* One epoch at a time. */
    assert_int_equal(bs_journal_append(j, 6, BS_JOURNAL_ZERO, 0, 1, NULL), -EINVAL);
    /* A commit may name the open epoch higher, never lower. */
    assert_int_equal(bs_journal_commit(j, 4), -EINVAL);
    assert_int_equal(bs_journal_commit(j, 5), 0);
    assert_int_equal(bs_journal_commit(j, 5), -EINVAL);
    bs_journal_close(j);
}

/* Counts records without checking payloads against their epoch (records
 * appended under a provisional number carry the commit's number back). */
static int collect_any(void *opaque, const struct bs_journal_record *r)
{
    struct seen *s = opaque;

    if (s->records < 64) {
        s->sectors[s->records] = r->sector;
        s->counts[s->records] = r->count;
        s->kinds[s->records] = r->kind;
    }
    s->records++;
    if (r->epoch != 7 && r->epoch != 9)
        s->bad_payload = true;
    return 0;
}

/* The appender learns an epoch's number at its end: records appended under
 * 3 and committed as 7 are epoch 7, now and after a reopen; so are those
 * appended under 8 and committed as 9 in the scan. */
static void test_commit_renumbers(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];
    struct seen s = { 0 };

    (void)state;
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    append_data(j, 3, 10, 8);
    append_data(j, 3, 30, 4);
    assert_int_equal(bs_journal_commit(j, 7), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 7);
    assert_int_equal(bs_journal_replay(j, 7, collect_any, &s), 0);
    assert_int_equal(s.records, 2);
    assert_int_equal(s.sectors[1], 30);
    assert_false(s.bad_payload);
    replay(j, 3, -ENOENT);
    /* The next epoch must be above the commit's number. */
    assert_int_equal(bs_journal_append(j, 7, BS_JOURNAL_ZERO, 0, 1, NULL), -EINVAL);
    append_data(j, 8, 50, 2);
    assert_int_equal(bs_journal_commit(j, 9), 0);
    bs_journal_close(j);

    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 2);
    assert_int_equal(e[0], 7);
    assert_int_equal(e[1], 9);
    memset(&s, 0, sizeof(s));
    assert_int_equal(bs_journal_replay(j, 9, collect_any, &s), 0);
    assert_int_equal(s.records, 1);
    assert_int_equal(s.sectors[0], 50);
    assert_false(s.bad_payload);
    assert_int_equal(bs_journal_append(j, 9, BS_JOURNAL_ZERO, 0, 1, NULL), -EINVAL);
    bs_journal_close(j);
}

/* What an oversize epoch had journalled is handed back in order by
 * bs_journal_replay_open, then dropped by the abort: it is never taken
 * for a committed epoch, and the committed one before it is untouched. */
static void test_replay_open_tail(void **state)
{
    struct bs_journal *j;
    uint64_t e[64];
    struct seen s;

    (void)state;
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    /* Nothing open: nothing handed back. */
    s = (struct seen){ 0 };
    assert_int_equal(bs_journal_replay_open(j, collect, &s), 0);
    assert_int_equal(s.records, 0);
    append_data(j, 1, 10, 8);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    append_data(j, 2, 100, 16);
    assert_int_equal(bs_journal_append(j, 2, BS_JOURNAL_ZERO, 500, 64, NULL), 0);
    append_data(j, 2, 200, 128);
    assert_int_equal(bs_journal_sync(j), 0);
    s = (struct seen){ 0 };
    assert_int_equal(bs_journal_replay_open(j, collect, &s), 0);
    assert_false(s.bad_payload);
    assert_int_equal(s.records, 3);
    assert_int_equal(s.sectors[0], 100);
    assert_int_equal(s.kinds[1], BS_JOURNAL_ZERO);
    assert_int_equal(s.counts[1], 64);
    assert_int_equal(s.sectors[2], 200);
    assert_int_equal(s.counts[2], 128);
    bs_journal_abort(j);
    s = (struct seen){ 0 };
    assert_int_equal(bs_journal_replay_open(j, collect, &s), 0);
    assert_int_equal(s.records, 0);
    bs_journal_close(j);
    assert_int_equal(bs_journal_open(path, 2 * MiB, MAXREC, &j), 0);
    assert_int_equal(committed(j, e), 1);
    assert_int_equal(e[0], 1);
    s = replay(j, 1, 0);
    assert_int_equal(s.records, 1);
    bs_journal_close(j);
}

/* The records of test_batched_appends' epoch e: 200 of them (more than
 * one pwritev takes), of 4 and 16 KiB, some ZERO, one 64 KiB, about 1.7 MiB
 * in all, so that the region's end and the 1 MiB read-back window's fall
 * inside records and batches. */
#define BATCH_N 200u
static uint8_t batch_data[BATCH_N][MAXREC];

static void batch_entries(uint64_t e, struct bs_journal_entry *in)
{
    for (unsigned i = 0; i < BATCH_N; i++) {
        uint64_t sector = e * 100000 + i * 200;
        uint32_t count = i == 37 ? MAXREC / 512 : i % 3 == 0 ? 32 : 8;
        bool zero = i % 11 == 5;
        if (!zero)
            fill(batch_data[i], count, e, sector);
        in[i] = (struct bs_journal_entry){ .kind = zero ? BS_JOURNAL_ZERO : BS_JOURNAL_DATA,
                                           .sector = sector, .count = zero ? 16 : count,
                                           .data = zero ? NULL : batch_data[i] };
    }
}

static void read_file(const char *p, uint8_t **out, size_t *len)
{
    FILE *f = fopen(p, "rb");
    struct stat st;

    assert_non_null(f);
    assert_int_equal(fstat(fileno(f), &st), 0);
    *len = (size_t)st.st_size;
    *out = malloc(*len);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, *len, f), *len);
    fclose(f);
}

/* bs_journal_append_many leaves exactly the file that one bs_journal_append
 * per record leaves, across wraps of the region (PAD records inside a
 * batch), and a reopen and a replay read every record back from it whole,
 * in order: the read-back window refills for records that straddle it. */
static void test_batched_appends(void **state)
{
    struct bs_journal *jb, *js;
    struct bs_journal_entry in[BATCH_N];
    char single[320];
    uint64_t e[64];

    (void)state;
    snprintf(single, sizeof(single), "%s.single", path);
    assert_int_equal(bs_journal_open(path, 8 * MiB, MAXREC, &jb), 0);
    assert_int_equal(bs_journal_open(single, 8 * MiB, MAXREC, &js), 0);
    for (uint64_t ep = 1; ep <= 12; ep++) {
        size_t done = 0;
        batch_entries(ep, in);
        assert_int_equal(bs_journal_append_many(jb, ep, in, BATCH_N, &done), 0);
        assert_int_equal(done, BATCH_N);
        for (unsigned i = 0; i < BATCH_N; i++)
            assert_int_equal(bs_journal_append(js, ep, in[i].kind, in[i].sector, in[i].count,
                                               in[i].data), 0);
        assert_int_equal(bs_journal_commit(jb, ep), 0);
        assert_int_equal(bs_journal_commit(js, ep), 0);
        assert_int_equal(bs_journal_used(jb), bs_journal_used(js));
        /* Each epoch takes about 1.7 MiB of the 8 MiB region: two are
         * kept, so it wraps every few epochs, and a reopen scans 3.4 MiB. */
        if (ep > 2) {
            assert_int_equal(bs_journal_release(jb, ep - 2), 0);
            assert_int_equal(bs_journal_release(js, ep - 2), 0);
        }
        if (ep % 5 == 0) {
            bs_journal_close(jb);
            assert_int_equal(bs_journal_open(path, 8 * MiB, MAXREC, &jb), 0);
        }
        assert_int_equal(committed(jb, e), ep > 2 ? 2 : ep);
        assert_int_equal(e[ep > 1 ? 1 : 0], ep);
        struct seen s = replay(jb, ep, 0);
        assert_int_equal(s.records, BATCH_N);
        for (unsigned i = 0; i < 64; i++) {
            assert_int_equal(s.sectors[i], in[i].sector);
            assert_int_equal(s.counts[i], in[i].count);
            assert_int_equal(s.kinds[i], in[i].kind);
        }
    }
    bs_journal_close(jb);
    bs_journal_close(js);

    uint8_t *a, *b;
    size_t alen, blen;
    read_file(path, &a, &alen);
    read_file(single, &b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    free(a);
    free(b);
    unlink(single);
}

/* A batch that does not fit: the records before the one that does not are
 * appended and counted, that one is -ENOSPC, and nothing after it. */
static void test_batch_out_of_space(void **state)
{
    struct bs_journal *j;
    struct bs_journal_entry in[BATCH_N];
    size_t done = 0, total = 0;
    int r = 0;
    struct seen s = { 0 };

    (void)state;
    assert_int_equal(bs_journal_open(path, 4 * MiB, MAXREC, &j), 0);
    for (uint64_t round = 0; round < 10 && r == 0; round++) {
        batch_entries(1, in);
        r = bs_journal_append_many(j, 1, in, BATCH_N, &done);
        total += done;
    }
    assert_int_equal(r, -ENOSPC);
    assert_true(done < BATCH_N);
    assert_true(total > BATCH_N);
    assert_int_equal(bs_journal_replay_open(j, collect_any, &s), 0);
    assert_int_equal(s.records, total);
    /* An invalid record stops a batch too, with what came before it. */
    bs_journal_abort(j);
    batch_entries(2, in);
    in[3].count = 0;
    assert_int_equal(bs_journal_append_many(j, 2, in, BATCH_N, &done), -EINVAL);
    assert_int_equal(done, 3);
    bs_journal_close(j);
}

/* cachestat(2), Linux 6.5: how many of a file's cached pages are dirty.
 * glibc 2.36 has no wrapper. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct cs_range {
    uint64_t off, len;
};
struct cs {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

static int dirty_bytes(const char *file, uint64_t *out)
{
    struct cs_range range = { 0, 0 }; /* the whole file */
    struct cs c;
    int fd = open(file, O_RDONLY), r;

    assert_true(fd >= 0);
    r = (int)syscall(__NR_cachestat, fd, &range, &c, 0);
    close(fd);
    if (r < 0)
        return -errno;
    *out = c.nr_dirty * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}

/* Appends start the writeback of what they wrote once a MiB is waiting,
 * single appends and batches alike: 4 MiB appended leave at most about a
 * MiB dirty in the page cache, where without it all 4 would be (the
 * kernel's own writeback waits 30 s for them).  The commit's fdatasync is
 * left the last of them, not the whole epoch. */
static void test_writeback_starts_early(void **state)
{
    static uint8_t buf[MAXREC];
    struct bs_journal_entry in[64];
    struct bs_journal *j;
    struct statfs sf;
    char wdir[300], wpath[320];
    uint64_t dirty;

    (void)state;
    /* tmpfs has no writeback: the journal goes where there is. */
    snprintf(wdir, sizeof(wdir), "%s/test-journal-wb.XXXXXX",
             statfs(dir, &sf) == 0 && sf.f_type != 0x01021994 ? dir : "/var/tmp");
    assert_non_null(mkdtemp(wdir));
    assert_int_equal(statfs(wdir, &sf), 0);
    snprintf(wpath, sizeof(wpath), "%s/journal", wdir);
    if (sf.f_type == 0x01021994) {
        rmdir(wdir);
        print_message("%s is on tmpfs, which has no writeback: not checked\n", wdir);
        skip();
    }
    assert_int_equal(bs_journal_open(wpath, 32 * MiB, MAXREC, &j), 0);
    if (dirty_bytes(wpath, &dirty) == -ENOSYS) {
        bs_journal_close(j);
        unlink(wpath);
        rmdir(wdir);
        print_message("this kernel has no cachestat(2) (Linux 6.5): not checked\n");
        skip();
    }
    /* 64 single appends of 64 KiB. */
    for (uint64_t s = 0; s < 64; s++)
        append_data(j, 1, s * 128, 128);
    assert_int_equal(dirty_bytes(wpath, &dirty), 0);
    assert_true(dirty <= MiB + MAXREC);
    assert_int_equal(bs_journal_commit(j, 1), 0);
    assert_int_equal(dirty_bytes(wpath, &dirty), 0);
    assert_int_equal(dirty, 0);
    /* One batch of 64 records of 64 KiB. */
    fill(buf, 128, 2, 0);
    for (unsigned i = 0; i < 64; i++)
        in[i] = (struct bs_journal_entry){ .kind = BS_JOURNAL_DATA, .sector = i * 128,
                                           .count = 128, .data = buf };
    size_t done = 0;
    assert_int_equal(bs_journal_append_many(j, 2, in, 64, &done), 0);
    assert_int_equal(done, 64);
    assert_int_equal(dirty_bytes(wpath, &dirty), 0);
    assert_true(dirty <= MiB + MAXREC);
    bs_journal_close(j);
    unlink(wpath);
    rmdir(wdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_survives_uncommitted_does_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_not_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superblocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_stale_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_vouches_for_its_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earlier_lap_is_not_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large_and_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_renumbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_open_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_out_of_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writeback_starts_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
