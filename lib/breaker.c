/*
 * lib/breaker.c: the Circuit Breaker ("Release It!", ch. 5) with Nygard's leaky
 * bucket fault counter and a resilience4j-style failure-rate window.
 *
 * Layout of the hot state: one atomic 64-bit word holds
 *   bits 0..2   the state,
 *   bits 3..18  probes in flight (HALF_OPEN only),
 *   bits 19..63 the generation, bumped by every transition.
 * Packing them lets a half-open acquire admit a probe with one CAS that also
 * proves the state and generation did not change under it, and lets a closed
 * acquire decide with one load. Every transition is made under `mu` with a plain
 * release store of a new word: a racing lock-free CAS on the old word then fails
 * and re-reads, so admission stays exact.
 *
 * Everything else (bucket, window, probe successes, interval) is guarded by `mu`.
 * The totals are relaxed atomics so the success fast path can bump one without it.
 *
 * TIME window successes without the mutex: a second atomic word, `fast`, holds
 *   bits 0..18   successes counted lock-free in the armed second,
 *   bits 19..63  the generation it was armed in (0: disarmed).
 * Under `mu`, after a window update in CLOSED / FORCED_CLOSED, the breaker
 * "arms" it for the window's newest second (`fast_sec`) when no number of
 * further successes in that second could trip the breaker (see fast_safe());
 * a plain success of the same generation whose window clock reads that second
 * then only CASes the count up. Every locked window operation first folds the
 * count into that second's bucket (exchange with 0, which also disarms), and a
 * transition disarms it, so a success lands in exactly one second of exactly
 * one generation:
 *  - a CAS that succeeds was ordered before the fold's exchange (counted in
 *    the armed second) or after a re-arm (counted in the re-armed one, which
 *    the lock holder read from the clock before arming: a later second or the
 *    same, never an earlier one), never in between;
 *  - the generation in the word makes a success of an older period (a stale
 *    permit) fail its CAS, however the word was re-armed since;
 *  - `fast_sec` is stored with release after the fold and loaded with acquire
 *    before the CAS: a success that saw the new second cannot CAS into the old
 *    arm (the fold's exchange happens-before its CAS).
 * A success that finds the word disarmed, full, or armed for another second
 * takes the mutex as before (that is how the window rotates: under the mutex).
 */
#define _POSIX_C_SOURCE 200809L
#include "cynic/breaker.h"

#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ST_MASK UINT64_C(0x7)
#define INF_SHIFT 3
#define INF_MASK UINT64_C(0xFFFF)
#define INF_ONE (UINT64_C(1) << INF_SHIFT)
#define GEN_SHIFT 19

#define PERMIT_PROBE 1u /* permit holds a half-open probe slot */

/* Window entries (count window ring). */
enum { W_SUCCESS = 0, W_FAILURE = 1, W_SLOW = 2 };

typedef struct time_bucket {
  uint64_t sec; /* which clock second the counts belong to */
  uint32_t calls;
  uint32_t failures;
  uint32_t slow;
} time_bucket_t;

struct cynic_breaker {
  /* Read by every acquire: alone on its cache line so the counters below, which
   * every record writes, do not keep invalidating it. */
  alignas(64) _Atomic uint64_t word;
  _Atomic uint64_t open_until; /* OPEN: when a probe may go; written before `word` */

  alignas(64) _Atomic uint64_t successes;
  _Atomic uint64_t failures;
  _Atomic uint64_t slow;
  _Atomic uint64_t abandoned;
  _Atomic uint64_t rejected;
  _Atomic uint64_t transitions;
  /* TIME window: lock-free successes of the armed second (layout above). */
  _Atomic uint64_t fast;
  _Atomic uint64_t fast_sec; /* the second `fast` is armed for; release/acquire */

  /* Read-only after creation. */
  alignas(64) cynic_breaker_config_t cfg;
  bool window_on;
  bool slow_counts; /* a slow outcome counts against the breaker somewhere */
  bool coarse_window; /* TIME window on the default clock: seconds from the coarse clock */

  /* Guarded by mu. */
  pthread_mutex_t mu;
  uint64_t last_now; /* clock clamp: time never goes back */
  uint64_t since_ns;
  cynic_breaker_reason_t last_reason;
  uint32_t consecutive_trips;
  uint64_t cur_open_ns;
  uint32_t probe_successes;
  uint32_t probe_failures; /* half_open_calls mode only */
  uint32_t probe_needed;   /* successes that close: half_open_successes, or N */
  /* Leaky bucket: level at `anchor`; leaks happen at anchor + k * leak_ns. */
  uint32_t level;
  uint64_t anchor;
  /* Window. */
  uint32_t w_calls, w_failures, w_slow;
  uint8_t *ring; /* COUNT: `size` outcomes */
  uint32_t ring_pos, ring_filled;
  time_bucket_t *tb; /* TIME: `size` one-second buckets */
  bool tb_started;
  uint64_t tb_head; /* newest second the window has advanced to */
  uint64_t last_wnow; /* coarse_window: clamp of the window clock */
  bool held; /* OPEN held by hold_open(): open_until is UINT64_MAX; any transition clears it */
};

#define FAST_BITS 19
#define FAST_MAX ((UINT64_C(1) << FAST_BITS) - 1)
#define FAST_GEN_MASK ((UINT64_C(1) << (64 - FAST_BITS)) - 1)

