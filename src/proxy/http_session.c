/*
 * src/proxy/http_session.c: HTTP/1.1 mode, one client connection and the
 * exchange of each of its requests with the upstream (docs/design-http.md).
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
#include "http_exchange.h"
#include "http_head.h"
#include "http_msg.h"
#include "http_session.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"

typedef enum hs_state {
  HS_IDLE,       /* between requests: nothing of the next one yet */
  HS_HEAD,       /* a request head is arriving (header timeout) */
  HS_QUEUED,     /* waiting for a bulkhead slot, on upstream->waiters */
  HS_CONNECTING, /* slot and permit held; connect in flight */
  HS_EXCHANGE,   /* upstream attached: request out, response in */
  HS_FINISHING,  /* the exchange is over; its last bytes go to the client */
  HS_CLOSING     /* handles closing; freed in the last close callback */
} hs_state_t;

/* The longest request id kept (longer ones are replaced by cynic's). */
#define RID_MAX 128

typedef struct cynic__http_conn {
  cynic__session_t base;
  uv_tcp_t client; /* data: &relay */
  uv_timer_t timer;
  cynic__relay_t relay; /* up: client -> upstream, down: upstream -> client; both held */
  cynic__http_msg_t req, res;
  char *req_store, *res_store; /* head stores, only while a message is parsed */
  size_t req_store_cap, res_store_cap;
  cynic__upconn_t *uc; /* the exchange's upstream connection; NULL between them */
  cynic__waiter_t waiter;
  cynic__attempt_t attempt;
  cynic__hx_t hx;
  uint8_t state;   /* hs_state_t */
  uint8_t handles; /* client, timer, and the upstream once cynic closes it with the
                      connection; freed at 0 */
  bool has_slot;   /* holds a bulkhead slot */
  bool req_done;   /* the request's last byte was released to the upstream */
  bool req_head_out;   /* the request head write is in flight */
  bool res_head_done;  /* the final response head was parsed (body follows) */
  bool res_head_out;   /* a head or answer write to the client is in flight */
  bool close_after;    /* close once the current response is out */
  bool client_eof;     /* the client half-closed */
  bool reusable;       /* the upstream connection may go back to the pool */
  bool reported;       /* the current request's report was made */
  bool started;        /* ... and counted as started (metrics) */
  bool head_seen;      /* the current request's head was parsed */
  uint64_t head_deadline_ms; /* HS_HEAD: the header timeout */
  uint64_t idle_since_ms;    /* HS_IDLE / HS_FINISHING: since when */
  uint64_t body_bytes;       /* request body bytes released (max_request_body) */
  /* The current request, for the report (metrics, access log). */
  int status;          /* what the client got; 0 = nothing yet */
  const char *answer;  /* cynic's own answer's reason; NULL: the upstream's */
  const char *decision;
  int outcome;
  bool has_outcome;
  uint64_t start_us, connect_us, connected_us, first_byte_us;
  uint64_t bytes_up, bytes_down; /* the relay's counts when the request began */
  char rid[RID_MAX + 1];
  bool rid_made; /* rid is cynic's (the client's was absent or invalid) */
} cynic__http_conn_t;

/* A head or an answer cynic writes itself, with its own uv_write; freed in
 * the write callback (which libuv calls, cancelled, even when the stream
 * closes first: the connection outlives it, its handles counted). */
typedef struct head_write {
  uv_write_t req;
  cynic__http_conn_t *c;
  bool to_client;
  bool then_close; /* close the connection once written */
  size_t len;
  char data[];
} head_write_t;

static const cynic__session_ops_t session_ops;
static const cynic__relay_ops_t relay_ops;
static void conn_close(cynic__http_conn_t *c, bool reset, const char *why);
static void client_data(cynic__http_conn_t *c);
static void upstream_data(cynic__http_conn_t *c);
static void arm(cynic__http_conn_t *c);
static void next_request(cynic__http_conn_t *c);
static void fail(cynic__http_conn_t *c, cynic__hx_cause_t cause);
static void on_timer(uv_timer_t *t);

static uint64_t now_us(void) {
  return uv_hrtime() / 1000u;
}

static uint64_t now_ms(const cynic__http_conn_t *c) {
  return uv_now(c->client.loop);
}

static cynic__http_conn_t *of_relay(cynic__relay_t *r) {
  return cynic__container_of(r, cynic__http_conn_t, relay);
}

static void set_outcome(cynic__http_conn_t *c, int outcome) {
  if (!c->has_outcome) {
    c->has_outcome = true;
    c->outcome = outcome;
  }
}

/* ---- head stores ------------------------------------------------------------ */

/* A store for one message's head, from the heap: an idle connection holds
 * none. Stores are aligned for the field index (malloc is). */
static char *store_take(size_t cap) {
  return malloc(cap);
}

static void store_put(char **store) {
  free(*store);
  *store = NULL;
}

static void req_parser_reset(cynic__http_conn_t *c) {
  cynic__http_msg_next(&c->req);
  store_put(&c->req_store);
}

static void res_parser_reset(cynic__http_conn_t *c) {
  cynic__http_msg_next(&c->res);
  store_put(&c->res_store);
}

/* ---- the report of one request --------------------------------------------- */

