/*
 * src/proxy/http_conn.h: the HTTP mode connection object, shared by its two
 * files only: http_session.c (the client side: reading and parsing requests,
 * cynic's own answers, keep-alive, the timer, closing) and http_upstream.c
 * (the exchange with the upstream: admission, attempt, pooled or new
 * connection, request out, response in). Nothing else includes it: the rest
 * of the daemon knows a session by its base (session.h).
 */
#ifndef CYNIC_PROXY_HTTP_CONN_H
#define CYNIC_PROXY_HTTP_CONN_H

#include "cynic/backoff.h"
#include "http_exchange.h"
#include "http_head.h"
#include "http_msg.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"
#include "session.h"

typedef enum hs_state {
  HS_IDLE,       /* between requests: nothing of the next one yet */
  HS_HEAD,       /* a request head is arriving (header timeout) */
  HS_QUEUED,     /* waiting for a bulkhead slot, on upstream->waiters */
  HS_CONNECTING, /* slot and permit held; connect in flight */
  HS_BACKOFF,    /* an attempt failed: slot held, waiting to try again (retry) */
  HS_EXCHANGE,   /* upstream attached: request out, response in */
  HS_FINISHING,  /* the exchange is over; its last bytes go to the client */
  HS_CLOSING     /* handles closing; freed in the last close callback */
} hs_state_t;

/* Body bytes copied behind a response head into its write at most (one
 * write instead of two for a small response; larger ones are released to
 * the relay and written from the ring). */
#define CYNIC__HS_COPY_BODY 16384u

/* Interim (1xx) responses forwarded for one request at most; past it the
 * response is bad (502): an upstream sending 100 Continue without end would
 * otherwise queue a write per head for a client that does not read. */
#define CYNIC__HS_MAX_INTERIM 8

/* An attempt needs at least this long before the request's deadline: with
 * less left cynic answers 504 `deadline_exceeded` at once (or does not retry). */
#define CYNIC__HS_MIN_ATTEMPT_MS 10u
/* Kept back from the deadline sent upstream (deadline_header): the time for
 * the next hop's answer to come back through cynic. */
#define CYNIC__HS_DEADLINE_RESERVE_MS 5u

/* The longest request id kept (longer ones are replaced by cynic's). */
#define RID_MAX 128

/* One request and its exchange with the upstream: from the first byte of
 * its head until the response is out (or the connection closes). Taken from
 * a bounded free list when a request begins, so that an idle keep-alive
 * connection holds none of it: no parser, no exchange state. */
typedef struct cynic__http_xchg {
  struct cynic__http_conn *c;
  cynic__upstream_t *up; /* the upstream the exchange is with when not the listener's
                            (fallback.secondary; counted in its `borrowed`); NULL: that one */
  cynic__http_msg_t req, res;
  char *req_store, *res_store; /* head stores, only while a message is parsed */
  size_t req_store_cap, res_store_cap;
  cynic__waiter_t waiter; /* on the upstream's queue while HS_QUEUED (upstream.c) */
  cynic__attempt_t attempt;
  cynic__hx_t hx;
  cynic__http_conn_opts_t req_opts; /* the request's Connection options, read once at its
                                       head (pointing into req_store) for every attempt */
  bool req_done;      /* the request's last byte was released to the upstream */
  bool res_head_done; /* the final response head was parsed (body follows) */
  bool reusable;      /* the upstream connection may go back to the pool */
  bool reported;      /* the request's report was made */
  bool started;       /* ... and counted as started (metrics) */
  bool head_seen;     /* the request's head was parsed */
  bool uc_pooled;     /* the upstream connection came from the idle pool */
  bool stale_retried; /* the request was sent again after a stale pooled one */
  bool idempotent;    /* may be sent again (method, or retry.idempotent_header) */
  bool replay_keep;   /* the body is kept as it goes out (retry.max_body) */
  bool replay_lost;   /* body bytes went out that were not kept: no retry */
  bool backoff_ready; /* backoff initialised (at the first retry) */
  bool has_outcome;
  bool rid_made; /* rid is cynic's (the client's was absent or invalid) */
  bool pending;  /* counted in p->requests_pending until its report (http_limits.c) */
  uint8_t interims; /* 1xx responses forwarded (CYNIC__HS_MAX_INTERIM) */
  uint8_t attempts; /* made so far (the first included) */
  uint64_t tried;   /* endpoints tried: bit (1 << index) */
  uint8_t order[11]; /* their indices in the order tried (1 + retry.attempts at most) */
  uint64_t backoff_until_ms; /* HS_BACKOFF: when the next attempt starts */
  cynic_backoff_t backoff;   /* the request's own jittered sequence */
  char *replay;      /* the request body sent so far, kept for a retry (retry.max_body) */
  size_t replay_len, replay_cap;
  uint64_t body_bytes;     /* request body bytes released (max_request_body) */
  uint64_t stall_since_ms; /* a slow reader: since when it took nothing (0: not) */
  /* For the report (metrics, access log). */
  int status;          /* what the client got; 0 = nothing yet */
  int upstream_status; /* the final status the upstream sent; 0 = none */
  int outcome;
  const char *answer; /* cynic's own answer's reason; NULL: the upstream's */
  const char *fallback; /* the fallback kind that answered ("stale", "static"); NULL: none */
  struct cynic__stale_entry *capture; /* the response's body kept for the stale cache
                                         (http_fallback.c); NULL: not kept */
  const char *decision;
  uint64_t start_us, connect_us, connected_us, first_byte_us;
  uint64_t bytes_up, bytes_down; /* the relay's counts when the request began */
  /* A final response head not yet written: body bytes that came with it
   * are copied in behind it (at most CYNIC__HS_COPY_BODY), so that a small
   * response goes to the client in one write, not a head and a body. It
   * lives in the scratch buffer only while the response's bytes are parsed
   * (cynic__hu_response_data writes it before it returns). */
  char *pend; /* in the scratch buffer (cynic__hs_scratch); NULL: none */
  size_t pend_len, pend_cap;
  char rid[RID_MAX + 1];
} cynic__http_xchg_t;