static inline cynic_breaker_state_t w_state(uint64_t w) {
  return (cynic_breaker_state_t)(w & ST_MASK);
}
static inline uint32_t w_inflight(uint64_t w) {
  return (uint32_t)((w >> INF_SHIFT) & INF_MASK);
}
static inline uint64_t w_gen(uint64_t w) {
  return w >> GEN_SHIFT;
}
static inline uint64_t w_make(cynic_breaker_state_t s, uint32_t inflight, uint64_t gen) {
  return (uint64_t)s | ((uint64_t)inflight << INF_SHIFT) | (gen << GEN_SHIFT);
}

const char *cynic_breaker_state_name(cynic_breaker_state_t state) {
  switch (state) {
  case CYNIC_BREAKER_CLOSED:
    return "closed";
  case CYNIC_BREAKER_OPEN:
    return "open";
  case CYNIC_BREAKER_HALF_OPEN:
    return "half_open";
  case CYNIC_BREAKER_FORCED_OPEN:
    return "forced_open";
  case CYNIC_BREAKER_FORCED_CLOSED:
    return "forced_closed";
  }
  return "unknown";
}

const char *cynic_breaker_reason_name(cynic_breaker_reason_t reason) {
  switch (reason) {
  case CYNIC_BREAKER_REASON_NONE:
    return "none";
  case CYNIC_BREAKER_REASON_FAULTS:
    return "fault_threshold";
  case CYNIC_BREAKER_REASON_FAILURE_RATE:
    return "failure_rate";
  case CYNIC_BREAKER_REASON_SLOW_RATE:
    return "slow_call_rate";
  case CYNIC_BREAKER_REASON_OPEN_ELAPSED:
    return "open_elapsed";
  case CYNIC_BREAKER_REASON_PROBES_SUCCEEDED:
    return "probes_succeeded";
  case CYNIC_BREAKER_REASON_PROBE_FAILED:
    return "probe_failed";
  case CYNIC_BREAKER_REASON_MANUAL_TRIP:
    return "manual_trip";
  case CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED:
    return "manual_force_closed";
  case CYNIC_BREAKER_REASON_MANUAL_RESET:
    return "manual_reset";
  case CYNIC_BREAKER_REASON_HEALTH_CHECK:
    return "health_check";
  }
  return "unknown";
}

void cynic_breaker_config_default(cynic_breaker_config_t *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  cfg->faults = 5;
  cfg->leak_ns = CYNIC_SEC(10);
  cfg->slow_is_fault = false;
  /* The rate judges busy traffic: 10 calls in the last 5 s (2 calls/s) and up.
   * 10, not more: the bucket judges what is below, and bench/bench_bucket.c
   * found a 20-call threshold let the bucket trip 2-4 calls/s at 1 % errors
   * a few times a day. */
  cfg->window.kind = CYNIC_BREAKER_WINDOW_TIME;
  cfg->window.size = 5;
  cfg->window.min_calls = 10;
  cfg->window.failure_rate = 50.0;
  cfg->window.slow_rate = 0.0;
  /* The bucket guards quiet traffic only, below about 2 calls/s. */
  cfg->bucket_low_traffic_only = true;
  cfg->slow_call_ns = 0;
  cfg->open_ns = CYNIC_SEC(30);
  cfg->open_max_ns = CYNIC_SEC(300);
  cfg->open_multiplier = 1.0;
  cfg->half_open_probes = 1;
  cfg->half_open_calls = 0;
  cfg->half_open_successes = 0;
}

void cynic_breaker_config_rate(cynic_breaker_config_t *cfg) {
  cynic_breaker_config_default(cfg); /* the default judges a rate now */
}

static bool rate_ok(double r) {
  return isfinite(r) && r >= 0.0 && r <= 100.0;
}

static int validate(const cynic_breaker_config_t *c) {
  if (c->faults > CYNIC_BREAKER_MAX_FAULTS)
    return CYNIC_EINVAL;
  if (c->faults > 0 && c->leak_ns == 0)
    return CYNIC_EINVAL;
  switch (c->window.kind) {
  case CYNIC_BREAKER_WINDOW_NONE:
    break;
  case CYNIC_BREAKER_WINDOW_COUNT:
    if (c->window.size == 0 || c->window.size > CYNIC_BREAKER_MAX_WINDOW_CALLS)
      return CYNIC_EINVAL;
    if (c->window.min_calls == 0 || c->window.min_calls > c->window.size)
      return CYNIC_EINVAL;
    break;
  case CYNIC_BREAKER_WINDOW_TIME:
    if (c->window.size == 0 || c->window.size > CYNIC_BREAKER_MAX_WINDOW_SECONDS)
      return CYNIC_EINVAL;
    if (c->window.min_calls == 0)
      return CYNIC_EINVAL;
    break;
  default:
    return CYNIC_EINVAL;
  }
  if (c->window.kind != CYNIC_BREAKER_WINDOW_NONE &&
      (!rate_ok(c->window.failure_rate) || !rate_ok(c->window.slow_rate)))
    return CYNIC_EINVAL;
  if (c->open_ns == 0)
    return CYNIC_EINVAL;
  if (!isfinite(c->open_multiplier) || c->open_multiplier < 1.0 ||
      c->open_multiplier > CYNIC_BREAKER_MAX_MULTIPLIER)
    return CYNIC_EINVAL;
  if (c->open_multiplier > 1.0 && c->open_max_ns < c->open_ns)
    return CYNIC_EINVAL;
  if (c->half_open_probes == 0 || c->half_open_probes > CYNIC_BREAKER_MAX_PROBES)
    return CYNIC_EINVAL;
  if (c->half_open_calls > CYNIC_BREAKER_MAX_PROBES ||
      (c->half_open_calls > 0 && c->half_open_successes > c->half_open_calls))
    return CYNIC_EINVAL;
  return 0;
}

