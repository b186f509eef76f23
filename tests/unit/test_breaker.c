/* tests/unit/test_breaker.c: the circuit breaker's state machine on a fake clock. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/breaker.h"
#include "fake_clock.h"

/* ---- fixtures ------------------------------------------------------------------ */

typedef struct event {
  cynic_breaker_state_t from, to;
  cynic_breaker_reason_t reason;
  uint64_t at;
} event_t;

#define MAX_EVENTS 64
static event_t events[MAX_EVENTS];
static int nevents;
static fake_clock_t fc;
static unsigned clock_reads;

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at) {
  (void)arg;
  assert_true(nevents < MAX_EVENTS);
  events[nevents++] = (event_t){from, to, reason, at};
}

static uint64_t counting_clock(void *arg) {
  clock_reads++;
  return fake_clock_read(arg);
}

#define T0 CYNIC_SEC(1000)

/* The bucket alone, as the book has it: these tests are about the state
 * machine and each configures the window it tests (test_breaker_defaults.c
 * covers the default config, window on). */
static void config(cynic_breaker_config_t *cfg) {
  cynic_breaker_config_default(cfg);
  cfg->window.kind = CYNIC_BREAKER_WINDOW_NONE;
  cfg->bucket_low_traffic_only = false;
  cfg->clock.now = counting_clock;
  cfg->clock.arg = &fc;
  cfg->on_transition = on_transition;
  nevents = 0;
  clock_reads = 0;
  fake_clock_set(&fc, T0);
}

static cynic_breaker_t *make(const cynic_breaker_config_t *cfg) {
  cynic_breaker_t *b = NULL;
  assert_int_equal(cynic_breaker_new(cfg, &b), 0);
  assert_non_null(b);
  return b;
}

static void expect_event(int i, cynic_breaker_state_t from, cynic_breaker_state_t to,
                         cynic_breaker_reason_t reason, uint64_t at) {
  assert_true(i < nevents);
  assert_int_equal(events[i].from, from);
  assert_int_equal(events[i].to, to);
  assert_int_equal(events[i].reason, reason);
  assert_int_equal(events[i].at, at);
}

static cynic_breaker_state_t state_of(const cynic_breaker_t *b) {
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  return s.state;
}

/* Acquires and records one call with the given outcome; asserts admission. */
static void call(cynic_breaker_t *b, cynic_breaker_outcome_t o, uint64_t duration) {
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, o, duration), 0);
}

static void expect_rejected(cynic_breaker_t *b, uint64_t retry) {
  cynic_breaker_permit_t p;
  uint64_t ra = 12345;
  assert_int_equal(cynic_breaker_acquire(b, &p, &ra), CYNIC_EOPEN);
  assert_int_equal(ra, retry);
}

/* ---- names and config ------------------------------------------------------------ */

static void test_names(void **state) {
  (void)state;
  assert_string_equal(cynic_breaker_state_name(CYNIC_BREAKER_CLOSED), "closed");
  assert_string_equal(cynic_breaker_state_name(CYNIC_BREAKER_OPEN), "open");
  assert_string_equal(cynic_breaker_state_name(CYNIC_BREAKER_HALF_OPEN), "half_open");
  assert_string_equal(cynic_breaker_state_name(CYNIC_BREAKER_FORCED_OPEN), "forced_open");
  assert_string_equal(cynic_breaker_state_name(CYNIC_BREAKER_FORCED_CLOSED), "forced_closed");
  assert_string_equal(cynic_breaker_state_name((cynic_breaker_state_t)99), "unknown");
  const char *names[] = {"none",           "fault_threshold", "failure_rate",
                         "slow_call_rate", "open_elapsed",    "probes_succeeded",
                         "probe_failed",   "manual_trip",     "manual_force_closed",
                         "manual_reset",   "health_check"};
  for (int r = 0; r <= (int)CYNIC_BREAKER_REASON_HEALTH_CHECK; r++)
    assert_string_equal(cynic_breaker_reason_name((cynic_breaker_reason_t)r), names[r]);
  assert_string_equal(cynic_breaker_reason_name((cynic_breaker_reason_t)99), "unknown");
}

static void test_defaults(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  assert_int_equal(cfg.faults, 5);
  assert_int_equal(cfg.leak_ns, CYNIC_SEC(10));
  assert_int_equal(cfg.window.kind, CYNIC_BREAKER_WINDOW_TIME);
  assert_int_equal(cfg.window.size, 5);
  assert_int_equal(cfg.window.min_calls, 10);
  assert_true(cfg.window.failure_rate == 50.0);
  assert_true(cfg.window.slow_rate == 0.0);
  assert_true(cfg.bucket_low_traffic_only);
  assert_int_equal(cfg.open_ns, CYNIC_SEC(30));
  assert_true(cfg.open_multiplier == 1.0);
  assert_int_equal(cfg.half_open_probes, 1);
  assert_false(cfg.slow_is_fault);
  assert_null(cfg.on_transition);
  assert_null(cfg.clock.now);
  cynic_breaker_config_default(NULL);

  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  assert_int_equal(clock_reads, 0); /* creation does not read the clock */
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_NONE);
  assert_int_equal(s.now_ns, T0);
  assert_int_equal(s.since_ns, 0);
  assert_int_equal(s.transitions, 0);
  assert_true(s.bucket_level == 0.0);
  assert_true(s.failure_rate == -1.0);
  assert_true(s.slow_rate == -1.0);
  assert_int_equal(s.window_calls, 0);
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(30));
  assert_int_equal(s.next_probe_ns, 0);
  assert_int_equal(s.consecutive_trips, 0);
  cynic_breaker_free(b);
  cynic_breaker_free(NULL);
}

