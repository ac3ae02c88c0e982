/* Copy-before-write store (see wl_cow.h).
 *
 * One mutex guards a linear-probing table of grain -> buffer (deletion by
 * backward shift, so no tombstones build up within an epoch) and a free
 * list of pool buffers.  A copy is made outside the lock: its entry is
 * MAKING meanwhile, and other writes to that grain wait on `made` (they
 * must not reach the disk before the copy is taken).  Ring reads never
 * wait: while the copy is being made its write has not reached the disk.
 * The buffer of a MAKING entry belongs to its maker until it takes the
 * lock again; an epoch closed or broken meanwhile, or the grain read,
 * leaves the entry to the maker, which then discards it.
 */
#include "primary/writelog/wl_cow.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { E_EMPTY = 0, E_MAKING, E_READY };

struct entry {
    uint64_t grain;
    uint64_t gen;       /* the opening it belongs to */
    uint32_t buf;
    uint8_t state;
};

struct wl_cow {
    pthread_mutex_t lock;
    pthread_cond_t made;    /* an entry became READY or went away */
    pthread_cond_t space;   /* a buffer was freed */
    const struct wl_cow_unread_ops *ops;
    void *ctx;
    uint32_t grain_bytes;
    uint32_t nbufs;
    uint8_t *pool;
    uint32_t *free_list;
    uint32_t nfree;
    struct entry *table;
    uint64_t mask;          /* table size - 1 */
    uint64_t gen;           /* increments at every open, close and break */
    bool open;
    bool broken;
    struct wl_cow_stats st;
};

static uint64_t hash(uint64_t g)
{
    g ^= g >> 33;
    g *= 0xff51afd7ed558ccdull;
    g ^= g >> 33;
    return g;
}

static struct entry *lookup(struct wl_cow *c, uint64_t grain)
{
    for (uint64_t i = hash(grain) & c->mask;; i = (i + 1) & c->mask) {
        struct entry *e = &c->table[i];
        if (e->state == E_EMPTY)
            return NULL;
        if (e->grain == grain)
            return e;
    }
}

/* The table never fills: it has twice as many slots as there are
 * buffers, and every entry holds one. */
static struct entry *insert(struct wl_cow *c, uint64_t grain)
{
    uint64_t i = hash(grain) & c->mask;

    while (c->table[i].state != E_EMPTY)
        i = (i + 1) & c->mask;
    c->table[i].grain = grain;
    return &c->table[i];
}

/* Removes e, shifting later entries of its probe run back over it. */
static void remove_entry(struct wl_cow *c, struct entry *e)
{
    uint64_t i = (uint64_t)(e - c->table), j = i;

    for (;;) {
        c->table[i].state = E_EMPTY;
        for (;;) {
            j = (j + 1) & c->mask;
            if (c->table[j].state == E_EMPTY)
                return;
            uint64_t home = hash(c->table[j].grain) & c->mask;
            /* j's entry may move to i only if i lies between its home and j. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        c->table[i] = c->table[j];
        i = j;
    }
}

static void put_buf(struct wl_cow *c, uint32_t buf)
{
    c->free_list[c->nfree++] = buf;
    c->st.bytes_now -= c->grain_bytes;
    pthread_cond_signal(&c->space);
}

/* Drops every READY copy; MAKING ones are left to their makers, who see
 * the generation change. */
static void drop_all(struct wl_cow *c)
{
    uint64_t i = 0;

    while (i <= c->mask) {
        struct entry *e = &c->table[i];
        if (e->state == E_READY) {
            put_buf(c, e->buf);
            remove_entry(c, e); /* may shift another entry into i: look again */
            continue;
        }
        i++;
    }
    c->gen++;
    pthread_cond_broadcast(&c->made);
    pthread_cond_broadcast(&c->space);
}

int wl_cow_create(uint32_t grain_bytes, uint64_t max_bytes, const struct wl_cow_unread_ops *ops,
                  void *ctx, struct wl_cow **out)
{
    struct wl_cow *c;
    uint64_t n = max_bytes / (grain_bytes ? grain_bytes : 1), size = 2;
    pthread_condattr_t ca;

    *out = NULL;
    if (grain_bytes == 0 || n == 0 || n > UINT32_MAX / 2)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    while (size < 2 * n)
        size *= 2;
    c->ops = ops;
    c->ctx = ctx;
    c->grain_bytes = grain_bytes;
    c->nbufs = (uint32_t)n;
    c->pool = malloc((size_t)n * grain_bytes);
    c->free_list = malloc((size_t)n * sizeof(*c->free_list));
    c->table = calloc((size_t)size, sizeof(*c->table));
    if (!c->pool || !c->free_list || !c->table) {
        wl_cow_destroy(c);
        return -ENOMEM;
    }
    c->mask = size - 1;
    for (uint32_t i = 0; i < c->nbufs; i++)
        c->free_list[i] = c->nbufs - 1 - i;
    c->nfree = c->nbufs;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->made, &ca);
    pthread_cond_init(&c->space, &ca);
    pthread_condattr_destroy(&ca);
    *out = c;
    return 0;
}

void wl_cow_destroy(struct wl_cow *c)
{
    if (!c)
        return;
    if (c->table) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->made);
        pthread_cond_destroy(&c->space);
    }
    free(c->pool);
    free(c->free_list);
    free(c->table);
    free(c);
}