int cynic_breaker_new(const cynic_breaker_config_t *cfg, cynic_breaker_t **out) {
  int rc;
  if (cfg == NULL || out == NULL)
    return CYNIC_EINVAL;
  rc = validate(cfg);
  if (rc != 0)
    return rc;

  cynic_breaker_t *b = aligned_alloc(64, (sizeof(*b) + 63) / 64 * 64);
  if (b == NULL)
    return CYNIC_ENOMEM;
  memset(b, 0, sizeof(*b));
  b->cfg = *cfg;
  b->window_on = cfg->window.kind != CYNIC_BREAKER_WINDOW_NONE;
  b->probe_needed = cfg->half_open_successes != 0 ? cfg->half_open_successes : cfg->half_open_calls;
  b->slow_counts = cfg->slow_is_fault || (b->window_on && cfg->window.slow_rate > 0.0);
  b->coarse_window = cfg->window.kind == CYNIC_BREAKER_WINDOW_TIME && cfg->clock.now == NULL;
  if (cfg->window.kind == CYNIC_BREAKER_WINDOW_COUNT) {
    b->ring = calloc(cfg->window.size, sizeof(*b->ring));
    if (b->ring == NULL) {
      rc = CYNIC_ENOMEM;
      goto out_free_breaker;
    }
  } else if (cfg->window.kind == CYNIC_BREAKER_WINDOW_TIME) {
    b->tb = calloc(cfg->window.size, sizeof(*b->tb));
    if (b->tb == NULL) {
      rc = CYNIC_ENOMEM;
      goto out_free_breaker;
    }
  }
  if (pthread_mutex_init(&b->mu, NULL) != 0) {
    rc = CYNIC_ENOMEM;
    goto out_free_window;
  }
  b->cur_open_ns = cfg->open_ns;
  b->last_reason = CYNIC_BREAKER_REASON_NONE;
  atomic_init(&b->word, w_make(CYNIC_BREAKER_CLOSED, 0, 1));
  atomic_init(&b->open_until, 0);
  atomic_init(&b->successes, 0);
  atomic_init(&b->failures, 0);
  atomic_init(&b->slow, 0);
  atomic_init(&b->abandoned, 0);
  atomic_init(&b->rejected, 0);
  atomic_init(&b->transitions, 0);
  atomic_init(&b->fast, 0);
  atomic_init(&b->fast_sec, 0);
  *out = b;
  return 0;

out_free_window:
  free(b->ring);
  free(b->tb);
out_free_breaker:
  free(b);
  return rc;
}

void cynic_breaker_free(cynic_breaker_t *b) {
  if (b == NULL)
    return;
  pthread_mutex_destroy(&b->mu);
  free(b->ring);
  free(b->tb);
  free(b);
}

/* ---- under mu ---------------------------------------------------------------- */

/* `now`, a reading of the breaker's clock, clamped so time never goes back. */
static uint64_t now_locked_at(cynic_breaker_t *b, uint64_t now) {
  if (now < b->last_now)
    now = b->last_now;
  b->last_now = now;
  return now;
}

static uint64_t now_locked(cynic_breaker_t *b) {
  return now_locked_at(b, cynic_clock_now(&b->cfg.clock));
}

/* CLOCK_MONOTONIC_COARSE: the time of the last timer tick, read from the vDSO
 * without a syscall (resolution 1-4 ms, never ahead of CLOCK_MONOTONIC). On a
 * VM whose clocksource makes CLOCK_MONOTONIC a syscall (kvm-clock here: ~70 ns)
 * this is what keeps a success's clock read cheap. */
static uint64_t coarse_now(void) {
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
#endif
  return cynic_clock_monotonic(NULL);
}

/* The clock the TIME window buckets calls by: the injected clock when there is
 * one (the same reading as `now`), the coarse clock on the default clock. */
static uint64_t window_clock(const cynic_breaker_t *b) {
  return b->coarse_window ? coarse_now() : cynic_clock_now(&b->cfg.clock);
}

/* coarse_window: a window clock reading, clamped (its own clamp: it is another
 * clock than `now`). */
static uint64_t wnow_locked_at(cynic_breaker_t *b, uint64_t wnow) {
  if (wnow < b->last_wnow)
    wnow = b->last_wnow;
  b->last_wnow = wnow;
  return wnow;
}

/* The bucket's level at `now` without changing it; *anchor_out gets the anchor
 * that goes with it. A leak due exactly at `now` has happened. */
static uint32_t bucket_level_at(const cynic_breaker_t *b, uint64_t now, uint64_t *anchor_out) {
  uint32_t level = b->level;
  uint64_t anchor = b->anchor;
  if (level > 0 && now > anchor) {
    uint64_t leaks = (now - anchor) / b->cfg.leak_ns;
    if (leaks >= level) {
      level = 0;
    } else {
      level -= (uint32_t)leaks;
      anchor += leaks * b->cfg.leak_ns; /* <= now: cannot overflow */
    }
  }
  *anchor_out = anchor;
  return level;
}

/* Adds one fault at `now`; returns the new level (saturating at `faults`). */
static uint32_t bucket_add_fault(cynic_breaker_t *b, uint64_t now) {
  uint64_t anchor;
  uint32_t level = bucket_level_at(b, now, &anchor);
  if (level == 0)
    anchor = now; /* the leak clock starts with the first fault in an empty bucket */
  if (level < b->cfg.faults)
    level++;
  b->level = level;
  b->anchor = anchor;
  return level;
}

