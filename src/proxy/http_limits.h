/*
 * src/proxy/http_limits.h: HTTP mode's request-level front door against
 * Unwanted Users and overload (http_limits.c): the per-client token bucket
 * (rate_limit, counted per request: 429) and load shedding (a process-wide
 * ceiling on requests in flight, limits.max_pending_requests: 503), both
 * decided when a request's head is complete, before fail fast, the bulkhead
 * or any upstream work.
 */
#ifndef CYNIC_PROXY_HTTP_LIMITS_H
#define CYNIC_PROXY_HTTP_LIMITS_H

#include "http_conn.h"

/* A key_header value's element is used as the client's key up to this many
 * bytes; a longer one is told apart by libcynic's 128-bit keyed digest of
 * all of it (an entry is the same 64 bytes either way). */
#define CYNIC__HL_KEY_MAX 128u

/*
 * The request in c->x has a complete head. Takes a token from its client's
 * bucket (the listener's rate_limit; the client is key_header's value when
 * configured and present, else the address) and a place under the
 * process's limits.max_pending_requests. True: the request goes on and is
 * counted as pending until cynic__hl_done. False: it was answered (429
 * rate_limited with Retry-After, or 503 overloaded with Retry-After: 1;
 * the connection stays open when the request was read to its end, as
 * cynic__hs_answer's `keep`) and nothing else may be done with it.
 */
bool cynic__hl_admit(cynic__http_conn_t *c);

/* The request in c->x (if any) is over for the pending count: called when
 * its report is made and when its exchange is given back; counts once. */
void cynic__hl_done(cynic__http_conn_t *c);

/* cynic__hl_overloaded (what /ready asks): proxy.h. */

/* The last comma-separated element of a header value `v` (n bytes), space
 * and tab trimmed: into *out, its length returned (0: empty). The element a
 * trusted proxy appends (X-Forwarded-For: client, proxy1 -> proxy1 is what
 * the last hop saw). */
size_t cynic__hl_last_element(const char *v, size_t n, const char **out);

/* Whole seconds a client waits for its next token, from the bucket's
 * wait in ns: rounded up, at least 1, at most one day. */
uint64_t cynic__hl_retry_after_s(uint64_t wait_ns);

#endif /* CYNIC_PROXY_HTTP_LIMITS_H */
