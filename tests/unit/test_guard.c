/*
 * tests/unit/test_guard.c: the composed guard on a fake clock. Every outcome
 * path, the order of the components (what a refusal at each stage leaves
 * untouched), and the rule that a budget withdrawal is never made for a retry
 * the deadline would not let start.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/guard.h"
#include "fake_clock.h"

typedef struct world {
  fake_clock_t clock;
  cynic_tokens_t *tokens;
  cynic_budget_t *budget;
  cynic_bulkhead_t *bulkhead;
  cynic_breaker_t *breaker;
  cynic_guard_config_t cfg;
  cynic_guard_t *guard;
  /* the pretend dependency */
  int fails_left;      /* fail this many calls, then succeed */
  int fail_rc;         /* what a failure returns */
  uint64_t takes_ns;   /* each call moves the clock by this much */
  int calls;
  uint64_t last_timeout;
  bool trip_on_call;   /* trips the breaker inside the call */
} world_t;

static void fake_sleep(void *arg, uint64_t ns) {
  fake_clock_advance(&((world_t *)arg)->clock, ns);
}

static int dependency(void *arg, uint64_t timeout_ns) {
  world_t *w = arg;
  w->calls++;
  w->last_timeout = timeout_ns;
  fake_clock_advance(&w->clock, w->takes_ns);
  if (w->trip_on_call)
    cynic_breaker_trip(w->breaker);
  if (w->fails_left > 0) {
    w->fails_left--;
    return w->fail_rc;
  }
  return 0;
}

/* Every component on; the guard built by guard_up() after a test's tweaks. */
static world_t *world_new(void) {
  world_t *w = calloc(1, sizeof *w);
  fake_clock_set(&w->clock, CYNIC_SEC(1000));
  cynic_clock_t clk = fake_clock_bind(&w->clock);

  cynic_tokens_config_t tc;
  cynic_tokens_config_default(&tc);
  tc.clock = clk;
  tc.rate_per_sec = 1;
  tc.burst = 5;
  assert_int_equal(cynic_tokens_new(&tc, &w->tokens), 0);

  cynic_budget_config_t bc;
  cynic_budget_config_default(&bc);
  bc.clock = clk;
  assert_int_equal(cynic_budget_new(&bc, &w->budget), 0);

  cynic_bulkhead_config_t hc;
  cynic_bulkhead_config_default(&hc);
  hc.max_concurrent = 1;
  hc.max_pending = 0;
  assert_int_equal(cynic_bulkhead_new(&hc, &w->bulkhead), 0);

  cynic_breaker_config_t kc;
  cynic_breaker_config_default(&kc);
  kc.clock = clk;
  kc.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* the bucket alone */
  kc.faults = 100;
  assert_int_equal(cynic_breaker_new(&kc, &w->breaker), 0);

  cynic_guard_config_default(&w->cfg);
  w->cfg.clock = clk;
  w->cfg.tokens = w->tokens;
  w->cfg.budget = w->budget;
  w->cfg.bulkhead = w->bulkhead;
  w->cfg.breaker = w->breaker;
  w->cfg.timeout_ns = CYNIC_SEC(10);
  w->cfg.max_attempts = 3;
  w->cfg.backoff.kind = CYNIC_BACKOFF_EXPONENTIAL; /* exact delays */
  w->cfg.backoff.base_ns = CYNIC_MS(100);
  w->cfg.backoff.cap_ns = CYNIC_SEC(1);
  w->cfg.sleep = fake_sleep;
  w->cfg.sleep_arg = w;
  w->fail_rc = -5;
  return w;
}

static void guard_up(world_t *w) { assert_int_equal(cynic_guard_new(&w->cfg, &w->guard), 0); }

static void world_free(world_t *w) {
  cynic_bulkhead_snapshot_t hs;
  cynic_bulkhead_snapshot(w->bulkhead, &hs);
  assert_int_equal(hs.in_use, 0); /* no path leaks a slot */
  assert_int_equal(hs.misuse, 0);
  cynic_guard_free(w->guard);
  cynic_breaker_free(w->breaker);
  cynic_bulkhead_free(w->bulkhead);
  cynic_budget_free(w->budget);
  cynic_tokens_free(w->tokens);
  free(w);
}

