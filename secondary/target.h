/* Replica targets: where the secondary writes.  One backend per kind of
 * target (regular file, block device), each behind the same operations. */
#ifndef BLKSHIP_SECONDARY_TARGET_H
#define BLKSHIP_SECONDARY_TARGET_H

#include <stddef.h>
#include <stdint.h>

struct bs_target;

struct bs_target_ops {
    const char *name;
    /* Size in bytes, or -errno. */
    int64_t (*size)(struct bs_target *t);
    /* Makes [offset, offset + len) read as zeroes. */
    int (*zero)(struct bs_target *t, uint64_t offset, uint64_t len);
};

struct bs_target {
    const struct bs_target_ops *ops;
    int fd;
    char path[4096];
};

extern const struct bs_target_ops bs_target_file_ops;
extern const struct bs_target_ops bs_target_bdev_ops;

/* Opens path read-write and picks the backend from its type.  Returns 0 or
 * -errno (a clear message is logged). */
int bs_target_open(struct bs_target *t, const char *path);
void bs_target_close(struct bs_target *t);
/* Writes all of buf at offset; -errno on failure (short writes retried). */
int bs_target_write(struct bs_target *t, const void *buf, size_t len, uint64_t offset);
/* Zeroes by writing zero pages: the fallback every backend may use. */
int bs_target_zero_by_writing(struct bs_target *t, uint64_t offset, uint64_t len);

#endif
