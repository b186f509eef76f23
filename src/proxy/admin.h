/*
 * src/proxy/admin.h: the admin listener's state, shared by the admin API's
 * files (admin.c: routing, replies, drain and reload endpoints, lifecycle;
 * admin_auth.c: the token; admin_views.c: the JSON views and the sliced
 * producer of the large ones; admin_stream.c: the status stream),
 * metrics.c (counters, history, Prometheus text) and status_page.c (the
 * embedded HTML page, generated at build time from status_page.html).
 */
#ifndef CYNIC_PROXY_ADMIN_H
#define CYNIC_PROXY_ADMIN_H

#include <jansson.h>
#include <string.h>

#include "buf.h"
#include "httpd.h"
#include "metrics.h"
#include "proxy.h"

/* One breaker transition, copied (names included) so the ring never points
 * into a config that a reload has freed. */
typedef struct cynic__transition_rec {
  int64_t unix_ms;
  char upstream[CYNIC__CONFIG_MAX_NAME + 1];
  char endpoint[280];
  cynic_breaker_state_t from, to;
  cynic_breaker_reason_t reason;
  char by[64];   /* manual changes: the admin client's address; "" otherwise */
  char why[128]; /* manual changes: the `reason` the operator gave */
} cynic__transition_rec_t;

/* GET /status/stream (server-sent events), bounded (Steady State): at most
 * this many clients at once (more are answered 503), each with at most
 * STREAM_MAX_PENDING bytes queued in cynic (a slower reader is dropped) on a
 * socket whose send buffer is STREAM_SNDBUF bytes. */
#define CYNIC__ADMIN_MAX_STREAMS 8
#define CYNIC__ADMIN_STREAM_MAX_PENDING (1u << 20)
#define CYNIC__ADMIN_STREAM_SNDBUF (64 << 10)
/* One event's largest size: a `status` at the documented config limits
 * (256 upstreams x 64 endpoints) is ~6 MB; an event past this is not sent
 * and the failure is logged. A stream may hold STREAM_MAX_PENDING plus the
 * largest event of a tick queued before it counts as a slow reader. */
#define CYNIC__ADMIN_EVENT_MAX (64u << 20)

/* Failed authentications (401) per client address (Unwanted Users): a
 * token bucket of AUTH_BURST refilled at AUTH_RATE a second, for up to
 * AUTH_CLIENTS addresses (least recently seen evicted). A client past it is
 * answered 429 without its token being compared, until its bucket has a
 * token again (AUTH_BLOCKED addresses remembered at once). */
#define CYNIC__ADMIN_AUTH_RATE 5.0
#define CYNIC__ADMIN_AUTH_BURST 20.0
#define CYNIC__ADMIN_AUTH_CLIENTS 1024u
#define CYNIC__ADMIN_AUTH_BLOCKED 64u

typedef struct cynic__admin_blocked {
  unsigned char key[16]; /* the client's address bytes */
  size_t keylen;         /* 0: free */
  uint64_t until_ns;     /* uv_hrtime() before which its requests get 429 */
} cynic__admin_blocked_t;

struct cynic__admin {
  cynic__proxy_t *proxy;
  cynic__httpd_t *httpd; /* the server on admin.listen (allocated: a reload may replace it) */
  bool httpd_started;
  cynic__httpd_t *retiring; /* the one a reload moved away from, until retire_timer closes it */
  uv_timer_t retire_timer;  /* closes `retiring` once the /reload answer has gone out */
  char address[272];        /* bound address, port 0 resolved */
  char *token;              /* bearer token from admin.token_file; NULL = none */
  size_t token_len;
  uv_timer_t action_timer; /* runs drain after the answer has been written */
  bool stopping;
  /* The manual change in progress: the transition callback records these. */
  const char *manual_by, *manual_why;
  /* Status streams: a fixed table (a slot is NULL when free). Their events
   * are built in slices, once for all streams, by `stream_work` (an idle
   * handle active while a build is wanted or under way; see admin.c). */
  cynic__httpd_stream_t *streams[CYNIC__ADMIN_MAX_STREAMS];
  bool stream_fresh[CYNIC__ADMIN_MAX_STREAMS]; /* has not had its first `status` yet */
  size_t stream_count;
  size_t stream_last_push; /* bytes of the last push to the streams (the slow-reader bound) */
  unsigned stream_want;    /* events wanted and not yet being built (STREAM_EV_* in admin.c) */
  struct cynic__admin_stream_build *build; /* the build under way; NULL: none */
  uv_idle_t stream_work;
  cynic__transition_rec_t ring[CYNIC__TRANSITION_RING];
  size_t ring_next, ring_count;
  cynic_ratetable_t *auth_failures; /* failed authentications by client address */
  cynic__admin_blocked_t blocked[CYNIC__ADMIN_AUTH_BLOCKED];
};

/* True when GET /ready answers 200; *why says why not (or "ready"). */
bool cynic__admin_ready(cynic__proxy_t *p, const char **why);

/* After a breaker transition: the status streams get a `transition` event
 * (one for all the transitions of a loop iteration, built in slices from the
 * next loop turn on; nothing when no stream is open). */
void cynic__admin_streams_kick(cynic__admin_t *a);

/* ---- reload.c ------------------------------------------------------------ */

/* Binds `n`'s admin.listen for a reload that changes it (before anything
 * changes): *out is a server already accepting there (its requests are
 * answered by the same handler). 0, or a libuv / CYNIC_E* error with `why`
 * filled (nothing left open). */
