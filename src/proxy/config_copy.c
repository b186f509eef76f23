/*
 * src/proxy/config_copy.c: copy, free and compare parts of a config, from one
 * list of their fields.
 *
 * A reload keeps copies of what retired listeners and upstreams still read,
 * and decides per listener and upstream what changed and so what to do (keep
 * the object, rebuild it, make a new rate table, ...). Hand-written copies and
 * comparisons forget the field added last; here each struct's fields are
 * listed once, with how to copy them (kind) and what a change needs (class,
 * cynic__config_change_t), and copy, free and diff walk those lists.
 * tests/unit/proxy/test_config.c checks that the lists cover their structs
 * member by member, so a new field that is not listed fails the unit tests.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* clang-format off */
#define FIELD(type, member, kind, change)                                                          \
  {#member, offsetof(type, member), sizeof(((type *)0)->member),                                   \
   __alignof__(((type *)0)->member), CYNIC__FIELD_##kind, CYNIC__CHANGE_##change}
/* clang-format on */

/* In a nested struct only NONE matters (not compared); any other class says
 * "compared", and the parent field's class is what a change reports. */
#define A(m, k, c) FIELD(cynic__config_addr_t, m, k, c)
static const cynic__config_field_t addr_fields[] = {
    A(kind, VALUE, READ), A(host, STR, READ), A(port, VALUE, READ),
    A(ip, VALUE, READ),   A(text, STR, READ), A(mark, VALUE, NONE),
};
#undef A

#define L(m, k, c) FIELD(cynic__config_listener_t, m, k, c)
static const cynic__config_field_t listener_fields[] = {
    L(name, STR, REBUILD), /* another name is another listener */
    L(listen, ADDR, ADDRESS),
    L(mode, VALUE, REBUILD),
    L(upstream_name, STR, ROUTE),
    L(upstream, VALUE, NONE), /* an index into one config's upstreams */
    L(max_connections, VALUE, READ),
    L(max_connections_per_client, VALUE, CLIENTS),
    L(header_timeout_ns, VALUE, READ),
    L(idle_timeout_ns, VALUE, READ),
    L(rate_count, VALUE, RATE),
    L(rate_period_ns, VALUE, RATE),
    L(rate_burst, VALUE, RATE),
    L(rate_key_header, STR, READ), /* read at each request (http_limits.c) */
    L(rate_max_clients, VALUE, RATE), /* the table's size */
    L(buffer_bytes, VALUE, REBUILD), /* sizes its buffer pool and its connections */
    L(access_log, STR, ACCESSLOG),
    L(max_request_head, VALUE, READ),
    L(max_request_body, VALUE, READ),
    L(forwarded, VALUE, READ),
    L(request_id_header, STR, READ),
    L(tls, TLS, READ), /* tls.c: a new context at reload (below) */
    L(mark, VALUE, NONE),
};
#undef L

#define B(m) FIELD(cynic__config_breaker_t, m, VALUE, READ)
static const cynic__config_field_t breaker_fields[] = {
    B(faults),           B(leak_ns),       B(open_for_ns),  B(open_max_ns),    B(open_multiplier),
    B(half_open_probes), B(window_type),   B(window_size),  B(window_size_ns), B(window_min_calls),
    B(failure_rate_pct), B(slow_rate_pct), B(slow_call_ns),
};
#undef B

#define H(m, k) FIELD(cynic__config_http_t, m, k, READ)
static const cynic__config_field_t http_fields[] = {
    H(has_retry, VALUE),
    H(retry_attempts, VALUE),
    H(retry_backoff_min_ns, VALUE),
    H(retry_backoff_max_ns, VALUE),
    H(retry_budget_pct, VALUE),
    H(retry_min_per_sec, VALUE),
    H(retry_on, VALUE),
    H(retry_on_status, VALUE),
    H(retry_max_body, VALUE),
    H(retry_idempotent_header, STR),
    H(deadline_header, STR),
    H(has_expect, VALUE),
    H(expect_status_min, VALUE),
    H(expect_status_max, VALUE),
    H(expect_content_type, STR),
    H(max_response_bytes, VALUE),
    H(max_header_bytes, VALUE),
    H(has_fallback, VALUE),
    H(fallback_static, VALUE),
    H(fallback_status, VALUE),
    H(fallback_body, STR), /* the loader refuses NUL bytes in it */
    H(fallback_body_len, VALUE),
    H(fallback_content_type, STR),
    H(fallback_headers, STR),
    H(fallback_stale, VALUE),
    H(stale_max_entries, VALUE),     /* read at each store: the cache evicts down to it */
    H(stale_max_bytes, VALUE),       /* ditto */
    H(stale_max_entry_bytes, VALUE), /* read when a capture begins */
    H(stale_max_age_ns, VALUE),      /* read at each lookup */
    H(fallback_secondary, STR),
    FIELD(cynic__config_http_t, fallback_secondary_mark, VALUE, NONE),
    H(fallback_order, VALUE),
    H(fallback_kinds, VALUE),
    H(pool_max_idle, VALUE),        /* read at each give (pool.c) */
    H(pool_idle_timeout_ns, VALUE), /* read at each take and sweep */
};
#undef H

/* health.c keeps a copy of these and restarts the checks when one differs
 * after a reload (cynic__health_sync), so each is "read" by it. */
#define K(m, k) FIELD(cynic__config_health_t, m, k, READ)
static const cynic__config_field_t health_fields[] = {
    K(enabled, VALUE),           K(path, STR),
    K(host, STR),                K(interval_ns, VALUE),
    K(timeout_ns, VALUE),        K(expect_status_min, VALUE),
    K(expect_status_max, VALUE), K(expect_content_type, STR),
    K(expect_body, STR),         K(healthy_after, VALUE),
    K(unhealthy_after, VALUE),
};
#undef K

/* A listener's or an upstream's tls: tls.c builds a new context from them
 * at every reload (the files' contents may have changed under the same
 * paths, which no comparison here can see) for the connections made from
 * then on; open connections keep the context they began with. So each is
 * "read" by tls.c, as health's are by health.c, and none rebuilds the
 * listener or upstream. The handshake timeout is read at each connection. */
#define T(m, k) FIELD(cynic__config_tls_t, m, k, READ)
static const cynic__config_field_t tls_fields[] = {
    T(enabled, VALUE),
    T(min_version, VALUE),
    T(cert_file, STR),
    T(key_file, STR),
    T(ca_file, STR),
    T(server_name, STR),
    T(insecure_skip_verify, VALUE),
    T(handshake_timeout_ns, VALUE),
    FIELD(cynic__config_tls_t, mark, VALUE, NONE),
};
#undef T

#define U(m, k, c) FIELD(cynic__config_upstream_t, m, k, c)
static const cynic__config_field_t upstream_fields[] = {
    U(name, STR, REBUILD),
    U(endpoints, ENDPOINTS, REBUILD), /* new endpoints, new breakers */
    U(endpoint_count, VALUE, REBUILD),
    U(balance, VALUE, READ),
    U(resolve_interval_ns, VALUE, REBUILD), /* the resolve timer's period */
    U(connect_timeout_ns, VALUE, READ),
    U(first_byte_timeout_ns, VALUE, READ),
    U(idle_timeout_ns, VALUE, READ),
    U(request_timeout_ns, VALUE, READ),
    U(keepalive_idle_ns, VALUE, SOCKET),
    U(keepalive_interval_ns, VALUE, SOCKET),
    U(keepalive_probes, VALUE, SOCKET),
    U(user_timeout_ns, VALUE, SOCKET),
    U(keepalive_old_name, VALUE, NONE),
    U(max_connections, VALUE, REBUILD), /* the bulkhead's size */
    U(max_pending, VALUE, REBUILD),     /* its queue's */
    U(queue_timeout_ns, VALUE, READ),
    U(breaker, BREAKER, REBUILD),
    U(required, VALUE, READ),
    U(http, HTTP, READ), /* read per request by http mode */
    U(health, HEALTH, READ), /* health.c compares its own copy at each reload */
    U(tls, TLS, READ),       /* tls.c: a new context at reload (below) */
    U(mark, VALUE, NONE),
};
#undef U

#define G(m, k, c) FIELD(cynic__config_log_t, m, k, c)
static const cynic__config_field_t log_fields[] = {
    G(file, STR, LOG_FILE),
    G(format, VALUE, READ),
    G(level, VALUE, LOG_LEVEL),
    G(rotate_max_bytes, VALUE, LOG_ROTATE),
    G(rotate_keep, VALUE, LOG_ROTATE),
    G(summary_interval_ns, VALUE, READ),
};
#undef G

#define D(m, k, c) FIELD(cynic__config_admin_t, m, k, c)
static const cynic__config_field_t admin_fields[] = {
    D(listen, ADDR, ADMIN_LISTEN),
    D(token_file, STR, TOKEN),
    D(allow_remote, VALUE, READ),
    D(drain_timeout_ns, VALUE, READ),
};
#undef D

/* ENDPOINTS: the count is the size_t right after the pointer. */
_Static_assert(offsetof(cynic__config_upstream_t, endpoint_count) ==
                   offsetof(cynic__config_upstream_t, endpoints) + sizeof(cynic__config_addr_t *),
               "endpoint_count must follow endpoints");

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct part {
  const cynic__config_field_t *fields;
  size_t count;
  size_t size;
} part_t;

static const part_t parts[CYNIC__PART_COUNT] = {
    [CYNIC__PART_ADDR] = {addr_fields, COUNT(addr_fields), sizeof(cynic__config_addr_t)},
    [CYNIC__PART_LISTENER] = {listener_fields, COUNT(listener_fields),
                              sizeof(cynic__config_listener_t)},
    [CYNIC__PART_BREAKER] = {breaker_fields, COUNT(breaker_fields),
                             sizeof(cynic__config_breaker_t)},
    [CYNIC__PART_HTTP] = {http_fields, COUNT(http_fields), sizeof(cynic__config_http_t)},
    [CYNIC__PART_UPSTREAM] = {upstream_fields, COUNT(upstream_fields),
                              sizeof(cynic__config_upstream_t)},
    [CYNIC__PART_LOG] = {log_fields, COUNT(log_fields), sizeof(cynic__config_log_t)},
    [CYNIC__PART_ADMIN] = {admin_fields, COUNT(admin_fields), sizeof(cynic__config_admin_t)},
    [CYNIC__PART_HEALTH] = {health_fields, COUNT(health_fields), sizeof(cynic__config_health_t)},
    [CYNIC__PART_TLS] = {tls_fields, COUNT(tls_fields), sizeof(cynic__config_tls_t)},
};

const cynic__config_field_t *cynic__config_fields(cynic__config_part_t part, size_t *count,
                                                  size_t *struct_size) {
  *count = parts[part].count;
  *struct_size = parts[part].size;
  return parts[part].fields;
}

static const part_t *nested(cynic__config_kind_t kind) {
  switch (kind) {
  case CYNIC__FIELD_ADDR:
  case CYNIC__FIELD_ENDPOINTS:
    return &parts[CYNIC__PART_ADDR];
  case CYNIC__FIELD_BREAKER:
    return &parts[CYNIC__PART_BREAKER];
  case CYNIC__FIELD_HTTP:
    return &parts[CYNIC__PART_HTTP];
  case CYNIC__FIELD_HEALTH:
    return &parts[CYNIC__PART_HEALTH];
  case CYNIC__FIELD_TLS:
    return &parts[CYNIC__PART_TLS];
  default:
    return NULL;
  }
}

#define AT(base, f) ((char *)(base) + (f)->offset)
#define AT_CONST(base, f) ((const char *)(base) + (f)->offset)

/* Frees what `s` owns, per `pt`, and leaves its pointers NULL. */
static void clear(const part_t *pt, void *s) {
  for (size_t i = 0; i < pt->count; i++) {
    const cynic__config_field_t *f = &pt->fields[i];
    char *at = AT(s, f);
    if (f->kind == CYNIC__FIELD_STR) {
      free(*(char **)at);
      *(char **)at = NULL;
    } else if (f->kind == CYNIC__FIELD_ENDPOINTS) {
      cynic__config_addr_t **list = (cynic__config_addr_t **)at;
      size_t *n = (size_t *)(at + sizeof *list);
      for (size_t k = 0; *list != NULL && k < *n; k++)
        clear(nested(f->kind), &(*list)[k]);
      free(*list);
      *list = NULL;
      *n = 0;
    } else if (f->kind != CYNIC__FIELD_VALUE) {
      clear(nested(f->kind), at);
    }
  }
}

/* Sets every pointer `d` owns per `pt` to NULL (in nested parts too, not
 * in arrays: those pointers are NULL themselves): after a byte copy, nothing
 * is shared with the original any more, and clear() frees nothing of it. */
static void unshare(const part_t *pt, void *d) {
  for (size_t i = 0; i < pt->count; i++) {
    const cynic__config_field_t *f = &pt->fields[i];
    if (f->kind == CYNIC__FIELD_STR || f->kind == CYNIC__FIELD_ENDPOINTS)
      *(void **)AT(d, f) = NULL;
    else if (f->kind != CYNIC__FIELD_VALUE)
      unshare(nested(f->kind), AT(d, f));
  }
}

/* `d` holds a byte copy of `s`; gives it copies of everything `s` owns.
 * False without memory: then what could not be copied is NULL in `d` (so
 * clear() frees exactly what was copied). */
static bool copy_owned(const part_t *pt, void *d, const void *s) {
  bool ok = true;
  unshare(pt, d);
  for (size_t i = 0; i < pt->count && ok; i++) {
    const cynic__config_field_t *f = &pt->fields[i];
    const char *from = AT_CONST(s, f);
    char *to = AT(d, f);
    if (f->kind == CYNIC__FIELD_STR) {
      const char *str = *(char *const *)from;
      if (str != NULL)
        ok = (*(char **)to = strdup(str)) != NULL;
    } else if (f->kind == CYNIC__FIELD_ENDPOINTS) {
      const cynic__config_addr_t *list = *(cynic__config_addr_t *const *)from;
      size_t n = *(const size_t *)(from + sizeof list);
      cynic__config_addr_t *copy = list != NULL ? calloc(n ? n : 1, sizeof *copy) : NULL;
      *(size_t *)(to + sizeof copy) = copy != NULL ? n : 0;
      *(cynic__config_addr_t **)to = copy;
      if (list == NULL)
        continue;
      ok = copy != NULL;
      for (size_t k = 0; ok && k < n; k++) { /* nothing shared, should one copy fail */
        copy[k] = list[k];
        unshare(nested(f->kind), &copy[k]);
      }
      for (size_t k = 0; ok && k < n; k++)
        ok = copy_owned(nested(f->kind), &copy[k], &list[k]);
    } else if (f->kind != CYNIC__FIELD_VALUE) {
      ok = copy_owned(nested(f->kind), to, from);
    }
  }
  return ok;
}

static bool same_str(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

/* The OR of the classes of the fields of `pt` that differ between a and b. */
static unsigned diff(const part_t *pt, const void *a, const void *b) {
  unsigned changed = 0;
  for (size_t i = 0; i < pt->count; i++) {
    const cynic__config_field_t *f = &pt->fields[i];
    const char *x = AT_CONST(a, f), *y = AT_CONST(b, f);
    bool differs;
    if (f->change == CYNIC__CHANGE_NONE)
      continue;
    switch (f->kind) {
    case CYNIC__FIELD_VALUE:
      differs = memcmp(x, y, f->size) != 0;
      break;
    case CYNIC__FIELD_STR:
      differs = !same_str(*(char *const *)x, *(char *const *)y);
      break;
    case CYNIC__FIELD_ENDPOINTS: {
      const cynic__config_addr_t *lx = *(cynic__config_addr_t *const *)x;
      const cynic__config_addr_t *ly = *(cynic__config_addr_t *const *)y;
      size_t nx = *(const size_t *)(x + sizeof lx), ny = *(const size_t *)(y + sizeof ly);
      differs = nx != ny;
      for (size_t k = 0; !differs && k < nx; k++)
        differs = diff(nested(f->kind), &lx[k], &ly[k]) != 0;
      break;
    }
    default:
      differs = diff(nested(f->kind), x, y) != 0;
      break;
    }
    if (differs)
      changed |= f->change;
  }
  return changed;
}

static void *part_copy(const part_t *pt, const void *s) {
  void *d = malloc(pt->size);
  if (d == NULL)
    return NULL;
  memcpy(d, s, pt->size);
  if (!copy_owned(pt, d, s)) {
    clear(pt, d);
    free(d);
    return NULL;
  }
  return d;
}

cynic__config_listener_t *cynic__config_listener_copy(const cynic__config_listener_t *c) {
  return part_copy(&parts[CYNIC__PART_LISTENER], c);
}

cynic__config_upstream_t *cynic__config_upstream_copy(const cynic__config_upstream_t *c) {
  return part_copy(&parts[CYNIC__PART_UPSTREAM], c);
}

void cynic__config_listener_clear(cynic__config_listener_t *c) {
  clear(&parts[CYNIC__PART_LISTENER], c);
}

void cynic__config_upstream_clear(cynic__config_upstream_t *c) {
  clear(&parts[CYNIC__PART_UPSTREAM], c);
}

void cynic__config_listener_free(cynic__config_listener_t *c) {
  if (c != NULL)
    cynic__config_listener_clear(c);
  free(c);
}

void cynic__config_upstream_free(cynic__config_upstream_t *c) {
  if (c != NULL)
    cynic__config_upstream_clear(c);
  free(c);
}

unsigned cynic__config_listener_diff(const cynic__config_listener_t *a,
                                     const cynic__config_listener_t *b) {
  return diff(&parts[CYNIC__PART_LISTENER], a, b);
}

unsigned cynic__config_upstream_diff(const cynic__config_upstream_t *a,
                                     const cynic__config_upstream_t *b) {
  return diff(&parts[CYNIC__PART_UPSTREAM], a, b);
}

unsigned cynic__config_log_diff(const cynic__config_log_t *a, const cynic__config_log_t *b) {
  return diff(&parts[CYNIC__PART_LOG], a, b);
}

unsigned cynic__config_admin_diff(const cynic__config_admin_t *a, const cynic__config_admin_t *b) {
  return diff(&parts[CYNIC__PART_ADMIN], a, b);
}

cynic__config_health_t *cynic__config_health_copy(const cynic__config_health_t *c) {
  return part_copy(&parts[CYNIC__PART_HEALTH], c);
}

void cynic__config_health_free(cynic__config_health_t *c) {
  if (c != NULL)
    clear(&parts[CYNIC__PART_HEALTH], c);
  free(c);
}

unsigned cynic__config_health_diff(const cynic__config_health_t *a,
                                   const cynic__config_health_t *b) {
  return diff(&parts[CYNIC__PART_HEALTH], a, b);
}

cynic__config_tls_t *cynic__config_tls_copy(const cynic__config_tls_t *c) {
  return part_copy(&parts[CYNIC__PART_TLS], c);
}

void cynic__config_tls_free(cynic__config_tls_t *c) {
  if (c != NULL)
    clear(&parts[CYNIC__PART_TLS], c);
  free(c);
}

unsigned cynic__config_tls_diff(const cynic__config_tls_t *a, const cynic__config_tls_t *b) {
  return diff(&parts[CYNIC__PART_TLS], a, b);
}

const cynic__config_listener_t *cynic__config_listener_find(const cynic__config_t *cfg,
                                                            const char *name) {
  for (size_t i = 0; i < cfg->listener_count; i++)
    if (strcmp(cfg->listeners[i].name, name) == 0)
      return &cfg->listeners[i];
  return NULL;
}

const cynic__config_upstream_t *cynic__config_upstream_find(const cynic__config_t *cfg,
                                                            const char *name) {
  for (size_t i = 0; i < cfg->upstream_count; i++)
    if (strcmp(cfg->upstreams[i].name, name) == 0)
      return &cfg->upstreams[i];
  return NULL;
}
