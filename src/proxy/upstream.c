/*
 * src/proxy/upstream.c: upstreams, their endpoints and breakers, balancing.
 *
 * Each endpoint has its own libcynic circuit breaker, clocked by the loop's
 * cached time. A pick walks the endpoints in balance order and takes the first
 * breaker permit it gets: endpoints whose breaker is open are skipped (Circuit
 * Breaker), and when every one is open the caller closes the client at once
 * (Fail Fast). Host names are resolved off the loop (uv_getaddrinfo runs in
 * libuv's thread pool) at start and every resolve_interval; an endpoint keeps
 * its last good address when a later resolution fails.
 *
 * Admission (Bulkheads): one libcynic bulkhead per upstream caps what is in
 * flight to it (connections in TCP mode, requests in HTTP mode), with a
 * bounded queue of waiters. The waiters are embedded in whatever waits and
 * kept here on the upstream's `waiters` list, oldest first; a freed slot goes
 * to the oldest (fair: an arrival never jumps the queue). The queue timeout
 * is one timer per upstream, armed for the oldest waiter's deadline, rather
 * than one per waiter: every waiter of an upstream waits the same
 * queue_timeout, so deadlines come in queue order and the next one to fire is
 * always the head's; the timer is only re-armed when it fires (a promotion
 * does not touch the timer heap), and a mode that queues requests (HTTP) needs
 * no timer of its own for it.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "addr.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "stale_cache.h"

static void on_transition(void *arg, cynic_breaker_state_t from, cynic_breaker_state_t to,
                          cynic_breaker_reason_t reason, uint64_t at_ns) {
  (void)at_ns;
  cynic__endpoint_t *e = arg;
  e->state = to; /* the loop's thread makes every transition: no race */
  cynic__metrics_transition(e, from, to, reason);
  bool bad = to == CYNIC_BREAKER_OPEN || to == CYNIC_BREAKER_FORCED_OPEN;
  cynic__log_event(
      bad ? CYNIC_LOG_WARN : CYNIC_LOG_INFO, "breaker_transition", "breaker transition",
      json_pack("{s:s, s:s, s:s, s:s, s:s}", "upstream", e->upstream->cfg->name, "endpoint",
                e->addr->text, "from", cynic_breaker_state_name(from), "to",
                cynic_breaker_state_name(to), "reason", cynic_breaker_reason_name(reason)));
}

/* p's clock: the loop's cached time unless a test injected its own. */
static cynic_clock_t clock_of(cynic__proxy_t *p) {
  if (p->clock.now != NULL)
    return p->clock;
  cynic_clock_t c = {cynic__proxy_clock, p};
  return c;
}

static int breaker_new(cynic__proxy_t *p, cynic__endpoint_t *e) {
  const cynic__config_breaker_t *bc = &e->upstream->cfg->breaker;
  cynic_breaker_config_t c;
  /* Every field the proxy's semantics rest on is set here, whatever the
   * library's defaults become: the bucket and the window (when configured)
   * both judge every call, the window is off unless configured. */
  cynic_breaker_config_default(&c);
  c.clock = clock_of(p);
  c.faults = bc->faults;
  c.leak_ns = bc->leak_ns;
  c.slow_is_fault = false;
  c.window.kind = CYNIC_BREAKER_WINDOW_NONE;
  c.bucket_low_traffic_only = false;
  c.half_open_calls = 0;
  c.half_open_successes = 0;
  c.open_ns = bc->open_for_ns;
  c.open_max_ns = bc->open_max_ns > bc->open_for_ns ? bc->open_max_ns : bc->open_for_ns;
  c.open_multiplier = bc->open_multiplier;
  c.half_open_probes = bc->half_open_probes;
  c.slow_call_ns = 0;
  if (bc->window_type != CYNIC__WINDOW_NONE) {
    c.window.kind = bc->window_type == CYNIC__WINDOW_COUNT ? CYNIC_BREAKER_WINDOW_COUNT
                                                           : CYNIC_BREAKER_WINDOW_TIME;
    c.window.size = bc->window_type == CYNIC__WINDOW_COUNT
                        ? bc->window_size
                        : (uint32_t)(bc->window_size_ns / UINT64_C(1000000000));
    c.window.min_calls = bc->window_min_calls;
    c.window.failure_rate = bc->failure_rate_pct;
    c.window.slow_rate = bc->slow_rate_pct >= 100 ? 0 : bc->slow_rate_pct;
    c.slow_call_ns = bc->slow_call_ns;
  }
  c.on_transition = on_transition;
  c.on_transition_arg = e;
  return cynic_breaker_new(&c, &e->breaker);
}

