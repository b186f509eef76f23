/*
 * tests/unit/proxy/test_tls.c: the TLS engine (src/proxy/tls.c) at both
 * ends of real loopback connections in one loop: cynic__tls_connect on one
 * side, cynic__tls_accept on the other, the stream calls the relay and the
 * HTTP session use (cynic__io_*) on both. What the integration tests cannot
 * reach from outside: libuv's contracts kept under back pressure (a reader
 * that stops and starts again, writes queued on a full socket, callbacks
 * in order and never from inside a call), the end of a stream (shutdown is
 * close_notify then FIN; a close without reset writes what it holds first),
 * and the handshake's refusals and deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <uv.h>

#include "proxy.h"
#include "tls.h"

static char dir[] = "/tmp/cynic-test-tls-XXXXXX";
static char cert_path[64], key_path[64];

/* A key and a certificate for "localhost", self-signed: the server's, and
 * the CA the client trusts. */
static int make_files(void **state) {
  (void)state;
  if (mkdtemp(dir) == NULL)
    return -1;
  snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_sign(x, key, EVP_sha256());
  FILE *c = fopen(cert_path, "w"), *k = fopen(key_path, "w");
  if (c == NULL || k == NULL)
    return -1;
  PEM_write_X509(c, x);
  PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL);
  fclose(c);
  fclose(k);
  X509_free(x);
  EVP_PKEY_free(key);
  return 0;
}

static int remove_files(void **state) {
  (void)state;
  unlink(cert_path);
  unlink(key_path);
  rmdir(dir);
  return 0;
}

/* ---- a pair of TLS streams over one loopback connection ---------------------- */

typedef struct side {
  cynic__stream_t s;
  int handles;       /* open until its close callback */
  int done_status;   /* the client handshake's result; 1 until it comes */
  unsigned char *got; /* bytes read, in order */
  size_t got_len, got_cap;
  ssize_t end; /* 0 while reading; UV_EOF or the error that ended it */
  int reads;   /* reads delivered so far */
  int stop_every; /* > 0: stop reading after every that many reads... */
  bool stopped;   /* ...and start again from a timer */
  bool in_call;   /* inside one of our calls into the engine */
  bool cb_in_call; /* a callback came from inside such a call: a broken contract */
} side_t;

typedef struct pair {
  uv_loop_t loop;
  uv_tcp_t listener;
  side_t c, s;
  uv_timer_t restart; /* resumes a stopped reader */
  cynic__tls_ctx_t *cctx, *sctx;
  cynic__tls_stats_t cstats, sstats;
  void *session;
  bool accepted;
} pair_t;

static char alloc_buf[4096]; /* small: many reads, partial records */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(alloc_buf, sizeof alloc_buf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  side_t *d = st->data;
  if (d->in_call)
    d->cb_in_call = true;
  if (n == 0)
    return;
  if (n < 0) {
    d->end = n;
    cynic__io_read_stop(st);
    return;
  }
  if (d->got_len + (size_t)n > d->got_cap) {
    d->got_cap = (d->got_len + (size_t)n) * 2;
    d->got = realloc(d->got, d->got_cap);
  }
  memcpy(d->got + d->got_len, buf->base, (size_t)n);
  d->got_len += (size_t)n;
  d->reads++;
  if (d->stop_every > 0 && d->reads % d->stop_every == 0) {
    cynic__io_read_stop(st); /* back pressure: the rest waits in the engine */
    d->stopped = true;
  }
}

static void on_restart(uv_timer_t *t) {
  pair_t *p = t->data;
  side_t *sides[2] = {&p->c, &p->s};
  for (int i = 0; i < 2; i++) {
    side_t *d = sides[i];
    if (d->stopped && d->end == 0) {
      d->stopped = false;
      d->in_call = true;
      assert_int_equal(cynic__io_read_start((uv_stream_t *)&d->s.tcp, on_alloc, on_read), 0);
      d->in_call = false;
    }
  }
}

static void on_done(cynic__stream_t *s, int status) {
  side_t *d = cynic__container_of(s, side_t, s);
  if (d->in_call)
    d->cb_in_call = true;
  d->done_status = status;
}

static void on_closed(uv_handle_t *h) {
  ((side_t *)h->data)->handles--;
}

