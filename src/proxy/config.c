/*
 * src/proxy/config.c: YAML config to plain structs, strictly.
 *
 * Two passes. First config_yaml.c builds a bounded tree of the file (no
 * anchors, aliases or tags; node count and depth capped). Then a walk over
 * the tree checks each mapping against its list of keys (cynic's schema, here;
 * the reader, config_schema.c, reports unknown and duplicate keys, with a "did
 * you mean" from edit distance) and parses each value with a strict parser
 * (config_value.c). Errors are collected
 * (up to CYNIC__CONFIG_MAX_ERRORS) rather than stopping at the first; a value
 * that fails keeps its default so the walk can go on and find the next one.
 * Cross-checks (unique names, upstream references, overlapping addresses)
 * run last, and the errors are sorted by position.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include "config_health.h"
#include "config_http.h"
#include "config_limits.h"
#include "config_tls.h"
#include "config_schema.h"
#include "config_value.h"
#include "config_yaml.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "cynic/common.h"
#include "file.h"
#include "token.h"

typedef cynic__yaml_node_t node_t;

typedef struct loader {
  cynic__schema_t rd; /* the schema reader: errors, out of memory */
  cynic__config_t *cfg;
  bool check_files; /* loading from a file: check token_file is readable */
} loader_t;

/* ---- cynic's schema ------------------------------------------------------------ */

/* Old names that still load (the daemon logs a deprecation warning) but are
 * never listed or suggested: {mapping, key}. The schema reader asks. */
static const char *const deprecated_keys[][2] = {{"upstream", "keepalive"}};

static bool deprecated_key(const char *what, const char *key) {
  for (size_t i = 0; i < sizeof deprecated_keys / sizeof deprecated_keys[0]; i++)
    if (strcmp(what, deprecated_keys[i][0]) == 0 && strcmp(key, deprecated_keys[i][1]) == 0)
      return true;
  return false;
}

static bool valid_name(const char *s, size_t len) {
  if (len == 0 || len > CYNIC__CONFIG_MAX_NAME)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

static const node_t *get_name(loader_t *ld, const node_t *m, const char *key, char **out) {
  const node_t *v = cynic__schema_get(m, key);
  if (v == NULL)
    return NULL;
  const char *s = cynic__schema_scalar(&ld->rd, v, key);
  if (s == NULL)
    return v;
  if (!valid_name(s, v->len)) {
    char sv[64];
    cynic__schema_error_at(&ld->rd, v,
                           "%s: '%s' is not a valid name; use 1..%u of A-Z a-z 0-9 _ . -", key,
                           cynic__config_show(sv, s, v->len), (unsigned)CYNIC__CONFIG_MAX_NAME);
    return v;
  }
  char *copy = strdup(s);
  if (copy == NULL) {
    cynic__schema_out_of_memory(&ld->rd);
    return v;
  }
  free(*out);
  *out = copy;
  return v;
}

/* ---- addresses --------------------------------------------------------------- */

static void addr_clear(cynic__config_addr_t *a) {
  free(a->host);
  free(a->text);
  memset(a, 0, sizeof *a);
}

/* What an address is checked against, and how it is shown in messages. */
typedef struct addr_rules {
  const char *key;  /* the key, for messages */
  const char *show; /* the value as shown in messages (cynic__config_show) */
  const char *example;
  bool allow_names;
  bool allow_port0;
} addr_rules_t;

static void no_address(loader_t *ld, const node_t *v, const addr_rules_t *r) {
  cynic__schema_error_at(
      &ld->rd, v, "%s: '%s' has no address; write an explicit one, e.g. %s", r->key, r->show,
      r->allow_names ? "127.0.0.1:9000" : "127.0.0.1:8080 (0.0.0.0:8080 for every IPv4 interface)");
}

/* Sets a->kind and a->ip from `host` (brackets removed), or reports what it
 * is not and returns false. */
static bool check_host(loader_t *ld, const node_t *v, const addr_rules_t *r, const char *host,
                       bool bracketed, cynic__config_addr_t *a) {
  if (bracketed) {
    if (inet_pton(AF_INET6, host, a->ip) != 1) {
      cynic__schema_error_at(&ld->rd, v,
                             "%s: '%s' is not a valid IPv6 address; write e.g. [::1]:8080", r->key,
                             r->show);
      return false;
    }
    a->kind = CYNIC__ADDR_IPV6;
  } else if (inet_pton(AF_INET, host, a->ip) == 1) {
    a->kind = CYNIC__ADDR_IPV4;
  } else if (cynic__config_dns_name(host, strlen(host), true)) {
    if (!r->allow_names) {
      cynic__schema_error_at(&ld->rd, v,
                             "%s: '%s' is a host name; bind an explicit IP address, e.g. %s",
                             r->key, r->show, r->example);
      return false;
    }
    a->kind = CYNIC__ADDR_NAME;
  } else {
    cynic__schema_error_at(&ld->rd, v, "%s: '%s' is not a valid %s; write e.g. %s", r->key, r->show,
                           r->allow_names ? "IPv4 address or host name" : "IPv4 address",
                           r->example);
    return false;
  }
  return true;
}

static void port_out_of_range(loader_t *ld, const node_t *v, const addr_rules_t *r) {
  cynic__schema_error_at(&ld->rd, v, "%s: port in '%s' is out of range; use %s..65535", r->key,
                         r->show, r->allow_port0 ? "0" : "1");
}

/* cynic__addr_split refused `s`: say why, in the order a reader would fix
 * it (form, then host, then port). */
static void explain_bad_addr(loader_t *ld, const node_t *v, const addr_rules_t *r, const char *s) {
  char host[CYNIC_ADDR_HOST_MAX];
  const char *port_s, *hbeg = s;
  size_t host_len;
  bool bracketed = s[0] == '[';
  cynic__config_addr_t a;
  if (bracketed) {
    const char *close = strchr(s, ']');
    if (close == NULL) {
      cynic__schema_error_at(&ld->rd, v, "%s: '%s' has no closing ']'; write e.g. [::1]:8080",
                             r->key, r->show);
      return;
    }
    if (close[1] != ':') {
      cynic__schema_error_at(
          &ld->rd, v, "%s: '%s' has no port; write address:port, e.g. [::1]:8080", r->key, r->show);
      return;
    }
    hbeg = s + 1, host_len = (size_t)(close - hbeg), port_s = close + 2;
    if (host_len == 0 || host_len >= sizeof host) {
      cynic__schema_error_at(&ld->rd, v,
                             "%s: '%s' is not a valid IPv6 address; write e.g. [::1]:8080", r->key,
                             r->show);
      return;
    }
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
      bool digits = true;
      for (const char *p = s; *p; p++)
        digits = digits && *p >= '0' && *p <= '9';
      if (digits)
        no_address(ld, v, r);
      else
        cynic__schema_error_at(&ld->rd, v, "%s: '%s' has no port; write address:port, e.g. %s",
                               r->key, r->show, r->example);
      return;
    }
    if (strchr(s, ':') != colon) {
      cynic__schema_error_at(
          &ld->rd, v, "%s: '%s': an IPv6 address needs brackets, e.g. [::1]:8080", r->key, r->show);
      return;
    }
    host_len = (size_t)(colon - s), port_s = colon + 1;
    if (host_len == 0) {
      no_address(ld, v, r);
      return;
    }
    if (host_len >= sizeof host) {
      cynic__schema_error_at(&ld->rd, v, "%s: the host in '%s' is too long", r->key, r->show);
      return;
    }
  }
  memcpy(host, hbeg, host_len);
  host[host_len] = '\0';
  if (!check_host(ld, v, r, host, bracketed, &a))
    return;
  uint64_t port;
  bool overflow;
  size_t used = cynic__config_digits(port_s, &port, &overflow);
  if (used > 0 && port_s[used] == '\0' && (overflow || port > 65535))
    port_out_of_range(ld, v, r);
  else /* no digits, something after them, or more than 5 of them */
    cynic__schema_error_at(&ld->rd, v, "%s: '%s' has no valid port; write address:port, e.g. %s",
                           r->key, r->show, r->example);
}

