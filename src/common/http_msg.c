/* http_msg.c: the strict, streaming HTTP/1.1 message parser on llhttp (see
 * http_msg.h for the contract). llhttp does the parsing; the callbacks here
 * copy the head into the caller's store and check what llhttp's strict mode
 * still lets through; one byte check runs over the raw head as it is fed. */
#include "http_msg.h"

#include <string.h>
#include <strings.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cynic/common.h"

/* Where a message is. */
enum {
  PH_IDLE,         /* no store: cynic__http_msg_begin first */
  PH_HEAD,         /* reading the head */
  PH_BODY_NEXT,    /* HEAD returned; llhttp paused before the body */
  PH_BODY,         /* reading the body */
  PH_DONE_PENDING, /* HEAD returned for a message without a body: DONE next */
  PH_DONE,         /* DONE returned: cynic__http_msg_next */
  PH_UPGRADED,     /* the head switched protocols: no more HTTP */
  PH_ERROR,        /* refused */
};

static cynic__http_msg_t *owner(llhttp_t *h) {
  return (cynic__http_msg_t *)((char *)h - offsetof(cynic__http_msg_t, llhttp));
}

int cynic__http_msg_fail(cynic__http_msg_t *m, int status, const char *reason) {
  if (m->error_status == 0) {
    /* A response the proxy cannot frame is the upstream's fault: 502. */
    m->error_status = m->kind == CYNIC__HTTP_RESPONSE ? 502 : status;
    m->error_reason = reason;
  }
  return -1;
}

/* ---- the head ------------------------------------------------------------ */

/* The raw head so far must stay within max_head: checked at every span (so a
 * long header is stopped as it arrives) and at the end of every feed. */
static int head_limit(cynic__http_msg_t *m, const char *at, size_t n) {
  size_t raw = m->head_bytes + (size_t)(at + n - m->feed_at);
  return raw > m->limits.max_head ? cynic__http_msg_fail(m, 431, "head too large") : 0;
}

static int put(cynic__http_msg_t *m, cynic__http_span_t *s, const char *at, size_t n) {
  if (n > m->cap - m->used)
    return cynic__http_msg_fail(m, 431, "head too large");
  memcpy(m->store + m->used, at, n);
  m->used += n;
  s->len += (uint32_t)n;
  return 0;
}

/*
 * The offset of the first byte below 0x20 or equal to 0x7f in p[0..n), or n.
 * Every head byte goes through this (the raw check), so it looks at sixteen
 * bytes at a time with SSE2, then eight by the word's bits, then one at a
 * time for the last few. In each byte's high bit, `low` marks a
 * byte below 0x20 and `del` a 0x7f; a borrow runs only upwards from a marked
 * byte, so the lowest marked byte is the first real one: on a little-endian
 * machine its offset is the count of trailing zero bits over eight.
 */
static inline size_t plain_run(const char *p, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  /* Sixteen at a time where the build has SSE2 (every x86-64): a byte is
   * marked when min(b, 0x1f) == b (below 0x20) or b == 0x7f; the mask's
   * lowest bit is the first. The word loop below takes what is left. */
  const __m128i ctl = _mm_set1_epi8(0x1f), del7f = _mm_set1_epi8(0x7f);
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
    __m128i marked =
        _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v), _mm_cmpeq_epi8(v, del7f));
    unsigned mask = (unsigned)_mm_movemask_epi8(marked);
    if (mask != 0)
      return i + (size_t)__builtin_ctz(mask);
  }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, sizeof w);
    uint64_t x = w ^ (ones * 0x7f);
    uint64_t low = (w - ones * 0x20) & ~w, del = (x - ones) & ~x;
    uint64_t marks = (low | del) & highs;
    if (marks != 0)
      return i + (size_t)__builtin_ctzll(marks) / 8;
  }
#endif
  for (; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c < 0x20 || c == 0x7f)
      break;
  }
  return i;
}

/* A piece of a chunk extension name or value (llhttp may split one; an
 * empty one is refused when it completes). */
static bool name_bytes_ok(const char *at, size_t n) {
  return n == 0 || cynic__http_is_token(at, n);
}

