/*
 * src/proxy/config_http.c: the keys only an http listener reads (its own
 * limits and forwarding headers; the upstream's retry, expect, limits,
 * fallback and pool sections), split from config.c's schema so that each
 * stays readable. The same strictness: every value bounded, every error at its
 * file:line:column with a fix.
 */
#define _POSIX_C_SOURCE 200809L
#include "config_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_value.h"

typedef cynic__yaml_node_t node_t;

static const char *const retry_keys[] = {"attempts",   "backoff",           "budget",
                                         "min_per_second", "on", "idempotent_header",
                                         "max_body",   NULL};
static const char *const retry_on_names[] = {"connect_failure", "reset", "first_byte_timeout",
                                             "bad_response", NULL};
static const char *const expect_keys[] = {"status", "content_type", NULL};
static const char *const limits_keys[] = {"max_response_bytes", "max_header_bytes", NULL};
static const char *const fallback_keys[] = {"status",    "body",  "content_type", "headers",
                                            "stale",     "order", "secondary",    NULL};
static const char *const stale_keys[] = {"max_entries", "max_bytes", "max_age", "max_entry_bytes",
                                         NULL};
static const char *const fallback_kind_names[] = {"stale", "secondary", "static", NULL};
static const char *const pool_keys[] = {"max_idle", "idle_timeout", NULL};
static const char *const listener_limits_keys[] = {"max_request_head", "max_request_body", NULL};
static const char *const forwarded_names[] = {"x-forwarded-for", "forwarded", "none", NULL};


/* An RFC 9110 token character (header names). */
static bool tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

const node_t *cynic__config_get_header_name(cynic__schema_t *rd, const node_t *m, const char *key,
                                            const char *example, char **out) {
  char *name = NULL;
  const node_t *v = cynic__schema_get_string(rd, m, key, CYNIC__CONFIG_MAX_HEADER_NAME, &name);
  if (v == NULL || name == NULL)
    return NULL;
  bool ok = name[0] != '\0';
  for (const char *p = name; *p; p++)
    ok = ok && tchar((unsigned char)*p);
  if (!ok) {
    char sv[64];
    cynic__schema_error_at(rd, v,
                           "%s: '%s' is not a header name (letters, digits and "
                           "!#$%%&'*+-.^_`|~ only), e.g. %s",
                           key, cynic__config_show(sv, name, strlen(name)), example);
    free(name);
    return NULL;
  }
  free(*out);
  *out = name;
  return v;
}

void cynic__config_load_listener_http(cynic__schema_t *rd, const node_t *m,
                                      cynic__config_listener_t *l) {
  l->max_request_head = 32 * KIB;
  l->max_request_body = 0;
  l->forwarded = CYNIC__FORWARDED_XFF;
  if (l->request_id_header == NULL && (l->request_id_header = strdup("X-Request-Id")) == NULL)
    cynic__schema_out_of_memory(rd);
  if (m == NULL)
    return;
  const node_t *lim = cynic__schema_section(rd, m, "limits", listener_limits_keys);
  if (lim != NULL) {
    cynic__schema_get_size(rd, lim, "max_request_head", KIB, MIB, "1KB..1MB",
                           &l->max_request_head);
    const node_t *mb = cynic__schema_get(lim, "max_request_body");
    if (mb != NULL && mb->type == CYNIC__YAML_SCALAR && strcmp(mb->str, "0") == 0)
      l->max_request_body = 0;
    else
      cynic__schema_get_size(rd, lim, "max_request_body", 1, TIB, "0 (no limit) or 1B..1024GB",
                             &l->max_request_body);
  }
  int fwd = (int)l->forwarded;
  cynic__schema_get_enum(rd, m, "forwarded", forwarded_names, &fwd);
  l->forwarded = (cynic__config_forwarded_t)fwd;
  cynic__config_get_header_name(rd, m, "request_id_header", "X-Request-Id", &l->request_id_header);
}