static void set_literal(cynic__endpoint_t *e) {
  const cynic__config_addr_t *a = e->addr;
  memset(&e->sa, 0, sizeof e->sa);
  if (a->kind == CYNIC__ADDR_IPV4) {
    struct sockaddr_in *s = (struct sockaddr_in *)&e->sa;
    s->sin_family = AF_INET;
    s->sin_port = htons(a->port);
    memcpy(&s->sin_addr, a->ip, 4);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&e->sa;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(a->port);
    memcpy(&s->sin6_addr, a->ip, 16);
  }
  e->resolved = true;
}

static void resolved(cynic__endpoint_t *e, int status, struct addrinfo *res);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  cynic__endpoint_t *e = cynic__container_of(req, cynic__endpoint_t, gai);
  cynic__proxy_t *p = e->upstream->proxy;
  e->resolving = false;
  if (status == UV_ECANCELED) {
    uv_freeaddrinfo(res);
    return;
  }
  /* Log first, then maybe bind the listeners (which logs "started"). */
  resolved(e, status, res);
  if (e->first) {
    e->first = false;
    cynic__proxy_resolved(p);
  }
}

static void resolved(cynic__endpoint_t *e, int status, struct addrinfo *res) {
  if (status != 0 || res == NULL || res->ai_addrlen > sizeof e->sa) {
    cynic__log_event(CYNIC_LOG_WARN, "resolve_failed", "cannot resolve endpoint",
                     json_pack("{s:s, s:s, s:s, s:b}", "upstream", e->upstream->cfg->name,
                               "endpoint", e->addr->text, "error",
                               status != 0 ? cynic__strerror(status) : "no address", "keeping_previous",
                               e->resolved));
    uv_freeaddrinfo(res);
    return;
  }
  struct sockaddr_storage before = e->sa;
  bool had = e->resolved;
  memcpy(&e->sa, res->ai_addr, res->ai_addrlen); /* the first address; no service asked */
  /* sin_port and sin6_port sit at the same offset (POSIX layout on Linux) */
  ((struct sockaddr_in *)&e->sa)->sin_port = htons(e->addr->port);
  e->resolved = true;
  uv_freeaddrinfo(res);
  if (!had || memcmp(&before, &e->sa, sizeof before) != 0) {
    char ip[CYNIC_ADDR_STR_MAX] = "?";
    cynic__addr_format((struct sockaddr *)&e->sa, ip, sizeof ip);
    cynic__log_event(CYNIC_LOG_INFO, "resolved", "endpoint resolved",
                     json_pack("{s:s, s:s, s:s}", "upstream", e->upstream->cfg->name, "endpoint",
                               e->addr->text, "address", ip));
  }
}

static void resolve(cynic__proxy_t *p, cynic__endpoint_t *e) {
  if (e->addr->kind != CYNIC__ADDR_NAME || e->resolving)
    return;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int rc = uv_getaddrinfo(p->loop, &e->gai, on_resolved, e->addr->host, NULL, &hints);
  if (rc == 0) {
    e->resolving = true;
    /* no listener bound yet: we are starting, and serve() waits for this */
    if (!e->resolved && !e->first && !p->stopping && p->listener_count == 0) {
      e->first = true;
      p->first_resolutions++;
    }
  } else
    cynic__log_event(CYNIC_LOG_WARN, "resolve_failed", "cannot resolve endpoint",
                     json_pack("{s:s, s:s, s:s}", "upstream", e->upstream->cfg->name, "endpoint",
                               e->addr->text, "error", cynic__strerror(rc)));
}

static void on_resolve_timer(uv_timer_t *t) {
  cynic__upstream_t *u = t->data;
  for (size_t i = 0; i < u->endpoint_count; i++)
    resolve(u->proxy, &u->endpoints[i]);
}

/* The retry budget of `u` for its config, which replaced `was` (NULL: u is
 * new): made, kept with its window when `was` had the same budget settings,
 * remade when they changed, freed without retries. 0 or CYNIC_ENOMEM. */
