/*
 * src/proxy/admin_views.c: the admin API's JSON views: /status, /status/history,
 * /breakers (and the operator's breaker overrides), /ready, and the
 * producer that renders the large ones (and /metrics) in slices.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "addr.h"
#include "admin.h"
#include "health.h"
#include "http_fallback.h"
#include "stale_cache.h"
#include "json.h"
#include "log.h"
#include "pool.h"
#include "token.h"

typedef cynic__admin_req_t req_t;

#define REASON_MAX 127 /* an operator's `reason`, bytes (cut at a character) */

/* ---- views ----------------------------------------------------------------------- */

static json_t *iso_time(int64_t unix_ms) {
  time_t s = (time_t)(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(unix_ms % 1000));
  return json_string(buf);
}

static json_t *seconds(uint64_t ns) {
  if (ns == UINT64_MAX)
    return json_null(); /* forced open: until an operator acts */
  return json_real((double)(ns / 1000000u) / 1000.0);
}

static bool snap_open(const cynic_breaker_snapshot_t *s) {
  return s->state == CYNIC_BREAKER_OPEN || s->state == CYNIC_BREAKER_FORCED_OPEN;
}

static json_t *breaker_json(const cynic__endpoint_t *e) {
  cynic_breaker_snapshot_t s;
  cynic_breaker_snapshot(e->breaker, &s);
  const cynic__config_breaker_t *bc = &e->upstream->cfg->breaker;
  int64_t now = cynic__proxy_unix_ms(e->upstream->proxy);
  json_t *o = json_object();
  json_object_set_new(o, "state", json_string(cynic_breaker_state_name(s.state)));
  json_object_set_new(o, "reason", json_string(cynic_breaker_reason_name(s.last_reason)));
  if (s.since_ns != 0 && s.now_ns >= s.since_ns) {
    uint64_t ago_ms = (s.now_ns - s.since_ns) / 1000000u;
    json_object_set_new(o, "since", iso_time(now - (int64_t)ago_ms));
    json_object_set_new(o, "for_s", json_real((double)ago_ms / 1000.0));
  } else {
    json_object_set_new(o, "since", json_null());
    json_object_set_new(o, "for_s", json_null());
  }
  json_object_set_new(
      o, "manual",
      json_boolean(s.state == CYNIC_BREAKER_FORCED_OPEN || s.state == CYNIC_BREAKER_FORCED_CLOSED));
  if (e->stats.manual_by[0] != '\0') {
    json_object_set_new(o, "changed_by", json_string(e->stats.manual_by));
    json_object_set_new(o, "change_reason", json_string(e->stats.manual_reason));
  }
  json_object_set_new(o, "bucket_level", json_real(s.bucket_level));
  json_object_set_new(o, "faults_to_trip", json_integer(bc->faults));
  json_object_set_new(o, "failure_rate",
                      s.failure_rate < 0 ? json_null() : json_real(s.failure_rate));
  json_object_set_new(o, "window_calls", json_integer(s.window_calls));
  json_object_set_new(o, "next_probe_s",
                      s.state == CYNIC_BREAKER_OPEN || s.state == CYNIC_BREAKER_FORCED_OPEN
                          ? seconds(s.next_probe_ns)
                          : json_real(0));
  json_object_set_new(o, "open_interval_s", seconds(s.open_interval_ns));
  json_object_set_new(o, "consecutive_trips", json_integer(s.consecutive_trips));
  json_object_set_new(o, "successes", json_integer((json_int_t)s.successes));
  json_object_set_new(o, "failures", json_integer((json_int_t)s.failures));
  json_object_set_new(o, "rejected", json_integer((json_int_t)s.rejected));
  json_object_set_new(o, "transitions", json_integer((json_int_t)s.transitions));
  return o;
}

/* health_check's view of e (health.c); null when its upstream has none. */
static json_t *health_json(const cynic__endpoint_t *e) {
  const cynic__health_status_t *h = cynic__health_of(e);
  if (h == NULL)
    return json_null();
  return json_pack("{s:s, s:I, s:I, s:i, s:i, s:I, s:s?}", "state",
                   cynic__health_state_name(h->state), "checks", (json_int_t)h->checks, "failures",
                   (json_int_t)h->failures, "passes_in_row", (int)h->passes_in_row,
                   "failures_in_row", (int)h->failures_in_row, "last_latency_us",
                   (json_int_t)h->last_latency_us,
                   "last_failure", h->last_failure[0] != '\0' ? h->last_failure : NULL);
}

