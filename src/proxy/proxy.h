/*
 * src/proxy/proxy.h: the cynic daemon's internal objects and how they meet.
 *
 *   cynic__proxy_t      the process: one libuv loop, the config, every
 *                       listener, upstream and open connection, the signals
 *                       and the drain (daemon.c)
 *   cynic__listener_t   a bound address that accepts clients, with its
 *                       connection caps (listener.c)
 *   cynic__upstream_t   an integration point: endpoints, one breaker each,
 *                       the bulkhead and its queue of waiting clients
 *                       (upstream.c)
 *   cynic__session_t    one client session, the base every mode's session
 *                       embeds (session.h); TCP mode's is cynic__conn_t: the
 *                       client socket, an upstream connection (pool.c), the
 *                       byte relay (relay.c), one timer for every timeout
 *                       (tcp.c)
 *
 * Everything runs on the loop's thread; nothing here is thread safe, and
 * nothing needs to be. libcynic's breakers and bulkheads are thread safe
 * anyway; their clock is the loop's cached time (cynic__proxy_clock).
 *
 * Ownership: the proxy owns listeners and upstreams (arrays, allocated at
 * start, freed at exit); a session is on the proxy's list from accept until
 * the last of its handles' close callbacks, where its mode's file frees it.
 */
#ifndef CYNIC_PROXY_PROXY_H
#define CYNIC_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <sys/socket.h>
#include <uv.h>

#include "blocks.h"
#include "config.h"
#include "cynic/breaker.h"
#include "cynic/budget.h"
#include "cynic/bulkhead.h"
#include "cynic/ratelimit.h"
#include "tls.h"

#define cynic__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* An intrusive doubly linked list (libuv's queue, H2O's linklist). A link whose
 * next is NULL is in no list. */
typedef struct cynic__link {
  struct cynic__link *prev, *next;
} cynic__link_t;

static inline void cynic__list_init(cynic__link_t *head) {
  head->prev = head->next = head;
}
static inline bool cynic__list_empty(const cynic__link_t *head) {
  return head->next == head;
}
static inline bool cynic__linked(const cynic__link_t *l) {
  return l->next != NULL;
}
static inline void cynic__list_push(cynic__link_t *head, cynic__link_t *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}
static inline void cynic__list_remove(cynic__link_t *l) {
  if (l->next == NULL)
    return;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = NULL;
}

typedef struct cynic__proxy cynic__proxy_t;
typedef struct cynic__upstream cynic__upstream_t;
typedef struct cynic__listener cynic__listener_t;
typedef struct cynic__mode cynic__mode_t; /* session.h */

/* Faults and rejections counted for the rate-limited log summaries and, later,
 * metrics. One enum so a kind, its log text and its counter cannot drift. */