static void expect_einval(const cynic_breaker_config_t *cfg) {
  cynic_breaker_t *b = (cynic_breaker_t *)&fc; /* must stay untouched */
  assert_int_equal(cynic_breaker_new(cfg, &b), CYNIC_EINVAL);
  assert_ptr_equal(b, &fc);
}

static void test_bad_configs_rejected(void **state) {
  (void)state;
  cynic_breaker_config_t cfg, c;
  cynic_breaker_t *b = NULL;
  cynic_breaker_config_default(&cfg);
  assert_int_equal(cynic_breaker_new(NULL, &b), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_new(&cfg, NULL), CYNIC_EINVAL);

#define BAD(stmt)                                                                                  \
  do {                                                                                             \
    c = cfg;                                                                                       \
    stmt;                                                                                          \
    expect_einval(&c);                                                                             \
  } while (0)
  BAD(c.leak_ns = 0);
  BAD(c.faults = CYNIC_BREAKER_MAX_FAULTS + 1);
  BAD(c.window.kind = (cynic_breaker_window_kind_t)7);
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.size = 0));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.size = 10001));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.min_calls = 0));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.size = 10, c.window.min_calls = 11));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_TIME, c.window.size = 3601));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_TIME, c.window.size = 0));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_TIME, c.window.min_calls = 0));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.failure_rate = -1));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.failure_rate = 100.5));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_COUNT, c.window.failure_rate = NAN));
  BAD((c.window.kind = CYNIC_BREAKER_WINDOW_TIME, c.window.slow_rate = 101));
  BAD(c.open_ns = 0);
  BAD(c.open_multiplier = 0.5);
  BAD(c.open_multiplier = NAN);
  BAD(c.open_multiplier = 1001);
  BAD((c.open_multiplier = 2, c.open_max_ns = c.open_ns - 1));
  BAD(c.half_open_probes = 0);
  BAD(c.half_open_probes = CYNIC_BREAKER_MAX_PROBES + 1);
#undef BAD

  /* The bounds themselves are accepted; so is a breaker that only trips by hand. */
  c = cfg;
  c.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  c.window.size = 10000;
  c.window.min_calls = 10000;
  c.window.failure_rate = 100;
  c.half_open_probes = CYNIC_BREAKER_MAX_PROBES;
  c.open_multiplier = 1000;
  c.open_max_ns = c.open_ns;
  assert_int_equal(cynic_breaker_new(&c, &b), 0);
  cynic_breaker_free(b);
  c = cfg;
  c.faults = 0;
  c.leak_ns = 0;
  c.window.kind = CYNIC_BREAKER_WINDOW_TIME;
  c.window.size = 3600;
  c.window.min_calls = 1000000; /* no upper bound for a time window */
  c.open_max_ns = 1;            /* ignored without growth */
  assert_int_equal(cynic_breaker_new(&c, &b), 0);
  cynic_breaker_free(b);
}

