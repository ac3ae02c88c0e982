/* A hierarchical bitmap: a leaf bitmap plus summary levels in which each
 * bit says "this word of the level below may have a bit set".  Searches
 * and whole-map operations cost in proportion to the set regions, not to
 * the size of the map.
 *
 * Concurrency: bs_bitmap_set_range() may be called from any number of
 * threads at once, lock-free, with no allocation and no system call.  All
 * other functions that change or scan the map must be called from one
 * thread at a time (the "owner"); they tolerate concurrent setters and
 * never lose one of their bits.
 */
#ifndef BLKSHIP_COMMON_BITMAP_H
#define BLKSHIP_COMMON_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct bs_bitmap;

/* Fault in every page at creation so that setting bits later never takes
 * a page fault (the write path); otherwise pages are mapped on first use. */
#define BS_BITMAP_PREFAULT 0x1u

/* Creates a map of nbits clear bits.  Returns 0 or -errno. */
int bs_bitmap_create(uint64_t nbits, unsigned flags, struct bs_bitmap **out);
void bs_bitmap_destroy(struct bs_bitmap *map);

uint64_t bs_bitmap_nbits(const struct bs_bitmap *map);
/* Bytes of memory the map reserves, all levels included. */
uint64_t bs_bitmap_mem_bytes(const struct bs_bitmap *map);

/* Sets bits [first, first + count), clipped to the map.  Any thread. */
void bs_bitmap_set_range(struct bs_bitmap *map, uint64_t first, uint64_t count);

/* Owner only.  Clears bits [first, first + count), clipped to the map. */
void bs_bitmap_clear_range(struct bs_bitmap *map, uint64_t first, uint64_t count);
/* Owner only.  Clears every bit. */
void bs_bitmap_clear_all(struct bs_bitmap *map);
bool bs_bitmap_test(const struct bs_bitmap *map, uint64_t bit);
/* Owner only.  First set bit at or after pos, or nbits if there is none. */
uint64_t bs_bitmap_next_set(const struct bs_bitmap *map, uint64_t pos);
/* Owner only.  First clear bit at or after pos, or nbits if there is none. */
uint64_t bs_bitmap_next_clear(const struct bs_bitmap *map, uint64_t pos);
/* Owner only.  Number of set bits. */
uint64_t bs_bitmap_count(const struct bs_bitmap *map);
/* Owner only.  The 64 bits [64 * word, 64 * word + 64) as one word. */
uint64_t bs_bitmap_word(const struct bs_bitmap *map, uint64_t word);

/* Owner of both.  Moves every set bit of src into dst (dst |= src, src = 0),
 * word by word with atomic exchanges, so that a bit set in src concurrently
 * ends up in exactly one of the two maps.  The maps must be the same size.
 * Returns the number of bits that were newly set in dst. */
uint64_t bs_bitmap_move(struct bs_bitmap *dst, struct bs_bitmap *src);

#endif
