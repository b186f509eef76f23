/*
 * lib/budget.c: retry budget over a sliding window of time slots.
 *
 * Deposits (one per request) are the hot path, so each slot's deposit count
 * is a single 64-bit atomic holding (period << 32 | count): a deposit either
 * increments the count of the slot's current period or, when the slot still
 * holds a period that has left the window, replaces it with (period, 1), in
 * one compare-and-swap. No reset step can race with an increment because
 * there is no separate reset.
 *
 * Withdrawals (one per retry) are rare and must be exact, so they, their
 * slots and the refusal counter live under a mutex: the balance check and
 * the withdrawal are one atomic step with respect to other withdrawals.
 *
 * The current period is max(now / slot_ns, highest period seen), kept in an
 * atomic, so a clock read that lost a race (or a clock that went backwards)
 * never moves the window back.
 */
#define _POSIX_C_SOURCE 200809L
#include "cynic/budget.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SLOTS CYNIC_BUDGET_SLOTS
#define NS_PER_SEC UINT64_C(1000000000)
#define MAX_MIN_RETRIES_PER_SEC 1000000u

struct cynic_budget {
  cynic_budget_config_t cfg; /* validated copy */
  uint64_t slot_ns;          /* ttl_ns / SLOTS, >= 100 ms */
  uint64_t reserve;          /* floor(min_retries_per_sec * ttl seconds) */

  _Atomic uint64_t last_period;     /* highest period seen; never decreases */
  _Atomic uint64_t total_deposits;  /* since creation */
  _Atomic uint64_t deposits[SLOTS]; /* (uint32 period << 32) | uint32 count */

  pthread_mutex_t lock; /* guards everything below */
  struct {
    uint64_t period; /* full 64-bit period the count belongs to */
    uint64_t count;  /* retries granted in that period */
  } withdrawals[SLOTS];
  uint64_t total_withdrawals;
  uint64_t total_exhausted;
};

void cynic_budget_config_default(cynic_budget_config_t *cfg) {
  if (cfg == NULL)
    return;
  cfg->clock.now = NULL;
  cfg->clock.arg = NULL;
  cfg->ttl_ns = CYNIC_SEC(10);
  cfg->retry_percent = 20.0;
  cfg->min_retries_per_sec = 10;
}

static int validate(const cynic_budget_config_t *cfg) {
  if (cfg->ttl_ns < CYNIC_SEC(1) || cfg->ttl_ns > CYNIC_SEC(60))
    return CYNIC_EINVAL;
  /* Written so that NaN fails both comparisons and is rejected. */
  if (!(cfg->retry_percent >= 0.0 && cfg->retry_percent <= 1000.0))
    return CYNIC_EINVAL;
  if (cfg->min_retries_per_sec > MAX_MIN_RETRIES_PER_SEC)
    return CYNIC_EINVAL;
  return 0;
}

int cynic_budget_new(const cynic_budget_config_t *cfg, cynic_budget_t **out) {
  if (cfg == NULL || out == NULL)
    return CYNIC_EINVAL;
  int err = validate(cfg);
  if (err != 0)
    return err;

  cynic_budget_t *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return CYNIC_ENOMEM;
  b->cfg = *cfg;
  b->slot_ns = cfg->ttl_ns / SLOTS;
  /* <= 1e6 * 60e9 = 6e16: no overflow. */
  b->reserve = (uint64_t)cfg->min_retries_per_sec * cfg->ttl_ns / NS_PER_SEC;
  atomic_init(&b->last_period, 0);
  atomic_init(&b->total_deposits, 0);
  for (int i = 0; i < SLOTS; i++)
    atomic_init(&b->deposits[i], 0);
  if (pthread_mutex_init(&b->lock, NULL) != 0) {
    err = CYNIC_ENOMEM;
    goto out_free_budget;
  }
  *out = b;
  return 0;

out_free_budget:
  free(b);
  return err;
}

void cynic_budget_free(cynic_budget_t *b) {
  if (b == NULL)
    return;
  pthread_mutex_destroy(&b->lock);
  free(b);
}

/* The current period: now's, unless a later one has already been seen. */
static uint64_t current_period(cynic_budget_t *b) {
  uint64_t p = cynic_clock_now(&b->cfg.clock) / b->slot_ns;
  uint64_t last = atomic_load_explicit(&b->last_period, memory_order_relaxed);
  while (p > last) {
    if (atomic_compare_exchange_weak_explicit(&b->last_period, &last, p, memory_order_relaxed,
                                              memory_order_relaxed))
      return p;
  }
  return last;
}

