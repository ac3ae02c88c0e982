/* Replica target backend: a block device.
 *
 * The device is opened O_EXCL, which on Linux claims it the way a mount,
 * device mapper or md does: a device that is mounted or claimed is refused
 * (EBUSY) instead of being overwritten under its user, and nobody can
 * mount it while the secondary runs.  Its logical and physical block sizes
 * decide which writes may go O_DIRECT; the others (a 512-byte frame on a
 * 4 KiB-sector device) go through the page cache, which reads and merges
 * the partial blocks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"
#include "secondary/target.h"

#define MOD "target"

/* Where device dev is mounted, from /proc/self/mountinfo, into dir;
 * false if it is not mounted. */
static bool find_mount(dev_t dev, char *dir, size_t size)
{
    char line[4096], want[32], where[4096];
    unsigned maj, min;
    bool found = false;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (!f)
        return false;
    snprintf(want, sizeof(want), "%u:%u", major(dev), minor(dev));
    while (!found && fgets(line, sizeof(line), f)) {
        /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, where) == 3 &&
            maj == major(dev) && min == minor(dev)) {
            snprintf(dir, size, "%s", where);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The first holder of dev listed in sysfs (a dm or md device), into name;
 * false if none. */
static bool find_holder(dev_t dev, char *name, size_t size)
{
    char path[128];
    struct dirent *e;
    bool found = false;
    DIR *d;

    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(dev), minor(dev));
    d = opendir(path);
    if (!d)
        return false;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(name, size, "%s", e->d_name);
        found = true;
    }
    closedir(d);
    return found;
}

/* Says as precisely as we can who holds the device we could not claim. */
static void report_busy(const char *path, dev_t dev)
{
    char what[4096];

    if (find_mount(dev, what, sizeof(what)))
        BS_ERR(MOD, "replica %s is mounted on %s: refusing to use it (unmount it first)", path,
               what);
    else if (find_holder(dev, what, sizeof(what)))
        BS_ERR(MOD, "replica %s is in use by %s: refusing to use it", path, what);
    else
        BS_ERR(MOD, "replica %s is in use (mounted, or held open exclusively by another program, "
                    "such as another blkship-secondary): refusing to use it", path);
}

static int bdev_open(struct bs_target *t)
{
    struct stat st;
    uint64_t bytes;
    int lbs = 0;
    unsigned int pbs = 0;

    t->fd = open(t->path, O_RDWR | O_EXCL | O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        if (e == EBUSY && stat(t->path, &st) == 0)
            report_busy(t->path, st.st_rdev);
        else
            BS_ERR(MOD, "cannot open replica %s: %s", t->path, strerror(e));
        return -e;
    }
    if (fstat(t->fd, &st) < 0 || !S_ISBLK(st.st_mode)) {
        BS_ERR(MOD, "replica %s changed while it was being opened", t->path);
        return -EINVAL;
    }
    if (ioctl(t->fd, BLKGETSIZE64, &bytes) < 0 || ioctl(t->fd, BLKSSZGET, &lbs) < 0 ||
        ioctl(t->fd, BLKPBSZGET, &pbs) < 0) {
        int e = errno;
        BS_ERR(MOD, "cannot read the size and block sizes of %s: %s", t->path, strerror(e));
        return -e;
    }
    if (lbs < 512 || lbs & (lbs - 1) || lbs > 65536) {
        BS_ERR(MOD, "replica %s reports a logical block size of %d bytes: not supported", t->path,
               lbs);
        return -EINVAL;
    }
    t->size_bytes = bytes;
    t->logical_block = (uint32_t)lbs;
    t->physical_block = pbs >= (unsigned)lbs ? pbs : (uint32_t)lbs;

    /* The second descriptor is not exclusive: the claim is the first one's,
     * and an exclusive open would conflict with it.  A direct write must
     * cover whole logical blocks, and also whole pages, so that no page of
     * the device's cache is shared between a direct write and a buffered
     * one in flight at the same time (the kernel could not invalidate it).
     * Buffers must meet the device's DMA alignment; without statx's answer,
     * assume the logical block size (the strictest common rule). */
    t->direct_fd = open(t->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (t->direct_fd >= 0) {
        long page = sysconf(_SC_PAGESIZE);
        struct statx sx;
        t->dio_align = t->logical_block;
        if (page > 0 && (uint32_t)page > t->dio_align)
            t->dio_align = (uint32_t)page;
        t->dio_mem_align = t->logical_block;
        if (statx(t->direct_fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
            (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_mem_align)
            t->dio_mem_align = sx.stx_dio_mem_align;
    } else {
        BS_WARN(MOD, "%s cannot be opened O_DIRECT (%s): every write goes through the page cache",
                t->path, strerror(errno));
    }
    return 0;
}

/* BLKZEROOUT on the whole logical blocks of the range (the kernel refuses
 * anything else); the partial blocks at either end, and devices without
 * the ioctl, by writing zeroes through the page cache. */
static int bdev_zero(struct bs_target *t, uint64_t offset, uint64_t len)
{
    uint64_t lbs = t->logical_block, end = offset + len;
    uint64_t first = (offset + lbs - 1) / lbs * lbs, last = end / lbs * lbs;
    int r;

    if (first >= last)
        return bs_target_zero_by_writing(t, offset, len);
    if (first > offset && (r = bs_target_zero_by_writing(t, offset, first - offset)) < 0)
        return r;
    if (last < end && (r = bs_target_zero_by_writing(t, last, end - last)) < 0)
        return r;
    /* Issued on the exclusive descriptor: the kernel then drops the cached
     * pages of the range itself rather than asking for a claim. */
    uint64_t range[2] = { first, last - first };
    if (ioctl(t->fd, BLKZEROOUT, range) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOTTY)
        return -errno;
    return bs_target_zero_by_writing(t, first, last - first);
}

const struct bs_target_ops bs_target_bdev_ops = {
    .name = "block device",
    .open = bdev_open,
    .write = bs_target_fd_write,
    .read = bs_target_fd_read,
    .zero = bdev_zero,
    .flush = bs_target_fd_flush,
    .writeback = bs_target_fd_writeback,
    .close = bs_target_fd_close,
};
