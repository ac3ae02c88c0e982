/* TLS context set-up for the replication link (see tls.h). */
#include "common/tls.h"

#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/log.h"

#define MOD "tls"

void bs_tls_errors(char *buf, size_t size)
{
    unsigned long e;
    size_t used = strlen(buf);

    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        /* Keep only the reason: "error:0A000086:SSL routines::certificate verify failed" */
        const char *reason = strrchr(one, ':');
        reason = reason ? reason + 1 : one;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", reason);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

static void log_ssl_error(const char *what, const char *path)
{
    char why[512] = "";

    bs_tls_errors(why, sizeof(why));
    BS_ERR(MOD, "%s %s: %s", what, path, why[0] ? why : "unknown error");
}

SSL_CTX *bs_tls_ctx_new(const struct bs_tls_config *cfg, bool server)
{
    SSL_CTX *ctx;
    X509_VERIFY_PARAM *param;

    if (!cfg->cert || !cfg->key || !cfg->ca || !cfg->peer_name) {
        BS_ERR(MOD, "--cert, --key, --ca and --peer-name are all required");
        return NULL;
    }
    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        log_ssl_error("creating a TLS context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* All three TLS 1.3 suites are strong; AES-128-GCM is the cheapest per
     * byte with AES-NI, and bulk data is what this link carries. */
    if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256") != 1) {
        log_ssl_error("setting TLS 1.3 cipher suites", "");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    /* Read whole socket buffers, not a 5-byte record header and then its
     * body: half the read() calls on the receiving side. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        log_ssl_error("loading certificate", cfg->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
        log_ssl_error("loading private key", cfg->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error("private key does not match certificate", cfg->cert);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
        log_ssl_error("loading CA", cfg->ca);
        goto fail;
    }
    /* Both sides present and verify certificates. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (server) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    /* The verification parameters apply to whichever certificate the peer
     * sends, so the secondary checks the primary's name as well. */
    param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, cfg->peer_name, 0) != 1) {
        log_ssl_error("setting the expected peer name", cfg->peer_name);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
