/*
 * src/proxy/http_session.c: HTTP/1.1 mode's client side: one client
 * connection and its requests, one at a time (docs/design-http.md). The
 * exchange of each with the upstream is http_upstream.c's; the object they
 * share is http_conn.h's.
 *
 *   accept -> IDLE (listener idle timeout: close silently)
 *          -> HEAD: request head parsed strictly (header timeout: 408)
 *             refused: 400 / 413 / 414 / 431 / 501 and close
 *          -> fail fast (every breaker open: 503 breaker_open, Retry-After)
 *          -> bulkhead: slot / QUEUED (queue_timeout: 503) / full: 503
 *          -> attempt: endpoint + breaker permit; pooled connection or
 *             CONNECTING (connect timeout: 504)
 *          -> EXCHANGE: rewritten request head, body streamed raw; response
 *             head parsed and judged (http_exchange.c), rewritten, body
 *             streamed raw (first-byte, idle, request timeouts: 504 or reset)
 *          -> FINISHING: the response's tail goes out; then IDLE again (the
 *             next pipelined request is already in the ring) or close
 *
 * Bytes move through relay.c in hold mode both ways, so back pressure and the
 * listener's buffer pool are TCP mode's: the client ring holds what the
 * client sent until this file has parsed it; head bytes are skipped (the
 * rewritten head goes out with its own write, before the body is released)
 * and body bytes are released to be forwarded raw. Between exchanges the
 * upstream is detached from the relay and given to its endpoint's idle pool
 * (pool.c) or closed.
 *
 * One request at a time per connection: a pipelined request waits, held in
 * the client ring (reading stops when that is full), until the response
 * before it has been written out, so responses are never interleaved.
 *
 * Circuit breaker, per request: a fault when the exchange fails in the
 * endpoint's way (connect, timeouts, reset, bad framing, a status outside
 * expect.status, a content type outside expect.content_type, an oversize
 * response); a success when the response ends cleanly; the permit goes back
 * unused when the client leaves or cynic runs short.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "cynic/deadline.h"
#include "http_conn.h"
#include "http_fallback.h"
#include "http_head.h"
#include "http_limits.h"
#include "http_session.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"

static const cynic__session_ops_t session_ops;
static const cynic__relay_ops_t relay_ops;
static void client_data(cynic__http_conn_t *c);
static void on_timer(uv_timer_t *t);

/* ---- head stores ------------------------------------------------------------ */

/* Head stores are large (the field index and room for a whole head: about
 * max_request_head bytes) and every request needs one or two: they are kept
 * for reuse (blocks.h: as many as the recent peak of requests in flight
 * needs) rather than returned to malloc, which would trim and grow the heap
 * at every request. One set per store size (listeners and upstreams with the
 * same limits share), CYNIC__HS_STORE_SIZES of them; a store of yet another
 * size comes from malloc and goes back to it. Loop thread only. */
static cynic__blocks_t store_sets[CYNIC__HS_STORE_SIZES];

static cynic__blocks_t *store_set(size_t cap, bool make) {
  cynic__blocks_t *vacant = NULL;
  for (size_t i = 0; i < CYNIC__HS_STORE_SIZES; i++) {
    cynic__blocks_t *b = &store_sets[i];
    if (b->size == cap)
      return b;
    if (vacant == NULL && b->out == 0 && b->len == 0)
      vacant = b; /* never used, or every store of its size is back and trimmed */
  }
  if (make && vacant != NULL) {
    cynic__blocks_free(vacant);
    cynic__blocks_init(vacant, cap, CYNIC__HS_KEPT_MAX);
    return vacant;
  }
  return NULL;
}

char *cynic__hs_store_take(size_t cap) {
  cynic__blocks_t *b = store_set(cap, true);
  return b != NULL ? cynic__blocks_take(b) : malloc(cap);
}

void cynic__hs_store_put(char **store, size_t cap) {
  if (*store == NULL)
    return;
  cynic__blocks_t *b = store_set(cap, false);
  if (b != NULL)
    cynic__blocks_put(b, *store);
  else
    free(*store);
  *store = NULL;
}

/* Exchanges, reused newest first (one per request in flight; an idle
 * connection holds none). */
static cynic__blocks_t xchgs = {.size = sizeof(cynic__http_xchg_t), .max = CYNIC__HS_KEPT_MAX};

cynic__http_xchg_t *cynic__hs_xchg_take(cynic__http_conn_t *c) {
  cynic__http_xchg_t *x = cynic__blocks_take(&xchgs);
  if (x == NULL)
    return NULL;
  memset(x, 0, sizeof *x);
  x->c = c;
  return x;
}

