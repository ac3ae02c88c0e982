/* Replica target backend: a block device. */
#include <errno.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "secondary/target.h"

static int64_t bdev_size(struct bs_target *t)
{
    uint64_t bytes;

    if (ioctl(t->fd, BLKGETSIZE64, &bytes) < 0)
        return -errno;
    return (int64_t)bytes;
}

static int bdev_zero(struct bs_target *t, uint64_t offset, uint64_t len)
{
    uint64_t range[2] = { offset, len };

    if (ioctl(t->fd, BLKZEROOUT, range) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL)
        return -errno;
    return bs_target_zero_by_writing(t, offset, len);
}

const struct bs_target_ops bs_target_bdev_ops = {
    .name = "block device",
    .size = bdev_size,
    .zero = bdev_zero,
};
