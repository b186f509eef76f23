/*
 * src/proxy/http_upstream.c: HTTP mode's exchange with the upstream, one per
 * request (docs/design-http.md, steps 5 to 14): admission and the attempt
 * (upstream.c), a pooled connection or a new one (pool.c), the rewritten
 * request head (http_head.c) and the body streamed raw through the relay,
 * the response parsed strictly (http_msg.c) and judged (http_exchange.c),
 * its head rewritten for the client and its body released to it, and the
 * verdict for the breaker. The client side is http_session.c.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "http_conn.h"
#include "http_fallback.h"
#include "http_head.h"

static void request_out(cynic__http_conn_t *c);
static void connect_new(cynic__http_conn_t *c, cynic__endpoint_t *e);

/* The time until some breaker of u lets a probe through, in whole seconds
 * (at least 1); 0 when unknown (every one forced open). */
uint64_t cynic__hu_retry_after_s(const cynic__upstream_t *u) {
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

/* The breaker's event for a failed exchange, by cause. */
static cynic__event_t cause_event(const cynic__http_conn_t *c, cynic__hx_cause_t cause) {
  bool answered = c->x->first_byte_us != 0;
  switch (cause) {
  case CYNIC__HX_CONNECT_REFUSED:
    return CYNIC__EV_CONNECT_REFUSED;
  case CYNIC__HX_CONNECT_ERROR:
    return CYNIC__EV_CONNECT_ERROR;
  case CYNIC__HX_CONNECT_TIMEOUT:
    return CYNIC__EV_CONNECT_TIMEOUT;
  case CYNIC__HX_TLS_HANDSHAKE_TIMEOUT:
    return CYNIC__EV_TLS_HANDSHAKE_TIMEOUT;
  case CYNIC__HX_TLS_FAILED:
    return CYNIC__EV_TLS_FAILED;
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
  uc->reading = cynic__relay_detach(&c->relay);
  if (c->relay.down.held > 0)
    cynic__relay_drop_held(&c->relay.down);
  if (reuse && uc->deadline_ms == 0 && cynic__pool_give(uc, cynic__hs_now_ms(c)))
    return;
  uc->handle.tcp.data = NULL; /* a connect callback still to come finds nobody */
  cynic__upconn_close(uc, !reuse, cynic__upconn_free_cb);
}

/* True when the upstream connection can be detached now: no write of the
 * request in flight or waiting. */
static bool upstream_quiet(const cynic__http_conn_t *c) {
  return !c->req_head_out && cynic__relay_drained(&c->relay.up);
}

/* The exchange is over (response ended, or failed and answered): the slot
 * and the attempt are given back, the report made (unless `report` is false:
 * a fallback.secondary may take the request over, and the report waits for
 * the end of that exchange), and the upstream connection pooled or closed. */
static void exchange_end(cynic__http_conn_t *c, bool reuse, bool report) {
  cynic__upstream_t *u = cynic__hs_up(c);
  if (c->state == HS_QUEUED)
    cynic__admission_cancel(u, &c->x->waiter);
  cynic__attempt_release(&c->x->attempt);
  if (!c->x->req_done)
    c->close_after = true; /* the rest of the request was never read */
  if (c->uc != NULL) {
    if (upstream_quiet(c))
      upstream_release(c, reuse && c->x->req_done);
    else
      c->close_after = true; /* the request is still going out: close with the connection */
  }
  if (c->x->res_store != NULL)
    cynic__hs_res_reset(c); /* a failed exchange: its store goes back too */
  if (report)
    cynic__hs_report(c);
  cynic__attempt_end(&c->x->attempt);
  memset(&c->x->attempt, 0, sizeof c->x->attempt);
  if (c->has_slot) {
    c->has_slot = false;
    cynic__admission_leave(u); /* may start queued requests */
  }
}

void cynic__hu_exchange_end(cynic__http_conn_t *c, bool reuse) {
  exchange_end(c, reuse, true);
}

bool cynic__hu_client_stall(cynic__http_conn_t *c, cynic__hx_cause_t cause, uint64_t now_ms) {
  if (cause != CYNIC__HX_IDLE_TIMEOUT)
    return false;
  /* Silence during the exchange is the upstream's, unless cynic was waiting
   * on the client: for the rest of its request body (nothing of it held or
   * going out), or for it to take the response (bytes for it wait: back
   * pressure stopped reading the upstream). Neither is a fault. A body that
   * stops coming for the upstream's idle timeout is answered 408 (the
   * upstream holds a half request, the bulkhead a slot); a slow reader goes
   * on while it takes something within the listener's idle timeout (a slow
   * network is not an error), and is cut past it. */
  bool body_wanted = !c->x->req_done && !c->req_head_out && c->relay.up.held == 0 &&
                     cynic__relay_drained(&c->relay.up);
  bool client_behind = c->x->hx.response_started &&
                       (c->res_head_out > 0 || !cynic__relay_drained(&c->relay.down));
  if (!body_wanted && !client_behind)
    return false;
  if (client_behind) {
    uint64_t limit = cynic__config_ms(c->base.listener->cfg->idle_timeout_ns);
    if (c->x->stall_since_ms == 0 || c->relay.down.bytes != c->stall_bytes) {
      c->stall_bytes = c->relay.down.bytes; /* it took something: a new period */
      c->x->stall_since_ms = now_ms;
    }
    if (limit == 0 || now_ms - c->x->stall_since_ms < limit) {
      cynic__hx_io(&c->x->hx, now_ms); /* look again after another idle period */
      cynic__hs_arm(c);
      return true;
    }
  }
  cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_CLIENT_TIMEOUT, "listener",
                     c->base.listener->cfg->name, NULL,
                     body_wanted ? "request body" : "reading the response");
  cynic__hs_outcome(c, CYNIC__EV_CLIENT_TIMEOUT);
  c->x->pend = NULL;
  bool started = c->x->hx.response_started;
  cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE); /* the permit goes back unused */
  cynic__hu_exchange_end(c, false);
  if (c->state == HS_CLOSING)
    return true;
  if (started || c->res_head_out > 0) {
    cynic__hs_close(c, true, "client_timeout");
  } else {
    c->close_after = true;
    cynic__hs_answer(c, 408, "client_timeout", 0, false);
  }
  return true;
}

