/*
 * tests/unit/test_stress_guard.c: four threads calling through one guard
 * whose bulkhead has a single slot, with waits, retries and a breaker. Under
 * ThreadSanitizer (label concurrency): a plain counter touched only inside
 * the guarded function has no data race (the slot excludes), every slot and
 * permit is given back, and every call ends (no lost wake-up: the test would
 * hit its timeout).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>

#include "cynic/guard.h"

#define THREADS 4
#define CALLS 3000

static cynic_guard_t *guard;
static cynic_bulkhead_t *bulkhead;
static cynic_breaker_t *breaker;
static cynic_budget_t *budget;
static uint64_t plain_counter; /* guarded by the 1-slot bulkhead */
static _Atomic uint64_t outcomes[3]; /* ok, dependency failed, refused */

static int dependency(void *arg, uint64_t timeout_ns) {
  (void)timeout_ns;
  uint64_t *rng = arg;
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  plain_counter++;
  return *rng % 4 == 0 ? CYNIC_EDEPENDENCY : 0;
}

static void *worker(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
  for (int i = 0; i < CALLS; i++) {
    cynic_guard_call_t c;
    int rc = cynic_guard_call(guard, NULL, 0, cynic_deadline_none(), dependency, &rng, &c);
    atomic_fetch_add(&outcomes[rc == 0 ? 0 : c.attempts > 0 ? 1 : 2], 1);
  }
  return NULL;
}

static void test_stress_guard_one_slot(void **state) {
  (void)state;
  cynic_bulkhead_config_t hc;
  cynic_bulkhead_config_default(&hc);
  hc.max_concurrent = 1;
  hc.max_pending = THREADS;
  assert_int_equal(cynic_bulkhead_new(&hc, &bulkhead), 0);
  cynic_breaker_config_t kc;
  cynic_breaker_config_rate(&kc);
  kc.open_ns = CYNIC_US(200);
  assert_int_equal(cynic_breaker_new(&kc, &breaker), 0);
  cynic_budget_config_t uc;
  cynic_budget_config_default(&uc);
  assert_int_equal(cynic_budget_new(&uc, &budget), 0);
  cynic_guard_config_t gc;
  cynic_guard_config_default(&gc);
  gc.bulkhead = bulkhead;
  gc.bulkhead_wait_ns = CYNIC_SEC(10);
  gc.breaker = breaker;
  gc.budget = budget;
  gc.backoff.base_ns = CYNIC_US(1);
  gc.backoff.cap_ns = CYNIC_US(20);
  assert_int_equal(cynic_guard_new(&gc, &guard), 0);

  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);

  uint64_t total = atomic_load(&outcomes[0]) + atomic_load(&outcomes[1]) +
                   atomic_load(&outcomes[2]);
  assert_int_equal(total, (uint64_t)THREADS * CALLS);
  cynic_bulkhead_snapshot_t hs;
  cynic_bulkhead_snapshot(bulkhead, &hs);
  assert_int_equal(hs.in_use, 0);
  assert_int_equal(hs.pending, 0);
  assert_int_equal(hs.misuse, 0);
  assert_int_equal(hs.entered + hs.promoted, hs.left);
  assert_true(hs.left >= plain_counter); /* a slot per call, and some refused by the breaker */
  cynic_breaker_snapshot_t ks;
  cynic_breaker_snapshot(breaker, &ks);
  /* Every permit came back with an outcome: one per dependency call. */
  assert_int_equal(ks.successes + ks.failures + ks.slow, plain_counter);
  assert_int_equal(ks.probes_in_flight, 0);
  cynic_guard_free(guard);
  cynic_budget_free(budget);
  cynic_breaker_free(breaker);
  cynic_bulkhead_free(bulkhead);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_guard_one_slot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
