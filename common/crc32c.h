/* CRC32C (Castagnoli), as used by the replication frames.  Uses the SSE4.2
 * instruction when the CPU has it, a table otherwise. */
#ifndef BLKSHIP_COMMON_CRC32C_H
#define BLKSHIP_COMMON_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: start with crc = 0; crc32c(crc32c(0, a), b) equals the
 * CRC of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two paths crc32c() chooses between, same contract, so that tests can
 * check each against a reference whatever this CPU would pick: the table,
 * always available, and the SSE4.2 path, which may be called only when
 * crc32c_hw_available() (it aborts otherwise). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
