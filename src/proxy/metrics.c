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
#include <stdio.h>
#include <string.h>

#include "accesslog.h"
#include "admin.h"

static const double bounds[CYNIC__HIST_BUCKETS] = CYNIC__HIST_BOUNDS;

static const char *const event_keys[] = {
#define EVENT_KEY(name, key, msg, text) key,
    CYNIC__EVENT_MAP(EVENT_KEY)
#undef EVENT_KEY
};

const char *cynic__outcome_name(int o) {
  if (o >= 0 && o < CYNIC__EV_COUNT)
    return event_keys[o];
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
  t->unix_ms = cynic__unix_ms();
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
  int64_t now_s = cynic__unix_ms() / 1000;
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

static int header(cynic__buf_t *b, const char *name, const char *type, const char *help) {
  return cynic__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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

static void hist(cynic__buf_t *b, const char *name, const char *labels, const cynic__hist_t *h) {
  uint64_t cum = 0;
  for (size_t i = 0; i < CYNIC__HIST_BUCKETS; i++) {
    cum += h->bucket[i];
    cynic__buf_printf(b, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels, bounds[i], cum);
  }
  cum += h->bucket[CYNIC__HIST_BUCKETS];
  cynic__buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
  cynic__buf_printf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum);
  cynic__buf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, h->count);
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
};

/* Per-upstream families with one sample each: the bulkhead and fail fast. */
static uint64_t bh_in_use(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s) {
  (void)u;
  return s->in_use;
}
static uint64_t bh_limit(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s) {
  (void)s;
  return u->cfg->max_connections;
}
static uint64_t bh_pending(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s) {
  (void)u;
  return s->pending;
}
static uint64_t bh_pending_limit(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s) {
  (void)s;
  return u->cfg->max_pending;
}
static uint64_t fail_fast(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s) {
  (void)s;
  return u->counters.total[CYNIC__EV_BREAKER_OPEN];
}
static const struct {
  const char *name, *type, *help;
  uint64_t (*value)(const cynic__upstream_t *u, const cynic_bulkhead_stats_t *s);
} upstream_gauges[] = {
    {"cynic_bulkhead_in_use", "gauge", "Bulkhead slots (upstream connections) in use.", bh_in_use},
    {"cynic_bulkhead_limit", "gauge", "Bulkhead max_connections.", bh_limit},
    {"cynic_bulkhead_pending", "gauge", "Clients waiting for a bulkhead slot.", bh_pending},
    {"cynic_bulkhead_pending_limit", "gauge", "Bulkhead max_pending.", bh_pending_limit},
    {"cynic_fail_fast_total", "counter",
     "Clients closed at once because every breaker of the upstream was open.", fail_fast},
};

