/*
 * src/proxy/metrics.c: counters, latency histograms, per-second history and
 * the Prometheus text exposition (format 0.0.4) of the cynic daemon.
 *
 * The data path calls the cynic__metrics_* hooks of proxy.h (a few additions
 * and a histogram bucket walk each: no allocation, no lock, no clock read).
 * Most counts already exist for the rate-limited log summaries
 * (cynic__counters_t of every endpoint, upstream and listener) and in
 * libcynic's breaker and bulkhead snapshots; /metrics reads those where they
 * are rather than counting twice.
 *
 * Names follow Prometheus conventions: cynic_ prefix, base units (seconds,
 * bytes), _total for counters, one-hot gauges for enumerations
 * (cynic_breaker_state{state="open"} 1). docs/admin.md lists them all.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "accesslog.h"
#include "admin.h"
#include "health.h"
#include "http_fallback.h"
#include "stale_cache.h"

static const double bounds[CYNIC__HIST_BUCKETS] = CYNIC__HIST_BOUNDS;

const char *cynic__outcome_name(int o) {
  if (o >= 0 && o < CYNIC__EV_COUNT)
    return cynic__event_key((cynic__event_t)o);
  switch (o) {
  case CYNIC__OUT_OK:
    return "ok";
  case CYNIC__OUT_RESET:
    return "reset";
  case CYNIC__OUT_CLOSED:
    return "closed";
  default:
    return "unknown";
  }
}

bool cynic__outcome_is_error(int o) {
  return o >= 0 && o < CYNIC__EV_COUNT && o != CYNIC__EV_IDLE_TIMEOUT;
}

/* ---- histograms ------------------------------------------------------------ */

void cynic__hist_observe(cynic__hist_t *h, double seconds) {
  size_t i = 0;
  while (i < CYNIC__HIST_BUCKETS && seconds > bounds[i])
    i++;
  h->bucket[i]++;
  h->sum += seconds;
  h->count++;
}

double cynic__hist_quantile(const cynic__hist_t *h, double q) {
  if (h->count == 0)
    return -1;
  uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
  if (want == 0)
    want = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < CYNIC__HIST_BUCKETS; i++) {
    seen += h->bucket[i];
    if (seen >= want)
      return bounds[i];
  }
  return bounds[CYNIC__HIST_BUCKETS - 1];
}

/* ---- hooks ------------------------------------------------------------------- */

void cynic__metrics_conn_started(cynic__upstream_t *u) {
  u->stats.started++;
}

void cynic__metrics_connected(cynic__upstream_t *u, uint64_t us) {
  cynic__hist_observe(&u->stats.connect, (double)us / 1e6);
}

void cynic__metrics_first_byte(cynic__upstream_t *u, uint64_t us) {
  cynic__hist_observe(&u->stats.first_byte, (double)us / 1e6);
  cynic__hist_observe(&u->stats.second_ttfb, (double)us / 1e6);
}

void cynic__metrics_conn_done(const cynic__conn_report_t *r) {
  cynic__upstream_t *u = r->upstream;
  if (r->outcome >= 0 && r->outcome < CYNIC__OUT_COUNT)
    r->listener->stats.outcomes[r->outcome]++;
  u->stats.done++;
  if (r->http)
    u->stats.responses[r->status >= 100 && r->status < 600 ? r->status / 100 : 0]++;
  if (cynic__outcome_is_error(r->outcome))
    u->stats.errors++;
  uint64_t us = r->end_us >= r->accepted_us ? r->end_us - r->accepted_us : 0;
  cynic__hist_observe(&u->stats.duration, (double)us / 1e6);
  cynic__accesslog_write(r);
}

void cynic__metrics_transition(cynic__endpoint_t *e, cynic_breaker_state_t from,
                               cynic_breaker_state_t to, cynic_breaker_reason_t reason) {
  if ((unsigned)to < 5)
    e->stats.transitions_to[to]++;
  cynic__admin_t *a = e->upstream->proxy->admin;
  if (a == NULL)
    return;
  cynic__transition_rec_t *t = &a->ring[a->ring_next];
  memset(t, 0, sizeof *t);
  t->unix_ms = cynic__proxy_unix_ms(e->upstream->proxy);
  snprintf(t->upstream, sizeof t->upstream, "%s", e->upstream->cfg->name);
  snprintf(t->endpoint, sizeof t->endpoint, "%s", e->addr->text);
  t->from = from;
  t->to = to;
  t->reason = reason;
  if (a->manual_by != NULL) {
    snprintf(t->by, sizeof t->by, "%s", a->manual_by);
    snprintf(t->why, sizeof t->why, "%s", a->manual_why != NULL ? a->manual_why : "");
    snprintf(e->stats.manual_by, sizeof e->stats.manual_by, "%s", t->by);
    snprintf(e->stats.manual_reason, sizeof e->stats.manual_reason, "%s", t->why);
  } else {
    e->stats.manual_by[0] = e->stats.manual_reason[0] = '\0';
  }
  a->ring_next = (a->ring_next + 1) % CYNIC__TRANSITION_RING;
  if (a->ring_count < CYNIC__TRANSITION_RING)
    a->ring_count++;
  cynic__admin_streams_kick(a);
}