/* ---- fallback.secondary ---- */

/* Whether a fallback.secondary could take the request over after this
 * exchange (the listener's upstream names one, the request is still with
 * it): then the exchange's report waits. */
static bool secondary_possible(const cynic__http_conn_t *c) {
  return c->x->up == NULL && c->base.upstream->cfg->http.has_fallback &&
         c->base.upstream->cfg->http.fallback_secondary != NULL;
}

/* The exchange failed before anything of a response reached the client:
 * it ends (no reuse), and the client gets a fallback (http_fallback.c), or
 * cynic's `status` `reason` (Retry-After when retry_after > 0). The report
 * notes that answer, and waits when a fallback.secondary may take the
 * request over (that exchange's end makes it). */
static void answer_failure(cynic__http_conn_t *c, int status, const char *reason,
                           uint64_t retry_after) {
  cynic__hs_answer_note(c, status, reason);
  exchange_end(c, false, !secondary_possible(c));
  if (c->state != HS_CLOSING && !cynic__hs_fallback(c, reason))
    cynic__hs_answer(c, status, reason, retry_after, true);
}

static bool replayable(const cynic__http_xchg_t *x);

/* What one attempt left in x forgotten (its endpoint and permit, ended
 * already; its response), the request's own state kept: before the next
 * attempt, a retry's or a fallback.secondary's. */
static void attempt_forget(cynic__http_xchg_t *x) {
  memset(&x->attempt, 0, sizeof x->attempt);
  x->pend = NULL;
  x->res_head_done = x->reusable = x->uc_pooled = false;
  x->first_byte_us = 0;
  x->status = x->upstream_status = 0;
}

bool cynic__hu_secondary(cynic__http_conn_t *c, cynic__upstream_t *s) {
  cynic__http_xchg_t *x = c->x;
  uint64_t now = cynic__hs_now_ms(c), dl = x->hx.request_deadline_ms;
  /* One hop, a request that can be sent whole (none of its body sent yet,
   * or all of it kept), nothing of the exchange before still held. */
  bool whole = x->req_done ? replayable(x) : x->body_bytes == 0 && x->replay_len == 0;
  if (s == NULL || x->up != NULL || s == c->base.upstream || c->state == HS_CLOSING || !whole ||
      c->uc != NULL || c->has_slot || x->hx.response_started || c->res_head_out > 0)
    return false;
  if (cynic__hs_too_late(dl, now))
    return false;
  if (!cynic__upstream_available(s))
    return false; /* every breaker of the secondary is open too */
  bool queued = false;
  if (cynic__admission_enter(s, &x->waiter, cynic__hu_admitted, &queued) != 0)
    return false; /* its bulkhead is full */
  x->up = s;
  s->borrowed++;
  /* the exchange starts over with s's timeouts, within the request's deadline */
  cynic__hx_start(&x->hx, s->cfg, now);
  if (dl != 0)
    cynic__hx_shorten(&x->hx, dl);
  attempt_forget(x);
  x->answer = NULL;
  x->decision = NULL;
  x->has_outcome = false;
  x->connect_us = x->connected_us = 0;
  x->attempts = 0;
  x->tried = 0;
  x->backoff_ready = x->stale_retried = false;
  x->interims = 0;
  if (s->retry_budget != NULL)
    cynic_budget_deposit(s->retry_budget);
  if (queued) {
    c->state = HS_QUEUED;
    cynic__hs_arm(c);
    return true;
  }
  c->state = HS_CONNECTING;
  c->has_slot = true;
  cynic__hu_attempt(c);
  return true;
}

/* ---- retries (docs/design-http.md, "Retries") ---- */

static bool status_retries(const cynic__config_http_t *h, int status) {
  if (status < 500 || status > 599)
    return false;
  unsigned k = (unsigned)(status - 500);
  return (h->retry_on_status[k / 64] >> (k % 64)) & 1u;
}

