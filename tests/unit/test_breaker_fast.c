/*
 * tests/unit/test_breaker_fast.c: the TIME window's lock-free successes
 * (lib/breaker.c: fast_arm, fast_success, fast_fold) on a fake clock. The
 * file includes breaker.c to see the armed word: which successes went
 * lock-free, which took the mutex, and that every one is counted once, in
 * its second, in its generation. The verdicts are the ones a success taken
 * under the mutex would give (a success can trip the breaker when it brings
 * the window to min_calls at a high failure rate, also after a rotation
 * dropped old successes).
 */
#include "breaker.c" /* first: it sets _POSIX_C_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_clock.h"

#define T0 CYNIC_SEC(1000)

static fake_clock_t fc;
static unsigned clock_reads;
static unsigned trips;
static cynic_breaker_reason_t trip_reason;

static uint64_t counting_clock(void *arg) {
  clock_reads++;
  return fake_clock_read(arg);
}

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at) {
  (void)arg;
  (void)from;
  (void)at;
  if (to == CYNIC_BREAKER_OPEN) {
    trips++;
    trip_reason = reason;
  }
}

/* A TIME window of `size` s judging a 50 % failure rate from 10 calls, no bucket. */
static cynic_breaker_t *make(uint32_t size) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.faults = 0;
  cfg.window.size = size;
  cfg.window.min_calls = 10;
  cfg.window.failure_rate = 50.0;
  cfg.clock.now = counting_clock;
  cfg.clock.arg = &fc;
  cfg.on_transition = on_transition;
  fake_clock_set(&fc, T0);
  clock_reads = 0;
  trips = 0;
  trip_reason = CYNIC_BREAKER_REASON_NONE;
  cynic_breaker_t *b = NULL;
  assert_int_equal(cynic_breaker_new(&cfg, &b), 0);
  return b;
}

static void call(cynic_breaker_t *b, cynic_breaker_outcome_t outcome) {
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, outcome, 0), 0);
}

static uint32_t fast_count(const cynic_breaker_t *b) {
  return (uint32_t)(atomic_load(&b->fast) & FAST_MAX);
}

static bool fast_armed(const cynic_breaker_t *b) {
  return (atomic_load(&b->fast) >> FAST_BITS) != 0;
}

static uint32_t window_calls(const cynic_breaker_t *b) {
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  return s.window_calls;
}

/* Within one second: the first success arms the word under the mutex, the
 * next ones only count in it; a snapshot sees them without folding; a failure
 * folds them into the second's bucket and re-arms. */
static void test_successes_lock_free_within_a_second(void **state) {
  (void)state;
  cynic_breaker_t *b = make(2);
  assert_false(fast_armed(b));
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_true(fast_armed(b));
  assert_int_equal(atomic_load(&b->fast_sec), T0 / CYNIC_SEC(1));
  assert_int_equal(fast_count(b), 0);
  for (int i = 0; i < 99; i++)
    call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(fast_count(b), 99);
  assert_int_equal(b->w_calls, 1); /* the locked counts did not move */
  assert_int_equal(window_calls(b), 100);
  assert_int_equal(fast_count(b), 99); /* the snapshot changed nothing */
  call(b, CYNIC_OUTCOME_FAILURE);
  assert_int_equal(b->w_calls, 101);
  assert_int_equal(b->w_failures, 1);
  assert_int_equal(fast_count(b), 0);
  assert_true(fast_armed(b));
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.successes, 100);
  assert_int_equal(s.failures, 1);
  assert_int_equal(s.window_calls, 101);
  cynic_breaker_free(b);
}

/* A new second: the first success finds the word armed for the old one, takes
 * the mutex, folds the old count into the old second and rotates; the old
 * second then leaves the window on time. */
