/*
 * src/proxy/tls.h: TLS on proxied streams (OpenSSL 3), origination towards
 * upstreams and termination of clients, behind the few stream calls the
 * relay, the HTTP session and the pool make.
 *
 * Every proxied TCP stream is a cynic__stream_t: the libuv handle and, when
 * TLS is on, the connection's TLS state. The cynic__io_* calls take the
 * uv_stream_t the rest of the proxy passes around: on a plain stream each is
 * one load, one branch and the libuv call; on a TLS stream they go through
 * the engine in tls.c, which keeps libuv's contracts (read callbacks only from
 * the loop, write callbacks in order and never from inside the call, the
 * callbacks of queued writes with UV_ECANCELED before the close callback), so
 * nothing above it knows which kind it has.
 *
 * The engine drives OpenSSL through a BIO of its own (no socket): ciphertext
 * read from the socket is handed to OpenSSL from the read buffer as it is,
 * ciphertext OpenSSL writes goes into the connection's output chunks and out
 * with uv_try_write / uv_write. Buffers (OpenSSL's own too,
 * SSL_MODE_RELEASE_BUFFERS) are held only while bytes wait: an idle TLS
 * connection keeps its SSL object and nothing else.
 *
 * Bounds: ciphertext read from the socket and not yet taken by OpenSSL is
 * one socket read (64 KB) at most, because the socket is read only while the
 * user reads (or the handshake runs); ciphertext written waits in at most
 * what the user wrote (whose own bounds are the relay's), plus the
 * handshake's flights.
 *
 * Loop thread only: the engine's scratch buffers are per process.
 */
#ifndef CYNIC_PROXY_TLS_H
#define CYNIC_PROXY_TLS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

typedef struct cynic__tls cynic__tls_t;         /* one connection's TLS */
typedef struct cynic__tls_ctx cynic__tls_ctx_t; /* one listener's or upstream's settings */

/* Why a handshake failed, for the counters and the log. */
typedef enum cynic__tls_fail {
  CYNIC__TLS_FAIL_TIMEOUT = 0, /* timeouts.tls_handshake passed */
  CYNIC__TLS_FAIL_VERIFY,      /* the peer's certificate: name, expiry, unknown CA */
  CYNIC__TLS_FAIL_PROTOCOL,    /* versions, ciphers, an alert, bytes that are not TLS */
  CYNIC__TLS_FAIL_CLOSED,      /* the peer closed or reset during the handshake */
  CYNIC__TLS_FAIL_KINDS
} cynic__tls_fail_t;

/* Per listener (clients' handshakes) or upstream (handshakes to its
 * endpoints), kept across reloads. */
typedef struct cynic__tls_stats {
  uint64_t handshakes; /* completed */
  uint64_t resumed;    /* of those, resumed sessions */
  uint64_t failed[CYNIC__TLS_FAIL_KINDS];
} cynic__tls_stats_t;

/* A proxied TCP stream: `tcp` first, so a uv_stream_t of one points at it. */
typedef struct cynic__stream {
  uv_tcp_t tcp;
  cynic__tls_t *tls; /* NULL: plain TCP */
} cynic__stream_t;

/* The TLS state of stream `s`, or NULL: plain. Streams other than TCP (the
 * unit tests' pipes) are plain. */
static inline cynic__tls_t *cynic__stream_tls(const uv_stream_t *s) {
  return s->type == UV_TCP ? ((const cynic__stream_t *)(const void *)s)->tls : NULL;
}

/* ---- contexts (at start and at each reload) ---- */

/* The context for `cfg` (enabled): certificates, keys and CAs read from their
 * files now. `server`: a listener's (terminating; `http` selects ALPN
 * http/1.1 when a client offers it); otherwise an upstream's (originating;
 * each connection says whether it offers ALPN http/1.1). NULL on failure, with a message naming the
 * file and OpenSSL's reason in `err`. */
cynic__tls_ctx_t *cynic__tls_ctx_new(const cynic__config_tls_t *cfg, bool server, bool http,
                                     char *err, size_t errlen);
/* What cynic says of an upstream with tls.insecure_skip_verify (the log at
 * start and at each reload, and --check). */
