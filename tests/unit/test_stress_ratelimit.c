/*
 * tests/unit/test_stress_ratelimit.c: threads taking from one bucket or one
 * table. Concurrent grants must never add up to more than rate x elapsed +
 * burst, on the real clock (bracketed by readings taken before creation and
 * after the last take) and on a fake clock that one thread moves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <cmocka.h>

#include "cynic/ratelimit.h"
#include "fake_clock.h"

#define THREADS 4
#define TAKES 50000

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

typedef struct taker {
  cynic_tokens_t *t;
  cynic_ratetable_t *table;
  _Atomic bool *stop; /* NULL: run TAKES times */
  _Atomic int *started; /* with stop: raised once this taker runs */
  uint64_t seed;
  uint64_t granted; /* tokens */
  uint64_t calls;
  uint64_t bad; /* answers that broke the contract; asserted on join */
} taker_t;

static void *take_loop(void *arg) {
  taker_t *k = arg;
  if (k->started != NULL)
    atomic_fetch_add(k->started, 1);
  for (uint64_t i = 0;; i++) {
    if (k->stop != NULL ? atomic_load(k->stop) : i >= TAKES)
      break;
    uint64_t r = rng_next(&k->seed);
    uint32_t n = 1 + (uint32_t)(r % 3);
    uint64_t wait = 0;
    int rc;
    if (k->table != NULL) {
      uint8_t key[2] = {(uint8_t)((r >> 8) % 97), (uint8_t)((r >> 16) % 3)};
      rc = cynic_ratetable_take(k->table, key, 2, n, &wait);
    } else {
      rc = cynic_tokens_take(k->t, n, &wait);
    }
    /* No cmocka asserts off the main thread: count, check after join. */
    if (rc == 0) {
      k->granted += n;
      k->bad += wait != 0;
    } else {
      k->bad += rc != CYNIC_ELIMITED || wait == 0 || wait == UINT64_MAX;
    }
    k->calls++;
  }
  return NULL;
}

static uint64_t run_takers(taker_t *k, int count) {
  pthread_t tid[THREADS];
  for (int i = 0; i < count; i++)
    assert_int_equal(pthread_create(&tid[i], NULL, take_loop, &k[i]), 0);
  uint64_t granted = 0;
  for (int i = 0; i < count; i++) {
    assert_int_equal(pthread_join(tid[i], NULL), 0);
    granted += k[i].granted;
    assert_int_equal(k[i].bad, 0);
  }
  return granted;
}

static void test_stress_real_clock_bound(void **state) {
  (void)state;
  /* 1e6 tokens/s: T = 16000 ticks, exact; burst 1000. */
  cynic_tokens_config_t cfg;
  cynic_tokens_config_default(&cfg);
  cfg.rate_per_sec = 1e6;
  cfg.burst = 1000;
  uint64_t start = cynic_clock_monotonic(NULL);
  cynic_tokens_t *t = NULL;
  assert_int_equal(cynic_tokens_new(&cfg, &t), 0);
  taker_t k[THREADS];
  memset(k, 0, sizeof(k));
  for (int i = 0; i < THREADS; i++) {
    k[i].t = t;
    k[i].seed = UINT64_C(0xabcdef12345) + (uint64_t)i;
  }
  uint64_t granted = run_takers(k, THREADS);
  uint64_t elapsed = cynic_clock_monotonic(NULL) - start;
  /* granted <= 1e6/s * elapsed + 1000, in integers. */
  assert_true(granted * 1000 <= elapsed + UINT64_C(1000) * 1000);
  cynic_tokens_stats_t s;
  cynic_tokens_stats(t, &s);
  assert_int_equal(s.granted, granted);
  assert_int_equal(s.takes + s.limited, (uint64_t)THREADS * TAKES);
  cynic_tokens_free(t);
}

typedef struct advancer {
  fake_clock_t *fc;
  _Atomic bool *stop;
  _Atomic int *started;
} advancer_t;

static void *advance_loop(void *arg) {
  advancer_t *a = arg;
  while (atomic_load(a->started) < THREADS - 1) /* all takers running */
    sched_yield();
  for (int i = 0; i < 20000; i++) {
    fake_clock_advance(a->fc, CYNIC_US(1) + (uint64_t)(i % 7));
    if (i % 64 == 0)
      sched_yield();
  }
  atomic_store(a->stop, true);
  return NULL;
}

static void test_stress_fake_clock_bound(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(1));
  cynic_tokens_config_t cfg;
  cynic_tokens_config_default(&cfg);
  cfg.clock = fake_clock_bind(&fc);
  cfg.rate_per_sec = 300000; /* T = ceil(16e9 / 3e5) = 53334 ticks */
  cfg.burst = 7;
  cynic_tokens_t *t = NULL;
  assert_int_equal(cynic_tokens_new(&cfg, &t), 0);
  _Atomic bool stop;
  _Atomic int started;
  atomic_init(&stop, false);
  atomic_init(&started, 0);
  advancer_t a = {&fc, &stop, &started};
  pthread_t adv;
  assert_int_equal(pthread_create(&adv, NULL, advance_loop, &a), 0);
  taker_t k[THREADS - 1];
  memset(k, 0, sizeof(k));
  for (int i = 0; i < THREADS - 1; i++) {
    k[i].t = t;
    k[i].stop = &stop;
    k[i].started = &started;
    k[i].seed = UINT64_C(0xfeed) + (uint64_t)i;
  }
  uint64_t granted = run_takers(k, THREADS - 1);
  assert_int_equal(pthread_join(adv, NULL), 0);
  uint64_t elapsed_ticks = (fake_clock_read(&fc) - CYNIC_SEC(1)) * 16;
  const uint64_t cost = 53334, tau = 7 * cost;
  assert_true(granted * cost <= elapsed_ticks + tau);
  assert_true(granted > 0);
  cynic_tokens_free(t);
}

static void test_stress_table_stays_bounded(void **state) {
  (void)state;
  cynic_ratetable_config_t cfg;
  cynic_ratetable_config_default(&cfg);
  cfg.capacity = 32; /* keys come from a pool of 291 */
  cfg.rate_per_sec = 1000;
  cfg.burst = 5;
  cfg.seed = 7;
  cynic_ratetable_t *table = NULL;
  assert_int_equal(cynic_ratetable_new(&cfg, &table), 0);
  taker_t k[THREADS];
  memset(k, 0, sizeof(k));
  for (int i = 0; i < THREADS; i++) {
    k[i].table = table;
    k[i].seed = UINT64_C(0x7ab1e) + (uint64_t)i;
  }
  uint64_t granted = run_takers(k, THREADS);
  cynic_ratetable_stats_t s;
  cynic_ratetable_stats(table, &s);
  assert_int_equal(s.size, 32);
  assert_int_equal(s.capacity, 32);
  assert_int_equal(s.hits + s.misses, (uint64_t)THREADS * TAKES);
  assert_int_equal(s.granted + s.rejected, (uint64_t)THREADS * TAKES);
  assert_int_equal(s.misses, s.evictions + 32);
  assert_true(granted >= s.granted); /* tokens >= granted takes */
  cynic_ratetable_free(table);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_real_clock_bound),
      cmocka_unit_test(test_stress_fake_clock_bound),
      cmocka_unit_test(test_stress_table_stays_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
