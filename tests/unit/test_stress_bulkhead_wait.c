/*
 * tests/unit/test_stress_bulkhead_wait.c: threads blocking in
 * cynic_bulkhead_enter_wait() while another thread uses the event-loop calls
 * (enter_or_queue, promote, dequeue) on the same bulkhead. Checks, under
 * ThreadSanitizer in `make test`: the slot limit holds, a plain counter
 * guarded only by a 1-slot bulkhead has no data race, the counts add up
 * across both forms, and no wake-up is lost (with an unlimited wait, every
 * waiter gets its slot; a lost wake-up would hang and hit the test's
 * timeout).
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

#include "cynic/bulkhead.h"

#define THREADS 4
#define ITERATIONS 20000

typedef struct shared {
  cynic_bulkhead_t *b;
  uint32_t limit;
  _Atomic uint32_t in_use, max_in_use;
  uint64_t plain_counter; /* guarded by the bulkhead when limit == 1 */
  _Atomic uint64_t timeouts;
  uint64_t loop_served, loop_refused, loop_gave_up; /* the loop thread's own */
} shared_t;

static void got_slot(shared_t *sh) {
  uint32_t now = atomic_fetch_add(&sh->in_use, 1) + 1;
  uint32_t seen = atomic_load(&sh->max_in_use);
  while (now > seen && !atomic_compare_exchange_weak(&sh->max_in_use, &seen, now))
    ;
  if (sh->limit == 1)
    sh->plain_counter++;
}

static void *worker(void *arg) {
  shared_t *sh = arg;
  for (int i = 0; i < ITERATIONS; i++) {
    /* Mostly unlimited waits (a lost wake-up hangs); some short ones that
     * time out and dequeue while slots are being handed over. */
    uint64_t timeout = (i % 7 == 0) ? CYNIC_US(50) : UINT64_MAX;
    int rc = cynic_bulkhead_enter_wait(sh->b, timeout);
    if (rc == CYNIC_EDEADLINE) {
      atomic_fetch_add(&sh->timeouts, 1);
      continue;
    }
    assert_int_equal(rc, 0);
    got_slot(sh);
    atomic_fetch_sub(&sh->in_use, 1);
    cynic_bulkhead_leave(sh->b);
  }
  return NULL;
}

/* An event loop's way on the same bulkhead: enter_or_queue, then promote()
 * its parked waiter when a slot frees, or give the place back (dequeue) after
 * a while, as a loop's queue timeout would. */
static void *loop_worker(void *arg) {
  shared_t *sh = arg;
  for (int i = 0; i < ITERATIONS; i++) {
    bool queued = false;
    if (cynic_bulkhead_enter_or_queue(sh->b, &queued) != 0) {
      sh->loop_refused++;
      continue;
    }
    if (queued) {
      int spins = 0;
      while (cynic_bulkhead_promote(sh->b) != 0 && ++spins < 1000)
        sched_yield();
      if (spins == 1000) {
        cynic_bulkhead_dequeue(sh->b);
        sh->loop_gave_up++;
        continue;
      }
    }
    got_slot(sh);
    sh->loop_served++;
    atomic_fetch_sub(&sh->in_use, 1);
    cynic_bulkhead_leave(sh->b);
  }
  return NULL;
}

static void run(uint32_t limit) {
  cynic_bulkhead_config_t cfg;
  cynic_bulkhead_config_default(&cfg);
  cfg.max_concurrent = limit;
  cfg.max_pending = THREADS + 1; /* every thread can always queue */
  shared_t sh;
  memset(&sh, 0, sizeof sh);
  sh.limit = limit;
  assert_int_equal(cynic_bulkhead_new(&cfg, &sh.b), 0);
  pthread_t th[THREADS];
  pthread_t loop;
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker, &sh), 0);
  assert_int_equal(pthread_create(&loop, NULL, loop_worker, &sh), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  pthread_join(loop, NULL);
  assert_true(atomic_load(&sh.max_in_use) <= limit);
  cynic_bulkhead_snapshot_t s;
  cynic_bulkhead_snapshot(sh.b, &s);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.misuse, 0);
  assert_int_equal(s.timed_out, atomic_load(&sh.timeouts));
  assert_int_equal(s.queue_rejected, sh.loop_refused); /* never a blocked thread */
  assert_int_equal(s.dequeued, atomic_load(&sh.timeouts) + sh.loop_gave_up);
  assert_int_equal(sh.loop_served + sh.loop_refused + sh.loop_gave_up, ITERATIONS);
  uint64_t served = (uint64_t)THREADS * ITERATIONS - atomic_load(&sh.timeouts) + sh.loop_served;
  assert_int_equal(s.entered + s.promoted, served);
  assert_int_equal(s.left, served);
  if (limit == 1)
    assert_int_equal(sh.plain_counter, served);
  print_message(
      "limit %u: loop thread served %llu (promoted or at once), gave up %llu, refused %llu; "
      "%llu promoted in all\n",
      limit, (unsigned long long)sh.loop_served, (unsigned long long)sh.loop_gave_up,
      (unsigned long long)sh.loop_refused, (unsigned long long)s.promoted);
  cynic_bulkhead_free(sh.b);
}

static void test_stress_wait_one_slot(void **state) {
  (void)state;
  run(1);
}

static void test_stress_wait_two_slots(void **state) {
  (void)state;
  run(2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_wait_one_slot),
      cmocka_unit_test(test_stress_wait_two_slots),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
