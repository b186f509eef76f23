/*
 * cynic/budget.h: a retry budget, so that retries never multiply load.
 *
 * Retries are the Dogpile's accomplice: when a dependency is in trouble every
 * caller retries, and a service that retries each request twice sends three
 * times the load to a system that is already failing. A retry budget (Finagle's
 * RetryBudget, Linkerd's retry budgets) allows retries only as a share of the
 * recent original requests, plus a small reserve so that a quiet client can
 * still retry now and then. In an outage the retry rate is thus bounded by a
 * percentage of the normal rate, whatever the number of failures.
 *
 * The model. Time is cut into CYNIC_BUDGET_SLOTS slots of ttl_ns / SLOTS each;
 * the window is the current slot and the SLOTS - 1 before it (so "the last
 * ttl", to one slot's precision). Original requests are deposits, granted
 * retries are withdrawals, both counted in the slot of the moment they happen
 * and forgotten when their slot leaves the window. At any moment:
 *
 *   reserve   = floor(min_retries_per_sec * ttl_ns / 1e9)
 *   allowance = floor(deposits_in_window * retry_percent / 100) + reserve
 *   balance   = max(0, allowance - withdrawals_in_window)
 *
 * and a retry is granted iff balance >= 1. As in Finagle, the minimum per
 * second is a reserve spread over the ttl: with the defaults (ttl 10 s,
 * minimum 10/s) an idle client may make 100 retries in any 10 s window, not
 * 10 in every second.
 *
 * The guarantee: when a retry is granted, the withdrawals in the window,
 * this one included, are at most the allowance of that window. Since deposits
 * also age out, over any window W the retries granted in W are at most
 * floor(retry_percent/100 * deposits in W and the SLOTS - 1 slots before it)
 * + reserve. Percentages above 100 are allowed (up to 1000) for callers that
 * really do want several retries per request; 0 leaves only the reserve.
 *
 * Thread safety: a cynic_budget_t may be shared by any number of threads.
 * cynic_budget_deposit(), called for every request, is lock-free: one clock
 * read and one compare-and-swap on the slot (epoch and count are packed into
 * one 64-bit atomic, so a slot is recycled for a new period by the same CAS
 * that counts). cynic_budget_withdraw() and cynic_budget_snapshot() take a
 * short mutex, so that the check "balance >= 1" and the withdrawal are one
 * step: two threads can never both spend the last retry. Retries only happen
 * on failures, so that path is rare by construction. A deposit racing with a
 * withdrawal may or may not be seen by it; either outcome is within the bound.
 */
#ifndef CYNIC_BUDGET_H
#define CYNIC_BUDGET_H

#include "cynic/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Slots per window: the window slides in steps of ttl_ns / 10. */
#define CYNIC_BUDGET_SLOTS 10

typedef struct cynic_budget cynic_budget_t;

typedef struct cynic_budget_config {
  cynic_clock_t clock;          /* zeroed: CLOCK_MONOTONIC */
  uint64_t ttl_ns;              /* window length; 1 s..60 s; default 10 s */
  double retry_percent;         /* 0..1000, e.g. 20 = 20 %; default 20 */
  uint32_t min_retries_per_sec; /* reserve rate, 0..1,000,000; default 10 */
} cynic_budget_config_t;

/* Balances and counters, read together at one moment. */
typedef struct cynic_budget_snapshot {
  uint64_t balance;               /* retries that would be granted now */
  uint64_t reserve;               /* min_retries_per_sec over the ttl */
  uint64_t deposits_in_window;    /* original requests in the window */
  uint64_t withdrawals_in_window; /* retries granted in the window */
  uint64_t total_deposits;        /* since creation */
  uint64_t total_withdrawals;     /* retries granted since creation */
  uint64_t total_exhausted;       /* retries refused since creation */
} cynic_budget_snapshot_t;

/*
 * Fills `cfg` with Finagle's RetryBudget defaults: ttl 10 s, 20 %, a
 * minimum of 10 retries per second, the monotonic clock. Why: 20 % caps the
 * extra load retries can add in an outage at 1.2x normal traffic, which a
 * dependency sized with any headroom survives; a 10 s window is long enough
 * to average out bursts and short enough to follow traffic; the reserve lets
 * a quiet client still retry.
 */
CYNIC_API void cynic_budget_config_default(cynic_budget_config_t *cfg);

/*
 * Creates a budget with a copy of `cfg`. The ttl is bounded (1 s to 60 s, as
 * in Finagle) so that a slot is at least 100 ms: slot periods are stored in
 * 32 bits and, at that width, wrap only after 13 years. Returns 0 and sets
 * *out, CYNIC_EINVAL if an argument is NULL or a value is out of range
 * (including a NaN percent), CYNIC_ENOMEM. The only allocation of the
 * budget's life happens here. Free with cynic_budget_free().
 */
CYNIC_API int cynic_budget_new(const cynic_budget_config_t *cfg, cynic_budget_t **out);

/* Frees `b` (NULL is fine). No other thread may be using it. */
CYNIC_API void cynic_budget_free(cynic_budget_t *b);

/*
 * Records one original request (never a retry: retries must not earn
 * retries). Lock-free; call it on every request. A slot's count saturates at
 * 2^32 - 1 deposits.
 */
CYNIC_API void cynic_budget_deposit(cynic_budget_t *b);

/*
 * Asks for one retry. Returns 0 if the budget allows it, in which case the
 * retry is counted and the caller should make it; or CYNIC_EBUDGET if the
 * budget is exhausted, in which case the caller must not retry and should
 * return the original failure (fail fast). Takes a short mutex.
 */
CYNIC_API int cynic_budget_withdraw(cynic_budget_t *b);

/*
 * The budget's state now (reads the clock once). The window fields are
 * consistent with one another and with `balance`; they may lag deposits made
 * concurrently. Takes the same short mutex as withdraw. Returns 0, or
 * CYNIC_EINVAL when an argument is NULL. (It returned void and took a
 * non-const pointer before issue 15; callers of that form still build.)
 */
CYNIC_API int cynic_budget_snapshot(const cynic_budget_t *b, cynic_budget_snapshot_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_BUDGET_H */
