/*
 * tests/unit/test_stress_bulkhead.c: threads hammering one bulkhead.
 *
 * Each thread keeps shadow counts that are raised only after the bulkhead
 * granted a slot or queue place and lowered only before the thread gives it
 * back, so shadow <= real at every instant; their observed maxima must stay
 * within the limits whatever the interleaving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>

#include "cynic/bulkhead.h"

#define THREADS 4
#define ITERATIONS 300000

typedef struct shared {
  cynic_bulkhead_t *b;
  _Atomic uint32_t in_use, max_in_use;
  _Atomic uint32_t pending, max_pending;
  /* Guarded by the bulkhead itself when max_concurrent == 1. */
  uint64_t plain_counter;
  bool exclusive;
} shared_t;

typedef struct worker {
  shared_t *sh;
  uint64_t seed;
  uint64_t work_done; /* slots held and released by this thread */
} worker_t;

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

static void raise_max(_Atomic uint32_t *count, _Atomic uint32_t *max) {
  uint32_t now = atomic_fetch_add(count, 1) + 1;
  uint32_t seen = atomic_load(max);
  while (now > seen && !atomic_compare_exchange_weak(max, &seen, now))
    ;
}

static void got_slot(worker_t *w) {
  raise_max(&w->sh->in_use, &w->sh->max_in_use);
  if (w->sh->exclusive)
    w->sh->plain_counter++; /* a data race unless the slot excludes */
}

static void release_slot(worker_t *w) {
  atomic_fetch_sub(&w->sh->in_use, 1);
  cynic_bulkhead_leave(w->sh->b);
  w->work_done++;
}

static void *hammer(void *arg) {
  worker_t *w = arg;
  shared_t *sh = w->sh;
  uint32_t held = 0, waiting = 0;
  for (int i = 0; i < ITERATIONS; i++) {
    uint64_t r = rng_next(&w->seed);
    switch (r % 6) {
    case 0:
      if (cynic_bulkhead_try_enter(sh->b) == 0) {
        got_slot(w);
        held++;
      }
      break;
    case 1:
    case 2:
      if (held > 0) {
        release_slot(w);
        held--;
        /* An event loop hands a freed slot to its own oldest waiter. */
        if (waiting > 0) {
          atomic_fetch_sub(&sh->pending, 1);
          if (cynic_bulkhead_promote(sh->b) == 0) {
            got_slot(w);
            held++;
            waiting--;
          } else {
            raise_max(&sh->pending, &sh->max_pending);
          }
        }
      }
      break;
    case 3:
      if (cynic_bulkhead_queue(sh->b) == 0) {
        raise_max(&sh->pending, &sh->max_pending);
        waiting++;
      }
      break;
    case 4:
      if (waiting > 0) { /* a queue timeout */
        atomic_fetch_sub(&sh->pending, 1);
        cynic_bulkhead_dequeue(sh->b);
        waiting--;
      }
      break;
    default: {
      bool queued = false;
      if (cynic_bulkhead_enter_or_queue(sh->b, &queued) == 0) {
        if (queued) {
          raise_max(&sh->pending, &sh->max_pending);
          waiting++;
        } else {
          got_slot(w);
          held++;
        }
      }
    }
    }
  }
  while (held > 0) {
    release_slot(w);
    held--;
  }
  while (waiting > 0) {
    atomic_fetch_sub(&sh->pending, 1);
    cynic_bulkhead_dequeue(sh->b);
    waiting--;
  }
  return NULL;
}

static void run(uint32_t max, uint32_t max_pending, bool barging) {
  cynic_bulkhead_config_t cfg;
  cynic_bulkhead_config_default(&cfg);
  cfg.max_concurrent = max;
  cfg.max_pending = max_pending;
  cfg.allow_barging = barging;
  shared_t sh;
  memset(&sh, 0, sizeof(sh));
  assert_int_equal(cynic_bulkhead_new(&cfg, &sh.b), 0);
  sh.exclusive = max == 1;
  atomic_init(&sh.in_use, 0);
  atomic_init(&sh.max_in_use, 0);
  atomic_init(&sh.pending, 0);
  atomic_init(&sh.max_pending, 0);

  pthread_t tid[THREADS];
  worker_t w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i].sh = &sh;
    w[i].seed = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(i + 1) + max;
    w[i].work_done = 0;
    assert_int_equal(pthread_create(&tid[i], NULL, hammer, &w[i]), 0);
  }
  uint64_t work = 0;
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(pthread_join(tid[i], NULL), 0);
    work += w[i].work_done;
  }

  assert_true(atomic_load(&sh.max_in_use) <= max);
  assert_true(atomic_load(&sh.max_pending) <= max_pending);
  assert_true(atomic_load(&sh.max_in_use) >= 1);
  cynic_bulkhead_stats_t s;
  cynic_bulkhead_stats(sh.b, &s);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.misuse, 0);
  assert_int_equal(s.entered + s.promoted, s.left);
  assert_int_equal(s.queued, s.promoted + s.dequeued);
  assert_int_equal(s.left, work);
  if (sh.exclusive)
    assert_int_equal(sh.plain_counter, work);
  cynic_bulkhead_free(sh.b);
}

static void test_stress_fair(void **state) {
  (void)state;
  run(3, 2, false);
}

static void test_stress_barging(void **state) {
  (void)state;
  run(3, 2, true);
}

/* max_concurrent 1 makes the bulkhead a lock: TSan checks that a slot's
 * holder sees everything the previous holder wrote. */
static void test_stress_single_slot_excludes(void **state) {
  (void)state;
  run(1, 1, false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_fair),
      cmocka_unit_test(test_stress_barging),
      cmocka_unit_test(test_stress_single_slot_excludes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
