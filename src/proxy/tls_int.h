/*
 * src/proxy/tls_int.h: what tls.c (the per-connection engine) and
 * tls_ctx.c (contexts, their files, the proxy's listeners and upstreams)
 * share; nothing else includes it.
 */
#ifndef CYNIC_PROXY_TLS_INT_H
#define CYNIC_PROXY_TLS_INT_H

#include <openssl/ssl.h>

#include "tls.h"

struct cynic__tls_ctx {
  SSL_CTX *ssl;
  bool http;           /* a listener's: selects ALPN http/1.1 */
  int64_t cert_expiry; /* Unix seconds; 0: no certificate configured */
  char cert_subject[256];
};

/* Why the last handshake failed (cynic__tls_last_error): written by the
 * engine and by the certificate check (tls_ctx.c), read at once. */
extern char cynic__tls_error[512];
/* OpenSSL's oldest queued reason, or `fallback`; the queue is emptied. */
const char *cynic__tls_ssl_reason(const char *fallback);
/* A client connection got a session from its server (SSL_CTX_sess_set_new_cb):
 * kept for the endpoint (tls.c). */
int cynic__tls_new_session(SSL *ssl, SSL_SESSION *sess);

#endif /* CYNIC_PROXY_TLS_INT_H */
