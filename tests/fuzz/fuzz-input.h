/* A cursor over a fuzzer's input for the harnesses in this directory:
 * fixed-width little-endian fields are taken from the front, and reads
 * past the end yield zeroes, so every input, however short, is a valid
 * sequence of parameters.  FUZZ_CHECK reports a broken property as a
 * crash, whatever NDEBUG says. */
#ifndef BLKSHIP_TESTS_FUZZ_INPUT_H
#define BLKSHIP_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
            __builtin_trap();                                                             \
        }                                                                                 \
    } while (0)

struct fuzz_input {
    const uint8_t *p;
    size_t left;
};

/* Copies n bytes from the front into out, zero-filling what is missing. */
static inline void fuzz_take(struct fuzz_input *in, void *out, size_t n)
{
    size_t k = n < in->left ? n : in->left;

    memcpy(out, in->p, k);
    memset((uint8_t *)out + k, 0, n - k);
    in->p += k;
    in->left -= k;
}

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
    uint8_t v;
    fuzz_take(in, &v, 1);
    return v;
}

static inline uint32_t fuzz_u32(struct fuzz_input *in)
{
    uint8_t b[4];
    fuzz_take(in, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t fuzz_u64(struct fuzz_input *in)
{
    uint64_t lo = fuzz_u32(in);
    return lo | (uint64_t)fuzz_u32(in) << 32;
}

#endif
