/*
 * src/proxy/admin.c: the admin listener, the operators' interface (HTTP + JSON).
 *
 *   GET  /health                                   liveness: 200 while the loop runs
 *   GET  /ready                                    200, or 503 while draining or while a
 *                                                  `required` upstream has every breaker open
 *                                                  (Handshaking: the balancer in front stops
 *                                                  sending work this instance cannot do)
 *   GET  /status                                   version, uptime, listeners, upstreams,
 *                                                  endpoints, breakers, bulkheads
 *   GET  /breakers                                 every endpoint's breaker
 *   POST /breakers/{upstream}[/{endpoint}]/trip    force open (FORCED_OPEN)
 *   POST /breakers/{upstream}[/{endpoint}]/reset   back to automatic control (CLOSED)
 *   POST /drain                                    as SIGTERM: stop accepting, finish, exit
 *   GET  /metrics                                  Prometheus text, names cynic_*
 *
 * It is separate from traffic (NICs and names: its own address, loopback by
 * default) and served by src/common's httpd, whose every limit is explicit.
 * With admin.token_file, every request needs `Authorization: Bearer <token>`.
 * An endpoint in a path is written as configured (127.0.0.1:9000, db:5432;
 * IPv6 percent-encoded or as is: [::1]:9000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "httpd.h"
#include "json.h"
#include "log.h"
#include "proxy.h"

#define TOKEN_MAX 4096u
#define PATH_MAX_BYTES 1024u

struct cynic__admin {
  cynic__httpd_t httpd;
  cynic__proxy_t *proxy;
  char *token;      /* NULL: no authentication */
  uv_timer_t later; /* POST /drain starts the drain after the answer is out */
  int open_handles; /* httpd and timer not yet closed: freed at 0 */
};

/* ---- answers --------------------------------------------------------------- */

static void reply(cynic__httpd_response_t *resp, int status, json_t *body) {
  resp->status = status;
  resp->content_type = "application/json";
  cynic__buf_reset(&resp->body);
  if (body != NULL && cynic__json_dump(body, &resp->body) == 0)
    cynic__buf_puts(&resp->body, "\n");
  json_decref(body);
}

static void reply_error(cynic__httpd_response_t *resp, int status, const char *message) {
  reply(resp, status, json_pack("{s:s, s:i}", "error", message, "status", status));
}

static json_t *breaker_json(const cynic__endpoint_t *e) {
  cynic_breaker_snapshot_t s;
  cynic_breaker_snapshot(e->breaker, &s);
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "upstream", e->upstream->cfg->name,
      "endpoint", e->addr->text, "state", cynic_breaker_state_name(s.state), "last_reason",
      cynic_breaker_reason_name(s.last_reason), "successes", (json_int_t)s.successes, "failures",
      (json_int_t)s.failures, "rejected", (json_int_t)s.rejected, "transitions",
      (json_int_t)s.transitions, "next_probe_ms",
      (json_int_t)(s.next_probe_ns == UINT64_MAX ? -1 : (int64_t)(s.next_probe_ns / 1000000u)));
}

static json_t *counts_json(const cynic__counters_t *c) {
  json_t *o = json_object();
  for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
    if (c->total[ev] > 0)
      json_object_set_new(o, cynic__event_key((cynic__event_t)ev),
                          json_integer((json_int_t)c->total[ev]));
  return o;
}

/* ---- routes ---------------------------------------------------------------- */

