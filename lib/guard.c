/*
 * lib/guard.c: the composed guard, a state machine over the components.
 *
 * One call moves through phases; cynic_guard_step() advances it until the
 * caller has something to do (run the dependency, wait a backoff) or the call
 * is over. cynic_guard_call() is the same machine driven by a blocking loop,
 * so the threaded and the event-loop forms cannot drift apart. The order of
 * the components and why is in guard.h and docs/patterns.md.
 */
#define _POSIX_C_SOURCE 200809L
#include "cynic/guard.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

enum phase {
  PHASE_START = 0, /* nothing taken yet: rate limit, deadline, deposit next */
  PHASE_ATTEMPT,   /* next: bulkhead, breaker, run */
  PHASE_RUNNING,   /* the caller holds a slot and a permit; report() next */
  PHASE_FAILED,    /* the last attempt failed: retry or stop next */
  PHASE_DONE,
};

struct cynic_guard {
  cynic_guard_config_t cfg;
};

/* Deadline arithmetic inline (the deadline.h functions are out of line in
 * another unit, and the guard runs them on every call): same semantics. */
static inline bool expired(cynic_deadline_t d, uint64_t now) { return now >= d.at_ns; }
static inline uint64_t left(cynic_deadline_t d, uint64_t now) {
  return d.at_ns == CYNIC_DEADLINE_NONE_NS ? UINT64_MAX : cynic__sat_sub(d.at_ns, now);
}

void cynic_guard_config_default(cynic_guard_config_t *cfg) {
  if (cfg == NULL)
    return;
  *cfg = (cynic_guard_config_t){0};
  cfg->max_attempts = 3;
  cynic_backoff_config_default(&cfg->backoff);
}

int cynic_guard_new(const cynic_guard_config_t *cfg, cynic_guard_t **out) {
  if (cfg == NULL || out == NULL)
    return CYNIC_EINVAL;
  if (cfg->tokens != NULL && cfg->ratetable != NULL)
    return CYNIC_EINVAL;
  if (cfg->max_attempts == 0 || cfg->max_attempts > CYNIC_GUARD_MAX_ATTEMPTS)
    return CYNIC_EINVAL;
  if (cfg->max_attempts > 1 && cynic_backoff_config_validate(&cfg->backoff) != 0)
    return CYNIC_EINVAL;
  cynic_guard_t *g = malloc(sizeof *g);
  if (g == NULL)
    return CYNIC_ENOMEM;
  g->cfg = *cfg;
  *out = g;
  return 0;
}

void cynic_guard_free(cynic_guard_t *g) { free(g); }

void cynic_guard_call_init(cynic_guard_call_t *c, const void *key, size_t keylen,
                           cynic_deadline_t deadline) {
  if (c == NULL)
    return;
  c->rc = 0;
  c->fn_rc = 0;
  c->stop = 0;
  c->attempts = 0;
  c->retries = 0;
  c->retry_after_ns = 0;
  c->key = key;
  c->keylen = keylen;
  c->deadline = deadline;
  c->started_ns = 0;
  c->phase = PHASE_START;
  c->blocking = false;
  c->backoff_ready = false;
}

/* Ends the call. Once the dependency was called, the outcome is its last
 * failure (the caller learns the dependency failed; `stop` says why the
 * retries ended); before that, the guard's own refusal. */
static cynic_guard_action_t finish(cynic_guard_call_t *c, int stop, uint64_t *ns) {
  c->stop = stop;
  c->rc = c->attempts > 0 ? c->fn_rc : stop;
  c->phase = PHASE_DONE;
  *ns = 0;
  return CYNIC_GUARD_DONE;
}

/* Gives back the slot and permit of a running call without an outcome. */
static void give_back(const cynic_guard_t *g, cynic_guard_call_t *c) {
  if (g->cfg.breaker != NULL)
    cynic_breaker_release(g->cfg.breaker, &c->permit);
  if (g->cfg.bulkhead != NULL)
    cynic_bulkhead_leave(g->cfg.bulkhead);
}