static cynic_budget_snapshot_t budget_of(world_t *w) {
  cynic_budget_snapshot_t s;
  cynic_budget_snapshot(w->budget, &s);
  return s;
}

static cynic_breaker_snapshot_t breaker_of(world_t *w) {
  cynic_breaker_snapshot_t s;
  cynic_breaker_snapshot(w->breaker, &s);
  return s;
}

static int run(world_t *w, cynic_guard_call_t *c) {
  return cynic_guard_call(w->guard, NULL, 0, cynic_deadline_none(), dependency, w, c);
}

static void test_success_touches_each_component_once(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), 0);
  assert_int_equal(c.attempts, 1);
  assert_int_equal(c.retries, 0);
  assert_int_equal(w->last_timeout, CYNIC_SEC(10)); /* the whole timeout */
  assert_int_equal(budget_of(w).total_deposits, 1);
  assert_int_equal(breaker_of(w).successes, 1);
  cynic_bulkhead_snapshot_t hs;
  cynic_bulkhead_snapshot(w->bulkhead, &hs);
  assert_int_equal(hs.entered, 1);
  assert_int_equal(hs.left, 1);
  world_free(w);
}

static void test_retry_reenters_bulkhead_after_backoff(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  w->fails_left = 2;
  w->takes_ns = CYNIC_MS(10);
  cynic_guard_call_t c;
  uint64_t t0 = fake_clock_read(&w->clock);
  assert_int_equal(run(w, &c), 0);
  assert_int_equal(c.attempts, 3);
  assert_int_equal(c.retries, 2);
  /* 3 calls of 10 ms and backoffs of 100 and 200 ms. */
  assert_int_equal(fake_clock_read(&w->clock) - t0, CYNIC_MS(330));
  assert_int_equal(budget_of(w).total_deposits, 1); /* retries earn nothing */
  assert_int_equal(budget_of(w).total_withdrawals, 2);
  cynic_breaker_snapshot_t bs = breaker_of(w);
  assert_int_equal(bs.failures, 2);
  assert_int_equal(bs.successes, 1);
  cynic_bulkhead_snapshot_t hs;
  cynic_bulkhead_snapshot(w->bulkhead, &hs);
  assert_int_equal(hs.entered, 3); /* each attempt re-enters */
  world_free(w);
}

static void test_rate_limit_comes_first(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  for (int i = 0; i < 5; i++)
    assert_int_equal(run(w, NULL), 0);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_ELIMITED);
  assert_int_equal(c.stop, CYNIC_ELIMITED);
  assert_int_equal(c.retry_after_ns, CYNIC_SEC(1));
  assert_int_equal(c.attempts, 0);
  assert_int_equal(w->calls, 5);
  assert_int_equal(budget_of(w).total_deposits, 5); /* no deposit for it */
  assert_int_equal(breaker_of(w).successes, 5);
  world_free(w);
}

static void test_expired_deadline_costs_nothing(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  cynic_guard_call_t c;
  uint64_t now = fake_clock_read(&w->clock);
  assert_int_equal(cynic_guard_call(w->guard, NULL, 0, cynic_deadline_in(now, 0), dependency, w,
                                    &c),
                   CYNIC_EDEADLINE);
  assert_int_equal(c.attempts, 0);
  assert_int_equal(w->calls, 0);
  assert_int_equal(budget_of(w).total_deposits, 0);
  world_free(w);
}

/* The budget is not withdrawn for a retry whose backoff ends at or past the
 * deadline: the withdrawal could not be refunded. */