void cynic__hs_xchg_put(cynic__http_conn_t *c) {
  cynic__http_xchg_t *x = c->x;
  if (x == NULL)
    return;
  cynic__hl_done(c); /* the report did already, unless the request never had one */
  c->x = NULL;
  cynic__hs_capture_drop(c, x);
  cynic__attempt_end(&x->attempt);
  if (x->up != NULL)
    x->up->borrowed--; /* a retired secondary may be reclaimed now */
  free(x->replay);
  if (x->req_store != NULL) {
    cynic__http_msg_next(&x->req);
    cynic__hs_store_put(&x->req_store, x->req_store_cap);
  }
  if (x->res_store != NULL) {
    cynic__http_msg_next(&x->res);
    cynic__hs_store_put(&x->res_store, x->res_store_cap);
  }
  cynic__blocks_put(&xchgs, x);
}

/* Heads are rendered here first (as large as the largest head allowed, kept
 * between requests), then copied into a write of their own size. */
static char *scratch;
static size_t scratch_cap;

cynic__http_out_t cynic__hs_scratch(size_t cap) {
  if (cap > scratch_cap) {
    char *p = realloc(scratch, cap);
    if (p == NULL)
      return (cynic__http_out_t){0};
    scratch = p;
    scratch_cap = cap;
  }
  return (cynic__http_out_t){.p = scratch, .len = 0, .cap = cap};
}

void cynic__http_caches_kept(size_t *exchanges, size_t *stores) {
  *exchanges = xchgs.len;
  *stores = 0;
  for (size_t i = 0; i < CYNIC__HS_STORE_SIZES; i++)
    *stores += store_sets[i].len;
}

void cynic__http_caches_trim(void) {
  cynic__blocks_trim(&xchgs);
  for (size_t i = 0; i < CYNIC__HS_STORE_SIZES; i++)
    cynic__blocks_trim(&store_sets[i]);
}

void cynic__http_free_caches(void) {
  cynic__blocks_free(&xchgs);
  for (size_t i = 0; i < CYNIC__HS_STORE_SIZES; i++)
    cynic__blocks_free(&store_sets[i]);
  free(scratch);
  scratch = NULL;
  scratch_cap = 0;
}

void cynic__hs_res_reset(cynic__http_conn_t *c) {
  cynic__http_msg_next(&c->x->res);
  cynic__hs_store_put(&c->x->res_store, c->x->res_store_cap);
}

size_t cynic__hs_fields(const cynic__http_msg_t *m, cynic__http_hfield_t *fields) {
  size_t n = cynic__http_msg_nfields(m);
  for (size_t i = 0; i < n; i++)
    cynic__http_msg_field(m, i, &fields[i].name, &fields[i].nlen, &fields[i].value,
                          &fields[i].vlen);
  return n;
}

/* ---- the report of one request --------------------------------------------- */

void cynic__hs_report(cynic__http_conn_t *c) {
  cynic__hl_done(c); /* no longer pending (load shedding) */
  if (c->x == NULL || c->x->reported || c->x->start_us == 0)
    return;
  c->x->reported = true;
  if (!c->x->started) {
    c->x->started = true;
    cynic__metrics_conn_started(c->base.upstream);
  }
  const cynic__http_msg_t *m = &c->x->req;
  cynic__conn_report_t r = {
      .listener = c->base.listener,
      .upstream = c->base.upstream,
      .endpoint = c->x->attempt.endpoint,
      .outcome = c->x->has_outcome ? c->x->outcome : CYNIC__OUT_OK,
      .decision = c->x->decision,
      .ip = c->base.ip,
      .accepted_us = c->x->start_us,
      .connect_us = c->x->connect_us,
      .connected_us = c->x->connected_us,
      .first_byte_us = c->x->first_byte_us,
      .end_us = cynic__hs_now_us(),
      .bytes_up = c->relay.up.bytes - c->x->bytes_up,
      .bytes_down = c->relay.down.bytes - c->x->bytes_down,
      .method = c->x->head_seen ? cynic__http_msg_method(m) : NULL,
      .target = c->x->head_seen && c->x->req_store != NULL ? cynic__http_msg_at(m, m->target) : "",
      .target_len = c->x->head_seen && c->x->req_store != NULL ? m->target.len : 0,
      .http = true,
      .status = c->x->status,
      .upstream_status = c->x->upstream_status,
      .answer = c->x->answer,
      .fallback = c->x->fallback,
      .request_id = c->x->rid[0] != '\0' ? c->x->rid : NULL,
      .tried = c->x->order,
      .tried_upstream = cynic__hs_up(c),
      .attempts = c->x->attempts,
  };
  cynic__metrics_conn_done(&r);
}

/* ---- writing heads and answers --------------------------------------------- */

