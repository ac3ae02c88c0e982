/* TLS for the replication link: TLS 1.3 only, mutual certificate
 * authentication against one CA, an optional certificate revocation list,
 * and the peer's certificate must name the configured peer in a subject
 * alternative name: a DNS name, or an IP address when the configured name
 * is an address.  The subject's CN is never consulted.
 *
 * Identity cannot be switched off: every file and the peer name are
 * required and non-empty, and a private key that group or others may read
 * is refused.  The files are watched: a connection made after one of them
 * changed (a rotated certificate, a new CRL) uses a context rebuilt from
 * them, and while they are unusable no connection is made at all. */
#ifndef BLKSHIP_COMMON_TLS_H
#define BLKSHIP_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

/* OpenSSL's read-ahead buffer per connection: about two full records
 * (see the context set-up in tls.c for why no more). */
#define BS_TLS_READ_BUFFER (34u * 1024)

struct bs_tls_config {
    const char *cert;       /* PEM certificate (chain) of this side */
    const char *key;        /* PEM private key, mode 0600 or stricter */
    const char *ca;         /* PEM CA certificate(s) the peer must chain to */
    const char *crl;        /* PEM CRL(s) of that CA, or NULL: none */
    const char *peer_name;  /* DNS name or IP address the peer's certificate must carry */
};

struct bs_tls;

/* Checks cfg and builds the context of the server (secondary) or client
 * (primary) side.  The strings in cfg must outlive the object.  Returns 0,
 * or -EINVAL/-errno after logging what is wrong (a missing option, an
 * unreadable file, a key others can read, a key that does not match the
 * certificate, a malformed CRL). */
int bs_tls_new(const struct bs_tls_config *cfg, bool server, struct bs_tls **out);
/* The context for a new connection.  Rebuilds it first when one of the
 * files changed since it was built (a stat of each, nothing more, when
 * none did).  NULL when the files are unusable now (logged): make no
 * connection.  An SSL made from the context keeps it alive. */
SSL_CTX *bs_tls_ctx(struct bs_tls *t);
void bs_tls_free(struct bs_tls *t);

/* Appends the reasons of OpenSSL's error queue to buf and empties it. */
void bs_tls_errors(char *buf, size_t size);

#endif
