/*
 * tests/unit/test_stress_breaker.c: threads hammering one breaker (run under TSan).
 *
 *  - test_half_open_race: in each round the breaker's open interval has just ended
 *    and 4 threads, released together by a barrier, race to acquire; exactly
 *    half_open_probes of their acquires are admitted.
 *  - test_hammer: 4 threads mix acquire / record / release / trip / force_closed /
 *    reset / snapshot with bounded iteration counts on a fake clock that the
 *    workers move forward. Probes of one half-open period in flight never exceed
 *    the limit (counted per generation by the test itself, and by snapshots); the
 *    totals add up to what the threads did; the callback sees a continuous chain.
 *  - test_window_across_seconds: 4 threads record successes (lock-free in an
 *    armed second) and failures (under the mutex) on a TIME window while a fifth
 *    moves the fake clock across hundreds of second boundaries; the window then
 *    holds exactly the calls recorded, none lost into a rotated second, none
 *    counted twice, and its count never went down while it ran.
 * The test reads permit.generation (private): it starts at 1 and each transition
 * adds one, so it is bounded by 1 + the number of operations.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/breaker.h"
#include "fake_clock.h"

#define THREADS 4
#define ITERS 100000
#define PROBES 3

static fake_clock_t fc;

/* Callback state: only touched under the breaker's mutex. */
static cynic_breaker_state_t cb_state;
static uint64_t cb_count;
static bool cb_broken;

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at) {
  (void)arg;
  (void)reason;
  (void)at;
  if (from != cb_state)
    cb_broken = true;
  cb_state = to;
  cb_count++;
}

/* ---- the half-open race ------------------------------------------------------------- */

#define ROUNDS 1000
#define TRIES 3

static cynic_breaker_t *race_b;
static pthread_barrier_t race_start, race_done;
static cynic_breaker_permit_t race_permits[THREADS][TRIES];
static int race_admitted[THREADS];

static void *race_worker(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int round = 0; round < ROUNDS; round++) {
    pthread_barrier_wait(&race_start);
    race_admitted[id] = 0;
    for (int t = 0; t < TRIES; t++)
      if (cynic_breaker_acquire(race_b, &race_permits[id][race_admitted[id]], NULL) == 0)
        race_admitted[id]++;
    pthread_barrier_wait(&race_done);
    pthread_barrier_wait(&race_start); /* main has counted; give the permits back */
    for (int i = 0; i < race_admitted[id]; i++)
      cynic_breaker_release(race_b, &race_permits[id][i]);
    pthread_barrier_wait(&race_done);
  }
  return NULL;
}

static void test_half_open_race(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* the bucket alone */
  cfg.faults = 1;
  cfg.open_ns = CYNIC_SEC(1);
  cfg.half_open_probes = PROBES;
  cfg.clock = fake_clock_bind(&fc);
  fake_clock_set(&fc, CYNIC_SEC(1));
  assert_int_equal(cynic_breaker_new(&cfg, &race_b), 0);
  assert_int_equal(pthread_barrier_init(&race_start, NULL, THREADS + 1), 0);
  assert_int_equal(pthread_barrier_init(&race_done, NULL, THREADS + 1), 0);
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, race_worker, (void *)(intptr_t)i), 0);

  for (int round = 0; round < ROUNDS; round++) {
    /* Trip it, and let the open interval run out before the threads start. */
    assert_int_equal(cynic_breaker_reset(race_b), 0);
    cynic_breaker_permit_t p;
    assert_int_equal(cynic_breaker_acquire(race_b, &p, NULL), 0);
    assert_int_equal(cynic_breaker_record(race_b, &p, CYNIC_OUTCOME_FAILURE, 0), 0);
    fake_clock_advance(&fc, CYNIC_SEC(1));
    pthread_barrier_wait(&race_start);
    pthread_barrier_wait(&race_done);
    int total = 0;
    for (int i = 0; i < THREADS; i++)
      total += race_admitted[i];
    assert_int_equal(total, PROBES);
    cynic_breaker_snapshot_t s;
    assert_int_equal(cynic_breaker_snapshot(race_b, &s), 0);
    assert_int_equal(s.state, CYNIC_BREAKER_HALF_OPEN);
    assert_int_equal(s.probes_in_flight, PROBES);
    pthread_barrier_wait(&race_start);
    pthread_barrier_wait(&race_done);
    assert_int_equal(cynic_breaker_snapshot(race_b, &s), 0);
    assert_int_equal(s.probes_in_flight, 0);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(race_b, &s), 0);
  assert_int_equal(s.rejected, (uint64_t)ROUNDS * (THREADS * TRIES - PROBES));
  assert_int_equal(s.abandoned, (uint64_t)ROUNDS * PROBES);
  pthread_barrier_destroy(&race_start);
  pthread_barrier_destroy(&race_done);
  cynic_breaker_free(race_b);
}

