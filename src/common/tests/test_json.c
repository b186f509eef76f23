/* Unit tests of src/common/json.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(typed_getters),
      cmocka_unit_test(dump_and_floats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
