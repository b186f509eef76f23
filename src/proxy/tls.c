/*
 * src/proxy/tls.c: the per-connection TLS engine between libuv and OpenSSL
 * (contracts in tls.h; contexts and their files are tls_ctx.c).
 */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config_value.h"
#include "err.h"
#include "log.h"
#include "proxy.h"
#include "tls_int.h"

/* ---- the engine's state -------------------------------------------------------- */

/* Ciphertext on its way out, in order. A chunk that ends a user's write
 * carries its request: its callback runs once the chunk is written. */
typedef struct chunk {
  struct chunk *next;
  uv_write_t *req;
  uv_write_cb cb;
  uint32_t off, len, cap;
  bool busy; /* in the write in flight */
  char data[];
} chunk_t;

#define CHUNK_CAP (34u * 1024u) /* two full records and their overhead */
#define CHUNKS_KEPT 32u         /* free chunks kept for reuse, process-wide */
#define WRITE_VEC 16u           /* chunks per write at most */

/* A user's write made while the server handshake still runs (TCP mode: a
 * server that speaks first): encrypted once the handshake is done. */
typedef struct plain {
  struct plain *next;
  uv_write_t *req;
  uv_write_cb cb;
  unsigned int n;
  uv_buf_t bufs[];
} plain_t;

enum { T_HANDSHAKE, T_OPEN, T_FAILED };

struct cynic__tls {
  SSL *ssl;
  cynic__stream_t *s;
  cynic__tls_stats_t *stats;
  uv_alloc_cb alloc_cb; /* the user's (read_start / read_switch) */
  uv_read_cb read_cb;
  cynic__tls_done_cb done_cb; /* client: the handshake's end; NULL once called */
  void **session;             /* client: the endpoint's kept session */
  /* ciphertext in: the socket read being handled, then what is left of it */
  const char *in;
  size_t in_len;
  char *saved;
  size_t saved_off, saved_len;
  int pending_err; /* UV_EOF or an error from the socket, once seen */
  /* ciphertext out */
  chunk_t *out_head, *out_tail;
  unsigned int out_busy; /* chunks in the write in flight */
  uv_write_t wreq;
  plain_t *plain_head, *plain_tail;
  uv_shutdown_t sreq;
  uv_shutdown_t *user_sreq;
  uv_shutdown_cb user_scb;
  uv_close_cb close_cb;
  struct cynic__tls *dnext; /* on the deferred list */
  /* server: the handshake's deadline (loop ms) while on the engine's list */
  struct cynic__tls *hs_prev, *hs_next;
  uint64_t hs_deadline_ms;
  cynic__tls_report_cb report;
  void *report_arg;
  int fail_err; /* what the user's read gets for a failed handshake */
  uint8_t state;
  bool server : 1;
  bool user_reading : 1;
  bool tcp_reading : 1;
  bool closing : 1;
  bool shut_pending : 1; /* the user asked; sent once the output is out */
  bool shut_sent : 1;
  bool read_over : 1; /* EOF or an error was delivered: nothing more to read */
  bool deferred : 1;
  bool hs_listed : 1;
  bool lingering : 1; /* closed by the user; the last ciphertext goes out first */
};

static inline uv_stream_t *tcp_of(cynic__tls_t *t) {
  return (uv_stream_t *)&t->s->tcp;
}

/* ---- chunks -------------------------------------------------------------------- */

static chunk_t *chunk_pool[CHUNKS_KEPT];
static unsigned int chunk_pooled;

static chunk_t *chunk_new(cynic__tls_t *t, size_t want) {
  chunk_t *c;
  if (want <= CHUNK_CAP && chunk_pooled > 0) {
    c = chunk_pool[--chunk_pooled];
  } else {
    size_t cap = want > CHUNK_CAP ? want : CHUNK_CAP;
    c = malloc(sizeof *c + cap);
    if (c == NULL)
      return NULL;
    c->cap = (uint32_t)cap;
  }
  c->next = NULL;
  c->req = NULL;
  c->cb = NULL;
  c->off = c->len = 0;
  c->busy = false;
  if (t->out_tail != NULL)
    t->out_tail->next = c;
  else
    t->out_head = c;
  t->out_tail = c;
  return c;
}