static json_t *endpoint_json(const cynic__endpoint_t *e) {
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(e->addr->text));
  char ip[CYNIC_ADDR_STR_MAX];
  if (e->resolved && cynic__addr_format((const struct sockaddr *)&e->sa, ip, sizeof ip) == 0)
    json_object_set_new(o, "address", json_string(ip));
  else
    json_object_set_new(o, "address", json_null());
  json_object_set_new(o, "active", json_integer(e->active));
  json_object_set_new(o, "breaker", breaker_json(e));
  json_object_set_new(o, "counts", cynic__counts_json(&e->counters));
  json_object_set_new(o, "health", health_json(e));
  return o;
}

static json_t *bulkhead_json(const cynic__upstream_t *u) {
  cynic_bulkhead_stats_t s;
  cynic_bulkhead_stats(u->bulkhead, &s);
  return json_pack("{s:i, s:i, s:i, s:i, s:I, s:I}", "in_use", (int)s.in_use, "limit",
                   (int)s.max_concurrent, "pending", (int)s.pending, "pending_limit",
                   (int)s.max_pending, "rejected_full",
                   (json_int_t)u->counters.total[CYNIC__EV_BULKHEAD_FULL], "queue_timeouts",
                   (json_int_t)u->counters.total[CYNIC__EV_QUEUE_TIMEOUT]);
}

static json_t *upstream_breakers_json(const cynic__upstream_t *u) {
  json_t *eps = json_array();
  for (size_t k = 0; k < u->endpoint_count; k++)
    json_array_append_new(eps, endpoint_json(&u->endpoints[k]));
  return eps;
}

/* True when an HTTP listener (live or retired) sends requests to `u`. */
static bool serves_http(const cynic__upstream_t *u) {
  const cynic__proxy_t *p = u->proxy;
  for (size_t i = 0; i < p->listener_count; i++)
    if (p->listeners[i].cfg != NULL && p->listeners[i].upstream == u &&
        p->listeners[i].cfg->mode == CYNIC__MODE_HTTP)
      return true;
  return false;
}

/* The idle pool of every endpoint together. */
static json_t *pool_json(const cynic__upstream_t *u) {
  uint64_t idle = 0, reused = 0, discarded = 0;
  for (size_t k = 0; k < u->endpoint_count; k++) {
    idle += u->endpoints[k].idle_count;
    reused += u->endpoints[k].pool_reused;
    discarded += u->endpoints[k].pool_discarded;
  }
  return json_pack("{s:I, s:I, s:I, s:I}", "idle", (json_int_t)idle, "max_idle_per_endpoint",
                   (json_int_t)u->cfg->http.pool_max_idle, "reused", (json_int_t)reused,
                   "discarded", (json_int_t)discarded);
}

/* Retries: the budget's balance (NULL budget: retries off) and what became
 * of failed attempts retry.on names. */
static json_t *retry_json(const cynic__upstream_t *u) {
  cynic_budget_snapshot_t b;
  if (u->retry_budget == NULL || cynic_budget_snapshot(u->retry_budget, &b) != 0)
    return json_null();
  const uint64_t *r = u->stats.retries;
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "balance", (json_int_t)b.balance,
                   "requests_in_window", (json_int_t)b.deposits_in_window, "retries_in_window",
                   (json_int_t)b.withdrawals_in_window, "retried",
                   (json_int_t)r[CYNIC__RETRY_RETRIED], "refused_budget",
                   (json_int_t)r[CYNIC__RETRY_NO_BUDGET], "refused_deadline",
                   (json_int_t)r[CYNIC__RETRY_NO_TIME], "refused_body",
                   (json_int_t)r[CYNIC__RETRY_BODY_TOO_LARGE]);
}

/* Requests by the status class the client got. */
static json_t *responses_json(const cynic__upstream_t *u) {
  const uint64_t *r = u->stats.responses;
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "1xx", (json_int_t)r[1], "2xx",
                   (json_int_t)r[2], "3xx", (json_int_t)r[3], "4xx", (json_int_t)r[4], "5xx",
                   (json_int_t)r[5], "none", (json_int_t)r[0]);
}

