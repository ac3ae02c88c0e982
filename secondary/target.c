/* Opening a replica target and the operations common to every backend. */
#include "secondary/target.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define MOD "target"

int bs_target_open(struct bs_target *t, const char *path)
{
    struct stat st;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    snprintf(t->path, sizeof(t->path), "%s", path);
    t->fd = open(path, O_RDWR | O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        BS_ERR(MOD, "cannot open replica %s: %s", path, strerror(e));
        return -e;
    }
    if (fstat(t->fd, &st) < 0) {
        int e = errno;
        BS_ERR(MOD, "stat %s: %s", path, strerror(e));
        bs_target_close(t);
        return -e;
    }
    if (S_ISBLK(st.st_mode)) {
        t->ops = &bs_target_bdev_ops;
    } else if (S_ISREG(st.st_mode)) {
        t->ops = &bs_target_file_ops;
    } else {
        BS_ERR(MOD, "replica %s is neither a block device nor a regular file", path);
        bs_target_close(t);
        return -EINVAL;
    }
    return 0;
}

void bs_target_close(struct bs_target *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

int bs_target_write(struct bs_target *t, const void *buf, size_t len, uint64_t offset)
{
    const char *p = buf;

    while (len) {
        ssize_t n = pwrite(t->fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENOSPC;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

int bs_target_zero_by_writing(struct bs_target *t, uint64_t offset, uint64_t len)
{
    static const char zeroes[65536];

    while (len) {
        size_t n = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
        int r = bs_target_write(t, zeroes, n, offset);
        if (r < 0)
            return r;
        offset += n;
        len -= n;
    }
    return 0;
}