static cynic_guard_action_t start(const cynic_guard_t *g, cynic_guard_call_t *c, uint64_t now,
                                  uint64_t *ns) {
  int rc = 0;
  uint64_t wait = 0;
  if (g->cfg.ratetable != NULL) {
    if (c->key == NULL)
      return finish(c, CYNIC_EINVAL, ns);
    rc = cynic_ratetable_take(g->cfg.ratetable, c->key, c->keylen, 1, &wait);
  } else if (g->cfg.tokens != NULL) {
    rc = cynic_tokens_take(g->cfg.tokens, 1, &wait);
  }
  if (rc != 0) {
    c->retry_after_ns = rc == CYNIC_ELIMITED ? wait : 0;
    return finish(c, rc, ns);
  }
  if (g->cfg.timeout_ns != 0) {
    uint64_t at = cynic__sat_add(now, g->cfg.timeout_ns); /* UINT64_MAX: none */
    if (at < c->deadline.at_ns)
      c->deadline.at_ns = at;
  }
  if (expired(c->deadline, now))
    return finish(c, CYNIC_EDEADLINE, ns);
  if (g->cfg.budget != NULL)
    cynic_budget_deposit(g->cfg.budget); /* the original request, once */
  c->phase = PHASE_ATTEMPT;
  return CYNIC_GUARD_RUN; /* not returned: the caller goes on to attempt() */
}

static cynic_guard_action_t attempt(const cynic_guard_t *g, cynic_guard_call_t *c, uint64_t now,
                                    uint64_t *ns) {
  if (expired(c->deadline, now))
    return finish(c, CYNIC_EDEADLINE, ns);
  if (g->cfg.bulkhead != NULL) {
    int rc;
    if (c->blocking && g->cfg.bulkhead_wait_ns != 0) {
      uint64_t rest = left(c->deadline, now);
      rc = cynic_bulkhead_enter_wait(g->cfg.bulkhead,
                                     rest < g->cfg.bulkhead_wait_ns ? rest : g->cfg.bulkhead_wait_ns);
      /* The wait was the call's time: the attempt starts now, with what is
       * left (and the breaker is given the dependency's time, not the queue's). */
      now = cynic_clock_now(&g->cfg.clock);
      if (rc == 0 && expired(c->deadline, now)) {
        cynic_bulkhead_leave(g->cfg.bulkhead); /* a slot too late: unused */
        rc = CYNIC_EDEADLINE;
      } else if (rc == CYNIC_EDEADLINE && !expired(c->deadline, now)) {
        rc = CYNIC_EFULL; /* the bulkhead's wait ran out, not the call's time */
      }
    } else {
      rc = cynic_bulkhead_try_enter(g->cfg.bulkhead);
    }
    if (rc != 0)
      return finish(c, rc, ns);
  }
  if (g->cfg.breaker != NULL) {
    uint64_t retry_after = 0;
    int rc = cynic_breaker_acquire(g->cfg.breaker, &c->permit, &retry_after);
    if (rc != 0) {
      if (g->cfg.bulkhead != NULL)
        cynic_bulkhead_leave(g->cfg.bulkhead);
      c->retry_after_ns = retry_after;
      return finish(c, rc, ns);
    }
  }
  c->attempts++;
  c->started_ns = now;
  c->phase = PHASE_RUNNING;
  *ns = left(c->deadline, now);
  return CYNIC_GUARD_RUN;
}

/* After a failure: retry (WAIT, or straight to the next attempt) or stop.
 * The deadline is checked before the budget, whose withdrawals cannot be
 * refunded: a retry that could not start before the deadline is not paid. */
static cynic_guard_action_t after_failure(const cynic_guard_t *g, cynic_guard_call_t *c,
                                          uint64_t now, uint64_t *ns) {
  if (c->attempts >= g->cfg.max_attempts)
    return finish(c, CYNIC_EDEPENDENCY, ns);
  if (!c->backoff_ready) {
    /* Lazily: seeding costs a clock read, and most calls never retry. */
    if (cynic_backoff_init(&c->backoff, &g->cfg.backoff) != 0)
      return finish(c, CYNIC_EDEPENDENCY, ns);
    c->backoff_ready = true;
  }
  uint64_t delay = cynic_backoff_next(&c->backoff);
  if (left(c->deadline, now) <= delay)
    return finish(c, CYNIC_EDEADLINE, ns);
  if (g->cfg.budget != NULL && cynic_budget_withdraw(g->cfg.budget) != 0)
    return finish(c, CYNIC_EBUDGET, ns);
  c->retries++;
  c->phase = PHASE_ATTEMPT;
  *ns = delay;
  return CYNIC_GUARD_WAIT;
}

