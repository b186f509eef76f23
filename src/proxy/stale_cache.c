/*
 * src/proxy/stale_cache.c: the stale cache (contract in stale_cache.h).
 *
 * A chained hash of entries (power-of-two bucket heads, doubled while the
 * entries outnumber them, up to 2^20) and an intrusive LRU list. An entry is
 * two allocations: the struct with its key, Vary values, reason and head
 * lines behind it (sized once at capture), and the body (sized to the
 * declared length, or grown by doubling to max_entry_bytes for a chunked
 * one, then trimmed at commit). Lookups are O(1) plus the chain; eviction
 * walks the LRU tail.
 */
#include "stale_cache.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cynic/hash.h"

#define MIN_BUCKETS 64u
#define MAX_BUCKETS (1u << 20)
#define MAX_VARY 16     /* names a Vary may list for the response to be stored */
#define BODY_START 4096 /* first body allocation when the length is not declared */
#define SWEEP_STEPS 4   /* expired entries looked for at the LRU tail per store */

struct cynic__stale_entry {
  cynic__stale_entry_t *chain;               /* next in the bucket */
  cynic__stale_entry_t *lru_prev, *lru_next; /* towards the newest / the oldest */
  uint64_t hash;
  uint64_t stored_ms;
  uint64_t limit_ms; /* max-age + stale-if-error from the response; UINT64_MAX: none */
  uint64_t age_s;    /* the upstream's Age when it came */
  uint64_t bytes;    /* what it counts against max_bytes (pending: its allocations) */
  int status;
  char *body;
  size_t body_len, body_cap;
  /* Behind the struct, in this order: key (host lowercased, '\n', target),
   * vary (name '\0' value '\0' per name), reason, head lines. */
  size_t key_len, vary_len, reason_len, head_len;
  char data[];
};

struct cynic__stale_cache {
  cynic__stale_entry_t **buckets;
  uint32_t mask;
  uint64_t k0, k1; /* SipHash key */
  cynic__stale_entry_t *lru_head, *lru_tail;
  uint64_t count, bytes, pending;
  uint64_t stored, hits, misses, expired, evicted, dropped;
};

/* ---- small helpers ----------------------------------------------------------- */

static bool name_is(const char *name, size_t nlen, const char *lit) {
  return strlen(lit) == nlen && strncasecmp(name, lit, nlen) == 0;
}

static const cynic__http_hfield_t *find(const cynic__http_hfield_t *f, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (name_is(f[i].name, f[i].nlen, name))
      return &f[i];
  return NULL;
}

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

/* Walks a comma-separated list: the next element (trimmed) of [*p, end) in
 * *e, *elen; false at the end. Empty elements are skipped. */
static bool next_element(const char **p, const char *end, const char **e, size_t *elen) {
  while (*p < end) {
    const char *comma = memchr(*p, ',', (size_t)(end - *p));
    const char *s = *p, *t = comma != NULL ? comma : end;
    *p = comma != NULL ? comma + 1 : end;
    while (s < t && ows(*s))
      s++;
    while (t > s && ows(t[-1]))
      t--;
    if (t > s) {
      *e = s;
      *elen = (size_t)(t - s);
      return true;
    }
  }
  return false;
}

/* A decimal number of seconds (delta-seconds, RFC 9111 1.2.2): saturated at
 * about 68 years; false when it is not one. */
static bool delta_seconds(const char *s, size_t n, uint64_t *out) {
  if (n == 0)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    if (v < UINT64_C(2147483648))
      v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v > UINT64_C(2147483648) ? UINT64_C(2147483648) : v;
  return true;
}

/* What the response's Cache-Control headers say. */
typedef struct cc {
  const char *forbids; /* a directive that forbids serving it stale; NULL: none */
  bool is_public;
  bool no_store;
  bool has_max_age, has_sie;
  uint64_t max_age_s, sie_s;
} cc_t;

