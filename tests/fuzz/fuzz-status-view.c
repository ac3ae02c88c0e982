/* libFuzzer harness for the status replies `blkship status` reads from an
 * agent's control socket (cli/status_view.c over common/json.c and
 * json-c).  The input: one byte choosing the mode (even: human, odd:
 * JSON), then the reply's bytes, not NUL-terminated.
 *
 * Properties, beyond "no crash, no leak, no overread":
 *   - on failure nothing is written to the output and the reason is a
 *     non-empty, terminated line;
 *   - on success in JSON mode the output is one line of valid JSON, an
 *     object;
 *   - on success in human mode the output has no control character but
 *     newlines, C0, DEL or C1 (as UTF-8), whatever the reply's strings held:
 *     a reply cannot drive the terminal.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "cli/status_view.h"
#include "common/json.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    enum bs_status_view_mode mode = fuzz_u8(&in) & 1 ? BS_STATUS_JSON : BS_STATUS_HUMAN;
    char *reply, *out = NULL, err[256];
    size_t outlen = 0;
    FILE *f;
    int r;

    /* Exactly the reply's length: ASan sees any read past it. */
    reply = malloc(in.left ? in.left : 1);
    FUZZ_CHECK(reply);
    memcpy(reply, in.p, in.left);
    f = open_memstream(&out, &outlen);
    FUZZ_CHECK(f);
    memset(err, 'x', sizeof(err));
    r = bs_status_view(reply, in.left, mode, f, err, sizeof(err));
    FUZZ_CHECK(fclose(f) == 0);
    if (r < 0) {
        FUZZ_CHECK(r == -EBADMSG || r == -EREMOTEIO || r == -EPROTONOSUPPORT || r == -ENOMEM);
        FUZZ_CHECK(outlen == 0);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
    } else if (mode == BS_STATUS_JSON) {
        struct json_object *obj = NULL;
        char perr[128];
        FUZZ_CHECK(outlen > 0 && out[outlen - 1] == '\n');
        FUZZ_CHECK(memchr(out, '\n', outlen) == out + outlen - 1);
        FUZZ_CHECK(bs_json_parse(out, outlen, &obj, perr, sizeof(perr)) == 0);
        FUZZ_CHECK(json_object_is_type(obj, json_type_object));
        json_object_put(obj);
    } else {
        for (size_t i = 0; i < outlen; i++) {
            unsigned char c = (unsigned char)out[i];
            FUZZ_CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
            if (c == 0xc2 && i + 1 < outlen)
                FUZZ_CHECK((unsigned char)out[i + 1] < 0x80 || (unsigned char)out[i + 1] > 0x9f);
        }
    }
    free(out);
    free(reply);
    return 0;
}
