/*
 * src/proxy/http_limits.c: Unwanted Users and load shedding for HTTP mode
 * (Nygard, *Release It!*), at the moment a request's head is complete.
 *
 * Rate limit. A listener's rate_limit counts requests in http mode (in tcp
 * mode, new connections at accept: listener.c). The bucket is the client's:
 * its address, or, behind a trusted proxy, the last element of the last
 * `key_header` field (what that proxy appended). The table is libcynic's
 * cynic_ratetable_t, bounded at rate_limit.max_clients (least recently seen
 * clients forgotten first), so a flood of distinct keys cannot grow memory.
 * Keys from a header carry a first byte 0xff, so that a header value can
 * never name the bucket of an address (a 16-byte address key starting 0xff
 * would be multicast, never a client's).
 *
 * Load shedding. Every http request from its complete head until its report
 * (exchange end, cynic's answer written, or the connection closed) is one
 * pending request of the process. Past limits.max_pending_requests a new one
 * is answered 503 at once, before fail fast and the bulkhead: queued
 * requests hold memory, a client connection and often a bulkhead slot, and
 * a load balancer in front is better told to go elsewhere (/ready answers
 * 503 while overloaded: Handshaking) than kept waiting.
 */
#include "http_limits.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "log.h"

#define KEY_TAG 0xffu
#define RETRY_AFTER_MAX_S 86400u
#define NS_PER_S UINT64_C(1000000000)

size_t cynic__hl_last_element(const char *v, size_t n, const char **out) {
  size_t start = n;
  while (start > 0 && v[start - 1] != ',')
    start--;
  size_t end = n;
  while (start < end && (v[start] == ' ' || v[start] == '\t'))
    start++;
  while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
    end--;
  *out = v + start;
  return end - start;
}

uint64_t cynic__hl_retry_after_s(uint64_t wait_ns) {
  uint64_t s = wait_ns / NS_PER_S + (wait_ns % NS_PER_S != 0);
  if (s < 1)
    s = 1;
  return s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s;
}

/* The value of the last field named `name` (case-insensitive), or NULL. */
static const char *last_field(const cynic__http_msg_t *m, const char *name, size_t *vlen) {
  size_t want = strlen(name);
  const char *found = NULL;
  size_t n = cynic__http_msg_nfields(m);
  for (size_t i = 0; i < n; i++) {
    const char *fname, *value;
    size_t nlen, len;
    cynic__http_msg_field(m, i, &fname, &nlen, &value, &len);
    if (nlen == want && strncasecmp(fname, name, want) == 0) {
      found = value;
      *vlen = len;
    }
  }
  return found;
}

/* Takes the request's token: 0, or CYNIC_ELIMITED with *wait_ns set. */
static int take_token(cynic__http_conn_t *c, uint64_t *wait_ns) {
  cynic__listener_t *l = c->base.listener;
  const char *header = l->cfg->rate_key_header;
  if (header != NULL) {
    size_t vlen = 0;
    const char *v = last_field(&c->x->req, header, &vlen);
    const char *el = NULL;
    size_t n = v != NULL ? cynic__hl_last_element(v, vlen, &el) : 0;
    if (n > CYNIC__HL_KEY_MAX)
      return cynic_ratetable_take(l->rate, el, n, 1, wait_ns); /* digested: never 16 bytes */
    if (n > 0) {
      uint8_t key[1 + CYNIC__HL_KEY_MAX];
      key[0] = KEY_TAG;
      memcpy(key + 1, el, n);
      return cynic_ratetable_take(l->rate, key, n + 1, 1, wait_ns);
    }
  }
  return cynic_ratetable_take(l->rate, c->base.ip, 16, 1, wait_ns);
}

/* Hysteresis: overloaded from the ceiling until below 90% of it. */
static void pending_changed(cynic__proxy_t *p) {
  uint32_t max = p->cfg->limits.max_pending_requests;
  if (max == 0)
    p->overloaded = false;
  else if (p->requests_pending >= max)
    p->overloaded = true;
  else if (p->requests_pending < max - max / 10)
    p->overloaded = false;
}

bool cynic__hl_overloaded(cynic__proxy_t *p) {
  pending_changed(p);
  return p->overloaded;
}

/* An answer of cynic's for a request that goes no further. */
static void answer(cynic__http_conn_t *c, cynic__event_t ev, int status, const char *reason,
                   uint64_t retry_after, const char *detail) {
  cynic__listener_t *l = c->base.listener;
  cynic__hs_outcome(c, (int)ev);
  cynic__proxy_event(&l->counters, ev, "listener", l->cfg->name, NULL, detail);
  cynic__hs_answer(c, status, reason, retry_after, true);
}

bool cynic__hl_admit(cynic__http_conn_t *c) {
  cynic__listener_t *l = c->base.listener;
  cynic__proxy_t *p = l->proxy;
  uint64_t wait_ns = 0;
  if (l->rate != NULL && take_token(c, &wait_ns) != 0) {
    char who[CYNIC_ADDR_STR_MAX] = "?";
    struct sockaddr_storage ss;
    cynic__client_sockaddr(c->base.ip, c->base.port, &ss);
    if (cynic__addr_format((struct sockaddr *)&ss, who, sizeof who) != 0)
      snprintf(who, sizeof who, "?"); /* never an unformatted buffer in the log */
    answer(c, CYNIC__EV_REQUEST_RATE_LIMITED, 429, "rate_limited", cynic__hl_retry_after_s(wait_ns),
           who);
    return false;
  }
  uint32_t max = p->cfg->limits.max_pending_requests;
  if (max != 0 && p->requests_pending >= max) {
    p->requests_shed++;
    p->overloaded = true;
    answer(c, CYNIC__EV_OVERLOADED, 503, "overloaded", 1, NULL);
    return false;
  }
  p->requests_pending++;
  c->x->pending = true;
  pending_changed(p);
  return true;
}

void cynic__hl_done(cynic__http_conn_t *c) {
  if (c->x == NULL || !c->x->pending)
    return;
  c->x->pending = false;
  cynic__proxy_t *p = c->base.listener->proxy;
  p->requests_pending--;
  pending_changed(p);
}
