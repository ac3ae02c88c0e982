/* The server name a TLS client asks for (the ClientHello's server_name
 * extension, RFC 6066), read from the first bytes a connection brings
 * before any TLS library sees them: blkship-listener routes a connection
 * to the resource it names and hands the socket over untouched
 * (docs/resources.md).
 *
 * Only what routing needs is parsed, every length checked against the
 * bytes there are and the lengths around it.  The ClientHello must fit in
 * the first TLS record (an OpenSSL 3 client's is a few hundred bytes);
 * a longer one is refused rather than reassembled.
 */
#ifndef BS_COMMON_SNI_H
#define BS_COMMON_SNI_H

#include <stddef.h>
#include <stdint.h>

/* What a listener reads at most before it decides: one whole record. */
#define BS_SNI_PEEK_MAX (5 + 16384)
#define BS_SNI_NAME_MAX 64 /* a resource name's bytes, at most */

/* Looks for the host_name of the server_name extension in the len bytes
 * of buf, which start at the connection's first byte.  Returns 1 with the
 * name in out (NUL-terminated) when found; 0 when the ClientHello has no
 * server name; -EAGAIN when buf ends before the ClientHello does (read
 * more); -EPROTO when the bytes are not a TLS ClientHello in one record,
 * with *why set; -ENAMETOOLONG or -EINVAL when the name is longer than
 * size - 1 or not a resource name (bs_sni_name_ok). */
int bs_sni_parse(const uint8_t *buf, size_t len, char *out, size_t size, const char **why);

/* Whether s can name a resource on the wire: 1 to BS_SNI_NAME_MAX
 * letters, digits, '.', '-' and '_', not starting with '.' or '-'. */
int bs_sni_name_ok(const char *s);

#endif
