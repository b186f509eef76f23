/*
 * examples/guarded_threads.c: the threaded client of issue 15, with a guard.
 *
 * Four threads call a flaky "profile" service on behalf of users, each call
 * through one shared cynic_guard_t built from:
 *   - a per-user rate limit (a cynic_ratetable_t keyed by e-mail address),
 *   - a 50 ms deadline for the whole call, retries included,
 *   - up to 3 attempts with jittered backoff, under a 20 % retry budget,
 *   - a bulkhead of 2 concurrent calls, waiting at most 100 ms for a slot,
 *   - a circuit breaker judging a failure-rate window.
 * The dependency runs on the real clock (the example takes about 2 s): it
 * answers in about 1 ms, fails 5 % of calls and hangs on 1 %, is down (every
 * call fails) from 0.6 s to 1.2 s, then recovers. Thread 0 plays a user
 * ("mallory") who calls as fast as the guard lets her.
 *
 * What it shows, and checks (exit 1 if any of it is false, so the test suite
 * holds it to its word; bounds on timing are generous, the machine is shared):
 *   - never more than 2 calls are in the dependency at once (bulkhead);
 *   - no guarded call lasts much past its deadline (50 ms + scheduling slack);
 *   - retries stay within 20 % of requests plus the reserve (budget);
 *   - mallory gets no more than her rate allows, others are not limited;
 *   - the breaker opens during the outage, so most requests made then fail
 *     fast without reaching the dependency, and it is closed at the end;
 *   - while the dependency is healthy (6 % of calls fail), at least 95 % of
 *     requests succeed: retries hide most failures and the breaker, judging
 *     a failure rate rather than counting faults, does not trip.
 * Its whole policy is the cynic_guard_config_t in main(): compare with the
 * 84 lines of hand-written composition the issue describes.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cynic/cynic.h"

#define THREADS 4
#define RUN_NS CYNIC_MS(2000)
#define OUTAGE_FROM CYNIC_MS(600)
#define OUTAGE_TO CYNIC_MS(1200)
#define TIMEOUT CYNIC_MS(50)
#define MALLORY_RATE 50.0 /* requests a second */
#define MALLORY_BURST 10.0

static uint64_t t0;
static uint64_t since_start(void) { return cynic_clock_monotonic(NULL) - t0; }

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / CYNIC_SEC(1)), (long)(ns % CYNIC_SEC(1))};
  nanosleep(&ts, NULL);
}

/* ---- the flaky dependency ----------------------------------------------- */

static _Atomic unsigned inside, max_inside;
static _Atomic unsigned calls, calls_in_outage;

typedef struct request {
  cynic_rng_t *rng; /* the calling thread's */
} request_t;

static int call_profile(void *arg, uint64_t timeout_ns) {
  request_t *r = arg;
  unsigned now_inside = atomic_fetch_add(&inside, 1) + 1;
  unsigned seen = atomic_load(&max_inside);
  while (now_inside > seen && !atomic_compare_exchange_weak(&max_inside, &seen, now_inside))
    ;
  atomic_fetch_add(&calls, 1);
  uint64_t t = since_start();
  bool down = t >= OUTAGE_FROM && t < OUTAGE_TO;
  if (down)
    atomic_fetch_add(&calls_in_outage, 1);
  uint64_t dice = cynic_rng_range(r->rng, 0, 99);
  int rc = 0;
  if (dice == 0) { /* hangs: we give up at the attempt's timeout */
    sleep_ns(timeout_ns < CYNIC_MS(30) ? timeout_ns : CYNIC_MS(30));
    rc = CYNIC_EDEADLINE;
  } else {
    sleep_ns(CYNIC_MS(1));
    if (down || dice <= 5)
      rc = CYNIC_EDEPENDENCY;
  }
  atomic_fetch_sub(&inside, 1);
  return rc;
}

/* ---- the clients ---------------------------------------------------------- */

static cynic_guard_t *guard;
static _Atomic uint64_t max_latency;
static _Atomic unsigned requests, ok, failed, limited, fast_failed, in_outage_requests;
static _Atomic unsigned mallory_granted;
static _Atomic unsigned healthy_requests, healthy_ok; /* away from the outage, not limited */