static int budget_sync(cynic__upstream_t *u, const cynic__config_upstream_t *was) {
  const cynic__config_http_t *h = &u->cfg->http;
  bool want = h->has_retry && h->retry_attempts > 0 && h->retry_budget_pct > 0;
  if (u->retry_budget != NULL && want && was != NULL &&
      was->http.retry_budget_pct == h->retry_budget_pct &&
      was->http.retry_min_per_sec == h->retry_min_per_sec)
    return 0;
  cynic_budget_free(u->retry_budget);
  u->retry_budget = NULL;
  if (!want)
    return 0;
  cynic_budget_config_t bc;
  cynic_budget_config_default(&bc);
  bc.retry_percent = h->retry_budget_pct;
  bc.min_retries_per_sec = h->retry_min_per_sec;
  return cynic_budget_new(&bc, &u->retry_budget);
}

int cynic__upstream_init(cynic__proxy_t *p, cynic__upstream_t *u,
                         const cynic__config_upstream_t *cfg) {
  u->proxy = p;
  u->cfg = cfg;
  cynic__list_init(&u->waiters);
  uv_timer_init(p->loop, &u->resolve_timer);
  u->resolve_timer.data = u;
  uv_timer_init(p->loop, &u->queue_timer);
  u->queue_timer.data = u;
  uv_unref((uv_handle_t *)&u->queue_timer); /* waiters' own handles keep the loop */
  u->timer_open = 2;
  u->endpoints = calloc(u->cfg->endpoint_count, sizeof *u->endpoints);
  if (u->endpoints == NULL)
    return CYNIC_ENOMEM;
  u->endpoint_count = u->cfg->endpoint_count;
  cynic_bulkhead_config_t bc;
  cynic_bulkhead_config_default(&bc);
  bc.max_concurrent = u->cfg->max_connections;
  bc.max_pending = u->cfg->max_pending;
  int rc = cynic_bulkhead_new(&bc, &u->bulkhead);
  if (rc != 0 || (rc = budget_sync(u, NULL)) != 0)
    return rc;
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic__endpoint_t *e = &u->endpoints[k];
    e->upstream = u;
    e->addr = &u->cfg->endpoints[k];
    cynic__list_init(&e->idle); /* pool.c: filled by HTTP mode only */
    if ((rc = breaker_new(p, e)) != 0)
      return rc;
    if (e->addr->kind == CYNIC__ADDR_NAME)
      u->has_names = true;
    else
      set_literal(e);
  }
  return 0;
}

void cynic__upstream_resolve_start(cynic__proxy_t *p, cynic__upstream_t *u) {
  for (size_t k = 0; k < u->endpoint_count; k++)
    if (u->endpoints[k].addr->kind == CYNIC__ADDR_NAME)
      resolve(p, &u->endpoints[k]);
  if (u->has_names && u->cfg->resolve_interval_ns > 0) {
    uint64_t ms = u->cfg->resolve_interval_ns / 1000000u;
    if (ms == 0)
      ms = 1;
    uv_timer_start(&u->resolve_timer, on_resolve_timer, ms, ms);
    uv_unref((uv_handle_t *)&u->resolve_timer);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  cynic__upstream_t *u = h->data;
  u->timer_open--;
}

static void close_timer(cynic__upstream_t *u) {
  if (u->resolve_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&u->resolve_timer))
    uv_close((uv_handle_t *)&u->resolve_timer, on_timer_closed);
  if (u->queue_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&u->queue_timer))
    uv_close((uv_handle_t *)&u->queue_timer, on_timer_closed);
}

static void upstream_free(cynic__upstream_t *u) {
  cynic__tls_upstream_free(u);
  if (u->endpoints != NULL)
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic__pool_close_all(&u->endpoints[k]); /* their close callbacks never touch e */
      cynic_breaker_free(u->endpoints[k].breaker);
    }
  free(u->endpoints);
  u->endpoints = NULL;
  cynic_bulkhead_free(u->bulkhead);
  u->bulkhead = NULL;
  cynic_budget_free(u->retry_budget);
  u->retry_budget = NULL;
  cynic__stale_free(u->stale); /* no session uses u any more: no capture is under way */
  u->stale = NULL;
}

void cynic__upstream_discard(cynic__upstream_t *u) {
  close_timer(u);
  upstream_free(u);
}

