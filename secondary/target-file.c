/* Replica target backend: a regular file. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "secondary/target.h"

static int64_t file_size(struct bs_target *t)
{
    struct stat st;

    if (fstat(t->fd, &st) < 0)
        return -errno;
    return st.st_size;
}

static int file_zero(struct bs_target *t, uint64_t offset, uint64_t len)
{
    /* Punching a hole reads back as zeroes and frees the space. */
    if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -errno;
    return bs_target_zero_by_writing(t, offset, len);
}

const struct bs_target_ops bs_target_file_ops = {
    .name = "file",
    .size = file_size,
    .zero = file_zero,
};