/* Parse "1.2.3.4:port", "[v6]:port" or (allow_names) "host:port" from v into
 * *out; port 0 only if allow_port0. The form is addr.c's (cynic__addr_split,
 * the one host:port parser); the config adds what it allows (literals or
 * names, port 0) and messages that say how to fix a value. Reports and
 * returns false on a bad value. */
static bool parse_addr(loader_t *ld, const node_t *v, const char *key, bool allow_names,
                       bool allow_port0, cynic__config_addr_t *out) {
  const char *s = cynic__schema_scalar(&ld->rd, v, key);
  if (s == NULL)
    return false;
  char sv[64], host[CYNIC_ADDR_HOST_MAX];
  addr_rules_t r = {key, cynic__config_show(sv, s, v->len),
                    allow_names ? "127.0.0.1:9000, [::1]:9000 or db.internal:5432"
                                : "127.0.0.1:8080 or [::1]:8080",
                    allow_names, allow_port0};
  uint16_t port;
  cynic__config_addr_t a;
  memset(&a, 0, sizeof a);
  if (cynic__addr_split(s, host, sizeof host, &port) != 0) {
    explain_bad_addr(ld, v, &r, s);
    return false;
  }
  if (host[0] == '\0') { /* ":8080": addr.c's every interface; the config wants it explicit */
    no_address(ld, v, &r);
    return false;
  }
  if (!check_host(ld, v, &r, host, s[0] == '[', &a))
    return false;
  if (port == 0 && !allow_port0) {
    port_out_of_range(ld, v, &r);
    return false;
  }
  a.port = port;
  a.mark = v->mark;
  a.host = strdup(host);
  a.text = strdup(s);
  if (a.host == NULL || a.text == NULL) {
    addr_clear(&a);
    cynic__schema_out_of_memory(&ld->rd);
    return false;
  }
  addr_clear(out);
  *out = a;
  return true;
}

static bool addr_set_default(loader_t *ld, cynic__config_addr_t *a, const char *text) {
  node_t fake;
  memset(&fake, 0, sizeof fake);
  fake.type = CYNIC__YAML_SCALAR;
  fake.plain = true;
  fake.str = (char *)text;
  fake.len = strlen(text);
  return parse_addr(ld, &fake, "listen", false, true, a);
}

static bool addr_is_loopback(const cynic__config_addr_t *a) {
  static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a->kind == CYNIC__ADDR_IPV4)
    return a->ip[0] == 127;
  if (a->kind == CYNIC__ADDR_IPV6)
    return memcmp(a->ip, v6_loopback, 16) == 0 ||
           (memcmp(a->ip, v4_mapped, 12) == 0 && a->ip[12] == 127);
  return false;
}

static bool addr_is_wildcard(const cynic__config_addr_t *a) {
  static const uint8_t zero[16] = {0};
  size_t n = a->kind == CYNIC__ADDR_IPV4 ? 4 : 16;
  return memcmp(a->ip, zero, n) == 0;
}

/* Would binding both fail with EADDRINUSE? Port 0 never clashes. */
static bool addrs_clash(const cynic__config_addr_t *a, const cynic__config_addr_t *b) {
  if (a->port == 0 || a->port != b->port || a->kind != b->kind)
    return false;
  size_t n = a->kind == CYNIC__ADDR_IPV4 ? 4 : 16;
  return memcmp(a->ip, b->ip, n) == 0 || addr_is_wildcard(a) || addr_is_wildcard(b);
}

/* ---- sections ---------------------------------------------------------------- */

static const char *const admin_keys[] = {"listen", "token_file", "allow_remote", "drain_timeout",
                                         NULL};