static void test_budget_never_withdrawn_past_deadline(void **state) {
  (void)state;
  world_t *w = world_new();
  w->cfg.timeout_ns = CYNIC_MS(150);
  guard_up(w);
  w->fails_left = 10;
  w->takes_ns = CYNIC_MS(30);
  cynic_guard_call_t c;
  /* t=30: fail, 120 left > 100 backoff: retry 1. t=160 > 150: the deadline
   * ends it. Second path: t=30+100+30=160 already past. */
  int rc = run(w, &c);
  assert_int_equal(rc, -5); /* the dependency's error */
  assert_int_equal(c.fn_rc, -5);
  assert_int_equal(c.stop, CYNIC_EDEADLINE);
  assert_int_equal(c.attempts, 2);
  assert_int_equal(budget_of(w).total_withdrawals, 1);

  /* Exactly at the edge: 100 ms left and a 100 ms backoff: no withdrawal. */
  w->cfg.timeout_ns = CYNIC_MS(130);
  cynic_guard_free(w->guard);
  guard_up(w);
  rc = run(w, &c);
  assert_int_equal(rc, -5);
  assert_int_equal(c.stop, CYNIC_EDEADLINE);
  assert_int_equal(c.attempts, 1);
  assert_int_equal(c.retries, 0);
  assert_int_equal(budget_of(w).total_withdrawals, 1); /* unchanged */
  world_free(w);
}

static void test_budget_exhausted_returns_dependency_error(void **state) {
  (void)state;
  world_t *w = world_new();
  cynic_budget_free(w->budget);
  cynic_budget_config_t bc;
  cynic_budget_config_default(&bc);
  bc.clock = fake_clock_bind(&w->clock);
  bc.retry_percent = 0;
  bc.min_retries_per_sec = 0;
  assert_int_equal(cynic_budget_new(&bc, &w->budget), 0);
  w->cfg.budget = w->budget;
  guard_up(w);
  w->fails_left = 10;
  w->fail_rc = 7; /* positive: becomes CYNIC_EDEPENDENCY */
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_EDEPENDENCY);
  assert_int_equal(c.stop, CYNIC_EBUDGET);
  assert_int_equal(c.attempts, 1);
  assert_int_equal(budget_of(w).total_exhausted, 1);
  world_free(w);
}

static void test_attempts_run_out(void **state) {
  (void)state;
  world_t *w = world_new();
  w->cfg.max_attempts = 2;
  guard_up(w);
  w->fails_left = 10;
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), -5);
  assert_int_equal(c.stop, CYNIC_EDEPENDENCY);
  assert_int_equal(c.attempts, 2);
  assert_int_equal(c.retries, 1);
  world_free(w);
}

static void test_full_bulkhead_ends_the_call_before_the_breaker(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  assert_int_equal(cynic_bulkhead_try_enter(w->bulkhead), 0); /* someone else */
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_EFULL);
  assert_int_equal(c.attempts, 0);
  cynic_breaker_snapshot_t bs = breaker_of(w);
  assert_int_equal(bs.rejected + bs.successes + bs.failures + bs.abandoned, 0);
  assert_int_equal(budget_of(w).total_deposits, 1);
  cynic_bulkhead_leave(w->bulkhead);
  world_free(w);
}

/* Holds the only slot until the guard's caller blocks for it, moves the fake
 * clock by `wait_ns` (the time the caller spent waiting), then leaves. */
typedef struct holder {
  world_t *w;
  uint64_t wait_ns;
} holder_t;

static void *hold_then_leave(void *arg) {
  holder_t *h = arg;
  cynic_bulkhead_snapshot_t s;
  do {
    sched_yield();
    cynic_bulkhead_snapshot(h->w->bulkhead, &s);
  } while (s.pending == 0);
  fake_clock_advance(&h->w->clock, h->wait_ns);
  cynic_bulkhead_leave(h->w->bulkhead);
  return NULL;
}

/* A bulkhead with a queue, and a breaker that calls 1 s slow, for the wait. */
static void world_for_wait(world_t *w) {
  cynic_bulkhead_free(w->bulkhead);
  cynic_bulkhead_config_t hc;
  cynic_bulkhead_config_default(&hc);
  hc.max_concurrent = 1;
  hc.max_pending = 1;
  assert_int_equal(cynic_bulkhead_new(&hc, &w->bulkhead), 0);
  cynic_breaker_free(w->breaker);
  cynic_breaker_config_t kc;
  cynic_breaker_config_default(&kc);
  kc.clock = fake_clock_bind(&w->clock);
  kc.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  kc.faults = 100;
  kc.slow_call_ns = CYNIC_SEC(1);
  assert_int_equal(cynic_breaker_new(&kc, &w->breaker), 0);
  w->cfg.bulkhead = w->bulkhead;
  w->cfg.breaker = w->breaker;
  w->cfg.bulkhead_wait_ns = CYNIC_SEC(30); /* real time; the holder leaves at once */
}