static void on_head_written(uv_write_t *req, int status) {
  cynic__hs_write_t *w = req->data;
  cynic__http_conn_t *c = w->c;
  bool to_client = w->to_client, then_close = w->then_close;
  free(w);
  if (to_client)
    c->res_head_out--;
  else
    c->req_head_out--;
  if (c->state == HS_CLOSING)
    return;
  if (status < 0) {
    if (to_client)
      cynic__hs_close(c, true, "client_write_error");
    else if (c->state == HS_EXCHANGE && !cynic__hu_stale_retry(c))
      cynic__hu_fail(c, CYNIC__HX_UPSTREAM_RESET); /* the upstream went away under the request head */
    return;
  }
  if (then_close) {
    cynic__hs_close(c, false, "answered");
    return;
  }
  if (to_client && c->state == HS_FINISHING && c->res_head_out == 0 &&
      cynic__relay_drained(&c->relay.down))
    cynic__hs_next_request(c);
}

int cynic__hs_send(cynic__http_conn_t *c, const char *p, size_t len, bool to_client,
                   bool then_close, bool *queued) {
  uv_stream_t *s = to_client ? (uv_stream_t *)&c->client.tcp : cynic__upconn_stream(c->uc);
  *queued = false;
  /* Straight to the socket when it takes it all (the common case): no copy,
   * no callback, and no epoll_ctl (a completed uv_write re-registers its
   * stream). uv_try_write refuses while writes are queued, so order holds. */
  uv_buf_t b = uv_buf_init((char *)p, (unsigned int)len);
  int n = cynic__io_try_write(s, &b, 1);
  if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS)
    return n;
  size_t done = n > 0 ? (size_t)n : 0;
  if (done == len)
    return 0;
  cynic__hs_write_t *w = malloc(sizeof *w + (len - done));
  if (w == NULL)
    return UV_ENOMEM;
  memcpy(w->data, p + done, len - done);
  w->c = c;
  w->to_client = to_client;
  w->then_close = then_close;
  w->len = len - done;
  w->req.data = w;
  b = uv_buf_init(w->data, (unsigned int)w->len);
  int rc = cynic__io_write(&w->req, s, &b, 1, on_head_written);
  if (rc != 0) {
    free(w);
    return rc;
  }
  if (to_client)
    c->res_head_out++;
  else
    c->req_head_out++;
  *queued = true;
  return 0;
}

/* cynic answers the request itself: `status`, `reason` (Cynic-Answer and the
 * JSON body). The connection closes after it unless `keep` and the request
 * was read to its end. */
void cynic__hs_answer(cynic__http_conn_t *c, int status, const char *reason, uint64_t retry_after,
                      bool keep) {
  bool close = !keep || !c->x->req_done || c->close_after || c->client_eof ||
               c->base.listener->proxy->draining || !c->x->req.keep_alive;
  c->x->status = status;
  c->x->answer = reason;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  cynic__http_out_t o = cynic__hs_scratch(1024 + RID_MAX);
  cynic__http_answer_t a = {
      .status = status,
      .reason = reason,
      .upstream = c->base.upstream->cfg->name,
      .request_id_header = c->x->rid[0] != '\0' ? lc->request_id_header : NULL,
      .request_id = c->x->rid[0] != '\0' ? c->x->rid : NULL,
      .retry_after_s = retry_after,
      .close = close,
      /* a HEAD request gets no body (the parser knows from the request line
       * on, so even a head refused later is answered right) */
      .head_only = c->x->req.head_request,
  };
  if (o.p == NULL || cynic__http_write_answer(&o, &a) != 0) {
    cynic__hs_close(c, true, "out_of_memory");
    return;
  }
  if (close)
    c->close_after = true;
  c->state = HS_FINISHING;
  c->idle_since_ms = cynic__hs_now_ms(c);
  c->stall_bytes = c->relay.down.bytes;
  bool queued;
  if (cynic__hs_send(c, o.p, o.len, true, close, &queued) != 0) {
    cynic__hs_close(c, true, "client_write_error");
    return;
  }
  cynic__hs_answer_sent(c, close, queued);
}

void cynic__hs_answer_sent(cynic__http_conn_t *c, bool close, bool queued) {
  if (queued) {
    cynic__hs_arm(c);
  } else if (close) {
    cynic__hs_close(c, false, "answered");
  } else {
    /* Written: the next request on the next loop turn, not from here (a
     * client's pipelined requests answered by cynic one after another would
     * otherwise recurse once each). */
    uv_timer_start(&c->timer, on_timer, 0, 0);
  }
}

/* ---- the timer ------------------------------------------------------------- */

static uint64_t listener_idle_ms(const cynic__http_conn_t *c) {
  return cynic__config_ms(c->base.listener->cfg->idle_timeout_ns);
}

