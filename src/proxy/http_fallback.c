/*
 * src/proxy/http_fallback.c: fallback answers and the stale cache's capture
 * (contract in http_fallback.h; the cache itself is stale_cache.c).
 *
 * Nygard's fallback: a degraded answer beats an error when the integration
 * point cannot answer. Which answer, in `fallback.order`:
 *
 *   stale      the last good response to the same GET (or HEAD) URL and
 *              Vary values, as stored, with `Age` (stale-if-error, RFC 5861);
 *   secondary  another upstream (its own breakers, bulkhead and timeouts,
 *              within the request's deadline): the request goes there
 *              (cynic__hu_secondary) and its answer, marked, is the client's;
 *   static     the configured status, headers, content type and body.
 *
 * The first kind that can answer does; none can, and cynic's own answer goes
 * out unchanged. The answer carries `Cynic-Fallback: <kind>` and
 * `Cynic-Answer: <the reason of the answer it replaced>`, so an operator can
 * tell it from the upstream's (and a client that cares can too).
 */
#include "http_fallback.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "http.h"
#include "http_conn.h"
#include "stale_cache.h"

/* Bodies at most this big go out in one write with their head (rendered
 * together in the scratch buffer); larger ones follow in a second. */
#define ONE_WRITE_BODY 65536u

static const char *const kind_names[CYNIC__FALLBACK_KINDS] = {
    [CYNIC__FALLBACK_STALE] = "stale",
    [CYNIC__FALLBACK_SECONDARY] = "secondary",
    [CYNIC__FALLBACK_STATIC] = "static",
};

const char *cynic__fallback_kind_name(int kind) {
  return kind >= 0 && kind < CYNIC__FALLBACK_KINDS ? kind_names[kind] : "?";
}

static void limits_of(const cynic__config_http_t *h, cynic__stale_limits_t *lim) {
  lim->max_entries = h->stale_max_entries;
  lim->max_bytes = h->stale_max_bytes;
  lim->max_entry_bytes = h->stale_max_entry_bytes;
  lim->max_age_ms = cynic__config_ms(h->stale_max_age_ns);
}

/* The request as the stale cache sees it (fields: room for
 * CYNIC__HTTP_MSG_MAX_FIELDS; no Host, as HTTP/1.0 may send, is the empty
 * one). False before its head is whole. */
static bool stale_req(const cynic__http_conn_t *c, cynic__http_hfield_t *fields,
                      cynic__stale_req_t *r) {
  const cynic__http_msg_t *m = &c->x->req;
  if (c->x->req_store == NULL || !c->x->head_seen)
    return false;
  memset(r, 0, sizeof *r);
  r->host = cynic__http_msg_find(m, "host", &r->host_len);
  if (r->host == NULL)
    r->host = "", r->host_len = 0;
  r->target = cynic__http_msg_at(m, m->target);
  r->target_len = m->target.len;
  r->nfields = cynic__hs_fields(m, fields);
  r->fields = fields;
  return true;
}

/* The stale cache's entry for the GET or HEAD request in c->x that may be
 * served at `now`: looked up (a hit or a miss counted, a hit made the most
 * recent), or with `peek` only looked at. NULL: none, or no cache. */
static const cynic__stale_entry_t *stale_entry(cynic__http_conn_t *c, bool peek, uint64_t now) {
  cynic__upstream_t *u = c->base.upstream;
  const cynic__http_msg_t *m = &c->x->req;
  if (u->stale == NULL || (m->method != HTTP_GET && m->method != HTTP_HEAD))
    return NULL;
  cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS];
  cynic__stale_req_t r;
  if (!stale_req(c, fields, &r))
    return NULL;
  cynic__stale_limits_t lim;
  limits_of(&u->cfg->http, &lim);
  return peek ? cynic__stale_peek(u->stale, &r, &lim, now)
              : cynic__stale_lookup(u->stale, &r, &lim, now);
}

/* ---- writing the answer ---------------------------------------------------------- */

static bool put(cynic__http_out_t *o, const char *s, size_t n) {
  if (n > o->cap - o->len)
    return false;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  return true;
}

