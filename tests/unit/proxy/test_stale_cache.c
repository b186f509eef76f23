/* tests/unit/proxy/test_stale_cache.c: the stale cache (src/proxy/stale_cache.c)
 * on a clock moved by hand: what is stored and what is refused, the entry's
 * head and body, the entry and byte bounds with LRU eviction, max_age and
 * stale-if-error, Vary, Age, the captures' own bound, and a flood of distinct
 * URLs that never takes the cache past its bytes. No socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stale_cache.h"

#define F(n, v)                                                                                    \
  { n, v, sizeof(n) - 1, sizeof(v) - 1 }

static const cynic__stale_limits_t LIM = {
    .max_entries = 100, .max_bytes = 1 << 20, .max_entry_bytes = 64 * 1024, .max_age_ms = 60000};

static cynic__stale_req_t req(const char *target, const cynic__http_hfield_t *f, size_t n) {
  cynic__stale_req_t r = {.host = "App.Example",
                          .host_len = 11,
                          .target = target,
                          .target_len = strlen(target),
                          .fields = f,
                          .nfields = n};
  return r;
}

static cynic__stale_res_t res(int status, const cynic__http_hfield_t *f, size_t n, int64_t cl) {
  cynic__stale_res_t r = {.status = status,
                          .reason = "OK",
                          .reason_len = 2,
                          .fields = f,
                          .nfields = n,
                          .content_length = cl};
  return r;
}

/* Stores `body` for target with response headers f[n] at `now`; true when stored. */
static bool store(cynic__stale_cache_t *c, const char *target, const cynic__http_hfield_t *qf,
                  size_t qn, const cynic__http_hfield_t *f, size_t n, const char *body,
                  const cynic__stale_limits_t *lim, uint64_t now) {
  cynic__stale_req_t q = req(target, qf, qn);
  cynic__stale_res_t s = res(200, f, n, (int64_t)strlen(body));
  cynic__stale_entry_t *e = cynic__stale_capture(c, &q, &s, lim, now);
  if (e == NULL)
    return false;
  if (!cynic__stale_capture_body(c, e, body, strlen(body), lim))
    return false;
  cynic__stale_commit(c, e, lim, now);
  return true;
}

static const cynic__stale_entry_t *find(cynic__stale_cache_t *c, const char *target,
                                        const cynic__http_hfield_t *qf, size_t qn,
                                        const cynic__stale_limits_t *lim, uint64_t now) {
  cynic__stale_req_t q = req(target, qf, qn);
  return cynic__stale_lookup(c, &q, lim, now);
}

static void test_a_stored_response_is_served_with_its_head_and_body(void **state) {
  (void)state;
  cynic__stale_cache_t *c = cynic__stale_new();
  assert_non_null(c);
  cynic__http_hfield_t f[] = {F("Content-Type", "text/plain"),
                              F("Connection", "x-hop"),
                              F("X-Hop", "1"),
                              F("Keep-Alive", "timeout=5"),
                              F("Content-Length", "5"),
                              F("Age", "10"),
                              F("ETag", "\"v1\"")};
  cynic__stale_req_t q = req("/a?b=1", NULL, 0);
  cynic__stale_res_t s = res(200, f, 7, 5);
  cynic__stale_entry_t *e = cynic__stale_capture(c, &q, &s, &LIM, 0);
  assert_non_null(e);
  assert_true(cynic__stale_capture_body(c, e, "hel", 3, &LIM));
  assert_true(cynic__stale_capture_body(c, e, "lo", 2, &LIM));
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 0);
  assert_true(st.pending_bytes > 0);
  cynic__stale_commit(c, e, &LIM, 1000);
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 1);
  assert_int_equal(st.pending_bytes, 0);
  assert_int_equal(st.stored, 1);

  /* the Host is case-insensitive, the target exact */
  cynic__stale_req_t q2 = {
      .host = "app.example", .host_len = 11, .target = "/a?b=1", .target_len = 6};
  const cynic__stale_entry_t *hit = cynic__stale_lookup(c, &q2, &LIM, 4500);
  assert_non_null(hit);
  assert_null(find(c, "/a?b=2", NULL, 0, &LIM, 4500));
  assert_null(find(c, "/A?b=1", NULL, 0, &LIM, 4500));
  size_t len;
  assert_int_equal(cynic__stale_status(hit), 200);
  const char *p = cynic__stale_reason(hit, &len);
  assert_int_equal(len, 2);
  assert_memory_equal(p, "OK", 2);
  p = cynic__stale_head(hit, &len);
  const char *want =
      "Content-Type: text/plain\r\nETag: \"v1\"\r\n"; /* hop-by-hop, framing, Age out */
  assert_int_equal(len, strlen(want));
  assert_memory_equal(p, want, len);
  p = cynic__stale_body(hit, &len);
  assert_int_equal(len, 5);
  assert_memory_equal(p, "hello", 5);
  assert_int_equal(cynic__stale_age_s(hit, 4500), 13); /* the upstream's 10 and 3.5 s here */
  cynic__stale_stats(c, &st);
  assert_int_equal(st.hits, 1);
  assert_int_equal(st.misses, 2);
  cynic__stale_free(c);
}

