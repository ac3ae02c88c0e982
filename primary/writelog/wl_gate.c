/* The write gate (see wl_gate.h).
 *
 * Ordering: a writer increments inflight[e & 1] and then re-reads the gate;
 * the sealer turns the gate and then reads inflight.  Both are sequentially
 * consistent atomics, so either the writer sees the turn (and undoes its
 * count, then enters under the new value) or the sealer sees its count
 * (and waits for it).  The settle is published with `settled`, stored
 * after everything the seal did: a writer that reads it passes with that
 * state visible.
 */
#include "primary/writelog/wl_gate.h"

#include <errno.h>
#include <time.h>

int wl_gate_init(struct wl_gate *g)
{
    pthread_condattr_t ca;
    int r;

    atomic_init(&g->gate, 0);
    atomic_init(&g->settled, 0);
    atomic_init(&g->inflight[0], 0);
    atomic_init(&g->inflight[1], 0);
    r = pthread_mutex_init(&g->lock, NULL);
    if (r)
        return -r;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    r = pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r) {
        pthread_mutex_destroy(&g->lock);
        return -r;
    }
    return 0;
}

void wl_gate_destroy(struct wl_gate *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

uint64_t wl_gate_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits, uncounted, until e is settled or the deadline passes; on timeout
 * settles e itself so that the writers behind it do not each wait too. */
static void wait_settled(struct wl_gate *g, uint64_t e, uint32_t wait_ms, uint64_t *deadline_ms,
                         bool *forced)
{
    if (!*deadline_ms)
        *deadline_ms = wl_gate_now_ms() + wait_ms;
    struct timespec ts = { .tv_sec = (time_t)(*deadline_ms / 1000),
                           .tv_nsec = (long)(*deadline_ms % 1000) * 1000000 };

    pthread_mutex_lock(&g->lock);
    while (atomic_load(&g->settled) < e) {
        if (pthread_cond_timedwait(&g->cond, &g->lock, &ts) == ETIMEDOUT &&
            atomic_load(&g->settled) < e) {
            atomic_store(&g->settled, e);
            *forced = true;
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
}

uint64_t wl_gate_enter(struct wl_gate *g, uint32_t wait_ms, uint64_t *deadline_ms, bool *forced)
{
    for (;;) {
        uint64_t e = atomic_load(&g->gate);

        atomic_fetch_add(&g->inflight[e & 1], 1);
        if (atomic_load(&g->gate) != e) {
            /* A seal turned the gate meanwhile: enter under the new value. */
            atomic_fetch_sub(&g->inflight[e & 1], 1);
            continue;
        }
        if (atomic_load(&g->settled) >= e)
            return e;
        /* Turned, not settled: wait uncounted (the drain of the old parity
         * never waits for us), then enter again. */
        atomic_fetch_sub(&g->inflight[e & 1], 1);
        wait_settled(g, e, wait_ms, deadline_ms, forced);
    }
}

void wl_gate_leave(struct wl_gate *g, uint64_t e)
{
    atomic_fetch_sub(&g->inflight[e & 1], 1);
}

uint64_t wl_gate_turn(struct wl_gate *g, bool settle_now)
{
    uint64_t old = atomic_load(&g->gate);

    /* Settled ahead of the turn: no writer ever sees the gate unsettled. */
    if (settle_now)
        atomic_store(&g->settled, old + 1);
    atomic_fetch_add(&g->gate, 1);
    return old;
}

bool wl_gate_drain(struct wl_gate *g, unsigned parity, uint64_t deadline_ms)
{
    long ns = 20000; /* 20 µs, doubling to 1 ms */

    while (atomic_load(&g->inflight[parity & 1]) != 0) {
        if (wl_gate_now_ms() >= deadline_ms)
            return false;
        nanosleep(&(struct timespec){ 0, ns }, NULL);
        if (ns < 1000000)
            ns *= 2;
    }
    return true;
}

bool wl_gate_settle(struct wl_gate *g)
{
    uint64_t e = atomic_load(&g->gate);
    bool forced;

    pthread_mutex_lock(&g->lock);
    forced = atomic_load(&g->settled) >= e;
    atomic_store(&g->settled, e);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return forced;
}
