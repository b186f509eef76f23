/*
 * tests/unit/proxy/test_http_caches.c: the bounds of what HTTP mode keeps
 * for reuse between requests (http_session.c): at most
 * CYNIC__HS_XCHG_CACHE exchanges and 32 head stores are kept; the rest are
 * freed (LeakSanitizer checks the frees), and what is kept comes back first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http_conn.h"
#include "http_session.h"

#define MORE 40 /* past each cap */

static bool seen(void *const *set, size_t n, const void *p) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == p)
      return true;
  return false;
}

/* Exchanges: put back CAP + MORE, take as many again: exactly CAP of them are
 * the ones kept (newest first), the others new. */
static void test_exchange_cache_is_bounded(void **state) {
  (void)state;
  enum { N = CYNIC__HS_XCHG_CACHE + MORE };
  static cynic__http_conn_t conns[N];
  static void *first[N];
  for (size_t i = 0; i < N; i++) {
    conns[i].x = cynic__hs_xchg_take(&conns[i]);
    assert_non_null(conns[i].x);
    assert_ptr_equal(conns[i].x->c, &conns[i]);
    first[i] = conns[i].x;
  }
  size_t kept_x, kept_s;
  for (size_t i = 0; i < N; i++) {
    cynic__hs_xchg_put(&conns[i]);
    assert_null(conns[i].x);
    cynic__http_caches_kept(&kept_x, &kept_s);
    assert_int_equal(kept_x, i + 1 < CYNIC__HS_XCHG_CACHE ? i + 1 : CYNIC__HS_XCHG_CACHE);
  }
  size_t reused = 0;
  for (size_t i = 0; i < N; i++) {
    conns[i].x = cynic__hs_xchg_take(&conns[i]);
    assert_non_null(conns[i].x);
    assert_int_equal(conns[i].x->status, 0); /* zeroed for the new request */
    reused += seen(first, N, conns[i].x);
  }
  /* the first CAP taken again were kept; the rest came from malloc (which may
   * hand back a freed address: count only the ones taken while the cache
   * still had some) */
  assert_true(reused >= CYNIC__HS_XCHG_CACHE);
  for (size_t i = 0; i < N; i++)
    cynic__hs_xchg_put(&conns[i]);
  cynic__http_free_caches();
}

/* Head stores: kept by size, 32 at most. */
static void test_store_cache_is_bounded_and_matched_by_size(void **state) {
  (void)state;
  enum { N = 32 + MORE };
  static char *stores[N];
  static void *first[N];
  for (size_t i = 0; i < N; i++) {
    stores[i] = cynic__hs_store_take(4096);
    assert_non_null(stores[i]);
    first[i] = stores[i];
  }
  size_t kept_x, kept_s;
  for (size_t i = 0; i < N; i++) {
    cynic__hs_store_put(&stores[i], 4096);
    assert_null(stores[i]);
    cynic__http_caches_kept(&kept_x, &kept_s);
    assert_int_equal(kept_s, i + 1 < 32 ? i + 1 : 32); /* the rest freed */
  }
  /* another size is never handed a kept one: all 32 are still there below */
  char *other = cynic__hs_store_take(8192);
  assert_non_null(other);
  size_t kept = 0;
  for (size_t i = 0; i < 32; i++) {
    stores[i] = cynic__hs_store_take(4096);
    kept += seen(first, N, stores[i]);
  }
  assert_int_equal(kept, 32); /* all 32 from the cache */
  free(other);
  for (size_t i = 0; i < 32; i++)
    cynic__hs_store_put(&stores[i], 4096);
  cynic__http_free_caches();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exchange_cache_is_bounded),
      cmocka_unit_test(test_store_cache_is_bounded_and_matched_by_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
