/* Unit tests of src/common/httpd.c over a real loopback socket on one loop:
 * deferred answers keep pipelined order; a deferred answer whose connection
 * is gone is discarded without a crash or a leak; a streamed answer sends
 * its head at once, ignores pipelined requests, is closed (on_close once)
 * when a write passes max_pending or when its owner closes it. The
 * bulkhead of a control plane: one request in flight per connection and no
 * read-ahead, produced bodies in chunked slices with back pressure, a
 * producer's failure before the head (503) and after it (cut, no last
 * chunk), eviction of the longest-idle connection at capacity, a silent
 * connection closed at the request timeout, an answer with close set (401)
 * ending the connection. A local connection (cynic__httpd_feed, the fuzz
 * targets' way in) gets the same answers with no socket at all. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "httpd.h"

typedef struct fixture {
  uv_loop_t loop;
  cynic__httpd_t server;
  uv_tcp_t client;
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t later; /* completes the pending answer */
  uint64_t later_ms;
  cynic__httpd_pending_t *pending;
  bool request_seen_at_complete; /* cynic__httpd_pending_request was non-NULL */
  const char *send;
  char got[16384];
  size_t got_len;
  bool eof;
  cynic__httpd_stream_t *stream; /* the streamed answer, until on_close */
  int stream_closes;             /* on_close calls */
  int overflow_rc;               /* the write past max_pending */
} fixture_t;

static fixture_t *fx;

static void on_later(uv_timer_t *t);
static void finish_test(void);

static void on_stream_close(cynic__httpd_stream_t *st, void *arg) {
  fixture_t *f = arg;
  assert_ptr_equal(st, f->stream);
  f->stream = NULL;
  f->stream_closes++;
}

static void on_stream_later(uv_timer_t *t) {
  (void)t;
  if (fx->stream != NULL)
    cynic__httpd_stream_close(fx->stream);
}

static void handler(void *arg, const cynic__http_parser_t *req, cynic__httpd_response_t *resp) {
  (void)arg;
  if (strncmp(req->url.data, "/stream", 7) == 0) {
    resp->content_type = "text/event-stream";
    resp->headers = "Cache-Control: no-store\r\n";
    fx->stream = cynic__httpd_stream(resp, 4096, 0, on_stream_close, fx);
    assert_non_null(fx->stream);
    if (strcmp(req->url.data, "/stream-big") == 0) {
      /* Under the bound when written: one message larger than max_pending
       * goes out whole to a client that reads. */
      static char big[8192];
      memset(big, 'y', sizeof big);
      assert_int_equal(cynic__httpd_stream_write(fx->stream, big, sizeof big), 0);
      uv_timer_start(&fx->later, on_stream_later, fx->later_ms, 0);
      return;
    }
    assert_int_equal(cynic__httpd_stream_write(fx->stream, "one;", 4), 0);
    assert_true(cynic__httpd_stream_pending(fx->stream) >= 4);
    if (strcmp(req->url.data, "/stream-overflow") == 0) {
      static char big[8192];
      memset(big, 'x', sizeof big);
      /* Under the bound when written: queued whole. The next write finds more
       * than the bound pending (nothing is written before the handler returns). */
      assert_int_equal(cynic__httpd_stream_write(fx->stream, big, sizeof big), 0);
      fx->overflow_rc = cynic__httpd_stream_write(fx->stream, "zzzz", 4);
      assert_null(fx->stream); /* closed inside the write */
    } else {
      uv_timer_start(&fx->later, on_stream_later, fx->later_ms, 0);
    }
    return;
  }
  if (strcmp(req->url.data, "/slow") == 0) {
    fx->pending = cynic__httpd_defer(resp);
    assert_non_null(fx->pending);
    assert_ptr_equal(cynic__httpd_defer(resp), fx->pending); /* same handle twice */
    cynic__buf_puts(&resp->body, "ignored");
    uv_timer_start(&fx->later, on_later, fx->later_ms, 0);
    return;
  }
  cynic__buf_puts(&resp->body, req->url.data);
}

