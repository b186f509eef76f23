/*
 * tests/unit/test_breaker_props.c: randomised property test of the breaker.
 *
 * A fixed-seed stream of random operations (acquire, record, release, clock moves,
 * manual trip/force/reset, a health check's hold_open/end_hold) drives one
 * breaker on a fake clock, and after every step the breaker is checked against a
 * small model:
 *  - admission matches the state: closed and forced-closed admit, forced-open never
 *    does, open admits only at or after since + open interval (held open: never,
 *    retry after UINT64_MAX), half-open only while fewer than half_open_probes
 *    probes of the current period are out;
 *  - the breaker's probes in flight equal the model's count, never above the limit;
 *  - every transition is a legal edge with its right reason, continues from the
 *    previous one, and time never goes back;
 *  - totals, consecutive trips and the open interval agree with the model;
 *  - a closed breaker right after a record is below every trip threshold.
 * The test reads permit.generation (private): it starts at 1 and each transition
 * adds one, which the model mirrors through the callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/breaker.h"
#include "fake_clock.h"

#define OPS 200000
#define MAX_OUT 16

typedef struct model {
  fake_clock_t fc;
  uint64_t gen; /* mirrors the breaker's generation */
  cynic_breaker_state_t state;
  uint64_t last_at;
  uint64_t transitions;
  uint32_t consecutive;
  cynic_breaker_permit_t out[MAX_OUT];
  int nout;
  uint64_t successes, failures, slow, abandoned, rejected;
  uint64_t seen[5]; /* transitions into each state, to show the walk covers them all */
  bool held;        /* OPEN held by cynic_breaker_hold_open (any transition ends it) */
  uint64_t holds;   /* hold_open calls that held it, to show the walk covers them */
} model_t;

static model_t m;

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}
static uint64_t below(uint64_t n) {
  return rnd() % n;
}

static bool legal(cynic_breaker_state_t from, cynic_breaker_state_t to, cynic_breaker_reason_t r) {
  switch (r) {
  case CYNIC_BREAKER_REASON_FAULTS:
  case CYNIC_BREAKER_REASON_FAILURE_RATE:
  case CYNIC_BREAKER_REASON_SLOW_RATE:
    return from == CYNIC_BREAKER_CLOSED && to == CYNIC_BREAKER_OPEN;
  case CYNIC_BREAKER_REASON_OPEN_ELAPSED:
    return from == CYNIC_BREAKER_OPEN && to == CYNIC_BREAKER_HALF_OPEN;
  case CYNIC_BREAKER_REASON_PROBE_FAILED:
    return from == CYNIC_BREAKER_HALF_OPEN && to == CYNIC_BREAKER_OPEN;
  case CYNIC_BREAKER_REASON_PROBES_SUCCEEDED:
    return from == CYNIC_BREAKER_HALF_OPEN && to == CYNIC_BREAKER_CLOSED;
  case CYNIC_BREAKER_REASON_MANUAL_TRIP:
    return to == CYNIC_BREAKER_FORCED_OPEN;
  case CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED:
    return to == CYNIC_BREAKER_FORCED_CLOSED;
  case CYNIC_BREAKER_REASON_MANUAL_RESET:
    return to == CYNIC_BREAKER_CLOSED;
  case CYNIC_BREAKER_REASON_HEALTH_CHECK: /* held open, or released straight to closed */
    return (from != CYNIC_BREAKER_FORCED_OPEN && from != CYNIC_BREAKER_FORCED_CLOSED &&
            to == CYNIC_BREAKER_OPEN) ||
           (from == CYNIC_BREAKER_OPEN && to == CYNIC_BREAKER_CLOSED);
  case CYNIC_BREAKER_REASON_NONE:
    break;
  }
  return false;
}

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at) {
  (void)arg;
  assert_int_equal(from, m.state);
  assert_true(legal(from, to, reason));
  assert_true(at >= m.last_at);
  assert_int_equal(at, fake_clock_read(&m.fc));
  if (reason == CYNIC_BREAKER_REASON_PROBE_FAILED || reason <= CYNIC_BREAKER_REASON_SLOW_RATE)
    m.consecutive++;
  else if (reason == CYNIC_BREAKER_REASON_PROBES_SUCCEEDED ||
           reason == CYNIC_BREAKER_REASON_MANUAL_RESET ||
           (reason == CYNIC_BREAKER_REASON_HEALTH_CHECK && to == CYNIC_BREAKER_CLOSED))
    m.consecutive = 0;
  m.held = false;
  m.state = to;
  m.last_at = at;
  m.gen++;
  m.transitions++;
  m.seen[to]++;
}

