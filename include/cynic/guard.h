/*
 * cynic/guard.h: one call to a dependency, guarded by the patterns a caller
 * chooses, in one documented order.
 *
 * A guard is a policy built from components the caller created (and owns):
 *
 *   rate limit -> deadline -> [ retry under budget, with backoff:
 *                                 bulkhead -> breaker -> the call ]
 *
 *  1. Rate limit (a cynic_tokens_t, or a cynic_ratetable_t by key), once per
 *     call: an unwanted caller is turned away before it costs anything (no
 *     deadline, no budget deposit, no slot). Retries do not pay again: the
 *     limit is on requests, and the budget below bounds the retries.
 *  2. Deadline: min(the caller's deadline, now + timeout_ns), once for the
 *     whole call, retries and waits included. Checked before every attempt and
 *     before every budget withdrawal, which cannot be refunded: a retry whose
 *     backoff would end at or past the deadline is not asked for.
 *  3. Retry: one budget deposit per call (the original request), one
 *     withdrawal per retry, a jittered backoff before each retry, at most
 *     max_attempts calls. Only the dependency's failures are retried: a full
 *     bulkhead or an open breaker ends the call (retrying into either adds
 *     load to what is already refusing it).
 *  4. Bulkhead, per attempt: a retry re-enters it, and no slot is held during
 *     a backoff wait (a sleeping caller would take capacity from working ones).
 *  5. Breaker, innermost, after the slot: a half-open probe permit is scarce
 *     (half_open_probes, usually 1) and must not be held while waiting for a
 *     slot; and the breaker judges the dependency alone: the duration it is
 *     given is the call's, not the queue's.
 *
 * Two ways to run a guarded call:
 *  - cynic_guard_call(): for threads; runs the caller's function, waits for
 *    a bulkhead slot (cynic_bulkhead_enter_wait) and sleeps the backoff;
 *  - cynic_guard_step() / cynic_guard_report(): for event loops; never blocks:
 *    it says "run the call now", "wait this long, then step again" or "done",
 *    and the loop does the I/O and the timers. cynic_guard_call() is a loop
 *    over these same two functions, so both behave alike.
 *
 * Thread safety: a guard is immutable after cynic_guard_new(); any number of
 * threads may run calls through it at once (the components have their own
 * guarantees, see each header). A cynic_guard_call_t is one call's state and
 * belongs to one caller at a time (an event loop may step it from whichever
 * thread runs the loop, one step at a time).
 */
#ifndef CYNIC_GUARD_H
#define CYNIC_GUARD_H

#include "cynic/backoff.h"
#include "cynic/breaker.h"
#include "cynic/budget.h"
#include "cynic/bulkhead.h"
#include "cynic/common.h"
#include "cynic/deadline.h"
#include "cynic/ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most calls one guarded call may make (first call and retries). */
#define CYNIC_GUARD_MAX_ATTEMPTS 100u

typedef struct cynic_guard cynic_guard_t;

typedef struct cynic_guard_config {
  cynic_clock_t clock; /* deadlines, backoff and call durations; zeroed: CLOCK_MONOTONIC */

  /* Rate limit: at most one of the two; NULL both for none. */
  cynic_tokens_t *tokens;       /* one bucket for every call */
  cynic_ratetable_t *ratetable; /* one bucket per key (the call's key) */

  /* The whole call's timeout, retries included; combined with the caller's
   * deadline (the earlier wins). 0: none of the guard's own. Default 0. */
  uint64_t timeout_ns;

  /* Calls at most, the first included: 1 = no retry. Default 3. */
  uint32_t max_attempts;
  /* Retries only while the budget allows; NULL: bounded by max_attempts
   * alone (a budget is what keeps retries from multiplying load). */
  cynic_budget_t *budget;
  cynic_backoff_config_t backoff; /* default: cynic_backoff_config_default() */

  cynic_bulkhead_t *bulkhead; /* NULL: none */
  /* cynic_guard_call() only: the longest wait for a slot (within the
   * deadline); 0: do not wait. The step form never waits. Default 0. */
  uint64_t bulkhead_wait_ns;

  cynic_breaker_t *breaker; /* NULL: none */

  /* cynic_guard_call() only: how to wait out a backoff delay. NULL (the
   * default): nanosleep on the real clock. Tests with a fake clock pass a
   * function that moves it. */
  void (*sleep)(void *arg, uint64_t ns);
  void *sleep_arg;
} cynic_guard_config_t;

/* Fills `cfg`: no components, no timeout, 3 attempts, default backoff, no
 * bulkhead wait, default clock and sleep. Does nothing if cfg is NULL. */
CYNIC_API void cynic_guard_config_default(cynic_guard_config_t *cfg);

/*
 * Creates a guard from a copy of `cfg`. The components are borrowed, not
 * copied: they must outlive the guard, and may be shared with other guards
 * and other code. Returns 0, CYNIC_EINVAL (NULL argument, both a bucket and
 * a table, max_attempts 0 or above CYNIC_GUARD_MAX_ATTEMPTS, an invalid
 * backoff config when max_attempts > 1) or CYNIC_ENOMEM.
 */
CYNIC_API int cynic_guard_new(const cynic_guard_config_t *cfg, cynic_guard_t **out);

/* Frees the guard (not its components). NULL is a no-op. No call may be in
 * progress. */
CYNIC_API void cynic_guard_free(cynic_guard_t *g);