#define CYNIC__TLS_INSECURE_TEXT                                                                  \
  "tls.insecure_skip_verify: the upstream's certificate is NOT verified; anyone on the path "     \
  "can read and change this traffic (test setups only)"
void cynic__tls_ctx_free(cynic__tls_ctx_t *ctx);
/* The configured certificate's expiry (Unix seconds) and subject; 0 and ""
 * when the context has none (an upstream without a client certificate). */
int64_t cynic__tls_ctx_cert_expiry(const cynic__tls_ctx_t *ctx);
const char *cynic__tls_ctx_cert_subject(const cynic__tls_ctx_t *ctx);

/* ---- connections ---- */

/* A handshake towards an upstream is over: 0, or UV_ETIMEDOUT (never: the
 * caller's timer judges the deadline), or CYNIC__TLS_E* below. */
typedef void (*cynic__tls_done_cb)(cynic__stream_t *s, int status);
#define CYNIC__TLS_EVERIFY (-20001)   /* the upstream's certificate was refused */
#define CYNIC__TLS_EPROTOCOL (-20002) /* the handshake failed otherwise */

/* Starts TLS as a client on connected stream `s`: SNI and the verified name
 * `name` (a DNS name or an IP literal; NULL: none sent, none verified),
 * resuming `*session` (the endpoint's last session, an SSL_SESSION; replaced
 * as the server sends new ones; NULL: none kept), counting into `stats`.
 * `cb` is called once, from the loop, unless the stream is closed first.
 * 0, or CYNIC_ENOMEM (no callback). */
int cynic__tls_connect(cynic__stream_t *s, cynic__tls_ctx_t *ctx, const char *name, bool http,
                       void **session, cynic__tls_stats_t *stats, cynic__tls_done_cb cb);
/* A listener hears of each failed client handshake (to log and count it,
 * summarised): `why` as cynic__tls_last_error. */
typedef void (*cynic__tls_report_cb)(void *arg, cynic__tls_fail_t kind, const char *why);
/* Starts TLS as a server on accepted stream `s`: the handshake runs as soon
 * as the client's bytes arrive, whether the user reads yet or not, and must
 * end within `timeout_ms` (the engine's own timer, 100 ms steps: slow or
 * silent TLS clients are slowloris too). The user reads plaintext once it is
 * done; a failure reaches its read callback as UV_EPROTO (UV_ETIMEDOUT for
 * the timeout) and `report`. 0, or CYNIC_ENOMEM. */
int cynic__tls_accept(cynic__stream_t *s, cynic__tls_ctx_t *ctx, cynic__tls_stats_t *stats,
                      uint64_t timeout_ms, cynic__tls_report_cb report, void *report_arg);
/* Closes the engine's own handles (the daemon stops). */
void cynic__tls_stop(void);
/* True while the handshake of `s` is still to finish (false: plain, done or
 * failed). */
bool cynic__tls_handshaking(const uv_stream_t *s);
/* Counts a handshake of `s` cut by its deadline (the caller's timer). */
void cynic__tls_count_timeout(const uv_stream_t *s);
/* Why the last handshake failed, for the log line of the one that just
 * called back or delivered UV_EPROTO: OpenSSL's reason, and for a refused
 * certificate its subject and expiry (never key material). */
const char *cynic__tls_last_error(void);
/* Frees the endpoint's kept session (*session, from cynic__tls_connect). */
void cynic__tls_session_free(void **session);

/* ---- the stream calls (libuv's contracts; plain streams go straight to libuv) ---- */

