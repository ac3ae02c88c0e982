/* Little-endian fields in byte buffers, for on-disk formats (the journal,
 * the changes file).  memcpy keeps unaligned access defined. */
#ifndef BLKSHIP_COMMON_LE_H
#define BLKSHIP_COMMON_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void bs_put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline void bs_put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline uint64_t bs_get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline uint32_t bs_get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

#endif