/* The fallback: its kinds in order, the answers it gave, and the stale
 * cache's bounds and counts. */
static json_t *fallback_json(const cynic__upstream_t *u) {
  const cynic__config_http_t *h = &u->cfg->http;
  json_t *order = json_array(), *answers = json_object();
  for (size_t i = 0; i < h->fallback_kinds; i++)
    json_array_append_new(order, json_string(cynic__fallback_kind_name(h->fallback_order[i])));
  for (int k = 0; k < CYNIC__FALLBACK_KINDS; k++)
    json_object_set_new(answers, cynic__fallback_kind_name(k),
                        json_integer((json_int_t)u->fallbacks[k]));
  json_t *o = json_object();
  json_object_set_new(o, "order", order);
  json_object_set_new(o, "answers", answers);
  json_object_set_new(o, "secondary",
                      h->fallback_secondary != NULL ? json_string(h->fallback_secondary)
                                                    : json_null());
  if (!h->fallback_stale) {
    json_object_set_new(o, "stale_cache", json_null());
    return o;
  }
  cynic__stale_stats_t s;
  cynic__stale_stats(u->stale, &s);
  json_t *c = json_object();
  json_object_set_new(c, "entries", json_integer((json_int_t)s.entries));
  json_object_set_new(c, "bytes", json_integer((json_int_t)s.bytes));
  json_object_set_new(c, "pending_bytes", json_integer((json_int_t)s.pending_bytes));
  json_object_set_new(c, "max_entries", json_integer((json_int_t)h->stale_max_entries));
  json_object_set_new(c, "max_bytes", json_integer((json_int_t)h->stale_max_bytes));
  json_object_set_new(c, "max_entry_bytes", json_integer((json_int_t)h->stale_max_entry_bytes));
  json_object_set_new(c, "max_age_s", json_integer((json_int_t)(h->stale_max_age_ns / 1000000000u)));
  json_object_set_new(c, "stored", json_integer((json_int_t)s.stored));
  json_object_set_new(c, "hits", json_integer((json_int_t)s.hits));
  json_object_set_new(c, "misses", json_integer((json_int_t)s.misses));
  json_object_set_new(c, "expired", json_integer((json_int_t)s.expired));
  json_object_set_new(c, "evicted", json_integer((json_int_t)s.evicted));
  json_object_set_new(c, "dropped", json_integer((json_int_t)s.dropped));
  json_object_set_new(o, "stale_cache", c);
  return o;
}

/* A listener's or upstream's TLS: handshakes, resumption, failures by
 * reason, and its configured certificate (subject, expiry, days left, and a
 * warning within CYNIC__TLS_WARN_DAYS). null without tls. */
#define CYNIC__TLS_WARN_DAYS 14
static json_t *tls_json(const cynic__tls_ctx_t *ctx, const cynic__tls_stats_t *st, int64_t now_ms) {
  if (ctx == NULL)
    return json_null();
  json_t *f = json_object();
  static const char *const kinds[CYNIC__TLS_FAIL_KINDS] = {"timeout", "verify", "protocol",
                                                           "closed"};
  for (int k = 0; k < CYNIC__TLS_FAIL_KINDS; k++)
    json_object_set_new(f, kinds[k], json_integer((json_int_t)st->failed[k]));
  json_t *o = json_pack("{s:I, s:I, s:o}", "handshakes", (json_int_t)st->handshakes, "resumed",
                        (json_int_t)st->resumed, "failures", f);
  json_object_set_new(o, "resumption_rate",
                      st->handshakes > 0 ? json_real((double)st->resumed / (double)st->handshakes)
                                         : json_null());
  int64_t at = cynic__tls_ctx_cert_expiry(ctx);
  if (at != 0) {
    int64_t left_s = at - now_ms / 1000;
    json_t *c = json_pack("{s:s, s:o, s:I}", "subject", cynic__tls_ctx_cert_subject(ctx),
                          "expires", iso_time(at * 1000), "expires_in_days",
                          (json_int_t)(left_s / 86400));
    if (left_s < (int64_t)CYNIC__TLS_WARN_DAYS * 86400) {
      char w[160];
      snprintf(w, sizeof w, left_s < 0 ? "the certificate has expired" :
               "the certificate expires within %d days: renew it, then reload",
               CYNIC__TLS_WARN_DAYS);
      json_object_set_new(c, "warning", json_string(w));
    }
    json_object_set_new(o, "certificate", c);
  }
  return o;
}