/* TIME window: drop the seconds that fell out of (now_sec - size, now_sec]. */
static void tw_advance(cynic_breaker_t *b, uint64_t now_sec) {
  uint32_t size = b->cfg.window.size;
  if (!b->tb_started) {
    b->tb_started = true;
    b->tb_head = now_sec;
    return;
  }
  if (now_sec <= b->tb_head)
    return;
  if (now_sec - b->tb_head >= size) {
    memset(b->tb, 0, (size_t)size * sizeof(*b->tb));
    b->w_calls = b->w_failures = b->w_slow = 0;
  } else {
    for (uint64_t s = b->tb_head + 1; s <= now_sec; s++) {
      time_bucket_t *t = &b->tb[s % size];
      b->w_calls -= t->calls;
      b->w_failures -= t->failures;
      b->w_slow -= t->slow;
      memset(t, 0, sizeof(*t));
    }
  }
  b->tb_head = now_sec;
}

static bool rate_reached(uint32_t part, uint32_t calls, double threshold) {
  return threshold > 0.0 && (double)part * 100.0 >= threshold * (double)calls;
}

/* Moves the lock-free successes into the armed second's bucket and disarms the
 * word (every locked window operation does this first). Armed implies the window
 * has started and the armed second is its head, whose bucket is stamped with it. */
static void fast_fold(cynic_breaker_t *b) {
  uint64_t v = atomic_exchange_explicit(&b->fast, 0, memory_order_acq_rel);
  uint32_t n = (uint32_t)(v & FAST_MAX);
  if (n == 0)
    return;
  time_bucket_t *t = &b->tb[b->tb_head % b->cfg.window.size];
  t->sec = b->tb_head;
  t->calls += n;
  b->w_calls += n;
}

/* Could any number k >= 1 of further successes, in the window's head second
 * and without a rotation, trip a breaker in `st`? A success never feeds the
 * bucket; it trips only through the window, when the calls reach min_calls
 * with a rate at or above its threshold. Adding successes only lowers the
 * rates, so the first k that makes the window judge decides: k = 1 once it
 * judges, min_calls - calls before. Lock-free successes counted after this
 * verdict only make it truer (more calls, the same failures and slow calls). */
static bool fast_safe(const cynic_breaker_t *b, cynic_breaker_state_t st) {
  if (st != CYNIC_BREAKER_CLOSED)
    return true; /* FORCED_CLOSED never trips */
  uint32_t min = b->cfg.window.min_calls;
  uint32_t calls = b->w_calls >= min ? b->w_calls + 1 : min;
  return !rate_reached(b->w_failures, calls, b->cfg.window.failure_rate) &&
         !rate_reached(b->w_slow, calls, b->cfg.window.slow_rate);
}

/* After a locked window update that left the breaker in state word `w`
 * (CLOSED or FORCED_CLOSED): let successes of its generation in the head
 * second count lock-free, if they cannot trip it. */
static void fast_arm(cynic_breaker_t *b, uint64_t w) {
  uint64_t gen = w_gen(w); /* 45 bits: fits the word's tag exactly */
  if (gen == 0 || !b->tb_started || !fast_safe(b, w_state(w)))
    return;
  atomic_store_explicit(&b->fast_sec, b->tb_head, memory_order_release);
  atomic_store_explicit(&b->fast, gen << FAST_BITS, memory_order_release);
}

/* The lock-free success: counts one in the armed word if it is armed for the
 * permit's generation and for the second the window clock reads now. Returns
 * false, having counted nothing, when the caller must take the mutex; *t_out
 * then holds the window clock reading, if one was made (else UINT64_MAX). */
static bool fast_success(cynic_breaker_t *b, uint64_t generation, uint64_t *t_out) {
  uint64_t v = atomic_load_explicit(&b->fast, memory_order_relaxed);
  *t_out = UINT64_MAX;
  if ((v >> FAST_BITS) != generation)
    return false; /* disarmed, or stale permit: no clock read, as before */
  uint64_t t = window_clock(b);
  *t_out = t;
  if (atomic_load_explicit(&b->fast_sec, memory_order_acquire) != t / CYNIC_SEC(1))
    return false; /* a new second (rotate under the mutex) or a clock behind */
  for (;;) {
    if ((v >> FAST_BITS) != generation || (v & FAST_MAX) == FAST_MAX)
      return false;
    if (atomic_compare_exchange_weak_explicit(&b->fast, &v, v + 1, memory_order_acquire,
                                              memory_order_relaxed))
      return true;
  }
}

static void window_add(cynic_breaker_t *b, int what, uint64_t now) {
  if (b->cfg.window.kind == CYNIC_BREAKER_WINDOW_COUNT) {
    if (b->ring_filled == b->cfg.window.size) {
      uint8_t old = b->ring[b->ring_pos];
      b->w_calls--;
      b->w_failures -= old == W_FAILURE;
      b->w_slow -= old == W_SLOW;
    } else {
      b->ring_filled++;
    }
    b->ring[b->ring_pos] = (uint8_t)what;
    b->ring_pos = (b->ring_pos + 1) % b->cfg.window.size;
  } else {
    uint64_t sec = now / CYNIC_SEC(1);
    tw_advance(b, sec);
    time_bucket_t *t = &b->tb[sec % b->cfg.window.size];
    t->sec = sec;
    t->calls++;
    t->failures += what == W_FAILURE;
    t->slow += what == W_SLOW;
  }
  b->w_calls++;
  b->w_failures += what == W_FAILURE;
  b->w_slow += what == W_SLOW;
}

