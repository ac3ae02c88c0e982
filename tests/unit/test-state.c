/* Unit tests for state files and identities (common/state.c). */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/changes.h"
#include "common/state.h"

/* ---- temporary directory, removed by the teardown even on failure ---- */

static char tmpdir[1024];

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

    snprintf(tmpdir, sizeof(tmpdir), "%s/test-state.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = '\0';
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (tmpdir[0]) {
        /* A test may leave a directory without write permission. */
        chmod(tmpdir, 0700);
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

static void write_raw(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- bs_state_write / bs_state_read ---------------------------------- */

static void test_write_read_round_trip(void **state)
{
    (void)state;
    const char *path = tpath("state");
    const char *text = "primary_id 00112233445566778899aabbccddeeff\ngeneration 1\nepoch 0\n";
    char buf[BS_STATE_MAX];
    struct stat st;

    assert_int_equal(bs_state_write(path, text), 0);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, text);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, strlen(text));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_false(exists(tpath("state.tmp")));

    /* A shorter text replaces it entirely: no tail of the old one. */
    assert_int_equal(bs_state_write(path, "a 1\n"), 0);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "a 1\n");

    /* The empty text gives an empty file. */
    assert_int_equal(bs_state_write(path, ""), 0);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
}

static void test_write_is_rename(void **state)
{
    (void)state;
    const char *path = tpath("state");
    const char *old = tpath("state.old-link");
    char buf[BS_STATE_MAX];
    struct stat before, after;

    /* The old file stays whole under another name: the new text went to a
     * new inode that was renamed over it, never written in place. */
    assert_int_equal(bs_state_write(path, "version 1\n"), 0);
    assert_int_equal(link(path, old), 0);
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(bs_state_write(path, "version 2 and much longer\n"), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_int_not_equal(before.st_ino, after.st_ino);
    assert_int_equal(bs_state_read(old, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "version 1\n");
    assert_int_equal(bs_state_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "version 2 and much longer\n");
    assert_false(exists(tpath("state.tmp")));
}

static void test_write_over_stale_tmp(void **state)
{
    (void)state;
    const char *path = tpath("s");
    char big[2000], buf[BS_STATE_MAX];

    /* A crash left a longer temporary file behind. */
    memset(big, 'q', sizeof(big));
    write_raw(tpath("s.tmp"), big, sizeof(big));
    assert_int_equal(bs_state_write(path, "k v\n"), 0);
    assert_int_equal(bs_state_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "k v\n");
    assert_false(exists(tpath("s.tmp")));
}

static void test_write_errors(void **state)
{
    (void)state;
    char buf[BS_STATE_MAX];
    int r;

    /* Missing directory. */
    assert_int_equal(bs_state_write(tpath("nodir/state"), "a 1\n"), -ENOENT);
    assert_false(exists(tpath("nodir")));

    /* The target is a non-empty directory: rename fails, nothing is left. */
    assert_int_equal(mkdir(tpath("isdir"), 0700), 0);
    assert_int_equal(mkdir(tpath("isdir/sub"), 0700), 0);
    r = bs_state_write(tpath("isdir"), "a 1\n");
    assert_true(r < 0);
    assert_false(exists(tpath("isdir.tmp")));
    struct stat st;
    assert_int_equal(stat(tpath("isdir"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* A path whose temporary name does not fit. */
    static char longp[4096];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(bs_state_write(longp, "a 1\n"), -ENAMETOOLONG);

    /* An existing file survives a failed write. */
    assert_int_equal(bs_state_write(tpath("keep"), "old 1\n"), 0);
    assert_int_equal(chmod(tmpdir, 0500), 0);
    if (geteuid() != 0) {
        r = bs_state_write(tpath("keep"), "new 2\n");
        assert_int_equal(r, -EACCES);
    }
    assert_int_equal(chmod(tmpdir, 0700), 0);
    assert_int_equal(bs_state_read(tpath("keep"), buf, sizeof(buf)), 0);
    if (geteuid() != 0)
        assert_string_equal(buf, "old 1\n");
}

static void test_read_absent(void **state)
{
    (void)state;
    char buf[64];

    assert_int_equal(bs_state_read(tpath("absent"), buf, sizeof(buf)), -ENOENT);
    assert_int_equal(bs_state_read(tpath("nodir/absent"), buf, sizeof(buf)), -ENOENT);
}

static void test_read_too_large(void **state)
{
    (void)state;
    char data[200], buf[64];

    memset(data, 'x', sizeof(data));
    /* Much larger than the buffer. */
    write_raw(tpath("big"), data, sizeof(data));
    assert_int_equal(bs_state_read(tpath("big"), buf, sizeof(buf)), -EFBIG);
    /* Exactly one byte too many: size bytes for a buffer of size. */
    write_raw(tpath("edge"), data, sizeof(buf));
    assert_int_equal(bs_state_read(tpath("edge"), buf, sizeof(buf)), -EFBIG);
    /* The largest that fits, size - 1 bytes, must also be NUL-terminated. */
    write_raw(tpath("fits"), data, sizeof(buf) - 1);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(tpath("fits"), buf, sizeof(buf)), 0);
    assert_int_equal(buf[sizeof(buf) - 1], '\0');
    assert_int_equal(strnlen(buf, sizeof(buf)), sizeof(buf) - 1);
    /* One short of that. */
    write_raw(tpath("under"), data, sizeof(buf) - 2);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(tpath("under"), buf, sizeof(buf)), 0);
    assert_int_equal(strlen(buf), sizeof(buf) - 2);
}

static void test_read_tiny_buffer(void **state)
{
    (void)state;
    char buf[1];

    /* A one-byte buffer holds only the empty file. */
    write_raw(tpath("empty"), "", 0);
    buf[0] = 'Z';
    assert_int_equal(bs_state_read(tpath("empty"), buf, 1), 0);
    assert_int_equal(buf[0], '\0');
    write_raw(tpath("one"), "x", 1);
    assert_int_equal(bs_state_read(tpath("one"), buf, 1), -EFBIG);
}

static void test_read_max_file(void **state)
{
    (void)state;
    static char text[BS_STATE_MAX], buf[BS_STATE_MAX];

    /* BS_STATE_MAX - 1 bytes of lines through the write path. */
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        text[i] = i % 16 == 15 ? '\n' : (char)('a' + i % 16);
    text[sizeof(text) - 1] = '\0';
    assert_int_equal(bs_state_write(tpath("max"), text), 0);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(bs_state_read(tpath("max"), buf, sizeof(buf)), 0);
    assert_int_equal(buf[sizeof(buf) - 1], '\0');
    assert_memory_equal(buf, text, sizeof(text));
}

/* ---- bs_state_get / bs_state_get_u64 --------------------------------- */

static void test_get(void **state)
{
    (void)state;
    const char *text = "ab 5\na 1\nname hello world\nempty \nlast 9";
    char v[32];

    assert_int_equal(bs_state_get(text, "a", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    assert_int_equal(bs_state_get(text, "ab", v, sizeof(v)), 0);
    assert_string_equal(v, "5");
    assert_int_equal(bs_state_get(text, "name", v, sizeof(v)), 0);
    assert_string_equal(v, "hello world");
    assert_int_equal(bs_state_get(text, "empty", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    /* Last line without a newline. */
    assert_int_equal(bs_state_get(text, "last", v, sizeof(v)), 0);
    assert_string_equal(v, "9");

    /* Absent keys, and keys that are only a prefix or a suffix. */
    assert_int_equal(bs_state_get(text, "b", v, sizeof(v)), -ENOENT);
    assert_int_equal(bs_state_get(text, "nam", v, sizeof(v)), -ENOENT);
    assert_int_equal(bs_state_get(text, "las", v, sizeof(v)), -ENOENT);
    assert_int_equal(bs_state_get(text, "missing", v, sizeof(v)), -ENOENT);
    assert_int_equal(bs_state_get("", "a", v, sizeof(v)), -ENOENT);
    assert_int_equal(bs_state_get("a", "a", v, sizeof(v)), -ENOENT);
    /* A key in the middle of a line is not a key. */
    assert_int_equal(bs_state_get("x hello 7\n", "hello", v, sizeof(v)), -ENOENT);
    /* The first of two. */
    assert_int_equal(bs_state_get("k one\nk two\n", "k", v, sizeof(v)), 0);
    assert_string_equal(v, "one");
    /* Blank lines are skipped. */
    assert_int_equal(bs_state_get("\n\nk 3\n", "k", v, sizeof(v)), 0);
    assert_string_equal(v, "3");
}

static void test_get_small_buffer(void **state)
{
    (void)state;
    char v[8];

    memset(v, 'Z', sizeof(v));
    assert_int_equal(bs_state_get("k 1234567\n", "k", v, sizeof(v)), 0);
    assert_string_equal(v, "1234567");
    memset(v, 'Z', sizeof(v));
    assert_true(bs_state_get("k 12345678\n", "k", v, sizeof(v)) < 0);
    /* Nothing was written past the buffer's end (ASan would see it too). */
    assert_true(bs_state_get("k 123456789abcdef\n", "k", v, sizeof(v)) < 0);
}

static void test_get_u64(void **state)
{
    (void)state;
    uint64_t x;

    x = 7;
    assert_int_equal(bs_state_get_u64("n 42\n", "n", &x), 0);
    assert_int_equal(x, 42);
    assert_int_equal(bs_state_get_u64("n 0", "n", &x), 0);
    assert_int_equal(x, 0);
    assert_int_equal(bs_state_get_u64("a 1\nn 18446744073709551615\n", "n", &x), 0);
    assert_int_equal(x, UINT64_MAX);

    assert_int_equal(bs_state_get_u64("a 1\n", "n", &x), -ENOENT);
    assert_int_equal(bs_state_get_u64("n 18446744073709551616\n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n abc\n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n 12abc\n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n 12 \n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n \n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n 0x10\n", "n", &x), -EINVAL);
    assert_int_equal(bs_state_get_u64("n 1.5\n", "n", &x), -EINVAL);
    /* A value too long for any u64 is refused, not truncated. */
    assert_true(bs_state_get_u64("n 123456789012345678901234567890123456789\n", "n", &x) < 0);
}

static void test_get_u64_negative(void **state)
{
    (void)state;
    uint64_t x = 7;

    /* strtoull() accepts a minus sign and negates: "-1" must not become
     * 18446744073709551615. */
    int r = bs_state_get_u64("n -1\n", "n", &x);
    if (r == 0)
        fail_msg("\"-1\" accepted as %llu", (unsigned long long)x);
    assert_int_equal(r, -EINVAL);
    assert_int_equal(bs_state_get_u64("n -5\n", "n", &x), -EINVAL);
}

/* ---- identities ------------------------------------------------------- */

static void test_id_hex_round_trip(void **state)
{
    (void)state;
    uint8_t id[16], back[16];
    char hex[33];

    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(i * 17 + 0x0f); /* 0f 20 31 ... includes ff-ish */
    id[15] = 0xff;
    id[0] = 0x00;
    memset(hex, 'Z', sizeof(hex));
    bs_id_to_hex(id, hex);
    assert_int_equal(hex[32], '\0');
    assert_int_equal(strlen(hex), 32);
    assert_memory_equal(hex, "00", 2);
    assert_memory_equal(hex + 30, "ff", 2);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", hex[i]));
    memset(back, 0xaa, sizeof(back));
    assert_int_equal(bs_id_from_hex(hex, back), 0);
    assert_memory_equal(back, id, 16);

    /* An exact string. */
    static const uint8_t want[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                     0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    bs_id_to_hex(want, hex);
    assert_string_equal(hex, "0123456789abcdeffedcba9876543210");
    assert_int_equal(bs_id_from_hex("0123456789ABCDEFfedcba9876543210", back), 0);
    assert_memory_equal(back, want, 16);
}

static void test_id_from_hex_bad_length(void **state)
{
    (void)state;
    uint8_t id[16];

    assert_int_equal(bs_id_from_hex("", id), -EINVAL);
    assert_int_equal(bs_id_from_hex("0", id), -EINVAL);
    assert_int_equal(bs_id_from_hex("0123456789abcdef0123456789abcde", id), -EINVAL);   /* 31 */
    assert_int_equal(bs_id_from_hex("0123456789abcdef0123456789abcdef0", id), -EINVAL); /* 33 */
    assert_int_equal(bs_id_from_hex("0123456789abcdef0123456789abcdef\n", id), -EINVAL);
    assert_int_equal(bs_id_from_hex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
                                     "abcdef",
                                     id),
                     -EINVAL);
}

static void test_id_from_hex_non_hex(void **state)
{
    (void)state;
    static const char bad[] = {'g', 'G', 'z', ' ', '-', '+', 'x', '\t', '.'};
    char hex[33];
    uint8_t id[16];

    /* One bad character at every position, the rest valid digits. */
    for (size_t b = 0; b < sizeof(bad); b++)
        for (int pos = 0; pos < 32; pos++) {
            memset(hex, '0', 32);
            hex[32] = '\0';
            hex[pos] = bad[b];
            if (bs_id_from_hex(hex, id) != -EINVAL)
                fail_msg("\"%s\" (0x%02x at position %d) accepted", hex, bad[b], pos);
        }
}

static void test_id_is_zero(void **state)
{
    (void)state;
    uint8_t id[16];

    memset(id, 0, sizeof(id));
    assert_true(bs_id_is_zero(id));
    for (int i = 0; i < 16; i++) {
        memset(id, 0, sizeof(id));
        id[i] = 1;
        assert_false(bs_id_is_zero(id));
        id[i] = 0x80;
        assert_false(bs_id_is_zero(id));
    }
    assert_int_equal(bs_id_from_hex("00000000000000000000000000000000", id), 0);
    assert_true(bs_id_is_zero(id));
}

static void test_id_random(void **state)
{
    (void)state;
    uint8_t a[16], b[16];

    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(bs_id_random(a), 0);
    assert_int_equal(bs_id_random(b), 0);
    assert_memory_not_equal(a, b, 16);
    assert_false(bs_id_is_zero(a));
    assert_false(bs_id_is_zero(b));

    /* Many draws: all distinct, and every byte position takes several
     * values (a stuck byte would show). */
    enum { N = 64 };
    uint8_t ids[N][16];
    for (int i = 0; i < N; i++)
        assert_int_equal(bs_id_random(ids[i]), 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(ids[i], ids[j], 16);
    for (int pos = 0; pos < 16; pos++) {
        bool differs = false;
        for (int i = 1; i < N; i++)
            differs |= ids[i][pos] != ids[0][pos];
        assert_true(differs);
    }
}

/* ---- bs_mkdir ---------------------------------------------------------- */

static void test_mkdir(void **state)
{
    (void)state;
    struct stat st;
    mode_t old = umask(022);

    assert_int_equal(bs_mkdir(tpath("d")), 0);
    assert_int_equal(stat(tpath("d"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* Already there: fine, and untouched. */
    write_raw(tpath("d/f"), "x", 1);
    assert_int_equal(bs_mkdir(tpath("d")), 0);
    assert_true(exists(tpath("d/f")));
    /* One level only. */
    assert_int_equal(bs_mkdir(tpath("x/y")), -ENOENT);
    assert_false(exists(tpath("x")));
    umask(old);
}

static void test_mkdir_over_file(void **state)
{
    (void)state;
    /* A regular file where the directory should be is not a directory:
     * reporting success would send the caller on to fail later with a
     * confusing ENOTDIR on every state file. */
    write_raw(tpath("notdir"), "x", 1);
    int r = bs_mkdir(tpath("notdir"));
    if (r == 0)
        fail_msg("bs_mkdir returned 0 for a path that is a regular file");
    assert_true(r == -EEXIST || r == -ENOTDIR);
}

/* ---- bs_changes (a demoted primary's own changes) ---------------------- */

static void read_whole(const char *path, uint8_t *buf, size_t *len)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;
    assert_true(fd >= 0);
    n = read(fd, buf, 4096);
    assert_true(n > 0);
    *len = (size_t)n;
    close(fd);
}

static void test_changes_round_trip(void **state)
{
    (void)state;
    uint8_t entries[3 * BS_CHANGES_ENTRY_LEN];
    struct bs_changes c = { .disk_sectors = 1000, .n = 3, .entries = entries }, g;
    const char *why = NULL;
    uint64_t s;
    uint32_t k;

    bs_changes_put(entries, 0, 0, 8);
    bs_changes_put(entries, 1, 500, 100);
    bs_changes_put(entries, 2, 992, 8);
    assert_int_equal(bs_changes_write(tpath("ch"), &c), 0);
    assert_false(exists(tpath("ch.tmp")));
    assert_int_equal(bs_changes_read(tpath("ch"), 1000, &g, &why), 0);
    assert_int_equal(g.n, 3);
    bs_changes_get(&g, 1, &s, &k);
    assert_int_equal(s, 500);
    assert_int_equal(k, 100);
    bs_changes_get(&g, 2, &s, &k);
    assert_int_equal(s, 992);
    assert_int_equal(k, 8);
    bs_changes_free(&g);
    assert_null(g.entries);
    /* No entries at all is a valid file. */
    c.n = 0;
    assert_int_equal(bs_changes_write(tpath("empty"), &c), 0);
    assert_int_equal(bs_changes_read(tpath("empty"), 1000, &g, &why), 0);
    assert_int_equal(g.n, 0);
    bs_changes_free(&g);
    assert_int_equal(bs_changes_read(tpath("absent"), 1000, &g, &why), -ENOENT);
}

/* Every corruption is refused with its reason; nothing is half-read. */
static void test_changes_refused(void **state)
{
    (void)state;
    uint8_t entries[2 * BS_CHANGES_ENTRY_LEN], good[4096], bad[4096];
    struct bs_changes c = { .disk_sectors = 1000, .n = 2, .entries = entries }, g;
    const char *why = NULL;
    size_t len;

    bs_changes_put(entries, 0, 10, 10);
    bs_changes_put(entries, 1, 990, 10);
    assert_int_equal(bs_changes_write(tpath("ch"), &c), 0);
    read_whole(tpath("ch"), good, &len);
    assert_int_equal(len, BS_CHANGES_HDR_LEN + 2 * BS_CHANGES_ENTRY_LEN);

    assert_int_equal(bs_changes_read(tpath("ch"), 2000, &g, &why), -EINVAL);
    assert_string_equal(why, "made for a disk of another size");
    assert_null(g.entries);

    memcpy(bad, good, len);
    bad[0] ^= 1;
    write_raw(tpath("x"), bad, len);
    assert_int_equal(bs_changes_read(tpath("x"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "not a changes file (magic)");

    memcpy(bad, good, len);
    bad[BS_CHANGES_HDR_LEN + 3] ^= 0x40; /* an entry's bit: the CRC catches it */
    write_raw(tpath("x"), bad, len);
    assert_int_equal(bs_changes_read(tpath("x"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "its entries fail their CRC");

    write_raw(tpath("x"), good, len - 1);
    assert_int_equal(bs_changes_read(tpath("x"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "its length does not match its entry count");

    write_raw(tpath("x"), good, 10);
    assert_int_equal(bs_changes_read(tpath("x"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "shorter than its header");

    /* Entries past the disk or empty, with a valid CRC. */
    bs_changes_put(entries, 1, 995, 10);
    assert_int_equal(bs_changes_write(tpath("y"), &c), 0);
    assert_int_equal(bs_changes_read(tpath("y"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "an entry is empty or beyond the disk");
    bs_changes_put(entries, 1, 0, 0);
    assert_int_equal(bs_changes_write(tpath("y"), &c), 0);
    assert_int_equal(bs_changes_read(tpath("y"), 1000, &g, &why), -EINVAL);
    assert_string_equal(why, "an entry is empty or beyond the disk");
    assert_null(g.entries);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_write_read_round_trip),
        T(test_write_is_rename),
        T(test_write_over_stale_tmp),
        T(test_write_errors),
        T(test_read_absent),
        T(test_read_too_large),
        T(test_read_tiny_buffer),
        T(test_read_max_file),
        T(test_get),
        T(test_get_small_buffer),
        T(test_get_u64),
        T(test_get_u64_negative),
        T(test_id_hex_round_trip),
        T(test_id_from_hex_bad_length),
        T(test_id_from_hex_non_hex),
        T(test_id_is_zero),
        T(test_id_random),
        T(test_mkdir),
        T(test_mkdir_over_file),
        T(test_changes_round_trip),
        T(test_changes_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
