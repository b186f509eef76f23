/*
 * bench/bench_lib.c: nanoseconds per operation of libcynic's hot paths, next
 * to the physical baseline of the same loop doing only a pair of atomic
 * increments, measured in the same run. Never part of the pass/fail suite.
 *
 *   bench_lib [iterations]       default 20,000,000 per thread
 *
 * Each figure is the best of 5 runs (the least disturbed by the rest of the
 * machine). "2 threads" is two threads hammering ONE shared instance; its
 * figure is wall time divided by the iterations of one thread, i.e. what a
 * caller on one core pays while another core does the same.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cynic/cynic.h"

#define RUNS 5
#define KEYS 10000

static _Atomic uint64_t base_a, base_b;
static cynic_breaker_t *breaker, *breaker_cached, *breaker_bucket;
static cynic_bulkhead_t *bulkhead;
static cynic_tokens_t *tokens_real, *tokens_cached;
static cynic_ratetable_t *table;
static uint32_t keys[KEYS];
static volatile uint64_t sink;
/* The composed guard and the same components for the by-hand composition. */
static cynic_guard_t *guard;
static cynic_tokens_t *g_tokens;
static cynic_budget_t *g_budget;
static cynic_bulkhead_t *g_bulkhead, *wait_bulkhead, *wait_bulkhead4, *wait_bulkhead1;
static cynic_breaker_t *g_breaker;

/* An event loop reads the clock once per tick (uv_now); this clock returns
 * such a cached value, so the figure is the pattern's own cost. */
static _Atomic uint64_t cached_now;
static uint64_t read_cached(void *arg) {
  (void)arg;
  return atomic_load_explicit(&cached_now, memory_order_relaxed);
}

typedef void (*op_fn)(uint64_t i);

static void op_baseline(uint64_t i) {
  (void)i;
  atomic_fetch_add(&base_a, 1);
  atomic_fetch_add(&base_b, 1);
}

static void breaker_call(cynic_breaker_t *b) {
  cynic_breaker_permit_t p;
  if (cynic_breaker_acquire(b, &p, NULL) == 0)
    cynic_breaker_record(b, &p, CYNIC_OUTCOME_SUCCESS, 0);
}

/* The default config (a TIME window: a coarse clock read and a CAS per success). */
static void op_breaker(uint64_t i) {
  (void)i;
  breaker_call(breaker);
}

/* The default config on the loop-cached clock. */
static void op_breaker_cached(uint64_t i) {
  (void)i;
  breaker_call(breaker_cached);
}

/* The bucket alone (window off): a success is one atomic increment. */
static void op_breaker_bucket(uint64_t i) {
  (void)i;
  breaker_call(breaker_bucket);
}

static void op_bulkhead(uint64_t i) {
  (void)i;
  if (cynic_bulkhead_try_enter(bulkhead) == 0)
    cynic_bulkhead_leave(bulkhead);
}

static void op_tokens_real(uint64_t i) {
  (void)i;
  sink += (uint64_t)cynic_tokens_take(tokens_real, 1, NULL);
}

static void op_tokens_cached(uint64_t i) {
  (void)i;
  sink += (uint64_t)cynic_tokens_take(tokens_cached, 1, NULL);
}

static void op_table(uint64_t i) {
  uint32_t k = keys[(i * 2654435761u) % KEYS];
  sink += (uint64_t)cynic_ratetable_take(table, &k, sizeof k, 1, NULL);
}

/* The guarded dependency: as cheap as possible, so the figure is the guard's. */
static int dependency(void *arg, uint64_t timeout_ns) {
  (void)arg;
  sink += timeout_ns & 1;
  return 0;
}

static const cynic_clock_t cached_clock = {read_cached, NULL};

/* rate limit -> deadline -> budget deposit -> bulkhead -> breaker -> call ->
 * record -> leave: what the guard does on a successful first attempt. */
static void op_guard(uint64_t i) {
  (void)i;
  sink += (uint64_t)cynic_guard_call(guard, NULL, 0, cynic_deadline_none(), dependency, NULL, NULL);
}