/* Window counts at `now` without changing anything. */
static void window_peek(const cynic_breaker_t *b, uint64_t now, uint32_t *calls, uint32_t *fails,
                        uint32_t *slow) {
  *calls = *fails = *slow = 0;
  if (b->cfg.window.kind == CYNIC_BREAKER_WINDOW_COUNT) {
    *calls = b->w_calls;
    *fails = b->w_failures;
    *slow = b->w_slow;
  } else if (b->cfg.window.kind == CYNIC_BREAKER_WINDOW_TIME && b->tb_started) {
    uint64_t sec = now / CYNIC_SEC(1);
    uint32_t size = b->cfg.window.size;
    /* Lock-free successes not folded yet belong to the head second. */
    uint32_t pending =
        (uint32_t)(atomic_load_explicit(&((cynic_breaker_t *)b)->fast, memory_order_relaxed) &
                   FAST_MAX);
    for (uint32_t i = 0; i < size; i++) {
      const time_bucket_t *t = &b->tb[i];
      if (t->calls == 0 || t->sec > sec || sec - t->sec >= size)
        continue;
      if (t->sec == b->tb_head)
        *calls += pending;
      *calls += t->calls;
      *fails += t->failures;
      *slow += t->slow;
    }
  }
}

static void counters_clear(cynic_breaker_t *b) {
  b->level = 0;
  b->anchor = 0;
  b->probe_successes = 0;
  b->probe_failures = 0;
  b->w_calls = b->w_failures = b->w_slow = 0;
  b->ring_pos = b->ring_filled = 0;
  b->tb_started = false;
  b->tb_head = 0;
  /* Disarm: a success of the old generation must not count in the new window. */
  atomic_store_explicit(&b->fast, 0, memory_order_release);
  if (b->tb != NULL)
    memset(b->tb, 0, (size_t)b->cfg.window.size * sizeof(*b->tb));
}

/* Moves to `to` at `now`: new generation, empty counters, callback. Caller holds mu
 * and has already set the interval bookkeeping. `inflight` is the number of probe
 * slots the new word starts with taken (1 when the caller is the first probe). */
static uint64_t transition_locked(cynic_breaker_t *b, cynic_breaker_state_t to,
                                  cynic_breaker_reason_t reason, uint64_t now, uint32_t inflight) {
  uint64_t w = atomic_load_explicit(&b->word, memory_order_relaxed);
  cynic_breaker_state_t from = w_state(w);
  uint64_t gen = w_gen(w) + 1;
  counters_clear(b);
  b->held = false;
  if (to == CYNIC_BREAKER_OPEN)
    atomic_store_explicit(&b->open_until, cynic__sat_add(now, b->cur_open_ns),
                          memory_order_relaxed);
  b->since_ns = now;
  b->last_reason = reason;
  atomic_fetch_add_explicit(&b->transitions, 1, memory_order_relaxed);
  /* Only the state machine under mu changes state or generation; lock-free paths
   * only CAS the probe count, and their CAS on the old word fails after this. */
  atomic_store_explicit(&b->word, w_make(to, inflight, gen), memory_order_release);
  if (b->cfg.on_transition != NULL)
    b->cfg.on_transition(b->cfg.on_transition_arg, from, to, reason, now);
  return gen;
}

/* An automatic trip to OPEN from CLOSED or HALF_OPEN. */
static void trip_locked(cynic_breaker_t *b, cynic_breaker_reason_t reason, uint64_t now) {
  if (b->consecutive_trips == 0) {
    b->cur_open_ns = b->cfg.open_ns;
  } else if (b->cfg.open_multiplier > 1.0) {
    double next = (double)b->cur_open_ns * b->cfg.open_multiplier;
    b->cur_open_ns = next >= (double)b->cfg.open_max_ns ? b->cfg.open_max_ns : (uint64_t)next;
  }
  if (b->consecutive_trips < UINT32_MAX)
    b->consecutive_trips++;
  transition_locked(b, CYNIC_BREAKER_OPEN, reason, now, 0);
}

/* ---- acquire ------------------------------------------------------------------ */

static void fill_permit(cynic_breaker_permit_t *p, uint64_t w, uint32_t flags) {
  p->generation = w_gen(w);
  p->state = w_state(w);
  p->flags = flags;
}

static int reject(cynic_breaker_t *b, uint64_t *retry_after_ns, uint64_t retry) {
  atomic_fetch_add_explicit(&b->rejected, 1, memory_order_relaxed);
  if (retry_after_ns != NULL)
    *retry_after_ns = retry;
  return CYNIC_EOPEN;
}

/* OPEN and (maybe) due: decide under mu, where the state cannot change. */
static int acquire_locked(cynic_breaker_t *b, cynic_breaker_permit_t *permit,
                          uint64_t *retry_after_ns) {
  int rc = CYNIC_EINVAL;
  pthread_mutex_lock(&b->mu);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
  for (;;) {
    switch (w_state(w)) {
    case CYNIC_BREAKER_CLOSED:
    case CYNIC_BREAKER_FORCED_CLOSED:
      fill_permit(permit, w, 0);
      rc = 0;
      goto out_unlock;
    case CYNIC_BREAKER_FORCED_OPEN:
      rc = reject(b, retry_after_ns, UINT64_MAX);
      goto out_unlock;
    case CYNIC_BREAKER_OPEN: {
      uint64_t now = now_locked(b);
      uint64_t until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
      if (now < until) {
        rc = reject(b, retry_after_ns, until == UINT64_MAX ? UINT64_MAX : until - now);
        goto out_unlock;
      }
      uint64_t gen =
          transition_locked(b, CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_REASON_OPEN_ELAPSED, now, 1);
      fill_permit(permit, w_make(CYNIC_BREAKER_HALF_OPEN, 1, gen), PERMIT_PROBE);
      rc = 0;
      goto out_unlock;
    }
    case CYNIC_BREAKER_HALF_OPEN:
      if (w_inflight(w) >= b->cfg.half_open_probes) {
        rc = reject(b, retry_after_ns, 0);
        goto out_unlock;
      }
      if (atomic_compare_exchange_weak_explicit(&b->word, &w, w + INF_ONE, memory_order_acq_rel,
                                                memory_order_acquire)) {
        fill_permit(permit, w, PERMIT_PROBE);
        rc = 0;
        goto out_unlock;
      }
      continue; /* a lock-free probe acquire or release moved the count; retry */
    }
  }
out_unlock:
  pthread_mutex_unlock(&b->mu);
  return rc;
}