static void test_what_is_never_stored(void **state) {
  (void)state;
  static const struct {
    int status;
    cynic__http_hfield_t res, req;
    int64_t cl;
    const char *rule; /* NULL: stored */
  } cases[] = {
      {200, F("X-A", "1"), F("X-B", "1"), 10, NULL},
      {203, F("X-A", "1"), F("X-B", "1"), 10, NULL},
      {204, F("X-A", "1"), F("X-B", "1"), 0, NULL},
      {301, F("X-A", "1"), F("X-B", "1"), 10, NULL},
      {404, F("X-A", "1"), F("X-B", "1"), 10, NULL},
      {410, F("X-A", "1"), F("X-B", "1"), 10, NULL},
      {206, F("X-A", "1"), F("X-B", "1"), 10, "status"},
      {302, F("X-A", "1"), F("X-B", "1"), 10, "status"},
      {500, F("X-A", "1"), F("X-B", "1"), 10, "status"},
      {503, F("X-A", "1"), F("X-B", "1"), 10, "status"},
      {200, F("Set-Cookie", "s=1"), F("X-B", "1"), 10, "Set-Cookie"},
      {200, F("set-cookie", "s=1"), F("X-B", "1"), 10, "Set-Cookie"},
      {200, F("Cache-Control", "private"), F("X-B", "1"), 10, "private"},
      {200, F("Cache-Control", "max-age=60, PRIVATE=\"x\""), F("X-B", "1"), 10, "private"},
      {200, F("Cache-Control", "no-store"), F("X-B", "1"), 10, "no-store"},
      {200, F("Cache-Control", "no-cache"), F("X-B", "1"), 10, "no-cache"},
      {200, F("Cache-Control", "must-revalidate"), F("X-B", "1"), 10, "must-revalidate"},
      {200, F("Cache-Control", "s-maxage=10"), F("X-B", "1"), 10, "s-maxage"},
      {200, F("Cache-Control", "public, max-age=60"), F("X-B", "1"), 10, NULL},
      {200, F("Vary", "*"), F("X-B", "1"), 10, "Vary"},
      {200, F("Vary", "accept, *"), F("X-B", "1"), 10, "Vary"},
      /* at most MAX_VARY (16) names: a response varying on more is not kept */
      {200, F("Vary", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p"), F("X-B", "1"), 10, NULL},
      {200, F("Vary", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"), F("X-B", "1"), 10, "Vary"},
      {200, F("Vary", "a, ,b,,c,d,e,f,g,h,i,j,k,l,m,n,o,p"), F("X-B", "1"), 10, NULL},
      {200, F("X-A", "1"), F("Authorization", "Bearer x"), 10, "Authorization"},
      {200, F("Cache-Control", "public"), F("Authorization", "Bearer x"), 10, NULL},
      {200, F("X-A", "1"), F("Cache-Control", "no-store"), 10, "request no-store"},
      {200, F("X-A", "1"), F("Cache-Control", "no-cache, No-Store"), 10, "request no-store"},
      {200, F("X-A", "1"), F("Cache-Control", "no-cache"), 10, NULL},
      {200, F("X-A", "1"), F("X-B", "1"), 64 * 1024, NULL},
      {200, F("X-A", "1"), F("X-B", "1"), 64 * 1024 + 1, "max_entry_bytes"},
  };
  cynic__stale_cache_t *c = cynic__stale_new();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cynic__stale_req_t q = req("/x", &cases[i].req, 1);
    cynic__stale_res_t s = res(cases[i].status, &cases[i].res, 1, cases[i].cl);
    const char *rule = cynic__stale_refusal(&q, &s, &LIM);
    if ((rule == NULL) != (cases[i].rule == NULL) ||
        (rule != NULL && strcmp(rule, cases[i].rule) != 0))
      fail_msg("case %zu (%d %.*s): want %s, got %s", i, cases[i].status, (int)cases[i].res.vlen,
               cases[i].res.value, cases[i].rule ? cases[i].rule : "stored",
               rule ? rule : "stored");
    cynic__stale_entry_t *e = cynic__stale_capture(c, &q, &s, &LIM, 0);
    assert_true((e == NULL) == (cases[i].rule != NULL));
    cynic__stale_drop(c, e);
  }
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.pending_bytes, 0);
  cynic__stale_free(c);
}

static void test_a_body_over_max_entry_bytes_is_dropped_while_it_streams(void **state) {
  (void)state;
  cynic__stale_limits_t lim = LIM;
  lim.max_entry_bytes = 10000;
  cynic__stale_cache_t *c = cynic__stale_new();
  cynic__stale_req_t q = req("/big", NULL, 0);
  cynic__stale_res_t s = res(200, NULL, 0, -1); /* chunked: no length declared */
  cynic__stale_entry_t *e = cynic__stale_capture(c, &q, &s, &lim, 0);
  assert_non_null(e);
  char chunk[3000];
  memset(chunk, 'z', sizeof chunk);
  for (int i = 0; i < 3; i++)
    assert_true(cynic__stale_capture_body(c, e, chunk, sizeof chunk, &lim)); /* 9,000 */
  assert_false(cynic__stale_capture_body(c, e, chunk, sizeof chunk, &lim));  /* 12,000: dropped */
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.pending_bytes, 0);
  assert_int_equal(st.dropped, 1);
  assert_int_equal(st.entries, 0);
  /* exactly at the bound is kept */
  e = cynic__stale_capture(c, &q, &s, &lim, 0);
  char all[10000];
  memset(all, 'a', sizeof all);
  assert_true(cynic__stale_capture_body(c, e, all, sizeof all, &lim));
  cynic__stale_commit(c, e, &lim, 0);
  const cynic__stale_entry_t *hit = find(c, "/big", NULL, 0, &lim, 1);
  size_t len;
  assert_non_null(hit);
  cynic__stale_body(hit, &len);
  assert_int_equal(len, 10000);
  cynic__stale_free(c);
}

static void test_entries_bound_evicts_the_least_recently_used(void **state) {
  (void)state;
  cynic__stale_limits_t lim = LIM;
  lim.max_entries = 2;
  cynic__stale_cache_t *c = cynic__stale_new();
  assert_true(store(c, "/a", NULL, 0, NULL, 0, "a", &lim, 0));
  assert_true(store(c, "/b", NULL, 0, NULL, 0, "b", &lim, 1));
  assert_non_null(find(c, "/a", NULL, 0, &lim, 2)); /* /a used: /b is the oldest now */
  assert_true(store(c, "/c", NULL, 0, NULL, 0, "c", &lim, 3));
  assert_null(find(c, "/b", NULL, 0, &lim, 4));
  assert_non_null(find(c, "/a", NULL, 0, &lim, 4));
  assert_non_null(find(c, "/c", NULL, 0, &lim, 4));
  /* the same URL again within CYNIC__STALE_REFRESH_MS is not kept again;
   * later it replaces its entry, evicting nothing */
  assert_false(store(c, "/c", NULL, 0, NULL, 0, "c2", &lim, 3 + CYNIC__STALE_REFRESH_MS - 1));
  assert_true(store(c, "/c", NULL, 0, NULL, 0, "c2", &lim, 3 + CYNIC__STALE_REFRESH_MS));
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 2);
  assert_int_equal(st.evicted, 1);
  size_t len;
  const char *b = cynic__stale_body(find(c, "/c", NULL, 0, &lim, 2000), &len);
  assert_int_equal(len, 2);
  assert_memory_equal(b, "c2", 2);
  /* a reload that lowers the bound: the next store evicts down to it */
  lim.max_entries = 1;
  assert_true(store(c, "/d", NULL, 0, NULL, 0, "d", &lim, 2001));
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 1);
  cynic__stale_free(c);
}