static void chunk_free(chunk_t *c) {
  if (c->cap == CHUNK_CAP && chunk_pooled < CHUNKS_KEPT)
    chunk_pool[chunk_pooled++] = c;
  else
    free(c);
}

/* The head chunk, written: off the list; its user's callback (if any) runs
 * with `status`. */
static void chunk_done(cynic__tls_t *t, int status) {
  chunk_t *c = t->out_head;
  t->out_head = c->next;
  if (t->out_head == NULL)
    t->out_tail = NULL;
  uv_write_t *req = c->req;
  uv_write_cb cb = c->cb;
  chunk_free(c);
  if (req != NULL) {
    req->handle = tcp_of(t);
    cb(req, status);
  }
}

/* Every write still waiting ends with `status` (a failed socket, a close). */
static void fail_writes(cynic__tls_t *t, int status) {
  while (t->out_head != NULL && !t->out_head->busy)
    chunk_done(t, status);
  while (t->plain_head != NULL) {
    plain_t *p = t->plain_head;
    t->plain_head = p->next;
    uv_write_t *req = p->req;
    uv_write_cb cb = p->cb;
    free(p);
    req->handle = tcp_of(t);
    cb(req, status);
  }
  t->plain_tail = NULL;
}

/* ---- the BIO: OpenSSL reads the socket's bytes from us, writes into chunks ---- */

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written) {
  cynic__tls_t *t = BIO_get_data(b);
  size_t done = 0;
  BIO_clear_retry_flags(b);
  while (done < len) {
    chunk_t *c = t->out_tail;
    if (c == NULL || c->busy || c->req != NULL || c->len == c->cap) {
      c = chunk_new(t, len - done);
      if (c == NULL)
        break;
    }
    size_t take = len - done;
    if (take > c->cap - c->len)
      take = c->cap - c->len;
    memcpy(c->data + c->len, data + done, take);
    c->len += (uint32_t)take;
    done += take;
  }
  *written = done;
  return done > 0 || len == 0 ? 1 : 0;
}