#define CYNIC__EVENT_MAP(XX)                                                                       \
  XX(CONNECT_REFUSED, "connect_refused", "connect refused", "connect refused by")                  \
  XX(CONNECT_TIMEOUT, "connect_timeout", "connect timeout", "connect timeouts to")                 \
  XX(CONNECT_ERROR, "connect_error", "connect failed", "connect errors to")                        \
  XX(TLS_HANDSHAKE_TIMEOUT, "tls_handshake_timeout", "TLS handshake timeout",                      \
     "TLS handshake timeouts with")                                                                \
  XX(TLS_FAILED, "tls_failed", "TLS handshake failed", "TLS handshakes failed with")               \
  XX(RESET_BEFORE_FIRST_BYTE, "reset_before_first_byte", "upstream reset before its first byte",   \
     "resets before the first byte from")                                                          \
  XX(CLOSED_BEFORE_FIRST_BYTE, "closed_before_first_byte",                                         \
     "upstream closed before its first byte", "closes before the first byte from")                 \
  XX(FIRST_BYTE_TIMEOUT, "first_byte_timeout", "first-byte timeout", "first-byte timeouts from")   \
  XX(IDLE_TIMEOUT, "idle_timeout", "idle timeout", "idle timeouts on connections to")              \
  XX(BREAKER_OPEN, "breaker_open", "client closed: every breaker is open",                         \
     "clients closed at once, every breaker open, for")                                            \
  XX(BULKHEAD_FULL, "bulkhead_full", "client closed: bulkhead full",                               \
     "clients closed at once, bulkhead full, for")                                                 \
  XX(QUEUE_TIMEOUT, "queue_timeout", "client closed: queue timeout",                               \
     "clients closed after the queue timeout for")                                                 \
  XX(UNRESOLVED, "unresolved", "client closed: no endpoint address yet",                           \
     "clients closed, no endpoint address yet, for")                                               \
  XX(MAX_CONNECTIONS, "max_connections", "client closed: listener max_connections reached",        \
     "clients closed at once, max_connections reached, on")                                        \
  XX(MAX_PER_CLIENT, "max_connections_per_client", "client closed: per-client limit reached",      \
     "clients closed at once, per-client limit, on")                                               \
  XX(ACCEPT_ERROR, "accept_error", "accept failed", "accept errors on")                            \
  XX(CLIENT_TLS_FAILED, "client_tls_failed", "client TLS handshake failed or timed out",          \
     "client TLS handshakes failed (certificate, protocol, timeout) on")                          \
  XX(LOCAL_ERROR, "local_error", "client closed: no local resources for an upstream connection",   \
     "clients closed, no local resources (descriptors, memory), for")                              \
  XX(RATE_LIMITED, "rate_limited", "client closed: rate limit",                                    \
     "clients closed at once, over their rate limit, on")                                          \
  /* HTTP mode: faults of one exchange (endpoint) and refused requests (listener) */               \
  XX(REQUEST_TIMEOUT, "request_timeout", "request timeout", "request timeouts from")               \
  XX(UPSTREAM_RESET, "upstream_reset", "upstream reset during the response",                      \
     "resets during the response from")                                                            \
  XX(UPSTREAM_CLOSED, "upstream_closed", "upstream closed during the response",                   \
     "closes during the response from")                                                            \
  XX(BAD_RESPONSE, "bad_response", "upstream response refused: bad framing",                      \
     "responses refused for bad framing from")                                                     \
  XX(RESPONSE_TOO_LARGE, "response_too_large", "upstream response over max_response_bytes",       \
     "responses over max_response_bytes from")                                                     \
  XX(UNEXPECTED_STATUS, "unexpected_status", "upstream status outside expect.status",             \
     "statuses outside expect.status from")                                                        \
  XX(UNEXPECTED_CONTENT_TYPE, "unexpected_content_type",                                           \
     "upstream content type outside expect.content_type",                                          \
     "content types outside expect.content_type from")                                             \
  XX(BAD_REQUEST, "bad_request", "client request refused", "requests refused (400, 413, 431, 501) on") \
  XX(HEADER_TIMEOUT, "header_timeout", "client request head not complete in time",               \
     "request heads not complete in time (408) on")                                                \
  XX(CLIENT_TIMEOUT, "client_timeout", "client too slow: its request body or reading the response", \
     "clients too slow (request body, or reading the response) on")                                \
  XX(RETRY, "retry", "request sent again after a failed attempt", "requests sent again to")        \
  XX(RETRY_REFUSED, "retry_refused",                                                               \
     "failed attempt not retried: retry budget, deadline or request body",                         \
     "retries refused (budget, deadline, body) for")                                               \
  XX(DEADLINE_EXCEEDED, "deadline_exceeded", "request deadline too close to start an attempt",    \
     "requests answered 504 at once (deadline too close) for")                                      \
  XX(REQUEST_RATE_LIMITED, "request_rate_limited", "request refused: client over its rate limit", \
     "requests answered 429, over their client's rate limit, on")                                  \
  XX(OVERLOADED, "overloaded", "request refused: too many requests pending",                      \
     "requests answered 503, limits.max_pending_requests reached, on")                               \
  /* health.c: an active check of an endpoint failed (never the breaker's fault count) */         \
  XX(HEALTH_CHECK_FAILED, "health_check_failed", "health check failed",                           \
     "health checks failed for")

typedef enum cynic__event {
#define CYNIC__EVENT_ENUM(name, key, msg, text) CYNIC__EV_##name,
  CYNIC__EVENT_MAP(CYNIC__EVENT_ENUM)
#undef CYNIC__EVENT_ENUM
      CYNIC__EV_COUNT
} cynic__event_t;

#include "metrics.h" /* needs CYNIC__EV_COUNT */

typedef struct cynic__admin cynic__admin_t;
typedef struct cynic__health cynic__health_t; /* health.h */

/* Counters of one thing (endpoint, upstream or listener): totals since start,
 * and the current summary window's counts (reset every summary interval). */
typedef struct cynic__counters {
  uint64_t total[CYNIC__EV_COUNT];
  uint32_t window[CYNIC__EV_COUNT];
} cynic__counters_t;

typedef struct cynic__endpoint {
  cynic__upstream_t *upstream;
  const cynic__config_addr_t *addr; /* as configured; addr->text names it in logs */
  struct sockaddr_storage sa;       /* resolved address; valid when resolved */
  bool resolved;
  bool resolving;       /* gai is in flight */
  bool first;           /* the first resolution is in flight (start waits) */
  uv_getaddrinfo_t gai; /* host names only */
  cynic_breaker_t *breaker;
  cynic_breaker_state_t state; /* as of its last transition (on_transition) */
  uint32_t active;             /* connections to it now (least_connections) */
  cynic__link_t idle;          /* idle upstream connections (pool.c), newest last */
  uint32_t idle_count;         /* on that list (at most cfg->http.pool_max_idle) */
  uint64_t pool_reused;        /* idle connections handed to a new exchange */
  uint64_t pool_discarded;     /* idle ones closed: aged, closed by the peer, evicted */
  void *tls_session;           /* tls: the last session it gave (an SSL_SESSION), resumed
                                  by the next connection; NULL: none */
  cynic__counters_t counters;
  cynic__endpoint_stats_t stats; /* metrics.h: admin listener */
} cynic__endpoint_t;

