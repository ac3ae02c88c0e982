/* Unit tests for the secondary's kernel-AIO writer (secondary/aio.c), on a
 * real file opened O_DIRECT in the current directory (the build tree, on a
 * disk file system: tmpfs may refuse O_DIRECT). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "secondary/aio.h"

#define BLK 4096u
#define NWRITES 16u

struct fixture {
    char path[64];
    int fd;         /* O_DIRECT */
    int plain_fd;   /* for checking what landed */
    uv_loop_t loop;
    struct bs_aio aio;
    uint8_t *bufs;  /* NWRITES aligned blocks */
};

struct req {
    struct bs_aio_req aio;
    int64_t res;
    int *done;
};

static void on_done(struct bs_aio_req *r, int64_t res)
{
    struct req *q = (struct req *)r;

    q->res = res;
    (*q->done)++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->path, sizeof(f->path), "test-aio.XXXXXX");
    int tmp = mkstemp(f->path);
    assert_true(tmp >= 0);
    assert_int_equal(ftruncate(tmp, (off_t)NWRITES * 2 * BLK), 0);
    close(tmp);
    f->plain_fd = open(f->path, O_RDWR);
    assert_true(f->plain_fd >= 0);
    f->fd = open(f->path, O_RDWR | O_DIRECT);
    if (f->fd < 0) {
        int e = errno;
        unlink(f->path);
        print_message("O_DIRECT is refused in the current directory (%s)\n", strerror(e));
        free(f);
        return -1;
    }
    assert_int_equal(posix_memalign((void **)&f->bufs, BLK, (size_t)NWRITES * BLK), 0);
    for (unsigned i = 0; i < NWRITES * BLK; i++)
        f->bufs[i] = (uint8_t)(i / BLK * 31 + i % 251 + 1);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(bs_aio_init(&f->aio, &f->loop, NWRITES), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    bs_aio_close(&f->aio);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->fd);
    close(f->plain_fd);
    unlink(f->path);
    free(f->bufs);
    free(f);
    return 0;
}

static void run_until(struct fixture *f, const int *done, int want)
{
    for (int spins = 0; *done < want && spins < 10000; spins++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(*done, want);
}

/* Submits NWRITES block writes of the fixture's buffers, block i at block
 * i * stride of the file; each counts into *done when it completes. */
static void submit_all(struct fixture *f, struct req *q, unsigned stride, int *done)
{
    for (unsigned i = 0; i < NWRITES; i++) {
        q[i] = (struct req){ .res = -1, .done = done };
        assert_int_equal(bs_aio_pwrite(&f->aio, &q[i].aio, f->fd, f->bufs + i * BLK, BLK,
                                       (uint64_t)i * stride * BLK, on_done),
                         0);
    }
}

/* Every write completes with its length, once, and its bytes are in the
 * file at its offset (every other block, so that nothing is contiguous). */
static void test_writes_land(void **state)
{
    struct fixture *f = *state;
    struct req q[NWRITES];
    uint8_t back[BLK];
    int done = 0;

    submit_all(f, q, 2, &done);
    assert_int_equal(f->aio.inflight, NWRITES);
    run_until(f, &done, NWRITES);
    assert_int_equal(f->aio.inflight, 0);
    for (unsigned i = 0; i < NWRITES; i++) {
        assert_int_equal(q[i].res, BLK);
        assert_int_equal(pread(f->plain_fd, back, BLK, (off_t)i * 2 * BLK), BLK);
        assert_memory_equal(back, f->bufs + i * BLK, BLK);
        assert_int_equal(pread(f->plain_fd, back, BLK, (off_t)(i * 2 + 1) * BLK), BLK);
        for (unsigned j = 0; j < BLK; j++)
            assert_int_equal(back[j], 0);
    }
}

/* No more than depth writes are taken; the next one is refused without a
 * callback, and is accepted again once one has completed. */
static void test_depth_limit(void **state)
{
    struct fixture *f = *state;
    struct req q[NWRITES + 1];
    int done = 0;

    submit_all(f, q, 1, &done);
    q[NWRITES] = (struct req){ .res = -1, .done = &done };
    assert_int_equal(bs_aio_pwrite(&f->aio, &q[NWRITES].aio, f->fd, f->bufs, BLK, 0, on_done),
                     -EAGAIN);
    run_until(f, &done, NWRITES);
    assert_int_equal(bs_aio_pwrite(&f->aio, &q[NWRITES].aio, f->fd, f->bufs, BLK, 0, on_done), 0);
    run_until(f, &done, NWRITES + 1);
    assert_int_equal(q[NWRITES].res, BLK);
}

/* A buffer that direct I/O cannot use fails with EINVAL, at submission or
 * in the callback, and changes nothing in the file. */
static void test_misaligned_fails(void **state)
{
    struct fixture *f = *state;
    struct req q = { .res = 0 };
    uint8_t back[BLK];
    int done = 0, r;

    q.done = &done;
    r = bs_aio_pwrite(&f->aio, &q.aio, f->fd, f->bufs + 1, BLK, 0, on_done);
    if (r == 0) {
        run_until(f, &done, 1);
        assert_int_equal(q.res, -EINVAL);
    } else {
        assert_int_equal(r, -EINVAL);
        assert_int_equal(done, 0);
    }
    assert_int_equal(f->aio.inflight, 0);
    assert_int_equal(pread(f->plain_fd, back, BLK, 0), BLK);
    for (unsigned j = 0; j < BLK; j++)
        assert_int_equal(back[j], 0);
}

/* Closing with writes in flight waits for them: their data is in the file
 * afterwards, and their callbacks never run (their owners are going away). */
static void test_close_waits(void **state)
{
    struct fixture *f = *state;
    struct req q[NWRITES];
    uint8_t back[BLK];
    int done = 0;

    submit_all(f, q, 1, &done);
    bs_aio_close(&f->aio);
    assert_int_equal(f->aio.inflight, 0);
    assert_int_equal(bs_aio_pwrite(&f->aio, &q[0].aio, f->fd, f->bufs, BLK, 0, on_done), -EAGAIN);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(done, 0);
    for (unsigned i = 0; i < NWRITES; i++) {
        assert_int_equal(pread(f->plain_fd, back, BLK, (off_t)i * BLK), BLK);
        assert_memory_equal(back, f->bufs + i * BLK, BLK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_land, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misaligned_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
