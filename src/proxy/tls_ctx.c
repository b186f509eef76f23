/*
 * src/proxy/tls_ctx.c: TLS contexts (a listener's, an upstream's) built from
 * their files, the certificate check's account of a refusal, and the
 * contexts of the proxy's listeners and upstreams at start and at each
 * reload (contracts in tls.h; the per-connection engine is tls.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "log.h"
#include "proxy.h"
#include "tls_int.h"

/* ---- contexts ---------------------------------------------------------------- */

char cynic__tls_error[512];

const char *cynic__tls_last_error(void) {
  return cynic__tls_error;
}

const char *cynic__tls_ssl_reason(const char *fallback) {
  static char buf[256];
  unsigned long e = ERR_get_error();
  unsigned long next;
  while ((next = ERR_get_error()) != 0)
    (void)next;
  if (e == 0)
    return fallback;
  const char *r = ERR_reason_error_string(e);
  if (r == NULL) {
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
  }
  snprintf(buf, sizeof buf, "%s", r);
  return buf;
}

static int64_t asn1_unix(const ASN1_TIME *t) {
  struct tm tm;
  if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
    return 0;
  return (int64_t)timegm(&tm);
}

static void name_text(X509_NAME *n, char *out, size_t len) {
  out[0] = '\0';
  if (n == NULL)
    return;
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL)
    return;
  X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  int got = BIO_read(b, out, (int)len - 1);
  out[got > 0 ? got : 0] = '\0';
  BIO_free(b);
}

static void time_text(int64_t unix_s, char *out, size_t len) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  if (unix_s == 0 || gmtime_r(&t, &tm) == NULL) {
    snprintf(out, len, "unknown");
    return;
  }
  strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Records why a certificate was refused: the first error of the chain, with
 * the peer's certificate's subject and expiry (never key material). */
static int on_verify(int ok, X509_STORE_CTX *x) {
  if (ok)
    return 1;
  X509 *leaf = X509_STORE_CTX_get0_cert(x);
  char subject[256], expiry[32];
  name_text(leaf != NULL ? X509_get_subject_name(leaf) : NULL, subject, sizeof subject);
  time_text(leaf != NULL ? asn1_unix(X509_get0_notAfter(leaf)) : 0, expiry, sizeof expiry);
  int err = X509_STORE_CTX_get_error(x);
  snprintf(cynic__tls_error, sizeof cynic__tls_error,
           "certificate verify failed: %s (depth %d); subject \"%s\", expires %s",
           X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(x), subject, expiry);
  return 0;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char h11[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no ALPN: HTTP/1.1 all the same */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static bool load_pair(SSL_CTX *ssl, const cynic__config_tls_t *cfg, char *err, size_t errlen) {
  if (SSL_CTX_use_certificate_chain_file(ssl, cfg->cert_file) != 1) {
    snprintf(err, errlen, "tls.cert_file '%s': %s", cfg->cert_file,
             cynic__tls_ssl_reason("cannot read a PEM certificate chain"));
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
    snprintf(err, errlen, "tls.key_file '%s': %s", cfg->key_file,
             cynic__tls_ssl_reason("cannot read a PEM private key"));
    return false;
  }
  if (SSL_CTX_check_private_key(ssl) != 1) {
    snprintf(err, errlen, "tls.key_file '%s' is not the key of tls.cert_file '%s': %s",
             cfg->key_file, cfg->cert_file, cynic__tls_ssl_reason("mismatch"));
    return false;
  }
  return true;
}

cynic__tls_ctx_t *cynic__tls_ctx_new(const cynic__config_tls_t *cfg, bool server, bool http,
                                     char *err, size_t errlen) {
  ERR_clear_error();
  cynic__tls_ctx_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->http = http;
  c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (c->ssl == NULL) {
    snprintf(err, errlen, "TLS context: %s", cynic__tls_ssl_reason("out of memory"));
    free(c);
    return NULL;
  }
  SSL_CTX *s = c->ssl;
  SSL_CTX_set_min_proto_version(s, cfg->min_version == CYNIC__TLS_1_3 ? TLS1_3_VERSION
                                                                        : TLS1_2_VERSION);
  SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  /* An idle connection keeps no record buffers (about 34 KB each way). */
  SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
  bool ok = true;
  if (server) {
    SSL_CTX_set_options(s, SSL_OP_CIPHER_SERVER_PREFERENCE);
    ok = load_pair(s, cfg, err, errlen);
    if (ok && cfg->ca_file != NULL) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
      if (names == NULL || SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
        if (names != NULL)
          sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(err, errlen, "tls.client_ca_file '%s': %s", cfg->ca_file,
                 cynic__tls_ssl_reason("cannot read PEM certificates"));
        ok = false;
      } else {
        SSL_CTX_set_client_CA_list(s, names);
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
      }
    }
    /* Resumption: TLS 1.3 tickets (one per handshake) and a bounded TLS 1.2
     * session cache. */
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"cynic", 5);
    SSL_CTX_sess_set_cache_size(s, 20000);
    SSL_CTX_set_num_tickets(s, 1);
    if (http)
      SSL_CTX_set_alpn_select_cb(s, on_alpn, NULL);
  } else {
    if (cfg->insecure_skip_verify) {
      SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL); /* cynic__tls_apply says so, loudly */
    } else {
      SSL_CTX_set_verify(s, SSL_VERIFY_PEER, on_verify);
      if (cfg->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
          snprintf(err, errlen, "tls.ca_file '%s': %s", cfg->ca_file,
                   cynic__tls_ssl_reason("cannot read PEM certificates"));
          ok = false;
        }
      } else if (SSL_CTX_set_default_verify_paths(s) != 1) {
        snprintf(err, errlen, "tls: the system CA store: %s", cynic__tls_ssl_reason("cannot be read"));
        ok = false;
      }
    }
    if (ok && cfg->cert_file != NULL)
      ok = load_pair(s, cfg, err, errlen);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, cynic__tls_new_session);
  }
  if (!ok) {
    SSL_CTX_free(s);
    free(c);
    return NULL;
  }
  X509 *cert = SSL_CTX_get0_certificate(s);
  if (cert != NULL) {
    c->cert_expiry = asn1_unix(X509_get0_notAfter(cert));
    name_text(X509_get_subject_name(cert), c->cert_subject, sizeof c->cert_subject);
  }
  ERR_clear_error();
  return c;
}