bool cynic__upstream_reclaim(cynic__upstream_t *u) {
  close_timer(u);
  bool busy = u->timer_open > 0;
  for (size_t k = 0; u->endpoints != NULL && k < u->endpoint_count; k++)
    if (u->endpoints[k].resolving) {
      uv_cancel((uv_req_t *)&u->endpoints[k].gai); /* its callback still runs */
      busy = true;
    }
  if (busy)
    return false;
  upstream_free(u);
  memset(u, 0, sizeof *u);
  u->retired = true; /* cfg NULL: vacant */
  return true;
}

int cynic__upstreams_start(cynic__proxy_t *p) {
  const cynic__config_t *cfg = p->cfg;
  /* Room for the most a config may hold: a reload adds upstreams in place and
   * never moves one (connections and libuv hold pointers into them). */
  p->upstreams = calloc(CYNIC__CONFIG_MAX_UPSTREAMS, sizeof *p->upstreams);
  if (p->upstreams == NULL)
    return CYNIC_ENOMEM;
  p->upstream_count = cfg->upstream_count;
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    int rc = cynic__upstream_init(p, &p->upstreams[i], &cfg->upstreams[i]);
    if (rc != 0)
      return rc;
    cynic__upstream_resolve_start(p, &p->upstreams[i]);
  }
  cynic__health_sync(p); /* health_check: checks of every endpoint (health.c) */
  return 0;
}

void cynic__upstreams_stop(cynic__proxy_t *p) {
  cynic__health_stop_all(p);
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    if (u->endpoints != NULL)
      for (size_t k = 0; k < u->endpoint_count; k++) {
        if (u->endpoints[k].resolving)
          uv_cancel((uv_req_t *)&u->endpoints[k].gai);
        cynic__pool_close_all(&u->endpoints[k]);
      }
    close_timer(u);
  }
}

void cynic__upstreams_tick(cynic__proxy_t *p) {
  uint64_t now = uv_now(p->loop);
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    for (size_t k = 0; u->endpoints != NULL && k < u->endpoint_count; k++)
      cynic__pool_sweep(&u->endpoints[k], now);
  }
}

void cynic__upstreams_free(cynic__proxy_t *p) {
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic__upstream_t *u = &p->upstreams[i];
    cynic__tls_upstream_free(u);
    if (u->endpoints != NULL)
      for (size_t k = 0; k < u->endpoint_count; k++)
        cynic_breaker_free(u->endpoints[k].breaker);
    free(u->endpoints);
    cynic_bulkhead_free(u->bulkhead);
    cynic_budget_free(u->retry_budget);
    cynic__stale_free(u->stale);
  }
  free(p->upstreams);
  p->upstreams = NULL;
  p->upstream_count = 0;
}

/* Tries endpoint `e`: true with a permit when it has an address and its
 * breaker lets the call through. */
static bool try_endpoint(cynic__endpoint_t *e, cynic_breaker_permit_t *permit, bool *any_resolved) {
  if (!e->resolved)
    return false;
  *any_resolved = true;
  return cynic_breaker_acquire(e->breaker, permit, NULL) == 0;
}

/* Picks an endpoint (balance, skipping open breakers) and takes a breaker
 * permit on it: 0, CYNIC_EOPEN when every breaker is open, CYNIC_ESTATE when
 * no endpoint has an address yet. */
static int pick(cynic__upstream_t *u, cynic__endpoint_t **out, cynic_breaker_permit_t *permit,
                uint64_t avoid) {
  size_t n = u->endpoint_count;
  bool any_resolved = false;
  if (u->cfg->balance == CYNIC__BALANCE_ROUND_ROBIN) {
    for (size_t i = 0; i < n; i++) {
      size_t k = (u->next + i) % n;
      if (avoid & (UINT64_C(1) << k))
        continue;
      if (try_endpoint(&u->endpoints[k], permit, &any_resolved)) {
        u->next = (k + 1) % n;
        *out = &u->endpoints[k];
        return 0;
      }
    }
  } else {
    /* Least connections: fewest active first, ties in round-robin order. An
     * endpoint whose breaker refuses is left out of the next rounds; at most
     * 64 endpoints, so the O(n^2) walk is a few hundred comparisons. */
    uint64_t tried = avoid;
    for (size_t round = 0; round < n; round++) {
      size_t best = n;
      for (size_t i = 0; i < n; i++) {
        size_t k = (u->next + i) % n;
        if (tried & (UINT64_C(1) << k))
          continue;
        if (best == n || u->endpoints[k].active < u->endpoints[best].active)
          best = k;
      }
      if (best == n)
        break;
      tried |= UINT64_C(1) << best;
      if (try_endpoint(&u->endpoints[best], permit, &any_resolved)) {
        u->next = (best + 1) % n;
        *out = &u->endpoints[best];
        return 0;
      }
    }
  }
  return any_resolved ? CYNIC_EOPEN : CYNIC_ESTATE;
}