static void on_accept(uv_stream_t *l, int status) {
  pair_t *p = l->data;
  assert_int_equal(status, 0);
  uv_tcp_init(&p->loop, &p->s.s.tcp);
  p->s.s.tcp.data = &p->s;
  p->s.handles = 1;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&p->s.s.tcp), 0);
  assert_int_equal(cynic__tls_accept(&p->s.s, p->sctx, &p->sstats, 2000, NULL, NULL), 0);
  assert_int_equal(cynic__io_read_start((uv_stream_t *)&p->s.s.tcp, on_alloc, on_read), 0);
  p->accepted = true;
}

static void on_connected(uv_connect_t *req, int status) {
  pair_t *p = req->data;
  assert_int_equal(status, 0);
  if (p->cctx == NULL)
    return; /* a raw client: says nothing */
  p->c.in_call = true;
  assert_int_equal(cynic__tls_connect(&p->c.s, p->cctx, "localhost", true, &p->session,
                                      &p->cstats, on_done),
                   0);
  p->c.in_call = false;
}

/* Runs the loop until `cond` or 10 s (then the test fails). */
#define RUN_UNTIL(p, cond)                                                                         \
  do {                                                                                             \
    uint64_t until_ = uv_now(&(p)->loop) + 10000;                                                  \
    while (!(cond)) {                                                                              \
      assert_true(uv_now(&(p)->loop) < until_);                                                    \
      uv_run(&(p)->loop, UV_RUN_ONCE);                                                             \
    }                                                                                              \
  } while (0)

static uv_connect_t connect_req;
static uv_timer_t tick; /* keeps RUN_UNTIL's clock moving */
static void on_tick(uv_timer_t *t) {
  (void)t;
}

/* A listener, a client connected to it, TLS on both (client: `tls`; a raw
 * client otherwise), and the client's handshake over. */
static pair_t *pair_new(const char *name, bool tls) {
  pair_t *p = calloc(1, sizeof *p);
  assert_int_equal(uv_loop_init(&p->loop), 0);
  cynic__config_tls_t scfg = {.enabled = true, .cert_file = cert_path, .key_file = key_path};
  cynic__config_tls_t ccfg = {.enabled = true, .ca_file = cert_path};
  char err[256];
  p->sctx = cynic__tls_ctx_new(&scfg, true, true, err, sizeof err);
  assert_non_null(p->sctx);
  if (tls) {
    p->cctx = cynic__tls_ctx_new(&ccfg, false, false, err, sizeof err);
    assert_non_null(p->cctx);
  }
  uv_tcp_init(&p->loop, &p->listener);
  p->listener.data = p;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&p->listener, (const struct sockaddr *)&a, 0), 0);
  int len = sizeof a;
  uv_tcp_getsockname(&p->listener, (struct sockaddr *)&a, &len);
  assert_int_equal(uv_listen((uv_stream_t *)&p->listener, 8, on_accept), 0);
  uv_timer_init(&p->loop, &p->restart);
  p->restart.data = p;
  uv_timer_start(&p->restart, on_restart, 1, 1);
  uv_timer_init(&p->loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  uv_tcp_init(&p->loop, &p->c.s.tcp);
  p->c.s.tcp.data = &p->c;
  p->c.handles = 1;
  p->c.done_status = 1;
  connect_req.data = p;
  assert_int_equal(uv_tcp_connect(&connect_req, &p->c.s.tcp, (const struct sockaddr *)&a,
                                  on_connected),
                   0);
  (void)name;
  RUN_UNTIL(p, p->accepted && (!tls || p->c.done_status != 1));
  return p;
}