struct cynic__upstream {
  cynic__proxy_t *proxy;
  const cynic__config_upstream_t *cfg; /* NULL: a vacant slot (retired, drained and
                                          reclaimed; free for a reload to reuse) */
  cynic__endpoint_t *endpoints;
  size_t endpoint_count;
  size_t next; /* round robin: where the next pick starts */
  cynic_bulkhead_t *bulkhead;
  cynic_budget_t *retry_budget; /* http mode's retry.budget; NULL: no retries */
  uint32_t borrowed;            /* exchanges sent here as another upstream's fallback.secondary:
                                   a retired upstream is not reclaimed while any runs */
  cynic__link_t waiters;  /* cynic__waiter_t.link, oldest first (upstream.c) */
  uv_timer_t queue_timer; /* the oldest waiter's queue timeout (upstream.c) */
  uv_timer_t resolve_timer;
  bool has_names;     /* some endpoint is a host name: re-resolve */
  bool retired;       /* removed or replaced by a reload: its connections finish */
  bool fresh;         /* made by the reload in progress (not yet committed) */
  uint8_t timer_open; /* timers (resolve, queue) initialised whose close callbacks
                         have not run yet: the slot is busy while non-zero */
  cynic__counters_t counters;
  cynic__upstream_stats_t stats; /* metrics.h: admin listener */
  cynic__health_t *health;       /* health_check's checks (health.c); NULL without */
  struct cynic__stale_cache *stale; /* fallback.stale's cache (stale_cache.c), made at the
                                       first response kept; freed with the upstream */
  uint64_t fallbacks[CYNIC__FALLBACK_KINDS]; /* fallback answers given, by kind */
  cynic__tls_ctx_t *tls;        /* tls: the context of new connections (tls.c); NULL: plain */
  cynic__tls_stats_t tls_stats; /* handshakes to its endpoints, across reloads */
};

/* Free connection buffers a listener keeps at most (blocks.h: never more than
 * its recent peak in use needs; 256 MB at 64KB, only after 2,048 busy
 * connections). */
#define CYNIC__BUFFERS_KEPT_MAX 4096u

/* Whether accepted sockets take their TCP options from the listening socket. */
typedef enum cynic__options {
  CYNIC__OPTIONS_PER_CONNECTION, /* set on every accepted socket (the safe default) */
  CYNIC__OPTIONS_UNKNOWN,        /* set on the listener; the first accept checks */
  CYNIC__OPTIONS_INHERITED       /* checked: accepted sockets carry them already */
} cynic__options_t;

/* Open connections per client address, for max_connections_per_client. */
typedef struct cynic__client_count {
  struct cynic__client_count *next; /* bucket chain */
  uint8_t ip[16];                   /* IPv4 as ::ffff:a.b.c.d */
  uint32_t open;
} cynic__client_count_t;

/* Connections a listener accepts per loop turn at most (listener.c; HAProxy's
 * tune.maxaccept default too): one listener's storm cannot keep the loop from
 * the other sockets. */
#define CYNIC__ACCEPT_BUDGET 64

struct cynic__listener {
  cynic__proxy_t *proxy;
  const cynic__config_listener_t *cfg; /* NULL: a vacant slot (retired, drained and
                                          reclaimed; free for a reload to reuse) */
  cynic__upstream_t *upstream;
  const cynic__mode_t *mode; /* what accepted sockets are handed to (session.h) */
  uv_tcp_t handle;
  bool listening;    /* handle initialised and not yet closed */
  bool retired;      /* removed by a reload: not accepting; its connections finish */
  bool fresh;        /* made by the reload in progress (not yet committed) */
  bool handle_open;  /* handle initialised and its close callback not yet run */
  uv_tcp_t *reserve; /* a client handle kept to shed a connection when out of memory */
  char address[272]; /* the bound address, port 0 resolved (CYNIC_ADDR_STR_MAX) */
  uint32_t open;     /* client connections open now */
  uint32_t accept_turn;  /* p->turn when `accepted` was last reset */
  uint16_t accepted;     /* accepts in that loop turn (CYNIC__ACCEPT_BUDGET) */
  bool accept_deferred;  /* a connection waits in libuv for the next turn */
  /* max_connections_per_client: a chained hash of the addresses with open
   * connections; at most max_connections entries, so bounded. */
  cynic__client_count_t **clients;
  size_t client_buckets; /* power of two; 0 = no per-client limit */
  /* Connection buffers (cfg->buffer_bytes each; blocks.h), reused newest
   * first; set up at the first take. A direction gives its buffer back as
   * soon as it is empty, so an idle connection holds none; the free ones are
   * trimmed to the recent peak every second (cynic__listeners_trim), at most
   * CYNIC__BUFFERS_KEPT_MAX. */
  cynic__blocks_t buffers;
  cynic__options_t options; /* keepalive, user timeout, nodelay of client sockets */
  uint8_t options_checks;   /* UNKNOWN: accepts left to see them inherited (pool.c) */
  cynic_ratetable_t *rate;  /* rate_limit.per_client: new connections per client (tcp),
                               requests per client (http: http_limits.c) */
  cynic__counters_t counters;
  cynic__listener_stats_t stats; /* metrics.h: admin listener */
  cynic__tls_ctx_t *tls;        /* tls: the context of new clients (tls.c); NULL: plain */
  cynic__tls_stats_t tls_stats; /* clients' handshakes, across reloads */
};

