/* CRC32C: a hardware path (SSE4.2, three interleaved chains) and a portable
 * table. */
#include "common/crc32c.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[256];

static void make_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction has a latency of three cycles and a throughput of
 * one a cycle, so one dependent chain uses a third of the unit.  Long
 * buffers are cut into chunks of three equal blocks whose CRCs run as three
 * independent chains, then are joined:
 *
 *     crc(s, A B C) = zshift(crc(s, A), 2n) ^ zshift(crc(0, B), n) ^ crc(0, C)
 *
 * where zshift(x, n) is the register after n zero bytes starting from x
 * (the raw CRC is linear in the register and in the data).  zshift by a
 * fixed n is linear in x, so it is four table look-ups, one per byte of x. */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

struct zshift {
    uint32_t t[4][256];
};
/* [0]: SHORT_BLOCK, [1]: 2 * SHORT_BLOCK, [2]: LONG_BLOCK, [3]: 2 * LONG_BLOCK */
static struct zshift zs[4];

static inline uint32_t zshift(const struct zshift *z, uint32_t x)
{
    return z->t[0][x & 0xff] ^ z->t[1][(x >> 8) & 0xff] ^ z->t[2][(x >> 16) & 0xff] ^
           z->t[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint64_t crc_words(uint64_t c, const uint8_t *p,
                                                            size_t len)
{
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    return c;
}

/* len is a multiple of 8; p is 8-aligned. */
__attribute__((target("sse4.2"))) static uint64_t crc_three(const struct zshift *z1,
                                                            const struct zshift *z2,
                                                            size_t block, uint64_t a,
                                                            const uint8_t *p)
{
    const uint8_t *pb = p + block, *pc = p + 2 * block;
    uint64_t b = 0, c = 0;

    for (size_t i = 0; i < block; i += 8) {
        uint64_t va, vb, vc;
        memcpy(&va, p + i, 8);
        memcpy(&vb, pb + i, 8);
        memcpy(&vc, pc + i, 8);
        a = __builtin_ia32_crc32di(a, va);
        b = __builtin_ia32_crc32di(b, vb);
        c = __builtin_ia32_crc32di(c, vc);
    }
    return zshift(z2, (uint32_t)a) ^ zshift(z1, (uint32_t)b) ^ c;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                         size_t len)
{
    uint64_t c = crc;

    while (len && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    for (; len >= 3 * LONG_BLOCK; p += 3 * LONG_BLOCK, len -= 3 * LONG_BLOCK)
        c = crc_three(&zs[2], &zs[3], LONG_BLOCK, c, p);
    for (; len >= 3 * SHORT_BLOCK; p += 3 * SHORT_BLOCK, len -= 3 * SHORT_BLOCK)
        c = crc_three(&zs[0], &zs[1], SHORT_BLOCK, c, p);
    c = crc_words(c, p, len & ~(size_t)7);
    p += len & ~(size_t)7;
    len &= 7;
    while (len--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}

/* Fills z for a shift of n bytes: the register of each single-bit value is
 * run through n zero bytes, and every other value is a sum of those. */
__attribute__((target("sse4.2"))) static void make_zshift(struct zshift *z, size_t n)
{
    static const uint8_t zeros[2 * LONG_BLOCK] __attribute__((aligned(8)));
    uint32_t bit[32];

    for (int i = 0; i < 32; i++)
        bit[i] = (uint32_t)crc_words(1u << i, zeros, n);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t s = 0;
            for (int i = 0; i < 8; i++)
                if (v & (1u << i))
                    s ^= bit[8 * k + i];
            z->t[k][v] = s;
        }
}
#endif

static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);

__attribute__((constructor)) static void crc32c_init(void)
{
    make_table();
    crc_impl = crc_sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        make_zshift(&zs[0], SHORT_BLOCK);
        make_zshift(&zs[1], 2 * SHORT_BLOCK);
        make_zshift(&zs[2], LONG_BLOCK);
        make_zshift(&zs[3], 2 * LONG_BLOCK);
        crc_impl = crc_hw;
    }
#endif
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    return ~crc_impl(~crc, buf, len);
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    return ~crc_sw(~crc, buf, len);
}

bool crc32c_hw_available(void)
{
#if defined(__x86_64__)
    return crc_impl == crc_hw;
#else
    return false;
#endif
}

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
    if (crc32c_hw_available())
        return ~crc_hw(~crc, buf, len);
#endif
    (void)crc, (void)buf, (void)len;
    abort();
}