static int bio_read_ex(BIO *b, char *out, size_t len, size_t *got) {
  cynic__tls_t *t = BIO_get_data(b);
  size_t n = 0;
  BIO_clear_retry_flags(b);
  if (t->saved != NULL) {
    n = t->saved_len - t->saved_off;
    if (n > len)
      n = len;
    memcpy(out, t->saved + t->saved_off, n);
    t->saved_off += n;
    if (t->saved_off == t->saved_len) {
      free(t->saved);
      t->saved = NULL;
      t->saved_off = t->saved_len = 0;
    }
  } else if (t->in_len > 0) {
    n = t->in_len < len ? t->in_len : len;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
  }
  *got = n;
  if (n == 0) {
    BIO_set_retry_read(b);
    return 0;
  }
  return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method(void) {
  static BIO_METHOD *m;
  if (m == NULL) {
    m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cynic");
    if (m == NULL)
      return NULL;
    BIO_meth_set_write_ex(m, bio_write_ex);
    BIO_meth_set_read_ex(m, bio_read_ex);
    BIO_meth_set_ctrl(m, bio_ctrl);
  }
  return m;
}

/* ---- deferred work (never from inside a user's call) ----------------------------- */

static uv_idle_t deferred_idle;
static bool deferred_open;
static cynic__tls_t *deferred_head;

static void advance(cynic__tls_t *t);

static void run_deferred(uv_idle_t *h) {
  cynic__tls_t *list = deferred_head;
  deferred_head = NULL;
  while (list != NULL) {
    cynic__tls_t *t = list;
    list = t->dnext;
    t->dnext = NULL;
    t->deferred = false;
    if (!t->closing)
      advance(t);
  }
  if (deferred_head == NULL)
    uv_idle_stop(h);
}

static void defer(cynic__tls_t *t) {
  if (t->deferred)
    return;
  if (!deferred_open) {
    uv_idle_init(t->s->tcp.loop, &deferred_idle);
    uv_unref((uv_handle_t *)&deferred_idle);
    deferred_open = true;
  }
  t->deferred = true;
  t->dnext = deferred_head;
  deferred_head = t;
  uv_idle_start(&deferred_idle, run_deferred);
}

static void undefer(cynic__tls_t *t) {
  if (!t->deferred)
    return;
  for (cynic__tls_t **pp = &deferred_head; *pp != NULL; pp = &(*pp)->dnext) {
    if (*pp == t) {
      *pp = t->dnext;
      break;
    }
  }
  t->deferred = false;
}

static uv_timer_t hs_timer;
static bool hs_timer_open;
static cynic__tls_t *hs_head;

void cynic__tls_stop(void) {
  if (hs_timer_open) {
    uv_close((uv_handle_t *)&hs_timer, NULL);
    hs_timer_open = false;
  }
  hs_head = NULL;
  if (deferred_open) {
    uv_close((uv_handle_t *)&deferred_idle, NULL);
    deferred_open = false;
  }
  deferred_head = NULL;
}

/* ---- writing ciphertext ------------------------------------------------------------ */

static void on_out(uv_write_t *req, int status);
static int shut_step(cynic__tls_t *t, bool from_user);

/* Starts writing the chunks that wait, unless a write is in flight. */
static int kick(cynic__tls_t *t) {
  if (t->out_busy > 0 || t->out_head == NULL || (t->closing && !t->lingering))
    return 0;
  uv_buf_t bufs[WRITE_VEC];
  unsigned int n = 0;
  for (chunk_t *c = t->out_head; c != NULL && n < WRITE_VEC; c = c->next) {
    bufs[n++] = uv_buf_init(c->data + c->off, c->len - c->off);
    c->busy = true;
  }
  t->wreq.data = t;
  int rc = uv_write(&t->wreq, tcp_of(t), bufs, n, on_out);
  if (rc != 0) {
    for (chunk_t *c = t->out_head; c != NULL; c = c->next)
      c->busy = false;
    return rc;
  }
  t->out_busy = n;
  return 0;
}

static void finish_close(cynic__tls_t *t);
static void drain_unread(cynic__tls_t *t);

static void on_out(uv_write_t *req, int status) {
  cynic__tls_t *t = req->data;
  unsigned int n = t->out_busy;
  t->out_busy = 0;
  for (unsigned int i = 0; i < n && t->out_head != NULL; i++)
    chunk_done(t, status);
  if (t->lingering) {
    if (status < 0 || t->out_head == NULL || kick(t) != 0) {
      drain_unread(t);
      finish_close(t); /* all out, or it never will be */
    }
    return;
  }
  if (status < 0 || t->closing) {
    fail_writes(t, status < 0 ? status : UV_ECANCELED);
    return;
  }
  kick(t);
  if (t->shut_pending)
    shut_step(t, false);
}

/* ---- reading and the handshake --------------------------------------------------- */

static char in_scratch[64 * 1024]; /* one socket read; the loop is single-threaded */

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(in_scratch, sizeof in_scratch);
}

static void tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* Reads the socket only when the bytes have somewhere to go: during the
 * handshake, or while the user reads and nothing is left over from before
 * (back pressure reaches the peer). */
static void update_reading(cynic__tls_t *t) {
  bool want = !t->closing && t->state != T_FAILED && t->pending_err == 0 && !t->read_over &&
              (t->state == T_HANDSHAKE || (t->user_reading && t->saved == NULL));
  if (want && !t->tcp_reading) {
    if (uv_read_start(tcp_of(t), tcp_alloc, tcp_read) == 0)
      t->tcp_reading = true;
  } else if (!want && t->tcp_reading) {
    uv_read_stop(tcp_of(t));
    t->tcp_reading = false;
  }
}

static void hs_unlist(cynic__tls_t *t);

static void handshake_failed(cynic__tls_t *t, cynic__tls_fail_t kind, const char *why) {
  t->state = T_FAILED;
  hs_unlist(t);
  if (t->stats != NULL)
    t->stats->failed[kind]++;
  if (why != NULL)
    snprintf(cynic__tls_error, sizeof cynic__tls_error, "%s", why);
  if (t->report != NULL)
    t->report(t->report_arg, kind, cynic__tls_error);
  if (!t->server && t->done_cb != NULL) {
    cynic__tls_done_cb cb = t->done_cb;
    t->done_cb = NULL;
    update_reading(t);
    cb(t->s, kind == CYNIC__TLS_FAIL_VERIFY ? CYNIC__TLS_EVERIFY : CYNIC__TLS_EPROTOCOL);
    return;
  }
  update_reading(t);
}