/* The time spent waiting for a slot is the call's: the attempt gets what is
 * left of the deadline after the wait, and the breaker is given the
 * dependency's duration, not the queue's. */
static void test_bulkhead_wait_counts_against_the_deadline(void **state) {
  (void)state;
  world_t *w = world_new();
  world_for_wait(w);
  guard_up(w);
  assert_int_equal(cynic_bulkhead_try_enter(w->bulkhead), 0); /* someone else */
  holder_t h = {w, CYNIC_SEC(3)};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hold_then_leave, &h), 0);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), 0);
  pthread_join(th, NULL);
  assert_int_equal(w->calls, 1);
  assert_int_equal(w->last_timeout, CYNIC_SEC(10) - CYNIC_SEC(3));
  cynic_breaker_snapshot_t bs = breaker_of(w);
  assert_int_equal(bs.successes, 1);
  assert_int_equal(bs.slow, 0);
  world_free(w);
}

/* A slot that comes after the deadline is given back unused. */
static void test_bulkhead_wait_past_the_deadline_makes_no_call(void **state) {
  (void)state;
  world_t *w = world_new();
  world_for_wait(w);
  guard_up(w);
  assert_int_equal(cynic_bulkhead_try_enter(w->bulkhead), 0);
  holder_t h = {w, CYNIC_SEC(11)};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hold_then_leave, &h), 0);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_EDEADLINE);
  pthread_join(th, NULL);
  assert_int_equal(w->calls, 0);
  assert_int_equal(c.attempts, 0);
  cynic_breaker_snapshot_t bs = breaker_of(w);
  assert_int_equal(bs.rejected + bs.successes + bs.failures + bs.abandoned, 0);
  world_free(w); /* asserts in_use == 0: the slot was given back */
}

static void test_open_breaker_gives_the_slot_back(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  cynic_breaker_trip(w->breaker);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_EOPEN);
  assert_int_equal(c.retry_after_ns, UINT64_MAX);
  assert_int_equal(c.attempts, 0);
  world_free(w); /* asserts in_use == 0 */
}

static void test_breaker_opening_between_attempts_stops_retries(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  w->fails_left = 10;
  w->trip_on_call = true;
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), -5);
  assert_int_equal(c.stop, CYNIC_EOPEN);
  assert_int_equal(c.attempts, 1);
  assert_int_equal(c.retries, 1); /* granted, then refused by the breaker */
  world_free(w);
}

static void test_step_form(void **state) {
  (void)state;
  world_t *w = world_new();
  guard_up(w);
  cynic_guard_call_t c;
  uint64_t ns = 1;
  cynic_guard_call_init(&c, NULL, 0, cynic_deadline_none());
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_RUN);
  assert_int_equal(ns, CYNIC_SEC(10));
  assert_int_equal(cynic_guard_report(w->guard, &c, CYNIC_EDEPENDENCY), 0);
  assert_int_equal(cynic_guard_report(w->guard, &c, 0), CYNIC_ESTATE); /* only once */
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_WAIT);
  assert_int_equal(ns, CYNIC_MS(100));
  fake_clock_advance(&w->clock, ns);
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_RUN);
  assert_int_equal(ns, CYNIC_SEC(10) - CYNIC_MS(100));
  assert_int_equal(cynic_guard_report(w->guard, &c, 0), 0);
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_DONE);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.attempts, 2);
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_DONE); /* stays done */

  /* A step without the report: the slot and the permit go back. */
  cynic_guard_call_init(&c, NULL, 0, cynic_deadline_none());
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_RUN);
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_DONE);
  assert_int_equal(c.rc, CYNIC_ESTATE);

  /* Abandoned while running. */
  cynic_guard_call_init(&c, NULL, 0, cynic_deadline_none());
  assert_int_equal(cynic_guard_step(w->guard, &c, &ns), CYNIC_GUARD_RUN);
  cynic_guard_abandon(w->guard, &c);
  assert_int_equal(c.rc, CYNIC_ESTATE);
  assert_int_equal(breaker_of(w).abandoned, 2);
  world_free(w);
}

