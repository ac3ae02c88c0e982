/* Unit tests for the replication wire protocol (proto/repl.c): handshake
 * and frame header encoding, byte layout, and every validation rule of
 * bsr_frame_unpack() (docs/protocol.md, "Frames"). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/repl.h"

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void wr_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void wr_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void wr_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fill_id(uint8_t id[BSR_ID_LEN], uint8_t base)
{
    for (int i = 0; i < BSR_ID_LEN; i++)
        id[i] = (uint8_t)(base + i);
}

static struct bsr_hello sample_hello(void)
{
    struct bsr_hello h;

    memset(&h, 0, sizeof(h));
    h.version = 0xa1b2;
    h.flags = 0xc3d4;
    h.disk_bytes = 0x0102030405060708ull;
    h.sector_size = 0x11223344;
    h.max_payload = 0x55667788;
    fill_id(h.primary_id, 0x20);
    fill_id(h.replica_id, 0x40);
    h.generation = 0x8877665544332211ull;
    h.epoch = 0xfedcba9876543210ull;
    h.bitmap_generation = 0x1112131415161718ull;
    h.history[0] = 0x2122232425262728ull;
    h.history[1] = 0x3132333435363738ull;
    h.changed_bytes = 0x4142434445464748ull;
    h.offers = 0x51525354;
    return h;
}

static struct bsr_welcome sample_welcome(void)
{
    struct bsr_welcome w;

    memset(&w, 0, sizeof(w));
    w.version = 0x0b0a;
    w.flags = 0x0d0c;
    w.status = -123456789;
    w.disk_bytes = 0x1112131415161718ull;
    w.max_payload = 0x21222324;
    fill_id(w.replica_id, 0x60);
    fill_id(w.primary_id, 0x80);
    w.generation = 0x3132333435363738ull;
    w.epoch = 0x4142434445464748ull;
    strcpy(w.reason, "disk of another size: 42 vs 43");
    return w;
}

/* Packs a frame header byte by byte, bypassing bsr_frame_pack, so that
 * invalid flags and reserved bytes can be produced. */
static void raw_frame(uint8_t out[BSR_FRAME_HDR_LEN], uint64_t sector, uint32_t count,
                      uint8_t kind, uint8_t flags, uint16_t reserved)
{
    wr_le64(out, sector);
    wr_le32(out + 8, count);
    out[12] = kind;
    out[13] = flags;
    out[14] = (uint8_t)reserved;
    out[15] = (uint8_t)(reserved >> 8);
}

static const struct bsr_limits LIM = {
    .version = 5,
    .zstd = true,
    .disk_sectors = 1000,
    .max_payload = 64 * 1024, /* 128 sectors */
};

/* Expects rejection with a reason. */
static void expect_reject(const uint8_t hdr[BSR_FRAME_HDR_LEN], const struct bsr_limits *lim,
                          bool from_primary)
{
    struct bsr_frame f;
    const char *why = NULL;

    assert_int_equal(bsr_frame_unpack(hdr, lim, from_primary, &f, &why), -EPROTO);
    assert_non_null(why);
    assert_true(strlen(why) > 0);
}

static void expect_accept(const uint8_t hdr[BSR_FRAME_HDR_LEN], const struct bsr_limits *lim,
                          bool from_primary, struct bsr_frame *f)
{
    const char *why = NULL;
    int r = bsr_frame_unpack(hdr, lim, from_primary, f, &why);

    if (r != 0)
        fail_msg("frame rejected (%d): %s", r, why ? why : "(no reason)");
}

static void reject_frame(uint64_t sector, uint32_t count, uint8_t kind, uint8_t flags,
                         uint16_t reserved, const struct bsr_limits *lim, bool from_primary)
{
    uint8_t hdr[BSR_FRAME_HDR_LEN];

    raw_frame(hdr, sector, count, kind, flags, reserved);
    expect_reject(hdr, lim, from_primary);
}

static struct bsr_frame accept_frame(uint64_t sector, uint32_t count, uint8_t kind,
                                     const struct bsr_limits *lim, bool from_primary)
{
    uint8_t hdr[BSR_FRAME_HDR_LEN];
    struct bsr_frame f;

    memset(&f, 0xee, sizeof(f));
    raw_frame(hdr, sector, count, kind, 0, 0);
    expect_accept(hdr, lim, from_primary, &f);
    assert_int_equal(f.sector, sector);
    assert_int_equal(f.count, count);
    assert_int_equal(f.kind, kind);
    assert_int_equal(f.flags, 0);
    return f;
}

/* ---- hello ------------------------------------------------------------- */