static void read_cc(const cynic__http_hfield_t *f, size_t n, cc_t *cc) {
  static const char *const forbidding[] = {
      "private", "no-store", "no-cache", "must-revalidate", "proxy-revalidate", "s-maxage", NULL};
  memset(cc, 0, sizeof *cc);
  for (size_t i = 0; i < n; i++) {
    if (!name_is(f[i].name, f[i].nlen, "cache-control"))
      continue;
    const char *p = f[i].value, *end = f[i].value + f[i].vlen, *e;
    size_t elen;
    while (next_element(&p, end, &e, &elen)) {
      const char *eq = memchr(e, '=', elen);
      size_t nlen = eq != NULL ? (size_t)(eq - e) : elen;
      const char *v = eq != NULL ? eq + 1 : NULL;
      size_t vlen = eq != NULL ? elen - nlen - 1 : 0;
      if (v != NULL && vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
        v++;
        vlen -= 2;
      }
      for (size_t k = 0; forbidding[k] != NULL; k++)
        if (cc->forbids == NULL && name_is(e, nlen, forbidding[k]))
          cc->forbids = forbidding[k];
      if (name_is(e, nlen, "no-store"))
        cc->no_store = true;
      if (name_is(e, nlen, "public"))
        cc->is_public = true;
      else if (name_is(e, nlen, "max-age") && v != NULL)
        cc->has_max_age = delta_seconds(v, vlen, &cc->max_age_s);
      else if (name_is(e, nlen, "stale-if-error") && v != NULL)
        cc->has_sie = delta_seconds(v, vlen, &cc->sie_s);
    }
  }
}

/* ---- key and Vary ------------------------------------------------------------ */

static size_t key_size(const cynic__stale_req_t *req) {
  return req->host_len + 1 + req->target_len;
}

/* n bytes of `in` at out, ASCII letters lowercased (no locale). */
static void lower_copy(char *out, const char *in, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = in[i] >= 'A' && in[i] <= 'Z' ? (char)(in[i] - 'A' + 'a') : in[i];
}

static void key_write(char *out, const cynic__stale_req_t *req) {
  lower_copy(out, req->host, req->host_len);
  out[req->host_len] = '\n';
  memcpy(out + req->host_len + 1, req->target, req->target_len);
}

static uint64_t key_hash(const cynic__stale_cache_t *c, const char *key, size_t len) {
  return cynic_siphash13(c->k0, c->k1, key, len);
}

/* The request's values of header `name` (nlen bytes), joined by ", " as a
 * list header's fields combine (RFC 9110 5.3): appended at out (when not
 * NULL); the length either way. */
static size_t joined_values(const cynic__stale_req_t *req, const char *name, size_t nlen,
                            char *out) {
  size_t len = 0;
  bool first = true;
  for (size_t i = 0; i < req->nfields; i++) {
    const cynic__http_hfield_t *f = &req->fields[i];
    if (f->nlen != nlen || strncasecmp(f->name, name, nlen) != 0)
      continue;
    if (!first) {
      if (out != NULL)
        memcpy(out + len, ", ", 2);
      len += 2;
    }
    if (out != NULL)
      memcpy(out + len, f->value, f->vlen);
    len += f->vlen;
    first = false;
  }
  return len;
}

/* The stored Vary block for the response's Vary names and the request's
 * values: appended at out when not NULL; its length, or SIZE_MAX when the
 * response must not be stored (Vary: * or too many names). */
static size_t vary_block(const cynic__stale_req_t *req, const cynic__stale_res_t *res, char *out) {
  size_t len = 0, names = 0;
  for (size_t i = 0; i < res->nfields; i++) {
    const cynic__http_hfield_t *f = &res->fields[i];
    if (!name_is(f->name, f->nlen, "vary"))
      continue;
    const char *p = f->value, *end = f->value + f->vlen, *e;
    size_t elen;
    while (next_element(&p, end, &e, &elen)) {
      if (elen == 1 && e[0] == '*')
        return SIZE_MAX;
      if (++names > MAX_VARY)
        return SIZE_MAX;
      if (out != NULL) {
        lower_copy(out + len, e, elen);
        out[len + elen] = '\0';
      }
      len += elen + 1;
      size_t vlen = joined_values(req, e, elen, out != NULL ? out + len : NULL);
      if (out != NULL)
        out[len + vlen] = '\0';
      len += vlen + 1;
    }
  }
  return len;
}