static void flush_plain(cynic__tls_t *t);

/* One step of the handshake with the bytes at hand. */
static void handshake(cynic__tls_t *t) {
  ERR_clear_error();
  cynic__tls_error[0] = '\0';
  int r = SSL_do_handshake(t->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
  if (r != 1 && e == SSL_ERROR_WANT_READ && t->pending_err == 0) {
    kick(t);
    return; /* more of the peer's flight to come */
  }
  kick(t); /* our flight, or the alert that ends it */
  if (r == 1) {
    t->state = T_OPEN;
    hs_unlist(t);
    if (t->stats != NULL) {
      t->stats->handshakes++;
      if (SSL_session_reused(t->ssl))
        t->stats->resumed++;
    }
    if (t->server) {
      flush_plain(t);
    } else if (t->done_cb != NULL) {
      cynic__tls_done_cb cb = t->done_cb;
      t->done_cb = NULL;
      cb(t->s, 0);
    }
    return;
  }
  if (r != 1 && e == SSL_ERROR_WANT_READ) {
    char why[128];
    snprintf(why, sizeof why, "the peer %s during the TLS handshake",
             t->pending_err == UV_EOF ? "closed the connection" : "reset the connection");
    handshake_failed(t, CYNIC__TLS_FAIL_CLOSED, why);
    return;
  }
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK && cynic__tls_error[0] != '\0') {
    ERR_clear_error();
    handshake_failed(t, CYNIC__TLS_FAIL_VERIFY, NULL); /* on_verify wrote why */
    return;
  }
  char why[300];
  snprintf(why, sizeof why, "TLS handshake failed: %s",
           cynic__tls_ssl_reason(e == SSL_ERROR_SYSCALL ? "the connection broke" : "protocol error"));
  handshake_failed(t, CYNIC__TLS_FAIL_PROTOCOL, why);
}

/* Plaintext to the user while it reads (and there is some), then EOF or the
 * error once. */
static void deliver(cynic__tls_t *t) {
  uv_stream_t *st = tcp_of(t);
  while (t->user_reading && !t->closing && !t->read_over) {
    if (t->state == T_OPEN && t->pending_err == 0 && t->in_len == 0 && t->saved == NULL &&
        !SSL_has_pending(t->ssl))
      return; /* nothing to read: no buffer asked for */
    uv_buf_t ub = uv_buf_init(NULL, 0);
    t->alloc_cb((uv_handle_t *)st, 64 * 1024, &ub);
    if (ub.base == NULL || ub.len == 0) {
      t->read_cb(st, UV_ENOBUFS, &ub);
      return;
    }
    if (t->state == T_FAILED) {
      t->read_over = true;
      t->read_cb(st, t->fail_err != 0 ? t->fail_err : UV_EPROTO, &ub);
      return;
    }
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, ub.base, ub.len, &got);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    kick(t); /* anything OpenSSL answered (a key update) */
    if (r == 1) {
      t->read_cb(st, (ssize_t)got, &ub);
      continue;
    }
    if (e == SSL_ERROR_WANT_READ && t->pending_err == 0) {
      t->read_cb(st, 0, &ub); /* nothing more for now: the buffer goes back */
      return;
    }
    t->read_over = true;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_WANT_READ && t->pending_err == UV_EOF)) {
      t->read_cb(st, UV_EOF, &ub); /* close_notify, or the socket's end */
    } else if (e == SSL_ERROR_WANT_READ) {
      t->read_cb(st, t->pending_err, &ub);
    } else {
      snprintf(cynic__tls_error, sizeof cynic__tls_error, "TLS record refused: %s",
               cynic__tls_ssl_reason("protocol error"));
      t->read_cb(st, UV_EPROTO, &ub);
    }
    return;
  }
}

