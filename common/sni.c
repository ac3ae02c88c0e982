/* Reading the server name out of a TLS ClientHello (common/sni.h). */
#include "common/sni.h"

#include <errno.h>
#include <string.h>

/* A cursor over bytes whose end is known: every read is checked. */
struct cur {
    const uint8_t *p;
    size_t left;
};

static int take(struct cur *c, size_t n, const uint8_t **out)
{
    if (c->left < n)
        return -1;
    if (out)
        *out = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}

static int take_u8(struct cur *c, size_t *v)
{
    const uint8_t *b;

    if (take(c, 1, &b) < 0)
        return -1;
    *v = b[0];
    return 0;
}

static int take_u16(struct cur *c, size_t *v)
{
    const uint8_t *b;

    if (take(c, 2, &b) < 0)
        return -1;
    *v = (size_t)b[0] << 8 | b[1];
    return 0;
}

/* A sub-cursor over the next n bytes (a vector with its length read). */
static int take_sub(struct cur *c, size_t n, struct cur *sub)
{
    if (take(c, n, &sub->p) < 0)
        return -1;
    sub->left = n;
    return 0;
}

int bs_sni_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > BS_SNI_NAME_MAX || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

#define FAIL(text)          \
    do {                    \
        *why = text;        \
        return -EPROTO;     \
    } while (0)

/* The server_name extension's body: a list of (type, name); type 0 is the
 * host name, the only one defined and the only one looked at. */
static int server_name(struct cur *ext, char *out, size_t size, const char **why)
{
    struct cur list;
    size_t n;

    if (take_u16(ext, &n) < 0 || take_sub(ext, n, &list) < 0 || ext->left != 0)
        FAIL("a malformed server_name extension");
    while (list.left) {
        size_t type, len;
        const uint8_t *name;
        if (take_u8(&list, &type) < 0 || take_u16(&list, &len) < 0 || take(&list, len, &name) < 0)
            FAIL("a malformed server_name list");
        if (type != 0)
            continue;
        if (len + 1 > size)
            return -ENAMETOOLONG;
        if (memchr(name, 0, len))
            return -EINVAL;
        memcpy(out, name, len);
        out[len] = 0;
        return bs_sni_name_ok(out) ? 1 : -EINVAL;
    }
    return 0;
}

int bs_sni_parse(const uint8_t *buf, size_t len, char *out, size_t size, const char **why)
{
    struct cur c = { buf, len }, rec, hs, exts;
    const uint8_t *h;
    size_t rlen, hlen, n;

    *why = "";
    /* The record header: handshake (22), a version 3.x, a length. */
    if (len < 5)
        return -EAGAIN;
    if (buf[0] != 22)
        FAIL("not a TLS handshake record");
    if (buf[1] != 3 || buf[2] > 4)
        FAIL("not a TLS record version");
    (void)take(&c, 5, &h);
    rlen = (size_t)h[3] << 8 | h[4];
    if (rlen < 4 || rlen > 16384)
        FAIL("a TLS record length out of range");
    if (c.left < rlen)
        return -EAGAIN;
    (void)take_sub(&c, rlen, &rec);
    /* The handshake message: ClientHello (1), with a 24-bit length that
     * must end within the record. */
    (void)take(&rec, 4, &h);
    if (h[0] != 1)
        FAIL("not a ClientHello");
    hlen = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (hlen > rec.left)
        FAIL("a ClientHello longer than its record (fragmented)");
    (void)take_sub(&rec, hlen, &hs);
    /* legacy_version, random, session id, cipher suites, compression. */
    if (take(&hs, 2 + 32, NULL) < 0 || take_u8(&hs, &n) < 0 || n > 32 || take(&hs, n, NULL) < 0 ||
        take_u16(&hs, &n) < 0 || n < 2 || n % 2 || take(&hs, n, NULL) < 0 ||
        take_u8(&hs, &n) < 0 || n < 1 || take(&hs, n, NULL) < 0)
        FAIL("a malformed ClientHello");
    if (hs.left == 0)
        return 0; /* no extensions at all */
    if (take_u16(&hs, &n) < 0 || take_sub(&hs, n, &exts) < 0 || hs.left != 0)
        FAIL("a malformed ClientHello extension block");
    while (exts.left) {
        size_t type, elen;
        struct cur ext;
        if (take_u16(&exts, &type) < 0 || take_u16(&exts, &elen) < 0 ||
            take_sub(&exts, elen, &ext) < 0)
            FAIL("a malformed ClientHello extension");
        if (type == 0)
            return server_name(&ext, out, size, why);
    }
    return 0;
}
