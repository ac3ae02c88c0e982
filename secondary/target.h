/* Replica targets: where the secondary writes.  One backend per kind of
 * target (regular file, block device, RBD image), each behind the same
 * operations, so that the apply pipeline in secondary.c never touches a
 * descriptor and a new kind of target is one more file. */
#ifndef BLKSHIP_SECONDARY_TARGET_H
#define BLKSHIP_SECONDARY_TARGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bs_target;

/* bs_target_ops.write flags. */
#define BS_TARGET_CACHED 1u /* the caller wants the page cache even where
                               direct I/O would do (small writes on the
                               event loop: a copy is cheaper than a
                               round trip to the disk) */

/* Every operation but open returns 0 or -errno.  read, write, zero, flush
 * and writeback block and may run on any thread, several at once on
 * disjoint ranges; none of them allocates.  A backend may return from
 * write and zero before the data is on the target (an asynchronous
 * submission) and report its failure from any later call: only a flush
 * that returned 0 vouches for what was written before it. */
struct bs_target_ops {
    const char *name;
    /* Opens t->path (t->ops already set) and fills in size_bytes, the block
     * sizes and the direct I/O limits.  Logs why it refuses. */
    int (*open)(struct bs_target *t);
    /* Writes all of buf at offset, directly where bs_target_direct_ok
     * allows it and flags do not say BS_TARGET_CACHED, otherwise through
     * the page cache (which handles any 512-byte alignment, with a
     * read-modify-write of partial blocks). */
    int (*write)(struct bs_target *t, const void *buf, size_t len, uint64_t offset,
                 unsigned flags);
    /* Reads len bytes at offset into buf, directly where
     * bs_target_direct_ok allows it (checksums read the whole disk: the
     * page cache would only be flushed of what the replica needs).  It
     * sees every write that returned before it began. */
    int (*read)(struct bs_target *t, void *buf, size_t len, uint64_t offset);
    /* Makes [offset, offset + len) read as zeroes.  Any 512-byte
     * alignment; the caller bounds len (the secondary sends at most
     * BS_TARGET_ZERO_CHUNK). */
    int (*zero)(struct bs_target *t, uint64_t offset, uint64_t len);
    /* Everything written or zeroed before the call is durable on return. */
    int (*flush)(struct bs_target *t);
    /* Optional (NULL: nothing to do): starts writing back cached data
     * without waiting for it.  Only a hint; errors surface in flush. */
    void (*writeback)(struct bs_target *t);
    /* Releases what open took (the exclusive claim of a device).
     * Idempotent. */
    void (*close)(struct bs_target *t);
};

/* The largest range one zero call is given: the secondary splits ZERO
 * frames (which may cover the whole disk) into jobs of this size, each
 * short enough to leave the thread pool to the writes and flushes
 * queued behind it. */
#define BS_TARGET_ZERO_CHUNK (64ull << 20)

/* What opening a target needs beyond its path (RBD's cluster); NULL
 * members take the defaults. */
struct bs_target_cfg {
    const char *ceph_conf; /* default BS_CEPH_CONF_DEFAULT */
    const char *ceph_id;   /* the client name without "client.", default "admin" */
};
#define BS_CEPH_CONF_DEFAULT "/etc/ceph/ceph.conf"
#define BS_CEPH_ID_DEFAULT "admin"

struct bs_target {
    const struct bs_target_ops *ops;
    char path[4096];
    const char *ceph_conf, *ceph_id; /* from bs_target_cfg, defaults applied */
    /* The backend may wait on a network (RBD): never called on an event
     * loop, not even for a small write. */
    bool remote;
    void *priv; /* the backend's own state, for those that are not descriptors */
    uint64_t size_bytes;
    uint32_t logical_block;   /* smallest unit the target addresses */
    uint32_t physical_block;  /* the unit it writes without a read-modify-write */
    /* Direct I/O: a write goes direct only if its offset and length are
     * multiples of dio_align and its buffer of dio_mem_align; dio_align 0
     * means never. */
    uint32_t dio_align;
    uint32_t dio_mem_align;
    /* Descriptor-based backends (file, block device): fd is the buffered
     * descriptor (for a block device the exclusive claim), direct_fd the
     * same target opened O_DIRECT or -1.  Both live until close. */
    int fd;
    int direct_fd;
    /* What write did, for the logs: counted with relaxed atomics. */
    _Atomic uint64_t direct_writes;
    _Atomic uint64_t cached_writes;
};

extern const struct bs_target_ops bs_target_file_ops;
extern const struct bs_target_ops bs_target_bdev_ops;
extern const struct bs_target_ops bs_target_rbd_ops;

/* Picks the backend from path (rbd:POOL/IMAGE, else the type of the file)
 * and opens it read-write (a block device exclusively, an RBD image under
 * its exclusive lock).  cfg may be NULL.  Returns 0, or -errno with a
 * clear message logged: -EBUSY for a device that is mounted or claimed by
 * another program.  On failure t needs no close. */
int bs_target_open(struct bs_target *t, const char *path, const struct bs_target_cfg *cfg);

/* Splits rbd:POOL/IMAGE; -EINVAL if path is not of that form. */
int bs_target_rbd_parse(const char *path, char *pool, size_t pool_len, char *image,
                        size_t image_len);
/* How long (ms) the oldest operation in flight on an RBD target has
 * waited; 0 when none is, or for other targets. */
uint64_t bs_target_rbd_stalled_ms(struct bs_target *t);

/* Whether a write of len bytes at offset from buf may go O_DIRECT: pure
 * arithmetic, decided before submission, so that no write is ever sent
 * where the kernel would refuse it. */
static inline bool bs_target_direct_ok(const struct bs_target *t, const void *buf, size_t len,
                                       uint64_t offset)
{
    return t->dio_align && offset % t->dio_align == 0 && len % t->dio_align == 0 &&
           (uintptr_t)buf % t->dio_mem_align == 0;
}

/* Whether [offset, offset + len) covers whole logical blocks: such a write
 * through the page cache needs no read of the disk first. */
static inline bool bs_target_block_aligned(const struct bs_target *t, size_t len,
                                           uint64_t offset)
{
    return offset % t->logical_block == 0 && len % t->logical_block == 0;
}

/* Helpers the descriptor-based backends share (target.c). */

/* Writes all of buf at offset on fd; short writes are continued, EINTR
 * retried.  Returns 0 or -errno. */
int bs_target_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);
/* The write op of a descriptor backend: direct_fd when bs_target_direct_ok
 * and not BS_TARGET_CACHED, else fd. */
int bs_target_fd_write(struct bs_target *t, const void *buf, size_t len, uint64_t offset,
                       unsigned flags);
/* The read op of a descriptor backend: direct_fd when bs_target_direct_ok,
 * else fd; short reads are continued. */
int bs_target_fd_read(struct bs_target *t, void *buf, size_t len, uint64_t offset);
/* Zeroes by writing zero pages through the page cache: the fallback every
 * backend may use, correct at any 512-byte alignment. */
int bs_target_zero_by_writing(struct bs_target *t, uint64_t offset, uint64_t len);
/* fdatasync of fd. */
int bs_target_fd_flush(struct bs_target *t);
/* sync_file_range(SYNC_FILE_RANGE_WRITE) over all of fd. */
void bs_target_fd_writeback(struct bs_target *t);
/* Closes fd and direct_fd. */
void bs_target_fd_close(struct bs_target *t);

#endif