/* ---- history ------------------------------------------------------------------ */

static bool breaker_open(const cynic_breaker_snapshot_t *s) {
  return s->state == CYNIC_BREAKER_OPEN || s->state == CYNIC_BREAKER_FORCED_OPEN;
}

void cynic__metrics_sample(cynic__proxy_t *p) {
  int64_t now_s = cynic__proxy_unix_ms(p) / 1000;
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    cynic__upstream_t *u = &p->upstreams[i];
    cynic__upstream_stats_t *st = &u->stats;
    cynic__sample_t *s = &st->history[st->history_next];
    s->unix_s = now_s;
    s->conns = (uint32_t)(st->started - st->last_started);
    s->done = (uint32_t)(st->done - st->last_done);
    s->errors = (uint32_t)(st->errors - st->last_errors);
    double p99 = cynic__hist_quantile(&st->second_ttfb, 0.99);
    s->p99_ms = p99 < 0 ? -1.0f : (float)(p99 * 1000.0);
    s->open = 0;
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic_breaker_snapshot_t snap;
      if (cynic_breaker_snapshot(u->endpoints[k].breaker, &snap) == 0 && breaker_open(&snap))
        s->open++;
    }
    cynic_bulkhead_stats_t bs;
    cynic_bulkhead_stats(u->bulkhead, &bs);
    s->in_use = bs.in_use;
    st->last_started = st->started;
    st->last_done = st->done;
    st->last_errors = st->errors;
    memset(&st->second_ttfb, 0, sizeof st->second_ttfb);
    st->history_next = (st->history_next + 1) % CYNIC__HISTORY_SECONDS;
    if (st->history_count < CYNIC__HISTORY_SECONDS)
      st->history_count++;
  }
}

static json_t *sample_json(const cynic__sample_t *s) {
  json_t *o = json_pack("{s:I, s:i, s:i, s:i, s:i, s:i}", "t", (json_int_t)s->unix_s, "conns",
                        (int)s->conns, "done", (int)s->done, "errors", (int)s->errors, "open",
                        (int)s->open, "in_use", (int)s->in_use);
  if (o != NULL)
    json_object_set_new(o, "p99_ms", s->p99_ms < 0 ? json_null() : json_real(s->p99_ms));
  return o;
}

json_t *cynic__metrics_history(const cynic__upstream_t *u) {
  const cynic__upstream_stats_t *st = &u->stats;
  json_t *a = json_array();
  size_t start =
      (st->history_next + CYNIC__HISTORY_SECONDS - st->history_count) % CYNIC__HISTORY_SECONDS;
  for (size_t i = 0; i < st->history_count; i++) {
    json_t *o = sample_json(&st->history[(start + i) % CYNIC__HISTORY_SECONDS]);
    if (o != NULL)
      json_array_append_new(a, o);
  }
  return a;
}

json_t *cynic__metrics_last_sample(const cynic__upstream_t *u) {
  const cynic__upstream_stats_t *st = &u->stats;
  if (st->history_count == 0)
    return NULL;
  size_t last = (st->history_next + CYNIC__HISTORY_SECONDS - 1) % CYNIC__HISTORY_SECONDS;
  return sample_json(&st->history[last]);
}

/* ---- Prometheus text ------------------------------------------------------------- */

/*
 * The exposition is rendered in steps (one family's header, or one family's
 * rows for one listener or upstream) so that /metrics can be streamed in
 * slices (admin.c, httpd's produced bodies): a config at the documented
 * limits makes ~30 MB of text, which must never be built whole on the loop
 * that forwards traffic. The cursor holds indices, never pointers: between
 * two slices a reload may retire an upstream (cfg NULL) or reuse its slot,
 * so every step reads its object afresh and skips retired ones. A step
 * writes at most one upstream's rows of one family (64 endpoints x 5 lines:
 * ~40 KB), so a slice overshoots `want` by that much at most.
 */

/* Appends, remembering the first failure (an exposition with a line missing
 * must never be served as complete: issue 9). */
typedef struct out {
  cynic__buf_t *b;
  int err;
} out_t;

