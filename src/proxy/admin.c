/*
 * src/proxy/admin.c: the admin listener, the operations interface ("designing
 * for production means designing for people who do operations").
 *
 * HTTP/1.1 + JSON on admin.listen (loopback by default; config.c refuses a
 * non-loopback address without a token unless allow_remote), served by
 * src/common's httpd on the proxy's own loop: answering at all is the
 * liveness signal, and reading the breakers and bulkheads needs no locks.
 *
 *   GET  /                  the status page (status_page.html, embedded)
 *   GET  /status            process, config, listeners, upstreams, endpoints,
 *                           breakers, bulkheads, last transitions
 *   GET  /status/history    per-second samples of every upstream (sparklines)
 *   GET  /status/stream     server-sent events: /status once a second and
 *                           after breaker transitions, the newest samples
 *   GET  /breakers[/{u}[/{e}]]
 *   POST /breakers/{u}[/{e}]/trip | force_closed | reset
 *   GET  /health  GET /ready  POST /drain  POST /reload (reload.c; also SIGHUP)
 *   GET  /metrics           Prometheus text (metrics.c)
 *
 * The admin listener starts before the traffic listeners (which wait for the
 * first resolution of host names), so /ready can say "starting", and stays
 * up during a drain, so it can say "draining".
 *
 * Errors are JSON {"error": "...", "status": N}: 404 unknown path, upstream or
 * endpoint; 405 with Allow; 400 bad JSON body; 401 without the bearer token
 * when admin.token_file is set (compared in constant time). docs/admin.md is
 * the reference.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "addr.h"
#include "admin.h"
#include "json.h"
#include "log.h"
#include "token.h"

#define MAX_SEGS 4
#define SEG_MAX 300
#define TOKEN_MAX CYNIC__TOKEN_MAX
#define REASON_MAX 127

typedef struct req {
  cynic__admin_t *a;
  cynic__proxy_t *p;
  const cynic__http_parser_t *http;
  cynic__httpd_response_t *resp;
  const char *method;
  char segs[MAX_SEGS][SEG_MAX];
  size_t nsegs;
} req_t;

/* ---- replies ---------------------------------------------------------------- */

static void reply_json(req_t *r, int status, json_t *body) {
  r->resp->status = status;
  r->resp->content_type = "application/json";
  cynic__buf_reset(&r->resp->body);
  if (body == NULL || cynic__json_dump(body, &r->resp->body) != 0) {
    cynic__buf_reset(&r->resp->body);
    r->resp->status = 500;
    if (cynic__buf_puts(&r->resp->body,
                        "{\"error\":\"cannot build the response\",\"status\":500}") != 0) {
      /* out of memory: an empty 503 is answered with httpd's own body */
      cynic__buf_reset(&r->resp->body);
      r->resp->status = 503;
      r->resp->close = true;
      json_decref(body);
      return;
    }
  }
  cynic__buf_puts(&r->resp->body, "\n");
  json_decref(body);
}

/* `msg` may quote a path segment or a parser's message about the body: bytes
 * from the client, which need not be UTF-8 (cynic__json_text replaces what
 * is not, so the answer is always JSON). */
static void reply_error(req_t *r, int status, const char *msg) {
  json_t *o = json_object();
  if (o != NULL) {
    json_object_set_new(o, "error", cynic__json_text0(msg));
    json_object_set_new(o, "status", json_integer(status));
  }
  reply_json(r, status, o);
}

static void not_allowed(req_t *r, const char *allow) {
  /* static header lines: the response outlives this frame */
  r->resp->headers = strcmp(allow, "GET") == 0    ? "Allow: GET\r\n"
                     : strcmp(allow, "POST") == 0 ? "Allow: POST\r\n"
                                                  : "Allow: GET, POST\r\n";
  char msg[96];
  snprintf(msg, sizeof msg, "method %s not allowed here; use %s", r->method, allow);
  reply_error(r, 405, msg);
}

static bool is(const req_t *r, const char *m) {
  return strcmp(r->method, m) == 0;
}

/* ---- auth ---------------------------------------------------------------------- */

/* Constant time in the token's length and content: every byte is compared
 * whatever the first difference, and a length mismatch only sets a flag. */
static bool token_ok(const cynic__admin_t *a, const char *got, size_t len) {
  unsigned char diff = len != a->token_len;
  for (size_t i = 0; i < a->token_len; i++)
    diff |= (unsigned char)(a->token[i] ^ (i < len ? got[i] : 0));
  return diff == 0;
}

/* The penalty box entry of a client past its failed-authentication budget
 * (NULL: none, or its time is up). */
static cynic__admin_blocked_t *blocked_find(cynic__admin_t *a, const unsigned char *key,
                                            size_t keylen, uint64_t now) {
  for (size_t i = 0; i < CYNIC__ADMIN_AUTH_BLOCKED; i++) {
    cynic__admin_blocked_t *b = &a->blocked[i];
    if (b->keylen == keylen && keylen > 0 && memcmp(b->key, key, keylen) == 0)
      return b->until_ns > now ? b : NULL;
  }
  return NULL;
}

static void blocked_add(cynic__admin_t *a, const unsigned char *key, size_t keylen,
                        uint64_t until) {
  cynic__admin_blocked_t *slot = NULL;
  for (size_t i = 0; i < CYNIC__ADMIN_AUTH_BLOCKED && slot == NULL; i++)
    if (a->blocked[i].keylen == keylen && memcmp(a->blocked[i].key, key, keylen) == 0)
      slot = &a->blocked[i];
  if (slot == NULL) { /* else the entry whose time ends first (free ones: 0) */
    slot = &a->blocked[0];
    for (size_t i = 1; i < CYNIC__ADMIN_AUTH_BLOCKED; i++)
      if (a->blocked[i].until_ns < slot->until_ns)
        slot = &a->blocked[i];
  }
  memcpy(slot->key, key, keylen);
  slot->keylen = keylen;
  slot->until_ns = until;
}