static json_t *upstream_json(const cynic__upstream_t *u) {
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(u->cfg->name));
  json_object_set_new(o, "required", json_boolean(u->cfg->required));
  json_object_set_new(o, "retired", json_boolean(u->retired));
  json_object_set_new(o, "balance",
                      json_string(u->cfg->balance == CYNIC__BALANCE_ROUND_ROBIN
                                      ? "round_robin"
                                      : "least_connections"));
  json_object_set_new(o, "bulkhead", bulkhead_json(u));
  size_t open = 0;
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic_breaker_snapshot_t s;
    cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
    open += snap_open(&s);
  }
  json_object_set_new(o, "endpoints_open", json_integer((json_int_t)open));
  /* false: every breaker is open with time left; clients are closed at once */
  json_object_set_new(o, "available", json_boolean(cynic__upstream_available(u)));
  json_object_set_new(o, "counts", cynic__counts_json(&u->counters));
  json_object_set_new(o, "started", json_integer((json_int_t)u->stats.started));
  json_object_set_new(o, "done", json_integer((json_int_t)u->stats.done));
  json_object_set_new(o, "errors", json_integer((json_int_t)u->stats.errors));
  double p99 = cynic__hist_quantile(&u->stats.first_byte, 0.99);
  json_object_set_new(o, "first_byte_p99_s", p99 < 0 ? json_null() : json_real(p99));
  /* http mode: retry budget (issue 12) and connection pool; none in tcp mode */
  bool http = serves_http(u);
  json_object_set_new(o, "retry_budget", http ? retry_json(u) : json_null());
  json_object_set_new(o, "pool", http ? pool_json(u) : json_null());
  json_object_set_new(o, "responses", http ? responses_json(u) : json_null());
  json_object_set_new(o, "fallback",
                      u->cfg->http.has_fallback ? fallback_json(u) : json_null());
  json_object_set_new(o, "tls", tls_json(u->tls, &u->tls_stats, cynic__proxy_unix_ms(u->proxy)));
  json_object_set_new(o, "endpoints", upstream_breakers_json(u));
  return o;
}

static json_t *transitions_json(const cynic__admin_t *a, const char *upstream) {
  json_t *arr = json_array();
  /* newest first */
  for (size_t i = 0; i < a->ring_count; i++) {
    const cynic__transition_rec_t *t =
        &a->ring[(a->ring_next + CYNIC__TRANSITION_RING - 1 - i) % CYNIC__TRANSITION_RING];
    if (upstream != NULL && strcmp(t->upstream, upstream) != 0)
      continue;
    json_t *o = json_object();
    json_object_set_new(o, "time", iso_time(t->unix_ms));
    json_object_set_new(o, "upstream", json_string(t->upstream));
    json_object_set_new(o, "endpoint", json_string(t->endpoint));
    json_object_set_new(o, "from", json_string(cynic_breaker_state_name(t->from)));
    json_object_set_new(o, "to", json_string(cynic_breaker_state_name(t->to)));
    json_object_set_new(o, "reason", json_string(cynic_breaker_reason_name(t->reason)));
    if (t->by[0] != '\0') {
      json_object_set_new(o, "by", json_string(t->by));
      json_object_set_new(o, "why", json_string(t->why));
    }
    json_array_append_new(arr, o);
  }
  return arr;
}

/* A listener's rate table: what it counts, its key and how full it is. */
static json_t *rate_json(const cynic__listener_t *l) {
  cynic_ratetable_snapshot_t s;
  cynic_ratetable_snapshot(l->rate, &s);
  return json_pack("{s:s, s:s?, s:I, s:I, s:I, s:I, s:I}", "counts",
                   l->cfg->mode == CYNIC__MODE_HTTP ? "requests" : "connections", "key_header",
                   l->cfg->rate_key_header, "clients", (json_int_t)s.size, "max_clients",
                   (json_int_t)s.capacity, "evictions", (json_int_t)s.evictions, "granted",
                   (json_int_t)s.granted, "limited", (json_int_t)s.rejected);
}