static void test_rate_table_needs_a_key(void **state) {
  (void)state;
  world_t *w = world_new();
  cynic_ratetable_config_t rc;
  cynic_ratetable_config_default(&rc);
  rc.clock = fake_clock_bind(&w->clock);
  rc.rate_per_sec = 1;
  rc.burst = 1;
  cynic_ratetable_t *t;
  assert_int_equal(cynic_ratetable_new(&rc, &t), 0);
  w->cfg.ratetable = t;
  assert_int_equal(cynic_guard_new(&w->cfg, &w->guard), CYNIC_EINVAL); /* both */
  w->cfg.tokens = NULL;
  guard_up(w);
  cynic_guard_call_t c;
  assert_int_equal(run(w, &c), CYNIC_EINVAL);
  assert_int_equal(cynic_guard_call(w->guard, "ann", 3, cynic_deadline_none(), dependency, w, &c),
                   0);
  assert_int_equal(cynic_guard_call(w->guard, "ann", 3, cynic_deadline_none(), dependency, w, &c),
                   CYNIC_ELIMITED);
  assert_int_equal(cynic_guard_call(w->guard, "bob", 3, cynic_deadline_none(), dependency, w, &c),
                   0);
  assert_int_equal(cynic_guard_call(NULL, "bob", 3, cynic_deadline_none(), dependency, w, &c),
                   CYNIC_EINVAL);
  world_free(w);
  cynic_ratetable_free(t);
}

static void test_config_validation(void **state) {
  (void)state;
  cynic_guard_config_t cfg;
  cynic_guard_config_default(&cfg);
  cynic_guard_t *g = NULL;
  assert_int_equal(cynic_guard_new(NULL, &g), CYNIC_EINVAL);
  cfg.max_attempts = 0;
  assert_int_equal(cynic_guard_new(&cfg, &g), CYNIC_EINVAL);
  cfg.max_attempts = CYNIC_GUARD_MAX_ATTEMPTS + 1;
  assert_int_equal(cynic_guard_new(&cfg, &g), CYNIC_EINVAL);
  cfg.max_attempts = 2;
  cfg.backoff.base_ns = 0;
  assert_int_equal(cynic_guard_new(&cfg, &g), CYNIC_EINVAL);
  cfg.max_attempts = 1; /* no retries: the backoff is not used */
  assert_int_equal(cynic_guard_new(&cfg, &g), 0);
  cynic_guard_free(g);
  assert_string_equal(cynic_strerror(CYNIC_EDEPENDENCY), "the dependency failed");
  assert_string_equal(cynic_err_name(CYNIC_EDEPENDENCY), "EDEPENDENCY");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_success_touches_each_component_once),
      cmocka_unit_test(test_retry_reenters_bulkhead_after_backoff),
      cmocka_unit_test(test_rate_limit_comes_first),
      cmocka_unit_test(test_expired_deadline_costs_nothing),
      cmocka_unit_test(test_budget_never_withdrawn_past_deadline),
      cmocka_unit_test(test_budget_exhausted_returns_dependency_error),
      cmocka_unit_test(test_attempts_run_out),
      cmocka_unit_test(test_full_bulkhead_ends_the_call_before_the_breaker),
      cmocka_unit_test(test_bulkhead_wait_counts_against_the_deadline),
      cmocka_unit_test(test_bulkhead_wait_past_the_deadline_makes_no_call),
      cmocka_unit_test(test_open_breaker_gives_the_slot_back),
      cmocka_unit_test(test_breaker_opening_between_attempts_stops_retries),
      cmocka_unit_test(test_step_form),
      cmocka_unit_test(test_rate_table_needs_a_key),
      cmocka_unit_test(test_config_validation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
