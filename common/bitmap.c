/* Hierarchical bitmap (see bitmap.h).  Level 0 is the leaf bitmap; level
 * i + 1 has one bit per 64-bit word of level i; the top level is one word.
 *
 * Ordering rule that makes lock-free setters safe against the owner's
 * clears: a setter sets the leaf bit, then each summary bit upwards; the
 * owner clears a summary bit and then re-reads the word it summarises,
 * setting the summary bit again if that word is not empty.  All accesses
 * are sequentially consistent, so either the owner sees the new leaf bit
 * or the setter's summary update comes after the owner's clear.
 */
#include "common/bitmap.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#define BS_MAX_LEVELS 12

struct bs_bitmap {
    uint64_t nbits;
    unsigned nlevels;
    uint64_t nwords[BS_MAX_LEVELS];
    uint64_t *level[BS_MAX_LEVELS];
    void *mem;
    size_t mem_len;
};

#define WORD_BITS 64u

static inline uint64_t load(const uint64_t *w)
{
    return __atomic_load_n(w, __ATOMIC_SEQ_CST);
}

static inline uint64_t div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

int bs_bitmap_create(uint64_t nbits, unsigned flags, struct bs_bitmap **out)
{
    struct bs_bitmap *map;
    uint64_t total = 0, n = nbits ? nbits : 1;
    unsigned l = 0;
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

    map = calloc(1, sizeof(*map));
    if (!map)
        return -ENOMEM;
    map->nbits = nbits;
    /* Size every level: words needed to hold n bits, then one bit per word. */
    for (;;) {
        if (l == BS_MAX_LEVELS) {
            free(map);
            return -EOVERFLOW;
        }
        map->nwords[l] = div_round_up(n, WORD_BITS);
        total += map->nwords[l];
        l++;
        if (map->nwords[l - 1] == 1)
            break;
        n = map->nwords[l - 1];
    }
    map->nlevels = l;
    if (total > SIZE_MAX / sizeof(uint64_t)) {
        free(map);
        return -EOVERFLOW;
    }
    map->mem_len = (size_t)total * sizeof(uint64_t);
    if (flags & BS_BITMAP_PREFAULT)
        mflags |= MAP_POPULATE;
    map->mem = mmap(NULL, map->mem_len, PROT_READ | PROT_WRITE, mflags, -1, 0);
    if (map->mem == MAP_FAILED) {
        int err = errno;
        free(map);
        return -err;
    }
    uint64_t *p = map->mem;
    for (l = 0; l < map->nlevels; l++) {
        map->level[l] = p;
        p += map->nwords[l];
    }
    *out = map;
    return 0;
}

void bs_bitmap_destroy(struct bs_bitmap *map)
{
    if (!map)
        return;
    munmap(map->mem, map->mem_len);
    free(map);
}

uint64_t bs_bitmap_nbits(const struct bs_bitmap *map)
{
    return map->nbits;
}

uint64_t bs_bitmap_mem_bytes(const struct bs_bitmap *map)
{
    return map->mem_len;
}

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t word_mask(unsigned lo, unsigned hi)
{
    uint64_t m = hi == WORD_BITS ? ~0ull : (1ull << hi) - 1;
    return m & ~((1ull << lo) - 1);
}

/* Marks word `w` of level `l` as non-empty in every level above. */
static inline void summary_set(struct bs_bitmap *map, unsigned l, uint64_t w)
{
    for (l++; l < map->nlevels; l++) {
        uint64_t bit = 1ull << (w % WORD_BITS);
        uint64_t *sw = &map->level[l][w / WORD_BITS];
        if (load(sw) & bit)
            return; /* the levels above were set by whoever set this bit */
        __atomic_fetch_or(sw, bit, __ATOMIC_SEQ_CST);
        w /= WORD_BITS;
    }
}

/* Word `w` of level `l` may have become empty: clear its summary bit, then
 * re-check it (a setter may have raced us) and walk upwards. */
static void summary_fix(struct bs_bitmap *map, unsigned l, uint64_t w)
{
    for (; l + 1 < map->nlevels; l++) {
        uint64_t bit = 1ull << (w % WORD_BITS);
        uint64_t *sw = &map->level[l + 1][w / WORD_BITS];
        if (load(&map->level[l][w]) != 0)
            return;
        __atomic_fetch_and(sw, ~bit, __ATOMIC_SEQ_CST);
        if (load(&map->level[l][w]) != 0) {
            __atomic_fetch_or(sw, bit, __ATOMIC_SEQ_CST);
            return;
        }
        w /= WORD_BITS;
    }
}

void bs_bitmap_set_range(struct bs_bitmap *map, uint64_t first, uint64_t count)
{
    uint64_t end;

    if (first >= map->nbits || count == 0)
        return;
    end = count > map->nbits - first ? map->nbits : first + count;
    while (first < end) {
        uint64_t w = first / WORD_BITS;
        unsigned lo = (unsigned)(first % WORD_BITS);
        unsigned hi = end - w * WORD_BITS >= WORD_BITS ? WORD_BITS
                                                       : (unsigned)(end - w * WORD_BITS);
        uint64_t mask = word_mask(lo, hi);
        uint64_t *lw = &map->level[0][w];

        if ((load(lw) & mask) != mask)
            __atomic_fetch_or(lw, mask, __ATOMIC_SEQ_CST);
        summary_set(map, 0, w);
        first = (w + 1) * WORD_BITS;
    }
}

