/* json.c: jansson helpers. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cynic/common.h"

const char *cynic__json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "bool";
  default:
    return "null";
  }
}

static int type_error(const json_t *v, const char *key, const char *want, char *err,
                      size_t errlen) {
  snprintf(err, errlen, "field \"%s\": expected %s, got %s", key, want, cynic__json_type_name(v));
  return CYNIC_EINVAL;
}

static const json_t *field(const json_t *obj, const char *key) {
  const json_t *v = json_object_get(obj, key);
  return (v == NULL || json_is_null(v)) ? NULL : v;
}

int cynic__json_get_string(const json_t *obj, const char *key, const char **out, char *err,
                           size_t errlen) {
  const json_t *v = field(obj, key);
  if (v == NULL)
    return 0;
  if (!json_is_string(v))
    return type_error(v, key, "string", err, errlen);
  *out = json_string_value(v);
  return 1;
}

int cynic__json_get_bool(const json_t *obj, const char *key, bool *out, char *err, size_t errlen) {
  const json_t *v = field(obj, key);
  if (v == NULL)
    return 0;
  if (!json_is_boolean(v))
    return type_error(v, key, "bool", err, errlen);
  *out = json_is_true(v);
  return 1;
}

int cynic__json_get_int64(const json_t *obj, const char *key, int64_t *out, char *err,
                          size_t errlen) {
  const json_t *v = field(obj, key);
  if (v == NULL)
    return 0;
  if (!json_is_integer(v))
    return type_error(v, key, "integer", err, errlen);
  *out = (int64_t)json_integer_value(v);
  return 1;
}

int cynic__json_get_number(const json_t *obj, const char *key, double *out, char *err,
                           size_t errlen) {
  const json_t *v = field(obj, key);
  if (v == NULL)
    return 0;
  if (!json_is_number(v))
    return type_error(v, key, "number", err, errlen);
  *out = json_number_value(v);
  return 1;
}

typedef struct dump_state {
  cynic__buf_t *b;
  int err; /* the first append's failure: sticky */
} dump_state_t;

/* Once an append has failed every later one fails too: jansson 2.14 does not
 * check the callback's answer for an object key, so a key whose append
 * failed (out of memory) would be left out of otherwise valid-looking output
 * (found by tests/integration/test_oom.py). */
static int dump_cb(const char *p, size_t n, void *data) {
  dump_state_t *st = data;
  if (st->err == 0)
    st->err = cynic__buf_append(st->b, p, n);
  return st->err == 0 ? 0 : -1;
}

int cynic__json_dump(const json_t *v, cynic__buf_t *b) {
  size_t before = b->len;
  dump_state_t st = {b, 0};
  uint64_t failures = cynic__json_alloc_failures();
  int rc = json_dump_callback(v, dump_cb, &st,
                              JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY |
                                  JSON_REAL_PRECISION(15));
  if (rc != 0 || st.err != 0 || cynic__json_alloc_failures() != failures) {
    b->len = before;
    if (b->data)
      b->data[before] = '\0';
    return st.err == CYNIC_ERANGE ? CYNIC_ERANGE : CYNIC_ENOMEM;
  }
  return 0;
}

static uint64_t alloc_failures;

/*
 * jansson 2.14 must not see an allocation fail: its lexer ignores a failed
 * append (lex_save), so a string token can lose its closing quote and
 * lex_scan_string then copies past the end of the buffer it sized from the
 * saved text: heap corruption (found by tests/integration/test_oom.py: glibc
 * "free(): invalid next size", SIGSEGV in malloc). So a failed allocation is
 * retried after giving back a ballast block held for this moment (an
 * emergency reserve), so jansson finishes on sound memory. Only when every
 * retry fails does jansson see NULL: that is counted, and the callers that
 * compare the count throw the result away (503). The ballast is taken again
 * on a later allocation, once memory allows. Nothing better can be done from
 * outside jansson (its results must stay freeable with free(), so no private
 * arena).
 * Event loop thread only (jansson is not used on other threads).
 */
