/*
 * src/proxy/admin_auth.c: the admin API's authentication: the bearer token (compared in
 * constant time), `?token=` on the status stream only, and the per-client
 * budget of failed authentications (Unwanted Users). docs/admin.md, "Token".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "addr.h"
#include "admin.h"
#include "json.h"
#include "log.h"
#include "token.h"

typedef cynic__admin_req_t req_t;

/* ---- auth ---------------------------------------------------------------------- */

/* Constant time in the token's length and content: every byte is compared
 * whatever the first difference, and a length mismatch only sets a flag. */
static bool token_ok(const cynic__admin_t *a, const char *got, size_t len) {
  unsigned char diff = len != a->token_len;
  for (size_t i = 0; i < a->token_len; i++)
    diff |= (unsigned char)(a->token[i] ^ (i < len ? got[i] : 0));
  return diff == 0;
}

/* The penalty box entry of a client past its failed-authentication budget
 * (NULL: none, or its time is up). */
static cynic__admin_blocked_t *blocked_find(cynic__admin_t *a, const unsigned char *key,
                                            size_t keylen, uint64_t now) {
  for (size_t i = 0; i < CYNIC__ADMIN_AUTH_BLOCKED; i++) {
    cynic__admin_blocked_t *b = &a->blocked[i];
    if (b->keylen == keylen && keylen > 0 && memcmp(b->key, key, keylen) == 0)
      return b->until_ns > now ? b : NULL;
  }
  return NULL;
}

static void blocked_add(cynic__admin_t *a, const unsigned char *key, size_t keylen,
                        uint64_t until) {
  cynic__admin_blocked_t *slot = NULL;
  for (size_t i = 0; i < CYNIC__ADMIN_AUTH_BLOCKED && slot == NULL; i++)
    if (a->blocked[i].keylen == keylen && memcmp(a->blocked[i].key, key, keylen) == 0)
      slot = &a->blocked[i];
  if (slot == NULL) { /* else the entry whose time ends first (free ones: 0) */
    slot = &a->blocked[0];
    for (size_t i = 1; i < CYNIC__ADMIN_AUTH_BLOCKED; i++)
      if (a->blocked[i].until_ns < slot->until_ns)
        slot = &a->blocked[i];
  }
  memcpy(slot->key, key, keylen);
  slot->keylen = keylen;
  slot->until_ns = until;
}

/* 429 for a client past its failed-authentication budget; the connection
 * closes (as after a 401). */
static void too_many_failures(req_t *r, uint64_t wait_ns) {
  static const char *const retry[] = {"Retry-After: 1\r\n", "Retry-After: 2\r\n",
                                      "Retry-After: 5\r\n"};
  uint64_t s = (wait_ns + 999999999u) / 1000000000u;
  r->resp->headers = s <= 1 ? retry[0] : s <= 2 ? retry[1] : retry[2];
  cynic__admin_reply_error(r, 429,
                           "too many failed authentications from this address; retry later");
  r->resp->close = true;
}

/* Checks the bearer token (or `got`, the stream's ?token=, when non-NULL).
 * A failure is answered 401 and closes the connection (a client without the
 * token keeps no admin slot); failures are counted per client address and a
 * client past CYNIC__ADMIN_AUTH_RATE/BURST is answered 429 before its token
 * is even compared, so guessing is bounded to that rate. */
static bool check_token(req_t *r, const char *got, size_t got_len, bool has) {
  cynic__admin_t *a = r->a;
  unsigned char key[16];
  size_t keylen = cynic__httpd_peer_key(r->http, key);
  uint64_t now = uv_hrtime();
  cynic__admin_blocked_t *b = keylen > 0 ? blocked_find(a, key, keylen, now) : NULL;
  if (b != NULL) {
    too_many_failures(r, b->until_ns - now);
    return false;
  }
  if (has && token_ok(a, got, got_len))
    return true;
  uint64_t wait_ns = 0;
  if (keylen > 0 && a->auth_failures != NULL &&
      cynic_ratetable_take(a->auth_failures, key, keylen, 1, &wait_ns) == CYNIC_ELIMITED) {
    blocked_add(a, key, keylen, now + (wait_ns == UINT64_MAX ? 1000000000u : wait_ns));
    too_many_failures(r, wait_ns);
    return false;
  }
  r->resp->headers = "WWW-Authenticate: Bearer realm=\"cynic admin\"\r\n";
  cynic__admin_reply_error(r, 401,
                           !has ? "missing bearer token: send Authorization: Bearer <token>"
                                : "bad bearer token");
  r->resp->close = true;
  return false;
}

bool cynic__admin_authorised(req_t *r) {
  if (r->a->token == NULL)
    return true;
  size_t len = 0;
  const char *h = cynic__http_header(r->http, "Authorization", &len);
  if (h != NULL && len > 7 && strncasecmp(h, "Bearer ", 7) == 0)
    return check_token(r, h + 7, len - 7, true);
  return check_token(r, NULL, 0, h != NULL);
}

void cynic__admin_token_set(cynic__proxy_t *p, char *token, size_t len) {
  cynic__admin_t *a = p->admin;
  cynic__token_free(a->token, a->token_len);
  a->token = token;
  a->token_len = len;
}

/* The stream's own token rule: EventSource cannot send headers, so with a
 * token configured `?token=` (URL-encoded) is accepted here, and only here;
 * the Authorization header works as everywhere. */
bool cynic__admin_stream_authorised(req_t *r) {
  if (r->a->token == NULL)
    return true;
  size_t hlen;
  if (cynic__http_header(r->http, "Authorization", &hlen) != NULL)
    return cynic__admin_authorised(r); /* the header, when sent, is what counts */
  const char *url = r->http->url.data ? r->http->url.data : "";
  const char *q = strchr(url, '?');
  while (q != NULL) {
    q++;
    size_t n = strcspn(q, "&#");
    if (n > 6 && strncmp(q, "token=", 6) == 0) {
      char *got = malloc(CYNIC__TOKEN_MAX + 1);
      if (got == NULL) {
        cynic__admin_reply_error(r, 503, "out of memory");
        return false;
      }
      bool ok;
      if (cynic__http_pct_decode(q + 6, n - 6, got, CYNIC__TOKEN_MAX + 1) == 0)
        ok = check_token(r, got, strlen(got), true);
      else
        ok = check_token(r, "", 0, true); /* undecodable: a failure like any other */
      cynic__token_free(got, CYNIC__TOKEN_MAX + 1); /* wiped as every token copy is */
      return ok;
    }
    q = q[n] == '&' ? q + n : NULL;
  }
  return cynic__admin_authorised(r);
}