struct cynic__proxy {
  uv_loop_t *loop;
  cynic_clock_t clock; /* breakers' and admission's clock: {cynic__proxy_clock, p}
                          in the daemon; unit tests move a fake one by hand */
  /* The wall clock (Unix time, ms) history samples, breaker transitions and
   * the admin's "now" are stamped with: cynic__unix_ms in the daemon; unit
   * tests set their own. NULL reads cynic__unix_ms (cynic__proxy_unix_ms). */
  int64_t (*wall_ms)(void *arg);
  void *wall_ms_arg;
  /* Told the name of each step of the once-a-second tick ("sweep", "sample",
   * "streams", "rotate") as soon as it has run (a step with nothing to do,
   * streams without an admin listener, is not told); NULL in the daemon. The
   * unit tests watch the order through it while the real steps run. */
  void (*tick_observer)(void *arg, const char *step);
  void *tick_observer_arg;
  const cynic__config_t *cfg;
  cynic__listener_t *listeners;
  size_t listener_count;
  cynic__upstream_t *upstreams;
  size_t upstream_count;
  cynic__link_t sessions; /* every cynic__session_t, for drain and exit */
  size_t conn_count;      /* sessions on that list (client connections) */
  uv_signal_t sigterm, sigint, sigusr1, sighup;
  uv_timer_t tick_timer;    /* the once-a-second housekeeping (daemon.c, on_tick) */
  /* Accept fairness (listener.c): a check handle counts loop turns and
   * resumes listeners that used up their accepts for the turn. */
  uv_check_t turn_check;
  bool turn_check_open;
  bool accept_deferred; /* some listener has a deferred accept */
  uint32_t turn;
  uv_timer_t summary_timer; /* rate-limited error summaries */
  uv_timer_t rotate_timer;  /* log.rotate: checks the log file's size */
  uv_timer_t drain_timer;
  size_t first_resolutions; /* host names not yet resolved once: serve() at 0 */
  bool draining;
  /* Load shedding (http_limits.c): http requests from a complete head until
   * their report, across listeners; those answered 503 for being past
   * cfg->limits.max_pending_requests; and whether /ready says overloaded
   * (from the ceiling until pending falls below 90% of it). */
  uint32_t requests_pending;
  uint64_t requests_shed;
  bool overloaded;
  bool drain_cut; /* the drain deadline or a second signal closed connections */
  bool stopping;  /* closing every handle: the loop is about to end */
  int status;     /* exit status */

  /* the admin listener (admin.c, metrics.c, reload.c) */
  cynic__admin_t *admin;         /* the admin listener (admin.c); NULL until started */
  int64_t started_unix_ms;       /* wall clock at start, for /status */
  int64_t config_unix_ms;        /* wall clock when the config in use was loaded */
  uint64_t reloads;              /* successful reloads */
  cynic__config_t *reloaded_cfg; /* the config in use after a reload (owned; the first
                                    one belongs to main.c) */
  /* Retired listeners and upstreams own a copy of their part of the config
   * they were made from (reload.c), freed at exit; the whole config is kept
   * (pinned) only when a copy could not be made. */
  cynic__config_listener_t *retired_listener_cfgs[CYNIC__CONFIG_MAX_LISTENERS];
  size_t retired_listener_cfg_count;
  cynic__config_upstream_t *retired_upstream_cfgs[CYNIC__CONFIG_MAX_UPSTREAMS];
  size_t retired_upstream_cfg_count;
  cynic__config_t *pinned_cfgs[4];
  size_t pinned_count;
};

/* ---- daemon.c ------------------------------------------------------------ */

/* Runs the proxy for `cfg` until a signal drains it. Returns the exit status:
 * 0 after a drain, 1 when a listener cannot be bound or the loop fails. */
int cynic__proxy_run(const cynic__config_t *cfg);

/* Logs a warning for each deprecated name `cfg` uses (today: an upstream's
 * `keepalive`, now `tcp_keepalive`), with file, line and column; at start and
 * after each reload. */
void cynic__proxy_config_warnings(const cynic__config_t *cfg);

/* The loop's cached time in ns (uv_now, read once per tick): the injected
 * clock of every breaker. `arg` is the cynic__proxy_t. */
uint64_t cynic__proxy_clock(void *arg);

/* An endpoint's first resolution is over (either way): the listeners are
 * bound once every host name has had one. */
void cynic__proxy_resolved(cynic__proxy_t *p);
/* Binds the listeners (serve) if cynic is still starting and no first
 * resolution is pending any more: after a reload during start retired the
 * upstreams that were being waited for. */
void cynic__proxy_serve_if_resolved(cynic__proxy_t *p);

/* The parts of cynic__proxy_run, for the fuzz target fuzz/fuzz_admin_api.c,
 * which runs the admin API on a proxy without sockets or signals.
 * cynic__proxy_init sets up `p` for `cfg` on `loop`: its fields, its timers and
 * its signal handles, initialised and not started (nothing can fail).
 * cynic__proxy_stop closes every handle the proxy owns (the admin, listeners
 * and upstreams stop; uv_run returns once their close callbacks have run); a
 * drain that ends calls it too, and a second call does nothing.
 * cynic__proxy_free, once the loop has run those callbacks, frees what the
 * modules hold (admin, listeners, upstreams, a reloaded config, reload's
 * copies); `cfg` stays the caller's. */