static void emit(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(out_t *o, const char *fmt, ...) {
  if (o->err != 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  o->err = cynic__buf_vprintf(o->b, fmt, ap);
  va_end(ap);
}

static void header(out_t *o, const char *name, const char *type, const char *help) {
  emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are config names and addresses ([A-Za-z0-9_.-], ':', '[',
 * ']'), but escape as the format says anyway. */
static const char *esc(const char *s, char *out, size_t n) {
  size_t j = 0;
  for (; *s != '\0' && j + 2 < n; s++) {
    if (*s == '\\' || *s == '"') {
      out[j++] = '\\';
      out[j++] = *s;
    } else if (*s == '\n') {
      out[j++] = '\\';
      out[j++] = 'n';
    } else {
      out[j++] = *s;
    }
  }
  out[j] = '\0';
  return out;
}

#define NAME_BUF (CYNIC__CONFIG_MAX_NAME * 2 + 8)
#define ADDR_BUF 600

static void hist(out_t *o, const char *name, const char *labels, const cynic__hist_t *h) {
  uint64_t cum = 0;
  for (size_t i = 0; i < CYNIC__HIST_BUCKETS; i++) {
    cum += h->bucket[i];
    emit(o, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels, bounds[i], cum);
  }
  cum += h->bucket[CYNIC__HIST_BUCKETS];
  emit(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
  emit(o, "%s_sum{%s} %.9g\n", name, labels, h->sum);
  emit(o, "%s_count{%s} %" PRIu64 "\n", name, labels, h->count);
}

/* The listener-level rejections never become connections in tcp.c: they are
 * counted in the listener's event counters. */
static uint64_t listener_outcome(const cynic__listener_t *l, int o) {
  uint64_t n = l->stats.outcomes[o];
  if (o == CYNIC__EV_MAX_CONNECTIONS || o == CYNIC__EV_MAX_PER_CLIENT ||
      o == CYNIC__EV_RATE_LIMITED || o == CYNIC__EV_ACCEPT_ERROR)
    n += l->counters.total[o];
  return n;
}

static uint64_t upstream_event_total(const cynic__upstream_t *u, cynic__event_t ev) {
  uint64_t n = u->counters.total[ev];
  for (size_t k = 0; k < u->endpoint_count; k++)
    n += u->endpoints[k].counters.total[ev];
  return n;
}

static const cynic__event_t endpoint_faults[] = {
    CYNIC__EV_CONNECT_REFUSED,
    CYNIC__EV_CONNECT_TIMEOUT,
    CYNIC__EV_CONNECT_ERROR,
    CYNIC__EV_RESET_BEFORE_FIRST_BYTE,
    CYNIC__EV_CLOSED_BEFORE_FIRST_BYTE,
    CYNIC__EV_FIRST_BYTE_TIMEOUT,
    /* HTTP mode */
    CYNIC__EV_REQUEST_TIMEOUT,
    CYNIC__EV_UPSTREAM_RESET,
    CYNIC__EV_UPSTREAM_CLOSED,
    CYNIC__EV_BAD_RESPONSE,
    CYNIC__EV_RESPONSE_TOO_LARGE,
    CYNIC__EV_UNEXPECTED_STATUS,
    CYNIC__EV_UNEXPECTED_CONTENT_TYPE,
};

static const cynic_breaker_state_t states[] = {CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN,
                                               CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_FORCED_OPEN,
                                               CYNIC_BREAKER_FORCED_CLOSED};

/* ---- the families: rows for one listener or one upstream ---- */

static void process_rows(out_t *o, cynic__proxy_t *p) {
  const char *why;
  header(o, "cynic_build_info", "gauge", "Build information; always 1.");
  emit(o, "cynic_build_info{version=\"%s\"} 1\n", cynic_version());
  header(o, "cynic_start_time_seconds", "gauge", "When the process started, Unix time.");
  emit(o, "cynic_start_time_seconds %.3f\n", (double)p->started_unix_ms / 1000.0);
  header(o, "cynic_config_load_time_seconds", "gauge",
         "When the config in use was loaded, Unix time.");
  emit(o, "cynic_config_load_time_seconds %.3f\n", (double)p->config_unix_ms / 1000.0);
  header(o, "cynic_config_reloads_total", "counter", "Successful config reloads.");
  emit(o, "cynic_config_reloads_total %" PRIu64 "\n", p->reloads);
  header(o, "cynic_draining", "gauge", "1 while draining (SIGTERM or POST /drain).");
  emit(o, "cynic_draining %d\n", p->draining ? 1 : 0);
  header(o, "cynic_ready", "gauge", "1 when GET /ready answers 200.");
  emit(o, "cynic_ready %d\n", cynic__admin_ready(p, &why) ? 1 : 0);
  header(o, "cynic_requests_pending", "gauge",
         "HTTP requests in flight, all listeners: from a complete head until the response.");
  emit(o, "cynic_requests_pending %u\n", p->requests_pending);
  header(o, "cynic_requests_pending_limit", "gauge",
         "limits.max_pending_requests (0: no ceiling).");
  emit(o, "cynic_requests_pending_limit %u\n", p->cfg->limits.max_pending_requests);
  header(o, "cynic_requests_shed_total", "counter",
         "HTTP requests answered 503 overloaded: past limits.max_pending_requests.");
  emit(o, "cynic_requests_shed_total %" PRIu64 "\n", p->requests_shed);
  header(o, "cynic_overloaded", "gauge",
         "1 while overloaded (GET /ready answers 503 for it): from the ceiling until below 90%.");
  emit(o, "cynic_overloaded %d\n", cynic__hl_overloaded(p) ? 1 : 0);
}

static void l_open(out_t *o, const cynic__listener_t *l) {
  char ln[NAME_BUF];
  emit(o, "cynic_listener_connections_open{listener=\"%s\"} %u\n", esc(l->cfg->name, ln, sizeof ln),
       l->open);
}

static void l_rate_limited(out_t *o, const cynic__listener_t *l) {
  if (l->cfg->mode != CYNIC__MODE_HTTP)
    return; /* tcp mode counts connections: cynic_connections_total{outcome="rate_limited"} */
  char ln[NAME_BUF];
  emit(o, "cynic_requests_rate_limited_total{listener=\"%s\"} %" PRIu64 "\n",
       esc(l->cfg->name, ln, sizeof ln), l->counters.total[CYNIC__EV_REQUEST_RATE_LIMITED]);
}

static void l_limit(out_t *o, const cynic__listener_t *l) {
  char ln[NAME_BUF];
  emit(o, "cynic_listener_connections_limit{listener=\"%s\"} %u\n",
       esc(l->cfg->name, ln, sizeof ln), l->cfg->max_connections);
}

static void l_conns(out_t *o, const cynic__listener_t *l) {
  char ln[NAME_BUF], un[NAME_BUF];
  esc(l->cfg->name, ln, sizeof ln);
  esc(l->upstream->cfg->name, un, sizeof un);
  for (int k = 0; k < CYNIC__OUT_COUNT; k++)
    emit(o, "cynic_connections_total{listener=\"%s\",upstream=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
         ln, un, cynic__outcome_name(k), listener_outcome(l, k));
}

static void l_bytes(out_t *o, const cynic__listener_t *l) {
  char ln[NAME_BUF], un[NAME_BUF];
  esc(l->cfg->name, ln, sizeof ln);
  esc(l->upstream->cfg->name, un, sizeof un);
  emit(o,
       "cynic_bytes_total{listener=\"%s\",upstream=\"%s\",direction=\"to_upstream\"} %" PRIu64 "\n",
       ln, un, l->stats.bytes_up);
  emit(o,
       "cynic_bytes_total{listener=\"%s\",upstream=\"%s\",direction=\"to_client\"} %" PRIu64 "\n",
       ln, un, l->stats.bytes_down);
}

static void l_events(out_t *o, const cynic__listener_t *l) {
  char ln[NAME_BUF];
  esc(l->cfg->name, ln, sizeof ln);
  for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
    if (l->counters.total[ev] != 0)
      emit(o, "cynic_events_total{listener=\"%s\",event=\"%s\"} %" PRIu64 "\n", ln,
           cynic__event_key(ev), l->counters.total[ev]);
}

static void u_hist(out_t *o, const cynic__upstream_t *u, const char *name, size_t off) {
  char un[NAME_BUF], labels[NAME_BUF + 16];
  snprintf(labels, sizeof labels, "upstream=\"%s\"", esc(u->cfg->name, un, sizeof un));
  hist(o, name, labels, (const cynic__hist_t *)((const char *)&u->stats + off));
}
static void u_connect(out_t *o, const cynic__upstream_t *u) {
  u_hist(o, u, "cynic_upstream_connect_duration_seconds",
         offsetof(cynic__upstream_stats_t, connect));
}
static void u_first_byte(out_t *o, const cynic__upstream_t *u) {
  u_hist(o, u, "cynic_upstream_first_byte_seconds", offsetof(cynic__upstream_stats_t, first_byte));
}
static void u_duration(out_t *o, const cynic__upstream_t *u) {
  u_hist(o, u, "cynic_connection_duration_seconds", offsetof(cynic__upstream_stats_t, duration));
}

static void u_timeouts(out_t *o, const cynic__upstream_t *u) {
  static const struct {
    const char *kind;
    cynic__event_t ev;
  } kinds[] = {{"connect", CYNIC__EV_CONNECT_TIMEOUT},
               {"first_byte", CYNIC__EV_FIRST_BYTE_TIMEOUT},
               {"idle", CYNIC__EV_IDLE_TIMEOUT},
               {"queue", CYNIC__EV_QUEUE_TIMEOUT}};
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    emit(o, "cynic_timeouts_total{upstream=\"%s\",kind=\"%s\"} %" PRIu64 "\n", un, kinds[k].kind,
         upstream_event_total(u, kinds[k].ev));
}

static void u_gauge(out_t *o, const cynic__upstream_t *u, const char *name, uint64_t v) {
  char un[NAME_BUF];
  emit(o, "%s{upstream=\"%s\"} %" PRIu64 "\n", name, esc(u->cfg->name, un, sizeof un), v);
}
/* The one-number upstream families: the value of each (u_gauge prints it). */
static uint64_t v_bh_in_use(const cynic__upstream_t *u) {
  cynic_bulkhead_stats_t s;
  cynic_bulkhead_stats(u->bulkhead, &s);
  return s.in_use;
}
static uint64_t v_bh_limit(const cynic__upstream_t *u) {
  return u->cfg->max_connections;
}
static uint64_t v_bh_pending(const cynic__upstream_t *u) {
  cynic_bulkhead_stats_t s;
  cynic_bulkhead_stats(u->bulkhead, &s);
  return s.pending;
}
static uint64_t v_bh_pending_limit(const cynic__upstream_t *u) {
  return u->cfg->max_pending;
}
static uint64_t v_fail_fast(const cynic__upstream_t *u) {
  return u->counters.total[CYNIC__EV_BREAKER_OPEN];
}

static void u_bh_rejections(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  emit(o, "cynic_bulkhead_rejections_total{upstream=\"%s\",reason=\"full\"} %" PRIu64 "\n", un,
       u->counters.total[CYNIC__EV_BULKHEAD_FULL]);
  emit(o, "cynic_bulkhead_rejections_total{upstream=\"%s\",reason=\"queue_timeout\"} %" PRIu64 "\n",
       un, u->counters.total[CYNIC__EV_QUEUE_TIMEOUT]);
}

static void u_events(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    esc(u->endpoints[k].addr->text, en, sizeof en);
    for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
      if (u->endpoints[k].counters.total[ev] != 0)
        emit(o, "cynic_events_total{upstream=\"%s\",endpoint=\"%s\",event=\"%s\"} %" PRIu64 "\n",
             un, en, cynic__event_key(ev), u->endpoints[k].counters.total[ev]);
  }
  for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
    if (u->counters.total[ev] != 0)
      emit(o, "cynic_events_total{upstream=\"%s\",event=\"%s\"} %" PRIu64 "\n", un,
           cynic__event_key(ev), u->counters.total[ev]);
}

static void u_breaker_state(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic_breaker_snapshot_t s;
    cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
    esc(u->endpoints[k].addr->text, en, sizeof en);
    for (size_t j = 0; j < 5; j++)
      emit(o, "cynic_breaker_state{upstream=\"%s\",endpoint=\"%s\",state=\"%s\"} %d\n", un, en,
           cynic_breaker_state_name(states[j]), s.state == states[j]);
  }
}

static void u_breaker_transitions(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    esc(u->endpoints[k].addr->text, en, sizeof en);
    for (size_t j = 0; j < 5; j++)
      emit(o,
           "cynic_breaker_transitions_total{upstream=\"%s\",endpoint=\"%s\",to=\"%s\"} %" PRIu64
           "\n",
           un, en, cynic_breaker_state_name(states[j]),
           u->endpoints[k].stats.transitions_to[states[j]]);
  }
}

static void u_breaker_rejections(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic_breaker_snapshot_t s;
    cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
    emit(o, "cynic_breaker_rejections_total{upstream=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", un,
         esc(u->endpoints[k].addr->text, en, sizeof en), s.rejected);
  }
}