/* The same, written by hand by a caller who knows the order. */
static void op_by_hand(uint64_t i) {
  (void)i;
  if (cynic_tokens_take(g_tokens, 1, NULL) != 0)
    return;
  uint64_t now = cynic_clock_now(&cached_clock);
  cynic_deadline_t d = cynic_deadline_in(now, CYNIC_SEC(1));
  cynic_budget_deposit(g_budget);
  if (cynic_deadline_expired(d, now) || cynic_bulkhead_try_enter(g_bulkhead) != 0)
    return;
  cynic_breaker_permit_t p;
  if (cynic_breaker_acquire(g_breaker, &p, NULL) != 0) {
    cynic_bulkhead_leave(g_bulkhead);
    return;
  }
  int rc = dependency(NULL, cynic_deadline_left(d, now));
  uint64_t end = cynic_clock_now(&cached_clock);
  cynic_breaker_record(g_breaker, &p, rc == 0 ? CYNIC_OUTCOME_SUCCESS : CYNIC_OUTCOME_FAILURE,
                       end - now);
  cynic_bulkhead_leave(g_bulkhead);
}

static void op_bulkhead_wait(uint64_t i) {
  (void)i;
  if (cynic_bulkhead_enter_wait(wait_bulkhead, CYNIC_SEC(10)) == 0)
    cynic_bulkhead_leave(wait_bulkhead);
}

/* Two slots for four threads: half of them wait, every time. */
static void op_bulkhead_wait4(uint64_t i) {
  (void)i;
  if (cynic_bulkhead_enter_wait(wait_bulkhead4, CYNIC_SEC(10)) == 0)
    cynic_bulkhead_leave(wait_bulkhead4);
}

/* One slot for four threads, held for a little work: most callers wait, so
 * this is the cost of a real hand-over (futex sleep and wake-up). */
static void op_bulkhead_wait_held(uint64_t i) {
  (void)i;
  if (cynic_bulkhead_enter_wait(wait_bulkhead1, CYNIC_SEC(10)) == 0) {
    for (int k = 0; k < 50; k++)
      sink += (uint64_t)k;
    cynic_bulkhead_leave(wait_bulkhead1);
  }
}

static void op_held_alone(uint64_t i) {
  (void)i;
  for (int k = 0; k < 50; k++)
    sink += (uint64_t)k;
}

typedef struct {
  op_fn op;
  uint64_t iters;
  uint64_t offset;
  pthread_barrier_t *start;
} worker_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg) {
  worker_t *w = arg;
  if (w->start)
    pthread_barrier_wait(w->start);
  for (uint64_t i = 0; i < w->iters; i++)
    w->op(i + w->offset);
  return NULL;
}

/* Best-of-RUNS nanoseconds per operation with `threads` threads (1..4). */
static double measure(op_fn op, uint64_t iters, int threads) {
  double best = 1e30;
  for (int r = 0; r < RUNS; r++) {
    uint64_t t0, t1;
    if (threads == 1) {
      worker_t w = {op, iters, 0, NULL};
      t0 = now_ns();
      worker(&w);
      t1 = now_ns();
    } else {
      pthread_barrier_t bar;
      pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
      pthread_t th[4];
      worker_t w[4];
      for (int t = 0; t < threads; t++) {
        w[t] = (worker_t){op, iters, (uint64_t)t * iters, &bar};
        pthread_create(&th[t], NULL, worker, &w[t]);
      }
      t0 = now_ns();
      pthread_barrier_wait(&bar);
      for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
      t1 = now_ns();
      pthread_barrier_destroy(&bar);
    }
    double ns = (double)(t1 - t0) / (double)iters;
    if (ns < best)
      best = ns;
  }
  return best;
}

static void die(const char *what, int err) {
  fprintf(stderr, "bench_lib: %s: %s\n", what, cynic_strerror(err));
  exit(1);
}