int cynic__attempt_start_avoid(cynic__upstream_t *u, cynic__attempt_t *a, uint64_t avoid) {
  cynic__endpoint_t *e;
  int rc = avoid != 0 ? pick(u, &e, &a->permit, avoid) : CYNIC_EOPEN;
  if (rc != 0) /* none left that was not tried: any, the tried ones included */
    rc = pick(u, &e, &a->permit, 0);
  if (rc != 0)
    return rc;
  a->endpoint = e;
  a->has_permit = true;
  e->active++;
  return 0;
}

int cynic__attempt_start(cynic__upstream_t *u, cynic__attempt_t *a) {
  return cynic__attempt_start_avoid(u, a, 0);
}

void cynic__attempt_success(cynic__attempt_t *a) {
  if (!a->has_permit)
    return;
  a->has_permit = false;
  cynic_breaker_record(a->endpoint->breaker, &a->permit, CYNIC_OUTCOME_SUCCESS, 0);
}

void cynic__attempt_fault(cynic__attempt_t *a, cynic__event_t ev, const char *detail) {
  cynic__endpoint_t *e = a->endpoint;
  if (a->has_permit) {
    a->has_permit = false;
    cynic_breaker_record(e->breaker, &a->permit, CYNIC_OUTCOME_FAILURE, 0);
  }
  cynic__proxy_event(&e->counters, ev, "endpoint", e->addr->text, e->upstream->cfg->name, detail);
}

void cynic__attempt_release(cynic__attempt_t *a) {
  if (!a->has_permit)
    return;
  a->has_permit = false;
  cynic_breaker_release(a->endpoint->breaker, &a->permit);
}

void cynic__attempt_end(cynic__attempt_t *a) {
  if (a->endpoint == NULL)
    return;
  cynic__attempt_release(a);
  a->endpoint->active--;
}

bool cynic__upstream_available(const cynic__upstream_t *u) {
  for (size_t i = 0; i < u->endpoint_count; i++) {
    const cynic__endpoint_t *e = &u->endpoints[i];
    if (e->state != CYNIC_BREAKER_OPEN && e->state != CYNIC_BREAKER_FORCED_OPEN)
      return true; /* the common case: no lock, no clock */
    cynic_breaker_snapshot_t s;
    if (cynic_breaker_snapshot(e->breaker, &s) != 0)
      return true;
    if (s.state != CYNIC_BREAKER_OPEN && s.state != CYNIC_BREAKER_FORCED_OPEN)
      return true;
    if (s.state == CYNIC_BREAKER_OPEN && s.next_probe_ns == 0)
      return true; /* the open interval is over: the next pick is a probe */
  }
  return false;
}

/* ---- admission ------------------------------------------------------------ */

static uint64_t now_ns(cynic__upstream_t *u) {
  cynic_clock_t c = clock_of(u->proxy);
  return c.now(c.arg);
}

static void on_queue_timer(uv_timer_t *t) {
  cynic__upstream_t *u = t->data;
  cynic__admission_expire(u, now_ns(u));
}

/* Arms the queue timer to fire `ns` from now, rounded up to the loop's ms. */
static void queue_timer_arm(cynic__upstream_t *u, uint64_t ns) {
  /* fails once closing: fine */
  uv_timer_start(&u->queue_timer, on_queue_timer, cynic__config_ms(ns), 0);
}

/* Hands free slots to the oldest waiters and runs their callbacks; true when
 * `self` (a waiter being queued now, or NULL) got one: its callback is not
 * run, its caller learns it from the return value. */