bool cynic__admin_ready(cynic__proxy_t *p, const char **why) {
  static char text[200];
  if (p->draining) {
    *why = "draining";
    return false;
  }
  if (p->listener_count == 0) {
    *why = "starting: resolving endpoint host names";
    return false;
  }
  if (cynic__hl_overloaded(p)) { /* load shedding (http_limits.c) */
    snprintf(text, sizeof text,
             "overloaded: %u requests pending, limits.max_pending_requests %u (ready again "
             "below 90%%)",
             p->requests_pending, p->cfg->limits.max_pending_requests);
    *why = text;
    return false;
  }
  for (size_t i = 0; i < p->listener_count; i++) {
    const cynic__listener_t *l = &p->listeners[i];
    if (!l->retired && l->open >= l->cfg->max_connections) {
      snprintf(text, sizeof text, "over capacity: listener %s has %u of max_connections %u open",
               l->cfg->name, l->open, l->cfg->max_connections);
      *why = text;
      return false;
    }
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired || !u->cfg->required)
      continue;
    size_t open = 0;
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic_breaker_snapshot_t s;
      cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
      open += snap_open(&s);
    }
    if (open == u->endpoint_count) {
      snprintf(text, sizeof text, "required upstream %s: every endpoint's breaker is open",
               u->cfg->name);
      *why = text;
      return false;
    }
  }
  *why = "ready";
  return true;
}

/* /status without its upstreams (GET /status and the status stream add them
 * one by one). */
static json_t *status_head_json(cynic__admin_t *a) {
  cynic__proxy_t *p = a->proxy;
  int64_t now = cynic__proxy_unix_ms(p);
  const char *why;
  bool ready = cynic__admin_ready(p, &why);
  json_t *o = json_object();
  json_object_set_new(o, "version", json_string(cynic_version()));
  json_object_set_new(o, "pid", json_integer((json_int_t)getpid()));
  json_object_set_new(o, "started", iso_time(p->started_unix_ms));
  json_object_set_new(o, "uptime_s", json_real((double)(now - p->started_unix_ms) / 1000.0));
  json_object_set_new(o, "config",
                      json_pack("{s:s, s:o, s:I}", "file", p->cfg->path, "loaded",
                                iso_time(p->config_unix_ms), "reloads", (json_int_t)p->reloads));
  json_object_set_new(o, "admin", json_string(a->address));
  json_object_set_new(o, "ready", json_boolean(ready));
  json_object_set_new(o, "ready_reason", json_string(why));
  json_object_set_new(o, "draining", json_boolean(p->draining));
  json_object_set_new(o, "connections", json_integer((json_int_t)p->conn_count));
  json_object_set_new(o, "requests",
                      json_pack("{s:I, s:I, s:I, s:b}", "pending", (json_int_t)p->requests_pending,
                                "max_pending", (json_int_t)p->cfg->limits.max_pending_requests,
                                "shed", (json_int_t)p->requests_shed, "overloaded",
                                cynic__hl_overloaded(p)));
  json_t *ls = json_array();
  for (size_t i = 0; i < p->listener_count; i++) {
    const cynic__listener_t *l = &p->listeners[i];
    if (l->cfg == NULL)
      continue; /* a retired one's slot, reclaimed */
    json_t *lo = json_object();
    json_object_set_new(lo, "name", json_string(l->cfg->name));
    json_object_set_new(lo, "address", json_string(l->address));
    json_object_set_new(lo, "mode", json_string(l->cfg->mode == CYNIC__MODE_HTTP ? "http" : "tcp"));
    json_object_set_new(lo, "upstream", json_string(l->upstream->cfg->name));
    json_object_set_new(lo, "buffer_bytes", json_integer((json_int_t)l->cfg->buffer_bytes));
    json_object_set_new(lo, "open", json_integer(l->open));
    json_object_set_new(lo, "max_connections", json_integer(l->cfg->max_connections));
    json_object_set_new(lo, "max_connections_per_client",
                        json_integer(l->cfg->max_connections_per_client));
    if (l->rate != NULL)
      json_object_set_new(lo, "rate_limit", rate_json(l));
    json_object_set_new(lo, "listening", json_boolean(l->listening));
    json_object_set_new(lo, "retired", json_boolean(l->retired));
    json_object_set_new(lo, "counts", cynic__counts_json(&l->counters));
    json_object_set_new(lo, "tls", tls_json(l->tls, &l->tls_stats, now));
    json_array_append_new(ls, lo);
  }
  json_object_set_new(o, "listeners", ls);
  json_object_set_new(o, "transitions", transitions_json(a, NULL));
  return o;
}

