/*
 * fuzz/fuzz_http_msg.c: libFuzzer target for src/common's strict streaming
 * HTTP/1.1 parser (cynic__http_msg_feed), the parser the proxy's HTTP mode
 * puts in front of clients and upstreams alike.
 *
 * Input: byte 0 picks the direction (even: requests; odd: responses, its
 * upper bits the request method they answer: GET, HEAD, POST, CONNECT),
 * bytes 1..8 seed the splits, the rest is the byte stream. It is parsed
 * twice, whole and in random pieces (now and then one byte), with small
 * bounds so every limit is reachable, and the peer closes at the end.
 * Oracle: no sanitizer report; the contract of feed (consumed <= given, all
 * of it for MORE and BODY, a known status and a reason on refusal: 400, 414,
 * 431 for requests, 502 for responses; every span inside the used store;
 * nfields <= max_fields); and both parses see the same messages (head
 * fields, raw head and body byte counts) and the same end (refused or not,
 * the answer to EOF).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cynic/common.h"
#include "http_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEN 32

typedef struct outcome {
  size_t heads, dones;
  uint64_t digest[MAX_SEEN]; /* per message: head fields, head and body bytes */
  bool refused;
  int eof; /* cynic__http_msg_eof's answer at the end */
} outcome_t;

static const cynic__http_msg_limits_t limits = {.max_head = 512, .max_fields = 16, .max_target = 0};

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * UINT64_C(0x100000001B3);
  return h;
}

static uint64_t mix_u(uint64_t h, uint64_t v) {
  return mix(h, &v, sizeof v);
}

static uint64_t next_rand(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static void span_ok(const cynic__http_msg_t *m, cynic__http_span_t s) {
  if ((size_t)s.off + s.len > m->used)
    abort();
}

static uint64_t head_digest(const cynic__http_msg_t *m, size_t head_bytes) {
  if (m->nfields > limits.max_fields || m->used > m->cap || head_bytes > limits.max_head)
    abort();
  uint64_t h = UINT64_C(0xCBF29CE484222325);
  h = mix_u(h, (uint64_t)m->kind == CYNIC__HTTP_REQUEST ? m->method : (uint64_t)m->status);
  span_ok(m, m->target);
  span_ok(m, m->reason);
  h = mix(h, cynic__http_msg_at(m, m->target), m->target.len);
  h = mix(h, cynic__http_msg_at(m, m->reason), m->reason.len);
  h = mix_u(h, (uint64_t)m->version_minor);
  h = mix_u(h, (uint64_t)m->body);
  h = mix_u(h, m->content_length);
  h = mix_u(
      h, (uint64_t)(m->keep_alive | m->upgrade << 1 | m->interim << 2 | m->expect_continue << 3));
  h = mix_u(h, head_bytes);
  for (size_t i = 0; i < cynic__http_msg_nfields(m); i++) {
    const char *name, *value;
    size_t nlen, vlen;
    cynic__http_msg_field(m, i, &name, &nlen, &value, &vlen);
    span_ok(m, m->fields[i].name);
    span_ok(m, m->fields[i].value);
    if (!cynic__http_is_token(name, nlen))
      abort(); /* names are tokens, always */
    h = mix(h, name, nlen);
    h = mix(h, value, vlen);
  }
  return h;
}

/* seed 0: one piece; otherwise pieces of 1..n bytes drawn from the seed. */
static void parse(int kind, llhttp_method_t method, const char *p, size_t n, uint64_t seed,
                  outcome_t *o) {
  static _Alignas(16) char store[CYNIC__HTTP_MSG_MAX_FIELDS * sizeof(cynic__http_field_spans_t) + 512];
  cynic__http_msg_t m;
  cynic__http_msg_init(&m, kind, &limits);
  cynic__http_msg_begin(&m, store, sizeof store);
  cynic__http_msg_expect(&m, method);
  memset(o, 0, sizeof(*o));
  size_t off = 0, head = 0, body = 0;
  bool pending = false;
  uint64_t cur = 0;
  while ((off < n || pending) && o->heads < 10000) {
    size_t piece = n - off;
    if (seed != 0 && piece > 1) {
      piece = 1 + next_rand(&seed) % piece;
      if (next_rand(&seed) % 4 == 0)
        piece = 1; /* byte at a time now and then: every callback boundary */
    }
    size_t used = 0;
    int r = cynic__http_msg_feed(&m, p + off, piece, &used);
    pending = false;
    if (used > piece)
      abort();
    off += used;
    if (r < 0) {
      int s = m.error_status;
      if (m.error_reason == NULL || used != 0 ||
          (kind == CYNIC__HTTP_RESPONSE ? s != 502 : (s != 400 && s != 414 && s != 431)))
        abort();
      o->refused = true;
      break;
    }
    switch (r) {
    case CYNIC__HTTP_MORE:
      if (used != piece)
        abort();
      head += used;
      break;
    case CYNIC__HTTP_BODY:
      if (used != piece)
        abort();
      body += used;
      break;
    case CYNIC__HTTP_HEAD:
      head += used;
      cur = head_digest(&m, head);
      o->heads++;
      pending = !m.upgrade;
      break;
    case CYNIC__HTTP_DONE: {
      body += used;
      if (o->dones < MAX_SEEN)
        o->digest[o->dones] = mix_u(cur, body);
      o->dones++;
      bool interim = m.interim;
      cynic__http_msg_next(&m);
      cynic__http_msg_begin(&m, store, sizeof store);
      if (!interim)
        cynic__http_msg_expect(&m, method);
      head = body = 0;
      break;
    }
    default:
      abort();
    }
  }
  o->eof = o->refused ? 0 : cynic__http_msg_eof(&m);
  if (o->eof == CYNIC__HTTP_DONE && o->dones < MAX_SEEN)
    o->digest[o->dones] = mix_u(cur, body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const llhttp_method_t methods[] = {HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_CONNECT};
  if (size < 9 || size > 16384)
    return 0;
  int kind = data[0] % 2 == 0 ? CYNIC__HTTP_REQUEST : CYNIC__HTTP_RESPONSE;
  llhttp_method_t method = methods[(data[0] >> 1) % 4];
  uint64_t seed;
  memcpy(&seed, data + 1, 8);
  seed |= 1; /* never 0: that means one piece */
  const char *p = (const char *)data + 9;
  size_t n = size - 9;
  outcome_t whole, split;
  parse(kind, method, p, n, 0, &whole);
  parse(kind, method, p, n, seed, &split);
  /* How TCP cut the bytes must change neither what was parsed nor whether
   * the stream was refused. (Which rule is named may differ when a message
   * breaks two at once: llhttp hands spans to the checks at the end of each
   * piece.) */
  if (whole.heads != split.heads || whole.dones != split.dones || whole.refused != split.refused ||
      whole.eof != split.eof)
    abort();
  size_t k = whole.dones + (whole.eof == CYNIC__HTTP_DONE);
  k = k < MAX_SEEN ? k : MAX_SEEN;
  if (memcmp(whole.digest, split.digest, k * sizeof(uint64_t)) != 0)
    abort();
  return 0;
}