/*
 * The byte check over the raw head: llhttp's strict mode refuses most of
 * this already; what it lets through (obs-fold joins the previous value; a
 * control byte in a value) stops here. Every CR is followed by LF, every LF
 * follows a CR, no line starts with whitespace, no control byte but HTAB
 * outside line ends. NULL, or the rule broken.
 */
static const char *scan_head(cynic__http_msg_t *m, const char *p, size_t n) {
  unsigned char prev = (unsigned char)m->last_byte;
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    if (prev == '\r') { /* CR only as the start of CRLF */
      if (c != '\n')
        return "bare CR";
      prev = '\n';
      i++;
      continue;
    }
    if (prev == '\n' && (c == ' ' || c == '\t'))
      return "obs-fold";
    /* A plain run (no control byte, no DEL) breaks no rule after this
     * point: skip it to the next byte that matters. */
    size_t j = i + plain_run(p + i, n - i);
    if (j == n) {
      prev = j > i ? (unsigned char)p[j - 1] : prev;
      break;
    }
    c = (unsigned char)p[j];
    if (c == '\n') /* its byte before is no CR: a plain one, or the line's LF */
      return "bare LF";
    if (c != '\r' && c != '\t')
      return "control byte in the head";
    prev = c;
    i = j + 1;
  }
  m->last_byte = (char)prev;
  return NULL;
}

static int on_message_begin(llhttp_t *h) {
  owner(h)->started = true;
  return 0;
}

static int on_url(llhttp_t *h, const char *at, size_t n) {
  cynic__http_msg_t *m = owner(h);
  if (head_limit(m, at, n))
    return -1;
  if (m->limits.max_target != 0 && m->target.len + n > m->limits.max_target)
    return cynic__http_msg_fail(m, 414, "request target too long");
  if (m->target.len == 0)
    m->target.off = (uint32_t)m->used; /* the first part: right after the field index */
  return put(m, &m->target, at, n);
}

static int on_status(llhttp_t *h, const char *at, size_t n) {
  cynic__http_msg_t *m = owner(h);
  if (head_limit(m, at, n))
    return -1;
  if (m->reason.len == 0)
    m->reason.off = (uint32_t)m->used;
  return put(m, &m->reason, at, n);
}

static int trailer_bytes(cynic__http_msg_t *m, size_t n) {
  m->trailer_bytes += n;
  return m->trailer_bytes > m->limits.max_head ? cynic__http_msg_fail(m, 431, "trailers too large")
                                               : 0;
}

/* The request line is complete (a header or the end of the head follows it):
 * a HEAD request in HTTP/1.x gets answers without a body, the refusal of the
 * rest of its head included. */
static void request_line_done(cynic__http_msg_t *m, const llhttp_t *h) {
  if (m->kind == CYNIC__HTTP_REQUEST && !m->in_trailers && m->nfields == 0 && !m->in_name)
    m->head_request = h->method == HTTP_HEAD && h->http_major == 1 && h->http_minor <= 1;
}

/* The name's bytes need no check of their own: llhttp's strict mode refuses
 * any byte outside tchar in a header or trailer name before it hands over
 * the span ("Invalid header token"; test_http_msg's every_byte table holds
 * it to that for every byte value at every position). */
static int on_header_field(llhttp_t *h, const char *at, size_t n) {
  cynic__http_msg_t *m = owner(h);
  request_line_done(m, h);
  if (m->in_trailers) {
    if (m->trailers_from == NULL && m->ntrailers == 0) {
      /* The trailer section starts: the raw byte check covers it too (a
       * folded trailer comes through the callbacks as one value). */
      m->trailers_from = at;
      m->last_byte = '\n';
    }
    if (!m->in_name) { /* a new trailer */
      if (m->ntrailers == m->limits.max_fields)
        return cynic__http_msg_fail(m, 431, "too many trailer fields");
      m->ntrailers++;
      m->trailer_name_len = 0;
      m->in_name = true;
    }
    m->trailer_name_len += n;
    return trailer_bytes(m, n);
  }
  if (head_limit(m, at, n))
    return -1;
  if (!m->in_name) { /* a new field */
    if (m->nfields == m->limits.max_fields)
      return cynic__http_msg_fail(m, 431, "too many header fields");
    m->nfields++;
    m->fields[m->nfields - 1].name.off = (uint32_t)m->used;
    m->fields[m->nfields - 1].name.len = 0;
    m->in_name = true;
  }
  return put(m, &m->fields[m->nfields - 1].name, at, n);
}