void cynic__proxy_init(cynic__proxy_t *p, uv_loop_t *loop, const cynic__config_t *cfg);
void cynic__proxy_stop(cynic__proxy_t *p);
void cynic__proxy_free(cynic__proxy_t *p);

/* Starts a drain, as SIGTERM does (`why` names the cause in the log). */
void cynic__proxy_drain(cynic__proxy_t *p, const char *why);

/* Starts, restarts or stops the log.rotate check for the config in use (at
 * start and after a reload that changed log.file or log.rotate); the check
 * reads p->cfg each time, so a new max_bytes or keep applies from the next
 * one. */
void cynic__proxy_rotate_apply(cynic__proxy_t *p);
/* A reload's log part, first the check: when `n` names another log.file,
 * can it be opened? 0, or a negative file.h / CYNIC_E* code with `why` set
 * (nothing changed). */
int cynic__proxy_log_prepare(const cynic__proxy_t *p, const cynic__config_t *n, char *why,
                             size_t len);
/* Then, once the reload cannot fail any more, before the objects point at
 * `n`: a new log.file gets a last line in the old place (log_moved) and the
 * log continues there (stderr should it fail to open after all), a new
 * level applies, and the log.rotate check is started, restarted or stopped
 * for `n` when log.file or log.rotate changed. */
void cynic__proxy_log_apply(cynic__proxy_t *p, const cynic__config_t *n);

/* A connection has been freed: finish a drain when it was the last. */
void cynic__proxy_conn_gone(cynic__proxy_t *p);

/* Counts `ev` in `c` and logs it at once when it is the first of its kind in
 * this summary window; later ones go into the window's summary line. `what`
 * is "endpoint", "upstream" or "listener", `name` its name; `detail` may be
 * NULL. */
void cynic__proxy_event(cynic__counters_t *c, cynic__event_t ev, const char *what, const char *name,
                        const char *upstream, const char *detail);

/* The event's snake_case key ("connect_refused"); static. The one table of
 * keys (log events, metrics labels, access log outcomes): inline, so that the
 * unit tests that include metrics.c without daemon.c share it too. */
static inline const char *cynic__event_key(cynic__event_t ev) {
  static const char *const keys[] = {
#define CYNIC__EVENT_KEY(name, key, msg, text) key,
      CYNIC__EVENT_MAP(CYNIC__EVENT_KEY)
#undef CYNIC__EVENT_KEY
  };
  return (unsigned)ev < CYNIC__EV_COUNT ? keys[ev] : "unknown";
}
/* c's totals since start by event key, the kinds that happened only, as a
 * new JSON object (NULL without memory). */
json_t *cynic__counts_json(const cynic__counters_t *c);

/* Wall-clock time in ms since the epoch (for /status and logs, never for
 * deadlines). */
int64_t cynic__unix_ms(void);
/* The proxy's wall clock (p->wall_ms, or cynic__unix_ms when not set). */
int64_t cynic__proxy_unix_ms(const cynic__proxy_t *p);
/* The once-a-second housekeeping (the tick timer's callback calls it): the
 * reload sweep, a history sample, the status streams' tick (with an admin
 * listener), the access logs' rotation check, in that order. */
void cynic__proxy_tick(cynic__proxy_t *p);
/* What the daemon does on a signal: SIGHUP reloads, SIGUSR1 reopens the
 * logs, SIGTERM and SIGINT drain. */
void cynic__proxy_signal(cynic__proxy_t *p, int signum);

/* ---- upstream.c ---------------------------------------------------------- */

/* Creates the breakers and bulkhead of every upstream and starts resolving
 * host names. 0 or a negative CYNIC_E* / UV error. */
int cynic__upstreams_start(cynic__proxy_t *p);
/* Stops timers and resolutions and closes handles (loop must run after). */
void cynic__upstreams_stop(cynic__proxy_t *p);
/* Once a second (the daemon's tick): closes idle pooled connections past
 * their idle timeout. */
void cynic__upstreams_tick(cynic__proxy_t *p);
/* One upstream: creates its endpoints, breakers and bulkhead for `cfg` (u
 * zeroed); host names are not resolved yet. 0 or a negative CYNIC_E*. */
int cynic__upstream_init(cynic__proxy_t *p, cynic__upstream_t *u,
                         const cynic__config_upstream_t *cfg);
/* Starts resolving u's host names, now and every resolve_interval. */
void cynic__upstream_resolve_start(cynic__proxy_t *p, cynic__upstream_t *u);
/* The upstream in use (neither retired nor being made by a reload) named
 * `name`, or NULL. */
cynic__upstream_t *cynic__upstream_named(cynic__proxy_t *p, const char *name);
/* Points u and its endpoints at `cfg`: the same upstream in another config
 * (a reload keeps u) or a retired u's own copy. Same endpoints in the same
 * order (cynic__config_upstream_diff reports no CYNIC__CHANGE_REBUILD). The
 * config u pointed at must still be alive (its retry budget settings are
 * compared with cfg's: the budget keeps its window when they are the same). */
