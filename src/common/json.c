/* json.c: jansson helpers. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

void cynic__json_init(void) {
  json_set_alloc_funcs(counting_malloc, free);
  ballast = malloc(BALLAST_BYTES);
}

uint64_t cynic__json_alloc_failures(void) {
  return alloc_failures;
}

json_t *cynic__json_float(double x) {
  if (isfinite(x) && x == floor(x) && fabs(x) < 9e15)
    return json_integer((json_int_t)x);
  return json_real(x); /* cynic__json_dump prints reals with 15 digits */
}