int cynic__metrics_render(cynic__proxy_t *p, cynic__buf_t *b) {
  char ln[CYNIC__CONFIG_MAX_NAME * 2 + 8], un[CYNIC__CONFIG_MAX_NAME * 2 + 8], en[600];
  char labels[1400];
  const char *why;

  header(b, "cynic_build_info", "gauge", "Build information; always 1.");
  cynic__buf_printf(b, "cynic_build_info{version=\"%s\"} 1\n", cynic_version());
  header(b, "cynic_start_time_seconds", "gauge", "When the process started, Unix time.");
  cynic__buf_printf(b, "cynic_start_time_seconds %.3f\n", (double)p->started_unix_ms / 1000.0);
  header(b, "cynic_config_load_time_seconds", "gauge",
         "When the config in use was loaded, Unix time.");
  cynic__buf_printf(b, "cynic_config_load_time_seconds %.3f\n", (double)p->config_unix_ms / 1000.0);
  header(b, "cynic_config_reloads_total", "counter", "Successful config reloads.");
  cynic__buf_printf(b, "cynic_config_reloads_total %" PRIu64 "\n", p->reloads);
  header(b, "cynic_draining", "gauge", "1 while draining (SIGTERM or POST /drain).");
  cynic__buf_printf(b, "cynic_draining %d\n", p->draining ? 1 : 0);
  header(b, "cynic_ready", "gauge", "1 when GET /ready answers 200.");
  cynic__buf_printf(b, "cynic_ready %d\n", cynic__admin_ready(p, &why) ? 1 : 0);

  header(b, "cynic_listener_connections_open", "gauge", "Client connections open now.");
  for (size_t i = 0; i < p->listener_count; i++) {
    if (p->listeners[i].retired)
      continue;
    cynic__buf_printf(b, "cynic_listener_connections_open{listener=\"%s\"} %u\n",
                      esc(p->listeners[i].cfg->name, ln, sizeof ln), p->listeners[i].open);
  }
  header(b, "cynic_listener_connections_limit", "gauge", "The listener's max_connections.");
  for (size_t i = 0; i < p->listener_count; i++) {
    if (p->listeners[i].retired)
      continue;
    cynic__buf_printf(b, "cynic_listener_connections_limit{listener=\"%s\"} %u\n",
                      esc(p->listeners[i].cfg->name, ln, sizeof ln),
                      p->listeners[i].cfg->max_connections);
  }
  header(b, "cynic_connections_total", "counter",
         "Client connections ended, by listener, upstream and outcome.");
  for (size_t i = 0; i < p->listener_count; i++) {
    if (p->listeners[i].retired)
      continue; /* removed by a reload; its name may be in use again */
    const cynic__listener_t *l = &p->listeners[i];
    esc(l->cfg->name, ln, sizeof ln);
    esc(l->upstream->cfg->name, un, sizeof un);
    for (int o = 0; o < CYNIC__OUT_COUNT; o++)
      cynic__buf_printf(b,
                        "cynic_connections_total{listener=\"%s\",upstream=\"%s\",outcome=\"%s\"} "
                        "%" PRIu64 "\n",
                        ln, un, cynic__outcome_name(o), listener_outcome(l, o));
  }
  header(b, "cynic_bytes_total", "counter",
         "Bytes forwarded, by listener, upstream and direction (to_upstream, to_client).");
  for (size_t i = 0; i < p->listener_count; i++) {
    if (p->listeners[i].retired)
      continue; /* removed by a reload; its name may be in use again */
    const cynic__listener_t *l = &p->listeners[i];
    esc(l->cfg->name, ln, sizeof ln);
    esc(l->upstream->cfg->name, un, sizeof un);
    cynic__buf_printf(b,
                      "cynic_bytes_total{listener=\"%s\",upstream=\"%s\",direction=\"to_upstream\"}"
                      " %" PRIu64 "\n",
                      ln, un, l->stats.bytes_up);
    cynic__buf_printf(b,
                      "cynic_bytes_total{listener=\"%s\",upstream=\"%s\",direction=\"to_client\"}"
                      " %" PRIu64 "\n",
                      ln, un, l->stats.bytes_down);
  }

  static const struct {
    const char *name, *help;
    size_t off;
  } hists[] = {
      {"cynic_upstream_connect_duration_seconds", "Time to connect to an endpoint.",
       offsetof(cynic__upstream_stats_t, connect)},
      {"cynic_upstream_first_byte_seconds",
       "From the first byte sent to the upstream (or the connect, when it speaks first) to its "
       "first byte back.",
       offsetof(cynic__upstream_stats_t, first_byte)},
      {"cynic_connection_duration_seconds", "Client connections from accept to close.",
       offsetof(cynic__upstream_stats_t, duration)},
  };
  for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
    header(b, hists[h].name, "histogram", hists[h].help);
    for (size_t i = 0; i < p->upstream_count; i++) {
      if (p->upstreams[i].retired)
        continue; /* replaced or removed by a reload */
      const cynic__upstream_t *u = &p->upstreams[i];
      snprintf(labels, sizeof labels, "upstream=\"%s\"", esc(u->cfg->name, un, sizeof un));
      hist(b, hists[h].name, labels,
           (const cynic__hist_t *)((const char *)&u->stats + hists[h].off));
    }
  }

  header(b, "cynic_timeouts_total", "counter",
         "Timeouts by upstream and kind (connect, first_byte, idle, queue).");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    cynic__buf_printf(b, "cynic_timeouts_total{upstream=\"%s\",kind=\"connect\"} %" PRIu64 "\n", un,
                      upstream_event_total(u, CYNIC__EV_CONNECT_TIMEOUT));
    cynic__buf_printf(b, "cynic_timeouts_total{upstream=\"%s\",kind=\"first_byte\"} %" PRIu64 "\n",
                      un, upstream_event_total(u, CYNIC__EV_FIRST_BYTE_TIMEOUT));
    cynic__buf_printf(b, "cynic_timeouts_total{upstream=\"%s\",kind=\"idle\"} %" PRIu64 "\n", un,
                      upstream_event_total(u, CYNIC__EV_IDLE_TIMEOUT));
    cynic__buf_printf(b, "cynic_timeouts_total{upstream=\"%s\",kind=\"queue\"} %" PRIu64 "\n", un,
                      upstream_event_total(u, CYNIC__EV_QUEUE_TIMEOUT));
  }

  /* One sample per live upstream for each of these families. */
  for (size_t f = 0; f < sizeof upstream_gauges / sizeof upstream_gauges[0]; f++) {
    header(b, upstream_gauges[f].name, upstream_gauges[f].type, upstream_gauges[f].help);
    for (size_t i = 0; i < p->upstream_count; i++) {
      const cynic__upstream_t *u = &p->upstreams[i];
      if (u->retired)
        continue; /* replaced or removed by a reload */
      cynic_bulkhead_stats_t s;
      cynic_bulkhead_stats(u->bulkhead, &s);
      cynic__buf_printf(b, "%s{upstream=\"%s\"} %" PRIu64 "\n", upstream_gauges[f].name,
                        esc(u->cfg->name, un, sizeof un), upstream_gauges[f].value(u, &s));
    }
  }
  header(b, "cynic_bulkhead_rejections_total", "counter",
         "Clients turned away by the bulkhead: full (slots and queue) or queue_timeout.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    cynic__buf_printf(
        b, "cynic_bulkhead_rejections_total{upstream=\"%s\",reason=\"full\"} %" PRIu64 "\n", un,
        u->counters.total[CYNIC__EV_BULKHEAD_FULL]);
    cynic__buf_printf(b,
                      "cynic_bulkhead_rejections_total{upstream=\"%s\",reason=\"queue_timeout\"} "
                      "%" PRIu64 "\n",
                      un, u->counters.total[CYNIC__EV_QUEUE_TIMEOUT]);
  }
  header(b, "cynic_events_total", "counter",
         "Events by kind since start, for each endpoint (upstream, endpoint), upstream "
         "(upstream) and listener (listener); the kinds of docs/admin.md.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      esc(u->endpoints[k].addr->text, en, sizeof en);
      for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
        if (u->endpoints[k].counters.total[ev] != 0)
          cynic__buf_printf(b,
                            "cynic_events_total{upstream=\"%s\",endpoint=\"%s\",event=\"%s\"} "
                            "%" PRIu64 "\n",
                            un, en, event_keys[ev], u->endpoints[k].counters.total[ev]);
    }
    for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
      if (u->counters.total[ev] != 0)
        cynic__buf_printf(b, "cynic_events_total{upstream=\"%s\",event=\"%s\"} %" PRIu64 "\n", un,
                          event_keys[ev], u->counters.total[ev]);
  }
  for (size_t i = 0; i < p->listener_count; i++) {
    if (p->listeners[i].retired)
      continue; /* removed by a reload; its name may be in use again */
    const cynic__listener_t *l = &p->listeners[i];
    esc(l->cfg->name, ln, sizeof ln);
    for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
      if (l->counters.total[ev] != 0)
        cynic__buf_printf(b, "cynic_events_total{listener=\"%s\",event=\"%s\"} %" PRIu64 "\n", ln,
                          event_keys[ev], l->counters.total[ev]);
  }

  /* per endpoint */
  static const cynic_breaker_state_t states[] = {CYNIC_BREAKER_CLOSED, CYNIC_BREAKER_OPEN,
                                                 CYNIC_BREAKER_HALF_OPEN, CYNIC_BREAKER_FORCED_OPEN,
                                                 CYNIC_BREAKER_FORCED_CLOSED};
  header(b, "cynic_breaker_state", "gauge",
         "1 for the breaker's current state, 0 for the others, per endpoint.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic_breaker_snapshot_t s;
      cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
      esc(u->endpoints[k].addr->text, en, sizeof en);
      for (size_t j = 0; j < 5; j++)
        cynic__buf_printf(b,
                          "cynic_breaker_state{upstream=\"%s\",endpoint=\"%s\",state=\"%s\"} %d\n",
                          un, en, cynic_breaker_state_name(states[j]), s.state == states[j]);
    }
  }
  header(b, "cynic_breaker_transitions_total", "counter",
         "Breaker transitions per endpoint, by the state entered.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      esc(u->endpoints[k].addr->text, en, sizeof en);
      for (size_t j = 0; j < 5; j++)
        cynic__buf_printf(
            b,
            "cynic_breaker_transitions_total{upstream=\"%s\",endpoint=\"%s\",to=\"%s\"} "
            "%" PRIu64 "\n",
            un, en, cynic_breaker_state_name(states[j]),
            u->endpoints[k].stats.transitions_to[states[j]]);
    }
  }
  header(b, "cynic_breaker_rejections_total", "counter",
         "Connection attempts an endpoint's breaker refused.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic_breaker_snapshot_t s;
      cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
      cynic__buf_printf(
          b, "cynic_breaker_rejections_total{upstream=\"%s\",endpoint=\"%s\"} %" PRIu64 "\n", un,
          esc(u->endpoints[k].addr->text, en, sizeof en), s.rejected);
    }
  }
  header(b, "cynic_breaker_bucket_level", "gauge", "Faults in the breaker's leaky bucket now.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      cynic_breaker_snapshot_t s;
      cynic_breaker_snapshot(u->endpoints[k].breaker, &s);
      cynic__buf_printf(b, "cynic_breaker_bucket_level{upstream=\"%s\",endpoint=\"%s\"} %g\n", un,
                        esc(u->endpoints[k].addr->text, en, sizeof en), s.bucket_level);
    }
  }
  header(b, "cynic_endpoint_connections_active", "gauge", "Connections to the endpoint now.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++)
      cynic__buf_printf(b,
                        "cynic_endpoint_connections_active{upstream=\"%s\",endpoint=\"%s\"} %u\n",
                        un, esc(u->endpoints[k].addr->text, en, sizeof en), u->endpoints[k].active);
  }
  header(b, "cynic_endpoint_faults_total", "counter",
         "Faults counted against an endpoint's breaker, by kind.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue; /* replaced or removed by a reload */
    const cynic__upstream_t *u = &p->upstreams[i];
    esc(u->cfg->name, un, sizeof un);
    for (size_t k = 0; k < u->endpoint_count; k++) {
      esc(u->endpoints[k].addr->text, en, sizeof en);
      for (size_t j = 0; j < sizeof endpoint_faults / sizeof endpoint_faults[0]; j++)
        cynic__buf_printf(
            b,
            "cynic_endpoint_faults_total{upstream=\"%s\",endpoint=\"%s\",kind=\"%s\"} "
            "%" PRIu64 "\n",
            un, en, event_keys[endpoint_faults[j]],
            u->endpoints[k].counters.total[endpoint_faults[j]]);
    }
  }
  return b->len > 0 ? 0 : CYNIC_ENOMEM;
}