static void report(cynic__http_conn_t *c) {
  if (c->reported || c->start_us == 0)
    return;
  c->reported = true;
  if (!c->started) {
    c->started = true;
    cynic__metrics_conn_started(c->base.upstream);
  }
  const cynic__http_msg_t *m = &c->req;
  cynic__conn_report_t r = {
      .listener = c->base.listener,
      .upstream = c->base.upstream,
      .endpoint = c->attempt.endpoint,
      .outcome = c->has_outcome ? c->outcome : CYNIC__OUT_OK,
      .decision = c->decision,
      .ip = c->base.ip,
      .accepted_us = c->start_us,
      .connect_us = c->connect_us,
      .connected_us = c->connected_us,
      .first_byte_us = c->first_byte_us,
      .end_us = now_us(),
      .bytes_up = c->relay.up.bytes - c->bytes_up,
      .bytes_down = c->relay.down.bytes - c->bytes_down,
      .method = c->head_seen ? cynic__http_msg_method(m) : NULL,
      .target = c->head_seen && c->req_store != NULL ? cynic__http_msg_at(m, m->target) : "",
      .target_len = c->head_seen && c->req_store != NULL ? m->target.len : 0,
      .http = true,
      .status = c->status,
      .answer = c->answer,
      .request_id = c->rid[0] != '\0' ? c->rid : NULL,
  };
  cynic__metrics_conn_done(&r);
}

/* ---- writing heads and answers --------------------------------------------- */

static void on_head_written(uv_write_t *req, int status) {
  head_write_t *w = req->data;
  cynic__http_conn_t *c = w->c;
  bool to_client = w->to_client, then_close = w->then_close;
  free(w);
  if (to_client)
    c->res_head_out = false;
  else
    c->req_head_out = false;
  if (c->state == HS_CLOSING)
    return;
  if (status < 0) {
    if (to_client)
      conn_close(c, true, "client_write_error");
    else if (c->state == HS_EXCHANGE)
      fail(c, CYNIC__HX_UPSTREAM_RESET); /* the upstream went away under the request head */
    return;
  }
  if (then_close) {
    conn_close(c, false, "answered");
    return;
  }
  if (to_client && c->state == HS_FINISHING)
    next_request(c);
}

/* A write of `len` bytes from `o` (its buffer is w->data) on `s`. */
static head_write_t *head_write_new(cynic__http_conn_t *c, size_t cap, bool to_client) {
  head_write_t *w = malloc(sizeof *w + cap);
  if (w == NULL)
    return NULL;
  w->c = c;
  w->to_client = to_client;
  w->then_close = false;
  w->len = 0;
  w->req.data = w;
  return w;
}

static int head_write_send(cynic__http_conn_t *c, head_write_t *w, uv_stream_t *s) {
  uv_buf_t b = uv_buf_init(w->data, (unsigned int)w->len);
  int rc = uv_write(&w->req, s, &b, 1, on_head_written);
  if (rc != 0) {
    free(w);
    return rc;
  }
  if (w->to_client)
    c->res_head_out = true;
  else
    c->req_head_out = true;
  return 0;
}

/* The time until some breaker of u lets a probe through, in whole seconds
 * (at least 1); 0 when unknown (every one forced open). */
static uint64_t retry_after_s(const cynic__upstream_t *u) {
  uint64_t best = UINT64_MAX;
  for (size_t i = 0; i < u->endpoint_count; i++) {
    cynic_breaker_snapshot_t s;
    if (cynic_breaker_snapshot(u->endpoints[i].breaker, &s) != 0 || s.state != CYNIC_BREAKER_OPEN)
      continue;
    if (s.next_probe_ns < best)
      best = s.next_probe_ns;
  }
  if (best == UINT64_MAX)
    return 0;
  uint64_t s = (best + 999999999u) / 1000000000u;
  return s < 1 ? 1 : s;
}

/* cynic answers the request itself: `status`, `reason` (Cynic-Answer and the
 * JSON body). The connection closes after it unless `keep` and the request
 * was read to its end. */
static void answer(cynic__http_conn_t *c, int status, const char *reason, uint64_t retry_after,
                   bool keep) {
  bool close = !keep || !c->req_done || c->close_after || c->client_eof ||
               c->base.listener->proxy->draining || !c->req.keep_alive;
  c->status = status;
  c->answer = reason;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  head_write_t *w = head_write_new(c, 1024 + RID_MAX, true);
  if (w == NULL) {
    conn_close(c, true, "out_of_memory");
    return;
  }
  cynic__http_out_t o = {.p = w->data, .len = 0, .cap = 1024 + RID_MAX};
  cynic__http_answer_t a = {
      .status = status,
      .reason = reason,
      .upstream = c->base.upstream->cfg->name,
      .request_id_header = c->rid[0] != '\0' ? lc->request_id_header : NULL,
      .request_id = c->rid[0] != '\0' ? c->rid : NULL,
      .retry_after_s = retry_after,
      .close = close,
  };
  if (cynic__http_write_answer(&o, &a) != 0) {
    free(w);
    conn_close(c, true, "answer_too_large");
    return;
  }
  w->len = o.len;
  w->then_close = close;
  if (close)
    c->close_after = true;
  c->state = HS_FINISHING;
  c->idle_since_ms = now_ms(c);
  if (head_write_send(c, w, (uv_stream_t *)&c->client) != 0) {
    conn_close(c, true, "client_write_error");
    return;
  }
  arm(c);
}

/* ---- the end of an exchange -------------------------------------------------- */