/* 429 for a client past its failed-authentication budget; the connection
 * closes (as after a 401). */
static void too_many_failures(req_t *r, uint64_t wait_ns) {
  static const char *const retry[] = {"Retry-After: 1\r\n", "Retry-After: 2\r\n",
                                      "Retry-After: 5\r\n"};
  uint64_t s = (wait_ns + 999999999u) / 1000000000u;
  r->resp->headers = s <= 1 ? retry[0] : s <= 2 ? retry[1] : retry[2];
  reply_error(r, 429, "too many failed authentications from this address; retry later");
  r->resp->close = true;
}

/* Checks the bearer token (or `got`, the stream's ?token=, when non-NULL).
 * A failure is answered 401 and closes the connection (a client without the
 * token keeps no admin slot); failures are counted per client address and a
 * client past CYNIC__ADMIN_AUTH_RATE/BURST is answered 429 before its token
 * is even compared, so guessing is bounded to that rate. */
static bool check_token(req_t *r, const char *got, size_t got_len, bool has) {
  cynic__admin_t *a = r->a;
  unsigned char key[16];
  size_t keylen = cynic__httpd_peer_key(r->http, key);
  uint64_t now = uv_hrtime();
  cynic__admin_blocked_t *b = keylen > 0 ? blocked_find(a, key, keylen, now) : NULL;
  if (b != NULL) {
    too_many_failures(r, b->until_ns - now);
    return false;
  }
  if (has && token_ok(a, got, got_len))
    return true;
  uint64_t wait_ns = 0;
  if (keylen > 0 && a->auth_failures != NULL &&
      cynic_ratetable_take(a->auth_failures, key, keylen, 1, &wait_ns) == CYNIC_ELIMITED) {
    blocked_add(a, key, keylen, now + (wait_ns == UINT64_MAX ? 1000000000u : wait_ns));
    too_many_failures(r, wait_ns);
    return false;
  }
  r->resp->headers = "WWW-Authenticate: Bearer realm=\"cynic admin\"\r\n";
  reply_error(r, 401,
              !has ? "missing bearer token: send Authorization: Bearer <token>"
                   : "bad bearer token");
  r->resp->close = true;
  return false;
}

static bool authorised(req_t *r) {
  if (r->a->token == NULL)
    return true;
  size_t len = 0;
  const char *h = cynic__http_header(r->http, "Authorization", &len);
  if (h != NULL && len > 7 && strncasecmp(h, "Bearer ", 7) == 0)
    return check_token(r, h + 7, len - 7, true);
  return check_token(r, NULL, 0, h != NULL);
}

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
  int64_t now = cynic__unix_ms();
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
  /* http mode: retry budget and connection pool; none in tcp mode */
  json_object_set_new(o, "retry_budget", json_null());
  json_object_set_new(o, "pool", json_null());
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
  int64_t now = cynic__unix_ms();
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
    json_object_set_new(lo, "listening", json_boolean(l->listening));
    json_object_set_new(lo, "retired", json_boolean(l->retired));
    json_object_set_new(lo, "counts", cynic__counts_json(&l->counters));
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

enum listing_kind { LIST_STATUS, LIST_HISTORY, LIST_BREAKERS, LIST_METRICS };

typedef struct listing {
  cynic__admin_t *a;
  enum listing_kind kind;
  size_t next;  /* the upstream slot next */
  bool started; /* the opening part is out */
  bool any;     /* an upstream is out: the next one needs a comma */
  cynic__metrics_cursor_t cur;
} listing_t;

static int dump_into(cynic__buf_t *b, json_t *v) {
  if (v == NULL)
    return CYNIC_ENOMEM;
  int rc = cynic__json_dump(v, b);
  json_decref(v);
  return rc;
}

static int listing_open(listing_t *l, cynic__buf_t *b) {
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
                             (long long)(cynic__unix_ms() / 1000));
  case LIST_BREAKERS:
    return cynic__buf_puts(b, "{\"upstreams\":[");
  default:
    return 0;
  }
}