static void test_hello_round_trip(void **state)
{
    (void)state;
    struct bsr_hello h = sample_hello(), g;
    uint8_t buf[BSR_HELLO_LEN];
    const char *why = NULL;

    bsr_hello_pack(&h, buf);
    memset(&g, 0x5a, sizeof(g));
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), 0);
    assert_int_equal(g.version, h.version);
    assert_int_equal(g.flags, h.flags);
    assert_int_equal(g.disk_bytes, h.disk_bytes);
    assert_int_equal(g.sector_size, h.sector_size);
    assert_int_equal(g.max_payload, h.max_payload);
    assert_memory_equal(g.primary_id, h.primary_id, BSR_ID_LEN);
    assert_memory_equal(g.replica_id, h.replica_id, BSR_ID_LEN);
    assert_int_equal(g.generation, h.generation);
    assert_int_equal(g.epoch, h.epoch);
    assert_int_equal(g.bitmap_generation, h.bitmap_generation);
    assert_int_equal(g.history[0], h.history[0]);
    assert_int_equal(g.history[1], h.history[1]);
    assert_int_equal(g.changed_bytes, h.changed_bytes);
    assert_int_equal(g.offers, h.offers);

    /* Version 4 has no offers: they are neither written nor read. */
    h.version = 4;
    bsr_hello_pack(&h, buf);
    for (unsigned i = 112; i < BSR_HELLO_LEN; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), 0);
    assert_int_equal(g.offers, 0);
    /* A version 5 hello carrying offers reads, for a version 4 reader
     * (which skips what a newer version defines), as a version 4 hello:
     * bytes 112..115 are reserved to it, and only those are written. */
    h.version = 5;
    bsr_hello_pack(&h, buf);
    assert_int_equal(rd_le32(buf + 112), 0x51525354);
    for (unsigned i = 116; i < BSR_HELLO_LEN; i++)
        assert_int_equal(buf[i], 0);
    h.version = 0xa1b2;

    /* A version 2 hello has none of version 3's fields: they read as 0. */
    h.version = 2;
    bsr_hello_pack(&h, buf);
    memset(&g, 0x5a, sizeof(g));
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), 0);
    assert_int_equal(g.bitmap_generation, 0);
    assert_int_equal(g.history[0], 0);
    assert_int_equal(g.changed_bytes, 0);
    h.version = 0xa1b2;

    /* Extreme values survive too. */
    memset(&h, 0xff, sizeof(h));
    bsr_hello_pack(&h, buf);
    memset(&g, 0, sizeof(g));
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), 0);
    assert_int_equal(g.version, 0xffff);
    assert_int_equal(g.flags, 0xffff);
    assert_int_equal(g.disk_bytes, UINT64_MAX);
    assert_int_equal(g.sector_size, UINT32_MAX);
    assert_int_equal(g.max_payload, UINT32_MAX);
    assert_memory_equal(g.primary_id, h.primary_id, BSR_ID_LEN);
    assert_int_equal(g.generation, UINT64_MAX);
    assert_int_equal(g.epoch, UINT64_MAX);
}

static void test_hello_layout(void **state)
{
    (void)state;
    struct bsr_hello h = sample_hello();
    uint8_t buf[BSR_HELLO_LEN];
    static const uint8_t disk_le[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};

    memset(buf, 0xcc, sizeof(buf)); /* pack must overwrite everything */
    bsr_hello_pack(&h, buf);
    assert_memory_equal(buf, "BLKSHIP\x1a", 8);
    assert_int_equal(buf[8], 0xb2);
    assert_int_equal(buf[9], 0xa1);
    assert_int_equal(buf[10], 0xd4);
    assert_int_equal(buf[11], 0xc3);
    assert_int_equal(rd_le32(buf + 12), BSR_HELLO_LEN);
    assert_int_equal(buf[12], 128);
    assert_int_equal(buf[13], 0);
    assert_memory_equal(buf + 16, disk_le, 8);
    assert_int_equal(rd_le32(buf + 24), 0x11223344);
    assert_int_equal(buf[24], 0x44);
    assert_int_equal(rd_le32(buf + 28), 0x55667788);
    assert_int_equal(buf[28], 0x88);
    assert_memory_equal(buf + 32, h.primary_id, BSR_ID_LEN);
    assert_memory_equal(buf + 48, h.replica_id, BSR_ID_LEN);
    assert_int_equal(rd_le64(buf + 64), 0x8877665544332211ull);
    assert_int_equal(buf[64], 0x11);
    assert_int_equal(rd_le64(buf + 72), 0xfedcba9876543210ull);
    assert_int_equal(buf[72], 0x10);
    /* Version 3: bitmap generation, history, changed bytes. */
    assert_int_equal(rd_le64(buf + 80), 0x1112131415161718ull);
    assert_int_equal(rd_le64(buf + 88), 0x2122232425262728ull);
    assert_int_equal(rd_le64(buf + 96), 0x3132333435363738ull);
    assert_int_equal(rd_le64(buf + 104), 0x4142434445464748ull);
    /* Version 5: the offers. */
    assert_int_equal(rd_le32(buf + 112), 0x51525354);
    /* 12 reserved bytes, zero. */
    for (unsigned i = BSR_HELLO_DEFINED_LEN; i < BSR_HELLO_LEN; i++)
        if (buf[i] != 0)
            fail_msg("hello byte %u is 0x%02x, want 0 (reserved)", i, buf[i]);
}

static void test_hello_rejects(void **state)
{
    (void)state;
    struct bsr_hello h = sample_hello(), g;
    uint8_t good[BSR_HELLO_LEN], buf[BSR_HELLO_LEN];
    const char *why;

    bsr_hello_pack(&h, good);

    /* Each magic byte matters. */
    for (int i = 0; i < 8; i++) {
        memcpy(buf, good, sizeof(buf));
        buf[i] ^= 0x20;
        why = NULL;
        assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
        assert_non_null(why);
    }
    /* Wrong length: the welcome's is right in number but a hello of 127,
     * 129, 0 or 2^24+128 is not. */
    static const uint32_t bad_len[] = {0, 127, 129, 256, (1u << 24) | 128, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        memcpy(buf, good, sizeof(buf));
        wr_le32(buf + 12, bad_len[i]);
        why = NULL;
        assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
        assert_non_null(why);
    }
    /* Big-endian length 128 is not 128. */
    memcpy(buf, good, sizeof(buf));
    buf[12] = 0;
    buf[15] = 128;
    why = NULL;
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
    assert_non_null(why);
    /* All zeroes is not a hello. */
    memset(buf, 0, sizeof(buf));
    why = NULL;
    assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
    assert_non_null(why);
    /* Every reserved byte must be zero in a hello of a version this build
     * knows; a newer version's hello is read as far as this one defines it. */
    for (unsigned i = 80; i < BSR_HELLO_DEFINED_LEN; i++) {
        /* Version 3's fields are reserved in version 2. */
        struct bsr_hello v2 = sample_hello();
        v2.version = 2;
        bsr_hello_pack(&v2, buf);
        buf[i] = 0x01;
        why = NULL;
        assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
        assert_string_equal(why, "non-zero reserved bytes in the hello");
    }
    for (unsigned i = BSR_HELLO_DEFINED_LEN; i < BSR_HELLO_LEN; i++) {
        memcpy(buf, good, sizeof(buf));
        buf[i] = 0x01;
        wr_le16(buf + 8, BSR_VERSION);
        why = NULL;
        assert_int_equal(bsr_hello_unpack(buf, &g, &why), -EPROTO);
        assert_string_equal(why, "non-zero reserved bytes in the hello");
        wr_le16(buf + 8, BSR_VERSION + 1);
        why = NULL;
        assert_int_equal(bsr_hello_unpack(buf, &g, &why), 0);
        assert_int_equal(g.version, BSR_VERSION + 1);
        assert_int_equal(g.generation, h.generation);
        assert_int_equal(g.epoch, h.epoch);
    }
}