void cynic__hs_arm(cynic__http_conn_t *c) {
  uint64_t next = 0;
  switch (c->state) {
  case HS_IDLE:
  case HS_FINISHING: {
    uint64_t idle = listener_idle_ms(c);
    if (idle > 0)
      next = c->idle_since_ms + idle;
    break;
  }
  case HS_HEAD:
    next = c->head_deadline_ms;
    break;
  case HS_QUEUED:
  case HS_CONNECTING:
  case HS_EXCHANGE:
    next = cynic__hx_next_deadline(&c->x->hx);
    break;
  case HS_BACKOFF:
    next = cynic__hx_next_deadline(&c->x->hx);
    if (next == 0 || c->x->backoff_until_ms < next)
      next = c->x->backoff_until_ms;
    break;
  default:
    return;
  }
  /* Lazily: a timer already due sooner stays (when it fires, on_timer checks
   * the state and arms again), so the many deadline moves of a request (most
   * of them later, never sooner than the phase's) cost no heap update each;
   * with nothing to wait for, a running timer is left to fire for nothing. */
  if (next == 0)
    return;
  uint64_t now = cynic__hs_now_ms(c);
  if (uv_is_active((uv_handle_t *)&c->timer) && now + uv_timer_get_due_in(&c->timer) <= next)
    return;
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  cynic__http_conn_t *c = t->data;
  uint64_t now = cynic__hs_now_ms(c);
  switch (c->state) {
  case HS_IDLE:
  case HS_FINISHING: {
    if (c->state == HS_FINISHING && c->res_head_out == 0 && cynic__relay_drained(&c->relay.down)) {
      cynic__hs_next_request(c); /* an answer written at once (cynic__hs_answer) */
      return;
    }
    if (c->state == HS_FINISHING && c->relay.down.bytes != c->stall_bytes) {
      c->stall_bytes = c->relay.down.bytes; /* a slow reader that reads is not idle */
      c->idle_since_ms = now;
    }
    uint64_t idle = listener_idle_ms(c);
    if (idle > 0 && now >= c->idle_since_ms + idle) {
      if (c->state == HS_FINISHING) {
        cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_CLIENT_TIMEOUT, "listener",
                           c->base.listener->cfg->name, NULL, "reading the response");
        cynic__hs_close(c, true, "client_timeout");
      } else {
        cynic__hs_close(c, false, "client_idle_timeout");
      }
      return;
    }
    break;
  }
  case HS_HEAD:
    if (now >= c->head_deadline_ms) {
      cynic__hs_outcome(c, CYNIC__EV_HEADER_TIMEOUT);
      cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_HEADER_TIMEOUT, "listener",
                         c->base.listener->cfg->name, NULL, NULL);
      c->close_after = true;
      cynic__hs_answer(c, 408, "header_timeout", 0, false);
      return;
    }
    break;
  case HS_BACKOFF:
    if (cynic__hx_expired(&c->x->hx, now) != CYNIC__HX_OK) {
      cynic__hu_fail(c, CYNIC__HX_REQUEST_TIMEOUT);
      return;
    }
    if (now >= c->x->backoff_until_ms) {
      cynic__hu_retry_now(c);
      return;
    }
    break;
  case HS_QUEUED:
  case HS_CONNECTING:
  case HS_EXCHANGE: {
    cynic__hx_cause_t cause = cynic__hx_expired(&c->x->hx, now);
    if (cause == CYNIC__HX_CONNECT_TIMEOUT && c->uc != NULL && c->uc->handshaking) {
      cynic__tls_count_timeout(cynic__upconn_stream(c->uc));
      cause = CYNIC__HX_TLS_HANDSHAKE_TIMEOUT;
    }
    if (cause != CYNIC__HX_OK) {
      if (!cynic__hu_client_stall(c, cause, now))
        cynic__hu_fail(c, cause);
      return;
    }
    break;
  }
  default:
    return;
  }
  cynic__hs_arm(c);
}

/* ---- freeing and closing ------------------------------------------------------ */

/* From admission to the exchange's end: queued, connecting, backing off
 * before a retry, or exchanging (a failure there is cynic__hu_fail's). */
static bool exchange_under_way(const cynic__http_conn_t *c) {
  return c->state == HS_QUEUED || c->state == HS_CONNECTING || c->state == HS_BACKOFF ||
         c->state == HS_EXCHANGE;
}

static void conn_free(cynic__http_conn_t *c) {
  cynic__proxy_t *p = c->base.listener->proxy;
  cynic__hs_xchg_put(c);
  cynic__listener_release(c->base.listener, c->base.ip);
  cynic__session_remove(p, &c->base);
  cynic__relay_free(&c->relay);
  free(c);
  cynic__proxy_conn_gone(p);
}

