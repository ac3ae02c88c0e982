/* CRC32C (Castagnoli), as used by the replication frames.  Uses the SSE4.2
 * instruction when the CPU has it, a table otherwise. */
#ifndef BLKSHIP_COMMON_CRC32C_H
#define BLKSHIP_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: start with crc = 0; crc32c(crc32c(0, a), b) equals the
 * CRC of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