/* ---- welcome ----------------------------------------------------------- */

static void test_welcome_round_trip(void **state)
{
    (void)state;
    struct bsr_welcome w = sample_welcome(), g;
    uint8_t buf[BSR_WELCOME_LEN];
    const char *why = NULL;

    bsr_welcome_pack(&w, buf);
    memset(&g, 0x5a, sizeof(g));
    assert_int_equal(bsr_welcome_unpack(buf, &g, &why), 0);
    assert_int_equal(g.version, w.version);
    assert_int_equal(g.flags, w.flags);
    assert_int_equal(g.status, -123456789);
    assert_int_equal(g.disk_bytes, w.disk_bytes);
    assert_int_equal(g.max_payload, w.max_payload);
    assert_memory_equal(g.replica_id, w.replica_id, BSR_ID_LEN);
    assert_memory_equal(g.primary_id, w.primary_id, BSR_ID_LEN);
    assert_int_equal(g.generation, w.generation);
    assert_int_equal(g.epoch, w.epoch);
    assert_string_equal(g.reason, w.reason);

    /* Every status code survives. */
    for (int s = BSR_OK; s <= BSR_E_PROMOTED; s++) {
        w.status = s;
        bsr_welcome_pack(&w, buf);
        assert_int_equal(bsr_welcome_unpack(buf, &g, &why), 0);
        assert_int_equal(g.status, s);
    }
}

static void test_welcome_layout(void **state)
{
    (void)state;
    struct bsr_welcome w = sample_welcome();
    uint8_t buf[BSR_WELCOME_LEN];

    memset(buf, 0xcc, sizeof(buf));
    w.status = BSR_E_LIMITS;
    bsr_welcome_pack(&w, buf);
    assert_memory_equal(buf, "BLKSHIP\x1a", 8);
    assert_int_equal(rd_le16(buf + 8), 0x0b0a);
    assert_int_equal(buf[8], 0x0a);
    assert_int_equal(rd_le16(buf + 10), 0x0d0c);
    assert_int_equal(rd_le32(buf + 12), BSR_WELCOME_LEN);
    /* status 4, max_payload 4, disk_bytes 8 (docs/protocol.md order) */
    assert_int_equal(rd_le32(buf + 16), BSR_E_LIMITS);
    assert_int_equal(buf[16], BSR_E_LIMITS);
    assert_int_equal(rd_le32(buf + 20), 0x21222324);
    assert_int_equal(buf[20], 0x24);
    assert_int_equal(rd_le64(buf + 24), 0x1112131415161718ull);
    assert_int_equal(buf[24], 0x18);
    assert_memory_equal(buf + 32, w.replica_id, BSR_ID_LEN);
    assert_memory_equal(buf + 48, w.primary_id, BSR_ID_LEN);
    assert_int_equal(rd_le64(buf + 64), 0x3132333435363738ull);
    assert_int_equal(rd_le64(buf + 72), 0x4142434445464748ull);
    assert_string_equal((const char *)buf + 80, w.reason);
    /* The rest of the reason field is zero-filled. */
    for (unsigned i = 80 + (unsigned)strlen(w.reason); i < BSR_WELCOME_LEN; i++)
        if (buf[i] != 0)
            fail_msg("welcome byte %u is 0x%02x, want 0", i, buf[i]);

    /* A negative status is two's complement little-endian. */
    w.status = -2;
    bsr_welcome_pack(&w, buf);
    assert_int_equal(rd_le32(buf + 16), 0xfffffffeu);
}

static void test_welcome_reason_terminated(void **state)
{
    (void)state;
    struct bsr_welcome w = sample_welcome(), g;
    uint8_t buf[BSR_WELCOME_LEN];
    const char *why = NULL;

    /* A sender that fills all 48 bytes, no NUL at all. */
    memset(w.reason, 'x', BSR_REASON_LEN);
    bsr_welcome_pack(&w, buf);
    assert_int_equal(buf[BSR_WELCOME_LEN - 1], 0);
    memset(&g, 0x7f, sizeof(g));
    assert_int_equal(bsr_welcome_unpack(buf, &g, &why), 0);
    assert_int_equal(g.reason[BSR_REASON_LEN - 1], '\0');
    assert_int_equal(strlen(g.reason), BSR_REASON_LEN - 1);

    /* A hostile peer that does not go through bsr_welcome_pack. */
    memset(buf + 80, 'y', BSR_REASON_LEN);
    memset(&g, 0x7f, sizeof(g));
    assert_int_equal(bsr_welcome_unpack(buf, &g, &why), 0);
    assert_int_equal(g.reason[BSR_REASON_LEN - 1], '\0');
    assert_int_equal(strlen(g.reason), BSR_REASON_LEN - 1);
    assert_int_equal(g.reason[0], 'y');
    assert_int_equal(g.reason[BSR_REASON_LEN - 2], 'y');

    /* An empty reason stays empty. */
    memset(w.reason, 0, BSR_REASON_LEN);
    bsr_welcome_pack(&w, buf);
    assert_int_equal(bsr_welcome_unpack(buf, &g, &why), 0);
    assert_string_equal(g.reason, "");
}