#define BALLAST_BYTES (1u << 20)
#define ALLOC_RETRIES 8
static void *ballast;

static void *counting_malloc(size_t n) {
  void *p = malloc(n);
  if (p != NULL) {
    if (ballast == NULL)
      ballast = malloc(BALLAST_BYTES); /* back in reserve (mmap: costs address space only) */
    return p;
  }
  free(ballast);
  ballast = NULL;
  for (int i = 0; i < ALLOC_RETRIES && p == NULL; i++)
    p = malloc(n);
  if (p == NULL)
    alloc_failures++; /* jansson sees this one: what it builds or parses is suspect */
  return p;
}

/* At exit the reserve goes back too, so a leak checker sees every block freed
 * (valgrind's "still reachable" showed this one). */
static void release_ballast(void) {
  free(ballast);
  ballast = NULL;
}

void cynic__json_init(void) {
  json_set_alloc_funcs(counting_malloc, free);
  ballast = malloc(BALLAST_BYTES);
  static bool registered;
  if (!registered && atexit(release_ballast) == 0)
    registered = true;
}

uint64_t cynic__json_alloc_failures(void) {
  return alloc_failures;
}

/* UTF-8 per RFC 3629 (Unicode table 3-7): no overlong forms, no surrogates,
 * nothing above U+10FFFF. Returns how many leading bytes of s[0..n) form a
 * prefix of a well-formed sequence (`*need`: the sequence's full length). */
static size_t utf8_prefix(const unsigned char *s, size_t n, size_t *need) {
  unsigned char c = s[0];
  unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
  if (c < 0x80) {
    *need = 1;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF)
    *need = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    *need = 3;
    if (c == 0xE0)
      lo = 0xA0; /* overlong below */
    else if (c == 0xED)
      hi = 0x9F; /* surrogates above */
  } else if (c >= 0xF0 && c <= 0xF4) {
    *need = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F; /* above U+10FFFF */
  } else {
    *need = 1; /* 80..C1, F5..FF never start a sequence */
    return 0;
  }
  size_t k = 1;
  if (k < n && s[k] >= lo && s[k] <= hi) {
    for (k = 2; k < *need && k < n && (s[k] & 0xC0) == 0x80; k++)
      ;
  }
  return k;
}

size_t cynic__utf8_seq_len(const unsigned char *s, size_t n) {
  size_t need;
  if (n == 0)
    return 0;
  size_t k = utf8_prefix(s, n, &need);
  return k == need ? k : 0;
}

size_t cynic__utf8_bad_len(const unsigned char *s, size_t n) {
  size_t need;
  if (n == 0)
    return 0;
  size_t k = utf8_prefix(s, n, &need);
  return k == 0 ? 1 : k; /* the lead byte and the continuations that fit it */
}

bool cynic__utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t k = cynic__utf8_seq_len(u + i, n - i);
    if (k == 0)
      return false;
    i += k;
  }
  return true;
}

json_t *cynic__json_text(const char *s, size_t n) {
  if (n == 0)
    return json_string("");
  if (cynic__utf8_valid(s, n))
    return json_stringn(s, n);
  /* each bad byte becomes at most 3 bytes (EF BF BD) */
  if (n > (SIZE_MAX - 1) / 3)
    return NULL;
  char *out = malloc(3 * n + 1);
  if (out == NULL)
    return NULL;
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    size_t k = cynic__utf8_seq_len(u + i, n - i);
    if (k > 0) {
      memcpy(out + o, u + i, k);
      o += k;
      i += k;
    } else {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i += cynic__utf8_bad_len(u + i, n - i);
    }
  }
  json_t *v = json_stringn(out, o);
  free(out);
  return v;
}

json_t *cynic__json_text0(const char *s) {
  return s == NULL ? json_string("") : cynic__json_text(s, strlen(s));
}

json_t *cynic__json_float(double x) {
  if (isfinite(x) && x == floor(x) && fabs(x) < 9e15)
    return json_integer((json_int_t)x);
  return json_real(x); /* cynic__json_dump prints reals with 15 digits */
}