/* The breaker's event for a failed exchange, by cause. */
static cynic__event_t cause_event(const cynic__http_conn_t *c, cynic__hx_cause_t cause) {
  bool answered = c->first_byte_us != 0;
  switch (cause) {
  case CYNIC__HX_CONNECT_REFUSED:
    return CYNIC__EV_CONNECT_REFUSED;
  case CYNIC__HX_CONNECT_ERROR:
    return CYNIC__EV_CONNECT_ERROR;
  case CYNIC__HX_CONNECT_TIMEOUT:
    return CYNIC__EV_CONNECT_TIMEOUT;
  case CYNIC__HX_FIRST_BYTE_TIMEOUT:
    return CYNIC__EV_FIRST_BYTE_TIMEOUT;
  case CYNIC__HX_IDLE_TIMEOUT:
    return CYNIC__EV_IDLE_TIMEOUT;
  case CYNIC__HX_REQUEST_TIMEOUT:
    return CYNIC__EV_REQUEST_TIMEOUT;
  case CYNIC__HX_UPSTREAM_RESET:
    return answered ? CYNIC__EV_UPSTREAM_RESET : CYNIC__EV_RESET_BEFORE_FIRST_BYTE;
  case CYNIC__HX_UPSTREAM_CLOSED:
    return answered ? CYNIC__EV_UPSTREAM_CLOSED : CYNIC__EV_CLOSED_BEFORE_FIRST_BYTE;
  case CYNIC__HX_BAD_RESPONSE:
    return CYNIC__EV_BAD_RESPONSE;
  case CYNIC__HX_RESPONSE_TOO_LARGE:
    return CYNIC__EV_RESPONSE_TOO_LARGE;
  case CYNIC__HX_UNEXPECTED_STATUS:
    return CYNIC__EV_UNEXPECTED_STATUS;
  case CYNIC__HX_UNEXPECTED_TYPE:
    return CYNIC__EV_UNEXPECTED_CONTENT_TYPE;
  default:
    return CYNIC__EV_LOCAL_ERROR;
  }
}

/* Takes the upstream connection off the relay: back to its endpoint's pool
 * when `reuse` and the pool takes it, closed otherwise. Only when nothing
 * moves on it (the caller checked). */
static void upstream_release(cynic__http_conn_t *c, bool reuse) {
  cynic__upconn_t *uc = c->uc;
  if (uc == NULL)
    return;
  c->uc = NULL;
  cynic__relay_detach(&c->relay);
  if (c->relay.down.held > 0)
    cynic__relay_drop_held(&c->relay.down);
  if (reuse && uc->deadline_ms == 0 && cynic__pool_give(uc, now_ms(c)))
    return;
  uc->handle.data = NULL; /* a connect callback still to come finds nobody */
  cynic__upconn_close(uc, !reuse, cynic__upconn_free_cb);
}

/* True when the upstream connection can be detached now: no write of the
 * request in flight or waiting. */
static bool upstream_quiet(const cynic__http_conn_t *c) {
  return !c->req_head_out && cynic__relay_drained(&c->relay.up);
}

/* The exchange is over (response ended, or failed and answered): the slot
 * and the attempt are given back, the report made, and the upstream
 * connection pooled or closed. */
static void exchange_end(cynic__http_conn_t *c, bool reuse) {
  cynic__upstream_t *u = c->base.upstream;
  if (c->state == HS_QUEUED)
    cynic__admission_cancel(u, &c->waiter);
  cynic__attempt_release(&c->attempt);
  if (c->uc != NULL) {
    if (upstream_quiet(c))
      upstream_release(c, reuse && c->req_done);
    else
      c->close_after = true; /* the request is still going out: close with the connection */
  }
  report(c);
  cynic__attempt_end(&c->attempt);
  memset(&c->attempt, 0, sizeof c->attempt);
  if (c->has_slot) {
    c->has_slot = false;
    cynic__admission_leave(u); /* may start queued requests */
  }
}

/* The exchange failed with `cause` (hx decides what the client gets). */
static void fail(cynic__http_conn_t *c, cynic__hx_cause_t cause) {
  cynic__hx_outcome_t o = cynic__hx_fail(&c->hx, cause);
  cynic__event_t ev = cause_event(c, cause);
  if (o.fault && c->attempt.endpoint != NULL) {
    cynic__attempt_fault(&c->attempt, ev, cause == CYNIC__HX_OK ? NULL : cynic__hx_cause_name(cause));
    set_outcome(c, (int)ev);
  } else if (cause == CYNIC__HX_LOCAL_ERROR) {
    set_outcome(c, CYNIC__EV_LOCAL_ERROR);
    cynic__proxy_event(&c->base.upstream->counters, CYNIC__EV_LOCAL_ERROR, "upstream",
                       c->base.upstream->cfg->name, NULL, NULL);
  } else {
    set_outcome(c, o.reset ? CYNIC__OUT_RESET : (int)ev);
  }
  c->reusable = false;
  if (cause == CYNIC__HX_CLIENT_GONE) {
    conn_close(c, true, "client_gone");
    return;
  }
  if (o.reset) {
    exchange_end(c, false);
    conn_close(c, true, o.reason);
    return;
  }
  exchange_end(c, false);
  if (c->state == HS_CLOSING)
    return;
  answer(c, o.status, o.reason, 0, true);
}

/* ---- the timer ------------------------------------------------------------- */

static uint64_t listener_idle_ms(const cynic__http_conn_t *c) {
  return cynic__config_ms(c->base.listener->cfg->idle_timeout_ns);
}