static void u_bucket_level(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic_breaker_snapshot_t s;
    cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
    emit(o, "cynic_breaker_bucket_level{upstream=\"%s\",endpoint=\"%s\"} %g\n", un,
         esc(u->endpoints[k].addr->text, en, sizeof en), s.bucket_level);
  }
}

static void u_endpoint_active(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++)
    emit(o, "cynic_endpoint_connections_active{upstream=\"%s\",endpoint=\"%s\"} %u\n", un,
         esc(u->endpoints[k].addr->text, en, sizeof en), u->endpoints[k].active);
}

static void u_endpoint_faults(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    esc(u->endpoints[k].addr->text, en, sizeof en);
    for (size_t j = 0; j < sizeof endpoint_faults / sizeof endpoint_faults[0]; j++)
      emit(o,
           "cynic_endpoint_faults_total{upstream=\"%s\",endpoint=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
           un, en, cynic__event_key(endpoint_faults[j]),
           u->endpoints[k].counters.total[endpoint_faults[j]]);
  }
}

static void u_http_responses(out_t *o, const cynic__upstream_t *u) {
  static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t i = 0; i < 6; i++)
    emit(o, "cynic_http_responses_total{upstream=\"%s\",class=\"%s\"} %" PRIu64 "\n", un,
         classes[i], u->stats.responses[i]);
}