/* One upstream's part; 0 with nothing appended for a slot not shown. */
static int listing_item(listing_t *l, cynic__buf_t *b, const cynic__upstream_t *u) {
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

/* JSON through jansson costs ~60 ms a MB here (an object per field; the
 * 6 MB /status at the config limits took ~0.4 s whole), several times the
 * Prometheus text's printf (~10 ms a MB): its slices are kept to ~16 KB,
 * i.e. one upstream (64 endpoints: ~24 KB, ~1.5 ms), so a slice stays near
 * the loop-turn budget. Measured with one client polling /status at the
 * limits: proxied p99 +1.3 ms over idle, against +4.2 ms with 64 KB slices. */
#define LISTING_JSON_SLICE (16u << 10)

static int listing_produce(void *arg, cynic__buf_t *b, size_t want) {
  listing_t *l = arg;
  cynic__proxy_t *p = l->a->proxy;
  if (l->kind == LIST_METRICS)
    return cynic__metrics_render_next(p, b, &l->cur, want);
  if (want > LISTING_JSON_SLICE)
    want = LISTING_JSON_SLICE;
  int rc = 0;
  if (!l->started) {
    if ((rc = listing_open(l, b)) != 0)
      return rc;
    l->started = true;
  }
  while (b->len < want && l->next < p->upstream_count)
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

static void reply_listing(req_t *r, enum listing_kind kind) {
  listing_t *l = calloc(1, sizeof *l);
  if (l == NULL) {
    reply_error(r, 503, "out of memory");
    return;
  }
  l->a = r->a;
  l->kind = kind;
  r->resp->status = 200;
  r->resp->content_type =
      kind == LIST_METRICS ? "text/plain; version=0.0.4; charset=utf-8" : "application/json";
  r->resp->produce = listing_produce;
  r->resp->produce_free = listing_free;
  r->resp->produce_arg = l;
}

static void get_status(req_t *r) {
  reply_listing(r, LIST_STATUS);
}

static void get_history(req_t *r) {
  reply_listing(r, LIST_HISTORY);
}

/* ---- breakers --------------------------------------------------------------------- */

static cynic__upstream_t *find_upstream(cynic__proxy_t *p, const char *name) {
  for (size_t i = 0; i < p->upstream_count; i++)
    if (!p->upstreams[i].retired && strcmp(p->upstreams[i].cfg->name, name) == 0)
      return &p->upstreams[i];
  return NULL;
}

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
    reply_error(r, 503, "out of memory");
    return false;
  }
  if (v == NULL) {
    char msg[256];
    snprintf(msg, sizeof msg, "bad JSON body: %s (line %d, column %d)", err.text, err.line,
             err.column);
    reply_error(r, 400, msg);
    return false;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    reply_error(r, 400, "bad JSON body: expected an object like {\"reason\": \"...\"}");
    return false;
  }
  const char *reason = NULL;
  char detail[128];
  if (cynic__json_get_string(v, "reason", &reason, detail, sizeof detail) < 0 ||
      cynic__json_get_bool(v, "close_connections", close_conns, detail, sizeof detail) < 0) {
    json_decref(v);
    char msg[192];
    snprintf(msg, sizeof msg, "bad JSON body: %s", detail);
    reply_error(r, 400, msg);
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
    return reply_error(r, 400, "close_connections goes with trip only");
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
    if (only == NULL || only == &u->endpoints[k])
      closed += cynic__sessions_close_endpoint(r->p, &u->endpoints[k], "tripped");
  json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:i}", "action", action, "upstream", u->cfg->name,
                        "by", peer, "reason", reason, "closed_connections", (json_int_t)closed);
  if (f != NULL && only != NULL)
    json_object_set_new(f, "endpoint", json_string(only->addr->text));
  cynic__log_event(CYNIC_LOG_WARN, "breaker_manual", "breaker changed by an operator", f);
  if (only != NULL)
    reply_json(r, 200,
               json_pack("{s:s, s:o}", "upstream", u->cfg->name, "endpoint", endpoint_json(only)));
  else
    reply_json(r, 200, breakers_of(u));
}

static void breakers(req_t *r) {
  cynic__proxy_t *p = r->p;
  if (r->nsegs == 1) {
    if (!is(r, "GET"))
      return not_allowed(r, "GET");
    return reply_listing(r, LIST_BREAKERS);
  }
  cynic__upstream_t *u = find_upstream(p, r->segs[1]);
  if (u == NULL) {
    char msg[SEG_MAX + 40];
    snprintf(msg, sizeof msg, "no upstream named '%s'", r->segs[1]);
    return reply_error(r, 404, msg);
  }
  if (r->nsegs == 2) {
    if (!is(r, "GET"))
      return not_allowed(r, "GET");
    return reply_json(r, 200, breakers_of(u));
  }
  if (r->nsegs == 3 && is_action(r->segs[2])) {
    if (!is(r, "POST"))
      return not_allowed(r, "POST");
    return breaker_action(r, u, NULL, r->segs[2]);
  }
  cynic__endpoint_t *e = find_endpoint(u, r->segs[2]);
  if (e == NULL) {
    char msg[2 * SEG_MAX + 40];
    snprintf(msg, sizeof msg, "upstream '%s' has no endpoint '%s'", u->cfg->name, r->segs[2]);
    return reply_error(r, 404, msg);
  }
  if (r->nsegs == 3) {
    if (!is(r, "GET"))
      return not_allowed(r, "GET");
    return reply_json(
        r, 200, json_pack("{s:s, s:o}", "upstream", u->cfg->name, "endpoint", endpoint_json(e)));
  }
  if (r->nsegs == 4 && is_action(r->segs[3])) {
    if (!is(r, "POST"))
      return not_allowed(r, "POST");
    return breaker_action(r, u, e, r->segs[3]);
  }
  reply_error(r, 404, "not found: use trip, force_closed or reset");
}

/* ---- drain ----------------------------------------------------------------------- */

static void on_action(uv_timer_t *t) {
  cynic__admin_t *a = t->data;
  cynic__proxy_drain(a->proxy, "POST /drain");
}

static void post_drain(req_t *r) {
  char peer[CYNIC_ADDR_STR_MAX] = "?";
  cynic__httpd_peer(r->http, peer, sizeof peer);
  bool already = r->p->draining;
  if (!already) {
    cynic__log_event(CYNIC_LOG_INFO, "drain_requested", "drain requested",
                     json_pack("{s:s}", "by", peer));
    /* After this answer is written: the drain may end the loop at once. */
    uv_timer_start(&r->a->action_timer, on_action, 0, 0);
  }
  uint64_t ms = (r->p->cfg->admin.drain_timeout_ns + 999999u) / 1000000u;
  reply_json(r, 202,
             json_pack("{s:b, s:I, s:f}", "draining", 1, "connections",
                       (json_int_t)r->p->conn_count, "drain_timeout_s", (double)ms / 1000.0));
}