/* Exchanges and head stores (of each size) kept for reuse at most: a hard
 * cap over blocks.h's own (never more than the recent peak in flight needs). */
#define CYNIC__HS_KEPT_MAX 4096
/* Store sizes kept apart (listeners' and upstreams' head limits in use at
 * once; stores of any further size are not kept). */
#define CYNIC__HS_STORE_SIZES 8

typedef struct cynic__http_conn {
  cynic__session_t base;
  cynic__stream_t client; /* data: &relay; TLS when the listener terminates it */
  uv_timer_t timer;
  cynic__relay_t relay; /* up: client -> upstream, down: upstream -> client; both held */
  cynic__upconn_t *uc;  /* the exchange's upstream connection; NULL between them */
  cynic__http_xchg_t *x; /* the request under way; NULL on an idle connection */
  uint64_t head_deadline_ms; /* HS_HEAD: the header timeout */
  uint64_t idle_since_ms;    /* HS_IDLE / HS_FINISHING: since when */
  uint64_t stall_bytes;      /* relay.down.bytes when the client last took some */
  uint8_t state;   /* hs_state_t */
  uint8_t handles; /* client, timer, and the upstream once cynic closes it with the
                      connection; freed at 0 */
  uint8_t res_head_out; /* head or answer writes to the client in flight (a 1xx
                           head and the final one may both be) */
  bool has_slot;     /* holds a bulkhead slot */
  uint8_t req_head_out; /* request head (and replayed body) writes in flight */
  bool close_after;  /* close once the current response is out */
  bool client_eof;   /* the client half-closed */
} cynic__http_conn_t;

/* A head or an answer cynic writes itself, with its own uv_write; freed in
 * the write callback (which libuv calls, cancelled, even when the stream
 * closes first: the connection outlives it, its handles counted). */
typedef struct cynic__hs_write {
  uv_write_t req;
  cynic__http_conn_t *c;
  bool to_client;
  bool then_close; /* close the connection once written */
  size_t len;
  char data[];
} cynic__hs_write_t;

static inline uint64_t cynic__hs_now_us(void) {
  return uv_hrtime() / 1000u;
}

static inline uint64_t cynic__hs_now_ms(const cynic__http_conn_t *c) {
  return uv_now(c->client.tcp.loop);
}

/* The upstream the current exchange is with: the listener's, or the
 * secondary a fallback handed the request to. */
static inline cynic__upstream_t *cynic__hs_up(const cynic__http_conn_t *c) {
  return c->x != NULL && c->x->up != NULL ? c->x->up : c->base.upstream;
}

/* Whether an attempt starting at `at_ms` would have too little time before
 * the request's deadline `deadline_ms` (0: none) to be of use
 * (CYNIC__HS_MIN_ATTEMPT_MS): the request is answered, not sent, then. */
static inline bool cynic__hs_too_late(uint64_t deadline_ms, uint64_t at_ms) {
  return deadline_ms != 0 &&
         (deadline_ms <= at_ms || deadline_ms - at_ms < CYNIC__HS_MIN_ATTEMPT_MS);
}

static inline cynic__http_conn_t *cynic__hs_of_relay(cynic__relay_t *r) {
  return cynic__container_of(r, cynic__http_conn_t, relay);
}

static inline void cynic__hs_outcome(cynic__http_conn_t *c, int outcome) {
  if (c->x != NULL && !c->x->has_outcome) {
    c->x->has_outcome = true;
    c->x->outcome = outcome;
  }
}


/* ---- http_session.c: the client side ---- */

/* A zeroed exchange for c's next request (from the free list), or NULL
 * without memory; and giving it back (its stores and attempt too). */
cynic__http_xchg_t *cynic__hs_xchg_take(cynic__http_conn_t *c);
void cynic__hs_xchg_put(cynic__http_conn_t *c);