static bool puts_(cynic__http_out_t *o, const char *s) {
  return put(o, s, strlen(s));
}

static bool put_u64(cynic__http_out_t *o, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%llu", (unsigned long long)v);
  return put(o, b, (size_t)n);
}

/* Header lines ("Name: value\r\n" each), without the one named `skip`. */
static bool put_lines(cynic__http_out_t *o, const char *lines, size_t len, const char *skip) {
  size_t slen = skip != NULL ? strlen(skip) : 0;
  for (const char *p = lines, *end = lines + len; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *next = eol != NULL ? eol + 1 : end;
    bool skipped =
        slen > 0 && (size_t)(next - p) > slen && p[slen] == ':' && strncasecmp(p, skip, slen) == 0;
    if (!skipped && !put(o, p, (size_t)(next - p)))
      return false;
    p = next;
  }
  return true;
}

/* What every fallback answer ends its head with: the markers, the request
 * id, the connection's fate; then the blank line. */
static bool put_tail(cynic__http_out_t *o, const cynic__http_conn_t *c, const char *kind,
                     const char *reason, bool close) {
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  bool ok = puts_(o, "Cynic-Fallback: ") && puts_(o, kind) && puts_(o, "\r\nCynic-Answer: ") &&
            puts_(o, reason) && put(o, "\r\n", 2);
  if (ok && c->x->rid[0] != '\0')
    ok = puts_(o, lc->request_id_header) && put(o, ": ", 2) && puts_(o, c->x->rid) &&
         put(o, "\r\n", 2);
  if (close)
    ok = ok && puts_(o, "Connection: close\r\n");
  else if (c->x->req.version_minor == 0)
    ok = ok && puts_(o, "Connection: keep-alive\r\n");
  return ok && put(o, "\r\n", 2);
}

/* Sends the rendered head (in the scratch buffer) and the body, then does
 * what cynic__hs_answer does after its write. */
static void send_answer(cynic__http_conn_t *c, cynic__http_out_t *o, const char *body, size_t blen,
                        bool close) {
  if (close)
    c->close_after = true;
  c->state = HS_FINISHING;
  c->idle_since_ms = cynic__hs_now_ms(c);
  c->stall_bytes = c->relay.down.bytes;
  bool queued = false, body_queued = false;
  bool together = blen <= o->cap - o->len;
  if (together) {
    put(o, body, blen);
    blen = 0;
  }
  if (cynic__hs_send(c, o->p, o->len, true, close && blen == 0, &queued) != 0 ||
      (blen > 0 && cynic__hs_send(c, body, blen, true, close, &body_queued) != 0)) {
    cynic__hs_close(c, true, "client_write_error");
    return;
  }
  cynic__hs_answer_sent(c, close, queued || body_queued);
}

/* The static answer. */
static bool answer_static(cynic__http_conn_t *c, const char *reason, bool close) {
  const cynic__config_http_t *h = &c->base.upstream->cfg->http;
  bool head_only = c->x->req.head_request;
  size_t hlen = h->fallback_headers != NULL ? strlen(h->fallback_headers) : 0;
  size_t blen = h->fallback_body_len;
  size_t cap = 512 + hlen + strlen(h->fallback_content_type) + RID_MAX +
               strlen(c->base.listener->cfg->request_id_header) + (head_only ? 0 : blen);
  cynic__http_out_t o = cynic__hs_scratch(cap);
  if (o.p == NULL)
    return false;
  int st = h->fallback_status;
  char line[24];
  snprintf(line, sizeof line, "HTTP/1.1 %03d ", st);
  bool ok = puts_(&o, line) && puts_(&o, cynic__http_reason(st)) && put(&o, "\r\n", 2) &&
            puts_(&o, "Content-Type: ") && puts_(&o, h->fallback_content_type) &&
            puts_(&o, "\r\nContent-Length: ") && put_u64(&o, blen) && put(&o, "\r\n", 2) &&
            (hlen == 0 || put(&o, h->fallback_headers, hlen)) &&
            put_tail(&o, c, "static", reason, close);
  if (!ok)
    return false;
  c->x->status = st;
  send_answer(c, &o, h->fallback_body != NULL ? h->fallback_body : "", head_only ? 0 : blen, close);
  return true;
}