/* retry.on: a list of condition names and 5xx statuses. */
static void parse_retry_on(cynic__schema_t *rd, const node_t *v, cynic__config_http_t *h) {
  if (v->type != CYNIC__YAML_SEQ || v->count == 0 || v->count > 64) {
    cynic__schema_error_at(rd, v,
                           "on: expected a list of 1..64 conditions, got %s; write e.g. "
                           "[connect_failure, reset, first_byte_timeout, 502, 503, 504]",
                           cynic__schema_describe(v));
    return;
  }
  h->retry_on = 0;
  h->retry_on_status[0] = h->retry_on_status[1] = 0;
  for (size_t i = 0; i < v->count; i++) {
    const node_t *k = v->kids[i];
    const char *s = cynic__schema_scalar(rd, k, "on");
    if (s == NULL)
      continue;
    size_t j = 0;
    while (retry_on_names[j] != NULL && strcmp(retry_on_names[j], s) != 0)
      j++;
    if (retry_on_names[j] != NULL) {
      h->retry_on |= 1u << j;
      continue;
    }
    uint64_t st;
    bool over;
    if (cynic__config_digits(s, &st, &over) == 3 && s[3] == '\0' && st >= 500 && st <= 599) {
      h->retry_on_status[(st - 500) / 64] |= UINT64_C(1) << ((st - 500) % 64);
      continue;
    }
    char sv[64];
    cynic__schema_error_at(rd, k,
                           "on: '%s' is not a retry condition; use connect_failure, reset, "
                           "first_byte_timeout, bad_response or a status 500..599",
                           cynic__config_show(sv, s, k->len));
  }
}

/* "50ms..1s" */
static void parse_backoff(cynic__schema_t *rd, const node_t *v, cynic__config_http_t *h) {
  const char *s = cynic__schema_scalar(rd, v, "backoff");
  if (s == NULL)
    return;
  char sv[64], lo[64], hint[192];
  const char *dots = strstr(s, "..");
  if (dots == NULL || (size_t)(dots - s) >= sizeof lo) {
    cynic__schema_error_at(rd, v,
                           "backoff: '%s' is not a range; write min..max, e.g. 50ms..1s",
                           cynic__config_show(sv, s, v->len));
    return;
  }
  memcpy(lo, s, (size_t)(dots - s));
  lo[dots - s] = '\0';
  uint64_t a, b;
  if (cynic__config_parse_duration(lo, &a, hint, sizeof hint) != 0 ||
      cynic__config_parse_duration(dots + 2, &b, hint, sizeof hint) != 0) {
    cynic__schema_error_at(rd, v, "backoff: %s", hint);
    return;
  }
  if (a == 0 || a > b || b > 3600 * NS_PER_S) {
    cynic__schema_error_at(rd, v, "backoff: '%s' needs 0 < min <= max <= 1h, e.g. 50ms..1s",
                           cynic__config_show(sv, s, v->len));
    return;
  }
  h->retry_backoff_min_ns = a;
  h->retry_backoff_max_ns = b;
}

static bool valid_content_type(const char *s) {
  const char *slash = strchr(s, '/');
  if (slash == NULL || slash == s || slash[1] == '\0' || strlen(s) > 255)
    return false;
  for (const char *p = s; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || (*p == '/' && p != slash) || *p == ';')
      return false;
  return true;
}

void cynic__config_get_content_type(cynic__schema_t *rd, const node_t *m, char **out) {
  const node_t *v = cynic__schema_get_string(rd, m, "content_type", 255, out);
  if (v != NULL && *out != NULL && !valid_content_type(*out)) {
    char sv[64];
    cynic__schema_error_at(rd, v,
                           "content_type: '%s' is not a media type; write type/subtype, e.g. "
                           "application/json",
                           cynic__config_show(sv, *out, strlen(*out)));
  }
}

void cynic__config_get_status_range(cynic__schema_t *rd, const node_t *m, const char *example,
                                    uint16_t *min, uint16_t *max) {
  const node_t *v = cynic__schema_get(m, "status");
  const char *s = v != NULL ? cynic__schema_scalar(rd, v, "status") : NULL;
  if (s == NULL)
    return;
  uint64_t a, b;
  bool o1, o2 = false;
  size_t n1 = cynic__config_digits(s, &a, &o1), n2 = 0;
  b = a;
  if (n1 > 0 && s[n1] == '-')
    n2 = cynic__config_digits(s + n1 + 1, &b, &o2);
  bool ok = n1 == 3 && (s[n1] == '\0' || (n2 == 3 && s[n1 + 1 + n2] == '\0'));
  if (!ok || o1 || o2 || a < 100 || b > 599 || a > b) {
    char sv[64];
    cynic__schema_error_at(rd, v, "status: '%s' is not a status range; write e.g. %s or 200",
                           cynic__config_show(sv, s, v->len), example);
    return;
  }
  *min = (uint16_t)a;
  *max = (uint16_t)b;
}

