/* The token bucket (see ratelimit.h). */
#include "common/ratelimit.h"

#include <math.h>

static void refill(struct bs_rate *r, uint64_t now_ns)
{
    if (now_ns > r->last_ns) {
        r->tokens += (double)r->rate * (double)(now_ns - r->last_ns) / 1e9;
        if (r->tokens > (double)r->burst)
            r->tokens = (double)r->burst;
    }
    r->last_ns = now_ns;
}

void bs_rate_init(struct bs_rate *r, uint64_t rate, uint64_t min_burst, uint64_t now_ns)
{
    uint64_t burst = rate / 20;

    if (burst < min_burst)
        burst = min_burst;
    *r = (struct bs_rate){ .rate = rate, .burst = burst, .tokens = (double)burst,
                           .last_ns = now_ns };
}

bool bs_rate_take(struct bs_rate *r, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ms)
{
    double missing;

    if (r->rate == 0)
        return true;
    refill(r, now_ns);
    if (r->tokens >= (double)bytes) {
        r->tokens -= (double)bytes;
        return true;
    }
    missing = (double)bytes - r->tokens;
    /* Rounded up: after the wait the bucket holds the bytes. */
    *wait_ms = (uint64_t)ceil(missing * 1000.0 / (double)r->rate);
    if (*wait_ms == 0)
        *wait_ms = 1;
    r->waits++;
    return false;
}

void bs_rate_refund(struct bs_rate *r, uint64_t bytes)
{
    if (r->rate == 0)
        return;
    r->tokens += (double)bytes;
    if (r->tokens > (double)r->burst)
        r->tokens = (double)r->burst;
}