static void test_welcome_rejects(void **state)
{
    (void)state;
    struct bsr_welcome w = sample_welcome(), g;
    struct bsr_hello h = sample_hello();
    uint8_t good[BSR_WELCOME_LEN], buf[BSR_WELCOME_LEN];
    const char *why;

    bsr_welcome_pack(&w, good);
    for (int i = 0; i < 8; i++) {
        memcpy(buf, good, sizeof(buf));
        buf[i] = (uint8_t)~buf[i];
        why = NULL;
        assert_int_equal(bsr_welcome_unpack(buf, &g, &why), -EPROTO);
        assert_non_null(why);
    }
    static const uint32_t bad_len[] = {0, 1, 127, 129, 0x80000080u};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        memcpy(buf, good, sizeof(buf));
        wr_le32(buf + 12, bad_len[i]);
        why = NULL;
        assert_int_equal(bsr_welcome_unpack(buf, &g, &why), -EPROTO);
        assert_non_null(why);
    }
    /* A hello-shaped buffer with another length is refused as well. */
    bsr_hello_pack(&h, buf);
    wr_le32(buf + 12, 64);
    why = NULL;
    assert_int_equal(bsr_welcome_unpack(buf, &g, &why), -EPROTO);
    assert_non_null(why);
}

/* ---- frames ------------------------------------------------------------ */

static void test_frame_layout(void **state)
{
    (void)state;
    struct bsr_frame f = {.sector = 0x0102030405060708ull, .count = 0x11223344, .kind = BSR_DATA,
                          .flags = 0};
    static const uint8_t want[BSR_FRAME_HDR_LEN] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03,
                                                    0x02, 0x01, 0x44, 0x33, 0x22, 0x11,
                                                    0x01, 0x00, 0x00, 0x00};
    uint8_t buf[BSR_FRAME_HDR_LEN];

    memset(buf, 0xcc, sizeof(buf));
    bsr_frame_pack(&f, buf);
    assert_memory_equal(buf, want, sizeof(want));

    f.kind = BSR_HEARTBEAT;
    f.flags = 0x5e;
    f.sector = 0xfffffffffffffffeull;
    f.count = 0xdeadbeef;
    memset(buf, 0xcc, sizeof(buf));
    bsr_frame_pack(&f, buf);
    assert_int_equal(buf[0], 0xfe);
    assert_int_equal(rd_le64(buf), 0xfffffffffffffffeull);
    assert_int_equal(buf[8], 0xef);
    assert_int_equal(rd_le32(buf + 8), 0xdeadbeef);
    assert_int_equal(buf[12], BSR_HEARTBEAT);
    assert_int_equal(buf[13], 0x5e);
    assert_int_equal(buf[14], 0);
    assert_int_equal(buf[15], 0);
}