static bool promote(cynic__upstream_t *u, cynic__waiter_t *self) {
  bool got = false;
  while (!cynic__list_empty(&u->waiters)) {
    if (cynic_bulkhead_promote(u->bulkhead) != 0)
      break;
    cynic__waiter_t *w = cynic__container_of(u->waiters.next, cynic__waiter_t, link);
    cynic__list_remove(&w->link);
    if (w == self)
      got = true;
    else
      w->cb(w, 0); /* may leave() again: the loop reads the list afresh */
  }
  return got;
}

int cynic__admission_enter(cynic__upstream_t *u, cynic__waiter_t *w, cynic__admit_cb cb,
                           bool *queued) {
  bool q = false;
  *queued = false;
  if (cynic_bulkhead_enter_or_queue(u->bulkhead, &q) != 0)
    return CYNIC_EFULL;
  if (!q)
    return 0;
  uint64_t now = now_ns(u);
  w->cb = cb;
  w->deadline_ns = now + u->cfg->queue_timeout_ns;
  bool first = cynic__list_empty(&u->waiters);
  cynic__list_push(&u->waiters, &w->link);
  /* A slot may be free: fair mode queues an arrival behind waiters. */
  if (promote(u, w))
    return 0;
  if (first) /* otherwise the timer is armed for an older, earlier deadline */
    queue_timer_arm(u, w->deadline_ns - now);
  *queued = true;
  return 0;
}

void cynic__admission_cancel(cynic__upstream_t *u, cynic__waiter_t *w) {
  if (!cynic__linked(&w->link))
    return;
  cynic__list_remove(&w->link);
  cynic_bulkhead_dequeue(u->bulkhead);
}

void cynic__admission_leave(cynic__upstream_t *u) {
  cynic_bulkhead_leave(u->bulkhead);
  promote(u, NULL);
}

void cynic__admission_expire(cynic__upstream_t *u, uint64_t now) {
  while (!cynic__list_empty(&u->waiters)) {
    cynic__waiter_t *w = cynic__container_of(u->waiters.next, cynic__waiter_t, link);
    if (w->deadline_ns > now) {
      queue_timer_arm(u, w->deadline_ns - now);
      return;
    }
    cynic__list_remove(&w->link);
    cynic_bulkhead_dequeue(u->bulkhead);
    w->cb(w, CYNIC_EDEADLINE);
  }
}

/* ---- reload: the upstreams' part ------------------------------------------ */

cynic__upstream_t *cynic__upstream_named(cynic__proxy_t *p, const char *name) {
  for (size_t i = 0; i < p->upstream_count; i++)
    if (!p->upstreams[i].retired && !p->upstreams[i].fresh && p->upstreams[i].cfg != NULL &&
        strcmp(p->upstreams[i].cfg->name, name) == 0)
      return &p->upstreams[i];
  return NULL;
}

void cynic__upstream_cfg_set(cynic__upstream_t *u, const cynic__config_upstream_t *cfg) {
  const cynic__config_upstream_t *was = u->cfg; /* alive until the reload is over */
  u->cfg = cfg;
  for (size_t k = 0; k < u->endpoint_count; k++)
    u->endpoints[k].addr = &cfg->endpoints[k];
  if (budget_sync(u, was) != 0) /* out of memory: no retries until the next reload */
    cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a retry budget",
                     json_pack("{s:s}", "upstream", cfg->name));
}

void cynic__upstream_carry(cynic__upstream_t *u, const cynic__upstream_t *old) {
  if (old == NULL)
    return;
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic__endpoint_t *e = &u->endpoints[k];
    for (size_t j = 0; j < old->endpoint_count; j++) {
      const cynic__endpoint_t *oe = &old->endpoints[j];
      if (strcmp(oe->addr->text, e->addr->text) != 0)
        continue;
      cynic_breaker_snapshot_t s;
      if (cynic_breaker_carry(e->breaker, oe->breaker) != 0 ||
          cynic_breaker_snapshot(e->breaker, &s) != 0)
        break;
      e->state = s.state; /* carry fires no callback: mirror it here */
      if (s.state == CYNIC_BREAKER_FORCED_OPEN || s.state == CYNIC_BREAKER_FORCED_CLOSED) {
        memcpy(e->stats.manual_by, oe->stats.manual_by, sizeof e->stats.manual_by);
        memcpy(e->stats.manual_reason, oe->stats.manual_reason, sizeof e->stats.manual_reason);
      }
      break;
    }
  }
}