static const char *const log_keys[] = {"file",   "format",           "level",
                                       "rotate", "summary_interval", NULL};
static const char *const rotate_keys[] = {"max_bytes", "keep", NULL};
static const char *const listener_keys[] = {"name",
                                            "listen",
                                            "mode",
                                            "upstream",
                                            "max_connections",
                                            "max_connections_per_client",
                                            "timeouts",
                                            "rate_limit",
                                            "buffer",
                                            "access_log",
                                            "limits",
                                            "forwarded",
                                            "request_id_header",
                                            "tls",
                                            NULL};
static const char *const listener_timeout_keys[] = {"header", "idle", "tls_handshake", NULL};
static const char *const rate_limit_keys[] = {"per_client", "burst", "key_header", "max_clients",
                                              NULL};
static const char *const upstream_keys[] = {
    "name",    "endpoints", "balance", "resolve_interval", "timeouts", "tcp_keepalive", "bulkhead",
    "breaker", "required",  "retry",   "expect",           "limits",   "fallback",      "pool",
    "deadline_header", "health_check", "tls", NULL};
static const char *const upstream_timeout_keys[] = {"connect", "first_byte", "idle", "request",
                                                    "tls_handshake", NULL};
static const char *const keepalive_keys[] = {"idle", "interval", "probes", "user_timeout", NULL};
static const char *const bulkhead_keys[] = {"max_connections", "max_pending", "queue_timeout",
                                            NULL};
static const char *const breaker_keys[] = {
    "faults",           "leak",   "open_for", "open_max", "open_multiplier",
    "half_open_probes", "window", NULL};
static const char *const window_keys[] = {"type",      "size",      "min_calls", "failure_rate",
                                          "slow_rate", "slow_call", NULL};
static const char *const top_keys[] = {"admin", "log", "limits", "listeners", "upstreams", NULL};

static const char *const mode_names[] = {"tcp", "http", NULL};
static const char *const balance_names[] = {"round_robin", "least_connections", NULL};
static const char *const window_names[] = {"count", "time", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"json", NULL};

#define DAY_NS (86400 * NS_PER_S)

/* A sub-mapping `key` of m checked against keys, or NULL if absent or bad. */
static const node_t *section(loader_t *ld, const node_t *m, const char *key,
                             const char *const *keys) {
  return cynic__schema_section(&ld->rd, m, key, keys);
}

static void load_admin(loader_t *ld, const node_t *m) {
  cynic__config_admin_t *a = &ld->cfg->admin;
  const node_t *listen = NULL;
  if (m != NULL && cynic__schema_check_map(&ld->rd, m, "admin", admin_keys)) {
    listen = cynic__schema_get(m, "listen");
    if (listen != NULL)
      parse_addr(ld, listen, "listen", false, true, &a->listen);
    const node_t *tf =
        cynic__schema_get_string(&ld->rd, m, "token_file", CYNIC__CONFIG_MAX_PATH, &a->token_file);
    if (tf != NULL && a->token_file != NULL && ld->check_files) {
      /* The same reading and rule as start and reload (token.c): --check
       * passes exactly the files the proxy accepts. */
      char why[CYNIC__CONFIG_MAX_MESSAGE / 2], *token = NULL;
      size_t len = 0;
      int rc = cynic__token_read(a->token_file, &token, &len, why, sizeof why);
      if (rc == -ENOMEM)
        cynic__schema_out_of_memory(&ld->rd);
      else if (rc != 0)
        cynic__schema_error_at(&ld->rd, tf, "token_file: '%s' %s", a->token_file, why);
      cynic__token_free(token, len);
    }
    cynic__schema_get_bool(&ld->rd, m, "allow_remote", &a->allow_remote);
    cynic__schema_get_duration(&ld->rd, m, "drain_timeout", 0, 3600 * NS_PER_S, "0s..1h",
                               &a->drain_timeout_ns);
  }
  if (a->listen.host != NULL && !addr_is_loopback(&a->listen) && a->token_file == NULL &&
      !a->allow_remote)
    cynic__schema_error_at(
        &ld->rd, listen,
        "listen: admin on %s is reachable from other hosts and has no token_file; add "
        "token_file: /path/to/token, or allow_remote: true if this network is trusted",
        a->listen.text);
}

static void load_log(loader_t *ld, const node_t *m) {
  cynic__config_log_t *l = &ld->cfg->log;
  if (m == NULL || !cynic__schema_check_map(&ld->rd, m, "log", log_keys))
    return;
  cynic__schema_get_string(&ld->rd, m, "file", CYNIC__CONFIG_MAX_PATH, &l->file);
  int format = (int)l->format, level = (int)l->level;
  const node_t *fv = cynic__schema_get(m, "format");
  if (fv != NULL && fv->type == CYNIC__YAML_SCALAR && strcmp(fv->str, "text") == 0)
    cynic__schema_error_at(&ld->rd, fv, "format: 'text' is not supported yet; use json");
  else
    cynic__schema_get_enum(&ld->rd, m, "format", format_names, &format);
  cynic__schema_get_enum(&ld->rd, m, "level", level_names, &level);
  l->format = (cynic__config_log_format_t)format;
  l->level = (cynic__config_log_level_t)level;
  cynic__schema_get_duration(&ld->rd, m, "summary_interval", 100 * NS_PER_MS, 3600 * NS_PER_S,
                             "100ms..1h", &l->summary_interval_ns);
  const node_t *rot = section(ld, m, "rotate", rotate_keys);
  if (rot != NULL) {
    l->rotate_max_bytes = 100 * MIB;
    cynic__schema_get_size(&ld->rd, rot, "max_bytes", 64 * KIB, TIB, "64KB..1024GB",
                           &l->rotate_max_bytes);
    cynic__schema_get_u32(&ld->rd, rot, "keep", 1, 100, &l->rotate_keep);
    if (strcmp(l->file, "-") == 0)
      cynic__schema_error_at(
          &ld->rd, cynic__schema_get(m, "rotate"),
          "rotate: the log goes to stderr, which cannot be rotated; set file: to a path or "
          "remove rotate");
  }
}