static void post_reload(req_t *r) {
  char peer[CYNIC_ADDR_STR_MAX + 16] = "POST /reload from ";
  size_t n = strlen(peer);
  cynic__httpd_peer(r->http, peer + n, sizeof peer - n);
  int status = 500;
  json_t *body = cynic__reload(r->p, peer, &status);
  reply_json(r, status, body);
}

static void on_sighup(uv_signal_t *s, int signum) {
  (void)signum;
  cynic__admin_t *a = s->data;
  int status;
  json_decref(cynic__reload(a->proxy, "SIGHUP", &status)); /* reload.c logged the outcome */
}

void cynic__admin_token_set(cynic__proxy_t *p, char *token, size_t len) {
  cynic__admin_t *a = p->admin;
  if (a->token != NULL) {
    memset(a->token, 0, a->token_len);
    free(a->token);
  }
  a->token = token;
  a->token_len = len;
}

/* ---- status streams (server-sent events) -------------------------------------------- */

/* The stream's own token rule: EventSource cannot send headers, so with a
 * token configured `?token=` (URL-encoded) is accepted here, and only here;
 * the Authorization header works as everywhere. */
static bool stream_authorised(req_t *r) {
  if (r->a->token == NULL)
    return true;
  size_t hlen;
  if (cynic__http_header(r->http, "Authorization", &hlen) != NULL)
    return authorised(r); /* the header, when sent, is what counts */
  const char *url = r->http->url.data ? r->http->url.data : "";
  const char *q = strchr(url, '?');
  while (q != NULL) {
    q++;
    size_t n = strcspn(q, "&#");
    if (n > 6 && strncmp(q, "token=", 6) == 0) {
      char *got = malloc(TOKEN_MAX + 1);
      if (got == NULL) {
        reply_error(r, 503, "out of memory");
        return false;
      }
      bool ok;
      if (cynic__http_pct_decode(q + 6, n - 6, got, TOKEN_MAX + 1) == 0)
        ok = check_token(r, got, strlen(got), true);
      else
        ok = check_token(r, "", 0, true); /* undecodable: a failure like any other */
      memset(got, 0, TOKEN_MAX + 1);
      free(got);
      return ok;
    }
    q = q[n] == '&' ? q + n : NULL;
  }
  return authorised(r);
}

/* One server-sent event into b (initialised by the caller, freed by it):
 * "event: NAME\ndata: JSON\n\n", the JSON compact (one line). Consumes
 * data's reference (NULL is an error). 0 or a negative CYNIC_E*. */
static int event_format(cynic__buf_t *b, const char *event, json_t *data) {
  if (data == NULL)
    return CYNIC_ENOMEM;
  int rc = cynic__buf_printf(b, "event: %s\ndata: ", event);
  if (rc == 0)
    rc = cynic__json_dump(data, b);
  json_decref(data);
  if (rc == 0)
    rc = cynic__buf_puts(b, "\n\n");
  return rc;
}

/* Queues `b` (whole events) on every stream, in one write each. A stream
 * whose reader still has more than STREAM_MAX_PENDING plus the previous
 * push pending (it has not read the last one) is dropped (logged) rather
 * than buffered for: a reader that keeps up gets every event, however large
 * the status, and what is queued per stream stays under STREAM_MAX_PENDING
 * plus two pushes. */
static void stream_send(cynic__admin_t *a, const cynic__buf_t *b) {
  size_t allow = CYNIC__ADMIN_STREAM_MAX_PENDING + a->stream_last_push;
  for (size_t i = 0; b->len > 0 && i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    cynic__httpd_stream_t *st = a->streams[i];
    if (st == NULL)
      continue;
    /* the peer's address (a getpeername) only for a stream the write below
     * will drop: it is gone after the write */
    char peer[96] = "?";
    size_t pending = cynic__httpd_stream_pending(st);
    if (pending > allow)
      cynic__httpd_stream_peer(st, peer, sizeof peer);
    cynic__httpd_stream_set_max_pending(st, allow);
    if (cynic__httpd_stream_write(st, b->data, b->len) == CYNIC_ERANGE) {
      cynic__log_event(CYNIC_LOG_WARN, "status_stream_dropped",
                       "status stream client dropped: it reads too slowly",
                       json_pack("{s:s, s:I, s:I}", "client", peer, "pending_bytes",
                                 (json_int_t)pending, "limit_bytes", (json_int_t)allow));
    }
  }
  if (b->len > 0)
    a->stream_last_push = b->len;
}

static json_t *samples_json(cynic__admin_t *a) {
  cynic__proxy_t *p = a->proxy;
  json_t *us = json_object();
  for (size_t i = 0; i < p->upstream_count; i++) {
    if (p->upstreams[i].retired)
      continue;
    json_t *s = cynic__metrics_last_sample(&p->upstreams[i]);
    if (s != NULL)
      json_object_set_new(us, p->upstreams[i].cfg->name, s);
  }
  return json_pack("{s:I, s:o}", "now", (json_int_t)(cynic__unix_ms() / 1000), "upstreams", us);
}

static void on_stream_closed(cynic__httpd_stream_t *st, void *arg);