void cynic__upstream_cfg_set(cynic__upstream_t *u, const cynic__config_upstream_t *cfg);
/* A rebuilt upstream `u` starts where the one it replaces (`old`, NULL for a
 * new name) stands, endpoint by endpoint (matched by address text): an
 * operator's trip or force_closed with its who/why/since, and an open
 * breaker (an endpoint known to be down gets no traffic from the new object
 * until its interval ends; cynic_breaker_carry). Endpoints the old one did
 * not have start closed. */
void cynic__upstream_carry(cynic__upstream_t *u, const cynic__upstream_t *old);
/* Undoes cynic__upstream_init (a reload that was refused): frees what it made
 * and closes its timer; the slot may be reused once timer_open is false. */
void cynic__upstream_discard(cynic__upstream_t *u);
/* A retired upstream with nothing left that points to it: closes its timer
 * and cancels resolutions in flight, and once those are done frees its
 * breakers and bulkhead and marks the slot vacant. True when vacant now
 * (then u->cfg is NULL; the caller frees the config copy it had first). */
bool cynic__upstream_reclaim(cynic__upstream_t *u);
/* Frees breakers and bulkheads, after the loop has ended. */
void cynic__upstreams_free(cynic__proxy_t *p);

/* ---- upstream.c: attempts (Circuit Breaker) ------------------------------- */

/* One try at one endpoint: the endpoint picked and the breaker permit held on
 * it until an outcome is recorded or the permit is released. Embedded in the
 * caller (TCP: one per client connection; HTTP: one or more per request). */
typedef struct cynic__attempt {
  cynic__endpoint_t *endpoint;   /* picked (counted in endpoint->active until
                                    cynic__attempt_end); NULL before a pick */
  cynic_breaker_permit_t permit; /* valid while has_permit */
  bool has_permit;               /* an outcome is still owed to the breaker */
} cynic__attempt_t;

/* Picks an endpoint of `u` (balance, skipping open breakers) and takes a
 * breaker permit on it: 0, CYNIC_EOPEN when every breaker is open,
 * CYNIC_ESTATE when no endpoint has an address yet (a left as it was). On 0
 * the caller owes one cynic__attempt_end. */
int cynic__attempt_start(cynic__upstream_t *u, cynic__attempt_t *a);
/* The same, preferring endpoints whose bit (1 << index) is not in `avoid`
 * (a retry goes to another endpoint when one is available). */
int cynic__attempt_start_avoid(cynic__upstream_t *u, cynic__attempt_t *a, uint64_t avoid);
/* The endpoint answered: success for its breaker (once; later calls and
 * calls after a fault do nothing). */
void cynic__attempt_success(cynic__attempt_t *a);
/* The endpoint failed in the way `ev` (a CYNIC__EV_* fault) says: a failure
 * for its breaker if the permit is still held, and the event counted (and
 * logged, rate-limited) for the endpoint, with `detail` (NULL or text). */
void cynic__attempt_fault(cynic__attempt_t *a, cynic__event_t ev, const char *detail);
/* No outcome: the permit goes back unused (the client left, a local
 * shortage, a drain). Idempotent. */
void cynic__attempt_release(cynic__attempt_t *a);
/* The attempt is over: releases a permit still held and leaves the
 * endpoint's active count. a->endpoint stays set for the caller's report. */
void cynic__attempt_end(cynic__attempt_t *a);

/* True when some endpoint's breaker might let a call through now (not every
 * one is open or forced open with time left). Cheap while one is not open. */
bool cynic__upstream_available(const cynic__upstream_t *u);

/* ---- upstream.c: admission (Bulkheads, with a bounded queue) ------------- */

/* Something waiting for a bulkhead slot: embedded in whatever waits (a TCP
 * connection today, an HTTP request tomorrow); upstream.c owns it only while
 * it is queued. */
typedef struct cynic__waiter cynic__waiter_t;
/* The outcome for a waiter that was queued, called exactly once unless it was
 * cancelled first: status 0, it holds a slot now (owes one
 * cynic__admission_leave); CYNIC_EDEADLINE, its queue timeout passed (it is
 * off the queue, holds nothing). The callback may close and free the waiter's
 * owner. */
typedef void (*cynic__admit_cb)(cynic__waiter_t *w, int status);
struct cynic__waiter {
  cynic__link_t link;   /* u->waiters while queued */
  uint64_t deadline_ns; /* queue timeout, on p->clock: fixed when queued */
  cynic__admit_cb cb;
};

/* Takes a slot of u's bulkhead for `w`: 0 with *queued false, it holds one now
 * (the callback is not called); 0 with *queued true, it waits on u's queue and
 * `cb` says how that ends; CYNIC_EFULL when slots and queue are full (fail
 * fast). Fair: an arrival queues behind waiters even when a slot is free. */
int cynic__admission_enter(cynic__upstream_t *u, cynic__waiter_t *w, cynic__admit_cb cb,
                           bool *queued);
/* A queued waiter gives up (its client left): off the queue, its callback is
 * never called. A no-op for a waiter not on the queue. */
void cynic__admission_cancel(cynic__upstream_t *u, cynic__waiter_t *w);
/* Gives a slot back and hands free slots to the oldest waiters (their
 * callbacks run before this returns). */