int cynic__tls_read_start(cynic__tls_t *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
int cynic__tls_read_stop(cynic__tls_t *t);
void cynic__tls_read_switch(cynic__tls_t *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
int cynic__tls_try_write(cynic__tls_t *t, const uv_buf_t bufs[], unsigned int n);
int cynic__tls_write(cynic__tls_t *t, uv_write_t *req, const uv_buf_t bufs[], unsigned int n,
                     uv_write_cb cb);
int cynic__tls_shutdown(cynic__tls_t *t, uv_shutdown_t *req, uv_shutdown_cb cb);
void cynic__tls_close(cynic__stream_t *s, bool reset, uv_close_cb cb);

static inline int cynic__io_read_start(uv_stream_t *s, uv_alloc_cb a, uv_read_cb r) {
  cynic__tls_t *t = cynic__stream_tls(s);
  return t == NULL ? uv_read_start(s, a, r) : cynic__tls_read_start(t, a, r);
}
static inline int cynic__io_read_stop(uv_stream_t *s) {
  cynic__tls_t *t = cynic__stream_tls(s);
  return t == NULL ? uv_read_stop(s) : cynic__tls_read_stop(t);
}
/* Points a stream that is being read at other read callbacks without
 * stopping and restarting it: in libuv 1.x a stop forgets the epoll
 * registration and the next start re-adds it (two epoll_ctl calls), which
 * HTTP mode would pay twice per request as a connection goes to the idle pool
 * and back. alloc_cb and read_cb are public fields of uv_stream_t (uv.h's
 * UV_STREAM_FIELDS; the layout is libuv 1.x's stable ABI), read by libuv at
 * each read. A TLS stream keeps its own callbacks on the socket and switches
 * the user's. */
static inline void cynic__io_read_switch(uv_stream_t *s, uv_alloc_cb a, uv_read_cb r) {
  cynic__tls_t *t = cynic__stream_tls(s);
  if (t != NULL) {
    cynic__tls_read_switch(t, a, r);
    return;
  }
  s->alloc_cb = a;
  s->read_cb = r;
}
static inline int cynic__io_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned int n) {
  cynic__tls_t *t = cynic__stream_tls(s);
  return t == NULL ? uv_try_write(s, bufs, n) : cynic__tls_try_write(t, bufs, n);
}
static inline int cynic__io_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[],
                                  unsigned int n, uv_write_cb cb) {
  cynic__tls_t *t = cynic__stream_tls(s);
  return t == NULL ? uv_write(req, s, bufs, n, cb) : cynic__tls_write(t, req, bufs, n, cb);
}
static inline int cynic__io_shutdown(uv_shutdown_t *req, uv_stream_t *s, uv_shutdown_cb cb) {
  cynic__tls_t *t = cynic__stream_tls(s);
  return t == NULL ? uv_shutdown(req, s, cb) : cynic__tls_shutdown(t, req, cb);
}
/* Closes the stream (and frees its TLS state once libuv is done with it).
 * A TLS stream closed without `reset` says close_notify and first writes
 * what it still holds (ciphertext a plain socket would have left to the
 * kernel), for at most CYNIC__TLS_LINGER_MS; `cb` runs once it is closed. */
#define CYNIC__TLS_LINGER_MS 10000u
static inline void cynic__io_close(cynic__stream_t *s, bool reset, uv_close_cb cb) {
  if (s->tls == NULL)
    uv_close((uv_handle_t *)&s->tcp, cb);
  else
    cynic__tls_close(s, reset, cb);
}

/* ---- the proxy's listeners and upstreams (at start and at each reload) ---- */

struct cynic__proxy;
struct cynic__listener;
struct cynic__upstream;
/* The contexts of a config: one per listener and upstream with tls on, by
 * their index in the config. */
typedef struct cynic__tls_reload {
  cynic__tls_ctx_t *listeners[CYNIC__CONFIG_MAX_LISTENERS];
  cynic__tls_ctx_t *upstreams[CYNIC__CONFIG_MAX_UPSTREAMS];
} cynic__tls_reload_t;
/* Builds every context config `n` asks for, reading the files now: 0, or
 * CYNIC_EINVAL with `why` naming the listener or upstream, the file and the
 * reason (nothing kept). */
int cynic__tls_prepare(const cynic__config_t *n, cynic__tls_reload_t *r, char *why, size_t len);
/* Frees what cynic__tls_prepare built (a reload refused later on). */
void cynic__tls_undo(cynic__tls_reload_t *r);
/* Gives each listener and upstream of `p` made from `n` (not retired) its
 * new context; the old ones go (open connections keep theirs) and the
 * upstreams' kept sessions with them. `r` is emptied. */
void cynic__tls_apply(struct cynic__proxy *p, const cynic__config_t *n, cynic__tls_reload_t *r);
void cynic__tls_listener_free(struct cynic__listener *l);
void cynic__tls_upstream_free(struct cynic__upstream *u);

#endif /* CYNIC_PROXY_TLS_H */