static bool cause_retries(const cynic__config_http_t *h, cynic__hx_cause_t cause) {
  switch (cause) {
  case CYNIC__HX_CONNECT_REFUSED:
  case CYNIC__HX_CONNECT_ERROR:
  case CYNIC__HX_CONNECT_TIMEOUT:
  case CYNIC__HX_TLS_HANDSHAKE_TIMEOUT: /* no byte of the request went: like a connect */
  case CYNIC__HX_TLS_FAILED:
    return h->retry_on & CYNIC__RETRY_ON_CONNECT;
  case CYNIC__HX_UPSTREAM_RESET:
  case CYNIC__HX_UPSTREAM_CLOSED:
    return h->retry_on & CYNIC__RETRY_ON_RESET;
  case CYNIC__HX_FIRST_BYTE_TIMEOUT:
    return h->retry_on & CYNIC__RETRY_ON_FIRST_BYTE;
  case CYNIC__HX_BAD_RESPONSE:
    return h->retry_on & CYNIC__RETRY_ON_BAD_RESPONSE;
  default:
    return false;
  }
}

/* Whether what went out of the request can go out again: its head is
 * rebuilt from the parsed parts, its body only when kept whole so far. */
static bool replayable(const cynic__http_xchg_t *x) {
  return x->req.body == CYNIC__HTTP_BODY_NONE || (x->replay_keep && !x->replay_lost);
}

/* A failed attempt that retry.on names does not go again: why, counted in
 * /status and /metrics (retries[k]) and logged (summarised). */
static bool retry_refused(cynic__http_conn_t *c, cynic__retry_result_t k, const char *why) {
  cynic__upstream_t *u = cynic__hs_up(c);
  u->stats.retries[k]++;
  cynic__proxy_event(&u->counters, CYNIC__EV_RETRY_REFUSED, "upstream", u->cfg->name, NULL, why);
  return false;
}

/* The attempt failed with `cause`, or the upstream answered `status` (not 0:
 * a retry.on status, its head parsed and not passed on). When the request
 * may go again (retry.on, idempotent, nothing of a response reached the
 * client, attempts left, the body kept, time before the deadline, the
 * budget), this attempt ends here with its verdict for the breaker and the
 * next one starts after a jittered backoff, on another endpoint when there
 * is one; true then. */
static bool retry(cynic__http_conn_t *c, cynic__hx_cause_t cause, int status) {
  cynic__http_xchg_t *x = c->x;
  cynic__upstream_t *u = cynic__hs_up(c);
  const cynic__config_http_t *h = &u->cfg->http;
  if (!h->has_retry || x->attempt.endpoint == NULL ||
      (status != 0 ? !status_retries(h, status) : !cause_retries(h, cause)))
    return false;
  if (!x->idempotent || x->hx.response_started || c->res_head_out > 0 || x->interims > 0 ||
      (c->state != HS_EXCHANGE && c->state != HS_CONNECTING) ||
      x->attempts > h->retry_attempts || (c->uc != NULL && !upstream_quiet(c)))
    return false;
  if (!replayable(x))
    return retry_refused(c, CYNIC__RETRY_BODY_TOO_LARGE, "request body over retry.max_body");
  uint64_t now = cynic__hs_now_ms(c);
  if (!x->backoff_ready) {
    cynic_backoff_config_t bc;
    cynic_backoff_config_default(&bc);
    bc.kind = CYNIC_BACKOFF_DECORRELATED_JITTER; /* in min..max, never in step */
    bc.base_ns = h->retry_backoff_min_ns;
    bc.cap_ns = h->retry_backoff_max_ns;
    if (cynic_backoff_init(&x->backoff, &bc) != 0)
      return false;
    x->backoff_ready = true;
  }
  uint64_t delay = cynic_backoff_next(&x->backoff) / 1000000u;
  if (delay == 0)
    delay = 1;
  if (cynic__hs_too_late(x->hx.request_deadline_ms, now + delay))
    return retry_refused(c, CYNIC__RETRY_NO_TIME, "too close to the request deadline");
  if (u->retry_budget == NULL || cynic_budget_withdraw(u->retry_budget) != 0)
    return retry_refused(c, CYNIC__RETRY_NO_BUDGET, "retry budget spent");
  /* this attempt's verdict */
  bool fault;
  cynic__event_t ev;
  if (status != 0) {
    fault = x->hx.charged != CYNIC__HX_OK; /* outside expect.status */
    ev = CYNIC__EV_UNEXPECTED_STATUS;
  } else {
    fault = cynic__hx_fail(&x->hx, cause).fault;
    ev = cause_event(c, cause);
  }
  if (fault)
    cynic__attempt_fault(&x->attempt, ev, status != 0 ? NULL : cynic__hx_cause_name(cause));
  u->stats.retries[CYNIC__RETRY_RETRIED]++;
  cynic__proxy_event(&u->counters, CYNIC__EV_RETRY, "upstream", u->cfg->name, NULL,
                     cynic__event_key(ev));
  /* and its state gone: the connection closed, the slot kept */
  upstream_release(c, false);
  if (x->res_store != NULL)
    cynic__hs_res_reset(c);
  cynic__attempt_end(&x->attempt);
  attempt_forget(x);
  cynic__hx_retry(&x->hx, now);
  x->backoff_until_ms = now + delay;
  c->state = HS_BACKOFF;
  cynic__hs_arm(c);
  return true;
}

