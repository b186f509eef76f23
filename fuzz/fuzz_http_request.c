/*
 * fuzz/fuzz_http_request.c: libFuzzer target for src/common's HTTP request
 * parser (cynic__http_parser_feed), the parser the harness API and the proxy's
 * admin listener put in front of outside bytes.
 *
 * Input: the first 8 bytes seed the splits, the rest is the byte stream. The
 * stream is parsed twice, in one piece and in random pieces (the way TCP
 * delivers it), with small limits so every 4xx path is reachable. Oracle:
 * no sanitizer report; the contract of feed (consumed <= given, all of it
 * when INCOMPLETE, 400..431 with a reason on error, limits respected on
 * READY); and both parses see the same requests and the same outcome
 * (accepted, refused, or cut short at the end).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEN 64

typedef struct outcome {
  size_t ready;
  uint64_t digest[MAX_SEEN]; /* per request: method, url, body */
  int error_status;          /* 0 = none */
  int finish;                /* cynic__http_parser_finish's answer */
} outcome_t;

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * UINT64_C(0x100000001B3);
  return h;
}

static uint64_t next_rand(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* seed 0: one piece; otherwise pieces of 1..n bytes drawn from the seed. */
static void parse(const char *p, size_t n, uint64_t seed, outcome_t *o) {
  static const cynic__http_limits_t limits = {
      .max_url = 128, .max_header_bytes = 512, .max_body = 256};
  cynic__http_parser_t hp;
  cynic__http_parser_init(&hp, &limits);
  memset(o, 0, sizeof(*o));
  size_t off = 0;
  while (off < n) {
    size_t piece = seed == 0 ? n - off : 1 + next_rand(&seed) % (n - off);
    if (seed != 0 && next_rand(&seed) % 4 == 0)
      piece = 1; /* byte at a time now and then: every callback boundary */
    size_t used = 0;
    int r = cynic__http_parser_feed(&hp, p + off, piece, &used);
    if (used > piece)
      abort();
    if (r < 0) {
      if (hp.error_status < 400 || hp.error_status > 431 || hp.error_reason == NULL)
        abort();
      o->error_status = hp.error_status;
      break;
    }
    if (r == CYNIC_HTTP_INCOMPLETE && used != piece)
      abort();
    if (r == CYNIC_HTTP_READY) {
      if (hp.url.len > limits.max_url || hp.body.len > limits.max_body)
        abort();
      const char *m = cynic__http_method(&hp);
      if (m == NULL)
        abort();
      size_t hl = 0;
      const char *cl = cynic__http_header(&hp, "content-length", &hl);
      if (cl != NULL && hl > limits.max_header_bytes)
        abort();
      uint64_t h = mix(UINT64_C(0xCBF29CE484222325), m, strlen(m));
      h = mix(h, hp.url.data, hp.url.len);
      h = mix(h, hp.body.data, hp.body.len);
      h = mix(h, "k", cynic__http_keep_alive(&hp) ? 1 : 0);
      if (o->ready < MAX_SEEN)
        o->digest[o->ready] = h;
      o->ready++;
      cynic__http_parser_next(&hp);
    }
    off += used;
  }
  o->finish = o->error_status ? 0 : cynic__http_parser_finish(&hp);
  cynic__http_parser_free(&hp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8 || size > 16384)
    return 0;
  uint64_t seed;
  memcpy(&seed, data, 8);
  seed |= 1; /* never 0: that means one piece */
  const char *p = (const char *)data + 8;
  size_t n = size - 8;
  outcome_t whole, split;
  parse(p, n, 0, &whole);
  parse(p, n, seed, &split);
  /* How TCP happened to cut the bytes must not change what was parsed, nor
   * whether the stream was refused. Which 4xx may differ when a request has
   * two faults: llhttp hands a URL or header span to the limit checks at the
   * end of each piece, so a too-long target that also holds a bad byte is
   * 414 when a piece ends before the bad byte and 400 when it does not. */
  if (whole.ready != split.ready || (whole.error_status != 0) != (split.error_status != 0) ||
      whole.finish != split.finish)
    abort();
  size_t k = whole.ready < MAX_SEEN ? whole.ready : MAX_SEEN;
  if (memcmp(whole.digest, split.digest, k * sizeof(uint64_t)) != 0)
    abort();
  return 0;
}