static void get_status(cynic__proxy_t *p, cynic__httpd_response_t *resp) {
  json_t *listeners = json_array(), *upstreams = json_array();
  for (size_t i = 0; i < p->listener_count; i++) {
    const cynic__listener_t *l = &p->listeners[i];
    json_array_append_new(
        listeners,
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:o}", "name", l->cfg->name, "address",
                  l->address[0] != '\0' ? l->address : l->cfg->listen.text, "upstream",
                  l->upstream->cfg->name, "open", (json_int_t)l->open, "max_connections",
                  (json_int_t)l->cfg->max_connections, "counts", counts_json(&l->counters)));
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    cynic_bulkhead_stats_t b;
    cynic_bulkhead_stats(u->bulkhead, &b);
    json_t *endpoints = json_array();
    for (size_t k = 0; k < u->endpoint_count; k++) {
      const cynic__endpoint_t *e = &u->endpoints[k];
      char addr[CYNIC_ADDR_STR_MAX] = "";
      if (e->resolved)
        cynic__addr_format((const struct sockaddr *)&e->sa, addr, sizeof addr);
      json_array_append_new(
          endpoints, json_pack("{s:s, s:s?, s:i, s:o, s:o}", "endpoint", e->addr->text, "address",
                               e->resolved ? addr : NULL, "active", (json_int_t)e->active,
                               "breaker", breaker_json(e), "counts", counts_json(&e->counters)));
    }
    json_array_append_new(upstreams,
                          json_pack("{s:s, s:b, s:{s:i, s:i, s:i, s:i}, s:o, s:o}", "name",
                                    u->cfg->name, "available", cynic__upstream_available(u),
                                    "bulkhead", "in_use", (json_int_t)b.in_use, "max_connections",
                                    (json_int_t)b.max_concurrent, "pending", (json_int_t)b.pending,
                                    "max_pending", (json_int_t)b.max_pending, "endpoints",
                                    endpoints, "counts", counts_json(&u->counters)));
  }
  reply(resp, 200,
        json_pack("{s:s, s:I, s:b, s:I, s:o, s:o}", "version", cynic_version(), "uptime_ms",
                  (json_int_t)(uv_now(p->loop) - p->started_ms), "draining", p->draining,
                  "connections", (json_int_t)p->conn_count, "listeners", listeners, "upstreams",
                  upstreams));
}

