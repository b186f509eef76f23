/*
 * src/proxy/http_head.c: the heads HTTP mode writes (contract in http_head.h).
 */
#include "http_head.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cynic/common.h"
#include "http.h"
#include "http_msg.h"

/* ---- output ------------------------------------------------------------------ */

static bool put(cynic__http_out_t *o, const char *s, size_t n) {
  if (n > o->cap - o->len)
    return false;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  return true;
}

static bool puts_(cynic__http_out_t *o, const char *s) {
  return put(o, s, strlen(s));
}

/* Formatted text (short: a status line, an address, a number) appended; the
 * NUL vsnprintf writes never needs room in `o`. */
__attribute__((format(printf, 2, 3))) static bool printf_(cynic__http_out_t *o, const char *fmt,
                                                          ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  return n >= 0 && (size_t)n < sizeof tmp && put(o, tmp, (size_t)n);
}

/* "Name: value\r\n", room checked once (every forwarded field of every head) */
static bool field(cynic__http_out_t *o, const char *name, size_t nlen, const char *value,
                  size_t vlen) {
  if (nlen > o->cap - o->len || vlen + 4 > o->cap - o->len - nlen)
    return false;
  char *d = o->p + o->len;
  memcpy(d, name, nlen);
  d += nlen;
  *d++ = ':';
  *d++ = ' ';
  memcpy(d, value, vlen);
  d += vlen;
  *d++ = '\r';
  *d++ = '\n';
  o->len = (size_t)(d - o->p);
  return true;
}

/* ---- Connection and hop-by-hop ------------------------------------------------------ */

/* ASCII case-insensitive equality of n bytes, `lower` in lower case (no
 * locale: header names are ASCII tokens). Every header of every head is
 * compared with a few names, lengths first. */
static bool lower_eq(const char *s, const char *lower, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c + ('a' - 'A'));
    if (c != (unsigned char)lower[i])
      return false;
  }
  return true;
}

/* name_is(name, nlen, "literal"): the literal in lower case. */
#define name_is(name, nlen, lit) ((nlen) == sizeof(lit) - 1 && lower_eq(name, lit, sizeof(lit) - 1))

/* Case-insensitive, for names not known in advance (the listener's). */
static bool name_eq(const char *a, size_t alen, const char *b, size_t blen) {
  return alen == blen && strncasecmp(a, b, alen) == 0;
}

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

int cynic__http_conn_opts(const cynic__http_head_t *h, cynic__http_conn_opts_t *o) {
  /* names[] is read only up to count: no memset of its 256 bytes, three
   * times per request */
  o->close = o->keep_alive = false;
  o->count = 0;
  for (size_t i = 0; i < h->nfields; i++) {
    const cynic__http_hfield_t *f = &h->fields[i];
    if (!name_is(f->name, f->nlen, "connection"))
      continue;
    /* #token: a comma-separated list, empty elements and OWS allowed */
    const char *v = f->value, *end = f->value + f->vlen;
    for (const char *next; v < end; v = next) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      next = comma != NULL ? comma + 1 : end;
      const char *t = v, *te = comma != NULL ? comma : end;
      while (t < te && ows(*t))
        t++;
      while (te > t && ows(te[-1]))
        te--;
      size_t len = (size_t)(te - t);
      if (len == 0)
        continue;
      if (!cynic__http_is_token(t, len))
        return CYNIC_EINVAL; /* not a token list */
      if (name_is(t, len, "close"))
        o->close = true;
      else if (name_is(t, len, "keep-alive"))
        o->keep_alive = true;
      else if (o->count == CYNIC__HTTP_MAX_CONN_OPTIONS)
        return CYNIC_EINVAL;
      else {
        o->names[o->count].name = t;
        o->names[o->count].len = len;
        o->count++;
      }
    }
  }
  return 0;
}

bool cynic__http_hop_by_hop(const char *name, size_t nlen, const cynic__http_conn_opts_t *o,
                            bool to_upstream) {
  switch (nlen) { /* the fixed set, by length */
  case 2:
    if (name_is(name, nlen, "te"))
      return true;
    break;
  case 7:
    if (name_is(name, nlen, "trailer") || name_is(name, nlen, "upgrade"))
      return true;
    break;
  case 10:
    if (name_is(name, nlen, "connection") || name_is(name, nlen, "keep-alive"))
      return true;
    break;
  case 16:
    if (name_is(name, nlen, "proxy-connection"))
      return true;
    break;
  case 19:
    if (to_upstream && name_is(name, nlen, "proxy-authorization"))
      return true;
    break;
  default:
    break;
  }
  for (size_t i = 0; o != NULL && i < o->count; i++)
    if (name_eq(o->names[i].name, o->names[i].len, name, nlen))
      return true;
  return false;
}

