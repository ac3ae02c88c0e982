/* Frame compression for slow links (--compress zstd[:LEVEL]): the
 * primary compresses a data frame's payload when that pays, the secondary
 * decompresses it and checks that it is exactly what the frame says.
 * Neither allocates per frame: each side makes its context once. */
#ifndef BS_COMMON_COMPRESS_H
#define BS_COMMON_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS_COMPRESS_LEVEL_DEFAULT 3
#define BS_COMPRESS_LEVEL_MIN (-7)
#define BS_COMPRESS_LEVEL_MAX 19
/* A payload is sent compressed only when that saves at least 1/16 of it. */
#define BS_COMPRESS_MIN_SAVING_SHIFT 4
/* After a payload that did not pay, the next 1, 2, 4 ... up to this many
 * are sent as they are without trying (random data costs no more than a
 * try in 64); one that pays resets it. */
#define BS_COMPRESS_BACKOFF_MAX 64u

/* Parses "none", "zstd" or "zstd:LEVEL" into *level (0 for none).  Returns
 * 0, or -1 with a message printed that names `name`. */
int bs_compress_parse(const char *name, const char *arg, int *level, bool *on);

struct bs_zcomp {
    void *cctx;              /* ZSTD_CCtx */
    int level;
    unsigned skip;           /* payloads still to send without trying */
    unsigned backoff;        /* the skip after the next one that does not pay */
    uint64_t raw_bytes;      /* data payload bytes offered, compressed or not */
    uint64_t wire_bytes;     /* what they took on the link (payloads only) */
    uint64_t compressed;     /* payloads sent compressed */
    uint64_t not_paid;       /* payloads tried that did not pay */
    uint64_t skipped;        /* payloads sent without a try (backoff) */
    uint64_t no_buffer;      /* payloads sent as they are: no buffer free to build one in */
};

/* 0 or -ENOMEM. */
int bs_zcomp_init(struct bs_zcomp *z, int level);
void bs_zcomp_free(struct bs_zcomp *z);
/* What dst must hold for a payload of len bytes. */
size_t bs_zcomp_bound(size_t len);
/* Counts a payload of len bytes sent as it is without a try. */
static inline void bs_zcomp_note_raw(struct bs_zcomp *z, size_t len)
{
    z->raw_bytes += len;
    z->wire_bytes += len;
}
/* Compresses src (len bytes) into dst (cap bytes, at least
 * bs_zcomp_bound(len)) when the backoff allows; returns the compressed
 * size if it saves enough, else 0 (send src as it is).  Counts either way. */
size_t bs_zcomp_payload(struct bs_zcomp *z, void *dst, size_t cap, const void *src, size_t len);

struct bs_zdec {
    void *dctx;              /* ZSTD_DCtx */
};

int bs_zdec_init(struct bs_zdec *d);
void bs_zdec_free(struct bs_zdec *d);
/* Decompresses src (len bytes), which must be exactly one zstd frame that
 * names its content size, a non-zero multiple of `unit` of at most cap
 * bytes.  Returns the size, or -EPROTO with *why (nothing of dst is to be
 * used then). */
long bs_zdec_payload(struct bs_zdec *d, void *dst, size_t cap, size_t unit, const void *src,
                     size_t len, const char **why);

#endif