static void handle_closed(cynic__http_conn_t *c) {
  if (--c->handles == 0)
    conn_free(c);
}

static void on_timer_closed(uv_handle_t *h) {
  handle_closed(h->data);
}

static void on_client_closed(uv_handle_t *h) {
  handle_closed(cynic__hs_of_relay(h->data));
}

static void on_upstream_closed(uv_handle_t *h) {
  cynic__http_conn_t *c = cynic__hs_of_relay(h->data);
  cynic__upconn_free_cb(h);
  handle_closed(c);
}

void cynic__hs_close(cynic__http_conn_t *c, bool reset, const char *why) {
  if (c->state == HS_CLOSING)
    return;
  (void)why;
  cynic__hs_outcome(c, reset ? CYNIC__OUT_RESET : CYNIC__OUT_OK);
  if (c->state == HS_QUEUED)
    cynic__admission_cancel(cynic__hs_up(c), &c->x->waiter);
  bool in_exchange = exchange_under_way(c);
  c->state = HS_CLOSING;
  cynic__relay_stop(&c->relay);
  if (c->x != NULL) {
    c->x->pend = NULL;
    cynic__attempt_release(&c->x->attempt);
  }
  cynic__hs_report(c); /* a request under way (or answered) gets its line */
  if (c->has_slot) {
    c->has_slot = false;
    cynic__admission_leave(cynic__hs_up(c));
  }
  if (reset && !c->relay.up.from_reset)
    cynic__sock_linger_zero(&c->client.tcp);
  cynic__io_close(&c->client, reset, on_client_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->uc != NULL) {
    cynic__upconn_t *uc = c->uc;
    c->uc = NULL;
    /* The relay forgets it first: its memory goes in its own close callback,
     * and a write of the client's still finishing must not find it. */
    cynic__relay_detach(&c->relay);
    if (uc->open) {
      c->handles++;
      uc->handle.tcp.data = &c->relay;
      cynic__upconn_close(uc, reset || in_exchange, on_upstream_closed);
    } else {
      free(uc);
    }
  }
}

/* ---- the request ------------------------------------------------------------- */

/* A request that will not reach the upstream: `status` and close. */
static void refuse(cynic__http_conn_t *c, int status, const char *reason, const char *rule) {
  cynic__hs_outcome(c, CYNIC__EV_BAD_REQUEST);
  cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_BAD_REQUEST, "listener",
                     c->base.listener->cfg->name, NULL, rule);
  if (c->x->start_us == 0)
    c->x->start_us = cynic__hs_now_us();
  c->close_after = true;
  cynic__hs_answer(c, status, reason, 0, false);
}

static const char *refusal_reason(int status) {
  switch (status) {
  case 413:
    return "request_body_too_large";
  case 414:
    return "uri_too_long";
  case 431:
    return "request_head_too_large";
  case 501:
    return "not_implemented";
  default:
    return "bad_request";
  }
}

/* RFC 9110 9.2.2: methods whose request may be sent twice. */
static bool idempotent_method(int method) {
  return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
         method == HTTP_PUT || method == HTTP_DELETE || method == HTTP_TRACE;
}

/* What the request may do (issue 12): go again (idempotent, its body kept
 * for a replay up to retry.max_body; the retry budget hears of it), and by
 * when (an incoming deadline_header shortens timeouts.request). False when
 * it was answered already: 504 `deadline_exceeded`, too little time left
 * for an attempt to be of use. */
static bool request_plan(cynic__http_conn_t *c) {
  cynic__http_xchg_t *x = c->x;
  const cynic__http_msg_t *m = &x->req;
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_http_t *h = &u->cfg->http;
  uint64_t now = cynic__hs_now_ms(c);
  if (h->has_retry) {
    size_t len;
    x->idempotent = idempotent_method(m->method) ||
                    (h->retry_idempotent_header != NULL &&
                     cynic__http_msg_find(m, h->retry_idempotent_header, &len) != NULL);
    x->replay_keep = m->body != CYNIC__HTTP_BODY_NONE && x->idempotent && h->retry_max_body > 0;
    x->replay_lost = m->body == CYNIC__HTTP_BODY_LENGTH && m->content_length > h->retry_max_body;
    if (u->retry_budget != NULL)
      cynic_budget_deposit(u->retry_budget);
  } else {
    x->idempotent = idempotent_method(m->method); /* a stale pooled connection's retry */
  }
  if (h->deadline_header != NULL) {
    size_t len = 0;
    const char *v = cynic__http_msg_find(m, h->deadline_header, &len);
    cynic_deadline_t d;
    /* an unreadable value is ignored (the request keeps its own deadline):
     * the header is advice from the caller, not part of the request */
    if (v != NULL && cynic_deadline_from_ms_header(v, len, 0, &d) == 0 && !cynic_deadline_is_none(d))
      cynic__hx_shorten(&x->hx, now + cynic_deadline_left(d, 0) / 1000000u);
  }
  uint64_t dl = x->hx.request_deadline_ms;
  if (cynic__hs_too_late(dl, now)) {
    cynic__hs_outcome(c, CYNIC__EV_DEADLINE_EXCEEDED);
    cynic__proxy_event(&u->counters, CYNIC__EV_DEADLINE_EXCEEDED, "upstream", u->cfg->name, NULL,
                       NULL);
    cynic__hx_fail(&x->hx, CYNIC__HX_CLIENT_GONE);
    c->state = HS_FINISHING;
    if (!cynic__hs_fallback(c, "deadline_exceeded"))
      cynic__hs_answer(c, 504, "deadline_exceeded", 0, true);
    return false;
  }
  return true;
}

