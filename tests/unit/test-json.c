/* Unit tests for the JSON helpers (common/json.c): strings from any bytes,
 * the builder and its fixed buffer, and the strict parser. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"

/* Parses text with bs_json_parse, which must succeed. */
static struct json_object *parse_ok(const char *text)
{
    struct json_object *v = NULL;
    char err[256];
    int r = bs_json_parse(text, strlen(text), &v, err, sizeof(err));

    if (r != 0)
        fail_msg("bs_json_parse(%s) = %d: %s", text, r, err);
    return v;
}

static void expect_bad(const char *text, size_t len, const char *reason)
{
    struct json_object *v = (struct json_object *)1;
    char err[256] = "";

    assert_int_equal(bs_json_parse(text, len, &v, err, sizeof(err)), -EBADMSG);
    assert_null(v);
    if (!strstr(err, reason))
        fail_msg("parse of %.*s: reason '%s' lacks '%s'", (int)len, text, err, reason);
}

/* A string survives serialising and parsing byte for byte. */
static void test_string_round_trip(void **state)
{
    (void)state;
    static const char *const samples[] = {
        "plain", "quote \" backslash \\ slash /", "tab\there\nnewline\rcr",
        "\x01\x1f\x7f controls", "é€✓ 𝄞 UTF-8", "",
    };

    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        struct bs_json_builder b;
        char buf[512];
        bs_json_begin(&b);
        bs_json_add_str(&b, "s", samples[i]);
        ssize_t n = bs_json_finish(&b, buf, sizeof(buf));
        assert_true(n > 0 && (size_t)n < sizeof(buf));
        assert_int_equal(buf[n - 1], '\n');
        assert_null(strchr(buf, '\t'));     /* control characters are escaped */
        struct json_object *v = parse_ok(buf);
        struct json_object *s = json_object_object_get(v, "s");
        assert_int_equal(json_object_get_string_len(s), (int)strlen(samples[i]));
        assert_memory_equal(json_object_get_string(s), samples[i], strlen(samples[i]));
        json_object_put(v);
    }
}

/* Bytes that are not UTF-8 become U+FFFD, one per bad byte; the valid
 * sequences around them stay. */
static void test_string_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "a\xff" "b", "a\xef\xbf\xbd" "b" },
        { "\xc3", "\xef\xbf\xbd" },                          /* cut short */
        { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },          /* overlong '/' */
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* surrogate */
        { "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* > U+10FFFF */
        { "\xc3\xa9\x80\xe2\x82\xac", "\xc3\xa9\xef\xbf\xbd\xe2\x82\xac" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct json_object *s = bs_json_string(cases[i].in);
        assert_non_null(s);
        assert_string_equal(json_object_get_string(s), cases[i].out);
        /* And what it serialises to is valid for the strict parser. */
        const char *text = json_object_to_json_string_ext(s, BS_JSON_FLAGS);
        struct json_object *back = parse_ok(text);
        assert_string_equal(json_object_get_string(back), cases[i].out);
        json_object_put(back);
        json_object_put(s);
    }
}