static void test_bad_arguments(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_permit_t p;
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_acquire(NULL, &p, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_acquire(b, NULL, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(NULL, &p, CYNIC_OUTCOME_SUCCESS, 0), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_record(b, NULL, CYNIC_OUTCOME_SUCCESS, 0), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_record(b, &p, (cynic_breaker_outcome_t)3, 0), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_release(NULL, &p), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_release(b, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_trip(NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_force_closed(NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_reset(NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_snapshot(NULL, &s), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_snapshot(b, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_release(b, &p), 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.abandoned, 1);
  assert_int_equal(s.successes + s.failures + s.slow, 0);
  cynic_breaker_free(b);
}

/* ---- the fast path ---------------------------------------------------------------- */

static void test_closed_success_reads_no_clock(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  for (int i = 0; i < 100; i++) {
    call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_SEC(100));
    call(b, CYNIC_OUTCOME_SLOW, 0); /* slow, not a fault by default: also fast */
  }
  assert_int_equal(clock_reads, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(clock_reads, 1); /* the bucket needs the time of a fault */
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.successes, 100);
  assert_int_equal(s.slow, 100);
  assert_int_equal(s.failures, 1);
  assert_true(s.bucket_level == 1.0); /* successes do not drain the bucket */
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(nevents, 0);
  cynic_breaker_free(b);
}

/* ---- leaky bucket ----------------------------------------------------------------- */

static void test_bucket_trips_and_full_cycle(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  for (int i = 0; i < 4; i++)
    call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(nevents, 1);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS, T0);

  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.since_ns, T0);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_FAULTS);
  assert_true(s.bucket_level == 0.0); /* a new state starts with an empty bucket */
  assert_int_equal(s.consecutive_trips, 1);
  assert_int_equal(s.next_probe_ns, CYNIC_SEC(30));
  assert_int_equal(s.transitions, 1);

  expect_rejected(b, CYNIC_SEC(30));
  fake_clock_advance(&fc, CYNIC_SEC(30) - 1);
  expect_rejected(b, 1);
  fake_clock_advance(&fc, 1); /* the interval ends exactly at since + open_ns */
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(p.state, CYNIC_BREAKER_HALF_OPEN);
  expect_event(1, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_REASON_OPEN_ELAPSED,
               T0 + CYNIC_SEC(30));
  expect_rejected(b, 0); /* the one probe slot is busy */
  fake_clock_advance(&fc, CYNIC_MS(5));
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(nevents, 3);
  expect_event(2, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_PROBES_SUCCEEDED, T0 + CYNIC_SEC(30) + CYNIC_MS(5));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.consecutive_trips, 0);
  assert_int_equal(s.rejected, 3);
  assert_int_equal(s.failures, 5);
  assert_int_equal(s.successes, 1);
  assert_int_equal(s.transitions, 3);
  cynic_breaker_free(b);
}

/* The exact boundary: one unit leaks at anchor + k * leak_ns, where the anchor is
 * the fault that fell into an empty bucket; a leak due at the instant of a fault
 * happens before the fault is added. */
static void test_bucket_leak_boundary(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 3;
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_snapshot_t s;

  call(b, CYNIC_OUTCOME_FAILURE, 0); /* t=0: level 1, anchor 0 */
  fake_clock_advance(&fc, CYNIC_SEC(5));
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* t=5: level 2 */
  fake_clock_set(&fc, T0 + CYNIC_SEC(10) - 1);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.bucket_level == 2.0);
  fake_clock_set(&fc, T0 + CYNIC_SEC(10));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.bucket_level == 1.0); /* one leaked at exactly 10 s */
  call(b, CYNIC_OUTCOME_FAILURE, 0);  /* t=10: leak first, then 1 + 1 = 2: no trip */
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  fake_clock_set(&fc, T0 + CYNIC_SEC(20) - 1);
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* next leak is due at 20 s: level 3 trips */
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS,
               T0 + CYNIC_SEC(20) - 1);

  /* Same history one nanosecond later: the leak at 20 s comes first, no trip. */
  assert_int_equal(cynic_breaker_reset(b), 0);
  fake_clock_set(&fc, T0 + CYNIC_SEC(100));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(5));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(5));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(10));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_true(s.bucket_level == 2.0);

  /* A long quiet spell empties the bucket entirely, and the leak clock restarts. */
  fake_clock_advance(&fc, CYNIC_SEC(3600));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.bucket_level == 0.0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(10) - 1);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.bucket_level == 1.0);
  fake_clock_advance(&fc, 1);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.bucket_level == 0.0);
  cynic_breaker_free(b);
}

static void test_clock_going_back_is_clamped(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 2;
  cynic_breaker_t *b = make(&cfg);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_set(&fc, T0 - CYNIC_SEC(500)); /* the clock jumps back */
  call(b, CYNIC_OUTCOME_FAILURE, 0);        /* treated as happening at T0 */
  assert_int_equal(nevents, 1);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS, T0);
  cynic_breaker_free(b);
}

static void test_slow_calls_and_the_bucket(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 2;
  cfg.slow_call_ns = CYNIC_MS(100);
  cynic_breaker_t *b = make(&cfg);
  for (int i = 0; i < 10; i++) {
    call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(100)); /* >= slow_call_ns: slow */
    call(b, CYNIC_OUTCOME_SLOW, 0);
  }
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(100) - 1); /* just fast enough */
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.slow, 20);
  assert_int_equal(s.successes, 1);
  cynic_breaker_free(b);

  cfg.slow_is_fault = true;
  b = make(&cfg);
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(150));
  call(b, CYNIC_OUTCOME_SLOW, 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS, T0);
  cynic_breaker_free(b);
}

/* ---- half-open ------------------------------------------------------------------- */

static cynic_breaker_t *tripped(cynic_breaker_config_t *cfg) {
  cfg->faults = 1;
  cynic_breaker_t *b = make(cfg);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  return b;
}