static void test_a_flood_of_urls_never_passes_max_bytes(void **state) {
  (void)state;
  cynic__stale_limits_t lim = {
      .max_entries = 1000000, .max_bytes = 64 * 1024, .max_entry_bytes = 8192, .max_age_ms = 60000};
  cynic__stale_cache_t *c = cynic__stale_new();
  char body[1000], target[32];
  memset(body, 'y', sizeof body - 1);
  body[sizeof body - 1] = '\0';
  uint64_t most = 0;
  for (int i = 0; i < 20000; i++) {
    snprintf(target, sizeof target, "/flood/%d", i);
    assert_true(store(c, target, NULL, 0, NULL, 0, body, &lim, (uint64_t)i));
    cynic__stale_stats_t st;
    cynic__stale_stats(c, &st);
    if (st.bytes > lim.max_bytes)
      fail_msg("after %d stores: %llu bytes > %llu", i + 1, (unsigned long long)st.bytes,
               (unsigned long long)lim.max_bytes);
    most = st.bytes > most ? st.bytes : most;
  }
  assert_true(most > lim.max_bytes - 2000); /* full, not refusing */
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.stored, 20000);
  assert_int_equal(st.entries + st.evicted, 20000);
  assert_non_null(find(c, "/flood/19999", NULL, 0, &lim, 20000));
  assert_null(find(c, "/flood/0", NULL, 0, &lim, 20000));
  cynic__stale_free(c);
}

