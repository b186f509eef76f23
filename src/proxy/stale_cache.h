/*
 * src/proxy/stale_cache.h: the last good response per GET URL, per upstream,
 * for the `stale` fallback (docs/configuration.md, "Fallbacks").
 *
 * When an upstream cannot answer (breakers open, bulkhead full, a timeout, a
 * bad response), a client asking for a URL it was answered a minute ago is
 * better served by that answer than by a 503: Nygard's "fallback", HTTP's
 * `stale-if-error` (RFC 5861). The cache keeps, per upstream:
 *
 *   key     the request's Host (lowercased) and target, as sent;
 *   vary    the names the response's Vary lists and the request's values of
 *           them: a request with other values is a miss (one variant per URL
 *           is kept: the last one stored);
 *   entry   status, reason, the response's header lines without hop-by-hop
 *           ones and without its framing (Content-Length, Transfer-Encoding)
 *           and Age, and the whole decoded body.
 *
 * Never stored (cynic__stale_refusal names the rule): a status other than
 * 200, 203, 204, 300, 301, 404, 410; Set-Cookie; Cache-Control private,
 * no-store, no-cache, must-revalidate, proxy-revalidate or s-maxage (each
 * forbids a shared cache to serve it stale, RFC 9111 4.2.4, 5.2.2); Vary: *;
 * a request with Authorization (RFC 9111 3.5) unless the response says
 * public, or with Cache-Control: no-store; a declared body over
 * max_entry_bytes. A body that grows past it while it streams, or a
 * response that fails or is cut off, is dropped (the caller's part).
 *
 * Bounds, all hard: at most max_entries entries and max_bytes bytes (each
 * entry's struct, key, head and body counted), least recently used first out;
 * captures under way count against max_bytes too (a capture that would pass
 * it is dropped), so the cache and its captures together hold at most twice
 * max_bytes. An entry older than max_age (since it was stored), or than
 * its response's `max-age + stale-if-error` when that is shorter, is never
 * served and is freed when a lookup or a store finds it. The hash is
 * SipHash-1-3 under a per-cache random key (cynic/hash.h): URLs are the
 * client's to choose.
 *
 * Socket-free: time is the caller's (`now_ms`, monotonic milliseconds);
 * tests/unit/proxy/test_stale_cache.c moves it by hand. Loop thread only.
 */
#ifndef CYNIC_PROXY_STALE_CACHE_H
#define CYNIC_PROXY_STALE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_head.h"

typedef struct cynic__stale_cache cynic__stale_cache_t;
typedef struct cynic__stale_entry cynic__stale_entry_t;

/* The bounds, read at each call (a reload may change them). */
typedef struct cynic__stale_limits {
  uint32_t max_entries;
  uint64_t max_bytes;
  uint64_t max_entry_bytes; /* one body */
  uint64_t max_age_ms;
} cynic__stale_limits_t;

/* A GET request as the cache sees it. */
typedef struct cynic__stale_req {
  const char *host, *target; /* not NUL-terminated */
  size_t host_len, target_len;
  const cynic__http_hfield_t *fields; /* the request's headers (Vary, Authorization) */
  size_t nfields;
} cynic__stale_req_t;

/* A final response head as the cache sees it. */
typedef struct cynic__stale_res {
  int status;
  const char *reason;
  size_t reason_len;
  const cynic__http_hfield_t *fields;
  size_t nfields;
  int64_t content_length; /* the declared body size; -1 when not declared */
} cynic__stale_res_t;

typedef struct cynic__stale_stats {
  uint64_t entries, bytes;                                  /* now */
  uint64_t pending_bytes;                                   /* held by captures under way */
  uint64_t stored, hits, misses, expired, evicted, dropped; /* since the cache was made */
} cynic__stale_stats_t;

/* An empty cache, or NULL without memory. Free with cynic__stale_free once no
 * capture of it is under way. */
cynic__stale_cache_t *cynic__stale_new(void);
void cynic__stale_free(cynic__stale_cache_t *c);

/* NULL when the response to `req` may be stored; else the rule that forbids
 * it ("Set-Cookie", "status", "Cache-Control: private", ...; static text). */
const char *cynic__stale_refusal(const cynic__stale_req_t *req, const cynic__stale_res_t *res,
                                 const cynic__stale_limits_t *lim);

/* A URL's kept response is replaced at most once in this long: a hot URL
 * costs a lookup per response, not a copy. */
#define CYNIC__STALE_REFRESH_MS 1000

/* Begins keeping the response `res` to `req` (its body follows through
 * cynic__stale_capture_body), or NULL: not storable (the refusal rules), the
 * same variant was kept less than CYNIC__STALE_REFRESH_MS before `now`, no
 * memory, or the captures under way already hold max_bytes. The capture is
 * the caller's until it passes it to cynic__stale_commit or
 * cynic__stale_drop. */
cynic__stale_entry_t *cynic__stale_capture(cynic__stale_cache_t *c, const cynic__stale_req_t *req,
                                           const cynic__stale_res_t *res,
                                           const cynic__stale_limits_t *lim, uint64_t now_ms);
/* `n` more decoded body bytes. False when they would take the body past
 * max_entry_bytes (or the captures past max_bytes) or memory ran out: the
 * capture was dropped then (freed; the caller forgets it). */
bool cynic__stale_capture_body(cynic__stale_cache_t *c, cynic__stale_entry_t *e, const char *p,
                               size_t n, const cynic__stale_limits_t *lim);
/* The response ended well: the capture becomes the entry for its key
 * (replacing an older one), least recently used entries evicted until it
 * fits. The cache owns it from here. */
void cynic__stale_commit(cynic__stale_cache_t *c, cynic__stale_entry_t *e,
                         const cynic__stale_limits_t *lim, uint64_t now_ms);
/* The response failed or will not be stored: the capture is freed. NULL is fine. */
void cynic__stale_drop(cynic__stale_cache_t *c, cynic__stale_entry_t *e);

/* The entry for `req` that may be served at `now`, or NULL (none, another
 * Vary variant, or too old: then it is freed). A hit becomes the most
 * recently used. The entry stays valid until the next call that changes the
 * cache. */
const cynic__stale_entry_t *cynic__stale_lookup(cynic__stale_cache_t *c,
                                                const cynic__stale_req_t *req,
                                                const cynic__stale_limits_t *lim, uint64_t now_ms);

/* As cynic__stale_lookup, but changes nothing: no count, no LRU move, an
 * expired entry left for the next lookup or store to free. */
const cynic__stale_entry_t *cynic__stale_peek(const cynic__stale_cache_t *c,
                                              const cynic__stale_req_t *req,
                                              const cynic__stale_limits_t *lim, uint64_t now_ms);

/* An entry's parts: status, reason, its header lines ("Name: value\r\n"
 * each, framing, Age and hop-by-hop ones left out), body, and its Age at
 * `now` in seconds (the upstream's Age plus the time since it was stored). */
int cynic__stale_status(const cynic__stale_entry_t *e);
const char *cynic__stale_reason(const cynic__stale_entry_t *e, size_t *len);
const char *cynic__stale_head(const cynic__stale_entry_t *e, size_t *len);
const char *cynic__stale_body(const cynic__stale_entry_t *e, size_t *len);
uint64_t cynic__stale_age_s(const cynic__stale_entry_t *e, uint64_t now_ms);

void cynic__stale_stats(const cynic__stale_cache_t *c, cynic__stale_stats_t *out);

#endif /* CYNIC_PROXY_STALE_CACHE_H */