static inline uint64_t pack(uint32_t period, uint32_t count) {
  return ((uint64_t)period << 32) | count;
}

void cynic_budget_deposit(cynic_budget_t *b) {
  uint64_t p = current_period(b);
  uint32_t p32 = (uint32_t)p;
  _Atomic uint64_t *slot = &b->deposits[p % SLOTS];
  uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);
  for (;;) {
    uint32_t sp = (uint32_t)(v >> 32);
    uint32_t count = (uint32_t)v;
    uint64_t nv;
    if (sp == p32) {
      if (count == UINT32_MAX)
        break; /* saturated */
      nv = v + 1;
    } else {
      /* The slot holds a period that has left the window: recycle it. (If
       * instead it holds a NEWER period, this thread was stalled for a whole
       * ttl between reading the clock and getting here; recycling then loses
       * the newer period's count so far, which only errs on the side of
       * fewer retries; the next deposit of the newer period takes the slot
       * back.) */
      nv = pack(p32, 1);
    }
    if (atomic_compare_exchange_weak_explicit(slot, &v, nv, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  atomic_fetch_add_explicit(&b->total_deposits, 1, memory_order_relaxed);
}

typedef struct window {
  uint64_t period;      /* current period */
  uint64_t deposits;    /* in the window */
  uint64_t withdrawals; /* in the window */
  uint64_t allowance;   /* floor(deposits * percent / 100) + reserve */
} window_t;

/* Reads the window at the current period. Caller holds b->lock. */
static void read_window(cynic_budget_t *b, window_t *w) {
  w->period = current_period(b);
  uint32_t p32 = (uint32_t)w->period;
  w->deposits = 0;
  w->withdrawals = 0;
  for (int i = 0; i < SLOTS; i++) {
    uint64_t v = atomic_load_explicit(&b->deposits[i], memory_order_relaxed);
    /* In the window iff 0 <= p - slot period < SLOTS; a slot a racing
     * deposit has just moved to a newer period wraps to a huge difference
     * and is left out, which only errs on the side of fewer retries. */
    if ((uint32_t)(p32 - (uint32_t)(v >> 32)) < SLOTS)
      w->deposits += (uint32_t)v;
    /* Withdrawal periods never exceed w->period: both move under the lock. */
    if (w->period - b->withdrawals[i].period < SLOTS)
      w->withdrawals += b->withdrawals[i].count;
  }
  /* deposits < 2^36 and percent <= 1000, so the product is an exact double;
   * floor() of the quotient is exact for whole-number percentages. */
  double share = floor((double)w->deposits * b->cfg.retry_percent / 100.0);
  w->allowance = cynic__sat_add((uint64_t)share, b->reserve);
}

int cynic_budget_withdraw(cynic_budget_t *b) {
  window_t w;
  int err = 0;
  pthread_mutex_lock(&b->lock);
  read_window(b, &w);
  if (w.withdrawals >= w.allowance) {
    b->total_exhausted++;
    err = CYNIC_EBUDGET;
    goto out_unlock;
  }
  size_t i = (size_t)(w.period % SLOTS);
  if (b->withdrawals[i].period != w.period) {
    b->withdrawals[i].period = w.period;
    b->withdrawals[i].count = 0;
  }
  b->withdrawals[i].count++;
  b->total_withdrawals++;
out_unlock:
  pthread_mutex_unlock(&b->lock);
  return err;
}

int cynic_budget_snapshot(const cynic_budget_t *cb, cynic_budget_snapshot_t *out) {
  if (cb == NULL || out == NULL)
    return CYNIC_EINVAL;
  /* The mutex is not part of the budget's observable value. */
  cynic_budget_t *b = (cynic_budget_t *)cb;
  window_t w;
  pthread_mutex_lock(&b->lock);
  read_window(b, &w);
  out->balance = cynic__sat_sub(w.allowance, w.withdrawals);
  out->reserve = b->reserve;
  out->deposits_in_window = w.deposits;
  out->withdrawals_in_window = w.withdrawals;
  out->total_deposits = atomic_load_explicit(&b->total_deposits, memory_order_relaxed);
  out->total_withdrawals = b->total_withdrawals;
  out->total_exhausted = b->total_exhausted;
  pthread_mutex_unlock(&b->lock);
  return 0;
}