static void setup(void) {
  int err;
  cynic_breaker_config_t bc;
  cynic_breaker_config_default(&bc);
  if ((err = cynic_breaker_new(&bc, &breaker)) != 0)
    die("breaker", err);
  cynic_breaker_config_t bcc = bc;
  bcc.clock.now = read_cached;
  if ((err = cynic_breaker_new(&bcc, &breaker_cached)) != 0)
    die("breaker", err);
  cynic_breaker_config_t bcb = bc;
  bcb.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  if ((err = cynic_breaker_new(&bcb, &breaker_bucket)) != 0)
    die("breaker", err);

  cynic_bulkhead_config_t hc;
  cynic_bulkhead_config_default(&hc);
  if ((err = cynic_bulkhead_new(&hc, &bulkhead)) != 0)
    die("bulkhead", err);

  /* Rates high enough that takes are granted: the bench measures the
   * decision, not the waiting. */
  cynic_tokens_config_t tc;
  cynic_tokens_config_default(&tc);
  tc.rate_per_sec = 1e10;
  tc.burst = 1e9;
  if ((err = cynic_tokens_new(&tc, &tokens_real)) != 0)
    die("tokens", err);
  tc.clock.now = read_cached;
  if ((err = cynic_tokens_new(&tc, &tokens_cached)) != 0)
    die("tokens", err);

  cynic_ratetable_config_t rc;
  cynic_ratetable_config_default(&rc);
  rc.rate_per_sec = 1e10;
  rc.burst = 1e9;
  rc.capacity = KEYS;
  rc.seed = 42;
  rc.clock.now = read_cached;
  if ((err = cynic_ratetable_new(&rc, &table)) != 0)
    die("ratetable", err);
  for (uint32_t k = 0; k < KEYS; k++) {
    keys[k] = 0x0a000000u + k; /* 10.0.x.y: 10,000 client addresses */
    cynic_ratetable_take(table, &keys[k], sizeof keys[k], 1, NULL);
  }

  /* The guard's components, every one in the path, on the loop-cached clock. */
  tc.clock = cached_clock;
  if ((err = cynic_tokens_new(&tc, &g_tokens)) != 0)
    die("tokens", err);
  cynic_budget_config_t uc;
  cynic_budget_config_default(&uc);
  uc.clock = cached_clock;
  if ((err = cynic_budget_new(&uc, &g_budget)) != 0)
    die("budget", err);
  if ((err = cynic_bulkhead_new(&hc, &g_bulkhead)) != 0)
    die("bulkhead", err);
  bc.clock = cached_clock;
  if ((err = cynic_breaker_new(&bc, &g_breaker)) != 0)
    die("breaker", err);
  cynic_guard_config_t gc;
  cynic_guard_config_default(&gc);
  gc.clock = cached_clock;
  gc.tokens = g_tokens;
  gc.timeout_ns = CYNIC_SEC(1);
  gc.budget = g_budget;
  gc.bulkhead = g_bulkhead;
  gc.breaker = g_breaker;
  if ((err = cynic_guard_new(&gc, &guard)) != 0)
    die("guard", err);

  if ((err = cynic_bulkhead_new(&hc, &wait_bulkhead)) != 0)
    die("bulkhead", err);
  hc.max_concurrent = 2;
  hc.max_pending = 4;
  if ((err = cynic_bulkhead_new(&hc, &wait_bulkhead4)) != 0)
    die("bulkhead", err);
  hc.max_concurrent = 1;
  if ((err = cynic_bulkhead_new(&hc, &wait_bulkhead1)) != 0)
    die("bulkhead", err);
}