void cynic__admission_leave(cynic__upstream_t *u);
/* Ends the wait of every waiter whose deadline is at or before `now_ns`, oldest
 * first, stopping at the first one not yet due (deadlines are in queue order:
 * one queue_timeout for all; after a reload that shortens it a newer waiter
 * may wait until the older ones ahead are due). Re-arms u's queue timer for
 * the next deadline. Called by that timer; public for tests. */
void cynic__admission_expire(cynic__upstream_t *u, uint64_t now_ns);

/* ---- listener.c ---------------------------------------------------------- */

int cynic__listeners_start(cynic__proxy_t *p);
void cynic__listeners_stop(cynic__proxy_t *p);
void cynic__listeners_free(cynic__proxy_t *p);
/* One listener (l zeroed): its per-client tables for `cfg`, forwarding to u.
 * 0 or a negative CYNIC_E*. */
int cynic__listener_setup(cynic__proxy_t *p, cynic__listener_t *l,
                          const cynic__config_listener_t *cfg, cynic__upstream_t *u);
/* Binds and listens (logs "listening", or "cannot listen" and returns the
 * libuv error). */
int cynic__listener_bind(cynic__proxy_t *p, cynic__listener_t *l);
/* Instead of bind: takes over the listening socket of `from` (a listener at
 * the same address that a reload rebuilds because its mode or buffer
 * changed) under a descriptor of its own, without closing or binding
 * anything: `from` is then closed by the caller and its open connections
 * finish with it; pending and new clients are accepted here. Logs
 * "listening" (event listener_rebuilt). 0 or a libuv error; on error undo
 * with cynic__listener_discard (the socket stays with `from`). */
int cynic__listener_adopt(cynic__proxy_t *p, cynic__listener_t *l, const cynic__listener_t *from);
/* Undoes setup and bind (a reload that was refused); the slot may be reused
 * once handle_open is false. */
void cynic__listener_discard(cynic__listener_t *l);
/* Stops accepting: closes the listening handle (its close callback clears
 * handle_open) and the reserve client handle. */
void cynic__listener_close(cynic__listener_t *l);
/* A retired listener with no connection left: frees its tables and pool and
 * marks the slot vacant (cfg NULL; the caller frees the copy it had first).
 * True when vacant now; false while its handle is still closing. */
bool cynic__listener_reclaim(cynic__listener_t *l);
/* The per-client rate table for cfg's rate_limit into *out (NULL without
 * one). 0 or a negative CYNIC_E*. */
int cynic__listener_rate_new(cynic__proxy_t *p, const cynic__config_listener_t *cfg,
                             cynic_ratetable_t **out);
/* The client address `ip` (16 bytes as stored: IPv4 mapped into IPv6) and
 * `port` as a sockaddr (AF_INET for a mapped address), for
 * cynic__addr_format. */
void cynic__client_sockaddr(const uint8_t ip[16], uint16_t port, struct sockaddr_storage *ss);
/* A per-client count table for cfg's max_connections_per_client into *out
 * with its bucket count (NULL and 0 without the limit); freed with
 * cynic__listener_clients_free once a listener holds it. 0 or CYNIC_ENOMEM. */
int cynic__listener_clients_new(const cynic__config_listener_t *cfg, cynic__client_count_t ***out,
                                size_t *buckets);
/* Frees l's per-client count table (max_connections_per_client) and leaves
 * it off (clients NULL, client_buckets 0); the counts it held are lost. */
void cynic__listener_clients_free(cynic__listener_t *l);
/* After a reload: every listening socket gets the TCP options its upstream
 * asks for now, so that new client sockets inherit them (pool.c). */
void cynic__listeners_options_refresh(cynic__proxy_t *p);
/* Every second: each listener's free connection buffers trimmed to what the
 * last second's peak needed (blocks.h). */
void cynic__listeners_trim(cynic__proxy_t *p);
/* A client connection of `l` from `ip` (16 bytes, as stored) is gone. */
void cynic__listener_release(cynic__listener_t *l, const uint8_t ip[16]);

/* A reload's changes to the listeners it keeps (same name, address, mode and
 * buffer), made by _prepare before anything changes: slot i's new rate table
 * (rate_limit changed) and new per-client table (max_connections_per_client
 * turned on), or that its table goes (turned off). Owns the tables until
 * _apply hands them over or _undo frees them. */
typedef struct cynic__listeners_reload {
  size_t count; /* the listener slots it covers: p->listener_count at _prepare */
  cynic_ratetable_t *rates[CYNIC__CONFIG_MAX_LISTENERS];
  bool rate_swap[CYNIC__CONFIG_MAX_LISTENERS]; /* replace the rate table (by rates[i], or NULL) */
  cynic__client_count_t **clients[CYNIC__CONFIG_MAX_LISTENERS];
  size_t client_buckets[CYNIC__CONFIG_MAX_LISTENERS];
  bool drop_clients[CYNIC__CONFIG_MAX_LISTENERS]; /* the limit is turned off */
} cynic__listeners_reload_t;
/* Makes what the kept listeners need for config `n` (see above; which classes
 * of change need what: cynic__config_listener_diff). 0, or a negative CYNIC_E*
 * with *msg (static: the log line) and `why` (the reason) set and nothing
 * left made. */
