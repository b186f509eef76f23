/*
 * src/proxy/config.h: the cynic proxy's YAML configuration, parsed and checked.
 *
 * cynic__config_load() reads a YAML file into plain C structs: durations are
 * uint64_t nanoseconds, sizes uint64_t bytes, percentages whole numbers 0..100.
 * Nothing here depends on libcynic's pattern types; the daemon maps these
 * values onto breaker, bulkhead and rate-limit configs when it starts.
 *
 * Every problem found while loading (YAML syntax, wrong type, unknown or
 * duplicate key, bad value, contradiction between keys) becomes one entry in a
 * cynic__config_errors_t with the file, line and column it points at and a
 * message that says what would be valid. Loading collects up to
 * CYNIC__CONFIG_MAX_ERRORS errors instead of stopping at the first, and only
 * returns a config when there were none: a config is either whole or refused.
 *
 * Steady state: the input is bounded before it is parsed (file size, YAML node
 * count and nesting depth) and every list and string in the result has a cap,
 * listed below and in docs/configuration.md. YAML anchors and aliases are
 * refused, so an alias bomb cannot expand.
 *
 * Thread safety: loading has no global state; a loaded config is read-only and
 * may be read from any thread until cynic__config_free().
 */
#ifndef CYNIC_PROXY_CONFIG_H
#define CYNIC_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- bounds (steady state: nothing in a config is unbounded) -------------- */
#define CYNIC__CONFIG_MAX_FILE_BYTES (1024u * 1024u) /* 1 MiB */
#define CYNIC__CONFIG_MAX_NODES 100000u              /* YAML scalars + sequences + mappings */
#define CYNIC__CONFIG_MAX_DEPTH 32u                  /* nesting of sequences and mappings */
#define CYNIC__CONFIG_MAX_LISTENERS 64u
#define CYNIC__CONFIG_MAX_UPSTREAMS 256u
#define CYNIC__CONFIG_MAX_ENDPOINTS 64u /* per upstream */
#define CYNIC__CONFIG_MAX_NAME 64u      /* listener and upstream names */
#define CYNIC__CONFIG_MAX_PATH 4096u    /* file paths */
#define CYNIC__CONFIG_MAX_BODY 65536u   /* http fallback body */
#define CYNIC__CONFIG_MAX_ERRORS 20u
#define CYNIC__CONFIG_MAX_MESSAGE 320u

/* A duration of the config (ns) in the loop's milliseconds, rounded up: a
 * timer armed with it never fires early. */
static inline uint64_t cynic__config_ms(uint64_t ns) {
  return ns / 1000000u + (ns % 1000000u != 0);
}

/* A position in the config file, 1-based; {0, 0} when there is none. */
typedef struct cynic__config_mark {
  uint32_t line;
  uint32_t column;
} cynic__config_mark_t;

typedef enum cynic__config_addr_kind {
  CYNIC__ADDR_IPV4, /* a dotted-quad literal */
  CYNIC__ADDR_IPV6, /* a bracketed literal, [::1]:port */
  CYNIC__ADDR_NAME  /* a host name, resolved by the daemon (endpoints only) */
} cynic__config_addr_kind_t;

/* host:port as written. Listeners and the admin listener take literals only. */
typedef struct cynic__config_addr {
  cynic__config_addr_kind_t kind;
  char *host;     /* without brackets: "127.0.0.1", "::1", "db.internal" */
  uint16_t port;  /* 0 only for listeners: ephemeral port, for tests */
  uint8_t ip[16]; /* network order: 4 bytes for IPv4, 16 for IPv6, zero for names */
  char *text;     /* as written, for logs and /status: "[::1]:8080" */
  cynic__config_mark_t mark;
} cynic__config_addr_t;

typedef enum cynic__config_mode {
  CYNIC__MODE_TCP,
  CYNIC__MODE_HTTP /* HTTP/1.1, request by request (http_session.c) */
} cynic__config_mode_t;