static void *client(void *arg) {
  int id = (int)(intptr_t)arg;
  cynic_rng_t rng;
  cynic_rng_seed(&rng, (uint64_t)id + 1);
  request_t req = {&rng};
  char key[64];
  unsigned n = 0;
  while (since_start() < RUN_NS) {
    if (id == 0)
      snprintf(key, sizeof key, "mallory@example.com");
    else /* a rotating population of users, longer keys than an address */
      snprintf(key, sizeof key, "user-%u-of-thread-%d@example.com", n++ % 16, id);
    uint64_t start = since_start();
    cynic_guard_call_t c;
    int rc = cynic_guard_call(guard, key, strlen(key), cynic_deadline_none(), call_profile, &req,
                              &c);
    uint64_t took = since_start() - start;
    uint64_t seen = atomic_load(&max_latency);
    while (took > seen && !atomic_compare_exchange_weak(&max_latency, &seen, took))
      ;
    atomic_fetch_add(&requests, 1);
    if (start >= OUTAGE_FROM + CYNIC_MS(100) && start < OUTAGE_TO)
      atomic_fetch_add(&in_outage_requests, 1);
    bool healthy = start < OUTAGE_FROM || start >= OUTAGE_TO + CYNIC_MS(200);
    if (healthy && rc != CYNIC_ELIMITED) {
      atomic_fetch_add(&healthy_requests, 1);
      if (rc == 0)
        atomic_fetch_add(&healthy_ok, 1);
    }
    if (rc == 0)
      atomic_fetch_add(&ok, 1);
    else if (rc == CYNIC_ELIMITED)
      atomic_fetch_add(&limited, 1);
    else if (c.attempts == 0)
      atomic_fetch_add(&fast_failed, 1);
    else
      atomic_fetch_add(&failed, 1);
    if (id == 0 && rc != CYNIC_ELIMITED)
      atomic_fetch_add(&mallory_granted, 1);
    if (id != 0 && rc == CYNIC_ELIMITED) {
      fprintf(stderr, "a well-behaved user was rate limited\n");
      return (void *)1;
    }
    if (id != 0)
      sleep_ns(CYNIC_MS(1)); /* users think between requests */
    else if (rc == CYNIC_ELIMITED)
      sleep_ns(CYNIC_US(200)); /* mallory barely waits (c.retry_after_ns says more) */
  }
  return NULL;
}

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t why, uint64_t at) {
  (void)arg;
  printf("t=%4llums breaker %s -> %s (%s)\n", (unsigned long long)((at - t0) / CYNIC_MS(1)),
         cynic_breaker_state_name(from), cynic_breaker_state_name(to),
         cynic_breaker_reason_name(why));
}

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "claim failed: " __VA_ARGS__);                                               \
      fputc('\n', stderr);                                                                         \
      ok_all = 0;                                                                                  \
    }                                                                                              \
  } while (0)