/* The backoff is over: the next attempt. */
void cynic__hu_retry_now(cynic__http_conn_t *c) {
  c->state = HS_CONNECTING;
  cynic__hu_attempt(c);
}

/* The exchange failed with `cause` (hx decides what the client gets). */
void cynic__hu_fail(cynic__http_conn_t *c, cynic__hx_cause_t cause) {
  if (retry(c, cause, 0))
    return;
  c->x->pend = NULL; /* a head never sent: the client may still get cynic's answer */
  cynic__hx_outcome_t o = cynic__hx_fail(&c->x->hx, cause);
  cynic__event_t ev = cause_event(c, cause);
  if (o.fault && c->x->attempt.endpoint != NULL) {
    cynic__attempt_fault(&c->x->attempt, ev,
                         cause == CYNIC__HX_TLS_FAILED ? cynic__tls_last_error()
                                                       : cynic__hx_cause_name(cause));
    cynic__hs_outcome(c, (int)ev);
  } else if (cause == CYNIC__HX_LOCAL_ERROR) {
    cynic__hs_outcome(c, CYNIC__EV_LOCAL_ERROR);
    cynic__proxy_event(&cynic__hs_up(c)->counters, CYNIC__EV_LOCAL_ERROR, "upstream",
                       cynic__hs_up(c)->cfg->name, NULL, NULL);
  } else {
    cynic__hs_outcome(c, o.reset ? CYNIC__OUT_RESET : (int)ev);
  }
  c->x->reusable = false;
  if (cause == CYNIC__HX_CLIENT_GONE) {
    cynic__hs_close(c, true, "client_gone");
    return;
  }
  if (o.reset) {
    cynic__hu_exchange_end(c, false);
    cynic__hs_close(c, true, o.reason);
    return;
  }
  answer_failure(c, o.status, o.reason, 0);
}