static void test_frame_round_trip(void **state)
{
    (void)state;
    struct bsr_limits big = {.disk_sectors = UINT64_MAX, .max_payload = BSR_MAX_PAYLOAD_LIMIT};
    struct {
        struct bsr_frame f;
        bool from_primary;
    } cases[] = {
        {{.sector = 0x0000123456789abcull, .count = 0x3fff, .kind = BSR_DATA}, true},
        {{.sector = 0x00fedcba98765432ull, .count = 0xfedcba98u, .kind = BSR_ZERO}, true},
        {{.sector = 0x7766554433221100ull, .count = 0, .kind = BSR_FLUSH}, true},
        {{.sector = 0x0123456789abcdefull, .count = 0, .kind = BSR_ACK}, false},
        {{.sector = 0xa5a5a5a5a5a5a5a5ull, .count = 0, .kind = BSR_HEARTBEAT}, true},
        {{.sector = 0x5a5a5a5a5a5a5a5aull, .count = 0, .kind = BSR_HEARTBEAT}, false},
        {{.sector = 0, .count = 0x4711, .kind = BSR_ERROR}, false},
        {{.sector = 0, .count = BSR_E_IO, .kind = BSR_ERROR}, false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[BSR_FRAME_HDR_LEN];
        struct bsr_frame g;
        const char *why = NULL;

        bsr_frame_pack(&cases[i].f, buf);
        memset(&g, 0xee, sizeof(g));
        int r = bsr_frame_unpack(buf, &big, cases[i].from_primary, &g, &why);
        if (r != 0)
            fail_msg("case %zu rejected: %s", i, why ? why : "?");
        assert_int_equal(g.sector, cases[i].f.sector);
        assert_int_equal(g.count, cases[i].f.count);
        assert_int_equal(g.kind, cases[i].f.kind);
        assert_int_equal(g.flags, 0);
    }
}

static void test_frame_flags_reserved(void **state)
{
    (void)state;
    /* Every single bit of flags and reserved is refused, for every kind
     * and in both directions. */
    for (uint8_t kind = BSR_DATA; kind <= BSR_KIND_MAX; kind++) {
        bool dir = kind == BSR_ACK || kind == BSR_ERROR || kind == BSR_COMMITTED ||
                           kind == BSR_HASHED || kind == BSR_EXTENTS
                       ? false
                       : true;
        uint32_t count = kind == BSR_DATA || kind == BSR_ZERO || kind == BSR_HASHES ||
                                 kind == BSR_HASHED || kind == BSR_EXTENTS || kind == BSR_ZDATA
                             ? 1
                             : 0;
        uint64_t sector = kind == BSR_EXTENTS ? 0 : 10;
        for (int b = 0; b < 8; b++)
            reject_frame(sector, count, kind, (uint8_t)(1u << b), 0, &LIM, dir);
        for (int b = 0; b < 16; b++)
            reject_frame(sector, count, kind, 0, (uint16_t)(1u << b), &LIM, dir);
        /* Baseline: the same header without them is fine. */
        accept_frame(sector, count, kind, &LIM, dir);
    }
}

/* Version 2's epoch frames: accepted only in a version 2 session, each in
 * its own direction, with count 0 and an epoch of at least 1. */
static void test_frame_epochs(void **state)
{
    (void)state;
    struct bsr_limits v1 = LIM, v0 = LIM;
    static const uint8_t to_secondary[] = {BSR_END_EPOCH, BSR_ABORT_EPOCH};

    v1.version = 1;
    v0.version = 0;
    for (size_t i = 0; i < sizeof(to_secondary); i++) {
        struct bsr_frame f = accept_frame(7, 0, to_secondary[i], &LIM, true);
        assert_int_equal(f.sector, 7);
        accept_frame(UINT64_MAX, 0, to_secondary[i], &LIM, true); /* no disk bound */
        reject_frame(7, 0, to_secondary[i], 0, 0, &LIM, false);
        reject_frame(7, 0, to_secondary[i], 0, 0, &v1, true);
        reject_frame(7, 0, to_secondary[i], 0, 0, &v0, true);
        reject_frame(0, 0, to_secondary[i], 0, 0, &LIM, true);
        reject_frame(7, 1, to_secondary[i], 0, 0, &LIM, true);
        reject_frame(7, UINT32_MAX, to_secondary[i], 0, 0, &LIM, true);
    }
    assert_int_equal(accept_frame(9, 0, BSR_COMMITTED, &LIM, false).sector, 9);
    reject_frame(9, 0, BSR_COMMITTED, 0, 0, &LIM, true);
    reject_frame(9, 0, BSR_COMMITTED, 0, 0, &v1, false);
    reject_frame(0, 0, BSR_COMMITTED, 0, 0, &LIM, false);
    reject_frame(9, 2, BSR_COMMITTED, 0, 0, &LIM, false);
    /* Version 1's kinds stay valid in version 2 and the other way round. */
    accept_frame(3, 0, BSR_FLUSH, &v1, true);
    accept_frame(3, 4, BSR_DATA, &v1, true);
}

/* Version 5's ZDATA: only from the primary, only when the session agreed
 * to it, its count the compressed bytes (1 to the payload limit) and its
 * sector on the disk (the decompressed size is checked once known). */
static void test_frame_zdata(void **state)
{
    struct bsr_limits v4 = LIM, off = LIM;

    (void)state;
    v4.version = 4;
    off.zstd = false;
    accept_frame(999, 1, BSR_ZDATA, &LIM, true);
    accept_frame(0, LIM.max_payload, BSR_ZDATA, &LIM, true);
    reject_frame(0, LIM.max_payload + 1, BSR_ZDATA, 0, 0, &LIM, true);
    reject_frame(0, 0, BSR_ZDATA, 0, 0, &LIM, true);
    reject_frame(1000, 1, BSR_ZDATA, 0, 0, &LIM, true);
    reject_frame(10, 100, BSR_ZDATA, 0, 0, &LIM, false);
    reject_frame(10, 100, BSR_ZDATA, 0, 0, &off, true);
    reject_frame(10, 100, BSR_ZDATA, 0, 0, &v4, true);
    assert_int_equal(bsr_frame_payload(&(struct bsr_frame){ .kind = BSR_ZDATA, .count = 777 }),
                     777);
    /* What the trailer's CRC covers. */
    assert_true(bsr_crc_covers_payload(4, BSR_DATA));
    assert_false(bsr_crc_covers_payload(5, BSR_DATA));
    assert_false(bsr_crc_covers_payload(5, BSR_ZDATA));
    assert_true(bsr_crc_covers_payload(5, BSR_HASHES));
    assert_true(bsr_crc_covers_payload(5, BSR_EXTENTS));
}

static void test_frame_unknown_kind(void **state)
{
    (void)state;
    static const uint8_t kinds[] = {0, BSR_KIND_MAX + 1, 0x3f, 0x41, 0x80, 0xff};

    for (size_t i = 0; i < sizeof(kinds); i++) {
        reject_frame(0, 0, kinds[i], 0, 0, &LIM, true);
        reject_frame(0, 0, kinds[i], 0, 0, &LIM, false);
        reject_frame(1, 1, kinds[i], 0, 0, &LIM, true);
        reject_frame(1, 1, kinds[i], 0, 0, &LIM, false);
    }
}

static void test_frame_extent_count(void **state)
{
    (void)state;
    uint32_t max_count = LIM.max_payload / BSR_SECTOR_SIZE; /* 128 */

    /* Count 0 is not an extent. */
    reject_frame(0, 0, BSR_DATA, 0, 0, &LIM, true);
    reject_frame(0, 0, BSR_ZERO, 0, 0, &LIM, true);
    reject_frame(999, 0, BSR_ZERO, 0, 0, &LIM, true);

    /* DATA bounded by the payload limit, exactly. */
    accept_frame(0, 1, BSR_DATA, &LIM, true);
    struct bsr_frame f = accept_frame(0, max_count, BSR_DATA, &LIM, true);
    assert_int_equal(bsr_frame_payload(&f), LIM.max_payload);
    reject_frame(0, max_count + 1, BSR_DATA, 0, 0, &LIM, true);
    reject_frame(0, UINT32_MAX, BSR_DATA, 0, 0, &LIM, true);
    /* 2^23 + 1 sectors: count * 512 wraps a u32 to 512. */
    reject_frame(0, (1u << 23) + 1, BSR_DATA, 0, 0, &LIM, true);

    /* A payload limit that is not a multiple of 512 rounds down. */
    struct bsr_limits odd = {.disk_sectors = 1000, .max_payload = 3 * 512 + 511};
    accept_frame(0, 3, BSR_DATA, &odd, true);
    reject_frame(0, 4, BSR_DATA, 0, 0, &odd, true);
    /* A payload limit under one sector allows no DATA at all. */
    struct bsr_limits tiny = {.disk_sectors = 1000, .max_payload = 511};
    reject_frame(0, 1, BSR_DATA, 0, 0, &tiny, true);

    /* ZERO is not bounded by the payload limit, only by the disk. */
    f = accept_frame(0, 1000, BSR_ZERO, &LIM, true);
    assert_int_equal(bsr_frame_payload(&f), 0);
    struct bsr_limits huge = {.disk_sectors = UINT64_MAX, .max_payload = LIM.max_payload};
    accept_frame(0, UINT32_MAX, BSR_ZERO, &huge, true);
}

static void test_frame_extent_bounds(void **state)
{
    (void)state;
    const uint64_t n = LIM.disk_sectors;

    for (uint8_t kind = BSR_DATA; kind <= BSR_ZERO; kind++) {
        /* Ending exactly at the end: accepted. */
        accept_frame(n - 1, 1, kind, &LIM, true);
        accept_frame(n - 100, 100, kind, &LIM, true);
        /* One sector past the end: refused. */
        reject_frame(n - 1, 2, kind, 0, 0, &LIM, true);
        reject_frame(n - 100, 101, kind, 0, 0, &LIM, true);
        /* Starting at or after the end. */
        reject_frame(n, 1, kind, 0, 0, &LIM, true);
        reject_frame(n + 1, 1, kind, 0, 0, &LIM, true);
        reject_frame(UINT64_MAX, 1, kind, 0, 0, &LIM, true);
    }

    /* Overflow: sector + count wraps 2^64 to a small number that a naive
     * "sector + count <= disk" check would accept. */
    struct bsr_limits huge = {.disk_sectors = UINT64_MAX, .max_payload = LIM.max_payload};
    for (uint8_t kind = BSR_DATA; kind <= BSR_ZERO; kind++) {
        reject_frame(UINT64_MAX - 1, 2, kind, 0, 0, &huge, true);  /* sum 2^64 */
        reject_frame(UINT64_MAX - 1, 3, kind, 0, 0, &huge, true);  /* sum 2^64 + 1 */
        reject_frame(UINT64_MAX - 5, 100, kind, 0, 0, &huge, true);
        accept_frame(UINT64_MAX - 2, 2, kind, &huge, true);        /* ends at 2^64 - 1 */
        reject_frame(UINT64_MAX, 1, kind, 0, 0, &huge, true);
    }
    reject_frame(UINT64_MAX - 10, UINT32_MAX, BSR_ZERO, 0, 0, &huge, true);

    /* An empty disk accepts no extent at all. */
    struct bsr_limits empty = {.disk_sectors = 0, .max_payload = LIM.max_payload};
    reject_frame(0, 1, BSR_DATA, 0, 0, &empty, true);
    reject_frame(0, 1, BSR_ZERO, 0, 0, &empty, true);
}

static void test_frame_direction(void **state)
{
    (void)state;
    /* DATA, ZERO and FLUSH only from the primary. */
    reject_frame(0, 1, BSR_DATA, 0, 0, &LIM, false);
    reject_frame(0, 1, BSR_ZERO, 0, 0, &LIM, false);
    reject_frame(0, 0, BSR_FLUSH, 0, 0, &LIM, false);
    reject_frame(7, 0, BSR_FLUSH, 0, 0, &LIM, false);
    accept_frame(0, 1, BSR_DATA, &LIM, true);
    accept_frame(0, 1, BSR_ZERO, &LIM, true);
    accept_frame(7, 0, BSR_FLUSH, &LIM, true);

    /* ACK and ERROR only from the secondary. */
    reject_frame(7, 0, BSR_ACK, 0, 0, &LIM, true);
    reject_frame(0, 0, BSR_ERROR, 0, 0, &LIM, true);
    reject_frame(0, BSR_E_IO, BSR_ERROR, 0, 0, &LIM, true);
    accept_frame(7, 0, BSR_ACK, &LIM, false);
    accept_frame(0, EPROTO, BSR_ERROR, &LIM, false);

    /* HEARTBEAT both ways, any sector (a timestamp). */
    accept_frame(UINT64_MAX, 0, BSR_HEARTBEAT, &LIM, true);
    accept_frame(UINT64_MAX, 0, BSR_HEARTBEAT, &LIM, false);
}

static void test_frame_control_count(void **state)
{
    (void)state;
    /* Control frames carry no sectors: sector is a sequence number or a
     * timestamp and is not checked against the disk, count must be 0
     * (docs/protocol.md: FLUSH, ACK and HEARTBEAT have count 0). */
    accept_frame(UINT64_MAX, 0, BSR_FLUSH, &LIM, true);
    accept_frame(LIM.disk_sectors + 5, 0, BSR_ACK, &LIM, false);

    static const uint32_t counts[] = {1, 2, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        reject_frame(1, counts[i], BSR_FLUSH, 0, 0, &LIM, true);
        reject_frame(1, counts[i], BSR_HEARTBEAT, 0, 0, &LIM, true);
        reject_frame(1, counts[i], BSR_HEARTBEAT, 0, 0, &LIM, false);
    }
    /* ERROR is the exception: count is the refusal code or errno. */
    accept_frame(0, UINT32_MAX, BSR_ERROR, &LIM, false);
}

static void test_frame_ack_count(void **state)
{
    (void)state;
    /* docs/protocol.md: "4 ACK | S→P | sequence number | 0 | none" and
     * "control frames have count = 0"; proto/repl.h: count is "sectors for
     * DATA and ZERO, else 0 or a code" (the code being ERROR's). */
    static const uint32_t counts[] = {1, 512, UINT32_MAX};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        reject_frame(3, counts[i], BSR_ACK, 0, 0, &LIM, false);
}

static void test_frame_payload(void **state)
{
    (void)state;
    struct bsr_frame f = {.sector = 0, .count = 1, .kind = BSR_DATA};

    assert_int_equal(bsr_frame_payload(&f), 512);
    f.count = 7;
    assert_int_equal(bsr_frame_payload(&f), 7 * 512);
    f.count = BSR_MAX_PAYLOAD_LIMIT / BSR_SECTOR_SIZE;
    assert_int_equal(bsr_frame_payload(&f), BSR_MAX_PAYLOAD_LIMIT);
    for (uint8_t kind = BSR_ZERO; kind <= BSR_ABORT_EPOCH; kind++) {
        f.kind = kind;
        f.count = 100;
        assert_int_equal(bsr_frame_payload(&f), 0);
    }
    /* Checksums: the range description and 8 bytes a block; the answer
     * one bit a block, rounded up to bytes. */
    f.kind = BSR_HASHES;
    f.count = 3;
    assert_int_equal(bsr_frame_payload(&f), 8 + 24);
    f.count = BSR_HASHES_MAX;
    assert_int_equal(bsr_frame_payload(&f), 8 + 8 * 1024);
    f.kind = BSR_HASHED;
    f.count = 1;
    assert_int_equal(bsr_frame_payload(&f), 1);
    f.count = 9;
    assert_int_equal(bsr_frame_payload(&f), 2);
    f.count = BSR_HASHES_MAX;
    assert_int_equal(bsr_frame_payload(&f), 128);

    /* Through the decoder, at the largest negotiable payload. */
    struct bsr_limits lim = {.disk_sectors = 1ull << 40, .max_payload = BSR_MAX_PAYLOAD_LIMIT};
    struct bsr_frame g = accept_frame(5, BSR_MAX_PAYLOAD_LIMIT / 512, BSR_DATA, &lim, true);
    assert_int_equal(bsr_frame_payload(&g), BSR_MAX_PAYLOAD_LIMIT);
    g = accept_frame(5, 3, BSR_DATA, &lim, true);
    assert_int_equal(bsr_frame_payload(&g), 1536);
}

/* Version 3's checksum frames: HASHES from the primary, HASHED from the
 * secondary, 1 to 1024 blocks, inside the disk and the payload limit,
 * never in a session before version 3. */
static void test_frame_checksums(void **state)
{
    (void)state;
    struct bsr_limits v2 = LIM, small = LIM;

    v2.version = 2;
    small.max_payload = 8 + 8 * 4; /* four hashes */
    accept_frame(0, 1, BSR_HASHES, &LIM, true);
    accept_frame(999, BSR_HASHES_MAX, BSR_HASHES, &LIM, true);
    accept_frame(0, BSR_HASHES_MAX, BSR_HASHED, &LIM, false);
    reject_frame(0, 1, BSR_HASHES, 0, 0, &LIM, false);
    reject_frame(0, 1, BSR_HASHED, 0, 0, &LIM, true);
    reject_frame(0, 1, BSR_HASHES, 0, 0, &v2, true);
    reject_frame(0, 1, BSR_HASHED, 0, 0, &v2, false);
    reject_frame(0, 0, BSR_HASHES, 0, 0, &LIM, true);
    reject_frame(0, 0, BSR_HASHED, 0, 0, &LIM, false);
    reject_frame(0, BSR_HASHES_MAX + 1, BSR_HASHES, 0, 0, &LIM, true);
    reject_frame(0, BSR_HASHES_MAX + 1, BSR_HASHED, 0, 0, &LIM, false);
    reject_frame(0, UINT32_MAX, BSR_HASHES, 0, 0, &LIM, true);
    reject_frame(1000, 1, BSR_HASHES, 0, 0, &LIM, true);
    reject_frame(UINT64_MAX, 1, BSR_HASHED, 0, 0, &LIM, false);
    accept_frame(0, 4, BSR_HASHES, &small, true);
    reject_frame(0, 5, BSR_HASHES, 0, 0, &small, true);
}

/* Version 4's EXTENTS: from the secondary only, sector 0, 0 (the last) to
 * 4096 entries within the payload limit, never before version 4; and
 * each entry inside the disk, non-empty, its reserved bytes zero. */
static void test_frame_extents(void **state)
{
    (void)state;
    struct bsr_limits v3 = LIM, small = LIM;
    struct bsr_frame f;
    uint8_t e[BSR_EXTENT_LEN];
    uint64_t sector;
    uint32_t count;
    const char *why = NULL;

    v3.version = 3;
    small.max_payload = 4 * BSR_EXTENT_LEN;
    f = accept_frame(0, 0, BSR_EXTENTS, &LIM, false);
    assert_int_equal(bsr_frame_payload(&f), 0);
    f = accept_frame(0, 7, BSR_EXTENTS, &LIM, false);
    assert_int_equal(bsr_frame_payload(&f), 7 * BSR_EXTENT_LEN);
    reject_frame(0, 1, BSR_EXTENTS, 0, 0, &LIM, true);
    reject_frame(0, 1, BSR_EXTENTS, 0, 0, &v3, false);
    reject_frame(1, 1, BSR_EXTENTS, 0, 0, &LIM, false);
    reject_frame(0, BSR_EXTENTS_MAX + 1, BSR_EXTENTS, 0, 0, &LIM, false);
    accept_frame(0, 4, BSR_EXTENTS, &small, false);
    reject_frame(0, 5, BSR_EXTENTS, 0, 0, &small, false);

    bsr_extent_pack(990, 10, e);
    assert_int_equal(e[0], 990 & 0xff);
    assert_int_equal(e[1], 990 >> 8);
    assert_int_equal(e[8], 10);
    assert_int_equal(bsr_extent_unpack(e, &LIM, &sector, &count, &why), 0);
    assert_int_equal(sector, 990);
    assert_int_equal(count, 10);
    bsr_extent_pack(990, 11, e);
    assert_int_equal(bsr_extent_unpack(e, &LIM, &sector, &count, &why), -EPROTO);
    bsr_extent_pack(1000, 1, e);
    assert_int_equal(bsr_extent_unpack(e, &LIM, &sector, &count, &why), -EPROTO);
    bsr_extent_pack(0, 0, e);
    assert_int_equal(bsr_extent_unpack(e, &LIM, &sector, &count, &why), -EPROTO);
    bsr_extent_pack(0, 1, e);
    e[15] = 1;
    assert_int_equal(bsr_extent_unpack(e, &LIM, &sector, &count, &why), -EPROTO);
    assert_string_equal(why, "extent with non-zero reserved bytes");
}

static void test_hash_range(void **state)
{
    (void)state;
    struct bsr_limits lim = {.version = 3, .disk_sectors = 1000, .max_payload = 256 * 1024};
    struct bsr_frame f = {.sector = 0, .count = 4, .kind = BSR_HASHES};
    struct bsr_hash_range r = {.block_sectors = 128, .range_sectors = 512}, g;
    const char *why = NULL;
    uint8_t b[BSR_HASH_RANGE_LEN];

    bsr_hash_range_pack(&r, b);
    assert_int_equal(b[0], 128);
    assert_int_equal(b[4], 0);
    assert_int_equal(b[5], 2);
    bsr_hash_range_unpack(b, &g);
    assert_int_equal(g.block_sectors, 128);
    assert_int_equal(g.range_sectors, 512);
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), 0);
    /* The last block of the disk may be short: 1000 = 7 * 128 + 104. */
    f.sector = 896;
    f.count = 1;
    r.range_sectors = 104;
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), 0);
    /* No other block may. */
    f.sector = 0;
    r.range_sectors = 104;
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO);
    /* Block sizes: powers of two from 8 to 16384 sectors. */
    static const uint32_t bad_blocks[] = {0, 1, 4, 7, 100, 129, 32768, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad_blocks) / sizeof(bad_blocks[0]); i++) {
        struct bsr_hash_range x = {.block_sectors = bad_blocks[i], .range_sectors = 128};
        f = (struct bsr_frame){.sector = 0, .count = 1, .kind = BSR_HASHES};
        assert_int_equal(bsr_hash_range_check(&f, &x, &lim, &why), -EPROTO);
    }
    /* Off a block boundary; count and range disagreeing; past the disk;
     * over the payload limit. */
    f = (struct bsr_frame){.sector = 64, .count = 1, .kind = BSR_HASHES};
    r = (struct bsr_hash_range){.block_sectors = 128, .range_sectors = 128};
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO);
    f.sector = 0;
    f.count = 2;
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO);
    r.range_sectors = 0;
    f.count = 0;
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO);
    f = (struct bsr_frame){.sector = 896, .count = 2, .kind = BSR_HASHES};
    r = (struct bsr_hash_range){.block_sectors = 128, .range_sectors = 256};
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO);
    f = (struct bsr_frame){.sector = 0, .count = 1, .kind = BSR_HASHES};
    r = (struct bsr_hash_range){.block_sectors = 1024, .range_sectors = 1000};
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), -EPROTO); /* 500 KiB > 256 */
    lim.max_payload = 1000 * 512;
    assert_int_equal(bsr_hash_range_check(&f, &r, &lim, &why), 0);
}

