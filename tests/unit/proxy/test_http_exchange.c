/* tests/unit/proxy/test_http_exchange.c: one HTTP request's exchange
 * (src/proxy/http_exchange.c) on a clock moved by hand: the deadlines of
 * every phase, which timeout fires, how a response head is judged, the
 * response size limit, and what the client and the breaker get when an
 * exchange fails. No socket: the session code will drive the same calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_exchange.h"

#define MS UINT64_C(1000000)

static cynic__config_upstream_t cfg(void) {
  cynic__config_upstream_t u;
  memset(&u, 0, sizeof u);
  u.connect_timeout_ns = 1000 * MS;
  u.first_byte_timeout_ns = 2000 * MS;
  u.idle_timeout_ns = 5000 * MS;
  u.request_timeout_ns = 0;
  return u;
}

static void test_deadlines_through_the_phases(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  cynic__hx_t x;
  cynic__hx_start(&x, &u, 100);
  assert_int_equal(x.phase, CYNIC__HX_ADMITTING);
  assert_int_equal(cynic__hx_next_deadline(&x), 0); /* the queue is upstream.c's */
  assert_int_equal(cynic__hx_expired(&x, 1000000), CYNIC__HX_OK);

  cynic__hx_connecting(&x, 150);
  assert_int_equal(cynic__hx_next_deadline(&x), 1150);
  assert_int_equal(cynic__hx_expired(&x, 1149), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_expired(&x, 1150), CYNIC__HX_CONNECT_TIMEOUT);

  cynic__hx_connected(&x, 200);
  assert_int_equal(cynic__hx_next_deadline(&x), 5200); /* idle while sending */
  cynic__hx_io(&x, 900);
  assert_int_equal(cynic__hx_next_deadline(&x), 5900);
  assert_int_equal(cynic__hx_expired(&x, 5899), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_expired(&x, 5900), CYNIC__HX_IDLE_TIMEOUT);

  cynic__hx_request_sent(&x, 1000);
  assert_int_equal(x.phase, CYNIC__HX_WAITING);
  assert_int_equal(cynic__hx_next_deadline(&x), 3000); /* first byte */
  assert_int_equal(cynic__hx_expired(&x, 2999), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_expired(&x, 3000), CYNIC__HX_FIRST_BYTE_TIMEOUT);

  assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, -1, 1500), CYNIC__HX_OK);
  assert_int_equal(x.phase, CYNIC__HX_RECEIVING);
  assert_int_equal(cynic__hx_next_deadline(&x), 6500); /* idle between body bytes */
  assert_int_equal(cynic__hx_response_body(&x, 10, 2000), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_next_deadline(&x), 7000);
  assert_int_equal(cynic__hx_expired(&x, 7000), CYNIC__HX_IDLE_TIMEOUT);
  assert_true(cynic__hx_response_end(&x)); /* success for the breaker */
  assert_int_equal(x.phase, CYNIC__HX_DONE);
  assert_int_equal(cynic__hx_next_deadline(&x), 0);
  assert_int_equal(cynic__hx_expired(&x, UINT64_MAX), CYNIC__HX_OK);

  /* first_byte 0 (off): waiting runs under the idle timeout instead */
  u.first_byte_timeout_ns = 0;
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  cynic__hx_request_sent(&x, 10);
  assert_int_equal(cynic__hx_next_deadline(&x), 5010);
  assert_int_equal(cynic__hx_expired(&x, 5010), CYNIC__HX_IDLE_TIMEOUT);
}

/* The request timeout spans the whole exchange from the end of the head,
 * the queue included; the earliest deadline fires, the request's on a tie;
 * spent in the queue it is no fault of an endpoint. */