static void test_half_open_probe_limit_and_release(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.half_open_probes = 2;
  cynic_breaker_t *b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  cynic_breaker_permit_t p1, p2, p3;
  assert_int_equal(cynic_breaker_acquire(b, &p1, NULL), 0);
  assert_int_equal(cynic_breaker_acquire(b, &p2, NULL), 0);
  expect_rejected(b, 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(s.probes_in_flight, 2);

  /* An abandoned probe frees its slot and counts nothing. */
  assert_int_equal(cynic_breaker_release(b, &p1), 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(s.abandoned, 1);
  assert_int_equal(cynic_breaker_acquire(b, &p3, NULL), 0);
  expect_rejected(b, 0);

  /* Two successes are needed to close. */
  assert_int_equal(cynic_breaker_record(b, &p2, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(s.probe_successes, 1);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(cynic_breaker_record(b, &p3, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  assert_int_equal(nevents, 3);
  expect_event(2, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_PROBES_SUCCEEDED, T0 + CYNIC_SEC(30));
  cynic_breaker_free(b);
}

/* Half-open judged on N probes: one unlucky probe no longer reopens. */
static void test_half_open_judged_on_n_probes(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.half_open_calls = 4;
  cfg.half_open_successes = 3; /* one failure in four is tolerated */
  cfg.open_multiplier = 2;
  cynic_breaker_t *b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  cynic_breaker_snapshot_t s;
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* the unlucky one */
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(s.probe_successes, 1);
  assert_int_equal(s.probe_failures, 1);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_HALF_OPEN);
  call(b, CYNIC_OUTCOME_SUCCESS, 0); /* 3 of 4: closes */
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  expect_event(nevents - 1, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_PROBES_SUCCEEDED, T0 + CYNIC_SEC(30));

  /* Two failures make 3 successes of 4 impossible: reopens at once, for
   * twice as long. */
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_HALF_OPEN);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_PROBE_FAILED);
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(60));
  cynic_breaker_free(b);

  /* half_open_successes 0 means N: every probe must succeed. */
  config(&cfg);
  cfg.half_open_calls = 2;
  b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_HALF_OPEN);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  cynic_breaker_free(b);

  config(&cfg);
  cfg.half_open_calls = CYNIC_BREAKER_MAX_PROBES + 1;
  expect_einval(&cfg);
  cfg.half_open_calls = 2;
  cfg.half_open_successes = 3;
  expect_einval(&cfg);
}

/* config_rate() is kept for old programs and fills what the default fills. */
static void test_config_rate_defaults(void **state) {
  (void)state;
  cynic_breaker_config_t r, d;
  memset(&r, 0xA5, sizeof r);
  cynic_breaker_config_rate(&r);
  cynic_breaker_config_default(&d);
  assert_int_equal(r.window.kind, d.window.kind);
  assert_int_equal(r.window.size, d.window.size);
  assert_int_equal(r.window.min_calls, d.window.min_calls);
  assert_true(r.window.failure_rate == d.window.failure_rate);
  assert_true(r.window.slow_rate == d.window.slow_rate);
  assert_int_equal(r.faults, d.faults);
  assert_int_equal(r.leak_ns, d.leak_ns);
  assert_int_equal(r.bucket_low_traffic_only, d.bucket_low_traffic_only);
  assert_int_equal(r.open_ns, d.open_ns);
  assert_int_equal(r.half_open_probes, d.half_open_probes);
  assert_int_equal(r.half_open_calls, 0);
  assert_null(r.on_transition);
  assert_null(r.clock.now);
  cynic_breaker_config_rate(NULL);
}

static void test_slow_probe(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_permit_t p;
  /* Slow calls count nowhere: a slow probe is a success. */
  config(&cfg);
  cynic_breaker_t *b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_SLOW, 0), 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  cynic_breaker_free(b);
  /* Slow calls are faults: a slow probe reopens. */
  config(&cfg);
  cfg.slow_is_fault = true;
  b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_SLOW, 0), 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  expect_event(2, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_PROBE_FAILED,
               T0 + CYNIC_SEC(30));
  cynic_breaker_free(b);
}

static void test_open_interval_grows_and_is_capped(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.open_ns = CYNIC_SEC(1);
  cfg.open_multiplier = 2.0;
  cfg.open_max_ns = CYNIC_SEC(5);
  cynic_breaker_t *b = tripped(&cfg);
  const uint64_t expect[] = {CYNIC_SEC(1), CYNIC_SEC(2), CYNIC_SEC(4), CYNIC_SEC(5), CYNIC_SEC(5)};
  cynic_breaker_snapshot_t s;
  cynic_breaker_permit_t p;
  for (unsigned i = 0; i < 5; i++) {
    assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
    assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
    assert_int_equal(s.consecutive_trips, i + 1);
    assert_int_equal(s.open_interval_ns, expect[i]);
    expect_rejected(b, expect[i]);
    fake_clock_advance(&fc, expect[i] - 1);
    expect_rejected(b, 1);
    fake_clock_advance(&fc, 1);
    assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
    assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
    expect_event(nevents - 1, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_OPEN,
                 CYNIC_BREAKER_REASON_PROBE_FAILED, cynic_clock_now(&cfg.clock));
  }
  /* A successful probe closes and resets the growth: the next trip opens for 1 s. */
  fake_clock_advance(&fc, CYNIC_SEC(5));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.consecutive_trips, 0);
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(1));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_rejected(b, CYNIC_SEC(1));
  cynic_breaker_free(b);
}

static void test_fractional_multiplier(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.open_ns = CYNIC_MS(100);
  cfg.open_multiplier = 1.5;
  cfg.open_max_ns = CYNIC_MS(200);
  cynic_breaker_t *b = tripped(&cfg);
  cynic_breaker_permit_t p;
  fake_clock_advance(&fc, CYNIC_MS(100));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
  expect_rejected(b, CYNIC_MS(150));
  fake_clock_advance(&fc, CYNIC_MS(150));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
  expect_rejected(b, CYNIC_MS(200)); /* 225 ms capped */
  cynic_breaker_free(b);
}

/* ---- stale permits ------------------------------------------------------------------ */