/* The stale answer: the stored response for the same URL, when there is one. */
static bool answer_stale(cynic__http_conn_t *c, const char *reason, bool close) {
  const cynic__http_msg_t *m = &c->x->req;
  uint64_t now = cynic__hs_now_ms(c);
  const cynic__stale_entry_t *e = stale_entry(c, false, now);
  if (e == NULL)
    return false;
  size_t reason_len, head_len, blen;
  const char *why = cynic__stale_reason(e, &reason_len);
  const char *head = cynic__stale_head(e, &head_len);
  const char *body = cynic__stale_body(e, &blen);
  int st = cynic__stale_status(e);
  const char *rid_header = c->base.listener->cfg->request_id_header;
  size_t cap = 512 + reason_len + head_len + RID_MAX + strlen(rid_header) +
               (m->head_request || blen > ONE_WRITE_BODY ? 0 : blen);
  cynic__http_out_t o = cynic__hs_scratch(cap);
  if (o.p == NULL)
    return false;
  char line[24];
  snprintf(line, sizeof line, "HTTP/1.1 %03d ", st);
  bool ok = puts_(&o, line) && put(&o, why, reason_len) && put(&o, "\r\n", 2) &&
            put_lines(&o, head, head_len, rid_header);
  if (st != 204) /* RFC 9110 8.6: never with a 204 */
    ok = ok && puts_(&o, "Content-Length: ") && put_u64(&o, blen) && put(&o, "\r\n", 2);
  ok = ok && puts_(&o, "Age: ") && put_u64(&o, cynic__stale_age_s(e, now)) &&
       puts_(&o, "\r\nVia: 1.1 cynic\r\n") && put_tail(&o, c, "stale", reason, close);
  if (!ok)
    return false;
  c->x->status = st;
  send_answer(c, &o, body, m->head_request || st == 204 ? 0 : blen, close);
  return true;
}

bool cynic__hs_fallback(cynic__http_conn_t *c, const char *reason) {
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_http_t *h = &u->cfg->http;
  if (!h->has_fallback || c->x == NULL || !c->x->head_seen || c->x->hx.response_started ||
      c->res_head_out > 0)
    return false;
  bool close = !c->x->req_done || c->close_after || c->client_eof ||
               c->base.listener->proxy->draining || !c->x->req.keep_alive;
  for (size_t i = 0; i < h->fallback_kinds; i++) {
    int kind = h->fallback_order[i];
    if (kind == CYNIC__FALLBACK_SECONDARY) {
      /* the request goes to another upstream; its answer is that one's */
      if (!cynic__hu_secondary(c, cynic__upstream_named(c->base.listener->proxy,
                                                        h->fallback_secondary)))
        continue;
      c->x->fallback = kind_names[kind];
      u->fallbacks[kind]++;
      return true;
    }
    bool answered = kind == CYNIC__FALLBACK_STALE    ? answer_stale(c, reason, close)
                    : kind == CYNIC__FALLBACK_STATIC ? answer_static(c, reason, close)
                                                     : false;
    if (answered) {
      c->x->answer = reason;
      c->x->fallback = kind_names[kind];
      u->fallbacks[kind]++;
      return true;
    }
  }
  return false;
}

/* The kind that would answer now (-1: none) and the status it would give;
 * changes nothing. */
static int pick(cynic__http_conn_t *c, int *status) {
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_http_t *h = &u->cfg->http;
  if (!h->has_fallback || c->x == NULL || !c->x->head_seen)
    return -1;
  for (size_t i = 0; i < h->fallback_kinds; i++) {
    int kind = h->fallback_order[i];
    if (kind == CYNIC__FALLBACK_STATIC) {
      *status = h->fallback_status;
      return kind;
    }
    const cynic__stale_entry_t *e;
    if (kind == CYNIC__FALLBACK_STALE && (e = stale_entry(c, true, cynic__hs_now_ms(c))) != NULL) {
      *status = cynic__stale_status(e);
      return kind;
    }
  }
  return -1;
}