/* "100/s", "6000/m", "10/h" into count and period. */
static void parse_rate(loader_t *ld, const node_t *v, cynic__config_listener_t *l) {
  const char *s = cynic__schema_scalar(&ld->rd, v, "per_client");
  if (s == NULL)
    return;
  char sv[64];
  uint64_t n;
  bool overflow;
  size_t used = cynic__config_digits(s, &n, &overflow);
  uint64_t period = 0;
  if (used > 0 && s[used] == '/' && s[used + 1] != '\0' && s[used + 2] == '\0') {
    switch (s[used + 1]) {
    case 's':
      period = NS_PER_S;
      break;
    case 'm':
      period = 60 * NS_PER_S;
      break;
    case 'h':
      period = 3600 * NS_PER_S;
      break;
    default:
      break;
    }
  }
  if (period == 0) {
    cynic__schema_error_at(
        &ld->rd, v,
        "per_client: '%s' is not a rate; write requests per unit, e.g. 100/s, 600/m "
        "or 1000/h",
        cynic__config_show(sv, s, v->len));
    return;
  }
  if (overflow || n < 1 || n > 1000000) {
    cynic__schema_error_at(&ld->rd, v,
                           "per_client: %s is out of range; use 1..1000000 per s, m or h",
                           cynic__config_show(sv, s, v->len));
    return;
  }
  l->rate_count = (uint32_t)n;
  l->rate_period_ns = period;
}

static void load_listener(loader_t *ld, const node_t *m, cynic__config_listener_t *l) {
  l->mark = m->mark;
  l->max_connections = 10000;
  l->header_timeout_ns = 10 * NS_PER_S;
  l->idle_timeout_ns = 60 * NS_PER_S;
  l->buffer_bytes = 64 * KIB;
  if (!cynic__schema_check_map(&ld->rd, m, "listener", listener_keys)) {
    cynic__config_load_listener_http(&ld->rd, NULL, l); /* defaults: the struct is whole */
    cynic__config_load_rate_keys(&ld->rd, NULL, l);
    cynic__config_load_listener_tls(&ld->rd, NULL, &l->tls);
    return;
  }
  if (get_name(ld, m, "name", &l->name) == NULL)
    cynic__schema_error_at(&ld->rd, m, "listener is missing 'name'; add name: <a unique name>");
  cynic__config_load_listener_http(&ld->rd, m, l);
  const node_t *listen = cynic__schema_get(m, "listen");
  if (listen == NULL)
    cynic__schema_error_at(&ld->rd, m, "listener is missing 'listen'; add listen: 127.0.0.1:8080");
  else
    parse_addr(ld, listen, "listen", false, true, &l->listen);
  int mode = CYNIC__MODE_TCP;
  cynic__schema_get_enum(&ld->rd, m, "mode", mode_names, &mode);
  l->mode = (cynic__config_mode_t)mode;
  if (cynic__schema_get(m, "upstream") == NULL)
    cynic__schema_error_at(&ld->rd, m,
                           "listener is missing 'upstream'; add upstream: <name of an upstream>");
  else
    get_name(ld, m, "upstream", &l->upstream_name);
  cynic__schema_get_u32(&ld->rd, m, "max_connections", 1, 1000000, &l->max_connections);
  const node_t *pc = cynic__schema_get_u32(&ld->rd, m, "max_connections_per_client", 0, 1000000,
                                           &l->max_connections_per_client);
  if (pc != NULL && l->max_connections_per_client > l->max_connections)
    cynic__schema_error_at(
        &ld->rd, pc,
        "max_connections_per_client: %u is more than max_connections (%u); lower it or "
        "raise max_connections",
        (unsigned)l->max_connections_per_client, (unsigned)l->max_connections);
  const node_t *t = section(ld, m, "timeouts", listener_timeout_keys);
  if (t != NULL) {
    cynic__schema_get_duration(&ld->rd, t, "header", NS_PER_MS, 3600 * NS_PER_S, "1ms..1h",
                               &l->header_timeout_ns);
    cynic__schema_get_duration(&ld->rd, t, "idle", NS_PER_S, 7 * DAY_NS, "1s..168h",
                               &l->idle_timeout_ns);
  }
  const node_t *rl = section(ld, m, "rate_limit", rate_limit_keys);
  if (rl != NULL) {
    const node_t *pcv = cynic__schema_get(rl, "per_client");
    if (pcv == NULL)
      cynic__schema_error_at(&ld->rd, cynic__schema_get(m, "rate_limit"),
                             "rate_limit is missing 'per_client'; add e.g. "
                             "per_client: 100/s");
    else
      parse_rate(ld, pcv, l);
    l->rate_burst = l->rate_count;
    cynic__schema_get_u32(&ld->rd, rl, "burst", 1, 1000000, &l->rate_burst);
  }
  cynic__config_load_rate_keys(&ld->rd, rl, l);
  cynic__schema_get_size(&ld->rd, m, "buffer", 4 * KIB, 16 * MIB, "4KB..16MB", &l->buffer_bytes);
  const node_t *al =
      cynic__schema_get_string(&ld->rd, m, "access_log", CYNIC__CONFIG_MAX_PATH, &l->access_log);
  if (al != NULL && l->access_log != NULL && strcmp(l->access_log, "-") == 0)
    cynic__schema_error_at(
        &ld->rd, al,
        "access_log: '-' would mix access lines into the log on stderr; give a file path");
  cynic__config_load_listener_tls(&ld->rd, m, &l->tls);
}