static void test_new_second_rotates_under_mutex(void **state) {
  (void)state;
  cynic_breaker_t *b = make(2);
  for (int i = 0; i < 10; i++)
    call(b, CYNIC_OUTCOME_SUCCESS); /* 1 locked + 9 lock-free in second 1000 */
  assert_int_equal(fast_count(b), 9);
  fake_clock_advance(&fc, CYNIC_SEC(1)); /* second 1001 */
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(atomic_load(&b->fast_sec), 1001);
  assert_int_equal(fast_count(b), 0);
  assert_int_equal(b->tb[1000 % 2].calls, 10);
  assert_int_equal(b->tb[1000 % 2].sec, 1000);
  assert_int_equal(b->tb[1001 % 2].calls, 1);
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(fast_count(b), 1);
  assert_int_equal(window_calls(b), 12);
  fake_clock_advance(&fc, CYNIC_SEC(1)); /* 1002: second 1000 is out */
  assert_int_equal(window_calls(b), 2);
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(window_calls(b), 3);
  assert_int_equal(b->tb[1002 % 2].calls, 1); /* the reused bucket starts afresh */
  fake_clock_advance(&fc, CYNIC_SEC(2)); /* 1004: all out */
  assert_int_equal(window_calls(b), 0);
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(window_calls(b), 1);
  assert_int_equal(trips, 0);
  cynic_breaker_free(b);
}

/* While further successes could trip the breaker (below min_calls at a high
 * failure rate), the word stays disarmed and each success is judged under the
 * mutex: the one that brings the window to min_calls at 50 % trips it. */
static void test_success_reaching_min_calls_trips(void **state) {
  (void)state;
  cynic_breaker_t *b = make(5);
  for (int i = 0; i < 5; i++)
    call(b, CYNIC_OUTCOME_FAILURE);
  assert_false(fast_armed(b)); /* 5 failures of 10 calls would be 50 % */
  for (int i = 0; i < 4; i++) {
    call(b, CYNIC_OUTCOME_SUCCESS);
    assert_false(fast_armed(b));
    assert_int_equal(trips, 0);
  }
  call(b, CYNIC_OUTCOME_SUCCESS); /* the 10th call: 5 of 10 failed */
  assert_int_equal(trips, 1);
  assert_int_equal(trip_reason, CYNIC_BREAKER_REASON_FAILURE_RATE);
  cynic_breaker_free(b);

  /* 4 failures: 4 of 10 stays under 50 %, so successes are safe at once. */
  b = make(5);
  for (int i = 0; i < 4; i++)
    call(b, CYNIC_OUTCOME_FAILURE);
  assert_true(fast_armed(b));
  for (int i = 0; i < 20; i++)
    call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(fast_count(b), 20);
  assert_int_equal(trips, 0);
  assert_int_equal(window_calls(b), 24);
  cynic_breaker_free(b);
}

/* A rotation that drops old successes raises the failure rate: the word is
 * re-judged at the new second, and the success that brings the window back
 * to min_calls trips it, as under the mutex. */
static void test_rotation_rejudges_successes(void **state) {
  (void)state;
  cynic_breaker_t *b = make(2);
  for (int i = 0; i < 10; i++)
    call(b, CYNIC_OUTCOME_SUCCESS); /* second 1000 */
  fake_clock_advance(&fc, CYNIC_SEC(1));
  for (int i = 0; i < 6; i++)
    call(b, CYNIC_OUTCOME_FAILURE); /* 1001: 6 of 16, 37.5 % */
  assert_int_equal(trips, 0);
  assert_true(fast_armed(b));
  fake_clock_advance(&fc, CYNIC_SEC(1)); /* 1002: 1000 out, 6 failures of 6 calls */
  for (int i = 0; i < 3; i++) {
    call(b, CYNIC_OUTCOME_SUCCESS);
    assert_false(fast_armed(b));
  }
  assert_int_equal(trips, 0);
  call(b, CYNIC_OUTCOME_SUCCESS); /* 10 calls, 6 failed: 60 % */
  assert_int_equal(trips, 1);
  assert_int_equal(trip_reason, CYNIC_BREAKER_REASON_FAILURE_RATE);
  cynic_breaker_free(b);
}

/* A permit from before a transition stays stale even once the new
 * generation's word is armed: its success counts in the totals only. */