static void advance(cynic__tls_t *t) {
  if (t->closing)
    return;
  if (t->state == T_HANDSHAKE)
    handshake(t);
  if (t->closing)
    return;
  if (t->state == T_FAILED && !t->server && t->done_cb != NULL) {
    cynic__tls_done_cb cb = t->done_cb; /* a failure found at the start */
    t->done_cb = NULL;
    cb(t->s, CYNIC__TLS_EPROTOCOL);
    return;
  }
  if (t->state != T_HANDSHAKE)
    deliver(t);
  if (!t->closing)
    update_reading(t);
}

static void tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  cynic__tls_t *t = cynic__stream_tls(st);
  if (t == NULL || n == 0)
    return;
  if (n < 0) {
    t->pending_err = (int)n;
    advance(t);
    return;
  }
  t->in = buf->base;
  t->in_len = (size_t)n;
  advance(t);
  if (t->in_len > 0) {
    /* The user stopped reading: keep the rest (one socket read at most; the
     * socket is not read again until it is taken). */
    char *rest = malloc(t->in_len);
    if (rest == NULL) {
      t->pending_err = UV_ENOBUFS;
    } else {
      memcpy(rest, t->in, t->in_len);
      t->saved = rest;
      t->saved_off = 0;
      t->saved_len = t->in_len;
    }
  }
  t->in = NULL;
  t->in_len = 0;
  if (!t->closing)
    update_reading(t);
}

/* ---- connections ------------------------------------------------------------------ */

