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
/* Block i of data[0..bytes), blocks of block_bytes (the last may be
 * shorter): its hash in out[i], for every i below
 * (bytes + block_bytes - 1) / block_bytes. */
void bs_hash_blocks(const void *data, uint64_t bytes, uint64_t block_bytes, uint64_t *out);

#endif