typedef enum cynic__config_balance {
  CYNIC__BALANCE_ROUND_ROBIN,
  CYNIC__BALANCE_LEAST_CONNECTIONS
} cynic__config_balance_t;

typedef enum cynic__config_window_type {
  CYNIC__WINDOW_NONE, /* no failure-rate window: the leaky bucket alone trips */
  CYNIC__WINDOW_COUNT,
  CYNIC__WINDOW_TIME
} cynic__config_window_type_t;

typedef enum cynic__config_log_level {
  CYNIC__LOG_DEBUG,
  CYNIC__LOG_INFO,
  CYNIC__LOG_WARN,
  CYNIC__LOG_ERROR
} cynic__config_log_level_t;

typedef enum cynic__config_log_format {
  CYNIC__LOG_JSON /* one JSON object a line; the only format so far */
} cynic__config_log_format_t;

/* admin: the operations interface, separate from traffic (NICs and names). */
/* Each field of admin, log, listener, upstream (and the structs in them) is
 * listed once more in config_copy.c, with how a reload applies a change to it
 * (cynic__config_change_t, below); test_config fails until it is. */
typedef struct cynic__config_admin {
  cynic__config_addr_t listen; /* default 127.0.0.1:9901 */
  char *token_file;            /* bearer token file, or NULL for none */
  bool allow_remote;           /* non-loopback listen without a token */
  uint64_t drain_timeout_ns;   /* in-flight work gets this long on drain; 30s */
} cynic__config_admin_t;

typedef struct cynic__config_log {
  char *file;                        /* "-" = stderr, else a path reopened on SIGUSR1 */
  cynic__config_log_format_t format; /* json */
  cynic__config_log_level_t level;   /* info */
  uint64_t rotate_max_bytes;         /* rotate past this size; 0 = no rotation */
  uint32_t rotate_keep;              /* rotated files kept when rotating */
  uint64_t summary_interval_ns;      /* window of the rate-limited error summaries; 10s */
} cynic__config_log_t;

/* Which header carries the client's address to the upstream (http mode). */
typedef enum cynic__config_forwarded {
  CYNIC__FORWARDED_XFF = 0,   /* X-Forwarded-For: appended */
  CYNIC__FORWARDED_RFC7239,   /* Forwarded: for=...; appended */
  CYNIC__FORWARDED_NONE,      /* neither */
} cynic__config_forwarded_t;

/* tls (config_tls.c; used by tls.c). Under an upstream: cynic originates
 * TLS to every endpoint (HTTPS to a vendor; TCP mode wraps a plain protocol).
 * Under a listener: cynic terminates TLS from clients. enabled false: the
 * section was not written (or says enabled: false); every other field is
 * then unused. Paths are as written (relative to the working directory);
 * tls.c reads the files, at start and at every reload, and refuses the
 * config whole when one is unreadable, malformed, or a key does not match
 * its certificate. */
#define CYNIC__TLS_MAX_NAME 253u /* server_name bytes (a DNS name at most) */
typedef enum cynic__tls_version {
  CYNIC__TLS_1_2 = 0, /* the default minimum */
  CYNIC__TLS_1_3 = 1,
} cynic__tls_version_t;
typedef struct cynic__config_tls {
  bool enabled;
  cynic__tls_version_t min_version; /* "1.2" (default) or "1.3" */
  char *cert_file; /* PEM, chain included (leaf first); listener: required;
                      upstream: the client certificate (mutual TLS), with key_file */
  char *key_file;  /* PEM private key of cert_file; both or neither */
  char *ca_file;   /* upstream: CAs that verify the server (NULL: the system
                      store); listener: CAs that verify client certificates,
                      which are then required (NULL: none asked for) */
  /* upstream only */
  char *server_name;         /* SNI and the name verified; NULL: the endpoint's host
                                as written (a name, or an IP address verified as such) */
  bool insecure_skip_verify; /* no verification at all: test setups only, logged
                                loudly at every load */
  uint64_t handshake_timeout_ns; /* timeouts.tls_handshake (of the upstream or the
                                    listener): from connect (upstream) or accept
                                    (listener) to a finished handshake */
  cynic__config_mark_t mark; /* where the section is (for tls.c's errors) */
} cynic__config_tls_t;