static void test_builder_types(void **state)
{
    (void)state;
    struct bs_json_builder b;
    char buf[512];

    bs_json_begin(&b);
    bs_json_add_i64(&b, "schema", 1);
    bs_json_add_u64(&b, "big", UINT64_MAX);
    bs_json_add_i64(&b, "neg", -1);
    bs_json_add_bool(&b, "yes", true);
    bs_json_add_null(&b, "none");
    bs_json_add_fixed(&b, "pct", 99.996, 2);
    bs_json_add_fixed(&b, "rate", 1234.5, 0);
    bs_json_add_fixed(&b, "nan", NAN, 2);
    bs_json_add_fixed(&b, "inf", INFINITY, 0);
    bs_json_add_fixed(&b, "huge", 1e300, 2);
    assert_int_equal(b.err, 0);
    ssize_t n = bs_json_finish(&b, buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    assert_null(b.obj);
    /* The layout the shell tests' jget reads: "key": value. */
    assert_non_null(strstr(buf, "\"schema\": 1, "));
    assert_non_null(strstr(buf, "\"big\": 18446744073709551615, "));
    assert_non_null(strstr(buf, "\"pct\": 100.00, "));
    assert_non_null(strstr(buf, "\"rate\": 1234, ") ?: strstr(buf, "\"rate\": 1235, "));
    assert_non_null(strstr(buf, "\"nan\": null, "));
    assert_non_null(strstr(buf, "\"inf\": null, "));
    struct json_object *v = parse_ok(buf);
    assert_true(json_object_get_boolean(json_object_object_get(v, "yes")));
    assert_true(json_object_object_get_ex(v, "none", NULL));
    assert_null(json_object_object_get(v, "none"));
    assert_int_equal(json_object_get_int64(json_object_object_get(v, "neg")), -1);
    assert_true(json_object_get_double(json_object_object_get(v, "huge")) == 1e300);
    json_object_put(v);
}

/* A reply that does not fit is reported, like snprintf, never cut. */
static void test_finish_too_small(void **state)
{
    (void)state;
    struct bs_json_builder b;
    char big[4096], small[32];
    ssize_t need;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bs_json_begin(&b);
    bs_json_add_str(&b, "pad", big);
    memset(small, '#', sizeof(small));
    need = bs_json_finish(&b, small, sizeof(small));
    assert_true(need >= (ssize_t)sizeof(small));
    assert_int_equal(small[0], '\0');
    for (size_t i = 1; i < sizeof(small); i++)
        assert_int_equal(small[i], '#');    /* nothing past what was needed */

    /* Exactly fitting: the text, its newline and the NUL. */
    char exact[64];
    bs_json_begin(&b);
    bs_json_add_i64(&b, "a", 1);
    need = bs_json_finish(&b, exact, sizeof(exact));
    assert_string_equal(exact, "{ \"a\": 1 }\n");
    bs_json_begin(&b);
    bs_json_add_i64(&b, "a", 1);
    assert_int_equal(bs_json_finish(&b, exact, (size_t)need + 1), need);
    assert_string_equal(exact, "{ \"a\": 1 }\n");
    bs_json_begin(&b);
    bs_json_add_i64(&b, "a", 1);
    assert_int_equal(bs_json_finish(&b, exact, (size_t)need), need);
    assert_string_equal(exact, "");
}

static void test_builder_failure_sticks(void **state)
{
    (void)state;
    struct bs_json_builder b;
    char buf[64];

    bs_json_begin(&b);
    b.err = -ENOMEM;    /* as if an allocation had failed */
    bs_json_add_str(&b, "s", "x");
    bs_json_add_u64(&b, "n", 1);
    assert_int_equal(json_object_object_length(b.obj), 0);
    assert_int_equal(bs_json_finish(&b, buf, sizeof(buf)), -ENOMEM);
    assert_null(b.obj);
}

static void test_parse_strict(void **state)
{
    (void)state;
    struct json_object *v = parse_ok("  {\"a\": [1, 2.5, \"x\", null, true]}\r\n\t ");

    assert_true(json_object_is_type(v, json_type_object));
    json_object_put(v);
    v = parse_ok("42");         /* a bare number at the very end completes */
    assert_int_equal(json_object_get_int(v), 42);
    json_object_put(v);

    expect_bad("", 0, "empty");
    expect_bad(" \n", 2, "empty");
    expect_bad("{\"a\": 1", 7, "truncated");
    expect_bad("{\"a\": \"b", 8, "truncated");
    expect_bad("{\"a\": 1} x", 10, "offset 9");
    expect_bad("{\"a\": 1}{}", 10, "offset 8");
    expect_bad("{\"a\": NaN}", 10, "NaN or infinite");
    expect_bad("[1e400]", 7, "NaN or infinite");
    expect_bad("{\"a\": [[-Infinity]]}", 20, "NaN or infinite");
    expect_bad("{\"a\": \"\xff\"}", 10, "utf-8");
    expect_bad("{\"a\": 1}\0{", 10, "NUL byte at offset 8");
    expect_bad("null", 4, "bare null");
    expect_bad("[1,]", 4, "not JSON");
    expect_bad("hello", 5, "not JSON");
}

/* The text need not be NUL-terminated: only len bytes are read. */
static void test_parse_unterminated(void **state)
{
    (void)state;
    const char text[] = { '{', '"', 'a', '"', ':', '1', '}' };
    char *heap = malloc(sizeof(text));
    struct json_object *v;
    char err[128];

    assert_non_null(heap);
    memcpy(heap, text, sizeof(text));
    assert_int_equal(bs_json_parse(heap, sizeof(text), &v, err, sizeof(err)), 0);
    assert_int_equal(json_object_get_int(json_object_object_get(v, "a")), 1);
    json_object_put(v);
    assert_int_equal(bs_json_parse(heap, sizeof(text) - 1, &v, err, sizeof(err)), -EBADMSG);
    free(heap);
}

static void test_print(void **state)
{
    (void)state;
    struct bs_json_builder b;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    bs_json_begin(&b);
    bs_json_add_str(&b, "path", "/dev/vg0/a\"b");
    assert_int_equal(bs_json_finish_print(&b, f), 0);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "{ \"path\": \"/dev/vg0/a\\\"b\" }\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_round_trip),
        cmocka_unit_test(test_string_invalid_utf8),
        cmocka_unit_test(test_builder_types),
        cmocka_unit_test(test_finish_too_small),
        cmocka_unit_test(test_builder_failure_sticks),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_parse_unterminated),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