/* ---- produced answers: the large ones, in slices ------------------------------------ */

/*
 * GET /status, /status/history, /breakers and /metrics grow with the config
 * (at the documented limits, 256 upstreams x 64 endpoints: ~6 MB of
 * /status, ~29 MB of /metrics). They are never built whole: httpd asks for a
 * slice of about 64 KB when the previous one has been written, and each
 * slice renders the next upstreams (one upstream at least, whole: each
 * upstream's part is one instant; the answer as a whole spans the time it
 * takes the client to read it). The producer keeps slot indices, not
 * pointers: a reload between two slices may retire an upstream (cfg NULL:
 * skipped), free its config copy or reuse its slot (then the new upstream is
 * shown); p->upstreams itself never moves. Nothing of a request is kept but
 * the admin and the cursor (the admin outlives its connections: httpd_close
 * frees producers before admin_free).
 */
static json_t *breakers_of(const cynic__upstream_t *u);

static int dump_into(cynic__buf_t *b, json_t *v) {
  if (v == NULL)
    return CYNIC_ENOMEM;
  int rc = cynic__json_dump(v, b);
  json_decref(v);
  return rc;
}

static int listing_open(cynic__admin_listing_t *l, cynic__buf_t *b) {
  switch (l->kind) {
  case LIST_STATUS: {
    size_t before = b->len;
    int rc = dump_into(b, status_head_json(l->a));
    if (rc != 0)
      return rc;
    if (b->len - before < 2 || b->data[b->len - 1] != '}')
      return CYNIC_ENOMEM;
    b->len--; /* reopen the object */
    return cynic__buf_puts(b, ",\"upstreams\":[");
  }
  case LIST_HISTORY:
    return cynic__buf_printf(b, "{\"interval_s\":1,\"now\":%lld,\"upstreams\":{",
                             (long long)(cynic__proxy_unix_ms(l->a->proxy) / 1000));
  case LIST_BREAKERS:
    return cynic__buf_puts(b, "{\"upstreams\":[");
  default:
    return 0;
  }
}

/* One upstream's part; 0 with nothing appended for a slot not shown. */
static int listing_item(cynic__admin_listing_t *l, cynic__buf_t *b, const cynic__upstream_t *u) {
  bool shown = l->kind == LIST_STATUS ? u->cfg != NULL : !u->retired && u->cfg != NULL;
  if (!shown)
    return 0;
  int rc = l->any ? cynic__buf_puts(b, ",") : 0;
  l->any = true;
  if (rc != 0)
    return rc;
  switch (l->kind) {
  case LIST_STATUS:
    return dump_into(b, upstream_json(u));
  case LIST_HISTORY: /* a rebuilt one's name is taken by the new one */
    rc = dump_into(b, json_string(u->cfg->name));
    if (rc == 0)
      rc = cynic__buf_puts(b, ":");
    return rc != 0 ? rc : dump_into(b, cynic__metrics_history(u));
  default:
    return dump_into(b, breakers_of(u));
  }
}

int cynic__admin_listing_next(void *arg, cynic__buf_t *b, size_t want) {
  cynic__admin_listing_t *l = arg;
  cynic__proxy_t *p = l->a->proxy;
  if (l->kind == LIST_METRICS)
    return cynic__metrics_render_next(p, b, &l->cur, want);
  if (want > CYNIC__ADMIN_JSON_SLICE)
    want = CYNIC__ADMIN_JSON_SLICE;
  size_t start = b->len; /* a slice is what this call appends */
  int rc = 0;
  if (!l->started) {
    if ((rc = listing_open(l, b)) != 0)
      return rc;
    l->started = true;
  }
  while (b->len - start < want && l->next < p->upstream_count)
    if ((rc = listing_item(l, b, &p->upstreams[l->next++])) != 0)
      return rc;
  if (l->next < p->upstream_count)
    return 0;
  rc = cynic__buf_puts(b, l->kind == LIST_HISTORY ? "}}\n" : "]}\n");
  return rc != 0 ? rc : 1;
}