int main(int argc, char **argv) {
  uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000u;
  if (iters == 0)
    iters = 20000000u;
  atomic_store(&cached_now, now_ns());
  setup();

  static const struct {
    const char *name;
    op_fn op;
    uint64_t divisor; /* slower cases run fewer iterations */
  } cases[] = {
      {"breaker acquire+record (default)", op_breaker, 1},
      {"breaker, default, loop-cached clock", op_breaker_cached, 1},
      {"breaker, bucket only (window NONE)", op_breaker_bucket, 1},
      {"bulkhead enter+leave", op_bulkhead, 1},
      {"token bucket take (CLOCK_MONOTONIC)", op_tokens_real, 2},
      {"token bucket take (loop-cached clock)", op_tokens_cached, 1},
      {"keyed table take, 10,000 keys", op_table, 4},
  };
  double base1 = measure(op_baseline, iters, 1);
  double base2 = measure(op_baseline, iters, 2);

  printf("libcynic %s: ns per operation, best of %d runs, %llu iterations per thread\n",
         cynic_version(), RUNS, (unsigned long long)iters);
  printf("baseline: the same loop doing only a pair of atomic increments "
         "(1 thread %.2f ns, 2 threads sharing them %.2f ns)\n\n",
         base1, base2);
  printf("%-40s %10s %8s %12s %8s\n", "operation", "1 thread", "x base", "2 threads", "x base");
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint64_t n = iters / cases[c].divisor;
    double t1 = measure(cases[c].op, n, 1);
    double t2 = measure(cases[c].op, n, 2);
    printf("%-40s %8.2f ns %7.2fx %10.2f ns %7.2fx\n", cases[c].name, t1, t1 / base1, t2,
           t2 / base2);
  }

  /* The composed guard against the same components called by hand, same run. */
  /* Interleaved rounds, so a noisy neighbour hurts both sides alike; the
   * ratio of each round is printed too, to show the spread. */
  uint64_t gn = iters / 4;
  double hand1 = 1e30, guard1 = 1e30, hand2 = 1e30, guard2 = 1e30;
  double rmin1 = 1e30, rmax1 = 0, rmin2 = 1e30, rmax2 = 0;
  for (int round = 0; round < 3; round++) {
    double h1 = measure(op_by_hand, gn, 1), g1 = measure(op_guard, gn, 1);
    double h2 = measure(op_by_hand, gn, 2), g2 = measure(op_guard, gn, 2);
    hand1 = h1 < hand1 ? h1 : hand1;
    guard1 = g1 < guard1 ? g1 : guard1;
    hand2 = h2 < hand2 ? h2 : hand2;
    guard2 = g2 < guard2 ? g2 : guard2;
    rmin1 = g1 / h1 < rmin1 ? g1 / h1 : rmin1;
    rmax1 = g1 / h1 > rmax1 ? g1 / h1 : rmax1;
    rmin2 = g2 / h2 < rmin2 ? g2 / h2 : rmin2;
    rmax2 = g2 / h2 > rmax2 ? g2 / h2 : rmax2;
  }
  printf("\n%-40s %10s %8s %12s %8s\n", "composition (every component)", "1 thread", "x base",
         "2 threads", "x base");
  printf("%-40s %8.2f ns %7.2fx %10.2f ns %7.2fx\n", "by hand", hand1, hand1 / base1, hand2,
         hand2 / base2);
  printf("%-40s %8.2f ns %7.2fx %10.2f ns %7.2fx\n", "cynic_guard_call", guard1, guard1 / base1,
         guard2, guard2 / base2);
  printf("%-40s %10.3f %21.3f   (best against best; target: within 1.10)\n",
         "guard / by hand", guard1 / hand1, guard2 / hand2);
  printf("%-40s %4.2f..%4.2f %15.2f..%4.2f\n", "  per round (3 rounds)", rmin1, rmax1, rmin2,
         rmax2);

  /* The blocking bulkhead: uncontended, and 4 threads on 2 slots. */
  double try1 = measure(op_bulkhead, iters, 1);
  double wait1 = measure(op_bulkhead_wait, iters, 1);
  double wait4 = measure(op_bulkhead_wait4, iters / 10, 4);
  printf("\n%-40s %8.2f ns %7.2fx   (try_enter+leave %.2f ns: x%.2f)\n",
         "bulkhead enter_wait+leave, 1 thread", wait1, wait1 / base1, try1, wait1 / try1);
  cynic_bulkhead_snapshot_t ws;
  cynic_bulkhead_snapshot(wait_bulkhead4, &ws);
  printf("%-40s %8.2f ns %7.2fx   (wall time / calls of one thread; %.1f%% of calls had to "
         "wait)\n",
         "enter_wait+leave, 4 threads, 2 slots", wait4, wait4 / base2,
         100.0 * (double)ws.queued / (double)(ws.entered + ws.promoted));

  double held_alone = measure(op_held_alone, iters / 100, 1);
  double held4 = measure(op_bulkhead_wait_held, iters / 100, 4);
  cynic_bulkhead_snapshot(wait_bulkhead1, &ws);
  printf("%-40s %8.2f ns %7.2fx   (4 x the work alone, %.2f ns, is the floor; %.1f%% of "
         "calls waited)\n",
         "enter_wait+work+leave, 4 threads, 1 slot", held4, held4 / base2, 4 * held_alone,
         100.0 * (double)ws.queued / (double)(ws.entered + ws.promoted));

  cynic_breaker_snapshot_t snap;
  cynic_breaker_snapshot(breaker, &snap);
  printf("\nbreaker after the run: %s (sanity: it must still be closed)\n",
         cynic_breaker_state_name(snap.state));
  cynic_breaker_free(breaker);
  cynic_breaker_free(breaker_cached);
  cynic_breaker_free(breaker_bucket);
  cynic_bulkhead_free(bulkhead);
  cynic_tokens_free(tokens_real);
  cynic_tokens_free(tokens_cached);
  cynic_ratetable_free(table);
  cynic_guard_free(guard);
  cynic_breaker_free(g_breaker);
  cynic_bulkhead_free(g_bulkhead);
  cynic_bulkhead_free(wait_bulkhead);
  cynic_bulkhead_free(wait_bulkhead4);
  cynic_bulkhead_free(wait_bulkhead1);
  cynic_budget_free(g_budget);
  cynic_tokens_free(g_tokens);
  return sink == UINT64_MAX; /* keep the optimiser honest */
}
