/* TLS for the replication link: TLS 1.3 only, mutual certificate
 * authentication against one CA, and the peer's certificate must name the
 * configured peer (subject alternative name, or CN without one). */
#ifndef BLKSHIP_COMMON_TLS_H
#define BLKSHIP_COMMON_TLS_H

#include <stdbool.h>
#include <openssl/ssl.h>

struct bs_tls_config {
    const char *cert;       /* PEM certificate (chain) of this side */
    const char *key;        /* PEM private key */
    const char *ca;         /* PEM CA certificate(s) the peer must chain to */
    const char *peer_name;  /* name the peer's certificate must carry */
};

/* Builds a context for the server (secondary) or client (primary) side.
 * Returns NULL after logging why (unreadable file, key mismatch, ...). */
SSL_CTX *bs_tls_ctx_new(const struct bs_tls_config *cfg, bool server);

/* Appends the reasons of OpenSSL's error queue to buf and empties it. */
void bs_tls_errors(char *buf, size_t size);

#endif