static void test_stale_permits(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 1;
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_permit_t old_ok, old_bad, probe, p;
  assert_int_equal(cynic_breaker_acquire(b, &old_ok, NULL), 0);
  assert_int_equal(cynic_breaker_acquire(b, &old_bad, NULL), 0);
  assert_int_equal(old_ok.state, CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* trips */
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &probe, NULL), 0);
  assert_int_equal(probe.state, CYNIC_BREAKER_HALF_OPEN);

  /* Outcomes of calls admitted before the trip neither close nor reopen. */
  assert_int_equal(cynic_breaker_record(b, &old_ok, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(cynic_breaker_record(b, &old_bad, CYNIC_OUTCOME_FAILURE, 0), 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(s.probe_successes, 0);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(s.successes, 1); /* but they count in the totals */
  assert_int_equal(s.failures, 2);

  /* The probe outlives its half-open period: trip, reset, trip, a new half-open. */
  assert_int_equal(cynic_breaker_trip(b), 0);
  assert_int_equal(cynic_breaker_reset(b), 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0); /* the new period's probe */
  assert_int_equal(cynic_breaker_release(b, &probe), 0);   /* frees nothing now */
  expect_rejected(b, 0);
  assert_int_equal(cynic_breaker_record(b, &probe, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(s.probe_successes, 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);

  /* A failure admitted before a reset does not count in the fresh bucket. */
  config(&cfg);
  cfg.faults = 2;
  cynic_breaker_free(b);
  b = make(&cfg);
  assert_int_equal(cynic_breaker_acquire(b, &old_bad, NULL), 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_reset(b), 0);
  assert_int_equal(cynic_breaker_record(b, &old_bad, CYNIC_OUTCOME_FAILURE, 0), 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_true(s.bucket_level == 1.0);
  cynic_breaker_free(b);
}

/* ---- manual control ------------------------------------------------------------------ */

static void test_forced_open_survives_everything(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_permit_t before;
  assert_int_equal(cynic_breaker_acquire(b, &before, NULL), 0);
  fake_clock_advance(&fc, 7);
  assert_int_equal(cynic_breaker_trip(b), 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_FORCED_OPEN, CYNIC_BREAKER_REASON_MANUAL_TRIP,
               T0 + 7);
  expect_rejected(b, UINT64_MAX);
  assert_int_equal(cynic_breaker_record(b, &before, CYNIC_OUTCOME_SUCCESS, 0), 0);
  fake_clock_advance(&fc, CYNIC_SEC(86400));
  expect_rejected(b, UINT64_MAX);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_FORCED_OPEN);
  assert_int_equal(s.next_probe_ns, UINT64_MAX);
  assert_int_equal(s.rejected, 2);

  assert_int_equal(cynic_breaker_reset(b), 0);
  expect_event(1, CYNIC_BREAKER_FORCED_OPEN, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_MANUAL_RESET, T0 + 7 + CYNIC_SEC(86400));
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  /* Tripping an already forced-open breaker is still a (logged) transition. */
  assert_int_equal(cynic_breaker_trip(b), 0);
  assert_int_equal(cynic_breaker_trip(b), 0);
  expect_event(3, CYNIC_BREAKER_FORCED_OPEN, CYNIC_BREAKER_FORCED_OPEN,
               CYNIC_BREAKER_REASON_MANUAL_TRIP, T0 + 7 + CYNIC_SEC(86400));
  assert_int_equal(nevents, 4);
  cynic_breaker_free(b);
}

static void test_forced_closed_survives_faults(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 10;
  cfg.window.min_calls = 5;
  cynic_breaker_t *b = make(&cfg);
  assert_int_equal(cynic_breaker_force_closed(b), 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_FORCED_CLOSED,
               CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED, T0);
  for (int i = 0; i < 1000; i++)
    call(b, CYNIC_OUTCOME_FAILURE, 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_FORCED_CLOSED);
  assert_true(s.bucket_level == 5.0); /* still counted for metrics, capped at faults */
  assert_int_equal(s.window_calls, 10);
  assert_true(s.failure_rate == 100.0);
  assert_int_equal(s.failures, 1000);
  assert_int_equal(nevents, 1);

  /* reset: automatic closed with empty counters; the next fault counts from 0. */
  fake_clock_advance(&fc, CYNIC_SEC(1));
  assert_int_equal(cynic_breaker_reset(b), 0);
  expect_event(1, CYNIC_BREAKER_FORCED_CLOSED, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_MANUAL_RESET, T0 + CYNIC_SEC(1));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_true(s.bucket_level == 0.0);
  assert_int_equal(s.window_calls, 0);
  assert_true(s.failure_rate == -1.0);
  assert_int_equal(s.since_ns, T0 + CYNIC_SEC(1));
  assert_int_equal(s.failures, 1000); /* totals are never cleared */
  for (int i = 0; i < 4; i++)
    call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_event(2, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS,
               T0 + CYNIC_SEC(1));

  /* From OPEN and HALF_OPEN too. */
  assert_int_equal(cynic_breaker_force_closed(b), 0);
  expect_event(3, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_FORCED_CLOSED,
               CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED, T0 + CYNIC_SEC(1));
  cynic_breaker_free(b);
}

static void test_reset_from_half_open_and_open(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.open_multiplier = 2;
  cynic_breaker_t *b = tripped(&cfg);
  cynic_breaker_permit_t p;
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
  assert_int_equal(cynic_breaker_reset(b), 0); /* from OPEN, second trip */
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.consecutive_trips, 0);
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(30));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  assert_int_equal(cynic_breaker_reset(b), 0); /* from HALF_OPEN */
  expect_event(nevents - 1, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_CLOSED,
               CYNIC_BREAKER_REASON_MANUAL_RESET, T0 + CYNIC_SEC(60));
  assert_int_equal(cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0), 0); /* stale */
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  cynic_breaker_free(b);
}

/* ---- windows -------------------------------------------------------------------- */

static void test_count_window(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 4;
  cfg.window.min_calls = 4;
  cfg.window.failure_rate = 50;
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_snapshot_t s;
  /* min_calls: three failures are 100%, but only 3 calls. */
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 3);
  assert_true(s.failure_rate == -1.0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0); /* F S S S: 25% */
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_true(s.failure_rate == 25.0);
  assert_true(s.slow_rate == 0.0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0); /* S S S S: the failure fell out */
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 4);
  assert_true(s.failure_rate == 0.0);
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* S S S F: 25% */
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* S S F F: 50% >= 50%: trip */
  assert_int_equal(nevents, 1);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAILURE_RATE, T0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 0);
  assert_true(s.bucket_level == 0.0); /* no bucket */
  cynic_breaker_free(b);
}