static void arm(cynic__http_conn_t *c) {
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
    next = cynic__hx_next_deadline(&c->hx);
    break;
  default:
    return;
  }
  if (next == 0) {
    uv_timer_stop(&c->timer);
    return;
  }
  uint64_t now = now_ms(c);
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  cynic__http_conn_t *c = t->data;
  uint64_t now = now_ms(c);
  switch (c->state) {
  case HS_IDLE:
  case HS_FINISHING: {
    uint64_t idle = listener_idle_ms(c);
    if (idle > 0 && now >= c->idle_since_ms + idle) {
      conn_close(c, c->state == HS_FINISHING, "client_idle_timeout");
      return;
    }
    break;
  }
  case HS_HEAD:
    if (now >= c->head_deadline_ms) {
      set_outcome(c, CYNIC__EV_HEADER_TIMEOUT);
      cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_HEADER_TIMEOUT, "listener",
                         c->base.listener->cfg->name, NULL, NULL);
      c->close_after = true;
      answer(c, 408, "header_timeout", 0, false);
      return;
    }
    break;
  case HS_QUEUED:
  case HS_CONNECTING:
  case HS_EXCHANGE: {
    cynic__hx_cause_t cause = cynic__hx_expired(&c->hx, now);
    if (cause != CYNIC__HX_OK) {
      fail(c, cause);
      return;
    }
    break;
  }
  default:
    return;
  }
  arm(c);
}

/* ---- freeing and closing ------------------------------------------------------ */

static void conn_free(cynic__http_conn_t *c) {
  cynic__proxy_t *p = c->base.listener->proxy;
  cynic__attempt_end(&c->attempt);
  cynic__listener_release(c->base.listener, c->base.ip);
  cynic__session_remove(p, &c->base);
  cynic__relay_free(&c->relay);
  store_put(&c->req_store);
  store_put(&c->res_store);
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
  handle_closed(of_relay(h->data));
}

static void on_upstream_closed(uv_handle_t *h) {
  cynic__http_conn_t *c = of_relay(h->data);
  cynic__upconn_free_cb(h);
  handle_closed(c);
}

static void conn_close(cynic__http_conn_t *c, bool reset, const char *why) {
  if (c->state == HS_CLOSING)
    return;
  (void)why;
  set_outcome(c, reset ? CYNIC__OUT_RESET : CYNIC__OUT_OK);
  if (c->state == HS_QUEUED)
    cynic__admission_cancel(c->base.upstream, &c->waiter);
  bool in_exchange = c->state == HS_QUEUED || c->state == HS_CONNECTING || c->state == HS_EXCHANGE;
  c->state = HS_CLOSING;
  cynic__relay_stop(&c->relay);
  cynic__attempt_release(&c->attempt);
  report(c); /* a request under way (or answered) gets its line */
  if (c->has_slot) {
    c->has_slot = false;
    cynic__admission_leave(c->base.upstream);
  }
  if (reset && !c->relay.up.from_reset)
    cynic__sock_linger_zero(&c->client);
  uv_close((uv_handle_t *)&c->client, on_client_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->uc != NULL) {
    cynic__upconn_t *uc = c->uc;
    c->uc = NULL;
    if (uc->open) {
      c->handles++;
      uc->handle.data = &c->relay;
      cynic__upconn_close(uc, reset || in_exchange, on_upstream_closed);
    } else {
      free(uc);
    }
  }
}

/* ---- the response ------------------------------------------------------------ */