static cynic__tls_t *tls_new(cynic__stream_t *s, cynic__tls_ctx_t *ctx,
                             cynic__tls_stats_t *stats, bool server) {
  BIO_METHOD *m = bio_method();
  cynic__tls_t *t = m != NULL ? calloc(1, sizeof *t) : NULL;
  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(ctx->ssl);
  BIO *b = t->ssl != NULL ? BIO_new(m) : NULL;
  if (b == NULL) {
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  BIO_set_data(b, t);
  BIO_set_init(b, 1);
  SSL_set_bio(t->ssl, b, b);
  SSL_set_app_data(t->ssl, t);
  t->s = s;
  t->stats = stats;
  t->server = server;
  t->state = T_HANDSHAKE;
  return t;
}

int cynic__tls_new_session(SSL *ssl, SSL_SESSION *sess) {
  cynic__tls_t *t = SSL_get_app_data(ssl);
  if (t == NULL || t->session == NULL)
    return 0;
  if (*t->session != NULL)
    SSL_SESSION_free(*t->session);
  *t->session = sess;
  return 1; /* kept */
}

int cynic__tls_connect(cynic__stream_t *s, cynic__tls_ctx_t *ctx, const char *name, bool http,
                       void **session, cynic__tls_stats_t *stats, cynic__tls_done_cb cb) {
  cynic__tls_t *t = tls_new(s, ctx, stats, false);
  if (t == NULL)
    return CYNIC_ENOMEM;
  SSL_set_connect_state(t->ssl);
  if (name != NULL) {
    if (cynic__config_ip_literal(name)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
    } else {
      SSL_set_tlsext_host_name(t->ssl, name);
      SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(t->ssl, name);
    }
  }
  if (http)
    SSL_set_alpn_protos(t->ssl, (const unsigned char *)"\x08http/1.1", 9);
  if (session != NULL && *session != NULL)
    SSL_set_session(t->ssl, *session);
  t->session = session;
  t->done_cb = cb;
  s->tls = t;
  defer(t); /* the ClientHello goes out from the loop; so does any early failure */
  return 0;
}

/* ---- server handshakes' deadlines: one timer for all ---- */

#define HS_STEP_MS 100u

static void hs_unlist(cynic__tls_t *t) {
  if (!t->hs_listed)
    return;
  if (t->hs_prev != NULL)
    t->hs_prev->hs_next = t->hs_next;
  else
    hs_head = t->hs_next;
  if (t->hs_next != NULL)
    t->hs_next->hs_prev = t->hs_prev;
  t->hs_prev = t->hs_next = NULL;
  t->hs_listed = false;
  if (hs_head == NULL && hs_timer_open)
    uv_timer_stop(&hs_timer);
}

static void on_hs_timer(uv_timer_t *h);

/* On the engine's deadline list (a server handshake, or a lingering close),
 * due `ms` from now. */
static void hs_list(cynic__tls_t *t, uint64_t ms) {
  uv_loop_t *loop = t->s->tcp.loop;
  if (!hs_timer_open) {
    uv_timer_init(loop, &hs_timer);
    uv_unref((uv_handle_t *)&hs_timer);
    hs_timer_open = true;
  }
  t->hs_deadline_ms = uv_now(loop) + ms;
  t->hs_next = hs_head;
  t->hs_prev = NULL;
  if (hs_head != NULL)
    hs_head->hs_prev = t;
  hs_head = t;
  t->hs_listed = true;
  if (!uv_is_active((uv_handle_t *)&hs_timer))
    uv_timer_start(&hs_timer, on_hs_timer, HS_STEP_MS, HS_STEP_MS);
}

static void on_hs_timer(uv_timer_t *h) {
  uint64_t now = uv_now(h->loop);
  cynic__tls_t *t = hs_head;
  while (t != NULL) {
    cynic__tls_t *next = t->hs_next;
    if (t->lingering && now >= t->hs_deadline_ms) {
      finish_close(t); /* a peer that does not read: the rest is dropped */
    } else if (now >= t->hs_deadline_ms && t->state == T_HANDSHAKE && !t->closing) {
      hs_unlist(t);
      t->state = T_FAILED;
      t->fail_err = UV_ETIMEDOUT;
      if (t->stats != NULL)
        t->stats->failed[CYNIC__TLS_FAIL_TIMEOUT]++;
      snprintf(cynic__tls_error, sizeof cynic__tls_error,
               "the client did not finish its TLS handshake within timeouts.tls_handshake");
      if (t->report != NULL)
        t->report(t->report_arg, CYNIC__TLS_FAIL_TIMEOUT, cynic__tls_error);
      if (!t->closing) {
        update_reading(t);
        defer(t); /* the user's read hears it */
      }
    }
    t = next;
  }
}

int cynic__tls_accept(cynic__stream_t *s, cynic__tls_ctx_t *ctx, cynic__tls_stats_t *stats,
                      uint64_t timeout_ms, cynic__tls_report_cb report, void *report_arg) {
  cynic__tls_t *t = tls_new(s, ctx, stats, true);
  if (t == NULL)
    return CYNIC_ENOMEM;
  SSL_set_accept_state(t->ssl);
  t->report = report;
  t->report_arg = report_arg;
  t->fail_err = UV_EPROTO;
  s->tls = t;
  hs_list(t, timeout_ms);
  update_reading(t);
  return 0;
}

bool cynic__tls_handshaking(const uv_stream_t *s) {
  const cynic__tls_t *t = cynic__stream_tls(s);
  return t != NULL && t->state == T_HANDSHAKE;
}

void cynic__tls_count_timeout(const uv_stream_t *s) {
  cynic__tls_t *t = cynic__stream_tls(s);
  if (t == NULL || t->state != T_HANDSHAKE)
    return;
  t->state = T_FAILED;
  t->done_cb = NULL;
  if (t->stats != NULL)
    t->stats->failed[CYNIC__TLS_FAIL_TIMEOUT]++;
}

/* ---- the stream calls -------------------------------------------------------------- */

int cynic__tls_read_start(cynic__tls_t *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb) {
  t->alloc_cb = alloc_cb;
  t->read_cb = read_cb;
  t->user_reading = true;
  if (t->state != T_HANDSHAKE &&
      (t->saved != NULL || SSL_has_pending(t->ssl) || t->pending_err != 0 || t->state == T_FAILED))
    defer(t); /* bytes (or the end) are here already: delivered from the loop */
  update_reading(t);
  return 0;
}

int cynic__tls_read_stop(cynic__tls_t *t) {
  t->user_reading = false;
  update_reading(t);
  return 0;
}

void cynic__tls_read_switch(cynic__tls_t *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb) {
  t->alloc_cb = alloc_cb;
  t->read_cb = read_cb;
}

/* Encrypts bufs into chunks: the plaintext bytes taken, or a libuv error. */
static int encrypt(cynic__tls_t *t, const uv_buf_t bufs[], unsigned int n, size_t *total) {
  *total = 0;
  for (unsigned int i = 0; i < n; i++) {
    if (bufs[i].len == 0)
      continue;
    size_t w = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, bufs[i].base, bufs[i].len, &w) != 1) {
      snprintf(cynic__tls_error, sizeof cynic__tls_error, "TLS write failed: %s",
               cynic__tls_ssl_reason("out of memory"));
      return UV_EPROTO;
    }
    *total += w;
  }
  return 0;
}

