/* JSON output and input for every blkship program (see json.h). */
#include "common/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (RFC 3629: shortest form, no
 * surrogates, at most U+10FFFF), or 0 if the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *s)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4
                                                                                         : 0;
    }
    return 0;
}

/* The checks above stop at the first byte that does not continue the
 * sequence, and the NUL terminator never does, so they never read past
 * the end of the string. */

struct json_object *bs_json_string(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad = 0, n;

    while (u[i]) {
        n = utf8_seq_len(u + i);
        bad += n == 0;
        i += n ? n : 1;
    }
    if (!bad)
        return json_object_new_string_len(s, (int)(i < INT_MAX ? i : INT_MAX));

    /* Each bad byte becomes the three bytes of U+FFFD. */
    char *fixed = malloc(i + 2 * bad + 1), *o = fixed;
    struct json_object *str;

    if (!fixed)
        return NULL;
    for (i = 0; u[i];) {
        n = utf8_seq_len(u + i);
        if (n) {
            memcpy(o, u + i, n);
            o += n;
            i += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    str = json_object_new_string_len(fixed, (int)(o - fixed));
    free(fixed);
    return str;
}

/* ---- Builder ------------------------------------------------------------------ */

void bs_json_begin(struct bs_json_builder *b)
{
    b->obj = json_object_new_object();
    b->err = b->obj ? 0 : -ENOMEM;
}

/* Adds val (which may be NULL only for a JSON null) under key. */
static void add(struct bs_json_builder *b, const char *key, struct json_object *val, bool null)
{
    if (b->err) {
        json_object_put(val);
        return;
    }
    if ((!val && !null) ||
        json_object_object_add_ex(b->obj, key, val, JSON_C_OBJECT_ADD_CONSTANT_KEY) < 0) {
        json_object_put(val);
        b->err = -ENOMEM;
    }
}

void bs_json_add_builder(struct bs_json_builder *b, const char *key,
                         struct bs_json_builder *child)
{
    if (child->err) {
        json_object_put(child->obj);
        child->obj = NULL;
        if (!b->err)
            b->err = child->err;
        return;
    }
    add(b, key, child->obj, false);
    child->obj = NULL;
}

void bs_json_add_str(struct bs_json_builder *b, const char *key, const char *value)
{
    add(b, key, b->err ? NULL : bs_json_string(value), false);
}

void bs_json_add_u64(struct bs_json_builder *b, const char *key, uint64_t value)
{
    add(b, key, b->err ? NULL : json_object_new_uint64(value), false);
}

/* One {"offset", "length"} object, or NULL when out of memory. */
static struct json_object *range_object(uint64_t offset, uint64_t length)
{
    struct json_object *r = json_object_new_object(), *v;

    if (!r)
        return NULL;
    v = json_object_new_uint64(offset);
    if (!v || json_object_object_add(r, "offset", v) < 0)
        goto fail;
    v = json_object_new_uint64(length);
    if (!v || json_object_object_add(r, "length", v) < 0)
        goto fail;
    return r;
fail:
    json_object_put(v); /* not taken by a failed add */
    json_object_put(r);
    return NULL;
}

void bs_json_add_ranges(struct bs_json_builder *b, const char *key, const uint64_t (*ranges)[2],
                        size_t n)
{
    struct json_object *arr = b->err ? NULL : json_object_new_array_ext((int)n);

    for (size_t i = 0; arr && i < n; i++) {
        struct json_object *r = range_object(ranges[i][0], ranges[i][1]);
        if (!r || json_object_array_add(arr, r) < 0) {
            json_object_put(r);
            json_object_put(arr);
            arr = NULL;
        }
    }
    add(b, key, arr, false);
}

void bs_json_add_i64(struct bs_json_builder *b, const char *key, int64_t value)
{
    add(b, key, b->err ? NULL : json_object_new_int64(value), false);
}

void bs_json_add_bool(struct bs_json_builder *b, const char *key, bool value)
{
    add(b, key, b->err ? NULL : json_object_new_boolean(value), false);
}

void bs_json_add_null(struct bs_json_builder *b, const char *key)
{
    add(b, key, NULL, true);
}

void bs_json_add_fixed(struct bs_json_builder *b, const char *key, double value, int decimals)
{
    char text[64];

    if (!isfinite(value)) {
        bs_json_add_null(b, key);
        return;
    }
    if (decimals < 0)
        decimals = 0;
    if (decimals > 9)
        decimals = 9;
    /* Past about 1e40 "%f" needs more room than text has; "%g" does not,
     * and such a value is no less valid as JSON. */
    if (fabs(value) < 1e40)
        snprintf(text, sizeof(text), "%.*f", decimals, value);
    else
        snprintf(text, sizeof(text), "%.17g", value);
    /* The text is what gets serialised; the double is what readers of
     * the object in memory see. */
    add(b, key, b->err ? NULL : json_object_new_double_s(value, text), false);
}

ssize_t bs_json_finish(struct bs_json_builder *b, char *buf, size_t size)
{
    const char *text = NULL;
    size_t len = 0;
    ssize_t r;

    if (!b->err)
        text = json_object_to_json_string_length(b->obj, BS_JSON_FLAGS, &len);
    if (!text) {
        r = -ENOMEM;
    } else {
        if (len + 1 < size) {
            memcpy(buf, text, len);
            buf[len] = '\n';
            buf[len + 1] = '\0';
        } else if (size) {
            buf[0] = '\0';
        }
        r = (ssize_t)(len + 1);
    }
    json_object_put(b->obj);
    b->obj = NULL;
    return r;
}

int bs_json_print(struct json_object *obj, FILE *f)
{
    size_t len;
    const char *text = json_object_to_json_string_length(obj, BS_JSON_FLAGS, &len);

    if (!text)
        return -ENOMEM;
    if (fwrite(text, 1, len, f) != len || putc('\n', f) == EOF)
        return -EIO;
    return 0;
}

int bs_json_finish_print(struct bs_json_builder *b, FILE *f)
{
    int r = b->err ? b->err : bs_json_print(b->obj, f);

    json_object_put(b->obj);
    b->obj = NULL;
    return r;
}

/* ---- Parser ------------------------------------------------------------------- */

/* JSON's white space (RFC 8259). */
static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* json-c reads NaN, Infinity and numbers such as 1e400 even in strict
 * mode; none is JSON, and serialising them again would not be either. */
static bool all_finite(struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_double:
        return isfinite(json_object_get_double(v));
    case json_type_array:
        for (size_t i = 0, n = json_object_array_length(v); i < n; i++)
            if (!all_finite(json_object_array_get_idx(v, i)))
                return false;
        return true;
    case json_type_object: {
        json_object_object_foreach(v, key, member) {
            (void)key;
            if (!all_finite(member))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

int bs_json_parse(const char *text, size_t len, struct json_object **out, char *err,
                  size_t errsize)
{
    struct json_tokener *tok = NULL;
    struct json_object *v = NULL;
    char *copy = NULL;
    size_t end, i;
    int r = -EBADMSG;

    *out = NULL;
    if (memchr(text, '\0', len)) {
        snprintf(err, errsize, "not JSON: a NUL byte at offset %zu",
                 (size_t)((const char *)memchr(text, '\0', len) - text));
        return -EBADMSG;
    }
    for (i = 0; i < len && is_ws(text[i]); i++)
        ;
    if (i == len) {
        snprintf(err, errsize, "empty (no JSON at all)");
        return -EBADMSG;
    }
    if (len >= INT_MAX) {
        snprintf(err, errsize, "too long to be parsed (%zu bytes)", len);
        return -EBADMSG;
    }
    /* The tokener takes the terminating NUL as the end of the input, as
     * json_tokener_parse does: a bare number at the end then completes. */
    copy = malloc(len + 1);
    tok = json_tokener_new();
    if (!copy || !tok) {
        snprintf(err, errsize, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    v = json_tokener_parse_ex(tok, copy, (int)len + 1);
    enum json_tokener_error e = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    if (!v && e == json_tokener_success) {
        /* A bare "null": valid JSON, but never what a reader wants. */
        snprintf(err, errsize, "the JSON is a bare null");
        goto out;
    }
    if (e == json_tokener_continue || e == json_tokener_error_parse_eof) {
        snprintf(err, errsize, "not JSON: the text ends inside a value (truncated?)");
        goto out;
    }
    if (e != json_tokener_success) {
        snprintf(err, errsize, "not JSON: %s at offset %zu", json_tokener_error_desc(e),
                 end > len ? len : end);
        goto out;
    }
    for (i = end; i < len; i++) {
        if (!is_ws(copy[i])) {
            snprintf(err, errsize, "not JSON: text after the value at offset %zu", i);
            goto out;
        }
    }
    if (!all_finite(v)) {
        snprintf(err, errsize, "not JSON: a number that is NaN or infinite");
        goto out;
    }
    *out = v;
    v = NULL;
    r = 0;
out:
    json_object_put(v);
    json_tokener_free(tok);
    free(copy);
    return r;
}