/* True when the request's values of every name in the entry's Vary block are
 * the stored ones. */
static bool vary_matches(const cynic__stale_entry_t *e, const cynic__stale_req_t *req) {
  const char *p = e->data + e->key_len, *end = p + e->vary_len;
  while (p < end) {
    size_t nlen = strlen(p);
    const char *name = p;
    const char *want = p + nlen + 1;
    size_t wlen = strlen(want);
    /* compare the request's joined values with `want`, without a copy */
    size_t at = 0;
    bool first = true, ok = true;
    for (size_t i = 0; ok && i < req->nfields; i++) {
      const cynic__http_hfield_t *f = &req->fields[i];
      if (f->nlen != nlen || strncasecmp(f->name, name, nlen) != 0)
        continue;
      if (!first) {
        ok = at + 2 <= wlen && memcmp(want + at, ", ", 2) == 0;
        at += 2;
      }
      ok = ok && at + f->vlen <= wlen && memcmp(want + at, f->value, f->vlen) == 0;
      at += f->vlen;
      first = false;
    }
    if (!ok || at != wlen)
      return false;
    p = want + wlen + 1;
  }
  return true;
}

/* Header lines kept with the entry: not hop-by-hop, not framing, not Age
 * (cynic writes those itself). */
static bool kept_field(const cynic__http_hfield_t *f, const cynic__http_conn_opts_t *o) {
  return !cynic__http_hop_by_hop(f->name, f->nlen, o, false) &&
         !name_is(f->name, f->nlen, "content-length") &&
         !name_is(f->name, f->nlen, "transfer-encoding") && !name_is(f->name, f->nlen, "age");
}

/* ---- the table and the LRU list --------------------------------------------------- */

cynic__stale_cache_t *cynic__stale_new(void) {
  cynic__stale_cache_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->buckets = calloc(MIN_BUCKETS, sizeof *c->buckets);
  if (c->buckets == NULL) {
    free(c);
    return NULL;
  }
  c->mask = MIN_BUCKETS - 1;
  uint64_t k[2];
  cynic_hash_key(k, (uint64_t)(uintptr_t)c);
  c->k0 = k[0];
  c->k1 = k[1];
  return c;
}

static void entry_free(cynic__stale_entry_t *e) {
  free(e->body);
  free(e);
}

void cynic__stale_free(cynic__stale_cache_t *c) {
  if (c == NULL)
    return;
  for (cynic__stale_entry_t *e = c->lru_head, *next; e != NULL; e = next) {
    next = e->lru_next;
    entry_free(e);
  }
  free(c->buckets);
  free(c);
}

