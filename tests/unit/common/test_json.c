/* Unit tests of src/common/json.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cynic/common.h"
#include "json.h"

static void typed_getters(void **state) {
  (void)state;
  json_t *o = json_loads("{\"s\":\"x\",\"b\":true,\"i\":5,\"r\":1.5,\"n\":null}", 0, NULL);
  char err[128];
  const char *s;
  bool b;
  int64_t i;
  double d;
  assert_int_equal(cynic__json_get_string(o, "s", &s, err, sizeof(err)), 1);
  assert_string_equal(s, "x");
  assert_int_equal(cynic__json_get_string(o, "n", &s, err, sizeof(err)), 0);
  assert_int_equal(cynic__json_get_string(o, "missing", &s, err, sizeof(err)), 0);
  assert_int_equal(cynic__json_get_string(o, "i", &s, err, sizeof(err)), CYNIC_EINVAL);
  assert_string_equal(err, "field \"i\": expected string, got number");
  assert_int_equal(cynic__json_get_bool(o, "b", &b, err, sizeof(err)), 1);
  assert_true(b);
  assert_int_equal(cynic__json_get_bool(o, "s", &b, err, sizeof(err)), CYNIC_EINVAL);
  assert_int_equal(cynic__json_get_int64(o, "i", &i, err, sizeof(err)), 1);
  assert_int_equal(i, 5);
  assert_int_equal(cynic__json_get_int64(o, "r", &i, err, sizeof(err)), CYNIC_EINVAL);
  assert_int_equal(cynic__json_get_number(o, "r", &d, err, sizeof(err)), 1);
  assert_true(d == 1.5);
  assert_int_equal(cynic__json_get_number(o, "i", &d, err, sizeof(err)), 1);
  assert_true(d == 5.0);
  json_decref(o);
}

static void dump_and_floats(void **state) {
  (void)state;
  cynic__buf_t b;
  cynic__buf_init(&b, 256);
  json_t *o = json_object();
  json_object_set_new(o, "z", cynic__json_float(1.0));
  json_object_set_new(o, "a", cynic__json_float(0.1));
  json_object_set_new(o, "m", cynic__json_float(0.75));
  assert_int_equal(cynic__json_dump(o, &b), 0);
  assert_string_equal(b.data, "{\"z\":1,\"a\":0.1,\"m\":0.75}");
  cynic__buf_t tiny;
  cynic__buf_init(&tiny, 4);
  assert_int_equal(cynic__json_dump(o, &tiny), CYNIC_ERANGE);
  assert_int_equal(tiny.len, 0);
  cynic__buf_free(&tiny);
  json_decref(o);
  cynic__buf_free(&b);
}

/* The dump of cynic__json_text(in, n), which must be valid JSON. */
static void expect_text(const char *in, size_t n, const char *want) {
  json_t *v = cynic__json_text(in, n);
  assert_non_null(v);
  char *dumped = json_dumps(v, JSON_ENCODE_ANY);
  assert_non_null(dumped);
  assert_string_equal(dumped, want);
  json_t *back = json_loads(dumped, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  assert_non_null(back); /* what we wrote parses */
  json_decref(back);
  free(dumped);
  json_decref(v);
}

#define FFFD "\xEF\xBF\xBD"

static void text_from_bytes(void **state) {
  (void)state;
  /* valid text passes unchanged, whatever its script */
  expect_text("backend", 7, "\"backend\"");
  expect_text("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14,
              "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  expect_text("", 0, "\"\"");
  expect_text(NULL, 0, "\"\"");
  expect_text("a\0b", 3, "\"a\\u0000b\"");
  /* each maximal ill-formed subpart becomes one U+FFFD */
  expect_text("\xFF", 1, "\"" FFFD "\"");
  expect_text("\xC3", 1, "\"" FFFD "\"");        /* cut after the lead byte */
  expect_text("a\x80\x62", 3, "\"a" FFFD "b\""); /* lone continuation */
  expect_text("\xE2\x82", 2, "\"" FFFD "\"");    /* cut three-byte sequence: one */
  expect_text("\xE2\x82x", 3, "\"" FFFD "x\"");
  expect_text("\xC0\xAF", 2, "\"" FFFD FFFD "\""); /* overlong: two */
  expect_text("\xE0\x80\xAF", 3, "\"" FFFD FFFD FFFD "\"");
  expect_text("\xED\xA0\x80", 3, "\"" FFFD FFFD FFFD "\"");          /* surrogate */
  expect_text("\xF4\x90\x80\x80", 4, "\"" FFFD FFFD FFFD FFFD "\""); /* > U+10FFFF */
  expect_text("\xF0\x9F\x98", 3, "\"" FFFD "\"");
  expect_text("\xF5\xFE\xFF", 3, "\"" FFFD FFFD FFFD "\"");
  json_t *v = cynic__json_text0("x\xFFy");
  assert_string_equal(json_string_value(v), "x" FFFD "y");
  json_decref(v);
  assert_true(cynic__utf8_valid("caf\xC3\xA9", 5));
  assert_false(cynic__utf8_valid("caf\xC3", 4));
  /* every 1- and 2-byte input: the result exists and is valid JSON */
  for (unsigned a = 0; a < 256; a++)
    for (unsigned b = 0; b < 256; b++) {
      char in[2] = {(char)a, (char)b};
      json_t *t = cynic__json_text(in, 2);
      assert_non_null(t);
      char *d = json_dumps(t, JSON_ENCODE_ANY);
      assert_non_null(d);
      json_t *back = json_loads(d, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
      assert_non_null(back);
      json_decref(back);
      free(d);
      json_decref(t);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(typed_getters),
      cmocka_unit_test(dump_and_floats),
      cmocka_unit_test(text_from_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