void cynic__tls_ctx_free(cynic__tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  SSL_CTX_free(ctx->ssl); /* open connections hold their own reference */
  free(ctx);
}

int64_t cynic__tls_ctx_cert_expiry(const cynic__tls_ctx_t *ctx) {
  return ctx != NULL ? ctx->cert_expiry : 0;
}

const char *cynic__tls_ctx_cert_subject(const cynic__tls_ctx_t *ctx) {
  return ctx != NULL ? ctx->cert_subject : "";
}

void cynic__tls_session_free(void **session) {
  if (*session != NULL)
    SSL_SESSION_free(*session);
  *session = NULL;
}

/* ---- the proxy's listeners and upstreams ------------------------------------------ */

static void ctxs_free(cynic__tls_reload_t *r) {
  for (size_t i = 0; i < CYNIC__CONFIG_MAX_LISTENERS; i++) {
    cynic__tls_ctx_free(r->listeners[i]);
    r->listeners[i] = NULL;
  }
  for (size_t i = 0; i < CYNIC__CONFIG_MAX_UPSTREAMS; i++) {
    cynic__tls_ctx_free(r->upstreams[i]);
    r->upstreams[i] = NULL;
  }
}

int cynic__tls_prepare(const cynic__config_t *n, cynic__tls_reload_t *r, char *why, size_t len) {
  memset(r, 0, sizeof *r);
  char err[400];
  for (size_t i = 0; i < n->listener_count && i < CYNIC__CONFIG_MAX_LISTENERS; i++) {
    const cynic__config_listener_t *l = &n->listeners[i];
    if (!l->tls.enabled)
      continue;
    r->listeners[i] = cynic__tls_ctx_new(&l->tls, true, l->mode == CYNIC__MODE_HTTP, err, sizeof err);
    if (r->listeners[i] == NULL) {
      snprintf(why, len, "listener '%s': %s", l->name, err);
      ctxs_free(r);
      return CYNIC_EINVAL;
    }
  }
  for (size_t i = 0; i < n->upstream_count && i < CYNIC__CONFIG_MAX_UPSTREAMS; i++) {
    const cynic__config_upstream_t *u = &n->upstreams[i];
    if (!u->tls.enabled)
      continue;
    r->upstreams[i] = cynic__tls_ctx_new(&u->tls, false, false, err, sizeof err);
    if (r->upstreams[i] == NULL) {
      snprintf(why, len, "upstream '%s': %s", u->name, err);
      ctxs_free(r);
      return CYNIC_EINVAL;
    }
  }
  return 0;
}

void cynic__tls_undo(cynic__tls_reload_t *r) {
  ctxs_free(r);
}

static void forget_sessions(cynic__upstream_t *u) {
  for (size_t k = 0; u->endpoints != NULL && k < u->endpoint_count; k++)
    cynic__tls_session_free(&u->endpoints[k].tls_session);
}

void cynic__tls_apply(cynic__proxy_t *p, const cynic__config_t *n, cynic__tls_reload_t *r) {
  for (size_t i = 0; i < p->listener_count; i++) {
    cynic__listener_t *l = &p->listeners[i];
    if (l->cfg == NULL || l->retired || l->cfg < n->listeners ||
        l->cfg >= n->listeners + n->listener_count)
      continue; /* vacant, or retired with the context it had */
    size_t k = (size_t)(l->cfg - n->listeners);
    cynic__tls_ctx_free(l->tls); /* open connections hold their own reference */
    l->tls = r->listeners[k];
    r->listeners[k] = NULL;
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->cfg == NULL || u->retired || u->cfg < n->upstreams ||
        u->cfg >= n->upstreams + n->upstream_count)
      continue;
    size_t k = (size_t)(u->cfg - n->upstreams);
    cynic__tls_ctx_free(u->tls);
    u->tls = r->upstreams[k];
    r->upstreams[k] = NULL;
    if (u->tls != NULL && u->cfg->tls.insecure_skip_verify)
      cynic__log_event(CYNIC_LOG_WARN, "tls_insecure", CYNIC__TLS_INSECURE_TEXT,
                       json_pack("{s:s}", "upstream", u->cfg->name));
    /* A session resumed skips verification: none survives new trust. */
    forget_sessions(u);
  }
  ctxs_free(r); /* what no object took */
}

void cynic__tls_listener_free(cynic__listener_t *l) {
  cynic__tls_ctx_free(l->tls);
  l->tls = NULL;
}

void cynic__tls_upstream_free(cynic__upstream_t *u) {
  forget_sessions(u);
  cynic__tls_ctx_free(u->tls);
  u->tls = NULL;
}