/*
 * The events are built in slices (issue 10). A `status` or `transition`
 * event carries the whole /status (~6 MB at the config limits, ~0.4 s of
 * jansson): built at once it held the loop that forwards traffic that long.
 * So one build at a time, shared by every stream, renders /status with the
 * listing producer of GET /status (one upstream or ~16 KB a step) from an
 * idle handle, for at most the admin server's work budget per loop turn
 * (work_budget_us, 1 ms), straight into the buffer that is then pushed.
 * Like GET /status, each upstream's part is one instant and the event spans
 * the build (at the limits ~0.4 s of steps, more on a loaded loop).
 *
 * What a build is for (STREAM_EV_*), fixed when it starts:
 *   TRANSITION  one or more breakers changed state since the last build began;
 *   TICK        the once-a-second `sample` and `status`;
 *   WELCOME     streams opened since (their first `status`).
 * Wants that arrive during a build wait for the next one (they coalesce: a
 * loop that cannot build a status a second skips ticks, never queues them),
 * except a transition during a build for a TICK without TRANSITION: that
 * build starts over as TRANSITION|TICK, so no tick's status shows a
 * transition before its own `transition` event does (at most one restart a
 * build: a restarted build has TRANSITION). Existing streams get the build's
 * transition, sample and status events in one write; the streams it
 * welcomes get its status alone.
 */
enum { STREAM_EV_TRANSITION = 1u, STREAM_EV_TICK = 2u, STREAM_EV_WELCOME = 4u };

struct cynic__admin_stream_build {
  unsigned events;                         /* STREAM_EV_* this build serves */
  bool welcome[CYNIC__ADMIN_MAX_STREAMS];  /* the fresh streams it will welcome */
  listing_t status;                        /* the /status producer's cursor */
  cynic__buf_t out;                        /* the push, built in place (cap EVENT_MAX x 2) */
  cynic__buf_t sample;                     /* the `sample` event (TICK|TRANSITION) */
  cynic__buf_t slice;                      /* one producer step */
  size_t data_at;                          /* where the status's "data: " line starts in out */
};
typedef struct cynic__admin_stream_build stream_build_t;

static void stream_build_free(stream_build_t *b) {
  if (b == NULL)
    return;
  cynic__buf_free(&b->out);
  cynic__buf_free(&b->sample);
  cynic__buf_free(&b->slice);
  free(b);
}

static void event_failed(const char *event, int rc) {
  cynic__log_event(CYNIC_LOG_ERROR, "status_stream_event_failed",
                   "a status stream event could not be made",
                   json_pack("{s:s, s:s, s:I}", "event", event, "error", cynic_strerror(rc),
                             "limit_bytes", (json_int_t)CYNIC__ADMIN_EVENT_MAX));
}

/* Starts a build for what is wanted; false when nothing is (or out of
 * memory: logged, the wants dropped, so a failing build never spins). */
static bool stream_build_start(cynic__admin_t *a) {
  unsigned ev = a->stream_want;
  a->stream_want = 0;
  if (ev == 0 || a->stream_count == 0)
    return false;
  stream_build_t *b = calloc(1, sizeof *b);
  if (b == NULL) {
    event_failed(ev & STREAM_EV_TRANSITION ? "transition" : "status", CYNIC_ENOMEM);
    return false;
  }
  b->events = ev;
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    b->welcome[i] = a->streams[i] != NULL && a->stream_fresh[i];
    if (b->welcome[i])
      a->stream_fresh[i] = false; /* welcomed by this build, or (failing) by the next tick */
  }
  /* two copies of the status at most (transition and status), and a sample */
  cynic__buf_init(&b->out, 2 * (size_t)CYNIC__ADMIN_EVENT_MAX + (1u << 20));
  cynic__buf_init(&b->sample, 1u << 20);
  cynic__buf_init(&b->slice, CYNIC__ADMIN_EVENT_MAX);
  b->status.a = a;
  b->status.kind = LIST_STATUS;
  int rc = 0;
  if ((ev & STREAM_EV_TICK) && (rc = event_format(&b->sample, "sample", samples_json(a))) != 0)
    event_failed("sample", rc); /* the status still goes out */
  const char *first = ev & STREAM_EV_TRANSITION ? "transition" : "status";
  if (!(ev & STREAM_EV_TRANSITION) && b->sample.len > 0)
    rc = cynic__buf_append(&b->out, b->sample.data, b->sample.len);
  if (rc == 0)
    rc = cynic__buf_printf(&b->out, "event: %s\n", first);
  b->data_at = b->out.len;
  if (rc == 0)
    rc = cynic__buf_puts(&b->out, "data: ");
  if (rc != 0) {
    event_failed(first, rc);
    stream_build_free(b);
    return false;
  }
  a->build = b;
  return true;
}

/* The finished push: to the streams it welcomes (the status alone), and to
 * the others (everything it was built for, in one write). */
static void stream_build_send(cynic__admin_t *a, stream_build_t *b) {
  int rc = 0;
  size_t data_end = b->out.len;
  if ((b->events & STREAM_EV_TRANSITION) && (b->events & STREAM_EV_TICK)) {
    /* the transition, then the tick: its sample and the same status */
    rc = cynic__buf_append(&b->out, b->sample.data, b->sample.len);
    if (rc == 0)
      rc = cynic__buf_puts(&b->out, "event: status\n");
    if (rc == 0)
      rc = cynic__buf_append(&b->out, b->out.data + b->data_at, data_end - b->data_at);
    if (rc != 0) {
      event_failed("status", rc);
      b->out.len = data_end; /* the transition still goes out */
    }
  }
  static const char head[] = "event: status\n";
  size_t n = data_end - b->data_at;
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++) {
    cynic__httpd_stream_t *st = a->streams[i];
    if (st == NULL || !b->welcome[i])
      continue;
    cynic__httpd_stream_set_max_pending(st, CYNIC__ADMIN_STREAM_MAX_PENDING + n);
    if (cynic__httpd_stream_write(st, head, sizeof head - 1) == 0)
      cynic__httpd_stream_write(st, b->out.data + b->data_at, n);
  }
  if (b->events & (STREAM_EV_TRANSITION | STREAM_EV_TICK))
    stream_send(a, &b->out);
}

/* One loop turn's share of the build: producer steps until the work budget
 * is spent (one step at least), then the push once the status is whole. */