static void load_endpoints(loader_t *ld, const node_t *m, cynic__config_upstream_t *u) {
  const node_t *v = cynic__schema_get(m, "endpoints");
  if (v == NULL) {
    cynic__schema_error_at(&ld->rd, m,
                           "upstream is missing 'endpoints'; add endpoints: [127.0.0.1:9000]");
    return;
  }
  if (v->type != CYNIC__YAML_SEQ) {
    cynic__schema_error_at(&ld->rd, v,
                           "endpoints: expected a list, got %s; write e.g. [127.0.0.1:9000]",
                           cynic__schema_describe(v));
    return;
  }
  if (v->count == 0 || v->count > CYNIC__CONFIG_MAX_ENDPOINTS) {
    cynic__schema_error_at(&ld->rd, v, "endpoints: %zu endpoints; use 1..%u", v->count,
                           (unsigned)CYNIC__CONFIG_MAX_ENDPOINTS);
    return;
  }
  u->endpoints = calloc(v->count, sizeof *u->endpoints);
  if (u->endpoints == NULL) {
    cynic__schema_out_of_memory(&ld->rd);
    return;
  }
  for (size_t i = 0; i < v->count; i++) {
    cynic__config_addr_t *e = &u->endpoints[u->endpoint_count];
    if (!parse_addr(ld, v->kids[i], "endpoints", true, false, e))
      continue;
    for (size_t j = 0; j < u->endpoint_count; j++) {
      if (strcmp(u->endpoints[j].host, e->host) == 0 && u->endpoints[j].port == e->port) {
        cynic__schema_error_at(&ld->rd, v->kids[i], "endpoints: %s is listed twice; remove one",
                               e->text);
        break;
      }
    }
    u->endpoint_count++;
  }
}

static void load_window(loader_t *ld, const node_t *w, cynic__config_breaker_t *b) {
  int type = 0;
  const node_t *tv = cynic__schema_get(w, "type");
  if (tv == NULL) {
    cynic__schema_error_at(&ld->rd, w, "window is missing 'type'; add type: count or type: time");
    return;
  }
  if (cynic__schema_get_enum(&ld->rd, w, "type", window_names, &type) == NULL)
    return;
  b->window_type = type == 0 ? CYNIC__WINDOW_COUNT : CYNIC__WINDOW_TIME;
  b->window_min_calls = 10;
  b->failure_rate_pct = 50;
  b->slow_rate_pct = 100;
  b->slow_call_ns = 2 * NS_PER_S;
  if (b->window_type == CYNIC__WINDOW_COUNT) {
    b->window_size = 100;
    cynic__schema_get_u32(&ld->rd, w, "size", 1, 100000, &b->window_size);
  } else {
    b->window_size_ns = 60 * NS_PER_S;
    cynic__schema_get_duration(&ld->rd, w, "size", NS_PER_S, 3600 * NS_PER_S, "1s..1h",
                               &b->window_size_ns);
  }
  const node_t *mc =
      cynic__schema_get_u32(&ld->rd, w, "min_calls", 1, 1000000, &b->window_min_calls);
  if (mc != NULL && b->window_type == CYNIC__WINDOW_COUNT && b->window_min_calls > b->window_size)
    cynic__schema_error_at(
        &ld->rd, mc,
        "min_calls: %u is more than the window size (%u calls), so the window could never "
        "decide; lower min_calls or raise size",
        (unsigned)b->window_min_calls, (unsigned)b->window_size);
  cynic__schema_get_percent(&ld->rd, w, "failure_rate", 1, 100, &b->failure_rate_pct);
  cynic__schema_get_percent(&ld->rd, w, "slow_rate", 1, 100, &b->slow_rate_pct);
  cynic__schema_get_duration(&ld->rd, w, "slow_call", NS_PER_MS, 3600 * NS_PER_S, "1ms..1h",
                             &b->slow_call_ns);
}

static void load_breaker(loader_t *ld, const node_t *m, cynic__config_breaker_t *b) {
  b->faults = 5;
  b->leak_ns = 10 * NS_PER_S;
  b->open_for_ns = 30 * NS_PER_S;
  b->open_multiplier = 1.0;
  b->half_open_probes = 1;
  const node_t *bv = section(ld, m, "breaker", breaker_keys);
  const node_t *omax = NULL;
  if (bv != NULL) {
    cynic__schema_get_u32(&ld->rd, bv, "faults", 1, 1000000, &b->faults);
    cynic__schema_get_duration(&ld->rd, bv, "leak", NS_PER_MS, DAY_NS, "1ms..24h", &b->leak_ns);
    cynic__schema_get_duration(&ld->rd, bv, "open_for", NS_PER_MS, DAY_NS, "1ms..24h",
                               &b->open_for_ns);
    b->open_max_ns = b->open_for_ns;
    omax = cynic__schema_get_duration(&ld->rd, bv, "open_max", NS_PER_MS, DAY_NS, "1ms..24h",
                                      &b->open_max_ns);
    const node_t *mv = cynic__schema_get(bv, "open_multiplier");
    const char *s = mv != NULL ? cynic__schema_scalar(&ld->rd, mv, "open_multiplier") : NULL;
    char hint[CYNIC__CONFIG_MAX_MESSAGE / 2];
    if (s != NULL &&
        cynic__config_parse_number(s, 1, 100, &b->open_multiplier, hint, sizeof hint) != 0)
      cynic__schema_error_at(
          &ld->rd, mv,
          "open_multiplier: %s; e.g. 2 doubles the open period after each failed probe", hint);
    const node_t *hp = cynic__schema_get(bv, "half_open_probes");
    if (hp != NULL && hp->type == CYNIC__YAML_SCALAR && strcmp(hp->str, "0") == 0)
      cynic__schema_error_at(
          &ld->rd, hp, "half_open_probes: 0 would leave the breaker open forever; use 1..1000");
    else
      cynic__schema_get_u32(&ld->rd, bv, "half_open_probes", 1, 1000, &b->half_open_probes);
    const node_t *w = section(ld, bv, "window", window_keys);
    if (w != NULL)
      load_window(ld, w, b);
  }
  if (omax == NULL)
    b->open_max_ns = b->open_for_ns;
  else if (b->open_max_ns < b->open_for_ns)
    cynic__schema_error_at(
        &ld->rd, omax,
        "open_max: shorter than open_for; open_max caps the open period, so make "
        "it at least open_for");
}

