/* common/sni.c: the server name read from a real OpenSSL ClientHello, every
 * shorter prefix asking for more, names refused, and damaged bytes never
 * read past. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "common/sni.h"

/* The first flight of a TLS 1.3 client asking for `name` (NULL: no
 * server_name), as OpenSSL writes it. */
static size_t client_hello(const char *name, uint8_t *out, size_t size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    BIO *rb, *wb;
    int n;

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), 1);
    ssl = SSL_new(ctx);
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    if (name)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, name), 1);
    assert_true(SSL_do_handshake(ssl) <= 0); /* waits for the server */
    n = BIO_read(wb, out, (int)size);
    assert_true(n > 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return (size_t)n;
}

static void test_real_hello(void **state)
{
    uint8_t buf[BS_SNI_PEEK_MAX];
    char name[BS_SNI_NAME_MAX + 1];
    const char *why;
    size_t n = client_hello("vm-042.disk_0", buf, sizeof(buf));

    (void)state;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), 1);
    assert_string_equal(name, "vm-042.disk_0");
    /* Every prefix: more is needed, nothing is decided. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(bs_sni_parse(buf, k, name, sizeof(name), &why), -EAGAIN);
    /* Bytes after the record (a second flight) change nothing. */
    memset(buf + n, 0xAB, 64);
    assert_int_equal(bs_sni_parse(buf, n + 64, name, sizeof(name), &why), 1);
    /* Too small an output buffer. */
    assert_int_equal(bs_sni_parse(buf, n, name, 5, &why), -ENAMETOOLONG);
}

static void test_no_name(void **state)
{
    uint8_t buf[BS_SNI_PEEK_MAX];
    char name[BS_SNI_NAME_MAX + 1];
    const char *why;
    size_t n = client_hello(NULL, buf, sizeof(buf));

    (void)state;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), 0);
}

static void test_bad_names(void **state)
{
    uint8_t buf[BS_SNI_PEEK_MAX];
    char name[256];
    const char *why;
    size_t n = client_hello("has space", buf, sizeof(buf));

    (void)state;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), -EINVAL);
    assert_true(bs_sni_name_ok("a"));
    assert_true(bs_sni_name_ok("db_1.example-2"));
    assert_false(bs_sni_name_ok(""));
    assert_false(bs_sni_name_ok(".hidden"));
    assert_false(bs_sni_name_ok("-x"));
    assert_false(bs_sni_name_ok("a/b"));
    assert_false(bs_sni_name_ok("0123456789012345678901234567890123456789012345678901234567890123x"));
    assert_true(bs_sni_name_ok("0123456789012345678901234567890123456789012345678901234567890123"));
}

static void test_not_tls(void **state)
{
    char name[64];
    const char *why;
    const uint8_t http[] = "GET / HTTP/1.1\r\n\r\n";
    uint8_t buf[BS_SNI_PEEK_MAX];
    size_t n = client_hello("r1", buf, sizeof(buf));

    (void)state;
    assert_int_equal(bs_sni_parse(http, sizeof(http) - 1, name, sizeof(name), &why), -EPROTO);
    assert_true(strlen(why) > 0);
    /* Not a ClientHello: a ServerHello's type. */
    buf[5] = 2;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), -EPROTO);
    buf[5] = 1;
    /* A handshake length beyond the record. */
    buf[7]++;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), -EPROTO);
    buf[7]--;
    /* A record length of zero, and one above 16 KiB. */
    buf[3] = 0, buf[4] = 0;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), -EPROTO);
    buf[3] = 0x40, buf[4] = 1;
    assert_int_equal(bs_sni_parse(buf, n, name, sizeof(name), &why), -EPROTO);
}

/* Every single byte of a real hello changed to every value: the parser
 * decides without reading past the bytes it has (ASan watches), and a name
 * it returns is one bs_sni_name_ok accepts. */
static void test_every_byte(void **state)
{
    uint8_t good[BS_SNI_PEEK_MAX];
    size_t n = client_hello("resource-7", good, sizeof(good));

    (void)state;
    for (size_t i = 0; i < n; i++) {
        for (unsigned v = 0; v < 256; v += 17) {
            uint8_t *buf = malloc(n); /* exact size: an overread is caught */
            char name[BS_SNI_NAME_MAX + 1];
            const char *why;
            int r;
            memcpy(buf, good, n);
            buf[i] = (uint8_t)v;
            r = bs_sni_parse(buf, n, name, sizeof(name), &why);
            assert_true(r == 1 || r == 0 || r == -EAGAIN || r == -EPROTO || r == -EINVAL ||
                        r == -ENAMETOOLONG);
            if (r == 1)
                assert_true(bs_sni_name_ok(name));
            free(buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_hello), cmocka_unit_test(test_no_name),
        cmocka_unit_test(test_bad_names),  cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
