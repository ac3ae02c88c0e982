/* zstd behind common/compress.h. */
#include "common/compress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/le.h"
#include "common/opt.h"

int bs_compress_parse(const char *name, const char *arg, int *level, bool *on)
{
    char *end;
    long v;

    if (strcmp(arg, "none") == 0) {
        *on = false;
        *level = 0;
        return 0;
    }
    if (strcmp(arg, "zstd") == 0) {
        *on = true;
        *level = BS_COMPRESS_LEVEL_DEFAULT;
        return 0;
    }
    if (strncmp(arg, "zstd:", 5) == 0 && arg[5]) {
        errno = 0;
        v = strtol(arg + 5, &end, 10);
        if (!errno && !*end && v >= BS_COMPRESS_LEVEL_MIN && v <= BS_COMPRESS_LEVEL_MAX && v != 0) {
            *on = true;
            *level = (int)v;
            return 0;
        }
    }
    bs_usage_error("%s %s: none, zstd or zstd:LEVEL (LEVEL %d to %d, not 0)", name, arg,
                   BS_COMPRESS_LEVEL_MIN, BS_COMPRESS_LEVEL_MAX);
    return -1;
}

int bs_zcomp_init(struct bs_zcomp *z, int level)
{
    memset(z, 0, sizeof(*z));
    z->cctx = ZSTD_createCCtx();
    if (!z->cctx)
        return -ENOMEM;
    z->level = level;
    z->backoff = 1;
    /* The frame names its size: the secondary checks it before writing. */
    ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0); /* TLS authenticates it */
    return 0;
}

void bs_zcomp_free(struct bs_zcomp *z)
{
    ZSTD_freeCCtx(z->cctx);
    z->cctx = NULL;
}

size_t bs_zcomp_bound(size_t len)
{
    return ZSTD_compressBound(len);
}

size_t bs_zcomp_payload(struct bs_zcomp *z, void *dst, size_t cap, const void *src, size_t len)
{
    size_t n;

    if (z->skip) {
        z->skip--;
        z->skipped++;
        bs_zcomp_note_raw(z, len);
        return 0;
    }
    z->raw_bytes += len;
    n = ZSTD_compress2(z->cctx, dst, cap, src, len);
    if (ZSTD_isError(n) || n > len - (len >> BS_COMPRESS_MIN_SAVING_SHIFT)) {
        /* Incompressible (or a failure, which only costs the saving). */
        z->not_paid++;
        z->skip = z->backoff;
        if (z->backoff < BS_COMPRESS_BACKOFF_MAX)
            z->backoff *= 2;
        z->wire_bytes += len;
        return 0;
    }
    z->backoff = 1;
    z->compressed++;
    z->wire_bytes += n;
    return n;
}

int bs_zdec_init(struct bs_zdec *d)
{
    d->dctx = ZSTD_createDCtx();
    return d->dctx ? 0 : -ENOMEM;
}

void bs_zdec_free(struct bs_zdec *d)
{
    ZSTD_freeDCtx(d->dctx);
    d->dctx = NULL;
}

long bs_zdec_payload(struct bs_zdec *d, void *dst, size_t cap, size_t unit, const void *src,
                     size_t len, const char **why)
{
    unsigned long long size;
    size_t n;

    /* A zstd frame, not a legacy format or a skippable frame the library
     * would also take. */
    if (len < 4 || bs_get_le32(src) != ZSTD_MAGICNUMBER) {
        *why = "compressed payload is not a zstd frame";
        return -EPROTO;
    }
    size = ZSTD_getFrameContentSize(src, len);
    if (size == ZSTD_CONTENTSIZE_ERROR) {
        *why = "compressed payload is not a zstd frame";
        return -EPROTO;
    }
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
        *why = "compressed payload does not name its size";
        return -EPROTO;
    }
    if (size == 0 || size > cap || size % unit) {
        *why = "compressed payload's size is not whole sectors within the payload limit";
        return -EPROTO;
    }
    /* One frame, nothing after it. */
    n = ZSTD_findFrameCompressedSize(src, len);
    if (ZSTD_isError(n) || n != len) {
        *why = "compressed payload is not exactly one zstd frame";
        return -EPROTO;
    }
    n = ZSTD_decompressDCtx(d->dctx, dst, (size_t)size, src, len);
    if (ZSTD_isError(n) || n != size) {
        *why = "compressed payload does not decompress to the size it names";
        return -EPROTO;
    }
    return (long)n;
}
