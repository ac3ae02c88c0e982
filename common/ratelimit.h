/* A token bucket for a byte rate (the primary's --rate-limit): bytes may go
 * while the bucket holds tokens for them; it refills at `rate` bytes per
 * second up to `burst`.  Time is given by the caller in nanoseconds of a
 * monotonic clock (uv_hrtime), so the module has no clock of its own and
 * its tests need none.  A rate of 0 means no limit. */
#ifndef BLKSHIP_COMMON_RATELIMIT_H
#define BLKSHIP_COMMON_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct bs_rate {
    uint64_t rate;          /* bytes per second; 0: unlimited */
    uint64_t burst;         /* the most the bucket holds */
    double tokens;          /* may go below 0 by a refund's opposite, never above burst */
    uint64_t last_ns;
    uint64_t waits;         /* times a caller found it empty */
};

/* Sets the rate; the bucket starts full.  burst 0: the larger of 50 ms
 * of the rate and min_burst (which must hold the largest single take). */
void bs_rate_init(struct bs_rate *r, uint64_t rate, uint64_t min_burst, uint64_t now_ns);
/* Takes `bytes` if the bucket holds them (true), or takes nothing and
 * returns false, with *wait_ms the time until it will. */
bool bs_rate_take(struct bs_rate *r, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ms);
/* Gives back bytes taken but not sent (a frame that went as a ZERO range,
 * a read that failed). */
void bs_rate_refund(struct bs_rate *r, uint64_t bytes);

#endif