/* The parsed head's fields of `m` into fields[CYNIC__HTTP_MSG_MAX_FIELDS]
 * (for http_head.c): how many. */
size_t cynic__hs_fields(const cynic__http_msg_t *m, cynic__http_hfield_t *fields);

/* cynic answers the request itself (status, Cynic-Answer reason, JSON body;
 * Retry-After when retry_after > 0); the connection closes after it unless
 * `keep` and the request was read to its end. */
void cynic__hs_answer(cynic__http_conn_t *c, int status, const char *reason, uint64_t retry_after,
                      bool keep);
/* An answer cynic wrote (its own or a fallback, http_fallback.c) is sent or
 * queued: close, wait for the write, or go on to the next request. */
void cynic__hs_answer_sent(cynic__http_conn_t *c, bool close, bool queued);
/* (Re)arms the connection's one timer for its state's next deadline. */
void cynic__hs_arm(cynic__http_conn_t *c);
/* Closes everything now (reset: RST to the client); freed once every handle
 * has closed. Idempotent. */
void cynic__hs_close(cynic__http_conn_t *c, bool reset, const char *why);
/* The response before is out: the next request (held already, or read), or
 * close when that was decided. */
void cynic__hs_next_request(cynic__http_conn_t *c);
/* The current request's report (metrics, access log), once. */
void cynic__hs_report(cynic__http_conn_t *c);
/* A buffer of `cap` bytes to render a head into: the process's one scratch
 * buffer, valid until the next call (p NULL without memory). */
cynic__http_out_t cynic__hs_scratch(size_t cap);
/* Sends `len` bytes at `p` (the caller's; not kept) to the client or to the
 * exchange's upstream: written at once when the socket takes them, else
 * the rest copied into a write of its own (*queued: then `then_close`
 * closes the connection once it is written, and a client write counts in
 * res_head_out until then). 0 or a libuv error. */
int cynic__hs_send(cynic__http_conn_t *c, const char *p, size_t len, bool to_client,
                   bool then_close, bool *queued);
/* A head store of `cap` bytes (a cached one when there is), and giving one
 * back (sets *store NULL). */
char *cynic__hs_store_take(size_t cap);
void cynic__hs_store_put(char **store, size_t cap);
/* The response parser is done with its message: its store goes back. */
void cynic__hs_res_reset(cynic__http_conn_t *c);

/* ---- http_upstream.c: the exchange ---- */

/* The exchange fails with `cause`: the breaker's verdict, then cynic's
 * answer or a reset (http_exchange.c decides which). */
void cynic__hu_fail(cynic__http_conn_t *c, cynic__hx_cause_t cause);
/* The exchange is over: the slot and the attempt go back, the report is
 * made, the upstream connection is pooled (`reuse`) or closed. */
void cynic__hu_exchange_end(cynic__http_conn_t *c, bool reuse);
/* A bulkhead slot is held: pick an endpoint, take a pooled connection or
 * connect. */
void cynic__hu_attempt(cynic__http_conn_t *c);
/* The bulkhead queue's verdict for a queued request (upstream.c). */
void cynic__hu_admitted(cynic__waiter_t *w, int status);
/* Streams the request body already held in the client ring upstream. */
void cynic__hu_request_body(cynic__http_conn_t *c);
/* fallback.secondary: the request goes to `s` instead (fail fast, its
 * bulkhead, an attempt), the exchange before it over; false (nothing
 * changed) when it cannot: not re-sendable, `s` unavailable or full, too
 * little time left. */
bool cynic__hu_secondary(cynic__http_conn_t *c, cynic__upstream_t *s);
/* Parses what the upstream sent (held in the down ring). */
void cynic__hu_response_data(cynic__http_conn_t *c);
/* The response ended (its last byte parsed, or the upstream's EOF for one
 * that ends so). */
void cynic__hu_response_end(cynic__http_conn_t *c);
/* The upstream closed or reset a connection taken from the pool before any
 * byte of the response: when the request can go again (no body), it does,
 * once, on a new connection; true then. */
bool cynic__hu_stale_retry(cynic__http_conn_t *c);
/* An idle timeout (`cause`) that was the client's doing (cynic waited for
 * its request body, or for it to read the response): no fault for the
 * breaker; the body's is answered 408, a slow reader goes on while it reads
 * within the listener's idle timeout and is cut past it; true then. */
bool cynic__hu_client_stall(cynic__http_conn_t *c, cynic__hx_cause_t cause, uint64_t now_ms);
/* The backoff before a retry is over: the next attempt (HS_BACKOFF). */
void cynic__hu_retry_now(cynic__http_conn_t *c);
/* Whole seconds until some breaker of `u` lets a probe through (at least 1);
 * 0 when unknown (every one forced open). */
uint64_t cynic__hu_retry_after_s(const cynic__upstream_t *u);

#endif /* CYNIC_PROXY_HTTP_CONN_H */
