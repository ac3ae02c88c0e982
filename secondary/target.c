/* Opening a replica target, and the pieces the descriptor-based backends
 * (regular file, block device) share. */
#include "secondary/target.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define MOD "target"

int bs_target_open(struct bs_target *t, const char *path, const struct bs_target_cfg *cfg)
{
    struct stat st;
    int r;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    t->direct_fd = -1;
    t->ceph_conf = cfg && cfg->ceph_conf ? cfg->ceph_conf : BS_CEPH_CONF_DEFAULT;
    t->ceph_id = cfg && cfg->ceph_id ? cfg->ceph_id : BS_CEPH_ID_DEFAULT;
    if (snprintf(t->path, sizeof(t->path), "%s", path) >= (int)sizeof(t->path)) {
        BS_ERR(MOD, "replica path too long: %s", path);
        return -ENAMETOOLONG;
    }
    if (strncmp(path, "rbd:", 4) == 0) {
        t->ops = &bs_target_rbd_ops;
    } else {
        /* The type decides how the path is opened (a block device
         * exclusively); the backend checks that it did not change
         * meanwhile. */
        if (stat(path, &st) < 0) {
            int e = errno;
            BS_ERR(MOD, "cannot open replica %s: %s", path, strerror(e));
            return -e;
        }
        if (S_ISBLK(st.st_mode)) {
            t->ops = &bs_target_bdev_ops;
        } else if (S_ISREG(st.st_mode)) {
            t->ops = &bs_target_file_ops;
        } else {
            BS_ERR(MOD, "replica %s is neither a block device nor a regular file (nor "
                        "rbd:POOL/IMAGE)", path);
            return -EINVAL;
        }
    }
    r = t->ops->open(t);
    if (r < 0) {
        t->ops->close(t);
        return r;
    }
    return 0;
}

int bs_target_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
{
    const char *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)offset);
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

int bs_target_fd_write(struct bs_target *t, const void *buf, size_t len, uint64_t offset,
                       unsigned flags)
{
    if (!(flags & BS_TARGET_CACHED) && t->direct_fd >= 0 && bs_target_direct_ok(t, buf, len, offset)) {
        atomic_fetch_add_explicit(&t->direct_writes, 1, memory_order_relaxed);
        return bs_target_pwrite_all(t->direct_fd, buf, len, offset);
    }
    atomic_fetch_add_explicit(&t->cached_writes, 1, memory_order_relaxed);
    return bs_target_pwrite_all(t->fd, buf, len, offset);
}

int bs_target_fd_read(struct bs_target *t, void *buf, size_t len, uint64_t offset)
{
    int fd = t->direct_fd >= 0 && bs_target_direct_ok(t, buf, len, offset) ? t->direct_fd : t->fd;
    char *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the target ended before its recorded size */
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
        int r = bs_target_pwrite_all(t->fd, zeroes, n, offset);
        if (r < 0)
            return r;
        offset += n;
        len -= n;
    }
    return 0;
}

int bs_target_fd_flush(struct bs_target *t)
{
    /* One fdatasync covers both descriptors: they share the inode (and a
     * block device's page cache), and it ends with a cache flush of the
     * disk under them. */
    return fdatasync(t->fd) < 0 ? -errno : 0;
}

void bs_target_fd_writeback(struct bs_target *t)
{
    (void)sync_file_range(t->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

void bs_target_fd_close(struct bs_target *t)
{
    if (t->direct_fd >= 0)
        close(t->direct_fd);
    if (t->fd >= 0)
        close(t->fd);
    t->direct_fd = -1;
    t->fd = -1;
}
