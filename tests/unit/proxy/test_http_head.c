/* tests/unit/proxy/test_http_head.c: the heads HTTP mode writes
 * (src/proxy/http_head.c): hop-by-hop headers stay behind both ways, Via,
 * X-Forwarded-For / Forwarded, request ids, and cynic's own answers. Exact
 * bytes compared: what the next hop reads is what these tests say. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "http_head.h"

#define F(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}

static cynic__http_head_t request(const cynic__http_hfield_t *fields, size_t n, int minor) {
  cynic__http_head_t h = {.method = "GET",
                          .method_len = 3,
                          .target = "/a?b=1",
                          .target_len = 6,
                          .minor = minor,
                          .fields = fields,
                          .nfields = n};
  return h;
}

static char buf[4096];

static const char *write_request(const cynic__http_head_t *h, const cynic__http_fwd_t *f,
                                 int *rc) {
  cynic__http_out_t o = {buf, 0, sizeof buf - 1};
  *rc = cynic__http_write_request(&o, h, f);
  buf[o.len] = '\0';
  return buf;
}

static void test_request_strips_hop_by_hop(void **state) {
  (void)state;
  static const cynic__http_hfield_t fields[] = {
      F("Host", "api.example"),
      F("Connection", "keep-alive, X-Secret ,, x-other"),
      F("Keep-Alive", "timeout=5"),
      F("TE", "trailers"),
      F("Trailer", "Expires"),
      F("Upgrade", "websocket"),
      F("Proxy-Connection", "keep-alive"),
      F("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
      F("x-secret", "named by Connection"),
      F("X-OTHER", "also named"),
      F("Content-Length", "5"),
      F("Accept", "application/json"),
  };
  cynic__http_head_t h = request(fields, sizeof fields / sizeof fields[0], 1);
  cynic__http_fwd_t f = {.forwarded = CYNIC__FORWARDED_XFF,
                         .client_ip = "192.0.2.7",
                         .request_id_header = "X-Request-Id",
                         .request_id = "00000000000000010000000000000001"};
  int rc;
  const char *out = write_request(&h, &f, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(out, "GET /a?b=1 HTTP/1.1\r\n"
                           "Host: api.example\r\n"
                           "Content-Length: 5\r\n"
                           "Accept: application/json\r\n"
                           "X-Forwarded-For: 192.0.2.7\r\n"
                           "X-Request-Id: 00000000000000010000000000000001\r\n"
                           "Via: 1.1 cynic\r\n"
                           "\r\n");
}

/* Earlier X-Forwarded-For values keep their order on one line; the client's
 * valid request id passes; an HTTP/1.0 client's request goes on as 1.0 with
 * "Via: 1.0". */
static void test_request_forwarding_headers(void **state) {
  (void)state;
  static const cynic__http_hfield_t fields[] = {
      F("X-Forwarded-For", "203.0.113.1"), F("Host", "h"),
      F("x-forwarded-for", "198.51.100.2, 10.0.0.1"), F("X-Request-Id", "abc-123"),
      F("Forwarded", "for=203.0.113.1")};
  cynic__http_head_t h = request(fields, sizeof fields / sizeof fields[0], 0);
  cynic__http_fwd_t f = {.forwarded = CYNIC__FORWARDED_XFF,
                         .client_ip = "2001:db8::1",
                         .request_id_header = "X-Request-Id",
                         .request_id = NULL};
  int rc;
  const char *out = write_request(&h, &f, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(out, "GET /a?b=1 HTTP/1.0\r\n"
                           "Host: h\r\n"
                           "X-Request-Id: abc-123\r\n"
                           "Forwarded: for=203.0.113.1\r\n"
                           "X-Forwarded-For: 203.0.113.1, 198.51.100.2, 10.0.0.1, 2001:db8::1\r\n"
                           "Via: 1.0 cynic\r\n"
                           "\r\n");
  /* RFC 7239: IPv6 in brackets and quotes; X-Forwarded-For left alone. */
  f.forwarded = CYNIC__FORWARDED_RFC7239;
  out = write_request(&h, &f, &rc);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "Forwarded: for=203.0.113.1, for=\"[2001:db8::1]\"\r\n"));
  assert_non_null(strstr(out, "X-Forwarded-For: 203.0.113.1\r\n"));
  f.client_ip = "192.0.2.9";
  out = write_request(&h, &f, &rc);
  assert_non_null(strstr(out, "Forwarded: for=203.0.113.1, for=192.0.2.9\r\n"));
  /* none: both pass as they came, nothing added */
  f.forwarded = CYNIC__FORWARDED_NONE;
  out = write_request(&h, &f, &rc);
  assert_non_null(strstr(out, "X-Forwarded-For: 203.0.113.1\r\n"));
  assert_null(strstr(out, "192.0.2.9"));
  /* an invalid id from the client is replaced, not doubled */
  f.request_id = "ffffffffffffffff0000000000000002";
  out = write_request(&h, &f, &rc);
  assert_null(strstr(out, "abc-123"));
  assert_non_null(strstr(out, "X-Request-Id: ffffffffffffffff0000000000000002\r\n"));
}