static void u_retries(out_t *o, const cynic__upstream_t *u) {
  static const char *const results[CYNIC__RETRY_RESULTS] = {"retried", "budget_exhausted",
                                                            "deadline", "body_too_large"};
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t i = 0; i < CYNIC__RETRY_RESULTS; i++)
    emit(o, "cynic_retries_total{upstream=\"%s\",result=\"%s\"} %" PRIu64 "\n", un, results[i],
         u->stats.retries[i]);
}

/* Fallback answers by kind (upstreams with a fallback only). */
static void u_fallbacks(out_t *o, const cynic__upstream_t *u) {
  if (!u->cfg->http.has_fallback)
    return;
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (int k = 0; k < CYNIC__FALLBACK_KINDS; k++)
    emit(o, "cynic_fallbacks_total{upstream=\"%s\",kind=\"%s\"} %" PRIu64 "\n", un,
         cynic__fallback_kind_name(k), u->fallbacks[k]);
}

/* The stale cache's size now (upstreams with fallback.stale only). */
static void stale_gauge(out_t *o, const cynic__upstream_t *u, const char *name, bool bytes) {
  if (!u->cfg->http.fallback_stale)
    return;
  cynic__stale_stats_t s;
  cynic__stale_stats(u->stale, &s);
  char un[NAME_BUF];
  esc(u->cfg->name, un, sizeof un);
  emit(o, "%s{upstream=\"%s\"} %" PRIu64 "\n", name, un, bytes ? s.bytes : s.entries);
}

static void u_stale_entries(out_t *o, const cynic__upstream_t *u) {
  stale_gauge(o, u, "cynic_stale_cache_entries", false);
}

