/* Threads a unit test starts, for cmocka tests whose threads use what the
 * teardown destroys: the teardown sets stop_all and calls join_all(), so
 * that they are stopped and joined even when an assertion failed halfway
 * (cmocka longjmps out of the test).  Give the threads static arguments
 * for the same reason.  Include after <cmocka.h>, from one file of a test
 * program. */
#ifndef BLKSHIP_TESTS_UNIT_TEST_THREADS_H
#define BLKSHIP_TESTS_UNIT_TEST_THREADS_H

#include <pthread.h>
#include <stdatomic.h>

static pthread_t threads[8];
static unsigned nthreads;
static atomic_bool stop_all; /* set by the teardown: threads that loop must stop */

/* Starts fn(arg) on a new thread; fails the test if it cannot. */
static inline void spawn(void *(*fn)(void *), void *arg)
{
    assert_true(nthreads < sizeof(threads) / sizeof(threads[0]));
    assert_int_equal(pthread_create(&threads[nthreads], NULL, fn, arg), 0);
    nthreads++;
}

/* Joins every thread spawn() started. */
static inline void join_all(void)
{
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
}

#endif
