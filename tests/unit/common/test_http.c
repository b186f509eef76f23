/* Unit tests of src/common/http.c: the llhttp wrapper and response writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "http.h"

static const cynic__http_limits_t limits = {.max_url = 64, .max_header_bytes = 256, .max_body = 32};

static int feed_all(cynic__http_parser_t *p, const char *s, size_t *used) {
  return cynic__http_parser_feed(p, s, strlen(s), used);
}

static void simple_request(void **state) {
  (void)state;
  cynic__http_parser_t p;
  cynic__http_parser_init(&p, &limits);
  const char *req = "POST /proxies?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n"
                    "Content-Length: 4\r\n\r\nabcd";
  size_t used;
  assert_int_equal(feed_all(&p, req, &used), CYNIC_HTTP_READY);
  assert_int_equal(used, strlen(req));
  assert_string_equal(cynic__http_method(&p), "POST");
  assert_string_equal(p.url.data, "/proxies?x=1");
  assert_int_equal(p.body.len, 4);
  assert_memory_equal(p.body.data, "abcd", 4);
  size_t n;
  const char *ua = cynic__http_header(&p, "user-agent", &n);
  assert_non_null(ua);
  assert_int_equal(n, 1);
  assert_memory_equal(ua, "t", 1);
  assert_null(cynic__http_header(&p, "X-None", &n));
  assert_true(cynic__http_keep_alive(&p));
  cynic__http_parser_free(&p);
}

static void byte_by_byte_and_pipelined(void **state) {
  (void)state;
  cynic__http_parser_t p;
  cynic__http_parser_init(&p, &limits);
  const char *two =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  size_t len = strlen(two), off = 0, used;
  int ready = 0;
  /* byte by byte through the first request */
  while (off < len) {
    int r = cynic__http_parser_feed(&p, two + off, 1, &used);
    assert_true(r >= 0);
    off += used;
    if (r == CYNIC_HTTP_READY) {
      ready++;
      if (ready == 1) {
        assert_string_equal(p.url.data, "/a");
        cynic__http_parser_next(&p);
        /* the rest in one go */
        r = cynic__http_parser_feed(&p, two + off, len - off, &used);
        assert_int_equal(r, CYNIC_HTTP_READY);
        assert_string_equal(p.url.data, "/b");
        assert_false(cynic__http_keep_alive(&p));
        off += used;
        ready++;
      }
    }
  }
  assert_int_equal(ready, 2);
  assert_int_equal(off, len);
  cynic__http_parser_free(&p);
}

static void limits_answered(void **state) {
  (void)state;
  struct {
    const char *req;
    int status;
  } cases[] = {
      {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
       "HTTP/1.1\r\n",
       414},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n", 400},
      {"\x01\x02 junk\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 400},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cynic__http_parser_t p;
    cynic__http_parser_init(&p, &limits);
    size_t used;
    int r = feed_all(&p, cases[i].req, &used);
    if (i == 2) { /* chunked: the cap hits while the body streams in */
      const char *more = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
      if (r >= 0)
        r = feed_all(&p, more, &used);
      assert_int_equal(r, CYNIC_EINVAL);
      assert_int_equal(p.error_status, 413);
    } else {
      assert_int_equal(r, CYNIC_EINVAL);
      assert_int_equal(p.error_status, cases[i].status);
    }
    assert_non_null(p.error_reason);
    cynic__http_parser_free(&p);
  }
  /* too many header bytes */
  cynic__http_parser_t p;
  cynic__http_parser_init(&p, &limits);
  char big[600];
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  size_t used;
  assert_int_equal(cynic__http_parser_feed(&p, big, sizeof(big), &used), CYNIC_EINVAL);
  assert_int_equal(p.error_status, 431);
  cynic__http_parser_free(&p);
}

static void truncated_request(void **state) {
  (void)state;
  cynic__http_parser_t p;
  cynic__http_parser_init(&p, &limits);
  size_t used;
  assert_int_equal(cynic__http_parser_finish(&p), 0); /* nothing started */
  assert_int_equal(feed_all(&p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", &used),
                   CYNIC_HTTP_INCOMPLETE);
  assert_int_equal(cynic__http_parser_finish(&p), CYNIC_EINVAL);
  cynic__http_parser_free(&p);
}

static void pct_decode(void **state) {
  (void)state;
  char out[16];
  assert_int_equal(cynic__http_pct_decode("a%2Fb", 5, out, sizeof(out)), 0);
  assert_string_equal(out, "a/b");
  assert_int_equal(cynic__http_pct_decode("%zz", 3, out, sizeof(out)), CYNIC_EINVAL);
  assert_int_equal(cynic__http_pct_decode("%2", 2, out, sizeof(out)), CYNIC_EINVAL);
  assert_int_equal(cynic__http_pct_decode("%00", 3, out, sizeof(out)), CYNIC_EINVAL);
  assert_int_equal(cynic__http_pct_decode("0123456789abcdef", 16, out, sizeof(out)), CYNIC_EINVAL);
}

static void response_writer(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 1024);
  assert_int_equal(cynic__http_response(&b, 201, "application/json", "{}", 2, true), 0);
  assert_string_equal(b.data, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                              "Content-Length: 2\r\n\r\n{}");
  cynic__buf_reset(&b);
  assert_int_equal(cynic__http_response(&b, 204, NULL, NULL, 0, false), 0);
  assert_string_equal(b.data, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  cynic__buf_reset(&b);
  assert_int_equal(
      cynic__http_response_headers(&b, 405, "application/json", "Allow: GET\r\n", "{}", 2, true),
      0);
  assert_string_equal(b.data,
                      "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n"
                      "Allow: GET\r\nContent-Length: 2\r\n\r\n{}");
  cynic__buf_t small;
  cynic__buf_init(&small, 10);
  assert_int_equal(cynic__http_response(&small, 200, NULL, "x", 1, true), CYNIC_ERANGE);
  assert_int_equal(small.len, 0);
  /* the head of a body that follows: chunked, or to the close (HTTP/1.0) */
  cynic__buf_reset(&b);
  assert_int_equal(
      cynic__http_response_open(&b, 200, "text/plain", "X-A: 1\r\n", true, true), 0);
  assert_string_equal(b.data, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n");
  cynic__buf_reset(&b);
  assert_int_equal(cynic__http_response_open(&b, 200, "text/plain", NULL, false, true), 0);
  assert_string_equal(b.data, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              "Connection: close\r\n\r\n");
  assert_int_equal(cynic__http_response_open(&small, 200, NULL, NULL, true, true), CYNIC_ERANGE);
  assert_int_equal(small.len, 0);
  cynic__buf_free(&small);
  cynic__buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(simple_request),  cmocka_unit_test(byte_by_byte_and_pipelined),
      cmocka_unit_test(limits_answered), cmocka_unit_test(truncated_request),
      cmocka_unit_test(pct_decode),      cmocka_unit_test(response_writer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