/* The request head is complete: checks, then fail fast, the bulkhead, and
 * an attempt. */
static void request_head(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->x->req;
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  c->x->head_seen = true;
  c->x->req_done = m->body == CYNIC__HTTP_BODY_NONE; /* nothing more to read */
  /* the request id: the client's when valid, else cynic's */
  size_t rlen = 0;
  const char *rid = cynic__http_msg_find(m, lc->request_id_header, &rlen);
  if (rid != NULL && rlen <= RID_MAX && cynic__http_request_id_valid(rid, rlen) &&
      cynic__http_msg_count(m, lc->request_id_header) == 1) {
    memcpy(c->x->rid, rid, rlen);
    c->x->rid[rlen] = '\0';
    c->x->rid_made = false;
  } else {
    cynic__http_request_id_make(c->x->rid);
    c->x->rid_made = true;
  }
  if (!cynic__hl_admit(c))
    return; /* rate limit or load shedding answered it (http_limits.c) */
  if (m->upgrade) {
    refuse(c, 501, "not_implemented", m->method == HTTP_CONNECT ? "CONNECT" : "Upgrade");
    return;
  }
  {
    /* A Connection header cynic could not honour (more than 16 options, or
     * one that is not a token) is the client's error, found before any
     * upstream is involved. The options read are kept for every attempt's
     * request head. */
    cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS];
    cynic__http_head_t h = {.fields = fields, .nfields = cynic__hs_fields(m, fields)};
    if (cynic__http_conn_opts(&h, &c->x->req_opts) != 0) {
      refuse(c, 400, "bad_request", "bad Connection header");
      return;
    }
  }
  if (lc->max_request_body > 0 && m->body == CYNIC__HTTP_BODY_LENGTH &&
      m->content_length > lc->max_request_body) {
    refuse(c, 413, "request_body_too_large", "Content-Length over max_request_body");
    return;
  }
  c->x->started = true;
  cynic__metrics_conn_started(u);
  cynic__hx_start(&c->x->hx, u->cfg, cynic__hs_now_ms(c));
  if (!request_plan(c))
    return;
  if (!cynic__upstream_available(u)) {
    cynic__hs_outcome(c, CYNIC__EV_BREAKER_OPEN);
    c->x->decision = "rejected";
    cynic__proxy_event(&u->counters, CYNIC__EV_BREAKER_OPEN, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE);
    c->state = HS_FINISHING;
    if (!cynic__hs_fallback(c, "breaker_open"))
      cynic__hs_answer(c, 503, "breaker_open", cynic__hu_retry_after_s(u), true);
    return;
  }
  bool queued = false;
  c->state = HS_QUEUED;
  if (cynic__admission_enter(u, &c->x->waiter, cynic__hu_admitted, &queued) != 0) {
    c->state = HS_FINISHING;
    cynic__hs_outcome(c, CYNIC__EV_BULKHEAD_FULL);
    cynic__proxy_event(&u->counters, CYNIC__EV_BULKHEAD_FULL, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE);
    if (!cynic__hs_fallback(c, "bulkhead_full"))
      cynic__hs_answer(c, 503, "bulkhead_full", 1, true);
    return;
  }
  if (queued) {
    cynic__hs_arm(c); /* the request timeout runs while queued */
    return;
  }
  c->state = HS_CONNECTING;
  c->has_slot = true;
  cynic__hu_attempt(c);
}

/* Parses what the client sent while a request head is arriving. */
static void parse_head(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.up;
  while (c->state == HS_HEAD) {
    uv_buf_t spans[2];
    if (cynic__relay_held(d, spans) == 0)
      return;
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->x->req, spans[0].base, spans[0].len, &used);
    if (rc < 0) {
      int status = c->x->req.error_status != 0 ? c->x->req.error_status : 400;
      refuse(c, status, refusal_reason(status), c->x->req.error_reason);
      return;
    }
    if (cynic__relay_skip(d, used) != 0) { /* head bytes: the rewritten head goes out */
      cynic__hs_close(c, true, "ring_state");
      return;
    }
    if (rc == CYNIC__HTTP_HEAD) {
      request_head(c);
      return;
    }
  }
}