static void test_request_timeout(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  u.request_timeout_ns = 3000 * MS;
  cynic__hx_t x;
  cynic__hx_start(&x, &u, 0);
  assert_int_equal(cynic__hx_next_deadline(&x), 3000);
  assert_int_equal(cynic__hx_expired(&x, 3000), CYNIC__HX_REQUEST_TIMEOUT);
  cynic__hx_outcome_t o = cynic__hx_fail(&x, CYNIC__HX_REQUEST_TIMEOUT);
  assert_int_equal(o.status, 504);
  assert_string_equal(o.reason, "request_timeout");
  assert_false(o.fault); /* it never left the queue */

  cynic__hx_start(&x, &u, 0);
  cynic__hx_connecting(&x, 2000); /* connect deadline 3000 = the request's: a tie */
  assert_int_equal(cynic__hx_next_deadline(&x), 3000);
  assert_int_equal(cynic__hx_expired(&x, 3000), CYNIC__HX_REQUEST_TIMEOUT);
  o = cynic__hx_fail(&x, CYNIC__HX_REQUEST_TIMEOUT);
  assert_true(o.fault);

  cynic__hx_start(&x, &u, 0);
  cynic__hx_connecting(&x, 1500); /* connect deadline 2500, before the request's */
  assert_int_equal(cynic__hx_next_deadline(&x), 2500);
  assert_int_equal(cynic__hx_expired(&x, 3500), CYNIC__HX_CONNECT_TIMEOUT); /* earliest wins */
  cynic__hx_connected(&x, 1600);
  cynic__hx_request_sent(&x, 1700); /* first byte 3700: after the request's 3000 */
  assert_int_equal(cynic__hx_next_deadline(&x), 3000);
  assert_int_equal(cynic__hx_expired(&x, 3000), CYNIC__HX_REQUEST_TIMEOUT);
}

/* A retry: the failed attempt's state goes (its charge, its phase deadline),
 * the request's deadline stays and is the only one that runs until the next
 * attempt connects; an incoming deadline only ever shortens it. */
static void test_retry_and_shorten(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  u.request_timeout_ns = 3000 * MS;
  cynic__hx_t x;
  cynic__hx_start(&x, &u, 0);
  cynic__hx_shorten(&x, 5000); /* later: no effect */
  assert_int_equal(x.request_deadline_ms, 3000);
  cynic__hx_shorten(&x, 2500);
  assert_int_equal(x.request_deadline_ms, 2500);
  cynic__hx_connecting(&x, 10);
  cynic__hx_connected(&x, 20);
  cynic__hx_request_sent(&x, 30);
  assert_int_equal(cynic__hx_response_head(&x, 503, true, NULL, 0, -1, 40),
                   CYNIC__HX_UNEXPECTED_STATUS);
  cynic__hx_retry(&x, 50);
  assert_int_equal(x.phase, CYNIC__HX_ADMITTING);
  assert_int_equal(x.charged, CYNIC__HX_OK);
  assert_int_equal(cynic__hx_next_deadline(&x), 2500); /* only the request's */
  assert_int_equal(cynic__hx_expired(&x, 2499), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_expired(&x, 2500), CYNIC__HX_REQUEST_TIMEOUT);
  cynic__hx_connecting(&x, 100);
  cynic__hx_connected(&x, 110);
  cynic__hx_request_sent(&x, 120);
  assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, -1, 130), CYNIC__HX_OK);
  assert_true(cynic__hx_response_end(&x)); /* the second attempt's success is its own */

  u.request_timeout_ns = 0; /* none configured: an incoming one becomes the deadline */
  cynic__hx_start(&x, &u, 0);
  assert_int_equal(x.request_deadline_ms, 0);
  cynic__hx_shorten(&x, 700);
  assert_int_equal(cynic__hx_next_deadline(&x), 700);
}

/* Response heads: 5xx is a fault by default (forwarded), expect.status
 * narrows it, expect.content_type refuses the HTML page in place of JSON,
 * a declared size over the limit is refused before a byte, and interim
 * heads change nothing. */
