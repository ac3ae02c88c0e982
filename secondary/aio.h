/* Asynchronous direct writes with the kernel's native AIO (io_submit), with
 * completions delivered to a libuv loop through an eventfd.
 *
 * A direct write to a block device completes in the kernel without a
 * thread: the loop can keep many in flight (one io_submit each), where
 * libuv's thread pool would run at most four and buffered writes would
 * wait for writeback.  Only for file descriptors opened with O_DIRECT;
 * durability still needs an fdatasync after the completions.
 */
#ifndef BLKSHIP_SECONDARY_AIO_H
#define BLKSHIP_SECONDARY_AIO_H

#include <linux/aio_abi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct bs_aio_req;
/* res: bytes written, or -errno. */
typedef void (*bs_aio_cb)(struct bs_aio_req *req, int64_t res);

struct bs_aio_req {
    struct iocb iocb;
    bs_aio_cb cb;
};

struct bs_aio {
    aio_context_t ctx;
    int efd;
    uv_poll_t poll;
    unsigned depth;
    unsigned inflight;
    bool open;
};

/* Sets up a context for up to depth writes in flight.  Returns 0 or
 * -errno (the kernel may refuse: /proc/sys/fs/aio-max-nr). */
int bs_aio_init(struct bs_aio *a, uv_loop_t *loop, unsigned depth);
/* Starts writing len bytes of buf at off of fd; cb runs on the loop when
 * it completes.  buf must stay untouched until then.  Returns 0 or -errno
 * (then cb will not run). */
int bs_aio_pwrite(struct bs_aio *a, struct bs_aio_req *req, int fd, const void *buf, size_t len,
                  uint64_t off, bs_aio_cb cb);
/* Waits for the writes in flight (their callbacks do not run), then
 * releases the context and closes the poll handle: run the loop once more
 * afterwards.  No-op if not open. */
void bs_aio_close(struct bs_aio *a);

#endif