/*
 * One call's state, in the caller's memory (stack, or embedded in a
 * request). Fields marked "result" may be read once cynic_guard_step() said
 * CYNIC_GUARD_DONE (or cynic_guard_call() returned); the rest is private.
 */
typedef struct cynic_guard_call {
  /* result */
  int rc;                  /* the outcome, see cynic_guard_call() */
  int fn_rc;               /* the dependency's last answer; 0 if never called */
  int stop;                /* what ended the call when rc != 0: CYNIC_ELIMITED,
                              CYNIC_EDEADLINE, CYNIC_EBUDGET, CYNIC_EFULL,
                              CYNIC_EOPEN, CYNIC_EDEPENDENCY (attempts ran out),
                              CYNIC_EINVAL, CYNIC_ESTATE (abandoned, or stepped
                              without its report) */
  uint32_t attempts;       /* calls made to the dependency */
  uint32_t retries;        /* budget withdrawals (retries granted) */
  uint64_t retry_after_ns; /* ELIMITED / EOPEN: when to come back; else 0 */
  /* private */
  const void *key;
  size_t keylen;
  cynic_deadline_t deadline;
  uint64_t started_ns;
  uint32_t phase;
  bool blocking;
  bool backoff_ready;
  cynic_breaker_permit_t permit;
  cynic_backoff_t backoff;
} cynic_guard_call_t;

typedef enum cynic_guard_action {
  CYNIC_GUARD_DONE = 0, /* the call is over: read c->rc */
  CYNIC_GUARD_RUN = 1,  /* call the dependency now with the given timeout, then
                           cynic_guard_report() */
  CYNIC_GUARD_WAIT = 2, /* step again after the given delay (a backoff) */
} cynic_guard_action_t;

/*
 * Starts a call in `c`. `key`/`keylen` name the caller for a rate table
 * (ignored without one; the bytes must stay valid until the first step);
 * `deadline` is the caller's (cynic_deadline_none() for none). Reads no
 * clock, takes nothing: the first cynic_guard_step() does.
 */
CYNIC_API void cynic_guard_call_init(cynic_guard_call_t *c, const void *key, size_t keylen,
                                     cynic_deadline_t deadline);

/*
 * Moves the call on. Never blocks. Returns what the caller must do next and
 * sets *ns (which may not be NULL) to
 *   RUN:  the attempt's timeout: the time left to the deadline (UINT64_MAX
 *         without one). The caller owns a bulkhead slot and a breaker permit
 *         until it calls cynic_guard_report() exactly once;
 *   WAIT: the backoff delay before the next attempt (a retry already granted
 *         by the budget);
 *   DONE: 0; c->rc holds the outcome. Stepping a done call answers DONE again.
 * A step on a call that awaits its report answers DONE with rc CYNIC_ESTATE
 * after giving back the slot and the permit (a caller bug, made safe).
 */
CYNIC_API cynic_guard_action_t cynic_guard_step(const cynic_guard_t *g, cynic_guard_call_t *c,
                                                uint64_t *ns);

/*
 * Reports the dependency's answer after CYNIC_GUARD_RUN: 0 for success,
 * anything else for a failure (CYNIC_EDEPENDENCY is the code meant for "the
 * dependency failed"; a caller's own negative code is kept in c->fn_rc; a
 * positive one becomes CYNIC_EDEPENDENCY). Records the outcome and the
 * call's duration with the breaker and gives the bulkhead slot back. Then
 * step again. Returns 0, or CYNIC_ESTATE when the call was not running.
 */
CYNIC_API int cynic_guard_report(const cynic_guard_t *g, cynic_guard_call_t *c, int rc);

/*
 * Gives back what a call holds (slot, permit) without an outcome: the caller
 * gave up (the client went away, a loop shuts down). A call not yet done
 * becomes DONE with rc CYNIC_ESTATE; a done call is left as it is. Safe in
 * any phase.
 */
CYNIC_API void cynic_guard_abandon(const cynic_guard_t *g, cynic_guard_call_t *c);

/* The caller's function: one attempt at the dependency, within timeout_ns
 * (UINT64_MAX: no deadline). 0 on success, non-zero on failure. */
typedef int (*cynic_guard_fn)(void *arg, uint64_t timeout_ns);

/*
 * Runs `fn` under the guard, blocking: waits for a bulkhead slot up to
 * bulkhead_wait_ns, sleeps the backoff delays. Returns the outcome:
 *   0                 the dependency answered with success;
 *   the dependency's last failure (fn's negative code, or CYNIC_EDEPENDENCY)
 *                     once it was called at least once: the caller learns
 *                     that the dependency failed, and c->stop says what ended
 *                     the retries (budget, deadline, breaker...);
 *   CYNIC_ELIMITED, CYNIC_EDEADLINE, CYNIC_EFULL, CYNIC_EOPEN
 *                     the guard refused before any call (c->retry_after_ns
 *                     says when to come back for ELIMITED and EOPEN);
 *   CYNIC_EINVAL      NULL g or fn, or a rate table without a key.
 * `out` (may be NULL) receives the call's state, with attempts and retries.
 * Call from any thread; not from an event loop's thread (it blocks).
 */
CYNIC_API int cynic_guard_call(const cynic_guard_t *g, const void *key, size_t keylen,
                               cynic_deadline_t deadline, cynic_guard_fn fn, void *arg,
                               cynic_guard_call_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CYNIC_GUARD_H */