static void listing_free(void *arg) {
  free(arg);
}

void cynic__admin_reply_listing(req_t *r, cynic__admin_listing_kind_t kind) {
  cynic__admin_listing_t *l = calloc(1, sizeof *l);
  if (l == NULL) {
    cynic__admin_reply_error(r, 503, "out of memory");
    return;
  }
  l->a = r->a;
  l->kind = kind;
  r->resp->status = 200;
  r->resp->content_type =
      kind == LIST_METRICS ? "text/plain; version=0.0.4; charset=utf-8" : "application/json";
  r->resp->produce = cynic__admin_listing_next;
  r->resp->produce_free = listing_free;
  r->resp->produce_arg = l;
}

void cynic__admin_get_status(req_t *r) {
  cynic__admin_reply_listing(r, LIST_STATUS);
}

void cynic__admin_get_history(req_t *r) {
  cynic__admin_reply_listing(r, LIST_HISTORY);
}

/* ---- breakers --------------------------------------------------------------------- */

static cynic__endpoint_t *find_endpoint(cynic__upstream_t *u, const char *name) {
  for (size_t k = 0; k < u->endpoint_count; k++)
    if (strcmp(u->endpoints[k].addr->text, name) == 0)
      return &u->endpoints[k];
  return NULL;
}

static bool is_action(const char *s) {
  return strcmp(s, "trip") == 0 || strcmp(s, "reset") == 0 || strcmp(s, "force_closed") == 0;
}

static json_t *breakers_of(const cynic__upstream_t *u) {
  json_t *o = json_object();
  json_object_set_new(o, "upstream", json_string(u->cfg->name));
  json_object_set_new(o, "endpoints", upstream_breakers_json(u));
  return o;
}

/* Reads the optional {"reason": "...", "close_connections": bool} body.
 * false (answered 400) when the body is not a JSON object or a field has the
 * wrong type. */
static bool read_reason(req_t *r, char *out, size_t n, bool *close_conns) {
  out[0] = '\0';
  *close_conns = false;
  const cynic__buf_t *b = &r->http->body;
  size_t len = b->len;
  while (len > 0 && (b->data[len - 1] == ' ' || b->data[len - 1] == '\n' ||
                     b->data[len - 1] == '\r' || b->data[len - 1] == '\t'))
    len--;
  if (len == 0)
    return true;
  json_error_t err;
  uint64_t failures = cynic__json_alloc_failures();
  json_t *v = json_loadb(b->data, b->len, 0, &err);
  if (cynic__json_alloc_failures() != failures) { /* may be cut short: see json.h */
    json_decref(v);
    cynic__admin_reply_error(r, 503, "out of memory");
    return false;
  }
  if (v == NULL) {
    char msg[256];
    snprintf(msg, sizeof msg, "bad JSON body: %s (line %d, column %d)", err.text, err.line,
             err.column);
    cynic__admin_reply_error(r, 400, msg);
    return false;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    cynic__admin_reply_error(r, 400,
                             "bad JSON body: expected an object like {\"reason\": \"...\"}");
    return false;
  }
  const char *reason = NULL;
  char detail[128];
  if (cynic__json_get_string(v, "reason", &reason, detail, sizeof detail) < 0 ||
      cynic__json_get_bool(v, "close_connections", close_conns, detail, sizeof detail) < 0) {
    json_decref(v);
    char msg[192];
    snprintf(msg, sizeof msg, "bad JSON body: %s", detail);
    cynic__admin_reply_error(r, 400, msg);
    return false;
  }
  if (reason != NULL) {
    snprintf(out, n, "%s", reason);
    /* cut at a character boundary: a cut UTF-8 sequence is not a JSON string */
    size_t k = n - 1; /* reason[k]: the first byte not copied */
    if (strlen(reason) > k && ((unsigned char)reason[k] & 0xC0) == 0x80) {
      while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
        k--;
      if (k > 0)
        k--; /* the sequence's lead byte */
      out[k] = '\0';
    }
  }
  json_decref(v);
  return true;
}

static void apply(cynic__endpoint_t *e, const char *action) {
  if (strcmp(action, "trip") == 0)
    cynic_breaker_trip(e->breaker);
  else if (strcmp(action, "force_closed") == 0)
    cynic_breaker_force_closed(e->breaker);
  else
    cynic_breaker_reset(e->breaker);
}