/* A name is complete: llhttp calls this even for an empty name, for which
 * no data callback may have come. */
static int on_header_field_complete(llhttp_t *h) {
  cynic__http_msg_t *m = owner(h);
  bool began = m->in_name;
  m->in_name = false;
  if (m->in_trailers) {
    if (!began || m->trailer_name_len == 0)
      return cynic__http_msg_fail(m, 400, "empty header name");
    return 0;
  }
  if (!began || m->fields[m->nfields - 1].name.len == 0)
    return cynic__http_msg_fail(m, 400, "empty header name");
  m->fields[m->nfields - 1].value.off = (uint32_t)m->used;
  m->fields[m->nfields - 1].value.len = 0;
  return 0;
}

/* The value's bytes need no check of their own here: the raw check
 * (scan_head) goes over every head and trailer byte llhttp took, the one it
 * refused included, with the value's rules and more, and names the rule. */
static int on_header_value(llhttp_t *h, const char *at, size_t n) {
  cynic__http_msg_t *m = owner(h);
  if (m->in_trailers)
    return trailer_bytes(m, n);
  if (head_limit(m, at, n))
    return -1;
  if (m->nfields == 0)
    return cynic__http_msg_fail(m, 400, "header value without a name");
  return put(m, &m->fields[m->nfields - 1].value, at, n);
}

/* llhttp's value span keeps trailing whitespace; the field value does not. */
static int on_header_value_complete(llhttp_t *h) {
  cynic__http_msg_t *m = owner(h);
  if (m->in_trailers || m->nfields == 0)
    return 0;
  cynic__http_span_t *v = &m->fields[m->nfields - 1].value;
  while (v->len > 0 &&
         (m->store[v->off + v->len - 1] == ' ' || m->store[v->off + v->len - 1] == '\t'))
    v->len--;
  return 0;
}

/* ---- the head's meaning -------------------------------------------------- */

static bool span_is(const cynic__http_msg_t *m, cynic__http_span_t s, const char *text) {
  size_t n = strlen(text);
  return s.len == n && strncasecmp(m->store + s.off, text, n) == 0;
}

/* An absolute-form target's authority must be the Host (RFC 9112 3.2.2 lets
 * a server ignore Host then; a proxy must not route by one and pass on the
 * other). The target's characters were checked by llhttp. */
static const char *check_absolute(const cynic__http_msg_t *m, const char *host, size_t hlen) {
  const char *t = m->store + m->target.off;
  size_t n = m->target.len;
  if (n == 0 || t[0] == '/' || (n == 1 && t[0] == '*') || m->method == HTTP_CONNECT)
    return NULL;
  const char *colon = memchr(t, ':', n);
  if (colon == NULL || (size_t)(t + n - colon) < 3 || colon[1] != '/' || colon[2] != '/')
    return "request target is neither origin nor absolute form";
  const char *a = colon + 3, *end = t + n;
  const char *e = a;
  while (e < end && *e != '/' && *e != '?' && *e != '#')
    e++;
  size_t alen = (size_t)(e - a);
  if (memchr(a, '@', alen) != NULL)
    return "absolute-form target with userinfo";
  if (host == NULL || alen != hlen || strncasecmp(a, host, alen) != 0)
    return "absolute-form target authority is not Host";
  return NULL;
}

/* A field the head's meaning depends on: how many times it came, and the
 * first one's value. */
typedef struct known_field {
  size_t count;
  const char *value;
  size_t vlen;
} known_field_t;

/* Host, Content-Length, Transfer-Encoding and Expect, found in one pass over
 * the fields (by length first: most names are none of them). */
typedef struct known_fields {
  known_field_t host, content_length, transfer_encoding, expect;
} known_fields_t;

static void note(const cynic__http_msg_t *m, size_t i, known_field_t *k) {
  if (k->count++ == 0) {
    k->value = m->store + m->fields[i].value.off;
    k->vlen = m->fields[i].value.len;
  }
}