static void on_stream_work(uv_idle_t *h) {
  cynic__admin_t *a = h->data;
  if (a->build == NULL && !stream_build_start(a)) {
    uv_idle_stop(h);
    return;
  }
  stream_build_t *b = a->build;
  uint64_t budget_ns = (uint64_t)a->httpd->config.work_budget_us * 1000u;
  uint64_t t0 = uv_hrtime();
  int rc;
  do {
    cynic__buf_reset(&b->slice);
    rc = listing_produce(&b->status, &b->slice, LISTING_JSON_SLICE);
    if (rc >= 0) {
      int arc = cynic__buf_append(&b->out, b->slice.data, b->slice.len);
      if (arc == 0 && b->out.len - b->data_at > CYNIC__ADMIN_EVENT_MAX)
        arc = CYNIC_ERANGE;
      if (arc != 0)
        rc = arc;
    }
  } while (rc == 0 && uv_hrtime() - t0 < budget_ns);
  if (rc == 0)
    return; /* more next turn */
  a->build = NULL;
  /* the producer ends the JSON with "\n": one more ends the event */
  if (rc == 1 && (rc = cynic__buf_puts(&b->out, "\n")) == 0)
    stream_build_send(a, b);
  else
    event_failed(b->events & STREAM_EV_TRANSITION ? "transition" : "status", rc);
  stream_build_free(b);
}

/* Asks for events (STREAM_EV_*): built from the next loop turn on. */
static void stream_want(cynic__admin_t *a, unsigned ev) {
  if (a->stream_count == 0 || a->stopping)
    return;
  stream_build_t *b = a->build;
  if (b != NULL && (ev & STREAM_EV_TRANSITION) && (b->events & STREAM_EV_TICK) &&
      !(b->events & STREAM_EV_TRANSITION)) {
    /* start over as TRANSITION|TICK (see above): the streams it was to
     * welcome are fresh again */
    for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++)
      if (b->welcome[i])
        a->stream_fresh[i] = true;
    a->stream_want |= b->events;
    a->build = NULL;
    stream_build_free(b);
  }
  a->stream_want |= ev;
  if (!uv_is_active((uv_handle_t *)&a->stream_work))
    uv_idle_start(&a->stream_work, on_stream_work);
}

void cynic__admin_streams_kick(cynic__admin_t *a) {
  stream_want(a, STREAM_EV_TRANSITION);
}

/* Once a second, after the history sample. */
static void streams_tick(cynic__admin_t *a) {
  stream_want(a, STREAM_EV_TICK);
}

static void on_stream_closed(cynic__httpd_stream_t *st, void *arg) {
  cynic__admin_t *a = arg;
  for (size_t i = 0; i < CYNIC__ADMIN_MAX_STREAMS; i++)
    if (a->streams[i] == st) {
      a->streams[i] = NULL;
      a->stream_fresh[i] = false;
      if (a->build != NULL)
        a->build->welcome[i] = false; /* the slot may be another stream's before the push */
      a->stream_count--;
    }
}

static void get_stream(req_t *r) {
  cynic__admin_t *a = r->a;
  if (a->stream_count >= CYNIC__ADMIN_MAX_STREAMS) {
    char msg[128];
    snprintf(msg, sizeof msg, "too many status streams (the limit is %d); poll GET /status",
             CYNIC__ADMIN_MAX_STREAMS);
    r->resp->headers = "Retry-After: 5\r\n";
    reply_error(r, 503, msg);
    return;
  }
  size_t slot = 0;
  while (a->streams[slot] != NULL)
    slot++;
  r->resp->status = 200;
  r->resp->content_type = "text/event-stream";
  r->resp->headers = "Cache-Control: no-store\r\n";
  cynic__httpd_stream_t *st = cynic__httpd_stream(r->resp, CYNIC__ADMIN_STREAM_MAX_PENDING,
                                                  CYNIC__ADMIN_STREAM_SNDBUF, on_stream_closed, a);
  if (st == NULL) {
    r->resp->headers = NULL;
    reply_error(r, 503, "cannot open a status stream");
    return;
  }
  a->streams[slot] = st;
  a->stream_fresh[slot] = true;
  a->stream_count++;
  /* the client reconnects after 1 s if the connection drops; its first
   * status is built from the next loop turn on, not at the next tick */
  static const char retry[] = "retry: 1000\n\n";
  if (cynic__httpd_stream_write(st, retry, sizeof retry - 1) != 0)
    return; /* gone already: on_stream_closed freed the slot */
  stream_want(a, STREAM_EV_WELCOME);
}

/* ---- routing ---------------------------------------------------------------------- */

static bool split(req_t *r) {
  const char *url = r->http->url.data ? r->http->url.data : "";
  size_t pathlen = strcspn(url, "?#");
  r->nsegs = 0;
  if (pathlen == 0 || url[0] != '/')
    return false;
  const char *s = url + 1, *end = url + pathlen;
  while (s < end) {
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *stop = slash ? slash : end;
    if (r->nsegs == MAX_SEGS || stop == s ||
        cynic__http_pct_decode(s, (size_t)(stop - s), r->segs[r->nsegs], SEG_MAX) != 0)
      return false;
    r->nsegs++;
    if (slash == NULL)
      break;
    s = slash + 1;
  }
  return true;
}

static bool seg_is(const req_t *r, size_t n, const char *s0) {
  return r->nsegs == n && strcmp(r->segs[0], s0) == 0;
}