static void lru_unlink(cynic__stale_cache_t *c, cynic__stale_entry_t *e) {
  if (e->lru_prev != NULL)
    e->lru_prev->lru_next = e->lru_next;
  else
    c->lru_head = e->lru_next;
  if (e->lru_next != NULL)
    e->lru_next->lru_prev = e->lru_prev;
  else
    c->lru_tail = e->lru_prev;
  e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(cynic__stale_cache_t *c, cynic__stale_entry_t *e) {
  e->lru_prev = NULL;
  e->lru_next = c->lru_head;
  if (c->lru_head != NULL)
    c->lru_head->lru_prev = e;
  else
    c->lru_tail = e;
  c->lru_head = e;
}

/* Takes e out of the table and frees it. */
static void remove_entry(cynic__stale_cache_t *c, cynic__stale_entry_t *e) {
  cynic__stale_entry_t **link = &c->buckets[e->hash & c->mask];
  while (*link != e)
    link = &(*link)->chain;
  *link = e->chain;
  lru_unlink(c, e);
  c->count--;
  c->bytes -= e->bytes;
  entry_free(e);
}

/* Doubles the bucket heads when the entries outnumber them (up to
 * MAX_BUCKETS); without memory the chains just grow longer. */
static void grow(cynic__stale_cache_t *c) {
  uint64_t n = (uint64_t)c->mask + 1;
  if (c->count <= n || n >= MAX_BUCKETS)
    return;
  cynic__stale_entry_t **b = calloc((size_t)n * 2, sizeof *b);
  if (b == NULL)
    return;
  uint32_t mask = (uint32_t)(n * 2 - 1);
  for (cynic__stale_entry_t *e = c->lru_head; e != NULL; e = e->lru_next) {
    e->chain = b[e->hash & mask];
    b[e->hash & mask] = e;
  }
  free(c->buckets);
  c->buckets = b;
  c->mask = mask;
}

static cynic__stale_entry_t *find_key(const cynic__stale_cache_t *c, uint64_t hash, const char *key,
                                      size_t len) {
  for (cynic__stale_entry_t *e = c->buckets[hash & c->mask]; e != NULL; e = e->chain)
    if (e->hash == hash && e->key_len == len && memcmp(e->data, key, len) == 0)
      return e;
  return NULL;
}

/* The entry stored under req's key, whatever its age and Vary (NULL: none,
 * or no memory for a long key). */
static cynic__stale_entry_t *entry_for(const cynic__stale_cache_t *c,
                                       const cynic__stale_req_t *req) {
  size_t len = key_size(req);
  char stack[2048];
  char *key = len <= sizeof stack ? stack : malloc(len);
  if (key == NULL)
    return NULL;
  key_write(key, req);
  cynic__stale_entry_t *e = find_key(c, key_hash(c, key, len), key, len);
  if (key != stack)
    free(key);
  return e;
}

static bool expired(const cynic__stale_entry_t *e, const cynic__stale_limits_t *lim,
                    uint64_t now_ms) {
  uint64_t limit = lim->max_age_ms < e->limit_ms ? lim->max_age_ms : e->limit_ms;
  uint64_t age = now_ms > e->stored_ms ? now_ms - e->stored_ms : 0;
  return age >= limit;
}

/* ---- storing ------------------------------------------------------------------------ */

/* cynic__stale_refusal, and when it is NULL what the capture needs next:
 * the response's Cache-Control in *cc and its Vary block's length. */
static const char *refusal(const cynic__stale_req_t *req, const cynic__stale_res_t *res,
                           const cynic__stale_limits_t *lim, cc_t *cc, size_t *vary_len) {
  static const int ok_status[] = {200, 203, 204, 300, 301, 404, 410};
  bool status_ok = false;
  for (size_t i = 0; i < sizeof ok_status / sizeof ok_status[0]; i++)
    status_ok = status_ok || res->status == ok_status[i];
  if (!status_ok)
    return "status";
  if (find(res->fields, res->nfields, "set-cookie") != NULL)
    return "Set-Cookie";
  read_cc(res->fields, res->nfields, cc);
  if (cc->forbids != NULL)
    return cc->forbids;
  if ((*vary_len = vary_block(req, res, NULL)) == SIZE_MAX)
    return "Vary";
  if (find(req->fields, req->nfields, "authorization") != NULL && !cc->is_public)
    return "Authorization";
  cc_t rcc;
  read_cc(req->fields, req->nfields, &rcc);
  if (rcc.no_store)
    return "request no-store";
  if (res->content_length > 0 && (uint64_t)res->content_length > lim->max_entry_bytes)
    return "max_entry_bytes";
  return NULL;
}

const char *cynic__stale_refusal(const cynic__stale_req_t *req, const cynic__stale_res_t *res,
                                 const cynic__stale_limits_t *lim) {
  cc_t cc;
  size_t vary_len;
  return refusal(req, res, lim, &cc, &vary_len);
}

cynic__stale_entry_t *cynic__stale_capture(cynic__stale_cache_t *c, const cynic__stale_req_t *req,
                                           const cynic__stale_res_t *res,
                                           const cynic__stale_limits_t *lim, uint64_t now_ms) {
  cc_t cc;
  size_t vary_len;
  if (c == NULL || refusal(req, res, lim, &cc, &vary_len) != NULL)
    return NULL;
  const cynic__stale_entry_t *kept = entry_for(c, req);
  if (kept != NULL && now_ms >= kept->stored_ms &&
      now_ms - kept->stored_ms < CYNIC__STALE_REFRESH_MS && vary_matches(kept, req))
    return NULL; /* kept a moment ago: not again */
  cynic__http_conn_opts_t opts;
  cynic__http_head_t h = {.fields = res->fields, .nfields = res->nfields};
  if (cynic__http_conn_opts(&h, &opts) != 0)
    return NULL;
  size_t head_len = 0;
  for (size_t i = 0; i < res->nfields; i++)
    if (kept_field(&res->fields[i], &opts))
      head_len += res->fields[i].nlen + res->fields[i].vlen + 4;
  size_t key_len = key_size(req);
  size_t meta = key_len + vary_len + res->reason_len + head_len;
  size_t body_cap = res->content_length >= 0 ? (size_t)res->content_length : BODY_START;
  if (body_cap > lim->max_entry_bytes)
    body_cap = (size_t)lim->max_entry_bytes;
  uint64_t bytes = sizeof(cynic__stale_entry_t) + meta + body_cap;
  if (c->pending + bytes > lim->max_bytes || bytes > lim->max_bytes) {
    c->dropped++;
    return NULL;
  }
  cynic__stale_entry_t *e = malloc(sizeof *e + meta);
  if (e == NULL)
    return NULL;
  memset(e, 0, sizeof *e);
  e->body = malloc(body_cap > 0 ? body_cap : 1);
  if (e->body == NULL) {
    free(e);
    return NULL;
  }
  e->body_cap = body_cap;
  e->status = res->status;
  e->key_len = key_len;
  e->vary_len = vary_len;
  e->reason_len = res->reason_len;
  e->head_len = head_len;
  e->limit_ms = UINT64_MAX;
  char *p = e->data;
  key_write(p, req);
  p += key_len;
  vary_block(req, res, p);
  p += vary_len;
  memcpy(p, res->reason, res->reason_len);
  p += res->reason_len;
  for (size_t i = 0; i < res->nfields; i++) {
    const cynic__http_hfield_t *f = &res->fields[i];
    if (!kept_field(f, &opts))
      continue;
    memcpy(p, f->name, f->nlen);
    p += f->nlen;
    memcpy(p, ": ", 2);
    p += 2;
    memcpy(p, f->value, f->vlen);
    p += f->vlen;
    memcpy(p, "\r\n", 2);
    p += 2;
  }
  if (cc.has_sie) {
    uint64_t s = cc.sie_s + (cc.has_max_age ? cc.max_age_s : 0);
    e->limit_ms = s * 1000;
  }
  const cynic__http_hfield_t *age = find(res->fields, res->nfields, "age");
  if (age != NULL && !delta_seconds(age->value, age->vlen, &e->age_s))
    e->age_s = 0;
  e->hash = key_hash(c, e->data, key_len);
  e->bytes = bytes;
  c->pending += bytes;
  return e;
}

void cynic__stale_drop(cynic__stale_cache_t *c, cynic__stale_entry_t *e) {
  if (e == NULL)
    return;
  c->pending -= e->bytes;
  c->dropped++;
  entry_free(e);
}

bool cynic__stale_capture_body(cynic__stale_cache_t *c, cynic__stale_entry_t *e, const char *p,
                               size_t n, const cynic__stale_limits_t *lim) {
  if (n > lim->max_entry_bytes - e->body_len || e->body_len + n > lim->max_entry_bytes) {
    cynic__stale_drop(c, e);
    return false;
  }
  if (e->body_len + n > e->body_cap) {
    size_t cap = e->body_cap > 0 ? e->body_cap : BODY_START;
    while (cap < e->body_len + n)
      cap *= 2;
    if (cap > lim->max_entry_bytes)
      cap = (size_t)lim->max_entry_bytes;
    uint64_t more = cap - e->body_cap;
    char *b = c->pending + more <= lim->max_bytes ? realloc(e->body, cap) : NULL;
    if (b == NULL) {
      cynic__stale_drop(c, e);
      return false;
    }
    e->body = b;
    e->body_cap = cap;
    e->bytes += more;
    c->pending += more;
  }
  memcpy(e->body + e->body_len, p, n);
  e->body_len += n;
  return true;
}

void cynic__stale_commit(cynic__stale_cache_t *c, cynic__stale_entry_t *e,
                         const cynic__stale_limits_t *lim, uint64_t now_ms) {
  c->pending -= e->bytes;
  if (e->body_cap > e->body_len) { /* trimmed to what it holds */
    char *b = realloc(e->body, e->body_len > 0 ? e->body_len : 1);
    if (b != NULL) {
      e->body = b;
      e->body_cap = e->body_len;
    }
  }
  e->bytes = sizeof *e + e->key_len + e->vary_len + e->reason_len + e->head_len + e->body_cap;
  e->stored_ms = now_ms;
  if (e->bytes > lim->max_bytes || lim->max_entries == 0) {
    c->dropped++;
    entry_free(e);
    return;
  }
  cynic__stale_entry_t *old = find_key(c, e->hash, e->data, e->key_len);
  if (old != NULL)
    remove_entry(c, old);
  /* a few expired entries at the old end go first, then the least recently
   * used until it fits */
  for (int i = 0; i < SWEEP_STEPS && c->lru_tail != NULL && expired(c->lru_tail, lim, now_ms);
       i++) {
    c->expired++;
    remove_entry(c, c->lru_tail);
  }
  while (c->lru_tail != NULL &&
         (c->count + 1 > lim->max_entries || c->bytes + e->bytes > lim->max_bytes)) {
    c->evicted++;
    remove_entry(c, c->lru_tail);
  }
  cynic__stale_entry_t **head = &c->buckets[e->hash & c->mask];
  e->chain = *head;
  *head = e;
  lru_push_front(c, e);
  c->count++;
  c->bytes += e->bytes;
  c->stored++;
  grow(c);
}

/* ---- serving ------------------------------------------------------------------------ */

const cynic__stale_entry_t *cynic__stale_peek(const cynic__stale_cache_t *c,
                                              const cynic__stale_req_t *req,
                                              const cynic__stale_limits_t *lim, uint64_t now_ms) {
  const cynic__stale_entry_t *e = c != NULL ? entry_for(c, req) : NULL;
  return e != NULL && !expired(e, lim, now_ms) && vary_matches(e, req) ? e : NULL;
}

const cynic__stale_entry_t *cynic__stale_lookup(cynic__stale_cache_t *c,
                                                const cynic__stale_req_t *req,
                                                const cynic__stale_limits_t *lim, uint64_t now_ms) {
  if (c == NULL)
    return NULL;
  cynic__stale_entry_t *e = entry_for(c, req);
  if (e != NULL && expired(e, lim, now_ms)) {
    c->expired++;
    remove_entry(c, e);
    e = NULL;
  }
  if (e == NULL || !vary_matches(e, req)) {
    c->misses++;
    return NULL;
  }
  c->hits++;
  if (c->lru_head != e) {
    lru_unlink(c, e);
    lru_push_front(c, e);
  }
  return e;
}

int cynic__stale_status(const cynic__stale_entry_t *e) {
  return e->status;
}

const char *cynic__stale_reason(const cynic__stale_entry_t *e, size_t *len) {
  *len = e->reason_len;
  return e->data + e->key_len + e->vary_len;
}

const char *cynic__stale_head(const cynic__stale_entry_t *e, size_t *len) {
  *len = e->head_len;
  return e->data + e->key_len + e->vary_len + e->reason_len;
}

const char *cynic__stale_body(const cynic__stale_entry_t *e, size_t *len) {
  *len = e->body_len;
  return e->body;
}

uint64_t cynic__stale_age_s(const cynic__stale_entry_t *e, uint64_t now_ms) {
  uint64_t in_cache = now_ms > e->stored_ms ? (now_ms - e->stored_ms) / 1000 : 0;
  return e->age_s + in_cache;
}

void cynic__stale_stats(const cynic__stale_cache_t *c, cynic__stale_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (c == NULL)
    return;
  out->entries = c->count;
  out->bytes = c->bytes;
  out->pending_bytes = c->pending;
  out->stored = c->stored;
  out->hits = c->hits;
  out->misses = c->misses;
  out->expired = c->expired;
  out->evicted = c->evicted;
  out->dropped = c->dropped;
}