void wl_cow_open(struct wl_cow *c, uint64_t epoch)
{
    pthread_mutex_lock(&c->lock);
    drop_all(c);
    c->open = true;
    c->broken = false;
    c->st.epoch = epoch;
    c->st.broken = false;
    pthread_mutex_unlock(&c->lock);
}

void wl_cow_close(struct wl_cow *c)
{
    pthread_mutex_lock(&c->lock);
    drop_all(c);
    c->open = false;
    c->st.epoch = 0;
    pthread_mutex_unlock(&c->lock);
}

static void do_break(struct wl_cow *c)
{
    if (!c->open || c->broken)
        return;
    c->broken = true;
    c->st.broken = true;
    c->st.breaks++;
    drop_all(c);
}

void wl_cow_break(struct wl_cow *c)
{
    pthread_mutex_lock(&c->lock);
    do_break(c);
    pthread_mutex_unlock(&c->lock);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for a free buffer until deadline_ms; false on timeout. */
static bool wait_space(struct wl_cow *c, uint64_t deadline_ms)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline_ms / 1000),
                           .tv_nsec = (long)(deadline_ms % 1000) * 1000000 };

    return pthread_cond_timedwait(&c->space, &c->lock, &ts) != ETIMEDOUT;
}

int wl_cow_preserve(struct wl_cow *c, uint64_t grain, wl_cow_read_fn *read, void *ctx,
                    uint32_t wait_ms)
{
    uint64_t deadline = 0, waited_from = 0;
    bool timed_out = false;
    struct entry *e;
    uint32_t buf;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (!c->open || c->broken) {
            r = -ECANCELED;
            goto out;
        }
        e = lookup(c, grain);
        if ((e && e->state == E_READY && e->gen == c->gen) ||
            (!e && !c->ops->unread(c->ctx, grain))) {
            /* Kept already, or read by the client since the caller looked. */
            r = 0;
            goto out;
        }
        if (e && e->state == E_MAKING) {
            /* Another write is making it (or an earlier epoch's maker has
             * not come back yet): wait, then look again. */
            pthread_cond_wait(&c->made, &c->lock);
            continue;
        }
        if (c->nfree)
            break;
        if (!deadline) {
            deadline = now_ms() + wait_ms;
            waited_from = now_ms();
            c->st.waits++;
        }
        if (timed_out) {
            /* No ring read freed a buffer in time (and the client has not
             * read the grain meanwhile): break the epoch rather than stall
             * the guest. */
            c->st.wait_ms += now_ms() - waited_from;
            do_break(c);
            r = -ECANCELED;
            goto out;
        }
        /* On a timeout, look once more: a read that freed no buffer may
         * have taken the grain out of the unread map meanwhile, and an
         * epoch whose grains are all read must never break. */
        timed_out = !wait_space(c, deadline) && !c->nfree;
    }
    if (deadline)
        c->st.wait_ms += now_ms() - waited_from;
    buf = c->free_list[--c->nfree];
    c->st.bytes_now += c->grain_bytes;
    if (c->st.bytes_now > c->st.bytes_peak)
        c->st.bytes_peak = c->st.bytes_now;
    e = insert(c, grain);
    e->buf = buf;
    e->gen = gen = c->gen;
    e->state = E_MAKING;
    pthread_mutex_unlock(&c->lock);

    r = read(ctx, grain, c->pool + (size_t)buf * c->grain_bytes);

    pthread_mutex_lock(&c->lock);
    e = lookup(c, grain);
    if (r < 0 || gen != c->gen || c->broken) {
        /* A copy that could not be made breaks the epoch, unless the
         * client read the grain meanwhile (it got the disk before this
         * write, and an epoch whose grains are all read must never
         * break); one made for an epoch that ended meanwhile is dropped. */
        put_buf(c, buf);
        remove_entry(c, e);
        if (r < 0 && gen == c->gen && c->ops->unread(c->ctx, grain))
            do_break(c);
        r = -ECANCELED;
    } else if (!c->ops->unread(c->ctx, grain)) {
        /* The client read the grain while the copy was being made: it got
         * the disk before this write, and needs no copy. */
        put_buf(c, buf);
        remove_entry(c, e);
        r = 0;
    } else {
        e->state = E_READY;
        c->st.preserved++;
        r = 0;
    }
    pthread_cond_broadcast(&c->made);
