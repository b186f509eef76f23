/*
 * src/proxy/http_exchange.h: one HTTP request's exchange with its upstream,
 * as decisions without I/O (docs/design-http.md, "The socket-free core").
 *
 * The session code (http_session.c, http_upstream.c) does the reading and
 * writing and tells the exchange what happened, with the loop's time in
 * milliseconds; the exchange says what that means: which deadline is next,
 * which timeout fired, whether a response head is forwarded or replaced by
 * cynic's own answer, whether a body has grown past its limit, what the
 * client gets when something fails (a status if no byte of the response has
 * reached it, a reset otherwise), and what the breaker hears. It keeps no
 * socket and reads no clock, so tests/unit/proxy/test_http_exchange.c drives
 * every path by hand.
 *
 * Phases (cynic__hx_phase_t) and the timeouts that run in each:
 *
 *   ADMITTING   waiting for a bulkhead slot   request (queue_timeout: upstream.c)
 *   CONNECTING  connecting to an endpoint     request, connect
 *   SENDING     request head and body out     request, idle
 *   WAITING     request sent, no answer yet   request, first_byte
 *   RECEIVING   response head passed on       request, idle
 *   DONE        the response ended (or the exchange failed)
 *
 * Timeouts are the upstream's: timeouts.connect, timeouts.first_byte (0 =
 * off), timeouts.idle, timeouts.request (0 = off; the whole exchange from
 * the end of the request head, queueing included).
 */
#ifndef CYNIC_PROXY_HTTP_EXCHANGE_H
#define CYNIC_PROXY_HTTP_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum cynic__hx_phase {
  CYNIC__HX_ADMITTING = 0,
  CYNIC__HX_CONNECTING,
  CYNIC__HX_SENDING,
  CYNIC__HX_WAITING,
  CYNIC__HX_RECEIVING,
  CYNIC__HX_DONE,
} cynic__hx_phase_t;

/* Why an exchange fails (or what a response is charged with). */
typedef enum cynic__hx_cause {
  CYNIC__HX_OK = 0,
  CYNIC__HX_CONNECT_REFUSED,     /* fault; 502 */
  CYNIC__HX_CONNECT_ERROR,       /* fault; 502 */
  CYNIC__HX_CONNECT_TIMEOUT,     /* fault; 504 */
  CYNIC__HX_TLS_HANDSHAKE_TIMEOUT, /* fault; 504 (timeouts.tls_handshake) */
  CYNIC__HX_TLS_FAILED,          /* fault; 502 (certificate refused, protocol) */
  CYNIC__HX_FIRST_BYTE_TIMEOUT,  /* fault; 504 */
  CYNIC__HX_IDLE_TIMEOUT,        /* fault; 504 or reset */
  CYNIC__HX_REQUEST_TIMEOUT,     /* fault once an endpoint was involved; 504 or reset */
  CYNIC__HX_UPSTREAM_RESET,      /* fault; 502 or reset */
  CYNIC__HX_UPSTREAM_CLOSED,     /* fault (closed before the response ended); 502 or reset */
  CYNIC__HX_BAD_RESPONSE,        /* fault (framing the parser refused); 502 or reset */
  CYNIC__HX_RESPONSE_TOO_LARGE,  /* fault (limits.max_response_bytes); 502 or reset */
  CYNIC__HX_UNEXPECTED_STATUS,   /* fault; the response is forwarded as it is */
  CYNIC__HX_UNEXPECTED_TYPE,     /* fault; 502, the response is not forwarded */
  CYNIC__HX_LOCAL_ERROR,         /* no fault (cynic's shortage); 502 or reset */
  CYNIC__HX_CLIENT_GONE,         /* no fault, no answer: the permit goes back unused */
  CYNIC__HX_CAUSE_COUNT
} cynic__hx_cause_t;

typedef struct cynic__hx {
  const cynic__config_upstream_t *cfg; /* the upstream's, read at each call */
  cynic__hx_phase_t phase;
  uint64_t request_deadline_ms; /* 0: no request timeout */
  uint64_t phase_deadline_ms;   /* connect or first-byte deadline; 0: none */
  uint64_t last_io_ms;          /* the last byte either way (idle) */
  uint64_t response_bytes;      /* body bytes of the response so far */
  bool endpoint_involved;       /* past admission: a timeout is the endpoint's fault */
  bool response_started;        /* a byte of the response went to the client */
  cynic__hx_cause_t charged;    /* a fault already known for the breaker (e.g. status) */
} cynic__hx_t;