static void get_ready(cynic__proxy_t *p, cynic__httpd_response_t *resp) {
  if (p->draining) {
    reply(resp, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", "draining"));
    return;
  }
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    if (u->cfg->required && !cynic__upstream_available(u)) {
      char why[160];
      snprintf(why, sizeof why, "required upstream '%s' has every breaker open", u->cfg->name);
      reply(resp, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", why));
      return;
    }
  }
  reply(resp, 200, json_pack("{s:b}", "ready", 1));
}

static void get_breakers(cynic__proxy_t *p, cynic__httpd_response_t *resp) {
  json_t *list = json_array();
  for (size_t i = 0; i < p->upstream_count; i++)
    for (size_t k = 0; k < p->upstreams[i].endpoint_count; k++)
      json_array_append_new(list, breaker_json(&p->upstreams[i].endpoints[k]));
  reply(resp, 200, json_pack("{s:o}", "breakers", list));
}

/* POST /breakers/{upstream}[/{endpoint}]/{trip|reset}; `segs` are the
 * percent-decoded path segments after "breakers". */
static void post_breakers(cynic__proxy_t *p, char **segs, size_t n, cynic__httpd_response_t *resp) {
  if (n < 2 || n > 3) {
    reply_error(resp, 404, "use POST /breakers/{upstream}[/{endpoint}]/trip or .../reset");
    return;
  }
  const char *action = segs[n - 1];
  bool trip = strcmp(action, "trip") == 0;
  if (!trip && strcmp(action, "reset") != 0) {
    reply_error(resp, 404, "unknown action; use trip or reset");
    return;
  }
  cynic__upstream_t *u = NULL;
  for (size_t i = 0; i < p->upstream_count; i++)
    if (strcmp(p->upstreams[i].cfg->name, segs[0]) == 0)
      u = &p->upstreams[i];
  if (u == NULL) {
    reply_error(resp, 404, "no upstream of that name");
    return;
  }
  json_t *list = json_array();
  for (size_t k = 0; k < u->endpoint_count; k++) {
    cynic__endpoint_t *e = &u->endpoints[k];
    if (n == 3 && strcmp(e->addr->text, segs[1]) != 0)
      continue;
    if (trip)
      cynic_breaker_trip(e->breaker);
    else
      cynic_breaker_reset(e->breaker);
    json_array_append_new(list, breaker_json(e));
  }
  if (json_array_size(list) == 0) {
    json_decref(list);
    reply_error(resp, 404, "no endpoint of that name in this upstream");
    return;
  }
  cynic__log(CYNIC_LOG_WARN,
             trip ? "breaker tripped by an operator" : "breaker reset by an operator",
             json_pack("{s:s, s:s}", "upstream", u->cfg->name, "endpoint", n == 3 ? segs[1] : "*"));
  reply(resp, 200, json_pack("{s:o}", "breakers", list));
}

static void metric_header(cynic__buf_t *b, const char *name, const char *type, const char *help) {
  cynic__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void get_metrics(cynic__proxy_t *p, cynic__httpd_response_t *resp) {
  cynic__buf_t *b = &resp->body;
  cynic__buf_reset(b);
  resp->status = 200;
  resp->content_type = "text/plain; version=0.0.4";
  metric_header(b, "cynic_up", "gauge", "1 while the proxy runs.");
  cynic__buf_printf(b, "cynic_up 1\n");
  metric_header(b, "cynic_draining", "gauge", "1 while draining.");
  cynic__buf_printf(b, "cynic_draining %d\n", p->draining ? 1 : 0);
  metric_header(b, "cynic_connections_open", "gauge", "Client connections open, per listener.");
  for (size_t i = 0; i < p->listener_count; i++)
    cynic__buf_printf(b, "cynic_connections_open{listener=\"%s\"} %u\n", p->listeners[i].cfg->name,
                      p->listeners[i].open);
  metric_header(b, "cynic_events_total", "counter",
                "Faults, timeouts and rejections by kind, per endpoint, upstream or listener.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    for (size_t k = 0; k < u->endpoint_count; k++)
      for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
        if (u->endpoints[k].counters.total[ev] > 0)
          cynic__buf_printf(b,
                            "cynic_events_total{upstream=\"%s\",endpoint=\"%s\",event=\"%s\"} "
                            "%llu\n",
                            u->cfg->name, u->endpoints[k].addr->text,
                            cynic__event_key((cynic__event_t)ev),
                            (unsigned long long)u->endpoints[k].counters.total[ev]);
    for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
      if (u->counters.total[ev] > 0)
        cynic__buf_printf(b, "cynic_events_total{upstream=\"%s\",event=\"%s\"} %llu\n",
                          u->cfg->name, cynic__event_key((cynic__event_t)ev),
                          (unsigned long long)u->counters.total[ev]);
  }
  for (size_t i = 0; i < p->listener_count; i++)
    for (int ev = 0; ev < CYNIC__EV_COUNT; ev++)
      if (p->listeners[i].counters.total[ev] > 0)
        cynic__buf_printf(b, "cynic_events_total{listener=\"%s\",event=\"%s\"} %llu\n",
                          p->listeners[i].cfg->name, cynic__event_key((cynic__event_t)ev),
                          (unsigned long long)p->listeners[i].counters.total[ev]);
  metric_header(b, "cynic_breaker_open", "gauge",
                "1 while an endpoint's breaker is open or forced open.");
  metric_header(b, "cynic_endpoint_connections", "gauge", "Connections open to an endpoint.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    const cynic__upstream_t *u = &p->upstreams[i];
    for (size_t k = 0; k < u->endpoint_count; k++) {
      const cynic__endpoint_t *e = &u->endpoints[k];
      bool open = e->state == CYNIC_BREAKER_OPEN || e->state == CYNIC_BREAKER_FORCED_OPEN;
      cynic__buf_printf(b, "cynic_breaker_open{upstream=\"%s\",endpoint=\"%s\",state=\"%s\"} %d\n",
                        u->cfg->name, e->addr->text, cynic_breaker_state_name(e->state),
                        open ? 1 : 0);
      cynic__buf_printf(b, "cynic_endpoint_connections{upstream=\"%s\",endpoint=\"%s\"} %u\n",
                        u->cfg->name, e->addr->text, e->active);
    }
  }
  metric_header(b, "cynic_bulkhead_in_use", "gauge", "Bulkhead slots in use, per upstream.");
  metric_header(b, "cynic_bulkhead_pending", "gauge", "Clients queued for a slot, per upstream.");
  for (size_t i = 0; i < p->upstream_count; i++) {
    cynic_bulkhead_stats_t s;
    cynic_bulkhead_stats(p->upstreams[i].bulkhead, &s);
    cynic__buf_printf(b, "cynic_bulkhead_in_use{upstream=\"%s\"} %u\n", p->upstreams[i].cfg->name,
                      s.in_use);
    cynic__buf_printf(b, "cynic_bulkhead_pending{upstream=\"%s\"} %u\n", p->upstreams[i].cfg->name,
                      s.pending);
  }
}

static void on_drain_later(uv_timer_t *t) {
  struct cynic__admin *a = t->data;
  cynic__proxy_drain(a->proxy, "POST /drain");
}

/* True when the request carries the admin token (or none is configured). */
static bool authorised(const struct cynic__admin *a, const cynic__http_parser_t *req) {
  if (a->token == NULL)
    return true;
  size_t len = 0;
  const char *v = cynic__http_header(req, "Authorization", &len);
  size_t tlen = strlen(a->token);
  if (v == NULL || len != 7 + tlen || strncmp(v, "Bearer ", 7) != 0)
    return false;
  unsigned char diff = 0; /* the same time whatever the first wrong byte */
  for (size_t i = 0; i < tlen; i++)
    diff |= (unsigned char)(v[7 + i] ^ a->token[i]);
  return diff == 0;
}

static void handle(void *arg, const cynic__http_parser_t *req, cynic__httpd_response_t *resp) {
  struct cynic__admin *a = arg;
  cynic__proxy_t *p = a->proxy;
  if (!authorised(a, req)) {
    reply_error(resp, 401, "missing or wrong bearer token (admin.token_file)");
    return;
  }
  const char *method = cynic__http_method(req);
  const char *url = req->url.data != NULL ? req->url.data : "";
  size_t pathlen = strcspn(url, "?#");
  if (pathlen == 0 || url[0] != '/' || pathlen >= PATH_MAX_BYTES) {
    reply_error(resp, 404, "not found");
    return;
  }
  /* Split into at most 5 percent-decoded segments. */
  char storage[5][PATH_MAX_BYTES];
  char *segs[5];
  size_t n = 0;
  const char *s = url + 1, *end = url + pathlen;
  while (s < end) {
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *e = slash != NULL ? slash : end;
    if (n == 5 || cynic__http_pct_decode(s, (size_t)(e - s), storage[n], PATH_MAX_BYTES) != 0) {
      reply_error(resp, 404, "not found");
      return;
    }
    segs[n] = storage[n];
    n++;
    s = slash != NULL ? slash + 1 : end;
  }
  bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
  const char *first = n > 0 ? segs[0] : "";
  bool known = true;
  if (n == 1 && strcmp(first, "health") == 0) {
    if (get)
      reply(resp, 200, json_pack("{s:s}", "status", "alive"));
    else
      known = false;
  } else if (n == 1 && strcmp(first, "ready") == 0) {
    if (get)
      get_ready(p, resp);
    else
      known = false;
  } else if (n == 1 && strcmp(first, "status") == 0) {
    if (get)
      get_status(p, resp);
    else
      known = false;
  } else if (n == 1 && strcmp(first, "metrics") == 0) {
    if (get)
      get_metrics(p, resp);
    else
      known = false;
  } else if (n == 1 && strcmp(first, "drain") == 0) {
    if (post) {
      reply(resp, 202,
            json_pack("{s:b, s:I}", "draining", 1, "connections", (json_int_t)p->conn_count));
      uv_timer_start(&a->later, on_drain_later, 0, 0); /* after this answer is written */
    } else {
      known = false;
    }
  } else if (n >= 1 && strcmp(first, "breakers") == 0) {
    if (n == 1 && get)
      get_breakers(p, resp);
    else if (n > 1 && post)
      post_breakers(p, segs + 1, n - 1, resp);
    else
      known = false;
  } else {
    reply_error(resp, 404, "not found; see docs/admin.md");
    return;
  }
  if (!known)
    reply_error(resp, 405, "method not allowed");
}

/* ---- start and stop -------------------------------------------------------- */

static int read_token(const char *path, char **out) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return CYNIC_EINVAL;
  char *t = calloc(1, TOKEN_MAX + 1);
  size_t n = t != NULL ? fread(t, 1, TOKEN_MAX, f) : 0;
  fclose(f);
  if (t == NULL)
    return CYNIC_ENOMEM;
  while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
    t[--n] = '\0';
  if (n == 0) {
    free(t);
    return CYNIC_EINVAL;
  }
  *out = t;
  return 0;
}

static void admin_free(struct cynic__admin *a) {
  free(a->token);
  free(a);
}

static void on_part_closed(struct cynic__admin *a) {
  if (--a->open_handles == 0)
    admin_free(a);
}

static void on_timer_closed(uv_handle_t *h) {
  on_part_closed(h->data);
}

static void on_httpd_closed(cynic__httpd_t *h) {
  on_part_closed(cynic__container_of(h, struct cynic__admin, httpd));
}

int cynic__admin_start(cynic__proxy_t *p) {
  const cynic__config_admin_t *ac = &p->cfg->admin;
  struct cynic__admin *a = calloc(1, sizeof *a);
  if (a == NULL)
    return CYNIC_ENOMEM;
  a->proxy = p;
  p->admin = a;
  uv_timer_init(p->loop, &a->later);
  a->later.data = a;
  a->open_handles = 1;
  if (ac->token_file != NULL && read_token(ac->token_file, &a->token) != 0) {
    cynic__log(CYNIC_LOG_ERROR, "cannot read the admin token",
               json_pack("{s:s}", "token_file", ac->token_file));
    return CYNIC_EINVAL;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (ac->listen.kind == CYNIC__ADDR_IPV4) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(ac->listen.port);
    memcpy(&s4->sin_addr, ac->listen.ip, 4);
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(ac->listen.port);
    memcpy(&s6->sin6_addr, ac->listen.ip, 16);
  }
  cynic__httpd_config_t hc;
  cynic__httpd_config_default(&hc);
  hc.max_conns = 64;
  hc.max_response = 16u << 20;
  hc.limits.max_body = 64u * 1024u;
  a->open_handles++; /* from here on the httpd must be closed, even if start fails */
  int rc = cynic__httpd_start(&a->httpd, p->loop, &hc, (struct sockaddr *)&ss, handle, a);
  if (rc != 0) {
    cynic__log(CYNIC_LOG_ERROR, "cannot listen",
               json_pack("{s:s, s:s, s:s}", "listener", "admin", "address", ac->listen.text,
                         "error", uv_strerror(rc)));
    return rc;
  }
  char text[CYNIC_ADDR_STR_MAX] = "?";
  struct sockaddr_storage bound;
  if (cynic__httpd_address(&a->httpd, &bound) == 0)
    cynic__addr_format((struct sockaddr *)&bound, text, sizeof text);
  cynic__log(CYNIC_LOG_INFO, "admin listening",
             json_pack("{s:s, s:s, s:b}", "address", text, "listener", "admin", "token",
                       a->token != NULL));
  return 0;
}

void cynic__admin_stop(cynic__proxy_t *p) {
  struct cynic__admin *a = p->admin;
  if (a == NULL)
    return;
  p->admin = NULL;
  if (a->open_handles == 2) {
    if (a->httpd.listening)
      cynic__httpd_close(&a->httpd, on_httpd_closed);
    else
      a->open_handles--; /* uv_tcp_init failed: nothing to close */
  }
  uv_close((uv_handle_t *)&a->later, on_timer_closed);
}