static void load_upstream(loader_t *ld, const node_t *m, cynic__config_upstream_t *u) {
  u->mark = m->mark;
  u->resolve_interval_ns = 30 * NS_PER_S;
  u->connect_timeout_ns = NS_PER_S;
  u->first_byte_timeout_ns = 30 * NS_PER_S;
  u->idle_timeout_ns = 60 * NS_PER_S;
  u->keepalive_idle_ns = 60 * NS_PER_S;
  u->keepalive_interval_ns = 10 * NS_PER_S;
  u->keepalive_probes = 3;
  u->max_connections = 100;
  u->max_pending = 50;
  u->queue_timeout_ns = 100 * NS_PER_MS;
  if (!cynic__schema_check_map(&ld->rd, m, "upstream", upstream_keys)) {
    load_breaker(ld, NULL, &u->breaker); /* defaults, so the struct is whole */
    cynic__config_load_upstream_http(&ld->rd, NULL, &u->http, u->max_connections);
    cynic__config_load_upstream_health(&ld->rd, NULL, &u->health);
    cynic__config_load_upstream_tls(&ld->rd, NULL, &u->tls);
    return;
  }
  if (get_name(ld, m, "name", &u->name) == NULL)
    cynic__schema_error_at(&ld->rd, m, "upstream is missing 'name'; add name: <a unique name>");
  load_endpoints(ld, m, u);
  int balance = CYNIC__BALANCE_ROUND_ROBIN;
  cynic__schema_get_enum(&ld->rd, m, "balance", balance_names, &balance);
  u->balance = (cynic__config_balance_t)balance;
  cynic__schema_get_duration(&ld->rd, m, "resolve_interval", 0, DAY_NS, "0 (never) or up to 24h",
                             &u->resolve_interval_ns);
  const node_t *t = section(ld, m, "timeouts", upstream_timeout_keys);
  if (t != NULL) {
    cynic__schema_get_duration(&ld->rd, t, "connect", NS_PER_MS, 3600 * NS_PER_S, "1ms..1h",
                               &u->connect_timeout_ns);
    cynic__schema_get_duration(&ld->rd, t, "first_byte", 0, DAY_NS, "0 (off) or up to 24h",
                               &u->first_byte_timeout_ns);
    cynic__schema_get_duration(&ld->rd, t, "idle", NS_PER_S, 7 * DAY_NS, "1s..168h",
                               &u->idle_timeout_ns);
    cynic__schema_get_duration(&ld->rd, t, "request", 0, DAY_NS, "0 (off) or up to 24h",
                               &u->request_timeout_ns);
  }
  /* tcp_keepalive was called keepalive (a name HTTP keep-alive would make
   * ambiguous): the old name still loads; u->keepalive_old_name says where, so
   * the daemon can log a deprecation warning. */
  const char *ka = "tcp_keepalive";
  const node_t *old = cynic__schema_get_key(m, "keepalive");
  if (old != NULL) {
    u->keepalive_old_name = old->mark;
    if (cynic__schema_get(m, "tcp_keepalive") != NULL)
      cynic__schema_error_at(&ld->rd, old,
                             "keepalive: the old name of tcp_keepalive; give only tcp_keepalive");
    else
      ka = "keepalive";
  }
  const node_t *k = section(ld, m, ka, keepalive_keys);
  if (k != NULL) {
    const node_t *kv;
    kv = cynic__schema_get_duration(&ld->rd, k, "idle", NS_PER_S, 32767 * NS_PER_S, "1s..32767s",
                                    &u->keepalive_idle_ns);
    if (kv != NULL && u->keepalive_idle_ns % NS_PER_S != 0)
      cynic__schema_error_at(&ld->rd, kv,
                             "idle: TCP_KEEPIDLE counts whole seconds; write e.g. 60s");
    kv = cynic__schema_get_duration(&ld->rd, k, "interval", NS_PER_S, 32767 * NS_PER_S,
                                    "1s..32767s", &u->keepalive_interval_ns);
    if (kv != NULL && u->keepalive_interval_ns % NS_PER_S != 0)
      cynic__schema_error_at(&ld->rd, kv,
                             "interval: TCP_KEEPINTVL counts whole seconds; write e.g. 10s");
    cynic__schema_get_u32(&ld->rd, k, "probes", 1, 127, &u->keepalive_probes);
    kv = cynic__schema_get_duration(&ld->rd, k, "user_timeout", 0, DAY_NS,
                                    "0 (kernel default) or up to 24h", &u->user_timeout_ns);
    if (kv != NULL && u->user_timeout_ns % NS_PER_MS != 0)
      cynic__schema_error_at(&ld->rd, kv,
                             "user_timeout: TCP_USER_TIMEOUT counts whole milliseconds; write e.g. "
                             "90s");
  }
  const node_t *b = section(ld, m, "bulkhead", bulkhead_keys);
  if (b != NULL) {
    cynic__schema_get_u32(&ld->rd, b, "max_connections", 1, 1000000, &u->max_connections);
    cynic__schema_get_u32(&ld->rd, b, "max_pending", 0, 1000000, &u->max_pending);
    const node_t *qt = cynic__schema_get_duration(&ld->rd, b, "queue_timeout", 0, 3600 * NS_PER_S,
                                                  "0s..1h", &u->queue_timeout_ns);
    if (qt != NULL && u->queue_timeout_ns == 0 && u->max_pending > 0)
      cynic__schema_error_at(
          &ld->rd, qt,
          "queue_timeout: 0 with max_pending %u means queued clients wait forever or not "
          "at all; set queue_timeout (e.g. 100ms) or max_pending: 0",
          (unsigned)u->max_pending);
  }
  load_breaker(ld, m, &u->breaker);
  cynic__schema_get_bool(&ld->rd, m, "required", &u->required);
  cynic__config_load_upstream_http(&ld->rd, m, &u->http, u->max_connections);
  cynic__config_load_upstream_health(&ld->rd, m, &u->health);
  cynic__config_load_upstream_tls(&ld->rd, m, &u->tls);
}

