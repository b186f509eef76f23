/*
 * src/proxy/http_exchange.c: one HTTP request's exchange, as decisions
 * without I/O (contract in http_exchange.h).
 */
#include "http_exchange.h"

#include <string.h>
#include <strings.h>

#include "http_msg.h"

static const struct {
  const char *name;
  int status;  /* before any response byte went out */
  bool fault;  /* for the breaker */
} causes[CYNIC__HX_CAUSE_COUNT] = {
    [CYNIC__HX_OK] = {"ok", 0, false},
    [CYNIC__HX_CONNECT_REFUSED] = {"connect_refused", 502, true},
    [CYNIC__HX_CONNECT_ERROR] = {"connect_error", 502, true},
    [CYNIC__HX_CONNECT_TIMEOUT] = {"connect_timeout", 504, true},
    [CYNIC__HX_TLS_HANDSHAKE_TIMEOUT] = {"tls_handshake_timeout", 504, true},
    [CYNIC__HX_TLS_FAILED] = {"tls_failed", 502, true},
    [CYNIC__HX_FIRST_BYTE_TIMEOUT] = {"first_byte_timeout", 504, true},
    [CYNIC__HX_IDLE_TIMEOUT] = {"idle_timeout", 504, true},
    [CYNIC__HX_REQUEST_TIMEOUT] = {"request_timeout", 504, true},
    [CYNIC__HX_UPSTREAM_RESET] = {"upstream_reset", 502, true},
    [CYNIC__HX_UPSTREAM_CLOSED] = {"upstream_closed", 502, true},
    [CYNIC__HX_BAD_RESPONSE] = {"bad_response", 502, true},
    [CYNIC__HX_RESPONSE_TOO_LARGE] = {"response_too_large", 502, true},
    [CYNIC__HX_UNEXPECTED_STATUS] = {"unexpected_status", 502, true},
    [CYNIC__HX_UNEXPECTED_TYPE] = {"unexpected_content_type", 502, true},
    [CYNIC__HX_LOCAL_ERROR] = {"local_error", 502, false},
    [CYNIC__HX_CLIENT_GONE] = {"client_gone", 0, false},
};

const char *cynic__hx_cause_name(cynic__hx_cause_t cause) {
  return (unsigned)cause < CYNIC__HX_CAUSE_COUNT ? causes[cause].name : "unknown";
}

void cynic__hx_start(cynic__hx_t *x, const cynic__config_upstream_t *cfg, uint64_t now_ms) {
  memset(x, 0, sizeof *x);
  x->cfg = cfg;
  x->phase = CYNIC__HX_ADMITTING;
  if (cfg->request_timeout_ns > 0)
    x->request_deadline_ms = now_ms + cynic__config_ms(cfg->request_timeout_ns);
  x->last_io_ms = now_ms;
}

void cynic__hx_shorten(cynic__hx_t *x, uint64_t deadline_ms) {
  if (x->request_deadline_ms == 0 || deadline_ms < x->request_deadline_ms)
    x->request_deadline_ms = deadline_ms;
}

void cynic__hx_retry(cynic__hx_t *x, uint64_t now_ms) {
  x->phase = CYNIC__HX_ADMITTING; /* only the request deadline runs until the next attempt */
  x->phase_deadline_ms = 0;
  x->response_bytes = 0;
  x->response_started = false;
  x->charged = CYNIC__HX_OK;
  x->last_io_ms = now_ms;
}

void cynic__hx_connecting(cynic__hx_t *x, uint64_t now_ms) {
  x->phase = CYNIC__HX_CONNECTING;
  x->endpoint_involved = true;
  x->phase_deadline_ms = now_ms + cynic__config_ms(x->cfg->connect_timeout_ns);
}

void cynic__hx_connected(cynic__hx_t *x, uint64_t now_ms) {
  x->phase = CYNIC__HX_SENDING;
  x->endpoint_involved = true; /* a pooled connection skips connecting */
  x->phase_deadline_ms = 0;
  x->last_io_ms = now_ms;
}

void cynic__hx_io(cynic__hx_t *x, uint64_t now_ms) {
  x->last_io_ms = now_ms;
}

void cynic__hx_request_sent(cynic__hx_t *x, uint64_t now_ms) {
  x->last_io_ms = now_ms;
  if (x->phase != CYNIC__HX_SENDING)
    return; /* the response began first (an early answer): it goes on */
  x->phase = CYNIC__HX_WAITING;
  uint64_t fb = x->cfg->first_byte_timeout_ns;
  x->phase_deadline_ms = fb > 0 ? now_ms + cynic__config_ms(fb) : 0;
}