typedef struct cynic__config_listener {
  char *name;
  cynic__config_addr_t listen; /* an explicit IPv4 or IPv6 literal */
  cynic__config_mode_t mode;
  char *upstream_name;
  size_t upstream;                     /* index into cynic__config_t.upstreams */
  uint32_t max_connections;            /* past it: accept and close (fail fast) */
  uint32_t max_connections_per_client; /* per client address; 0 = no limit */
  uint64_t header_timeout_ns;          /* http: request head must arrive in this */
  uint64_t idle_timeout_ns;            /* no bytes from the client this long: close */
  /* Per-client token bucket (unwanted users): rate_count tokens every
   * rate_period_ns, bucket holds burst. rate_count == 0: no rate limit. */
  uint32_t rate_count;
  uint64_t rate_period_ns;
  uint32_t rate_burst;
  char *rate_key_header;     /* http: the header naming the client (a trusted proxy's);
                                NULL = the client address (config_limits.c) */
  uint32_t rate_max_clients; /* clients the rate table remembers (LRU beyond) */
  uint64_t buffer_bytes; /* per direction per connection (back pressure) */
  char *access_log;      /* one JSON line per connection to this file; NULL = none */
  /* http mode only (config_http.c) */
  uint64_t max_request_head;           /* request line + headers, bytes (431 past it) */
  uint64_t max_request_body;           /* bytes (413 past it); 0 = no limit */
  cynic__config_forwarded_t forwarded; /* the client-address header appended */
  char *request_id_header;             /* carried or made, and logged */
  cynic__config_tls_t tls;             /* termination (config_tls.c) */
  cynic__config_mark_t mark;
} cynic__config_listener_t;

typedef struct cynic__config_breaker {
  uint32_t faults;           /* leaky-bucket level that trips the breaker */
  uint64_t leak_ns;          /* one fault leaks out of the bucket every leak_ns */
  uint64_t open_for_ns;      /* first open period before a half-open probe */
  uint64_t open_max_ns;      /* cap on the open period as it grows */
  double open_multiplier;    /* open period *= this after a failed probe; >= 1 */
  uint32_t half_open_probes; /* calls let through while half-open */
  /* optional failure-rate window, in addition to the bucket */
  cynic__config_window_type_t window_type;
  uint32_t window_size;      /* calls, for a count window */
  uint64_t window_size_ns;   /* duration, for a time window */
  uint32_t window_min_calls; /* no verdict on fewer calls than this */
  uint32_t failure_rate_pct; /* trip at or above this share of failures */
  uint32_t slow_rate_pct;    /* trip at or above this share of slow calls; 100 = off */
  uint64_t slow_call_ns;     /* a call slower than this counts as slow */
} cynic__config_breaker_t;

/* retry.on: what a retry answers (besides the statuses in retry_on_status). */
enum {
  CYNIC__RETRY_ON_CONNECT = 1u << 0,    /* connect refused, failed or timed out */
  CYNIC__RETRY_ON_RESET = 1u << 1,      /* reset or closed before any response byte */
  CYNIC__RETRY_ON_FIRST_BYTE = 1u << 2, /* timeouts.first_byte */
  CYNIC__RETRY_ON_BAD_RESPONSE = 1u << 3 /* a response head the parser refused */
};
/* The kinds of fallback answer (fallback.order), in their default order. */
typedef enum cynic__fallback_kind {
  CYNIC__FALLBACK_STALE = 0,     /* the last good response (stale_cache.c) */
  CYNIC__FALLBACK_SECONDARY = 1, /* another upstream (cynic__hu_secondary) */
  CYNIC__FALLBACK_STATIC = 2,    /* the configured status, headers and body */
  CYNIC__FALLBACK_KINDS = 3
} cynic__fallback_kind_t;

