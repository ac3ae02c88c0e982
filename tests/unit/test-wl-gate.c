/* Unit tests for the write gate (primary/writelog/wl_gate.c): writes count
 * under the parity of the gate they entered, a drain waits for exactly the
 * old parity (bounded), writes meeting a turned gate wait uncounted for
 * the settle (bounded, and the seal learns when one gave up), and under a
 * stream of seals no write of the old gate is running after a drain and
 * none of the new gate runs before the settle. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/test-threads.h"

#include "primary/writelog/wl_gate.h"

static struct wl_gate g;


static int setup(void **state)
{
    (void)state;
    return wl_gate_init(&g) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&stop_all, true);
    /* A writer waiting for a settle that will not come: let it through. */
    wl_gate_settle(&g);
    join_all();
    atomic_store(&stop_all, false);
    wl_gate_destroy(&g);
    return 0;
}

static uint64_t enter(uint32_t wait_ms, bool *forced)
{
    uint64_t deadline = 0;

    *forced = false;
    return wl_gate_enter(&g, wait_ms, &deadline, forced);
}

static void test_parity(void **state)
{
    bool forced;

    (void)state;
    uint64_t a = enter(100, &forced);
    assert_int_equal(a, 0);
    assert_false(forced);
    assert_int_equal(wl_gate_inflight(&g, 0), 1);
    assert_int_equal(wl_gate_inflight(&g, 1), 0);
    assert_int_equal(wl_gate_turn(&g, true), 0);
    uint64_t b = enter(100, &forced);
    assert_int_equal(b, 1);
    assert_int_equal(wl_gate_inflight(&g, 0), 1); /* a is still in flight */
    assert_int_equal(wl_gate_inflight(&g, 1), 1);
    wl_gate_leave(&g, a);
    assert_int_equal(wl_gate_inflight(&g, 0), 0);
    wl_gate_leave(&g, b);
    assert_int_equal(wl_gate_inflight(&g, 1), 0);
    assert_int_equal(wl_gate_value(&g), 1);
}

struct writer {
    useconds_t hold;
    uint32_t wait_ms;
    atomic_bool entered, left;
    uint64_t e;
    bool forced;
};

static void *hold_write(void *arg)
{
    struct writer *w = arg;

    w->e = enter(w->wait_ms, &w->forced);
    atomic_store(&w->entered, true);
    usleep(w->hold);
    atomic_store(&w->left, true);
    wl_gate_leave(&g, w->e);
    return NULL;
}

/* Starts a writer that holds its write for w->hold, once it has entered. */
static void start_held(struct writer *w)
{
    spawn(hold_write, w);
    while (!atomic_load(&w->entered))
        usleep(100);
}

static void test_drain_waits_for_the_old_parity(void **state)
{
    static struct writer w;
    w = (struct writer){ .hold = 80000, .wait_ms = 1000 };
    bool forced;

    (void)state;
    start_held(&w);
    uint64_t t0 = wl_gate_now_ms();
    uint64_t old = wl_gate_turn(&g, true);
    /* A write of the new parity does not hold the drain up. */
    uint64_t n = enter(100, &forced);
    assert_true(wl_gate_drain(&g, (unsigned)(old & 1), t0 + 5000));
    assert_true(atomic_load(&w.left));
    assert_true(wl_gate_now_ms() - t0 >= 60);
    wl_gate_leave(&g, n);
    join_all();
}

static void test_drain_times_out(void **state)
{
    static struct writer w;
    w = (struct writer){ .hold = 300000, .wait_ms = 1000 };

    (void)state;
    start_held(&w);
    uint64_t t0 = wl_gate_now_ms();
    uint64_t old = wl_gate_turn(&g, true);
    assert_false(wl_gate_drain(&g, (unsigned)(old & 1), t0 + 30));
    uint64_t took = wl_gate_now_ms() - t0;
    assert_true(took >= 30 && took < 250);
    assert_false(atomic_load(&w.left));
    join_all();
    assert_true(wl_gate_drain(&g, (unsigned)(old & 1), wl_gate_now_ms() + 10));
}

static void test_new_writes_wait_for_the_settle(void **state)
{
    static struct writer w;
    w = (struct writer){ .hold = 0, .wait_ms = 5000 };

    (void)state;
    uint64_t old = wl_gate_turn(&g, false);
    spawn(hold_write, &w);
    usleep(50000);
    assert_false(atomic_load(&w.entered));
    /* Waiting uncounted: a drain of either parity is not held up by it. */
    assert_int_equal(wl_gate_inflight(&g, (unsigned)(old + 1)), 0);
    assert_false(wl_gate_settle(&g));
    join_all();
    assert_true(atomic_load(&w.entered));
    assert_int_equal(w.e, old + 1);
    assert_false(w.forced);
}

static void test_a_wait_that_times_out_forces_the_gate(void **state)
{
    static struct writer w;
    w = (struct writer){ .hold = 0, .wait_ms = 30 };

    (void)state;
    uint64_t old = wl_gate_turn(&g, false);
    uint64_t t0 = wl_gate_now_ms();
    spawn(hold_write, &w);
    join_all();
    uint64_t took = wl_gate_now_ms() - t0;
    assert_true(w.forced);
    assert_int_equal(w.e, old + 1);
    assert_true(took >= 25 && took < 1000);
    /* The seal learns that a write went on before it settled. */
    assert_true(wl_gate_settle(&g));
    /* The next seal that nobody waits out is clean. */
    wl_gate_turn(&g, false);
    assert_false(wl_gate_settle(&g));
}

#define WRITERS 3
#define SEALS 300

struct stress {
    atomic_bool stop;
    _Atomic uint64_t active[WRITERS]; /* gate + 1 of the write running, 0 none */
    atomic_uint writes;
};

struct stress_arg {
    struct stress *s;
    unsigned i;
};

static void *stress_writer(void *arg)
{
    struct stress *s = ((struct stress_arg *)arg)->s;
    unsigned i = ((struct stress_arg *)arg)->i;
    bool forced;

    while (!atomic_load(&s->stop) && !atomic_load(&stop_all)) {
        uint64_t e = enter(10000, &forced);
        atomic_store(&s->active[i], e + 1);
        for (volatile int k = 0; k < 200; k++)
            ;
        atomic_store(&s->active[i], 0);
        wl_gate_leave(&g, e);
        atomic_fetch_add(&s->writes, 1);
    }
    return NULL;
}

static void test_seals_during_writes(void **state)
{
    static struct stress s;
    static struct stress_arg args[WRITERS];

    (void)state;
    for (unsigned i = 0; i < WRITERS; i++) {
        args[i] = (struct stress_arg){ &s, i };
        spawn(stress_writer, &args[i]);
    }
    for (int n = 0; n < SEALS; n++) {
        uint64_t old = wl_gate_turn(&g, false);
        assert_true(wl_gate_drain(&g, (unsigned)(old & 1), wl_gate_now_ms() + 5000));
        for (unsigned i = 0; i < WRITERS; i++) {
            uint64_t a = atomic_load(&s.active[i]);
            /* Drained: no write of the old gate runs; unsettled: none of
             * the new one has started. */
            assert_true(a != old + 1);
            assert_true(a != old + 2);
        }
        assert_false(wl_gate_settle(&g));
        usleep(200);
    }
    atomic_store(&s.stop, true);
    join_all();
    assert_true(atomic_load(&s.writes) > SEALS);
    assert_int_equal(wl_gate_inflight(&g, 0) + wl_gate_inflight(&g, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_waits_for_the_old_parity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_writes_wait_for_the_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_wait_that_times_out_forces_the_gate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_seals_during_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