/* A header name cynic must not take from the config: framing and
 * connection management are cynic's own (a wrong Content-Length would
 * desynchronise the client), and its markers are its own. */
static bool reserved_header(const char *n) {
  static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                      "keep-alive",     "te",                "trailer",
                                      "upgrade",        "proxy-connection",  "content-type",
                                      "cynic-fallback", "cynic-answer",      NULL};
  for (size_t i = 0; names[i] != NULL; i++)
    if (strcasecmp(n, names[i]) == 0)
      return true;
  return false;
}

/* fallback.headers: a mapping of names to values, rendered once into
 * "Name: value\r\n" lines (what the answer copies as it is). */
static void load_fallback_headers(cynic__schema_t *rd, const node_t *v, cynic__config_http_t *h) {
  if (v->type != CYNIC__YAML_MAP) {
    cynic__schema_error_at(rd, v, "headers: %s; write a mapping, e.g. {Cache-Control: no-store}",
                           cynic__schema_describe(v));
    return;
  }
  size_t n = v->count / 2;
  if (n > CYNIC__CONFIG_MAX_FALLBACK_HEADERS) {
    cynic__schema_error_at(rd, v, "headers: %zu headers; the limit is %d", n,
                           CYNIC__CONFIG_MAX_FALLBACK_HEADERS);
    return;
  }
  size_t cap = 1;
  for (size_t i = 0; i + 1 < v->count; i += 2)
    cap += v->kids[i]->len + v->kids[i + 1]->len + 4;
  char *out = malloc(cap), sv[64];
  if (out == NULL) {
    cynic__schema_out_of_memory(rd);
    return;
  }
  size_t len = 0;
  bool ok = true;
  for (size_t i = 0; i + 1 < v->count; i += 2) {
    const node_t *k = v->kids[i], *val = v->kids[i + 1];
    const char *name = cynic__schema_scalar(rd, k, "headers");
    const char *value = cynic__schema_scalar(rd, val, "headers");
    if (name == NULL || value == NULL) {
      ok = false;
      continue;
    }
    bool token = k->len > 0 && k->len <= CYNIC__CONFIG_MAX_FALLBACK_HEADER;
    for (size_t j = 0; token && j < k->len; j++)
      token = tchar((unsigned char)name[j]);
    if (!token) {
      cynic__schema_error_at(rd, k,
                             "headers: '%s' is not a header name (1..%u letters, digits and "
                             "!#$%%&'*+-.^_`|~), e.g. Cache-Control",
                             cynic__config_show(sv, name, k->len),
                             CYNIC__CONFIG_MAX_FALLBACK_HEADER);
      ok = false;
      continue;
    }
    if (reserved_header(name)) {
      cynic__schema_error_at(rd, k,
                             "headers: cynic writes '%s' itself; leave it out (the body's type "
                             "is fallback.content_type)",
                             name);
      ok = false;
      continue;
    }
    bool clean = val->len <= CYNIC__CONFIG_MAX_FALLBACK_HEADER;
    for (size_t j = 0; clean && j < val->len; j++) {
      unsigned char ch = (unsigned char)value[j];
      clean = ch == '\t' || (ch >= 0x20 && ch != 0x7f);
    }
    if (!clean || (val->len > 0 && (value[0] == ' ' || value[0] == '\t' ||
                                    value[val->len - 1] == ' ' || value[val->len - 1] == '\t'))) {
      cynic__schema_error_at(rd, val,
                             "headers: the value of '%s' must be at most %u bytes without "
                             "control characters (CR, LF) or spaces at either end",
                             name, CYNIC__CONFIG_MAX_FALLBACK_HEADER);
      ok = false;
      continue;
    }
    for (size_t j = 0; j < i; j += 2) {
      if (strcasecmp(v->kids[j]->str != NULL ? v->kids[j]->str : "", name) == 0) {
        cynic__schema_error_at(rd, k, "headers: '%s' is given twice (line %u); give it once",
                               name, (unsigned)v->kids[j]->mark.line);
        ok = false;
        break;
      }
    }
    memcpy(out + len, name, k->len);
    len += k->len;
    memcpy(out + len, ": ", 2);
    len += 2;
    memcpy(out + len, value, val->len);
    len += val->len;
    memcpy(out + len, "\r\n", 2);
    len += 2;
  }
  out[len] = '\0';
  if (!ok || len == 0) {
    free(out);
    return;
  }
  free(h->fallback_headers);
  h->fallback_headers = out;
}