/* ---- the request toward the upstream --------------------------------------------------- */

/* The client's address as one element of the header `fwd` chooses. */
static bool client_element(cynic__http_out_t *o, const cynic__http_fwd_t *f) {
  if (f->forwarded == CYNIC__FORWARDED_RFC7239)
    return strchr(f->client_ip, ':') != NULL ? printf_(o, "for=\"[%s]\"", f->client_ip)
                                             : printf_(o, "for=%s", f->client_ip);
  return puts_(o, f->client_ip);
}

int cynic__http_write_request(cynic__http_out_t *o, const cynic__http_head_t *h,
                              const cynic__http_fwd_t *f) {
  cynic__http_conn_opts_t own;
  const cynic__http_conn_opts_t *opts = f->opts;
  if (opts == NULL) {
    if (cynic__http_conn_opts(h, &own) != 0)
      return CYNIC_EINVAL;
    opts = &own;
  }
  const char *fwd_name = f->forwarded == CYNIC__FORWARDED_XFF       ? "X-Forwarded-For"
                         : f->forwarded == CYNIC__FORWARDED_RFC7239 ? "Forwarded"
                                                                    : NULL;
  size_t fwd_len = fwd_name != NULL ? strlen(fwd_name) : 0;
  size_t rid_hlen = f->request_id != NULL ? strlen(f->request_id_header) : 0;
  bool ok = put(o, h->method, h->method_len) && put(o, " ", 1) &&
            put(o, h->target, h->target_len) &&
            puts_(o, h->minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  size_t earlier = 0; /* values of fwd_name already there, joined on one line below */
  for (size_t i = 0; ok && i < h->nfields; i++) {
    const cynic__http_hfield_t *hf = &h->fields[i];
    if (cynic__http_hop_by_hop(hf->name, hf->nlen, opts, true))
      continue;
    if (fwd_name != NULL && name_eq(hf->name, hf->nlen, fwd_name, fwd_len)) {
      earlier++;
      continue;
    }
    if (f->request_id != NULL && name_eq(hf->name, hf->nlen, f->request_id_header, rid_hlen))
      continue; /* the client's was not valid: ours replaces it */
    ok = field(o, hf->name, hf->nlen, hf->value, hf->vlen);
  }
  if (ok && fwd_name != NULL) {
    ok = puts_(o, fwd_name) && put(o, ": ", 2);
    for (size_t i = 0; ok && earlier > 0 && i < h->nfields; i++) {
      const cynic__http_hfield_t *hf = &h->fields[i];
      if (name_eq(hf->name, hf->nlen, fwd_name, fwd_len) && hf->vlen > 0)
        ok = put(o, hf->value, hf->vlen) && put(o, ", ", 2);
    }
    ok = ok && client_element(o, f) && put(o, "\r\n", 2);
  }
  if (ok && f->request_id != NULL)
    ok = field(o, f->request_id_header, rid_hlen, f->request_id, strlen(f->request_id));
  ok = ok && puts_(o, h->minor == 0 ? "Via: 1.0 cynic\r\n\r\n" : "Via: 1.1 cynic\r\n\r\n");
  return ok ? 0 : CYNIC_ERANGE;
}

/* ---- the response toward the client ---------------------------------------------------- */

/* "HTTP/1.1 NNN " without printf (once per response: it shows). */
static bool status_line(cynic__http_out_t *o, int status) {
  if (status < 0 || status > 999)
    return printf_(o, "HTTP/1.1 %03d ", status);
  char line[14] = "HTTP/1.1 000 ";
  line[9] = (char)('0' + status / 100);
  line[10] = (char)('0' + status / 10 % 10);
  line[11] = (char)('0' + status % 10);
  return put(o, line, 13);
}

int cynic__http_write_response(cynic__http_out_t *o, const cynic__http_head_t *h, bool close,
                               int client_minor) {
  cynic__http_conn_opts_t opts;
  if (cynic__http_conn_opts(h, &opts) != 0)
    return CYNIC_EINVAL;
  bool ok = status_line(o, h->status) && put(o, h->reason, h->reason_len) &&
            put(o, "\r\n", 2);
  for (size_t i = 0; ok && i < h->nfields; i++) {
    const cynic__http_hfield_t *hf = &h->fields[i];
    if (!cynic__http_hop_by_hop(hf->name, hf->nlen, &opts, false))
      ok = field(o, hf->name, hf->nlen, hf->value, hf->vlen);
  }
  ok = ok && puts_(o, h->minor == 0 ? "Via: 1.0 cynic\r\n" : "Via: 1.1 cynic\r\n");
  if (close)
    ok = ok && puts_(o, "Connection: close\r\n");
  else if (client_minor == 0)
    ok = ok && puts_(o, "Connection: keep-alive\r\n");
  ok = ok && put(o, "\r\n", 2);
  return ok ? 0 : CYNIC_ERANGE;
}

/* ---- cynic's own answers --------------------------------------------------------------- */

/* A JSON string of s (visible ASCII: request ids and names are checked). */
static bool json_str(cynic__http_out_t *o, const char *s) {
  bool ok = put(o, "\"", 1);
  for (; ok && *s; s++)
    ok = (*s == '"' || *s == '\\') ? put(o, "\\", 1) && put(o, s, 1) : put(o, s, 1);
  return ok && put(o, "\"", 1);
}

int cynic__http_write_answer(cynic__http_out_t *o, const cynic__http_answer_t *a) {
  char body_buf[512];
  cynic__http_out_t b = {body_buf, 0, sizeof body_buf};
  bool ok = puts_(&b, "{\"error\": ") && json_str(&b, a->reason);
  if (a->upstream != NULL)
    ok = ok && puts_(&b, ", \"upstream\": ") && json_str(&b, a->upstream);
  if (a->request_id != NULL)
    ok = ok && puts_(&b, ", \"request_id\": ") && json_str(&b, a->request_id);
  ok = ok && puts_(&b, "}\n");
  if (!ok)
    return CYNIC_ERANGE;
  ok = printf_(o, "HTTP/1.1 %03d %s\r\n", a->status, cynic__http_reason(a->status)) &&
       puts_(o, "Content-Type: application/json\r\n") &&
       printf_(o, "Content-Length: %zu\r\n", b.len) &&
       printf_(o, "Cynic-Answer: %s\r\n", a->reason);
  if (a->retry_after_s > 0)
    ok = ok && printf_(o, "Retry-After: %llu\r\n", (unsigned long long)a->retry_after_s);
  if (a->request_id != NULL && a->request_id_header != NULL)
    ok = ok && field(o, a->request_id_header, strlen(a->request_id_header), a->request_id,
                     strlen(a->request_id));
  if (a->close)
    ok = ok && puts_(o, "Connection: close\r\n");
  ok = ok && put(o, "\r\n", 2) && (a->head_only || put(o, body_buf, b.len));
  return ok ? 0 : CYNIC_ERANGE;
}

/* ---- request ids ----------------------------------------------------------------------- */

bool cynic__http_request_id_valid(const char *v, size_t len) {
  if (len == 0 || len > 128)
    return false;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
      return false;
  return true;
}

/* v as 16 lowercase hex digits (what "%016llx" writes), no NUL. */
static void hex16(char *out, uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, v >>= 4)
    out[i] = digits[v & 0xf];
}