int cynic__admin_listen_new(cynic__proxy_t *p, const cynic__config_t *n, cynic__httpd_t **out,
                            char *why, size_t len);
/* Undoes cynic__admin_listen_new (the reload was refused later). */
void cynic__admin_listen_undo(cynic__httpd_t *s);
/* Makes `s` the admin server; the old one (on which a POST /reload may be
 * waiting for its answer) is closed a moment later, connections and all. */
void cynic__admin_listen_swap(cynic__proxy_t *p, cynic__httpd_t *s);
/* Makes `token` (from cynic__token_read, or NULL for none; owned from now on) the admin
 * listener's, wiping and freeing the old one. */
void cynic__admin_token_set(cynic__proxy_t *p, char *token, size_t len);

/* ---- inside the admin API (admin*.c) -------------------------------------- */

#define CYNIC__ADMIN_MAX_SEGS 4  /* path segments of a request, at most */
#define CYNIC__ADMIN_SEG_MAX 300 /* one decoded segment's bytes, NUL included */

/* One request while its handler runs (freed when it returns). */
typedef struct cynic__admin_req {
  cynic__admin_t *a;
  cynic__proxy_t *p;
  const cynic__http_parser_t *http;
  cynic__httpd_response_t *resp;
  const char *method;
  char segs[CYNIC__ADMIN_MAX_SEGS][CYNIC__ADMIN_SEG_MAX]; /* the path, percent-decoded */
  size_t nsegs;
} cynic__admin_req_t;

/* Answers `body` (its reference consumed; NULL: 500) as JSON. */
void cynic__admin_reply_json(cynic__admin_req_t *r, int status, json_t *body);
/* Answers {"error": msg, "status": status}; `msg` need not be UTF-8. */
void cynic__admin_reply_error(cynic__admin_req_t *r, int status, const char *msg);
/* 405 with Allow: `allow` ("GET", "POST" or "GET, POST"). */
void cynic__admin_not_allowed(cynic__admin_req_t *r, const char *allow);
/* True when the request's method is `m`. */
static inline bool cynic__admin_is(const cynic__admin_req_t *r, const char *m) {
  return strcmp(r->method, m) == 0;
}

/* admin_auth.c. True when the request may go on; otherwise it has been
 * answered (401, or 429 past the failure budget; the connection closes). */
bool cynic__admin_authorised(cynic__admin_req_t *r);
/* The same for GET /status/stream, which also takes `?token=`. */
bool cynic__admin_stream_authorised(cynic__admin_req_t *r);

/* admin_views.c: the answers. */
void cynic__admin_get_status(cynic__admin_req_t *r);
void cynic__admin_get_history(cynic__admin_req_t *r);
/* GET /breakers[/{u}[/{e}]] and POST .../trip | force_closed | reset. */
void cynic__admin_breakers(cynic__admin_req_t *r);

/*
 * The large answers, produced in slices (admin_views.c): GET /status,
 * /status/history, /breakers, /metrics, and the status stream's events.
 * The cursor keeps slot indices, not pointers (a reload between two slices
 * may retire an upstream or reuse its slot; p->upstreams never moves).
 */
typedef enum cynic__admin_listing_kind {
  LIST_STATUS,
  LIST_HISTORY,
  LIST_BREAKERS,
  LIST_METRICS
} cynic__admin_listing_kind_t;

typedef struct cynic__admin_listing {
  cynic__admin_t *a;
  cynic__admin_listing_kind_t kind;
  size_t next;  /* the upstream slot next */
  bool started; /* the opening part is out */
  bool any;     /* an upstream is out: the next one needs a comma */
  cynic__metrics_cursor_t cur;
} cynic__admin_listing_t;

/* JSON through jansson costs ~60 ms a MB here (an object per field; the
 * 6 MB /status at the config limits took ~0.4 s whole), several times the
 * Prometheus text's printf (~10 ms a MB): its slices are kept to ~16 KB,
 * i.e. one upstream (64 endpoints: ~24 KB, ~1.5 ms), so a slice stays near
 * the loop-turn budget. Measured with one client polling /status at the
 * limits: proxied p99 +1.3 ms over idle, against +4.2 ms with 64 KB slices. */
#define CYNIC__ADMIN_JSON_SLICE (16u << 10)

/* A cynic__httpd_produce_cb over a cynic__admin_listing_t (zeroed but for
 * `a` and `kind`): appends the next slice (JSON: at most ~JSON_SLICE, one
 * upstream at least) to `b`; 1 at the end, 0 when more follows, or a
 * negative CYNIC_E*. */
int cynic__admin_listing_next(void *arg, cynic__buf_t *b, size_t want);
/* Answers with a produced listing of `kind` (503 when out of memory). */
void cynic__admin_reply_listing(cynic__admin_req_t *r, cynic__admin_listing_kind_t kind);

/* admin_stream.c. GET /status/stream. */
void cynic__admin_get_stream(cynic__admin_req_t *r);
/* Once a second (daemon.c's tick, after the history sample): the streams
 * get the newest samples and the status. */
void cynic__admin_streams_tick(cynic__admin_t *a);
/* The stream machinery's handle: made at admin start, closed at its stop
 * (a build under way is dropped; the streams close with the server). */
void cynic__admin_streams_init(cynic__admin_t *a);
void cynic__admin_streams_close(cynic__admin_t *a);

/* ---- status_page.c (generated) ------------------------------------------- */
extern const char cynic__status_page[];
extern const size_t cynic__status_page_len;

#endif /* CYNIC_PROXY_ADMIN_H */