void cynic__hu_response_end(cynic__http_conn_t *c) {
  bool success = cynic__hx_response_end(&c->x->hx);
  if (success)
    cynic__attempt_success(&c->x->attempt);
  cynic__hs_capture_end(c, success);
  cynic__http_msg_t *m = &c->x->res;
  if (!m->keep_alive || m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
    c->x->reusable = false;
  if (m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
    c->close_after = true; /* the client knows the end by the close */
  if (c->relay.down.held > 0) {
    c->x->reusable = false; /* bytes nobody asked for: never reuse */
    cynic__relay_drop_held(&c->relay.down);
  }
  cynic__hs_res_reset(c);
  c->state = HS_FINISHING;
  c->idle_since_ms = cynic__hs_now_ms(c);
  c->stall_bytes = c->relay.down.bytes;
  cynic__hu_exchange_end(c, c->x->reusable);
  if (c->state == HS_CLOSING)
    return;
  if (!c->res_head_out && cynic__relay_drained(&c->relay.down))
    cynic__hs_next_request(c);
  else
    cynic__hs_arm(c);
}

static void response_head(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->x->res;
  size_t ctlen = 0;
  const char *ct = cynic__http_msg_find(m, "content-type", &ctlen);
  bool has_body = cynic__http_response_has_body(c->x->req.method, m->status);
  int64_t cl = m->body == CYNIC__HTTP_BODY_LENGTH ? (int64_t)m->content_length
               : has_body && m->body != CYNIC__HTTP_BODY_NONE ? -1
                                                               : 0;
  if (m->status < 100 || m->status > 599) {
    cynic__hu_fail(c, CYNIC__HX_BAD_RESPONSE); /* RFC 9110 15: three digits, 1xx to 5xx */
    return;
  }
  bool interim = cynic__http_status_interim(m->status);
  if (!interim)
    c->x->upstream_status = m->status;
  if (m->body == CYNIC__HTTP_BODY_CHUNKED && c->x->req.version_minor == 0) {
    /* RFC 9112 6.1: no Transfer-Encoding in answer to an HTTP/1.0 request
     * (cynic sends a 1.0 client's request as 1.0): its client cannot read
     * chunks, and cynic forwards bodies raw */
    cynic__hu_fail(c, CYNIC__HX_BAD_RESPONSE);
    return;
  }
  cynic__hx_cause_t cause =
      cynic__hx_response_head(&c->x->hx, m->status, has_body, ct, ctlen, cl, cynic__hs_now_ms(c));
  if (cause == CYNIC__HX_UNEXPECTED_TYPE || cause == CYNIC__HX_RESPONSE_TOO_LARGE) {
    cynic__hu_fail(c, cause);
    return;
  }
  if (!interim && retry(c, CYNIC__HX_OK, m->status))
    return; /* a retry.on status: not passed on, the request goes again */
  if (cause == CYNIC__HX_UNEXPECTED_STATUS && cynic__hs_fallback_ready(c)) {
    cynic__hu_fail(c, cause); /* replaced by the fallback, not forwarded */
    return;
  }
  if (cause == CYNIC__HX_UNEXPECTED_STATUS) {
    cynic__event_t ev = CYNIC__EV_UNEXPECTED_STATUS;
    cynic__attempt_fault(&c->x->attempt, ev, NULL);
    cynic__hs_outcome(c, (int)ev);
  }
  if (m->upgrade) { /* 101 or a 2xx to CONNECT: never asked for (501 first) */
    cynic__hu_fail(c, CYNIC__HX_BAD_RESPONSE);
    return;
  }
  if (!interim) {
    c->x->status = m->status;
    c->x->res_head_done = true;
    if (!m->keep_alive || m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
      c->x->reusable = false;
    if (m->body == CYNIC__HTTP_BODY_UNTIL_EOF)
      c->close_after = true;
    cynic__hs_capture_begin(c);
  }
  /* The head for the client, rebuilt from the parsed parts. */
  cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS + 1];
  size_t n = cynic__hs_fields(m, fields);
  if (c->x->up != NULL) /* a fallback.secondary's answer says so */
    fields[n++] = (cynic__http_hfield_t){.name = "Cynic-Fallback", .nlen = 14,
                                         .value = "secondary", .vlen = 9};
  cynic__http_head_t h = {
      .reason = cynic__http_msg_at(m, m->reason),
      .reason_len = m->reason.len,
      .status = m->status,
      .minor = m->version_minor,
      .fields = fields,
      .nfields = n,
  };
  bool close = !interim && (c->close_after || !c->x->req.keep_alive || c->client_eof ||
                            c->base.listener->proxy->draining);
  if (close)
    c->close_after = true;
  size_t cap = (size_t)cynic__hs_up(c)->cfg->http.max_header_bytes + 256;
  cynic__http_out_t o = cynic__hs_scratch(cap + CYNIC__HS_COPY_BODY);
  int rc = o.p != NULL ? cynic__http_write_response(&o, &h, close, c->x->req.version_minor)
                       : CYNIC_ENOMEM;
  if (rc != 0) {
    cynic__hu_fail(c, rc == CYNIC_EINVAL ? CYNIC__HX_BAD_RESPONSE : CYNIC__HX_LOCAL_ERROR);
    return;
  }
  if (!interim) {
    /* held back until the body bytes that came with it are behind it */
    c->x->pend = o.p;
    c->x->pend_len = o.len;
    c->x->pend_cap = o.len + CYNIC__HS_COPY_BODY;
    cynic__hs_arm(c);
    return;
  }
  bool queued;
  if (cynic__hs_send(c, o.p, o.len, true, false, &queued) != 0) {
    cynic__hs_close(c, true, "client_write_error");
    return;
  }
  cynic__hx_response_started(&c->x->hx);
  cynic__hs_arm(c);
}

/* Writes the held-back response head (and the body bytes copied behind
 * it): from now on the response has started. False when the connection
 * closed. */
static bool pend_flush(cynic__http_conn_t *c) {
  if (c->x->pend == NULL)
    return true;
  const char *p = c->x->pend;
  c->x->pend = NULL;
  bool queued;
  if (cynic__hs_send(c, p, c->x->pend_len, true, false, &queued) != 0) {
    cynic__hs_close(c, true, "client_write_error");
    return false;
  }
  cynic__hx_response_started(&c->x->hx);
  return true;
}

static void response_data(cynic__http_conn_t *c);

void cynic__hu_response_data(cynic__http_conn_t *c) {
  response_data(c);
  if (c->state == HS_EXCHANGE)
    pend_flush(c); /* what came so far goes out */
}

/* Parses what the upstream sent: heads are skipped (rewritten copies go
 * out), body bytes copied behind a held-back head or released to the
 * client. */
static void response_data(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.down;
  while (c->state == HS_EXCHANGE) {
    uv_buf_t spans[2];
    unsigned int ns = cynic__relay_held(d, spans);
    size_t len = ns > 0 ? spans[0].len : 0;
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->x->res, ns > 0 ? spans[0].base : "", len, &used);
    if (rc < 0) {
      cynic__hu_fail(c, CYNIC__HX_BAD_RESPONSE);
      return;
    }
    if (!c->x->res_head_done) {
      if (cynic__relay_skip(d, used) != 0) {
        cynic__hu_fail(c, CYNIC__HX_LOCAL_ERROR);
        return;
      }
      if (rc == CYNIC__HTTP_MORE)
        return; /* all of it was head: more to come */
      if (rc == CYNIC__HTTP_HEAD) {
        response_head(c);
        continue;
      }
      if (rc == CYNIC__HTTP_DONE) { /* an interim response ended: the final one follows */
        if (++c->x->interims > CYNIC__HS_MAX_INTERIM) {
          cynic__hu_fail(c, CYNIC__HX_BAD_RESPONSE); /* 1xx without end: each is a write */
          return;
        }
        cynic__http_msg_next(&c->x->res);
        cynic__http_msg_begin(&c->x->res, c->x->res_store, c->x->res_store_cap);
        continue;
      }
      return; /* BODY before a final head cannot happen */
    }
    if (used > 0) {
      if (cynic__hx_response_body(&c->x->hx, used, cynic__hs_now_ms(c)) != CYNIC__HX_OK) {
        cynic__hu_fail(c, CYNIC__HX_RESPONSE_TOO_LARGE);
        return;
      }
      if (c->x->pend != NULL && c->x->pend_len + used <= c->x->pend_cap && d->len == d->held) {
        memcpy(c->x->pend + c->x->pend_len, spans[0].base, used); /* behind its head */
        c->x->pend_len += used;
        cynic__relay_skip(d, used);
      } else {
        if (!pend_flush(c))
          return;
        cynic__relay_release(d, used);
      }
      if (c->state != HS_EXCHANGE)
        return;
    }
    if (rc == CYNIC__HTTP_DONE) {
      if (pend_flush(c))
        cynic__hu_response_end(c);
      return;
    }
    if (used == 0 || cynic__relay_held(d, spans) == 0)
      return;
  }
}

/* The request's body is refused part way (bad framing, over the limit):
 * no fault, the exchange ends, and the client gets `status` if nothing of the
 * response reached it yet, a reset otherwise; the connection closes. */
static void refuse_body(cynic__http_conn_t *c, int status, const char *reason, const char *rule) {
  cynic__hs_outcome(c, CYNIC__EV_BAD_REQUEST);
  cynic__proxy_event(&c->base.listener->counters, CYNIC__EV_BAD_REQUEST, "listener",
                     c->base.listener->cfg->name, NULL, rule);
  cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE);
  c->close_after = true;
  cynic__hu_exchange_end(c, false);
  if (c->state == HS_CLOSING)
    return;
  if (c->x->hx.response_started || c->res_head_out)
    cynic__hs_close(c, true, reason);
  else
    cynic__hs_answer(c, status, reason, 0, false);
}