int cynic__tls_try_write(cynic__tls_t *t, const uv_buf_t bufs[], unsigned int n) {
  if (t->state != T_OPEN || t->out_head != NULL || t->plain_head != NULL || t->shut_pending ||
      t->shut_sent || t->closing)
    return UV_EAGAIN;
  size_t total;
  int rc = encrypt(t, bufs, n, &total);
  if (rc != 0)
    return rc;
  uv_buf_t v[WRITE_VEC];
  unsigned int k = 0;
  for (chunk_t *c = t->out_head; c != NULL && k < WRITE_VEC; c = c->next)
    v[k++] = uv_buf_init(c->data + c->off, c->len - c->off);
  int w = k > 0 ? uv_try_write(tcp_of(t), v, k) : 0;
  if (w == UV_EAGAIN)
    w = 0;
  if (w < 0)
    return w;
  size_t left = (size_t)w;
  while (t->out_head != NULL && left > 0) {
    chunk_t *c = t->out_head;
    size_t in_c = c->len - c->off;
    if (left < in_c) {
      c->off += (uint32_t)left;
      break;
    }
    left -= in_c;
    chunk_done(t, 0);
  }
  if (t->out_head != NULL && (rc = kick(t)) != 0)
    return rc;
  return (int)total; /* all taken: what is not on the wire yet goes on its own */
}

/* The newest ciphertext ends the user's write `req`: its callback runs once
 * that is written. 0, or UV_ENOMEM (no chunk to carry the mark). */
static int mark_write(cynic__tls_t *t, uv_write_t *req, uv_write_cb cb) {
  chunk_t *c = t->out_tail;
  if (c == NULL || c->busy || c->req != NULL)
    c = chunk_new(t, 0);
  if (c == NULL)
    return UV_ENOMEM;
  c->req = req;
  c->cb = cb;
  return 0;
}

int cynic__tls_write(cynic__tls_t *t, uv_write_t *req, const uv_buf_t bufs[], unsigned int n,
                     uv_write_cb cb) {
  if (t->closing || t->shut_pending || t->shut_sent)
    return UV_EPIPE;
  if (t->state == T_FAILED)
    return UV_EPROTO;
  if (t->state == T_HANDSHAKE || t->plain_head != NULL) {
    plain_t *p = malloc(sizeof *p + n * sizeof(uv_buf_t));
    if (p == NULL)
      return UV_ENOMEM;
    p->next = NULL;
    p->req = req;
    p->cb = cb;
    p->n = n;
    memcpy(p->bufs, bufs, n * sizeof(uv_buf_t));
    if (t->plain_tail != NULL)
      t->plain_tail->next = p;
    else
      t->plain_head = p;
    t->plain_tail = p;
    return 0;
  }
  size_t total;
  int rc = encrypt(t, bufs, n, &total);
  if (rc != 0)
    return rc;
  if ((rc = mark_write(t, req, cb)) != 0)
    return rc;
  return kick(t);
}

/* The server handshake is done: the writes made meanwhile go out in order. */
static void flush_plain(cynic__tls_t *t) {
  while (t->plain_head != NULL) {
    plain_t *p = t->plain_head;
    t->plain_head = p->next;
    if (t->plain_head == NULL)
      t->plain_tail = NULL;
    size_t total;
    if (encrypt(t, p->bufs, p->n, &total) != 0) {
      t->plain_head = p; /* failed below with the rest */
      if (t->plain_tail == NULL)
        t->plain_tail = p;
      fail_writes(t, UV_EPROTO);
      return;
    }
    uv_write_t *req = p->req;
    uv_write_cb cb = p->cb;
    free(p);
    if (mark_write(t, req, cb) != 0) {
      req->handle = tcp_of(t); /* no memory to mark it: it ends now, failed */
      cb(req, UV_ENOMEM);
    }
  }
  kick(t);
  if (t->shut_pending)
    shut_step(t, false);
}