static void u_stale_bytes(out_t *o, const cynic__upstream_t *u) {
  stale_gauge(o, u, "cynic_stale_cache_bytes", true);
}

/* ---- TLS (listeners and upstreams with tls on) ---- */

static const char *const tls_fail_names[CYNIC__TLS_FAIL_KINDS] = {"timeout", "verify", "protocol",
                                                                  "closed"};

/* `what` is "listener" or "upstream", `name` its name (escaped here). */
static void tls_counts(out_t *o, const char *what, const char *name, const cynic__tls_stats_t *st,
                       int which) {
  char n[NAME_BUF];
  esc(name, n, sizeof n);
  if (which == 0)
    emit(o, "cynic_tls_handshakes_total{%s=\"%s\"} %" PRIu64 "\n", what, n, st->handshakes);
  else if (which == 1)
    emit(o, "cynic_tls_resumed_total{%s=\"%s\"} %" PRIu64 "\n", what, n, st->resumed);
  else
    for (int k = 0; k < CYNIC__TLS_FAIL_KINDS; k++)
      emit(o, "cynic_tls_handshake_failures_total{%s=\"%s\",reason=\"%s\"} %" PRIu64 "\n", what,
           n, tls_fail_names[k], st->failed[k]);
}

static void tls_expiry(out_t *o, const char *what, const char *name, const cynic__proxy_t *p,
                       const cynic__tls_ctx_t *ctx) {
  int64_t at = cynic__tls_ctx_cert_expiry(ctx);
  if (at == 0)
    return; /* no certificate of its own (an upstream without a client certificate) */
  char n[NAME_BUF];
  emit(o, "cynic_tls_cert_expiry_seconds{%s=\"%s\"} %" PRId64 "\n", what,
       esc(name, n, sizeof n), at - cynic__proxy_unix_ms(p) / 1000);
}

#define TLS_FAMILY(fn, which)                                                                      \
  static void l_##fn(out_t *o, const cynic__listener_t *l) {                                     \
    if (l->tls != NULL)                                                                            \
      tls_counts(o, "listener", l->cfg->name, &l->tls_stats, which);                               \
  }                                                                                                \
  static void u_##fn(out_t *o, const cynic__upstream_t *u) {                                     \
    if (u->tls != NULL)                                                                            \
      tls_counts(o, "upstream", u->cfg->name, &u->tls_stats, which);                               \
  }
TLS_FAMILY(tls_handshakes, 0)
TLS_FAMILY(tls_resumed, 1)
TLS_FAMILY(tls_failures, 2)
#undef TLS_FAMILY

static void l_tls_expiry(out_t *o, const cynic__listener_t *l) {
  if (l->tls != NULL)
    tls_expiry(o, "listener", l->cfg->name, l->proxy, l->tls);
}

static void u_tls_expiry(out_t *o, const cynic__upstream_t *u) {
  if (u->tls != NULL)
    tls_expiry(o, "upstream", u->cfg->name, u->proxy, u->tls);
}

/* One line per endpoint of u: `name`{upstream, endpoint} and what `get` reads. */
static void per_endpoint(out_t *o, const cynic__upstream_t *u, const char *name,
                         uint64_t (*get)(const cynic__endpoint_t *e)) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++)
    emit(o, "%s{upstream=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", name, un,
         esc(u->endpoints[k].addr->text, en, sizeof en), get(&u->endpoints[k]));
}

static uint64_t pool_idle(const cynic__endpoint_t *e) {
  return e->idle_count;
}
static uint64_t pool_reused(const cynic__endpoint_t *e) {
  return e->pool_reused;
}
static uint64_t pool_discarded(const cynic__endpoint_t *e) {
  return e->pool_discarded;
}

static void u_pool_idle(out_t *o, const cynic__upstream_t *u) {
  per_endpoint(o, u, "cynic_pool_idle_connections", pool_idle);
}

static void u_pool_reused(out_t *o, const cynic__upstream_t *u) {
  per_endpoint(o, u, "cynic_pool_reused_total", pool_reused);
}

static void u_pool_discarded(out_t *o, const cynic__upstream_t *u) {
  per_endpoint(o, u, "cynic_pool_discarded_total", pool_discarded);
}

/* health_check (health.c): rows only for endpoints whose upstream has checks. */
static void u_health_checks(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    const cynic__health_status_t *h = cynic__health_of(&u->endpoints[k]);
    if (h == NULL)
      continue;
    esc(u->endpoints[k].addr->text, en, sizeof en);
    emit(o, "cynic_health_checks_total{upstream=\"%s\",endpoint=\"%s\",result=\"pass\"} %" PRIu64
            "\n",
         un, en, h->checks - h->failures);
    emit(o, "cynic_health_checks_total{upstream=\"%s\",endpoint=\"%s\",result=\"fail\"} %" PRIu64
            "\n",
         un, en, h->failures);
  }
}