/* ---- status strings ---------------------------------------------------- */

static void test_status_str(void **state)
{
    (void)state;
    const char *s[BSR_E_GENERATION + 1];

    for (int i = BSR_OK; i <= BSR_E_GENERATION; i++) {
        s[i] = bsr_status_str(i);
        assert_non_null(s[i]);
        assert_true(strlen(s[i]) > 0);
        assert_string_not_equal(s[i], "unknown status");
        for (int j = 0; j < i; j++)
            if (strcmp(s[i], s[j]) == 0)
                fail_msg("status %d and %d share the text \"%s\"", i, j, s[i]);
    }
    assert_string_equal(bsr_status_str(BSR_OK), "ok");
    assert_string_equal(bsr_status_str(BSR_E_VERSION), "protocol version not supported");
    assert_string_equal(bsr_status_str(BSR_E_SIZE), "disk of another size");
    assert_string_equal(bsr_status_str(BSR_E_IDENTITY), "wrong replica");
    assert_string_equal(bsr_status_str(BSR_E_PAIRED), "replica paired with another primary");
    assert_string_equal(bsr_status_str(BSR_E_BUSY), "another primary session is active");
    assert_string_equal(bsr_status_str(BSR_E_LIMITS), "limits out of range");
    assert_string_equal(bsr_status_str(BSR_E_IO), "replica I/O error");
    assert_string_equal(bsr_status_str(BSR_E_PROTOCOL), "protocol error");
    assert_string_equal(bsr_status_str(BSR_E_PROMOTED), "the replica was promoted");
    assert_string_equal(bsr_status_str(BSR_E_SPLIT_BRAIN), "split brain");
    assert_string_equal(bsr_status_str(BSR_E_GENERATION), "unrelated data generations");

    static const int unknown[] = {-1, BSR_E_GENERATION + 1, 100, EPROTO + 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        assert_string_equal(bsr_status_str(unknown[i]), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_hello_layout),
        cmocka_unit_test(test_hello_rejects),
        cmocka_unit_test(test_welcome_round_trip),
        cmocka_unit_test(test_welcome_layout),
        cmocka_unit_test(test_welcome_reason_terminated),
        cmocka_unit_test(test_welcome_rejects),
        cmocka_unit_test(test_frame_layout),
        cmocka_unit_test(test_frame_round_trip),
        cmocka_unit_test(test_frame_flags_reserved),
        cmocka_unit_test(test_frame_unknown_kind),
        cmocka_unit_test(test_frame_zdata),
        cmocka_unit_test(test_frame_epochs),
        cmocka_unit_test(test_frame_extent_count),
        cmocka_unit_test(test_frame_extent_bounds),
        cmocka_unit_test(test_frame_direction),
        cmocka_unit_test(test_frame_control_count),
        cmocka_unit_test(test_frame_ack_count),
        cmocka_unit_test(test_frame_payload),
        cmocka_unit_test(test_frame_checksums),
        cmocka_unit_test(test_frame_extents),
        cmocka_unit_test(test_hash_range),
        cmocka_unit_test(test_status_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