bool cynic__hx_media_type_is(const char *ct, size_t len, const char *want) {
  while (len > 0 && (*ct == ' ' || *ct == '\t'))
    ct++, len--;
  size_t n = 0;
  while (n < len && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
    n++;
  for (size_t k = n; k < len && ct[k] != ';'; k++)
    if (ct[k] != ' ' && ct[k] != '\t')
      return false; /* "application/json x": not one media type */
  return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

cynic__hx_cause_t cynic__hx_response_head(cynic__hx_t *x, int status, bool has_body,
                                          const char *content_type, size_t ctlen,
                                          int64_t content_length, uint64_t now_ms) {
  x->last_io_ms = now_ms;
  if (cynic__http_status_interim(status)) {
    /* Interim: the upstream is alive; the final head follows under the idle
     * timeout rather than the first-byte one. */
    x->phase_deadline_ms = 0;
    return CYNIC__HX_OK;
  }
  x->phase = CYNIC__HX_RECEIVING;
  x->phase_deadline_ms = 0;
  const cynic__config_http_t *h = &x->cfg->http;
  if (has_body && h->expect_content_type != NULL &&
      (content_type == NULL || !cynic__hx_media_type_is(content_type, ctlen,
                                                          h->expect_content_type)))
    return CYNIC__HX_UNEXPECTED_TYPE; /* the HTML login page where JSON was expected */
  if (has_body && h->max_response_bytes > 0 && content_length >= 0 &&
      (uint64_t)content_length > h->max_response_bytes)
    return CYNIC__HX_RESPONSE_TOO_LARGE; /* said so up front: refused before a byte */
  bool expected = h->has_expect ? status >= h->expect_status_min && status <= h->expect_status_max
                                : status < 500;
  if (!expected) {
    x->charged = CYNIC__HX_UNEXPECTED_STATUS;
    return CYNIC__HX_UNEXPECTED_STATUS;
  }
  return CYNIC__HX_OK;
}

void cynic__hx_response_started(cynic__hx_t *x) {
  x->response_started = true;
}

cynic__hx_cause_t cynic__hx_response_body(cynic__hx_t *x, size_t n, uint64_t now_ms) {
  x->last_io_ms = now_ms;
  x->response_bytes += n;
  uint64_t max = x->cfg->http.max_response_bytes;
  return max > 0 && x->response_bytes > max ? CYNIC__HX_RESPONSE_TOO_LARGE : CYNIC__HX_OK;
}

bool cynic__hx_response_end(cynic__hx_t *x) {
  x->phase = CYNIC__HX_DONE;
  return x->charged == CYNIC__HX_OK;
}

/* The idle deadline while bytes are expected either way. */
static uint64_t idle_deadline(const cynic__hx_t *x) {
  return x->last_io_ms + cynic__config_ms(x->cfg->idle_timeout_ns);
}

/* The phase's own deadline (0: none) and the cause when it passes. */
static uint64_t phase_deadline(const cynic__hx_t *x, cynic__hx_cause_t *cause) {
  switch (x->phase) {
  case CYNIC__HX_CONNECTING:
    *cause = CYNIC__HX_CONNECT_TIMEOUT;
    return x->phase_deadline_ms;
  case CYNIC__HX_WAITING:
    if (x->phase_deadline_ms != 0) {
      *cause = CYNIC__HX_FIRST_BYTE_TIMEOUT;
      return x->phase_deadline_ms;
    }
    *cause = CYNIC__HX_IDLE_TIMEOUT;
    return idle_deadline(x);
  case CYNIC__HX_SENDING:
  case CYNIC__HX_RECEIVING:
    *cause = CYNIC__HX_IDLE_TIMEOUT;
    return idle_deadline(x);
  default: /* ADMITTING: upstream.c times the queue; DONE: nothing */
    *cause = CYNIC__HX_OK;
    return 0;
  }
}

uint64_t cynic__hx_next_deadline(const cynic__hx_t *x) {
  if (x->phase == CYNIC__HX_DONE)
    return 0;
  cynic__hx_cause_t cause;
  uint64_t p = phase_deadline(x, &cause), r = x->request_deadline_ms;
  if (p == 0 || (r != 0 && r < p))
    return r;
  return p;
}

cynic__hx_cause_t cynic__hx_expired(const cynic__hx_t *x, uint64_t now_ms) {
  if (x->phase == CYNIC__HX_DONE)
    return CYNIC__HX_OK;
  cynic__hx_cause_t cause;
  uint64_t p = phase_deadline(x, &cause), r = x->request_deadline_ms;
  bool r_due = r != 0 && now_ms >= r, p_due = p != 0 && now_ms >= p;
  if (r_due && (!p_due || r <= p))
    return CYNIC__HX_REQUEST_TIMEOUT;
  return p_due ? cause : CYNIC__HX_OK;
}

cynic__hx_outcome_t cynic__hx_fail(cynic__hx_t *x, cynic__hx_cause_t cause) {
  if ((unsigned)cause >= CYNIC__HX_CAUSE_COUNT || cause == CYNIC__HX_OK)
    cause = CYNIC__HX_LOCAL_ERROR; /* a caller's mistake must still end the exchange */
  cynic__hx_outcome_t o = {.reason = causes[cause].name, .fault = causes[cause].fault};
  if (cause == CYNIC__HX_REQUEST_TIMEOUT)
    o.fault = x->endpoint_involved; /* spent in the queue: not the endpoint's doing */
  if (x->charged != CYNIC__HX_OK)
    o.fault = true;
  if (cause != CYNIC__HX_CLIENT_GONE) {
    if (x->response_started)
      o.reset = true; /* a cut response must not look whole */
    else
      o.status = causes[cause].status;
  }
  x->phase = CYNIC__HX_DONE;
  return o;
}
