/*
 * A seeded mini-fuzzer for the parsers of outside input in src/common: the
 * HTTP request parser (fed mutated requests in random splits), host:port
 * splitting and percent-decoding. Deterministic, bounded in time, and run in
 * the ASan+UBSan build like every test, so memory errors surface here; the
 * same entry points suit a libFuzzer target later (LLVMFuzzerTestOneInput).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "cynic/common.h"
#include "http.h"

static uint64_t rng = 0x243F6A8885A308D3u;

static uint64_t next(void) {
  uint64_t z = (rng += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static const char *seeds[] = {
    "GET /proxies HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /proxies HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "DELETE /proxies/x%2Fy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "PATCH /a?b=c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
};

static size_t mutate(char *buf, size_t cap) {
  const char *s = seeds[next() % (sizeof(seeds) / sizeof(seeds[0]))];
  size_t n = strlen(s);
  memcpy(buf, s, n);
  int edits = 1 + (int)(next() % 8);
  for (int e = 0; e < edits; e++) {
    size_t pos = n ? next() % n : 0;
    switch (next() % 5) {
    case 0: /* flip a byte */
      if (n)
        buf[pos] = (char)next();
      break;
    case 1: /* insert random bytes */
    {
      size_t k = 1 + next() % 16;
      if (n + k <= cap) {
        memmove(buf + pos + k, buf + pos, n - pos);
        for (size_t i = 0; i < k; i++)
          buf[pos + i] = (char)next();
        n += k;
      }
      break;
    }
    case 2: /* delete */
    {
      size_t k = 1 + next() % 16;
      if (pos + k > n)
        k = n - pos;
      memmove(buf + pos, buf + pos + k, n - pos - k);
      n -= k;
      break;
    }
    case 3: /* duplicate the request (pipelining) */
      if (2 * n <= cap) {
        memcpy(buf + n, buf, n);
        n *= 2;
      }
      break;
    default: /* a structural byte where it hurts */
      if (n)
        buf[pos] = "\r\n: %/0"[next() % 7];
    }
  }
  return n;
}

static void http_parser_survives(void **state) {
  (void)state;
  static char buf[8192];
  const cynic__http_limits_t limits = {.max_url = 256, .max_header_bytes = 1024, .max_body = 512};
  int ready = 0, errors = 0;
  for (int iter = 0; iter < 100000; iter++) {
    size_t n = mutate(buf, sizeof(buf));
    cynic__http_parser_t p;
    cynic__http_parser_init(&p, &limits);
    size_t off = 0;
    while (off < n) {
      size_t piece = 1 + next() % (n - off);
      size_t used = 0;
      int r = cynic__http_parser_feed(&p, buf + off, piece, &used);
      assert_true(used <= piece);
      if (r < 0) {
        assert_true(p.error_status >= 400 && p.error_status <= 431);
        assert_non_null(p.error_reason);
        errors++;
        break;
      }
      if (r == CYNIC_HTTP_READY) {
        ready++;
        assert_true(p.url.len <= limits.max_url);
        assert_true(p.body.len <= limits.max_body);
        assert_non_null(cynic__http_method(&p));
        size_t hl;
        (void)cynic__http_header(&p, "content-length", &hl);
        cynic__http_parser_next(&p);
      }
      off += used;
      if (r == CYNIC_HTTP_INCOMPLETE)
        assert_int_equal(used, piece);
    }
    (void)cynic__http_parser_finish(&p);
    cynic__http_parser_free(&p);
  }
  /* The mutations must exercise both outcomes. */
  assert_true(ready > 5000);
  assert_true(errors > 5000);
}

static void addr_and_decode_survive(void **state) {
  (void)state;
  char in[64], host[CYNIC_ADDR_HOST_MAX], out[32];
  const char alphabet[] = "[]:%/.09azAZ-_ \x01\xff";
  for (int iter = 0; iter < 100000; iter++) {
    size_t n = next() % (sizeof(in) - 1);
    for (size_t i = 0; i < n; i++)
      in[i] = alphabet[next() % (sizeof(alphabet) - 1)];
    in[n] = '\0';
    uint16_t port = 0;
    if (cynic__addr_split(in, host, sizeof(host), &port) == 0) {
      /* Whatever was accepted formats back into something we accept. */
      char again[CYNIC_ADDR_STR_MAX];
      snprintf(again, sizeof(again), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
      char host2[CYNIC_ADDR_HOST_MAX];
      uint16_t port2;
      assert_int_equal(cynic__addr_split(again, host2, sizeof(host2), &port2), 0);
      assert_string_equal(host, host2);
      assert_int_equal(port, port2);
    }
    if (cynic__http_pct_decode(in, n, out, sizeof(out)) == 0)
      assert_true(strlen(out) < sizeof(out));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(http_parser_survives),
      cmocka_unit_test(addr_and_decode_survive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