bool bs_bitmap_test(const struct bs_bitmap *map, uint64_t bit)
{
    if (bit >= map->nbits)
        return false;
    return (load(&map->level[0][bit / WORD_BITS]) >> (bit % WORD_BITS)) & 1;
}

/* First non-zero word of level l at index i or later, or nwords[l] if none.
 * Recurses up the summary levels at most nlevels deep. */
static uint64_t find_word(const struct bs_bitmap *map, unsigned l, uint64_t i)
{
    while (i < map->nwords[l]) {
        if (l + 1 == map->nlevels)
            return load(&map->level[l][i]) ? i : map->nwords[l];
        uint64_t sw = load(&map->level[l + 1][i / WORD_BITS]) & ~((1ull << (i % WORD_BITS)) - 1);
        if (!sw) {
            uint64_t j = find_word(map, l + 1, i / WORD_BITS + 1);
            if (j >= map->nwords[l + 1])
                break;
            i = j * WORD_BITS;
            continue;
        }
        i = (i / WORD_BITS) * WORD_BITS + (uint64_t)__builtin_ctzll(sw);
        if (i >= map->nwords[l])
            break;
        if (load(&map->level[l][i]))
            return i;
        i++; /* a stale summary bit: the word emptied, look past it */
    }
    return map->nwords[l];
}

static inline uint64_t next_word(const struct bs_bitmap *map, uint64_t w)
{
    return find_word(map, 0, w);
}

uint64_t bs_bitmap_next_set(const struct bs_bitmap *map, uint64_t pos)
{
    uint64_t w;

    while (pos < map->nbits) {
        w = pos / WORD_BITS;
        uint64_t v = load(&map->level[0][w]) & ~((1ull << (pos % WORD_BITS)) - 1);
        if (v) {
            uint64_t bit = w * WORD_BITS + (uint64_t)__builtin_ctzll(v);
            return bit < map->nbits ? bit : map->nbits;
        }
        w = next_word(map, w + 1);
        if (w >= map->nwords[0])
            return map->nbits;
        pos = w * WORD_BITS;
    }
    return map->nbits;
}

uint64_t bs_bitmap_next_clear(const struct bs_bitmap *map, uint64_t pos)
{
    while (pos < map->nbits) {
        uint64_t w = pos / WORD_BITS;
        uint64_t v = ~load(&map->level[0][w]) & ~((1ull << (pos % WORD_BITS)) - 1);
        if (v) {
            uint64_t bit = w * WORD_BITS + (uint64_t)__builtin_ctzll(v);
            return bit < map->nbits ? bit : map->nbits;
        }
        pos = (w + 1) * WORD_BITS;
    }
    return map->nbits;
}

void bs_bitmap_clear_range(struct bs_bitmap *map, uint64_t first, uint64_t count)
{
    uint64_t end;

    if (first >= map->nbits || count == 0)
        return;
    end = count > map->nbits - first ? map->nbits : first + count;
    for (first = bs_bitmap_next_set(map, first); first < end;
         first = bs_bitmap_next_set(map, first)) {
        uint64_t w = first / WORD_BITS;
        unsigned lo = (unsigned)(first % WORD_BITS);
        unsigned hi = end - w * WORD_BITS >= WORD_BITS ? WORD_BITS
                                                       : (unsigned)(end - w * WORD_BITS);
        uint64_t old = __atomic_fetch_and(&map->level[0][w], ~word_mask(lo, hi), __ATOMIC_SEQ_CST);
        if ((old & ~word_mask(lo, hi)) == 0)
            summary_fix(map, 0, w);
        first = (w + 1) * WORD_BITS;
    }
}

void bs_bitmap_clear_all(struct bs_bitmap *map)
{
    bs_bitmap_clear_range(map, 0, map->nbits);
}

uint64_t bs_bitmap_word(const struct bs_bitmap *map, uint64_t word)
{
    return word < map->nwords[0] ? load(&map->level[0][word]) : 0;
}

uint64_t bs_bitmap_count(const struct bs_bitmap *map)
{
    uint64_t n = 0;

    for (uint64_t w = next_word(map, 0); w < map->nwords[0]; w = next_word(map, w + 1))
        n += (uint64_t)__builtin_popcountll(load(&map->level[0][w]));
    return n;
}

uint64_t bs_bitmap_move(struct bs_bitmap *dst, struct bs_bitmap *src)
{
    uint64_t moved = 0;

    if (dst->nbits != src->nbits)
        return 0;
    for (uint64_t w = next_word(src, 0); w < src->nwords[0]; w = next_word(src, w + 1)) {
        uint64_t v = __atomic_exchange_n(&src->level[0][w], 0, __ATOMIC_SEQ_CST);
        if (!v)
            continue;
        summary_fix(src, 0, w);
        uint64_t old = __atomic_fetch_or(&dst->level[0][w], v, __ATOMIC_SEQ_CST);
        moved += (uint64_t)__builtin_popcountll(v & ~old);
        summary_set(dst, 0, w);
    }
    return moved;
}