int cynic__listeners_reload_prepare(cynic__proxy_t *p, const cynic__config_t *n,
                                    cynic__listeners_reload_t *r, const char **msg, char *why,
                                    size_t len);
/* Frees what _prepare made (the reload was refused later). */
void cynic__listeners_reload_undo(cynic__listeners_reload_t *r);
/* Applies it once every object points at the new config: the new tables
 * (connections open before the reload are not in a new per-client table: a
 * client may have that many more until they close; a new rate table starts
 * full), each listener in use sends new clients to the upstream its config
 * names now (a rebuilt or another one; open connections keep theirs), and
 * the listening sockets get the TCP options their upstream asks for now. */
void cynic__listeners_reload_apply(cynic__proxy_t *p, cynic__listeners_reload_t *r);

/* ---- session.c (the session base and the mode table: session.h) ---------- */

/* Closes every client session, whatever its mode (drain deadline, second
 * signal, exit); `why` (static) names the cause in the debug log. */
void cynic__sessions_close_all(cynic__proxy_t *p, const char *why);
/* Tells every session the proxy is draining (session ops' drain). */
void cynic__sessions_drain(cynic__proxy_t *p);
/* Closes every session with something going on with endpoint `e` (an
 * operator's trip with close_connections); returns how many. */
size_t cynic__sessions_close_endpoint(cynic__proxy_t *p, const cynic__endpoint_t *e,
                                      const char *why);
/* Sets listeners[i] / upstreams[i] for every slot some session (open, queued
 * or closing but not yet freed) points to. O(sessions). */
void cynic__sessions_mark_in_use(const cynic__proxy_t *p, bool *listeners, bool *upstreams);

/* ---- metrics.c: hooks from the data path --------------------------------- */

/* One finished client connection, reported by its session when it is freed. Times
 * are microseconds of the monotonic high-resolution clock (uv_hrtime / 1000);
 * 0 = that phase never happened. */
typedef struct cynic__conn_report {
  cynic__listener_t *listener;
  cynic__upstream_t *upstream;
  cynic__endpoint_t *endpoint; /* NULL when none was picked */
  int outcome;                 /* CYNIC__EV_* or CYNIC__OUT_* */
  const char *decision;        /* breaker: the state the permit was taken in, or "rejected" */
  const uint8_t *ip;           /* the client, 16 bytes, IPv4 mapped */
  uint64_t accepted_us, connect_us, connected_us, first_byte_us, end_us;
  uint64_t bytes_up, bytes_down;
  /* HTTP mode, one report per request (method NULL in TCP mode): what was
   * asked, what the client got (status 0: no status line, it was reset or
   * closed), cynic's own answer's reason (NULL: the upstream's response) and
   * the request id. target is not NUL-terminated; method NULL when the head
 * was refused before it was complete. */
  const char *method;
  const char *target;
  size_t target_len;
  int status;
  int upstream_status; /* the upstream's final status (0: none came) */
  const char *answer;
  const char *fallback; /* the fallback kind that answered instead ("stale", "static") */
  const char *request_id;
  const uint8_t *tried; /* the endpoints' indices, in the order tried, in tried_upstream
                           (NULL: upstream; another after a fallback.secondary) */
  const cynic__upstream_t *tried_upstream;
  size_t attempts;      /* how many (more than 1: retries) */
  bool http; /* an HTTP request's report (the fields above apply) */
} cynic__conn_report_t;

void cynic__metrics_conn_started(cynic__upstream_t *u);
void cynic__metrics_conn_done(const cynic__conn_report_t *r);
/* A connect that succeeded after `us` microseconds. */
void cynic__metrics_connected(cynic__upstream_t *u, uint64_t us);
/* The upstream's first byte, `us` microseconds after the first byte sent (or
 * the connect, when the upstream speaks first). */
void cynic__metrics_first_byte(cynic__upstream_t *u, uint64_t us);
/* A breaker transition (called from the breaker's callback: records only). */
void cynic__metrics_transition(cynic__endpoint_t *e, cynic_breaker_state_t from,
                               cynic_breaker_state_t to, cynic_breaker_reason_t reason);

/* ---- http_limits.c: load shedding (the rest: http_limits.h) ------------- */

/* True while the process is overloaded: from the moment pending requests
 * reach limits.max_pending_requests until they fall below 90% of it (so
 * /ready does not flap at the edge); never with no ceiling. Re-reads the
 * ceiling (a reload may have changed it). */
bool cynic__hl_overloaded(cynic__proxy_t *p);

/* ---- admin.c ------------------------------------------------------------- */

/* Binds admin.listen and serves the admin API. 0 or a negative error (logged). */
int cynic__admin_start(cynic__proxy_t *p);
/* The same without a socket (fuzz/fuzz_admin_api.c): requests reach the
 * admin API only through cynic__httpd_feed(p->admin->httpd, ...) (admin.h). */
int cynic__admin_start_local(cynic__proxy_t *p);
/* Closes the admin listener (the loop must run after). */
void cynic__admin_stop(cynic__proxy_t *p);
/* Frees it, after the loop has ended. */
void cynic__admin_free(cynic__proxy_t *p);

#endif /* CYNIC_PROXY_PROXY_H */