/* fallback.stale: the cache's bounds (docs/configuration.md). */
static void load_stale(cynic__schema_t *rd, const node_t *fb, cynic__config_http_t *h) {
  const node_t *v = cynic__schema_get(fb, "stale");
  h->fallback_stale = true;
  h->stale_max_entries = 1000;
  h->stale_max_bytes = 16 * MIB;
  h->stale_max_entry_bytes = MIB;
  h->stale_max_age_ns = 300 * NS_PER_S;
  if (v->type == CYNIC__YAML_SCALAR && v->plain && v->len == 0)
    return; /* `stale:` alone: the defaults */
  const node_t *st = cynic__schema_section(rd, fb, "stale", stale_keys);
  if (st == NULL)
    return;
  cynic__schema_get_u32(rd, st, "max_entries", 1, 1000000, &h->stale_max_entries);
  cynic__schema_get_size(rd, st, "max_bytes", 64 * KIB, 16 * GIB, "64KB..16GB",
                         &h->stale_max_bytes);
  const node_t *me = cynic__schema_get_size(rd, st, "max_entry_bytes", KIB, 64 * MIB, "1KB..64MB",
                                            &h->stale_max_entry_bytes);
  cynic__schema_get_duration(rd, st, "max_age", NS_PER_S, 7 * 86400 * NS_PER_S, "1s..7d",
                             &h->stale_max_age_ns);
  if (me == NULL && h->stale_max_entry_bytes > h->stale_max_bytes / 2)
    h->stale_max_entry_bytes = h->stale_max_bytes / 2; /* the default follows a small cache */
  else if (h->stale_max_entry_bytes > h->stale_max_bytes / 2)
    cynic__schema_error_at(rd, me != NULL ? me : cynic__schema_get(fb, "stale"),
                           "max_entry_bytes: %llu bytes is more than half of max_bytes (%llu); "
                           "one response could empty the cache",
                           (unsigned long long)h->stale_max_entry_bytes,
                           (unsigned long long)h->stale_max_bytes);
}

/* fallback.order: each configured kind at most once. */
static void load_order(cynic__schema_t *rd, const node_t *v, cynic__config_http_t *h,
                       const bool have[CYNIC__FALLBACK_KINDS]) {
  if (v->type != CYNIC__YAML_SEQ || v->count == 0 || v->count > CYNIC__FALLBACK_KINDS) {
    cynic__schema_error_at(rd, v,
                           "order: %s; write a list of 1 to 3 of stale, secondary, static, "
                           "e.g. [stale, static]",
                           cynic__schema_describe(v));
    return;
  }
  uint8_t order[CYNIC__FALLBACK_KINDS];
  bool seen[CYNIC__FALLBACK_KINDS] = {false};
  for (size_t i = 0; i < v->count; i++) {
    const node_t *k = v->kids[i];
    const char *s = cynic__schema_scalar(rd, k, "order");
    if (s == NULL)
      return;
    int kind = -1;
    for (int j = 0; fallback_kind_names[j] != NULL; j++)
      if (strcmp(s, fallback_kind_names[j]) == 0)
        kind = j;
    char sv[64];
    if (kind < 0) {
      cynic__schema_error_at(rd, k, "order: '%s' is no fallback kind; use stale, secondary or static",
                             cynic__config_show(sv, s, k->len));
      return;
    }
    if (seen[kind]) {
      cynic__schema_error_at(rd, k, "order: '%s' is listed twice", s);
      return;
    }
    if (!have[kind]) {
      cynic__schema_error_at(rd, k,
                             "order: '%s' is not configured in this fallback (%s)", s,
                             kind == CYNIC__FALLBACK_STATIC ? "add status: to answer one"
                             : kind == CYNIC__FALLBACK_STALE ? "add stale: to keep a cache"
                                                             : "add secondary: <upstream>");
      return;
    }
    seen[kind] = true;
    order[i] = (uint8_t)kind;
  }
  for (int j = 0; j < CYNIC__FALLBACK_KINDS; j++)
    if (have[j] && !seen[j]) {
      cynic__schema_error_at(rd, v, "order: '%s' is configured but not listed; list it or "
                             "remove it", fallback_kind_names[j]);
      return;
    }
  memcpy(h->fallback_order, order, v->count);
  h->fallback_kinds = (uint8_t)v->count;
}

