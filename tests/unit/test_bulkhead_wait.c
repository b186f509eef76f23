/*
 * tests/unit/test_bulkhead_wait.c: cynic_bulkhead_enter_wait(), the blocking
 * entry for threads: the deadline, first-come first-served order, the bounded
 * queue, and waiters woken by the event-loop calls (leave, dequeue).
 * Waits are real (CLOCK_MONOTONIC); bounds are generous and never assert speed.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <cmocka.h>

#include "cynic/bulkhead.h"

static uint64_t mono(void) { return cynic_clock_monotonic(NULL); }

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Bounded poll for `pending` to reach `want` (never a bare sleep). */
static void wait_pending(cynic_bulkhead_t *b, uint32_t want) {
  cynic_bulkhead_snapshot_t s;
  for (int i = 0; i < 10000; i++) {
    assert_int_equal(cynic_bulkhead_snapshot(b, &s), 0);
    if (s.pending == want)
      return;
    sleep_ms(1);
  }
  assert_int_equal(s.pending, want);
}

static cynic_bulkhead_t *make(uint32_t slots, uint32_t pending) {
  cynic_bulkhead_config_t cfg;
  cynic_bulkhead_config_default(&cfg);
  cfg.max_concurrent = slots;
  cfg.max_pending = pending;
  cynic_bulkhead_t *b = NULL;
  assert_int_equal(cynic_bulkhead_new(&cfg, &b), 0);
  return b;
}

static void test_free_slot_is_taken_at_once(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(2, 1);
  assert_int_equal(cynic_bulkhead_enter_wait(b, CYNIC_SEC(10)), 0);
  assert_int_equal(cynic_bulkhead_enter_wait(b, 0), 0);
  assert_int_equal(cynic_bulkhead_enter_wait(b, 0), CYNIC_EFULL); /* 0 is try_enter */
  assert_int_equal(cynic_bulkhead_enter_wait(NULL, 0), CYNIC_EINVAL);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_snapshot_t s;
  assert_int_equal(cynic_bulkhead_snapshot(b, &s), 0);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.entered, 2);
  assert_int_equal(s.rejected, 1);
  assert_int_equal(cynic_bulkhead_snapshot(NULL, &s), CYNIC_EINVAL);
  cynic_bulkhead_free(b);
}

static void test_deadline_gives_up_and_frees_the_place(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(1, 1);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  uint64_t t0 = mono();
  assert_int_equal(cynic_bulkhead_enter_wait(b, CYNIC_MS(50)), CYNIC_EDEADLINE);
  uint64_t waited = mono() - t0;
  assert_true(waited >= CYNIC_MS(50)); /* never gives up early */
  cynic_bulkhead_snapshot_t s;
  cynic_bulkhead_snapshot(b, &s);
  assert_int_equal(s.pending, 0);      /* the place went back */
  assert_int_equal(s.timed_out, 1);
  assert_int_equal(s.rejected, 1);     /* one clear total */
  assert_int_equal(s.rejected_full, 0);
  cynic_bulkhead_leave(b);
  cynic_bulkhead_free(b);
}

typedef struct arrival {
  cynic_bulkhead_t *b;
  int id;
  int rc;
  _Atomic int *order;     /* where the next id to get a slot is written */
  int *served;            /* ids in the order they got their slot */
} arrival_t;

static void *arrive(void *arg) {
  arrival_t *a = arg;
  a->rc = cynic_bulkhead_enter_wait(a->b, CYNIC_SEC(30));
  if (a->rc == 0) {
    a->served[atomic_fetch_add(a->order, 1)] = a->id;
    cynic_bulkhead_leave(a->b); /* hands the slot to the next in line */
  }
  return NULL;
}

/* Waiters queue in a known order (each starts once the previous is pending);
 * one leave() then serves them all, one after the other, in that order. */
static void test_waiters_are_served_in_arrival_order(void **state) {
  (void)state;
  enum { N = 6 };
  cynic_bulkhead_t *b = make(1, N);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  pthread_t th[N];
  arrival_t a[N];
  _Atomic int order = 0;
  int served[N] = {0};
  for (int i = 0; i < N; i++) {
    a[i] = (arrival_t){b, i, -1, &order, served};
    assert_int_equal(pthread_create(&th[i], NULL, arrive, &a[i]), 0);
    wait_pending(b, (uint32_t)i + 1);
  }
  /* Fair: a newcomer does not take the slot ahead of them, and the queue is
   * bounded: one more waiter is refused at once. */
  assert_int_equal(cynic_bulkhead_try_enter(b), CYNIC_EFULL);
  assert_int_equal(cynic_bulkhead_enter_wait(b, CYNIC_SEC(30)), CYNIC_EFULL);
  cynic_bulkhead_leave(b);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(a[i].rc, 0);
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(served[i], i);
  cynic_bulkhead_snapshot_t s;
  cynic_bulkhead_snapshot(b, &s);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.promoted, N);
  assert_int_equal(s.queue_rejected, 1);
  cynic_bulkhead_free(b);
}

/* Both forms share one queue: a loop's parked waiter and a blocked thread are
 * both pending; the loop's waiter giving up leaves the thread waiting, and the
 * next leave() serves it. */
static void test_loop_waiters_and_threads_share_the_queue(void **state) {
  (void)state;
  cynic_bulkhead_t *b = make(1, 4);
  assert_int_equal(cynic_bulkhead_try_enter(b), 0);
  assert_int_equal(cynic_bulkhead_queue(b), 0); /* a loop's parked waiter */
  _Atomic int order = 0;
  int served[1] = {-1};
  arrival_t a = {b, 7, -1, &order, served};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, arrive, &a), 0);
  wait_pending(b, 2);
  cynic_bulkhead_dequeue(b); /* the loop's waiter times out */
  wait_pending(b, 1);        /* the thread still waits: no slot is free */
  cynic_bulkhead_leave(b);
  pthread_join(th, NULL);
  assert_int_equal(a.rc, 0);
  assert_int_equal(served[0], 7);
  cynic_bulkhead_snapshot_t s;
  cynic_bulkhead_snapshot(b, &s);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.pending, 0);
  cynic_bulkhead_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_free_slot_is_taken_at_once),
      cmocka_unit_test(test_deadline_gives_up_and_frees_the_place),
      cmocka_unit_test(test_waiters_are_served_in_arrival_order),
      cmocka_unit_test(test_loop_waiters_and_threads_share_the_queue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