static void test_response_heads(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  cynic__hx_t x;
  struct {
    bool has_expect;
    uint16_t lo, hi;
    const char *want_type;
    int status;
    bool has_body;
    const char *type;
    int64_t length;
    cynic__hx_cause_t verdict;
    bool success_at_end;
  } cases[] = {
      {false, 0, 0, NULL, 200, true, NULL, -1, CYNIC__HX_OK, true},
      {false, 0, 0, NULL, 404, true, NULL, -1, CYNIC__HX_OK, true},
      {false, 0, 0, NULL, 499, true, NULL, -1, CYNIC__HX_OK, true},
      {false, 0, 0, NULL, 500, true, NULL, -1, CYNIC__HX_UNEXPECTED_STATUS, false},
      {false, 0, 0, NULL, 503, false, NULL, -1, CYNIC__HX_UNEXPECTED_STATUS, false},
      {true, 200, 299, NULL, 404, true, NULL, -1, CYNIC__HX_UNEXPECTED_STATUS, false},
      {true, 200, 299, NULL, 204, false, NULL, -1, CYNIC__HX_OK, true},
      {true, 200, 599, NULL, 503, true, NULL, -1, CYNIC__HX_OK, true},
      {false, 0, 0, "application/json", 200, true, "application/json", 2, CYNIC__HX_OK, true},
      {false, 0, 0, "application/json", 200, true, "Application/JSON; charset=utf-8", -1,
       CYNIC__HX_OK, true},
      {false, 0, 0, "application/json", 200, true, "text/html; charset=utf-8", -1,
       CYNIC__HX_UNEXPECTED_TYPE, false},
      {false, 0, 0, "application/json", 200, true, NULL, -1, CYNIC__HX_UNEXPECTED_TYPE, false},
      {false, 0, 0, "application/json", 204, false, NULL, -1, CYNIC__HX_OK, true},
      {false, 0, 0, "application/json", 304, false, "text/html", -1, CYNIC__HX_OK, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    u.http.has_expect = cases[i].has_expect;
    u.http.expect_status_min = cases[i].lo;
    u.http.expect_status_max = cases[i].hi;
    u.http.expect_content_type = (char *)cases[i].want_type;
    cynic__hx_start(&x, &u, 0);
    cynic__hx_connected(&x, 0);
    cynic__hx_request_sent(&x, 0);
    const char *t = cases[i].type;
    cynic__hx_cause_t v = cynic__hx_response_head(&x, cases[i].status, cases[i].has_body, t,
                                                  t ? strlen(t) : 0, cases[i].length, 5);
    if (v != cases[i].verdict)
      fail_msg("case %zu: verdict %s, want %s", i, cynic__hx_cause_name(v),
               cynic__hx_cause_name(cases[i].verdict));
    if (v == CYNIC__HX_OK || v == CYNIC__HX_UNEXPECTED_STATUS) {
      cynic__hx_response_started(&x);
      assert_int_equal(cynic__hx_response_end(&x), cases[i].success_at_end);
    } else {
      cynic__hx_outcome_t o = cynic__hx_fail(&x, v); /* not forwarded: cynic answers */
      assert_int_equal(o.status, 502);
      assert_true(o.fault);
    }
  }
  u.http.expect_content_type = NULL;
  u.http.has_expect = false;

  /* interim: forwarded, the first-byte deadline gives way to idle, the
   * final head still judged */
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  cynic__hx_request_sent(&x, 0);
  assert_int_equal(cynic__hx_next_deadline(&x), 2000);
  assert_int_equal(cynic__hx_response_head(&x, 100, false, NULL, 0, -1, 100), CYNIC__HX_OK);
  assert_int_equal(x.phase, CYNIC__HX_WAITING);
  assert_int_equal(cynic__hx_next_deadline(&x), 5100);
  assert_int_equal(cynic__hx_response_head(&x, 502, true, NULL, 0, -1, 200),
                   CYNIC__HX_UNEXPECTED_STATUS);

  /* an early answer while the request is still going out: the response goes
   * on, the end of the request does not put it back to waiting */
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  assert_int_equal(cynic__hx_response_head(&x, 413, true, NULL, 0, 10, 50), CYNIC__HX_OK);
  cynic__hx_request_sent(&x, 60);
  assert_int_equal(x.phase, CYNIC__HX_RECEIVING);
}

/* limits.max_response_bytes: refused at the head when the length says so,
 * cut when the body grows past it. */
static void test_response_size_limit(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  u.http.max_response_bytes = 1000;
  cynic__hx_t x;
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  cynic__hx_request_sent(&x, 0);
  assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, 1001, 1),
                   CYNIC__HX_RESPONSE_TOO_LARGE);
  cynic__hx_outcome_t o = cynic__hx_fail(&x, CYNIC__HX_RESPONSE_TOO_LARGE);
  assert_int_equal(o.status, 502);
  assert_false(o.reset);
  assert_true(o.fault);

  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  cynic__hx_request_sent(&x, 0);
  assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, 1000, 1), CYNIC__HX_OK);
  cynic__hx_response_started(&x);
  assert_int_equal(cynic__hx_response_body(&x, 600, 2), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_response_body(&x, 400, 3), CYNIC__HX_OK); /* exactly the limit */
  assert_int_equal(cynic__hx_response_body(&x, 1, 4), CYNIC__HX_RESPONSE_TOO_LARGE);
  o = cynic__hx_fail(&x, CYNIC__HX_RESPONSE_TOO_LARGE);
  assert_int_equal(o.status, 0);
  assert_true(o.reset); /* the response had started: a reset, never a clean end */
  assert_true(o.fault);

  u.http.max_response_bytes = 0; /* no limit */
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, INT64_MAX, 1), CYNIC__HX_OK);
  assert_int_equal(cynic__hx_response_body(&x, SIZE_MAX / 2, 2), CYNIC__HX_OK);
}