/* ---- the hammer ------------------------------------------------------------------------ */

typedef struct tally {
  uint64_t successes, failures, slow, abandoned, rejected, admitted;
} tally_t;

static cynic_breaker_t *hb;
static _Atomic uint32_t *probes_by_gen; /* the test's own count of probes out per period */
static uint64_t max_gen;
static _Atomic bool violation;
static tally_t tallies[THREADS];

static uint64_t xs(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void *hammer_worker(void *arg) {
  int id = (int)(intptr_t)arg;
  tally_t *t = &tallies[id];
  uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
  for (int i = 0; i < ITERS; i++) {
    uint64_t r = xs(&rng) % 1000;
    if (id == 0 && r < 4) { /* one thread plays the operator, now and then */
      if (r == 0)
        cynic_breaker_trip(hb);
      else if (r == 1)
        cynic_breaker_force_closed(hb);
      else
        cynic_breaker_reset(hb);
      continue;
    }
    if (r < 20) {
      cynic_breaker_snapshot_t s;
      cynic_breaker_snapshot(hb, &s);
      if (s.probes_in_flight > PROBES || s.state > CYNIC_BREAKER_FORCED_CLOSED)
        atomic_store(&violation, true);
      continue;
    }
    if (r < 120) {
      fake_clock_advance(&fc, CYNIC_US(50));
      continue;
    }
    cynic_breaker_permit_t p;
    uint64_t ra;
    if (cynic_breaker_acquire(hb, &p, &ra) != 0) {
      t->rejected++;
      continue;
    }
    t->admitted++;
    bool probe = p.state == CYNIC_BREAKER_HALF_OPEN;
    if (p.generation >= max_gen) {
      atomic_store(&violation, true);
      probe = false;
    }
    if (probe && atomic_fetch_add(&probes_by_gen[p.generation], 1) + 1 > PROBES)
      atomic_store(&violation, true);
    uint64_t o = xs(&rng) % 10;
    if (probe)
      atomic_fetch_sub(&probes_by_gen[p.generation], 1);
    if (o == 0) {
      cynic_breaker_release(hb, &p);
      t->abandoned++;
    } else if (o <= 3) {
      cynic_breaker_record(hb, &p, CYNIC_OUTCOME_FAILURE, 0);
      t->failures++;
    } else if (o == 4) {
      cynic_breaker_record(hb, &p, CYNIC_OUTCOME_SLOW, 0);
      t->slow++;
    } else {
      cynic_breaker_record(hb, &p, CYNIC_OUTCOME_SUCCESS, 0);
      t->successes++;
    }
  }
  return NULL;
}

static void hammer(cynic_breaker_config_t *cfg) {
  cb_state = CYNIC_BREAKER_CLOSED;
  cb_count = 0;
  cb_broken = false;
  atomic_store(&violation, false);
  memset(tallies, 0, sizeof(tallies));
  max_gen = (uint64_t)THREADS * ITERS + 2;
  probes_by_gen = calloc(max_gen, sizeof(*probes_by_gen));
  assert_non_null(probes_by_gen);
  fake_clock_set(&fc, CYNIC_SEC(1));
  cfg->clock = fake_clock_bind(&fc);
  cfg->on_transition = on_transition;
  cfg->half_open_probes = PROBES;
  assert_int_equal(cynic_breaker_new(cfg, &hb), 0);

  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, hammer_worker, (void *)(intptr_t)i), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);

  assert_false(atomic_load(&violation));
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(hb, &s), 0);
  tally_t sum = {0};
  for (int i = 0; i < THREADS; i++) {
    sum.successes += tallies[i].successes;
    sum.failures += tallies[i].failures;
    sum.slow += tallies[i].slow;
    sum.abandoned += tallies[i].abandoned;
    sum.rejected += tallies[i].rejected;
    sum.admitted += tallies[i].admitted;
  }
  assert_int_equal(s.successes, sum.successes);
  assert_int_equal(s.failures, sum.failures);
  assert_int_equal(s.slow, sum.slow);
  assert_int_equal(s.abandoned, sum.abandoned);
  assert_int_equal(s.rejected, sum.rejected);
  assert_int_equal(s.successes + s.failures + s.slow + s.abandoned, sum.admitted);
  assert_false(cb_broken);
  assert_int_equal(s.transitions, cb_count);
  assert_int_equal(s.state, cb_state);
  assert_true(cb_count > 10); /* the breaker really moved */
  /* Every permit was given back: no probe slot leaked. */
  assert_int_equal(s.probes_in_flight, 0);
  for (uint64_t g = 0; g < max_gen; g++)
    assert_int_equal(atomic_load(&probes_by_gen[g]), 0);
  cynic_breaker_free(hb);
  free(probes_by_gen);
}

