/* Replica target backend: a regular file.  Direct I/O where the file
 * system offers it, with the alignment it reports; zeroes are holes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "secondary/target.h"

#define MOD "target"

static int file_open(struct bs_target *t)
{
    struct stat st;
    struct statx sx;
    long page = sysconf(_SC_PAGESIZE);

    t->fd = open(t->path, O_RDWR | O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        BS_ERR(MOD, "cannot open replica %s: %s", t->path, strerror(e));
        return -e;
    }
    if (fstat(t->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        BS_ERR(MOD, "replica %s changed while it was being opened", t->path);
        return -EINVAL;
    }
    t->size_bytes = (uint64_t)st.st_size;
    /* A file is addressed in bytes; the page cache takes any alignment. */
    t->logical_block = 512;
    t->physical_block = st.st_blksize >= 512 ? (uint32_t)st.st_blksize : 512;

    t->direct_fd = open(t->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (t->direct_fd < 0)
        return 0; /* the file system has no direct I/O: all writes cached */
    /* The file system's own alignment rule when it states one (statx, Linux
     * 6.1 and later: 0 means no direct I/O for this file); otherwise its
     * block size, which no file system's rule exceeds.  At least a page,
     * for the reason given in target-bdev.c. */
    if (statx(t->direct_fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN)) {
        if (!sx.stx_dio_offset_align || !sx.stx_dio_mem_align) {
            close(t->direct_fd);
            t->direct_fd = -1;
            return 0;
        }
        t->dio_align = sx.stx_dio_offset_align;
        t->dio_mem_align = sx.stx_dio_mem_align;
    } else {
        t->dio_align = t->physical_block;
        t->dio_mem_align = t->physical_block;
    }
    if (page > 0 && (uint32_t)page > t->dio_align)
        t->dio_align = (uint32_t)page;
    return 0;
}

static int file_zero(struct bs_target *t, uint64_t offset, uint64_t len)
{
    /* Punching a hole reads back as zeroes and frees the space; the file
     * system zeroes partial blocks at the ends itself. */
    if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -errno;
    return bs_target_zero_by_writing(t, offset, len);
}

const struct bs_target_ops bs_target_file_ops = {
    .name = "file",
    .open = file_open,
    .write = bs_target_fd_write,
    .read = bs_target_fd_read,
    .zero = file_zero,
    .flush = bs_target_fd_flush,
    .writeback = bs_target_fd_writeback,
    .close = bs_target_fd_close,
};
