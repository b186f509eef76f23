/*
 * bench/bench_bucket.c: how long a leaky bucket alone takes to trip on
 * healthy traffic, by its leak. The real breaker (window off, 5 faults) on a
 * simulated clock is fed faults at random (a Poisson stream of 1 fault a
 * second, e.g. 100 calls/s at 1 % errors); each run ends at the first trip.
 * Prints the median time to a trip over RUNS runs for each leak. The figures
 * back the sizing table in docs/patterns.md.
 *
 * Then the default config (the window judges busy traffic, the bucket quiet
 * traffic) on a simulated day of calls arriving at random at a few calls a
 * second, each failing with a fixed probability: how many times it opens on
 * healthy traffic, where the bucket judges. Never part of the pass/fail
 * suite; a fixed seed gives the same figures on every run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cynic/cynic.h"

#define RUNS 41
#define HORIZON_S (7.0 * 86400.0) /* a run that has not tripped in a week stops */

static uint64_t sim_now;
static uint64_t read_sim(void *arg) {
  (void)arg;
  return sim_now;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static double uniform(void) { /* (0, 1] */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((double)(rng >> 11) + 1.0) / 9007199254740992.0;
}

static bool tripped;
static unsigned trips_by_bucket, trips_by_rate;
static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at_ns) {
  (void)arg, (void)from, (void)at_ns;
  tripped |= to == CYNIC_BREAKER_OPEN;
  trips_by_bucket += to == CYNIC_BREAKER_OPEN && reason == CYNIC_BREAKER_REASON_FAULTS;
  trips_by_rate += to == CYNIC_BREAKER_OPEN && reason == CYNIC_BREAKER_REASON_FAILURE_RATE;
}

/* A simulated day of the default config: calls at random, `per_s` a second,
 * each failing with probability `err`; probes fail the same way. */
static void default_day(double per_s, double err) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.clock.now = read_sim;
  cfg.on_transition = on_transition;
  cynic_breaker_t *b;
  if (cynic_breaker_new(&cfg, &b) != 0)
    exit(1);
  trips_by_bucket = trips_by_rate = 0;
  for (double t = 0; t < 86400.0;) {
    t += -log(uniform()) / per_s;
    sim_now = CYNIC_SEC(1) + (uint64_t)(t * 1e9);
    cynic_breaker_permit_t p;
    if (cynic_breaker_acquire(b, &p, NULL) == 0)
      cynic_breaker_record(b, &p, uniform() <= err ? CYNIC_OUTCOME_FAILURE : CYNIC_OUTCOME_SUCCESS,
                           0);
  }
  cynic_breaker_free(b);
}

/* Seconds to the first trip, or a negative number past the horizon. */
static double time_to_trip(uint64_t leak_ns, double faults_per_s) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cfg.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  cfg.faults = 5;
  cfg.leak_ns = leak_ns;
  cfg.clock.now = read_sim;
  cfg.on_transition = on_transition;
  cynic_breaker_t *b;
  if (cynic_breaker_new(&cfg, &b) != 0)
    exit(1);
  sim_now = CYNIC_SEC(1);
  tripped = false;
  double t = 0;
  while (!tripped && t < HORIZON_S) {
    t += -log(uniform()) / faults_per_s; /* exponential gaps */
    sim_now = CYNIC_SEC(1) + (uint64_t)(t * 1e9);
    cynic_breaker_permit_t p;
    if (cynic_breaker_acquire(b, &p, NULL) == 0)
      cynic_breaker_record(b, &p, CYNIC_OUTCOME_FAILURE, 0);
  }
  cynic_breaker_free(b);
  return tripped ? t : -1.0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  x = x < 0 ? INFINITY : x;
  y = y < 0 ? INFINITY : y;
  return (x > y) - (x < y);
}

int main(void) {
  static const uint64_t leaks[] = {CYNIC_SEC(1), CYNIC_MS(500), CYNIC_MS(200), CYNIC_MS(100)};
  printf("bucket of 5 faults alone, 1 random fault/s: time to the first trip, %d runs each\n",
         RUNS);
  printf("%-8s %-12s %14s %9s\n", "leak ms", "leaks/s", "median", "no trip");
  for (size_t i = 0; i < sizeof leaks / sizeof leaks[0]; i++) {
    double t[RUNS];
    int never = 0;
    for (int r = 0; r < RUNS; r++) {
      t[r] = time_to_trip(leaks[i], 1.0);
      never += t[r] < 0;
    }
    qsort(t, RUNS, sizeof t[0], cmp);
    double m = t[RUNS / 2];
    char med[32];
    if (m < 0)
      snprintf(med, sizeof med, "> 1 week");
    else if (m < 120)
      snprintf(med, sizeof med, "%.1f s", m);
    else if (m < 7200)
      snprintf(med, sizeof med, "%.1f min", m / 60);
    else
      snprintf(med, sizeof med, "%.1f h", m / 3600);
    printf("%-8.0f %-12.1f %14s %6d/%d\n", (double)leaks[i] / 1e6, 1e9 / (double)leaks[i], med,
           never, RUNS);
  }

  static const double rates[] = {0.2, 1, 2, 3, 4, 6, 8, 100};
  static const double errs[] = {0.001, 0.01, 0.025, 0.05};
  printf("\ndefault config, a simulated day of calls at random: trips (bucket + rate)\n");
  printf("%-10s", "calls/s");
  for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++)
    printf(" %12.1f%%", errs[e] * 100);
  printf("\n");
  for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
    printf("%-10.1f", rates[r]);
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
      default_day(rates[r], errs[e]);
      char cell[32];
      snprintf(cell, sizeof cell, "%u + %u", trips_by_bucket, trips_by_rate);
      printf(" %13s", cell);
    }
    printf("\n");
  }
  return 0;
}