static void test_hammer_bucket(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE; /* the bucket alone */
  cfg.faults = 5;
  cfg.leak_ns = CYNIC_MS(1);
  cfg.open_ns = CYNIC_MS(2);
  cfg.open_multiplier = 2;
  cfg.open_max_ns = CYNIC_MS(20);
  hammer(&cfg);
}

static void test_hammer_windows(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.faults = 8;
  cfg.leak_ns = CYNIC_MS(1);
  cfg.bucket_low_traffic_only = false; /* both judge every call */
  cfg.window.kind = CYNIC_BREAKER_WINDOW_TIME;
  cfg.window.size = 2;
  cfg.window.min_calls = 20;
  cfg.window.failure_rate = 35;
  cfg.window.slow_rate = 30;
  cfg.open_ns = CYNIC_MS(2);
  hammer(&cfg);
  cynic_breaker_config_default(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_COUNT;
  cfg.window.size = 50;
  cfg.window.min_calls = 20;
  cfg.window.failure_rate = 35;
  cfg.open_ns = CYNIC_MS(2);
  hammer(&cfg);
  /* the defaults: the bucket judges only while the window is short of calls */
  cynic_breaker_config_default(&cfg);
  cfg.leak_ns = CYNIC_MS(1);
  cfg.window.size = 1;
  cfg.open_ns = CYNIC_MS(2);
  hammer(&cfg);
}

/* ---- the window across second boundaries ----------------------------------------------- */

#define WIN_ITERS 50000
#define WIN_STEPS_MAX 30000 /* 100 ms each: 3,000 s, inside the 3,600 s window */

static cynic_breaker_t *wb;
static _Atomic uint64_t win_progress; /* calls recorded so far, all threads */
static _Atomic bool win_done;
static _Atomic uint64_t win_steps; /* clock steps the mover made */
static uint64_t win_successes[THREADS], win_failures[THREADS];

static void *window_worker(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < WIN_ITERS; i++) {
    cynic_breaker_permit_t p;
    if (cynic_breaker_acquire(wb, &p, NULL) != 0) {
      atomic_store(&violation, true); /* it must never trip */
      continue;
    }
    if (i % 4 == 3) {
      cynic_breaker_record(wb, &p, CYNIC_OUTCOME_FAILURE, 0);
      win_failures[id]++;
    } else {
      cynic_breaker_record(wb, &p, CYNIC_OUTCOME_SUCCESS, 0);
      win_successes[id]++;
    }
    uint64_t done = atomic_fetch_add(&win_progress, 1) + 1;
    /* keep within 200 calls of the mover, so every run crosses boundaries
     * under load however the threads are scheduled (the mover always steps) */
    while (done > (atomic_load(&win_steps) + 4) * 50 && atomic_load(&win_steps) < WIN_STEPS_MAX)
      sched_yield();
  }
  return NULL;
}