static void pair_free(pair_t *p) {
  if (p->c.handles > 0 && !uv_is_closing((uv_handle_t *)&p->c.s.tcp))
    cynic__io_close(&p->c.s, true, on_closed);
  if (p->s.handles > 0 && !uv_is_closing((uv_handle_t *)&p->s.s.tcp))
    cynic__io_close(&p->s.s, true, on_closed);
  uv_close((uv_handle_t *)&p->listener, NULL);
  uv_close((uv_handle_t *)&p->restart, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  cynic__tls_stop();
  while (uv_run(&p->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(uv_loop_close(&p->loop), 0);
  cynic__tls_ctx_free(p->cctx);
  cynic__tls_ctx_free(p->sctx);
  cynic__tls_session_free(&p->session);
  free(p->c.got);
  free(p->s.got);
  free(p);
}

/* ---- writes: many queued on a full socket, callbacks in order ---------------- */

#define WRITES 48
#define WRITE_LEN (64 * 1024)
static unsigned char *payload;
static int written[WRITES];
static int write_order;
static uv_write_t wreqs[WRITES];

static void on_written(uv_write_t *req, int status) {
  pair_t *p = req->data;
  if (p->c.in_call)
    p->c.cb_in_call = true;
  int i = (int)(req - wreqs);
  assert_int_equal(status, 0);
  assert_int_equal(i, write_order); /* in the order they were made */
  written[i] = ++write_order;
}

static int shut_status;
static void on_shut(uv_shutdown_t *req, int status) {
  (void)req;
  shut_status = status;
}

static void fill_payload(void) {
  payload = malloc((size_t)WRITES * WRITE_LEN);
  for (size_t i = 0; i < (size_t)WRITES * WRITE_LEN; i++)
    payload[i] = (unsigned char)(i * 2654435761u >> 13);
}

static void test_handshake_both_ways(void **state) {
  (void)state;
  pair_t *p = pair_new("localhost", true);
  assert_int_equal(p->c.done_status, 0);
  RUN_UNTIL(p, p->sstats.handshakes == 1);
  assert_int_equal(p->cstats.handshakes, 1);
  assert_false(p->c.cb_in_call);
  assert_false(cynic__tls_handshaking((uv_stream_t *)&p->c.s.tcp));
  pair_free(p);
}

static void test_bulk_with_a_stopping_reader_keeps_every_byte_in_order(void **state) {
  (void)state;
  fill_payload();
  pair_t *p = pair_new("localhost", true);
  p->s.stop_every = 3; /* the server stops reading every 3 reads; a timer resumes it */
  write_order = 0;
  p->c.in_call = true;
  for (int i = 0; i < WRITES; i++) {
    wreqs[i].data = p;
    uv_buf_t b = uv_buf_init((char *)payload + (size_t)i * WRITE_LEN, WRITE_LEN);
    if (i % 2 == 0) {
      assert_int_equal(cynic__io_write(&wreqs[i], (uv_stream_t *)&p->c.s.tcp, &b, 1, on_written),
                       0);
    } else { /* try first, as the relay does; queue the rest */
      int n = cynic__io_try_write((uv_stream_t *)&p->c.s.tcp, &b, 1);
      assert_true(n == UV_EAGAIN || n == WRITE_LEN);
      if (n == WRITE_LEN) {
        written[i] = -1; /* taken whole: no callback */
        if (write_order == i)
          write_order++;
      } else {
        assert_int_equal(
            cynic__io_write(&wreqs[i], (uv_stream_t *)&p->c.s.tcp, &b, 1, on_written), 0);
      }
    }
  }
  p->c.in_call = false;
  uv_shutdown_t sreq;
  shut_status = 1;
  assert_int_equal(cynic__io_shutdown(&sreq, (uv_stream_t *)&p->c.s.tcp, on_shut), 0);
  RUN_UNTIL(p, p->s.end != 0);
  assert_int_equal(p->s.end, UV_EOF); /* close_notify, after every byte */
  RUN_UNTIL(p, shut_status != 1);
  assert_int_equal(shut_status, 0);
  assert_int_equal(p->s.got_len, (size_t)WRITES * WRITE_LEN);
  assert_memory_equal(p->s.got, payload, (size_t)WRITES * WRITE_LEN);
  assert_true(p->s.reads > 3 * 10); /* it did stop and start again, many times */
  assert_false(p->c.cb_in_call);
  assert_false(p->s.cb_in_call);
  pair_free(p);
  free(payload);
}

static void test_a_close_without_reset_writes_what_it_holds_first(void **state) {
  (void)state;
  fill_payload();
  pair_t *p = pair_new("localhost", true);
  p->s.stop_every = 2;
  write_order = 0;
  for (int i = 0; i < WRITES; i++) {
    wreqs[i].data = p;
    uv_buf_t b = uv_buf_init((char *)payload + (size_t)i * WRITE_LEN, WRITE_LEN);
    assert_int_equal(cynic__io_write(&wreqs[i], (uv_stream_t *)&p->c.s.tcp, &b, 1, on_written),
                     0);
  }
  /* Closed at once, as a session that answered and closes: nothing is cut. */
  cynic__io_close(&p->c.s, false, on_closed);
  RUN_UNTIL(p, p->s.end != 0);
  assert_int_equal(p->s.end, UV_EOF);
  assert_int_equal(p->s.got_len, (size_t)WRITES * WRITE_LEN);
  assert_memory_equal(p->s.got, payload, (size_t)WRITES * WRITE_LEN);
  RUN_UNTIL(p, p->c.handles == 0);
  assert_int_equal(write_order, WRITES); /* every callback, each once, in order */
  pair_free(p);
  free(payload);
}

static void test_a_wrong_name_is_refused_with_the_certificate_named(void **state) {
  (void)state;
  /* the pair's client verifies "localhost"; this one asks for another name */
  pair_t *p = pair_new("localhost", false); /* a raw client: connect TLS by hand */
  cynic__config_tls_t ccfg = {.enabled = true, .ca_file = cert_path};
  char err[256];
  p->cctx = cynic__tls_ctx_new(&ccfg, false, false, err, sizeof err);
  assert_non_null(p->cctx);
  p->c.done_status = 1;
  assert_int_equal(cynic__tls_connect(&p->c.s, p->cctx, "wrong.example", false, &p->session,
                                      &p->cstats, on_done),
                   0);
  RUN_UNTIL(p, p->c.done_status != 1);
  assert_int_equal(p->c.done_status, CYNIC__TLS_EVERIFY);
  assert_int_equal(p->cstats.failed[CYNIC__TLS_FAIL_VERIFY], 1);
  assert_non_null(strstr(cynic__tls_last_error(), "hostname mismatch"));
  assert_non_null(strstr(cynic__tls_last_error(), "CN=localhost"));
  assert_null(p->session); /* nothing kept from a refused server */
  pair_free(p);
}

static void test_a_silent_client_is_cut_at_the_handshake_deadline(void **state) {
  (void)state;
  pair_t *p = pair_new("localhost", false); /* connects, says nothing */
  uint64_t start = uv_now(&p->loop);
  assert_true(cynic__tls_handshaking((uv_stream_t *)&p->s.s.tcp));
  RUN_UNTIL(p, p->s.end != 0);
  uint64_t took = uv_now(&p->loop) - start;
  assert_int_equal(p->s.end, UV_ETIMEDOUT);
  /* 2 s, on the engine's 100 ms steps; late by up to 5 s on a loaded machine */
  assert_true(took >= 1900 && took < 7000);
  assert_int_equal(p->sstats.failed[CYNIC__TLS_FAIL_TIMEOUT], 1);
  pair_free(p);
}

static void test_bad_files_are_refused_with_the_file_named(void **state) {
  (void)state;
  char err[400];
  cynic__config_tls_t swapped = {.enabled = true, .cert_file = key_path, .key_file = cert_path};
  assert_null(cynic__tls_ctx_new(&swapped, true, false, err, sizeof err));
  assert_non_null(strstr(err, key_path));
  cynic__config_tls_t missing = {.enabled = true, .ca_file = "/nonexistent/ca.pem"};
  assert_null(cynic__tls_ctx_new(&missing, false, false, err, sizeof err));
  assert_non_null(strstr(err, "tls.ca_file '/nonexistent/ca.pem'"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_both_ways),
      cmocka_unit_test(test_bulk_with_a_stopping_reader_keeps_every_byte_in_order),
      cmocka_unit_test(test_a_close_without_reset_writes_what_it_holds_first),
      cmocka_unit_test(test_a_wrong_name_is_refused_with_the_certificate_named),
      cmocka_unit_test(test_a_silent_client_is_cut_at_the_handshake_deadline),
      cmocka_unit_test(test_bad_files_are_refused_with_the_file_named),
  };
  return cmocka_run_group_tests(tests, make_files, remove_files);
}