static void test_captures_under_way_are_bounded_too(void **state) {
  (void)state;
  cynic__stale_limits_t lim = {.max_entries = 100,
                               .max_bytes = 100 * 1024,
                               .max_entry_bytes = 40 * 1024,
                               .max_age_ms = 60000};
  cynic__stale_cache_t *c = cynic__stale_new();
  cynic__stale_req_t q = req("/p", NULL, 0);
  cynic__stale_res_t s = res(200, NULL, 0, 40 * 1024);
  cynic__stale_entry_t *a = cynic__stale_capture(c, &q, &s, &lim, 0);
  cynic__stale_entry_t *b = cynic__stale_capture(c, &q, &s, &lim, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_null(cynic__stale_capture(c, &q, &s, &lim, 0)); /* a third would pass max_bytes */
  cynic__stale_drop(c, a);
  cynic__stale_entry_t *d = cynic__stale_capture(c, &q, &s, &lim, 0);
  assert_non_null(d);
  cynic__stale_drop(c, b);
  cynic__stale_drop(c, d);
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.pending_bytes, 0);
  cynic__stale_free(c);
}

static void test_max_age_on_a_clock_moved_by_hand(void **state) {
  (void)state;
  cynic__stale_limits_t lim = LIM;
  lim.max_age_ms = 5000;
  cynic__stale_cache_t *c = cynic__stale_new();
  assert_true(store(c, "/t", NULL, 0, NULL, 0, "t", &lim, 1000));
  cynic__stale_req_t q = req("/t", NULL, 0);
  assert_non_null(cynic__stale_peek(c, &q, &lim, 5999));
  assert_non_null(find(c, "/t", NULL, 0, &lim, 5999));
  assert_null(cynic__stale_peek(c, &q, &lim, 6000));
  assert_null(find(c, "/t", NULL, 0, &lim, 6000)); /* and freed */
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.bytes, 0);
  assert_int_equal(st.expired, 1);
  /* a clock that goes back does not make an entry younger than 0 */
  assert_true(store(c, "/t", NULL, 0, NULL, 0, "t", &lim, 10000));
  assert_non_null(find(c, "/t", NULL, 0, &lim, 9000));
  /* expired entries at the LRU end are freed by the next store */
  assert_true(store(c, "/u", NULL, 0, NULL, 0, "u", &lim, 20000));
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 1);
  assert_int_equal(st.expired, 2);
  cynic__stale_free(c);
}

static void test_stale_if_error_shortens_never_lengthens(void **state) {
  (void)state;
  cynic__stale_cache_t *c = cynic__stale_new();
  cynic__http_hfield_t sie[] = {F("Cache-Control", "max-age=2, stale-if-error=3")};
  cynic__stale_limits_t lim = LIM; /* max_age 60 s */
  assert_true(store(c, "/s", NULL, 0, sie, 1, "s", &lim, 0));
  assert_non_null(find(c, "/s", NULL, 0, &lim, 4999)); /* max-age + stale-if-error = 5 s */
  assert_null(find(c, "/s", NULL, 0, &lim, 5000));
  lim.max_age_ms = 1000; /* shorter than 5 s: the config's bound wins */
  assert_true(store(c, "/s", NULL, 0, sie, 1, "s", &lim, 10000));
  assert_non_null(find(c, "/s", NULL, 0, &lim, 10999));
  assert_null(find(c, "/s", NULL, 0, &lim, 11000));
  /* stale-if-error alone counts from the store */
  cynic__http_hfield_t alone[] = {F("cache-control", "Stale-If-Error=\"2\"")};
  lim.max_age_ms = 60000;
  assert_true(store(c, "/s", NULL, 0, alone, 1, "s", &lim, 20000));
  assert_non_null(find(c, "/s", NULL, 0, &lim, 21999));
  assert_null(find(c, "/s", NULL, 0, &lim, 22000));
  cynic__stale_free(c);
}