/* A list section: a sequence of 1..max mappings, each loaded by `one`. */
static const node_t *list_section(loader_t *ld, const node_t *root, const char *key, size_t max,
                                  const char *example) {
  const node_t *v = cynic__schema_get(root, key);
  if (v == NULL) {
    cynic__schema_error_at(&ld->rd, root, "missing '%s'; add at least one, e.g. %s", key, example);
    return NULL;
  }
  if (v->type != CYNIC__YAML_SEQ) {
    cynic__schema_error_at(&ld->rd, v, "%s: expected a list (lines starting with '- '), got %s",
                           key, cynic__schema_describe(v));
    return NULL;
  }
  if (v->count == 0 || v->count > max) {
    cynic__schema_error_at(&ld->rd, v, "%s: %zu entries; use 1..%zu", key, v->count, max);
    return NULL;
  }
  return v;
}

static size_t find_upstream(const cynic__config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->upstream_count; i++)
    if (cfg->upstreams[i].name != NULL && strcmp(cfg->upstreams[i].name, name) == 0)
      return i;
  return SIZE_MAX;
}

static void cross_check(loader_t *ld, const node_t *listeners) {
  cynic__config_t *cfg = ld->cfg;
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    const cynic__config_upstream_t *u = &cfg->upstreams[i];
    for (size_t j = 0; u->name != NULL && j < i; j++) {
      if (cfg->upstreams[j].name != NULL && strcmp(cfg->upstreams[j].name, u->name) == 0) {
        cynic__schema_error_at_mark(&ld->rd, u->mark,
                                    "upstream name '%s' is already used (line %u); names must be "
                                    "unique",
                                    u->name, (unsigned)cfg->upstreams[j].mark.line);
        break;
      }
    }
  }
  for (size_t i = 0; i < cfg->listener_count; i++) {
    cynic__config_listener_t *l = &cfg->listeners[i];
    for (size_t j = 0; l->name != NULL && j < i; j++) {
      if (cfg->listeners[j].name != NULL && strcmp(cfg->listeners[j].name, l->name) == 0) {
        cynic__schema_error_at_mark(&ld->rd, l->mark,
                                    "listener name '%s' is already used (line %u); names must be "
                                    "unique",
                                    l->name, (unsigned)cfg->listeners[j].mark.line);
        break;
      }
    }
    if (l->listen.host != NULL) {
      for (size_t j = 0; j < i; j++) {
        const cynic__config_listener_t *o = &cfg->listeners[j];
        if (o->listen.host != NULL && addrs_clash(&l->listen, &o->listen)) {
          cynic__schema_error_at_mark(&ld->rd, l->listen.mark,
                                      "listen: %s overlaps listener '%s' (%s, line %u); "
                                      "give each listener its own port",
                                      l->listen.text, o->name ? o->name : "?", o->listen.text,
                                      (unsigned)o->listen.mark.line);
          break;
        }
      }
      if (cfg->admin.listen.host != NULL && addrs_clash(&l->listen, &cfg->admin.listen))
        cynic__schema_error_at_mark(&ld->rd, l->listen.mark,
                                    "listen: %s overlaps the admin listener (%s); give "
                                    "traffic and operations separate ports",
                                    l->listen.text, cfg->admin.listen.text);
    }
    if (l->upstream_name != NULL) {
      l->upstream = find_upstream(cfg, l->upstream_name);
      if (l->upstream == SIZE_MAX) {
        const node_t *ln = listeners->kids[i];
        const node_t *v = cynic__schema_get(ln, "upstream");
        const char *names[CYNIC__CONFIG_MAX_UPSTREAMS + 1];
        size_t n = 0;
        for (size_t j = 0; j < cfg->upstream_count; j++)
          if (cfg->upstreams[j].name != NULL)
            names[n++] = cfg->upstreams[j].name;
        names[n] = NULL;
        const char *guess = cynic__schema_closest(l->upstream_name, names, n);
        if (guess != NULL)
          cynic__schema_error_at(&ld->rd, v,
                                 "upstream: no upstream is named '%s'; did you mean '%s'?",
                                 l->upstream_name, guess);
        else
          cynic__schema_error_at(
              &ld->rd, v,
              "upstream: no upstream is named '%s'; define it under upstreams:", l->upstream_name);
      }
    }
  }
}

static void load_root(loader_t *ld, const node_t *root) {
  cynic__config_t *cfg = ld->cfg;
  if (root == NULL || (root->type == CYNIC__YAML_SCALAR && root->plain && root->len == 0)) {
    cynic__config_mark_t none = {0, 0};
    cynic__schema_error_at_mark(
        &ld->rd, none,
        "the config is empty; it needs at least 'listeners' and 'upstreams' "
        "(see examples/quickstart.yaml)");
    load_admin(ld, NULL);
    return;
  }
  if (!cynic__schema_check_map(&ld->rd, root, "the config", top_keys)) {
    load_admin(ld, NULL);
    return;
  }
  load_admin(ld, cynic__schema_get(root, "admin"));
  load_log(ld, cynic__schema_get(root, "log"));
  cynic__config_load_limits(&ld->rd, cynic__schema_get(root, "limits"), &cfg->limits);
  const node_t *ups = list_section(ld, root, "upstreams", CYNIC__CONFIG_MAX_UPSTREAMS,
                                   "upstreams: [{name: app, endpoints: [127.0.0.1:9000]}]");
  if (ups != NULL) {
    cfg->upstreams = calloc(ups->count, sizeof *cfg->upstreams);
    if (cfg->upstreams == NULL) {
      cynic__schema_out_of_memory(&ld->rd);
      return;
    }
    for (size_t i = 0; i < ups->count; i++) {
      cfg->upstream_count++;
      load_upstream(ld, ups->kids[i], &cfg->upstreams[i]);
    }
  }
  const node_t *lis =
      list_section(ld, root, "listeners", CYNIC__CONFIG_MAX_LISTENERS,
                   "listeners: [{name: app, listen: 127.0.0.1:8080, upstream: app}]");
  if (lis != NULL) {
    cfg->listeners = calloc(lis->count, sizeof *cfg->listeners);
    if (cfg->listeners == NULL) {
      cynic__schema_out_of_memory(&ld->rd);
      return;
    }
    for (size_t i = 0; i < lis->count; i++) {
      cfg->listener_count++;
      load_listener(ld, lis->kids[i], &cfg->listeners[i]);
    }
    cross_check(ld, lis);
  }
  cynic__config_check_fallbacks(&ld->rd, cfg);
}

