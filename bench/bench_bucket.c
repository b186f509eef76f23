/*
 * bench/bench_bucket.c: how long a leaky bucket alone takes to trip on
 * healthy traffic, by its leak. The real breaker (window off, 5 faults) on a
 * simulated clock is fed faults at random (a Poisson stream of 1 fault a
 * second, e.g. 100 calls/s at 1 % errors); each run ends at the first trip.
 * Prints the median time to a trip over RUNS runs for each leak. The figures
 * back the sizing table in docs/patterns.md. Never part of the pass/fail
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
static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at_ns) {
  (void)arg, (void)from, (void)reason, (void)at_ns;
  tripped |= to == CYNIC_BREAKER_OPEN;
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
  return 0;
}
