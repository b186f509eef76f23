/*
 * src/proxy/http_fallback.h: HTTP mode's fallback answers (the upstream's
 * `fallback:` section, docs/configuration.md "Fallbacks"): when the upstream
 * cannot answer a request and nothing of a response has reached the client,
 * cynic answers from the stale cache (the last good response for the same
 * GET URL, stale_cache.c) or with the configured static answer, in the
 * configured order, instead of its own error. Every such answer says so:
 * `Cynic-Fallback: stale|static` and `Cynic-Answer: <why the upstream could
 * not answer>`; it is counted per upstream and kind (/status, /metrics) and
 * logged with the request (`fallback` in the access log).
 *
 * And the capture that fills the cache: the decoded body of a cacheable GET
 * response is copied while it streams to the client (the response parser's
 * body callback) and stored when the response ends well.
 *
 * Used by http_session.c and http_upstream.c only (one call at each answer
 * point, one hook per response), on the connection object of http_conn.h.
 */
#ifndef CYNIC_PROXY_HTTP_FALLBACK_H
#define CYNIC_PROXY_HTTP_FALLBACK_H

#include <stdbool.h>

struct cynic__http_conn;
struct cynic__http_xchg;

/* The upstream could not answer the current request (`reason`: what cynic
 * would answer, "breaker_open", "connect_timeout", ...; static text). When
 * its fallback answers, the answer is written (keep-alive as
 * cynic__hs_answer's) and true is returned; false leaves everything to the
 * caller's usual answer. Only before any byte of a response reached the
 * client, with the exchange over (no slot, no upstream connection). */
bool cynic__hs_fallback(struct cynic__http_conn *c, const char *reason);

/* The upstream's response head was judged outside expect.status: true when a
 * fallback will answer instead (then the caller fails the exchange with
 * CYNIC__HX_UNEXPECTED_STATUS, whose answer becomes the fallback), false to
 * forward the response as before. Nothing is changed either way. */
bool cynic__hs_fallback_ready(struct cynic__http_conn *c);

/* The request's report is about to be made (the exchange ends) before its
 * answer is written: it records what the client will get, cynic's `status`
 * and `reason` or the fallback's answer (what cynic__hs_fallback will send
 * in the same loop turn). */
void cynic__hs_answer_note(struct cynic__http_conn *c, int status, const char *reason);

/* A final response head was parsed and will be forwarded: when the request is
 * a GET and the upstream keeps a stale cache and the response may be stored,
 * its body is captured from here on. */
void cynic__hs_capture_begin(struct cynic__http_conn *c);
/* The response ended: stored when `success` and the capture is whole, else
 * dropped. */
void cynic__hs_capture_end(struct cynic__http_conn *c, bool success);
/* The exchange goes back to the free list: a capture still held is dropped. */
void cynic__hs_capture_drop(struct cynic__http_conn *c, struct cynic__http_xchg *x);

/* The kind's name ("stale", "secondary", "static"). */
const char *cynic__fallback_kind_name(int kind);

#endif /* CYNIC_PROXY_HTTP_FALLBACK_H */