static void breaker_action(req_t *r, cynic__upstream_t *u, cynic__endpoint_t *only,
                           const char *action) {
  char reason[REASON_MAX + 1];
  bool close_conns;
  if (!read_reason(r, reason, sizeof reason, &close_conns))
    return;
  if (close_conns && strcmp(action, "trip") != 0)
    return cynic__admin_reply_error(r, 400, "close_connections goes with trip only");
  char peer[CYNIC_ADDR_STR_MAX] = "?";
  cynic__httpd_peer(r->http, peer, sizeof peer);
  cynic__admin_t *a = r->a;
  a->manual_by = peer;
  a->manual_why = reason;
  for (size_t k = 0; k < u->endpoint_count; k++)
    if (only == NULL || only == &u->endpoints[k])
      apply(&u->endpoints[k], action);
  a->manual_by = a->manual_why = NULL;
  /* Optionally end what the tripped endpoints are doing now, too: for an
   * endpoint that hangs or corrupts, not just one to keep new work from. */
  size_t closed = 0;
  for (size_t k = 0; close_conns && k < u->endpoint_count; k++)
    if (only == NULL || only == &u->endpoints[k]) {
      closed += cynic__sessions_close_endpoint(r->p, &u->endpoints[k], "tripped");
      cynic__pool_close_all(&u->endpoints[k]); /* and its idle connections (HTTP) */
    }
  json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:i}", "action", action, "upstream", u->cfg->name,
                        "by", peer, "reason", reason, "closed_connections", (json_int_t)closed);
  if (f != NULL && only != NULL)
    json_object_set_new(f, "endpoint", json_string(only->addr->text));
  cynic__log_event(CYNIC_LOG_WARN, "breaker_manual", "breaker changed by an operator", f);
  if (only != NULL)
    cynic__admin_reply_json(
        r, 200, json_pack("{s:s, s:o}", "upstream", u->cfg->name, "endpoint", endpoint_json(only)));
  else
    cynic__admin_reply_json(r, 200, breakers_of(u));
}

void cynic__admin_breakers(req_t *r) {
  cynic__proxy_t *p = r->p;
  if (r->nsegs == 1) {
    if (!cynic__admin_is(r, "GET"))
      return cynic__admin_not_allowed(r, "GET");
    return cynic__admin_reply_listing(r, LIST_BREAKERS);
  }
  cynic__upstream_t *u = cynic__upstream_named(p, r->segs[1]);
  if (u == NULL) {
    char msg[CYNIC__ADMIN_SEG_MAX + 40];
    snprintf(msg, sizeof msg, "no upstream named '%s'", r->segs[1]);
    return cynic__admin_reply_error(r, 404, msg);
  }
  if (r->nsegs == 2) {
    if (!cynic__admin_is(r, "GET"))
      return cynic__admin_not_allowed(r, "GET");
    return cynic__admin_reply_json(r, 200, breakers_of(u));
  }
  if (r->nsegs == 3 && is_action(r->segs[2])) {
    if (!cynic__admin_is(r, "POST"))
      return cynic__admin_not_allowed(r, "POST");
    return breaker_action(r, u, NULL, r->segs[2]);
  }
  cynic__endpoint_t *e = find_endpoint(u, r->segs[2]);
  if (e == NULL) {
    char msg[2 * CYNIC__ADMIN_SEG_MAX + 40];
    snprintf(msg, sizeof msg, "upstream '%s' has no endpoint '%s'", u->cfg->name, r->segs[2]);
    return cynic__admin_reply_error(r, 404, msg);
  }
  if (r->nsegs == 3) {
    if (!cynic__admin_is(r, "GET"))
      return cynic__admin_not_allowed(r, "GET");
    return cynic__admin_reply_json(
        r, 200, json_pack("{s:s, s:o}", "upstream", u->cfg->name, "endpoint", endpoint_json(e)));
  }
  if (r->nsegs == 4 && is_action(r->segs[3])) {
    if (!cynic__admin_is(r, "POST"))
      return cynic__admin_not_allowed(r, "POST");
    return breaker_action(r, u, e, r->segs[3]);
  }
  cynic__admin_reply_error(r, 404, "not found: use trip, force_closed or reset");
}
