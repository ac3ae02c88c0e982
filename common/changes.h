/* A disk's own changes, kept in a file: the extents where a demoted
 * primary's disk may differ from the generation it shares with the other
 * side (docs/failover.md, "Demote").  blkship-primary writes it when it
 * demotes its disk; blkship-secondary, started on that state directory,
 * reads it and sends it in the handshake, and removes it once the new
 * primary has resent those extents.
 *
 * Layout, little-endian: the 8 bytes "BSCHG001", u64 disk sectors, u64
 * entry count, u32 CRC32C of the entries, u32 zero; then each entry as
 * u64 sector, u32 count, u32 zero (the EXTENTS frame's layout).
 */
#ifndef BLKSHIP_COMMON_CHANGES_H
#define BLKSHIP_COMMON_CHANGES_H

#include <stddef.h>
#include <stdint.h>

#define BS_CHANGES_HDR_LEN 32u
#define BS_CHANGES_ENTRY_LEN 16u
/* At most this many entries (64 MiB of them): a disk more fragmented than
 * that is compared by checksums instead. */
#define BS_CHANGES_MAX (4u << 20)

struct bs_changes {
    uint64_t disk_sectors;
    size_t n;
    uint8_t *entries;  /* n * BS_CHANGES_ENTRY_LEN bytes, the file's layout */
};

/* Writes path atomically and durably (a temporary file, fsync, rename,
 * fsync of the directory).  Returns 0 or -errno. */
int bs_changes_write(const char *path, const struct bs_changes *c);
/* Reads and checks path: magic, size, CRC, every entry non-empty and
 * within disk_sectors.  Returns 0 (free with bs_changes_free), -ENOENT,
 * -EINVAL (*why says what is wrong), or -errno. */
int bs_changes_read(const char *path, uint64_t disk_sectors, struct bs_changes *c,
                    const char **why);
void bs_changes_free(struct bs_changes *c);
/* Entry i. */
void bs_changes_get(const struct bs_changes *c, size_t i, uint64_t *sector, uint32_t *count);
/* Appends an entry to a buffer of room entries (no allocation). */
void bs_changes_put(uint8_t *entries, size_t i, uint64_t sector, uint32_t count);

#endif