/* Bounds of fallback.headers. */
#define CYNIC__CONFIG_MAX_FALLBACK_HEADERS 32 /* headers */
#define CYNIC__CONFIG_MAX_FALLBACK_HEADER 1024u /* bytes of one name or value */

/* The http-only keys (retry, expect, limits, fallback, pool; config_http.c),
 * read per request by http mode. has_* says whether the section was written. */
typedef struct cynic__config_http {
  bool has_retry;
  uint32_t retry_attempts; /* extra attempts after the first, idempotent only */
  uint64_t retry_backoff_min_ns;
  uint64_t retry_backoff_max_ns;
  uint32_t retry_budget_pct; /* retries as a share of requests; 0 = never retry */
  uint32_t retry_min_per_sec; /* the budget's reserve: retries a second allowed anyway */
  uint32_t retry_on;          /* CYNIC__RETRY_ON_* conditions that retry */
  uint64_t retry_on_status[2]; /* statuses 500..599 that retry: bit (status - 500) */
  uint64_t retry_max_body;     /* request body bytes kept for a replay; 0 = none */
  char *retry_idempotent_header; /* its presence marks a request idempotent; NULL = none */
  char *deadline_header; /* the remaining time in ms, read from clients, sent upstream */
  bool has_expect;
  uint16_t expect_status_min; /* a status outside min..max is a fault */
  uint16_t expect_status_max;
  char *expect_content_type;   /* NULL = any */
  uint64_t max_response_bytes; /* 0 = no limit */
  uint64_t max_header_bytes;
  bool has_fallback;
  bool fallback_static; /* `status` written: the static kind answers */
  uint16_t fallback_status;
  char *fallback_body; /* NUL-terminated; fallback_body_len bytes */
  size_t fallback_body_len;
  char *fallback_content_type;
  char *fallback_headers; /* the static answer's `headers`, rendered "Name: value\r\n"
                             lines (checked: tokens, no CR/LF, no framing); NULL: none */
  bool fallback_stale;    /* `stale` written: the stale cache (stale_cache.c) */
  uint32_t stale_max_entries;
  uint64_t stale_max_bytes;       /* every entry's bytes, head and body, at most */
  uint64_t stale_max_entry_bytes; /* one response's body at most */
  uint64_t stale_max_age_ns;      /* an entry older than this is never served */
  char *fallback_secondary;       /* another upstream's name; NULL: none */
  cynic__config_mark_t fallback_secondary_mark;
  uint8_t fallback_order[CYNIC__FALLBACK_KINDS]; /* cynic__fallback_kind_t, tried in order */
  uint8_t fallback_kinds;                        /* how many of fallback_order are used */
  uint32_t pool_max_idle;        /* idle upstream connections kept per endpoint; 0 = none */
  uint64_t pool_idle_timeout_ns; /* an idle connection older than this is closed */
} cynic__config_http_t;

/* health_check (config_health.c; run by health.c): active checks of every
 * endpoint, a synthetic transaction each (an HTTP GET of `path`) or a TCP
 * connect without a path. enabled false: the section was not written. */
#define CYNIC__HEALTH_MAX_PATH 1024u /* path bytes */
#define CYNIC__HEALTH_MAX_BODY 256u  /* expect.body bytes */
typedef struct cynic__config_health {
  bool enabled;
  char *path;                  /* origin-form ("/healthz"); NULL: a TCP connect is the check */
  char *host;                  /* the Host header; NULL: the endpoint's address as written */
  uint64_t interval_ns;        /* between checks of one endpoint (+-10 %), 100ms..1h */
  uint64_t timeout_ns;         /* one check, connect to verdict; 1ms..interval */
  uint16_t expect_status_min;  /* a status outside min..max fails; 200-299 */
  uint16_t expect_status_max;
  char *expect_content_type;   /* NULL: any */
  char *expect_body;           /* a substring the body must hold; NULL: any */
  uint32_t healthy_after;      /* consecutive passes that bring an endpoint back; 1..100 */
  uint32_t unhealthy_after;    /* consecutive failures that take it out; 1..100 */
} cynic__config_health_t;

