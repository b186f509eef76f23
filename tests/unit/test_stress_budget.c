/* tests/unit/test_stress_budget.c: one retry budget shared by 4 threads.
 *
 * Run under ThreadSanitizer too (label "concurrency"). Iteration counts are
 * bounded so the test takes well under a few seconds even there. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>

#include "cynic/budget.h"
#include "fake_clock.h"

enum { THREADS = 4, ITERS = 100000 };

typedef struct worker {
  cynic_budget_t *b;
  fake_clock_t *fc; /* advanced by worker 0 when `tick` is set */
  int id;
  uint64_t tick;     /* ns to advance the clock every 64 iterations */
  uint64_t deposits; /* made by this worker */
  uint64_t granted;  /* withdrawals granted to this worker */
  uint64_t refused;  /* withdrawals refused */
  int bad_errors;    /* any answer other than 0 / CYNIC_EBUDGET */
} worker_t;

static _Atomic int started; /* workers wait for each other to maximise overlap */

static void *run(void *arg) {
  worker_t *w = arg;
  atomic_fetch_add(&started, 1);
  while (atomic_load(&started) < THREADS)
    ; /* bounded: every worker arrives */
  for (int i = 0; i < ITERS; i++) {
    /* Mixed load: every worker deposits and withdraws, in different
     * proportions, so deposits race withdrawals and withdrawals race each
     * other. */
    if ((i + w->id) % 3 != 0) {
      cynic_budget_deposit(w->b);
      w->deposits++;
    } else {
      int err = cynic_budget_withdraw(w->b);
      if (err == 0)
        w->granted++;
      else if (err == CYNIC_EBUDGET)
        w->refused++;
      else
        w->bad_errors++;
    }
    if (w->tick != 0 && w->id == 0 && i % 64 == 0)
      fake_clock_advance(w->fc, w->tick);
  }
  return NULL;
}

static void run_workers(cynic_budget_t *b, fake_clock_t *fc, uint64_t tick, worker_t *ws) {
  pthread_t th[THREADS];
  atomic_store(&started, 0);
  for (int i = 0; i < THREADS; i++) {
    memset(&ws[i], 0, sizeof(ws[i]));
    ws[i].b = b;
    ws[i].fc = fc;
    ws[i].id = i;
    ws[i].tick = tick;
    assert_int_equal(pthread_create(&th[i], NULL, run, &ws[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
}

static cynic_budget_t *make(fake_clock_t *fc) {
  cynic_budget_config_t cfg;
  cynic_budget_config_default(&cfg); /* 10 s, 20 %, 10/s: reserve 100 */
  cfg.clock = fake_clock_bind(fc);
  cynic_budget_t *b = NULL;
  assert_int_equal(cynic_budget_new(&cfg, &b), 0);
  return b;
}

/* Frozen clock: everything happens in one window, so the bound is exact. */
static void test_concurrent_grants_never_exceed_bound(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(1000));
  cynic_budget_t *b = make(&fc);
  worker_t ws[THREADS];
  run_workers(b, &fc, 0, ws);

  uint64_t deps = 0, granted = 0, refused = 0;
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(ws[i].bad_errors, 0);
    deps += ws[i].deposits;
    granted += ws[i].granted;
    refused += ws[i].refused;
  }
  const uint64_t bound = deps * 20 / 100 + 100;
  assert_true(granted <= bound);
  assert_true(refused > 0); /* the budget was actually contended */

  /* No deposit or withdrawal was lost: the counters agree exactly, and the
   * rest of the budget, spent alone, makes up the bound to the unit. */
  cynic_budget_snapshot_t s;
  cynic_budget_snapshot(b, &s);
  assert_int_equal(s.total_deposits, deps);
  assert_int_equal(s.deposits_in_window, deps);
  assert_int_equal(s.total_withdrawals, granted);
  assert_int_equal(s.withdrawals_in_window, granted);
  assert_int_equal(s.total_exhausted, refused);
  assert_int_equal(s.balance, bound - granted);
  uint64_t rest = 0;
  while (rest <= bound && cynic_budget_withdraw(b) == 0)
    rest++;
  assert_int_equal(granted + rest, bound);
  cynic_budget_free(b);
}

/* Moving clock: slots rotate under the threads' feet. */
static void test_concurrent_with_rotating_slots(void **state) {
  (void)state;
  fake_clock_t fc = {0};
  fake_clock_set(&fc, CYNIC_SEC(1000));
  cynic_budget_t *b = make(&fc);
  worker_t ws[THREADS];
  /* 100000 / 64 ticks of 10 ms: about 15.6 s, one and a half windows. */
  run_workers(b, &fc, CYNIC_MS(10), ws);

  uint64_t deps = 0, granted = 0, refused = 0;
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(ws[i].bad_errors, 0);
    deps += ws[i].deposits;
    granted += ws[i].granted;
    refused += ws[i].refused;
  }
  cynic_budget_snapshot_t s;
  cynic_budget_snapshot(b, &s);
  assert_int_equal(s.total_deposits, deps);
  assert_int_equal(s.total_withdrawals, granted);
  assert_int_equal(s.total_exhausted, refused);
  /* The run spans at most 2 windows (and their predecessors): each grant was
   * within 20 % of deposits of at most two windows plus one reserve each. */
  uint64_t elapsed = fake_clock_read(&fc) - CYNIC_SEC(1000);
  uint64_t windows = elapsed / CYNIC_SEC(10) + 2;
  assert_true(granted <= 2 * deps * 20 / 100 + windows * 100);
  /* A snapshot is consistent with itself. */
  assert_true(s.deposits_in_window <= deps);
  assert_true(s.withdrawals_in_window <= granted);
  if (s.balance > 0)
    assert_int_equal(s.balance + s.withdrawals_in_window,
                     s.deposits_in_window * 20 / 100 + s.reserve);
  cynic_budget_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_grants_never_exceed_bound),
      cmocka_unit_test(test_concurrent_with_rotating_slots),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