static void u_health_healthy(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    const cynic__health_status_t *h = cynic__health_of(&u->endpoints[k]);
    if (h != NULL)
      emit(o, "cynic_endpoint_healthy{upstream=\"%s\",endpoint=\"%s\"} %d\n", un,
           esc(u->endpoints[k].addr->text, en, sizeof en),
           h->state != CYNIC__HEALTH_UNHEALTHY);
  }
}

static void u_health_duration(out_t *o, const cynic__upstream_t *u) {
  char un[NAME_BUF], en[ADDR_BUF];
  esc(u->cfg->name, un, sizeof un);
  for (size_t k = 0; k < u->endpoint_count; k++) {
    const cynic__health_status_t *h = cynic__health_of(&u->endpoints[k]);
    if (h != NULL && h->checks > 0)
      emit(o, "cynic_health_check_duration_seconds{upstream=\"%s\",endpoint=\"%s\"} %.6f\n", un,
           esc(u->endpoints[k].addr->text, en, sizeof en), (double)h->last_latency_us / 1e6);
  }
}

/* The families in order; a NULL name continues the previous family (the
 * events of listeners after those of upstreams). */
static const struct family {
  const char *name, *type, *help;
  void (*listener)(out_t *o, const cynic__listener_t *l);
  void (*upstream)(out_t *o, const cynic__upstream_t *u);
  uint64_t (*upstream_value)(
      const cynic__upstream_t *u); /* one number per upstream, named f->name */
} families[] = {
    {"cynic_listener_connections_open", "gauge", "Client connections open now.", l_open, NULL,
     NULL},
    {"cynic_listener_connections_limit", "gauge", "The listener's max_connections.", l_limit, NULL,
     NULL},
    {"cynic_connections_total", "counter",
     "Client connections ended, by listener, upstream and outcome.", l_conns, NULL, NULL},
    {"cynic_bytes_total", "counter",
     "Bytes forwarded, by listener, upstream and direction (to_upstream, to_client).", l_bytes,
     NULL, NULL},
    {"cynic_requests_rate_limited_total", "counter",
     "HTTP requests answered 429 rate_limited, per listener (its rate_limit, per client).",
     l_rate_limited, NULL, NULL},
    {"cynic_upstream_connect_duration_seconds", "histogram", "Time to connect to an endpoint.",
     NULL, u_connect, NULL},
    {"cynic_upstream_first_byte_seconds", "histogram",
     "From the first byte sent to the upstream (or the connect, when it speaks first) to its "
     "first byte back.",
     NULL, u_first_byte, NULL},
    {"cynic_connection_duration_seconds", "histogram", "Client connections from accept to close.",
     NULL, u_duration, NULL},
    {"cynic_timeouts_total", "counter",
     "Timeouts by upstream and kind (connect, first_byte, idle, queue).", NULL, u_timeouts, NULL},
    {"cynic_bulkhead_in_use", "gauge", "Bulkhead slots (upstream connections) in use.", NULL, NULL,
     v_bh_in_use},
    {"cynic_bulkhead_limit", "gauge", "Bulkhead max_connections.", NULL, NULL, v_bh_limit},
    {"cynic_bulkhead_pending", "gauge", "Clients waiting for a bulkhead slot.", NULL, NULL,
     v_bh_pending},
    {"cynic_bulkhead_pending_limit", "gauge", "Bulkhead max_pending.", NULL, NULL,
     v_bh_pending_limit},
    {"cynic_fail_fast_total", "counter",
     "Clients closed at once because every breaker of the upstream was open.", NULL, NULL,
     v_fail_fast},
    {"cynic_bulkhead_rejections_total", "counter",
     "Clients turned away by the bulkhead: full (slots and queue) or queue_timeout.", NULL,
     u_bh_rejections, NULL},
    {"cynic_events_total", "counter",
     "Events by kind since start, for each endpoint (upstream, endpoint), upstream "
     "(upstream) and listener (listener); the kinds of docs/admin.md.",
     NULL, u_events, NULL},
    {NULL, NULL, NULL, l_events, NULL, NULL},
    {"cynic_breaker_state", "gauge",
     "1 for the breaker's current state, 0 for the others, per endpoint.", NULL, u_breaker_state,
     NULL},
    {"cynic_breaker_transitions_total", "counter",
     "Breaker transitions per endpoint, by the state entered.", NULL, u_breaker_transitions, NULL},
    {"cynic_breaker_rejections_total", "counter",
     "Connection attempts an endpoint's breaker refused.", NULL, u_breaker_rejections, NULL},
    {"cynic_breaker_bucket_level", "gauge", "Faults in the breaker's leaky bucket now.", NULL,
     u_bucket_level, NULL},
    {"cynic_endpoint_connections_active", "gauge", "Connections to the endpoint now.", NULL,
     u_endpoint_active, NULL},
    {"cynic_endpoint_faults_total", "counter",
     "Faults counted against an endpoint's breaker, by kind.", NULL, u_endpoint_faults, NULL},
    {"cynic_http_responses_total", "counter",
     "HTTP mode: requests by the status class the client got (none: reset or closed).", NULL,
     u_http_responses, NULL},
    {"cynic_retries_total", "counter",
     "HTTP mode: failed attempts retry.on names, by what became of them (retried, or refused "
     "for want of budget, time before the deadline, or a kept body).",
     NULL, u_retries, NULL},
    {"cynic_fallbacks_total", "counter",
     "HTTP mode: answers an upstream's fallback gave instead of cynic's error, by kind (stale, "
     "secondary, static).",
     NULL, u_fallbacks, NULL},
    {"cynic_stale_cache_entries", "gauge",
     "HTTP mode: responses kept in an upstream's stale cache (fallback.stale).", NULL,
     u_stale_entries, NULL},
    {"cynic_stale_cache_bytes", "gauge",
     "HTTP mode: bytes the stale cache's entries hold (at most fallback.stale.max_bytes).", NULL,
     u_stale_bytes, NULL},
    {"cynic_pool_idle_connections", "gauge",
     "HTTP mode: idle upstream connections kept for reuse, per endpoint.", NULL, u_pool_idle, NULL},
    {"cynic_pool_reused_total", "counter",
     "HTTP mode: idle upstream connections handed to a new request, per endpoint.", NULL,
     u_pool_reused, NULL},
    {"cynic_pool_discarded_total", "counter",
     "HTTP mode: idle upstream connections closed (aged, closed by the peer, evicted).", NULL,
     u_pool_discarded, NULL},
    {"cynic_tls_handshakes_total", "counter",
     "TLS handshakes completed: clients' with a listener, cynic's with an upstream's endpoints.",
     l_tls_handshakes, NULL, NULL},
    {NULL, NULL, NULL, NULL, u_tls_handshakes, NULL},
    {"cynic_tls_resumed_total", "counter",
     "Of those, handshakes that resumed a session (no full handshake).", l_tls_resumed, NULL,
     NULL},
    {NULL, NULL, NULL, NULL, u_tls_resumed, NULL},
    {"cynic_tls_handshake_failures_total", "counter",
     "TLS handshakes that failed, by reason: timeout (timeouts.tls_handshake), verify (the "
     "peer's certificate), protocol (versions, ciphers, alerts), closed (the peer left).",
     l_tls_failures, NULL, NULL},
    {NULL, NULL, NULL, NULL, u_tls_failures, NULL},
    {"cynic_tls_cert_expiry_seconds", "gauge",
     "Seconds until the configured certificate expires (negative: expired): a listener's, an "
     "upstream's client certificate.",
     l_tls_expiry, NULL, NULL},
    {NULL, NULL, NULL, NULL, u_tls_expiry, NULL},
    {"cynic_health_checks_total", "counter",
     "health_check: verdicts of an endpoint's active checks, by result (pass, fail).", NULL,
     u_health_checks, NULL},
    {"cynic_endpoint_healthy", "gauge",
     "health_check: 1 while the endpoint is in rotation (healthy, or no verdict yet), 0 while "
     "its checks hold it out.",
     NULL, u_health_healthy, NULL},
    {"cynic_health_check_duration_seconds", "gauge",
     "health_check: how long the endpoint's last check took, start to verdict.", NULL,
     u_health_duration, NULL},
};
#define NFAMILIES (sizeof families / sizeof families[0])