static void handle(void *arg, const cynic__http_parser_t *http, cynic__httpd_response_t *resp) {
  cynic__admin_t *a = arg;
  req_t *r = calloc(1, sizeof *r); /* ~1.2 KB of path segments: off the stack */
  if (r == NULL) {
    resp->status = 503;
    cynic__buf_puts(&resp->body, "{\"error\":\"out of memory\",\"status\":503}\n");
    return;
  }
  r->a = a;
  r->p = a->proxy;
  r->http = http;
  r->resp = resp;
  r->method = cynic__http_method(http);
  if (!split(r)) {
    reply_error(r, 404, "not found");
  } else if (r->nsegs == 0) {
    /* the page holds no data; its API calls carry the token */
    if (!is(r, "GET")) {
      not_allowed(r, "GET");
    } else {
      resp->status = 200;
      resp->content_type = "text/html; charset=utf-8";
      resp->headers = "Cache-Control: no-store\r\n";
      cynic__buf_append(&resp->body, cynic__status_page, cynic__status_page_len);
    }
  } else if (r->nsegs == 2 && strcmp(r->segs[0], "status") == 0 &&
             strcmp(r->segs[1], "stream") == 0) {
    if (!stream_authorised(r))
      ; /* answered 401 */
    else if (!is(r, "GET"))
      not_allowed(r, "GET");
    else
      get_stream(r);
  } else if (!authorised(r)) {
    /* answered 401 */
  } else if (seg_is(r, 1, "status")) {
    is(r, "GET") ? get_status(r) : not_allowed(r, "GET");
  } else if (r->nsegs == 2 && strcmp(r->segs[0], "status") == 0 &&
             strcmp(r->segs[1], "history") == 0) {
    is(r, "GET") ? get_history(r) : not_allowed(r, "GET");
  } else if (r->nsegs >= 1 && strcmp(r->segs[0], "breakers") == 0) {
    breakers(r);
  } else if (seg_is(r, 1, "health")) {
    if (!is(r, "GET"))
      not_allowed(r, "GET");
    else
      reply_json(r, 200,
                 json_pack("{s:s, s:f}", "status", "alive", "uptime_s",
                           (double)(cynic__unix_ms() - r->p->started_unix_ms) / 1000.0));
  } else if (seg_is(r, 1, "ready")) {
    const char *why;
    if (!is(r, "GET"))
      not_allowed(r, "GET");
    else {
      bool ok = cynic__admin_ready(r->p, &why);
      reply_json(r, ok ? 200 : 503, json_pack("{s:b, s:s}", "ready", ok, "reason", why));
    }
  } else if (seg_is(r, 1, "reload")) {
    is(r, "POST") ? post_reload(r) : not_allowed(r, "POST");
  } else if (seg_is(r, 1, "drain")) {
    is(r, "POST") ? post_drain(r) : not_allowed(r, "POST");
  } else if (seg_is(r, 1, "metrics")) {
    if (!is(r, "GET")) {
      not_allowed(r, "GET");
    } else {
      reply_listing(r, LIST_METRICS); /* a failure: 503/500, or a cut connection */
    }
  } else {
    reply_error(r, 404, "not found");
  }
  free(r);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void on_sample(uv_timer_t *t) {
  cynic__admin_t *a = t->data;
  cynic__reload_sweep(a->proxy);
  cynic__metrics_sample(a->proxy);
  streams_tick(a);
  cynic__accesslog_rotate(a->proxy->cfg->log.rotate_max_bytes, a->proxy->cfg->log.rotate_keep);
}

/* The admin listener's server limits: a local control API. */
static void admin_httpd_config(cynic__httpd_config_t *hc) {
  cynic__httpd_config_default(hc);
  hc->max_conns = 64;
  hc->limits.max_body = 64u << 10;
  /* Whole answers are small (one upstream at most; the large ones are
   * produced in slices): with 64 connections, at most 64 x (1 MiB + a
   * slice + one 64 KiB read + the request limits) of admin memory. */
  hc->max_response = 1u << 20;
}

static void free_closed(cynic__httpd_t *s) {
  free(s);
}

/* A moment after a reload moved the admin address, so the client that asked
 * reads its answer (libuv writes it at once when the socket has room; the
 * grace covers the client's read before its connection closes). */
#define ADMIN_RETIRE_GRACE_MS 250u

static void on_retire(uv_timer_t *t) {
  cynic__admin_t *a = t->data;
  if (a->retiring != NULL)
    cynic__httpd_close(a->retiring, free_closed);
  a->retiring = NULL;
}

int cynic__admin_listen_new(cynic__proxy_t *p, const cynic__config_t *n, cynic__httpd_t **out,
                            char *why, size_t len) {
  const cynic__config_admin_t *ac = &n->admin;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  *out = NULL;
  if (!cynic__addr_numeric(ac->listen.host, ac->listen.port, false, &ss)) {
    snprintf(why, len, "admin.listen: not a numeric address: %s", ac->listen.text);
    return CYNIC_EINVAL;
  }
  cynic__httpd_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(why, len, "admin.listen: out of memory");
    return CYNIC_ENOMEM;
  }
  cynic__httpd_config_t hc;
  admin_httpd_config(&hc);
  int rc = cynic__httpd_start(s, p->loop, &hc, (struct sockaddr *)&ss, handle, p->admin);
  if (rc != 0) {
    snprintf(why, len, "admin.listen: cannot listen on %s: %s", ac->listen.text, uv_strerror(rc));
    if (s->listening)
      cynic__httpd_close(s, free_closed); /* frees it once libuv lets go */
    else
      free(s); /* no handle was made: nothing to close */
    return rc;
  }
  *out = s;
  return 0;
}

void cynic__admin_listen_undo(cynic__httpd_t *s) {
  if (s != NULL)
    cynic__httpd_close(s, free_closed);
}