out:
    pthread_mutex_unlock(&c->lock);
    return r;
}

uint64_t wl_cow_overlay(struct wl_cow *c, uint64_t epoch, uint64_t first, uint64_t n, void *buf,
                        uint64_t len, bool done)
{
    uint64_t used = 0;

    pthread_mutex_lock(&c->lock);
    /* A read dispatched for an earlier opening must neither ship this
     * epoch's copies nor take its grains out of the unread map. */
    if (!c->open || epoch != c->st.epoch)
        n = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = i * c->grain_bytes;
        struct entry *e = c->open && !c->broken ? lookup(c, first + i) : NULL;
        /* A copy still being made belongs to a write that has not reached
         * the disk yet (it waits for the copy): what this read found there
         * is the epoch's.  The maker drops the copy once it sees the grain
         * read. */
        if (e && e->state == E_MAKING)
            e = NULL;
        if (e && e->gen == c->gen && off < len) {
            uint64_t k = len - off < c->grain_bytes ? len - off : c->grain_bytes;
            memcpy((uint8_t *)buf + off, c->pool + (size_t)e->buf * c->grain_bytes, k);
            used++;
        }
        if (!done)
            continue;
        /* Under the lock: a write from now on finds the grain read. */
        c->ops->mark_read(c->ctx, first + i);
        if (e && e->gen == c->gen) {
            put_buf(c, e->buf);
            remove_entry(c, e);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return used;
}

bool wl_cow_overlay_part(struct wl_cow *c, uint64_t epoch, uint64_t grain, uint32_t skip,
                         void *buf, uint32_t len)
{
    struct entry *e = NULL;

    pthread_mutex_lock(&c->lock);
    if (c->open && !c->broken && epoch == c->st.epoch && skip < c->grain_bytes &&
        len <= c->grain_bytes - skip)
        e = lookup(c, grain);
    if (e && (e->state != E_READY || e->gen != c->gen))
        e = NULL;
    if (e)
        memcpy(buf, c->pool + (size_t)e->buf * c->grain_bytes + skip, len);
    pthread_mutex_unlock(&c->lock);
    return e != NULL;
}

void wl_cow_get_stats(struct wl_cow *c, struct wl_cow_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}
