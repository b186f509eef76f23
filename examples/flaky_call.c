/*
 * examples/flaky_call.c: wrapping a call to a flaky dependency in a circuit
 * breaker, a jittered backoff and a retry budget.
 *
 * A simulated client sends a request every 10 ms (100 a second) for 60 s to
 * an "inventory" service that is healthy (it still fails 1 call in 50, as
 * busy services do), then fails every call from t=10 s to t=40 s, then
 * recovers. The clock is simulated (an injected clock the program moves), so
 * the minute runs in milliseconds and the output is the same on every run.
 *
 * What it shows, and checks (the program exits 1 if any of it is false, so
 * the test suite holds it to its word):
 *   - the breaker (the library's defaults: busy traffic judged by its failure
 *     rate) never trips on the healthy service's 2 % of errors, while a
 *     bucket alone of 5 faults leaking one a second, fed the same calls, does
 *     (2 faults a second outpace its leak);
 *   - the breaker trips soon after the outage starts and calls then fail fast,
 *     without touching the dependency: only probes reach it during the outage;
 *   - retries are jittered and the budget caps them to a share of traffic, so
 *     the failing dependency never sees a retry storm;
 *   - after recovery a probe succeeds and the breaker closes again.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cynic/cynic.h"

static uint64_t sim_now; /* the simulated monotonic clock, in ns */

static uint64_t read_sim_clock(void *arg) {
  (void)arg;
  return sim_now;
}

/* The dependency: fails 1 call in 50 when healthy, every call while the
 * outage lasts. */
static unsigned dependency_calls, dependency_calls_in_outage;
static bool in_outage(uint64_t t) { return t >= CYNIC_SEC(10) && t < CYNIC_SEC(40); }
static bool call_inventory(void) {
  dependency_calls++;
  sim_now += CYNIC_MS(5); /* the call takes 5 ms */
  if (in_outage(sim_now)) {
    dependency_calls_in_outage++;
    return false;
  }
  return dependency_calls % 50 != 0;
}

static unsigned trips, healthy_trips, bucket_healthy_trips;
static void log_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                           cynic_breaker_reason_t reason, uint64_t at_ns) {
  (void)arg;
  if (to == CYNIC_BREAKER_OPEN) {
    trips++;
    healthy_trips += !in_outage(at_ns);
  }
  printf("t=%6.3fs breaker %s -> %s (%s)\n", (double)at_ns / 1e9, cynic_breaker_state_name(from),
         cynic_breaker_state_name(to), cynic_breaker_reason_name(reason));
}

static void count_bucket_trip(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                              cynic_breaker_reason_t reason, uint64_t at_ns) {
  (void)arg, (void)from, (void)reason, (void)at_ns;
  bucket_healthy_trips += to == CYNIC_BREAKER_OPEN;
}

