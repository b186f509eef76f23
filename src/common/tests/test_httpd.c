/* Unit tests of src/common/httpd.c over a real loopback socket on one loop:
 * deferred answers keep pipelined order; a deferred answer whose connection
 * is gone is discarded without a crash or a leak; a streamed answer sends
 * its head at once, ignores pipelined requests, is closed (on_close once)
 * when a write passes max_pending or when its owner closes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
  assert_null(strstr(f.got, "zzzz")); /* the write past the bound was not sent */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(deferred_answer_keeps_pipelined_order),
      cmocka_unit_test(deferred_answer_after_connection_gone),
      cmocka_unit_test(streamed_answer_closed_past_max_pending),
      cmocka_unit_test(streamed_answer_larger_than_the_bound_goes_whole_to_a_reader),
      cmocka_unit_test(streamed_answer_closed_by_its_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