/* The fallback section (docs/configuration.md, "Fallbacks"). */
static void load_fallback(cynic__schema_t *rd, const node_t *m, const node_t *fb,
                          cynic__config_http_t *h) {
  h->has_fallback = true;
  bool have[CYNIC__FALLBACK_KINDS] = {false};
  const node_t *st = cynic__schema_get(fb, "status");
  uint32_t status = 503;
  if (st != NULL) {
    h->fallback_static = true;
    cynic__schema_get_u32(rd, fb, "status", 200, 599, &status);
  }
  h->fallback_status = (uint16_t)status;
  const node_t *body = cynic__schema_get(fb, "body");
  if (body != NULL) {
    const char *s = cynic__schema_scalar(rd, body, "body");
    if (s != NULL && body->len > CYNIC__CONFIG_MAX_BODY) {
      cynic__schema_error_at(rd, body, "body: %zu bytes; the limit is %u", body->len,
                             (unsigned)CYNIC__CONFIG_MAX_BODY);
    } else if (s != NULL) {
      h->fallback_body = strdup(s);
      h->fallback_body_len = body->len;
      if (h->fallback_body == NULL)
        cynic__schema_out_of_memory(rd);
    }
  }
  cynic__config_get_content_type(rd, fb, &h->fallback_content_type);
  if (h->fallback_content_type == NULL &&
      (h->fallback_content_type = strdup("text/plain")) == NULL)
    cynic__schema_out_of_memory(rd);
  const node_t *hd = cynic__schema_get(fb, "headers");
  if (hd != NULL)
    load_fallback_headers(rd, hd, h);
  if (cynic__schema_get(fb, "stale") != NULL)
    load_stale(rd, fb, h);
  const node_t *sec = cynic__schema_get_string(rd, fb, "secondary", CYNIC__CONFIG_MAX_NAME,
                                               &h->fallback_secondary);
  if (sec != NULL)
    h->fallback_secondary_mark = sec->mark;
  have[CYNIC__FALLBACK_STATIC] = h->fallback_static;
  have[CYNIC__FALLBACK_STALE] = h->fallback_stale;
  have[CYNIC__FALLBACK_SECONDARY] = h->fallback_secondary != NULL;
  if (!have[0] && !have[1] && !have[2]) {
    cynic__schema_error_at(rd, cynic__schema_get(m, "fallback"),
                           "fallback answers nothing; add status: (e.g. status: 503), stale: "
                           "or secondary: <upstream>");
    return;
  }
  if (!h->fallback_static && (body != NULL || hd != NULL ||
                              cynic__schema_get(fb, "content_type") != NULL))
    cynic__schema_error_at(rd, body != NULL ? body : hd != NULL ? hd : cynic__schema_get(fb, "content_type"),
                           "fallback: body, content_type and headers belong to the static "
                           "answer; add status: (e.g. status: 503)");
  const node_t *ord = cynic__schema_get(fb, "order");
  if (ord != NULL) {
    load_order(rd, ord, h, have);
    return;
  }
  h->fallback_kinds = 0;
  for (int k = 0; k < CYNIC__FALLBACK_KINDS; k++) /* stale, secondary, static */
    if (have[k])
      h->fallback_order[h->fallback_kinds++] = (uint8_t)k;
}

void cynic__config_check_fallbacks(cynic__schema_t *rd, const cynic__config_t *cfg) {
  for (size_t i = 0; i < cfg->upstream_count; i++) {
    const cynic__config_upstream_t *u = &cfg->upstreams[i];
    const char *sec = u->http.fallback_secondary;
    if (sec == NULL || u->name == NULL)
      continue;
    if (strcmp(sec, u->name) == 0) {
      cynic__schema_error_at_mark(rd, u->http.fallback_secondary_mark,
                                  "secondary: '%s' is this upstream; name another one", sec);
      continue;
    }
    const cynic__config_upstream_t *s = NULL;
    for (size_t j = 0; j < cfg->upstream_count; j++)
      if (cfg->upstreams[j].name != NULL && strcmp(cfg->upstreams[j].name, sec) == 0)
        s = &cfg->upstreams[j];
    if (s == NULL) {
      cynic__schema_error_at_mark(rd, u->http.fallback_secondary_mark,
                                  "secondary: no upstream is named '%s'; define it under "
                                  "upstreams:",
                                  sec);
      continue;
    }
    if (s->http.fallback_secondary != NULL)
      cynic__schema_error_at_mark(rd, u->http.fallback_secondary_mark,
                                  "secondary: '%s' has a secondary of its own ('%s'); a fallback "
                                  "goes one hop only, so remove one of them",
                                  sec, s->http.fallback_secondary);
  }
}