typedef struct cynic__config_upstream {
  char *name;
  cynic__config_addr_t *endpoints; /* 1..CYNIC__CONFIG_MAX_ENDPOINTS */
  size_t endpoint_count;
  cynic__config_balance_t balance;
  uint64_t resolve_interval_ns; /* re-resolve host names; 0 = never */
  uint64_t connect_timeout_ns;
  uint64_t first_byte_timeout_ns; /* first byte sent to first byte back; 0 = off */
  uint64_t idle_timeout_ns;       /* no bytes either way */
  uint64_t request_timeout_ns;    /* whole exchange; 0 = off */
  /* tcp_keepalive: TCP keepalive (dead-connection detection) */
  uint64_t keepalive_idle_ns;              /* TCP_KEEPIDLE, whole seconds */
  uint64_t keepalive_interval_ns;          /* TCP_KEEPINTVL, whole seconds */
  uint32_t keepalive_probes;               /* TCP_KEEPCNT */
  uint64_t user_timeout_ns;                /* TCP_USER_TIMEOUT, whole ms; 0 = kernel default */
  cynic__config_mark_t keepalive_old_name; /* where `keepalive:` (the deprecated name
                                              of tcp_keepalive) was used; {0, 0} = not */
  /* bulkhead */
  uint32_t max_connections;
  uint32_t max_pending;
  uint64_t queue_timeout_ns;
  cynic__config_breaker_t breaker;
  bool required; /* readiness fails when every endpoint's breaker is open */
  cynic__config_http_t http;
  cynic__config_health_t health;
  cynic__config_tls_t tls; /* origination (config_tls.c) */
  cynic__config_mark_t mark;
} cynic__config_upstream_t;

/* limits: process-wide bounds (config_limits.c), read where used. */
typedef struct cynic__config_limits {
  uint32_t max_pending_requests; /* http requests in flight at most; 0 = no ceiling */
} cynic__config_limits_t;

typedef struct cynic__config {
  char *path; /* the file it came from, or the name given to _parse */
  cynic__config_admin_t admin;
  cynic__config_limits_t limits;
  cynic__config_log_t log;
  cynic__config_listener_t *listeners;
  size_t listener_count;
  cynic__config_upstream_t *upstreams;
  size_t upstream_count;
} cynic__config_t;

typedef struct cynic__config_error {
  cynic__config_mark_t mark; /* {0,0}: about the file as a whole */
  char message[CYNIC__CONFIG_MAX_MESSAGE];
} cynic__config_error_t;

typedef struct cynic__config_errors {
  char file[CYNIC__CONFIG_MAX_PATH]; /* as given to load/parse */
  size_t count;                      /* entries used in list */
  bool truncated;                    /* more errors were found than fit */
  cynic__config_error_t list[CYNIC__CONFIG_MAX_ERRORS];
} cynic__config_errors_t;

/*
 * Load and check the YAML config at `path`. On success returns 0 and sets *out
 * to a config the caller owns and frees with cynic__config_free(); errs->count
 * is 0. On failure returns a negative CYNIC_E* code (CYNIC_EINVAL for a bad
 * config or unreadable file, CYNIC_ENOMEM), leaves *out NULL, and fills errs.
 * Loading from a file also checks that admin.token_file is readable.
 */
int cynic__config_load(const char *path, cynic__config_t **out, cynic__config_errors_t *errs);

/*
 * As cynic__config_load() but from `len` bytes at `data` (need not be
 * NUL-terminated); `name` stands for the file name in messages. Touches no
 * files. For tests and fuzzing.
 */