cynic_guard_action_t cynic_guard_step(const cynic_guard_t *g, cynic_guard_call_t *c,
                                      uint64_t *ns) {
  uint64_t dummy;
  if (ns == NULL)
    ns = &dummy;
  *ns = 0;
  if (c == NULL)
    return CYNIC_GUARD_DONE;
  if (g == NULL) {
    if (c->phase != PHASE_DONE)
      finish(c, CYNIC_EINVAL, ns);
    return CYNIC_GUARD_DONE;
  }
  uint64_t now;
  switch (c->phase) {
  case PHASE_START:
    now = cynic_clock_now(&g->cfg.clock);
    if (start(g, c, now, ns) == CYNIC_GUARD_DONE)
      return CYNIC_GUARD_DONE;
    return attempt(g, c, now, ns);
  case PHASE_ATTEMPT:
    return attempt(g, c, cynic_clock_now(&g->cfg.clock), ns);
  case PHASE_FAILED:
    return after_failure(g, c, cynic_clock_now(&g->cfg.clock), ns);
  case PHASE_RUNNING:
    give_back(g, c);
    c->attempts = 0; /* the outcome is the guard's, not a dependency's */
    return finish(c, CYNIC_ESTATE, ns);
  default:
    return CYNIC_GUARD_DONE;
  }
}

int cynic_guard_report(const cynic_guard_t *g, cynic_guard_call_t *c, int rc) {
  if (g == NULL || c == NULL || c->phase != PHASE_RUNNING)
    return CYNIC_ESTATE;
  uint64_t now = cynic_clock_now(&g->cfg.clock);
  if (g->cfg.breaker != NULL)
    cynic_breaker_record(g->cfg.breaker, &c->permit,
                         rc == 0 ? CYNIC_OUTCOME_SUCCESS : CYNIC_OUTCOME_FAILURE,
                         cynic__sat_sub(now, c->started_ns));
  if (g->cfg.bulkhead != NULL)
    cynic_bulkhead_leave(g->cfg.bulkhead);
  if (rc == 0) {
    c->fn_rc = 0;
    c->rc = 0;
    c->stop = 0;
    c->phase = PHASE_DONE;
    return 0;
  }
  c->fn_rc = rc < 0 ? rc : CYNIC_EDEPENDENCY;
  c->phase = PHASE_FAILED;
  return 0;
}

void cynic_guard_abandon(const cynic_guard_t *g, cynic_guard_call_t *c) {
  if (c == NULL || c->phase == PHASE_DONE)
    return;
  if (c->phase == PHASE_RUNNING && g != NULL)
    give_back(g, c);
  uint64_t ns;
  c->attempts = 0;
  finish(c, CYNIC_ESTATE, &ns);
}

static void sleep_real(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / UINT64_C(1000000000)), (long)(ns % UINT64_C(1000000000))};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int cynic_guard_call(const cynic_guard_t *g, const void *key, size_t keylen,
                     cynic_deadline_t deadline, cynic_guard_fn fn, void *arg,
                     cynic_guard_call_t *out) {
  cynic_guard_call_t local;
  cynic_guard_call_t *c = out != NULL ? out : &local;
  cynic_guard_call_init(c, key, keylen, deadline);
  if (g == NULL || fn == NULL) {
    c->rc = c->stop = CYNIC_EINVAL;
    c->phase = PHASE_DONE;
    return CYNIC_EINVAL;
  }
  c->blocking = true;
  for (;;) {
    uint64_t ns;
    switch (cynic_guard_step(g, c, &ns)) {
    case CYNIC_GUARD_RUN:
      cynic_guard_report(g, c, fn(arg, ns));
      if (c->phase == PHASE_DONE)
        return c->rc; /* a success: no need to step again */
      break;
    case CYNIC_GUARD_WAIT:
      if (g->cfg.sleep != NULL)
        g->cfg.sleep(g->cfg.sleep_arg, ns);
      else
        sleep_real(ns);
      break;
    case CYNIC_GUARD_DONE:
    default:
      return c->rc;
    }
  }
}