static void snap(const cynic_breaker_t *b, const cynic_breaker_config_t *cfg,
                 cynic_breaker_snapshot_t *s) {
  assert_int_equal(cynic_breaker_snapshot(b, s), 0);
  assert_int_equal(s->state, m.state);
  assert_int_equal(s->transitions, m.transitions);
  assert_int_equal(s->successes, m.successes);
  assert_int_equal(s->failures, m.failures);
  assert_int_equal(s->slow, m.slow);
  assert_int_equal(s->abandoned, m.abandoned);
  assert_int_equal(s->rejected, m.rejected);
  assert_int_equal(s->consecutive_trips, m.consecutive);
  assert_true(s->open_interval_ns >= cfg->open_ns);
  if (cfg->open_multiplier > 1.0)
    assert_true(s->open_interval_ns <= cfg->open_max_ns);
  else
    assert_int_equal(s->open_interval_ns, cfg->open_ns);
  assert_true(s->bucket_level <= (double)cfg->faults);
  uint32_t probes = 0;
  for (int i = 0; i < m.nout; i++)
    if (m.out[i].generation == m.gen && m.out[i].state == CYNIC_BREAKER_HALF_OPEN)
      probes++;
  if (m.state == CYNIC_BREAKER_HALF_OPEN) {
    assert_int_equal(s->probes_in_flight, probes);
    assert_true(s->probes_in_flight <= cfg->half_open_probes);
    assert_true(s->probe_successes < cfg->half_open_probes);
  } else {
    assert_int_equal(probes, 0);
  }
  assert_int_equal(s->held, m.held);
  if (m.held)
    assert_int_equal(s->next_probe_ns, UINT64_MAX);
  else if (m.state == CYNIC_BREAKER_OPEN)
    assert_int_equal(s->next_probe_ns, s->since_ns + s->open_interval_ns > s->now_ns
                                           ? s->since_ns + s->open_interval_ns - s->now_ns
                                           : 0);
}

static void step_acquire(cynic_breaker_t *b, const cynic_breaker_config_t *cfg) {
  cynic_breaker_snapshot_t s;
  snap(b, cfg, &s);
  cynic_breaker_permit_t p;
  uint64_t ra = 777;
  int rc = cynic_breaker_acquire(b, &p, &ra);
  switch (s.state) {
  case CYNIC_BREAKER_CLOSED:
  case CYNIC_BREAKER_FORCED_CLOSED:
    assert_int_equal(rc, 0);
    assert_int_equal(p.state, s.state);
    break;
  case CYNIC_BREAKER_FORCED_OPEN:
    assert_int_equal(rc, CYNIC_EOPEN);
    assert_int_equal(ra, UINT64_MAX);
    break;
  case CYNIC_BREAKER_OPEN:
    if (m.held) { /* no probe until the hold ends */
      assert_int_equal(rc, CYNIC_EOPEN);
      assert_int_equal(ra, UINT64_MAX);
    } else if (s.now_ns < s.since_ns + s.open_interval_ns) { /* never before open_until */
      assert_int_equal(rc, CYNIC_EOPEN);
      assert_int_equal(ra, s.since_ns + s.open_interval_ns - s.now_ns);
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(p.state, CYNIC_BREAKER_HALF_OPEN);
      assert_int_equal(m.state, CYNIC_BREAKER_HALF_OPEN);
    }
    break;
  case CYNIC_BREAKER_HALF_OPEN:
    if (s.probes_in_flight < cfg->half_open_probes) {
      assert_int_equal(rc, 0);
      assert_int_equal(p.state, CYNIC_BREAKER_HALF_OPEN);
    } else {
      assert_int_equal(rc, CYNIC_EOPEN);
      assert_int_equal(ra, 0);
    }
    break;
  }
  if (rc != 0) {
    m.rejected++;
    return;
  }
  assert_int_equal(p.generation, m.gen);
  if (m.nout == MAX_OUT) { /* keep the table bounded: give one back unrecorded */
    assert_int_equal(cynic_breaker_release(b, &m.out[0]), 0);
    m.abandoned++;
    m.out[0] = m.out[--m.nout];
  }
  m.out[m.nout++] = p;
}