static void test_count_window_min_calls(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 100;
  cfg.window.min_calls = 10;
  cfg.window.failure_rate = 50;
  cynic_breaker_t *b = make(&cfg);
  for (int i = 0; i < 9; i++)
    call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAILURE_RATE, T0);
  cynic_breaker_free(b);
}

static void test_time_window(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_TIME;
  cfg.window.size = 10; /* seconds */
  cfg.window.min_calls = 4;
  cfg.window.failure_rate = 50;
  cynic_breaker_t *b = make(&cfg);
  cynic_breaker_snapshot_t s;
  /* T0 is second 1000; three failures in it. */
  fake_clock_set(&fc, T0 + CYNIC_MS(500));
  for (int i = 0; i < 3; i++)
    call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED); /* min_calls */
  /* Second 1009 still holds second 1000; second 1010 does not. */
  fake_clock_set(&fc, T0 + CYNIC_SEC(10) - 1);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 3);
  assert_true(s.failure_rate == -1.0);
  fake_clock_set(&fc, T0 + CYNIC_SEC(10));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 0);
  /* Had the old failures not expired, this one would trip (4 of 4). */
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.window_calls, 4);
  assert_true(s.failure_rate == 25.0);
  /* Spread over seconds: 1011 and 1015. */
  fake_clock_set(&fc, T0 + CYNIC_SEC(11));
  call(b, CYNIC_OUTCOME_FAILURE, 0); /* 2 / 5 */
  fake_clock_set(&fc, T0 + CYNIC_SEC(15));
  call(b, CYNIC_OUTCOME_SUCCESS, 0); /* 2 / 6 */
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  /* Second 1020: second 1010 (1 F, 3 S) is gone, 1011 and 1015 remain: 1 / 2, then
   * 2 / 3 with min_calls 4 not reached; a third call makes it 3 / 4. */
  fake_clock_set(&fc, T0 + CYNIC_SEC(20));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 2);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAILURE_RATE,
               T0 + CYNIC_SEC(20));
  /* A gap longer than the window empties it at once. */
  assert_int_equal(cynic_breaker_reset(b), 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_set(&fc, T0 + CYNIC_SEC(500));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.window_calls, 1);
  cynic_breaker_free(b);
}

static void test_slow_rate_trips(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 0;
  cfg.slow_call_ns = CYNIC_MS(100);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 5;
  cfg.window.min_calls = 5;
  cfg.window.failure_rate = 50;
  cfg.window.slow_rate = 40;
  cynic_breaker_t *b = make(&cfg);
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(1));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(100)); /* slow by duration */
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_MS(99));
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.window_calls, 4);
  assert_true(s.slow_rate == -1.0);
  call(b, CYNIC_OUTCOME_SLOW, 0); /* 2 of 5 slow = 40%; failures 20% */
  assert_int_equal(nevents, 1);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_SLOW_RATE, T0);
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.successes, 2);
  assert_int_equal(s.slow, 2);
  assert_int_equal(s.failures, 1);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_SLOW_RATE);
  /* With a slow_rate, a slow probe is a failed probe. */
  fake_clock_advance(&fc, CYNIC_SEC(30));
  call(b, CYNIC_OUTCOME_SUCCESS, CYNIC_SEC(1));
  expect_event(2, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_PROBE_FAILED,
               T0 + CYNIC_SEC(30));
  cynic_breaker_free(b);
}

static void test_bucket_and_window_together(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.faults = 3;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 10;
  cfg.window.min_calls = 3;
  cfg.window.failure_rate = 100;
  cynic_breaker_t *b = make(&cfg);
  /* Three failures in a row: both reach their threshold; the bucket is named. */
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAULTS, T0);
  assert_int_equal(cynic_breaker_reset(b), 0);
  /* Leaks keep the bucket low; the window (100%) trips on the third failure. */
  fake_clock_advance(&fc, CYNIC_SEC(20));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(20));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(20));
  call(b, CYNIC_OUTCOME_FAILURE, 0);
  expect_event(2, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_FAILURE_RATE,
               T0 + CYNIC_SEC(60));
  cynic_breaker_free(b);
}

static void test_snapshot_does_not_move_state(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = tripped(&cfg);
  fake_clock_advance(&fc, CYNIC_SEC(40));
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.next_probe_ns, 0);
  assert_int_equal(nevents, 1);
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(b, &p, NULL), 0);
  expect_event(1, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_REASON_OPEN_ELAPSED,
               T0 + CYNIC_SEC(40));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.since_ns, T0 + CYNIC_SEC(40));
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(30));
  assert_int_equal(s.probes_in_flight, 1);
  cynic_breaker_free(b);
}

/* ---- carry (a breaker rebuilt with another config) -------------------------------- */

