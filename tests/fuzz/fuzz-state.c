/* libFuzzer harness for the state files' text (common/state.c): the
 * "key value" lookups, the u64 and identity decoders, and the sequence of
 * calls with which both agents load their state file.
 *
 * The agents' load_state() (primary/primary.c, secondary/secondary.c) is
 * static and takes the agents' private structs, so it is not linked here;
 * fuzz_agent_load() below makes the same calls, on the same keys and
 * buffer sizes, in the same order.  The input is the file's contents as
 * bs_state_read() would hand them over (at most BS_STATE_MAX - 1 bytes,
 * NUL-terminated; an embedded NUL ends the text, as it does there).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/state.h"
#include "tests/fuzz/fuzz-input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every key either agent reads or writes. */
static const char *const keys[] = {
    "format", "role", "primary_id", "replica_id", "generation",
    "log_id", "disk_sectors", "epoch", "disk_bytes",
};

/* Finds the first line of text that begins with "key " by a different
 * route than bs_state_get(), for comparison: returns the value's start
 * and length, or NULL. */
static const char *model_get(const char *text, const char *key, size_t *len)
{
    size_t klen = strlen(key);

    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);

        if (n > klen && memcmp(line, key, klen) == 0 && line[klen] == ' ') {
            *len = n - klen - 1;
            return line + klen + 1;
        }
        if (!end)
            break;
        line = end + 1;
    }
    return NULL;
}

static void check_get(const char *text, const char *key, size_t size)
{
    /* Exactly size bytes, so that ASan sees a write past them. */
    char *value = malloc(size);
    size_t mlen = 0;
    const char *mval = model_get(text, key, &mlen);
    int r;

    FUZZ_CHECK(value);
    r = bs_state_get(text, key, value, size);
    if (!mval) {
        FUZZ_CHECK(r == -ENOENT);
    } else if (mlen >= size) {
        FUZZ_CHECK(r == -ENAMETOOLONG);
    } else {
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(strlen(value) == mlen && memcmp(value, mval, mlen) == 0);
    }
    free(value);
}

static void check_u64(const char *text, const char *key)
{
    uint64_t v = 0;
    char value[64], again[32];
    const char *digits;

    if (bs_state_get_u64(text, key, &v) != 0)
        return;
    /* Accepted: the value is plain decimal digits and means v. */
    FUZZ_CHECK(bs_state_get(text, key, value, sizeof(value)) == 0);
    for (const char *c = value; *c; c++)
        FUZZ_CHECK(*c >= '0' && *c <= '9');
    digits = value;
    while (digits[0] == '0' && digits[1])
        digits++;
    snprintf(again, sizeof(again), "%" PRIu64, v);
    FUZZ_CHECK(strcmp(digits, again) == 0);
}

static void check_id(const char *hex)
{
    uint8_t id[16];
    char again[33];

    if (bs_id_from_hex(hex, id) != 0)
        return;
    FUZZ_CHECK(strlen(hex) == 32);
    bs_id_to_hex(id, again);
    for (int i = 0; i < 32; i++) {
        char c = hex[i] >= 'A' && hex[i] <= 'F' ? (char)(hex[i] - 'A' + 'a') : hex[i];
        FUZZ_CHECK(c == again[i]);
    }
}

/* The calls of the agents' load_state(), on one file's text. */
static void fuzz_agent_load(const char *text, bool primary)
{
    char hex[64];
    uint8_t pid[16], rid[16];
    uint64_t fmt, generation, x;

    if (bs_state_get_u64(text, "format", &fmt) < 0 || fmt != 1)
        return;
    if (primary) {
        if (bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
            bs_id_from_hex(hex, pid) < 0 ||
            bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
            bs_id_from_hex(hex, rid) < 0 ||
            bs_state_get_u64(text, "generation", &generation) < 0 ||
            bs_state_get_u64(text, "log_id", &x) < 0)
            return;
    } else {
        if (bs_state_get(text, "replica_id", hex, sizeof(hex)) < 0 ||
            bs_id_from_hex(hex, rid) < 0 ||
            bs_state_get(text, "primary_id", hex, sizeof(hex)) < 0 ||
            bs_id_from_hex(hex, pid) < 0 ||
            bs_state_get_u64(text, "generation", &generation) < 0 ||
            bs_state_get_u64(text, "epoch", &x) < 0 ||
            bs_state_get_u64(text, "disk_bytes", &x) < 0)
            return;
    }
    (void)bs_id_is_zero(pid);
    (void)bs_id_is_zero(rid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = size < BS_STATE_MAX - 1 ? size : BS_STATE_MAX - 1;
    char *text = malloc(len + 1);

    FUZZ_CHECK(text);
    memcpy(text, data, len);
    text[len] = '\0';

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char hex[64];

        check_get(text, keys[i], 64);
        check_get(text, keys[i], 1 + (size ? data[0] % 40 : 0));
        check_u64(text, keys[i]);
        if (bs_state_get(text, keys[i], hex, sizeof(hex)) == 0)
            check_id(hex);
    }
    /* The whole text as one identity, too: any length, any bytes. */
    check_id(text);
    fuzz_agent_load(text, true);
    fuzz_agent_load(text, false);
    free(text);
    return 0;
}
