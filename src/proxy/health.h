/*
 * src/proxy/health.h: active health checks of an upstream's endpoints
 * ("synthetic transactions", Release It!: the external client that finds the
 * hung dependency internal monitors miss).
 *
 * Per upstream with a health_check section, one check per endpoint, each on
 * its own timer: an HTTP/1.1 GET of `path` on a fresh connection of its own
 * (never the pool's, never a bulkhead slot or a retry budget), or a TCP
 * connect without a path. The first check of each endpoint runs at a random
 * offset in [0, interval), each next one interval +-10 % after the previous
 * one started (libcynic's rng, seeded per process), so endpoints and cynic
 * instances never check in lockstep.
 *
 * Verdicts: `unhealthy_after` failures in a row take an endpoint out of
 * rotation: its breaker is held open with reason health_check
 * (cynic_breaker_hold_open: the pick skips it, no user request is its
 * half-open probe); `healthy_after` passes in a row bring it back straight to
 * closed (cynic_breaker_end_hold). An operator's trip or force_closed wins:
 * a check never changes a forced breaker (after a reset by hand, the next
 * failed check of an unhealthy endpoint holds it open again).
 *
 * Lifecycle: cynic__health_sync() makes, restarts and stops the checks to
 * match the upstreams in use (at start and after every reload); state
 * carries over by endpoint address to the new checks of a kept or rebuilt
 * upstream. A stopped object closes its handles and frees itself in their
 * last close callback; it never touches an upstream again.
 *
 * Bounds: per endpoint one connection at a time, a response read of at most
 * CYNIC__HEALTH_MAX_RESPONSE bytes (head at most CYNIC__HEALTH_MAX_HEAD), one
 * 4 KB read buffer and one head store, allocated with the checks.
 */
#ifndef CYNIC_PROXY_HEALTH_H
#define CYNIC_PROXY_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy.h"

#define CYNIC__HEALTH_MAX_HEAD (16u * 1024u)     /* response head bytes */
#define CYNIC__HEALTH_MAX_RESPONSE (64u * 1024u) /* response bytes read before a verdict */
#define CYNIC__HEALTH_MAX_REASON 160u            /* last_failure text, truncated */

typedef enum cynic__health_state {
  CYNIC__HEALTH_UNKNOWN = 0, /* no verdict yet: in rotation */
  CYNIC__HEALTH_HEALTHY,
  CYNIC__HEALTH_UNHEALTHY /* out of rotation (its breaker held open) */
} cynic__health_state_t;

/* What /status, /metrics and the status page show of one endpoint's checks. */
typedef struct cynic__health_status {
  cynic__health_state_t state;
  uint64_t checks;          /* verdicts since start (carried over reloads) */
  uint64_t failures;        /* of those, failed */
  uint32_t passes_in_row;   /* consecutive passes now */
  uint32_t failures_in_row; /* consecutive failures now */
  uint64_t last_latency_us; /* the last check, start to verdict (uv_hrtime; a timeout's
                               is its timeout, within the loop clock's millisecond) */
  char last_failure[CYNIC__HEALTH_MAX_REASON]; /* "" before any */
} cynic__health_status_t;

/* "healthy", "unhealthy", "unknown". */
const char *cynic__health_state_name(cynic__health_state_t s);

/* Makes the checks match the config in use: an upstream in use with a
 * health_check gets checks (new, or restarted when its health_check changed:
 * state carried over by endpoint address, from its own old checks or those of
 * the upstream it rebuilds); retired upstreams and those without one lose
 * theirs. Nothing while stopping. Out of memory: that upstream goes unchecked
 * (logged) and the next sync tries again. */
void cynic__health_sync(cynic__proxy_t *p);
/* Stops every check (shutdown): timers and connections close; the loop must
 * run for their close callbacks, which free the objects. */
void cynic__health_stop_all(cynic__proxy_t *p);
/* The checks' status of endpoint e; NULL when its upstream has none. */
const cynic__health_status_t *cynic__health_of(const cynic__endpoint_t *e);
/* Human-readable interval of u's checks in ms (0 without), for /status. */
uint64_t cynic__health_interval_ms(const cynic__upstream_t *u);

#endif /* CYNIC_PROXY_HEALTH_H */