/* Moves the clock 100 ms each time the workers have recorded 50 more calls
 * (step n once n * 50 are recorded; the workers wait 200 calls ahead),
 * and checks between steps that the window's count never goes down. */
static void *clock_mover(void *arg) {
  (void)arg;
  uint32_t prev_calls = 0;
  while (!atomic_load(&win_done)) {
    uint64_t steps = atomic_load(&win_steps);
    if (atomic_load(&win_progress) < (steps + 1) * 50 || steps >= WIN_STEPS_MAX) {
      sched_yield();
      continue;
    }
    fake_clock_advance(&fc, CYNIC_MS(100));
    atomic_fetch_add(&win_steps, 1);
    cynic_breaker_snapshot_t s;
    cynic_breaker_snapshot(wb, &s);
    if (s.window_calls < prev_calls)
      atomic_store(&violation, true);
    prev_calls = s.window_calls;
  }
  return NULL;
}

static void test_window_across_seconds(void **state) {
  (void)state;
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.faults = 0;
  cfg.window.kind = CYNIC_BREAKER_WINDOW_TIME;
  cfg.window.size = CYNIC_BREAKER_MAX_WINDOW_SECONDS; /* nothing leaves it during the run */
  cfg.window.min_calls = 100;
  cfg.window.failure_rate = 90; /* the workers fail 1 call in 4: never trips */
  fake_clock_set(&fc, CYNIC_SEC(1000) + CYNIC_MS(50));
  cfg.clock = fake_clock_bind(&fc);
  assert_int_equal(cynic_breaker_new(&cfg, &wb), 0);
  atomic_store(&violation, false);
  atomic_store(&win_progress, 0);
  atomic_store(&win_done, false);
  memset(win_successes, 0, sizeof(win_successes));
  memset(win_failures, 0, sizeof(win_failures));

  atomic_store(&win_steps, 0);
  pthread_t mover, th[THREADS];
  assert_int_equal(pthread_create(&mover, NULL, clock_mover, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, window_worker, (void *)(intptr_t)i), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  atomic_store(&win_done, true);
  pthread_join(mover, NULL);

  uint64_t succ = 0, fail = 0;
  for (int i = 0; i < THREADS; i++) {
    succ += win_successes[i];
    fail += win_failures[i];
  }
  assert_false(atomic_load(&violation));
  /* 200,000 calls, a step per 50: about 400 second boundaries crossed under load */
  assert_true(atomic_load(&win_steps) >= 3000);
  cynic_breaker_snapshot_t s;
  assert_int_equal(cynic_breaker_snapshot(wb, &s), 0);
  assert_int_equal(s.state, CYNIC_BREAKER_CLOSED);
  assert_int_equal(s.transitions, 0);
  assert_int_equal(s.successes, succ);
  assert_int_equal(s.failures, fail);
  assert_int_equal(s.window_calls, succ + fail); /* none lost, none twice */
  assert_true(s.failure_rate == (double)fail * 100.0 / (double)(succ + fail));
  /* the same once folded by a locked record, one second later */
  fake_clock_advance(&fc, CYNIC_SEC(1));
  cynic_breaker_permit_t p;
  assert_int_equal(cynic_breaker_acquire(wb, &p, NULL), 0);
  assert_int_equal(cynic_breaker_record(wb, &p, CYNIC_OUTCOME_SUCCESS, 0), 0);
  assert_int_equal(cynic_breaker_snapshot(wb, &s), 0);
  assert_int_equal(s.window_calls, succ + fail + 1);
  /* and the window empties once its seconds are over */
  fake_clock_advance(&fc, CYNIC_SEC(CYNIC_BREAKER_MAX_WINDOW_SECONDS));
  assert_int_equal(cynic_breaker_snapshot(wb, &s), 0);
  assert_int_equal(s.window_calls, 0);
  cynic_breaker_free(wb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_half_open_race),
      cmocka_unit_test(test_hammer_bucket),
      cmocka_unit_test(test_hammer_windows),
      cmocka_unit_test(test_window_across_seconds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
