/* libFuzzer harness for the ClientHello reading of blkship-listener
 * (common/sni.c): the input is the first bytes a TCP peer sends.
 *
 * Properties, beyond "no crash, no overread":
 *   - a name returned is one bs_sni_name_ok accepts and fits the buffer;
 *   - more bytes never turn a decision back into "need more": whatever a
 *     prefix decides (found, none, refused), the whole input decides the
 *     same, with the same name;
 *   - a refusal says why.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/sni.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[BS_SNI_NAME_MAX + 1], whole[BS_SNI_NAME_MAX + 1];
    const char *why;
    int r, rw;

    if (size > BS_SNI_PEEK_MAX + 64)
        return 0;
    rw = bs_sni_parse(data, size, whole, sizeof(whole), &why);
    FUZZ_CHECK(rw == 1 || rw == 0 || rw == -EAGAIN || rw == -EPROTO || rw == -EINVAL ||
               rw == -ENAMETOOLONG);
    if (rw == -EPROTO)
        FUZZ_CHECK(why && *why);
    if (rw == 1)
        FUZZ_CHECK(bs_sni_name_ok(whole) && strlen(whole) < sizeof(whole));
    /* A prefix that decides decides as the whole does. */
    for (size_t k = size / 2; k < size; k += 1 + size / 8) {
        r = bs_sni_parse(data, k, name, sizeof(name), &why);
        if (r == -EAGAIN)
            continue;
        FUZZ_CHECK(r == rw);
        if (r == 1)
            FUZZ_CHECK(strcmp(name, whole) == 0);
    }
    return 0;
}
