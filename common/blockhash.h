/* The block checksum of checksum resync and verify (protocol version 3):
 * XXH3-64 of the block's bytes, from libxxhash.  One definition, so that
 * both agents and the tests hash alike; the wire carries it little-endian.
 * Not a cryptographic hash: it finds accidental differences (lost writes,
 * bit rot, a disk that went its own way), not a forged block. */
#ifndef BLKSHIP_COMMON_BLOCKHASH_H
#define BLKSHIP_COMMON_BLOCKHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t bs_block_hash(const void *buf, size_t len);

#endif