int cynic_breaker_acquire(cynic_breaker_t *b, cynic_breaker_permit_t *permit,
                          uint64_t *retry_after_ns) {
  if (b == NULL || permit == NULL)
    return CYNIC_EINVAL;
  uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
  for (;;) {
    switch (w_state(w)) {
    case CYNIC_BREAKER_CLOSED:
    case CYNIC_BREAKER_FORCED_CLOSED:
      fill_permit(permit, w, 0); /* the fast path: one load, nothing else */
      return 0;
    case CYNIC_BREAKER_FORCED_OPEN:
      return reject(b, retry_after_ns, UINT64_MAX);
    case CYNIC_BREAKER_OPEN: {
      uint64_t until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
      uint64_t now = cynic_clock_now(&b->cfg.clock);
      if (now < until)
        return reject(b, retry_after_ns, until == UINT64_MAX ? UINT64_MAX : until - now);
      return acquire_locked(b, permit, retry_after_ns);
    }
    case CYNIC_BREAKER_HALF_OPEN:
      if (w_inflight(w) >= b->cfg.half_open_probes)
        return reject(b, retry_after_ns, 0);
      if (atomic_compare_exchange_weak_explicit(&b->word, &w, w + INF_ONE, memory_order_acq_rel,
                                                memory_order_acquire)) {
        fill_permit(permit, w, PERMIT_PROBE);
        return 0;
      }
      continue; /* w was reloaded by the failed CAS */
    }
    return CYNIC_EINVAL; /* unreachable: the state bits only hold the five states */
  }
}

/* ---- record / release --------------------------------------------------------- */

/* Frees the permit's probe slot if its half-open period is still current. */
static bool release_slot(cynic_breaker_t *b, const cynic_breaker_permit_t *p) {
  uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
  for (;;) {
    if (w_gen(w) != p->generation || w_state(w) != CYNIC_BREAKER_HALF_OPEN || w_inflight(w) == 0)
      return false;
    if (atomic_compare_exchange_weak_explicit(&b->word, &w, w - INF_ONE, memory_order_acq_rel,
                                              memory_order_acquire))
      return true;
  }
}

int cynic_breaker_release(cynic_breaker_t *b, const cynic_breaker_permit_t *permit) {
  if (b == NULL || permit == NULL)
    return CYNIC_EINVAL;
  atomic_fetch_add_explicit(&b->abandoned, 1, memory_order_relaxed);
  if (permit->flags & PERMIT_PROBE)
    release_slot(b, permit);
  return 0;
}

