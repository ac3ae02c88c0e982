/* libFuzzer harness for what the secondary does with a ZDATA payload
 * (common/compress.c, bs_zdec_payload): untrusted bytes from the link.
 * The first byte picks the room (1 to 256 sectors), the rest is the
 * payload.
 *
 * Properties, beyond "no crash, no overread, no overwrite":
 *   - an accepted payload decompressed to a whole number of sectors, at
 *     least one, at most the room, and the bytes past it are untouched;
 *   - a refused one says why;
 *   - compressing what was accepted and taking it again gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/compress.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOM_MAX (256 * 512)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bs_zdec d;
    static uint8_t out[ROOM_MAX + 64], again[ROOM_MAX], z[ROOM_MAX + 1024];
    const char *why = NULL;
    size_t room;
    long n;

    if (size < 1)
        return 0;
    if (!d.dctx && bs_zdec_init(&d) < 0)
        abort();
    room = ((size_t)data[0] + 1) * 512;
    memset(out + room, 0xee, 64);
    n = bs_zdec_payload(&d, out, room, 512, data + 1, size - 1, &why);
    for (size_t i = 0; i < 64; i++)
        FUZZ_CHECK(out[room + i] == 0xee);
    if (n < 0) {
        FUZZ_CHECK(why != NULL);
        return 0;
    }
    FUZZ_CHECK(n >= 512 && (size_t)n <= room && n % 512 == 0);
    size_t zn = ZSTD_compress(z, sizeof(z), out, (size_t)n, 1);
    FUZZ_CHECK(!ZSTD_isError(zn));
    FUZZ_CHECK(bs_zdec_payload(&d, again, room, 512, z, zn, &why) == n);
    FUZZ_CHECK(memcmp(again, out, (size_t)n) == 0);
    return 0;
}