static void step_finish(cynic_breaker_t *b, const cynic_breaker_config_t *cfg) {
  if (m.nout == 0)
    return;
  int i = (int)below((uint64_t)m.nout);
  cynic_breaker_permit_t p = m.out[i];
  m.out[i] = m.out[--m.nout];
  if (below(10) == 0) {
    assert_int_equal(cynic_breaker_release(b, &p), 0);
    m.abandoned++;
    return;
  }
  cynic_breaker_outcome_t o = (cynic_breaker_outcome_t)below(3);
  uint64_t duration = below(2 * CYNIC_MS(100));
  if (o == CYNIC_OUTCOME_FAILURE)
    m.failures++;
  else if (o == CYNIC_OUTCOME_SLOW || (cfg->slow_call_ns != 0 && duration >= cfg->slow_call_ns))
    m.slow++;
  else
    m.successes++;
  /* Only a current closed-state outcome is judged: a stale one changes nothing, and
   * a time window's rate may rise on its own as old successes expire. */
  bool judged = p.generation == m.gen && m.state == CYNIC_BREAKER_CLOSED;
  assert_int_equal(cynic_breaker_record(b, &p, o, duration), 0);
  cynic_breaker_snapshot_t s;
  snap(b, cfg, &s);
  if (judged && s.state == CYNIC_BREAKER_CLOSED) { /* still closed: below every threshold */
    if (cfg->faults > 0)
      assert_true(s.bucket_level < (double)cfg->faults);
    if (s.failure_rate >= 0 && cfg->window.failure_rate > 0)
      assert_true(s.failure_rate < cfg->window.failure_rate);
    if (s.slow_rate >= 0 && cfg->window.slow_rate > 0)
      assert_true(s.slow_rate < cfg->window.slow_rate);
  }
}

/* A health check's verdicts: hold open (never over an operator's forced
 * state), or end a hold (only a held breaker, straight to closed). */
static void step_hold(cynic_breaker_t *b, const cynic_breaker_config_t *cfg) {
  bool forced = m.state == CYNIC_BREAKER_FORCED_OPEN || m.state == CYNIC_BREAKER_FORCED_CLOSED;
  int rc = cynic_breaker_hold_open(b);
  assert_int_equal(rc, forced ? CYNIC_ESTATE : 0);
  if (!forced) {
    assert_int_equal(m.state, CYNIC_BREAKER_OPEN);
    m.held = true;
    m.holds++;
  }
  cynic_breaker_snapshot_t s;
  snap(b, cfg, &s);
}

static void step_end_hold(cynic_breaker_t *b, const cynic_breaker_config_t *cfg) {
  bool was_held = m.held;
  assert_int_equal(cynic_breaker_end_hold(b), was_held ? 0 : CYNIC_ESTATE);
  if (was_held) {
    assert_int_equal(m.state, CYNIC_BREAKER_CLOSED);
    assert_false(m.held);
  }
  cynic_breaker_snapshot_t s;
  snap(b, cfg, &s);
  if (was_held)
    assert_int_equal(s.open_interval_ns, cfg->open_ns); /* back to its start */
}

