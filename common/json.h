/* The one place blkship writes and reads JSON, on top of json-c: a builder
 * for the agents' flat replies that survives running out of memory, the
 * serialisation every program uses (one line, `"key": value`, '/' left
 * alone), strings from bytes that need not be UTF-8, and a strict parser of
 * a whole text.
 */
#ifndef BLKSHIP_COMMON_JSON_H
#define BLKSHIP_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <json-c/json.h>

/* The flags of json_object_to_json_string_ext that every output uses. */
#define BS_JSON_FLAGS (JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* A JSON string holding s (NUL-terminated).  Byte sequences that are not
 * valid UTF-8 become U+FFFD each, so any C string gives valid JSON; valid
 * UTF-8 is kept byte for byte.  The caller owns the result; NULL when out
 * of memory. */
struct json_object *bs_json_string(const char *s);

/* A JSON object under construction.  The first allocation failure is
 * remembered and every later call does nothing, so callers add fields
 * without checking each one and learn of the failure at the end. */
struct bs_json_builder {
    struct json_object *obj;
    int err;                    /* 0 or -ENOMEM */
};

void bs_json_begin(struct bs_json_builder *b);
/* Each adds one member; the key must be a string constant (not copied). */
void bs_json_add_str(struct bs_json_builder *b, const char *key, const char *value);
void bs_json_add_u64(struct bs_json_builder *b, const char *key, uint64_t value);
void bs_json_add_i64(struct bs_json_builder *b, const char *key, int64_t value);
void bs_json_add_bool(struct bs_json_builder *b, const char *key, bool value);
void bs_json_add_null(struct bs_json_builder *b, const char *key);
/* Adds child's object (begun with bs_json_begin and filled) as a member;
 * child is consumed, and its allocation failure becomes b's. */
void bs_json_add_builder(struct bs_json_builder *b, const char *key,
                         struct bs_json_builder *child);
/* An array of n {"offset": .., "length": ..} objects (byte ranges). */
void bs_json_add_ranges(struct bs_json_builder *b, const char *key, const uint64_t (*ranges)[2],
                        size_t n);
/* value with `decimals` digits after the point (at most 9); null when it
 * is not finite, since JSON has no NaN or infinity. */
void bs_json_add_fixed(struct bs_json_builder *b, const char *key, double value, int decimals);

/* Serialises the object and a newline into buf (size bytes, NUL
 * terminated) and frees the object.  Returns the length of the text
 * without the NUL: a value >= size means it did not fit and buf holds no
 * usable text.  Returns -ENOMEM if building or serialising ran out of
 * memory.  Like snprintf, it never writes past size. */
ssize_t bs_json_finish(struct bs_json_builder *b, char *buf, size_t size);
/* Writes the object and a newline to f and frees it.  Returns 0, -ENOMEM
 * or -EIO. */
int bs_json_finish_print(struct bs_json_builder *b, FILE *f);

/* Writes obj (not freed) and a newline to f.  Returns 0, -ENOMEM or -EIO. */
int bs_json_print(struct json_object *obj, FILE *f);

/* Parses text[0, len) as exactly one JSON value: strict syntax, valid
 * UTF-8, no NUL byte, no NaN or infinite number anywhere, nothing but
 * white space after it.  Returns 0 and the value in *out (the caller
 * frees it with json_object_put), or -EBADMSG (or -ENOMEM) with a one-line
 * reason in err.  Pure: no I/O, no global state. */
int bs_json_parse(const char *text, size_t len, struct json_object **out, char *err,
                  size_t errsize);

#endif