static void on_later(uv_timer_t *t) {
  (void)t;
  const cynic__http_parser_t *req = cynic__httpd_pending_request(fx->pending);
  fx->request_seen_at_complete = req != NULL;
  if (req != NULL)
    assert_string_equal(req->url.data, "/slow");
  cynic__buf_puts(&cynic__httpd_pending_response(fx->pending)->body, "slow-answer");
  cynic__httpd_complete(fx->pending);
  fx->pending = NULL;
  if (fx->eof)
    finish_test();
}

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  (void)n;
  b->base = fx->got + fx->got_len;
  b->len = sizeof(fx->got) - 1 - fx->got_len;
}

static void server_closed(cynic__httpd_t *s) {
  (void)s;
}

/* Both the exchange and the pending answer are over: close the rest. */
static void finish_test(void) {
  uv_close((uv_handle_t *)&fx->later, NULL);
  cynic__httpd_close(&fx->server, server_closed);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n > 0) {
    fx->got_len += (size_t)n;
    return;
  }
  if (n < 0) {
    fx->eof = true;
    uv_close((uv_handle_t *)s, NULL);
    if (fx->pending == NULL)
      finish_test();
  }
}

static void on_written(uv_write_t *w, int status) {
  (void)w;
  assert_int_equal(status, 0);
}

static void on_connect(uv_connect_t *c, int status) {
  assert_int_equal(status, 0);
  uv_buf_t b = uv_buf_init((char *)fx->send, (unsigned)strlen(fx->send));
  assert_int_equal(uv_write(&fx->write, c->handle, &b, 1, on_written), 0);
  assert_int_equal(uv_read_start(c->handle, on_alloc, on_read), 0);
}

/* Run one exchange: `send` on a fresh connection; the pending answer is
 * completed `later_ms` after the handler deferred it. */