static void test_request_bad_connection_and_no_room(void **state) {
  (void)state;
  cynic__http_fwd_t f = {.forwarded = CYNIC__FORWARDED_XFF,
                         .client_ip = "192.0.2.7",
                         .request_id_header = "X-Request-Id"};
  int rc;
  static const cynic__http_hfield_t bad[] = {F("Host", "h"), F("Connection", "close; x")};
  cynic__http_head_t h = request(bad, 2, 1);
  write_request(&h, &f, &rc);
  assert_int_equal(rc, CYNIC_EINVAL);
  /* 17 options: more than CYNIC__HTTP_MAX_CONN_OPTIONS */
  static const cynic__http_hfield_t many[] = {
      F("Connection", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q")};
  h = request(many, 1, 1);
  write_request(&h, &f, &rc);
  assert_int_equal(rc, CYNIC_EINVAL);
  static const cynic__http_hfield_t sixteen[] = {
      F("Connection", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,close,p")};
  h = request(sixteen, 1, 1);
  write_request(&h, &f, &rc);
  assert_int_equal(rc, 0);
  /* no room: an error, never a cut head */
  static const cynic__http_hfield_t one[] = {F("Host", "h")};
  h = request(one, 1, 1);
  for (size_t cap = 0; cap < 80; cap++) {
    cynic__http_out_t o = {buf, 0, cap};
    rc = cynic__http_write_request(&o, &h, &f);
    cynic__http_out_t full = {buf, 0, sizeof buf};
    assert_int_equal(cynic__http_write_request(&full, &h, &f), 0);
    assert_int_equal(rc, cap >= full.len ? 0 : CYNIC_ERANGE);
  }
}

static void test_response_head(void **state) {
  (void)state;
  static const cynic__http_hfield_t fields[] = {
      F("Content-Type", "application/json"), F("Connection", "close, X-Hop"),
      F("X-Hop", "1"), F("Keep-Alive", "timeout=5"), F("Transfer-Encoding", "chunked"),
      F("Proxy-Authenticate", "Basic")};
  cynic__http_head_t h = {.status = 201,
                          .reason = "Created",
                          .reason_len = 7,
                          .minor = 1,
                          .fields = fields,
                          .nfields = sizeof fields / sizeof fields[0]};
  cynic__http_out_t o = {buf, 0, sizeof buf - 1};
  assert_int_equal(cynic__http_write_response(&o, &h, false, 1), 0);
  buf[o.len] = '\0';
  assert_string_equal(buf, "HTTP/1.1 201 Created\r\n"
                           "Content-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "Proxy-Authenticate: Basic\r\n"
                           "Via: 1.1 cynic\r\n"
                           "\r\n");
  /* closing: said; an HTTP/1.0 client kept alive: said too; empty reason */
  h.reason_len = 0;
  o.len = 0;
  assert_int_equal(cynic__http_write_response(&o, &h, true, 1), 0);
  buf[o.len] = '\0';
  assert_non_null(strstr(buf, "HTTP/1.1 201 \r\n"));
  assert_non_null(strstr(buf, "Connection: close\r\n\r\n"));
  o.len = 0;
  assert_int_equal(cynic__http_write_response(&o, &h, false, 0), 0);
  buf[o.len] = '\0';
  assert_non_null(strstr(buf, "Connection: keep-alive\r\n\r\n"));
}

static void test_answer(void **state) {
  (void)state;
  cynic__http_answer_t a = {.status = 503,
                            .reason = "breaker_open",
                            .upstream = "payments",
                            .request_id_header = "X-Request-Id",
                            .request_id = "id\"with\\quote",
                            .retry_after_s = 12,
                            .close = false};
  cynic__http_out_t o = {buf, 0, sizeof buf - 1};
  assert_int_equal(cynic__http_write_answer(&o, &a), 0);
  buf[o.len] = '\0';
  const char *body =
      "{\"error\": \"breaker_open\", \"upstream\": \"payments\", \"request_id\": "
      "\"id\\\"with\\\\quote\"}\n";
  char want[1024];
  snprintf(want, sizeof want,
           "HTTP/1.1 503 Service Unavailable\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: %zu\r\n"
           "Cynic-Answer: breaker_open\r\n"
           "Retry-After: 12\r\n"
           "X-Request-Id: id\"with\\quote\r\n"
           "\r\n%s",
           strlen(body), body);
  assert_string_equal(buf, want);
  /* the answer to a HEAD request: the same head, no body */
  a.head_only = true;
  o.len = 0;
  assert_int_equal(cynic__http_write_answer(&o, &a), 0);
  buf[o.len] = '\0';
  want[strlen(want) - strlen(body)] = '\0';
  assert_string_equal(buf, want);
  /* before an upstream is known, closing, no retry-after */
  cynic__http_answer_t b = {.status = 400, .reason = "bad_request", .close = true};
  o.len = 0;
  assert_int_equal(cynic__http_write_answer(&o, &b), 0);
  buf[o.len] = '\0';
  assert_string_equal(buf, "HTTP/1.1 400 Bad Request\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: 25\r\n"
                           "Cynic-Answer: bad_request\r\n"
                           "Connection: close\r\n"
                           "\r\n"
                           "{\"error\": \"bad_request\"}\n");
  cynic__http_out_t small = {buf, 0, 40};
  assert_int_equal(cynic__http_write_answer(&small, &b), CYNIC_ERANGE);
}

static void test_request_ids(void **state) {
  (void)state;
  assert_true(cynic__http_request_id_valid("a", 1));
  assert_true(cynic__http_request_id_valid("~!", 2));
  assert_false(cynic__http_request_id_valid("", 0));
  assert_false(cynic__http_request_id_valid("a b", 3));
  assert_false(cynic__http_request_id_valid("a\x7f", 2));
  assert_false(cynic__http_request_id_valid("\xc3\xa9", 2));
  char long_id[130];
  memset(long_id, 'x', sizeof long_id);
  assert_true(cynic__http_request_id_valid(long_id, 128));
  assert_false(cynic__http_request_id_valid(long_id, 129));
  char a[33], b[33];
  cynic__http_request_id_make(a);
  cynic__http_request_id_make(b);
  assert_int_equal(strlen(a), 32);
  assert_true(cynic__http_request_id_valid(a, 32));
  assert_string_not_equal(a, b);
  assert_memory_equal(a, b, 16); /* same process: same prefix, counter differs */
  assert_int_equal(strspn(a, "0123456789abcdef"), 32);
  /* the second half is a counter in 16 hex digits: the next id is one more */
  char hb[17], ha[17];
  memcpy(ha, a + 16, 16);
  memcpy(hb, b + 16, 16);
  ha[16] = hb[16] = '\0';
  assert_int_equal(strtoull(hb, NULL, 16), strtoull(ha, NULL, 16) + 1);
}

/* The fixed hop-by-hop set in any case, both ways; Proxy-Authorization
 * only toward the upstream; names one byte off are end-to-end. */
static void test_hop_by_hop_names(void **state) {
  (void)state;
  static const char *const hop[] = {"connection", "KEEP-ALIVE", "Te",
                                    "tRAILER",    "Upgrade",    "Proxy-Connection"};
  for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++) {
    assert_true(cynic__http_hop_by_hop(hop[i], strlen(hop[i]), NULL, true));
    assert_true(cynic__http_hop_by_hop(hop[i], strlen(hop[i]), NULL, false));
    assert_false(cynic__http_hop_by_hop(hop[i], strlen(hop[i]) - 1, NULL, true));
  }
  assert_true(cynic__http_hop_by_hop("Proxy-AUTHORIZATION", 19, NULL, true));
  assert_false(cynic__http_hop_by_hop("Proxy-AUTHORIZATION", 19, NULL, false));
  static const char *const not_hop[] = {"tf",
                                        "trailers",
                                        "upgradf",
                                        "connectiom",
                                        "keep_alive",
                                        "proxy-connectio",
                                        "Proxy-Authorizatiom",
                                        "Host",
                                        ""};
  for (size_t i = 0; i < sizeof not_hop / sizeof not_hop[0]; i++)
    assert_false(cynic__http_hop_by_hop(not_hop[i], strlen(not_hop[i]), NULL, true));
  cynic__http_conn_opts_t o = {.count = 1};
  o.names[0].name = "X-Secret";
  o.names[0].len = 8;
  assert_true(cynic__http_hop_by_hop("x-secreT", 8, &o, false));
  assert_false(cynic__http_hop_by_hop("x-secret2", 9, &o, false));
}

/* The client's address as text: what inet_ntop writes, v4-mapped as IPv4. */
static void test_client_ip(void **state) {
  (void)state;
  uint8_t ip[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char got[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN];
  uint32_t x = 12345;
  for (int k = 0; k < 20000; k++) {
    x = x * 1103515245u + 12345u;
    /* every octet value at every place, then random addresses */
    uint8_t v[4] = {(uint8_t)k, (uint8_t)(k + 1), (uint8_t)(255 - k), (uint8_t)(x >> 24)};
    if (k >= 256)
      memcpy(v, &x, 4);
    memcpy(ip + 12, v, 4);
    cynic__http_client_ip(ip, got);
    assert_non_null(inet_ntop(AF_INET, v, want, sizeof want));
    assert_string_equal(got, want);
  }
  static const char *const v6[] = {"::1", "2001:db8::7", "fe80::1:2:3:4", "::"};
  for (size_t i = 0; i < sizeof v6 / sizeof v6[0]; i++) {
    uint8_t b[16];
    assert_int_equal(inet_pton(AF_INET6, v6[i], b), 1);
    cynic__http_client_ip(b, got);
    assert_string_equal(got, v6[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_strips_hop_by_hop),
      cmocka_unit_test(test_request_forwarding_headers),
      cmocka_unit_test(test_request_bad_connection_and_no_room),
      cmocka_unit_test(test_response_head),
      cmocka_unit_test(test_answer),
      cmocka_unit_test(test_request_ids),
      cmocka_unit_test(test_hop_by_hop_names),
      cmocka_unit_test(test_client_ip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
