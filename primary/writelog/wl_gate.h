/* The write gate of the writelog filter (docs/epochs.md, section 2.1): the
 * instant a seal happens, and which writes were in flight then.
 *
 * The gate is a counter; every write enters under its current value e and
 * is counted in inflight[e & 1] until it leaves.  A seal turns the gate
 * (that is its instant T), waits for the old parity's writes to drain, and
 * then settles the gate.  A write that enters a turned but unsettled gate
 * waits (bounded) for the settle, uncounted, so that nothing written after
 * T reaches the disk before the seal has fixed the epoch's image.
 *
 * Threads: enter/leave from any number of writers at once; with the gate
 * settled they cost two atomic additions and three loads, no lock, no
 * allocation, no system call.  turn/drain/settle belong to one sealing
 * thread at a time.
 */
#ifndef BLKSHIP_WRITELOG_WL_GATE_H
#define BLKSHIP_WRITELOG_WL_GATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct wl_gate {
    _Atomic uint64_t gate;        /* turned by each seal */
    _Atomic uint64_t settled;     /* the newest gate value writes may pass */
    _Atomic uint64_t inflight[2]; /* writes entered under each parity, not yet left */
    pthread_mutex_t lock;         /* waits for the settle only */
    pthread_cond_t cond;
};

/* Gate 0, settled, nothing in flight.  Returns 0 or -errno. */
int wl_gate_init(struct wl_gate *g);
void wl_gate_destroy(struct wl_gate *g);

/* Milliseconds of CLOCK_MONOTONIC (for deadlines). */
uint64_t wl_gate_now_ms(void);

/* A writer enters: returns the gate value e it is counted under.  When the
 * gate is turned but not settled it waits, uncounted, until the settle or
 * until *deadline_ms (set to now + wait_ms on the first wait when 0).  On
 * timeout it forces the gate settled (the seal then learns it, see
 * wl_gate_settle) and sets *forced.  Never blocks when the gate is settled. */
uint64_t wl_gate_enter(struct wl_gate *g, uint32_t wait_ms, uint64_t *deadline_ms, bool *forced);
/* The writer counted under e leaves.  Never blocks. */
void wl_gate_leave(struct wl_gate *g, uint64_t e);

/* Sealing thread.  Turns the gate: returns the old value (writes entered
 * under it were in flight at the turn or completed before it).  With
 * settle_now the new value is settled at once (no writer ever waits: the
 * historical getw, and seals without copy-before-write). */
uint64_t wl_gate_turn(struct wl_gate *g, bool settle_now);
/* Sealing thread.  Waits until no write of parity `parity` is in flight,
 * polling, until deadline_ms.  True when drained. */
bool wl_gate_drain(struct wl_gate *g, unsigned parity, uint64_t deadline_ms);
/* Sealing thread.  Settles the gate at its current value and wakes the
 * writers waiting for it.  Returns true when a writer's wait timed out
 * first and it went on before the settle (the epoch cannot be trusted). */
bool wl_gate_settle(struct wl_gate *g);

static inline uint64_t wl_gate_value(struct wl_gate *g)
{
    return atomic_load(&g->gate);
}

static inline uint64_t wl_gate_inflight(struct wl_gate *g, unsigned parity)
{
    return atomic_load(&g->inflight[parity & 1]);
}

#endif