void cynic__admin_listen_swap(cynic__proxy_t *p, cynic__httpd_t *s) {
  cynic__admin_t *a = p->admin;
  char before[sizeof a->address];
  memcpy(before, a->address, sizeof before);
  if (a->retiring != NULL) /* a second move within the grace: the first goes now */
    cynic__httpd_close(a->retiring, free_closed);
  a->retiring = a->httpd;
  a->httpd = s;
  struct sockaddr_storage ss;
  if (cynic__httpd_address(s, &ss) == 0)
    cynic__addr_format((struct sockaddr *)&ss, a->address, sizeof a->address);
  uv_timer_start(&a->retire_timer, on_retire, ADMIN_RETIRE_GRACE_MS, 0);
  cynic__log_event(CYNIC_LOG_INFO, "admin_moved", "admin listening",
                   json_pack("{s:s, s:s, s:s, s:b}", "listener", "admin", "address", a->address,
                             "previous", before, "token", a->token != NULL));
}

int cynic__admin_start(cynic__proxy_t *p) {
  const cynic__config_admin_t *ac = &p->cfg->admin;
  cynic__admin_t *a = calloc(1, sizeof *a);
  if (a == NULL)
    return CYNIC_ENOMEM;
  a->proxy = p;
  p->admin = a;
  uv_timer_init(p->loop, &a->sample_timer);
  uv_timer_init(p->loop, &a->action_timer);
  uv_timer_init(p->loop, &a->retire_timer);
  uv_idle_init(p->loop, &a->stream_work);
  uv_unref((uv_handle_t *)&a->stream_work);
  a->sample_timer.data = a->action_timer.data = a->retire_timer.data = a->stream_work.data = a;
  uv_signal_init(p->loop, &a->sighup);
  a->sighup.data = a;
  uv_signal_start(&a->sighup, on_sighup, SIGHUP);
  uv_unref((uv_handle_t *)&a->sighup);
  cynic_ratetable_config_t rc_cfg;
  cynic_ratetable_config_default(&rc_cfg);
  rc_cfg.rate_per_sec = CYNIC__ADMIN_AUTH_RATE;
  rc_cfg.burst = CYNIC__ADMIN_AUTH_BURST;
  rc_cfg.capacity = CYNIC__ADMIN_AUTH_CLIENTS;
  if (cynic_ratetable_new(&rc_cfg, &a->auth_failures) != 0)
    return CYNIC_ENOMEM;
  if (ac->token_file != NULL) {
    char why[256];
    int rc = cynic__token_read(ac->token_file, &a->token, &a->token_len, why, sizeof why);
    if (rc != 0) {
      cynic__log_event(CYNIC_LOG_ERROR, "start_failed", "cannot read admin.token_file",
                       json_pack("{s:s, s:s}", "file", ac->token_file, "error", why));
      return rc;
    }
  }
  int lrc = cynic__accesslog_open(p->cfg, NULL, 0);
  if (lrc != 0)
    return lrc; /* accesslog.c said which file and why */
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (!cynic__addr_numeric(ac->listen.host, ac->listen.port, false, &ss)) {
    cynic__log_event(CYNIC_LOG_ERROR, "start_failed", "bad admin address",
                     json_pack("{s:s}", "address", ac->listen.text));
    return CYNIC_EINVAL;
  }
  cynic__httpd_config_t hc;
  admin_httpd_config(&hc);
  if ((a->httpd = calloc(1, sizeof *a->httpd)) == NULL)
    return CYNIC_ENOMEM;
  a->httpd_started = true;
  int rc = cynic__httpd_start(a->httpd, p->loop, &hc, (struct sockaddr *)&ss, handle, a);
  if (rc != 0) {
    cynic__log_event(CYNIC_LOG_ERROR, "listen_failed", "cannot listen",
                     json_pack("{s:s, s:s, s:s}", "listener", "admin", "address", ac->listen.text,
                               "error", uv_strerror(rc)));
    return rc;
  }
  cynic__httpd_address(a->httpd, &ss);
  cynic__addr_format((struct sockaddr *)&ss, a->address, sizeof a->address);
  uv_timer_start(&a->sample_timer, on_sample, 1000, 1000);
  uv_unref((uv_handle_t *)&a->sample_timer);
  cynic__log_event(CYNIC_LOG_INFO, "listening", "admin listening",
                   json_pack("{s:s, s:s, s:b}", "listener", "admin", "address", a->address, "token",
                             a->token != NULL));
  return 0;
}

void cynic__admin_stop(cynic__proxy_t *p) {
  cynic__admin_t *a = p->admin;
  if (a == NULL || a->stopping)
    return;
  a->stopping = true;
  uv_close((uv_handle_t *)&a->sample_timer, NULL);
  uv_close((uv_handle_t *)&a->action_timer, NULL);
  uv_close((uv_handle_t *)&a->retire_timer, NULL);
  uv_close((uv_handle_t *)&a->stream_work, NULL);
  stream_build_free(a->build);
  a->build = NULL;
  uv_close((uv_handle_t *)&a->sighup, NULL);
  if (a->retiring != NULL)
    cynic__httpd_close(a->retiring, free_closed);
  a->retiring = NULL;
  if (a->httpd_started)
    cynic__httpd_close(a->httpd, NULL);
}

void cynic__admin_free(cynic__proxy_t *p) {
  cynic__admin_t *a = p->admin;
  cynic__accesslog_close();
  if (a == NULL)
    return;
  if (a->token != NULL) {
    memset(a->token, 0, a->token_len);
    free(a->token);
  }
  cynic_ratetable_free(a->auth_failures);
  free(a->httpd);
  free(a);
  p->admin = NULL;
}