static void test_stale_permit_not_counted_after_rearm(void **state) {
  (void)state;
  cynic_breaker_t *b = make(5);
  cynic_breaker_permit_t old, older;
  assert_int_equal(cynic_breaker_acquire(b, &old, NULL), 0);
  assert_int_equal(cynic_breaker_acquire(b, &older, NULL), 0);
  call(b, CYNIC_OUTCOME_SUCCESS); /* armed in generation 1 */
  assert_true(fast_armed(b));
  assert_int_equal(cynic_breaker_reset(b), 0); /* generation 2, disarmed */
  assert_false(fast_armed(b));
  /* before the new generation re-arms: the old word must not take it */
  assert_int_equal(cynic_breaker_record(b, &older, CYNIC_OUTCOME_SUCCESS, 0), 0);
  call(b, CYNIC_OUTCOME_SUCCESS); /* armed in generation 2 */
  assert_true(fast_armed(b));
  unsigned reads = clock_reads;
  assert_int_equal(cynic_breaker_record(b, &old, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(clock_reads, reads); /* a stale record reads no clock, as before */
  assert_int_equal(fast_count(b), 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 1);
  assert_int_equal(s.successes, 4);
  cynic_breaker_free(b);
}

/* One clock read per recorded success, lock-free or not (the locked path
 * reuses the fast path's reading). */
static void test_one_clock_read_per_success(void **state) {
  (void)state;
  cynic_breaker_t *b = make(5);
  call(b, CYNIC_OUTCOME_SUCCESS); /* locked: arms */
  assert_int_equal(clock_reads, 1);
  call(b, CYNIC_OUTCOME_SUCCESS); /* lock-free */
  assert_int_equal(clock_reads, 2);
  fake_clock_advance(&fc, CYNIC_SEC(1));
  call(b, CYNIC_OUTCOME_SUCCESS); /* armed for the old second: fast read, then locked */
  assert_int_equal(clock_reads, 3);
  cynic_breaker_free(b);
}

/* A full word (2^19 - 1 successes in one second) sends the next success under
 * the mutex, which folds it and re-arms: nothing lost at the cap. */
static void test_full_word_folds(void **state) {
  (void)state;
  cynic_breaker_t *b = make(5);
  uint32_t n = 1 + (uint32_t)FAST_MAX + 1 + 8;
  for (uint32_t i = 0; i < n; i++)
    call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(fast_count(b), 8);
  assert_int_equal(b->w_calls, 1 + FAST_MAX + 1);
  assert_int_equal(window_calls(b), n);
  cynic_breaker_free(b);
}

/* FORCED_CLOSED never trips, so successes stay lock-free at any failure rate. */
static void test_forced_closed_always_armed(void **state) {
  (void)state;
  cynic_breaker_t *b = make(5);
  assert_int_equal(cynic_breaker_force_closed(b), 0);
  for (int i = 0; i < 20; i++)
    call(b, CYNIC_OUTCOME_FAILURE);
  assert_true(fast_armed(b));
  call(b, CYNIC_OUTCOME_SUCCESS);
  assert_int_equal(fast_count(b), 1);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_FORCED_CLOSED);
  assert_int_equal(s.window_calls, 21);
  cynic_breaker_free(b);
}

/* On the default clock the window buckets by CLOCK_MONOTONIC_COARSE; the
 * successes still count, and the window's second is never ahead of
 * CLOCK_MONOTONIC's. */
static void test_default_clock_coarse_window(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cynic_breaker_t *b = NULL;
  assert_int_equal(cynic_breaker_new(&cfg, &b), 0);
  assert_true(b->coarse_window);
  /* Bracketed by CLOCK_MONOTONIC, so a thread descheduled between the reads
   * cannot fail it: the coarse clock lags by a tick, not a second. */
  uint64_t before_sec = cynic_clock_monotonic(NULL) / CYNIC_SEC(1);
  for (int i = 0; i < 3; i++)
    call(b, CYNIC_OUTCOME_SUCCESS);
  uint64_t after_sec = cynic_clock_monotonic(NULL) / CYNIC_SEC(1);
  assert_true(b->tb_head <= after_sec);
  assert_true(b->tb_head + 1 >= before_sec);
  assert_int_equal(window_calls(b), 3);
  cynic_breaker_free(b);

  cfg.clock = fake_clock_bind(&fc); /* an injected clock is used as it is */
  assert_int_equal(cynic_breaker_new(&cfg, &b), 0);
  assert_false(b->coarse_window);
  cynic_breaker_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_successes_lock_free_within_a_second),
      cmocka_unit_test(test_new_second_rotates_under_mutex),
      cmocka_unit_test(test_success_reaching_min_calls_trips),
      cmocka_unit_test(test_rotation_rejudges_successes),
      cmocka_unit_test(test_stale_permit_not_counted_after_rearm),
      cmocka_unit_test(test_one_clock_read_per_success),
      cmocka_unit_test(test_full_word_folds),
      cmocka_unit_test(test_forced_closed_always_armed),
      cmocka_unit_test(test_default_clock_coarse_window),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