/* Keeps a copy of body bytes going out, for a retry, up to retry.max_body;
 * past it (or without memory) the request can no longer go again. */
static void keep_body(cynic__http_conn_t *c, const char *p, size_t n) {
  cynic__http_xchg_t *x = c->x;
  uint64_t max = cynic__hs_up(c)->cfg->http.retry_max_body;
  size_t want = x->replay_len + n;
  if (want > max) {
    x->replay_lost = true;
    free(x->replay);
    x->replay = NULL;
    x->replay_len = x->replay_cap = 0;
    return;
  }
  if (want > x->replay_cap) {
    /* A declared length is the whole body (request_plan gave up on one
     * over retry.max_body already): one allocation, nothing copied again as
     * it grows. A chunked body's size is not known: it doubles. */
    size_t cap =
        x->req.body == CYNIC__HTTP_BODY_LENGTH ? (size_t)x->req.content_length : 2 * x->replay_cap;
    if (cap < want)
      cap = want < 4096 ? 4096 : want;
    if (cap > max)
      cap = (size_t)max;
    char *r = realloc(x->replay, cap);
    if (r == NULL) {
      x->replay_lost = true;
      return;
    }
    x->replay = r;
    x->replay_cap = cap;
  }
  memcpy(x->replay + x->replay_len, p, n);
  x->replay_len += n;
}

/* Streams the request's body (already held) to the upstream. */
void cynic__hu_request_body(cynic__http_conn_t *c) {
  cynic__relay_dir_t *d = &c->relay.up;
  uint64_t max = c->base.listener->cfg->max_request_body;
  while (!c->x->req_done && c->state == HS_EXCHANGE) {
    uv_buf_t spans[2];
    unsigned int ns = cynic__relay_held(d, spans);
    size_t used = 0;
    int rc = cynic__http_msg_feed(&c->x->req, ns > 0 ? spans[0].base : "", ns > 0 ? spans[0].len : 0,
                                  &used);
    if (rc < 0) { /* a bad chunk: the client's fault, not the endpoint's */
      refuse_body(c, 400, "bad_request", c->x->req.error_reason);
      return;
    }
    c->x->body_bytes += used;
    if (max > 0 && c->x->body_bytes > max) {
      refuse_body(c, 413, "request_body_too_large", "body over max_request_body");
      return;
    }
    if (used > 0) {
      if (c->x->replay_keep && !c->x->replay_lost)
        keep_body(c, spans[0].base, used);
      cynic__hx_io(&c->x->hx, cynic__hs_now_ms(c));
      cynic__relay_release(d, used);
      if (c->state != HS_EXCHANGE)
        return;
    }
    if (rc == CYNIC__HTTP_DONE) {
      c->x->req_done = true;
      cynic__hx_request_sent(&c->x->hx, cynic__hs_now_ms(c));
      cynic__hs_arm(c);
      return;
    }
    if (used == 0 || cynic__relay_held(d, spans) == 0)
      return;
  }
}

/* deadline_header: the client's field (if any) out of fields[0..n), the
 * time left before the request's deadline in its place (less a reserve for
 * the answer's way back), in `left`. The new count. */