/* ---- entry points -------------------------------------------------------------- */

void cynic__config_free(cynic__config_t *cfg) {
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < cfg->listener_count; i++)
    cynic__config_listener_clear(&cfg->listeners[i]); /* config_copy.c's field list */
  free(cfg->listeners);
  for (size_t i = 0; i < cfg->upstream_count; i++)
    cynic__config_upstream_clear(&cfg->upstreams[i]);
  free(cfg->upstreams);
  addr_clear(&cfg->admin.listen);
  free(cfg->admin.token_file);
  free(cfg->log.file);
  free(cfg->path);
  free(cfg);
}

static void errors_reset(cynic__config_errors_t *errs, const char *name) {
  errs->count = 0;
  errs->truncated = false;
  snprintf(errs->file, sizeof errs->file, "%s", name ? name : "<config>");
}

static int parse_common(const char *name, const char *data, size_t len, bool check_files,
                        cynic__config_t **out, cynic__config_errors_t *errs) {
  loader_t ld;
  memset(&ld, 0, sizeof ld);
  ld.rd.errs = errs;
  ld.rd.deprecated = deprecated_key;
  ld.check_files = check_files;
  *out = NULL;
  if (len > CYNIC__CONFIG_MAX_FILE_BYTES) {
    cynic__config_mark_t none = {0, 0};
    cynic__schema_error_at_mark(&ld.rd, none,
                                "the file is larger than 1 MiB (%zu bytes); a config this big is a "
                                "mistake",
                                len);
    return CYNIC_EINVAL;
  }
  ld.cfg = calloc(1, sizeof *ld.cfg);
  if (ld.cfg == NULL)
    return CYNIC_ENOMEM;
  cynic__config_t *cfg = ld.cfg;
  cfg->path = strdup(name ? name : "<config>");
  cfg->log.file = strdup("-");
  cfg->log.level = CYNIC__LOG_INFO;
  cfg->log.format = CYNIC__LOG_JSON;
  cfg->log.rotate_keep = 5;
  cfg->log.summary_interval_ns = 10 * NS_PER_S;
  cfg->admin.drain_timeout_ns = 30 * NS_PER_S;
  if (cfg->path == NULL || cfg->log.file == NULL ||
      !addr_set_default(&ld, &cfg->admin.listen, "127.0.0.1:9901")) {
    cynic__config_free(cfg);
    return CYNIC_ENOMEM;
  }
  node_t *root = NULL;
  char msg[CYNIC__CONFIG_MAX_MESSAGE];
  cynic__config_mark_t mark = {0, 0};
  int rc = cynic__yaml_load(data, len, &root, &mark, msg, sizeof msg);
  if (rc == CYNIC_ENOMEM)
    cynic__schema_out_of_memory(&ld.rd);
  else if (rc != 0)
    cynic__schema_error_at_mark(&ld.rd, mark, "%s", msg);
  else
    load_root(&ld, root);
  cynic__yaml_free(root);
  if (errs->count > 0 || ld.rd.nomem) {
    cynic__schema_sort_errors(errs);
    cynic__config_free(cfg);
    return ld.rd.nomem ? CYNIC_ENOMEM : CYNIC_EINVAL;
  }
  *out = cfg;
  return 0;
}

int cynic__config_parse(const char *name, const char *data, size_t len, cynic__config_t **out,
                        cynic__config_errors_t *errs) {
  errors_reset(errs, name);
  return parse_common(name, data, len, false, out, errs);
}

int cynic__config_load(const char *path, cynic__config_t **out, cynic__config_errors_t *errs) {
  errors_reset(errs, path);
  *out = NULL;
  cynic__config_error_t *e = &errs->list[0];
  e->mark.line = e->mark.column = 0;
  /* Opened without waiting (a FIFO here must not freeze a running proxy on
   * reload), refused unless a regular file, read to at most one byte past
   * the cap: the cap holds even for a file that grows while it is read. */
  char *buf = NULL;
  size_t len = 0;
  int frc = cynic__file_read(path, CYNIC__CONFIG_MAX_FILE_BYTES, &buf, &len);
  if (frc == -ENOMEM)
    return CYNIC_ENOMEM;
  if (frc == CYNIC__FILE_ETOOBIG) {
    snprintf(e->message, sizeof e->message,
             "the file is larger than 1 MiB; a config this big is a mistake");
    errs->count = 1;
    return CYNIC_EINVAL;
  }
  if (frc != 0) {
    if (frc == -EISDIR || frc <= CYNIC__FILE_EFIFO)
      snprintf(e->message, sizeof e->message, "%s; give the path of a regular file",
               cynic__file_strerror(frc));
    else
      snprintf(e->message, sizeof e->message, "cannot open: %s", cynic__file_strerror(frc));
    errs->count = 1;
    return CYNIC_EINVAL;
  }
  int rc = parse_common(path, buf, len, true, out, errs);
  free(buf);
  return rc;
}
