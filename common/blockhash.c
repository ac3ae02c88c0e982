/* Block checksums (see blockhash.h). */
#include "common/blockhash.h"

#include <stdint.h>
#include <xxhash.h>

uint64_t bs_block_hash(const void *buf, size_t len)
{
    return (uint64_t)XXH3_64bits(buf, len);
}

void bs_hash_blocks(const void *data, uint64_t bytes, uint64_t block_bytes, uint64_t *out)
{
    const uint8_t *p = data;

    for (uint64_t at = 0, i = 0; at < bytes; at += block_bytes, i++)
        out[i] = bs_block_hash(p + at, bytes - at < block_bytes ? bytes - at : block_bytes);
}