static size_t deadline_field(cynic__http_conn_t *c, cynic__http_hfield_t *fields, size_t n,
                             char left[32]) {
  const char *name = cynic__hs_up(c)->cfg->http.deadline_header;
  size_t nlen = strlen(name), k = 0;
  for (size_t i = 0; i < n; i++)
    if (fields[i].nlen != nlen || strncasecmp(fields[i].name, name, nlen) != 0)
      fields[k++] = fields[i];
  uint64_t d = c->x->hx.request_deadline_ms, now = cynic__hs_now_ms(c);
  if (d == 0)
    return k; /* no deadline: none sent */
  uint64_t ms = d > now + CYNIC__HS_DEADLINE_RESERVE_MS ? d - now - CYNIC__HS_DEADLINE_RESERVE_MS : 0;
  int len = snprintf(left, 32, "%" PRIu64, ms);
  fields[k++] = (cynic__http_hfield_t){.name = name, .nlen = nlen, .value = left,
                                       .vlen = (size_t)len};
  return k;
}

/* The upstream connection is ready (connected or pooled): the request goes
 * out, and its response parser is set up. */
static void request_out(cynic__http_conn_t *c) {
  cynic__http_msg_t *m = &c->x->req;
  const cynic__config_listener_t *lc = c->base.listener->cfg;
  const cynic__config_upstream_t *uc = cynic__hs_up(c)->cfg;
  c->x->connected_us = cynic__hs_now_us();
  cynic__relay_attach(&c->relay, cynic__upconn_stream(c->uc), c->uc->reading);
  c->uc->reading = true;
  cynic__hx_connected(&c->x->hx, cynic__hs_now_ms(c));
  c->state = HS_EXCHANGE;
  /* the response's parser */
  cynic__http_msg_limits_t rl = {.max_head = (size_t)uc->http.max_header_bytes,
                                 .max_fields = CYNIC__HTTP_MSG_MAX_FIELDS};
  cynic__http_msg_init(&c->x->res, CYNIC__HTTP_RESPONSE, &rl);
  c->x->res_store_cap = cynic__http_msg_store_size(&rl);
  c->x->res_store = cynic__hs_store_take(c->x->res_store_cap);
  if (c->x->res_store == NULL ||
      cynic__http_msg_begin(&c->x->res, c->x->res_store, c->x->res_store_cap) != 0) {
    cynic__hu_fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  cynic__http_msg_expect(&c->x->res, m->method);
  c->x->res_head_done = false;
  /* the request head, rebuilt */
  cynic__http_hfield_t fields[CYNIC__HTTP_MSG_MAX_FIELDS + 1];
  size_t n = cynic__hs_fields(m, fields);
  char left[32];
  if (uc->http.deadline_header != NULL)
    n = deadline_field(c, fields, n, left);
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
  char ip[INET6_ADDRSTRLEN];
  cynic__http_client_ip(c->base.ip, ip);
  cynic__http_fwd_t f = {
      .forwarded = lc->forwarded,
      .client_ip = ip,
      .request_id_header = lc->request_id_header,
      .request_id = c->x->rid_made ? c->x->rid : NULL,
      .opts = &c->x->req_opts,
  };
  size_t cap = (size_t)lc->max_request_head + 512 + RID_MAX + INET6_ADDRSTRLEN;
  cynic__http_out_t o = cynic__hs_scratch(cap);
  if (o.p == NULL || cynic__http_write_request(&o, &h, &f) != 0) {
    cynic__hu_fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  bool queued;
  if (cynic__hs_send(c, o.p, o.len, false, false, &queued) != 0 ||
      (c->x->replay_len > 0 &&
       cynic__hs_send(c, c->x->replay, c->x->replay_len, false, false, &queued) != 0)) {
    cynic__hu_fail(c, CYNIC__HX_UPSTREAM_RESET);
    return;
  }
  cynic__hx_io(&c->x->hx, cynic__hs_now_ms(c));
  if (c->x->req_done)
    cynic__hx_request_sent(&c->x->hx, cynic__hs_now_ms(c)); /* no body: the head was all */
  else
    cynic__hu_request_body(c);
  if (c->state == HS_EXCHANGE)
    cynic__hs_arm(c);
}

static void on_connect(cynic__upconn_t *uc, int status) {
  if (uc->handle.tcp.data == NULL)
    return; /* given up on before the connect ended (upstream_release) */
  cynic__http_conn_t *c = cynic__hs_of_relay(uc->handle.tcp.data);
  if (c->state != HS_CONNECTING || c->uc != uc)
    return;
  if (status == CYNIC__UPCONN_HANDSHAKING) {
    /* Connected: the handshake's own deadline replaces the connect's. */
    c->x->hx.phase_deadline_ms = uc->deadline_ms;
    cynic__hs_arm(c);
    return;
  }
  if (status == CYNIC__TLS_EVERIFY || status == CYNIC__TLS_EPROTOCOL) {
    cynic__hu_fail(c, CYNIC__HX_TLS_FAILED);
    return;
  }
  if (status != 0) {
    cynic__hu_fail(c, status == UV_ECONNREFUSED ? CYNIC__HX_CONNECT_REFUSED : CYNIC__HX_CONNECT_ERROR);
    return;
  }
  uint64_t t = cynic__hs_now_us();
  cynic__metrics_connected(cynic__hs_up(c), t >= c->x->connect_us ? t - c->x->connect_us : 0);
  request_out(c);
}

/* A slot is held: pick an endpoint, then a pooled connection or a new one. */
void cynic__hu_attempt(cynic__http_conn_t *c) {
  cynic__upstream_t *u = cynic__hs_up(c);
  int rc = cynic__attempt_start_avoid(u, &c->x->attempt, c->x->tried);
  if (rc != 0) {
    cynic__event_t ev = rc == CYNIC_EOPEN ? CYNIC__EV_BREAKER_OPEN : CYNIC__EV_UNRESOLVED;
    cynic__hs_outcome(c, (int)ev);
    cynic__proxy_event(&u->counters, ev, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE);
    answer_failure(c, 503, cynic__event_key(ev),
                   rc == CYNIC_EOPEN ? cynic__hu_retry_after_s(u) : 1);
    return;
  }
  cynic__endpoint_t *e = c->x->attempt.endpoint;
  size_t idx = (size_t)(e - u->endpoints);
  c->x->tried |= UINT64_C(1) << idx;
  if (c->x->attempts < sizeof c->x->order)
    c->x->order[c->x->attempts++] = (uint8_t)idx;
  c->x->decision = cynic_breaker_state_name(c->x->attempt.permit.state);
  uint64_t now = cynic__hs_now_ms(c);
  cynic__hx_connecting(&c->x->hx, now);
  c->x->reusable = true;
  /* A request that can go again survives a stale connection
   * (cynic__hu_stale_retry), so only the others pay for the check: one with
   * a body, or one that is not idempotent (a POST goes again only when none
   * of it was sent, and the check is how cynic knows). */
  cynic__upconn_t *pooled = cynic__pool_take(e, now, c->x->req.body != CYNIC__HTTP_BODY_NONE ||
                                                         !c->x->idempotent);
  if (pooled != NULL) {
    c->uc = pooled;
    c->x->uc_pooled = true;
    pooled->handle.tcp.data = &c->relay;
    request_out(c);
    return;
  }
  connect_new(c, e);
}

/* A new connection to `e` for the current request. */
static void connect_new(cynic__http_conn_t *c, cynic__endpoint_t *e) {
  c->x->uc_pooled = false;
  c->uc = cynic__upconn_new();
  if (c->uc == NULL) {
    cynic__hu_fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  c->state = HS_CONNECTING;
  c->x->connect_us = cynic__hs_now_us();
  c->uc->http = true; /* ALPN http/1.1 when the upstream speaks TLS */
  int rc = cynic__upconn_connect(c->uc, c->client.tcp.loop, e, &c->relay, on_connect);
  if (rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOBUFS || rc == UV_ENOMEM) {
    cynic__hu_fail(c, CYNIC__HX_LOCAL_ERROR);
    return;
  }
  if (rc != 0) {
    cynic__hu_fail(c, rc == UV_ECONNREFUSED ? CYNIC__HX_CONNECT_REFUSED : CYNIC__HX_CONNECT_ERROR);
    return;
  }
  cynic__hs_arm(c);
}

bool cynic__hu_stale_retry(cynic__http_conn_t *c) {
  /* The keep-alive race: an upstream may close an idle connection just as
   * cynic sends on it. Nothing of a response came, the request has no body
   * (its head is rebuilt from the parsed parts): it goes once more, on a new
   * connection to the same endpoint, with the same slot and permit; not a
   * fault (the connection was stale, not the endpoint down). */
  if (!c->x->uc_pooled || c->x->stale_retried || c->x->first_byte_us != 0 || c->x->res_head_done ||
      !c->x->idempotent || !replayable(c->x) || c->state != HS_EXCHANGE || c->req_head_out ||
      !cynic__relay_drained(&c->relay.up))
    return false;
  c->x->stale_retried = true;
  c->x->attempt.endpoint->pool_discarded++;
  upstream_release(c, false); /* closed with a reset */
  cynic__hs_res_reset(c);
  cynic__hx_connecting(&c->x->hx, cynic__hs_now_ms(c));
  connect_new(c, c->x->attempt.endpoint);
  return true;
}

void cynic__hu_admitted(cynic__waiter_t *w, int status) {
  cynic__http_conn_t *c = cynic__container_of(w, cynic__http_xchg_t, waiter)->c;
  if (c->state != HS_QUEUED)
    return;
  c->state = HS_CONNECTING; /* not queued any more, not yet connecting */
  if (status != 0) {
    cynic__upstream_t *u = cynic__hs_up(c);
    cynic__hs_outcome(c, CYNIC__EV_QUEUE_TIMEOUT);
    cynic__proxy_event(&u->counters, CYNIC__EV_QUEUE_TIMEOUT, "upstream", u->cfg->name, NULL, NULL);
    cynic__hx_fail(&c->x->hx, CYNIC__HX_CLIENT_GONE);
    answer_failure(c, 503, "queue_timeout", 0);
    return;
  }
  c->has_slot = true;
  cynic__hu_attempt(c);
}