/* The next request may start (the response before it is out). */
void cynic__hs_next_request(cynic__http_conn_t *c) {
  if (c->state == HS_CLOSING)
    return;
  if (c->close_after || c->client_eof || c->base.listener->proxy->draining) {
    cynic__hs_close(c, false, "done");
    return;
  }
  cynic__hs_report(c);
  cynic__hs_xchg_put(c); /* an idle connection holds no exchange */
  c->state = HS_IDLE;
  c->idle_since_ms = cynic__hs_now_ms(c);
  if (c->relay.up.held > 0)
    client_data(c); /* a pipelined request is waiting */
  else
    cynic__hs_arm(c);
}

/* The listener's header timeout for one request, spread by up to an eighth
 * (a per-process sequence, no system call): a slowloris that opens its
 * connections all at once would otherwise have every one of them answered
 * 408 in the same loop turn, a burst the normal requests wait behind (2,000
 * at once moved their p99 by 9 ms in bench/slowloris.py; spread, by about 1). */
static uint64_t header_timeout_ms(const cynic__config_listener_t *lc) {
  static uint32_t seq;
  uint64_t t = cynic__config_ms(lc->header_timeout_ns);
  uint64_t spread = t / 8;
  seq = seq * 1664525u + 1013904223u; /* an LCG: spread, not secret */
  return spread > 0 ? t + (seq >> 8) % (spread + 1) : t;
}

/* The client sent bytes (held in the up ring). */
static void client_data(cynic__http_conn_t *c) {
  switch (c->state) {
  case HS_IDLE: {
    const cynic__config_listener_t *lc = c->base.listener->cfg;
    c->x = cynic__hs_xchg_take(c);
    if (c->x == NULL) {
      cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a request", NULL);
      cynic__hs_close(c, true, "out_of_memory");
      return;
    }
    cynic__http_msg_limits_t ql = {.max_head = (size_t)lc->max_request_head,
                                   .max_fields = CYNIC__HTTP_MSG_MAX_FIELDS};
    cynic__http_msg_init(&c->x->req, CYNIC__HTTP_REQUEST, &ql);
    c->x->req_store_cap = cynic__http_msg_store_size(&ql);
    c->x->req_store = cynic__hs_store_take(c->x->req_store_cap);
    if (c->x->req_store == NULL ||
        cynic__http_msg_begin(&c->x->req, c->x->req_store, c->x->req_store_cap) != 0) {
      cynic__hs_close(c, true, "out_of_memory");
      return;
    }
    c->state = HS_HEAD;
    c->x->start_us = cynic__hs_now_us();
    c->x->bytes_up = c->relay.up.bytes;
    c->x->bytes_down = c->relay.down.bytes;
    c->head_deadline_ms = cynic__hs_now_ms(c) + header_timeout_ms(lc);
    cynic__hs_arm(c);
    parse_head(c);
    return;
  }
  case HS_HEAD:
    parse_head(c);
    return;
  case HS_EXCHANGE:
    if (!c->x->req_done)
      cynic__hu_request_body(c); /* behind the head's write: libuv keeps the order */
    return;
  default:
    return; /* held: the request waits for its turn (back pressure) */
  }
}

/* ---- relay events --------------------------------------------------------- */

static void relay_first_bytes(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = cynic__hs_of_relay(r);
  if (d == &r->down && c->x != NULL && c->x->first_byte_us == 0) {
    c->x->first_byte_us = cynic__hs_now_us();
    uint64_t from = c->x->connected_us;
    cynic__metrics_first_byte(cynic__hs_up(c),
                              c->x->first_byte_us >= from ? c->x->first_byte_us - from : 0);
  }
}

static void relay_data(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = cynic__hs_of_relay(r);
  if (d == &r->up) {
    client_data(c);
    return;
  }
  if (c->state == HS_EXCHANGE) {
    cynic__hu_response_data(c); /* first_byte_us: relay_first_bytes, on the same read */
    return;
  }
  /* bytes from an upstream between exchanges cannot arrive (detached) */
  cynic__relay_drop_held(d);
}