static void test_carry_open_keeps_the_end_of_the_interval(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cfg.open_multiplier = 2.0;
  cfg.open_max_ns = CYNIC_SEC(100);
  cynic_breaker_t *from = tripped(&cfg); /* open at T0 for 30 s */
  fake_clock_advance(&fc, CYNIC_SEC(10));
  cynic_breaker_config_t c2 = cfg;
  c2.faults = 7;
  c2.open_ns = CYNIC_SEC(5); /* another config: the interval already running is kept */
  cynic_breaker_t *to = make(&c2);
  int before = nevents;
  assert_int_equal(cynic_breaker_carry(to, from), 0);
  assert_int_equal(nevents, before); /* not a transition: no callback */
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(to, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.since_ns, T0);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_FAULTS);
  assert_int_equal(s.next_probe_ns, CYNIC_SEC(20));
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(30));
  assert_int_equal(s.consecutive_trips, 1);
  assert_int_equal(s.transitions, 0);
  assert_int_equal(s.bucket_level, 0);
  expect_rejected(to, CYNIC_SEC(20));
  /* probes when `from` would have; a failed probe backs off from 30 s */
  fake_clock_advance(&fc, CYNIC_SEC(20));
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(to, &p, NULL), 0);
  assert_int_equal(p.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(cynic_breaker_record(to, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
  assert_int_equal(cynic_breaker_snapshot(to, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.open_interval_ns, CYNIC_SEC(60));
  assert_int_equal(s.consecutive_trips, 2);
  /* `from` is unchanged */
  assert_int_equal(state_of(from), CYNIC_BREAKER_OPEN);
  cynic_breaker_free(from);
  cynic_breaker_free(to);
}

static void test_carry_forced_half_open_and_closed(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *from = make(&cfg);
  cynic_breaker_t *to = make(&cfg);
  /* closed: nothing to carry, `to` keeps its own state */
  call(to, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(cynic_breaker_carry(to, from), 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(to, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.bucket_level, 1);
  /* forced states carry as they are, with their time */
  assert_int_equal(cynic_breaker_trip(from), 0);
  fake_clock_advance(&fc, CYNIC_SEC(3));
  assert_int_equal(cynic_breaker_carry(to, from), 0);
  assert_int_equal(cynic_breaker_snapshot(to, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_FORCED_OPEN);
  assert_int_equal(s.since_ns, T0);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_MANUAL_TRIP);
  assert_int_equal(s.next_probe_ns, UINT64_MAX);
  assert_int_equal(s.bucket_level, 0);
  expect_rejected(to, UINT64_MAX);
  assert_int_equal(cynic_breaker_force_closed(from), 0);
  assert_int_equal(cynic_breaker_carry(to, from), 0);
  assert_int_equal(state_of(to), CYNIC_BREAKER_FORCED_CLOSED);
  call(to, CYNIC_OUTCOME_FAILURE, 0);
  call(to, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(to), CYNIC_BREAKER_FORCED_CLOSED);
  /* half-open: open with the interval over, so the next acquire probes */
  assert_int_equal(cynic_breaker_reset(from), 0);
  cfg.faults = 1;
  cynic_breaker_t *from2 = make(&cfg);
  call(from2, CYNIC_OUTCOME_FAILURE, 0);
  fake_clock_advance(&fc, CYNIC_SEC(30));
  cynic_breaker_permit_t probe, p;
  assert_int_equal(cynic_breaker_acquire(from2, &probe, NULL), 0);
  assert_int_equal(state_of(from2), CYNIC_BREAKER_HALF_OPEN);
  cynic_breaker_t *to2 = make(&cfg);
  assert_int_equal(cynic_breaker_carry(to2, from2), 0);
  assert_int_equal(cynic_breaker_snapshot(to2, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_int_equal(s.next_probe_ns, 0);
  assert_int_equal(cynic_breaker_acquire(to2, &p, NULL), 0);
  assert_int_equal(p.state, CYNIC_BREAKER_HALF_OPEN);
  assert_int_equal(cynic_breaker_record(to2, &p, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(state_of(to2), CYNIC_BREAKER_CLOSED);
  assert_int_equal(cynic_breaker_release(from2, &probe), 0);
  /* bad arguments */
  assert_int_equal(cynic_breaker_carry(NULL, from), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_carry(to, NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_carry(to, to), CYNIC_EINVAL);
  cynic_breaker_free(from);
  cynic_breaker_free(to);
  cynic_breaker_free(from2);
  cynic_breaker_free(to2);
}

/* ---- held open by a health check ------------------------------------------------ */

static void test_hold_open_and_end_hold(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  /* not held: end_hold changes nothing */
  assert_int_equal(cynic_breaker_end_hold(b), CYNIC_ESTATE);
  assert_int_equal(nevents, 0);
  assert_int_equal(cynic_breaker_hold_open(b), 0);
  expect_event(0, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_HEALTH_CHECK, T0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_true(s.held);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_HEALTH_CHECK);
  assert_int_equal(s.next_probe_ns, UINT64_MAX);
  assert_int_equal(s.consecutive_trips, 0); /* not a fault trip */
  /* the open interval never ends by itself: no half-open probe, ever */
  fake_clock_advance(&fc, CYNIC_SEC(3600));
  expect_rejected(b, UINT64_MAX);
  assert_int_equal(state_of(b), CYNIC_BREAKER_OPEN);
  /* already held: no second transition */
  assert_int_equal(cynic_breaker_hold_open(b), 0);
  assert_int_equal(nevents, 1);
  /* back: straight to closed, no probe */
  assert_int_equal(cynic_breaker_end_hold(b), 0);
  expect_event(1, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_REASON_HEALTH_CHECK,
               T0 + CYNIC_SEC(3600));
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_false(s.held);
  assert_int_equal(s.next_probe_ns, 0);
  call(b, CYNIC_OUTCOME_SUCCESS, 0);
  assert_int_equal(cynic_breaker_end_hold(b), CYNIC_ESTATE);
  /* an open breaker (faults) is held over, and a held one's faults trip nothing */
  cfg.faults = 1;
  cynic_breaker_t *c = make(&cfg);
  call(c, CYNIC_OUTCOME_FAILURE, 0);
  assert_int_equal(state_of(c), CYNIC_BREAKER_OPEN);
  assert_int_equal(cynic_breaker_hold_open(c), 0);
  assert_int_equal(cynic_breaker_snapshot(c, &s), 0);
  assert_true(s.held);
  assert_int_equal(s.consecutive_trips, 1);
  assert_int_equal(cynic_breaker_end_hold(c), 0);
  assert_int_equal(cynic_breaker_snapshot(c, &s), 0);
  assert_int_equal(s.consecutive_trips, 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  cynic_breaker_free(b);
  cynic_breaker_free(c);
}

static void test_hold_never_overrides_an_operator(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *b = make(&cfg);
  assert_int_equal(cynic_breaker_trip(b), 0);
  assert_int_equal(cynic_breaker_hold_open(b), CYNIC_ESTATE);
  assert_int_equal(cynic_breaker_end_hold(b), CYNIC_ESTATE);
  assert_int_equal(state_of(b), CYNIC_BREAKER_FORCED_OPEN);
  assert_int_equal(cynic_breaker_force_closed(b), 0);
  assert_int_equal(cynic_breaker_hold_open(b), CYNIC_ESTATE);
  assert_int_equal(state_of(b), CYNIC_BREAKER_FORCED_CLOSED);
  assert_int_equal(nevents, 2);
  /* held, then the operator trips: the trip clears the hold and stays */
  assert_int_equal(cynic_breaker_reset(b), 0);
  assert_int_equal(cynic_breaker_hold_open(b), 0);
  assert_int_equal(cynic_breaker_trip(b), 0);
  assert_int_equal(cynic_breaker_end_hold(b), CYNIC_ESTATE);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(b, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_FORCED_OPEN);
  assert_false(s.held);
  /* a reset by hand ends a hold too (automatic control again) */
  assert_int_equal(cynic_breaker_reset(b), 0);
  assert_int_equal(cynic_breaker_hold_open(b), 0);
  assert_int_equal(cynic_breaker_reset(b), 0);
  assert_int_equal(state_of(b), CYNIC_BREAKER_CLOSED);
  assert_int_equal(cynic_breaker_end_hold(b), CYNIC_ESTATE);
  assert_int_equal(cynic_breaker_hold_open(NULL), CYNIC_EINVAL);
  assert_int_equal(cynic_breaker_end_hold(NULL), CYNIC_EINVAL);
  cynic_breaker_free(b);
}

static void test_carry_keeps_a_hold(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  config(&cfg);
  cynic_breaker_t *from = make(&cfg);
  cynic_breaker_t *to = make(&cfg);
  assert_int_equal(cynic_breaker_hold_open(from), 0);
  fake_clock_advance(&fc, CYNIC_SEC(100));
  assert_int_equal(cynic_breaker_carry(to, from), 0);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(to, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_OPEN);
  assert_true(s.held);
  assert_int_equal(s.last_reason, CYNIC_BREAKER_REASON_HEALTH_CHECK);
  expect_rejected(to, UINT64_MAX);
  assert_int_equal(cynic_breaker_end_hold(to), 0);
  assert_int_equal(state_of(to), CYNIC_BREAKER_CLOSED);
  cynic_breaker_free(from);
  cynic_breaker_free(to);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_bad_configs_rejected),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_closed_success_reads_no_clock),
      cmocka_unit_test(test_bucket_trips_and_full_cycle),
      cmocka_unit_test(test_bucket_leak_boundary),
      cmocka_unit_test(test_clock_going_back_is_clamped),
      cmocka_unit_test(test_slow_calls_and_the_bucket),
      cmocka_unit_test(test_half_open_probe_limit_and_release),
      cmocka_unit_test(test_slow_probe),
      cmocka_unit_test(test_half_open_judged_on_n_probes),
      cmocka_unit_test(test_config_rate_defaults),
      cmocka_unit_test(test_open_interval_grows_and_is_capped),
      cmocka_unit_test(test_fractional_multiplier),
      cmocka_unit_test(test_stale_permits),
      cmocka_unit_test(test_forced_open_survives_everything),
      cmocka_unit_test(test_forced_closed_survives_faults),
      cmocka_unit_test(test_reset_from_half_open_and_open),
      cmocka_unit_test(test_count_window),
      cmocka_unit_test(test_count_window_min_calls),
      cmocka_unit_test(test_time_window),
      cmocka_unit_test(test_slow_rate_trips),
      cmocka_unit_test(test_bucket_and_window_together),
      cmocka_unit_test(test_snapshot_does_not_move_state),
      cmocka_unit_test(test_carry_open_keeps_the_end_of_the_interval),
      cmocka_unit_test(test_carry_forced_half_open_and_closed),
      cmocka_unit_test(test_hold_open_and_end_hold),
      cmocka_unit_test(test_hold_never_overrides_an_operator),
      cmocka_unit_test(test_carry_keeps_a_hold),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
