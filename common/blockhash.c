/* Block checksums (see blockhash.h). */
#include "common/blockhash.h"

#include <xxhash.h>

uint64_t bs_block_hash(const void *buf, size_t len)
{
    return (uint64_t)XXH3_64bits(buf, len);
}