int cynic__config_parse(const char *name, const char *data, size_t len, cynic__config_t **out,
                        cynic__config_errors_t *errs);

/* Free a config from load/parse; NULL is fine. */
void cynic__config_free(cynic__config_t *cfg);

/*
 * Write error `i` of `errs` as "file:line:column: message" (or "file: message"
 * without a position) into buf, NUL-terminated and truncated to fit. Returns
 * the length it would have had, like snprintf.
 */
int cynic__config_error_format(const cynic__config_errors_t *errs, size_t i, char *buf,
                               size_t size);

/* Print every error, one a line, plus a line saying so if some were dropped. */
void cynic__config_errors_print(const cynic__config_errors_t *errs, FILE *out);

/* ---- copy and compare (config_copy.c) -------------------------------------- */

/*
 * What a change to a setting needs from a running daemon, one class per field.
 * config_copy.c lists every field of the listener, upstream, log and admin
 * structs above once, with its class: the copies, the frees and the
 * comparisons below all walk that one list, and tests/unit/proxy/test_config.c
 * fails when a field of these structs is missing from it. A new field is
 * therefore given a class (and so a way to be applied) when it is added.
 * Each class is one bit; a comparison returns the bits of what changed.
 */
typedef enum cynic__config_change {
  CYNIC__CHANGE_NONE = 0,              /* not a setting: a file position, a derived index */
  CYNIC__CHANGE_READ = 1u << 0,        /* read where used: pointing at the new config applies it */
  CYNIC__CHANGE_REBUILD = 1u << 1,     /* the object made from it cannot change: a new object */
  CYNIC__CHANGE_ADDRESS = 1u << 2,     /* listener: another address (a new bind) */
  CYNIC__CHANGE_ROUTE = 1u << 3,       /* listener: new clients go to another upstream */
  CYNIC__CHANGE_RATE = 1u << 4,        /* listener: a new per-client rate table */
  CYNIC__CHANGE_CLIENTS = 1u << 5,     /* listener: the per-client count table, made or dropped */
  CYNIC__CHANGE_ACCESSLOG = 1u << 6,   /* listener: another access log file */
  CYNIC__CHANGE_SOCKET = 1u << 7,      /* upstream: TCP options set on the listening sockets */
  CYNIC__CHANGE_LOG_FILE = 1u << 8,    /* log: another file */
  CYNIC__CHANGE_LOG_LEVEL = 1u << 9,   /* log: another level */
  CYNIC__CHANGE_LOG_ROTATE = 1u << 10, /* log: the rotation check timer */
  CYNIC__CHANGE_ADMIN_LISTEN = 1u << 11, /* admin: another address (a new bind) */
  CYNIC__CHANGE_TOKEN = 1u << 12         /* admin: another token file */
} cynic__config_change_t;

/*
 * A deep copy of one listener's (upstream's) part of a config: every string
 * and array is copied, so the copy outlives the config it came from (a
 * retired object keeps reading its own). Returns a new struct the caller owns
 * and frees with the matching _free, or NULL without memory.
 */
cynic__config_listener_t *cynic__config_listener_copy(const cynic__config_listener_t *c);
cynic__config_upstream_t *cynic__config_upstream_copy(const cynic__config_upstream_t *c);
/* Free a copy from _copy (its strings and arrays, then the struct); NULL is fine. */
void cynic__config_listener_free(cynic__config_listener_t *c);
void cynic__config_upstream_free(cynic__config_upstream_t *c);
/* Free what a struct owns (strings, arrays) but not the struct itself, which
 * is left with NULL pointers: for the arrays of a loaded config. */
void cynic__config_listener_clear(cynic__config_listener_t *c);
void cynic__config_upstream_clear(cynic__config_upstream_t *c);

/*
 * Compare two versions of one part (the same listener or upstream, found by
 * name, in the config in use and in a reloaded one): returns the OR of the
 * classes of every field that differs (cynic__config_change_t), 0 when the
 * two are the same setting for setting. Positions in the file are not
 * compared (CYNIC__CHANGE_NONE). Strings compare by content, endpoints one
 * by one in order.
 */