static void response_end(cynic__http_conn_t *c) {
  bool success = cynic__hx_response_end(&c->hx);
  if (success)
    cynic__attempt_success(&c->attempt);
  cynic__http_msg_t *m = &c->res;
  if (!m->keep_alive || m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
    c->reusable = false;
  if (m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
    c->close_after = true; /* the client knows the end by the close */
  if (c->relay.down.held > 0) {
    c->reusable = false; /* bytes nobody asked for: never reuse */
    cynic__relay_drop_held(&c->relay.down);
  }
  res_parser_reset(c);
  c->state = HS_FINISHING;
  c->idle_since_ms = now_ms(c);
  exchange_end(c, c->reusable);
  if (c->state == HS_CLOSING)
    return;
  if (!c->res_head_out && cynic__relay_drained(&c->relay.down))
    next_request(c);
  else
    arm(c);
}

static void response_head(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->res;
  size_t ctlen = 0;
  const char *ct = cynic__http_msg_find(m, "content-type", &ctlen);
  bool has_body = cynic__http_response_has_body(c->req.method, m->status);
  int64_t cl = m->body == CYNIC__HTTP_BODY_LENGTH ? (int64_t)m->content_length
               : has_body && m->body != CYNIC__HTTP_BODY_NONE ? -1
                                                               : 0;
  cynic__hx_cause_t cause =
      cynic__hx_response_head(&c->hx, m->status, has_body, ct, ctlen, cl, now_ms(c));
  if (cause == CYNIC__HX_UNEXPECTED_TYPE || cause == CYNIC__HX_RESPONSE_TOO_LARGE) {
    fail(c, cause);
    return;
  }
  if (cause == CYNIC__HX_UNEXPECTED_STATUS) {
    cynic__event_t ev = CYNIC__EV_UNEXPECTED_STATUS;
    cynic__attempt_fault(&c->attempt, ev, NULL);
    set_outcome(c, (int)ev);
  }
  if (m->upgrade) { /* 101 or a 2xx to CONNECT: never asked for (501 first) */
    fail(c, CYNIC__HX_BAD_RESPONSE);
    return;
  }
  bool interim = cynic__http_status_interim(m->status);
  if (!interim) {
    c->status = m->status;
    c->res_head_done = true;
    if (!m->keep_alive || m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
      c->reusable = false;
    if (m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
      c->close_after = true;
  }
  /* The head for the client, rebuilt from the parsed parts. */
  cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS];
  size_t n = cynic__http_msg_nfields(m);
  for (size_t i = 0; i < n; i++)
    cynic__http_msg_field(m, i, &fields[i].name, &fields[i].nlen, &fields[i].value,
                          &fields[i].vlen);
  cynic__http_head_t h = {
      .reason = cynic__http_msg_at(m, m->reason),
      .reason_len = m->reason.len,
      .status = m->status,
      .minor = m->version_minor,
      .fields = fields,
      .nfields = n,
  };
  bool close = !interim && (c->close_after || !c->req.keep_alive || c->client_eof ||
                            c->base.listener->proxy->draining);
  if (close)
    c->close_after = true;
  size_t cap = (size_t)c->base.upstream->cfg->http.max_header_bytes + 256;
  head_write_t *w = head_write_new(c, cap, true);
  if (w == NULL) {
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  cynic__http_out_t o = {.p = w->data, .len = 0, .cap = cap};
  int rc = cynic__http_write_response(&o, &h, close, c->req.version_minor);
  if (rc != 0) {
    free(w);
    fail(c, rc == CYNIC_EINVAL ? CYNIC__HX_BAD_RESPONSE : CYNIC__HX_LOCAL_ERROR);
    return;
  }
  w->len = o.len;
  if (head_write_send(c, w, (uv_stream_t *)&c->client) != 0) {
    conn_close(c, true, "client_write_error");
    return;
  }
  cynic__hx_response_started(&c->hx);
  arm(c);
}

/* Parses what the upstream sent: heads are skipped (rewritten copies go
 * out), body bytes released to the client. */
static void upstream_data(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.down;
  while (c->state == HS_EXCHANGE) {
    uv_buf_t spans[2];
    unsigned int ns = cynic__relay_held(d, spans);
    size_t len = ns > 0 ? spans[0].len : 0;
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->res, ns > 0 ? spans[0].base : "", len, &used);
    if (rc < 0) {
      fail(c, CYNIC__HX_BAD_RESPONSE);
      return;
    }
    if (!c->res_head_done) {
      if (cynic__relay_skip(d, used) != 0) {
        fail(c, CYNIC__HX_LOCAL_ERROR);
        return;
      }
      if (rc == CYNIC__HTTP_MORE)
        return; /* all of it was head: more to come */
      if (rc == CYNIC__HTTP_HEAD) {
        response_head(c);
        continue;
      }
      if (rc == CYNIC__HTTP_DONE) { /* an interim response ended: the final one follows */
        cynic__http_msg_next(&c->res);
        cynic__http_msg_begin(&c->res, c->res_store, c->res_store_cap);
        continue;
      }
      return; /* BODY before a final head cannot happen */
    }
    if (used > 0) {
      if (cynic__hx_response_body(&c->hx, used, now_ms(c)) != CYNIC__HX_OK) {
        fail(c, CYNIC__HX_RESPONSE_TOO_LARGE);
        return;
      }
      cynic__relay_release(d, used);
      if (c->state != HS_EXCHANGE)
        return;
    }
    if (rc == CYNIC__HTTP_DONE) {
      response_end(c);
      return;
    }
    if (used == 0 || cynic__relay_held(d, spans) == 0)
      return;
  }
}

/* ---- the request ------------------------------------------------------------- */

/* Streams the request's body (already held) to the upstream. */
static void request_body(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.up;
  uint64_t max = c->base.listener->cfg->max_request_body;
  while (!c->req_done && c->state == HS_EXCHANGE) {
    uv_buf_t spans[2];
    unsigned int ns = cynic__relay_held(d, spans);
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->req, ns > 0 ? spans[0].base : "", ns > 0 ? spans[0].len : 0,
                                  &used);
    if (rc < 0) {
      /* A bad chunk: the client's fault, not the endpoint's. */
      set_outcome(c, CYNIC__EV_BAD_REQUEST);
      cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_BAD_REQUEST, "listener",
                         c->base.listener->cfg->name, NULL, c->req.error_reason);
      cynic__hx_outcome_t o = cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
      (void)o;
      c->close_after = true;
      exchange_end(c, false);
      if (c->state == HS_CLOSING)
        return;
      if (c->hx.response_started || c->res_head_out)
        conn_close(c, true, "bad_request_body");
      else
        answer(c, 400, "bad_request", 0, false);
      return;
    }
    c->body_bytes += used;
    if (max > 0 && c->body_bytes > max) {
      set_outcome(c, CYNIC__EV_BAD_REQUEST);
      cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
      c->close_after = true;
      exchange_end(c, false);
      if (c->state == HS_CLOSING)
        return;
      if (c->hx.response_started || c->res_head_out)
        conn_close(c, true, "request_body_too_large");
      else
        answer(c, 413, "request_body_too_large", 0, false);
      return;
    }
    if (used > 0) {
      cynic__hx_io(&c->hx, now_ms(c));
      cynic__relay_release(d, used);
      if (c->state != HS_EXCHANGE)
        return;
    }
    if (rc == CYNIC__HTTP_DONE) {
      c->req_done = true;
      cynic__hx_request_sent(&c->hx, now_ms(c));
      arm(c);
      return;
    }
    if (used == 0 || cynic__relay_held(d, spans) == 0)
      return;
  }
}

/* The upstream connection is ready (connected or pooled): the request goes
 * out, and its response parser is set up. */
static void request_out(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->req;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  const cynic__config_upstream_t *uc = c->base.upstream->cfg;
  c->connected_us = now_us();
  cynic__relay_attach(&c->relay, cynic__upconn_stream(c->uc));
  cynic__hx_connected(&c->hx, now_ms(c));
  c->state = HS_EXCHANGE;
  /* the response's parser */
  cynic__http_msg_limits_t rl = {.max_head = (size_t)uc->http.max_header_bytes,
                                 .max_fields = CYNIC__HTTP_MSG_MAX_FIELDS};
  cynic__http_msg_init(&c->res, CYNIC__HTTP_RESPONSE, &rl);
  c->res_store_cap = cynic__http_msg_store_size(&rl);
  c->res_store = store_take(c->res_store_cap);
  if (c->res_store == NULL ||
      cynic__http_msg_begin(&c->res, c->res_store, c->res_store_cap) != 0) {
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  cynic__http_msg_expect(&c->res, m->method);
  c->res_head_done = false;
  /* the request head, rebuilt */
  cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS];
  size_t n = cynic__http_msg_nfields(m);
  for (size_t i = 0; i < n; i++)
    cynic__http_msg_field(m, i, &fields[i].name, &fields[i].nlen, &fields[i].value,
                          &fields[i].vlen);
  const char *method = cynic__http_msg_method(m);
  cynic__http_head_t h = {
      .method = method,
      .method_len = strlen(method),
      .target = cynic__http_msg_at(m, m->target),
      .target_len = m->target.len,
      .minor = m->version_minor,
      .fields = fields,
      .nfields = n,
  };
  char ip[INET6_ADDRSTRLEN] = "";
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(c->base.ip, mapped, 12) == 0)
    inet_ntop(AF_INET, c->base.ip + 12, ip, sizeof ip);
  else
    inet_ntop(AF_INET6, c->base.ip, ip, sizeof ip);
  cynic__http_fwd_t f = {
      .forwarded = lc->forwarded,
      .client_ip = ip,
      .request_id_header = lc->request_id_header,
      .request_id = c->rid_made ? c->rid : NULL,
  };
  size_t cap = (size_t)lc->max_request_head + 512 + RID_MAX + INET6_ADDRSTRLEN;
  head_write_t *w = head_write_new(c, cap, false);
  if (w == NULL) {
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  cynic__http_out_t o = {.p = w->data, .len = 0, .cap = cap};
  int rc = cynic__http_write_request(&o, &h, &f);
  if (rc != 0) {
    free(w);
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  w->len = o.len;
  if (head_write_send(c, w, cynic__upconn_stream(c->uc)) != 0) {
    fail(c, CYNIC__HX_UPSTREAM_RESET);
    return;
  }
  cynic__hx_io(&c->hx, now_ms(c));
  if (c->req_done)
    cynic__hx_request_sent(&c->hx, now_ms(c)); /* no body: the head was all */
  else
    request_body(c);
  if (c->state == HS_EXCHANGE)
    arm(c);
}

static void on_connect(cynic__upconn_t *uc, int status) {
  if (uc->handle.data == NULL)
    return; /* given up on before the connect ended (upstream_release) */
  cynic__http_conn_t *c = of_relay(uc->handle.data);
  if (c->state != HS_CONNECTING || c->uc != uc)
    return;
  if (status != 0) {
    fail(c, status == UV_ECONNREFUSED ? CYNIC__HX_CONNECT_REFUSED : CYNIC__HX_CONNECT_ERROR);
    return;
  }
  uint64_t t = now_us();
  cynic__metrics_connected(c->base.upstream, t >= c->connect_us ? t - c->connect_us : 0);
  request_out(c);
}

/* A slot is held: pick an endpoint, then a pooled connection or a new one. */
static void attempt(cynic__http_conn_t *c) {
  cynic__upstream_t *u = c->base.upstream;
  int rc = cynic__attempt_start(u, &c->attempt);
  if (rc != 0) {
    cynic__event_t ev = rc == CYNIC_EOPEN ? CYNIC__EV_BREAKER_OPEN : CYNIC__EV_UNRESOLVED;
    set_outcome(c, (int)ev);
    cynic__proxy_event(&u->counters, ev, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
    exchange_end(c, false);
    if (c->state != HS_CLOSING)
      answer(c, 503, cynic__event_key(ev), rc == CYNIC_EOPEN ? retry_after_s(u) : 1, true);
    return;
  }
  cynic__endpoint_t *e = c->attempt.endpoint;
  c->decision = cynic_breaker_state_name(c->attempt.permit.state);
  uint64_t now = now_ms(c);
  cynic__hx_connecting(&c->hx, now);
  c->connect_us = now_us();
  c->reusable = true;
  cynic__upconn_t *pooled = cynic__pool_take(e, now);
  if (pooled != NULL) {
    c->uc = pooled;
    pooled->handle.data = &c->relay;
    request_out(c);
    return;
  }
  c->uc = cynic__upconn_new();
  if (c->uc == NULL) {
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  c->state = HS_CONNECTING;
  rc = cynic__upconn_connect(c->uc, c->client.loop, e, &c->relay, on_connect);
  if (rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOBUFS || rc == UV_ENOMEM) {
    fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  if (rc != 0) {
    fail(c, rc == UV_ECONNREFUSED ? CYNIC__HX_CONNECT_REFUSED : CYNIC__HX_CONNECT_ERROR);
    return;
  }
  arm(c);
}

static void on_admitted(cynic__waiter_t *w, int status) {
  cynic__http_conn_t *c = cynic__container_of(w, cynic__http_conn_t, waiter);
  if (c->state != HS_QUEUED)
    return;
  c->state = HS_CONNECTING; /* not queued any more, not yet connecting */
  if (status != 0) {
    cynic__upstream_t *u = c->base.upstream;
    set_outcome(c, CYNIC__EV_QUEUE_TIMEOUT);
    cynic__proxy_event(&u->counters, CYNIC__EV_QUEUE_TIMEOUT, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
    exchange_end(c, false);
    if (c->state != HS_CLOSING)
      answer(c, 503, "queue_timeout", 0, true);
    return;
  }
  c->has_slot = true;
  attempt(c);
}

/* A request that will not reach the upstream: `status` and close. */
static void refuse(cynic__http_conn_t *c, int status, const char *reason, const char *rule) {
  set_outcome(c, CYNIC__EV_BAD_REQUEST);
  cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_BAD_REQUEST, "listener",
                     c->base.listener->cfg->name, NULL, rule);
  if (c->start_us == 0)
    c->start_us = now_us();
  c->close_after = true;
  answer(c, status, reason, 0, false);
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

/* The request head is complete: checks, then fail fast, the bulkhead, and
 * an attempt. */
static void request_head(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->req;
  cynic__upstream_t *u = c->base.upstream;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  c->head_seen = true;
  c->req_done = m->body == CYNIC__HTTP_BODY_NONE; /* nothing more to read */
  /* the request id: the client's when valid, else cynic's */
  size_t rlen = 0;
  const char *rid = cynic__http_msg_find(m, lc->request_id_header, &rlen);
  if (rid != NULL && rlen <= RID_MAX && cynic__http_request_id_valid(rid, rlen) &&
      cynic__http_msg_count(m, lc->request_id_header) == 1) {
    memcpy(c->rid, rid, rlen);
    c->rid[rlen] = '\0';
    c->rid_made = false;
  } else {
    cynic__http_request_id_make(c->rid);
    c->rid_made = true;
  }
  if (m->upgrade) {
    refuse(c, 501, "not_implemented", m->method == HTTP_CONNECT ? "CONNECT" : "Upgrade");
    return;
  }
  if (lc->max_request_body > 0 && m->body == CYNIC__HTTP_BODY_LENGTH &&
      m->content_length > lc->max_request_body) {
    refuse(c, 413, "request_body_too_large", "Content-Length over max_request_body");
    return;
  }
  c->started = true;
  cynic__metrics_conn_started(u);
  cynic__hx_start(&c->hx, u->cfg, now_ms(c));
  if (!cynic__upstream_available(u)) {
    set_outcome(c, CYNIC__EV_BREAKER_OPEN);
    c->decision = "rejected";
    cynic__proxy_event(&u->counters, CYNIC__EV_BREAKER_OPEN, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
    c->state = HS_FINISHING;
    answer(c, 503, "breaker_open", retry_after_s(u), true);
    return;
  }
  bool queued = false;
  c->state = HS_QUEUED;
  if (cynic__admission_enter(u, &c->waiter, on_admitted, &queued) != 0) {
    c->state = HS_FINISHING;
    set_outcome(c, CYNIC__EV_BULKHEAD_FULL);
    cynic__proxy_event(&u->counters, CYNIC__EV_BULKHEAD_FULL, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->hx, CYNIC__HX_CLIENT_GONE);
    answer(c, 503, "bulkhead_full", 1, true);
    return;
  }
  if (queued) {
    arm(c); /* the request timeout runs while queued */
    return;
  }
  c->state = HS_CONNECTING;
  c->has_slot = true;
  attempt(c);
}

/* Parses what the client sent while a request head is arriving. */
static void parse_head(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.up;
  while (c->state == HS_HEAD) {
    uv_buf_t spans[2];
    if (cynic__relay_held(d, spans) == 0)
      return;
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->req, spans[0].base, spans[0].len, &used);
    if (rc < 0) {
      int status = c->req.error_status != 0 ? c->req.error_status : 400;
      refuse(c, status, refusal_reason(status), c->req.error_reason);
      return;
    }
    if (cynic__relay_skip(d, used) != 0) { /* head bytes: the rewritten head goes out */
      conn_close(c, true, "ring_state");
      return;
    }
    if (rc == CYNIC__HTTP_HEAD) {
      request_head(c);
      return;
    }
  }
}

/* The next request may start (the response before it is out). */
static void next_request(cynic__http_conn_t *c) {
  if (c->state == HS_CLOSING)
    return;
  if (c->close_after || c->client_eof || c->base.listener->proxy->draining) {
    conn_close(c, false, "done");
    return;
  }
  report(c);
  if (c->req_store != NULL)
    req_parser_reset(c);
  c->state = HS_IDLE;
  c->idle_since_ms = now_ms(c);
  c->req_done = c->reusable = c->res_head_done = c->reported = c->has_outcome = false;
  c->started = c->head_seen = false;
  c->status = 0;
  c->answer = NULL;
  c->decision = NULL;
  c->rid[0] = '\0';
  c->start_us = c->connect_us = c->connected_us = c->first_byte_us = 0;
  c->body_bytes = 0;
  if (c->relay.up.held > 0)
    client_data(c); /* a pipelined request is waiting */
  else
    arm(c);
}

/* The client sent bytes (held in the up ring). */
static void client_data(cynic__http_conn_t *c) {
  switch (c->state) {
  case HS_IDLE: {
    const cynic__config_listener_t *lc = c->base.listener->cfg;
    cynic__http_msg_limits_t ql = {.max_head = (size_t)lc->max_request_head,
                                   .max_fields = CYNIC__HTTP_MSG_MAX_FIELDS};
    cynic__http_msg_init(&c->req, CYNIC__HTTP_REQUEST, &ql);
    c->req_store_cap = cynic__http_msg_store_size(&ql);
    c->req_store = store_take(c->req_store_cap);
    if (c->req_store == NULL ||
        cynic__http_msg_begin(&c->req, c->req_store, c->req_store_cap) != 0) {
      conn_close(c, true, "out_of_memory");
      return;
    }
    c->state = HS_HEAD;
    c->start_us = now_us();
    c->bytes_up = c->relay.up.bytes;
    c->bytes_down = c->relay.down.bytes;
    c->head_deadline_ms = now_ms(c) + cynic__config_ms(lc->header_timeout_ns);
    arm(c);
    parse_head(c);
    return;
  }
  case HS_HEAD:
    parse_head(c);
    return;
  case HS_EXCHANGE:
    if (!c->req_done)
      request_body(c); /* behind the head's write: libuv keeps the order */
    return;
  default:
    return; /* held: the request waits for its turn (back pressure) */
  }
}

/* ---- relay events --------------------------------------------------------- */

static void relay_first_bytes(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = of_relay(r);
  if (d == &r->down && c->first_byte_us == 0) {
    c->first_byte_us = now_us();
    cynic__metrics_first_byte(c->base.upstream,
                              c->first_byte_us >= c->connected_us ? c->first_byte_us - c->connected_us
                                                                  : 0);
  }
}

static void relay_data(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = of_relay(r);
  if (d == &r->up) {
    client_data(c);
    return;
  }
  if (c->state == HS_EXCHANGE) {
    if (c->first_byte_us == 0)
      c->first_byte_us = now_us();
    upstream_data(c);
    return;
  }
  /* bytes from an upstream between exchanges cannot arrive (detached) */
  cynic__relay_drop_held(d);
}

static void relay_eof(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = of_relay(r);
  if (d == &r->up) {
    c->client_eof = true;
    if (c->state == HS_IDLE) {
      conn_close(c, false, "client_closed");
    } else if (c->state == HS_HEAD) {
      conn_close(c, false, "client_closed_mid_head");
    } else if (!c->req_done && (c->state == HS_EXCHANGE || c->state == HS_CONNECTING ||
                                c->state == HS_QUEUED)) {
      fail(c, CYNIC__HX_CLIENT_GONE); /* the request was cut short */
    }
    return;
  }
  /* the upstream closed */
  if (c->state != HS_EXCHANGE)
    return;
  c->reusable = false;
  if (c->res_head_done && cynic__http_msg_eof(&c->res) == CYNIC__HTTP_DONE) {
    response_end(c);
    return;
  }
  fail(c, CYNIC__HX_UPSTREAM_CLOSED);
}

static void relay_failed(cynic__relay_t *r, cynic__relay_dir_t *d, int err, bool writing) {
  cynic__http_conn_t *c = of_relay(r);
  bool client_side = writing ? d == &r->down : d == &r->up;
  if (err == UV_ENOBUFS && !writing) {
    cynic__log_event(CYNIC_LOG_ERROR, "out_of_memory", "out of memory for a connection buffer",
                     NULL);
    conn_close(c, true, "out_of_memory");
    return;
  }
  if (client_side) {
    if (c->state == HS_EXCHANGE || c->state == HS_CONNECTING || c->state == HS_QUEUED)
      fail(c, CYNIC__HX_CLIENT_GONE);
    else
      conn_close(c, true, "client_reset");
    return;
  }
  if (c->state == HS_EXCHANGE)
    fail(c, CYNIC__HX_UPSTREAM_RESET);
}

static void relay_drained(cynic__relay_t *r, cynic__relay_dir_t *d) {
  cynic__http_conn_t *c = of_relay(r);
  if (d == &r->down && c->state == HS_FINISHING && !c->res_head_out)
    next_request(c);
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
  if (uv_tcp_init(p->loop, &c->client) != 0) {
    free(c);
    return NULL;
  }
  c->client.data = &c->relay;
  return &c->client;
}

static void on_discarded(uv_handle_t *h) {
  free(of_relay(h->data));
}

static void client_discard(uv_tcp_t *client) {
  uv_close((uv_handle_t *)client, on_discarded);
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
  c->idle_since_ms = now_ms(c);
  cynic__client_options(l, &c->client);
  cynic__relay_init(&c->relay, l, (uv_stream_t *)&c->client, NULL);
  cynic__relay_hold(&c->relay.up, true);
  cynic__relay_hold(&c->relay.down, true);
  cynic__relay_start(&c->relay, &relay_ops);
  if (c->state == HS_IDLE)
    arm(c);
}

/* ---- the session ops ------------------------------------------------------------ */

static void session_close(cynic__session_t *s, const char *why) {
  cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  if (c->state == HS_CLOSING)
    return;
  set_outcome(c, CYNIC__OUT_CLOSED);
  conn_close(c, false, why);
}

static bool session_uses_endpoint(const cynic__session_t *s, const cynic__endpoint_t *e) {
  const cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  return c->attempt.endpoint == e && c->state != HS_CLOSING;
}

static void session_drain(cynic__session_t *s) {
  cynic__http_conn_t *c = cynic__container_of(s, cynic__http_conn_t, base);
  if (c->state == HS_IDLE)
    conn_close(c, false, "draining");
  /* others close after their current response (next_request) */
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