int cynic_breaker_record(cynic_breaker_t *b, const cynic_breaker_permit_t *permit,
                         cynic_breaker_outcome_t outcome, uint64_t duration_ns) {
  if (b == NULL || permit == NULL)
    return CYNIC_EINVAL;
  int what;
  switch (outcome) {
  case CYNIC_OUTCOME_SUCCESS:
    what = (b->cfg.slow_call_ns != 0 && duration_ns >= b->cfg.slow_call_ns) ? W_SLOW : W_SUCCESS;
    break;
  case CYNIC_OUTCOME_FAILURE:
    what = W_FAILURE;
    break;
  case CYNIC_OUTCOME_SLOW:
    what = W_SLOW;
    break;
  default:
    return CYNIC_EINVAL;
  }

  /* Fast path: a success that touches neither the bucket nor a window nor a probe
   * slot only needs its total. Whatever the state, it cannot cause a transition. */
  bool is_fault = what == W_FAILURE || (what == W_SLOW && b->cfg.slow_is_fault);
  if (!(permit->flags & PERMIT_PROBE) && !b->window_on && !is_fault) {
    atomic_fetch_add_explicit(what == W_SLOW ? &b->slow : &b->successes, 1, memory_order_relaxed);
    return 0;
  }
  /* TIME window: a plain success in an armed second is one CAS (fast_arm()). */
  uint64_t t = UINT64_MAX; /* the window clock's reading, if the fast path made one */
  if (what == W_SUCCESS && !(permit->flags & PERMIT_PROBE) &&
      b->cfg.window.kind == CYNIC_BREAKER_WINDOW_TIME) {
    if (fast_success(b, permit->generation, &t)) {
      atomic_fetch_add_explicit(&b->successes, 1, memory_order_relaxed);
      return 0;
    }
  }

  pthread_mutex_lock(&b->mu);
  atomic_fetch_add_explicit(what == W_SUCCESS   ? &b->successes
                            : what == W_FAILURE ? &b->failures
                                                : &b->slow,
                            1, memory_order_relaxed);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
  if (w_gen(w) != permit->generation)
    goto out_unlock; /* stale: admitted before the last transition */

  switch (w_state(w)) {
  case CYNIC_BREAKER_HALF_OPEN: {
    /* Same generation in HALF_OPEN means the permit is one of this period's probes. */
    uint64_t now = now_locked(b);
    release_slot(b, permit);
    bool failed = what == W_FAILURE || (what == W_SLOW && b->slow_counts);
    uint32_t needed = b->cfg.half_open_calls != 0 ? b->probe_needed : b->cfg.half_open_probes;
    /* Failures a half-open period survives: none by default; with N probes
     * judged, as many as still leave `needed` successes possible. */
    uint32_t tolerated = b->cfg.half_open_calls != 0 ? b->cfg.half_open_calls - needed : 0;
    if (failed) {
      if (++b->probe_failures > tolerated)
        trip_locked(b, CYNIC_BREAKER_REASON_PROBE_FAILED, now);
    } else if (++b->probe_successes >= needed) {
      b->consecutive_trips = 0;
      b->cur_open_ns = b->cfg.open_ns;
      transition_locked(b, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_REASON_PROBES_SUCCEEDED, now, 0);
    }
    break;
  }
  case CYNIC_BREAKER_CLOSED:
  case CYNIC_BREAKER_FORCED_CLOSED: {
    uint64_t now = 0;
    bool have_now = false;
    cynic_breaker_reason_t why = CYNIC_BREAKER_REASON_NONE;
    if (b->window_on) {
      uint64_t wnow = 0;
      if (b->cfg.window.kind == CYNIC_BREAKER_WINDOW_TIME) {
        if (b->coarse_window) {
          wnow = wnow_locked_at(b, t != UINT64_MAX ? t : coarse_now());
        } else {
          /* one reading for both, as the window and `now` share the clock */
          now = now_locked_at(b, t != UINT64_MAX ? t : cynic_clock_now(&b->cfg.clock));
          have_now = true;
          wnow = now;
        }
        fast_fold(b);
      }
      window_add(b, what, wnow);
    }
    /* The window judges once it holds min_calls; with bucket_low_traffic_only
     * the bucket then neither judges nor fills (busy traffic is a rate). */
    bool window_judges = b->window_on && b->w_calls >= b->cfg.window.min_calls;
    if (b->cfg.faults > 0 && is_fault && !(b->cfg.bucket_low_traffic_only && window_judges)) {
      if (!have_now) {
        now = now_locked(b);
        have_now = true;
      }
      if (bucket_add_fault(b, now) >= b->cfg.faults)
        why = CYNIC_BREAKER_REASON_FAULTS;
    }
    if (why == CYNIC_BREAKER_REASON_NONE && window_judges) {
      if (rate_reached(b->w_failures, b->w_calls, b->cfg.window.failure_rate))
        why = CYNIC_BREAKER_REASON_FAILURE_RATE;
      else if (rate_reached(b->w_slow, b->w_calls, b->cfg.window.slow_rate))
        why = CYNIC_BREAKER_REASON_SLOW_RATE;
    }
    if (why != CYNIC_BREAKER_REASON_NONE && w_state(w) == CYNIC_BREAKER_CLOSED) {
      if (!have_now)
        now = now_locked(b);
      trip_locked(b, why, now);
    } else if (b->cfg.window.kind == CYNIC_BREAKER_WINDOW_TIME) {
      fast_arm(b, w);
    }
    break;
  }
  case CYNIC_BREAKER_OPEN:
  case CYNIC_BREAKER_FORCED_OPEN:
    break; /* no permit is ever issued in these states */
  }
out_unlock:
  pthread_mutex_unlock(&b->mu);
  return 0;
}

/* ---- manual control ------------------------------------------------------------ */

static int manual(cynic_breaker_t *b, cynic_breaker_state_t to, cynic_breaker_reason_t reason) {
  if (b == NULL)
    return CYNIC_EINVAL;
  pthread_mutex_lock(&b->mu);
  uint64_t now = now_locked(b);
  if (reason == CYNIC_BREAKER_REASON_MANUAL_RESET) {
    b->consecutive_trips = 0;
    b->cur_open_ns = b->cfg.open_ns;
  }
  transition_locked(b, to, reason, now, 0);
  pthread_mutex_unlock(&b->mu);
  return 0;
}

int cynic_breaker_trip(cynic_breaker_t *b) {
  return manual(b, CYNIC_BREAKER_FORCED_OPEN, CYNIC_BREAKER_REASON_MANUAL_TRIP);
}

int cynic_breaker_force_closed(cynic_breaker_t *b) {
  return manual(b, CYNIC_BREAKER_FORCED_CLOSED, CYNIC_BREAKER_REASON_MANUAL_FORCE_CLOSED);
}

int cynic_breaker_reset(cynic_breaker_t *b) {
  return manual(b, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_REASON_MANUAL_RESET);
}