int main(void) {
  cynic_clock_t clock = {read_sim_clock, NULL};

  cynic_breaker_config_t bc;
  cynic_breaker_config_default(&bc); /* 50 % failures in the window trip it */
  bc.clock = clock;
  bc.window.size = 2;             /* the last 2 s: trips about 1 s into an outage */
  bc.open_ns = CYNIC_SEC(2);      /* then probe after 2 s, 4 s, 8 s ...     */
  bc.open_multiplier = 2;
  bc.open_max_ns = CYNIC_SEC(8); /* ... at most 8 s apart                  */
  bc.on_transition = log_transition;
  cynic_breaker_t *breaker;
  if (cynic_breaker_new(&bc, &breaker) != 0)
    return 1;

  /* For comparison only: the bucket alone, 5 faults leaking one a second,
   * fed the same outcomes in the healthy phase; it gates nothing. */
  cynic_breaker_config_t sc;
  cynic_breaker_config_default(&sc);
  sc.clock = clock;
  sc.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  sc.faults = 5;
  sc.leak_ns = CYNIC_SEC(1);
  sc.on_transition = count_bucket_trip;
  cynic_breaker_t *bucket_only;
  if (cynic_breaker_new(&sc, &bucket_only) != 0)
    return 1;

  cynic_budget_config_t gc;
  cynic_budget_config_default(&gc);
  gc.clock = clock;
  gc.retry_percent = 20;     /* retries: at most 20% of requests ...  */
  gc.min_retries_per_sec = 1; /* ... plus a reserve of 1/s over the ttl */
  cynic_budget_t *budget;
  if (cynic_budget_new(&gc, &budget) != 0)
    return 1;

  cynic_backoff_config_t kc;
  cynic_backoff_config_default(&kc); /* full jitter, 50 ms .. 1 s */
  kc.seed = 7;                       /* reproducible output for the docs */

  unsigned requests = 0, requests_in_outage = 0, ok = 0, failed_fast = 0, failed = 0, retries = 0, refused_retries = 0;
  for (uint64_t next = 0; next < CYNIC_SEC(60); next += CYNIC_MS(10)) {
    if (sim_now < next)
      sim_now = next;
    requests++;
    requests_in_outage += in_outage(sim_now);
    cynic_budget_deposit(budget);

    cynic_backoff_t backoff;
    cynic_backoff_init(&backoff, &kc);
    kc.seed++; /* each request its own jitter stream */
    for (unsigned attempt = 0;; attempt++) {
      cynic_breaker_permit_t permit;
      if (cynic_breaker_acquire(breaker, &permit, NULL) == CYNIC_EOPEN) {
        failed_fast++; /* fail fast: the dependency is not even asked */
        break;
      }
      bool worked = call_inventory();
      cynic_breaker_permit_t shadow;
      if (sim_now < CYNIC_SEC(10) && cynic_breaker_acquire(bucket_only, &shadow, NULL) == 0) {
        cynic_breaker_record(bucket_only, &shadow,
                             worked ? CYNIC_OUTCOME_SUCCESS : CYNIC_OUTCOME_FAILURE, 0);
      }
      if (worked) {
        cynic_breaker_record(breaker, &permit, CYNIC_OUTCOME_SUCCESS, 0);
        ok++;
        break;
      }
      cynic_breaker_record(breaker, &permit, CYNIC_OUTCOME_FAILURE, 0);
      if (attempt == 2 || cynic_budget_withdraw(budget) != 0) {
        refused_retries += attempt < 2;
        failed++;
        break;
      }
      retries++;
      sim_now += cynic_backoff_next(&backoff); /* wait, jittered, then retry */
    }
  }

  cynic_breaker_snapshot_t snap;
  cynic_breaker_snapshot(breaker, &snap);
  printf("\n%u requests: %u ok, %u failed after trying, %u failed fast\n", requests, ok, failed,
         failed_fast);
  printf("dependency saw %u calls, %u of them during the 30 s outage (%u requests were made "
         "then)\n",
         dependency_calls, dependency_calls_in_outage, requests_in_outage);
  printf("retries: %u granted, %u refused by the budget; breaker tripped %u times, now %s\n",
         retries, refused_retries, trips, cynic_breaker_state_name(snap.state));
  printf("healthy phase (2%% errors): the breaker tripped %u times; a bucket alone of 5 faults "
         "leaking 1/s, fed the same calls in the first 10 s, tripped %u times\n",
         healthy_trips, bucket_healthy_trips);

  int bad = 0;
  if (trips == 0)
    bad = printf("FAIL: the breaker never tripped\n");
  if (healthy_trips != 0)
    bad = printf("FAIL: the breaker tripped %u times on a healthy service\n", healthy_trips);
  if (bucket_healthy_trips == 0)
    bad = printf("FAIL: the bucket alone did not trip on 2 faults/s (the comparison is wrong)\n");
  if (dependency_calls_in_outage * 10 > requests_in_outage) /* probes only, not every call */
    bad = printf("FAIL: %u calls hit the failing dependency\n", dependency_calls_in_outage);
  if (retries > requests / 5 + 10) /* 20% + the reserve over one ttl */
    bad = printf("FAIL: %u retries exceed the budget\n", retries);
  /* 30 s healthy at 100 requests/s, 98 % of calls working (retries save most
   * of the rest): about 3,000 requests that should succeed */
  if (snap.state != CYNIC_BREAKER_CLOSED || ok < 2850)
    bad = printf("FAIL: did not recover (%s, %u ok)\n", cynic_breaker_state_name(snap.state), ok);
  cynic_breaker_free(breaker);
  cynic_breaker_free(bucket_only);
  cynic_budget_free(budget);
  return bad ? 1 : 0;
}