unsigned cynic__config_listener_diff(const cynic__config_listener_t *a,
                                     const cynic__config_listener_t *b);
unsigned cynic__config_upstream_diff(const cynic__config_upstream_t *a,
                                     const cynic__config_upstream_t *b);
unsigned cynic__config_log_diff(const cynic__config_log_t *a, const cynic__config_log_t *b);
unsigned cynic__config_admin_diff(const cynic__config_admin_t *a, const cynic__config_admin_t *b);
/* The health_check part alone: a deep copy (NULL without memory; freed with
 * _free, NULL is fine) and a comparison (non-zero when some setting differs),
 * for health.c, which keeps the settings its checks run with. */
cynic__config_health_t *cynic__config_health_copy(const cynic__config_health_t *c);
void cynic__config_health_free(cynic__config_health_t *c);
unsigned cynic__config_health_diff(const cynic__config_health_t *a,
                                   const cynic__config_health_t *b);
/* The tls part alone, the same way: for tls.c, should it keep the settings
 * a context was built from beside the context. */
cynic__config_tls_t *cynic__config_tls_copy(const cynic__config_tls_t *c);
void cynic__config_tls_free(cynic__config_tls_t *c);
unsigned cynic__config_tls_diff(const cynic__config_tls_t *a, const cynic__config_tls_t *b);

/* The listener (upstream) named `name` in cfg, or NULL. */
const cynic__config_listener_t *cynic__config_listener_find(const cynic__config_t *cfg,
                                                            const char *name);
const cynic__config_upstream_t *cynic__config_upstream_find(const cynic__config_t *cfg,
                                                            const char *name);

/* The field list behind the functions above, for tests: how each field is
 * copied and compared (kind) and what a change to it needs (change). */
typedef enum cynic__config_kind {
  CYNIC__FIELD_VALUE,     /* a number, enum, bool, position or byte array: copied as is */
  CYNIC__FIELD_STR,       /* char *, NUL-terminated or NULL: duplicated */
  CYNIC__FIELD_ADDR,      /* cynic__config_addr_t: its own fields */
  CYNIC__FIELD_ENDPOINTS, /* cynic__config_addr_t *, the count in the size_t right after */
  CYNIC__FIELD_BREAKER,   /* cynic__config_breaker_t: its own fields */
  CYNIC__FIELD_HTTP,      /* cynic__config_http_t: its own fields */
  CYNIC__FIELD_HEALTH,    /* cynic__config_health_t: its own fields */
  CYNIC__FIELD_TLS        /* cynic__config_tls_t: its own fields */
} cynic__config_kind_t;

typedef enum cynic__config_part {
  CYNIC__PART_ADDR,
  CYNIC__PART_LISTENER,
  CYNIC__PART_BREAKER,
  CYNIC__PART_HTTP,
  CYNIC__PART_UPSTREAM,
  CYNIC__PART_LOG,
  CYNIC__PART_ADMIN,
  CYNIC__PART_HEALTH,
  CYNIC__PART_TLS,
  CYNIC__PART_COUNT
} cynic__config_part_t;

typedef struct cynic__config_field {
  const char *name;
  size_t offset; /* offsetof in its struct */
  size_t size;   /* sizeof the member */
  size_t align;  /* its alignment (for the test that every member is listed) */
  cynic__config_kind_t kind;
  unsigned change; /* cynic__config_change_t; in a nested part, NONE = not compared */
} cynic__config_field_t;

/* The fields of `part` in declaration order; *count set, *struct_size the
 * sizeof of its struct. Static data. */
const cynic__config_field_t *cynic__config_fields(cynic__config_part_t part, size_t *count,
                                                  size_t *struct_size);

/* The strict value parsers (durations, sizes, percentages) are in config_value.h. */

#endif /* CYNIC_PROXY_CONFIG_H */
