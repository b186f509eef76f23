/*
 * tests/unit/test_breaker_defaults.c: the default breaker config at realistic
 * traffic on a fake clock: healthy busy traffic never trips it, a failing
 * dependency does within a bounded time, and quiet traffic is still guarded
 * by the bucket. Each scenario also runs the bucket alone on the same calls,
 * to show what the default protects against.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/breaker.h"
#include "fake_clock.h"

static fake_clock_t fc;
static uint64_t rng;

/* xorshift64: a fixed seed gives the same "random" errors on every run. */
static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* true with probability per_million / 1e6 */
static bool chance(uint32_t per_million) {
  return next_random() % 1000000u < per_million;
}

typedef struct trips {
  unsigned opened;
  uint64_t first_at; /* clock time of the first trip; 0 before any */
  cynic_breaker_reason_t first_reason;
} trips_t;

static void count_trip(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                       cynic_breaker_reason_t reason, uint64_t at) {
  (void)from;
  trips_t *t = arg;
  if (to != CYNIC_BREAKER_OPEN)
    return;
  if (t->opened++ == 0) {
    t->first_at = at;
    t->first_reason = reason;
  }
}

#define T0 CYNIC_SEC(1000)

/* A breaker from `cfg` on the fake clock, counting its trips in `t`. */
static cynic_breaker_t *make(cynic_breaker_config_t *cfg, trips_t *t) {
  cfg->clock = fake_clock_bind(&fc);
  cfg->on_transition = count_trip;
  cfg->on_transition_arg = t;
  memset(t, 0, sizeof(*t));
  cynic_breaker_t *b = NULL;
  assert_int_equal(cynic_breaker_new(cfg, &b), 0);
  return b;
}

static cynic_breaker_t *make_default(trips_t *t) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  return make(&cfg, t);
}

/* The default's bucket judging everything, window off: the old default. */
static cynic_breaker_t *make_bucket_only(trips_t *t, uint32_t faults, uint64_t leak_ns) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  cfg.faults = faults;
  cfg.leak_ns = leak_ns;
  return make(&cfg, t);
}

/* One call at the current time; returns false when it failed fast. */
static bool call(cynic_breaker_t *b, bool fails) {
  cynic_breaker_permit_t p;
  if (cynic_breaker_acquire(b, &p, NULL) != 0)
    return false;
  assert_int_equal(
      cynic_breaker_record(b, &p, fails ? CYNIC_OUTCOME_FAILURE : CYNIC_OUTCOME_SUCCESS, 0), 0);
  return true;
}

/* `per_sec` calls a second for `seconds`, each failing with probability
 * `err_ppm` per million, spread evenly; the same calls go to both breakers. */
static void traffic(cynic_breaker_t *a, cynic_breaker_t *b, uint32_t per_sec, uint32_t seconds,
                    uint32_t err_ppm) {
  uint64_t step = CYNIC_SEC(1) / per_sec;
  for (uint64_t i = 0; i < (uint64_t)per_sec * seconds; i++) {
    fake_clock_advance(&fc, step);
    bool fails = chance(err_ppm);
    call(a, fails);
    if (b != NULL)
      call(b, fails);
  }
}

static void start(uint64_t seed) {
  fake_clock_set(&fc, T0);
  rng = seed;
}

/* 1,000 calls/s with 0.1 % errors for 60 simulated seconds: the default never
 * trips; the bucket alone (5 faults, leak 10 s) trips within seconds. */