static void test_vary_keeps_the_variant_it_was_stored_for(void **state) {
  (void)state;
  cynic__stale_cache_t *c = cynic__stale_new();
  cynic__http_hfield_t vary[] = {F("Vary", "Accept-Language, accept-encoding")};
  cynic__http_hfield_t fr[] = {F("Accept-Language", "fr"), F("Accept-Encoding", "gzip"),
                               F("accept-encoding", "br")};
  assert_true(store(c, "/v", fr, 3, vary, 1, "bonjour", &LIM, 0));
  assert_non_null(find(c, "/v", fr, 3, &LIM, 1));
  /* the same values, another order of unrelated fields, names in another case */
  cynic__http_hfield_t fr2[] = {F("X-Other", "1"), F("accept-language", "fr"),
                                F("ACCEPT-ENCODING", "gzip"), F("Accept-Encoding", "br")};
  assert_non_null(find(c, "/v", fr2, 4, &LIM, 1));
  cynic__http_hfield_t de[] = {F("Accept-Language", "de"), F("Accept-Encoding", "gzip"),
                               F("accept-encoding", "br")};
  assert_null(find(c, "/v", de, 3, &LIM, 1));
  cynic__http_hfield_t one_enc[] = {F("Accept-Language", "fr"), F("Accept-Encoding", "gzip")};
  assert_null(find(c, "/v", one_enc, 2, &LIM, 1));
  cynic__http_hfield_t joined[] = {F("Accept-Language", "fr"), F("Accept-Encoding", "gzip, br")};
  assert_non_null(find(c, "/v", joined, 2, &LIM, 1)); /* one field or two: the same list */
  assert_null(find(c, "/v", NULL, 0, &LIM, 1));
  /* a request without the header matches an entry stored without it */
  assert_true(store(c, "/w", NULL, 0, vary, 1, "plain", &LIM, 0));
  assert_non_null(find(c, "/w", NULL, 0, &LIM, 1));
  assert_null(find(c, "/w", fr, 3, &LIM, 1));
  cynic__stale_free(c);
}

static void test_the_hash_table_grows_and_finds_everything(void **state) {
  (void)state;
  cynic__stale_limits_t lim = {
      .max_entries = 5000, .max_bytes = 64 << 20, .max_entry_bytes = 1024, .max_age_ms = 60000};
  cynic__stale_cache_t *c = cynic__stale_new();
  char target[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(target, sizeof target, "/g/%d", i);
    assert_true(store(c, target, NULL, 0, NULL, 0, target, &lim, 0));
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(target, sizeof target, "/g/%d", i);
    const cynic__stale_entry_t *e = find(c, target, NULL, 0, &lim, 1);
    assert_non_null(e);
    size_t len;
    const char *b = cynic__stale_body(e, &len);
    assert_int_equal(len, strlen(target));
    assert_memory_equal(b, target, len);
  }
  cynic__stale_stats_t st;
  cynic__stale_stats(c, &st);
  assert_int_equal(st.entries, 5000);
  assert_int_equal(st.evicted, 0);
  cynic__stale_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_stored_response_is_served_with_its_head_and_body),
      cmocka_unit_test(test_what_is_never_stored),
      cmocka_unit_test(test_a_body_over_max_entry_bytes_is_dropped_while_it_streams),
      cmocka_unit_test(test_entries_bound_evicts_the_least_recently_used),
      cmocka_unit_test(test_a_flood_of_urls_never_passes_max_bytes),
      cmocka_unit_test(test_captures_under_way_are_bounded_too),
      cmocka_unit_test(test_max_age_on_a_clock_moved_by_hand),
      cmocka_unit_test(test_stale_if_error_shortens_never_lengthens),
      cmocka_unit_test(test_vary_keeps_the_variant_it_was_stored_for),
      cmocka_unit_test(test_the_hash_table_grows_and_finds_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