static void relay_eof(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = cynic__hs_of_relay(r);
  if (d == &r->up) {
    c->client_eof = true;
    if (c->state == HS_IDLE) {
      cynic__hs_close(c, false, "client_closed");
    } else if (c->state == HS_HEAD) {
      cynic__hs_close(c, false, "client_closed_mid_head");
    } else if (c->x != NULL && !c->x->req_done && exchange_under_way(c)) {
      cynic__hu_fail(c, CYNIC__HX_CLIENT_GONE); /* the request was cut short */
    }
    return;
  }
  /* the upstream closed */
  if (c->state != HS_EXCHANGE)
    return;
  c->x->reusable = false;
  if (c->x->res_head_done && cynic__http_msg_eof(&c->x->res) == CYNIC__HTTP_DONE) {
    cynic__hu_response_end(c);
    return;
  }
  if (cynic__hu_stale_retry(c))
    return;
  cynic__hu_fail(c, CYNIC__HX_UPSTREAM_CLOSED);
}

static void relay_failed(cynic__relay_t *r, cynic__relay_dir_t *d, int err, bool writing) {
  cynic__http_conn_t *c = cynic__hs_of_relay(r);
  bool client_side = writing ? d == &r->down : d == &r->up;
  if (err == UV_ENOBUFS && !writing) {
    cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a connection buffer",
                     NULL);
    cynic__hs_close(c, true, "out_of_memory");
    return;
  }
  if (client_side) {
    if (exchange_under_way(c))
      cynic__hu_fail(c, CYNIC__HX_CLIENT_GONE);
    else
      cynic__hs_close(c, true, "client_reset");
    return;
  }
  if (c->state == HS_EXCHANGE && !cynic__hu_stale_retry(c))
    cynic__hu_fail(c, CYNIC__HX_UPSTREAM_RESET);
}

static void relay_drained(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = cynic__hs_of_relay(r);
  if (d == &r->down && c->state == HS_FINISHING && !c->res_head_out)
    cynic__hs_next_request(c);
}

static void relay_done(cynic__relay_t *r) {
  (void)r; /* hold mode never forwards a shutdown: never called */
}

static const cynic__relay_ops_t relay_ops = {
    .first_bytes = relay_first_bytes,
    .eof = relay_eof,
    .failed = relay_failed,
    .done = relay_done,
    .data = relay_data,
    .drained = relay_drained,
};

/* ---- accept ------------------------------------------------------------------ */

static uv_tcp_t *client_new(cynic__proxy_t *p) {
  cynic__http_conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  if (uv_tcp_init(p->loop, &c->client.tcp) != 0) {
    free(c);
    return NULL;
  }
  c->client.tcp.data = &c->relay;
  return &c->client.tcp;
}

static void on_discarded(uv_handle_t *h) {
  free(cynic__hs_of_relay(h->data));
}

static void client_discard(uv_tcp_t *client) {
  cynic__io_close((cynic__stream_t *)(void *)client, true, on_discarded);
}

static void http_start(cynic__listener_t *l, uv_tcp_t *client, const uint8_t ip[16],
                       uint16_t port) {
  cynic__http_conn_t *c = cynic__container_of(client, cynic__http_conn_t, client);
  cynic__proxy_t *p = l->proxy;
  c->base.listener = l;
  c->base.upstream = l->upstream;
  memcpy(c->base.ip, ip, 16);
  c->base.port = port;
  c->base.ops = &session_ops;
  cynic__session_add(p, &c->base);
  uv_timer_init(p->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2; /* client, timer */
  c->state = HS_IDLE;
  c->idle_since_ms = cynic__hs_now_ms(c);
  cynic__client_options(l, &c->client.tcp);
  cynic__relay_init(&c->relay, l, (uv_stream_t *)&c->client.tcp, NULL);
  cynic__relay_hold(&c->relay.up, true);
  cynic__relay_hold(&c->relay.down, true);
  cynic__relay_start(&c->relay, &relay_ops);
  if (c->state == HS_IDLE)
    cynic__hs_arm(c);
}

/* ---- the session ops ------------------------------------------------------------ */

static void session_close(cynic__session_t *s, const char *why) {
  cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  if (c->state == HS_CLOSING)
    return;
  cynic__hs_outcome(c, CYNIC__OUT_CLOSED);
  cynic__hs_close(c, false, why);
}

static bool session_uses_endpoint(const cynic__session_t *s, const cynic__endpoint_t *e) {
  const cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  return c->x != NULL && c->x->attempt.endpoint == e && c->state != HS_CLOSING;
}

static void session_drain(cynic__session_t *s) {
  cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  if (c->state == HS_IDLE)
    cynic__hs_close(c, false, "draining");
  /* others close after their current response (cynic__hs_next_request) */
}

static const cynic__session_ops_t session_ops = {
    .close = session_close,
    .uses_endpoint = session_uses_endpoint,
    .mark_in_use = NULL,
    .drain = session_drain,
};

const cynic__mode_t cynic__http_mode = {
    .name = "http",
    .client_new = client_new,
    .client_discard = client_discard,
    .start = http_start,
};