static void test_busy_healthy_never_trips(void **state) {
  (void)state;
  trips_t td, tb;
  start(0x1234567);
  cynic_breaker_t *d = make_default(&td);
  cynic_breaker_t *bucket = make_bucket_only(&tb, 5, CYNIC_SEC(10));
  traffic(d, bucket, 1000, 60, 1000);
  assert_int_equal(td.opened, 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(d, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.transitions, 0);
  assert_true(s.failures > 30); /* the errors were there: about 60 */
  assert_true(s.window_calls >= 4000);
  assert_true(s.failure_rate >= 0.0 && s.failure_rate < 1.0);
  assert_true(s.bucket_level == 0.0); /* busy traffic does not fill the bucket */
  assert_true(tb.opened > 0);
  assert_true(tb.first_at - T0 < CYNIC_SEC(20));
  print_message("1000/s at 0.1%%: default 0 trips; bucket alone %u trips, first after %.1f s\n",
                tb.opened, (double)(tb.first_at - T0) / 1e9);
  cynic_breaker_free(d);
  cynic_breaker_free(bucket);
}

/* 100 calls/s with 1 % errors: the default never trips; the issue's
 * `faults: 5, leak: 1s` trips over and over on the same calls. */
static void test_100_per_sec_1pct_never_trips(void **state) {
  (void)state;
  trips_t td, tb;
  start(0xabcdef);
  cynic_breaker_t *d = make_default(&td);
  cynic_breaker_t *bucket = make_bucket_only(&tb, 5, CYNIC_SEC(1));
  traffic(d, bucket, 100, 60, 10000);
  assert_int_equal(td.opened, 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(d, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_true(s.failures > 30); /* about 60 */
  assert_true(tb.opened > 0);
  print_message("100/s at 1%%: default 0 trips; faults 5 leak 1 s: %u trips in 60 s, first after "
                "%.1f s\n",
                tb.opened, (double)(tb.first_at - T0) / 1e9);
  cynic_breaker_free(d);
  cynic_breaker_free(bucket);
}

/* 50 % errors at 1,000 calls/s trips: from a cold start at once (the bucket
 * judges the first calls), after healthy traffic by the failure rate once
 * the 5 s window holds only failing seconds. 100 % errors trip in half that. */
static void test_busy_failing_trips_in_bounded_time(void **state) {
  (void)state;
  trips_t t;
  /* cold */
  start(1);
  cynic_breaker_t *d = make_default(&t);
  for (int i = 0; i < 1000 && t.opened == 0; i++) {
    fake_clock_advance(&fc, CYNIC_MS(1));
    call(d, i % 2 == 1);
  }
  assert_int_equal(t.opened, 1);
  assert_true(t.first_at - T0 <= CYNIC_MS(100));
  cynic_breaker_free(d);

  /* after 10 s healthy: every other call fails from t0 + 10 s on */
  static const struct {
    int every; /* 1 in `every` calls fails */
    uint64_t bound_ns;
  } cases[] = {{2, CYNIC_SEC(6)}, {1, CYNIC_SEC(3)}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    start(2);
    d = make_default(&t);
    traffic(d, NULL, 1000, 10, 0);
    uint64_t onset = fake_clock_read(&fc);
    for (int i = 0; i < 20000 && t.opened == 0; i++) {
      fake_clock_advance(&fc, CYNIC_MS(1));
      call(d, i % cases[c].every == cases[c].every - 1);
    }
    assert_int_equal(t.opened, 1);
    assert_int_equal(t.first_reason, CYNIC_BREAKER_REASON_FAILURE_RATE);
    assert_true(t.first_at - onset <= cases[c].bound_ns);
    print_message("1000/s at %d%% errors after healthy traffic: tripped after %.2f s\n",
                  100 / cases[c].every, (double)(t.first_at - onset) / 1e9);
    /* and it fails fast now */
    assert_false(call(d, true));
    cynic_breaker_free(d);
  }
}

/* A dependency called once a second is judged by the bucket: after a minute
 * of successes, five failures in a row trip it at the fifth; four do not. */
static void test_quiet_traffic_guarded_by_bucket(void **state) {
  (void)state;
  trips_t t;
  for (int run = 4; run <= 5; run++) {
    start(3);
    cynic_breaker_t *d = make_default(&t);
    traffic(d, NULL, 1, 60, 0);
    uint64_t first_fault = 0;
    for (int i = 0; i < run; i++) {
      fake_clock_advance(&fc, CYNIC_SEC(1));
      if (i == 0)
        first_fault = fake_clock_read(&fc);
      assert_true(call(d, true));
    }
    cynic_breaker_snapshot_t s;
    assert_int_equal(cynic_breaker_snapshot(d, &s), 0);
    if (run == 4) {
      assert_int_equal(t.opened, 0);
      assert_true(s.bucket_level == 4.0);
      assert_true(s.failure_rate == -1.0); /* the window holds too few calls to judge */
    } else {
      assert_int_equal(t.opened, 1);
      assert_int_equal(t.first_reason, CYNIC_BREAKER_REASON_FAULTS);
      assert_int_equal(t.first_at, first_fault + CYNIC_SEC(4));
      assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
    }
    cynic_breaker_free(d);
  }
}

/* The rule: the window judges once it holds min_calls and faults then skip
 * the bucket; when traffic falls quiet the bucket judges again. With
 * bucket_low_traffic_only false both judge, and the same burst trips it. */
static void test_bucket_judges_only_below_min_calls(void **state) {
  (void)state;
  for (int low_only = 0; low_only <= 1; low_only++) {
    trips_t t;
    start(4);
    cynic_breaker_config_t cfg;
    cynic_breaker_config_default(&cfg);
    cfg.bucket_low_traffic_only = low_only;
    cynic_breaker_t *b = make(&cfg, &t);
    traffic(b, NULL, 100, 3, 0);  /* 300 calls: the window judges */
    for (int i = 0; i < 5; i++) { /* a burst of 5 faults among 300 calls: 1.6 % */
      fake_clock_advance(&fc, CYNIC_MS(10));
      call(b, true);
    }
    cynic_breaker_snapshot_t s;
    assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
    if (!low_only) {
      assert_int_equal(t.opened, 1);
      assert_int_equal(t.first_reason, CYNIC_BREAKER_REASON_FAULTS);
      cynic_breaker_free(b);
      continue;
    }
    assert_int_equal(t.opened, 0);
    assert_true(s.bucket_level == 0.0);
    assert_true(s.window_calls >= 20);
    /* quiet now: 6 s without calls empties the 5 s window, then the bucket judges */
    fake_clock_advance(&fc, CYNIC_SEC(6));
    for (int i = 0; i < 4; i++) {
      fake_clock_advance(&fc, CYNIC_SEC(1));
      call(b, true);
    }
    assert_int_equal(t.opened, 0);
    assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
    assert_true(s.bucket_level == 4.0);
    fake_clock_advance(&fc, CYNIC_SEC(1));
    call(b, true);
    assert_int_equal(t.opened, 1);
    assert_int_equal(t.first_reason, CYNIC_BREAKER_REASON_FAULTS);
    cynic_breaker_free(b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_busy_healthy_never_trips),
      cmocka_unit_test(test_100_per_sec_1pct_never_trips),
      cmocka_unit_test(test_busy_failing_trips_in_bounded_time),
      cmocka_unit_test(test_quiet_traffic_guarded_by_bucket),
      cmocka_unit_test(test_bucket_judges_only_below_min_calls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