/* What the client gets when an exchange fails, and what the breaker hears. */
typedef struct cynic__hx_outcome {
  int status;         /* cynic's answer; 0 when `reset` or no answer at all */
  const char *reason; /* snake_case for Cynic-Answer and the log (static) */
  bool reset;         /* part of the response went out: the client is reset */
  bool fault;         /* a failure for the endpoint's breaker */
} cynic__hx_outcome_t;

/* The request head is complete at `now`: the exchange begins (ADMITTING). */
void cynic__hx_start(cynic__hx_t *x, const cynic__config_upstream_t *cfg, uint64_t now_ms);
/* The request's deadline becomes `deadline_ms` if that is sooner (an
 * incoming deadline header). */
void cynic__hx_shorten(cynic__hx_t *x, uint64_t deadline_ms);
/* A failed attempt (nothing of its response reached the client) will be
 * made again: back to waiting, the request deadline kept, the attempt's
 * state gone. */
void cynic__hx_retry(cynic__hx_t *x, uint64_t now_ms);
/* Admitted (a slot, an endpoint, a permit): connecting from `now`. */
void cynic__hx_connecting(cynic__hx_t *x, uint64_t now_ms);
/* Connected, or a pooled connection taken: the request goes out. */
void cynic__hx_connected(cynic__hx_t *x, uint64_t now_ms);
/* Bytes moved either way (resets the idle clock). */
void cynic__hx_io(cynic__hx_t *x, uint64_t now_ms);
/* The request's last byte is out: waiting for the response head. */
void cynic__hx_request_sent(cynic__hx_t *x, uint64_t now_ms);

/* The response head arrived. `has_body`: the response carries a body (not
 * HEAD's, 1xx, 204, 304); `content_type` (NULL if absent, not
 * NUL-terminated); `content_length` (-1 when not given). Returns what to do
 * with it: CYNIC__HX_OK or CYNIC__HX_UNEXPECTED_STATUS (forward it; the
 * latter is charged to the breaker), CYNIC__HX_UNEXPECTED_TYPE or
 * CYNIC__HX_RESPONSE_TOO_LARGE (do not forward: fail the exchange with it).
 * A 1xx (interim) is forwarded and changes nothing: the final head follows. */
cynic__hx_cause_t cynic__hx_response_head(cynic__hx_t *x, int status, bool has_body,
                                          const char *content_type, size_t ctlen,
                                          int64_t content_length, uint64_t now_ms);
/* The response head (or a byte after it) went to the client: from now on a
 * failure resets the client instead of answering. */
void cynic__hx_response_started(cynic__hx_t *x);
/* `n` more body bytes of the response: CYNIC__HX_OK, or
 * CYNIC__HX_RESPONSE_TOO_LARGE past limits.max_response_bytes (fail with it). */
cynic__hx_cause_t cynic__hx_response_body(cynic__hx_t *x, size_t n, uint64_t now_ms);
/* The response ended: DONE. True when the breaker hears a success (nothing
 * was charged), false when it hears the fault charged at the head. */
bool cynic__hx_response_end(cynic__hx_t *x);

/* The next deadline (loop ms) the session's one timer must wake for; 0 when
 * none runs. */
uint64_t cynic__hx_next_deadline(const cynic__hx_t *x);
/* Which timeout has fired at `now` (CYNIC__HX_OK: none yet). The earliest due
 * wins; the request timeout wins a tie. */
cynic__hx_cause_t cynic__hx_expired(const cynic__hx_t *x, uint64_t now_ms);

/* The exchange fails with `cause`: DONE, and what the client gets. */
cynic__hx_outcome_t cynic__hx_fail(cynic__hx_t *x, cynic__hx_cause_t cause);

/* The cause's name, for logs, metrics and Cynic-Answer ("first_byte_timeout"). */
const char *cynic__hx_cause_name(cynic__hx_cause_t cause);

/* True when `ct` (a Content-Type value, not NUL-terminated) names the media
 * type `want` ("type/subtype"): case-insensitive, parameters ignored. */
bool cynic__hx_media_type_is(const char *ct, size_t len, const char *want);

#endif /* CYNIC_PROXY_HTTP_EXCHANGE_H */