static void find_known(const cynic__http_msg_t *m, known_fields_t *k) {
  memset(k, 0, sizeof *k);
  for (size_t i = 0; i < m->nfields; i++) {
    const char *name = m->store + m->fields[i].name.off;
    switch (m->fields[i].name.len) {
    case 4:
      if (strncasecmp(name, "host", 4) == 0)
        note(m, i, &k->host);
      break;
    case 6:
      if (strncasecmp(name, "expect", 6) == 0)
        note(m, i, &k->expect);
      break;
    case 14:
      if (strncasecmp(name, "content-length", 14) == 0)
        note(m, i, &k->content_length);
      break;
    case 17:
      if (strncasecmp(name, "transfer-encoding", 17) == 0)
        note(m, i, &k->transfer_encoding);
      break;
    default:
      break;
    }
  }
}

/* RFC 9112 6.1: one Transfer-Encoding, "chunked", only in HTTP/1.1. */
static const char *check_framing(cynic__http_msg_t *m, const known_fields_t *k, bool *chunked,
                                 bool *has_length) {
  size_t te = k->transfer_encoding.count;
  size_t cl = k->content_length.count;
  *chunked = false;
  *has_length = false;
  if (cl > 1)
    return "duplicate Content-Length";
  if (te > 0 && cl > 0)
    return "Content-Length with Transfer-Encoding";
  if (cl == 1) {
    if (!cynic__http_parse_length(k->content_length.value, k->content_length.vlen,
                                  &m->content_length))
      return "malformed Content-Length";
    *has_length = true;
  }
  if (te > 0) {
    if (m->version_minor == 0)
      return "Transfer-Encoding in HTTP/1.0";
    if (te > 1)
      return "more than one Transfer-Encoding";
    const char *v = k->transfer_encoding.value;
    if (k->transfer_encoding.vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
      return "Transfer-Encoding other than chunked";
    *chunked = true;
  }
  return NULL;
}

static const char *check_request(cynic__http_msg_t *m, const known_fields_t *k) {
  size_t hosts = k->host.count;
  const char *host = NULL;
  size_t hlen = 0;
  if (hosts > 1)
    return "duplicate Host";
  if (hosts == 0 && m->version_minor == 1)
    return "missing Host";
  if (hosts == 1) {
    host = k->host.value;
    hlen = k->host.vlen;
    const char *bad = cynic__http_check_host(host, hlen);
    if (bad != NULL)
      return bad;
  }
  if (hosts == 1 || m->version_minor == 1) {
    const char *bad = check_absolute(m, host, hlen);
    if (bad != NULL)
      return bad;
  } else if (m->target.len > 0 && m->store[m->target.off] != '/' && m->method != HTTP_CONNECT &&
             !(m->target.len == 1 && m->store[m->target.off] == '*')) {
    /* HTTP/1.0 absolute form without Host: the authority must be sane. */
    const char *bad = check_absolute(m, NULL, 0);
    if (bad != NULL && strcmp(bad, "absolute-form target authority is not Host") != 0)
      return bad;
  }
  m->expect_continue = k->expect.count > 0 && k->expect.vlen == 12 &&
                       strncasecmp(k->expect.value, "100-continue", 12) == 0;
  return NULL;
}

/*
 * The head is complete: decide the framing. Returns to llhttp: HPE_PAUSED to
 * stop before a body (or an upgrade) so feed reports HEAD at the exact byte;
 * 1 for a message without a body (llhttp goes straight on to
 * on_message_complete, which pauses); -1 to refuse.
 */
static int on_headers_complete(llhttp_t *h) {
  cynic__http_msg_t *m = owner(h);
  request_line_done(m, h); /* a head without fields */
  m->version_major = h->http_major;
  m->version_minor = h->http_minor;
  m->phase = PH_BODY_NEXT; /* feed tells HEAD from the pause */
  m->in_trailers = true;
  m->in_name = false;
  if (h->http_major != 1 || h->http_minor > 1)
    return cynic__http_msg_fail(m, 400, "unsupported HTTP version");
  bool chunked, has_length;
  known_fields_t known;
  find_known(m, &known);
  const char *bad = check_framing(m, &known, &chunked, &has_length);
  if (bad == NULL && m->kind == CYNIC__HTTP_REQUEST) {
    m->method = (llhttp_method_t)h->method;
    bad = check_request(m, &known);
  }
  if (bad != NULL)
    return cynic__http_msg_fail(m, 400, bad);
  bool body;
  if (m->kind == CYNIC__HTTP_REQUEST) {
    if (h->upgrade || m->method == HTTP_CONNECT) {
      m->upgrade = true;
      m->keep_alive = false;
      return HPE_PAUSED;
    }
    m->body = chunked                               ? CYNIC__HTTP_BODY_CHUNKED
              : has_length && m->content_length > 0 ? CYNIC__HTTP_BODY_LENGTH
                                                    : CYNIC__HTTP_BODY_NONE;
    body = m->body != CYNIC__HTTP_BODY_NONE;
  } else {
    m->status = h->status_code;
    m->interim = cynic__http_status_interim(m->status);
    if (m->status == 101 || (m->request_method == HTTP_CONNECT && m->status / 100 == 2)) {
      m->upgrade = true;
      m->keep_alive = false;
      return HPE_PAUSED;
    }
    if (!cynic__http_response_has_body(m->request_method, m->status))
      m->body = CYNIC__HTTP_BODY_NONE;
    else if (chunked)
      m->body = CYNIC__HTTP_BODY_CHUNKED;
    else if (has_length)
      m->body = m->content_length > 0 ? CYNIC__HTTP_BODY_LENGTH : CYNIC__HTTP_BODY_NONE;
    else
      m->body = CYNIC__HTTP_BODY_UNTIL_EOF;
    body = m->body != CYNIC__HTTP_BODY_NONE;
  }
  if (!body) {
    /* What returning 1 does, set first so keep-alive reads it: llhttp's
     * own no-body rule forgets HEAD, and 204 or 304 with a Content-Length. */
    h->flags |= F_SKIPBODY;
    m->keep_alive = llhttp_should_keep_alive(h) != 0;
    m->phase = PH_DONE_PENDING;
    return 1;
  }
  m->keep_alive = llhttp_should_keep_alive(h) != 0;
  return HPE_PAUSED;
}

/* ---- the body ------------------------------------------------------------ */

static int on_body(llhttp_t *h, const char *at, size_t n) {
  cynic__http_msg_t *m = owner(h);
  return m->on_body != NULL ? m->on_body(m, at, n) : 0;
}

static int on_chunk_header(llhttp_t *h) {
  owner(h)->ext_len = 0;
  return 0;
}

/* Chunk extensions: name = token, value = token (llhttp itself refuses a
 * quoted-string value, so they are refused). Bounded by max_head per chunk
 * header. */
static int ext_bytes(cynic__http_msg_t *m, const char *at, size_t n, const char *reason) {
  if (!name_bytes_ok(at, n))
    return cynic__http_msg_fail(m, 400, reason);
  m->ext_piece += n;
  m->ext_len += n;
  return m->ext_len > m->limits.max_head ? cynic__http_msg_fail(m, 400, "chunk extensions too long")
                                         : 0;
}

static int on_ext_name(llhttp_t *h, const char *at, size_t n) {
  return ext_bytes(owner(h), at, n, "chunk extension name is not a token");
}

static int on_ext_value(llhttp_t *h, const char *at, size_t n) {
  return ext_bytes(owner(h), at, n, "chunk extension value is not a token");
}

static int ext_complete(llhttp_t *h, const char *empty) {
  cynic__http_msg_t *m = owner(h);
  bool none = m->ext_piece == 0;
  m->ext_piece = 0;
  return none ? cynic__http_msg_fail(m, 400, empty) : 0;
}

static int on_ext_name_complete(llhttp_t *h) {
  return ext_complete(h, "empty chunk extension name");
}

static int on_ext_value_complete(llhttp_t *h) {
  return ext_complete(h, "empty chunk extension value");
}

static int on_message_complete(llhttp_t *h) {
  cynic__http_msg_t *m = owner(h);
  if (m->phase != PH_DONE_PENDING)
    m->phase = PH_DONE;
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_chunk_extension_name = on_ext_name,
    .on_chunk_extension_value = on_ext_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_chunk_extension_name_complete = on_ext_name_complete,
    .on_chunk_extension_value_complete = on_ext_value_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- life ---------------------------------------------------------------- */

static void reset_message(cynic__http_msg_t *m) {
  m->store = NULL;
  m->fields = NULL;
  m->cap = m->used = 0;
  m->phase = PH_IDLE;
  m->started = false;
  m->head_bytes = 0;
  m->feed_at = NULL;
  m->last_byte = 0;
  m->in_name = m->in_trailers = false;
  m->trailer_bytes = m->ntrailers = m->trailer_name_len = 0;
  m->trailers_from = NULL;
  m->ext_piece = m->ext_len = 0;
  m->method = HTTP_GET;
  m->status = 0;
  m->version_major = m->version_minor = 0;
  m->target.off = m->target.len = 0;
  m->reason.off = m->reason.len = 0;
  m->keep_alive = false;
  m->body = CYNIC__HTTP_BODY_NONE;
  m->content_length = 0;
  m->expect_continue = m->upgrade = m->interim = m->head_request = false;
  m->nfields = 0;
}

void cynic__http_msg_init(cynic__http_msg_t *m, int kind, const cynic__http_msg_limits_t *limits) {
  memset(m, 0, sizeof(*m));
  m->kind = kind;
  m->limits = *limits;
  if (m->limits.max_fields > CYNIC__HTTP_MSG_MAX_FIELDS)
    m->limits.max_fields = CYNIC__HTTP_MSG_MAX_FIELDS;
  if (m->limits.max_head > UINT32_MAX)
    m->limits.max_head = UINT32_MAX; /* spans are 32-bit */
  m->request_method = HTTP_GET;
  reset_message(m);
  llhttp_init(&m->llhttp, kind == CYNIC__HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
}

static size_t index_bytes(const cynic__http_msg_limits_t *limits) {
  return limits->max_fields * sizeof(cynic__http_field_spans_t);
}

size_t cynic__http_msg_store_size(const cynic__http_msg_limits_t *limits) {
  size_t fields = limits->max_fields > CYNIC__HTTP_MSG_MAX_FIELDS ? CYNIC__HTTP_MSG_MAX_FIELDS
                                                                  : limits->max_fields;
  return fields * sizeof(cynic__http_field_spans_t) + limits->max_head;
}

int cynic__http_msg_begin(cynic__http_msg_t *m, char *store, size_t cap) {
  size_t index = index_bytes(&m->limits);
  if (store == NULL || cap <= index ||
      (uintptr_t)store % _Alignof(cynic__http_field_spans_t) != 0)
    return CYNIC_EINVAL;
  if (m->phase == PH_IDLE)
    m->phase = PH_HEAD;
  m->store = store;
  m->cap = cap > UINT32_MAX ? UINT32_MAX : cap;
  m->fields = (cynic__http_field_spans_t *)(void *)store;
  m->used = index; /* the parts follow the index */
  return 0;
}

static int refuse(cynic__http_msg_t *m, int status, const char *reason) {
  cynic__http_msg_fail(m, status, reason);
  m->phase = PH_ERROR;
  return CYNIC_EINVAL;
}

int cynic__http_msg_feed(cynic__http_msg_t *m, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  switch (m->phase) {
  case PH_ERROR:
    return CYNIC_EINVAL;
  case PH_IDLE:
    return refuse(m, 500, "no head store (cynic__http_msg_begin)");
  case PH_DONE_PENDING:
    m->phase = PH_DONE;
    return CYNIC__HTTP_DONE;
  case PH_DONE:
    return CYNIC__HTTP_DONE;
  case PH_UPGRADED:
    return refuse(m, 400, "protocol switched: no more HTTP");
  case PH_BODY_NEXT:
    if (len == 0)
      return CYNIC__HTTP_BODY;
    llhttp_resume(&m->llhttp);
    m->phase = PH_BODY;
    break;
  default:
    break;
  }
  if (len == 0)
    return m->phase == PH_HEAD ? CYNIC__HTTP_MORE : CYNIC__HTTP_BODY;
  bool in_head = m->phase == PH_HEAD;
  m->feed_at = data;
  if (m->trailers_from != NULL)
    m->trailers_from = data; /* the trailer section goes on from the first byte */
  llhttp_errno_t e = llhttp_execute(&m->llhttp, data, len);
  size_t at = len;
  if (e != HPE_OK) {
    const char *pos = llhttp_get_error_pos(&m->llhttp);
    at = pos != NULL && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
  }
  if (in_head) {
    /* The raw check covers the head bytes llhttp took (and the one it
     * refused, if any): it names the rule when llhttp is vaguer. */
    bool head_done = e == HPE_PAUSED && m->phase != PH_HEAD;
    size_t upto = head_done || e == HPE_OK || at == len ? at : at + 1;
    const char *bad = scan_head(m, data, upto);
    if (bad != NULL) {
      m->error_status = 0;
      return refuse(m, 400, bad);
    }
    if (m->error_status == 0 && m->head_bytes + at > m->limits.max_head)
      return refuse(m, 431, "head too large");
    m->head_bytes += at;
  }
  if (m->trailers_from != NULL) {
    size_t from = (size_t)(m->trailers_from - data);
    size_t upto = e == HPE_OK || e == HPE_PAUSED || at == len ? at : at + 1;
    const char *bad = from <= upto ? scan_head(m, m->trailers_from, upto - from) : NULL;
    if (bad != NULL) {
      m->error_status = 0;
      return refuse(m, 400, bad);
    }
  }
  if (e == HPE_OK) {
    *consumed = len;
    return m->phase == PH_HEAD ? CYNIC__HTTP_MORE : CYNIC__HTTP_BODY;
  }
  if (e == HPE_PAUSED && m->error_status == 0) {
    *consumed = at;
    if (in_head) {
      if (m->upgrade)
        m->phase = PH_UPGRADED;
      return CYNIC__HTTP_HEAD;
    }
    if (m->phase == PH_DONE)
      return CYNIC__HTTP_DONE;
  }
  if (m->error_status == 0)
    cynic__http_msg_fail(m, 400, llhttp_get_error_reason(&m->llhttp));
  m->phase = PH_ERROR;
  return CYNIC_EINVAL;
}

int cynic__http_msg_eof(cynic__http_msg_t *m) {
  switch (m->phase) {
  case PH_ERROR:
    return CYNIC_EINVAL;
  case PH_IDLE:
  case PH_DONE:
  case PH_DONE_PENDING:
  case PH_UPGRADED:
    return 0;
  case PH_HEAD:
    if (!m->started) /* nothing, or only the empty lines allowed before a request */
      return 0;
    return refuse(m, 400, "message cut short by EOF");
  default: /* PH_BODY_NEXT, PH_BODY */
    if (m->body == CYNIC__HTTP_BODY_UNTIL_EOF) {
      /* The body ends where the connection does; llhttp has nothing to add. */
      m->phase = PH_DONE;
      return CYNIC__HTTP_DONE;
    }
    return refuse(m, 400, "message cut short by EOF");
  }
}

void cynic__http_msg_next(cynic__http_msg_t *m) {
  if (m->phase != PH_DONE && m->phase != PH_DONE_PENDING)
    return; /* refused or switched: the connection is over */
  bool interim = m->interim;
  reset_message(m);
  if (!interim)
    m->request_method = HTTP_GET;
  llhttp_resume(&m->llhttp);
}

void cynic__http_msg_expect(cynic__http_msg_t *m, llhttp_method_t request_method) {
  m->request_method = request_method;
}

const char *cynic__http_msg_method(const cynic__http_msg_t *m) {
  return llhttp_method_name(m->method);
}

const char *cynic__http_msg_find(const cynic__http_msg_t *m, const char *name, size_t *vlen) {
  for (size_t i = 0; i < m->nfields; i++)
    if (span_is(m, m->fields[i].name, name)) {
      *vlen = m->fields[i].value.len;
      return m->store + m->fields[i].value.off;
    }
  return NULL;
}

size_t cynic__http_msg_count(const cynic__http_msg_t *m, const char *name) {
  size_t k = 0;
  for (size_t i = 0; i < m->nfields; i++)
    k += span_is(m, m->fields[i].name, name);
  return k;
}
