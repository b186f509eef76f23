/*
 * tests/unit/proxy/test_http_caches.c: the bounds of what HTTP mode keeps
 * for reuse between requests (http_session.c, blocks.h): exchanges and head
 * stores are kept as long as the recent peak of requests in flight needs
 * them (at most CYNIC__HS_KEPT_MAX, by store size), what is kept comes back
 * first, and the trim gives the rest back to malloc (LeakSanitizer checks
 * the frees).
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

enum { N = 300 }; /* requests in flight at once: past the old fixed caches (256, 32) */

static size_t seen_count(void *const *set, size_t n, void *const *got, size_t m) {
  size_t k = 0;
  for (size_t j = 0; j < m; j++)
    for (size_t i = 0; i < n; i++)
      if (set[i] == got[j]) {
        k++;
        break;
      }
  return k;
}

static void kept(size_t *x, size_t *s) {
  cynic__http_caches_kept(x, s);
}

/* Exchanges: N in flight and back: all N kept, taken again from the cache
 * (none from malloc), zeroed; two trims after the peak, none kept. */
static void test_exchanges_follow_the_peak(void **state) {
  (void)state;
  static cynic__http_conn_t conns[N];
  static void *first[N], *second[N];
  for (size_t i = 0; i < N; i++) {
    conns[i].x = cynic__hs_xchg_take(&conns[i]);
    assert_non_null(conns[i].x);
    assert_ptr_equal(conns[i].x->c, &conns[i]);
    conns[i].x->status = 200;
    first[i] = conns[i].x;
  }
  size_t kx, ks;
  for (size_t i = 0; i < N; i++) {
    cynic__hs_xchg_put(&conns[i]);
    assert_null(conns[i].x);
    kept(&kx, &ks);
    assert_int_equal(kx, i + 1);
  }
  for (size_t i = 0; i < N; i++) {
    conns[i].x = cynic__hs_xchg_take(&conns[i]);
    assert_int_equal(conns[i].x->status, 0); /* zeroed for the new request */
    second[i] = conns[i].x;
  }
  assert_int_equal(seen_count(first, N, second, N), N); /* every one reused */
  kept(&kx, &ks);
  assert_int_equal(kx, 0);
  for (size_t i = 0; i < N; i++)
    cynic__hs_xchg_put(&conns[i]);
  cynic__http_caches_trim(); /* the peak (N) was this second's: kept */
  kept(&kx, &ks);
  assert_int_equal(kx, N);
  cynic__http_caches_trim(); /* nothing in flight since: given back */
  kept(&kx, &ks);
  assert_int_equal(kx, 0);
  cynic__http_free_caches();
}

/* Head stores: kept by size; another size is never handed a kept one. */
static void test_stores_are_kept_by_size_and_trimmed(void **state) {
  (void)state;
  static char *stores[N];
  static void *first[N], *again[N];
  for (size_t i = 0; i < N; i++) {
    stores[i] = cynic__hs_store_take(4096);
    assert_non_null(stores[i]);
    first[i] = stores[i];
  }
  size_t kx, ks;
  for (size_t i = 0; i < N; i++) {
    cynic__hs_store_put(&stores[i], 4096);
    assert_null(stores[i]);
  }
  kept(&kx, &ks);
  assert_int_equal(ks, N);
  char *other = cynic__hs_store_take(8192); /* a size of its own: from malloc */
  assert_non_null(other);
  assert_int_equal(seen_count(first, N, (void *const *)&other, 1), 0);
  for (size_t i = 0; i < N; i++) {
    stores[i] = cynic__hs_store_take(4096);
    again[i] = stores[i];
  }
  assert_int_equal(seen_count(first, N, again, N), N); /* all from the cache */
  cynic__hs_store_put(&other, 8192);
  for (size_t i = 0; i < N; i++)
    cynic__hs_store_put(&stores[i], 4096);
  kept(&kx, &ks);
  assert_int_equal(ks, N + 1);
  cynic__http_caches_trim();
  cynic__http_caches_trim();
  kept(&kx, &ks);
  assert_int_equal(ks, 0);
  cynic__http_free_caches();
}

/* More store sizes than CYNIC__HS_STORE_SIZES at once: the extra sizes come
 * from malloc and go back to it (nothing kept, nothing lost); once a size's
 * stores are all back and trimmed, its place serves a new size. */
static void test_store_sizes_are_bounded(void **state) {
  (void)state;
  enum { SIZES = CYNIC__HS_STORE_SIZES + 3 };
  char *s[SIZES];
  for (size_t i = 0; i < SIZES; i++)
    s[i] = cynic__hs_store_take(1024 + i);
  for (size_t i = 0; i < SIZES; i++)
    cynic__hs_store_put(&s[i], 1024 + i);
  size_t kx, ks;
  kept(&kx, &ks);
  assert_int_equal(ks, CYNIC__HS_STORE_SIZES); /* one per size kept apart */
  cynic__http_caches_trim();
  cynic__http_caches_trim();
  kept(&kx, &ks);
  assert_int_equal(ks, 0);
  char *late = cynic__hs_store_take(2048 + 7); /* a vacant place takes the new size */
  cynic__hs_store_put(&late, 2048 + 7);
  kept(&kx, &ks);
  assert_int_equal(ks, 1);
  cynic__http_free_caches();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exchanges_follow_the_peak),
      cmocka_unit_test(test_stores_are_kept_by_size_and_trimmed),
      cmocka_unit_test(test_store_sizes_are_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