void cynic__http_request_id_make(char out[33]) {
  /* One loop thread makes ids: no lock. The prefix comes from getrandom once
   * (falling back to time and pid, still unique enough within a host). Made
   * per request that has no valid id of its own: hex by hand, no printf. */
  static uint64_t counter;
  static char prefix_hex[16];
  static bool seeded;
  if (!seeded) {
    uint64_t prefix;
    if (getrandom(&prefix, sizeof prefix, GRND_NONBLOCK) != (ssize_t)sizeof prefix) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      prefix = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    hex16(prefix_hex, prefix);
    seeded = true;
  }
  counter++;
  memcpy(out, prefix_hex, 16);
  hex16(out + 16, counter);
  out[32] = '\0';
}

/* Up to three decimal digits of v (0..255) at out: how many. */
static size_t octet(char *out, unsigned v) {
  size_t n = 0;
  if (v >= 100)
    out[n++] = (char)('0' + v / 100);
  if (v >= 10)
    out[n++] = (char)('0' + v / 10 % 10);
  out[n++] = (char)('0' + v % 10);
  return n;
}

void cynic__http_client_ip(const uint8_t ip[16], char out[INET6_ADDRSTRLEN]) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(ip, mapped, sizeof mapped) != 0) {
    if (inet_ntop(AF_INET6, ip, out, INET6_ADDRSTRLEN) == NULL)
      out[0] = '\0'; /* cannot fail with this size; an empty address if it did */
    return;
  }
  /* IPv4 (v4-mapped), what inet_ntop writes, without its sprintf: this runs
   * for every request that goes upstream. */
  size_t n = 0;
  for (int i = 12; i < 16; i++) {
    n += octet(out + n, ip[i]);
    out[n++] = i < 15 ? '.' : '\0';
  }
}