int cynic_breaker_hold_open(cynic_breaker_t *b) {
  if (b == NULL)
    return CYNIC_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&b->mu);
  cynic_breaker_state_t st = w_state(atomic_load_explicit(&b->word, memory_order_acquire));
  if (st == CYNIC_BREAKER_FORCED_OPEN || st == CYNIC_BREAKER_FORCED_CLOSED) {
    rc = CYNIC_ESTATE; /* an operator's decision wins */
  } else if (!b->held) {
    uint64_t now = now_locked(b);
    /* "never" lands just after the word is published with the usual interval:
     * a lock-free acquire in between is refused with that interval, and one
     * that finds it over goes to acquire_locked, which waits for mu and reads
     * "never" (no probe slips through) */
    transition_locked(b, CYNIC_BREAKER_OPEN, CYNIC_BREAKER_REASON_HEALTH_CHECK, now, 0);
    atomic_store_explicit(&b->open_until, UINT64_MAX, memory_order_relaxed);
    b->held = true;
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

int cynic_breaker_end_hold(cynic_breaker_t *b) {
  if (b == NULL)
    return CYNIC_EINVAL;
  int rc = CYNIC_ESTATE;
  pthread_mutex_lock(&b->mu);
  if (b->held) {
    uint64_t now = now_locked(b);
    b->consecutive_trips = 0;
    b->cur_open_ns = b->cfg.open_ns;
    transition_locked(b, CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_REASON_HEALTH_CHECK, now, 0);
    rc = 0;
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

int cynic_breaker_carry(cynic_breaker_t *to, const cynic_breaker_t *cfrom) {
  if (to == NULL || cfrom == NULL || to == cfrom)
    return CYNIC_EINVAL;
  /* The mutex is not part of `from`'s observable value (as in snapshot). */
  cynic_breaker_t *from = (cynic_breaker_t *)cfrom;
  pthread_mutex_lock(&from->mu);
  uint64_t now = now_locked(from);
  cynic_breaker_state_t state = w_state(atomic_load_explicit(&from->word, memory_order_acquire));
  uint64_t open_until = atomic_load_explicit(&from->open_until, memory_order_relaxed);
  uint64_t since = from->since_ns, open_ns = from->cur_open_ns;
  cynic_breaker_reason_t reason = from->last_reason;
  uint32_t trips = from->consecutive_trips;
  bool held = from->held;
  pthread_mutex_unlock(&from->mu);
  if (state == CYNIC_BREAKER_CLOSED)
    return 0;
  if (state == CYNIC_BREAKER_HALF_OPEN) {
    state = CYNIC_BREAKER_OPEN;
    open_until = now; /* over: the next acquire probes */
  }
  pthread_mutex_lock(&to->mu);
  if (now > to->last_now)
    to->last_now = now;
  uint64_t w = atomic_load_explicit(&to->word, memory_order_relaxed);
  counters_clear(to);
  if (state == CYNIC_BREAKER_OPEN) {
    atomic_store_explicit(&to->open_until, open_until, memory_order_relaxed);
    /* the next trip backs off from here, within to's own bounds */
    uint64_t hi = to->cfg.open_multiplier > 1.0 ? to->cfg.open_max_ns : to->cfg.open_ns;
    to->cur_open_ns = open_ns > hi ? hi : open_ns < to->cfg.open_ns ? to->cfg.open_ns : open_ns;
    to->consecutive_trips = trips;
  }
  to->since_ns = since;
  to->last_reason = reason;
  to->held = held && state == CYNIC_BREAKER_OPEN;
  atomic_store_explicit(&to->word, w_make(state, 0, w_gen(w) + 1), memory_order_release);
  pthread_mutex_unlock(&to->mu);
  return 0;
}

/* ---- snapshot ------------------------------------------------------------------- */

int cynic_breaker_snapshot(const cynic_breaker_t *cb, cynic_breaker_snapshot_t *out) {
  if (cb == NULL || out == NULL)
    return CYNIC_EINVAL;
  /* The mutex and the clock clamp are not part of the breaker's observable value. */
  cynic_breaker_t *b = (cynic_breaker_t *)cb;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&b->mu);
  uint64_t now = now_locked(b);
  uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
  out->state = w_state(w);
  out->last_reason = b->last_reason;
  out->now_ns = now;
  out->since_ns = b->since_ns;
  out->successes = atomic_load_explicit(&b->successes, memory_order_relaxed);
  out->failures = atomic_load_explicit(&b->failures, memory_order_relaxed);
  out->slow = atomic_load_explicit(&b->slow, memory_order_relaxed);
  out->abandoned = atomic_load_explicit(&b->abandoned, memory_order_relaxed);
  out->rejected = atomic_load_explicit(&b->rejected, memory_order_relaxed);
  out->transitions = atomic_load_explicit(&b->transitions, memory_order_relaxed);
  if (b->cfg.faults > 0) {
    uint64_t anchor;
    out->bucket_level = (double)bucket_level_at(b, now, &anchor);
  }
  out->failure_rate = -1.0;
  out->slow_rate = -1.0;
  if (b->window_on) {
    uint32_t calls, fails, slow;
    window_peek(b, b->coarse_window ? wnow_locked_at(b, coarse_now()) : now, &calls, &fails, &slow);
    out->window_calls = calls;
    if (calls >= b->cfg.window.min_calls) {
      out->failure_rate = (double)fails * 100.0 / (double)calls;
      out->slow_rate = (double)slow * 100.0 / (double)calls;
    }
  }
  if (out->state == CYNIC_BREAKER_HALF_OPEN) {
    out->probes_in_flight = w_inflight(w);
    out->probe_successes = b->probe_successes;
    out->probe_failures = b->probe_failures;
  }
  out->consecutive_trips = b->consecutive_trips;
  out->open_interval_ns = b->cur_open_ns;
  out->held = b->held;
  if (b->held)
    out->next_probe_ns = UINT64_MAX;
  else if (out->state == CYNIC_BREAKER_OPEN)
    out->next_probe_ns =
        cynic__sat_sub(atomic_load_explicit(&b->open_until, memory_order_relaxed), now);
  else if (out->state == CYNIC_BREAKER_FORCED_OPEN)
    out->next_probe_ns = UINT64_MAX;
  pthread_mutex_unlock(&b->mu);
  return 0;
}