static void on_shut(uv_shutdown_t *req, int status) {
  cynic__tls_t *t = req->data;
  uv_shutdown_t *ureq = t->user_sreq;
  uv_shutdown_cb cb = t->user_scb;
  t->user_sreq = NULL;
  if (ureq != NULL) {
    ureq->handle = tcp_of(t);
    cb(ureq, status);
  }
}

/* The user's shutdown, a step at a time: close_notify once the session is
 * open (once), then, when every byte before it is out, the socket's sending
 * side. From the user's call (`from_user`) a failure is returned; later it
 * reaches the user's callback. */
static int shut_step(cynic__tls_t *t, bool from_user) {
  if (t->state == T_HANDSHAKE)
    return 0; /* once the handshake is over */
  if (t->state == T_OPEN && t->plain_head == NULL &&
      !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    kick(t);
  }
  if (t->out_head != NULL || t->plain_head != NULL)
    return 0; /* on_out comes back here */
  t->shut_pending = false;
  t->shut_sent = true;
  t->sreq.data = t;
  int rc = uv_shutdown(&t->sreq, tcp_of(t), on_shut);
  if (rc != 0) {
    uv_shutdown_t *ureq = t->user_sreq;
    t->user_sreq = NULL;
    if (!from_user && ureq != NULL) {
      ureq->handle = tcp_of(t);
      t->user_scb(ureq, rc);
    }
  }
  return rc;
}

int cynic__tls_shutdown(cynic__tls_t *t, uv_shutdown_t *req, uv_shutdown_cb cb) {
  if (t->closing || t->shut_pending || t->shut_sent)
    return UV_EALREADY;
  t->user_sreq = req;
  t->user_scb = cb;
  t->shut_pending = true;
  return shut_step(t, true);
}

static void tls_closed(uv_handle_t *h) {
  cynic__stream_t *s = (cynic__stream_t *)(void *)h;
  cynic__tls_t *t = s->tls;
  uv_close_cb cb = t->close_cb;
  fail_writes(t, UV_ECANCELED);
  while (t->out_head != NULL) /* busy ones whose callback libuv already gave */
    chunk_done(t, UV_ECANCELED);
  if (t->user_sreq != NULL) {
    uv_shutdown_t *ureq = t->user_sreq;
    t->user_sreq = NULL;
    ureq->handle = tcp_of(t);
    t->user_scb(ureq, UV_ECANCELED);
  }
  SSL_free(t->ssl);
  free(t->saved);
  free(t);
  s->tls = NULL;
  if (cb != NULL)
    cb(h);
}

/* Bytes the peer sent that nobody will read (TLS 1.3 session tickets, a
 * request after the last): dropped before the close, or the kernel would
 * answer the close with a reset and the peer could lose what it has not
 * read yet. At most DRAIN_MAX bytes. */
#define DRAIN_MAX (256u * 1024u)
static void drain_unread(cynic__tls_t *t) {
  /* Not in_scratch: a close may come from inside another connection's read,
   * whose unread ciphertext is still there. */
  static char sink[16 * 1024];
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&t->s->tcp, &fd) != 0)
    return;
  size_t total = 0;
  ssize_t n;
  while (total < DRAIN_MAX && (n = recv(fd, sink, sizeof sink, MSG_DONTWAIT)) > 0)
    total += (size_t)n;
}

static void finish_close(cynic__tls_t *t) {
  t->lingering = false;
  hs_unlist(t);
  uv_close((uv_handle_t *)&t->s->tcp, tls_closed);
}

void cynic__tls_close(cynic__stream_t *s, bool reset, uv_close_cb cb) {
  cynic__tls_t *t = s->tls;
  t->closing = true;
  t->close_cb = cb;
  undefer(t);
  hs_unlist(t);
  update_reading(t); /* nobody reads any more */
  if (!reset && t->state == T_OPEN && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* close_notify: the peer sees an end, not a cut */
    ERR_clear_error();
  }
  if (!reset)
    drain_unread(t);
  if (!reset && (t->out_head != NULL || t->out_busy > 0)) {
    t->lingering = true;
    hs_list(t, CYNIC__TLS_LINGER_MS);
    if (kick(t) != 0)
      finish_close(t);
    return;
  }
  finish_close(t);
}