static void run(cynic_breaker_config_t *cfg, uint64_t seed) {
  memset(&m, 0, sizeof(m));
  m.gen = 1;
  m.state = CYNIC_BREAKER_CLOSED;
  rng_state = seed;
  fake_clock_set(&m.fc, CYNIC_SEC(1000));
  cfg->clock = fake_clock_bind(&m.fc);
  cfg->on_transition = on_transition;
  cynic_breaker_t *b = NULL;
  assert_int_equal(cynic_breaker_new(cfg, &b), 0);
  uint64_t step_ns = cfg->open_ns / 4;

  for (int op = 0; op < OPS; op++) {
    uint64_t r = below(1000);
    if (r < 380) {
      step_acquire(b, cfg);
    } else if (r < 760) {
      step_finish(b, cfg);
    } else if (r < 995) {
      /* Mostly small moves (many calls per leak interval), sometimes big ones. */
      fake_clock_advance(&m.fc, below(8) == 0 ? below(4 * cfg->open_ns) : below(step_ns));
    } else if (r < 997) {
      assert_int_equal(cynic_breaker_trip(b), 0);
    } else if (r < 998) {
      assert_int_equal(cynic_breaker_force_closed(b), 0);
    } else if (r < 999) {
      assert_int_equal(cynic_breaker_reset(b), 0);
    } else if (below(2) == 0) {
      step_hold(b, cfg);
    } else {
      step_end_hold(b, cfg);
    }
  }
  cynic_breaker_snapshot_t s;
  snap(b, cfg, &s);
  /* The walk visited every state, automatic ones many times. */
  for (int st = 0; st < 5; st++)
    assert_true(m.seen[st] > 0);
  assert_true(m.seen[CYNIC_BREAKER_HALF_OPEN] > 100);
  assert_true(m.holds > 10);
  cynic_breaker_free(b);
}

static void test_props_bucket(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* the bucket alone */
  cfg.faults = 3;
  cfg.leak_ns = CYNIC_SEC(1);
  cfg.open_ns = CYNIC_SEC(2);
  cfg.half_open_probes = 3;
  run(&cfg, 0x5eed0001);
}

static void test_props_bucket_growth_slow_faults(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* the bucket alone */
  cfg.faults = 4;
  cfg.leak_ns = CYNIC_MS(500);
  cfg.slow_is_fault = true;
  cfg.slow_call_ns = CYNIC_MS(150);
  cfg.open_ns = CYNIC_SEC(1);
  cfg.open_multiplier = 2.0;
  cfg.open_max_ns = CYNIC_SEC(8);
  cfg.half_open_probes = 2;
  run(&cfg, 0x5eed0002);
}

static void test_props_count_window(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 20;
  cfg.window.min_calls = 5;
  cfg.window.failure_rate = 50;
  cfg.window.slow_rate = 60;
  cfg.slow_call_ns = CYNIC_MS(100);
  cfg.open_ns = CYNIC_SEC(1);
  cfg.open_multiplier = 1.5;
  cfg.open_max_ns = CYNIC_SEC(4);
  cfg.half_open_probes = 4;
  run(&cfg, 0x5eed0003);
}

static void test_props_time_window_and_bucket(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.faults = 6;
  cfg.leak_ns = CYNIC_MS(200);
  cfg.bucket_low_traffic_only = false; /* both judge every call */
  cfg.window.kind = CYNIC_BREAKER_WINDOW_TIME;
  cfg.window.size = 3;
  cfg.window.min_calls = 4;
  cfg.window.failure_rate = 40;
  cfg.window.slow_rate = 50;
  cfg.open_ns = CYNIC_SEC(2);
  cfg.half_open_probes = 1;
  run(&cfg, 0x5eed0004);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_props_bucket),
      cmocka_unit_test(test_props_bucket_growth_slow_faults),
      cmocka_unit_test(test_props_count_window),
      cmocka_unit_test(test_props_time_window_and_bucket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