void cynic__config_load_upstream_http(cynic__schema_t *rd, const node_t *m,
                                      cynic__config_http_t *h, uint32_t busy_max) {
  h->max_header_bytes = 32 * KIB;
  /* Fewer than the requests in flight would close a connection at each
   * response and open one for the next request past it (at 64 in flight with
   * 16 kept: 1.8x the CPU per request; benchmarks.md). */
  h->pool_max_idle = busy_max < CYNIC__POOL_MAX_IDLE_MAX ? busy_max : CYNIC__POOL_MAX_IDLE_MAX;
  h->pool_idle_timeout_ns = 4 * NS_PER_S;
  if (m == NULL)
    return;
  const node_t *pool = cynic__schema_section(rd, m, "pool", pool_keys);
  if (pool != NULL) {
    cynic__schema_get_u32(rd, pool, "max_idle", 0, CYNIC__POOL_MAX_IDLE_MAX, &h->pool_max_idle);
    cynic__schema_get_duration(rd, pool, "idle_timeout", NS_PER_MS, 3600 * NS_PER_S, "1ms..1h",
                               &h->pool_idle_timeout_ns);
  }
  const node_t *r = cynic__schema_section(rd, m, "retry", retry_keys);
  if (r != NULL) {
    h->has_retry = true;
    h->retry_attempts = 2;
    h->retry_backoff_min_ns = 50 * NS_PER_MS;
    h->retry_backoff_max_ns = NS_PER_S;
    h->retry_budget_pct = 20;
    h->retry_min_per_sec = 10;
    h->retry_on = CYNIC__RETRY_ON_CONNECT | CYNIC__RETRY_ON_RESET | CYNIC__RETRY_ON_FIRST_BYTE;
    h->retry_on_status[0] = (UINT64_C(1) << 2) | (UINT64_C(1) << 3) | (UINT64_C(1) << 4);
    h->retry_max_body = 64 * KIB;
    cynic__schema_get_u32(rd, r, "attempts", 0, 10, &h->retry_attempts);
    const node_t *bo = cynic__schema_get(r, "backoff");
    if (bo != NULL)
      parse_backoff(rd, bo, h);
    cynic__schema_get_percent(rd, r, "budget", 0, 100, &h->retry_budget_pct);
    cynic__schema_get_u32(rd, r, "min_per_second", 0, 1000000, &h->retry_min_per_sec);
    const node_t *on = cynic__schema_get(r, "on");
    if (on != NULL)
      parse_retry_on(rd, on, h);
    const node_t *mb = cynic__schema_get(r, "max_body");
    if (mb != NULL && mb->type == CYNIC__YAML_SCALAR && strcmp(mb->str, "0") == 0)
      h->retry_max_body = 0;
    else
      cynic__schema_get_size(rd, r, "max_body", 1, 16 * MIB, "0 (bodiless only) or 1B..16MB",
                             &h->retry_max_body);
    cynic__config_get_header_name(rd, r, "idempotent_header", "Idempotency-Key",
                                  &h->retry_idempotent_header);
  }
  cynic__config_get_header_name(rd, m, "deadline_header", "X-Deadline-Ms", &h->deadline_header);
  const node_t *e = cynic__schema_section(rd, m, "expect", expect_keys);
  if (e != NULL) {
    h->has_expect = true;
    h->expect_status_min = 200;
    h->expect_status_max = 499;
    cynic__config_get_status_range(rd, e, "200-499", &h->expect_status_min,
                                   &h->expect_status_max);
    cynic__config_get_content_type(rd, e, &h->expect_content_type);
  }
  const node_t *lim = cynic__schema_section(rd, m, "limits", limits_keys);
  if (lim != NULL) {
    const node_t *mr = cynic__schema_get(lim, "max_response_bytes");
    if (mr != NULL && mr->type == CYNIC__YAML_SCALAR && strcmp(mr->str, "0") == 0)
      h->max_response_bytes = 0;
    else
      cynic__schema_get_size(rd, lim, "max_response_bytes", KIB, TIB,
                             "0 (no limit) or 1KB..1024GB", &h->max_response_bytes);
    cynic__schema_get_size(rd, lim, "max_header_bytes", KIB, MIB, "1KB..1MB",
                           &h->max_header_bytes);
  }
  const node_t *fb = cynic__schema_section(rd, m, "fallback", fallback_keys);
  if (fb != NULL)
    load_fallback(rd, m, fb, h);
}