bool cynic__hs_fallback_ready(cynic__http_conn_t *c) {
  int status;
  return pick(c, &status) >= 0;
}

void cynic__hs_answer_note(cynic__http_conn_t *c, int status, const char *reason) {
  int fb_status;
  int kind = pick(c, &fb_status);
  c->x->answer = reason;
  c->x->status = kind >= 0 ? fb_status : status;
  c->x->fallback = kind >= 0 ? kind_names[kind] : NULL;
}

/* ---- capturing responses for the stale cache ------------------------------------------- */

/* The response parser's body callback: decoded body bytes (no chunk framing). */
static int capture_body(cynic__http_msg_t *m, const char *at, size_t n) {
  cynic__http_conn_t *c = m->data;
  if (c->x == NULL || c->x->capture == NULL)
    return 0;
  cynic__stale_limits_t lim;
  limits_of(&c->base.upstream->cfg->http, &lim);
  if (!cynic__stale_capture_body(c->base.upstream->stale, c->x->capture, at, n, &lim)) {
    c->x->capture = NULL; /* too big: dropped (freed) already */
    m->on_body = NULL;
  }
  return 0;
}

void cynic__hs_capture_begin(cynic__http_conn_t *c) {
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_http_t *h = &u->cfg->http;
  if (!h->fallback_stale) {
    if (u->stale != NULL) { /* a reload turned it off: freed once no capture holds it */
      cynic__stale_stats_t s;
      cynic__stale_stats(u->stale, &s);
      if (s.pending_bytes == 0) {
        cynic__stale_free(u->stale);
        u->stale = NULL;
      }
    }
    return;
  }
  const cynic__http_msg_t *q = &c->x->req;
  cynic__http_msg_t *m = &c->x->res;
  if (q->method != HTTP_GET || c->x->capture != NULL)
    return;
  if (u->stale == NULL && (u->stale = cynic__stale_new()) == NULL)
    return;
  cynic__http_hfield_t qf[CYNIC__HTTP_MSG_MAX_FIELDS], rf[CYNIC__HTTP_MSG_MAX_FIELDS];
  cynic__stale_req_t r;
  if (!stale_req(c, qf, &r))
    return;
  cynic__stale_res_t res = {
      .status = m->status,
      .reason = cynic__http_msg_at(m, m->reason),
      .reason_len = m->reason.len,
      .fields = rf,
      .nfields = cynic__hs_fields(m, rf),
      .content_length = m->body == CYNIC__HTTP_BODY_LENGTH ? (int64_t)m->content_length
                        : m->body == CYNIC__HTTP_BODY_NONE ? 0
                                                           : -1,
  };
  cynic__stale_limits_t lim;
  limits_of(h, &lim);
  c->x->capture = cynic__stale_capture(u->stale, &r, &res, &lim, cynic__hs_now_ms(c));
  if (c->x->capture != NULL && m->body != CYNIC__HTTP_BODY_NONE) {
    m->on_body = capture_body;
    m->data = c;
  }
}

void cynic__hs_capture_end(cynic__http_conn_t *c, bool success) {
  cynic__upstream_t *u = c->base.upstream;
  cynic__stale_entry_t *e = c->x->capture;
  if (e == NULL)
    return;
  c->x->capture = NULL;
  c->x->res.on_body = NULL;
  if (!success || !u->cfg->http.fallback_stale) {
    cynic__stale_drop(u->stale, e);
    return;
  }
  cynic__stale_limits_t lim;
  limits_of(&u->cfg->http, &lim);
  cynic__stale_commit(u->stale, e, &lim, cynic__hs_now_ms(c));
}

void cynic__hs_capture_drop(cynic__http_conn_t *c, cynic__http_xchg_t *x) {
  if (x->capture == NULL)
    return;
  cynic__stale_drop(c->base.upstream->stale, x->capture);
  x->capture = NULL;
}