/* One step at the cursor; false when the exposition is complete. */
static bool step(cynic__proxy_t *p, out_t *o, cynic__metrics_cursor_t *cur) {
  if (cur->family == 0 && cur->item == 0 && !cur->started) {
    process_rows(o, p);
    cur->started = true;
    return true;
  }
  if (cur->family >= NFAMILIES)
    return false;
  const struct family *f = &families[cur->family];
  if (cur->item == 0 && f->name != NULL && !cur->header_done) {
    header(o, f->name, f->type, f->help);
    cur->header_done = true;
    return true;
  }
  size_t count = f->listener != NULL ? p->listener_count : p->upstream_count;
  if (cur->item >= count) {
    cur->family++;
    cur->item = 0;
    cur->header_done = false;
    return true;
  }
  size_t i = cur->item++;
  if (f->listener != NULL) {
    const cynic__listener_t *l = &p->listeners[i];
    if (!l->retired && l->cfg != NULL) /* removed by a reload; its name may be in use again */
      f->listener(o, l);
  } else {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->retired || u->cfg == NULL) /* replaced or removed by a reload */
      return true;
    if (f->upstream_value != NULL)
      u_gauge(o, u, f->name, f->upstream_value(u));
    else
      f->upstream(o, u);
  }
  return true;
}

int cynic__metrics_render_next(cynic__proxy_t *p, cynic__buf_t *b, cynic__metrics_cursor_t *cur,
                               size_t want) {
  out_t o = {b, 0};
  size_t start = b->len;
  bool more = true;
  while (more && o.err == 0 && b->len - start < want)
    more = step(p, &o, cur);
  if (o.err != 0)
    return o.err;
  return more ? 0 : 1;
}

int cynic__metrics_render(cynic__proxy_t *p, cynic__buf_t *b) {
  cynic__metrics_cursor_t cur;
  memset(&cur, 0, sizeof cur);
  int rc;
  while ((rc = cynic__metrics_render_next(p, b, &cur, SIZE_MAX)) == 0)
    ;
  return rc < 0 ? rc : 0;
}