/* What the client and the breaker get for each cause, before and after the
 * response started. */
static void test_failures(void **state) {
  (void)state;
  cynic__config_upstream_t u = cfg();
  static const struct {
    cynic__hx_cause_t cause;
    int status;
    bool fault;
    const char *reason;
  } want[] = {
      {CYNIC__HX_CONNECT_REFUSED, 502, true, "connect_refused"},
      {CYNIC__HX_CONNECT_ERROR, 502, true, "connect_error"},
      {CYNIC__HX_CONNECT_TIMEOUT, 504, true, "connect_timeout"},
      {CYNIC__HX_FIRST_BYTE_TIMEOUT, 504, true, "first_byte_timeout"},
      {CYNIC__HX_IDLE_TIMEOUT, 504, true, "idle_timeout"},
      {CYNIC__HX_REQUEST_TIMEOUT, 504, true, "request_timeout"},
      {CYNIC__HX_UPSTREAM_RESET, 502, true, "upstream_reset"},
      {CYNIC__HX_UPSTREAM_CLOSED, 502, true, "upstream_closed"},
      {CYNIC__HX_BAD_RESPONSE, 502, true, "bad_response"},
      {CYNIC__HX_RESPONSE_TOO_LARGE, 502, true, "response_too_large"},
      {CYNIC__HX_UNEXPECTED_TYPE, 502, true, "unexpected_content_type"},
      {CYNIC__HX_LOCAL_ERROR, 502, false, "local_error"},
      {CYNIC__HX_CLIENT_GONE, 0, false, "client_gone"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    for (int started = 0; started < 2; started++) {
      cynic__hx_t x;
      cynic__hx_start(&x, &u, 0);
      cynic__hx_connecting(&x, 0);
      cynic__hx_connected(&x, 1);
      if (started) {
        assert_int_equal(cynic__hx_response_head(&x, 200, true, NULL, 0, -1, 2), CYNIC__HX_OK);
        cynic__hx_response_started(&x);
      }
      cynic__hx_outcome_t o = cynic__hx_fail(&x, want[i].cause);
      bool gone = want[i].cause == CYNIC__HX_CLIENT_GONE;
      assert_string_equal(o.reason, want[i].reason);
      assert_int_equal(o.fault, want[i].fault);
      assert_int_equal(o.status, started ? 0 : want[i].status);
      assert_int_equal(o.reset, started && !gone);
      assert_int_equal(x.phase, CYNIC__HX_DONE);
      assert_int_equal(cynic__hx_next_deadline(&x), 0);
    }
  }
  /* a status already charged stays a fault whatever ends the exchange */
  cynic__hx_t x;
  cynic__hx_start(&x, &u, 0);
  cynic__hx_connected(&x, 0);
  assert_int_equal(cynic__hx_response_head(&x, 500, true, NULL, 0, -1, 1),
                   CYNIC__HX_UNEXPECTED_STATUS);
  cynic__hx_response_started(&x);
  assert_true(cynic__hx_fail(&x, CYNIC__HX_CLIENT_GONE).fault);
  /* a cause out of range still ends the exchange, as a local error */
  cynic__hx_start(&x, &u, 0);
  cynic__hx_outcome_t o = cynic__hx_fail(&x, (cynic__hx_cause_t)99);
  assert_string_equal(o.reason, "local_error");
  assert_int_equal(o.status, 502);
  assert_string_equal(cynic__hx_cause_name((cynic__hx_cause_t)99), "unknown");
}

static void test_media_types(void **state) {
  (void)state;
  static const struct {
    const char *ct;
    bool match;
  } cases[] = {
      {"application/json", true},        {"APPLICATION/JSON", true},
      {" application/json ", true},      {"application/json;charset=utf-8", true},
      {"application/json ; q=1", true},  {"application/jsonx", false},
      {"application/jso", false},        {"text/json", false},
      {"application/json x", false},     {"", false},
      {"application/problem+json", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (cynic__hx_media_type_is(cases[i].ct, strlen(cases[i].ct), "application/json") !=
        cases[i].match)
      fail_msg("\"%s\": want %s", cases[i].ct, cases[i].match ? "match" : "no match");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadlines_through_the_phases),
      cmocka_unit_test(test_request_timeout),
      cmocka_unit_test(test_retry_and_shorten),
      cmocka_unit_test(test_response_heads),
      cmocka_unit_test(test_response_size_limit),
      cmocka_unit_test(test_failures),
      cmocka_unit_test(test_media_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