static void exchange(fixture_t *f, uint64_t request_timeout_ms, uint64_t later_ms,
                     const char *send) {
  memset(f, 0, sizeof(*f));
  fx = f;
  f->send = send;
  f->later_ms = later_ms;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  cynic__httpd_config_t cfg;
  cynic__httpd_config_default(&cfg);
  cfg.request_timeout_ms = request_timeout_ms;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  assert_int_equal(
      cynic__httpd_start(&f->server, &f->loop, &cfg, (struct sockaddr *)&sa, handler, f), 0);
  struct sockaddr_storage bound;
  assert_int_equal(cynic__httpd_address(&f->server, &bound), 0);
  uv_timer_init(&f->loop, &f->later);
  uv_tcp_init(&f->loop, &f->client);
  assert_int_equal(uv_tcp_connect(&f->connect, &f->client, (struct sockaddr *)&bound, on_connect),
                   0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left behind */
  f->got[f->got_len] = '\0';
}

static void deferred_answer_keeps_pipelined_order(void **state) {
  (void)state;
  fixture_t f;
  exchange(&f, 5000, 30,
           "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  assert_true(f.eof);
  assert_true(f.request_seen_at_complete);
  const char *a = strstr(f.got, "slow-answer");
  const char *b = strstr(f.got, "/fast");
  const char *c = strstr(f.got, "/last");
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_true(a < b && b < c);
  assert_null(strstr(f.got, "ignored"));
}

static void deferred_answer_after_connection_gone(void **state) {
  (void)state;
  fixture_t f;
  /* The request timeout (20 ms) closes the connection while the answer is
   * pending (completed at 100 ms): it is discarded, nothing leaks. */
  exchange(&f, 20, 100, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_true(f.eof);
  assert_false(f.request_seen_at_complete);
  assert_int_equal(f.got_len, 0);
}

static void streamed_answer_closed_past_max_pending(void **state) {
  (void)state;
  fixture_t f;
  exchange(&f, 5000, 0,
           "GET /stream-overflow HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_true(f.eof);
  assert_int_equal(f.stream_closes, 1);
  assert_int_equal(f.overflow_rc, CYNIC_ERANGE);
  assert_non_null(strstr(f.got, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
  assert_non_null(strstr(f.got, "Cache-Control: no-store\r\nConnection: close\r\n\r\none;"));
  assert_null(strstr(f.got, "Content-Length"));
  assert_null(strstr(f.got, "zzzz"));  /* the write past the bound was not sent */
  assert_null(strstr(f.got, "/fast")); /* pipelined after a stream: dropped */
}

static void streamed_answer_larger_than_the_bound_goes_whole_to_a_reader(void **state) {
  (void)state;
  fixture_t f;
  exchange(&f, 5000, 200, "GET /stream-big HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_true(f.eof);
  assert_int_equal(f.stream_closes, 1); /* closed by its owner, not dropped */
  const char *body = strstr(f.got, "\r\n\r\n");
  assert_non_null(body);
  assert_int_equal(strlen(body + 4), 8192);
  assert_int_equal(strspn(body + 4, "y"), 8192);
}

static void streamed_answer_closed_by_its_owner(void **state) {
  (void)state;
  fixture_t f;
  /* a request timeout shorter than the stream's life: streams have none */
  exchange(&f, 20, 100, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_true(f.eof);
  assert_int_equal(f.stream_closes, 1);
  const char *body = strstr(f.got, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "one;");
}

/* ---- bulkhead tests: a blocking client in a thread against the loop ---- */

typedef struct bh {
  uv_loop_t loop;
  cynic__httpd_t server;
  uv_async_t stop;
  int port;
  void (*client)(struct bh *b);
  pthread_t thread;
  atomic_int handled;       /* handler calls */
  atomic_int produced;      /* produce calls */
  atomic_int produce_frees; /* produce_free calls */
  atomic_int big_done;      /* the produced body of /big is complete */
  atomic_int order_ok;      /* /next ran only after /big was complete */
  atomic_int failed;        /* a CHECK failed (cmocka's asserts are for the main thread) */
  size_t big_slices;        /* slices in /big */
  uv_timer_t later;         /* completes /defer's answer 300 ms after the handler */
  cynic__httpd_pending_t *pending;
} bh_t;

static bh_t *bhx;

/* In the client thread: report and remember (the main thread asserts). */
#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);                        \
      atomic_store(&bhx->failed, 1);                                                               \
    }                                                                                              \
  } while (0)

static int big_produce(void *arg, cynic__buf_t *out, size_t want) {
  bh_t *b = arg;
  int n = atomic_fetch_add(&b->produced, 1);
  char line[64];
  while (out->len < want) {
    snprintf(line, sizeof line, "slice %06d line ............................\n", n);
    cynic__buf_puts(out, line);
  }
  if ((size_t)n + 1 >= b->big_slices) {
    atomic_store(&b->big_done, 1);
    return 1;
  }
  return 0;
}

static int failing_produce(void *arg, cynic__buf_t *out, size_t want) {
  bh_t *b = arg;
  int n = atomic_fetch_add(&b->produced, 1);
  if (n == 0) { /* the first slice: the head goes out with it */
    while (out->len < want)
      cynic__buf_puts(out, "partial body partial body partial body\n");
    return 0;
  }
  return CYNIC_ERANGE;
}

static int failing_at_once(void *arg, cynic__buf_t *out, size_t want) {
  bh_t *b = arg;
  (void)want;
  atomic_fetch_add(&b->produced, 1);
  cynic__buf_puts(out, "half a bo"); /* then a failure: none of it is sent */
  return CYNIC_ENOMEM;
}

static void count_free(void *arg) {
  bh_t *b = arg;
  atomic_fetch_add(&b->produce_frees, 1);
}

static void bh_later(uv_timer_t *t) {
  bh_t *b = t->data;
  cynic__buf_puts(&cynic__httpd_pending_response(b->pending)->body, "deferred-answer");
  cynic__httpd_complete(b->pending);
  b->pending = NULL;
}

static void bh_handler(void *arg, const cynic__http_parser_t *req, cynic__httpd_response_t *resp) {
  bh_t *b = arg;
  atomic_fetch_add(&b->handled, 1);
  const char *url = req->url.data;
  if (strcmp(url, "/defer") == 0) {
    b->pending = cynic__httpd_defer(resp);
    uv_timer_start(&b->later, bh_later, 300, 0);
    return;
  }
  if (strcmp(url, "/big") == 0 || strcmp(url, "/fail-late") == 0 ||
      strcmp(url, "/fail-early") == 0) {
    resp->content_type = "text/plain";
    resp->produce = strcmp(url, "/big") == 0         ? big_produce
                    : strcmp(url, "/fail-late") == 0 ? failing_produce
                                                     : failing_at_once;
    resp->produce_free = count_free;
    resp->produce_arg = b;
    return;
  }
  if (strcmp(url, "/deny") == 0) {
    resp->status = 401;
    resp->close = true;
  }
  if (strcmp(url, "/next") == 0)
    atomic_store(&b->order_ok, atomic_load(&b->big_done));
  cynic__buf_puts(&resp->body, url);
}

static void *bh_thread(void *arg) {
  bh_t *b = arg;
  b->client(b);
  uv_async_send(&b->stop);
  return NULL;
}

static void bh_stop(uv_async_t *a) {
  bh_t *b = a->data;
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&b->later, NULL);
  cynic__httpd_close(&b->server, server_closed);
}

static void bh_run(bh_t *b, cynic__httpd_config_t *cfg, void (*client)(bh_t *)) {
  bhx = b;
  b->client = client;
  CHECK((uv_loop_init(&b->loop)) == (0));
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  assert_int_equal(
      cynic__httpd_start(&b->server, &b->loop, cfg, (struct sockaddr *)&sa, bh_handler, b), 0);
  struct sockaddr_storage bound;
  CHECK((cynic__httpd_address(&b->server, &bound)) == (0));
  b->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_async_init(&b->loop, &b->stop, bh_stop);
  b->stop.data = b;
  uv_timer_init(&b->loop, &b->later);
  b->later.data = b;
  CHECK((pthread_create(&b->thread, NULL, bh_thread, b)) == (0));
  uv_run(&b->loop, UV_RUN_DEFAULT);
  pthread_join(b->thread, NULL);
  assert_int_equal(atomic_load(&b->failed), 0);
  assert_int_equal(uv_loop_close(&b->loop), 0); /* no handle left behind */
}

/* What a test changes from the defaults (0: the default). */
typedef struct {
  size_t big_slices; /* slices in /big */
  size_t max_conns, slice_bytes;
  uint64_t request_timeout_ms, idle_timeout_ms;
} bh_opts_t;

/* A server with cynic__httpd_config_default's settings but `o`'s, and
 * `client` run against it in its own thread; the finished run (for what the
 * main thread asserts once the loop has stopped). */
static const bh_t *bh_test(void (*client)(bh_t *), bh_opts_t o) {
  static bh_t b;
  memset(&b, 0, sizeof b);
  b.big_slices = o.big_slices;
  cynic__httpd_config_t cfg;
  cynic__httpd_config_default(&cfg);
  if (o.max_conns != 0)
    cfg.max_conns = o.max_conns;
  if (o.slice_bytes != 0)
    cfg.slice_bytes = o.slice_bytes;
  if (o.request_timeout_ms != 0)
    cfg.request_timeout_ms = o.request_timeout_ms;
  if (o.idle_timeout_ms != 0)
    cfg.idle_timeout_ms = o.idle_timeout_ms;
  bh_run(&b, &cfg, client);
  return &b;
}

static int cl_connect(bh_t *b) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)b->port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK((connect(fd, (struct sockaddr *)&sa, sizeof sa)) == (0));
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void cl_send(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
    CHECK(k > 0);
    s += k;
    n -= (size_t)k;
  }
}

/* Reads until EOF (or `until` appears, when non-NULL) into a malloc'd
 * buffer; *len set. */
static char *cl_read(int fd, const char *until, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    ssize_t k = recv(fd, buf + n, cap - n, 0);
    if (k <= 0)
      break;
    n += (size_t)k;
    buf[n] = '\0';
    if (until != NULL && n >= strlen(until) && strstr(buf + (n > 4096 ? n - 4096 : 0), until))
      break;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Pipelined behind a large produced body, with the client not reading:
 * the next request is not answered (one in flight), the socket is not read
 * ahead (the 1,000 requests behind are not parsed), and the producer is
 * not asked for more than the socket takes (back pressure). Then the
 * client reads: everything arrives, chunked, in order. */
static void client_one_in_flight(bh_t *b) {
  int fd = cl_connect(b);
  cl_send(fd, "GET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  static char many[40 * 1000 + 128];
  many[0] = '\0';
  for (int i = 0; i < 1000; i++)
    strcat(many, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  strcat(many, "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  cl_send(fd, many);
  /* wait (bounded) for /big to start, then give the server time to do
   * what it must not: answer /next, read ahead, produce past the socket */
  for (int i = 0; i < 1000 && atomic_load(&b->produced) < 1; i++)
    sleep_ms(10);
  sleep_ms(300);
  int produced = atomic_load(&b->produced);
  CHECK((atomic_load(&b->handled)) == (1)); /* /big only */
  CHECK(produced >= 1);
  CHECK((size_t)produced < b->big_slices / 2); /* the socket took what it could */
  size_t len;
  char *got = cl_read(fd, NULL, &len);
  close(fd);
  CHECK(atomic_load(&b->order_ok));
  CHECK((atomic_load(&b->handled)) == (1 + 1 + 1000 + 1));
  CHECK((atomic_load(&b->produce_frees)) == (1));
  CHECK((strstr(got, "Transfer-Encoding: chunked\r\n")) != NULL);
  const char *end = strstr(got, "\r\n0\r\n\r\n");
  const char *next = strstr(got, "/next");
  CHECK((end) != NULL);
  CHECK((next) != NULL);
  CHECK(end < next);
  CHECK((strstr(got, "/last")) != NULL);
  /* the slices decode to the whole body, in order */
  const char *p = strstr(got, "\r\n\r\n");
  int expect = 0;
  for (p = p != NULL && end != NULL ? p + 4 : NULL; p != NULL;) {
    unsigned long n = strtoul(p, NULL, 16);
    /* bounded by the chunk-size line, not strstr over the whole 64 MiB
     * left (ASan's strstr measures its haystack first: quadratic) */
    const char *crlf = memchr(p, '\r', (size_t)(got + len - p));
    CHECK((crlf) != NULL);
    p = crlf + 2;
    if (n == 0)
      break;
    char want[32];
    snprintf(want, sizeof want, "slice %06d", expect++);
    CHECK(memcmp(p, want, strlen(want)) == 0);
    p += n;
    CHECK(memcmp(p, "\r\n", 2) == 0);
    p += 2;
  }
  CHECK(((size_t)expect) == (b->big_slices));
  free(got);
}

static void one_in_flight_no_read_ahead_and_back_pressure(void **state) {
  (void)state;
  /* 4096 x 16 KiB: 64 MiB, far more than the socket buffers hold */
  bh_test(client_one_in_flight, (bh_opts_t){.big_slices = 4096, .slice_bytes = 16384});
}

/* An error after the head cuts the connection: no terminating chunk. An
 * error before it is a 500 with a JSON body. */
static void client_fail_late(bh_t *b) {
  int fd = cl_connect(b);
  cl_send(fd, "GET /fail-late HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t len;
  char *got = cl_read(fd, NULL, &len);
  close(fd);
  CHECK((strstr(got, "HTTP/1.1 200 OK\r\n")) != NULL);
  CHECK((strstr(got, "Transfer-Encoding: chunked\r\n")) != NULL);
  CHECK((strstr(got, "\r\n0\r\n\r\n")) == NULL);
  CHECK((atomic_load(&b->produce_frees)) == (1));
  free(got);
}

/* A failure before the head: a 503 JSON error (out of memory), the
 * connection closed; nothing of the half-made body. */
static void client_fail_early(bh_t *b) {
  int fd = cl_connect(b);
  cl_send(fd, "GET /fail-early HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t len;
  char *got = cl_read(fd, NULL, &len);
  close(fd);
  CHECK(strstr(got, "HTTP/1.1 503 ") == got);
  CHECK(strstr(got, "Content-Type: application/json\r\n") != NULL);
  CHECK(strstr(got, "Connection: close\r\n") != NULL);
  CHECK(strstr(got, "{\"error\":\"out of memory\",\"status\":503}") != NULL);
  CHECK(strstr(got, "half a bo") == NULL);
  CHECK(strstr(got, "/after") == NULL);
  CHECK(atomic_load(&b->produce_frees) == 1);
  free(got);
}

static void produced_body_failing_before_the_head_is_a_503(void **state) {
  (void)state;
  bh_test(client_fail_early, (bh_opts_t){0});
}

static void produced_body_failing_after_the_head_cuts_the_connection(void **state) {
  (void)state;
  bh_test(client_fail_late, (bh_opts_t){.slice_bytes = 1024});
}

/* At capacity, a new connection evicts the one idle longest. */
static void client_evict(bh_t *b) {
  int old = cl_connect(b);
  cl_send(old, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t len;
  free(cl_read(old, "/a", &len));
  sleep_ms(50);
  int busy = cl_connect(b);
  cl_send(busy, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
  free(cl_read(busy, "/b", &len));
  int fresh = cl_connect(b); /* the third: max_conns is 2 */
  cl_send(fresh, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
  char *got = cl_read(fresh, "/c", &len);
  CHECK((strstr(got, "HTTP/1.1 200")) != NULL);
  free(got);
  got = cl_read(old, NULL, &len); /* evicted: EOF */
  CHECK((len) == (0));
  free(got);
  cl_send(busy, "GET /d HTTP/1.1\r\nHost: a\r\n\r\n"); /* kept */
  got = cl_read(busy, "/d", &len);
  CHECK((strstr(got, "/d")) != NULL);
  free(got);
  close(old);
  close(busy);
  close(fresh);
}

static void at_capacity_the_longest_idle_connection_is_evicted(void **state) {
  (void)state;
  const bh_t *b = bh_test(client_evict, (bh_opts_t){.max_conns = 2});
  /* here, not in the client thread: the loop thread writes it */
  assert_int_equal(b->server.evictions, 1);
}

/* A HEAD request refused by the parser (here: no Host) gets the error's head
 * and no body, as any answer to HEAD (found by fuzz_admin_api). */
static void client_head_refused(bh_t *b) {
  int fd = cl_connect(b);
  cl_send(fd, "HEAD /status HTTP/1.1\r\n\r\n");
  size_t len;
  char *got = cl_read(fd, NULL, &len); /* to EOF: a refusal closes */
  CHECK(strstr(got, "HTTP/1.1 400 ") == got);
  CHECK(strstr(got, "Content-Length: ") != NULL);
  const char *end = strstr(got, "\r\n\r\n");
  CHECK(end != NULL && end + 4 == got + len); /* nothing after the head */
  free(got);
  close(fd);
}

static void a_refused_head_request_gets_no_body(void **state) {
  (void)state;
  bh_test(client_head_refused, (bh_opts_t){0});
}

/* A connection waiting for a deferred answer is working, not hoarding: at
 * capacity the idlest of the others goes, even though the waiting one has
 * moved no byte for longer. */
static void client_evict_spares_pending(bh_t *b) {
  int waiting = cl_connect(b);
  cl_send(waiting, "GET /defer HTTP/1.1\r\nHost: a\r\n\r\n");
  sleep_ms(50);
  int idle = cl_connect(b);
  cl_send(idle, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t len;
  free(cl_read(idle, "/b", &len));
  int fresh = cl_connect(b); /* the third: max_conns is 2 */
  cl_send(fresh, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
  char *got = cl_read(fresh, "/c", &len);
  CHECK(strstr(got, "HTTP/1.1 200") != NULL);
  free(got);
  got = cl_read(idle, NULL, &len); /* evicted: EOF */
  CHECK(len == 0);
  free(got);
  got = cl_read(waiting, "deferred-answer", &len); /* kept: its answer arrives */
  CHECK(strstr(got, "deferred-answer") != NULL);
  free(got);
  close(waiting);
  close(idle);
  close(fresh);
}

static void at_capacity_a_connection_awaiting_its_answer_is_not_evicted(void **state) {
  (void)state;
  const bh_t *b = bh_test(client_evict_spares_pending, (bh_opts_t){.max_conns = 2});
  /* here, not in the client thread: the loop thread writes it */
  assert_int_equal(b->server.evictions, 1);
}

/* A connection that never sends a byte is closed at request_timeout_ms (not
 * the longer idle timeout). */
static void client_silent(bh_t *b) {
  int fd = cl_connect(b);
  uint64_t t0 = mono_ms();
  size_t len;
  free(cl_read(fd, NULL, &len));
  uint64_t took = mono_ms() - t0;
  close(fd);
  CHECK((len) == (0));
  CHECK(took >= 150);
  CHECK(took < 10000); /* far below the 60 s idle timeout it rules out */
}

static void a_silent_connection_closes_at_the_request_timeout(void **state) {
  (void)state;
  bh_test(client_silent, (bh_opts_t){.request_timeout_ms = 200, .idle_timeout_ms = 60000});
}

/* A response with close set (a 401, say) ends the connection: requests
 * pipelined behind it are not answered. */
static void client_deny(bh_t *b) {
  int fd = cl_connect(b);
  cl_send(fd, "GET /deny HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t len;
  char *got = cl_read(fd, NULL, &len);
  close(fd);
  CHECK((strstr(got, "HTTP/1.1 401")) != NULL);
  CHECK((strstr(got, "Connection: close\r\n")) != NULL);
  CHECK((strstr(got, "/after")) == NULL);
  free(got);
}

static void a_response_with_close_ends_the_connection(void **state) {
  (void)state;
  bh_test(client_deny, (bh_opts_t){0});
}

/* The JSON answers every control API shares (issue 9): the body, the
 * newline choice, and what a body that cannot be made becomes. */
static void json_answers_and_their_failures(void **state) {
  (void)state;
  cynic__httpd_response_t resp;
  memset(&resp, 0, sizeof resp);
  cynic__buf_init(&resp.body, 64);

  cynic__httpd_reply_json(&resp, 201, json_pack("{s:i}", "a", 1), false);
  assert_int_equal(resp.status, 201);
  assert_string_equal(resp.content_type, "application/json");
  assert_int_equal(resp.body.len, 7);
  assert_memory_equal(resp.body.data, "{\"a\":1}", 7);

  cynic__httpd_reply_json(&resp, 200, json_pack("{s:i}", "a", 1), true);
  assert_int_equal(resp.body.len, 8);
  assert_memory_equal(resp.body.data, "{\"a\":1}\n", 8);

  cynic__httpd_reply_json(&resp, 200, NULL, true);
  assert_int_equal(resp.status, 500);
  assert_string_equal(resp.body.data, "{\"error\":\"cannot build the response\",\"status\":500}\n");

  cynic__buf_free(&resp.body);
  cynic__buf_init(&resp.body, 48); /* the 500's own body fits, a 100-byte string does not */
  char big[101];
  memset(big, 'x', 100);
  big[100] = '\0';
  cynic__httpd_reply_json(&resp, 200, json_string(big), false);
  assert_int_equal(resp.status, 500);
  assert_string_equal(resp.body.data, "{\"error\":\"response too large\",\"status\":500}");
  assert_false(resp.close);

  cynic__buf_free(&resp.body);
  cynic__buf_init(&resp.body, 256);
  cynic__httpd_reply_error(&resp, 404, "no proxy named \xff");
  assert_int_equal(resp.status, 404);
  assert_string_equal(resp.body.data,
                      "{\"error\":\"no proxy named \xef\xbf\xbd\",\"status\":404}\n");
  cynic__buf_free(&resp.body);
}

/* ---- a local connection (cynic__httpd_feed): no socket at all ------------ */

typedef struct local {
  size_t produced; /* bytes of /big produced so far */
  int frees;       /* produce_free calls */
  cynic__httpd_pending_t *pending;
} local_t;

static int local_produce(void *arg, cynic__buf_t *out, size_t want) {
  local_t *l = arg;
  size_t n = want < 10 - l->produced ? want : 10 - l->produced;
  for (size_t i = 0; i < n; i++)
    cynic__buf_puts(out, "z");
  l->produced += n;
  return l->produced == 10 ? 1 : 0;
}

static void local_free(void *arg) {
  ((local_t *)arg)->frees++;
}

static void local_handler(void *arg, const cynic__http_parser_t *req,
                          cynic__httpd_response_t *resp) {
  local_t *l = arg;
  const char *url = req->url.data;
  char peer[64];
  assert_int_not_equal(cynic__httpd_peer(req, peer, sizeof peer), 0); /* no socket, no peer */
  if (strcmp(url, "/big") == 0) {
    resp->content_type = "text/plain";
    resp->produce = local_produce;
    resp->produce_free = local_free;
    resp->produce_arg = l;
    return;
  }
  if (strcmp(url, "/slow") == 0) {
    l->pending = cynic__httpd_defer(resp);
    assert_non_null(l->pending);
    return;
  }
  if (strcmp(url, "/deny") == 0) {
    resp->status = 401;
    resp->close = true;
  }
  cynic__buf_puts(&resp->body, url);
}

static void local_connection_is_served_without_a_socket(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  cynic__httpd_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  cynic__httpd_config_t cfg;
  cynic__httpd_config_default(&cfg);
  cfg.slice_bytes = 4; /* /big comes in three slices */
  local_t l = {0};
  assert_int_equal(cynic__httpd_start(s, &loop, &cfg, NULL, local_handler, &l), 0);
  struct sockaddr_storage ss;
  assert_int_not_equal(cynic__httpd_address(s, &ss), 0); /* nothing bound */

  /* Pipelined requests, answered in order; the 401 closes the connection, so
   * /after gets no answer. */
  static const char in[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
                           "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /deny HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
  cynic__buf_t out;
  cynic__buf_init(&out, 1u << 20);
  assert_int_equal(cynic__httpd_feed(s, in, sizeof in - 1, &out), 0);
  const char *a = strstr(out.data, "HTTP/1.1 200 OK\r\n");
  const char *big = strstr(out.data, "Transfer-Encoding: chunked\r\n\r\n4\r\nzzzz\r\n4\r\nzzzz\r\n"
                                     "2\r\nzz\r\n0\r\n\r\n");
  const char *head = strstr(out.data, "Content-Length: 2\r\n\r\nHTTP/1.1 401"); /* HEAD: no body */
  const char *deny = strstr(out.data, "\r\n\r\n/deny");
  assert_non_null(a);
  assert_non_null(big);
  assert_non_null(head);
  assert_non_null(deny);
  assert_true(a < big && big < head && head < deny);
  assert_null(strstr(out.data, "/after"));
  assert_int_equal(l.produced, 10);
  assert_int_equal(l.frees, 1);

  /* A deferred answer: the connection has left when feed returns, so the
   * answer is discarded (and freed) when completed. */
  cynic__buf_reset(&out);
  static const char slow[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(cynic__httpd_feed(s, slow, sizeof slow - 1, &out), 0);
  assert_int_equal(out.len, 0);
  assert_non_null(l.pending);
  assert_null(cynic__httpd_pending_request(l.pending));
  cynic__httpd_complete(l.pending);

  /* A request that does not parse: 400, then the connection closes. */
  cynic__buf_reset(&out);
  static const char bad[] = "GET / HTTP/1.1\r\nHost x\r\n\r\nGET /a HTTP/1.1\r\n\r\n";
  assert_int_equal(cynic__httpd_feed(s, bad, sizeof bad - 1, &out), 0);
  assert_non_null(strstr(out.data, "HTTP/1.1 400 "));
  assert_null(strstr(out.data, "/a"));

  /* Bounded by out's cap: an answer past it closes the connection. */
  cynic__buf_t small;
  cynic__buf_init(&small, 16);
  assert_int_equal(cynic__httpd_feed(s, in, sizeof in - 1, &small), 0);
  assert_true(small.len <= 16);
  cynic__buf_free(&small);
  cynic__buf_free(&out);

  cynic__httpd_close(s, NULL);
  assert_int_equal(cynic__httpd_feed(s, in, sizeof in - 1, &out), CYNIC_EINVAL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(s->nconns, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(deferred_answer_keeps_pipelined_order),
      cmocka_unit_test(deferred_answer_after_connection_gone),
      cmocka_unit_test(streamed_answer_closed_past_max_pending),
      cmocka_unit_test(streamed_answer_larger_than_the_bound_goes_whole_to_a_reader),
      cmocka_unit_test(streamed_answer_closed_by_its_owner),
      cmocka_unit_test(one_in_flight_no_read_ahead_and_back_pressure),
      cmocka_unit_test(produced_body_failing_before_the_head_is_a_503),
      cmocka_unit_test(produced_body_failing_after_the_head_cuts_the_connection),
      cmocka_unit_test(at_capacity_the_longest_idle_connection_is_evicted),
      cmocka_unit_test(at_capacity_a_connection_awaiting_its_answer_is_not_evicted),
      cmocka_unit_test(a_refused_head_request_gets_no_body),
      cmocka_unit_test(a_silent_connection_closes_at_the_request_timeout),
      cmocka_unit_test(a_response_with_close_ends_the_connection),
      cmocka_unit_test(json_answers_and_their_failures),
      cmocka_unit_test(local_connection_is_served_without_a_socket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