int main(void) {
  t0 = cynic_clock_monotonic(NULL);

  cynic_ratetable_config_t rc;
  cynic_ratetable_config_default(&rc);
  rc.rate_per_sec = MALLORY_RATE; /* per user */
  rc.burst = MALLORY_BURST;
  rc.capacity = 1024;
  cynic_budget_config_t uc;
  cynic_budget_config_default(&uc); /* 20 %, 10 s window */
  uc.min_retries_per_sec = 2;       /* reserve: 20 retries per window */
  cynic_bulkhead_config_t hc;
  cynic_bulkhead_config_default(&hc);
  hc.max_concurrent = 2;
  hc.max_pending = 8;
  cynic_breaker_config_t bc;
  cynic_breaker_config_default(&bc);
  bc.faults = 0;                               /* at ~1000 calls/s a bucket would need a */
  bc.window.kind = CYNIC_BREAKER_WINDOW_COUNT; /* leak faster than 50 faults/s: judge */
  bc.window.size = 50;                         /* a failure rate instead */
  bc.window.min_calls = 20;
  bc.window.failure_rate = 50;
  bc.open_ns = CYNIC_MS(100);
  bc.on_transition = on_transition;

  cynic_ratetable_t *table;
  cynic_budget_t *budget;
  cynic_bulkhead_t *bulkhead;
  cynic_breaker_t *breaker;
  if (cynic_ratetable_new(&rc, &table) || cynic_budget_new(&uc, &budget) ||
      cynic_bulkhead_new(&hc, &bulkhead) || cynic_breaker_new(&bc, &breaker))
    return 1;

  cynic_guard_config_t gc;
  cynic_guard_config_default(&gc);
  gc.ratetable = table;
  gc.timeout_ns = TIMEOUT;
  gc.max_attempts = 3;
  gc.backoff.base_ns = CYNIC_MS(2);
  gc.backoff.cap_ns = CYNIC_MS(20);
  gc.budget = budget;
  gc.bulkhead = bulkhead;
  gc.bulkhead_wait_ns = CYNIC_MS(100);
  gc.breaker = breaker;
  if (cynic_guard_new(&gc, &guard) != 0)
    return 1;

  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&th[i], NULL, client, (void *)(intptr_t)i) != 0)
      return 1;
  int ok_all = 1;
  for (int i = 0; i < THREADS; i++) {
    void *res;
    pthread_join(th[i], &res);
    if (res != NULL)
      ok_all = 0;
  }
  uint64_t elapsed = since_start();

  cynic_budget_snapshot_t us;
  cynic_budget_snapshot(budget, &us);
  cynic_bulkhead_snapshot_t hs;
  cynic_bulkhead_snapshot(bulkhead, &hs);
  cynic_breaker_snapshot_t ks;
  cynic_breaker_snapshot(breaker, &ks);

  printf("\n%u requests: %u ok, %u failed after trying, %u failed fast, %u rate limited\n",
         atomic_load(&requests), atomic_load(&ok), atomic_load(&failed),
         atomic_load(&fast_failed), atomic_load(&limited));
  printf("dependency saw %u calls (%u during the outage), at most %u at once\n",
         atomic_load(&calls), atomic_load(&calls_in_outage), atomic_load(&max_inside));
  printf("retries: %llu granted, %llu refused by the budget, for %llu requests\n",
         (unsigned long long)us.total_withdrawals, (unsigned long long)us.total_exhausted,
         (unsigned long long)us.total_deposits);
  printf("bulkhead: %llu turned away; slowest call %llu ms; breaker now %s\n\n",
         (unsigned long long)hs.rejected,
         (unsigned long long)(atomic_load(&max_latency) / CYNIC_MS(1)),
         cynic_breaker_state_name(ks.state));

  CHECK(atomic_load(&max_inside) <= 2, "%u calls in the dependency at once",
        atomic_load(&max_inside));
  CHECK(atomic_load(&max_latency) <= TIMEOUT + CYNIC_MS(500), "a call took %llu ms",
        (unsigned long long)(atomic_load(&max_latency) / CYNIC_MS(1)));
  /* The run is shorter than the budget's window: nothing ages out. */
  CHECK(us.total_withdrawals <= us.total_deposits * 20 / 100 + us.reserve,
        "%llu retries for %llu requests", (unsigned long long)us.total_withdrawals,
        (unsigned long long)us.total_deposits);
  double mallory_max = MALLORY_RATE * (double)elapsed / 1e9 + MALLORY_BURST + 1;
  CHECK(atomic_load(&mallory_granted) <= mallory_max, "mallory got %u", atomic_load(&mallory_granted));
  CHECK(atomic_load(&limited) > 0, "mallory was never limited");
  CHECK(ks.transitions >= 1 && ks.state == CYNIC_BREAKER_CLOSED, "breaker %s after %llu transitions",
        cynic_breaker_state_name(ks.state), (unsigned long long)ks.transitions);
  CHECK(atomic_load(&calls_in_outage) < atomic_load(&in_outage_requests),
        "%u calls reached the dependency for %u requests in the outage",
        atomic_load(&calls_in_outage), atomic_load(&in_outage_requests));
  /* Healthy: 6 % of calls fail, and retries hide most of them; the breaker
   * judging a rate does not trip on that. */
  CHECK(atomic_load(&healthy_ok) >= atomic_load(&healthy_requests) * 95 / 100,
        "only %u of %u ok while healthy", atomic_load(&healthy_ok),
        atomic_load(&healthy_requests));

  cynic_guard_free(guard);
  cynic_breaker_free(breaker);
  cynic_bulkhead_free(bulkhead);
  cynic_budget_free(budget);
  cynic_ratetable_free(table);
  return ok_all ? 0 : 1;
}
