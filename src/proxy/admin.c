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
 *   GET  /health  GET /ready  POST /drain  POST /reload (reload.c; SIGHUP: daemon.c)
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "addr.h"
#include "admin.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "reload.h"
#include "token.h"

typedef cynic__admin_req_t req_t;

/* ---- replies ---------------------------------------------------------------- */

/* The admin's JSON answers all end with a newline (httpd.h's helpers). */
void cynic__admin_reply_json(req_t *r, int status, json_t *body) {
  cynic__httpd_reply_json(r->resp, status, body, true);
}

void cynic__admin_reply_error(req_t *r, int status, const char *msg) {
  cynic__httpd_reply_error(r->resp, status, msg);
}

void cynic__admin_not_allowed(req_t *r, const char *allow) {
  /* static header lines: the response outlives this frame */
  r->resp->headers = strcmp(allow, "GET") == 0    ? "Allow: GET\r\n"
                     : strcmp(allow, "POST") == 0 ? "Allow: POST\r\n"
                                                  : "Allow: GET, POST\r\n";
  char msg[96];
  snprintf(msg, sizeof msg, "method %s not allowed here; use %s", r->method, allow);
  cynic__admin_reply_error(r, 405, msg);
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
  uint64_t ms = cynic__config_ms(r->p->cfg->admin.drain_timeout_ns);
  cynic__admin_reply_json(r, 202,
                          json_pack("{s:b, s:I, s:f}", "draining", 1, "connections",
                                    (json_int_t)r->p->conn_count, "drain_timeout_s",
                                    (double)ms / 1000.0));
}

static void post_reload(req_t *r) {
  char peer[CYNIC_ADDR_STR_MAX + 16] = "POST /reload from ";
  size_t n = strlen(peer);
  cynic__httpd_peer(r->http, peer + n, sizeof peer - n);
  int status = 500;
  json_t *body = cynic__reload(r->p, peer, &status);
  cynic__admin_reply_json(r, status, body);
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
    if (r->nsegs == CYNIC__ADMIN_MAX_SEGS || stop == s ||
        cynic__http_pct_decode(s, (size_t)(stop - s), r->segs[r->nsegs], CYNIC__ADMIN_SEG_MAX) != 0)
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
    cynic__admin_reply_error(r, 404, "not found");
  } else if (r->nsegs == 0) {
    /* the page holds no data; its API calls carry the token */
    if (!cynic__admin_is(r, "GET")) {
      cynic__admin_not_allowed(r, "GET");
    } else {
      resp->status = 200;
      resp->content_type = "text/html; charset=utf-8";
      resp->headers = "Cache-Control: no-store\r\n";
      cynic__buf_append(&resp->body, cynic__status_page, cynic__status_page_len);
    }
  } else if (r->nsegs == 2 && strcmp(r->segs[0], "status") == 0 &&
             strcmp(r->segs[1], "stream") == 0) {
    if (!cynic__admin_stream_authorised(r))
      ; /* answered 401 */
    else if (!cynic__admin_is(r, "GET"))
      cynic__admin_not_allowed(r, "GET");
    else
      cynic__admin_get_stream(r);
  } else if (!cynic__admin_authorised(r)) {
    /* answered 401 */
  } else if (seg_is(r, 1, "status")) {
    cynic__admin_is(r, "GET") ? cynic__admin_get_status(r) : cynic__admin_not_allowed(r, "GET");
  } else if (r->nsegs == 2 && strcmp(r->segs[0], "status") == 0 &&
             strcmp(r->segs[1], "history") == 0) {
    cynic__admin_is(r, "GET") ? cynic__admin_get_history(r) : cynic__admin_not_allowed(r, "GET");
  } else if (r->nsegs >= 1 && strcmp(r->segs[0], "breakers") == 0) {
    cynic__admin_breakers(r);
  } else if (seg_is(r, 1, "health")) {
    if (!cynic__admin_is(r, "GET"))
      cynic__admin_not_allowed(r, "GET");
    else
      cynic__admin_reply_json(
          r, 200,
          json_pack("{s:s, s:f}", "status", "alive", "uptime_s",
                    (double)(cynic__proxy_unix_ms(r->p) - r->p->started_unix_ms) / 1000.0));
  } else if (seg_is(r, 1, "ready")) {
    const char *why;
    if (!cynic__admin_is(r, "GET"))
      cynic__admin_not_allowed(r, "GET");
    else {
      bool ok = cynic__admin_ready(r->p, &why);
      cynic__admin_reply_json(r, ok ? 200 : 503,
                              json_pack("{s:b, s:s}", "ready", ok, "reason", why));
    }
  } else if (seg_is(r, 1, "reload")) {
    cynic__admin_is(r, "POST") ? post_reload(r) : cynic__admin_not_allowed(r, "POST");
  } else if (seg_is(r, 1, "drain")) {
    cynic__admin_is(r, "POST") ? post_drain(r) : cynic__admin_not_allowed(r, "POST");
  } else if (seg_is(r, 1, "metrics")) {
    if (!cynic__admin_is(r, "GET")) {
      cynic__admin_not_allowed(r, "GET");
    } else {
      cynic__admin_reply_listing(r, LIST_METRICS); /* a failure: 503/500, or a cut connection */
    }
  } else {
    cynic__admin_reply_error(r, 404, "not found");
  }
  free(r);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

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
    snprintf(why, len, "admin.listen: cannot listen on %s: %s", ac->listen.text,
             cynic__strerror(rc));
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

/* cynic__admin_start, or with `local` its socket-free form. */
static int admin_start(cynic__proxy_t *p, bool local) {
  const cynic__config_admin_t *ac = &p->cfg->admin;
  cynic__admin_t *a = calloc(1, sizeof *a);
  if (a == NULL)
    return CYNIC_ENOMEM;
  a->proxy = p;
  p->admin = a;
  uv_timer_init(p->loop, &a->action_timer);
  uv_timer_init(p->loop, &a->retire_timer);
  cynic__admin_streams_init(a);
  a->action_timer.data = a->retire_timer.data = a;
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
  int rc =
      cynic__httpd_start(a->httpd, p->loop, &hc, local ? NULL : (struct sockaddr *)&ss, handle, a);
  if (local)
    return rc; /* no address: a->address stays "" */
  if (rc != 0) {
    cynic__log_event(CYNIC_LOG_ERROR, "listen_failed", "cannot listen",
                     json_pack("{s:s, s:s, s:s}", "listener", "admin", "address", ac->listen.text,
                               "error", cynic__strerror(rc)));
    return rc;
  }
  cynic__httpd_address(a->httpd, &ss);
  cynic__addr_format((struct sockaddr *)&ss, a->address, sizeof a->address);
  cynic__log_event(CYNIC_LOG_INFO, "listening", "admin listening",
                   json_pack("{s:s, s:s, s:b}", "listener", "admin", "address", a->address, "token",
                             a->token != NULL));
  return 0;
}

int cynic__admin_start(cynic__proxy_t *p) {
  return admin_start(p, false);
}

int cynic__admin_start_local(cynic__proxy_t *p) {
  return admin_start(p, true);
}

void cynic__admin_stop(cynic__proxy_t *p) {
  cynic__admin_t *a = p->admin;
  if (a == NULL || a->stopping)
    return;
  a->stopping = true;
  uv_close((uv_handle_t *)&a->action_timer, NULL);
  uv_close((uv_handle_t *)&a->retire_timer, NULL);
  cynic__admin_streams_close(a);
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
  cynic__token_free(a->token, a->token_len);
  cynic_ratetable_free(a->auth_failures);
  free(a->httpd);
  free(a);
  p->admin = NULL;
}
